"""Figures shared by every chapter (recbook.plots)."""
from types import SimpleNamespace

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from recbook import plots  # noqa: E402


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def test_learning_curves_mark_the_restored_epoch_on_every_panel():
    h = pd.DataFrame({"valid_auc": [0.6, 0.7, 0.65], "valid_logloss": [0.7, 0.69, 0.6]},
                     index=pd.Index([1, 2, 3], name="epoch"))
    fit = SimpleNamespace(history=h, best_epoch=2)
    auc_ax, loss_ax = plots.plot_learning_curves({"M": fit})
    for ax, col in ((auc_ax, "valid_auc"), (loss_ax, "valid_logloss")):
        stars = [ln for ln in ax.lines if ln.get_marker() == "*"]
        assert len(stars) == 1 and stars[0].get_xdata()[0] == 2     # the restored epoch, not the min loss
        assert stars[0].get_ydata()[0] == h.loc[2, col]
    assert auc_ax.get_ylabel() == "validation AUC" and loss_ax.get_ylabel() == "validation logloss"
    with pytest.raises(ValueError, match="fits"):
        plots.plot_learning_curves({"M": SimpleNamespace(history=h, best_epoch=1)}, ["gauc"])


def test_diagram_helpers_draw_a_box_with_centred_text_and_an_arrow():
    import matplotlib.pyplot as plt
    from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

    from recbook.plots import diagram_arrow, diagram_axes, diagram_box

    ax = diagram_axes(None, (4, 3), (0, 100), (-5, 50))
    assert ax.get_xlim() == (0, 100) and ax.get_ylim() == (-5, 50) and not ax.axison
    diagram_box(ax, 10, 20, 30, 6, "MLP", "#EAEAF2", size=11)
    diagram_arrow(ax, 40, 23, 60, 23, style="--", head=9)
    box, arrow = ax.patches
    assert isinstance(box, FancyBboxPatch) and isinstance(arrow, FancyArrowPatch)
    assert (box.get_x(), box.get_y(), box.get_width(), box.get_height()) == (10, 20, 30, 6)
    (text,) = ax.texts
    assert text.get_text() == "MLP" and text.get_position() == (25, 23) and text.get_fontsize() == 11
    assert arrow.get_linestyle() == "--"
    plt.close(ax.figure)


def test_diagram_fields_table_draws_one_box_arrow_and_table_block_per_field():
    import matplotlib.pyplot as plt
    from matplotlib.patches import FancyArrowPatch, FancyBboxPatch, Rectangle

    from recbook.plots import diagram_axes, diagram_fields_table

    ax = diagram_axes(None, (4, 3), (0, 100), (0, 54))
    diagram_fields_table(ax, ["user_id", "genres", "zip1"], top=49, table_x=26, table_w=18, row_label="{} rows")
    kinds = [type(p) for p in ax.patches]
    assert kinds.count(FancyBboxPatch) == 3 and kinds.count(FancyArrowPatch) == 3 and kinds.count(Rectangle) == 3
    texts = [t.get_text() for t in ax.texts]
    assert "genres (mean)" in texts and "zip1 rows" in texts and "one shared table" in texts
    blocks = [p for p in ax.patches if type(p) is Rectangle]
    assert all(b.get_x() == 26 and b.get_width() == 18 for b in blocks)
    tops = sorted(b.get_y() + b.get_height() for b in blocks)
    assert tops[-1] == pytest.approx(48) and tops[0] > 0        # the blocks stack down from top - 1
    plt.close(ax.figure)

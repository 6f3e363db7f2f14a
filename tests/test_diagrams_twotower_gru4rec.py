"""Architecture diagrams of the two-tower and GRU4Rec chapters: what they name, that their text is
readable at the page's width (9 pt or more on a 7.2-inch figure) and stays inside its box, and
that every field has its arrow."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch  # noqa: E402

from recbook.chapters import gru4rec, twotower  # noqa: E402


@pytest.fixture(autouse=True)
def _close():
    yield
    plt.close("all")


def boxed_texts(ax):
    """(text, its box) for every text whose centre lies in a box; also the texts in no box."""
    fig = ax.figure
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    boxes = [p for p in ax.patches if isinstance(p, FancyBboxPatch)]
    inside, free = [], []
    for t in ax.texts:
        bb = t.get_window_extent(renderer)
        cx, cy = (bb.x0 + bb.x1) / 2, (bb.y0 + bb.y1) / 2
        owner = [p for p in boxes if p.get_window_extent(renderer).contains(cx, cy)]
        (inside if owner else free).append((t, bb, owner[0].get_window_extent(renderer) if owner else None))
    return inside, free


def check_readable(ax):
    assert ax.figure.get_figwidth() <= 7.2 + 1e-9
    for t in ax.texts:
        assert t.get_fontsize() >= 9, (t.get_text(), t.get_fontsize())
    inside, free = boxed_texts(ax)
    for t, bb, box in inside:
        assert box.x0 <= bb.x0 and bb.x1 <= box.x1 and box.y0 <= bb.y0 and bb.y1 <= box.y1, t.get_text()
    fig_bb = ax.figure.bbox
    for t, bb, _ in free:                                   # notes stay on the figure
        assert fig_bb.x0 <= bb.x0 and bb.x1 <= fig_bb.x1 and fig_bb.y0 <= bb.y0 and bb.y1 <= fig_bb.y1, t.get_text()
    return inside


def test_twotower_diagram_names_every_field_with_an_arrow_and_reads_at_page_width():
    ax = twotower.plot_twotower_architecture(("user_id", "gender"), ("item_id", "genres"), history_len=5,
                                             hidden=(32,), out_dim=8, temperature=0.1)
    texts = [t.get_text() for t in ax.texts]
    for name in ("user_id", "gender", "last 5 items (mean)", "item_id", "genres (mean)", "MLP\n32-8"):
        assert name in texts, name
    assert any("τ = 0.1" in t for t in texts)
    arrows = [p for p in ax.patches if isinstance(p, FancyArrowPatch)]
    # one per field box (3 user + 2 item), concat -> MLP -> normalise on each side (2 x 2), two into the logit
    assert len(arrows) == 5 + 4 + 2
    inside = check_readable(ax)
    assert {t.get_text() for t, _, _ in inside} >= {"user_id", "gender", "item_id", "genres (mean)"}


def test_twotower_diagram_defaults_are_the_leaderboard_model():
    ax = twotower.plot_twotower_architecture()
    texts = [t.get_text() for t in ax.texts]
    assert "last 3 items (mean)" in texts and "MLP\n128-64" in texts and any("τ = 0.2" in t for t in texts)
    assert sum(isinstance(p, FancyArrowPatch) for p in ax.patches) == 6 + 3 + 4 + 2
    check_readable(ax)
    no_history = twotower.plot_twotower_architecture(history_len=None)
    assert not any("items (mean)" in t.get_text() for t in no_history.texts)


@pytest.mark.parametrize("kwargs, match", [(dict(user_fields=()), "user_fields"), (dict(history_len=0), "history_len"),
                                           (dict(hidden=(0,)), "hidden"), (dict(temperature=0), "temperature"),
                                           (dict(out_dim=-1), "out_dim")])
def test_twotower_diagram_refuses_bad_settings(kwargs, match):
    with pytest.raises(ValueError, match=match):
        twotower.plot_twotower_architecture(**kwargs)


@pytest.mark.parametrize("n_steps", [2, 3, 4])
def test_gru4rec_diagram_unrolls_the_session(n_steps):
    ax = gru4rec.plot_gru4rec_architecture(n_steps, hidden=64)
    texts = [t.get_text() for t in ax.texts]
    assert texts.count("GRU (64)") == n_steps and texts.count("row of W") == n_steps
    sub = str.maketrans("0123456789", "₀₁₂₃₄₅₆₇₈₉")
    assert f"target i{n_steps + 1}".translate(sub) in texts and "h₀ = 0" in texts
    assert "r₁ = W h₁ + b" in texts
    # per step: item -> lookup -> GRU -> scores -> target (4) and the state into the GRU (1)
    assert sum(isinstance(p, FancyArrowPatch) for p in ax.patches) == 5 * n_steps
    check_readable(ax)


def test_gru4rec_diagram_untied_and_bad_input():
    ax = gru4rec.plot_gru4rec_architecture(tied=False)
    assert "input embedding" in [t.get_text() for t in ax.texts]
    check_readable(ax)
    for bad in (1, 5, 2.5):
        with pytest.raises(ValueError, match="n_steps"):
            gru4rec.plot_gru4rec_architecture(bad)
    with pytest.raises(ValueError, match="hidden"):
        gru4rec.plot_gru4rec_architecture(hidden=0)


def test_the_readability_check_catches_overflow_and_small_text():
    from recbook.plots import diagram_axes, diagram_box

    ax = diagram_axes(None, (7.2, 3), (0, 100), (0, 40))
    diagram_box(ax, 10, 10, 6, 4, "a text far too long for its box", "#EAEAF2", 9)
    with pytest.raises(AssertionError):
        check_readable(ax)
    ax = diagram_axes(None, (7.2, 3), (0, 100), (0, 40))
    diagram_box(ax, 10, 10, 30, 4, "small", "#EAEAF2", 7)
    with pytest.raises(AssertionError):
        check_readable(ax)

"""The matrix-factorization chapter's helpers: the two-field restriction of the CTR rows, the FM
read as MF, and catalogue scoring by dot products."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from recbook.chapters import mf as chapter
from recbook.data import Field, Schema, TensorData
from recbook.models import FactorizationMachine
from recbook.train import seed_everything

SCHEMA = Schema((Field("user_id", (10, 11, 12), role="user"), Field("item_id", (20, 21, 22, 23), role="item"),
                 Field("gender", ("F", "M"), role="user"),
                 Field("genres", ("a", "b"), multi=True, max_len=2, role="item")))


def rows(n=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.stack([torch.randint(2, 5, (n,), generator=g), torch.randint(2, 6, (n,), generator=g),
                     torch.randint(2, 4, (n,), generator=g)], dim=1)
    return TensorData(x=x, genres=torch.full((n, 2), 2), label=torch.ones(n), user=x[:, 0])


DATA = SimpleNamespace(schema=SCHEMA, train=rows(seed=0), valid=rows(seed=1), test=rows(seed=2))


def random_mf(schema, seed=0):
    seed_everything(seed)
    fm = FactorizationMachine(schema, dim=3, init_std=0.5)
    with torch.no_grad():
        fm.linear.weights.table.weight.normal_(0, 0.5)
        fm.linear.bias.fill_(0.3)
    return fm


def test_two_field_data_keeps_the_named_columns_labels_and_users():
    two = chapter.two_field_data(DATA)
    assert two.schema.names == ["user_id", "item_id"]
    assert torch.equal(two.test["x"], DATA.test["x"][:, :2])
    assert set(two.train) == {"x", "label", "user"}
    swapped = chapter.two_field_data(DATA, ["gender", "user_id"])
    assert torch.equal(swapped.valid["x"], DATA.valid["x"][:, [2, 0]])


@pytest.mark.parametrize("fields, match", [(["user_id"], "at least two"), ("user_id", "at least two"),
                                           (["user_id", "user_id"], "distinct"), (["user_id", "age"], "no field"),
                                           (["user_id", "genres"], "multi-valued")])
def test_two_field_data_refuses_bad_fields(fields, match):
    with pytest.raises(ValueError, match=match):
        chapter.two_field_data(DATA, fields)


def test_mf_parameters_give_the_fm_logit_by_hand():
    two = chapter.two_field_data(DATA)
    fm = random_mf(two.schema)
    p = chapter.mf_parameters(fm)
    assert p.P.shape == (5, 3) and p.Q.shape == (6, 3) and p.b_user.shape == (5,) and p.b_item.shape == (6,)
    u, i = two.test["x"][:, 0], two.test["x"][:, 1]
    by_hand = p.w0 + p.b_user[u] + p.b_item[i] + (p.P[u] * p.Q[i]).sum(1)
    with torch.no_grad():
        assert torch.allclose(fm(two.test), by_hand, atol=1e-6)
    assert by_hand.std() > 0.1


def test_mf_parameters_refuses_an_fm_of_other_fields():
    with pytest.raises(ValueError, match="two single-valued fields"):
        chapter.mf_parameters(FactorizationMachine(SCHEMA, dim=2))
    with pytest.raises(ValueError, match="two single-valued fields"):
        chapter.mf_parameters(torch.nn.Linear(2, 1))


def test_catalogue_scores_differ_from_the_full_logit_by_a_constant():
    two = chapter.two_field_data(DATA)
    fm = random_mf(two.schema, seed=3)
    fm.train()
    codes, full, scores = chapter.catalogue_scores(fm, 3)
    assert codes.tolist() == [2, 3, 4, 5] and fm.training          # every real item; mode restored
    p = chapter.mf_parameters(fm)
    offset = (full - scores).numpy()
    np.testing.assert_allclose(offset, float(p.w0 + p.b_user[3]), atol=1e-6)
    assert torch.equal(torch.argsort(full), torch.argsort(scores))
    codes2, _, scores2 = chapter.catalogue_scores(fm, 3, [5, 2])
    assert torch.allclose(scores2, scores[[3, 0]])


@pytest.mark.parametrize("user, items, match", [(9, None, "user_code"), (True, None, "user_code"),
                                                (2, [7], "item_codes"), (2, [], "item_codes")])
def test_catalogue_scores_refuses_bad_codes(user, items, match):
    fm = random_mf(chapter.two_field_data(DATA).schema)
    with pytest.raises(ValueError, match=match):
        chapter.catalogue_scores(fm, user, items)


def test_mf_diagram_names_both_tables_and_reads_at_page_width():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import FancyArrowPatch
    from test_diagrams_twotower_gru4rec import check_readable

    ax = chapter.plot_mf_architecture()
    try:
        texts = " ".join(t.get_text() for t in ax.texts)
        for name in ("user id", "item id", r"\mathbf{p}_u", r"\mathbf{q}_i", "b_u", "b_i", "dot product", "logit",
                     "w_0"):
            assert name in texts, name
        # id -> vector, id -> bias on each side (4); vectors -> dot product (2); biases and dot -> logit (3)
        assert sum(isinstance(p, FancyArrowPatch) for p in ax.patches) == 4 + 2 + 3
        inside = check_readable(ax)
        assert len(inside) == 8                              # every box's text stays inside its box
    finally:
        plt.close("all")


def test_the_chapter_is_a_lesson_with_mf_from_scratch():
    """The reader's edition: a lesson budget, the architecture figure, MF in plain PyTorch (no
    recbook inside, as long as the summary says) checked against the package's two-field FM with
    ``torch.testing.assert_close`` in a hidden cell, the MovieLens result as a paired interval,
    and the seed-by-seed detail under "Going deeper"."""
    import json

    from book_pages import ROOT, notebook_cells

    path = ROOT / "book" / "mf.ipynb"
    assert json.loads(path.read_text(encoding="utf-8"))["metadata"]["recbook"] == {"lesson_words_max": 3000}
    cells = {c.id: c for c in notebook_cells(path)}
    ids = list(cells)
    assert "remove-input" in cells["architecture"].tags and "plot_mf_architecture" in cells["architecture"].source
    scratch = cells["mf-scratch"]
    assert scratch.visible_code and "recbook" not in scratch.source
    n_lines = len(scratch.source.strip().splitlines())
    assert f"an MF of {n_lines} lines" in cells["summary"].source and f"{n_lines} 行 MF" in cells["summary-zh"].source
    check = cells["fm-equal-check"]
    assert "remove-cell" in check.tags and "torch.testing.assert_close(from_scratch, package)" in check.source
    assert "comparison_table" in cells["ml-fit"].source and "remove-cell" in cells["ml-claims-check"].tags
    assert cells["ml-deeper-md"].source.startswith("### Going deeper")
    assert "data-metrics" in cells["equations-md"].source
    order = ["intro", "equations-md", "architecture", "mf-scratch", "fm-equal", "ml-fit", "seen-new", "summary",
             "summary-zh", "ex-head"]
    assert [ids.index(i) for i in order] == sorted(ids.index(i) for i in order)

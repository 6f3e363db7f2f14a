"""Helpers of the two-tower chapter: negative exposure, popularity bands, top-K with exclusion,
the per-band breakdown, the temperature sweep and the retrieved-lists table and widget."""
from __future__ import annotations

from types import SimpleNamespace

import matplotlib

matplotlib.use("Agg")

import ipywidgets as ipw  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from test_models_twotower import make_ml, make_seq  # noqa: E402

from recbook.chapters import twotower as chapter  # noqa: E402
from recbook.data.retrieval import retrieval_data, tower_features  # noqa: E402
from recbook.models.twotower import TwoTower  # noqa: E402
from recbook.retrieval import evaluate_retrieval  # noqa: E402


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


@pytest.fixture(scope="module")
def data():
    ml = make_ml(n_users=12, n_items=30)
    return retrieval_data(make_seq(ml, [5, 3, 8, 4, 6, 7, 3, 9, 5, 4, 6, 10]), tower_features(ml), history_len=4)


def random_model(data, seed):
    torch.manual_seed(seed)
    model = TwoTower(data.features, dim=8, hidden=(16,), out_dim=8)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.3)
    return model.eval()


def test_negative_exposure_counts_every_negative_use(data):
    items = data.train["item_id"]
    table = chapter.negative_exposure(data, batch_size=8, seed=3)
    # Brute force: the same permutation, every (row, column) pair of each batch.
    order = torch.randperm(len(items), generator=torch.Generator().manual_seed(3))
    want = np.zeros(data.features.n_items)
    for a in range(0, len(items), 8):
        b = items[order[a:a + 8]].tolist()
        for i, pos in enumerate(b):
            for j, cand in enumerate(b):
                if j != i and cand != pos:
                    want[cand] += 1
    got = table.set_index("code")["negatives"]
    np.testing.assert_array_equal(got.reindex(range(2, data.features.n_items)).to_numpy(), want[2:])
    assert table["positives"].sum() == len(items) and table["positives"].is_monotonic_decreasing
    assert table["uniform"].iloc[0] == pytest.approx(want.sum() / (data.features.n_items - 2))
    # without masking, each column is a negative for every other row
    unmasked = chapter.negative_exposure(data, batch_size=len(items), mask_hits=False).set_index("code")
    np.testing.assert_array_equal(unmasked["negatives"], unmasked["positives"] * (len(items) - 1))
    ax = chapter.plot_negative_exposure(table)
    assert len(ax.collections[0].get_offsets()) == (table["positives"] > 0).sum()


def test_frequency_estimates_approach_the_counted_rate():
    # 400 examples over 4 items (shares 0.5, 0.25, 0.15, 0.1); batches of 40; many epochs
    items = torch.tensor([2] * 200 + [3] * 100 + [4] * 60 + [5] * 40)
    fake = SimpleNamespace(train={"item_id": items}, valid=None, test=None, item_counts=None,
                           features=SimpleNamespace(n_items=6))
    table = chapter.frequency_estimates(fake, batch_size=40, epochs=200, alpha=0.01).set_index("code")
    np.testing.assert_allclose(table["counted"], [20, 10, 6, 4])
    np.testing.assert_allclose(table["estimated"], table["counted"], rtol=0.1)
    ax = chapter.plot_frequency_estimates(table)
    assert len(ax.collections[0].get_offsets()) == 4


def test_popularity_bands_split_interactions_in_thirds():
    bands = chapter.popularity_bands(np.array([0, 0, 50, 30, 10, 10, 0]))
    # item 2 alone holds half the interactions (head); 3 starts after 50% (torso); the rest: tail
    np.testing.assert_array_equal(bands, [-1, -1, 0, 1, 2, 2, 2])
    even = chapter.popularity_bands(np.r_[0, 0, np.ones(9)])
    np.testing.assert_array_equal(even[2:], [0, 0, 0, 1, 1, 1, 2, 2, 2])
    with pytest.raises(ValueError, match="item_counts"):
        chapter.popularity_bands(np.zeros(5))


def test_top_k_items_equal_brute_force_with_exclusion():
    rng = np.random.default_rng(0)
    scores = rng.random((6, 15))
    scores[:, :2] = 9.0
    exclude = [rng.choice(np.arange(2, 15), 4, replace=False) for _ in range(6)]
    got = chapter.top_k_items(scores, exclude, 5)
    for u in range(6):
        cands = [j for j in range(2, 15) if j not in set(exclude[u].tolist())]
        want = sorted(cands, key=lambda j: -scores[u, j])[:5]
        assert got[u].tolist() == want


def test_popularity_breakdown_agrees_with_evaluation(data):
    models = {"a": random_model(data, 0), "b": random_model(data, 1)}
    table = chapter.popularity_breakdown(models, data, split="test", k=5)
    for name, model in models.items():
        t = table[table["model"] == name].set_index("band")
        assert t.loc["all", "recall"] == pytest.approx(evaluate_retrieval(model, data.test, ks=(5,))["recall@5"])
        assert t.loc[list(chapter.BANDS), "slot_share"].sum() == pytest.approx(1.0)
        assert t.loc[list(chapter.BANDS), "targets"].sum() == len(data.test)
        # recall overall is the targets-weighted mean of the bands' recalls
        b = t.loc[list(chapter.BANDS)].dropna()
        assert (b["recall"] * b["targets"]).sum() / b["targets"].sum() == pytest.approx(t.loc["all", "recall"])
    axes = chapter.plot_popularity_breakdown(table)
    assert len(axes) == 2 and len(axes[0].patches) == 2 * len(chapter.BANDS)


def test_temperature_sweep_has_one_row_per_run(data):
    table = chapter.temperature_sweep(data, [0.05, 0.5], seeds=(0,), epochs=2, batch_size=16, dim=4, hidden=(),
                                      out_dim=4, metric="recall@10")
    assert list(table["temperature"]) == [0.05, 0.5]
    scores = table[["valid_recall@10", "test_recall@10"]].to_numpy()
    assert ((scores >= 0) & (scores <= 1)).all()
    ax = chapter.plot_temperature_sweep(table, "recall@10")
    assert len(ax.lines) == 2
    with pytest.raises(ValueError, match="temperatures"):
        chapter.temperature_sweep(data, [0.0])


def test_retrieval_table_lists_history_and_top_k(data):
    models = {"logQ on": random_model(data, 0), "logQ off": random_model(data, 1)}
    users = [3, 7]
    table = chapter.retrieval_table(models, data, users, k=4, history=3)
    for u in users:
        row = int(np.flatnonzero(data.test.users["user_id"].numpy() == u + 1)[0])
        hist = data.test.users["hist_item"][row].numpy()
        hist = hist[hist > 0][::-1][:3]
        got = table[(table["user"] == u) & (table["list"] == "history")]
        assert got["code"].tolist() == hist.tolist()
        for name in models:
            top = table[(table["user"] == u) & (table["list"] == name)]
            assert top["position"].tolist() == [1, 2, 3, 4]
            assert not set(top["code"]) & set(data.test.exclude[row].tolist())
            assert top["is_target"].tolist() == [c == int(data.test.targets[row]) for c in top["code"]]
    assert table["title"].str.len().gt(0).all()
    box = chapter.retrieval_widget(table)
    assert isinstance(box.stack, ipw.Stack) and len(box.stack.children) == 2
    with pytest.raises(ValueError, match="user_id: raw id 99"):
        chapter.retrieval_table(models, data, [99])
    with pytest.raises(ValueError, match="models"):
        chapter.retrieval_table({}, data, users)

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


# --------------------------------------------------------------------------------------------
# Results read from the committed files
# --------------------------------------------------------------------------------------------

def fake_results():
    import pandas as pd

    rows = []
    for m, base in (("Pop-retrieval", 0.2), ("ItemKNN-retrieval", 0.3), ("TwoTower", 0.38), ("TwoTower-logQ", 0.5)):
        for seed in (0, 1, 2):
            row = {"model": m, "protocol": "retrieval", "seed": seed}
            for k in (10, 20, 50, 100):
                row[f"test_recall@{k}"] = base * k / 50 + 0.01 * seed
                row[f"test_ndcg@{k}"] = base / 3 + 0.001 * seed
            rows.append(row)
    rows.append({"model": "LR", "protocol": "ctr", "seed": 0, "test_auc": 0.7})
    return pd.DataFrame(rows)


def test_retrieval_results_is_the_long_form_of_the_test_metrics():
    long = chapter.retrieval_results(fake_results())
    assert len(long) == 4 * 3 * 8 and set(long["metric"]) == {"recall", "ndcg"}
    one = long[(long["model"] == "TwoTower") & (long["seed"] == 2) & (long["metric"] == "recall") & (long["k"] == 20)]
    assert one["value"].item() == pytest.approx(0.38 * 20 / 50 + 0.02)
    with pytest.raises(ValueError, match="TwoTower-logQ"):
        chapter.retrieval_results(fake_results().query("model != 'TwoTower-logQ'"))


def test_results_chart_checks_carry_the_python_means():
    chart = chapter.results_chart(chapter.retrieval_results(fake_results()))
    checks = chart.to_dict()["usermeta"]["recbook"]["checks"]
    first = checks[0]
    assert first["set"] == {"metric": "recall", "k": 50}
    assert first["texts"] == ["0.210", "0.310", "0.390", "0.510"]  # base + mean of 0, 0.01, 0.02


def fake_ann():
    import pandas as pd

    rows = []
    for n, exact in ((1000, 1.0), (10000, 10.0)):
        rows.append({"dataset": "clustered", "n": n, "dim": 8, "method": "exact", "param_name": "-", "param": "-",
                     "build_s": 0.0, "query_s": exact, "recall": 1.0})
        for p, r, q in ((1, 0.9, 0.05), (4, 0.991, 0.2), (16, 0.999, 0.5)):
            rows.append({"dataset": "clustered", "n": n, "dim": 8, "method": "ivf", "param_name": "nprobe",
                         "param": str(p), "build_s": 1.0, "query_s": q * n / 1000, "recall": r})
        rows.append({"dataset": "clustered", "n": n, "dim": 8, "method": "hnsw", "param_name": "ef_search",
                     "param": "64", "build_s": 2.0, "query_s": 0.1, "recall": 0.95})
    t = pd.DataFrame(rows)
    t["speedup"] = t.groupby("n")["query_s"].transform(lambda s: s.iloc[0]) / t["query_s"]
    return t


def test_ann_summary_keeps_the_fastest_setting_that_reaches_the_target():
    best = chapter.ann_summary(fake_ann())
    assert best["method"].tolist() == ["ivf", "ivf"]  # HNSW never reaches 0.99 here
    assert best["param"].tolist() == ["4", "4"]
    assert best["speedup"].tolist() == pytest.approx([5.0, 5.0])


def test_ann_chart_names_each_size_s_best_speedup():
    chart = chapter.ann_chart(fake_ann())
    checks = chart.to_dict()["usermeta"]["recbook"]["checks"]
    assert [c["set"] for c in checks] == [{"n": 1000}, {"n": 10000}]
    assert checks[0]["texts"] == ["ivf: 5× faster than exact at recall ≥ 0.99"]


def test_sweep_entries_change_only_the_temperature_of_the_leaderboard_entries():
    from recbook import bench

    entries = chapter.sweep_entries((0.1, 0.5))
    assert [e.name for e in entries] == ["TwoTower-t0.1", "TwoTower-t0.5", "TwoTower-logQ-t0.1", "TwoTower-logQ-t0.5"]
    assert not {e.name for e in entries} & set(bench.REGISTRY)            # evidence, not leaderboard
    for e in entries:
        base = bench.REGISTRY[e.name.rsplit("-t", 1)[0]]
        changed = {k for k in {*e.params, *base.params} if e.params.get(k) != base.params.get(k)}
        assert changed <= {"temperature"} and e.fit == base.fit and e.train_data is base.train_data
    assert entries[2].params["correction"] == "counts" and "correction" not in entries[0].params
    for bad in ([], [0.1, -1.0], [0.1, 0.1]):
        with pytest.raises(ValueError, match="temperatures"):
            chapter.sweep_entries(bad)


def test_selected_temperatures_by_hand():
    import pandas as pd

    table = pd.DataFrame({"temperature": [0.1, 0.2, 0.5, 0.1, 0.2, 0.5],
                          "logq": [False, False, False, True, True, True],
                          "valid_recall@50": [0.30, 0.35, 0.31, 0.52, 0.50, 0.52]})
    assert chapter.selected_temperatures(table) == {False: 0.2, True: 0.1}   # tie: the lower one


def test_committed_temperature_sweep_matches_its_entries():
    from recbook import bench

    rows = bench.read_results(chapter.SWEEP_FILE)
    entries = chapter.sweep_entries()
    assert len(rows) == len(entries) == 10 and set(rows["model"]) == {e.name for e in entries}
    assert set(rows["seed"]) == {0} and not rows["quick"].astype(bool).any()
    for e in entries:
        mine = rows[rows["model"] == e.name].iloc[0]
        assert mine["fingerprint"] == bench.fingerprint(e), f"{e.name}: re-run chapter.run_temperature_sweep()"
        assert mine["temperature"] == e.params["temperature"]
        assert bool(mine["logq"]) == ("correction" in e.params)
    assert rows[["valid_recall@50", "test_recall@50"]].notna().all().all()


def test_encode_vectors_by_hand_and_back():
    assert chapter.encode_vectors([[0.0, 0.001, -1.352, 1.351]]) == ["aAaBAAzz"]
    assert chapter.encode_vectors(np.array([[0.0524]])) == ["bA"]          # 52 + 1352 = 1404 = 27 * 52
    x = np.random.default_rng(0).uniform(-1, 1, size=(50, 6))
    np.testing.assert_allclose(chapter.decode_vectors(chapter.encode_vectors(x)), x, atol=5e-4 + 1e-12)
    with pytest.raises(ValueError, match="components"):
        chapter.encode_vectors([[1.4]])
    with pytest.raises(ValueError, match="strings"):
        chapter.decode_vectors(["a1"])


def test_dot_expression_evaluates_to_the_dot_product():
    # the browser's expression, evaluated with Python stand-ins for Vega's indexof and substring
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(2, 5))
    a, b = a / np.linalg.norm(a), b / np.linalg.norm(b)
    expr = chapter._dot_expr("iv", "uv", 5)
    env = {"indexof": lambda s, c: s.find(c), "substring": lambda s, i, j: s[i:j],
           "datum": SimpleNamespace(iv=chapter.encode_vectors([a])[0], uv=chapter.encode_vectors([b])[0])}
    assert abs(eval(expr, env) - float(a @ b)) < 5e-3


@pytest.fixture(scope="module")
def ml100k():
    from recbook.data import load_movielens100k, sequence_protocol

    return sequence_protocol(load_movielens100k(progress=False))


def test_user_retrieval_chart_checks_equal_a_brute_force_ranking(ml100k):
    import dataclasses
    import io

    import pandas as pd

    from recbook import widgets
    from recbook.bench import REGISTRY

    data = ml100k
    models = {}
    for on, name in ((True, "TwoTower-logQ"), (False, "TwoTower")):
        e = dataclasses.replace(REGISTRY[name], params=dict(REGISTRY[name].params, dim=8, hidden=(8,), out_dim=8))
        torch.manual_seed(3 if on else 4)
        models[on] = e.build(data)
    users = [1, 7, 13, 200, 405, 655, 880, 943]
    chart = chapter.user_retrieval_chart(models, data, users)
    assert widgets.spec_bytes(chart.spec) < widgets.MAX_SPEC_BYTES
    checks = chart.spec["usermeta"]["recbook"]["checks"]
    assert checks and {c["set"]["tau"] for c in checks} == {0.05, 1.0}
    seen = data.seen("test")
    frame = data.catalogue.frame
    titles = frame["title"].astype(str).to_numpy()
    twice = frame["title"].iloc[2:].duplicated(keep=False).to_numpy()
    titles[2:][twice] = [f"{t} (#{i})" for t, i in zip(titles[2:][twice], frame["item_id"].iloc[2:][twice])]
    p_top = {}
    for c in checks:
        u, on, tau = c["set"]["user"], c["set"]["logq"], c["set"]["tau"]
        r = int(np.flatnonzero(data.users == u)[0])
        m = models[on]
        with torch.no_grad():
            logits = m.score_items(data, "test")[r].double().numpy() * m.temperature   # cosines
        logits[:2] = -np.inf
        logits[seen[r]] = -np.inf
        order = np.argsort(-logits, kind="stable")
        ok = np.isfinite(logits)
        p = np.exp(logits[order[:10]] / tau) / np.exp(logits[ok] / tau).sum()
        p_top[u, on, tau] = p[0]
        assert c["texts"] == ([f"{i}. {titles[order[i - 1]]}" for i in (1, 2, 3)] + [f"{p[0]:.1%}"]
                              + [f"The 10 movies below hold {p.sum():.1%} of the probability at τ = {tau:.2f}"])
    # the probability axis does not rescale with the temperature: it is fixed, and covers the
    # largest top-movie probability (reached at the lowest temperature)
    def scales(spec):
        if isinstance(spec, dict):
            if spec.get("field") == "p" and "scale" in spec:
                yield spec["scale"]
            for v in spec.values():
                yield from scales(v)
        elif isinstance(spec, list):
            for v in spec:
                yield from scales(v)
    domains = [sc.get("domain") for sc in scales(chart.spec)]
    assert domains and all(d is not None and d[0] == 0 for d in domains)
    assert max(p_top.values()) <= domains[0][1] < max(p_top.values()) + 0.05 + 1e-9
    # the same user and setting rank the same titles at both temperatures
    for a, b in zip(checks[::2], checks[1::2]):
        assert a["set"]["user"] == b["set"]["user"] and a["texts"][:3] == b["texts"][:3]
    # what the page carries: each user's top 10 with its cosines, and log Σ exp(cos / τ) over the
    # user's unseen movies for every step of the slider, both against brute force
    top = pd.read_csv(io.StringIO(chart.spec["datasets"]["tt_top"]))
    lse = pd.read_csv(io.StringIO(chart.spec["datasets"]["tt_lse"])).set_index("key")["lse"]
    assert len(top) == len(users) * 2 * 10 and len(lse) == len(users) * 2 * 20
    for (u, on), rows in top.groupby(["user", "logq"]):
        r = int(np.flatnonzero(data.users == u)[0])
        m = models[bool(on)]
        with torch.no_grad():
            cos = m.score_items(data, "test")[r].double().numpy() * m.temperature
        cos[:2] = -np.inf
        cos[seen[r]] = -np.inf
        assert rows["rank"].tolist() == list(range(1, 11))
        np.testing.assert_allclose(rows["cos"] / chapter.COS_SCALE, cos[rows["code"]], atol=5e-5 + 1e-6)
        assert (np.diff(rows["cos"]) <= 0).all()
        assert set(rows["code"]) <= set(np.argsort(-cos, kind="stable")[:11].tolist())   # the top, up to ties
        q = np.rint(cos[np.isfinite(cos)] * chapter.COS_SCALE) / chapter.COS_SCALE
        for tau in (0.05, 0.35, 1.0):
            want = np.log(np.exp(q / tau - (q / tau).max()).sum()) + (q / tau).max()
            assert lse[f"{u}|{on}|{tau:.2f}"] == pytest.approx(want, abs=2e-6)
    with pytest.raises(ValueError, match="users"):
        chapter.user_retrieval_chart(models, data, [99999])
    with pytest.raises(ValueError, match="models"):
        chapter.user_retrieval_chart({True: models[True]}, data, users)


def test_temperature_mass_by_hand(ml100k):
    import dataclasses

    from recbook.bench import REGISTRY

    data = ml100k
    models = {}
    for on, name in ((True, "TwoTower-logQ"), (False, "TwoTower")):
        e = dataclasses.replace(REGISTRY[name], params=dict(REGISTRY[name].params, dim=8, hidden=(8,), out_dim=8))
        torch.manual_seed(5 if on else 6)
        models[on] = e.build(data).eval()
    users = [1, 7, 13]
    table = chapter.temperature_mass(models, data, users, (0.05, 1.0), k=10)
    assert len(table) == 4
    seen = data.seen("test")
    for _, row in table.iterrows():
        m = models[row["logq"]]
        p1, p10 = [], []
        for u in users:
            r = int(np.flatnonzero(data.users == u)[0])
            with torch.no_grad():
                cos = m.score_items(data, "test")[r].double().numpy() * m.temperature
            cos[:2] = -np.inf
            cos[seen[r]] = -np.inf
            p = torch.softmax(torch.from_numpy(cos / row["tau"]), 0).numpy()
            top = np.sort(p)[::-1]
            p1.append(top[0])
            p10.append(top[:10].sum())
        assert row["top 1 min"] == pytest.approx(min(p1)) and row["top 1 max"] == pytest.approx(max(p1))
        assert row["top 10 min"] == pytest.approx(min(p10)) and row["top 10 max"] == pytest.approx(max(p10))
    # a lower temperature concentrates the mass
    for on in (True, False):
        t = table[table["logq"] == on].set_index("tau")
        assert t.loc[0.05, "top 10 max"] > t.loc[1.0, "top 10 max"]
    with pytest.raises(ValueError, match="users"):
        chapter.temperature_mass(models, data, [99999])


def test_movielens_repeated_titles_are_told_apart_in_the_chart_titles(ml100k):
    titles = chapter._catalogue_titles(ml100k)[2:]
    assert len(set(titles)) == len(titles)                      # every movie's label is unique
    frame = ml100k.catalogue.frame.set_index("item_id")
    assert frame.loc[246, "title"] == frame.loc[268, "title"] == "Chasing Amy"
    assert {"Chasing Amy (#246)", "Chasing Amy (#268)", "Toy Story"} <= set(titles)
    assert "Chasing Amy" not in set(titles)


def test_the_chapter_is_a_lesson_with_the_towers_from_scratch():
    """The reader's edition of the chapter: a lesson budget; the towers and the loss written in plain
    PyTorch (no recbook inside) before the planted experiment, with a hidden cell that loads the
    package's weights into them and compares logits and loss; the lesson's parts in order; and
    the code exercise's solution runs, with its claims checked."""
    import json

    from book_pages import ROOT, notebook_cells

    path = ROOT / "book" / "twotower.ipynb"
    assert json.loads(path.read_text(encoding="utf-8"))["metadata"]["recbook"] == {"lesson_words_max": 3000}
    cells = {c.id: c for c in notebook_cells(path)}
    ids = list(cells)
    scratch = cells["scratch"]
    assert scratch.visible_code and "recbook" not in scratch.source
    assert "class TwoTowers(nn.Module)" in scratch.source and "def in_batch_softmax_loss" in scratch.source
    assert 20 <= len([line for line in scratch.source.splitlines() if line.strip()]) <= 40
    check = cells["scratch-check"]
    assert "remove-cell" in check.tags
    for needle in ("torch.testing.assert_close", "load_state_dict", "REGISTRY[\"TwoTower-logQ\"].build", "loss_fn("):
        assert needle in check.source, needle
    lesson = ["intro", "towers-md", "architecture", "logq-md", "scratch", "planted", "results-table", "widget",
              "wrong", "summary", "summary-zh", "ex-head"]
    assert [ids.index(i) for i in lesson] == sorted(ids.index(i) for i in lesson)
    assert "data-metrics" in cells["protocol-md"].source
    for heading in ("temperature-md", "index-md", "planted-seeds-deeper", "widget-mass-md", "towers-source-md"):
        assert "Going deeper" in cells[heading].source.splitlines()[0], heading
    sol = ["sol-stream", "sol-stream-code", "sol-stream-check", "sol-stream-end"]
    assert [ids.index(i) for i in sol] == list(range(ids.index("sol-stream"), ids.index("sol-stream") + 4))
    assert "{solution-start} twotower-ex-stream" in cells["sol-stream"].source
    assert cells["sol-stream-code"].visible_code and "remove-cell" in cells["sol-stream-check"].tags

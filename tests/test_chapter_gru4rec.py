"""recbook.chapters.gru4rec: the listing's claims checked on the listing, the padded GRU reads no
padding and trains at every step, the slot table follows the slots, the tie rules differ only
within a second, and the next-item chart ranks in the browser as the model does."""
from __future__ import annotations

from types import SimpleNamespace

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from recbook.chapters import gru4rec as chapter  # noqa: E402
from recbook.models.baselines import MostPopular  # noqa: E402
from recbook.models.gru4rec import GRU4RecConfig  # noqa: E402
from recbook.next_item import next_item_split  # noqa: E402
from recbook.train import fit  # noqa: E402


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def tiny_ml():
    """Six users, eight movies; users 1 and 2 rate their last two movies in the same second, in
    the file in decreasing item-id order."""
    t0 = pd.Timestamp("1998-01-01")
    rows = []
    for u in range(1, 7):
        items = [(u + k) % 8 + 1 for k in range(5)]
        ts = [t0 + pd.Timedelta(seconds=10 * k) for k in range(5)]
        if u in (1, 2):
            ts[-1] = ts[-2]
            if items[-1] > items[-2]:
                items[-1], items[-2] = items[-2], items[-1]
        rows += [(u, i, 4, t) for i, t in zip(items, ts)]
    ratings = pd.DataFrame(rows, columns=["user_id", "item_id", "rating", "timestamp"])
    items = pd.DataFrame({"item_id": np.arange(1, 9), "title": [f"movie {i}" for i in range(1, 9)]})
    return SimpleNamespace(ratings=ratings, items=items)


def test_source_listing_runs_as_written():
    m = chapter.listing_model(20, 4, 5)
    assert sum(p.numel() for p in m.parameters()) > 0
    assert m(torch.tensor([[3, 4, 5]])).shape == (1, 20)
    assert "super(GRU4Rec, self).__init__()" in chapter.SOURCE_LISTING


def test_listing_checks_report_what_the_listing_does():
    table = chapter.listing_checks([5, 3, 10], num_items=50).set_index("claim")
    assert not table.loc["no super().__init__()", "holds"]  # the listing does call it
    for claim in ("padding read as the last state", "loss only at the last step",
                  "a full softmax over all items", "padding id colliding with item 0"):
        assert table.loc[claim, "holds"], claim
    assert "3 targets per pass instead of 15" in table.loc["loss only at the last step", "evidence"]


def test_super_init_detection_is_not_a_constant():
    assert chapter._calls_super_init(chapter.SOURCE_LISTING)
    assert not chapter._calls_super_init("class A:\n    def __init__(self):\n        self.x = 1\n")


def test_training_signals():
    assert chapter.training_signals([5, 1, 3]) == {"last step only": 2, "every step": 6, "share": 2 / 6}
    with pytest.raises(ValueError, match="^lengths"):
        chapter.training_signals([0, 2])


def test_padded_gru_reads_no_padding_and_trains_on_every_step():
    torch.manual_seed(0)
    m = chapter.PaddedGRU(12, embedding_dim=4, hidden_size=6).eval()
    assert torch.all(m.embedding.weight[0] == 0)
    a = m.score_next([np.array([3, 4, 5])])
    b = m.score_next([np.array([3, 4, 5]), np.array([6, 7, 8, 9, 10, 11, 2])])[0]
    torch.testing.assert_close(a[0], b)  # batching with a longer sequence changes nothing
    # the logits at a window's position t are those of reading its first t + 1 items
    win = chapter.padded_windows([np.array([3, 4, 5, 6])], window=6)
    assert win["items"].tolist() == [[3, 4, 5, 6, 0, 0, 0]]
    with torch.no_grad():
        logits = m(dict(win))
    for t in range(3):
        torch.testing.assert_close(logits[0, t, 2:], m.score_next([np.array([3, 4, 5, 6][: t + 1])])[0, 2:])
    # the loss averages over the 3 real targets only
    targets = torch.tensor([4, 5, 6])
    lp = torch.log_softmax(logits[0, :3].masked_fill(torch.arange(12) < 2, float("-inf")), dim=1)
    want = -lp[torch.arange(3), targets].mean()
    assert chapter.padded_loss(m, dict(win)).item() == pytest.approx(want.item(), rel=1e-5)


def test_padded_windows_cover_every_pair_once():
    seqs = [np.arange(2, 13), np.array([5, 6]), np.array([7])]
    win = chapter.padded_windows(seqs, window=4)["items"].numpy()
    pairs = [(r[t], r[t + 1]) for r in win for t in range(4) if r[t + 1] != 0]
    want = [(s[t], s[t + 1]) for s in seqs for t in range(len(s) - 1)]
    assert sorted(pairs) == sorted(want)


def test_padded_gru_learns_with_fit():
    from recbook.chapters.synthetic import planted_markov_chain
    from recbook.next_item import evaluate_next_item

    chain = planted_markov_chain(n_items=10, n_sequences=80, length=(8, 16), seed=1)
    d = chain.split()
    torch.manual_seed(0)
    m = chapter.PaddedGRU(d.n_items, 16, 16)
    before = evaluate_next_item(m, next_item_split(d, "test"), ks=(3,))["recall@3"]
    fit(m, chapter.padded_windows(d.train, 10), epochs=6, batch_size=16, lr=0.03, loss_fn=chapter.padded_loss,
        evaluate=None, progress=False)
    after = evaluate_next_item(m, next_item_split(d, "test"), ks=(3,))["recall@3"]
    assert after > before + 0.3


def test_slot_table_and_plot():
    t = chapter.slot_table([3, 5, 2, 4], batch_size=2)
    assert t.groupby("sequence").size().to_dict() == {0: 2, 1: 4, 2: 1, 3: 3}
    assert t[t["reset"]]["position"].eq(0).all() and t["reset"].sum() == 4
    # slot 0 reads sequence 0 (2 steps), then 2 (1 step), then 3; slot 1 reads sequence 1
    assert t[t["slot"] == 0]["sequence"].tolist() == [0, 0, 2, 3, 3, 3]
    assert t[t["slot"] == 1]["sequence"].tolist() == [1, 1, 1, 1]
    ax = chapter.plot_slots(t)
    assert len(ax.patches) == len(t)
    with pytest.raises(ValueError, match="^table"):
        chapter.plot_slots(t.drop(columns="reset"))


def test_tie_rules_differ_only_within_a_second():
    ml = tiny_ml()
    a = chapter.leave_last_out_by_tie_rule(ml, "file")
    b = chapter.leave_last_out_by_tie_rule(ml, "item_id")
    assert a.n_items == 10 and a.users.tolist() == [1, 2, 3, 4, 5, 6]
    changed = np.flatnonzero(a.test != b.test).tolist()
    assert changed == [0, 1]  # users 1 and 2: last two ratings in the same second
    assert (a.test[changed] == b.valid[changed]).all() and (a.valid[changed] == b.test[changed]).all()
    # the file order keeps the rows as written: user 1's last row in the file is the test target
    last_rows = ml.ratings.groupby("user_id").tail(1)["item_id"].to_numpy() + 1
    assert a.test.tolist() == last_rows.tolist()
    with pytest.raises(ValueError, match="^ties"):
        chapter.leave_last_out_by_tie_rule(ml, "time")


def test_tie_rule_effect_evaluates_the_same_model_twice():
    ml = tiny_ml()
    d = chapter.leave_last_out_by_tie_rule(ml, "file")
    pop = MostPopular.from_sequences(d.train, d.n_items)
    table = chapter.tie_rule_effect(pop, ml)
    assert list(table.index) == ["file", "item_id"]
    assert table.loc["file", "targets changed"] == 0 and table.loc["item_id", "targets changed"] == 2


def test_widget_payload_ranks_like_the_model():
    ml = tiny_ml()
    d = chapter.leave_last_out_by_tie_rule(ml, "file")
    pop = MostPopular.from_sequences(d.train, d.n_items)
    seqs = chapter.prepared_sequences(ml, {"a": [1, 2], "b": [8]})
    assert seqs == {"a": [2, 3], "b": [9]}
    table = chapter.next_item_table(pop, ml, seqs["a"], k=3)
    scores = pop.score_next([np.array([2, 3])])[0]
    assert table["item_id"].tolist() == (torch.argsort(scores, descending=True, stable=True)[:3] - 1).tolist()
    assert table["share"].between(0, 1).all() and list(table["rank"]) == [1, 2, 3]
    payload = chapter.next_item_payload(pop, ml, seqs, k=3)
    assert payload["a"]["history"] == ["movie 1", "movie 2"] and len(payload["b"]["top"]) == 3
    import json
    json.dumps(payload)  # plain data, ready for the page
    with pytest.raises(ValueError, match="sequences"):
        chapter.prepared_sequences(ml, {"x": [99]})


def _shipped_ranking(spec: dict, k: int) -> dict:
    """What the browser shows, recomputed from the chart's own data and its own score expression:
    ``{(sequence, read): [codes of the top k]}`` and the summary line of each setting."""
    import io

    steps = pd.read_csv(io.StringIO(spec["datasets"]["gru_steps"])).set_index("key")
    items = pd.read_csv(io.StringIO(spec["datasets"]["gru_items"]))
    calc = [t for layer in spec["layer"] for t in layer.get("transform", []) if t.get("as") == "score"][0]
    expr = calc["calculate"].replace("datum.", "d_")
    out = {}
    for key, state in steps.iterrows():
        env = {f"d_{c}": float(v) for c, v in state.items() if c.startswith("h")}
        scores = [eval(expr, {}, {**env, **{f"d_{c}": float(v) for c, v in row.items() if c != "title"}})  # noqa: S307
                  for _, row in items.iterrows()]
        order = np.lexsort((items["code"].to_numpy(), -np.asarray(scores)))[:k]
        top = items["code"].to_numpy()[order].tolist()
        seen = sum(f"|{c}|" in state["read"] for c in top)
        s, t = (int(x) for x in key.split("|"))
        out[s, t] = (top, f"top score {max(scores):.2f} · {seen} of the {k} already read (grey)".replace("-", "\N{MINUS SIGN}"))
    return out


def test_next_item_chart_ranks_in_the_browser_as_the_model_does():
    from recbook import widgets
    from recbook.models.gru4rec import GRU4Rec

    ml = tiny_ml()
    torch.manual_seed(0)
    model = GRU4Rec(10, layers=(6,)).eval()
    with torch.no_grad():
        model.item_bias.normal_()
        model.item_vectors.mul_(3)
    seqs = chapter.prepared_sequences(ml, {"three": [1, 2, 3], "one": [8]})
    chart = chapter.next_item_chart(model, ml, seqs, k=3)
    params = widgets.bound_params(chart.spec)
    assert params["sequence"]["bind"]["options"] == [0, 1] and params["sequence"]["bind"]["labels"] == ["three", "one"]
    assert (params["read"]["bind"]["min"], params["read"]["bind"]["max"], params["read"]["value"]) == (1, 3, 3)
    shown = _shipped_ranking(chart.spec, 3)
    assert sorted(shown) == [(s, t) for s in (0, 1) for t in (1, 2, 3)]
    for (s, t), (top, _) in shown.items():
        codes = list(seqs.values())[s]
        history = np.asarray(codes[: min(t, len(codes))])   # more than its length reads it all
        scores = model.score_next([history])[0]
        assert top == torch.argsort(scores, descending=True, stable=True)[:3].tolist(), (s, t)
    # the browser checks: the summary line, computed with PyTorch, as the browser writes it
    checks = chart.spec["usermeta"]["recbook"]["checks"]
    assert [c["set"] for c in checks] == [{"sequence": 0, "read": 3}, {"sequence": 1, "read": 1}]
    for c in checks:
        assert c["texts"] == [shown[c["set"]["sequence"], c["set"]["read"]][1]]
    with pytest.raises(ValueError, match="^read"):
        chapter.next_item_chart(model, ml, seqs, k=3, read=4)
    with pytest.raises(ValueError, match="^sequence"):
        chapter.next_item_chart(model, ml, seqs, k=3, sequence="two")


def test_next_item_chart_refuses_weights_rounded_too_coarsely():
    from recbook.models.gru4rec import GRU4Rec

    ml = tiny_ml()
    torch.manual_seed(0)
    model = GRU4Rec(10, layers=(6,)).eval()
    with torch.no_grad():
        model.item_bias.copy_(torch.linspace(0, 1e-3, 10)[:, None])   # ties below the rounding
        model.item_vectors.mul_(1e-3)
    with pytest.raises(ValueError, match="^decimals"):
        chapter.next_item_chart(model, ml, chapter.prepared_sequences(ml, {"a": [1, 2]}), k=3, decimals=1)


def test_chapter_page_loads_no_kernel_widgets():
    """The page's live figure is a browser chart: no cell builds an ipywidgets control, whose state
    would make the page load the widget manager."""
    import json
    from pathlib import Path

    nb = json.loads((Path(__file__).resolve().parents[1] / "book" / "gru4rec.ipynb").read_text(encoding="utf-8"))
    code = "\n".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code")
    for name in ("next_item_builder(", "precomputed_slider(", "ipywidgets", "interact("):
        assert name not in code, name
    assert "chapter.next_item_chart(" in code


def test_compare_variants_and_plot():
    from recbook.chapters.synthetic import planted_markov_chain

    d = planted_markov_chain(n_items=10, n_sequences=60, length=(6, 10), seed=0).split()
    base = GRU4RecConfig(layers=(8,), batch_size=16, n_negatives=4, epochs=2, patience=2, lr=0.1)
    res = chapter.compare_variants(d, {"XE": {"loss": "cross-entropy"}, "TOP1-max": {"loss": "top1-max"}}, base,
                                   seeds=(0, 1))
    assert list(res["variant"]) == ["XE", "XE", "TOP1-max", "TOP1-max"]
    assert {"test_recall@20", "valid_recall@20", "cpu_s_per_epoch"} <= set(res.columns)
    axes = chapter.plot_variants(res)
    assert len(axes) == 2 and len(axes[0].patches) == 2
    with pytest.raises(ValueError, match="^variants"):
        chapter.compare_variants(d, {}, base)


def test_seen_share_counts_top_k_slots_spent_on_the_history():
    class Fixed:
        def score_next(self, histories):
            return torch.tensor([[-np.inf, -np.inf, 5.0, 4.0, 3.0, 2.0, 1.0]] * len(histories))

    split = SimpleNamespace(histories=[np.array([2, 3]), np.array([6]), np.array([2])])
    out = chapter.seen_share(Fixed(), split, k=2)  # top 2 = items 2 and 3 for everyone
    assert out == {"mean share": pytest.approx((1.0 + 0.0 + 0.5) / 3), "users with none": pytest.approx(1 / 3)}


def test_file_tie_rule_is_the_protocol_of_the_leaderboard():
    from recbook.data import load_movielens100k, sequence_protocol

    ml = load_movielens100k(progress=False)
    a, b = chapter.leave_last_out_by_tie_rule(ml, "file"), sequence_protocol(ml)
    assert np.array_equal(a.valid, b.valid) and np.array_equal(a.test, b.test) and a.n_items == b.n_items
    assert all(np.array_equal(x, y) for x, y in zip(a.train, b.train))
    c = chapter.leave_last_out_by_tie_rule(ml, "item_id")
    assert 200 < int((c.test != a.test).sum()) < 415  # only users whose last two ratings share a second


def test_loss_entries_change_one_setting_of_the_leaderboard_entries():
    from recbook import bench

    entries = chapter.loss_entries()
    assert len(entries) == 8 and not {e.name for e in entries} & set(bench.REGISTRY)
    reference = {"XE": bench.REGISTRY["GRU4Rec-XE"], "BPRmax": bench.REGISTRY["GRU4Rec-BPRmax"]}
    kinds = {"XE": "cross-entropy", "BPRmax": "bpr-max", "TOP1max": "top1-max"}
    centre = {"n_negatives": 512, "alpha": 0.5}
    for e in entries:
        _, loss, neg, alpha = e.name.split("-")
        assert e.fit["loss_fn"].kind == kinds[loss]
        got = e.train_data.settings
        assert (got["n_negatives"], got["alpha"]) == (int(neg[1:]), float(alpha[1:]))
        ref = reference.get(loss, reference["BPRmax"])
        assert e.params == ref.params
        assert e.fit["epochs"] == chapter.LOSS_EPOCHS <= ref.fit["epochs"]
        assert e.fit["optimizer"].settings == ref.fit["optimizer"].settings
        if loss in reference:
            assert repr(e.fit["loss_fn"]) == repr(ref.fit["loss_fn"])
        # one setting away from the comparison's centre (512 extra negatives, alpha 0.5); the rest of
        # the batches as the leaderboard entries make them
        changed = {k for k in centre if got[k] != centre[k]}
        assert len(changed) <= 1, (e.name, changed)
        assert {k: v for k, v in got.items() if k not in centre} == \
            {k: v for k, v in ref.train_data.settings.items() if k not in centre}
    # the three losses at the centre, and each leaderboard entry trains as one of the configurations
    at_centre = [e.name for e in entries if e.name.endswith("-S512-a0.5")]
    assert len(at_centre) == 3
    assert {chapter.entry_configuration(r.name) for r in reference.values()} <= {e.name for e in entries}


def test_committed_loss_comparison_matches_its_entries_and_the_leaderboard():
    from recbook import bench

    rows = bench.read_results(chapter.LOSSES_FILE)
    entries = chapter.loss_entries()
    assert rows["model"].tolist() == [e.name for e in entries]
    for e in entries:
        row = rows.set_index("model").loc[e.name]
        assert row["fingerprint"] == bench.fingerprint(e), f"{e.name}: re-run chapter.run_loss_comparison()"
        assert row["seed"] == 0 and 1 <= row["best_epoch"] <= row["epochs"] <= chapter.LOSS_EPOCHS
        for split in ("valid", "test"):
            assert 0 < row[f"{split}_mrr@20"] < row[f"{split}_recall@20"] < 1
    # an entry's configuration whose leaderboard run (seed 0) stopped within the cap is the same run
    board = bench.read_results("bench.csv")
    compared = 0
    for name in ("GRU4Rec-XE", "GRU4Rec-BPRmax"):
        ref = board[(board["model"] == name) & (board["seed"] == 0)].iloc[0]
        if ref["epochs"] <= chapter.LOSS_EPOCHS:
            compared += 1
            row = rows.set_index("model").loc[chapter.entry_configuration(name)]
            assert row["test_recall@20"] == pytest.approx(ref["test_recall@20"], abs=1e-5)
            assert row["test_mrr@20"] == pytest.approx(ref["test_mrr@20"], abs=1e-5)
            assert row["valid_recall@20"] == pytest.approx(ref["valid_recall@20"], abs=1e-5)
    assert compared >= 1   # the two files are tied by at least one run


def test_next_item_builder_follows_the_sequence():
    class NextCode:  # scores the code right after the last one highest, then by distance
        def score_next(self, histories):
            codes = torch.arange(10, dtype=torch.float32)
            out = torch.stack([-(codes - (int(h[-1]) + 1)).abs() for h in histories])
            out[:, :2] = float("-inf")
            return out

    ml = tiny_ml()
    box = chapter.next_item_builder(NextCode(), ml, k=2)
    assert box.sequence == [] and "add a movie" in box.output.value
    assert "movie 3 [3]" in box.search.options
    box.search.value = "movie 3 [3]"
    box.add.click()
    assert box.sequence == [4] and box.search.value == ""
    first = box.output.value.split("<tbody>")[1]
    assert first.index("movie 4") < first.index("movie 3")  # movie 4 (code 5) ranks first
    box.search.value = "movie 6 [6]"
    box.add.click()
    assert box.sequence == [4, 7] and "<td>1</td><td>movie 7</td>" in box.output.value
    box.undo.click()
    assert box.sequence == [4] and "<td>1</td><td>movie 4</td>" in box.output.value
    box.clear.click()
    assert box.sequence == [] and "add a movie" in box.output.value


def test_movie_titles_tell_repeated_titles_apart():
    ml = tiny_ml()
    ml.items.loc[ml.items["item_id"].isin([3, 7]), "title"] = "Chasing Amy"
    titles = chapter.movie_titles(ml).set_index("item_id")["title"]
    assert titles[3] == "Chasing Amy (#3)" and titles[7] == "Chasing Amy (#7)" and titles[1] == "movie 1"
    ml.items["release_year"] = [1990, 1991, 1997, 1990, 1990, 1990, 1997, 1990]        # with years: as the book names them
    titles = chapter.movie_titles(ml).set_index("item_id")["title"]
    assert titles[3] == "Chasing Amy (1997, #3)" and titles[7] == "Chasing Amy (1997, #7)" and titles[1] == "movie 1"


def test_stated_criterion_chooses_the_entries_configurations_from_the_committed_file():
    """The leaderboard entries' negatives and alpha are, per loss, the best validation MRR@20 of
    the committed loss comparison (what the chapter and recbook.bench say): 512 negatives with
    alpha 0.5 for cross-entropy, 512 uniform negatives (alpha 0) for BPR-max; validation Recall@20
    would have chosen another BPR-max configuration."""
    from recbook import bench

    rows = bench.read_results(chapter.LOSSES_FILE)
    chosen = chapter.selected_configurations(rows, chapter.SELECTION_METRIC)
    assert chosen["XE"] == chapter.entry_configuration("GRU4Rec-XE") == "GRU4Rec-XE-S512-a0.5"
    assert chosen["BPRmax"] == chapter.entry_configuration("GRU4Rec-BPRmax") == "GRU4Rec-BPRmax-S512-a0"
    settings = bench.REGISTRY["GRU4Rec-BPRmax"].train_data.settings
    assert (settings["n_negatives"], settings["alpha"]) == (512, 0.0)
    assert chapter.selected_configurations(rows, "valid_recall@20")["BPRmax"] != chosen["BPRmax"]
    with pytest.raises(ValueError, match="validation"):
        chapter.selected_configurations(rows, "test_mrr@20")


def test_selected_configurations_by_hand():
    t = pd.DataFrame({"model": ["a", "b", "c"], "loss": ["XE", "XE", "BPR"], "valid_mrr@20": [0.1, 0.3, 0.2]})
    assert chapter.selected_configurations(t) == {"XE": "b", "BPR": "c"}


def sequence_rows():
    out = []
    for i, m in enumerate(chapter.SEQUENCE_MODELS):
        for seed in range(3):
            r = {"model": m, "protocol": "sequence", "seed": seed, "cpu_s_per_epoch": np.nan if i < 2 else 5.0 + seed}
            for j, metric in enumerate(("recall@10", "recall@20", "mrr@10", "mrr@20", "ndcg@10", "recall@20_excl",
                                        "mrr@20_excl", "seen@20")):
                r[f"test_{metric}"] = 0.1 * (i + 1) + 0.01 * seed + 0.001 * j if metric != "seen@20" else 7.0 + seed
            out.append(r)
    return pd.DataFrame(out)


def test_sequence_table_means_and_spreads():
    t = chapter.sequence_table(sequence_rows())
    assert list(t.index) == list(chapter.SEQUENCE_MODELS)
    assert t.loc["Pop-seq", "recall@20"] == f"{0.101 + 0.01:.3f} ± {np.std([0, 0.01, 0.02]):.3f}"
    assert t.loc["GRU4Rec-XE", "seen@20"] == "8.0 ± 0.8" and t.loc["Pop-seq", "CPU s / epoch"] == "–"
    rows = sequence_rows()
    rows.loc[rows["model"] == "GRU4Rec-BPRmax", "test_seen@20"] = np.nan
    assert chapter.sequence_table(rows).loc["GRU4Rec-BPRmax", "seen@20"] == "–"
    with pytest.raises(ValueError, match="results"):
        chapter.sequence_table(sequence_rows(), models=["Pop-seq", "SASRec"])


def test_sequence_chart_checks_carry_the_python_means():
    from recbook import widgets

    rows = sequence_rows()
    chart = chapter.sequence_chart(rows)
    checks = chart.spec["usermeta"]["recbook"]["checks"]
    xe = rows[rows["model"] == "GRU4Rec-XE"]
    assert {"set": {"metric": "recall_at_20"}, "texts": [f"{xe['test_recall@20'].mean():.3f}"]} in checks
    assert {"set": {"metric": "recall_at_20_excl"}, "texts": [f"{xe['test_recall@20_excl'].mean():.3f}"]} in checks
    assert list(widgets.bound_params(chart.spec)) == ["metric"]
    rows.loc[rows["model"] == "GRU4Rec-BPRmax", "test_recall@20_excl"] = np.nan   # a metric some rows lack
    assert chapter.sequence_chart(rows).spec["usermeta"]["recbook"]["checks"]

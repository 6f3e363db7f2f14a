"""Helpers of the DIN chapter: RelaImpr, results by user type, attention tables, figures, widget."""
from __future__ import annotations

import re
from types import SimpleNamespace

import matplotlib

matplotlib.use("Agg")

import ipywidgets as ipw  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from sklearn.metrics import log_loss, roc_auc_score  # noqa: E402
from torch import nn  # noqa: E402

from recbook.chapters import din as chapter  # noqa: E402
from recbook.data import GENRES, YEAR_BUCKETS, Field, Schema, TensorData, item_catalogue, year_bucket  # noqa: E402
from recbook.models import DIN  # noqa: E402


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


# ---------------------------------------------------------------- RelaImpr and user types

def test_rela_impr_as_the_paper_defines_it():
    assert chapter.rela_impr(0.72, 0.70) == pytest.approx(10.0)  # 0.22 / 0.20 - 1
    assert chapter.rela_impr(0.92, 0.90) == pytest.approx(5.0)
    assert chapter.rela_impr(0.70, 0.70) == 0.0
    assert chapter.rela_impr(0.65, 0.70) == pytest.approx(-25.0)
    with pytest.raises(ValueError, match="base_auc: is 0.5"):
        chapter.rela_impr(0.7, 0.5)
    with pytest.raises(ValueError, match="auc: expected an AUC in \\[0, 1\\]"):
        chapter.rela_impr(1.2, 0.7)


class Scores(nn.Module):
    """A stand-in model whose logits are stored in the batch."""

    def forward(self, batch):
        return batch["score"]


def scored_split(n=400, seed=0):
    rng = np.random.default_rng(seed)
    user = rng.integers(0, 40, n)
    cold = user >= 25  # users 25.. have no training rows: user_id code 1 (unknown)
    x = np.stack([np.where(cold, 1, user + 2), rng.integers(2, 9, n)], 1)
    label = rng.integers(0, 2, n).astype(np.float32)
    score = (label * np.where(cold, 0.3, 1.5) + rng.normal(size=n)).astype(np.float32)
    mask = np.arange(5)[None, :] >= rng.integers(0, 6, n)[:, None]
    return TensorData(x=x.astype(np.int64), label=label, user=user.astype(np.int64), score=score,
                      hist_item=np.where(mask, 3, 0).astype(np.int64), hist_mask=mask), cold


def test_user_types_and_results_split_by_them():
    split, cold = scored_split()
    kinds = chapter.user_types(split)
    assert list(np.unique(kinds)) == ["cold", "known"]
    assert np.array_equal(kinds == "cold", cold)
    res = chapter.results_by_user_type({"m": Scores()}, split).set_index("users")
    y, s = split["label"].numpy(), split["score"].numpy()
    for group, sel in (("all", np.ones(len(y), bool)), ("known", ~cold), ("cold", cold)):
        assert res.at[group, "rows"] == sel.sum()
        assert res.at[group, "auc"] == pytest.approx(roc_auc_score(y[sel], s[sel]))
        assert res.at[group, "logloss"] == pytest.approx(log_loss(y[sel], 1 / (1 + np.exp(-s[sel]))), rel=1e-4)
        assert res.at[group, "mean history"] == pytest.approx(split["hist_mask"].numpy()[sel].sum(1).mean())
    assert res.at["known", "auc"] > res.at["cold", "auc"] + 0.1  # as planted
    assert res.at["cold", "distinct users"] == 15
    with pytest.raises(ValueError, match="models: expected a non-empty dict"):
        chapter.results_by_user_type({}, split)
    with pytest.raises(ValueError, match="split: expected CTR rows"):
        chapter.user_types({"x": split["x"]})


# ---------------------------------------------------------------- attention tables

def small_world():
    """12 movies with titles, years and genres; a DIN over them; 6 rows with histories."""
    ids = np.arange(1, 13)
    items = pd.DataFrame({"item_id": ids, "title": [f"movie {i}" for i in ids],
                          "release_year": [1950 + 4 * i for i in ids]})
    for g in GENRES:
        items[g] = False
    items.loc[items["item_id"] <= 6, "Comedy"] = True
    items.loc[items["item_id"] > 6, "Horror"] = True
    items.loc[items["item_id"] % 4 == 0, "Drama"] = True
    schema = Schema((
        Field("user_id", (100, 200, 300), role="user"),
        Field("item_id", tuple(range(1, 11)), role="item"),  # movies 11 and 12 are not in the vocabulary
        Field("year_bucket", YEAR_BUCKETS, role="item"),
        Field("genres", GENRES, multi=True, role="item"),
    ))
    catalogue = item_catalogue(items, schema)
    torch.manual_seed(0)
    model = DIN(schema, {"genres": catalogue.features["genres"]}, 4, hidden=(8,), attention_hidden=(6,),
                init_std=0.5)
    hist = np.array([[0, 0, 2, 3, 8], [3, 4, 5, 10, 12], [0, 0, 0, 0, 0],
                     [0, 9, 2, 2, 7], [0, 0, 0, 4, 5], [2, 3, 4, 5, 6]])  # raw item ids, 0 = none
    codes = np.where(hist > 0, schema["item_id"].encode(pd.Series(hist.ravel())).reshape(hist.shape), 0)
    frame = pd.DataFrame({"user_id": [100, 100, 999, 200, 300, 100], "item_id": [5, 6, 7, 8, 9, 11]})
    x = np.stack([schema["user_id"].encode(frame["user_id"]), schema["item_id"].encode(frame["item_id"]),
                  np.full(6, 3)], 1)
    split = TensorData(x=x, genres=np.zeros((6, 2), dtype=np.int64), label=np.ones(6, np.float32),
                       user=frame["user_id"].to_numpy().copy(), hist_item=codes, hist_mask=hist > 0)
    return model, split, frame, catalogue


def test_attention_table_lists_the_history_with_the_models_weights():
    model, split, frame, catalogue = small_world()
    t = chapter.attention_table(model, split, frame, catalogue, 1, candidates=[2, 9])
    assert len(t) == 10 and set(t["candidate_id"]) == {2, 9}
    one = t[t["candidate_id"] == 9]
    assert one["position"].tolist() == [1, 2, 3, 4, 5]
    assert one["title"].tolist() == ["movie 3", "movie 4", "movie 5", "movie 10", "<unknown item>"]
    # Movie 12 is not in the item_id vocabulary: unknown, and its title cannot be recovered.
    assert one["item_id"].tolist() == [3, 4, 5, 10, -1]
    assert one["shared_genres"].tolist() == [0, 0, 0, 1, 0]  # movie 9: Horror; movie 10: Horror
    assert t[t["candidate_id"] == 2]["shared_genres"].tolist() == [1, 1, 1, 0, 0]
    assert one["candidate_genres"].iloc[0] == "Horror" and one["genres"].iloc[1] == "Comedy|Drama"
    # The weights and the probability are the model's for that row with the candidate's fields.
    year = year_bucket(pd.Series([1950 + 4 * 9]))
    batch = {k: v[1:2].clone() for k, v in split.items()}
    batch["x"][0, 1] = int(model.schema["item_id"].encode(pd.Series([9]))[0])
    batch["x"][0, 2] = int(model.schema["year_bucket"].encode(year)[0])
    batch["genres"] = torch.tensor([[GENRES.index("Horror") + 2, 0]])
    model.eval()
    np.testing.assert_allclose(one["weight"], model.attention_weights(batch)[0].numpy(), rtol=1e-5)
    assert one["probability"].iloc[0] == pytest.approx(torch.sigmoid(model(batch)).item(), rel=1e-5)
    # The two candidates get different weights over the same history.
    assert not np.allclose(one["weight"], t[t["candidate_id"] == 2]["weight"])
    # Default candidate: the row's own movie; an empty history gives no lines.
    own = chapter.attention_table(model, split, frame, catalogue, [0, 2])
    assert set(own["candidate_id"]) == {5} and own["row"].tolist() == [0, 0, 0]


def test_attention_table_validates():
    model, split, frame, catalogue = small_world()
    with pytest.raises(ValueError, match="model: expected a recbook.models.DIN"):
        chapter.attention_table(nn.Linear(2, 1), split, frame, catalogue, 0)
    with pytest.raises(ValueError, match=r"rows: expected row positions in \[0, 6\)"):
        chapter.attention_table(model, split, frame, catalogue, 6)
    with pytest.raises(ValueError, match="candidates: expected item ids of the catalogue, got \\[99\\]"):
        chapter.attention_table(model, split, frame, catalogue, 0, candidates=[99])
    with pytest.raises(ValueError, match="frame: has 5 rows; expected 6"):
        chapter.attention_table(model, split, frame.iloc[:5], catalogue, 0)
    with pytest.raises(ValueError, match="user_id: 4 has no row"):
        chapter.last_row_of_user(frame, 4)
    assert chapter.last_row_of_user(frame, 100) == 5


def test_genre_overlap_summary_by_hand():
    t = pd.DataFrame({"row": 0, "candidate": "A", "shared_genres": [0, 1, 2, 0],
                      "weight": [0.1, 0.5, 0.9, 0.3]})
    s = chapter.genre_overlap_summary(t).iloc[0]
    assert s["sharing a genre"] == 2 and s["items"] == 4
    assert s["mean weight, sharing"] == pytest.approx(0.7)
    assert s["mean weight, not sharing"] == pytest.approx(0.2)
    assert s["spearman(shared genres, weight)"] == pytest.approx(pd.Series([1.5, 3, 4, 1.5]).corr(
        pd.Series([1, 3, 4, 2])))


def test_heatmap_widget_table_and_dropdown():
    model, split, frame, catalogue = small_world()
    t = chapter.attention_table(model, split, frame, catalogue, 1, candidates=[2, 9])
    ax = chapter.plot_attention_heatmap(t)
    assert [lab.get_text() for lab in ax.get_yticklabels()] == ["movie 3", "movie 4", "movie 5", "movie 10",
                                                                 "<unknown item>"]
    assert ax.images[0].get_array().shape == (5, 2)
    np.testing.assert_allclose(ax.images[0].get_array()[:, 1], t[t["candidate_id"] == 9]["weight"])
    with pytest.raises(ValueError, match="row: table holds rows"):
        chapter.plot_attention_heatmap(chapter.attention_table(model, split, frame, catalogue, [0, 1]))
    w = chapter.widget_table(model, split, frame, catalogue, users=[100, 200], candidates=[2, 9])
    assert set(w["user_id"]) == {100, 200} and set(w["candidate"]) == {"movie 2", "movie 9"}
    assert len(w) == 2 * 5 + 2 * 4  # user 100's last row has 5 items, user 200's 4
    assert w["weight"].round(3).equals(w["weight"])
    box = chapter.attention_dropdown(w)
    assert isinstance(box, ipw.VBox) and len(box.control.options) == 4
    with pytest.raises(ValueError, match="users: expected a non-empty list"):
        chapter.widget_table(model, split, frame, catalogue, users=[], candidates=[2])


# ---------------------------------------------------------------- charts computed in the browser

def test_unit_scores_written_out_in_numpy_equal_the_models_weights():
    for activation in ("prelu", "dice"):
        model, split, frame, catalogue = small_world()
        if activation == "dice":
            torch.manual_seed(1)
            model = DIN(model.schema, {"genres": catalogue.features["genres"]}, 4, hidden=(8,),
                        attention_hidden=(6,), activation="dice", init_std=0.5)
            model.train()
            for _ in range(3):  # move Dice's running statistics away from (0, 1)
                model(dict(split))
        t = chapter.attention_table(model, split, frame, catalogue, 1, candidates=[9])
        with torch.no_grad():
            table = model.item_vectors().numpy()
        keys = table[split["hist_item"][1][split["hist_mask"][1]].numpy()]
        query = table[catalogue.codes([9])[0]]
        np.testing.assert_allclose(chapter.unit_scores(model, keys, query), t["weight"], atol=1e-5)
        rounded = chapter.unit_scores(model, keys, query, decimals=1)
        assert np.abs(rounded - t["weight"].to_numpy()).max() > 1e-4  # rounding the vectors shows
    with pytest.raises(ValueError, match="one hidden layer"):
        deep = DIN(model.schema, {"genres": catalogue.features["genres"]}, 4, attention_hidden=(6, 3))
        chapter.unit_scores(deep, keys, query)


def test_attention_chart_ships_the_histories_and_checks_the_models_weights():
    model, split, frame, catalogue = small_world()
    chart = chapter.attention_chart(model, split, frame, catalogue, users=[100, 200], candidates=[2, 9],
                                    checks=[(200, 2)])
    spec = chart.spec
    hist = pd.read_csv(__import__("io").StringIO(spec["datasets"]["din_hist"]))
    assert hist.groupby("user").size().to_dict() == {100: 5, 200: 4}
    assert hist[hist["user"] == 200]["code"].tolist() == split["hist_item"][3][split["hist_mask"][3]].tolist()
    checks = spec["usermeta"]["recbook"]["checks"]
    assert [c["set"]["user"] for c in checks] == [100, 200]
    code2 = int(catalogue.codes([2])[0])
    assert checks[1]["set"]["candidate"] == code2
    w = chapter.attention_table(model, split, frame, catalogue, 3, candidates=[2])["weight"]
    want = [f"sum of weights = {w.sum():.2f}", f"largest weight = {w.max():.2f}"]
    assert checks[1]["texts"] == [t.replace("-", "\N{MINUS SIGN}") for t in want]
    # The unit travels once, as expressions of the whole chart (shared by the readout and the
    # bars), not folded into one line per dimension: no fold transform anywhere, no copy per view.
    text = __import__("json").dumps(spec)
    assert '"fold"' not in text and text.count('"as": "z0"') == 1
    with pytest.raises(ValueError, match="candidate 5 is not one of candidates"):
        chapter.attention_chart(model, split, frame, catalogue, users=[100], candidates=[2], checks=[(100, 5)])


def test_the_charts_expressions_compute_the_models_attention_weights():
    # Evaluate the shipped expressions (plain arithmetic, valid Python up to the activation's
    # ternary) on the integers the chart ships: they give the model's weights.
    model, split, frame, catalogue = small_world()
    decimals = 5
    unit = chapter.shipped_unit(model, decimals=decimals)
    z_exprs, score_expr = chapter.unit_expressions(unit)
    with torch.no_grad():
        table = model.item_vectors().numpy().astype(np.float64)
    ints = np.rint(table * 10 ** decimals).astype(np.int64)
    keys = ints[split["hist_item"][1][split["hist_mask"][1]].numpy()]
    query = ints[catalogue.codes([9])[0]]
    want = chapter.attention_table(model, split, frame, catalogue, 1, candidates=[9])["weight"].to_numpy()
    # JS "(z > 0 ? z : a*z)" -> Python "(z if z > 0 else a*z)"
    py_score = re.sub(r"\((datum\.z\d+) > 0 \? \1 : ([^)]*)\)", r"(\1 if \1 > 0 else \2)", score_expr)
    assert "?" not in py_score and all(f"datum.z{k}" in py_score for k in range(len(z_exprs)))
    got = []
    for e in keys:
        # Looked-up fields arrive as text in the browser; each term multiplies them by a number.
        fields = {**{f"e{d}": float(v) for d, v in enumerate(e)}, **{f"c{d}": float(v) for d, v in enumerate(query)}}
        z = {k: eval(expr, {"datum": SimpleNamespace(**fields)}) for k, expr in z_exprs.items()}
        got.append(eval(py_score, {"datum": SimpleNamespace(**z)}))
    np.testing.assert_allclose(got, want, atol=1e-4)
    np.testing.assert_allclose(chapter.shipped_scores(unit, keys, query), want, atol=1e-4)
    # Rounding the vectors more coarsely shows in the scores: the comparison can fail.
    coarse = chapter.shipped_unit(model, decimals=1)
    rough = chapter.shipped_scores(coarse, np.rint(table * 10)[split["hist_item"][1][split["hist_mask"][1]].numpy()],
                                   np.rint(table * 10)[catalogue.codes([9])[0]])
    assert np.abs(rough - want).max() > 1e-3


def test_dice_values_and_chart_by_hand():
    # s = 1, E[s] = 0, Var[s] = 1, alpha = 0.25: p = sigmoid(1) = 0.7311, f = p + (1 - p) * 0.25
    p = 1 / (1 + np.exp(-1.0))
    got = chapter.dice_values([1.0, -2.0], mean=0.0, var=1.0, alpha=0.25)
    np.testing.assert_allclose(got, [p + (1 - p) * 0.25, -2.0 * (1 / (1 + np.exp(2.0)) + 0.25 * (1 - 1 / (1 + np.exp(2.0))))],
                               rtol=1e-7)
    chart = chapter.dice_chart(checks=[dict(mean=1.0, std=0.5, alpha=0.5)])
    checks = chart.spec["usermeta"]["recbook"]["checks"]
    # at s = -1 with E = 1, sd = 0.5: p = sigmoid(-4); f = -1 * (0.5 + 0.5 * p)
    q = 1 / (1 + np.exp(4.0))
    assert checks[1]["texts"] == [f"at s = \N{MINUS SIGN}1.0: Dice \N{MINUS SIGN}{0.5 + 0.5 * q:.2f}, "
                                  f"PReLU \N{MINUS SIGN}0.50"]
    with pytest.raises(ValueError, match="var: expected a positive number"):
        chapter.dice_values([1.0], mean=0.0, var=0.0, alpha=0.25)


def test_architecture_diagram_draws_one_unit_per_history_item():
    ax = chapter.plot_din_architecture(3, attention_hidden=16, hidden=(64, 32))
    texts = [t.get_text() for t in ax.texts]
    assert sum(t.startswith("$a(e_") for t in texts) == 3
    assert "$a(e_L, v_A)$" in texts and "MLP\n64-32" in texts
    assert any("16 units" in t for t in texts)
    with pytest.raises(ValueError, match="n_items: expected at least 2"):
        chapter.plot_din_architecture(1)


# ---------------------------------------------------------------- titles, softmax probe, leaderboard

def test_catalogue_display_titles_tell_repeated_titles_apart():
    _, _, _, catalogue = small_world()
    labels = chapter.catalogue_display_titles(catalogue)
    assert labels[:2] == ["<unknown item>", "<unknown item>"] and len(set(labels[2:])) == len(labels) - 2
    from recbook.data import ctr_protocol, load_movielens100k

    data = ctr_protocol(load_movielens100k(progress=False), history_len=5)
    labels = chapter.catalogue_display_titles(data.catalogue)
    real = labels[2:]
    assert len(set(real)) == len(real)                                   # every item its own label
    codes = data.catalogue.codes([246, 268, 1])
    assert [labels[c] for c in codes] == ["Chasing Amy (#246)", "Chasing Amy (#268)", "Toy Story"]
    assert chapter._short("A very long title that goes on and on (#246)", 24).endswith("… (#246)")


def _din(softmax, init_std, hidden=(6,), activation=None):
    torch.manual_seed(0)
    items = pd.DataFrame({"item_id": np.arange(1, 9), "title": [f"m{i}" for i in range(1, 9)],
                          "release_year": 1990})
    for g in GENRES:
        items[g] = g == "Drama"
    schema = Schema((Field("user_id", (1, 2), role="user"), Field("item_id", tuple(range(1, 9)), role="item"),
                     Field("genres", GENRES, multi=True, role="item")))
    catalogue = item_catalogue(items, schema)
    model = DIN(schema, {"genres": catalogue.features["genres"]}, 4, hidden=(8,), attention_hidden=hidden,
                softmax=softmax, init_std=init_std, attention_activation=activation)
    g = torch.Generator().manual_seed(1)
    n = 64
    hist = torch.randint(2, 10, (n, 6), generator=g)
    mask = torch.rand(n, 6, generator=g) > 0.2
    mask[:, -2:] = True
    split = TensorData(x=np.stack([np.full(n, 2), torch.randint(2, 10, (n,), generator=g).numpy()], 1),
                       genres=np.zeros((n, 1), dtype=np.int64), label=(torch.rand(n, generator=g) > 0.5).float().numpy(),
                       user=np.ones(n, dtype=np.int64), hist_item=(hist * mask).numpy(), hist_mask=mask.numpy())
    return model, split


def test_attention_spread_and_gradients_see_uniform_softmax_weights():
    uniform, split = _din(True, 0.01, (80, 40), "sigmoid")     # the authors' unit, small embeddings
    s = chapter.attention_spread(uniform, split)
    assert s["rows"] == 64 and s["normalised entropy"] > 0.9999 and s["max weight x n"] < 1.001
    assert s["weight cv"] < 1e-3
    g = chapter.gradient_norms(uniform, split)
    assert set(g) == {"activation unit", "embeddings", "MLP"} and g["activation unit"] < 1e-4 * g["MLP"]
    assert all(p.grad is None for p in uniform.parameters())         # nothing left behind
    raw, split = _din(False, 0.5)
    r = chapter.attention_spread(raw, split)
    assert r["weight cv"] > 100 * s["weight cv"] and r["max weight x n"] > 1.01
    gr = chapter.gradient_norms(raw, split)
    assert gr["activation unit"] > 1e3 * g["activation unit"]
    # by hand: one row's normalised entropy
    w = raw.attention_weights({k: v[:1] for k, v in split.items()})[0]
    m = split["hist_mask"][0]
    p = w[m].abs() / w[m].abs().sum()
    one = chapter.attention_spread(raw, {k: v[:1] for k, v in split.items()})
    assert abs(one["normalised entropy"] - float(-(p * p.log()).sum() / np.log(int(m.sum())))) < 1e-6


def test_din_softmax_entry_is_the_authors_attention_and_its_probe_is_the_leaderboard_run():
    """The leaderboard's DIN-softmax uses the authors' released attention (din/model.py:
    unit 80-40 with sigmoid, softmax of score / sqrt(d)); the committed probe record is the
    leaderboard's run of seed 0 (same validation and test AUC) and shows uniform weights."""
    from recbook.bench import REGISTRY, read_results

    e = REGISTRY["DIN-softmax"]
    assert e.params["softmax"] is True and tuple(e.params["attention_hidden"]) == (80, 40)
    assert e.params["attention_activation"] == "sigmoid"
    probe = read_results(chapter.SOFTMAX_PROBE_FILE)
    bench = read_results("bench.csv")
    trained = probe[(probe["stage"] == "trained") & (probe["model"] == "DIN-softmax")]
    for _, r in trained.iterrows():
        row = bench.query("model == 'DIN-softmax' and protocol == 'ctr' and seed == @r.seed").iloc[0]
        assert abs(r["valid_auc"] - row["valid_auc"]) < 1e-4 and abs(r["test_auc"] - row["test_auc"]) < 1e-4
    assert (probe["normalised entropy"] > 0.9999).all()
    table = chapter.attention_probe_table(probe)
    assert list(table.columns) == list(chapter.PROBE_COLUMNS.values()) and len(table) == len(probe)


def test_leaderboard_table_and_paired_summary_by_hand():
    rows = [{"model": m, "protocol": "ctr", "seed": s, "test_auc": a + 0.001 * s, "test_gauc": a,
             "test_logloss": 0.6, "valid_auc": 0.69 - (m == "B") * 0.001, "cpu_s_per_epoch": 1.0}
            for s in range(3) for m, a in [("A", 0.70), ("B", 0.72)]]
    results = pd.DataFrame(rows)
    board, agg = chapter.leaderboard_table(results, ["A", "B"], base="A")
    assert board.loc["B", "RelaImpr vs A"] == "+10.0%" and (board["seeds"] == 3).all()
    assert board.loc["A", "test AUC"] == "0.7010 ± 0.0010"
    out = chapter.paired_summary(results, "A", "B")
    assert np.allclose(out.loc["test AUC, B − A"], 0.02) and np.allclose(out.loc["validation AUC, B − A"], -0.001)
    with pytest.raises(ValueError, match="base"):
        chapter.leaderboard_table(results, ["A", "B"], base="C")


def test_dice_chart_brings_its_own_browser_checks():
    chart = chapter.dice_chart()
    assert len(chart.spec["usermeta"]["recbook"]["checks"]) == 1 + len(chapter.DICE_CHECKS)


def test_regularisation_run_takes_one_regulariser_at_a_time():
    with pytest.raises(ValueError, match="one of the two regularisers"):
        chapter.regularisation_run(None, seed=0, l2=0.1, weight_decay=1e-4)
    with pytest.raises(ValueError, match="at least one seed"):
        chapter.run_regularisation_sweep("unused.csv", seeds=())

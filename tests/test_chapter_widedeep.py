"""Helpers of the Wide & Deep chapter (and, below, of the DeepFM chapter's listing helpers): cross
tables against pandas groupbys, terms and parts against brute force, the listings' problems
reproduced with numbers, the browser chart's data against a brute-force ranking, input validation."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from recbook.chapters import deepfm as deepfm_chapter
from recbook.chapters import widedeep as chapter
from recbook.data import CROSSES, CTRData, ctr_crosses, ctr_protocol, load_movielens100k
from recbook.models import DeepFM, LogisticRegression, WideDeep

@pytest.fixture(scope="module")
def data():
    return ctr_protocol(load_movielens100k(progress=False))


@pytest.fixture(scope="module")
def small(data):
    """The protocol's first 6,000 / next 1,500 / 1,500 rows: fast to train on."""
    frames = {"train": data.frames["train"].iloc[:6000], "valid": data.frames["valid"].iloc[:1500],
              "test": data.frames["test"].iloc[:1500]}
    return CTRData(data.schema, data.train.subset(slice(0, 6000)), data.valid.subset(slice(0, 1500)),
                   data.test.subset(slice(0, 1500)), frames)


@pytest.fixture(scope="module")
def trained_like(data):
    """A Wide & Deep with random weights of order 1 (as after training) on the full protocol."""
    torch.manual_seed(0)
    model = WideDeep(data.schema, ctr_crosses(data), dim=4, hidden=(8,))
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.5)
    return model


# --------------------------------------------------------------------------------------------
# Cross weights
# --------------------------------------------------------------------------------------------

def test_cross_weight_table_counts_match_a_groupby(data, trained_like):
    table = chapter.cross_weight_table(trained_like, data.train)
    crosses = trained_like.cross.crosses
    assert len(table) == sum(len(c.pairs) for c in crosses.crosses)  # no <pad>/<unk> rows
    by_label = dict(zip(crosses.labels(), trained_like.cross.weight.tolist()))
    np.testing.assert_allclose(table["weight"], [by_label[p] for p in table["pair"]])
    train = data.frames["train"]
    for c in crosses.crosses:
        rows = train[[c.a, c.b, "label"]].explode(c.b)
        g = rows.groupby([c.a, c.b])["label"].agg(["size", "mean"])
        g.index = [f"{c.a}={a} × {c.b}={b}" for a, b in g.index]
        sub = table[table["cross"] == c.name].set_index("pair")
        assert sorted(sub.index) == sorted(g.index)
        np.testing.assert_array_equal(sub.loc[g.index, "train rows"], g["size"])
        np.testing.assert_allclose(sub.loc[g.index, "positive rate"], g["mean"], rtol=1e-6)


def test_top_cross_weights_are_the_extremes(data, trained_like):
    top = chapter.top_cross_weights(trained_like, data.train, n=5, cross="occupation × genres", min_rows=20)
    assert len(top) == 10 and list(top["sign"]) == ["+"] * 5 + ["-"] * 5
    assert top["weight"].is_monotonic_decreasing
    assert (top["train rows"] >= 20).all() and top["pair"].str.startswith("occupation=").all()
    full = chapter.cross_weight_table(trained_like, data.train)
    full = full[(full["cross"] == "occupation × genres") & (full["train rows"] >= 20)]
    assert top["weight"].iloc[0] == full["weight"].max() and top["weight"].iloc[-1] == full["weight"].min()
    with pytest.raises(ValueError, match="cross: 'zip1 × genres' is not among"):
        chapter.top_cross_weights(trained_like, cross="zip1 × genres")
    with pytest.raises(ValueError, match="train: needed to filter by min_rows"):
        chapter.top_cross_weights(trained_like, min_rows=5)
    with pytest.raises(ValueError, match="model: has no cross features"):
        chapter.cross_weight_table(WideDeep(data.schema, None))
    with pytest.raises(ValueError, match="model: expected a recbook.models.WideDeep"):
        chapter.cross_weight_table(DeepFM(data.schema))


# --------------------------------------------------------------------------------------------
# The wide part's exact zeros (FTRL-Proximal with L1)
# --------------------------------------------------------------------------------------------

def test_wide_sparsity_counts_exact_zeros(small):
    model = WideDeep(small.schema, ctr_crosses(small), dim=4, hidden=(8,))
    with torch.no_grad():
        model.linear.weights.table.weight.fill_(1.0)
        model.cross.weight.fill_(1.0)
        model.cross.weight[::4] = 0.0
    sp = chapter.wide_sparsity(model)
    assert sp["feature weights"] == 0.0
    assert sp["cross weights"] == pytest.approx(np.ceil(model.cross.weight.numel() / 4) / model.cross.weight.numel())
    # With the training rows, only values and pairs that occur there count.
    with torch.no_grad():
        model.cross.weight.fill_(0.0)
        rows = chapter._cross_rows_used(model, dict(small.train))[1]
        model.cross.weight[rows] = 1.0
    sp = chapter.wide_sparsity(model, small.train)
    assert sp["cross weights"] == 0.0
    # Without them, the <pad> and <unk> rows of each cross count too (the vocabulary is the
    # training pairs, so every other row occurs in training).
    n = model.cross.weight.numel()
    assert chapter.wide_sparsity(model)["cross weights"] == pytest.approx(2 * len(model.cross.crosses) / n)


# --------------------------------------------------------------------------------------------
# DeepFM parts
# --------------------------------------------------------------------------------------------

def test_deepfm_parts_add_up_to_the_logit(data):
    torch.manual_seed(0)
    model = DeepFM(data.schema, dim=4, hidden=(8,))
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.5)
    user, item = 259, 255
    parts = deepfm_chapter.deepfm_parts(model, data, user, item)["value"]
    assert list(parts.index) == ["bias", "first order", "FM (pairs)", "deep (MLP)", "logit"]
    assert parts.iloc[:4].sum() == pytest.approx(parts["logit"], abs=1e-5)
    from recbook.chapters.fm import user_movie_batch
    with torch.no_grad():
        assert parts["logit"] == pytest.approx(model(user_movie_batch(data, user, item)).item(), abs=1e-6)
    assert min(abs(parts["FM (pairs)"]), abs(parts["deep (MLP)"]), abs(parts["first order"])) > 1e-3


# --------------------------------------------------------------------------------------------
# The source listings
# --------------------------------------------------------------------------------------------

def test_listing_broadcasts_into_b_by_b(data):
    out = deepfm_chapter.listing_broadcast(data, batch_size=64)
    assert out["output shape"] == (64, 64) and out["label shape"] == (64,)
    assert out["diagonal equals fixed"] is True  # row i's own terms sit on the diagonal
    assert out["off-diagonal share"] == pytest.approx(63 / 64)


def test_listing_saturates_and_loses_gradients_at_initialisation(data):
    table = deepfm_chapter.saturation_at_init(data, batch_size=2048)
    listing, ours = table.iloc[0], table.iloc[1]
    assert listing["std of initial logit"] > 5 and ours["std of initial logit"] < 0.1
    assert listing["saturated outputs"] > 0.1 and ours["saturated outputs"] == 0
    assert listing["zero gradient"] > 0.05 and ours["zero gradient"] == 0
    assert listing["wrong and zero gradient"] > 0 and listing["initial loss"] > 3 * ours["initial loss"]
    # Independently: through sigmoid + BCELoss the gradient is zero exactly where float32 rounds
    # p to 0 or 1 (p (1 - p) = 0 there).
    assert listing["zero gradient"] == pytest.approx(listing["p exactly 0 or 1"])


def test_per_field_tables_are_slower(data):
    table = deepfm_chapter.time_per_field_tables(data, n_batches=8, repeats=3)
    assert table.loc["one table per field (listing)", "parameter tensors"] == 14 + 6
    assert table.loc["one shared table (recbook)", "parameter tensors"] == 3 + 6
    assert table.loc["one table per field (listing)", "slowdown"] > 1.0


def test_one_hot_and_the_listing_wide_part_is_lr(data):
    batch = {k: v[:100] for k, v in data.train.items()}
    dense = chapter.one_hot(batch, data.schema)
    assert dense.shape == (100, data.schema.total_size)
    torch.testing.assert_close(dense.sum(1), torch.full((100,), 8.0))  # 7 ones + genres' k * 1/k
    lr = LogisticRegression(data.schema)
    with torch.no_grad():
        lr.linear.weights.table.weight.normal_()
    torch.testing.assert_close(dense @ lr.linear.weights.table.weight[:, 0] + lr.linear.bias, lr(batch))
    out = chapter.listing_wide_is_lr(data, batch_size=256)
    assert out["max |difference|"] < 1e-5 and out["dense input"] == (256, data.schema.total_size)
    assert out["nonzero share"] < 0.01 and 8 <= out["lookup rows"] < 14


def test_chapter_helpers_validate(data):
    with pytest.raises(ValueError, match="data: expected a recbook.data.CTRData"):
        deepfm_chapter.listing_broadcast(object())
    with pytest.raises(ValueError, match="batch_size"):
        deepfm_chapter.saturation_at_init(data, batch_size=0)
    with pytest.raises(ValueError, match="model: expected a recbook.models.DeepFM"):
        deepfm_chapter.deepfm_parts(WideDeep(data.schema), data, 259, 255)
    with pytest.raises(ValueError, match="user_id: 99999 does not occur"):
        deepfm_chapter.deepfm_parts(DeepFM(data.schema), data, 99999, 255)


# --------------------------------------------------------------------------------------------
# The cross-product transformation, row by row
# --------------------------------------------------------------------------------------------

def _known_pairs(train: pd.DataFrame, c) -> set:
    return set(map(tuple, train[[c.a, c.b]].explode(c.b).drop_duplicates().to_numpy()))


def test_wide_terms_name_the_pairs_of_the_raw_row_and_add_up(data, trained_like):
    train, test = data.frames["train"], data.frames["test"].reset_index(drop=True)
    crosses = trained_like.cross.crosses
    known = {c.name: _known_pairs(train, c) for c in crosses}
    for row in (0, 17, 4321):
        terms = chapter.wide_terms(trained_like, data.test, row)
        raw = test.iloc[row]
        expected = []
        for c in crosses:  # the pairs of the raw row, spelled out by hand
            members = raw[c.b] if c.multi else (raw[c.b],)
            for b in members:
                expected.append(f"{c.a}={raw[c.a]} × {c.b}={b}" if (raw[c.a], b) in known[c.name]
                                else f"<unk> ({c.name})" if c.multi else "<unk>")
        cross_terms = terms[terms["kind"] == "cross"]
        assert sorted(cross_terms["term"]) == sorted(expected)
        # An unknown pair reads its cross's <unk> row (0 in a trained model; random in this fixture).
        unk_rows = {c.name: trained_like.cross.weight[crosses.weight_schema.offset_of(c.name) + 1].item()
                    for c in crosses}
        for term, weight in zip(cross_terms["term"], cross_terms["weight"]):
            if term.startswith("<unk> ("):
                assert weight == pytest.approx(unk_rows[term[7:-1]])
        k = len(raw["genres"])
        genre_terms = terms[terms["term"].str.contains("genres=") & (terms["kind"] == "feature")]
        assert len(genre_terms) == k and np.allclose(genre_terms["x"], 1 / k)
        with torch.no_grad():
            wide = trained_like.wide(data.test.subset(slice(row, row + 1))).item()
        assert terms["contribution"].sum() == pytest.approx(wide, abs=1e-5)
    with pytest.raises(ValueError, match="row: expected an integer in"):
        chapter.wide_terms(trained_like, data.test, len(data.test))


def test_cross_coverage_matches_pandas(data):
    crosses = ctr_crosses(data)
    table = chapter.cross_coverage(crosses, data.train, data.test)
    train, test = data.frames["train"], data.frames["test"]
    for c in crosses:
        tr = train[[c.a, c.b]].explode(c.b)
        te = test[[c.a, c.b]].explode(c.b)
        sizes = tr.groupby([c.a, c.b]).size()
        seen = set(sizes.index)
        row = table.loc[c.name]
        assert row["pairs"] == len(sizes)
        assert row["median train rows per pair"] == np.median(sizes.to_numpy())
        share = np.mean([(a, b) in seen for a, b in te.to_numpy()])
        assert row["test pairs seen in training"] == pytest.approx(share)
    with pytest.raises(ValueError, match="crosses: expected a recbook.data.Crosses"):
        chapter.cross_coverage(CROSSES, data.train, data.test)


def test_unseen_by_cross_groups_and_aucs_match_brute_force(data, trained_like):
    table = chapter.unseen_by_cross(trained_like, data.test, min_rows=50)
    train, test = data.frames["train"], data.frames["test"]
    unseen_any = np.zeros(len(test), dtype=bool)
    for c in trained_like.cross.crosses:
        known = _known_pairs(train, c)
        unseen = np.array([any((a, b) not in known for b in (bs if c.multi else (bs,)))
                           for a, bs in zip(test[c.a], test[c.b])])
        assert table.loc[f"{c.name}: pair unseen", "rows"] == unseen.sum()
        unseen_any |= unseen
    assert table.loc["all pairs seen", "rows"] == (~unseen_any).sum() > 0
    # AUC of the whole model on the seen group, by counting pairs (Mann-Whitney, ties half).
    with torch.no_grad():
        score = trained_like(dict(data.test)).numpy()[~unseen_any]
    y = data.test["label"].numpy()[~unseen_any]
    pos, neg = score[y == 1], score[y == 0]
    brute = ((pos[:, None] > neg[None]).sum() + 0.5 * (pos[:, None] == neg[None]).sum()) / (len(pos) * len(neg))
    assert table.loc["all pairs seen", "AUC, whole model"] == pytest.approx(brute, abs=1e-6)
    small = table[table["rows"] < 50]
    assert small.drop(columns="rows").isna().all().all()  # too few rows: no AUC


def test_unseen_pair_rows_are_the_unseen_rows(data, trained_like):
    rows = chapter.unseen_pair_rows(trained_like, data, "gender × item_id")
    train, test = data.frames["train"], data.frames["test"]
    known = _known_pairs(train, trained_like.cross.crosses["gender × item_id"])
    expected = test[[(g, i) not in known for g, i in zip(test["gender"], test["item_id"])]]
    assert len(rows) == len(expected) > 0
    assert sorted(rows["item_id"]) == sorted(expected["item_id"])
    counts = train["item_id"].value_counts()
    assert (rows["movie's training rows"].to_numpy() == rows["item_id"].map(counts).fillna(0).to_numpy()).all()
    assert rows["movie's training rows"].is_monotonic_decreasing
    with pytest.raises(ValueError, match="cross: 'zip1 × genres' is not among"):
        chapter.unseen_pair_rows(trained_like, data, "zip1 × genres")


def test_zero_share_by_support_on_hand_set_weights(data, trained_like):
    model = WideDeep(data.schema, trained_like.cross.crosses, dim=4, hidden=(8,))
    table = chapter.cross_weight_table(model, data.train)
    rows_per_pair = table["train rows"].to_numpy()
    index = {lab: i for i, lab in enumerate(model.cross.crosses.labels())}  # pair label -> weight row
    with torch.no_grad():  # zero exactly the pairs seen in fewer than 4 training rows
        model.cross.weight.fill_(0.5)
        for pair, n in zip(table["pair"], rows_per_pair):
            if n < 4:
                model.cross.weight[index[pair]] = 0.0
    out = chapter.zero_share_by_support(model, data.train, bins=(1, 2, 4, 16))
    assert list(out.index) == ["1", "2–3", "4–15", "16 or more"]
    assert list(out["zero share"]) == [1.0, 1.0, 0.0, 0.0]
    assert out["pairs"].sum() == len(table)
    assert out.loc["1", "pairs"] == (rows_per_pair == 1).sum()
    with pytest.raises(ValueError, match="bins: expected increasing positive integers"):
        chapter.zero_share_by_support(model, data.train, bins=(0, 4))


# --------------------------------------------------------------------------------------------
# The listing's dense wide part with the crosses
# --------------------------------------------------------------------------------------------

def test_dense_wide_input_computes_the_wide_part(data, trained_like):
    batch = {k: v[:64] for k, v in data.test.items()}
    dense = chapter.dense_wide_input(trained_like, batch)
    crosses = trained_like.cross.crosses
    assert dense.shape == (64, data.schema.total_size + crosses.total_size)
    # Each row: 7 single fields + genres (k * 1/k) = 8, and one unit per cross (a single cross's
    # pair, or a genre cross's k pairs at 1/k each; an unknown pair counts in its <unk> column).
    torch.testing.assert_close(dense.sum(1), torch.full((64,), 8.0 + len(crosses)))
    out = chapter.listing_wide_with_crosses(trained_like, batch)
    assert out["max |difference|"] < 1e-4 and out["dense input"] == tuple(dense.shape)
    assert out["nonzero share"] < 0.002


def test_time_wide_dense_vs_sparse_reports_both_layouts(data, trained_like):
    table = chapter.time_wide_dense_vs_sparse(trained_like, data, n_batches=2, batch_size=256, repeats=1)
    dense, lookups = table.loc["dense nn.Linear on one-hot (listing)"], table.loc["lookups (recbook)"]
    cols = data.schema.total_size + trained_like.cross.crosses.total_size
    assert dense["inputs per row"] == cols
    assert dense["MB of input per batch"] == pytest.approx(256 * cols * 4 / 2 ** 20)
    assert lookups["slowdown"] == 1.0 and (table["ms per batch"] > 0).all()
    assert 8 + len(trained_like.cross.crosses) <= lookups["inputs per row"] < 40


# --------------------------------------------------------------------------------------------
# One user's top ten, scaled in the browser
# --------------------------------------------------------------------------------------------

def test_catalogue_parts_match_the_user_s_own_rows(data, trained_like):
    test = data.frames["test"].reset_index(drop=True)
    user = int(test["user_id"].iloc[0])
    parts = chapter.catalogue_parts(trained_like, data, user)
    assert len(parts) == data.catalogue.n_codes - 2 and parts.index[0] == 2
    mine = np.flatnonzero(test["user_id"].to_numpy() == user)
    batch = data.test.subset(torch.as_tensor(mine))
    with torch.no_grad():
        wide, deep = trained_like.wide(batch).numpy(), trained_like.deep(batch).numpy()
    by_item = parts.set_index("item_id")
    np.testing.assert_allclose(by_item.loc[test["item_id"].iloc[mine], "wide"], wide, atol=1e-5)
    np.testing.assert_allclose(by_item.loc[test["item_id"].iloc[mine], "deep"], deep, atol=1e-5)
    with pytest.raises(ValueError, match="user_id: 99999 does not occur"):
        chapter.catalogue_parts(trained_like, data, 99999)


def test_top_movies_is_a_sort():
    rng = np.random.default_rng(0)
    parts = pd.DataFrame({"item_id": np.arange(100, 150), "wide": rng.normal(size=50), "deep": rng.normal(size=50)},
                         index=np.arange(2, 52))
    top = chapter.top_movies(parts, 0.5, 2.0, k=7)
    score = {i: 0.5 * w + 2.0 * d for i, w, d in zip(parts["item_id"], parts["wide"], parts["deep"])}
    assert list(top["item_id"]) == sorted(score, key=score.get, reverse=True)[:7]
    assert list(top.index) == list(range(1, 8))
    with pytest.raises(ValueError, match="k"):
        chapter.top_movies(parts, k=0)


def test_ranking_overlap_on_a_hand_made_case():
    i = np.arange(30)
    parts = pd.DataFrame({"item_id": i + 1, "wide": 30.0 - i, "deep": np.where((i >= 5) & (i < 15), 100.0, 0.0)},
                         index=i + 2)
    out = chapter.ranking_overlap({7: parts})
    # wide's top ten: 0-9; deep's: 5-14; wide + deep: 5-14.
    assert out.loc[7].to_dict() == {"wide ∩ deep": 5, "wide ∩ both": 5, "deep ∩ both": 10}


def test_scaling_chart_ships_every_reachable_top_ten(data, trained_like):
    from io import StringIO

    test = data.frames["test"]
    users = [int(u) for u in test["user_id"].unique()[:2]]
    parts = {u: chapter.catalogue_parts(trained_like, data, u) for u in users}
    titles = data.catalogue.frame.set_index("item_id")["title"]
    chart = chapter.scaling_chart(parts, data, user=users[0], titles=titles, n_checks=2,
                                  checks=[(u, a, b) for u in users for a, b in [(1.0, 0.0), (0.0, 1.0), (2.0, 0.5)]])
    cand = pd.read_csv(StringIO(chart.spec["datasets"]["wd_candidates"]))
    for u in users:  # brute force over the sliders' grid, on the shipped (rounded) numbers
        p = parts[u]
        w, d = np.rint(p["wide"].to_numpy() * 1e4), np.rint(p["deep"].to_numpy() * 1e4)
        shipped = set(cand.loc[cand["user"] == u, "movie"])
        for a in chapter.SCALES:
            for b in chapter.SCALES:
                if a == b == 0:
                    continue
                best = p["item_id"].to_numpy()[np.argsort(-(a * w + b * d), kind="stable")[:10]]
                assert set(best) <= shipped
    checks = chart.spec["usermeta"]["recbook"]["checks"]
    assert len(checks) == 2
    for check in checks:  # each check lists the ten titles of a brute-force ranking of the model
        u, a, b = check["set"]["user"], check["set"]["wide"], check["set"]["deep"]
        p = parts[u]
        best = p["item_id"].to_numpy()[np.argsort(-(a * p["wide"].to_numpy() + b * p["deep"].to_numpy()),
                                                  kind="stable")[:10]]
        assert check["texts"] == [f"{r}. {chapter.short_title(titles[int(m)])}" for r, m in enumerate(best, 1)]
    with pytest.raises(ValueError, match="user: 5 is not among the users of parts"):
        chapter.scaling_chart(parts, data, user=5, titles=titles)


def test_architecture_diagram_names_the_crosses():
    import matplotlib
    matplotlib.use("Agg")
    ax = chapter.plot_widedeep_architecture()
    texts = " ".join(t.get_text() for t in ax.texts)
    for cross in ("gender × genres", "user_id × genres", "gender × item_id"):
        assert cross in texts
    assert "MLP 256 → 128 → 1" in texts
    with pytest.raises(ValueError, match="fields: expected at least two"):
        chapter.plot_widedeep_architecture(fields=("user_id",))


# --------------------------------------------------------------------------------------------
# The cross weights, explored in the browser
# --------------------------------------------------------------------------------------------

def test_genre_cross_weights_read_the_model_s_rows(data, trained_like):
    frame = chapter.genre_cross_weights(trained_like, data.train)
    crosses = trained_like.cross.crosses
    assert len(frame) == sum(len(crosses[c].pairs) for c in chapter.EXPLORED_CROSSES)
    row_of = {lab: i for i, lab in enumerate(crosses.labels())}
    weight = trained_like.cross.weight.detach().numpy()
    for _, r in frame.sample(40, random_state=0).iterrows():
        assert r["weight"] == pytest.approx(weight[row_of[f"{r['group']} × genres={r['genre']}"]])
    train = data.frames["train"][["occupation", "genres"]].explode("genres")
    n = train.groupby(["occupation", "genres"]).size()
    occ = frame[frame["cross"] == "occupation × genres"]
    assert list(occ["train rows"]) == [n[(g.split("=", 1)[1], genre)] for g, genre in zip(occ["group"], occ["genre"])]
    with pytest.raises(ValueError, match="crosses: 'gender × item_id' is not a '<field> × genres' cross"):
        chapter.genre_cross_weights(trained_like, data.train, ["gender × item_id"])


def test_cross_weight_chart_checks_the_extreme_weights(data, trained_like):
    chart = chapter.cross_weight_chart(trained_like, data.train, value="gender=F",
                                       checks=["occupation=writer", "age_bucket=25-34", "occupation=doctor"])
    checks = chart.spec["usermeta"]["recbook"]["checks"]
    assert len(checks) == 2
    frame = chapter.genre_cross_weights(trained_like, data.train)
    groups = list(dict.fromkeys(frame["group"]))
    for check in checks:
        rows = frame[frame["group"] == groups[check["set"]["group"]]]
        hi, lo = rows.loc[rows["weight"].idxmax()], rows.loc[rows["weight"].idxmin()]
        signed = lambda w: ("+" if w >= 0 else "\N{MINUS SIGN}") + f"{abs(w):.3f}"  # noqa: E731
        assert check["texts"] == [f"largest: {hi['genre']} ({signed(hi['weight'])})",
                                  f"smallest: {lo['genre']} ({signed(lo['weight'])})"]
    with pytest.raises(ValueError, match="value: 'gender=X' is not among the crossed values"):
        chapter.cross_weight_chart(trained_like, data.train, value="gender=X")


# --------------------------------------------------------------------------------------------
# Written for the reader: escaped values, checks in the helpers, dates and records from code
# --------------------------------------------------------------------------------------------

def test_wide_terms_table_shows_unk_in_html(data, trained_like):
    """The chapter's table of terms goes through recbook.widgets.escape_html: the browser must
    show "<unk>", not read it as a tag (a Styler escapes nothing; a second .format() even drops
    escape="html")."""
    from recbook import widgets

    from recbook.data.features import UNK

    row = int(np.flatnonzero(data.test["x"][:, 0].numpy() == UNK)[0])    # a new user: user_id unknown
    terms = chapter.wide_terms(trained_like, data.test, row=row)
    assert terms["term"].str.contains("<unk>").any()
    html = widgets.escape_html(terms).style.format({"x": "{:g}", "weight": "{:+.4f}"}).to_html()
    assert "user_id=&lt;unk&gt;" in html and "&lt;unk&gt; (user_id × genres)" in html
    assert "<unk>" not in html


def test_chart_helpers_bring_their_own_browser_checks(data, trained_like):
    chart = chapter.cross_weight_chart(trained_like, data.train, value="occupation=programmer")
    checks = chart.spec["usermeta"]["recbook"]["checks"]
    assert len(checks) == 2 and all(c["texts"] for c in checks)
    test = data.frames["test"]
    users = [int(u) for u in test["user_id"].unique()[:2]]
    parts = {u: chapter.catalogue_parts(trained_like, data, u) for u in users}
    titles = data.catalogue.frame.set_index("item_id")["title"]
    chart = chapter.scaling_chart(parts, data, user=users[0], titles=titles, n_checks=2)
    assert len(chart.spec["usermeta"]["recbook"]["checks"]) == 2


def test_split_dates_of_the_ctr_protocol(data):
    dates = chapter.split_dates(data)
    assert (str(dates.loc["valid", "first"]), str(dates.loc["valid", "last"])) == ("1998-03-07", "1998-03-31")
    assert 3.25 < dates.loc["valid", "weeks"] < 3.75            # not "a week": three and a half
    t = pd.to_datetime(data.frames["valid"]["timestamp"], unit="s")
    assert abs(dates.loc["valid", "days"] - (t.max() - t.min()).total_seconds() / 86400) < 1e-9


def test_paired_seeds_by_hand():
    rows = [{"model": m, "protocol": "ctr", "seed": s, "test_auc": a + s * 0.01, "valid_auc": 0.6,
             "test_logloss": 0.5} for s in range(3) for m, a in [("A", 0.70), ("B", 0.71)]]
    by_seed, out = chapter.paired_seeds(pd.DataFrame(rows), "A", "B")
    assert np.allclose(by_seed["test_auc B − A"], 0.01)
    assert np.isclose(out.loc["test AUC, B − A", "mean"], 0.01)
    assert out.loc["validation AUC, B − A", "max"] == 0
    assert "&lt;" not in chapter.by_seed_table(by_seed).to_html()
    with pytest.raises(ValueError, match="metrics"):
        chapter.paired_seeds(pd.DataFrame(rows), "A", "B", metrics=["test_gauc"])


def test_ftrl_sweep_holds_the_leaderboard_entry_and_its_record_matches_the_code():
    """The WideDeep-FTRL entry's settings are one point of the sweep's grid, the committed record
    (book/results/widedeep_ftrl_sweep.csv) ran exactly these entries (fingerprints), three seeds
    each, and on validation the entry's setting is tied with the grid's best (the paired
    difference changes sign across seeds and is below the seed spread)."""
    from recbook.bench import REGISTRY, WIDEDEEP_FTRL, fingerprint, read_results

    assert dict(WIDEDEEP_FTRL) in [dict(g) for g in chapter.FTRL_GRID]
    entries = chapter.ftrl_sweep_entries()
    assert len(entries) == len(chapter.FTRL_GRID)
    reg = REGISTRY["WideDeep-FTRL"]
    for e in entries:   # the same model and fit settings as the entry, but for the optimiser
        assert e.factory == reg.factory and e.params == reg.params and e.train_data is reg.train_data
        assert {k: v for k, v in e.fit.items() if k != "optimizer"} == \
            {k: v for k, v in reg.fit.items() if k != "optimizer"}
    opt = reg.fit["optimizer"]
    bound = dict(zip(opt.__code__.co_freevars, (c.cell_contents for c in opt.__closure__)))
    assert {k: bound[k] for k in WIDEDEEP_FTRL} == WIDEDEEP_FTRL     # the entry uses the constant
    rows = read_results(chapter.FTRL_SWEEP_FILE)
    assert set(rows["fingerprint"]) == {fingerprint(e) for e in entries}
    assert (rows.groupby("model")["seed"].nunique() == 3).all()
    table = chapter.ftrl_sweep_table(rows)
    by_seed = rows.pivot_table(index=list(table.index.names), columns="seed", values="valid_auc")
    ours = by_seed.loc[tuple(WIDEDEEP_FTRL[k] for k in table.index.names)]
    gap = by_seed.loc[table.index[0]] - ours
    assert gap.min() <= 0 <= gap.max() and gap.mean() < table["valid AUC ±"].max()
    assert (table["seeds"] == 3).all() and np.isclose(table["valid AUC"].max(), by_seed.mean(axis=1).max())
    board = read_results("bench.csv").query("model == 'WideDeep-FTRL' and protocol == 'ctr'")
    assert np.allclose(board.set_index("seed")["valid_auc"].sort_index().to_numpy(), ours.to_numpy(), atol=2e-6)


# --------------------------------------------------------------------------------------------
# The from-scratch model's inputs, and a chart that fits a phone
# --------------------------------------------------------------------------------------------

def test_scratch_inputs_rebuild_both_parts_from_plain_tensors(data, trained_like):
    batch = data.test.subset(slice(0, 300))
    inp = chapter.scratch_inputs(batch, data.schema, trained_like.cross.crosses)
    model = trained_like.eval()
    w = model.linear.weights.table.weight[:, 0]
    with torch.no_grad():
        wide = model.linear.bias + (w[inp["ids"]] * inp["x"]).sum(1) \
            + (model.cross.weight[inp["pairs"]] * inp["x_pair"]).sum(1)
        torch.testing.assert_close(wide, model.wide(batch))
        xv = model.embedding.table.weight[inp["ids"]] * inp["x"].unsqueeze(-1)
        per_field = torch.stack([(xv * (inp["field"] == f).unsqueeze(-1)).sum(1)
                                 for f in range(len(data.schema))], dim=1)
        torch.testing.assert_close(per_field, model.embedding(batch))
    # Padding weighs nothing; each of a movie's k genres weighs 1/k.
    members = batch["genres"]
    k = (members != 0).sum(1, keepdim=True).float()
    g = inp["field"] == len(data.schema) - 1
    gx = inp["x"][g].view(len(k), -1)
    torch.testing.assert_close(gx, (members != 0).float() / k)
    assert (inp["x"][~g] == 1).all()
    no_cross = chapter.scratch_inputs(batch, data.schema)
    assert no_cross["pairs"].shape == (300, 0) and torch.equal(no_cross["ids"], inp["ids"])
    with pytest.raises(ValueError, match="schema: expected a recbook.data.Schema"):
        chapter.scratch_inputs(batch, "schema")
    with pytest.raises(ValueError, match="genres"):
        chapter.scratch_inputs({"x": batch["x"]}, data.schema)


def _fixed_widths(node) -> list:
    if isinstance(node, dict):
        own = [node["width"]] if isinstance(node.get("width"), (int, float)) else []
        return own + [w for v in node.values() for w in _fixed_widths(v)]
    if isinstance(node, list):
        return [w for v in node for w in _fixed_widths(v)]
    return []


def test_charts_readouts_fit_a_phone(data, trained_like):
    """A phone's cell is 358 px. The scaling chart: views of 155 px beside labels of at most
    about 200 px, titles cut, each movie's label in two lines (rank and title, then its old rank),
    and the readout a left-aligned title of three short lines. The cross-weight chart: bars of 150
    px with their notes right beside them."""
    import re
    from io import StringIO

    test = data.frames["test"]
    users = [int(u) for u in test["user_id"].unique()[:2]]
    parts = {u: chapter.catalogue_parts(trained_like, data, u) for u in users}
    titles = data.catalogue.frame.set_index("item_id")["title"]
    spec = chapter.scaling_chart(parts, data, user=users[0], titles=titles, n_checks=1).spec
    assert _fixed_widths(spec) and max(_fixed_widths(spec)) <= 160
    shipped = pd.read_csv(StringIO(spec["datasets"]["wd_titles"]))
    assert shipped["title"].str.len().max() <= chapter.TITLE_LIMIT
    assert "split(datum.label, '|')" in str(spec)
    title = spec["title"]
    assert title["anchor"] == "start" and title["frame"] == "bounds"
    lines = re.findall(r"'([^']*)'|\"([^\"]*)\"", title["text"]["expr"])
    assert max(len(a or b) for a, b in lines) <= 36             # every literal line is short
    for u in users:
        assert f"user {u} · " in title["text"]["expr"]
    spec1 = chapter.cross_weight_chart(trained_like, data.train).spec
    assert max(_fixed_widths(spec1)) <= 260
    notes = [layer for view in spec1["vconcat"] for layer in view.get("layer", [])
             if layer.get("mark", {}).get("type") == "text"]
    assert notes and all(n["encoding"]["x"]["value"] <= 160 for n in notes)


def test_cross_candidate_is_the_leaderboard_entry_plus_one_cross_and_its_record_matches_the_code():
    """The exercise's variant is the WideDeep entry with one more cross (same factory, settings and
    fit), the committed record (book/results/widedeep_cross_candidate.csv) ran exactly it
    (fingerprint), three seeds, and bad crosses are refused by name."""
    from recbook.bench import REGISTRY, fingerprint, read_results

    entry = chapter.cross_candidate_entry()
    reg = REGISTRY["WideDeep"]
    assert entry.factory == reg.factory and entry.fit == reg.fit
    assert entry.params == {**reg.params, "crosses": [*CROSSES, chapter.CROSS_CANDIDATE]}
    rows = read_results(chapter.CROSS_CANDIDATE_FILE)
    assert set(rows["fingerprint"]) == {fingerprint(entry)} and sorted(rows["seed"]) == [0, 1, 2]
    assert set(rows["model"]) == {entry.name}
    with pytest.raises(ValueError, match="cross: .* is already one of CROSSES"):
        chapter.cross_candidate_entry(tuple(CROSSES[0]))
    with pytest.raises(ValueError, match="cross: expected a pair of field names"):
        chapter.cross_candidate_entry("occupation")

"""recbook.chapters.fm: the logit splits exactly into its terms, the exported tables give the
model's logits, the charts' browser checks carry what the model computes, the 2-D interaction is a
dot product, the Gram and FM forms equal the pairs one by one, the seed and bootstrap comparisons
match hand-made cases, the figures draw what they should, the charts' readouts are short lines
that fit a phone, the committed comparison of initialisations is read as a paired interval, the
chapter's FM from scratch stays plain PyTorch of 20-40 lines, and bad input raises ValueError
naming the field."""
from __future__ import annotations

import math
from types import SimpleNamespace

import matplotlib

matplotlib.use("Agg")

import io  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from recbook.chapters import fm as chapter  # noqa: E402
from recbook.data import GENRES, Field, Schema, ctr_protocol  # noqa: E402
from recbook.models import FactorizationMachine, LogisticRegression  # noqa: E402
from recbook.widgets import _walk  # noqa: E402  (every dict of a chart spec)


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def small_schema() -> Schema:
    return Schema((
        Field("user_id", tuple(range(20))),
        Field("item_id", tuple(range(30))),
        Field("gender", ("F", "M")),
        Field("genres", tuple("ABCDE"), multi=True),
    ))


def small_batch(schema: Schema, n: int = 16, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    x = torch.stack([torch.randint(1, f.size, (n,), generator=g) for f in schema.single], dim=1)
    genres = torch.randint(2, schema["genres"].size, (n, 3), generator=g)
    k = torch.randint(0, 4, (n,), generator=g)  # 0 to 3 genres per row, the rest padding
    genres = torch.where(torch.arange(3) < k[:, None], genres, 0)
    return {"x": x, "genres": genres, "label": torch.randint(0, 2, (n,), generator=g).float()}


def trained_like_fm(schema: Schema, seed: int = 0) -> FactorizationMachine:
    """An FM with weights of order 1 everywhere, as after training (the default init is ~0)."""
    torch.manual_seed(seed)
    fm = FactorizationMachine(schema, dim=4, init_std=0.5)
    with torch.no_grad():
        fm.linear.weights.table.weight.normal_(0, 0.5)
        fm.linear.bias.fill_(0.3)
    return fm


# --------------------------------------------------------------------------------------------
# Contributions
# --------------------------------------------------------------------------------------------

def test_contributions_sum_to_the_logit_for_every_row():
    schema = small_schema()
    fm, batch = trained_like_fm(schema), small_batch(schema)
    with torch.no_grad():
        logits = fm(batch).double().numpy()
    table = chapter.contribution_table(fm, batch)
    assert list(table.columns) == ["bias", "user_id", "item_id", "gender", "genres",
                                   "user_id × item_id", "user_id × gender", "user_id × genres",
                                   "item_id × gender", "item_id × genres", "gender × genres"]
    np.testing.assert_allclose(table.sum(axis=1).to_numpy(), logits, atol=1e-5)
    assert np.abs(logits).max() > 0.5  # a non-trivial check: the terms are not all ~0
    for row in range(len(logits)):
        c = chapter.pair_contributions(fm, batch, row)
        assert c["contribution"].sum() == pytest.approx(logits[row], abs=1e-5)
        np.testing.assert_allclose(c["contribution"].to_numpy(), table.iloc[row].to_numpy())


def test_pair_contribution_is_the_dot_product_of_the_two_field_vectors():
    schema = small_schema()
    fm, batch = trained_like_fm(schema), small_batch(schema)
    row = 3
    c = chapter.pair_contributions(fm, batch, row).set_index("term")
    assert c.loc["bias", "kind"] == "bias" and c.loc["gender", "kind"] == "first order"
    assert c.loc["user_id × item_id", "kind"] == "pair"
    pair = c.loc["user_id × item_id"]
    assert (pair["field_a"], pair["field_b"]) == ("user_id", "item_id")
    x = batch["x"][row]
    with torch.no_grad():
        v_user = fm.embedding.lookup("user_id", x[0:1])[0]
        v_item = fm.embedding.lookup("item_id", x[1:2])[0]
        members = batch["genres"][row][batch["genres"][row] != 0]
        v_genres = fm.embedding.lookup("genres", members).mean(0) if len(members) else torch.zeros(4)
        w_gender = fm.linear.weights.lookup("gender", x[2:3])[0, 0]
    assert c.loc["user_id × item_id", "contribution"] == pytest.approx(float(v_user @ v_item), abs=1e-6)
    assert c.loc["user_id × genres", "contribution"] == pytest.approx(float(v_user @ v_genres), abs=1e-6)
    assert c.loc["gender", "contribution"] == pytest.approx(float(w_gender), abs=1e-6)
    assert c.loc["bias", "contribution"] == pytest.approx(0.3)
    assert chapter.pair_names(["a", "b", "c"]) == ["a × b", "a × c", "b × c"]


def test_contributions_accept_tensor_data_and_leave_training_mode_alone():
    from recbook.data import TensorData

    schema = small_schema()
    fm, batch = trained_like_fm(schema), small_batch(schema)
    fm.train()
    table = chapter.contribution_table(fm, TensorData(batch))
    assert len(table) == 16 and fm.training
    assert not any(p.grad is not None for p in fm.parameters())


@pytest.mark.parametrize("call, field", [
    (lambda fm, b: chapter.pair_contributions(LogisticRegression(fm.schema), b), "model"),
    (lambda fm, b: chapter.contribution_table("fm", b), "model"),
    (lambda fm, b: chapter.pair_contributions(fm, b, 16), "row"),
    (lambda fm, b: chapter.pair_contributions(fm, b, -1), "row"),
    (lambda fm, b: chapter.pair_contributions(fm, b, 1.0), "row"),
    (lambda fm, b: chapter.pair_contributions(fm, {"genres": b["genres"]}), "batch"),
    (lambda fm, b: chapter.pair_contributions(fm, {**b, "x": b["x"] + 40}), "user_id"),
    (lambda fm, b: chapter.contribution_table(fm, {"x": b["x"]}), "genres"),
])
def test_contributions_bad_input_names_the_field(call, field):
    schema = small_schema()
    with pytest.raises(ValueError, match=field):
        call(trained_like_fm(schema), small_batch(schema))


# --------------------------------------------------------------------------------------------
# A user and a movie of the CTR protocol
# --------------------------------------------------------------------------------------------

def tiny_movielens(n_users: int = 30, n_items: int = 12, seed: int = 0) -> SimpleNamespace:
    rng = np.random.default_rng(seed)
    start = pd.Timestamp("1998-01-01")
    rows = []
    for u in range(1, n_users + 1):
        items = rng.choice(np.arange(1, n_items + 1), size=int(rng.integers(3, 8)), replace=False)
        for k, i in enumerate(items):
            rows.append((u, int(i), int(rng.integers(1, 6)), start + pd.Timedelta(days=u, minutes=k)))
    ratings = pd.DataFrame(rows, columns=["user_id", "item_id", "rating", "timestamp"])
    users = pd.DataFrame({
        "user_id": np.arange(1, n_users + 1),
        "age": rng.integers(15, 70, n_users),
        "gender": rng.choice(["F", "M"], n_users),
        "occupation": rng.choice(["artist", "student", "writer"], n_users),
        "zip_code": [f"{z:05d}" for z in rng.integers(0, 99999, n_users)],
    })
    items = pd.DataFrame({"item_id": np.arange(1, n_items + 1),
                          "title": [f"Movie {i}" for i in range(1, n_items + 1)],
                          "release_year": pd.array(rng.integers(1940, 1999, n_items), dtype="Int64")})
    flags = rng.random((n_items, len(GENRES))) < 0.3
    flags[:, 0] |= ~flags.any(axis=1)
    for j, g in enumerate(GENRES):
        items[g] = flags[:, j]
    return SimpleNamespace(ratings=ratings, users=users, items=items)


@pytest.fixture(scope="module")
def ctr():
    return ctr_protocol(tiny_movielens())


def test_user_movie_batch_of_a_rated_pair_is_its_row(ctr):
    test = ctr.frames["test"]
    row = 2
    b = chapter.user_movie_batch(ctr, int(test.loc[row, "user_id"]), int(test.loc[row, "item_id"]))
    assert torch.equal(b["x"][0], ctr.test["x"][row])
    width = b["genres"].shape[1]
    assert torch.equal(b["genres"][0], ctr.test["genres"][row, :width])
    assert (ctr.test["genres"][row, width:] == 0).all()
    assert b["label"].item() == test.loc[row, "label"]


def test_user_movie_batch_of_an_unrated_pair(ctr):
    rated = pd.concat(ctr.frames.values())
    pairs = set(zip(rated["user_id"], rated["item_id"]))
    user, item = next((u, i) for u in range(1, 31) for i in range(1, 13) if (u, i) not in pairs
                      and u in set(rated["user_id"]) and i in set(rated["item_id"]))
    b = chapter.user_movie_batch(ctr, user, item)
    assert b["x"].shape == (1, 7) and math.isnan(b["label"].item())
    fm = FactorizationMachine(ctr.schema, dim=4)
    total = chapter.pair_contributions(fm, b)["contribution"].sum()
    assert total == pytest.approx(fm(b).item(), abs=1e-6)


@pytest.mark.parametrize("kwargs, field", [
    (dict(user_id=10_000, item_id=1), "user_id"),
    (dict(user_id=1, item_id=10_000), "item_id"),
    (dict(user_id="1", item_id=1), "user_id"),
])
def test_user_movie_batch_bad_input_names_the_field(ctr, kwargs, field):
    with pytest.raises(ValueError, match=field):
        chapter.user_movie_batch(ctr, **kwargs)
    with pytest.raises(ValueError, match="data"):
        chapter.user_movie_batch(object(), 1, 1)


# --------------------------------------------------------------------------------------------
# Unseen pairs
# --------------------------------------------------------------------------------------------

def test_unseen_pair_share_counts_test_rows_without_a_training_row():
    train = pd.DataFrame({"a": [1, 1, 2, 2, 2], "b": ["x", "y", "x", "x", "x"]})
    test = pd.DataFrame({"a": [1, 2, 2, 3], "b": ["x", "y", "x", "x"]})
    out = chapter.unseen_pair_share(train, test, [("a", "b")])
    assert list(out.index) == ["a × b"]
    assert out.loc["a × b", "pairs in train"] == 3
    assert out.loc["a × b", "median train rows per pair"] == 1
    assert out.loc["a × b", "test rows unseen"] == pytest.approx(0.5)  # (2, y) and (3, x)


@pytest.mark.parametrize("train, test, pairs, field", [
    (pd.DataFrame({"a": [1]}), pd.DataFrame({"a": [1], "b": [1]}), [("a", "b")], "train"),
    (pd.DataFrame({"a": [1], "b": [1]}), pd.DataFrame({"a": [1]}), [("a", "b")], "test"),
    (pd.DataFrame({"a": [1], "b": [1]}), pd.DataFrame({"a": [1], "b": [1]}), [], "pairs"),
    (pd.DataFrame({"a": [1], "b": [1]}), pd.DataFrame({"a": [1], "b": [1]}), [("a",)], "pairs"),
])
def test_unseen_pair_share_bad_input_names_the_field(train, test, pairs, field):
    with pytest.raises(ValueError, match=field):
        chapter.unseen_pair_share(train, test, pairs)


# --------------------------------------------------------------------------------------------
# Timing
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("backward", [False, True])
def test_time_pairwise_one_row_per_n_with_positive_times(backward):
    times = chapter.time_pairwise(ns=[2, 8, 4], dim=3, batch=2, repeats=1, backward=backward)
    assert list(times.columns) == ["n", "fm_seconds", "gram_seconds", "loop_seconds",
                                   "gram_ratio", "loop_ratio"]
    assert times["n"].tolist() == [2, 8, 4]
    assert (times.filter(like="_seconds") > 0).all().all()
    np.testing.assert_allclose(times["gram_ratio"], times["gram_seconds"] / times["fm_seconds"])
    np.testing.assert_allclose(times["loop_ratio"], times["loop_seconds"] / times["fm_seconds"])


def test_gram_form_equals_the_pairs_one_by_one():
    g = torch.Generator().manual_seed(0)
    v = torch.randn(5, 7, 3, dtype=torch.float64, generator=g)
    by_hand = torch.tensor([sum(float(v[b, i] @ v[b, j]) for i in range(7) for j in range(i + 1, 7))
                            for b in range(5)], dtype=torch.float64)
    assert torch.allclose(chapter.pairwise_interaction_gram(v), by_hand, atol=1e-12)
    with pytest.raises(ValueError, match="v"):
        chapter.pairwise_interaction_gram(torch.zeros(3, 4))


@pytest.mark.parametrize("kwargs, field", [
    (dict(ns=[]), "ns"), (dict(ns=[8, 0]), "ns"), (dict(ns="8"), "ns"), (dict(ns=[8.0]), "ns"),
    (dict(ns=[8], dim=0), "dim"), (dict(ns=[8], batch=-1), "batch"), (dict(ns=[8], repeats=0), "repeats"),
    (dict(ns=[8], threads=0), "threads"),
])
def test_time_pairwise_bad_input_names_the_field(kwargs, field):
    with pytest.raises(ValueError, match=field):
        chapter.time_pairwise(**kwargs)


# --------------------------------------------------------------------------------------------
# Two vectors in the plane
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("angle1, len1, angle2, len2", [
    (0, 1.5, 60, 1.2), (30, 2.0, 210, 0.5), (90, 1.0, 0, 1.0), (-45, 0.0, 10, 3.0), (350, 1.0, 10, 2.0),
])
def test_two_vector_interaction_is_len1_len2_cos_of_the_angle_difference(angle1, len1, angle2, len2):
    r = chapter.two_vector_interaction(angle1, len1, angle2, len2, bias=-0.5)
    expected = len1 * len2 * math.cos(math.radians(angle2 - angle1))
    assert r.interaction == pytest.approx(expected, abs=1e-12)
    assert r.interaction == pytest.approx(float(r.v1 @ r.v2), abs=1e-12)
    assert np.linalg.norm(r.v1) == pytest.approx(len1) and np.linalg.norm(r.v2) == pytest.approx(len2)
    assert r.logit == pytest.approx(expected - 0.5)
    assert r.probability == pytest.approx(1 / (1 + math.exp(-(expected - 0.5))))


def test_two_vector_probability_is_stable_for_large_logits():
    assert chapter.two_vector_interaction(0, 1, 180, 1, bias=-800).probability == 0.0
    assert chapter.two_vector_interaction(0, 1, 0, 1, bias=800).probability == 1.0


@pytest.mark.parametrize("args, field", [
    ((0, -1.0, 0, 1.0), "len1"), ((0, 1.0, 0, -0.1), "len2"), ((float("nan"), 1, 0, 1), "angle1"),
    ((0, 1, float("inf"), 1), "angle2"), ((0, 1, 0, 1, "0"), "bias"), ((True, 1, 0, 1), "angle1"),
])
def test_two_vector_interaction_bad_input_names_the_field(args, field):
    with pytest.raises(ValueError, match=field):
        chapter.two_vector_interaction(*args)


# --------------------------------------------------------------------------------------------
# Figures
# --------------------------------------------------------------------------------------------

def test_interaction_heatmaps_share_one_colour_scale_and_mark_the_fields():
    rng = np.random.default_rng(0)
    u = rng.normal(size=(12, 2))
    planted = u @ u.T
    learned = 0.5 * planted
    axes = chapter.plot_interaction_heatmaps(planted, learned, n_fields=3, field_names=["a", "b", "c"])
    assert len(axes) == 2
    (im0,), (im1,) = axes[0].get_images(), axes[1].get_images()
    np.testing.assert_array_equal(im0.get_array(), planted)
    np.testing.assert_array_equal(im1.get_array(), learned)
    vmax = np.abs(planted).max()
    assert im0.get_clim() == im1.get_clim() == (-vmax, vmax)
    assert [t.get_text() for t in axes[0].get_xticklabels()] == ["a", "b", "c"]
    assert len(axes[0].lines) == 4  # two boundaries between three fields, each way


@pytest.mark.parametrize("kwargs, field", [
    (dict(planted=np.zeros((4, 4)), learned=np.zeros((6, 6)), n_fields=2), "learned"),
    (dict(planted=np.zeros((4, 3)), learned=np.zeros((4, 3)), n_fields=2), "planted"),
    (dict(planted=np.zeros((6, 6)), learned=np.zeros((6, 6)), n_fields=4), "n_fields"),
    (dict(planted=np.zeros((6, 6)), learned=np.full((6, 6), np.nan), n_fields=2), "learned"),
    (dict(planted=np.zeros((6, 6)), learned=np.zeros((6, 6)), n_fields=2, field_names=["a"]), "field_names"),
    (dict(planted=np.zeros((6, 6)), learned=np.zeros((6, 6)), n_fields=2, axes="left"), "axes"),
])
def test_interaction_heatmaps_bad_input_names_the_field(kwargs, field):
    with pytest.raises(ValueError, match=field):
        chapter.plot_interaction_heatmaps(**kwargs)


def test_pairwise_timing_draws_three_forms_on_log_log_axes():
    times = pd.DataFrame({"n": [8, 16, 32], "fm_seconds": [1e-4, 1.1e-4, 1.3e-4],
                          "gram_seconds": [1.2e-4, 2e-4, 6e-4], "loop_seconds": [2e-4, 8e-4, 3.2e-3]})
    ax = chapter.plot_pairwise_timing(times)
    assert ax.get_xscale() == "log" and ax.get_yscale() == "log"
    measured = sorted(tuple(ln.get_ydata()) for ln in ax.lines if ln.get_marker() in ("o", "s", "D"))
    assert measured == sorted(tuple(times[c]) for c in ("fm_seconds", "gram_seconds", "loop_seconds"))
    note = " ".join(t.get_text() for t in ax.texts)
    assert "n = 8: Gram 1.2×, loop 2.0×" in note and "n = 32: Gram 5×, loop 25×" in note


@pytest.mark.parametrize("times, field", [
    (pd.DataFrame({"n": [8], "fm_seconds": [1.0], "loop_seconds": [1.0]}), "gram_seconds"),
    (pd.DataFrame({"n": [8], "fm_seconds": [0.0], "gram_seconds": [1.0], "loop_seconds": [1.0]}), "times"),
    ([1, 2], "times"),
])
def test_pairwise_timing_bad_input_names_the_field(times, field):
    with pytest.raises(ValueError, match=field):
        chapter.plot_pairwise_timing(times)


def test_gram_identity_figure_writes_the_worked_example():
    v = np.array([[1, 2], [0, -1], [3, 1]])
    ax, tx = chapter.plot_gram_identity(v)
    cells = sorted(t.get_text() for t in ax.texts)
    assert cells == sorted(str(int(x)) for x in (v @ v.T).ravel())
    text = " ".join(t.get_text() for t in tx.texts)
    # sum of G = |(4, 2)|^2 = 20, trace = 5 + 1 + 10 = 16, pairs: -2 + 5 - 1 = 2
    assert "|(4, 2)|² = 20" in text and "5 + 1 + 10 = 16" in text and "(20 − 16) / 2 = 2" in text
    assert "(-2) + 5 + (-1) = 2" in text
    with pytest.raises(ValueError, match="v"):
        chapter.plot_gram_identity(np.zeros(3))
    with pytest.raises(ValueError, match="names"):
        chapter.plot_gram_identity(v, names=["a"])


def test_architecture_diagram_names_every_field():
    ax = chapter.plot_fm_architecture(["a", "b", "genres"], dim=4)
    texts = " ".join(t.get_text() for t in ax.texts)
    assert all(f"{f} rows" in texts for f in ("a", "b", "genres")) and "v (4)" in texts
    assert "offset[field] + code" in texts
    with pytest.raises(ValueError, match="fields"):
        chapter.plot_fm_architecture(["a"])


# --------------------------------------------------------------------------------------------
# Charts computed in the browser
# --------------------------------------------------------------------------------------------

def test_two_vector_chart_checks_carry_the_dot_product():
    chart = chapter.two_vector_chart(0, 1.5, 60, 1.2, -0.5, checks=[dict(angle2=180, len2=2.0)])
    spec = chart.to_dict(validate=False)
    checks = spec["usermeta"]["recbook"]["checks"]
    assert checks[0]["set"] == dict(angle1=0, len1=1.5, angle2=60, len2=1.2, bias=-0.5)
    # 1.5 * 1.2 * cos 60° = 0.9, logit -0.5 + 0.9 = 0.4, p = sigmoid(0.4) = 0.599
    assert checks[0]["texts"] == ["angle between them: 60°", "⟨v₁, v₂⟩ = +0.90", "logit = +0.40 · p = 0.60"]
    # opposite vectors: 1.5 * 2 * cos 180° = -3, logit -3.5 (true minus signs, as the browser writes)
    assert checks[1]["texts"][1:] == ["⟨v₁, v₂⟩ = \u22123.00", "logit = \u22123.50 · p = 0.03"]
    assert set(chapter.widgets.bound_params(spec)) == {"angle1", "len1", "angle2", "len2", "bias"}
    with pytest.raises(ValueError, match="checks"):
        chapter.two_vector_chart(checks=[dict(theta=3)])


@pytest.fixture(scope="module")
def trained(ctr):
    torch.manual_seed(0)
    fm = FactorizationMachine(ctr.schema, dim=4, init_std=0.3)
    with torch.no_grad():
        fm.linear.weights.table.weight.normal_(0, 0.3)
        fm.linear.bias.fill_(0.1)
    return fm


def test_fm_tables_give_the_model_s_logit_for_every_user_and_movie(ctr, trained):
    titles = {i: f"Movie {i}" for i in range(1, 13)}
    tables = chapter.fm_tables(trained, ctr, titles)
    assert tables.dim == 4 and tables.fields == tuple(ctr.schema.names)
    rows = pd.concat(ctr.frames.values())
    assert sorted(tables.users["user"]) == sorted(rows["user_id"].unique())
    assert tables.users.set_index("user")["seen"].to_dict() == {
        u: int(u in set(ctr.frames["train"]["user_id"])) for u in tables.users["user"]}
    assert tables.items.set_index("movie")["title"].to_dict() == {m: titles[m] for m in tables.items["movie"]}
    for u in sorted(rows["user_id"].unique())[::4]:
        for m in sorted(rows["item_id"].unique())[::3]:
            terms = chapter.tables_logit(tables, int(u), int(m))
            with torch.no_grad():
                logit = trained(chapter.user_movie_batch(ctr, int(u), int(m))).item()
            assert sum(terms.values()) == pytest.approx(logit, abs=1e-5)
            assert len(terms) == 1 + 8 + 28
    with pytest.raises(ValueError, match="user"):
        chapter.tables_logit(tables, 10_000, 1)
    with pytest.raises(ValueError, match="titles"):
        chapter.fm_tables(trained, ctr, {1: "only one"})


def test_contribution_chart_ships_the_tables_and_checks_the_model_s_logit(ctr, trained):
    rows = pd.concat(ctr.frames.values())
    users = sorted(rows["user_id"].unique())
    chart = chapter.contribution_chart(trained, ctr, user=int(users[0]), movie=1, top=5,
                                       checks=[(int(users[-1]), 2)])
    spec = chart.to_dict(validate=False)
    weights = pd.read_csv(io.StringIO(spec["datasets"]["fm_weights"]))
    tables = chapter.fm_tables(trained, ctr)
    # shipped as integers in units of 1e-4
    assert (weights[["w", "v0"]].to_numpy() == np.rint(tables.weights[["w", "v0"]].to_numpy() * 1e4)).all()
    for check in spec["usermeta"]["recbook"]["checks"]:
        u, m = check["set"]["user"], check["set"]["movie"]
        with torch.no_grad():
            logit = trained(chapter.user_movie_batch(ctr, u, m)).item()
        assert check["texts"][0] == "logit = " + chapter.d3_signed(logit)
        seen = u in set(ctr.frames["train"]["user_id"])
        assert check["texts"][1] == ("seen in training" if seen else "new user")
    params = chapter.widgets.bound_params(spec)
    assert params["user"]["bind"]["options"] == [int(u) for u in users]
    with pytest.raises(ValueError, match="movie"):
        chapter.contribution_chart(trained, ctr, user=int(users[0]), movie=999)
    with pytest.raises(ValueError, match="model"):
        chapter.contribution_chart(LogisticRegression(ctr.schema), ctr, user=int(users[0]), movie=1)




def test_charts_pick_their_own_browser_checks(ctr, trained):
    """The chapter calls the charts without ``checks``: each helper adds checks of its own."""
    spec = chapter.two_vector_chart().to_dict(validate=False)
    checks = spec["usermeta"]["recbook"]["checks"]
    assert len(checks) == 2 and checks[1]["set"] == chapter.TWO_VECTOR_CHECK
    users = chapter.fm_tables(trained, ctr).users
    first_seen = int(users.loc[users["seen"] == 1, "user"].iloc[0])
    spec = chapter.contribution_chart(trained, ctr, user=first_seen, movie=1).to_dict(validate=False)
    checks = spec["usermeta"]["recbook"]["checks"]
    pairs = [(c["set"]["user"], c["set"]["movie"]) for c in checks]
    assert len(pairs) == 4 and len(set(pairs)) == 4 and pairs[0] == (first_seen, 1)
    kinds = [c["texts"][1] for c in checks]
    assert {"seen in training", "new user"} <= set(kinds)          # both kinds of user
    for check in checks:
        u, m = check["set"]["user"], check["set"]["movie"]
        with torch.no_grad():
            logit = trained(chapter.user_movie_batch(ctr, u, m)).item()
        assert check["texts"][0] == "logit = " + chapter.d3_signed(logit)


# --------------------------------------------------------------------------------------------
# Charts that fit a phone
# --------------------------------------------------------------------------------------------

READOUT_CHARS = 36
"""The longest readout line a chart may write: about 250 px at 12-13 px, well inside a phone's
358 px cell once the chart is stacked (a longer line sticks out, and narrowing views cannot help)."""


def _text_fields(spec) -> set[str]:
    """The fields that text marks write (``text: {"field": ...}``)."""
    return {n["text"]["field"] for n in _walk(spec)
            if isinstance(n.get("text"), dict) and "field" in n["text"]}


def _readout_literals(spec) -> list[str]:
    """String literals of the expressions that compute what text marks write."""
    import re

    fields = _text_fields(spec)
    return [lit for n in _walk(spec) if n.get("calculate") and n.get("as") in fields
            for lit in re.findall(r"'([^']*)'", n["calculate"])]


def test_readouts_are_short_lines_that_fit_a_phone(ctr, trained):
    spec = chapter.two_vector_chart(checks=[dict(angle2=180, len2=2.0, bias=-3)]).to_dict(validate=False)
    lines = [t for c in spec["usermeta"]["recbook"]["checks"] for t in c["texts"]]
    assert max(map(len, lines)) <= READOUT_CHARS, lines
    users = chapter.fm_tables(trained, ctr).users
    new_user = int(users.loc[users["seen"] == 0, "user"].iloc[0])
    spec = chapter.contribution_chart(trained, ctr, user=new_user, movie=1).to_dict(validate=False)
    literals = _readout_literals(spec)
    assert any("never trained" in t for t in literals) and any("seen in training" in t for t in literals)
    assert max(map(len, literals)) <= READOUT_CHARS, literals
    # The colour legend sits below the bars (beside them it widens the chart by its labels).
    legends = [n["legend"] for n in _walk(spec) if isinstance(n.get("legend"), dict)]
    assert legends and all(leg.get("orient") == "bottom" for leg in legends)
    labels = [n["axis"]["labelLimit"] for n in _walk(spec) if isinstance(n.get("axis"), dict) and "labelLimit" in n["axis"]]
    assert labels and max(labels) <= 180



# --------------------------------------------------------------------------------------------
# The committed comparison of initialisations
# --------------------------------------------------------------------------------------------

def _ablation_rows(diffs):
    rows = []
    for seed, d in enumerate(diffs):
        rows.append({"side": "recbook", "variant": "recbook", "seed": seed, "valid_auc": 0.69, "test_auc": 0.70})
        rows.append({"side": "recbook", "variant": chapter.XAVIER_VARIANT, "seed": seed,
                     "valid_auc": 0.69 + d, "test_auc": 0.70 - d})
        rows.append({"side": "RecBole", "variant": "recbook", "seed": seed, "valid_auc": 0.5, "test_auc": 0.5})
    return pd.DataFrame(rows)


def test_init_comparison_is_the_paired_mean_with_its_t_interval():
    diffs = [0.001, 0.003, 0.005]
    table = chapter.init_comparison(_ablation_rows(diffs))
    v = table.loc["valid_auc"]
    # mean 0.003, sd 0.002, t(2, 0.975) = 4.3027: half-width 4.3027 * 0.002 / sqrt(3)
    half = 4.302653 * 0.002 / math.sqrt(3)
    assert v["difference"] == pytest.approx(0.003) and v["seeds"] == 3
    assert (v["low"], v["high"]) == pytest.approx((0.003 - half, 0.003 + half), abs=1e-6)
    assert table.loc["test_auc", "difference"] == pytest.approx(-0.003)     # the other side's rows ignored
    assert v["recbook"] == pytest.approx(0.69)


@pytest.mark.parametrize("rows, match", [
    (_ablation_rows([0.001]), "seed"),                                       # one seed: no interval
    (_ablation_rows([0.001, 0.002]).query("variant == 'recbook'"), "variant"),
    (_ablation_rows([0.001, 0.002]).drop(columns="valid_auc"), "valid_auc"),
])
def test_init_comparison_bad_input_names_the_field(rows, match):
    with pytest.raises(ValueError, match=match):
        chapter.init_comparison(rows)


def test_read_ablation_reads_the_committed_table():
    table = chapter.read_ablation("fm_ablation.csv")
    assert {"side", "variant", "seed", "valid_auc", "test_auc"} <= set(table.columns)
    assert chapter.XAVIER_VARIANT in set(table["variant"])
    with pytest.raises(ValueError, match="name"):
        chapter.read_ablation("../bench.csv")


def test_the_chapter_s_scratch_fm_is_plain_pytorch_of_20_to_40_lines():
    import json
    from pathlib import Path

    nb = json.loads((Path(__file__).resolve().parents[1] / "book" / "fm.ipynb").read_text(encoding="utf-8"))
    cells = {c.get("id"): c for c in nb["cells"]}
    source = "".join(cells["scratch"]["source"])
    cls = source.split("class ScratchFM")[1].split("\n\n\n")[0]
    lines = [line for line in cls.splitlines() if line.strip()]
    assert 20 <= len(lines) + 1 <= 40 and "recbook" not in cls and "import" not in cls
    assert "remove-cell" not in cells["scratch"]["metadata"].get("tags", [])
    check = "".join(cells["scratch-check"]["source"])
    assert "remove-cell" in cells["scratch-check"]["metadata"]["tags"]
    assert "torch.testing.assert_close(mine(" in check and "FactorizationMachine(" in check


def test_the_chapter_links_to_the_deepfm_listing_instead_of_repeating_it():
    """Say it once: the typical DeepFM listing run as written ([B, B] output, one table per field)
    lives in the DeepFM chapter; the FM chapter links to it."""
    import json
    from pathlib import Path

    nb = json.loads((Path(__file__).resolve().parents[1] / "book" / "fm.ipynb").read_text(encoding="utf-8"))
    text = "\n".join("".join(c["source"]) for c in nb["cells"])
    assert "ListingDeepFM" not in text and "square_of_sum" not in text and "loop_lookup" not in text
    assert "{ref}`deepfm-listing`" in text


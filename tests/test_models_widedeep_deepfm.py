"""Wide & Deep and DeepFM: logits, parts against independent references (brute-force pairwise sums,
an FM when the deep part is zero, logistic regression when there are no crosses), the optimiser
split, memorisation of a planted cross, and input validation."""
from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from recbook.data import Field, Schema, TensorData, build_crosses
from recbook.models import DeepFM, FactorizationMachine, LogisticRegression, WideDeep, ftrl_adagrad
from recbook.optim import FTRLProximal
from recbook.train import fit

GENRES = ("A", "B", "C", "D", "E")


def frame(n=300, seed=0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        "user_id": rng.integers(0, 20, n),
        "item_id": rng.integers(0, 30, n),
        "gender": rng.choice(["F", "M"], n),
        "genres": [tuple(rng.choice(GENRES, size=rng.integers(1, 4), replace=False)) for _ in range(n)],
        "label": rng.integers(0, 2, n).astype(np.float32),
    })


def schema_of(train: pd.DataFrame) -> Schema:
    return Schema((
        Field("user_id", tuple(sorted(train["user_id"].unique()))),
        Field("item_id", tuple(sorted(train["item_id"].unique()))),
        Field("gender", ("F", "M")),
        Field("genres", GENRES, multi=True),
    ))


def encode(f: pd.DataFrame, schema: Schema) -> dict:
    x = np.stack([schema[c.name].encode(f[c.name]) for c in schema.single], axis=1)
    return {"x": torch.from_numpy(x), "genres": torch.from_numpy(schema["genres"].encode_multi(f["genres"].tolist(), 3)),
            "label": torch.from_numpy(f["label"].to_numpy(np.float32, copy=True))}


@pytest.fixture(scope="module")
def setup():
    train = frame()
    schema = schema_of(train)
    crosses = build_crosses(train, schema, [("gender", "genres"), ("user_id", "genres"), ("gender", "item_id")])
    return train, schema, crosses, encode(train.iloc[:64], schema)


MODELS = {
    "widedeep": lambda s, c: WideDeep(s, c, dim=4, hidden=(16, 8)),
    "widedeep-no-crosses": lambda s, c: WideDeep(s, None, dim=4, hidden=(16, 8)),
    "deepfm": lambda s, c: DeepFM(s, dim=4, hidden=(16, 8)),
}


def randomise(model, std=0.5):
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, std)
    return model


@pytest.mark.parametrize("name", list(MODELS))
def test_logits_of_shape_b_and_gradients_everywhere(name, setup):
    _, schema, crosses, batch = setup
    torch.manual_seed(0)
    model = randomise(MODELS[name](schema, crosses), 1.0)
    out = model(batch)
    assert out.shape == (64,) and out.dtype == torch.float32
    assert (out < 0).any() and (out > 1).any()  # logits, not probabilities
    F.binary_cross_entropy_with_logits(out, batch["label"]).backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, pname


@pytest.mark.parametrize("name", list(MODELS))
def test_same_seed_same_model_and_no_shared_weights(name, setup):
    _, schema, crosses, batch = setup
    torch.manual_seed(3)
    a = MODELS[name](schema, crosses)
    torch.manual_seed(3)
    b = MODELS[name](schema, crosses)
    assert torch.equal(a(batch), b(batch))
    assert {p.data_ptr() for p in a.parameters()}.isdisjoint(p.data_ptr() for p in b.parameters())


@pytest.mark.parametrize("name", list(MODELS))
def test_models_validate_the_batch_naming_the_field(name, setup):
    _, schema, crosses, batch = setup
    model = MODELS[name](schema, crosses)
    bad = dict(batch, x=batch["x"].clone())
    bad["x"][3, 2] = 4  # gender has 4 rows: pad, unk, F, M
    with pytest.raises(ValueError, match=r"x\[:, 2\] \(field 'gender'\): index 4 out of range \[0, 4\)"):
        model(bad)
    with pytest.raises(ValueError, match="missing key 'genres'"):
        model({"x": batch["x"]})
    with pytest.raises(ValueError, match="expected dtype torch.int64"):
        model(dict(batch, genres=batch["genres"].float()))


# ------------------------------------------------------------------------------------ DeepFM

def test_deepfm_fm_term_is_the_brute_force_pairwise_sum(setup):
    _, schema, _, batch = setup
    torch.manual_seed(0)
    model = randomise(DeepFM(schema, dim=3, hidden=(8,)).double())
    v = model.embedding(batch)
    # Every pair of fields, one at a time, from the field vectors looked up by hand.
    x = batch["x"]
    fields = [model.embedding.field_weight(f.name)[x[:, i]] for i, f in enumerate(schema.single)]
    fields.append(model.embedding.pool("genres", batch["genres"]))
    torch.testing.assert_close(v, torch.stack(fields, 1))
    by_hand = sum((fields[i] * fields[j]).sum(1) for i, j in itertools.combinations(range(len(fields)), 2))
    torch.testing.assert_close(model.parts(batch)["fm"], by_hand, rtol=1e-10, atol=1e-10)
    # The MLP reads the same vectors, concatenated in schema order.
    torch.testing.assert_close(model.parts(batch)["deep"], model.mlp(torch.cat(fields, 1)).squeeze(1))


def test_deepfm_with_a_zero_deep_part_is_a_factorization_machine(setup):
    _, schema, _, batch = setup
    torch.manual_seed(0)
    deepfm = randomise(DeepFM(schema, dim=4, hidden=(8, 8)).double())
    fm = FactorizationMachine(schema, dim=4).double()
    with torch.no_grad():
        fm.linear.weights.table.weight.copy_(deepfm.linear.weights.table.weight)
        fm.linear.bias.copy_(deepfm.linear.bias)
        fm.embedding.table.weight.copy_(deepfm.embedding.table.weight)
        assert (deepfm(batch) - fm(batch)).abs().max() > 1e-3  # the deep part matters ...
        deepfm.mlp[-1].weight.zero_()
        deepfm.mlp[-1].bias.zero_()
    torch.testing.assert_close(deepfm(batch), fm(batch), rtol=1e-12, atol=1e-12)  # ... until it is zero
    parts = deepfm.parts(batch)
    assert set(parts) == {"linear", "fm", "deep"} and (parts["deep"] == 0).all()
    torch.testing.assert_close(parts["linear"] + parts["fm"] + parts["deep"], deepfm(batch))


def test_deepfm_has_one_embedding_table_trained_by_both_parts(setup):
    _, schema, _, batch = setup
    torch.manual_seed(0)
    model = randomise(DeepFM(schema, dim=4, hidden=(8,)), 0.3)
    tables = [p for p in model.parameters() if p.dim() == 2 and p.shape[0] == schema.total_size]
    assert len(tables) == 2  # first-order weights [n, 1] and the shared vectors [n, 4]
    grads = {}
    for part in ("fm", "deep"):
        model.zero_grad()
        model.parts(batch)[part].sum().backward()
        grads[part] = model.embedding.table.weight.grad.clone()
    rows = batch["x"][:, 0] + schema.offset_of("user_id")
    assert grads["fm"][rows].abs().sum() > 0 and grads["deep"][rows].abs().sum() > 0


# ------------------------------------------------------------------------------------ Wide & Deep

def test_widedeep_wide_part_is_lr_plus_the_cross_weights(setup):
    train, schema, crosses, batch = setup
    torch.manual_seed(0)
    wd = randomise(WideDeep(schema, crosses, dim=4, hidden=(8,)).double())
    lr = LogisticRegression(schema).double()
    with torch.no_grad():
        lr.linear.weights.table.weight.copy_(wd.linear.weights.table.weight)
        lr.linear.bias.copy_(wd.linear.bias)
    by_label = dict(zip(crosses.labels(), wd.cross.weight.tolist()))
    rows = train.iloc[:64]
    expected = []
    for r in rows.itertuples():  # the row's known pairs, by name; genres: mean over members
        s = np.mean([by_label.get(f"gender={r.gender} × genres={g}", 0.0) for g in r.genres])
        s += np.mean([by_label.get(f"user_id={r.user_id} × genres={g}", 0.0) for g in r.genres])
        s += by_label[f"gender={r.gender} × item_id={r.item_id}"]
        expected.append(s)
    torch.testing.assert_close(wd.wide(batch) - lr(batch), torch.tensor(expected, dtype=torch.float64))
    torch.testing.assert_close(wd(batch), wd.wide(batch) + wd.deep(batch))


def test_widedeep_without_crosses_is_logistic_regression_plus_an_mlp(setup):
    _, schema, _, batch = setup
    torch.manual_seed(0)
    wd = randomise(WideDeep(schema, None, dim=4, hidden=(8,)).double())
    lr = LogisticRegression(schema).double()
    with torch.no_grad():
        lr.linear.weights.table.weight.copy_(wd.linear.weights.table.weight)
        lr.linear.bias.copy_(wd.linear.bias)
    torch.testing.assert_close(wd.wide(batch), lr(batch))
    v = wd.embedding(batch).flatten(1)
    torch.testing.assert_close(wd(batch), lr(batch) + wd.mlp(v).squeeze(1))


def test_widedeep_parameter_groups_and_the_optimiser_split(setup):
    train, schema, crosses, _ = setup
    wd = WideDeep(schema, crosses, dim=4, hidden=(8,))
    wide, deep = wd.wide_parameters(), wd.deep_parameters()
    ids = lambda ps: {id(p) for p in ps}  # noqa: E731
    assert ids(wide).isdisjoint(ids(deep)) and ids(wide) | ids(deep) == ids(wd.parameters())
    assert any(p is wd.cross.weight for p in wide) and any(p is wd.embedding.table.weight for p in deep)
    ftrl, adagrad = ftrl_adagrad(alpha=0.1, l1=2.0, deep_lr=0.05)(wd)
    assert isinstance(ftrl, FTRLProximal) and isinstance(adagrad, torch.optim.Adagrad)
    assert ids(ftrl.param_groups[0]["params"]) | ids(ftrl.param_groups[1]["params"]) == ids(wide)
    assert ftrl.param_groups[1]["params"] == [wd.linear.bias] and ftrl.param_groups[1]["l1"] == 0.0
    assert ftrl.param_groups[0]["l1"] == 2.0 and adagrad.param_groups[0]["lr"] == 0.05
    with pytest.raises(ValueError, match="model: expected a recbook.models.WideDeep"):
        ftrl_adagrad()(DeepFM(schema))
    with pytest.raises(ValueError, match="l1: expected a non-negative number"):
        ftrl_adagrad(l1=-1.0)
    with pytest.raises(ValueError, match="deep_lr"):
        ftrl_adagrad(deep_lr=0)


def test_widedeep_rejects_crosses_of_another_schema(setup):
    train, schema, crosses, _ = setup
    other = schema_of(train.iloc[:50])
    with pytest.raises(ValueError, match="crosses: were built over another schema"):
        WideDeep(other, crosses)
    with pytest.raises(ValueError, match="crosses: expected a recbook.data.Crosses"):
        WideDeep(schema, [("gender", "genres")])


def planted_cross(n=6000, seed=0):
    """Labels from a pure gender × genre interaction (no main effects): F likes A, M likes B."""
    rng = np.random.default_rng(seed)
    f = pd.DataFrame({
        "user_id": rng.integers(0, 20, n), "item_id": rng.integers(0, 30, n),
        "gender": rng.choice(["F", "M"], n), "genres": [(g,) for g in rng.choice(["A", "B"], n)],
    })
    likes = (f["gender"] == "F") == (f["genres"].str[0] == "A")
    f["label"] = (rng.random(n) < np.where(likes, 0.85, 0.15)).astype(np.float32)
    return f


def test_wide_cross_memorises_a_planted_interaction_with_exact_zeros_elsewhere():
    f = planted_cross()
    train, test = f.iloc[:5000], f.iloc[5000:]
    schema = schema_of(train)
    crosses = build_crosses(train, schema, [("gender", "genres"), ("user_id", "item_id")])
    data, test_batch = TensorData(encode(train, schema)), encode(test, schema)
    torch.manual_seed(0)
    wd = WideDeep(schema, crosses, dim=4, hidden=(8,))
    with torch.no_grad():  # a wide-only model: the deep part's output stays 0 (AdaGrad on zero grads)
        wd.mlp[-1].weight.zero_()
    fit(wd, data, epochs=3, batch_size=100, optimizer=ftrl_adagrad(alpha=0.5, l1=3.0, deep_lr=1e-9),
        evaluate=None, progress=False)
    by_label = dict(zip(crosses.labels(), wd.cross.weight.tolist()))
    # Memorised: F × A and M × B positive, F × B and M × A negative.
    assert by_label["gender=F × genres=A"] > 0.5 and by_label["gender=M × genres=B"] > 0.5
    assert by_label["gender=F × genres=B"] < -0.5 and by_label["gender=M × genres=A"] < -0.5
    # The user × item pairs carry no signal: L1 keeps most of them at exactly 0.
    ui = crosses["user_id × item_id"]
    offset = int(crosses.weight_schema.offsets[crosses.weight_schema.names.index(ui.name)])
    w_ui = wd.cross.weight[offset + 2: offset + ui.size]
    assert (w_ui == 0).float().mean() > 0.9
    with torch.no_grad():
        p = torch.sigmoid(wd(test_batch))
    y = test_batch["label"]
    acc = ((p > 0.5).float() == y).float().mean()
    assert acc > 0.8  # the interaction alone gives 85%; an additive model gives 50%


def test_from_data_builds_the_crosses_from_the_training_rows_and_names_the_optimiser(setup):
    from types import SimpleNamespace

    train, schema, _, batch = setup
    data = SimpleNamespace(schema=schema, frames={"train": train})
    wd = WideDeep.from_data(data, [("gender", "genres")], dim=4, hidden=(8,))
    assert wd.cross.crosses.names == ["gender × genres"]
    assert WideDeep.from_data(data, None, dim=4, hidden=(8,)).cross is None
    assert WideDeep.from_data(data, (), dim=4, hidden=(8,)).cross is None
    assert isinstance(DeepFM.from_data(data, dim=4), DeepFM)
    # The leaderboard fingerprints a callable by its name: the settings must be in it.
    assert ftrl_adagrad(alpha=0.1, l1=2.0).__qualname__ == (
        "ftrl_adagrad(alpha=0.1, beta=0.01, l1=2.0, l2=0.0, deep_lr=0.005)")


@pytest.mark.parametrize("name", ["widedeep", "deepfm"])
def test_unknown_rate_trains_the_unknown_user_rows(name, setup):
    _, schema, crosses, batch = setup
    torch.manual_seed(0)
    build = {"widedeep": lambda: WideDeep(schema, crosses, dim=4, hidden=(8,), unknown_rate={"user_id": 0.5}),
             "deepfm": lambda: DeepFM(schema, dim=4, hidden=(8,), unknown_rate={"user_id": 0.5})}[name]
    model = build()
    unk_row = schema.offset_of("user_id") + 1
    F.binary_cross_entropy_with_logits(model(batch), batch["label"]).backward()
    assert model.linear.weights.table.weight.grad[unk_row].abs().sum() > 0
    model.eval()  # no replacement outside training: the same batch gives the same logits
    torch.testing.assert_close(model(batch), model(batch))
    model.zero_grad()
    F.binary_cross_entropy_with_logits(model(batch), batch["label"]).backward()
    assert model.linear.weights.table.weight.grad[unk_row].abs().sum() == 0

"""Logistic regression, Poly2 and the factorization machine: logits, independence, fitting."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.metrics import roc_auc_score

from recbook.models import FactorizationMachine, LogisticRegression, Poly2
from recbook.chapters.synthetic import planted_interactions

MODELS = {
    "lr": lambda s: LogisticRegression(s),
    "poly2": lambda s: Poly2(s, n_buckets=997),
    "fm": lambda s: FactorizationMachine(s, dim=8),
}


def auc(model, data):
    with torch.no_grad():
        return roc_auc_score(data["label"].numpy(), model(dict(data)).numpy())


def fit(model, data, epochs, lr=0.05, batch_size=256):
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    g = torch.Generator().manual_seed(0)
    for _ in range(epochs):
        for b in data.batches(batch_size, shuffle=True, generator=g):
            loss = F.binary_cross_entropy_with_logits(model(b), b["label"])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return model


@pytest.mark.parametrize("name", list(MODELS))
def test_models_return_logits_of_shape_b(name, small_schema, random_batch):
    schema = small_schema
    model = MODELS[name](schema)
    batch = random_batch(schema, n=64)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 3.0)  # large weights: a sigmoid would squash these into (0, 1)
    out = model(batch)
    assert out.shape == (64,) and out.dtype == torch.float32
    assert (out < 0).any() and (out > 1).any()


@pytest.mark.parametrize("name", list(MODELS))
def test_gradient_reaches_every_parameter(name, small_schema, random_batch):
    schema = small_schema
    model = MODELS[name](schema)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.1)  # FM's interaction gradients vanish at all-zero weights
    batch = random_batch(schema, n=64)
    F.binary_cross_entropy_with_logits(model(batch), batch["label"]).backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), pname
        assert p.grad.abs().sum() > 0, pname


@pytest.mark.parametrize("name", list(MODELS))
def test_two_models_from_one_schema_share_no_weights(name, small_schema, random_batch):
    schema = small_schema
    a, b = MODELS[name](schema), MODELS[name](schema)
    ptrs_a = {p.data_ptr() for p in a.parameters()}
    assert ptrs_a.isdisjoint(p.data_ptr() for p in b.parameters())
    before = [p.detach().clone() for p in b.parameters()]
    fit(a, _as_tensordata(random_batch(schema, n=64)), epochs=1)
    assert all(torch.equal(p, q) for p, q in zip(b.parameters(), before))


def _as_tensordata(batch):
    from recbook.data import TensorData
    return TensorData(batch)


@pytest.mark.parametrize("name", list(MODELS))
def test_same_seed_same_model(name, small_schema, random_batch):
    schema = small_schema
    torch.manual_seed(7)
    a = MODELS[name](schema)
    torch.manual_seed(7)
    b = MODELS[name](schema)
    for p, q in zip(a.parameters(), b.parameters()):
        assert torch.equal(p, q)
    batch = random_batch(schema, n=64)
    assert torch.equal(a(batch), b(batch))


@pytest.mark.parametrize("name", list(MODELS))
def test_models_validate_the_batch_naming_the_field(name, small_schema, random_batch):
    schema = small_schema
    model = MODELS[name](schema)
    batch = random_batch(schema, n=64)
    batch["x"][5, 2] = 4  # gender has size 4: pad, unk, F, M
    with pytest.raises(ValueError, match=r"x\[:, 2\] \(field 'gender'\): index 4 out of range \[0, 4\)"):
        model(batch)
    batch = random_batch(schema, n=64)
    del batch["genres"]
    with pytest.raises(ValueError, match="missing key 'genres'"):
        model(batch)
    assert model.validate
    model.validate = False  # benchmarks skip the check
    batch = random_batch(schema, n=64)
    assert model(batch).shape == (64,)


def test_fm_equals_its_formula_computed_by_hand_from_the_weight_tables(small_schema, random_batch):
    """Rendle's formula, one row and one pair at a time in plain Python, read straight from the
    parameter tables (not from the model's own submodules): w0 + sum_i w_i x_i + sum_{i<j} <v_i, v_j> x_i x_j
    with x_i = 1 for single-valued fields and 1/k for each of a row's k genres."""
    schema = small_schema
    fm = FactorizationMachine(schema, dim=5, init_std=0.3).double()
    with torch.no_grad():
        fm.linear.weights.table.weight.normal_()
        fm.linear.bias.fill_(0.25)
    batch = random_batch(schema, n=12)
    w = fm.linear.weights.table.weight[:, 0].tolist()
    V = fm.embedding.table.weight.tolist()
    offsets = schema.offsets.tolist()
    g_off = schema.offset_of("genres")
    expected = []
    for r in range(12):
        # active features with their x values: one per single field, then the row's genres
        active = [(offsets[i] + int(batch["x"][r, i]), 1.0) for i in range(len(schema.single))]
        genres = [int(g) for g in batch["genres"][r] if g != 0]
        # the pooled genre vector (mean of its members) enters the pairs as one feature
        pooled_v = [sum(V[g_off + g][d] for g in genres) / len(genres) if genres else 0.0 for d in range(5)]
        first = 0.25 + sum(w[row] * xv for row, xv in active) + sum(w[g_off + g] / len(genres) for g in genres)
        vecs = [V[row] for row, _ in active] + [pooled_v]
        pairs = sum(sum(a * b for a, b in zip(vecs[i], vecs[j]))
                    for i in range(len(vecs)) for j in range(i + 1, len(vecs)))
        expected.append(first + pairs)
    torch.testing.assert_close(fm(batch), torch.tensor(expected, dtype=torch.float64), rtol=1e-10, atol=1e-10)


def test_lr_and_fm_start_at_the_base_rate_when_given(small_schema, random_batch):
    schema = small_schema
    batch = random_batch(schema, n=64)
    lr = LogisticRegression(schema, base_rate=0.25)
    torch.testing.assert_close(torch.sigmoid(lr(batch)), torch.full((64,), 0.25))
    fm = FactorizationMachine(schema, base_rate=0.25)
    assert (torch.sigmoid(fm(batch)) - 0.25).abs().max() < 1e-3  # small initial factors


def test_poly2_never_learns_a_pair_it_has_not_seen(small_schema, random_batch):
    schema = small_schema
    model = Poly2(schema, n_buckets=10_007)
    batch = random_batch(schema, n=256)
    # A pair that no training row contains: user 3 with item 4 (rows with user 3 get another item).
    batch["x"][batch["x"][:, 0] == 3, 1] = 5
    fit(model, _as_tensordata(batch), epochs=3)
    unseen = model.pair_buckets(torch.tensor([[3, 4, 2]]))[0, 0]
    seen_buckets = set(model.pair_buckets(batch["x"]).flatten().tolist())
    assert unseen.item() not in seen_buckets  # no collision in this small example
    assert model.pair_weight.weight[unseen].item() == 0.0
    assert model.pair_weight.weight.abs().sum() > 0
    assert model.pair_buckets(batch["x"]).shape == (256, 3)  # 3 single fields -> 3 pairs


def test_fm_fits_planted_interactions_that_lr_cannot():
    data = planted_interactions(n_fields=6, field_size=8, n_samples=20_000, rank=2, seed=0)
    train, test = data.split(0.25)
    torch.manual_seed(0)
    fm = fit(FactorizationMachine(data.schema, dim=4), train, epochs=3)
    lr = fit(LogisticRegression(data.schema), train, epochs=3)
    assert auc(fm, test) > 0.8
    assert abs(auc(lr, test) - 0.5) < 0.05
    # The learned <v_a, v_b> line up with the planted ones (what the chapter's heatmap shows).
    learned = data.learned_interactions(fm.embedding.table.weight)
    off = data.interactions != 0
    assert np.corrcoef(learned[off], data.interactions[off])[0, 1] > 0.8


def test_planted_data_is_reproducible_and_consistent():
    a = planted_interactions(n_fields=3, field_size=4, n_samples=500, rank=2, seed=3)
    b = planted_interactions(n_fields=3, field_size=4, n_samples=500, rank=2, seed=3)
    c = planted_interactions(n_fields=3, field_size=4, n_samples=500, rank=2, seed=4)
    assert torch.equal(a.data["x"], b.data["x"]) and torch.equal(a.data["label"], b.data["label"])
    assert not torch.equal(a.data["x"], c.data["x"])
    assert set(a.data) == {"x", "label"} and a.data["x"].dtype == torch.int64
    assert a.interactions.shape == (12, 12) and a.field_interactions.shape == (3, 3)
    assert np.allclose(a.interactions, a.interactions.T)
    assert np.all(a.interactions[:4, :4] == 0)  # no pairs inside a field
    assert np.all(a.first_order == 0)  # no main effects by default
    # The stored logit is the planted formula applied to the rows.
    x = a.data["x"].numpy() - 2 + np.arange(3) * 4  # value number f * field_size + v
    pair = sum(a.interactions[x[:, i], x[:, j]] for i in range(3) for j in range(i + 1, 3))
    np.testing.assert_allclose(a.logit, pair, rtol=1e-10, atol=1e-10)
    # rows point at each value's row in a model's shared table.
    fm = FactorizationMachine(a.schema, dim=2)
    np.testing.assert_array_equal(a.rows[4:8], a.schema.offset_of("f1") + 2 + np.arange(4))
    assert a.learned_interactions(fm.embedding.table.weight).shape == (12, 12)


def test_planted_labels_follow_the_sigmoid_of_the_logit():
    """Calibration, checked from the labels: in each decile of the planted logit, the share of
    positive labels matches the mean sigmoid of the logit (binomial error ~0.015 at 2,000 rows)."""
    a = planted_interactions(n_fields=4, field_size=6, n_samples=20_000, seed=1)
    y = a.data["label"].numpy()
    p = 1 / (1 + np.exp(-a.logit))
    edges = np.quantile(a.logit, np.linspace(0, 1, 11))
    bins = np.clip(np.searchsorted(edges, a.logit, side="right") - 1, 0, 9)
    for b in range(10):
        assert abs(y[bins == b].mean() - p[bins == b].mean()) < 0.05, b
    assert y[bins == 9].mean() > 0.85 and y[bins == 0].mean() < 0.15   # strong signal at scale 3


@pytest.mark.parametrize("kwargs, message", [
    (dict(n_fields=1), "n_fields"), (dict(field_size=1), "field_size"), (dict(n_samples=0), "n_samples"),
    (dict(rank=0), "rank"), (dict(interaction_scale=-1.0), "interaction_scale"), (dict(seed=1.5), "seed"),
])
def test_planted_rejects_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        planted_interactions(**kwargs)


def test_planted_split3_is_disjoint_ordered_and_checked():
    data = planted_interactions(n_fields=3, field_size=4, n_samples=1000, seed=0)
    train, valid, test = data.split3(test_fraction=0.2, valid_fraction=0.1)
    assert (len(train), len(valid), len(test)) == (700, 100, 200)
    stacked = torch.cat([train["x"], valid["x"], test["x"]])
    assert torch.equal(stacked, data.data["x"])  # consecutive blocks, in row order
    with pytest.raises(ValueError, match="valid_fraction"):
        data.split3(test_fraction=0.5, valid_fraction=0.6)

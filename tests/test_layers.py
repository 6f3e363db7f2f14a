"""Shared CTR layers: embeddings over one table, the first-order term, the FM term, validation."""
import itertools

import pytest
import torch
from torch import nn

from recbook.data import Field, Schema
from recbook.layers import (FeatureLinear, FieldEmbedding, FMInteraction, check_batch, mlp,
                            pairwise_interaction_naive)


def two_multi_schema():
    """Two multi-valued fields (the shared small_schema has one), given out of order on purpose:
    Schema puts single-valued fields first."""
    return Schema((
        Field("a", tuple(range(5))),
        Field("tags", tuple("pqrstu"), multi=True, max_len=4),
        Field("b", tuple(range(7))),
        Field("c", ("x", "y")),
        Field("genres", tuple("ABCD"), multi=True, max_len=4),
    ))


def pairs_by_hand(v):
    """The definition, one pair at a time, in plain Python loops."""
    out = torch.zeros(v.shape[0], dtype=v.dtype)
    for i, j in itertools.combinations(range(v.shape[1]), 2):
        out += (v[:, i] * v[:, j]).sum(-1)
    return out


# ---------------------------------------------------------------- FM interaction

@pytest.mark.parametrize("n", [1, 2, 3, 10, 40])
def test_fm_linear_time_form_equals_pairwise_sum(n):
    torch.manual_seed(n)
    v = torch.randn(16, n, 8, dtype=torch.float64)
    fast = FMInteraction()(v)
    assert fast.shape == (16,)
    torch.testing.assert_close(fast, pairwise_interaction_naive(v), rtol=1e-10, atol=1e-10)
    if n <= 10:
        torch.testing.assert_close(pairwise_interaction_naive(v), pairs_by_hand(v), rtol=1e-10, atol=1e-10)
    per_dim = FMInteraction(reduce_sum=False)(v)
    assert per_dim.shape == (16, 8)
    torch.testing.assert_close(per_dim.sum(1), fast, rtol=1e-10, atol=1e-10)


def test_fm_form_on_field_embeddings_with_multi_fields(random_batch):
    schema = two_multi_schema()
    emb = FieldEmbedding(schema, 6, init_std=0.5).double()
    v = emb(random_batch(schema, n=64))
    assert v.shape == (64, len(schema), 6)
    torch.testing.assert_close(FMInteraction()(v), pairwise_interaction_naive(v), rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(FMInteraction()(v.float()), pairwise_interaction_naive(v.float()).float(),
                               rtol=1e-5, atol=1e-5)


def test_fm_interaction_rejects_wrong_rank():
    with pytest.raises(ValueError, match=r"v: expected a \[B, n, k\]"):
        FMInteraction()(torch.zeros(4, 3))
    with pytest.raises(ValueError, match=r"v: expected a \[B, n, k\]"):
        pairwise_interaction_naive(torch.zeros(4, 3))


# ---------------------------------------------------------------- FieldEmbedding

def test_schema_puts_single_fields_first_and_embedding_follows_schema_order():
    schema = two_multi_schema()
    assert schema.names == ["a", "b", "c", "tags", "genres"]
    emb = FieldEmbedding(schema, 3)
    assert emb.table.weight.shape == (schema.total_size, 3)
    assert len([m for m in emb.modules() if isinstance(m, nn.Embedding)]) == 1  # one shared table


def test_each_field_reads_its_own_rows_of_the_shared_table(random_batch):
    schema = two_multi_schema()
    emb = FieldEmbedding(schema, 1)
    with torch.no_grad():  # row r of the table holds the number r
        emb.table.weight.copy_(torch.arange(schema.total_size, dtype=torch.float32)[:, None])
    batch = random_batch(schema)
    out = emb(batch)[..., 0]
    offsets = torch.as_tensor(schema.offsets)
    torch.testing.assert_close(out[:, :3], (batch["x"] + offsets[:3]).float())
    for f, o in zip(schema.fields, schema.offsets):
        rows = emb.lookup(f.name, torch.arange(f.size))[:, 0]
        torch.testing.assert_close(rows, torch.arange(o, o + f.size, dtype=torch.float32))
        assert emb.field_weight(f.name).shape == (f.size, 1)
        assert emb.field_weight(f.name)[0, 0] == o  # a view of rows [offset, offset + size)


def test_multi_field_is_the_mean_of_its_members_and_empty_rows_are_zero(random_batch):
    schema = two_multi_schema()
    emb = FieldEmbedding(schema, 4, init_std=1.0)
    batch = random_batch(schema)
    out = emb(batch)
    for k, f in enumerate(schema.multi):
        col = len(schema.single) + k
        for r in range(len(batch["x"])):
            members = batch[f.name][r][batch[f.name][r] != 0]
            expected = emb.lookup(f.name, members).mean(0) if len(members) else torch.zeros(4)
            torch.testing.assert_close(out[r, col], expected)
    assert torch.equal(out[0, 3:], torch.zeros(2, 4))  # row 0 has no members in either field


def test_padding_rows_do_not_change_the_output_nor_get_gradient(random_batch):
    schema = two_multi_schema()
    emb = FieldEmbedding(schema, 4)
    batch = random_batch(schema)
    before = emb(batch).detach().clone()
    with torch.no_grad():
        for f in schema.multi:
            emb.field_weight(f.name)[0] = 1e6  # the padding row of the field
    torch.testing.assert_close(emb(batch), before)
    emb(batch).square().sum().backward()
    for f in schema.multi:
        o = schema.offset_of(f.name)
        assert torch.all(emb.table.weight.grad[o] == 0)


def test_default_init_starts_an_fm_near_a_coin_flip():
    """Why the default init is small: with 8 fields and dim 16, an untrained FM predicts close to
    p = 0.5 for every row, where nn.Embedding's N(0, 1) would start far into the sigmoid's tails."""
    from recbook.models import FactorizationMachine

    schema = Schema(tuple(Field(f"f{i}", tuple(range(50))) for i in range(8)))
    x = torch.randint(2, 52, (512, 8), generator=torch.Generator().manual_seed(0))
    torch.manual_seed(0)
    small = FactorizationMachine(schema, dim=16)({"x": x})
    big = FactorizationMachine(schema, dim=16, init_std=1.0)({"x": x})
    assert small.abs().max() < 0.05
    assert big.std() > 5          # about sqrt(16 * 28) = 21 for unit vectors


def test_offsets_are_buffers_that_are_not_saved():
    emb = FieldEmbedding(two_multi_schema(), 4)
    assert "single_offsets" in dict(emb.named_buffers())
    assert list(emb.state_dict()) == ["table.weight"]


# ---------------------------------------------------------------- FeatureLinear

def test_feature_linear_starts_at_zero_or_base_rate(random_batch):
    schema = two_multi_schema()
    batch = random_batch(schema)
    assert torch.equal(FeatureLinear(schema)(batch), torch.zeros(32))
    out = FeatureLinear(schema, base_rate=0.8)(batch)
    torch.testing.assert_close(out, torch.full((32,), float(torch.logit(torch.tensor(0.8)))))


def test_feature_linear_has_one_weight_per_feature_value(random_batch):
    schema = two_multi_schema()
    lin = FeatureLinear(schema)
    batch = random_batch(schema, n=200)
    assert lin.weights.table.weight.shape == (schema.total_size, 1)
    before = lin(batch).detach()
    with torch.no_grad():
        lin.weights.field_weight("b")[3] = 1.0  # value 3 of field b
    has = batch["x"][:, 1] == 3
    assert has.any() and (~has).any()
    torch.testing.assert_close(lin(batch) - before, has.float())


def test_feature_linear_multi_field_counts_each_member_one_over_k(random_batch):
    schema = two_multi_schema()
    lin = FeatureLinear(schema)
    batch = random_batch(schema, n=200)
    with torch.no_grad():
        lin.weights.field_weight("tags")[2] = 1.0
    tags = batch["tags"]
    k = (tags != 0).sum(1).clamp(min=1)
    expected = (tags == 2).sum(1) / k
    assert (expected > 0).any()
    torch.testing.assert_close(lin(batch), expected.float())


# ---------------------------------------------------------------- validation

def test_check_batch_accepts_a_valid_batch(random_batch):
    schema = two_multi_schema()
    check_batch(schema, random_batch(schema))
    check_batch(schema, {k: v[:0] for k, v in random_batch(schema).items()})  # empty batch is fine


@pytest.mark.parametrize("mutate, message", [
    (lambda b: b.__setitem__("x", b["x"].float()), r"x: expected dtype torch.int64"),
    (lambda b: b.__setitem__("x", b["x"].int()), r"x: expected dtype torch.int64"),
    (lambda b: b.__setitem__("x", b["x"][:, :2]), r"x: expected 3 columns"),
    (lambda b: b.__setitem__("x", b["x"][:, 0]), r"x: expected a 2-D tensor"),
    (lambda b: b.pop("x"), r"missing key 'x'"),
    (lambda b: b.pop("genres"), r"missing key 'genres'"),
    (lambda b: b.__setitem__("tags", b["tags"].float()), r"tags: expected dtype torch.int64"),
    (lambda b: b.__setitem__("tags", b["tags"][:5]), r"tags: has 5 rows; expected 32"),
    (lambda b: b["x"].__setitem__((4, 1), 9), r"x\[:, 1\] \(field 'b'\): index 9 out of range \[0, 9\)"),
    (lambda b: b["x"].__setitem__((7, 2), -1), r"x\[:, 2\] \(field 'c'\): index -1 out of range \[0, 4\)"),
    (lambda b: b["x"].__setitem__((0, 0), 7), r"x\[:, 0\] \(field 'a'\): index 7 out of range \[0, 7\)"),
    (lambda b: b["genres"].__setitem__((3, 1), 6),
     r"genres\[:, 1\] \(field 'genres'\): index 6 out of range \[0, 6\)"),
    (lambda b: b["tags"].__setitem__((3, 0), -2), r"tags\[:, 0\] \(field 'tags'\): index -2 out of range"),
])
def test_every_layer_reports_bad_batches_naming_the_field(mutate, message, random_batch):
    schema = two_multi_schema()
    for layer in (FieldEmbedding(schema, 4), FeatureLinear(schema)):
        batch = random_batch(schema)
        mutate(batch)
        with pytest.raises(ValueError, match=message):
            check_batch(schema, batch)
        with pytest.raises(ValueError, match=message):
            layer(batch)


def test_batch_must_be_a_mapping():
    with pytest.raises(ValueError, match="batch: expected a dict of tensors"):
        check_batch(two_multi_schema(), torch.zeros(3, 3, dtype=torch.long))


def test_validation_can_be_turned_off_and_is_why_it_exists(random_batch):
    schema = two_multi_schema()
    emb = FieldEmbedding(schema, 4, validate=False)
    batch = random_batch(schema)
    batch["x"][0, 0] = schema["a"].size  # one past field a: silently field b's padding row
    v = emb(batch)
    torch.testing.assert_close(v[0, 0], emb.field_weight("b")[0])
    emb.validate = True
    with pytest.raises(ValueError, match="field 'a'"):
        emb(batch)


def test_lookup_validates_the_field_range():
    emb = FieldEmbedding(two_multi_schema(), 4)
    assert emb.lookup("b", torch.tensor([[1, 2, 0]])).shape == (1, 3, 4)
    with pytest.raises(ValueError, match=r"b \(field 'b'\): index 9 out of range \[0, 9\)"):
        emb.lookup("b", torch.tensor([1, 9]))
    with pytest.raises(ValueError, match=r"hist_item \(field 'b'\): index -1 out of range"):
        emb.lookup("b", torch.tensor([[0, -1]]), key="hist_item")
    with pytest.raises(ValueError, match=r"tags \(field 'tags'\): index 8 out of range \[0, 8\)"):
        emb.pool("tags", torch.tensor([[2, 8, 0]]))
    with pytest.raises(ValueError, match="expected an int64 tensor"):
        emb.lookup("b", torch.tensor([1.0]))
    with pytest.raises(KeyError, match="no field named 'zz'"):
        emb.lookup("zz", torch.tensor([1]))


def test_constructor_arguments_are_checked():
    with pytest.raises(ValueError, match="schema: expected a recbook.data.Schema"):
        FieldEmbedding(["a"], 4)
    with pytest.raises(ValueError, match="dim: expected a positive integer"):
        FieldEmbedding(two_multi_schema(), 0)
    with pytest.raises(ValueError, match="base_rate"):
        FeatureLinear(two_multi_schema(), base_rate=1.0)


# ---------------------------------------------------------------- mlp

def test_mlp_shapes_and_options():
    net = mlp(10, hidden=(8, 4))
    assert net(torch.randn(5, 10)).shape == (5, 1)
    assert mlp(10, hidden=(8,), out_dim=None)(torch.randn(5, 10)).shape == (5, 8)
    net = mlp(10, hidden=(8, 4), dropout=0.5, batchnorm=True, out_dim=3)
    kinds = [type(m).__name__ for m in net]
    assert kinds == ["Linear", "BatchNorm1d", "ReLU", "Dropout", "Linear", "BatchNorm1d", "ReLU", "Dropout",
                     "Linear"]
    assert net[0].bias is None  # BatchNorm cancels a bias
    assert torch.equal(net[-1].bias, torch.zeros(3))
    assert net(torch.randn(5, 10)).shape == (5, 3)


@pytest.mark.parametrize("kwargs, message", [
    (dict(in_dim=0), "in_dim"), (dict(in_dim=4, hidden=(8, 0)), r"hidden\[1\]"),
    (dict(in_dim=4, dropout=1.0), "dropout"), (dict(in_dim=4, out_dim=0), "out_dim"),
])
def test_mlp_rejects_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        mlp(**kwargs)


def test_gather_matches_nn_embedding_values_and_gradients(random_batch):
    schema = two_multi_schema()
    emb = FieldEmbedding(schema, 5, init_std=0.1)
    batch = random_batch(schema, n=64)
    rows = batch["x"] + emb.single_offsets
    out = emb._gather(rows)
    ref = emb.table(rows)
    torch.testing.assert_close(out, ref, rtol=0, atol=0)
    w = torch.randn_like(out)
    (g_fast,) = torch.autograd.grad((out * w).sum(), emb.table.weight)
    (g_ref,) = torch.autograd.grad((ref * w).sum(), emb.table.weight)
    torch.testing.assert_close(g_fast, g_ref)


# ---------------------------------------------------------------- unknown values

def test_padding_and_unknown_rows_start_at_exactly_zero(small_schema):
    emb = FieldEmbedding(small_schema, 8, init_std=0.5)
    w = emb.table.weight
    for f, o in zip(small_schema.fields, small_schema.offsets):
        assert torch.equal(w[o], torch.zeros(8)) and torch.equal(w[o + 1], torch.zeros(8)), f.name
        assert (w[o + 2: o + f.size].abs().sum(1) > 0).all(), f.name


def test_unknown_rows_stay_zero_through_training_when_never_seen(small_schema, random_batch):
    from recbook.models import FactorizationMachine

    torch.manual_seed(0)
    fm = FactorizationMachine(small_schema, dim=4)
    opt = torch.optim.Adam(fm.parameters(), lr=0.05)
    batch = random_batch(small_schema, n=256, reserved=False)  # no unknown codes in training
    for _ in range(20):
        opt.zero_grad()
        nn.functional.binary_cross_entropy_with_logits(fm(batch), batch["label"]).backward()
        opt.step()
    unk_rows = torch.as_tensor(small_schema.offsets) + 1
    assert torch.equal(fm.embedding.table.weight[unk_rows], torch.zeros(len(unk_rows), 4))
    assert torch.equal(fm.linear.weights.table.weight[unk_rows], torch.zeros(len(unk_rows), 1))
    trained = torch.as_tensor(small_schema.offsets) + 2
    assert fm.linear.weights.table.weight[trained].abs().sum() > 0


def test_unknown_rate_replaces_that_share_of_codes_in_training_only(small_schema, random_batch):
    from recbook.models import LogisticRegression

    model = LogisticRegression(small_schema, unknown_rate={"user_id": 0.3})
    batch = random_batch(small_schema, n=20_000, reserved=False)
    before = batch["x"].clone()
    torch.manual_seed(0)
    seen = model.prepare(batch)["x"]
    assert torch.equal(batch["x"], before)                         # the caller's batch is untouched
    col = small_schema.column("user_id")
    replaced = (seen[:, col] == 1).float().mean().item()
    assert abs(replaced - 0.3) < 0.015                              # 3 standard errors at n = 20,000
    others = [c for c in range(seen.shape[1]) if c != col]
    assert torch.equal(seen[:, others], before[:, others])
    model.eval()
    assert model.prepare(batch)["x"] is batch["x"]
    with pytest.raises(ValueError, match="genres"):
        LogisticRegression(small_schema, unknown_rate={"genres": 0.1})
    with pytest.raises(ValueError, match="unknown_rate"):
        LogisticRegression(small_schema, unknown_rate={"user_id": 1.5})


def test_unknown_rate_trains_the_unknown_row(small_schema, random_batch):
    from recbook.models import LogisticRegression

    torch.manual_seed(0)
    model = LogisticRegression(small_schema, unknown_rate={"user_id": 0.2})
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    batch = random_batch(small_schema, n=512, reserved=False)
    for _ in range(5):
        opt.zero_grad()
        nn.functional.binary_cross_entropy_with_logits(model(batch), batch["label"]).backward()
        opt.step()
    assert model.linear.weights.table.weight[small_schema.offset_of("user_id") + 1].abs().item() > 0

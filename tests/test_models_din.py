"""DIN, its base model and their layers: Dice, the activation unit, target attention, the L2."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from recbook.data import Field, Schema, TensorData
from recbook.layers import (ActivationUnit, Dice, MiniBatchAwareL2, PReLU, TargetAttention, masked_mean,
                            masked_softmax, occurrence_counts)
from recbook.models import DIN, DINBase
from recbook.models.din import din_loss

N_ITEMS = 12  # item codes 2..13; 0 = padding, 1 = unknown


def small_schema():
    return Schema((
        Field("user_id", tuple(range(20))),
        Field("item_id", tuple(range(N_ITEMS))),
        Field("gender", ("F", "M")),
        Field("year_bucket", ("old", "new")),
        Field("genres", tuple("ABCDE"), multi=True),
    ))


def side_features(schema, seed=0):
    """Random genres (0-3 per item, right-padded) and year codes per item code; rows 0, 1 empty."""
    g = torch.Generator().manual_seed(seed)
    n = schema["item_id"].size
    genres = torch.randint(2, schema["genres"].size, (n, 3), generator=g)
    k = torch.randint(0, 4, (n,), generator=g)
    genres = torch.where(torch.arange(3) < k[:, None], genres, 0)
    year = torch.randint(2, schema["year_bucket"].size, (n,), generator=g)
    genres[:2] = 0
    year[:2] = 0
    return {"genres": genres, "year_bucket": year}


def random_batch(schema, feats, n=32, L=6, seed=0):
    """Rows consistent with the item table: the candidate's genres/year are its item's."""
    g = torch.Generator().manual_seed(seed)
    item = torch.randint(2, schema["item_id"].size, (n,), generator=g)
    x = torch.stack([torch.randint(1, schema["user_id"].size, (n,), generator=g), item,
                     torch.randint(1, schema["gender"].size, (n,), generator=g), feats["year_bucket"][item]], 1)
    hist = torch.randint(1, schema["item_id"].size, (n, L), generator=g)
    length = torch.randint(0, L + 1, (n,), generator=g)
    length[0], length[1] = 0, L  # one empty history, one full one
    mask = torch.arange(L) >= (L - length)[:, None]  # right-aligned
    return {"x": x, "genres": feats["genres"][item], "hist_item": torch.where(mask, hist, 0),
            "hist_mask": mask, "label": torch.randint(0, 2, (n,), generator=g).float()}


def build(kind="din", schema=None, fields=("genres",), seed=0, **kw):
    schema = schema or small_schema()
    feats = side_features(schema)
    torch.manual_seed(seed)
    cls = DINBase if kind == "base" else DIN
    model = cls(schema, {f: feats[f] for f in fields}, 4, hidden=(8, 4), init_std=0.3,
                **({} if kind == "base" else dict(attention_hidden=(5,)) | kw))
    return model, schema, feats


def perturb(model, scale=0.5, seed=1):
    """Non-trivial slopes and statistics, so that PReLU/Dice differ from ReLU/identity."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("alpha"):
                p.copy_(torch.rand(p.shape, generator=g) * 0.8 - 0.4)
        for m in model.modules():
            if isinstance(m, Dice):
                m.running_mean.normal_(0, scale, generator=g)
                m.running_var.uniform_(0.5, 2.0, generator=g)
    return model


VARIANTS = {
    "base": dict(kind="base"),
    "din": dict(kind="din"),
    "din-dice": dict(kind="din", activation="dice"),
    "din-softmax": dict(kind="din", softmax=True),
    "din-year": dict(kind="din", fields=("genres", "year_bucket")),
}


def make(name, seed=0):
    cfg = dict(VARIANTS[name])
    model, schema, feats = build(cfg.pop("kind"), seed=seed, **cfg)
    return perturb(model), schema, feats


def pad_left(batch, extra, fill=0):
    """The same rows with ``extra`` more padded positions in front (histories are right-aligned).
    ``fill`` is the item code written under the mask (0 = real padding; anything else tests that
    the mask, not the code, decides)."""
    out = dict(batch)
    n = batch["hist_item"].shape[0]
    out["hist_item"] = torch.cat([torch.full((n, extra), fill), batch["hist_item"]], 1)
    out["hist_mask"] = torch.cat([torch.zeros(n, extra, dtype=torch.bool), batch["hist_mask"]], 1)
    return out


# ---------------------------------------------------------------- Dice

def dice_by_hand(s, alpha, mean, var, eps):
    p = 1 / (1 + np.exp(-(s - mean) / np.sqrt(var + eps)))
    return p * s + (1 - p) * alpha * s


def test_dice_equals_its_formula_in_training_per_neuron():
    torch.manual_seed(0)
    # Neurons on very different scales: statistics across the neurons of a row would mix them.
    s = (torch.randn(64, 3) * torch.tensor([0.1, 1.0, 10.0]) + torch.tensor([5.0, -1.0, 0.0])).double()
    dice = Dice(3, eps=1e-8).double()
    with torch.no_grad():
        dice.alpha.copy_(torch.tensor([0.1, -0.2, 0.3]))
    out = dice(s).detach().numpy()
    x = s.numpy()
    expected = dice_by_hand(x, dice.alpha.detach().numpy(), x.mean(0), x.var(0), 1e-8)
    np.testing.assert_allclose(out, expected, rtol=1e-10, atol=1e-12)
    # One step of running averages, momentum 0.1, the variance unbiased as BatchNorm keeps it.
    np.testing.assert_allclose(dice.running_mean.numpy(), 0.1 * x.mean(0), rtol=1e-10)
    np.testing.assert_allclose(dice.running_var.numpy(), 0.9 + 0.1 * x.var(0, ddof=1), rtol=1e-10)


def test_dice_uses_running_averages_in_eval_like_batchnorm():
    torch.manual_seed(0)
    dice, bn = Dice(4, eps=1e-5), nn.BatchNorm1d(4, eps=1e-5, affine=False)
    with torch.no_grad():
        dice.alpha.fill_(0.25)
    for _ in range(5):  # the same batches through both: the same running statistics
        s = torch.randn(32, 4) * 3 + 1
        p_train = torch.sigmoid(bn(s))
        torch.testing.assert_close(dice(s), p_train * s + (1 - p_train) * 0.25 * s)
    torch.testing.assert_close(dice.running_mean, bn.running_mean)
    torch.testing.assert_close(dice.running_var, bn.running_var)
    dice.eval()
    s = torch.randn(7, 4)
    expected = dice_by_hand(s.numpy(), 0.25, bn.running_mean.numpy(), bn.running_var.numpy(), 1e-5)
    np.testing.assert_allclose(dice(s).detach().numpy(), expected, rtol=1e-5, atol=1e-6)
    before = dice.running_mean.clone()
    dice(torch.randn(7, 4) + 100)
    assert torch.equal(dice.running_mean, before)  # eval never updates the statistics
    # In eval a row's output does not depend on the other rows of its batch.
    torch.testing.assert_close(dice(s[:1]), dice(s)[:1])


def test_padding_never_enters_dice_statistics():
    torch.manual_seed(0)
    s = torch.randn(8, 5, 3, dtype=torch.float64)
    mask = torch.rand(8, 5) < 0.6
    garbage = torch.where(mask.unsqueeze(-1), s, torch.full_like(s, 1e6))
    a, b = Dice(3).double(), Dice(3).double()
    out_a, out_b = a(s, mask), b(garbage, mask)
    torch.testing.assert_close(out_a[mask], out_b[mask])
    torch.testing.assert_close(a.running_mean, b.running_mean)
    torch.testing.assert_close(a.running_var, b.running_var)
    valid = s[mask].numpy()  # [n, 3]: the real positions only
    np.testing.assert_allclose(a.running_mean.numpy(), 0.1 * valid.mean(0), rtol=1e-10)
    np.testing.assert_allclose(a.running_var.numpy(), 0.9 + 0.1 * valid.var(0, ddof=1), rtol=1e-10)
    expected = dice_by_hand(valid, 0.0, valid.mean(0), valid.var(0), 1e-8)
    np.testing.assert_allclose(out_a[mask].detach().numpy(), expected, rtol=1e-10)
    # No real position at all: the running statistics are used and kept.
    c = Dice(3).double()
    c(s, torch.zeros(8, 5, dtype=torch.bool))
    assert torch.equal(c.running_mean, torch.zeros(3, dtype=torch.float64))


def test_dice_and_prelu_reject_bad_input():
    with pytest.raises(ValueError, match=r"s: expected a tensor \[\.\.\., 3\]"):
        Dice(3)(torch.randn(4, 2))
    with pytest.raises(ValueError, match="mask: expected shape"):
        Dice(3)(torch.randn(4, 5, 3), torch.ones(4, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match="mask: expected a bool tensor"):
        Dice(3)(torch.randn(4, 5, 3), torch.ones(4, 5))
    with pytest.raises(ValueError, match="num_features"):
        Dice(0)
    with pytest.raises(ValueError, match="momentum"):
        Dice(3, momentum=2.0)
    x = torch.tensor([[-2.0, 3.0], [1.0, -4.0]])
    p = PReLU(2)
    with torch.no_grad():
        p.alpha.copy_(torch.tensor([0.5, 0.1]))
    torch.testing.assert_close(p(x), torch.tensor([[-1.0, 3.0], [1.0, -0.4]]))


# ---------------------------------------------------------------- activation unit and attention

def prelu_by_hand(h, alpha):
    return torch.where(h > 0, h, alpha * h)


def attention_loop(att: TargetAttention, keys, query, mask, *, batch_stats=False):
    """Reference: one row and one history position at a time, from the unit's weights. Dice uses
    its running statistics, or with ``batch_stats`` the mean and (biased) variance of the first
    layer's outputs over every real position of the batch, computed here first."""
    unit = att.unit
    lin, out_lin = unit.first, unit.rest.out
    act = unit.first_activation
    real = [(b, j) for b in range(keys.shape[0]) for j in range(keys.shape[1]) if mask[b, j]]
    first = {(b, j): lin.weight @ torch.cat([keys[b, j], query[b], keys[b, j] * query[b],
                                             keys[b, j] - query[b]]) + lin.bias for b, j in real}
    if isinstance(act, Dice):
        if batch_stats:
            h_all = torch.stack(list(first.values()))
            mean, var = h_all.mean(0), h_all.var(0, unbiased=False)
        else:
            mean, var = act.running_mean, act.running_var
    pooled = torch.zeros_like(query)
    weights = torch.zeros(mask.shape, dtype=keys.dtype)
    for b in range(keys.shape[0]):
        js = [j for j in range(keys.shape[1]) if mask[b, j]]
        scores = []
        for j in js:
            h = first[b, j]
            if isinstance(act, Dice):
                p = torch.sigmoid((h - mean) / torch.sqrt(var + act.eps))
                h = p * h + (1 - p) * act.alpha * h
            else:
                h = prelu_by_hand(h, act.alpha)
            scores.append(out_lin.weight[0] @ h + out_lin.bias[0])
        if not js:
            continue
        scores = torch.stack(scores)
        if att.softmax:
            scores = torch.softmax(scores / math.sqrt(keys.shape[-1]), 0)
        for w, j in zip(scores, js):
            weights[b, j] = w
            pooled[b] += w * keys[b, j]
    return pooled, weights


@pytest.mark.parametrize("activation", ["prelu", "dice", "dice-train"])
@pytest.mark.parametrize("softmax", [False, True])
def test_batched_attention_equals_a_loop_over_rows_and_positions(activation, softmax):
    torch.manual_seed(0)
    att = perturb(TargetAttention(6, (5,), activation=activation.split("-")[0], softmax=softmax)).double()
    att.train(activation == "dice-train")
    keys = torch.randn(9, 7, 6, dtype=torch.float64)
    query = torch.randn(9, 6, dtype=torch.float64)
    mask = torch.rand(9, 7) < 0.6
    mask[0] = False  # an empty history pools to zero
    keys[~mask] = 1e3  # padded positions hold anything: they must not matter
    ref_pooled, ref_w = attention_loop(att, keys, query, mask, batch_stats=att.training)
    pooled, w = att(keys, query, mask)
    torch.testing.assert_close(w, ref_w, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(pooled, ref_pooled, rtol=1e-10, atol=1e-12)
    assert torch.equal(pooled[0], torch.zeros(6, dtype=torch.float64))
    if softmax:
        torch.testing.assert_close(w.sum(1)[mask.any(1)], torch.ones(int(mask.any(1).sum()), dtype=torch.float64))


def test_factorised_first_layer_equals_the_literal_concatenation():
    torch.manual_seed(0)
    unit = ActivationUnit(5, (7, 3)).double()
    keys, query = torch.randn(9, 5, dtype=torch.float64), torch.randn(4, 5, dtype=torch.float64)
    rows = torch.tensor([0, 0, 0, 1, 2, 2, 2, 2, 3])
    feats = unit.features(keys, query[rows])
    assert feats.shape == (9, 20)
    torch.testing.assert_close(feats[5, 10:15], keys[5] * query[2])  # e * v
    torch.testing.assert_close(feats[5, 15:], keys[5] - query[2])  # e - v
    torch.testing.assert_close(unit.first_layer(keys, query, rows), unit.first(feats), rtol=1e-12, atol=1e-12)
    # Keys given as rows of a table: the key-only part is computed once per table row.
    table, index = torch.randn(4, 5, dtype=torch.float64), torch.tensor([3, 0, 3, 1, 2, 2, 0, 1, 3])
    feats = unit.features(table[index], query[rows])
    torch.testing.assert_close(unit.first_layer(table[index], query, rows, table=table, index=index),
                               unit.first(feats), rtol=1e-12, atol=1e-12)


def test_packed_and_padded_histories_give_the_same_attention():
    torch.manual_seed(0)
    att = TargetAttention(4, (5,), softmax=True).double()
    keys, query = torch.randn(6, 3, 4, dtype=torch.float64), torch.randn(6, 4, dtype=torch.float64)
    mask = torch.rand(6, 3) < 0.5
    pooled, w = att(keys, query, mask)
    pooled2, w2 = att.pool(keys[mask], query, mask)
    torch.testing.assert_close(pooled, pooled2)
    torch.testing.assert_close(w, w2)
    with pytest.raises(ValueError, match=r"keys: expected the \d+ real items of mask packed"):
        att.pool(keys.reshape(-1, 4), query, mask)


def test_raw_weights_keep_the_intensity_of_interest_softmax_does_not():
    torch.manual_seed(0)
    keys, query = torch.randn(1, 3, 4, dtype=torch.float64), torch.randn(1, 4, dtype=torch.float64)
    mask = torch.ones(1, 3, dtype=torch.bool)
    twice = torch.cat([keys, keys], 1)  # the same three items, each seen twice
    mask2 = torch.ones(1, 6, dtype=torch.bool)
    raw = TargetAttention(4, (5,)).double().eval()
    torch.testing.assert_close(raw(twice, query, mask2)[0], 2 * raw(keys, query, mask)[0])
    soft = TargetAttention(4, (5,), softmax=True).double().eval()
    torch.testing.assert_close(soft(twice, query, mask2)[0], soft(keys, query, mask)[0])


def test_masked_helpers_by_hand():
    v = torch.tensor([[[1.0], [2.0], [6.0]], [[5.0], [7.0], [9.0]]])
    mask = torch.tensor([[False, True, True], [False, False, False]])
    torch.testing.assert_close(masked_mean(v, mask), torch.tensor([[4.0], [0.0]]))
    torch.testing.assert_close(masked_mean(torch.tensor([[2.0], [6.0]]), mask), torch.tensor([[4.0], [0.0]]))
    w = masked_softmax(torch.tensor([[3.0, 0.0, math.log(3.0)], [1.0, 2.0, 3.0]]), mask)
    torch.testing.assert_close(w, torch.tensor([[0.0, 0.25, 0.75], [0.0, 0.0, 0.0]]))


def test_attention_validates_shapes():
    att = TargetAttention(4)
    with pytest.raises(ValueError, match=r"keys: expected a \[B, L, 4\] tensor"):
        att(torch.randn(2, 3, 5), torch.randn(2, 4), torch.ones(2, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match="mask: expected shape"):
        att(torch.randn(2, 3, 4), torch.randn(3, 4), torch.ones(2, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"query: expected a \[B, 4\] tensor"):
        att(torch.randn(2, 3, 4), torch.randn(2, 5), torch.ones(2, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match="mask: expected shape"):
        att(torch.randn(2, 3, 4), torch.randn(2, 4), torch.ones(2, 4, dtype=torch.bool))


# ---------------------------------------------------------------- the models

@pytest.mark.parametrize("name", list(VARIANTS))
@pytest.mark.parametrize("train_mode", [True, False])
@pytest.mark.parametrize("fill", [0, 5])
def test_appending_padding_leaves_the_logit_unchanged(name, train_mode, fill):
    model, schema, feats = make(name)
    model.train(train_mode)
    batch = random_batch(schema, feats)
    expected = model(batch)
    model2, _, _ = make(name)  # fresh copy: training mode updates running statistics
    model2.train(train_mode)
    torch.testing.assert_close(model2(pad_left(batch, 4, fill)), expected, rtol=1e-5, atol=1e-6)
    if train_mode and name == "din-dice":  # and the statistics Dice keeps are the same
        for a, b in zip(model.buffers(), model2.buffers()):
            torch.testing.assert_close(a, b)


@pytest.mark.parametrize("name", list(VARIANTS))
def test_permuting_the_history_leaves_the_output_unchanged(name):
    model, schema, feats = make(name)
    batch = random_batch(schema, feats, L=7)
    g = torch.Generator().manual_seed(3)
    perm = torch.stack([torch.randperm(7, generator=g) for _ in range(32)])  # each row its own order
    shuffled = dict(batch, hist_item=batch["hist_item"].gather(1, perm), hist_mask=batch["hist_mask"].gather(1, perm))
    for mode in (True, False):
        model.train(mode)
        state = {k: v.clone() for k, v in model.state_dict().items()}
        a = model(batch)
        model.load_state_dict(state)
        torch.testing.assert_close(model(shuffled), a, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", list(VARIANTS))
def test_models_return_logits_and_gradients_reach_every_parameter(name):
    model, schema, feats = make(name)
    batch = random_batch(schema, feats)
    out = model(batch)
    assert out.shape == (32,) and out.dtype == torch.float32 and torch.isfinite(out).all()
    F.binary_cross_entropy_with_logits(out, batch["label"]).backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), pname
        assert p.grad.abs().sum() > 0, pname
    if name != "base":
        unit = model.attention.unit
        assert unit.first.weight.grad.abs().min() >= 0 and unit.first.weight.grad.abs().sum() > 0
        assert unit.rest.out.weight.grad.abs().sum() > 0


def test_base_model_pools_by_the_mean_and_din_by_the_attention_weights():
    base, schema, feats = make("base")
    batch = random_batch(schema, feats)
    mask = batch["hist_mask"]
    table = base.item_vectors()
    packed = base.history_vectors(batch["hist_item"], mask)  # the real items only, row-major
    torch.testing.assert_close(packed, base.history_vectors(batch["hist_item"])[mask])
    for b in (0, 1, 5):
        codes = [int(c) for c, m in zip(batch["hist_item"][b], mask[b]) if m]
        expected = table[codes].mean(0) if codes else torch.zeros(base.item_dim)
        torch.testing.assert_close(base.pool(table, batch["hist_item"][mask], None, mask)[b], expected)
    din, _, _ = make("din")
    din.eval()
    w = din.attention_weights(batch)
    assert w.shape == (32, 6) and torch.equal(w[~mask], torch.zeros(int((~mask).sum())))
    cand = din.embedding(batch).index_select(1, din.item_slots).flatten(1)
    hist = din.history_vectors(batch["hist_item"])  # padded [B, L, Di]
    torch.testing.assert_close(din.pool(din.item_vectors(), batch["hist_item"][mask], cand, mask),
                               (w.unsqueeze(-1) * hist).sum(1))


@pytest.mark.parametrize("name", ["base", "din"])
def test_every_input_reaches_the_logit(name):
    model, schema, feats = make(name)
    model.eval()
    batch = random_batch(schema, feats)
    before = model(batch)
    row = 1  # full history
    changes = {
        "user field": ("x", (row, 0), 7), "context field": ("x", (row, 2), 3 - int(batch["x"][row, 2])),
        "history item": ("hist_item", (row, 3), 2 + (int(batch["hist_item"][row, 3]) - 1) % N_ITEMS),
        "candidate": ("x", (row, 1), 2 + (int(batch["x"][row, 1]) - 1) % N_ITEMS),
    }
    for what, (key, idx, value) in changes.items():
        changed = {k: v.clone() for k, v in batch.items()}
        changed[key][idx] = value
        after = model(changed)
        assert (after[row] - before[row]).abs() > 1e-6, what
        others = torch.arange(32) != row
        torch.testing.assert_close(after[others], before[others])  # eval: rows are independent


def test_options_product_linear_and_ignore():
    model, schema, feats = build("din", product=True, linear=True, ignore=("user_id",))
    assert model.mlp.linears[0].in_features == 2 * 4 + 3 * 8  # gender, year + [v_U, v_A, v_U * v_A]
    batch = random_batch(schema, feats)
    model.eval()
    with torch.no_grad():
        model.linear.weights.table.weight.normal_()
        model.linear.bias.fill_(0.7)
        x = batch["x"].clone()
        x[:, 0] = torch.roll(x[:, 0], 1)  # other users: only the first-order term sees them
        changed = dict(batch, x=x)
        delta = model(changed) - model(batch)
        lin = model.linear
        torch.testing.assert_close(delta, lin(changed) - lin(batch))
    with pytest.raises(ValueError, match="ignore: 'item_id' is not a user/context field"):
        build("din", ignore=("item_id",))


def test_history_items_carry_their_side_features_from_the_shared_table():
    model, schema, feats = make("din-year")
    emb = model.embedding
    code = 7
    vec = model.item_vectors()[code]
    genres = [c for c in feats["genres"][code].tolist() if c]
    expected = torch.cat([
        emb.table.weight[schema.offset_of("item_id") + code],
        emb.table.weight[[schema.offset_of("genres") + c for c in genres]].mean(0) if genres else torch.zeros(4),
        emb.table.weight[schema.offset_of("year_bucket") + int(feats["year_bucket"][code])],
    ])
    torch.testing.assert_close(vec, expected)
    # The candidate, built from the batch, is the same vector as the item's history vector.
    batch = random_batch(schema, feats)
    cand = model.embedding(batch).index_select(1, model.item_slots).flatten(1)
    torch.testing.assert_close(cand, model.item_vectors()[batch["x"][:, 1]])
    assert model.other_slots.tolist() == [0, 2]  # user_id, gender: the user/context fields


def test_models_validate_the_batch_naming_the_field():
    model, schema, feats = make("din")
    batch = random_batch(schema, feats)
    bad = dict(batch, hist_item=batch["hist_item"].clone())
    bad["hist_item"][3, 2] = N_ITEMS + 2
    with pytest.raises(ValueError, match=r"hist_item \(field 'item_id'\): index 14 out of range \[0, 14\)"):
        model(bad)
    with pytest.raises(ValueError, match="missing key 'hist_mask'"):
        model({k: v for k, v in batch.items() if k != "hist_mask"})
    with pytest.raises(ValueError, match="hist_mask: expected a bool tensor"):
        model(dict(batch, hist_mask=batch["hist_mask"].long()))
    with pytest.raises(ValueError, match="hist_item: has 31 rows; expected 32 like x"):
        model(dict(batch, hist_item=batch["hist_item"][1:], hist_mask=batch["hist_mask"][1:]))
    bad = dict(batch, x=batch["x"].clone())
    bad["x"][0, 2] = 9
    with pytest.raises(ValueError, match=r"x\[:, 2\] \(field 'gender'\)"):
        model(bad)
    with pytest.raises(ValueError, match="item_features: no field named 'colour'"):
        DIN(schema, {"colour": torch.zeros(14, dtype=torch.long)})
    with pytest.raises(ValueError, match=r"item_features\['genres'\]: has 13 rows; expected 14"):
        DIN(schema, {"genres": torch.zeros(13, 2, dtype=torch.long)})
    with pytest.raises(ValueError, match="activation"):
        DIN(schema, {"genres": feats["genres"]}, activation="tanh")
    model.validate = False
    assert model(batch).shape == (32,)


def test_same_seed_same_model_and_no_shared_weights():
    a, schema, feats = build("din", seed=3)
    b, _, _ = build("din", seed=3)
    batch = random_batch(schema, feats)
    assert torch.equal(a(batch), b(batch))
    assert {p.data_ptr() for p in a.parameters()}.isdisjoint(p.data_ptr() for p in b.parameters())


# ---------------------------------------------------------------- mini-batch aware L2

def test_occurrence_counts_count_each_row_once_per_sample():
    rows = torch.tensor([[3, 1, 3, 0], [1, 1, 1, 1], [2, 0, 5, 3]])
    expected = [sum(j in set(r) for r in rows.tolist()) for j in range(7)]
    assert occurrence_counts(rows, 7, chunk=2).tolist() == expected == [2, 2, 1, 2, 0, 1, 0]


def test_minibatch_l2_penalises_only_the_rows_of_the_batch_scaled_by_their_counts():
    model, schema, feats = make("din")
    data = TensorData(random_batch(schema, feats, n=40, seed=4))
    model.add_minibatch_l2(data, 0.3)
    rows = model.embedding_rows(dict(data))
    counts = occurrence_counts(rows, schema.total_size)
    batch = random_batch(schema, feats, n=8, seed=5)
    used = set(model.embedding_rows(batch).flatten().tolist())
    pads = {int(o) for o in schema.offsets}
    w = model.embedding.table.weight
    expected = sum(0.15 * float(w[j].detach().square().sum()) / int(counts[j])
                   for j in used if j not in pads and counts[j] > 0)
    penalty = model.regularization(batch)
    assert penalty.item() == pytest.approx(expected, rel=1e-5) and expected > 0
    penalty.backward()
    touched = set(w.grad.abs().sum(1).nonzero().flatten().tolist())
    # (unknown rows start at exactly zero, so their penalty and its gradient are 0)
    assert touched == {j for j in used if j not in pads and counts[j] > 0 and w[j].abs().sum() > 0}
    # The gradient is the paper's update term l2 * w_j / n_j.
    j = next(iter(touched))
    torch.testing.assert_close(w.grad[j], 0.3 * w[j].detach() / int(counts[j]))
    # A history item's side features count as used: its genres' rows are among the rows.
    item = int(batch["hist_item"][batch["hist_mask"]][0])
    for c in feats["genres"][item].tolist():
        if c:
            assert schema.offset_of("genres") + c in used
    # din_loss adds the penalty to the cross-entropy.
    model.zero_grad()
    loss = din_loss(model, batch)
    bce = F.binary_cross_entropy_with_logits(model(batch), batch["label"])
    assert loss.item() == pytest.approx(bce.item() + expected, rel=1e-5)


def test_minibatch_l2_off_by_default_and_validated():
    model, schema, feats = make("din")
    batch = random_batch(schema, feats)
    assert model.regularization(batch).item() == 0.0
    with pytest.raises(ValueError, match="l2"):
        MiniBatchAwareL2(torch.ones(5), -1.0)
    reg = MiniBatchAwareL2(torch.tensor([0, 2, 4]), 1.0)
    with pytest.raises(ValueError, match="weight: has 2 rows; expected 3"):
        reg(torch.ones(2, 3), torch.tensor([0]))


# ---------------------------------------------------------------- the protocol's factory

def test_from_data_takes_the_side_features_from_the_catalogue():
    from types import SimpleNamespace

    schema = small_schema()
    feats = side_features(schema)
    catalogue = SimpleNamespace(features={"item_id": torch.arange(14), **feats})
    data = SimpleNamespace(schema=schema, catalogue=catalogue,
                           train=TensorData(random_batch(schema, feats, n=40, seed=4)))
    model = DIN.from_data(data, fields=("genres", "year_bucket"), dim=4, hidden=(8,), l2=0.5)
    assert model.side_fields == ("genres", "year_bucket") and model.item_dim == 12
    assert torch.equal(model.side_genres, feats["genres"]) and model.regularizer.l2 == 0.5
    base = DINBase.from_data(data, dim=4)
    assert base.side_fields == ("genres",) and base.regularizer is None
    with pytest.raises(ValueError, match="fields: 'gender' is not an item side feature"):
        DIN.from_data(data, fields=("gender",))
    with pytest.raises(ValueError, match="item_features: 'item_id' is the item itself"):
        DIN(schema, {"item_id": torch.arange(14)})
    no_history = SimpleNamespace(schema=schema, catalogue=catalogue, train=TensorData(x=data.train["x"]))
    with pytest.raises(ValueError, match="data: expected CTRData with behaviour histories"):
        DIN.from_data(no_history)


def test_unknown_rate_replaces_user_codes_in_training_only():
    model, schema, feats = build("din", unknown_rate={"user_id": 1.0})
    batch = random_batch(schema, feats)
    unk = dict(batch, x=batch["x"].clone())
    unk["x"][:, 0] = 1
    model.eval()
    assert not torch.allclose(model(batch), model(unk))
    model.train()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    a = model(batch)
    model.load_state_dict(state)
    torch.testing.assert_close(a, model(unk))  # every user id replaced by unknown


def test_attention_activation_sets_the_unit_alone():
    """The authors' code scores with a sigmoid unit of 80 and 40 while the MLP keeps PReLU."""
    m = build("din", attention_hidden=(80, 40), attention_activation="sigmoid", softmax=True)[0]
    unit = m.attention.unit
    assert isinstance(unit.first_activation, nn.Sigmoid) and unit.first.out_features == 80
    assert any(isinstance(x, nn.Sigmoid) for x in unit.rest.modules())
    assert not any(isinstance(x, nn.Sigmoid) for x in m.mlp.modules())
    assert any(isinstance(x, PReLU) for x in m.mlp.modules())
    same = build("din")[0]
    assert isinstance(same.attention.unit.first_activation, PReLU)       # default: the MLP's activation
    with pytest.raises(ValueError, match="attention_activation"):
        build("din", attention_activation="tanh")

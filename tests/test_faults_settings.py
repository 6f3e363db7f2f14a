"""Settings and inputs that used to be accepted silently, making the result meaningless.

S1  every float setting of the package refuses NaN and infinities (and values out of its range),
    naming the setting: a two-tower temperature of inf made every logit 0
S2  FTRL (and AdagradM) given a NaN or infinite gradient: FloatingPointError, and the weights and
    the optimiser's state stay as they were (they used to stay NaN through later clean steps)
S3  a softmax cross-entropy with one row and no negative (loss exactly 0) is refused
S4  a history mask True on padding (item 0), or of another shape than the history: refused by
    encode_ctr and by DIN, naming the mask
S5  ratings repeated in the CTR frame are refused like leave_last_out refuses them, and both say
    how often the row appears
S6  timestamps given as text are refused wherever the time order is computed
S7  the page-weight codec refuses an alphabet with a repeated character (it decoded to other numbers)
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from recbook.data import ctr_frame, leave_last_out
from recbook.data.protocols import behaviour_histories, encode_ctr, time_order
from recbook.widgets import decode_digits, encode_digits

BAD = [math.inf, -math.inf, math.nan]


def _twotower(ml, **kw):
    from recbook.data.retrieval import tower_features
    from recbook.models.twotower import TwoTower

    return TwoTower(tower_features(ml), dim=4, hidden=(), out_dim=4, **kw)


def _fit(**kw):
    from recbook.data import TensorData
    from recbook.train import fit

    data = TensorData(x=torch.zeros(8, 1), label=torch.ones(8))
    return fit(nn.Linear(1, 1), data, None, progress=False, loss_fn=lambda m, b: m(b["x"]).sum(), **kw)


def _settings():
    """(name, build(value)) of every float setting a user hands over."""
    from recbook import layers, losses, optim, sampled_softmax
    from recbook.models.widedeep import ftrl_adagrad

    w = [nn.Parameter(torch.zeros(3))]
    scores = torch.zeros(2, 3)
    return [
        ("lr", lambda v: _fit(lr=v)),
        ("weight_decay", lambda v: _fit(weight_decay=v)),
        ("lr", lambda v: optim.AdagradM(w, lr=v)),
        ("momentum", lambda v: optim.AdagradM(w, momentum=v)),
        ("eps", lambda v: optim.AdagradM(w, eps=v)),
        ("alpha", lambda v: optim.FTRLProximal(w, alpha=v)),
        ("l1", lambda v: optim.FTRLProximal(w, l1=v)),
        ("dropout", lambda v: layers.mlp(4, (3,), dropout=v)),
        ("dropout", lambda v: layers.MaskedMLP(4, (3,), dropout=v)),
        ("alpha_init", lambda v: layers.PReLU(3, alpha_init=v)),
        ("alpha_init", lambda v: layers.Dice(3, alpha_init=v)),
        ("eps", lambda v: layers.Dice(3, eps=v)),
        ("l2", lambda v: layers.MiniBatchAwareL2(torch.ones(4), v)),
        ("alpha", lambda v: sampled_softmax.FrequencyEstimator(10, alpha=v)),
        ("power", lambda v: sampled_softmax.NegativeSampler.popularity(torch.ones(10), power=v)),
        ("reg", lambda v: losses.bpr_max_loss(scores, reg=v)),
        ("elu", lambda v: losses.bpr_max_loss(scores, elu=v)),
        ("deep_lr", lambda v: ftrl_adagrad(deep_lr=v)),
    ]


@pytest.mark.parametrize("value", BAD, ids=["inf", "-inf", "nan"])
@pytest.mark.parametrize("index", range(18))
def test_S1_float_settings_refuse_non_finite_values(index, value):
    name, build = _settings()[index]
    with pytest.raises(ValueError, match=rf"^(\S+\[.*\]\['?)?{name}'?\]?: expected .*got {value!r}"):
        build(value)


@pytest.mark.parametrize("value", [math.inf, math.nan, 0, -0.5])
def test_S1_two_tower_temperature(make_ml, value):
    with pytest.raises(ValueError, match=rf"temperature: expected a finite positive number, got {value!r}"):
        _twotower(make_ml(), temperature=value)
    with pytest.raises(ValueError, match=r"init_std: expected a finite non-negative number, got inf"):
        _twotower(make_ml(), init_std=math.inf)
    with pytest.raises(ValueError, match=r"dropout: expected a finite number in \[0, 1\), got nan"):
        _twotower(make_ml(), dropout=math.nan)


# --------------------------------------------------------------------------------------------
# S2
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("make", ["ftrl", "adagradm"])
@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_S2_a_non_finite_gradient_changes_nothing(make, bad):
    from recbook.optim import AdagradM, FTRLProximal

    w = nn.Parameter(torch.tensor([0.5, -0.2, 0.0]))
    opt = FTRLProximal([w], alpha=0.1, l1=0.01) if make == "ftrl" else AdagradM([w], lr=0.1, momentum=0.5)
    w.grad = torch.tensor([0.3, -0.1, 0.2])
    opt.step()
    before = w.detach().clone(), {k: v.clone() for k, v in opt.state[w].items()}
    w.grad = torch.tensor([0.3, bad, 0.2])
    with pytest.raises(FloatingPointError, match=r"param_groups\[0\]\['params'\]\[0\] \(shape \(3,\)\) has 1 NaN "
                                                 r"or infinite value.*Nothing was updated"):
        opt.step()
    assert torch.equal(w.detach(), before[0])
    assert all(torch.equal(opt.state[w][k], v) for k, v in before[1].items())
    w.grad = torch.tensor([0.1, 0.1, 0.1])  # a clean step afterwards works
    opt.step()
    assert torch.isfinite(w).all() and all(torch.isfinite(v).all() for v in opt.state[w].values())


def test_S2_sparse_gradients_are_checked_too():
    from recbook.optim import FTRLProximal

    emb = nn.Embedding(5, 2, sparse=True)
    opt = FTRLProximal(emb.parameters(), alpha=0.1)
    (emb(torch.tensor([1, 3])).sum() * math.inf).backward()
    before = emb.weight.detach().clone()
    with pytest.raises(FloatingPointError, match="NaN or infinite"):
        opt.step()
    assert torch.equal(emb.weight.detach(), before)


# --------------------------------------------------------------------------------------------
# S3
# --------------------------------------------------------------------------------------------

def test_S3_cross_entropy_with_no_negative_is_refused():
    from recbook.losses import sampled_softmax_loss as session_softmax
    from recbook.sampled_softmax import sampled_softmax_loss

    with pytest.raises(ValueError, match=r"scores: has shape \(1, 1\): one row and no negative"):
        session_softmax(torch.zeros(1, 1, requires_grad=True))
    with pytest.raises(ValueError, match=r"logits: has shape \(1, 1\): .*no negative"):
        sampled_softmax_loss(torch.zeros(1, 1), torch.tensor([5]), torch.tensor([5]))
    # one row with an extra negative, or two rows, still work
    assert session_softmax(torch.tensor([[2.0, 0.0]])).item() > 0
    assert sampled_softmax_loss(torch.zeros(2, 2), torch.tensor([5, 6]), torch.tensor([5, 6])).item() > 0


def test_S3_two_towers_with_batch_size_one_and_no_negatives_are_refused(make_ml):
    from recbook.data import sequence_protocol
    from recbook.models.twotower import TwoTower, two_tower_examples, two_tower_loss
    from recbook.train import fit

    seq = sequence_protocol(make_ml())
    model = TwoTower.from_data(seq, dim=4, hidden=(), out_dim=4)
    with pytest.raises(ValueError, match=r"one row and one candidate"):
        fit(model, two_tower_examples(seq), None, batch_size=1, epochs=1, loss_fn=two_tower_loss, progress=False)


# --------------------------------------------------------------------------------------------
# S4
# --------------------------------------------------------------------------------------------

@pytest.fixture
def ctr_parts(make_ml):
    from recbook.data.protocols import ctr_schema

    frame = ctr_frame(make_ml())
    return frame, ctr_schema(frame, items=make_ml().items), behaviour_histories(frame, 5)


def test_S4_a_mask_true_on_padding_is_refused(ctr_parts):
    frame, schema, (items, mask) = ctr_parts
    assert (~mask).any()
    bad = mask.copy()
    r, c = np.argwhere(~mask)[0]
    bad[r, c] = True
    with pytest.raises(ValueError, match=rf"history mask: is True at 1 padding position\(s\) \(item id 0\), "
                                         rf"the first at row {r}, column {c}"):
        encode_ctr(frame, schema, history=(items, bad))
    encode_ctr(frame, schema, history=(items, mask))  # the consistent pair works


def test_S4_a_mask_of_another_shape_or_dtype_is_refused(ctr_parts):
    frame, schema, (items, mask) = ctr_parts
    with pytest.raises(ValueError, match=r"history mask: has shape \(\d+, 4\); expected \(\d+, 5\) like the history"):
        encode_ctr(frame, schema, history=(items, mask[:, 1:]))
    with pytest.raises(ValueError, match=r"history mask: expected a bool array .* got dtype int64"):
        encode_ctr(frame, schema, history=(items, mask.astype(np.int64)))


def test_S4_din_refuses_a_mask_true_on_padding():
    from recbook.data import Field, Schema
    from recbook.models import DIN

    schema = Schema((Field("user_id", tuple(range(5))), Field("item_id", tuple(range(8))),
                     Field("genres", tuple("ABC"), multi=True)))
    model = DIN(schema, {"genres": torch.zeros(10, 2, dtype=torch.long)}, 4, hidden=(4,), attention_hidden=(4,))
    hist = torch.tensor([[0, 0, 3], [4, 5, 6]])
    batch = {"x": torch.tensor([[2, 3], [3, 4]]), "genres": torch.zeros(2, 2, dtype=torch.long),
             "hist_item": hist, "hist_mask": hist != 0}
    model(batch)  # consistent
    batch["hist_mask"] = torch.ones(2, 3, dtype=torch.bool)
    with pytest.raises(ValueError, match=r"hist_mask: is True at 2 padding position\(s\) of hist_item \(code 0\), "
                                         r"the first at row 0, column 0"):
        model(batch)


# --------------------------------------------------------------------------------------------
# S5, S6
# --------------------------------------------------------------------------------------------

def test_S5_repeated_ratings_are_refused_by_both_protocols_saying_how_often(make_ml):
    from types import SimpleNamespace

    ml = make_ml()
    twice = pd.concat([ml.ratings, ml.ratings.iloc[[5]]], ignore_index=True)
    thrice = pd.concat([ml.ratings, ml.ratings.iloc[[5, 5]]], ignore_index=True)
    for ratings, n in ((twice, 2), (thrice, 3)):
        with pytest.raises(ValueError, match=rf"ratings: the row \(user_id=.*\) appears {n} times "
                                             rf"\({n - 1} repeated row"):
            ctr_frame(SimpleNamespace(ratings=ratings, users=ml.users, items=ml.items))
        with pytest.raises(ValueError, match=rf"appears {n} times .*validation and test"):
            leave_last_out(ratings)


def test_S6_text_timestamps_are_refused(make_ml):
    from types import SimpleNamespace

    ml = make_ml()
    text = ml.ratings.assign(timestamp=ml.ratings["timestamp"].astype("int64").astype(str))
    match = r"timestamp: expected numbers \(seconds since 1970\) or datetimes, got dtype (object|str)"
    with pytest.raises(ValueError, match=match):
        ctr_frame(SimpleNamespace(ratings=text, users=ml.users, items=ml.items))
    with pytest.raises(ValueError, match=match):
        leave_last_out(text)
    with pytest.raises(ValueError, match=match):
        time_order(text)
    with pytest.raises(ValueError, match=match):
        behaviour_histories(text, 5)
    seconds = ml.ratings.assign(timestamp=ml.ratings["timestamp"].astype("int64"))
    assert np.array_equal(time_order(seconds), time_order(ml.ratings))  # numbers and datetimes agree


# --------------------------------------------------------------------------------------------
# S7
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("alphabet", ["0120", "aa", "abcdefghijklmnopqrstuvwxyza"])
def test_S7_the_codec_refuses_a_repeated_character(alphabet):
    with pytest.raises(ValueError, match=r"alphabet: the character\(s\) \['(0|a)'\] appear more than once"):
        encode_digits(np.array([[1, 2]]), 2, alphabet)
    with pytest.raises(ValueError, match=r"alphabet: the character\(s\)"):
        decode_digits(["0102"], 2, alphabet)


@pytest.mark.parametrize("alphabet", ["0", "", "01é", 36])
def test_S7_the_codec_refuses_other_bad_alphabets(alphabet):
    with pytest.raises(ValueError, match=r"alphabet: expected a string of at least 2 ASCII characters"):
        decode_digits(["00"], 2, alphabet)

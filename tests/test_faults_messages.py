"""Messages that say what went wrong, naming what the user handed over.

M1  ctr_protocol on a handful of ratings said "frame: is empty": now it says how many ratings
    each block got
M2  predict on data that yields no batches failed inside torch.cat; a model that returns no
    tensor failed with "'dict' object has no attribute 'float'"
M3  a history of width 5 with a mask of width 4 failed with numpy's broadcast message
M4  NaN gradients under a finite loss in fit: named as such (which parameters, epoch, batch), no
    learning-rate advice, and every optimiser's step size shown (FTRL's alpha too)
M5  decode_digits(width=0) raised ZeroDivisionError
"""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from recbook.data import TensorData, ctr_protocol
from recbook.optim import FTRLProximal
from recbook.train import fit, predict
from recbook.widgets import decode_digits


def test_M1_ctr_protocol_on_a_handful_of_ratings_says_what_each_block_got(make_ml):
    ml = make_ml()
    few = SimpleNamespace(ratings=ml.ratings.iloc[:4], users=ml.users, items=ml.items)
    with pytest.raises(ValueError, match=r"ratings: 4 rating\(s\) split 0.8/0.1/0.1 by time give train 3, "
                                         r"valid 1, test 0; expected at least one rating in each"):
        ctr_protocol(few)


class NoBatches:
    def batches(self, batch_size, shuffle=False, generator=None):
        return iter(())


class ReturnsDict(nn.Module):
    def __init__(self):
        super().__init__()
        self.w = nn.Linear(1, 1)

    def forward(self, batch):
        return {"logits": self.w(batch["x"]).squeeze(1)}


def test_M2_predict_names_the_data_or_the_model():
    with pytest.raises(ValueError, match=r"data: NoBatches produced no batches; expected at least one row"):
        predict(nn.Linear(1, 1), NoBatches())
    with pytest.raises(ValueError, match=r"model: ReturnsDict returned a dict; expected a tensor of logits"):
        predict(ReturnsDict(), TensorData(x=torch.zeros(3, 1)))
    with pytest.raises(ValueError, match=r"data: expected TensorData or an object with .batches\(\), got list"):
        predict(nn.Linear(1, 1), [1, 2])
    model = ReturnsDict()
    model.train()
    with pytest.raises(ValueError):
        predict(model, TensorData(x=torch.zeros(3, 1)))
    assert model.training  # the mode is restored after the failure


def test_M3_a_mask_narrower_than_the_history_names_both(make_ml):
    from recbook.data import ctr_frame
    from recbook.data.protocols import behaviour_histories, ctr_schema, encode_ctr

    frame = ctr_frame(make_ml())
    items, mask = behaviour_histories(frame, 5)
    with pytest.raises(ValueError, match=r"history mask: has shape \(300, 4\); expected \(300, 5\) like the "
                                         r"history items"):
        encode_ctr(frame, ctr_schema(frame, items=make_ml().items), history=(items, mask[:, :4]))


class WideAndDeep(nn.Module):
    """A wide weight and a deep one; the deep part takes sqrt(|w|) at w = 0: an infinite
    derivative times 0, a NaN gradient under a finite loss."""

    def __init__(self):
        super().__init__()
        self.wide = nn.Parameter(torch.zeros(1))
        self.deep = nn.Parameter(torch.zeros(1))

    def forward(self, batch):
        return batch["x"][:, 0] * self.wide + self.deep.abs().sqrt()


def ftrl_and_adagrad(model):
    return [FTRLProximal([model.wide], alpha=0.05), torch.optim.Adagrad([model.deep], lr=0.005)]


def test_M4_nan_gradients_are_named_as_such_with_every_step_size():
    data = TensorData(x=torch.randn(64, 1), label=(torch.rand(64) < 0.5).float())
    with pytest.raises(FloatingPointError) as e:
        fit(WideAndDeep(), data, None, optimizer=ftrl_and_adagrad, batch_size=16, epochs=1, progress=False)
    message = str(e.value)
    assert "the gradient of deep is NaN or infinite at epoch 1, batch 1 of 4, while the loss is finite" in message
    assert "FTRLProximal alpha=0.05; Adagrad lr=0.005" in message
    assert "no update was made" in message and "10 times smaller" not in message


def test_M4_divergence_with_two_optimisers_shows_both_step_sizes():
    class Linear(nn.Module):
        def __init__(self):
            super().__init__()
            self.wide = nn.Parameter(torch.zeros(1))
            self.deep = nn.Parameter(torch.zeros(1))

        def forward(self, batch):
            return batch["x"][:, 0] * (self.wide + self.deep)

    def huge(model):
        return [FTRLProximal([model.wide], alpha=1e9), torch.optim.SGD([model.deep], lr=1e9)]

    data = TensorData(x=torch.randn(64, 1) * 10, label=(torch.rand(64) < 0.5).float())
    with pytest.raises(FloatingPointError, match=r"diverged .*\(FTRLProximal alpha=1e\+09; SGD lr=1e\+09\)\. "
                                                 r"Try a learning rate 10 times smaller \(each optimiser's\)"):
        fit(Linear(), data, None, optimizer=huge, batch_size=16, epochs=3, progress=False)


@pytest.mark.parametrize("width", [0, -1, 2.5, None])
def test_M5_decode_digits_names_a_bad_width(width):
    with pytest.raises(ValueError, match=rf"width: expected a positive integer number of digits per code, got {width}"):
        decode_digits(["0102"], width, "0123")
    assert decode_digits(["0102"], 2, "0123").tolist() == [[1, 2]]
    assert np.array_equal(decode_digits(["0102", "0303"], 1, "0123"), [[0, 1, 0, 2], [0, 3, 0, 3]])

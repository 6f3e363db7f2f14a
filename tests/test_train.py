import copy

import numpy as np
import pytest
import torch
from torch import nn

from recbook.data import TensorData
from recbook.train import fit, num_threads, predict, seed_everything


class Logistic(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.lin = nn.Linear(d, 1)

    def forward(self, batch):
        return self.lin(batch["f"]).squeeze(-1)


def separable(n=2000, d=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    f = torch.randn(n, d, generator=g)
    w = torch.arange(1.0, d + 1)
    label = (f @ w + 0.3 * torch.randn(n, generator=g) > 0).float()
    return TensorData(f=f, label=label, user=torch.randint(0, 20, (n,), generator=g))


def test_fit_learns_and_reports_history():
    train, valid = separable(seed=0), separable(seed=1)
    seed_everything(0)
    model = Logistic(5)
    res = fit(model, train, valid, epochs=5, batch_size=128, lr=0.05, progress=False)
    h = res.history
    assert list(h.index) == list(range(1, len(h) + 1))
    assert {"train_loss", "valid_auc", "valid_logloss", "valid_gauc", "seconds", "cpu_seconds"} <= set(h.columns)
    assert h["valid_auc"].max() > 0.95
    assert h["train_loss"].iloc[-1] < h["train_loss"].iloc[0]
    assert res.best_score == pytest.approx(h["valid_auc"].max())


def test_early_stopping_restores_the_best_weights():
    train = separable()
    scores = iter([0.5, 0.7, 0.6, 0.65, 0.9])
    snapshots = []

    def evaluate(model, data):
        snapshots.append(copy.deepcopy(model.state_dict()))
        return {"auc": next(scores)}

    seed_everything(0)
    model = Logistic(5)
    res = fit(model, train, train, epochs=5, lr=0.1, batch_size=256, evaluate=evaluate, patience=2,
              progress=False)
    assert res.best_epoch == 2 and res.stopped_early and len(res.history) == 4
    for k, v in model.state_dict().items():
        assert torch.equal(v, snapshots[1][k])
        assert not torch.equal(v, snapshots[3][k])


def test_mode_min_watches_a_loss():
    train = separable()
    seed_everything(1)
    model = Logistic(5)
    res = fit(model, train, train, epochs=3, lr=0.05, metric="logloss", mode="min", progress=False)
    assert res.best_score == pytest.approx(res.history["valid_logloss"].min())


def test_same_seed_same_numbers():
    def run():
        seed_everything(7)
        model = Logistic(5)
        res = fit(model, separable(), separable(seed=2), epochs=3, lr=0.05, batch_size=64, progress=False)
        return res.history["train_loss"].to_numpy(), predict(model, separable(seed=3))

    (l1, p1), (l2, p2) = run(), run()
    np.testing.assert_array_equal(l1, l2)
    assert torch.equal(p1, p2)


def test_predict_keeps_row_order_and_mode():
    data = separable(n=300)
    model = Logistic(5).train()
    out = predict(model, data, batch_size=7)
    assert out.shape == (300,) and model.training
    torch.testing.assert_close(out, model(dict(data)).detach())


def test_threads_are_restored():
    before = torch.get_num_threads()
    with num_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    with pytest.raises(ValueError, match="threads"):
        with num_threads(0):
            pass


@pytest.mark.parametrize("kwargs, field", [
    ({"epochs": 0}, "epochs"), ({"batch_size": -1}, "batch_size"), ({"lr": 0}, "lr"),
    ({"mode": "up"}, "mode"), ({"optimizer": "rmsprop"}, "optimizer"), ({"metric": "nope"}, "metric"),
])
def test_bad_arguments_name_the_parameter(kwargs, field):
    with pytest.raises(ValueError, match=field):
        fit(Logistic(5), separable(n=100), separable(n=100), progress=False, **kwargs)


def test_custom_optimizers_and_losses():
    seen = []

    def loss_fn(model, batch):
        seen.append(len(batch["label"]))
        return nn.functional.binary_cross_entropy_with_logits(model(batch), batch["label"])

    model = Logistic(5)
    fit(model, separable(n=100), None, epochs=2, batch_size=30, loss_fn=loss_fn, progress=False,
        optimizer=lambda m: [torch.optim.SGD(m.parameters(), lr=0.1)])
    assert seen == [30, 30, 30, 10] * 2

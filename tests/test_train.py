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


@pytest.mark.parametrize("chunk_rows", [1, 4, 7, 32768])
@pytest.mark.parametrize("batch_size", [1, 3, 5, 50])
def test_shuffled_batches_are_the_rows_of_one_permutation_in_order(monkeypatch, chunk_rows, batch_size):
    # Batches are gathered several at a time; they must be exactly what indexing each batch by
    # its slice of the permutation gives (the same rows, the same order, the same generator use).
    import recbook.data.tensors as tensors

    monkeypatch.setattr(tensors, "_SHUFFLE_CHUNK_ROWS", chunk_rows)
    n = 23
    d = TensorData(x=torch.arange(n * 3).view(n, 3), y=torch.rand(n), m=torch.rand(n) > 0.5)
    got = list(d.batches(batch_size, shuffle=True, generator=torch.Generator().manual_seed(4)))
    order = torch.randperm(n, generator=torch.Generator().manual_seed(4))
    want = [{k: v[order[s:s + batch_size]] for k, v in d.items()} for s in range(0, n, batch_size)]
    assert len(got) == len(want) == d.n_batches(batch_size)
    for g, w in zip(got, want):
        assert g.keys() == w.keys()
        for k in w:
            assert g[k].dtype == w[k].dtype and torch.equal(g[k], w[k])


def test_non_finite_gradients_names_exactly_the_bad_parameters():
    from recbook.train import _non_finite_gradients

    model = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 1))
    for p in model.parameters():
        p.grad = torch.full_like(p, 3e38)  # finite, though their sum overflows to inf
    assert _non_finite_gradients(model) == []
    for bad in (float("nan"), float("inf"), -float("inf")):
        model[1].weight.grad[0, 2] = bad
        assert _non_finite_gradients(model) == ["1.weight"]
        model[0].bias.grad[1] = bad
        assert _non_finite_gradients(model) == ["0.bias", "1.weight"]
        model[1].weight.grad[0, 2] = model[0].bias.grad[1] = 1.0
    assert _non_finite_gradients(model) == []

"""GRU4Rec's ranking losses against brute-force references written from the papers' formulas
(loops over rows and negatives, in float64 with the math module)."""
from __future__ import annotations

import math

import pytest
import torch

from recbook.losses import bpr_max_loss, negative_softmax, sampled_softmax_loss, top1_max_loss


def sig(x):
    return 1.0 / (1.0 + math.exp(-x))


def elu(x, a):
    return x if x > 0 else a * (math.exp(x) - 1.0)


def neg_weights(row, i):
    """Softmax over the negatives of a row (every column but i)."""
    m = max(v for j, v in enumerate(row) if j != i)
    e = {j: math.exp(v - m) for j, v in enumerate(row) if j != i}
    z = sum(e.values())
    return {j: x / z for j, x in e.items()}


def ref_bpr_max(scores, reg, a=None):
    total = 0.0
    for i, row in enumerate(scores):
        row = [elu(v, a) for v in row] if a else list(row)
        s = neg_weights(row, i)
        p = sum(s[j] * sig(row[i] - row[j]) for j in s)
        total += -math.log(p) + reg * sum(s[j] * row[j] ** 2 for j in s)
    return total / len(scores)


def ref_top1_max(scores):
    total = 0.0
    for i, row in enumerate(scores):
        s = neg_weights(row, i)
        total += sum(s[j] * (sig(row[j] - row[i]) + sig(row[j] ** 2)) for j in s)
    return total / len(scores)


def ref_xe(scores, log_q=None):
    total = 0.0
    for i, row in enumerate(scores):
        row = [v - (log_q[j] if log_q else 0.0) for j, v in enumerate(row)]
        m = max(row)
        total += -(row[i] - m - math.log(sum(math.exp(v - m) for v in row)))
    return total / len(scores)


@pytest.fixture
def scores():
    g = torch.Generator().manual_seed(0)
    return (torch.randn(5, 5 + 7, generator=g, dtype=torch.float64) * 2.0)


@pytest.mark.parametrize("reg, a", [(0.0, None), (1.0, None), (0.5, 0.5), (2.0, 1.0)])
def test_bpr_max_matches_the_formula(scores, reg, a):
    got = bpr_max_loss(scores, reg, a).item()
    assert got == pytest.approx(ref_bpr_max(scores.tolist(), reg, a), rel=1e-10)


def test_top1_max_matches_the_formula(scores):
    assert top1_max_loss(scores).item() == pytest.approx(ref_top1_max(scores.tolist()), rel=1e-10)


def test_cross_entropy_matches_the_formula(scores):
    log_q = torch.linspace(-3, 0, scores.shape[1], dtype=torch.float64)
    assert sampled_softmax_loss(scores).item() == pytest.approx(ref_xe(scores.tolist()), rel=1e-10)
    assert sampled_softmax_loss(scores, log_q).item() == pytest.approx(
        ref_xe(scores.tolist(), log_q.tolist()), rel=1e-10)


def test_gradients_match_finite_differences(scores):
    x = scores.clone().requires_grad_()
    for f in (lambda s: bpr_max_loss(s, 1.0, 0.5), top1_max_loss, sampled_softmax_loss):
        assert torch.autograd.gradcheck(f, (x,))


def test_negative_softmax_ignores_the_positive(scores):
    s = negative_softmax(scores)
    assert torch.all(s.diagonal() == 0)
    torch.testing.assert_close(s.sum(dim=1), torch.ones(5, dtype=torch.float64))
    bumped = scores.clone()
    bumped[torch.arange(5), torch.arange(5)] += 100.0  # the positive's score has no effect on s
    torch.testing.assert_close(negative_softmax(bumped), s)


def test_bpr_max_is_finite_when_the_positive_is_far_below_every_negative():
    s = torch.tensor([[-200.0, 50.0, 60.0], [40.0, -300.0, 45.0], [1.0, 0.0, 0.5]], requires_grad=True)
    loss = bpr_max_loss(s[:2], 0.0)
    assert torch.isfinite(loss)
    both = bpr_max_loss(s, 0.0)  # one extreme row next to an ordinary one: both exact
    assert both.item() == pytest.approx(ref_bpr_max(s.tolist(), 0.0), rel=1e-5)
    both.backward()
    assert torch.isfinite(s.grad).all() and s.grad[0, 0] < 0  # the positive is pushed up
    # -log sigmoid(x) ~ -x for very negative x: row 0 ~ 250..260, row 1 ~ 340..345
    assert 250 < loss.item() < 345


def test_losses_prefer_a_better_ranked_positive():
    worse = torch.tensor([[0.0, 1.0, 2.0, 0.5]])
    better = torch.tensor([[3.0, 1.0, 2.0, 0.5]])
    for f in (lambda s: bpr_max_loss(s, 0.0), top1_max_loss, sampled_softmax_loss):
        assert f(better) < f(worse)


@pytest.mark.parametrize("bad", [torch.zeros(3), torch.zeros(4, 3), torch.zeros(2, 3, dtype=torch.long)])
def test_bad_scores_name_the_field(bad):
    for f in (bpr_max_loss, top1_max_loss, sampled_softmax_loss):
        with pytest.raises(ValueError, match="^scores"):
            f(bad)
    with pytest.raises(ValueError, match="^log_q"):
        sampled_softmax_loss(torch.zeros(2, 4), torch.zeros(3))

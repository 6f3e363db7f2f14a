"""FTRL-Proximal: hand-computed steps, exact zeros from L1, per-coordinate rates, sparse gradients,
equality with AdaGrad when unregularised, and input validation."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from recbook.optim import FTRLProximal


def run(optimizer, param, grads):
    """Apply a list of gradients to ``param`` one step each; return the weights after each step."""
    out = []
    for g in grads:
        param.grad = torch.as_tensor(g, dtype=param.dtype).clone()
        optimizer.step()
        out.append(param.detach().clone())
    return out


def test_one_coordinate_by_hand_including_an_exact_zero():
    # alpha = 2, beta = 1, l1 = 1, l2 = 0.5. By hand, Algorithm 1 of McMahan et al. (2013):
    # g = 3:   n = 9,   sigma = (3 - 0) / 2 = 1.5, z = 0 + 3 - 1.5 * 0 = 3,
    #          w = -(3 - 1) / ((1 + 3) / 2 + 0.5) = -2 / 2.5 = -0.8
    # g = -4:  n = 25,  sigma = (5 - 3) / 2 = 1,   z = 3 - 4 - 1 * (-0.8) = -0.2,
    #          |z| <= l1, so w = 0 exactly
    # g = 12:  n = 169, sigma = (13 - 5) / 2 = 4,  z = -0.2 + 12 - 4 * 0 = 11.8,
    #          w = -(11.8 - 1) / ((1 + 13) / 2 + 0.5) = -10.8 / 7.5 = -1.44
    w = nn.Parameter(torch.zeros(1, dtype=torch.float64))
    opt = FTRLProximal([w], alpha=2.0, beta=1.0, l1=1.0, l2=0.5)
    steps = run(opt, w, [[3.0], [-4.0], [12.0]])
    assert steps[0].item() == pytest.approx(-0.8, abs=1e-12)
    assert steps[1].item() == 0.0  # exactly zero, not merely small
    assert steps[2].item() == pytest.approx(-1.44, abs=1e-12)
    assert opt.state[w]["z"].item() == pytest.approx(11.8, abs=1e-12)
    assert opt.state[w]["n"].item() == 169.0


def test_per_coordinate_learning_rates_and_lazy_updates():
    # Coordinate 0 gets g = 3 then g = -4 (as above, without regularisation: l1 = l2 = 0).
    # Coordinate 1 gets nothing, then g = 4: its step depends on its own n only.
    #   coordinate 1: n = 16, sigma = 4 / 2 = 2, z = 4, w = -4 / ((1 + 4) / 2) = -1.6
    #   coordinate 0 after step 1: w = -3 / ((1 + 3) / 2) = -1.5
    #                after step 2: z = 3 - 4 - 1 * (-1.5) = 0.5, w = -0.5 / ((1 + 5) / 2) = -1/6
    # Coordinate 2 never gets a gradient and keeps its initial value and rate alpha / beta.
    w = nn.Parameter(torch.tensor([0.0, 0.0, 0.7], dtype=torch.float64))
    opt = FTRLProximal([w], alpha=2.0, beta=1.0)
    torch.testing.assert_close(opt.learning_rates(w), torch.full((3,), 2.0, dtype=torch.float64))
    s1, s2 = run(opt, w, [[3.0, 0.0, 0.0], [-4.0, 4.0, 0.0]])
    torch.testing.assert_close(s1, torch.tensor([-1.5, 0.0, 0.7], dtype=torch.float64))
    torch.testing.assert_close(s2, torch.tensor([-1 / 6, -1.6, 0.7], dtype=torch.float64))
    # alpha / (beta + sqrt(n)): n = 25, 16, 0.
    torch.testing.assert_close(opt.learning_rates(w), torch.tensor([2 / 6, 2 / 5, 2.0], dtype=torch.float64))


def test_unregularised_ftrl_equals_adagrad_from_any_start():
    torch.manual_seed(0)
    start = torch.randn(5, 3, dtype=torch.float64)
    a = nn.Parameter(start.clone())
    b = nn.Parameter(start.clone())
    ftrl = FTRLProximal([a], alpha=0.3, beta=0.5)
    adagrad = torch.optim.Adagrad([b], lr=0.3, eps=0.5)  # w -= lr * g / (sqrt(sum g^2) + eps)
    for _ in range(20):
        g = torch.randn(5, 3, dtype=torch.float64) * (torch.rand(5, 3, dtype=torch.float64) > 0.3)
        a.grad, b.grad = g.clone(), g.clone()
        ftrl.step()
        adagrad.step()
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    assert not torch.equal(a, start)


def test_nonzero_start_first_step_is_a_proximal_step():
    # A bias that starts at 0.5: with l1 = l2 = 0 the first step is w0 - alpha g / (beta + |g|)
    # = 0.5 - 1 * 3 / (1 + 3) = -0.25.
    w = nn.Parameter(torch.tensor([0.5], dtype=torch.float64))
    (step,) = run(FTRLProximal([w], alpha=1.0, beta=1.0), w, [[3.0]])
    assert step.item() == pytest.approx(-0.25, abs=1e-12)


def test_sparse_gradients_touch_only_their_rows():
    torch.manual_seed(0)
    sparse = nn.Embedding(6, 2, sparse=True)
    dense = nn.Embedding(6, 2)
    with torch.no_grad():
        dense.weight.copy_(sparse.weight)
    before = sparse.weight.detach().clone()
    opt_s = FTRLProximal(sparse.parameters(), alpha=0.5, beta=1.0, l1=0.05, l2=0.1)
    opt_d = FTRLProximal(dense.parameters(), alpha=0.5, beta=1.0, l1=0.05, l2=0.1)
    for idx in ([1, 3, 3], [3, 4]):  # row 3 twice in one batch: its gradients are summed
        for emb, opt in ((sparse, opt_s), (dense, opt_d)):
            opt.zero_grad()
            (emb(torch.tensor(idx)) * torch.tensor([1.0, -2.0])).sum().backward()
            opt.step()
        assert sparse.weight.grad.is_sparse
    torch.testing.assert_close(sparse.weight, dense.weight, rtol=0, atol=1e-7)
    untouched = [0, 2, 5]
    assert torch.equal(sparse.weight[untouched], before[untouched])
    assert (opt_s.state[sparse.weight]["n"][untouched] == 0).all()
    # Row 1 saw g = (1, -2) once: n = (1, 4); sigma = (1, 2) / 0.5 = (2, 4). Its state started at
    # z0 = -(w0 (beta / alpha + l2) + sign(w0) l1), where the closed form gives back w0; then
    # z = z0 + g - sigma * w0 and w = -(z - sign(z) l1) / ((1 + sqrt(n)) / 0.5 + 0.1) unless |z| <= l1.
    w0 = before[1]
    g = torch.tensor([1.0, -2.0])
    n = g * g
    z = -(w0 * (1 / 0.5 + 0.1) + w0.sign() * 0.05) + g - n.sqrt() / 0.5 * w0
    expected = torch.where(z.abs() <= 0.05, 0.0, -(z - z.sign() * 0.05) / ((1 + n.sqrt()) / 0.5 + 0.1))
    torch.testing.assert_close(sparse.weight[1], expected)


def test_l1_gives_exact_zeros_on_a_problem_with_one_useful_feature():
    # Logistic regression on 10 features of value +-1; only feature 0 carries the label.
    g = torch.Generator().manual_seed(0)
    x = (torch.rand(2000, 10, generator=g) < 0.5).double() * 2 - 1
    y = ((x[:, 0] + 0.5 * torch.randn(2000, generator=g, dtype=torch.float64)) > 0).double()

    def train(l1):
        w = nn.Parameter(torch.zeros(10, dtype=torch.float64))
        b = nn.Parameter(torch.zeros((), dtype=torch.float64))
        opt = FTRLProximal([{"params": [w]}, {"params": [b], "l1": 0.0}], alpha=0.5, beta=1.0, l1=l1)
        for start in range(0, 2000, 50):
            opt.zero_grad()
            F.binary_cross_entropy_with_logits(x[start:start + 50] @ w + b, y[start:start + 50],
                                               reduction="sum").backward()
            opt.step()
        return w.detach()

    sparse, plain = train(l1=40.0), train(l1=0.0)
    assert sparse[0] > 1.0  # the useful feature survives
    assert (sparse[1:] == 0).all()  # every useless one is exactly 0
    assert (plain != 0).all()  # without L1, nothing is exactly 0


def test_param_groups_have_their_own_hyperparameters():
    a = nn.Parameter(torch.zeros(1, dtype=torch.float64))
    b = nn.Parameter(torch.zeros(1, dtype=torch.float64))
    opt = FTRLProximal([{"params": [a]}, {"params": [b], "l1": 10.0}], alpha=1.0, beta=1.0, l1=0.0)
    a.grad = torch.tensor([2.0], dtype=torch.float64)
    b.grad = torch.tensor([2.0], dtype=torch.float64)
    opt.step()
    assert a.item() == pytest.approx(-2.0 / 3.0)  # -z / ((1 + 2) / 1)
    assert b.item() == 0.0  # |z| = 2 <= 10
    sd = opt.state_dict()
    assert sd["param_groups"][1]["l1"] == 10.0


@pytest.mark.parametrize("kwargs, message", [
    (dict(alpha=0.0), "alpha: expected a positive number"),
    (dict(alpha=-1.0), "alpha"),
    (dict(beta=-0.1), "beta: expected a non-negative number"),
    (dict(l1=-1.0), "l1: expected a non-negative number"),
    (dict(l2=float("nan")), "l2"),
    (dict(l1="0.1"), "l1"),
])
def test_bad_hyperparameters_raise_naming_them(kwargs, message):
    with pytest.raises(ValueError, match=message):
        FTRLProximal([nn.Parameter(torch.zeros(2))], **kwargs)


def test_bad_group_hyperparameter_and_foreign_parameter():
    with pytest.raises(ValueError, match=r"param_groups\[1\]\['l1'\]"):
        FTRLProximal([{"params": [nn.Parameter(torch.zeros(1))]},
                      {"params": [nn.Parameter(torch.zeros(1))], "l1": -2.0}])
    opt = FTRLProximal([nn.Parameter(torch.zeros(1))])
    with pytest.raises(ValueError, match="not a parameter of this optimizer"):
        opt.learning_rates(nn.Parameter(torch.zeros(1)))

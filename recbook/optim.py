"""Optimisers the models of the book need beyond ``torch.optim``: FTRL-Proximal and AdagradM.

FTRL-Proximal ("Follow The Regularized Leader", McMahan et al., "Ad Click Prediction: a View from
the Trenches", KDD 2013, Algorithm 1) is the optimiser of large sparse logistic regressions, and
of the wide part of Wide & Deep (Cheng et al., 2016). Per coordinate ``i`` it keeps two numbers,
``n_i`` (the sum of squared gradients) and ``z_i`` (the sum of gradients, corrected by the
proximal terms), and derives the weight from them in closed form::

    sigma_i = (sqrt(n_i + g_i^2) - sqrt(n_i)) / alpha
    z_i    <- z_i + g_i - sigma_i * w_i
    n_i    <- n_i + g_i^2
    w_i     = 0                                                       if |z_i| <= l1
            = -(z_i - sign(z_i) * l1) / ((beta + sqrt(n_i)) / alpha + l2)   otherwise

Two properties make it the optimiser of choice for sparse linear models:

* **A per-coordinate learning rate** ``alpha / (beta + sqrt(n_i))``: a feature seen in every row
  takes small steps soon, a rare one keeps large steps (:meth:`FTRLProximal.learning_rates`).
* **Exact zeros from L1.** A weight is exactly 0 while the accumulated evidence ``|z_i|`` stays
  below ``l1``. Plain (sub)gradient descent with an L1 penalty oscillates around 0 instead and
  almost never lands on it; here rare or useless features cost no memory at serving time.

With ``l1 = l2 = 0`` the iterates are exactly those of AdaGrad with learning rate ``alpha`` and
``eps = beta`` (``torch.optim.Adagrad(lr=alpha, eps=beta)``); the tests check this.

AdagradM (Adagrad with momentum) is the optimiser GRU4Rec's authors train with (Hidasi &
Czapp, 2023). Adagrad divides each coordinate's step by the root of its accumulated squared gradients, so rare
items (whose embedding rows get few gradients) keep larger steps than popular ones. GRU4Rec adds
momentum on top of the Adagrad step:

    acc += g^2;   v = momentum * v - lr * g / sqrt(acc + eps);   p += v

A parameter whose gradient is **sparse** (an embedding looked up with ``sparse=True``) is updated
only in the rows that received a gradient: the other rows' accumulators and velocities stay as
they are, and those rows do not move. With dense gradients every row keeps moving with its
velocity even when its gradient is zero.
"""
from __future__ import annotations

import math

import torch

from ._checks import require_number

__all__ = ["AdagradM", "FTRLProximal", "check_finite_gradients", "check_ftrl_hyperparameters"]


def _require_number(value, name: str, *, positive: bool) -> float:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    ok = ok and (value > 0 if positive else value >= 0)
    if not ok:
        raise ValueError(f"{name}: expected a {'positive' if positive else 'non-negative'} number, got {value!r}")
    return float(value)


def check_finite_gradients(optimizer: torch.optim.Optimizer) -> None:
    """Raise ``FloatingPointError`` naming the parameter if a gradient holds NaN or infinity.

    Called before an optimiser changes anything: a non-finite gradient would otherwise become
    part of the optimiser's state (FTRL's ``z`` and ``n``, Adagrad's accumulator) and keep the
    weight NaN through every later, clean step.
    """
    found = [(i, j, p, p.grad._values() if p.grad.is_sparse else p.grad)
             for i, group in enumerate(optimizer.param_groups)
             for j, p in enumerate(group["params"]) if p.grad is not None]
    if not found or bool(torch.stack([torch.isfinite(v).all() for *_, v in found]).all()):
        return  # the usual case: one check, one synchronisation
    for i, j, p, values in found:
        finite = torch.isfinite(values)
        if not bool(finite.all()):
            raise FloatingPointError(
                f"{type(optimizer).__name__}: the gradient of param_groups[{i}]['params'][{j}] "
                f"(shape {tuple(p.shape)}) has {int((~finite).sum()):,} NaN or infinite value(s); expected "
                "finite gradients. Nothing was updated: the weights and the optimiser's state are as "
                "before this step")


def check_ftrl_hyperparameters(*, alpha, beta, l1, l2, where: str = "") -> dict:
    """Raise ``ValueError`` naming the first bad one unless ``alpha > 0`` and ``beta, l1, l2 >= 0``.

    Returns them as floats. ``where`` prefixes the names in messages (``"param_groups[1]"``).
    """
    name = (lambda k: f"{where}['{k}']") if where else (lambda k: k)
    return dict(alpha=_require_number(alpha, name("alpha"), positive=True),
                beta=_require_number(beta, name("beta"), positive=False),
                l1=_require_number(l1, name("l1"), positive=False),
                l2=_require_number(l2, name("l2"), positive=False))


class FTRLProximal(torch.optim.Optimizer):
    """FTRL-Proximal (McMahan et al., KDD 2013, Algorithm 1) as a ``torch.optim.Optimizer``.

    Args:
        params: parameters or parameter groups (each group may set its own ``alpha``, ``beta``,
            ``l1``, ``l2``; e.g. no L1 on a bias).
        alpha: learning-rate scale (the paper's ``alpha``).
        beta: learning-rate smoothing: the rate of a fresh coordinate is ``alpha / beta``
            (the paper uses 1).
        l1: L1 strength; the larger, the more weights are exactly zero.
        l2: L2 strength.

    **Lazy updates.** Only coordinates whose gradient is non-zero are touched: a feature absent
    from the batch keeps its weight and its state, as in the paper, where the loop runs over the
    non-zero features of the example. Gradients may be dense or sparse (``nn.Embedding(...,
    sparse=True)``); a sparse gradient updates only its rows, read and written by index.

    **State.** ``n`` starts at 0 and ``z`` at the value for which the closed form gives back the
    parameter's current value (``z = 0`` for a zero-initialised weight, the paper's case). So a
    parameter that starts elsewhere, e.g. a bias at the log-odds of the base rate, starts there,
    and with ``l1 = l2 = 0`` the iterates equal AdaGrad's from any starting point.

    Numerics: ``sqrt(n + g^2) - sqrt(n)`` is computed as ``g^2 / (sqrt(n + g^2) + sqrt(n))``,
    which does not cancel when ``g^2`` is small against ``n``.
    """

    def __init__(self, params, alpha: float = 0.05, beta: float = 1.0, l1: float = 0.0, l2: float = 0.0):
        super().__init__(params, check_ftrl_hyperparameters(alpha=alpha, beta=beta, l1=l1, l2=l2))
        for i, group in enumerate(self.param_groups):
            check_ftrl_hyperparameters(**{k: group[k] for k in ("alpha", "beta", "l1", "l2")},
                                       where=f"param_groups[{i}]")

    @staticmethod
    def _initial_z(w: torch.Tensor, alpha: float, beta: float, l1: float, l2: float) -> torch.Tensor:
        # Inverse of the closed form at n = 0: w = -(z - sign(z) l1) / (beta / alpha + l2).
        return -(w * (beta / alpha + l2) + w.sign() * l1)

    @staticmethod
    def _update(w, z, n, g, alpha: float, beta: float, l1: float, l2: float):
        """One FTRL step on matching tensors of weights, state and gradients.

        Updates ``z`` and ``n`` in place and returns the new weights. Coordinates with ``g == 0``
        keep their ``z``, ``n`` and weight (the lazy update): their ``n`` and ``z`` do not move
        (``sigma = 0``), and their weight is taken from ``w`` rather than recomputed.
        """
        sqrt_old = n.sqrt()
        n.addcmul_(g, g)
        sqrt_new = n.sqrt()
        # sigma = (sqrt(n + g^2) - sqrt(n)) / alpha = g^2 / (sqrt(n + g^2) + sqrt(n)) / alpha:
        # no cancellation when g^2 << n, and exactly 0 where g = 0.
        sigma = (g * g).div_((sqrt_new + sqrt_old).clamp_(min=torch.finfo(g.dtype).tiny)).div_(alpha)
        z.add_(g).sub_(sigma.mul_(w))
        denom = sqrt_new.add_(beta).div_(alpha).add_(l2)
        # Soft threshold: -sign(z) * max(|z| - l1, 0) / denom, exactly 0 where |z| <= l1.
        shrunk = z.abs().sub_(l1).clamp_(min=0) if l1 > 0 else z.abs()
        w_new = shrunk.mul_(z.sign()).neg_().div_(denom)
        return torch.where(g != 0, w_new, w)

    def _state(self, p: torch.Tensor, group: dict) -> dict:
        state = self.state[p]
        if not state:
            state["n"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            state["z"] = self._initial_z(p.detach(), group["alpha"], group["beta"], group["l1"], group["l2"])
        return state

    @torch.no_grad()
    def step(self, closure=None):
        """One update of every parameter that has a gradient. ``closure`` as in ``torch.optim``."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        check_finite_gradients(self)
        for group in self.param_groups:
            hyper = (group["alpha"], group["beta"], group["l1"], group["l2"])
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self._state(p, group)
                z, n = state["z"], state["n"]
                g = p.grad
                if g.is_sparse:
                    g = g.coalesce()  # duplicate indices summed: one row, one update
                    sd = g.sparse_dim()
                    # Rows over the sparse dimensions, each row a block of the dense dimensions.
                    rows = g.indices()[0].clone() if sd == 1 else _ravel(g.indices(), p.shape[:sd])
                    shape = (-1, *p.shape[sd:])
                    pv, zv, nv = p.view(shape), z.view(shape), n.view(shape)
                    z1, n1 = zv[rows], nv[rows]  # copies: updated, then written back
                    w1 = self._update(pv[rows], z1, n1, g.values(), *hyper)
                    pv.index_copy_(0, rows, w1)
                    zv.index_copy_(0, rows, z1)
                    nv.index_copy_(0, rows, n1)
                else:
                    p.copy_(self._update(p, z, n, g, *hyper))
        return loss

    @torch.no_grad()
    def learning_rates(self, p: torch.Tensor) -> torch.Tensor:
        """Per-coordinate learning rate ``alpha / (beta + sqrt(n_i))`` of parameter ``p``.

        This is the step an unregularised (``l1 = l2 = 0``) update takes per unit of gradient.
        Before ``p``'s first update every coordinate has rate ``alpha / beta``.
        """
        for group in self.param_groups:
            if any(q is p for q in group["params"]):
                n = self.state[p]["n"] if self.state[p] else torch.zeros_like(p)
                return group["alpha"] / (group["beta"] + n.sqrt())
        raise ValueError("p: is not a parameter of this optimizer")


def _ravel(indices: torch.Tensor, shape) -> torch.Tensor:
    """Row-major linear index of multi-dimensional ``indices`` ``[d, nnz]`` into ``shape``."""
    flat = torch.zeros(indices.shape[1], dtype=torch.long, device=indices.device)
    for d, size in enumerate(shape):
        flat = flat * int(size) + indices[d]
    return flat


class AdagradM(torch.optim.Optimizer):
    """Adagrad with (heavy-ball) momentum; sparse gradients update only their rows.

    Args:
        params: the parameters (or parameter groups).
        lr: learning rate (GRU4Rec's tuned values lie around 0.05 to 0.2).
        momentum: in ``[0, 1)``; 0 gives plain Adagrad.
        eps: added to the accumulator inside the square root.
    """

    def __init__(self, params, lr: float = 0.05, momentum: float = 0.0, eps: float = 1e-6):
        require_number(lr, name="lr", low=0, low_open=True)
        require_number(momentum, name="momentum", low=0, high=1, high_open=True)
        require_number(eps, name="eps", low=0, low_open=True)
        super().__init__(params, dict(lr=float(lr), momentum=float(momentum), eps=float(eps)))

    @staticmethod
    def _sparse_step(p, state, lr, momentum, eps):
        g = p.grad.coalesce()
        rows, values = g.indices()[0], g.values()
        acc = state["acc"].index_select(0, rows).add_(values.square())
        state["acc"].index_copy_(0, rows, acc)
        update = values / acc.add_(eps).sqrt_() * -lr
        if momentum > 0:
            update = state["velocity"].index_select(0, rows).mul_(momentum).add_(update)
            state["velocity"].index_copy_(0, rows, update)
        p.index_add_(0, rows, update)

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        check_finite_gradients(self)
        for group in self.param_groups:
            lr, momentum, eps = group["lr"], group["momentum"], group["eps"]
            dense = []
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["acc"] = torch.zeros_like(p)
                    if momentum > 0:
                        state["velocity"] = torch.zeros_like(p)
                if p.grad.is_sparse:
                    self._sparse_step(p, state, lr, momentum, eps)
                else:
                    dense.append(p)
            if dense:  # one fused call per operation over all dense parameters
                grads = [p.grad for p in dense]
                accs = [self.state[p]["acc"] for p in dense]
                torch._foreach_addcmul_(accs, grads, grads)
                denom = torch._foreach_add(accs, eps)
                torch._foreach_sqrt_(denom)
                if momentum > 0:
                    vel = [self.state[p]["velocity"] for p in dense]
                    torch._foreach_mul_(vel, momentum)
                    torch._foreach_addcdiv_(vel, grads, denom, value=-lr)
                    torch._foreach_add_(dense, vel)
                else:
                    torch._foreach_addcdiv_(dense, grads, denom, value=-lr)
        return loss

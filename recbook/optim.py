"""Adagrad with momentum: the optimiser GRU4Rec's authors train with.

Adagrad divides each coordinate's step by the root of its accumulated squared gradients, so rare
items (whose embedding rows get few gradients) keep larger steps than popular ones. GRU4Rec adds
momentum on top of the Adagrad step:

    acc += g^2;   v = momentum * v - lr * g / sqrt(acc + eps);   p += v

A parameter whose gradient is **sparse** (an embedding looked up with ``sparse=True``) is updated
only in the rows that received a gradient: the other rows' accumulators and velocities stay as
they are, and those rows do not move. With dense gradients every row keeps moving with its
velocity even when its gradient is zero.
"""
from __future__ import annotations

import torch
from torch.optim import Optimizer

__all__ = ["AdagradM"]


class AdagradM(Optimizer):
    """Adagrad with (heavy-ball) momentum; sparse gradients update only their rows.

    Args:
        params: the parameters (or parameter groups).
        lr: learning rate (GRU4Rec's tuned values lie around 0.05 to 0.2).
        momentum: in ``[0, 1)``; 0 gives plain Adagrad.
        eps: added to the accumulator inside the square root.
    """

    def __init__(self, params, lr: float = 0.05, momentum: float = 0.0, eps: float = 1e-6):
        if not (isinstance(lr, (int, float)) and lr > 0):
            raise ValueError(f"lr: expected a positive number, got {lr!r}")
        if not (isinstance(momentum, (int, float)) and 0 <= momentum < 1):
            raise ValueError(f"momentum: expected a number in [0, 1), got {momentum!r}")
        if not (isinstance(eps, (int, float)) and eps > 0):
            raise ValueError(f"eps: expected a positive number, got {eps!r}")
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

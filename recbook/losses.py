"""Ranking losses over a score matrix whose diagonal holds the positives (GRU4Rec's losses).

GRU4Rec scores each row of a mini-batch against a **shared** set of candidates: the targets of all
rows of the batch, then ``S`` extra negatives. So ``scores`` is ``[B, B + S]`` and row ``i``'s
positive is column ``i``; every other column is a negative for row ``i`` (the other rows' targets
are negatives sampled in proportion to popularity, for free). All functions take **scores**
(logits), never probabilities, and return the mean loss over the rows.

* :func:`sampled_softmax_loss`: cross-entropy of a softmax over the candidates.
* :func:`bpr_max_loss`: BPR-max (Hidasi & Karatzoglou, "Recurrent Neural Networks with Top-k Gains
  for Session-based Recommendations", CIKM 2018, eq. 9-10), with its score regularisation.
* :func:`top1_max_loss`: TOP1-max (same paper, eq. 8).

The ``-max`` losses weight each negative by ``s_j``, the softmax of the negatives' scores alone
(the positive excluded), so that the loss concentrates on the negatives that score highest: the
ones that would push the target out of the top-k.

A negative that happens to be the same item as the positive (another row with the same target, or
a sampled negative) is not masked, as in the original implementation.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ._checks import require_number

__all__ = ["bpr_max_loss", "negative_softmax", "sampled_softmax_loss", "top1_max_loss"]

_TINY = 1e-30  # below this, BPR-max's inner sum is recomputed in log space


def _check_scores(scores) -> torch.Tensor:
    if not isinstance(scores, torch.Tensor) or not scores.is_floating_point():
        raise ValueError(f"scores: expected a floating-point tensor, got {type(scores).__name__}")
    if scores.dim() != 2 or scores.shape[0] < 1 or scores.shape[1] < scores.shape[0]:
        raise ValueError(f"scores: expected shape [B, B + S] (the positives on the diagonal), "
                         f"got {tuple(scores.shape)}")
    if scores.shape[1] < 2:
        raise ValueError(f"scores: has shape {tuple(scores.shape)}: one row and no negative (B = 1, S = 0), "
                         "so the loss is exactly 0 whatever the model; expected at least one negative "
                         "column (a batch of 2 or more rows, or S >= 1 sampled negatives)")
    return scores


def _positive_mask(scores: torch.Tensor) -> torch.Tensor:
    b, c = scores.shape
    return torch.eye(b, c, dtype=torch.bool, device=scores.device)


def negative_softmax(scores: torch.Tensor, *, log: bool = False) -> torch.Tensor:
    """``[B, C]``: softmax of each row's negatives' scores; 0 (or ``-inf`` with ``log``) on the
    diagonal, where the positive sits."""
    scores = _check_scores(scores)
    if scores.shape[1] < 2:
        raise ValueError(f"scores: expected at least one negative column, got shape {tuple(scores.shape)}")
    masked = scores.masked_fill(_positive_mask(scores), float("-inf"))
    return F.log_softmax(masked, dim=1) if log else F.softmax(masked, dim=1)


def sampled_softmax_loss(scores: torch.Tensor, log_q: torch.Tensor | None = None) -> torch.Tensor:
    """``mean_i -log softmax(scores_i - log_q)[i]``: cross-entropy over the candidates.

    ``log_q`` (``[C]``, optional) is the log of how often each candidate is drawn as a negative;
    subtracting it (the "logQ correction") makes the sampled softmax an unbiased stand-in for the
    full one. Without it, popular candidates are over-represented among the negatives and get
    pushed down too hard.
    """
    scores = _check_scores(scores)
    if log_q is not None:
        if log_q.shape != scores.shape[1:]:
            raise ValueError(f"log_q: expected shape [{scores.shape[1]}], got {tuple(log_q.shape)}")
        scores = scores - log_q
    target = torch.arange(scores.shape[0], device=scores.device)
    return F.cross_entropy(scores, target)


def bpr_max_loss(scores: torch.Tensor, reg: float = 1.0, elu: float | None = None) -> torch.Tensor:
    """BPR-max: ``mean_i [ -log sum_j s_j sigmoid(r_i - r_j) + reg * sum_j s_j r_j^2 ]``.

    ``r_i`` is the positive's score, ``j`` runs over the negatives and ``s_j`` is their softmax
    (:func:`negative_softmax`). The second term (the "score regularisation") keeps the negatives'
    scores near zero; without it BPR-max tends to blow the scores up. ``elu`` (optional) first
    passes the scores through ``ELU(alpha=elu)``, the final activation GRU4Rec's authors pair with
    BPR-max (monotone, so it changes no ranking).

    The sum inside the log is computed directly (fast); only when it underflows (a positive
    scored ~90 below every negative) is the row recomputed in log space, so the loss stays exact
    and finite without an ``+ eps``.
    """
    scores = _check_scores(scores)
    require_number(reg, name="reg", low=0)
    if elu is not None:
        require_number(elu, name="elu", low=0)
    if elu:
        scores = F.elu(scores, alpha=float(elu))
    s = negative_softmax(scores)
    pos = scores.diagonal()[:, None]
    p = (s * torch.sigmoid(pos - scores)).sum(dim=1)
    log_p = p.clamp_min(_TINY).log()  # (clamped, so that no infinite gradient reaches torch.where)
    if bool((p < _TINY).any()):
        # log sum_j s_j sigmoid(r_i - r_j) in log space; the diagonal has log s = -inf and drops out.
        exact = torch.logsumexp(negative_softmax(scores, log=True) + F.logsigmoid(pos - scores), dim=1)
        log_p = torch.where(p < _TINY, exact, log_p)
    penalty = (s * scores.square()).sum(dim=1)
    return (reg * penalty - log_p).mean()


def top1_max_loss(scores: torch.Tensor) -> torch.Tensor:
    """TOP1-max: ``mean_i sum_j s_j [ sigmoid(r_j - r_i) + sigmoid(r_j^2) ]``.

    The first term approximates the rank of the positive (how many negatives score above it), the
    second pushes the negatives' scores towards zero; ``s_j`` as in :func:`bpr_max_loss`.
    """
    scores = _check_scores(scores)
    s = negative_softmax(scores)
    pos = scores.diagonal()[:, None]
    return (s * (torch.sigmoid(scores - pos) + torch.sigmoid(scores.square()))).sum(dim=1).mean()

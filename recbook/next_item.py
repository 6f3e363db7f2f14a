"""Next-item evaluation on leave-last-out sequences, one function for every sequence model.

Protocol (the sequence chapter and the leaderboard's ``sequence`` protocol): each user's items in
time order; the last item is the test target, the second-last the validation target, the rest
the training sequence. To predict a target a model reads the user's **whole history** before it:

* validation target: the training sequence;
* test target: the training sequence, then the validation item.

A recurrent model starts every history from a zero hidden state. The target is ranked against
**all** item codes (full ranking, no sampled candidates); items the user has already seen are
*not* excluded, as in GRU4Rec's own evaluation; the reserved codes 0 (padding) and 1 (unknown) are
never ranked. On MovieLens-100K no user rates a movie twice, so an earlier item is never the target:
every top-K slot a model spends on one is lost. ``exclude_seen=True`` (:func:`evaluate_next_item`)
removes the user's earlier items from the candidates, as the retrieval protocol does; the
leaderboard's sequence protocol reports both.

Ties are **pessimistic**: the target's rank is the number of *other* items whose score is ``>=``
the target's. A model that gives every item the same score ranks every target last, not first.

Any model with a ``score_next(histories) -> [U, n_items]`` method can be evaluated here: GRU4Rec,
the most-popular and item-to-item baselines (:mod:`recbook.models.baselines`), the padded GRU of
the chapter. ``histories`` is a list of ``U`` 1-D int64 arrays of item codes.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ._checks import require_positive_int
from .metrics import rank_of_target

__all__ = ["NextItemSplit", "evaluate_next_item", "next_item_metrics", "next_item_split", "pessimistic_ranks"]

N_RESERVED = 2


@dataclass(frozen=True)
class NextItemSplit:
    """What a model reads (``histories``, one int64 array per user) and must predict (``targets``
    ``[U]``) for one split."""

    name: str
    histories: list
    targets: np.ndarray

    def __len__(self) -> int:
        return len(self.targets)

    def __repr__(self) -> str:
        n = np.array([len(h) for h in self.histories])
        return (f"NextItemSplit({self.name!r}: {len(self)} users, history length "
                f"{n.min()}..{n.max()} (median {int(np.median(n))}))")


def next_item_split(data, split: str) -> NextItemSplit:
    """The histories and targets of ``split`` (``'valid'`` or ``'test'``) of leave-last-out data.

    ``data`` has ``train`` (a list of per-user arrays of item codes), ``valid`` and ``test``
    (``[U]`` arrays of item codes), like :class:`recbook.data.SequenceData`.
    """
    for key in ("train", "valid", "test"):
        if not hasattr(data, key):
            raise ValueError(f"data: expected leave-last-out sequences with .train, .valid and .test; "
                             f"missing .{key}")
    train = [np.asarray(s, dtype=np.int64) for s in data.train]
    valid = np.asarray(data.valid, dtype=np.int64)
    test = np.asarray(data.test, dtype=np.int64)
    if not (len(train) == len(valid) == len(test)):
        raise ValueError(f"data: .train, .valid and .test have {len(train)}, {len(valid)} and "
                         f"{len(test)} users; expected the same number")
    if split == "valid":
        return NextItemSplit("valid", train, valid)
    if split == "test":
        return NextItemSplit("test", [np.r_[s, v] for s, v in zip(train, valid)], test)
    raise ValueError(f"split: expected 'valid' or 'test', got {split!r}")


def pessimistic_ranks(scores, targets, exclude=None) -> np.ndarray:
    """0-based rank of each target among all non-reserved item codes, ties counted against it.

    ``rank[u] = #{j >= 2, j != targets[u] : scores[u, j] >= scores[u, targets[u]]}``. Columns 0
    and 1 (padding, unknown) are ignored whatever their scores. The checks name this function's
    arguments; the ranking is :func:`recbook.metrics.rank_of_target`'s, the leaderboard's.
    ``exclude`` (``U`` arrays of item codes) removes those items from each user's candidates.
    """
    s = scores if isinstance(scores, torch.Tensor) else torch.as_tensor(np.asarray(scores))
    if s.dim() != 2 or s.shape[1] <= N_RESERVED:
        raise ValueError(f"scores: expected shape [U, n_items] with n_items > {N_RESERVED}, got {tuple(s.shape)}")
    t = torch.as_tensor(np.asarray(targets), dtype=torch.long)
    if t.shape != (s.shape[0],):
        raise ValueError(f"targets: expected shape [{s.shape[0]}] (one per row of scores), got {tuple(t.shape)}")
    if len(t) and (int(t.min()) < N_RESERVED or int(t.max()) >= s.shape[1]):
        bad = int(t.min()) if int(t.min()) < N_RESERVED else int(t.max())
        raise ValueError(f"targets: item code {bad} is out of range; expected codes in [{N_RESERVED}, {s.shape[1]})")
    s = s.detach().cpu()
    if torch.isnan(s[:, N_RESERVED:]).any():
        raise ValueError("scores: contains NaN; expected a number for every item")
    return rank_of_target(s.numpy(), t.numpy(), exclude=exclude, reserved=N_RESERVED)


def next_item_metrics(ranks, ks: Sequence[int] = (10, 20), ndcg_ks: Sequence[int] = (10,)) -> dict:
    """``recall@K`` (= hit rate, one target per user), ``mrr@K`` and ``ndcg@K`` from 0-based ranks.

    Per user with rank ``r``: recall@K = ``[r < K]``, mrr@K = ``[r < K] / (r + 1)``, ndcg@K =
    ``[r < K] / log2(r + 2)``; each metric is the mean over users.
    """
    r = np.asarray(ranks)
    if r.ndim != 1 or r.size == 0 or not np.issubdtype(r.dtype, np.integer) or (r < 0).any():
        raise ValueError("ranks: expected a non-empty 1-D array of 0-based integer ranks")
    out = {}
    for k in ks:
        k = require_positive_int(k, name="ks")
        hit = r < k
        out[f"recall@{k}"] = float(hit.mean())
        out[f"mrr@{k}"] = float(np.where(hit, 1.0 / (r + 1.0), 0.0).mean())
    for k in ndcg_ks:
        k = require_positive_int(k, name="ndcg_ks")
        out[f"ndcg@{k}"] = float(np.where(r < k, 1.0 / np.log2(r + 2.0), 0.0).mean())
    return out


def evaluate_next_item(model, split: NextItemSplit, ks: Sequence[int] = (10, 20),
                       ndcg_ks: Sequence[int] = (10,), *, return_ranks: bool = False, exclude_seen: bool = False):
    """Recall@K, MRR@K and NDCG@K of ``model`` on ``split`` (see the module docstring).

    ``model.score_next(split.histories)`` must return ``[U, n_items]`` scores. With
    ``exclude_seen=True`` each user's earlier items (``split.histories[u]``) are removed from the
    candidates first (a target among them raises ``ValueError``). With ``return_ranks=True``
    returns ``(metrics, ranks)``.
    """
    if not isinstance(split, NextItemSplit):
        raise ValueError(f"split: expected a NextItemSplit (see next_item_split), got {type(split).__name__}")
    if not hasattr(model, "score_next"):
        raise ValueError(f"model: expected an object with score_next(histories), got {type(model).__name__}")
    if not isinstance(exclude_seen, bool):
        raise ValueError(f"exclude_seen: expected True or False, got {exclude_seen!r}")
    scores = model.score_next(split.histories)
    exclude = None
    if exclude_seen:
        exclude = [np.asarray(h, dtype=np.int64) for h in split.histories]
        for u, (h, t) in enumerate(zip(exclude, split.targets)):
            if (h == t).any():
                raise ValueError(f"exclude_seen: user row {u}'s target {int(t)} is among their earlier items; "
                                 "it cannot be excluded")
    ranks = pessimistic_ranks(scores, split.targets, exclude=exclude)
    metrics = next_item_metrics(ranks, ks, ndcg_ks)
    return (metrics, ranks) if return_ranks else metrics

"""Simple next-item baselines: most popular, and item-to-item co-occurrence on the last item.

Both have the interface of GRU4Rec's inference, ``score_next(histories) -> [U, n_items]``, so
that one evaluation function (:func:`recbook.next_item.evaluate_next_item`) serves every model.
Columns 0 and 1 (padding, unknown) are ``-inf``. Neither needs gradient training: they are
counted from the training sequences in one pass (``from_sequences``).

* :class:`MostPopular`: every user gets the items with the most training events first. The
  sequence chapter ranks seen items too; the retrieval chapter excludes them in its evaluation.
* :class:`ItemKNNLast`: the items that most often came right after (or near) the user's last
  item, in the training sequences. Co-occurrence, precisely: for every training sequence
  ``s`` and positions ``p < q`` with ``q - p <= window``, the pair ``(s[p], s[q])`` adds
  ``1 / (q - p) ** decay`` to ``C[s[p], s[q]]``; with ``directed=False`` it also adds to
  ``C[s[q], s[p]]``. The score of item ``j`` after a history ending in item ``i`` is
  ``C[i, j] / count_j ** normalize`` (``normalize = 0``: raw counts; ``0.5``: cosine-like), plus
  a popularity term ``< 1e-6`` that only orders items with equal co-occurrence (otherwise every
  item never seen after ``i`` would tie, and pessimistic ties would rank the target last).
"""
from __future__ import annotations

import math

import numpy as np
import torch

from .._checks import require_positive_int
from ..data.sessions import N_RESERVED, check_item_sequences, item_counts

__all__ = ["ItemKNNLast", "MostPopular", "cooccurrence"]

TIE_BREAK = 1e-6


def _popularity_tiebreak(counts: np.ndarray) -> np.ndarray:
    """``counts / (max + 1) * 1e-6``: below 1e-6, increasing with the count."""
    return counts.astype(np.float64) / (counts.max() + 1.0) * TIE_BREAK


class MostPopular:
    """Scores every item by its number of training events; the same list for every user.

    Args:
        counts: ``[n_items]`` number of training events per item code.
    """

    def __init__(self, counts):
        counts = np.asarray(counts)
        if counts.ndim != 1 or counts.size <= N_RESERVED or (counts < 0).any():
            raise ValueError(f"counts: expected a 1-D array of counts >= 0 with more than {N_RESERVED} "
                             f"entries, got shape {counts.shape}")
        self.counts = counts.astype(np.int64)
        self.n_items = len(counts)
        scores = torch.from_numpy(self.counts.astype(np.float32))
        scores[:N_RESERVED] = float("-inf")
        self._scores = scores

    @classmethod
    def from_sequences(cls, sequences, n_items: int) -> "MostPopular":
        return cls(item_counts(sequences, n_items))

    @classmethod
    def from_data(cls, data) -> "MostPopular":
        """Counted from leave-last-out ``data``'s training sequences (:class:`recbook.data.SequenceData`)."""
        return cls.from_sequences(data.train, data.n_items)

    def score_next(self, histories) -> torch.Tensor:
        seqs = check_item_sequences(histories, self.n_items, name="histories")
        return self._scores.expand(len(seqs), -1).clone()

    def score_items(self, data, split: str) -> torch.Tensor:
        """``[U, n_items]`` for the leaderboard's ``sequence`` protocol (the same row for every user)."""
        return self.score_next(data.history(split))

    def __repr__(self) -> str:
        return f"MostPopular(n_items={self.n_items}, events={int(self.counts.sum())})"


def cooccurrence(sequences, n_items: int, *, window: int = 1, directed: bool = True,
                 decay: float = 0.0) -> np.ndarray:
    """``[n_items, n_items]`` float64 co-occurrence counts (see the module docstring).

    ``window = 1`` counts consecutive pairs only; a larger window also counts items up to
    ``window`` positions later, each weighted by ``1 / distance ** decay``.
    """
    n_items = require_positive_int(n_items, name="n_items")
    window = require_positive_int(window, name="window")
    if isinstance(decay, bool) or not isinstance(decay, (int, float)) or not math.isfinite(decay) or decay < 0:
        raise ValueError(f"decay: expected a finite number >= 0, got {decay!r}")
    seqs = check_item_sequences(sequences, n_items)
    c = np.zeros((n_items, n_items), dtype=np.float64)
    for d in range(1, window + 1):
        a = np.concatenate([s[:-d] for s in seqs if len(s) > d] or [np.empty(0, np.int64)])
        b = np.concatenate([s[d:] for s in seqs if len(s) > d] or [np.empty(0, np.int64)])
        if a.size == 0:
            break
        w = 1.0 / d ** decay
        np.add.at(c, (a, b), w)
        if not directed:
            np.add.at(c, (b, a), w)
    return c


def _dense_ranks(table: torch.Tensor) -> torch.Tensor:
    """``[R, C]`` float32: each row's dense rank of its values (0 = the smallest; equal values,
    equal rank); ``-inf`` stays ``-inf``."""
    out = torch.empty(table.shape, dtype=torch.float32)
    for r, row in enumerate(table.numpy()):
        _, inverse = np.unique(row, return_inverse=True)
        out[r] = torch.from_numpy(inverse.astype(np.float32))
    out[torch.isinf(table) & (table < 0)] = float("-inf")
    return out


class ItemKNNLast:
    """Scores the next item by its co-occurrence with the history's last item.

    Args:
        cooc: ``[n_items, n_items]`` co-occurrence matrix (:func:`cooccurrence`).
        counts: ``[n_items]`` training events per item (for ``normalize`` and the tie-break).
        normalize: divide column ``j`` by ``counts_j ** normalize`` (0 = raw co-occurrence).

    An empty history scores by popularity alone.
    """

    def __init__(self, cooc, counts, *, normalize: float = 0.0):
        cooc = np.asarray(cooc, dtype=np.float64)
        counts = np.asarray(counts)
        if cooc.ndim != 2 or cooc.shape[0] != cooc.shape[1] or cooc.shape[0] <= N_RESERVED:
            raise ValueError(f"cooc: expected a square [n_items, n_items] matrix, got shape {cooc.shape}")
        if counts.shape != (cooc.shape[0],):
            raise ValueError(f"counts: expected shape [{cooc.shape[0]}] like cooc, got {counts.shape}")
        if isinstance(normalize, bool) or not isinstance(normalize, (int, float)) or not 0 <= normalize <= 1:
            raise ValueError(f"normalize: expected a number in [0, 1], got {normalize!r}")
        self.n_items = cooc.shape[0]
        self.normalize = float(normalize)
        self.counts = counts.astype(np.int64)
        denom = np.maximum(self.counts, 1).astype(np.float64) ** self.normalize
        # float64: the tie-break differences (~1e-9) would vanish in float32 next to scores ~1.
        self._table = torch.from_numpy(cooc / denom[None, :] + _popularity_tiebreak(self.counts)[None, :])
        self._table[:, :N_RESERVED] = float("-inf")
        self._ordinal = None  # dense ranks of the table's rows, made by score_items when needed

    @classmethod
    def from_sequences(cls, sequences, n_items: int, *, window: int = 1, directed: bool = True,
                       decay: float = 0.0, normalize: float = 0.0) -> "ItemKNNLast":
        c = cooccurrence(sequences, n_items, window=window, directed=directed, decay=decay)
        model = cls(c, item_counts(sequences, n_items), normalize=normalize)
        model.settings = dict(window=window, directed=directed, decay=decay, normalize=normalize)
        return model

    @classmethod
    def from_data(cls, data, **settings) -> "ItemKNNLast":
        """Counted from leave-last-out ``data``'s training sequences; ``settings`` as in
        :meth:`from_sequences`."""
        return cls.from_sequences(data.train, data.n_items, **settings)

    def score_items(self, data, split: str) -> torch.Tensor:
        """``[U, n_items]`` float32 for the leaderboard's ``sequence`` protocol: the row of each
        user's last item before the ``split`` target, as **ordinal** scores.

        The leaderboard ranks float32 scores, in which the tie-break (``< 1e-6``) vanishes next
        to co-occurrence values of order 1 and equal co-occurrences would tie again. So each
        row of scores is replaced by its dense rank (equal scores, equal rank; integers, exact
        in float32): the same ranking as :meth:`score_next`, ties included.
        """
        seqs = check_item_sequences(data.history(split), self.n_items, name="histories")
        if self._ordinal is None:
            self._ordinal = _dense_ranks(self._table)
        last = torch.tensor([int(s[-1]) if len(s) else 0 for s in seqs], dtype=torch.long)
        scores = self._ordinal[last].clone()
        empty = torch.tensor([len(s) == 0 for s in seqs])
        if empty.any():
            pop = _popularity_tiebreak(self.counts)
            pop[:N_RESERVED] = -np.inf
            scores[empty] = _dense_ranks(torch.from_numpy(pop)[None, :])[0]
        return scores

    def score_next(self, histories) -> torch.Tensor:
        """``[U, n_items]`` float64 scores: row ``u`` is the co-occurrence row of ``histories[u][-1]``."""
        seqs = check_item_sequences(histories, self.n_items, name="histories")
        last = torch.tensor([int(s[-1]) if len(s) else 0 for s in seqs], dtype=torch.long)
        scores = self._table[last].clone()
        empty = torch.tensor([len(s) == 0 for s in seqs])
        if empty.any():
            pop = torch.from_numpy(_popularity_tiebreak(self.counts))
            scores[empty] = pop.expand(int(empty.sum()), -1)
            scores[empty, :N_RESERVED] = float("-inf")
        return scores

    def __repr__(self) -> str:
        return f"ItemKNNLast(n_items={self.n_items}, normalize={self.normalize})"

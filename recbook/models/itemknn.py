"""Item-based k-nearest-neighbour retrieval over the user's whole history (cosine similarity).

The classic item-to-item recommender (Sarwar et al., WWW 2001; Linden et al., 2003), the baseline
an engineer puts beside a two-tower model on the ``retrieval`` protocol:

1. From the training sequences, a binary user × item matrix ``X`` (1 if the user rated the item,
   however often). ``n_i`` is the number of users of item ``i``, ``c_ij = (XᵀX)_ij`` the number
   of users of both.
2. Item-to-item similarity: cosine with shrinkage,
   ``s_ij = c_ij / (sqrt(n_i · n_j) + shrink)`` for ``i != j``, and ``s_ii = 0``. Shrinkage pulls
   similarities that rest on few common users towards 0.
3. Each item keeps its ``neighbours`` most similar items (``None``: all); the others get 0.
4. The score of item ``j`` for a user with history ``H`` (every distinct item before the target):
   ``score_j = sum_{i in H} s_ij`` over the items ``j`` among ``i``'s kept neighbours, plus a
   popularity term ``< 1e-6`` that only orders items with equal similarity sums (otherwise every
   item unrelated to the history would tie, and the protocol's pessimistic ties would rank the
   target last).

Scores are float64 NumPy arrays, so that the tie-break survives next to sums of order 1. It needs
no gradient training: one pass over the training sequences (``from_data``). The similarity comes
from the training sequences only; at test time the history also holds the validation item.
"""
from __future__ import annotations

import csv
import itertools
import math
from pathlib import Path

import numpy as np

from .._checks import require_positive_int
from ..data.sessions import N_RESERVED, check_item_sequences

__all__ = ["ItemKNN", "item_cosine", "itemknn_sweep"]

TIE_BREAK = 1e-6


def _check_shrink(shrink) -> float:
    if isinstance(shrink, bool) or not isinstance(shrink, (int, float)) or not math.isfinite(shrink) or shrink < 0:
        raise ValueError(f"shrink: expected a finite number >= 0, got {shrink!r}")
    return float(shrink)


def _check_neighbours(neighbours):
    if neighbours is None:
        return None
    return require_positive_int(neighbours, name="neighbours")


def user_item_matrix(sequences, n_items: int) -> np.ndarray:
    """``[U, n_items]`` float64 binary matrix: 1 where user ``u``'s sequence holds the item."""
    n_items = require_positive_int(n_items, name="n_items")
    seqs = check_item_sequences(sequences, n_items)
    x = np.zeros((len(seqs), n_items), dtype=np.float64)
    for u, s in enumerate(seqs):
        x[u, s] = 1.0
    return x


def item_cosine(sequences, n_items: int, *, shrink: float = 0.0) -> np.ndarray:
    """``[n_items, n_items]`` float64 cosine similarity with shrinkage between items' user sets
    (see the module docstring); the diagonal and the reserved codes are 0."""
    shrink = _check_shrink(shrink)
    x = user_item_matrix(sequences, n_items)
    c = x.T @ x
    n = np.diag(c).copy()
    denom = np.sqrt(np.outer(n, n)) + shrink
    s = np.divide(c, denom, out=np.zeros_like(c), where=denom > 0)
    np.fill_diagonal(s, 0.0)
    s[:N_RESERVED, :] = 0.0
    s[:, :N_RESERVED] = 0.0
    return s


def _keep_top(sim: np.ndarray, neighbours: int | None) -> np.ndarray:
    """Zero every entry of each row but its ``neighbours`` largest (ties: the lower item code)."""
    if neighbours is None or neighbours >= sim.shape[1]:
        return sim
    order = np.argsort(-sim, axis=1, kind="stable")[:, :neighbours]
    out = np.zeros_like(sim)
    rows = np.arange(sim.shape[0])[:, None]
    out[rows, order] = sim[rows, order]
    return out


class ItemKNN:
    """Scores items by their summed similarity to every item of the user's history.

    Args:
        similarity: ``[n_items, n_items]`` item-to-item similarity (:func:`item_cosine`); row
            ``i`` holds the similarities of item ``i`` to every candidate.
        counts: ``[n_items]`` users per item (orders candidates with equal scores).
        neighbours: how many of each row's largest similarities to keep (``None``: all).
    """

    def __init__(self, similarity, counts, *, neighbours: int | None = None):
        sim = np.asarray(similarity, dtype=np.float64)
        counts = np.asarray(counts)
        if sim.ndim != 2 or sim.shape[0] != sim.shape[1] or sim.shape[0] <= N_RESERVED:
            raise ValueError(f"similarity: expected a square [n_items, n_items] matrix with more than "
                             f"{N_RESERVED} items, got shape {sim.shape}")
        if not np.isfinite(sim).all():
            raise ValueError("similarity: expected finite values, got NaN or inf")
        if counts.shape != (sim.shape[0],) or (counts < 0).any():
            raise ValueError(f"counts: expected shape [{sim.shape[0]}] of counts >= 0 like similarity, "
                             f"got shape {counts.shape}")
        self.neighbours = _check_neighbours(neighbours)
        self.n_items = sim.shape[0]
        self.counts = counts.astype(np.int64)
        self.similarity = _keep_top(sim, self.neighbours)
        tie = self.counts.astype(np.float64) / (self.counts.max() + 1.0) * TIE_BREAK
        tie[:N_RESERVED] = -np.inf
        self._tie = tie

    @classmethod
    def from_sequences(cls, sequences, n_items: int, *, neighbours: int | None = None,
                       shrink: float = 0.0) -> "ItemKNN":
        """Similarity and counts from ``sequences`` (lists of item codes)."""
        neighbours = _check_neighbours(neighbours)
        sim = item_cosine(sequences, n_items, shrink=shrink)
        counts = user_item_matrix(sequences, n_items).sum(axis=0)
        model = cls(sim, counts, neighbours=neighbours)
        model.settings = dict(neighbours=neighbours, shrink=float(shrink))
        return model

    @classmethod
    def from_data(cls, data, **settings) -> "ItemKNN":
        """Counted from leave-last-out ``data``'s training sequences
        (:class:`recbook.data.SequenceData`); ``settings`` as in :meth:`from_sequences`."""
        return cls.from_sequences(data.train, data.n_items, **settings)

    def score_next(self, histories) -> np.ndarray:
        """``[U, n_items]`` float64: row ``u`` sums the similarity rows of ``histories[u]``'s
        distinct items, plus the popularity tie-break; reserved columns are ``-inf``."""
        seqs = check_item_sequences(histories, self.n_items, name="histories")
        x = np.zeros((len(seqs), self.n_items), dtype=np.float64)
        for u, s in enumerate(seqs):
            x[u, s] = 1.0
        return x @ self.similarity + self._tie[None, :]

    def score_items(self, data, split: str) -> np.ndarray:
        """``[U, n_items]`` for the leaderboard's ``retrieval`` protocol: every item the user had
        before the ``split`` target is the history (the protocol excludes those items)."""
        return self.score_next(data.history(split))

    def __repr__(self) -> str:
        return f"ItemKNN(n_items={self.n_items}, neighbours={self.neighbours})"


def itemknn_sweep(data, neighbours=(5, 10, 20, 50, 100, 200, None), shrinks=(0.0, 10.0, 50.0),
                  *, metric: str = "recall@50") -> list[dict]:
    """Validation metrics of :class:`ItemKNN` on the ``retrieval`` protocol for every
    ``neighbours`` x ``shrink`` pair (``None`` = all neighbours). Only the ``valid`` split is
    read. Rows: ``neighbours`` (0 = all), ``shrink``, ``valid_<metric>`` for Recall/NDCG@10..100."""
    from ..bench import RETRIEVAL_KS
    from ..metrics import ranking_report

    if not neighbours or not shrinks:
        raise ValueError("neighbours, shrinks: expected at least one value each")
    rows = []
    for k, shrink in itertools.product(neighbours, shrinks):
        model = ItemKNN.from_data(data, neighbours=k, shrink=shrink)
        report = ranking_report(model.score_items(data, "valid"), data.targets("valid"), RETRIEVAL_KS,
                                exclude=data.seen("valid"))
        row = {"neighbours": 0 if k is None else int(k), "shrink": float(shrink)}
        row.update({f"valid_{m}": round(v, 6) for m, v in report.items() if m.startswith(("recall@", "ndcg@"))})
        rows.append(row)
    if f"valid_{metric}" not in rows[0]:
        raise ValueError(f"metric: expected one of {[c[6:] for c in rows[0] if c.startswith('valid_')]}, got {metric!r}")
    return rows


SWEEP_FILE = "itemknn_sweep.csv"


def main(argv=None) -> None:
    """``python -m recbook.models.itemknn [out_dir]``: write the validation sweep to
    ``out_dir/itemknn_sweep.csv`` (default ``book/results``) and print the best setting."""
    import sys

    from ..bench import load_protocol

    argv = sys.argv[1:] if argv is None else argv
    out = Path(argv[0] if argv else Path("book") / "results") / SWEEP_FILE
    rows = itemknn_sweep(load_protocol("retrieval"))
    with open(out, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    best = max(rows, key=lambda r: r["valid_recall@50"])
    print(f"wrote {out}; best on validation Recall@50: neighbours={best['neighbours']} "
          f"shrink={best['shrink']} ({best['valid_recall@50']:.4f})")


if __name__ == "__main__":
    main()

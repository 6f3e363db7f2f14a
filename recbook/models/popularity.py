"""Most-popular baseline for full-corpus retrieval: every user gets the same ranking."""
from __future__ import annotations

import numpy as np
import torch
from torch import nn


class Popularity(nn.Module):
    """Scores every item code by its number of training interactions (no parameters).

    ``counts`` float ``[n_items]``: one count per item code (the reserved codes 0 and 1 are never
    ranked). :meth:`score_items` returns the same row for every user; with each user's earlier
    items excluded, each user receives the most popular items they have not seen yet. Items with
    equal counts tie, and the book's pessimistic ranking counts ties against the target.
    """

    def __init__(self, counts: torch.Tensor):
        super().__init__()
        if not isinstance(counts, torch.Tensor) or counts.dim() != 1 or not counts.is_floating_point():
            raise ValueError(f"counts: expected a 1-D float tensor [n_items], got "
                             f"{getattr(counts, 'dtype', type(counts).__name__)} {tuple(getattr(counts, 'shape', ()))}")
        if not torch.isfinite(counts).all() or bool((counts < 0).any()):
            raise ValueError("counts: expected finite non-negative counts")
        self.register_buffer("counts", counts.clone())

    @classmethod
    def from_data(cls, data) -> Popularity:
        """Counts of each item code over the training sequences of leave-last-out ``data``
        (:func:`recbook.data.sequence_protocol`); validation and test targets are not counted."""
        flat = np.concatenate([np.asarray(s, dtype=np.int64) for s in data.train])
        return cls(torch.from_numpy(np.bincount(flat, minlength=int(data.n_items)).astype(np.float32)))

    def score_items(self, data, split: str) -> torch.Tensor:
        """``[U, n_items]``: the counts, once per user of ``data``."""
        if int(data.n_items) != self.counts.shape[0]:
            raise ValueError(f"data.n_items: {data.n_items} item codes; the counts cover {self.counts.shape[0]}")
        return self.counts[None, :].expand(len(data), -1)

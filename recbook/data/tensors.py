"""`TensorData`: a dict of tensors that share their first dimension, sliced into mini-batches.

Every chapter keeps its whole data set as tensors (CTR rows, behaviour histories, item
sequences) and the training loop cuts them into batches with index operations on whole tensors
(one per tensor for many batches at once when shuffling): no per-sample Python objects, no
collate function.
"""
from __future__ import annotations

from collections.abc import Iterator, Mapping

import numpy as np
import torch


# Rows gathered at once when ``TensorData.batches`` shuffles (see there).
_SHUFFLE_CHUNK_ROWS = 32768


class TensorData(Mapping):
    """A read-only mapping ``name -> tensor``; every tensor has the same length ``N`` along dim 0.

    >>> d = TensorData(x=torch.zeros(5, 3, dtype=torch.long), label=torch.ones(5))
    >>> len(d), sorted(d)
    (5, ['label', 'x'])
    """

    def __init__(self, tensors: Mapping | None = None, /, **named):
        items = dict(tensors or {}, **named)
        if not items:
            raise ValueError("TensorData: expected at least one tensor")
        n = None
        clean = {}
        for name, t in items.items():
            if isinstance(t, np.ndarray):
                t = torch.from_numpy(np.ascontiguousarray(t))
            if not isinstance(t, torch.Tensor):
                raise ValueError(f"{name}: expected a tensor or numpy array, got {type(t).__name__}")
            if t.dim() == 0:
                raise ValueError(f"{name}: expected at least one dimension, got a scalar")
            if n is None:
                n = t.shape[0]
            elif t.shape[0] != n:
                raise ValueError(f"{name}: has {t.shape[0]} rows; expected {n} like the other tensors")
            clean[name] = t
        if n == 0:
            raise ValueError("TensorData: tensors are empty; expected at least one row")
        self._t = clean
        self._n = int(n)

    def __getitem__(self, key):
        return self._t[key]

    def __iter__(self):
        return iter(self._t)

    def __len__(self) -> int:
        """Number of rows (not number of tensors)."""
        return self._n

    def __repr__(self) -> str:
        parts = ", ".join(f"{k}: {tuple(v.shape)} {str(v.dtype).replace('torch.', '')}" for k, v in self._t.items())
        return f"TensorData(n={self._n}; {parts})"

    def subset(self, index) -> "TensorData":
        """Rows selected by a boolean mask, an index array or a slice (at least one row)."""
        if isinstance(index, slice):
            picked = range(self._n)[index]
            if len(picked) == 0:
                raise ValueError(f"index: the slice {index} selects no rows of {self._n}; expected at least one")
            return TensorData({k: v[index] for k, v in self._t.items()})
        if not isinstance(index, torch.Tensor):
            index = np.asarray(index)
            if index.size == 0:
                raise ValueError("index: selects no rows; expected at least one")
            index = torch.as_tensor(index)
        if index.dim() != 1:
            raise ValueError(f"index: expected a 1-D mask or array of row numbers, got shape {tuple(index.shape)}")
        if index.dtype == torch.bool:
            if len(index) != self._n:
                raise ValueError(f"index: boolean mask of length {len(index)}; expected {self._n}, one per row")
        elif index.dtype.is_floating_point or index.dtype.is_complex:
            raise ValueError(f"index: expected integer row numbers or a boolean mask, got dtype {index.dtype}")
        elif len(index) and (int(index.min()) < -self._n or int(index.max()) >= self._n):
            bad = int(index.min()) if int(index.min()) < -self._n else int(index.max())
            raise ValueError(f"index: row {bad} is out of range for {self._n} rows")
        if (index.sum() if index.dtype == torch.bool else len(index)) == 0:
            raise ValueError("index: selects no rows; expected at least one")
        return TensorData({k: v[index] for k, v in self._t.items()})

    def drop(self, *keys: str) -> "TensorData":
        """The same rows without the tensors named in ``keys`` (names not present are ignored)."""
        kept = {k: v for k, v in self._t.items() if k not in keys}
        if not kept:
            raise ValueError(f"keys: dropping {list(keys)} would leave no tensor")
        return TensorData(kept)

    def to(self, device) -> "TensorData":
        return TensorData({k: v.to(device) for k, v in self._t.items()})

    def batches(self, batch_size: int, *, shuffle: bool = False, generator: torch.Generator | None = None
                ) -> Iterator[dict]:
        """Yield dicts of tensors, ``batch_size`` rows each (the last one may be shorter)."""
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size: expected a positive integer, got {batch_size!r}")
        if shuffle:
            order = torch.randperm(self._n, generator=generator)
            # Rows are gathered for many batches at once (one index_select per tensor and chunk)
            # and each batch is a slice of its chunk: the same rows in the same order as indexing
            # per batch, at a fraction of the per-batch cost; a chunk holds at most about
            # _SHUFFLE_CHUNK_ROWS rows, so memory stays bounded on large data.
            per_chunk = max(1, _SHUFFLE_CHUNK_ROWS // batch_size) * batch_size
            for lo in range(0, self._n, per_chunk):
                idx = order[lo:lo + per_chunk]
                chunk = {k: v.index_select(0, idx.to(v.device)) for k, v in self._t.items()}
                for start in range(0, len(idx), batch_size):
                    yield {k: v[start:start + batch_size] for k, v in chunk.items()}
        else:
            for start in range(0, self._n, batch_size):
                yield {k: v[start:start + batch_size] for k, v in self._t.items()}

    def n_batches(self, batch_size: int) -> int:
        return -(-self._n // batch_size)

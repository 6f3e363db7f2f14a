"""Session-parallel mini-batches for recurrent next-item models (GRU4Rec).

A recurrent model reads a sequence one item at a time and predicts the next one. Padding every
sequence to the longest one wastes most of the work (ML-100K's training sequences have 18 to 735
items), so GRU4Rec (Hidasi et al., ICLR 2016, section 3.1.1) trains on **session-parallel
mini-batches**: the batch has ``B`` *slots*; each slot reads one sequence, one event per step;
when a slot's sequence ends, the next sequence in line takes the slot and the slot's hidden state
is reset to zero. Every step yields ``B`` (input item, next item) pairs and no padding at all.
When no sequence is left to start, finished slots are dropped and the batch shrinks.

:class:`SessionParallelData` cuts sequences of item codes into such steps. It fits
:func:`recbook.train.fit`: ``batches(batch_size, shuffle=..., generator=...)`` yields one dict
per step and ``n_batches(batch_size)`` counts them. Each batch holds

* ``item`` int64 ``[b]``: the item each active slot reads at this step;
* ``target`` int64 ``[b]``: the item that follows it in the slot's sequence;
* ``prev`` int64 ``[b]``: for each row, the row of the same slot at the previous step, or ``-1``
  where a new sequence starts (its hidden state must start from zero);
* ``negatives`` int64 ``[S]``: extra negatives shared by the whole batch, drawn with replacement
  with probability proportional to ``count ** alpha`` (``count`` = the item's number of training
  events; items never seen in training are never drawn);
* ``log_q`` float32 ``[b + S]``: for each candidate (the ``b`` targets, then the ``S``
  negatives), the log of the weight with which it came into the batch: ``log count`` for a
  target (the data itself draws targets in proportion to popularity), ``alpha * log count`` for
  a sampled negative. The cross-entropy loss with the logQ correction subtracts it;
* ``state``: a :class:`SlotState`, one per pass over the data, in which the model leaves the
  slots' hidden states for the next step.

The hidden state belongs to the pass, not to the model: a new call of ``batches`` starts a new
:class:`SlotState`, and every sequence starts from zero (``prev`` is ``-1`` on its first step).
"""
from __future__ import annotations

import heapq
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from .._checks import require_positive_int

__all__ = ["PopularitySampler", "SessionParallelData", "SlotSchedule", "SlotState", "check_item_sequences", "item_counts",
           "session_parallel_schedule"]

N_RESERVED = 2  # item codes 0 (padding) and 1 (unknown) are never items
ORDERS = ("shuffle", "longest-first", "fixed")


def check_item_sequences(sequences, n_items: int, *, name: str = "sequences", min_len: int = 0) -> list[np.ndarray]:
    """Validate a list of 1-D integer arrays of item codes in ``[2, n_items)``."""
    if isinstance(sequences, (str, bytes, np.ndarray, torch.Tensor)) or not isinstance(sequences, Sequence):
        raise ValueError(f"{name}: expected a list of 1-D integer arrays of item codes, "
                         f"got {type(sequences).__name__}")
    if len(sequences) == 0:
        raise ValueError(f"{name}: is empty; expected at least one sequence")
    out = []
    for i, s in enumerate(sequences):
        a = s.detach().cpu().numpy() if isinstance(s, torch.Tensor) else np.asarray(s)
        if a.ndim != 1:
            raise ValueError(f"{name}[{i}]: expected a 1-D array of item codes, got shape {a.shape}")
        if a.size and not np.issubdtype(a.dtype, np.integer):
            raise ValueError(f"{name}[{i}]: expected integer item codes, got dtype {a.dtype}")
        if a.size < min_len:
            raise ValueError(f"{name}[{i}]: has {a.size} items; expected at least {min_len}")
        if a.size and (a.min() < N_RESERVED or a.max() >= n_items):
            bad = int(a.min()) if a.min() < N_RESERVED else int(a.max())
            raise ValueError(f"{name}[{i}]: item code {bad} is out of range; expected codes in "
                             f"[{N_RESERVED}, {n_items}) (0 = padding and 1 = unknown are not items)")
        out.append(a.astype(np.int64, copy=False))
    return out


def item_counts(sequences, n_items: int) -> np.ndarray:
    """``[n_items]`` int64: how many events of ``sequences`` hold each item code."""
    n_items = require_positive_int(n_items, name="n_items")
    seqs = check_item_sequences(sequences, n_items)
    return np.bincount(np.concatenate(seqs), minlength=n_items).astype(np.int64)


class PopularitySampler:
    """Draws item codes with probability proportional to ``count ** alpha``.

    ``alpha = 1`` follows popularity, ``alpha = 0`` is uniform over the items seen in training
    (an item with ``count == 0`` is never drawn, whatever ``alpha``), values in between flatten
    popularity. GRU4Rec's extra negatives come from here (Hidasi & Karatzoglou, CIKM 2018, §3.1).
    """

    def __init__(self, counts, alpha: float):
        counts = np.asarray(counts)
        if counts.ndim != 1 or counts.size == 0 or not np.issubdtype(counts.dtype, np.number):
            raise ValueError(f"counts: expected a 1-D array of item counts, got shape {counts.shape}")
        if (counts < 0).any():
            raise ValueError("counts: expected counts >= 0")
        if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not np.isfinite(alpha) or alpha < 0:
            raise ValueError(f"alpha: expected a finite number >= 0, got {alpha!r}")
        seen = counts > 0
        if not seen.any():
            raise ValueError("counts: all zero; expected at least one item seen in training")
        w = np.where(seen, np.where(seen, counts, 1).astype(np.float64) ** float(alpha), 0.0)
        self.alpha = float(alpha)
        self.probs = torch.from_numpy(w / w.sum())

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` item codes (int64), drawn independently with replacement."""
        if n == 0:
            return torch.empty(0, dtype=torch.long)
        return torch.multinomial(self.probs, n, replacement=True, generator=generator)


@dataclass(frozen=True)
class SlotSchedule:
    """Which event each slot reads at each step (numpy arrays; see :func:`session_parallel_schedule`).

    Rows are the (input event, step) pairs sorted by step, then slot. For row ``r``:
    ``sequence[r]`` and ``position[r]`` say which input event it is (the target is the event at
    ``position + 1`` of the same sequence), ``slot[r]`` which slot reads it, ``prev[r]`` the row of
    the same slot within the previous step (``-1`` at a sequence's first step). Step ``t`` is rows
    ``step_start[t]:step_start[t + 1]``.
    """

    sequence: np.ndarray
    position: np.ndarray
    slot: np.ndarray
    prev: np.ndarray
    step_start: np.ndarray

    @property
    def n_steps(self) -> int:
        return len(self.step_start) - 1


def session_parallel_schedule(lengths, batch_size: int, order=None) -> SlotSchedule:
    """Assign sequences to the slots of session-parallel mini-batches.

    Sequences start in ``order`` (default: as given); a sequence of length ``n`` occupies its slot
    for ``n - 1`` steps (one per (input, next item) pair). When slots fall free at the same step,
    the lowest-numbered slot takes the next sequence first. Sequences shorter than 2 give no pair
    and are skipped. Once no sequence is left, finished slots stay empty and the batch shrinks.
    """
    lengths = np.asarray(lengths, dtype=np.int64)
    batch_size = require_positive_int(batch_size, name="batch_size")
    order = np.arange(len(lengths)) if order is None else np.asarray(order, dtype=np.int64)
    order = order[lengths[order] >= 2]
    if len(order) == 0:
        raise ValueError("sequences: none has 2 or more items; expected at least one (input, next item) pair")
    pairs = lengths[order] - 1
    start = np.empty(len(order), dtype=np.int64)
    slot = np.empty(len(order), dtype=np.int64)
    free = [(0, s) for s in range(min(batch_size, len(order)))]  # (step the slot falls free, slot)
    for i, n in enumerate(pairs.tolist()):
        t, s = heapq.heappop(free)
        start[i], slot[i] = t, s
        heapq.heappush(free, (t + n, s))
    # One row per (input event): sequence, position within it, slot and step.
    seq_of_row = np.repeat(order, pairs)
    first_row = np.repeat(np.cumsum(pairs) - pairs, pairs)
    position = np.arange(len(seq_of_row)) - first_row
    step = np.repeat(start, pairs) + position
    slot_of_row = np.repeat(slot, pairs)
    by_step = np.lexsort((slot_of_row, step))
    sorted_row = np.empty_like(by_step)
    sorted_row[by_step] = np.arange(len(by_step))  # where each row lands after sorting
    step_sorted = step[by_step]
    n_steps = int(step_sorted[-1]) + 1
    step_start = np.searchsorted(step_sorted, np.arange(n_steps + 1))
    # A row's predecessor (same sequence, previous position) is the row just before it in the
    # unsorted order; ``prev`` gives its place within the previous step.
    rows = np.flatnonzero(position > 0)
    me, pred = sorted_row[rows], sorted_row[rows - 1]
    prev = np.full(len(by_step), -1, dtype=np.int64)
    prev[me] = pred - step_start[step_sorted[me] - 1]
    return SlotSchedule(seq_of_row[by_step], position[by_step], slot_of_row[by_step], prev, step_start)


class SlotState:
    """The hidden state that the slots of one pass carry from one step to the next.

    ``hidden`` is ``None`` before the first step, then whatever the model stored (for GRU4Rec a
    list with one ``[b, hidden]`` tensor per layer, detached from the graph).
    """

    __slots__ = ("hidden",)

    def __init__(self):
        self.hidden = None

    def __repr__(self) -> str:
        shapes = None if self.hidden is None else [tuple(h.shape) for h in self.hidden]
        return f"SlotState(hidden={shapes})"


class SessionParallelData:
    """Training sequences served as session-parallel mini-batches with shared sampled negatives.

    Args:
        sequences: one 1-D array of item codes per sequence (user), in time order.
        n_items: number of item codes (columns of a score matrix), reserved codes included.
        n_negatives: extra negatives per batch, shared by all its rows (0: only the other rows'
            targets serve as negatives).
        alpha: negatives are drawn with probability proportional to ``count ** alpha``.
        order: which sequence takes a free slot next. ``"shuffle"``: a new random order every
            pass when ``batches`` is called with ``shuffle=True`` (as :func:`recbook.train.fit`
            does); ``"longest-first"``: longest sequences first (ties in a new random order every
            shuffled pass), so that all slots run out at about the same step; ``"fixed"``: always
            the order of ``sequences`` (GRU4Rec's original orders sessions by their start time).

    Why ``"longest-first"``: with a random order, a few long sequences are usually still running
    when the others are done, and the last few hundred steps of a pass train on a handful of
    users with a tiny batch (on ML-100K with 64 slots: about 240 steps with fewer than 16 active
    slots). The model then ends every pass leaning towards whoever came last. Starting the long
    sequences first keeps the batch full until the last ~20 steps (and makes the pass shorter).

    ``len(data)`` is the number of (input, next item) pairs of one pass.
    """

    def __init__(self, sequences, n_items: int, *, n_negatives: int = 2048, alpha: float = 0.5,
                 order: str = "shuffle"):
        self.n_items = require_positive_int(n_items, name="n_items")
        self.sequences = check_item_sequences(sequences, self.n_items)
        if isinstance(n_negatives, bool) or not isinstance(n_negatives, (int, np.integer)) or n_negatives < 0:
            raise ValueError(f"n_negatives: expected an integer >= 0, got {n_negatives!r}")
        if order not in ORDERS:
            raise ValueError(f"order: expected one of {ORDERS}, got {order!r}")
        self.n_negatives = int(n_negatives)
        self.order = order
        self.counts = item_counts(self.sequences, self.n_items)
        self.sampler = PopularitySampler(self.counts, alpha)
        self.alpha = self.sampler.alpha
        self.lengths = np.array([len(s) for s in self.sequences], dtype=np.int64)
        self._offsets = np.r_[0, np.cumsum(self.lengths)]
        self._codes = torch.from_numpy(np.concatenate(self.sequences))
        self._log_counts = torch.from_numpy(np.log(np.maximum(self.counts, 1)).astype(np.float32))
        self.device = torch.device("cpu")

    def __len__(self) -> int:
        return int(np.maximum(self.lengths - 1, 0).sum())

    def __repr__(self) -> str:
        return (f"SessionParallelData({len(self.sequences)} sequences, {len(self)} pairs, "
                f"n_items={self.n_items}, n_negatives={self.n_negatives}, alpha={self.alpha}, "
                f"order={self.order!r})")

    def to(self, device) -> "SessionParallelData":
        """A view of the same data whose batches live on ``device``."""
        other = object.__new__(SessionParallelData)
        other.__dict__.update(self.__dict__)
        other.device = torch.device(device)
        return other

    def schedule(self, batch_size: int, *, shuffle: bool = False,
                 generator: torch.Generator | None = None) -> SlotSchedule:
        """The slot assignment of one pass (see :func:`session_parallel_schedule`)."""
        order = np.arange(len(self.sequences))
        if shuffle and self.order != "fixed":
            order = torch.randperm(len(self.sequences), generator=generator).numpy()
        if self.order == "longest-first":
            order = order[np.argsort(-self.lengths[order], kind="stable")]
        return session_parallel_schedule(self.lengths, batch_size, order)

    def n_batches(self, batch_size: int, *, shuffle: bool = False,
                  generator: torch.Generator | None = None) -> int:
        """Number of steps of one pass. In a shuffled pass it varies a little with the order, since
        the batch shrinks once no sequence is left to start; without ``generator`` this is the count
        for the fixed order."""
        return self.schedule(batch_size, shuffle=shuffle, generator=generator).n_steps

    def batches(self, batch_size: int, *, shuffle: bool = False,
                generator: torch.Generator | None = None) -> Iterator[dict]:
        """Yield one batch per step of a pass (see the module docstring for the keys)."""
        sched = self.schedule(batch_size, shuffle=shuffle, generator=generator)
        at = torch.from_numpy(self._offsets[sched.sequence] + sched.position)
        items = self._codes[at].to(self.device)
        targets = self._codes[at + 1].to(self.device)
        prev = torch.from_numpy(sched.prev).to(self.device)
        n_steps, s = sched.n_steps, self.n_negatives
        # All the pass's negatives in one draw: one row of S per step.
        negatives = self.sampler.sample(n_steps * s, generator).view(n_steps, s).to(self.device)
        log_counts = self._log_counts.to(self.device)
        log_q_targets = log_counts[targets]
        log_q_negatives = self.alpha * log_counts[negatives]
        state = SlotState()
        bounds = sched.step_start.tolist()
        for t in range(n_steps):
            a, b = bounds[t], bounds[t + 1]
            yield {"item": items[a:b], "target": targets[a:b], "prev": prev[a:b],
                   "negatives": negatives[t], "log_q": torch.cat([log_q_targets[a:b], log_q_negatives[t]]),
                   "state": state}

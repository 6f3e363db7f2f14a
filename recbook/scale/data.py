"""Click logs at any size without files: a seeded, shardable generator, vocabulary statistics, and a
loader for the larger MovieLens files a reader has obtained.

* :class:`ClickStream`: rows of ``num_fields`` categorical ids (field 0 plays the user, field 1 the
  item, any further field a context such as a device) and a 0/1 click label. Each field's ids follow
  a truncated power law (Zipf exponent ``alpha``): a few ids are everywhere, most are rare. Every id
  belongs to one of ``num_groups`` hidden taste groups (a hash of the id); a click is likely when
  the user's group matches the item's, so a model that learns group-like embeddings learns the
  signal. Chunk ``c`` of seed ``s`` is a pure function of ``(s, c)``: a process that owns chunks
  ``rank, rank + world, ...`` generates its own shard with no file and no communication, and two
  runs give the same rows. This is how TorchRec, DLRM, HugeCTR and Merlin benchmark at scale.
* :func:`vocabulary_stats`: distinct ids against rows streamed, and the share of rows the top 1%
  of ids cover.
* :func:`filter_and_hash`: the two ways to bound a table: keep ids seen at least ``k`` times
  (the rest share one "rare" row), or hash every id into ``buckets`` rows; what each costs.
* :func:`load_movielens_ratings` / :func:`ratings_to_clicks`: MovieLens-1M (``ratings.dat``,
  ``::``-separated) or MovieLens-20M/25M/32M (``ratings.csv`` with a header) as user, item, rating,
  timestamp, then as clicks (rating >= a threshold) with contiguous ids. The licence forbids
  redistributing these files, so the book never ships or downloads them.
"""
from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .._checks import require_positive_int

__all__ = [
    "ClickStream", "filter_and_hash", "load_movielens_ratings", "ratings_to_clicks", "vocabulary_stats",
]

_MASK64 = np.uint64(0xFFFFFFFFFFFFFFFF)


def _mix(x: np.ndarray, salt: int) -> np.ndarray:
    """SplitMix64 finaliser: a fixed pseudo-random hash of non-negative int64 ids (as uint64)."""
    with np.errstate(over="ignore"):
        z = x.astype(np.uint64) + np.uint64((0x9E3779B97F4A7C15 * (salt + 1)) & 0xFFFFFFFFFFFFFFFF)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return (z ^ (z >> np.uint64(31))) & _MASK64


def _require_nonneg_int(value, *, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise ValueError(f"{name}: expected a non-negative integer, got {value!r}")
    return int(value)


@dataclass(frozen=True)
class ClickStream:
    """A seeded click log of ``num_fields`` id fields with ``rows`` ids each (see the module docstring).

    ``alpha`` is the power-law exponent of id popularity (> 0, not 1: the sampler inverts the
    continuous CDF); ``num_groups`` the number of hidden taste groups; ``strength`` the logit added
    when user and item share a group, ``base`` the logit otherwise; ``chunk_rows`` the rows of one
    chunk, the unit that processes split among themselves.
    """
    rows: int | Sequence[int] = 1_000_000
    num_fields: int = 2
    alpha: float = 1.1
    num_groups: int = 8
    strength: float = 3.0
    base: float = -2.0
    chunk_rows: int = 65_536
    seed: int = 0

    def __post_init__(self):
        fields = require_positive_int(self.num_fields, name="num_fields")
        if fields < 2:
            raise ValueError(f"num_fields: expected at least 2 (a user and an item field), got {fields}")
        sizes = self.field_rows
        if len(sizes) != fields:
            raise ValueError(f"rows: expected one table size or {fields} sizes (one per field), got {len(sizes)}")
        for f, n in enumerate(sizes):
            require_positive_int(n, name=f"rows[{f}]")
        if not isinstance(self.alpha, (int, float)) or not self.alpha > 0 or self.alpha == 1:
            raise ValueError(f"alpha: expected a positive number other than 1, got {self.alpha!r}")
        require_positive_int(self.num_groups, name="num_groups")
        require_positive_int(self.chunk_rows, name="chunk_rows")
        _require_nonneg_int(self.seed, name="seed")

    @property
    def field_rows(self) -> tuple[int, ...]:
        """Rows of each field's table (its number of possible ids)."""
        if isinstance(self.rows, (int, np.integer)) and not isinstance(self.rows, bool):
            return (int(self.rows),) * int(self.num_fields)
        if isinstance(self.rows, (list, tuple)):
            return tuple(self.rows)
        raise ValueError(f"rows: expected a positive integer or a sequence of them, got {self.rows!r}")

    def _ids(self, rng: np.random.Generator, n: int, field: int) -> np.ndarray:
        """Power-law ranks, then a fixed bijection rank -> id (so ids are not sorted by popularity)."""
        size = self.field_rows[field]
        a = 1.0 - float(self.alpha)
        u = rng.random(n)
        rank = np.floor(((float(size) ** a - 1.0) * u + 1.0) ** (1.0 / a)) - 1.0
        rank = np.clip(rank, 0, size - 1).astype(np.int64)
        # rank * m + c (mod size) with m coprime to size is a bijection of [0, size).
        m = int(_mix(np.array([field], dtype=np.int64), self.seed + 7)[0] % np.uint64(size)) | 1
        while np.gcd(m, size) != 1:
            m += 2
        c = int(_mix(np.array([field], dtype=np.int64), self.seed + 11)[0] % np.uint64(size))
        return (rank * m + c) % size if size > 1 else rank

    def group(self, ids, field: int) -> np.ndarray:
        """The hidden taste group of each id of ``field``."""
        ids = np.asarray(ids, dtype=np.int64)
        return (_mix(ids, 1000 * self.seed + field) % np.uint64(self.num_groups)).astype(np.int64)

    def chunk(self, index: int, rows: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Chunk ``index``: ids ``[n, num_fields]`` (int64) and labels ``[n]`` (float32), a function
        of ``(seed, index)`` only; ``rows`` (default ``chunk_rows``) takes its first rows."""
        index = _require_nonneg_int(index, name="index")
        n = self.chunk_rows if rows is None else require_positive_int(rows, name="rows")
        rng = np.random.default_rng([int(self.seed), index])
        ids = np.stack([self._ids(rng, n, f) for f in range(self.num_fields)], axis=1)
        match = self.group(ids[:, 0], 0) == self.group(ids[:, 1], 1)
        logit = self.base + self.strength * match
        for f in range(2, self.num_fields):  # context fields: a small group effect each
            logit = logit + 0.5 * (self.group(ids[:, f], f) - (self.num_groups - 1) / 2) / self.num_groups
        labels = (rng.random(n) < 1.0 / (1.0 + np.exp(-logit))).astype(np.float32)
        return ids, labels

    def shard(self, rank: int, world: int, num_chunks: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """The chunks of ``range(num_chunks)`` that process ``rank`` of ``world`` owns (every
        ``world``-th one, starting at ``rank``): together the shards are the whole stream, once."""
        world = require_positive_int(world, name="world")
        rank = _require_nonneg_int(rank, name="rank")
        if rank >= world:
            raise ValueError(f"rank: expected a rank in [0, {world}), got {rank}")
        num_chunks = _require_nonneg_int(num_chunks, name="num_chunks")
        for c in range(rank, num_chunks, world):
            yield self.chunk(c)


def vocabulary_stats(stream: ClickStream, num_chunks: int, *, field: int = 1,
                     checkpoints: Sequence[int] | None = None) -> pd.DataFrame:
    """Distinct ids of ``field`` against rows streamed: one row per checkpoint (a number of chunks)
    with ``rows``, ``distinct`` ids, ``distinct_share`` (of the table) and ``top1_share`` (the share
    of rows whose id is among the 1% most frequent ids seen so far)."""
    num_chunks = require_positive_int(num_chunks, name="num_chunks")
    if not 0 <= field < stream.num_fields:
        raise ValueError(f"field: expected a field in [0, {stream.num_fields}), got {field!r}")
    size = stream.field_rows[field]
    checkpoints = sorted(set(checkpoints or np.unique(np.geomspace(1, num_chunks, 8).astype(int))))
    counts = np.zeros(size, dtype=np.int64)
    out, done = [], 0
    for c in range(num_chunks):
        ids, _ = stream.chunk(c)
        counts += np.bincount(ids[:, field], minlength=size)
        done += len(ids)
        if c + 1 in checkpoints:
            seen = counts[counts > 0]
            top = np.sort(seen)[::-1][: max(1, len(seen) // 100)]
            out.append({"chunks": c + 1, "rows": done, "distinct": len(seen), "distinct_share": len(seen) / size,
                        "top1_share": top.sum() / done})
    return pd.DataFrame(out)


def filter_and_hash(counts, *, min_counts: Sequence[int] = (1, 2, 5, 10),
                    buckets: Sequence[int] = (), seed: int = 0) -> pd.DataFrame:
    """The two ways to bound a table, from the count of each id (``counts[i]``: rows holding id i).

    ``method='filter'``: ids with fewer than ``k`` rows share one "rare" row; ``table_rows`` is the
    number kept (+1), ``rows_affected`` the share of rows whose id lost its own row. ``method='hash'``:
    every id goes to row ``hash(id) mod buckets``; ``rows_affected`` is the share of rows whose id
    shares its row with another id that occurs (a collision: two ids, one vector).
    """
    counts = np.asarray(counts)
    if counts.ndim != 1 or counts.size == 0 or not np.issubdtype(counts.dtype, np.integer) or (counts < 0).any():
        raise ValueError("counts: expected a non-empty 1-d array of non-negative integer counts")
    total = counts.sum()
    if total == 0:
        raise ValueError("counts: every count is zero; expected at least one row")
    present = np.flatnonzero(counts)
    out = []
    for k in min_counts:
        k = require_positive_int(k, name="min_counts")
        kept = counts >= k
        out.append({"method": "filter", "param": k, "table_rows": int(kept.sum()) + 1,
                    "rows_affected": counts[~kept].sum() / total})
    for b in buckets:
        b = require_positive_int(b, name="buckets")
        bucket = (_mix(present, seed + 99) % np.uint64(b)).astype(np.int64)
        ids_per_bucket = np.bincount(bucket, minlength=b)
        shared = ids_per_bucket[bucket] > 1
        out.append({"method": "hash", "param": b, "table_rows": b, "rows_affected": counts[present[shared]].sum() / total})
    return pd.DataFrame(out, columns=["method", "param", "table_rows", "rows_affected"])


_ML_COLUMNS = ["user", "item", "rating", "timestamp"]


def load_movielens_ratings(path: str | Path) -> pd.DataFrame:
    """Read a MovieLens ratings file you obtained from GroupLens: ML-1M/10M ``ratings.dat``
    (``user::item::rating::timestamp``, no header) or ML-20M/25M/32M ``ratings.csv`` (header
    ``userId,movieId,rating,timestamp``). Returns columns user, item, rating, timestamp."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"path: {path} is not a file; expected a MovieLens ratings.dat or ratings.csv "
                         "(download it from grouplens.org; its licence forbids redistribution)")
    with path.open("r", encoding="utf-8", errors="replace") as fh:
        first = fh.readline().strip()
    if "::" in first:
        frame = pd.read_csv(path, sep="::", engine="python", header=None, names=_ML_COLUMNS)
    elif first.lower().replace(" ", "") == "userid,movieid,rating,timestamp":
        frame = pd.read_csv(path)
        frame.columns = _ML_COLUMNS
    else:
        raise ValueError(f"path: {path} starts with {first[:60]!r}; expected 'user::item::rating::timestamp' "
                         "lines (ML-1M/10M) or the header 'userId,movieId,rating,timestamp' (ML-20M and later)")
    if frame.empty:
        raise ValueError(f"path: {path} holds no ratings")
    for col in ("user", "item", "timestamp"):
        if not np.issubdtype(frame[col].dtype, np.integer):
            raise ValueError(f"path: column {col} of {path} is not all integers")
    return frame.astype({"user": np.int64, "item": np.int64, "rating": np.float32, "timestamp": np.int64})


def ratings_to_clicks(ratings: pd.DataFrame, *, threshold: float = 4.0) -> tuple[np.ndarray, np.ndarray, tuple[int, int]]:
    """Ratings as a click log: ids ``[n, 2]`` (user, item; contiguous from 0 in order of first
    appearance), labels ``[n]`` (1.0 where rating >= ``threshold``), and the two table sizes."""
    from .._checks import require_columns
    require_columns(ratings, _ML_COLUMNS, name="ratings")
    if not isinstance(threshold, (int, float)) or isinstance(threshold, bool):
        raise ValueError(f"threshold: expected a number, got {threshold!r}")
    users, user_ids = pd.factorize(ratings["user"])
    items, item_ids = pd.factorize(ratings["item"])
    ids = np.stack([users, items], axis=1).astype(np.int64)
    labels = (ratings["rating"].to_numpy() >= threshold).astype(np.float32)
    return ids, labels, (len(user_ids), len(item_ids))

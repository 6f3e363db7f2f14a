"""Cross-product features for the wide part of Wide & Deep: which crosses exist, and their codes.

A cross of two fields is one binary feature per **pair of values** ("occupation=programmer ×
genres=Sci-Fi"), the cross-product transformation of Cheng et al. (2016). The wide part learns
one weight per pair it has seen: pure memorisation, which is what the deep part lacks. This module
is the one place that says which crosses the book uses (:data:`CROSSES`) and how they are encoded.

**Vocabulary.** Each cross's vocabulary is the set of value pairs that occur in the **training
rows** (at least ``min_count`` times); pair ``i`` of the vocabulary has code ``i + 2``, and, as for
every field, 0 is padding and 1 is unknown. A pair that first appears in validation or test, or
that involves an unknown user or movie, is unknown: its weight stays at 0, so the wide part adds
nothing for it. Crosses are computed from the encoded batch (``x`` and ``genres``) by a lookup
table ``[size_a, size_b]`` from the two fields' codes to the pair's code, so a model needs no
extra columns in its data and every CTR batch of the protocol works as it is.

**Genres.** A cross with the multi-valued ``genres`` gives one pair per genre of the movie (a
male viewer of an Action/Sci-Fi movie has "gender=M × genres=Action" and "gender=M ×
genres=Sci-Fi"). :class:`recbook.layers.CrossLinear` adds the **mean** of their weights, the
``x_i = 1/k`` of :class:`recbook.layers.FeatureLinear`: then a cross refines the genre main effect
on the same scale, whatever the number of genres (1 to 6, mean 2.1 in training), instead of giving
a six-genre movie six times the cross signal of a one-genre movie.

**The crosses.** Measured on the CTR protocol of ML-100K (80,000 training rows; 85% of the
validation rows come from users absent from training, whose ``user_id`` is unknown). Per
candidate cross: distinct pairs in training, median training rows per pair, share of validation
rows (for a genre cross: of (row, genre) pairs) whose pair occurs in training, and validation AUC
of logistic regression with that one cross added (leaderboard settings, seed 0; logistic
regression alone: 0.6947):

=========================  ======  ========  ==========  =========
cross                      pairs   rows per  valid seen  valid AUC
=========================  ======  ========  ==========  =========
gender × genres                38      2288       1.000     0.6951
age_bucket × genres           129       506       1.000     0.6939
occupation × genres           386       156       1.000     0.6924
zip1 × genres                 331       115       1.000     0.6939
user_id × genres            11380         7       0.153     0.6958
year_bucket × genres          169       447       1.000     0.6944
gender × year_bucket           22      2296       1.000     0.6951
age_bucket × year_bucket       73       555       1.000     0.6887
occupation × year_bucket      219       166       1.000     0.6942
user_id × year_bucket        5359         8       0.137     0.6938
gender × age_bucket            14      3640       1.000     0.6938
gender × item_id             2999        11       0.992     0.6963
age_bucket × item_id         7787         4       0.962     0.6933
occupation × item_id        16811         2       0.911     0.6902
zip1 × item_id              13244         3       0.958     0.6879
=========================  ======  ========  ==========  =========

Alone, most crosses overfit a logistic regression trained with Adam (every weight moves at the
same rate, however few rows support it). The three that helped it, ``gender × genres``,
``user_id × genres`` (the paper's kind of memorisation: one user's taste per genre; it only
helps the 15% warm rows) and ``gender × item_id`` (who likes *this* movie, for cold users too),
are in :data:`CROSSES`, with ``age_bucket × genres`` and ``occupation × genres``, which give the
chapters readable demographic crosses and, next to a deep part, did not hurt. Wide & Deep (Adam,
seeds 0-2, mean validation AUC): 0.6962 with these five crosses and 0.6953 without crosses; on
the protocol's previous version (before items shared one id space) the five reached 0.6960, the
four genre crosses alone 0.6956, the three that helped alone 0.6957, no crosses 0.6952. The
differences are of the order of the seed-to-seed spread (about 0.0005): on this data the wide
part's crosses add little to a deep part that already sees every field.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import pandas as pd
import torch

from .._checks import require_columns, require_positive_int
from .features import N_RESERVED, PAD, UNK, Field, Schema

__all__ = ["CROSSES", "SEP", "Cross", "Crosses", "build_crosses", "ctr_crosses"]

CROSSES: tuple[tuple[str, str], ...] = (
    ("gender", "genres"),
    ("age_bucket", "genres"),
    ("occupation", "genres"),
    ("user_id", "genres"),
    ("gender", "item_id"),
)
"""The crosses of the book's Wide & Deep, as ``(field_a, field_b)`` pairs of CTR fields.

``field_a`` is single-valued; ``field_b`` may be single- or multi-valued (genres)."""

SEP = " × "
"""Separator in a cross's name (``"occupation × genres"``) and a pair's label."""


@dataclass(frozen=True, eq=False)
class Cross:
    """One cross ``a × b``: its vocabulary of value pairs and the table from codes to pair codes.

    Attributes:
        a, b: the two fields' names; ``a`` is single-valued, ``b`` may be multi-valued.
        pairs: the known pairs as ``(code_a, code_b)`` of the base schema, sorted; pair
            ``pairs[i]`` has code ``i + 2``.
        labels: a readable label per known pair, ``"occupation=programmer × genres=Sci-Fi"``.
        table: int64 ``[size_a, size_b]``: ``table[code_a, code_b]`` is the pair's code, ``UNK``
            for a pair outside the vocabulary or with an unknown value, ``PAD`` where either code
            is padding.
        multi: True when ``b`` is multi-valued (one pair per member).
    """

    a: str
    b: str
    pairs: tuple
    labels: tuple
    table: np.ndarray
    multi: bool

    @property
    def name(self) -> str:
        return f"{self.a}{SEP}{self.b}"

    @property
    def size(self) -> int:
        """Rows this cross needs in a weight table (padding and unknown included)."""
        return len(self.pairs) + N_RESERVED

    def field(self) -> Field:
        """The cross as a :class:`~recbook.data.Field` whose categories are the pairs' labels."""
        return Field(self.name, self.labels, multi=self.multi)

    def decode(self, code: int) -> str:
        """The label of a pair code (``'<pad>'``, ``'<unk>'`` for the reserved ones)."""
        return self.field().decode(int(code))


@dataclass(frozen=True, eq=False)
class Crosses:
    """The crosses of one model, over the fields of ``schema``.

    ``schema`` describes the base fields (the codes in ``x`` and ``genres``); :attr:`weight_schema`
    describes the crosses themselves, one :class:`~recbook.data.Field` per cross, so that every
    cross pair owns one row of a weight table (``weight_schema.offsets[c] + code``) and carries a
    readable name (:meth:`label`).
    """

    schema: Schema
    crosses: tuple

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.crosses]

    def __len__(self) -> int:
        return len(self.crosses)

    def __iter__(self):
        return iter(self.crosses)

    def __getitem__(self, name: str) -> Cross:
        for c in self.crosses:
            if c.name == name:
                return c
        raise KeyError(f"no cross named {name!r}; crosses are {self.names}")

    @cached_property
    def weight_schema(self) -> Schema:
        """One field per cross (single-valued crosses first, as in any :class:`Schema`)."""
        return Schema(tuple(c.field() for c in self.crosses))

    @property
    def total_size(self) -> int:
        return int(sum(c.size for c in self.crosses))

    def label(self, row: int) -> str:
        """Readable name of row ``row`` of a weight table over :attr:`weight_schema`."""
        ws = self.weight_schema
        offsets = ws.offsets
        if isinstance(row, bool) or not isinstance(row, (int, np.integer)) or not 0 <= row < ws.total_size:
            raise ValueError(f"row: expected an integer in [0, {ws.total_size}), got {row!r}")
        f = int(np.searchsorted(offsets, row, side="right") - 1)
        return ws.fields[f].decode(int(row - offsets[f]))

    def labels(self) -> list[str]:
        """Readable names of every row of a weight table over :attr:`weight_schema`."""
        return [lab for f in self.weight_schema.fields for lab in ("<pad>", "<unk>", *f.categories)]

    def describe(self) -> pd.DataFrame:
        """One row per cross: name, kind, known pairs, table rows and offset in the weight table."""
        ws = self.weight_schema
        return pd.DataFrame({"cross": ws.names, "kind": ["multi" if f.multi else "single" for f in ws.fields],
                             "pairs": ws.sizes - N_RESERVED, "size": ws.sizes, "offset": ws.offsets})

    def codes(self, batch: Mapping) -> dict:
        """The pair codes of every row of a CTR batch, by plain table lookups (no model needed).

        Returns a dict in the layout of a CTR batch over :attr:`weight_schema`: ``x`` int64
        ``[B, n_single_crosses]`` and, per multi-valued cross, ``[B, L]`` (one code per member of
        ``b``, 0 where ``b`` is padding). A model computes the same codes with one lookup
        (:class:`recbook.layers.CrossLinear`); this is the readable version.
        """
        from ..layers import check_batch

        check_batch(self.schema, batch)
        x = batch["x"]
        column = {f.name: i for i, f in enumerate(self.schema.single)}
        single, multi = [], {}
        for c in self.crosses:
            table = torch.as_tensor(c.table, device=x.device)
            a = x[:, column[c.a]]
            if c.multi:
                multi[c.name] = table[a[:, None], batch[c.b]]
            else:
                single.append(table[a, x[:, column[c.b]]])
        out = {"x": torch.stack(single, 1) if single else x.new_zeros((x.shape[0], 0))}
        out.update(multi)
        return out


def _pair_counts(codes_a: np.ndarray, codes_b: np.ndarray, size_b: int) -> tuple[np.ndarray, np.ndarray]:
    """Distinct (a, b) code pairs (sorted) with their counts, padding and unknown excluded."""
    keep = (codes_a >= N_RESERVED) & (codes_b >= N_RESERVED)
    flat = codes_a[keep] * size_b + codes_b[keep]
    uniq, counts = np.unique(flat, return_counts=True)
    return uniq, counts


def build_crosses(train: pd.DataFrame, schema: Schema, crosses: Sequence = CROSSES, *,
                  min_count: int = 1) -> Crosses:
    """Vocabularies of ``crosses`` from the training rows ``train`` (raw values, as in
    :func:`recbook.data.ctr_frame`), over the codes of ``schema``.

    Args:
        train: training rows with a column per field of the crosses (``genres`` holds tuples).
        schema: the base fields; values are encoded with it, so a value it does not know (a user
            absent from training) is unknown and so is every pair with it.
        crosses: ``(field_a, field_b)`` pairs; ``field_a`` single-valued.
        min_count: keep pairs seen in at least this many training rows (others are unknown).

    Raises ``ValueError`` naming the cross or field when a field is missing from ``schema`` or
    ``train``, when ``field_a`` is multi-valued, or when a cross is listed twice.
    """
    min_count = require_positive_int(min_count, name="min_count")
    if not isinstance(schema, Schema):
        raise ValueError(f"schema: expected a recbook.data.Schema, got {type(schema).__name__}")
    crosses = [tuple(c) for c in crosses]
    if not crosses:
        raise ValueError("crosses: expected at least one (field_a, field_b) pair")
    seen = set()
    for c in crosses:
        if len(c) != 2 or not all(isinstance(n, str) for n in c):
            raise ValueError(f"crosses: expected (field_a, field_b) pairs of field names, got {c!r}")
        for n in c:
            if n not in schema.names:
                raise ValueError(f"crosses: {c[0]}{SEP}{c[1]}: no field {n!r} in the schema {schema.names}")
        if c[0] == c[1]:
            raise ValueError(f"crosses: {c[0]}{SEP}{c[1]}: a field crossed with itself")
        if schema[c[0]].multi:
            raise ValueError(f"crosses: {c[0]}{SEP}{c[1]}: field_a must be single-valued; "
                             f"'{c[0]}' is multi-valued")
        if frozenset(c) in seen:
            raise ValueError(f"crosses: {c[0]}{SEP}{c[1]} is listed twice")
        seen.add(frozenset(c))
    require_columns(train, sorted({n for c in crosses for n in c}), name="train")

    codes = {}
    for name in {n for c in crosses for n in c}:
        f = schema[name]
        codes[name] = f.encode_multi(train[name].tolist()) if f.multi else f.encode(train[name])
    out = []
    for a, b in crosses:
        fa, fb = schema[a], schema[b]
        ca, cb = codes[a], codes[b]
        if fb.multi:  # one pair per member of b; padding drops out in _pair_counts
            ca = np.repeat(ca[:, None], cb.shape[1], axis=1).ravel()
            cb = cb.ravel()
        uniq, counts = _pair_counts(ca, cb, fb.size)
        uniq = uniq[counts >= min_count]
        table = np.full((fa.size, fb.size), UNK, dtype=np.int64)
        table[PAD, :] = PAD
        table[:, PAD] = PAD
        table.ravel()[uniq] = np.arange(len(uniq), dtype=np.int64) + N_RESERVED
        pa, pb = np.divmod(uniq, fb.size)
        labels = tuple(f"{a}={fa.decode(int(i))}{SEP}{b}={fb.decode(int(j))}" for i, j in zip(pa, pb))
        out.append(Cross(a, b, tuple(zip(pa.tolist(), pb.tolist())), labels, table, fb.multi))
    return Crosses(schema, tuple(out))


def ctr_crosses(data, crosses: Sequence = CROSSES, *, min_count: int = 1) -> Crosses:
    """:func:`build_crosses` from a :class:`recbook.data.CTRData`'s training rows and schema."""
    frames = getattr(data, "frames", None)
    if not isinstance(frames, Mapping) or "train" not in frames:
        raise ValueError(f"data: expected a recbook.data.CTRData with frames['train'], got {type(data).__name__}")
    return build_crosses(frames["train"], data.schema, crosses, min_count=min_count)

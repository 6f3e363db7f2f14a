"""Categorical feature encoding shared by every model in the book.

A :class:`Field` is one categorical input (``user_id``, ``gender``, ``genres`` ...) with its own
vocabulary. Index 0 is reserved for padding and index 1 for values never seen when the vocabulary
was built, so a field with ``c`` known categories has ``c + 2`` rows. A :class:`Schema` is an
ordered set of fields; it knows each field's size and its offset into **one** embedding table
shared by all fields (``offsets[f] + local_index``), which is how the models look up every field
with a single ``nn.Embedding`` call instead of a Python loop over fields.

Single-valued fields of a row are stored together as one integer matrix ``x`` of shape
``[N, n_single]``; each multi-valued field (a movie's genres) is its own ``[N, L]`` matrix named
after the field, right-padded with 0.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from dataclasses import field as dc_field

import numpy as np
import pandas as pd

PAD = 0
UNK = 1
N_RESERVED = 2


@dataclass(frozen=True)
class Field:
    """One categorical field.

    Attributes:
        name: field name, also the key of its tensor when ``multi`` is True.
        categories: the known values; value ``categories[i]`` is encoded as ``i + 2``.
        multi: True for a multi-valued field (a set of categories per row).
    """

    name: str
    categories: tuple
    multi: bool = False
    _index: pd.Index = dc_field(init=False, repr=False, compare=False)

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"Field.name: expected a non-empty string, got {self.name!r}")
        cats = tuple(self.categories)
        if len(set(cats)) != len(cats):
            raise ValueError(f"Field '{self.name}': categories contain duplicates")
        object.__setattr__(self, "categories", cats)
        # A hash index makes encoding one vectorised lookup; -1 marks values outside the vocabulary.
        object.__setattr__(self, "_index", pd.Index(cats))

    @property
    def size(self) -> int:
        """Rows this field needs in an embedding table (padding and unknown included)."""
        return len(self.categories) + N_RESERVED

    def encode(self, values) -> np.ndarray:
        """Map raw values to indices; values outside the vocabulary map to ``UNK``.

        Raises ``ValueError`` naming the field if a value is missing (NaN/None).
        """
        values = pd.Series(values) if not isinstance(values, pd.Series) else values
        if values.isna().any():
            raise ValueError(
                f"{self.name}: {int(values.isna().sum())} missing value(s); expected a value in every row"
            )
        codes = self._index.get_indexer(values.to_numpy()).astype(np.int64)
        return np.where(codes < 0, UNK, codes + N_RESERVED)

    def encode_multi(self, lists: Sequence[Iterable], max_len: int | None = None) -> np.ndarray:
        """Encode one collection of values per row into a right-padded ``[N, L]`` matrix.

        Rows repeat a handful of distinct collections (a movie's genres), so each distinct one is
        encoded once and the result gathered for every row.
        """
        codes, uniques = pd.factorize(pd.Series([tuple(v) for v in lists], dtype=object))
        lookup = {c: i + N_RESERVED for i, c in enumerate(self.categories)}
        rows = [[lookup.get(v, UNK) for v in vals] for vals in uniques]
        width = max_len or max((len(r) for r in rows), default=1) or 1
        table = np.zeros((len(rows), width), dtype=np.int64)
        for i, r in enumerate(rows):
            r = r[:width]
            table[i, : len(r)] = r
        return table[codes] if len(codes) else np.zeros((0, width), dtype=np.int64)

    def decode(self, index: int):
        """The raw value behind an index (``'<pad>'`` and ``'<unk>'`` for the reserved ones)."""
        if index == PAD:
            return "<pad>"
        if index == UNK:
            return "<unk>"
        return self.categories[index - N_RESERVED]


@dataclass(frozen=True)
class Schema:
    """An ordered collection of fields: single-valued fields first, then multi-valued ones."""

    fields: tuple
    _by_name: dict = dc_field(init=False, repr=False, compare=False)

    def __post_init__(self):
        fields = tuple(self.fields)
        names = [f.name for f in fields]
        if len(set(names)) != len(names):
            raise ValueError(f"Schema.fields: duplicate field names in {names}")
        # Single-valued fields come first so that x[:, i] is field i.
        ordered = tuple(f for f in fields if not f.multi) + tuple(f for f in fields if f.multi)
        object.__setattr__(self, "fields", ordered)
        object.__setattr__(self, "_by_name", {f.name: f for f in ordered})

    def __getitem__(self, name: str) -> Field:
        try:
            return self._by_name[name]
        except KeyError:
            raise KeyError(f"no field named {name!r}; fields are {self.names}") from None

    def __len__(self) -> int:
        return len(self.fields)

    @property
    def names(self) -> list[str]:
        return [f.name for f in self.fields]

    @property
    def single(self) -> list[Field]:
        """Single-valued fields, in the column order of ``x``."""
        return [f for f in self.fields if not f.multi]

    @property
    def multi(self) -> list[Field]:
        return [f for f in self.fields if f.multi]

    @property
    def sizes(self) -> np.ndarray:
        return np.array([f.size for f in self.fields], dtype=np.int64)

    @property
    def offsets(self) -> np.ndarray:
        """Start row of each field in the shared embedding table."""
        return np.concatenate([[0], np.cumsum(self.sizes)[:-1]]).astype(np.int64)

    @property
    def total_size(self) -> int:
        return int(self.sizes.sum())

    def offset_of(self, name: str) -> int:
        return int(self.offsets[self.names.index(name)])

    def describe(self) -> pd.DataFrame:
        """One row per field: name, kind, size and offset (handy in the chapters)."""
        return pd.DataFrame(
            {
                "field": self.names,
                "kind": ["multi" if f.multi else "single" for f in self.fields],
                "size": self.sizes,
                "offset": self.offsets,
            }
        )

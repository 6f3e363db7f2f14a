"""Categorical feature encoding shared by every model in the book.

A :class:`Field` is one categorical input (``user_id``, ``gender``, ``genres`` ...) with its own
vocabulary. Index 0 is reserved for padding and index 1 for values never seen when the vocabulary
was built, so a field with ``c`` known categories has ``c + 2`` rows. A :class:`Schema` is an
ordered set of fields; it knows each field's size and its offset into **one** embedding table
shared by all fields (``offsets[f] + local_index``), which is how the models look up every field
with a single ``nn.Embedding`` call instead of a Python loop over fields.

Single-valued fields of a row are stored together as one integer matrix ``x`` of shape
``[N, n_single]``; each multi-valued field (a movie's genres) is its own ``[N, L]`` matrix named
after the field, right-padded with 0, whose width ``L`` is the field's ``max_len``: the same for
every split, whatever rows it holds.

Every field has a **role**, ``"user"``, ``"item"`` or ``"context"``: which side of the
recommendation it describes. A model that needs one side only (the item tower of a two-tower
model, the item catalogue) selects its fields with :meth:`Schema.select`.
"""
from __future__ import annotations

import warnings

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from dataclasses import field as dc_field

import numpy as np
import pandas as pd

PAD = 0
UNK = 1
N_RESERVED = 2
ROLES = ("user", "item", "context")
_WARN_ALL_UNKNOWN = 20
"""The sides a field can describe; see :attr:`Field.role`."""


def _kind(values: np.ndarray) -> str:
    """``"number"``, ``"string"`` or ``"other"``: what kind of raw values an array holds."""
    if values.dtype.kind in "iufb":
        return "number"
    if values.dtype.kind in "USO" and len(values):
        sample = values[: min(len(values), 1000)]
        if all(isinstance(v, str) for v in sample):
            return "string"
        if all(isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)
               for v in sample):
            return "number"
    return "other"


@dataclass(frozen=True)
class Field:
    """One categorical field.

    Attributes:
        name: field name, also the key of its tensor when ``multi`` is True.
        categories: the known values; value ``categories[i]`` is encoded as ``i + 2``.
        multi: True for a multi-valued field (a set of categories per row).
        role: ``"user"``, ``"item"`` or ``"context"`` (default): the side this field describes.
        max_len: for a multi-valued field, the width of its ``[N, max_len]`` matrix (default: the
            number of categories, enough for any row); members beyond it are dropped.
    """

    name: str
    categories: tuple
    multi: bool = False
    role: str = "context"
    max_len: int | None = None
    _index: pd.Index = dc_field(init=False, repr=False, compare=False)
    _kind: str = dc_field(init=False, repr=False, compare=False)

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"Field.name: expected a non-empty string, got {self.name!r}")
        if isinstance(self.categories, (str, bytes)):
            raise ValueError(f"Field '{self.name}': categories must be a sequence of values, got the "
                             f"string {self.categories!r} (wrap a single value in a tuple)")
        cats = tuple(self.categories)
        if len(set(cats)) != len(cats):
            raise ValueError(f"Field '{self.name}': categories contain duplicates")
        if self.role not in ROLES:
            raise ValueError(f"Field '{self.name}': role must be one of {ROLES}, got {self.role!r}")
        if self.max_len is not None:
            if not self.multi:
                raise ValueError(f"Field '{self.name}': max_len applies to multi-valued fields only")
            if isinstance(self.max_len, bool) or not isinstance(self.max_len, (int, np.integer)) \
                    or self.max_len < 1:
                raise ValueError(f"Field '{self.name}': max_len must be a positive integer, got {self.max_len!r}")
        elif self.multi:
            object.__setattr__(self, "max_len", max(len(cats), 1))
        object.__setattr__(self, "categories", cats)
        # A hash index makes encoding one vectorised lookup; -1 marks values outside the vocabulary.
        object.__setattr__(self, "_index", pd.Index(cats))
        object.__setattr__(self, "_kind", _kind(np.asarray(cats, dtype=object)) if cats else "other")

    @property
    def size(self) -> int:
        """Rows this field needs in an embedding table (padding and unknown included)."""
        return len(self.categories) + N_RESERVED

    def _check_kind(self, values: np.ndarray) -> None:
        kind = _kind(values)
        if self._kind in ("number", "string") and kind in ("number", "string") and kind != self._kind:
            example = values[0] if len(values) else None
            raise ValueError(
                f"{self.name}: got {'numbers' if kind == 'number' else 'strings'} (e.g. {example!r}, "
                f"dtype {values.dtype}) but the vocabulary holds "
                f"{'numbers' if self._kind == 'number' else 'strings'} (e.g. {self.categories[0]!r}); "
                "convert the values first, or every one of them would be encoded as unknown")

    def encode(self, values) -> np.ndarray:
        """Map raw values to indices; values outside the vocabulary map to ``UNK``.

        Raises ``ValueError`` naming the field if a value is missing (NaN/None), or if the values
        are of another kind than the vocabulary (strings for a vocabulary of numbers, or the other
        way round: every value would silently become unknown). Warns when every one of 20 or more
        values is unknown (a wrong vocabulary or column, most likely).
        """
        if isinstance(values, (str, bytes)):
            raise ValueError(f"{self.name}: expected a sequence of values, got the single string {values!r}")
        values = pd.Series(values) if not isinstance(values, pd.Series) else values
        if values.isna().any():
            raise ValueError(
                f"{self.name}: {int(values.isna().sum())} missing value(s); expected a value in every row"
            )
        raw = values.to_numpy()
        self._check_kind(raw)
        codes = self._index.get_indexer(raw).astype(np.int64)
        # A handful of unknown values is normal (cold-start users); many, all unknown, is a sign of
        # a wrong vocabulary or a wrong column.
        if len(codes) >= _WARN_ALL_UNKNOWN and self.categories and bool((codes < 0).all()):
            warnings.warn(f"{self.name}: all {len(codes)} value(s) are outside the vocabulary and were "
                          "encoded as unknown", stacklevel=2)
        return np.where(codes < 0, UNK, codes + N_RESERVED)

    def encode_multi(self, lists: Sequence[Iterable], max_len: int | None = None) -> np.ndarray:
        """Encode one collection of values per row into a right-padded ``[N, max_len]`` matrix.

        The width is ``max_len`` when given, else the field's own ``max_len``, so every split has
        the same width. Rows repeat a handful of distinct collections (a movie's genres), so each
        distinct one is encoded once and the result gathered for every row.
        """
        if not self.multi:
            raise ValueError(f"{self.name}: encode_multi is for multi-valued fields; use encode")
        if isinstance(lists, (str, bytes)):
            raise ValueError(f"{self.name}: expected one collection of values per row, got the string {lists!r}")
        if max_len is not None and (isinstance(max_len, bool) or not isinstance(max_len, (int, np.integer))
                                    or max_len < 1):
            raise ValueError(f"max_len: expected a positive integer or None, got {max_len!r}")
        rows_in = []
        for i, v in enumerate(lists):
            if isinstance(v, (str, bytes)):
                raise ValueError(f"{self.name}[{i}]: expected a collection of values per row, got the "
                                 f"string {v!r} (it would be split into characters); wrap it: ({v!r},)")
            rows_in.append(tuple(v))
        codes, uniques = pd.factorize(pd.Series(rows_in, dtype=object))
        lookup = {c: i + N_RESERVED for i, c in enumerate(self.categories)}
        rows = [[lookup.get(v, UNK) for v in vals] for vals in uniques]
        width = int(max_len or self.max_len)
        table = np.zeros((len(rows), width), dtype=np.int64)
        for i, r in enumerate(rows):
            r = r[:width]
            table[i, : len(r)] = r
        return table[codes] if len(codes) else np.zeros((0, width), dtype=np.int64)

    def decode(self, index: int):
        """The raw value behind an index (``'<pad>'`` and ``'<unk>'`` for the reserved ones)."""
        if isinstance(index, bool) or not isinstance(index, (int, np.integer)):
            raise ValueError(f"{self.name}: expected an integer index, got {index!r}")
        if not 0 <= index < self.size:
            raise ValueError(f"{self.name}: index {index} is out of range; expected 0 <= index < {self.size}")
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

    def role_of(self, name: str) -> str:
        return self[name].role

    def select(self, role: str) -> list[Field]:
        """The fields of one role (``"user"``, ``"item"`` or ``"context"``), in schema order."""
        if role not in ROLES:
            raise ValueError(f"role: expected one of {ROLES}, got {role!r}")
        return [f for f in self.fields if f.role == role]

    def column(self, name: str) -> int:
        """Column of single-valued field ``name`` in ``x``."""
        f = self[name]
        if f.multi:
            raise ValueError(f"{name}: is multi-valued; it has its own tensor, not a column of x")
        return [g.name for g in self.single].index(name)

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
                "role": [f.role for f in self.fields],
                "kind": ["multi" if f.multi else "single" for f in self.fields],
                "size": self.sizes,
                "offset": self.offsets,
            }
        )

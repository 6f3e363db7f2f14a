"""Inputs of the two-tower retrieval model: one feature row per user and per item, and training
examples cut from leave-last-out sequences.

The two towers never see a CTR row. The user tower reads a user code, the user's demographics and
the items the user consumed before the target; the item tower reads an item code, its release-year
bucket and its genres. Both read the same shared embedding table, so :func:`tower_features` builds
**one** :class:`~recbook.data.Schema` holding the fields of both towers, plus two lookup tables
aligned with the codes: ``users[c]`` holds user code ``c``'s field codes and ``items[c]`` /
``genres[c]`` item code ``c``'s. A batch then only carries codes, and the item tower can embed the
whole catalogue at once from ``items`` and ``genres`` (what full-corpus retrieval needs).

Codes follow the book's one id space: item code = position in ``ml.items`` (sorted by
``item_id``) + 2, so raw item id ``r`` has code ``r + 1`` in MovieLens-100K; 0 is padding and 1
unknown, and rows 0 and 1 of every table are all zero. Users get the same rule over ``ml.users``.

:func:`retrieval_data` turns leave-last-out sequences (item codes, time order with ties kept in
file order) into

* ``train``: one example per position ``t >= min_history`` of each user's training sequence: the
  item at ``t`` is the target, the up to ``history_len`` items before it are the history;
* ``valid`` and ``test``: one row per user, the history being everything before the target (for
  test: the training sequence and the validation item), and ``exclude`` the user's earlier items,
  which full-corpus ranking removes from the user's candidates.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from .._checks import require_columns, require_no_nan, require_positive_int
from .features import N_RESERVED, PAD, Field, Schema
from .protocols import AGE_BUCKETS, YEAR_BUCKETS, SequenceData, age_bucket, item_catalogue, item_field
from .tensors import TensorData

__all__ = [
    "ITEM_FIELDS", "USER_FIELDS", "RetrievalData", "RetrievalSplit", "TowerFeatures",
    "retrieval_data", "tower_features",
]

USER_FIELDS = ("user_id", "age_bucket", "gender", "occupation", "zip1")
"""Single-valued fields of the user tower, in the column order of :attr:`TowerFeatures.users`."""
ITEM_FIELDS = ("item_id", "year_bucket")
"""Single-valued fields of the item tower, in the column order of :attr:`TowerFeatures.items`;
the multi-valued ``genres`` field is :attr:`TowerFeatures.genres`."""


@dataclass(frozen=True, eq=False)
class TowerFeatures:
    """The fields of both towers and one row of field codes per user code and per item code.

    Attributes:
        schema: every field of both towers (``USER_FIELDS``, ``ITEM_FIELDS``, ``genres``), for one
            shared :class:`~recbook.layers.FieldEmbedding`.
        users: int64 ``[n_users, len(USER_FIELDS)]``; row ``c`` holds user code ``c``'s codes
            (column 0 is ``c`` itself); rows 0 and 1 are zero.
        items: int64 ``[n_items, len(ITEM_FIELDS)]``; row ``c`` holds item code ``c``'s codes.
        genres: int64 ``[n_items, G]``; item code ``c``'s genre codes, right-padded with 0.
        titles: the display title of each item code (``""`` for codes 0 and 1).
        item_genres: the genre names of each item code, joined with ``"|"``.
    """

    schema: Schema
    users: torch.Tensor
    items: torch.Tensor
    genres: torch.Tensor
    titles: tuple
    item_genres: tuple

    @property
    def n_users(self) -> int:
        """Number of user codes (reserved codes included): the rows of ``users``."""
        return int(self.users.shape[0])

    @property
    def n_items(self) -> int:
        """Number of item codes (reserved codes included): the columns of a score matrix."""
        return int(self.items.shape[0])

    def user_codes(self, user_ids) -> np.ndarray:
        """Codes of raw user ids; an id outside the vocabulary raises ``ValueError``."""
        codes = self.schema["user_id"].encode(pd.Series(np.asarray(user_ids)))
        if (codes < N_RESERVED).any():
            bad = np.asarray(user_ids)[codes < N_RESERVED][0].item()
            raise ValueError(f"user_id: raw id {bad!r} is not among the {self.n_users - N_RESERVED} known users")
        return codes


def _user_table(users: pd.DataFrame) -> tuple[pd.Series, dict]:
    """Each user's raw side-information values, the way the sequence protocol encodes them."""
    require_columns(users, ["user_id", "age", "gender", "occupation", "zip_code"], name="users")
    require_no_nan(users, ["user_id", "age", "gender", "occupation", "zip_code"], name="users")
    users = users.sort_values("user_id", kind="stable")
    return users["user_id"], {
        "user_id": users["user_id"].to_numpy(), "age_bucket": age_bucket(users["age"].to_numpy()).to_numpy(),
        "gender": users["gender"].astype(str).to_numpy(), "occupation": users["occupation"].astype(str).to_numpy(),
        "zip1": users["zip_code"].astype(str).str[0].to_numpy(),
    }


def _schema_from_tables(ml) -> tuple[Schema, np.ndarray, TensorData]:
    """The sequence protocol's schema built from the user and item tables alone (every user of
    ``ml.users``), with each user's field codes; for data sets given without ratings."""
    from .movielens import GENRES

    require_columns(ml.items, ["item_id", "release_year", *GENRES], name="items")
    ids, cols = _user_table(ml.users)
    width = max(1, int(ml.items[list(GENRES)].to_numpy(dtype=bool).sum(axis=1).max()))
    schema = Schema((
        Field("user_id", tuple(ids.tolist()), role="user"),
        item_field(ml.items),
        Field("age_bucket", AGE_BUCKETS, role="user"),
        Field("gender", ("F", "M"), role="user"),
        Field("occupation", tuple(sorted(set(cols["occupation"]))), role="user"),
        Field("zip1", tuple(sorted(set(cols["zip1"]))), role="user"),
        Field("year_bucket", YEAR_BUCKETS, role="item"),
        Field("genres", tuple(GENRES), multi=True, role="item", max_len=width),
    ))
    per_user = TensorData({f: torch.from_numpy(schema[f].encode(pd.Series(cols[f]))) for f in USER_FIELDS})
    return schema, ids.to_numpy(), per_user


def tower_features(source) -> TowerFeatures:
    """The two towers' schema and feature tables.

    ``source`` is the leave-last-out data of :func:`recbook.data.sequence_protocol` (its
    ``schema``, ``user_features`` and :class:`~recbook.data.ItemCatalogue`), or a loaded data set
    with ``users`` and ``items`` tables shaped like MovieLens-100K's (the same fields, with every
    user of ``users``). Fields: ``user_id``, ``age_bucket``, ``gender``, ``occupation``, ``zip1``
    (first character of the zip code) for the user tower; ``item_id`` (the whole catalogue, so that
    items without training interactions can still be retrieved by their side features),
    ``year_bucket`` and the multi-valued ``genres`` for the item tower. The item rows are the
    catalogue's; this function adds the user rows, indexed by user code.
    """
    if isinstance(source, SequenceData):
        missing = [a for a in ("schema", "user_features", "catalogue") if getattr(source, a) is None]
        if missing:
            raise ValueError(f"source: SequenceData without {missing}; expected "
                             "recbook.data.sequence_protocol(ml)'s result (leave_last_out alone has no features)")
        schema, user_ids, per_user, catalogue = source.schema, source.users, source.user_features, source.catalogue
    elif hasattr(source, "users") and hasattr(source, "items"):
        schema, user_ids, per_user = _schema_from_tables(source)
        catalogue = item_catalogue(source.items, schema)
    else:
        raise ValueError(f"source: expected sequence_protocol(ml)'s SequenceData or a data set with users and "
                         f"items tables, got {type(source).__name__}")
    missing = [f for f in (*USER_FIELDS, *ITEM_FIELDS, "genres") if f not in schema.names]
    if missing:
        raise ValueError(f"source.schema: missing field(s) {missing}; the towers need {[*USER_FIELDS, *ITEM_FIELDS, 'genres']}")
    codes = schema["user_id"].encode(pd.Series(np.asarray(user_ids)))
    u = np.zeros((schema["user_id"].size, len(USER_FIELDS)), dtype=np.int64)
    u[codes] = np.stack([np.asarray(per_user[f]) for f in USER_FIELDS], 1)
    cat = catalogue.features
    items = torch.stack([cat[f] for f in ITEM_FIELDS], 1).to(torch.long)
    frame = catalogue.frame
    titles = ("", "") + tuple(str(t) if not pd.isna(t) else "" for t in frame["title"].iloc[N_RESERVED:])
    item_genres = ("", "") + tuple("|".join(g) for g in frame["genres"].iloc[N_RESERVED:])
    return TowerFeatures(schema, torch.from_numpy(u), items.clone(), cat["genres"].clone(), titles, item_genres)


@dataclass(frozen=True, eq=False)
class RetrievalSplit:
    """The users to retrieve for in one evaluation split.

    Attributes:
        users: ``user_id`` int64 ``[U]`` (user codes) and ``hist_item`` int64 ``[U, L]`` (item
            codes before the target, right-aligned, left-padded with 0), the user tower's input.
        targets: int64 ``[U]``, each user's held-out item code.
        exclude: ``U`` int64 arrays: the item codes each user had before the target, removed from
            that user's candidates (never the target itself).
        n_items: number of item codes (columns of a score matrix).
    """

    users: TensorData
    targets: torch.Tensor
    exclude: list
    n_items: int

    def __len__(self) -> int:
        return int(self.targets.shape[0])

    def to(self, device) -> RetrievalSplit:
        return RetrievalSplit(self.users.to(device), self.targets.to(device), self.exclude, self.n_items)


@dataclass(frozen=True, eq=False)
class RetrievalData:
    """Leave-last-out data for a two-tower model (see the module docstring).

    ``train`` holds ``user_id`` ``[N]``, ``hist_item`` ``[N, L]`` and ``item_id`` ``[N]`` (the
    target item code); ``item_counts`` ``[n_items]`` counts each item code among the training
    targets (the "counts" sampling probabilities of the logQ correction).
    """

    features: TowerFeatures
    train: TensorData
    valid: RetrievalSplit
    test: RetrievalSplit
    item_counts: torch.Tensor
    history_len: int


def _histories(positions: np.ndarray, starts: np.ndarray, flat: np.ndarray, length: int) -> np.ndarray:
    """For each (sequence start, absolute position) the ``length`` items before it, right-aligned."""
    cols = positions[:, None] - length + np.arange(length)[None, :]
    ok = cols >= starts[:, None]
    return np.where(ok, flat[np.clip(cols, 0, max(len(flat) - 1, 0))], PAD).astype(np.int64)


def retrieval_data(seq, features: TowerFeatures | None = None, *, history_len: int = 50, min_history: int = 1
                   ) -> RetrievalData:
    """Training examples and evaluation splits from leave-last-out sequences of item codes.

    Args:
        seq: a :class:`~recbook.data.SequenceData` whose ``train``, ``valid`` and ``test`` hold
            item codes (raw id + 1) and whose ``n_items`` is the number of item codes.
        features: :func:`tower_features` of the same data set (default: ``tower_features(seq)``,
            for the result of :func:`recbook.data.sequence_protocol`).
        history_len: how many of the most recent earlier items the user tower sees.
        min_history: training positions with fewer earlier items are not examples (0 keeps the
            first item of every sequence, predicted from the user's features alone).
    """
    history_len = require_positive_int(history_len, name="history_len")
    if isinstance(min_history, bool) or not isinstance(min_history, (int, np.integer)) or min_history < 0:
        raise ValueError(f"min_history: expected a non-negative integer, got {min_history!r}")
    if features is None:
        features = tower_features(seq)
    if not isinstance(features, TowerFeatures):
        raise ValueError(f"features: expected TowerFeatures (tower_features(ml)), got {type(features).__name__}")
    for attr in ("users", "train", "valid", "test", "n_items"):
        if not hasattr(seq, attr):
            raise ValueError(f"seq: expected leave-last-out SequenceData, missing attribute {attr!r}")
    n_items = features.n_items
    if int(seq.n_items) != n_items:
        raise ValueError(f"seq.n_items: {seq.n_items} item codes, expected {n_items} like features "
                         "(sequences must hold item codes, raw id + 1)")
    n_users = len(seq.users)
    if not (len(seq.train) == len(seq.valid) == len(seq.test) == n_users):
        raise ValueError(f"seq: users, train, valid and test must have one entry per user, got "
                         f"{n_users}, {len(seq.train)}, {len(seq.valid)}, {len(seq.test)}")
    train = [np.asarray(s, dtype=np.int64) for s in seq.train]
    valid = np.asarray(seq.valid, dtype=np.int64)
    test = np.asarray(seq.test, dtype=np.int64)
    for name, arr in (("seq.train", np.concatenate(train) if train else np.zeros(0, np.int64)),
                      ("seq.valid", valid), ("seq.test", test)):
        if arr.size and (arr.min() < N_RESERVED or arr.max() >= n_items):
            bad = int(arr.min()) if arr.min() < N_RESERVED else int(arr.max())
            raise ValueError(f"{name}: item code {bad} out of range [{N_RESERVED}, {n_items}) "
                             "(sequences must hold item codes, raw id + 1)")
    user_codes = features.user_codes(seq.users)

    # Training examples: every position t >= min_history of every training sequence.
    lengths = np.array([len(s) for s in train], dtype=np.int64)
    starts = np.r_[0, np.cumsum(lengths)[:-1]]
    flat = np.concatenate(train) if train else np.zeros(0, np.int64)
    owner = np.repeat(np.arange(n_users), lengths)
    pos = np.arange(len(flat))
    keep = pos - starts[owner] >= min_history
    if not keep.any():
        raise ValueError(f"min_history: {min_history} leaves no training example; sequences are too short")
    ex_pos, ex_owner = pos[keep], owner[keep]
    hist = _histories(ex_pos, starts[ex_owner], flat, history_len)
    train_data = TensorData({
        "user_id": torch.from_numpy(user_codes[ex_owner].astype(np.int64)),
        "hist_item": torch.from_numpy(hist),
        "item_id": torch.from_numpy(flat[ex_pos]),
    })
    counts = torch.from_numpy(np.bincount(flat[ex_pos], minlength=n_items).astype(np.float64))

    def split(histories, targets):
        rows = np.zeros((n_users, history_len), dtype=np.int64)
        for u, h in enumerate(histories):
            h = h[-history_len:]
            if len(h):
                rows[u, history_len - len(h):] = h
        excl = [np.setdiff1d(h, [t]).astype(np.int64) for h, t in zip(histories, targets)]
        users = TensorData({"user_id": torch.from_numpy(user_codes.astype(np.int64)),
                            "hist_item": torch.from_numpy(rows)})
        return RetrievalSplit(users, torch.from_numpy(targets.copy()), excl, n_items)

    valid_split = split(train, valid)
    test_split = split([np.r_[s, v] for s, v in zip(train, valid)], test)
    return RetrievalData(features, train_data, valid_split, test_split, counts, history_len)

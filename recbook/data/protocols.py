"""The book's three evaluation protocols on MovieLens-100K.

1. **CTR rows** (every click-through-rate chapter and the leaderboard): label = rating >= 4; all
   ratings in time order (ties: the file's row order, :func:`time_order`); the first 80% train,
   the next 10% validation, the last 10% test. Fields: user_id, item_id, age bucket, gender,
   occupation, first character of the zip code, release-year bucket and the multi-valued genres.
2. **Behaviour histories** (DIN): for each CTR row, the last ``L`` items the same user rated
   *strictly earlier*, right-aligned (most recent last), left-padded with 0, with a mask.
3. **Leave-last-out sequences** (GRU4Rec, two-tower retrieval): each user's ratings in time order;
   the last item is the test target, the second-last the validation target, the rest train.

Why a time-ordered split rather than a random one: a random split lets the model learn from the
future (a rating made after the one it predicts), which inflates every metric. Time order is what a
deployed recommender faces, including users it has never seen (see the data chapter).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from .._checks import require_columns, require_fraction, require_no_nan, require_positive_int
from .features import N_RESERVED, PAD, UNK, Field, Schema
from .tensors import TensorData

AGE_BUCKETS = ("<18", "18-24", "25-34", "35-44", "45-49", "50-55", "56+")
_AGE_EDGES = [0, 18, 25, 35, 45, 50, 56, np.inf]
YEAR_BUCKETS = ("unknown", "<1950", "1950s", "1960s", "1970s", "1980s", "1990-94",
                "1995", "1996", "1997", "1998")
CTR_FIELDS = ("user_id", "item_id", "age_bucket", "gender", "occupation", "zip1", "year_bucket")
LABEL_THRESHOLD = 4


def age_bucket(age) -> pd.Series:
    """MovieLens-1M style age groups: <18, 18-24, 25-34, 35-44, 45-49, 50-55, 56+."""
    age = pd.Series(age)
    if age.isna().any():
        raise ValueError("age: missing value(s); expected an age in every row")
    return pd.Series(pd.cut(age, _AGE_EDGES, right=False, labels=list(AGE_BUCKETS)).astype(str),
                     index=age.index, name="age_bucket")


def year_bucket(year) -> pd.Series:
    """Release-year buckets: unknown, <1950, decades to the 1980s, 1990-94, then single years."""
    year = pd.Series(year, dtype="Float64")
    y = year.to_numpy(dtype=float, na_value=np.nan)
    labels = np.select(
        [np.isnan(y), y < 1950, y < 1960, y < 1970, y < 1980, y < 1990, y < 1995],
        ["unknown", "<1950", "1950s", "1960s", "1970s", "1980s", "1990-94"],
        default="",
    ).astype(object)
    single = labels == ""
    labels[single] = np.nan_to_num(y[single]).astype(int).astype(str)
    unknown = ~np.isin(labels, YEAR_BUCKETS)
    if unknown.any():
        raise ValueError(f"release_year: {y[unknown][:3].tolist()} outside the buckets {YEAR_BUCKETS}")
    return pd.Series(labels, index=year.index, name="year_bucket")


def _plain(value):
    """A numpy scalar as the Python value it holds, for error messages (``5``, not ``np.int64(5)``)."""
    return value.item() if isinstance(value, np.generic) else value


def _require_unique(frame: pd.DataFrame, key: str, name: str) -> None:
    dup = frame[key].duplicated()
    if dup.any():
        value = frame.loc[dup, key].iloc[0]
        raise ValueError(f"{name}.{key}: {_plain(value)!r} appears {int((frame[key] == value).sum())} "
                         f"times; expected one row per {key} (duplicates would multiply the ratings)")


def _require_same_id_kind(ratings: pd.DataFrame, table: pd.DataFrame, key: str, name: str) -> None:
    numeric = pd.api.types.is_numeric_dtype
    if numeric(ratings[key].dtype) != numeric(table[key].dtype):
        raise ValueError(f"{name}.{key}: has dtype {table[key].dtype} but ratings.{key} has dtype "
                         f"{ratings[key].dtype}; expected the same kind of ids in both tables "
                         "(e.g. convert both to int64)")


def _require_timestamps(frame: pd.DataFrame, name: str) -> None:
    """Timestamps must be numbers (seconds) or datetimes: strings would sort as text, so that
    "999" comes after "1000" and the time order, and with it every split, would be wrong."""
    kind = frame["timestamp"].dtype
    if pd.api.types.is_bool_dtype(kind) or not (pd.api.types.is_numeric_dtype(kind)
                                                or pd.api.types.is_datetime64_any_dtype(kind)):
        example = _plain(frame["timestamp"].iloc[0]) if len(frame) else None
        raise ValueError(f"{name}.timestamp: expected numbers (seconds since 1970) or datetimes, got dtype "
                         f"{kind} (e.g. {example!r}); text would sort as text, not in time order. Convert "
                         "them first, e.g. .astype('int64') or pd.to_datetime(...)")


_RATING_KEY = ["user_id", "item_id", "timestamp"]


def _require_unique_ratings(ratings: pd.DataFrame, why: str) -> None:
    """Refuse a (user_id, item_id, timestamp) row given more than once, saying how often."""
    dup = ratings.duplicated(_RATING_KEY, keep=False)
    if dup.any():
        row = ratings.loc[dup].iloc[0]
        same = np.ones(len(ratings), dtype=bool)
        for c in _RATING_KEY:
            same &= (ratings[c] == row[c]).to_numpy()
        extra = int(ratings.duplicated(_RATING_KEY).sum())
        raise ValueError(f"ratings: the row (user_id={_plain(row['user_id'])}, item_id={_plain(row['item_id'])}, "
                         f"timestamp={_plain(row['timestamp'])}) appears {int(same.sum())} times "
                         f"({extra} repeated row(s) in all); expected each rating once ({why})")


def time_order(frame: pd.DataFrame) -> np.ndarray:
    """Positions that put ``frame``'s rows in time order: by timestamp, ties by row position.

    This is the book's one tie rule. Ratings made in the same second keep the order of the rows
    they came in (for MovieLens-100K, the order of ``u.data``): a fixed, content-free order. A
    tie broken by item id would leak, because ML-100K's item ids are ordered roughly by
    popularity: the test target would become "the highest item id of the user's last second".
    """
    require_columns(frame, ["timestamp"], name="frame")
    _require_timestamps(frame, "frame")
    return np.argsort(frame["timestamp"].to_numpy(), kind="stable")


def ctr_frame(ml) -> pd.DataFrame:
    """All ratings joined with user and item features, labelled, in the protocol's time order.

    Columns: user_id, item_id, rating, timestamp, label, age_bucket, gender, occupation, zip1,
    year_bucket, genres (a tuple of genre names per row). Rows are sorted by timestamp; ratings
    made in the same second keep their order in ``ml.ratings`` (see :func:`time_order`).
    """
    from .movielens import GENRES

    ratings, users, items = ml.ratings, ml.users, ml.items
    require_columns(ratings, ["user_id", "item_id", "rating", "timestamp"], name="ratings")
    require_columns(users, ["user_id", "age", "gender", "occupation", "zip_code"], name="users")
    require_columns(items, ["item_id", "release_year", *GENRES], name="items")
    require_no_nan(ratings, ["user_id", "item_id", "rating", "timestamp"], name="ratings")
    require_no_nan(users, ["user_id", "age", "gender", "occupation", "zip_code"], name="users")
    require_no_nan(items, ["item_id"], name="items")
    _require_timestamps(ratings, "ratings")
    _require_unique_ratings(ratings, "a repeated rating would be counted twice, and could land in two "
                                     "splits at once")
    rating = ratings["rating"]
    if not pd.api.types.is_numeric_dtype(rating.dtype):
        raise ValueError(f"ratings.rating: expected numbers from 1 to 5, got dtype {rating.dtype}")
    bad = ~rating.between(1, 5)
    if bad.any():
        raise ValueError(f"ratings.rating: {_plain(rating[bad].iloc[0])!r} is outside 1-5 "
                         f"({int(bad.sum())} row(s)); expected star ratings from 1 to 5")
    age = users["age"]
    if not pd.api.types.is_numeric_dtype(age.dtype) or (age < 0).any():
        first = age[age < 0].iloc[0] if pd.api.types.is_numeric_dtype(age.dtype) else age.iloc[0]
        raise ValueError(f"users.age: {_plain(first)!r} is not a valid age; expected non-negative numbers")
    _require_unique(users, "user_id", "users")
    _require_unique(items, "item_id", "items")
    _require_same_id_kind(ratings, users, "user_id", "users")
    _require_same_id_kind(ratings, items, "item_id", "items")
    missing_users = ~ratings["user_id"].isin(users["user_id"])
    if missing_users.any():
        raise ValueError(f"ratings.user_id: {ratings.loc[missing_users, 'user_id'].iloc[0]} not in users")
    missing_items = ~ratings["item_id"].isin(items["item_id"])
    if missing_items.any():
        raise ValueError(f"ratings.item_id: {ratings.loc[missing_items, 'item_id'].iloc[0]} not in items")

    u = pd.DataFrame({
        "user_id": users["user_id"].to_numpy(),
        "age_bucket": age_bucket(users["age"]).to_numpy(),
        "gender": users["gender"].astype(str).to_numpy(),
        "occupation": users["occupation"].astype(str).to_numpy(),
        "zip1": users["zip_code"].astype(str).str[0].to_numpy(),
    })
    i = pd.DataFrame({
        "item_id": items["item_id"].to_numpy(),
        "year_bucket": year_bucket(items["release_year"]).to_numpy(),
        "genres": _genre_tuples(items),
    })
    frame = ratings[["user_id", "item_id", "rating", "timestamp"]].reset_index(drop=True)
    frame = frame.merge(u, on="user_id", how="left", validate="many_to_one")
    frame = frame.merge(i, on="item_id", how="left", validate="many_to_one")
    frame["label"] = (frame["rating"] >= LABEL_THRESHOLD).astype(np.float32)
    return frame.iloc[time_order(frame)].reset_index(drop=True)


def _genre_tuples(items: pd.DataFrame) -> list:
    from .movielens import GENRES

    flags = items[list(GENRES)].to_numpy(dtype=bool)
    names = np.array(GENRES, dtype=object)
    return [tuple(names[row]) for row in flags]


def chronological_split(frame: pd.DataFrame, fractions=(0.8, 0.1, 0.1)):
    """Cut an already time-ordered frame into consecutive train/validation/test blocks."""
    if len(fractions) != 3 or abs(sum(fractions) - 1) > 1e-9:
        raise ValueError(f"fractions: expected three numbers summing to 1, got {fractions!r}")
    for name, f in zip(("train", "valid", "test"), fractions):
        require_fraction(f, name=f"fractions[{name}]")
    n = len(frame)
    a = int(round(n * fractions[0]))
    b = int(round(n * (fractions[0] + fractions[1])))
    return frame.iloc[:a], frame.iloc[a:b], frame.iloc[b:]


FIELD_ROLES = {"user_id": "user", "age_bucket": "user", "gender": "user", "occupation": "user",
               "zip1": "user", "item_id": "item", "year_bucket": "item", "genres": "item"}
"""Which side each CTR field describes (:attr:`recbook.data.Field.role`)."""


def item_field(items: pd.DataFrame) -> Field:
    """The ``item_id`` field of every protocol: its vocabulary is the whole item catalogue.

    One id space for the whole book: item ``items.item_id`` sorted, value ``i`` of that order has
    code ``i + 2`` (in MovieLens-100K, raw id ``r`` has code ``r + 1``). CTR rows, behaviour
    histories, leave-last-out sequences and the :class:`ItemCatalogue` all use these codes, so an
    item's embedding means the same in every chapter. The catalogue is known before any rating
    and holds no labels; an item without training rows simply keeps its initial vector.
    """
    require_columns(items, ["item_id"], name="items")
    require_no_nan(items, ["item_id"], name="items")
    _require_unique(items, "item_id", "items")
    return Field("item_id", tuple(np.sort(items["item_id"].to_numpy()).tolist()), role="item")


def ctr_schema(train: pd.DataFrame, users: pd.DataFrame | None = None, items: pd.DataFrame | None = None
               ) -> Schema:
    """Vocabularies for the CTR fields, each with its role.

    ``user_id``, ``occupation`` and ``zip1`` take their vocabularies from the **training rows
    only**: a user who first appears later is encoded as unknown (index 1), the honest cold-start
    situation, and so is an occupation or region first seen after the training block. ``item_id``
    is the catalogue (:func:`item_field`, from ``items``; from the training rows when ``items`` is
    None). The bucket fields and genres have fixed vocabularies; the genres matrix is as wide as
    the most genres any catalogue item has. ``users`` is accepted for backward compatibility and
    not used: side information enters through the training rows.
    """
    from .movielens import GENRES

    require_columns(train, ["user_id", "item_id", "occupation", "zip1", "genres"], name="train")
    if items is not None:
        items_field = item_field(items)
        width = max(1, int(items[list(GENRES)].to_numpy(dtype=bool).sum(axis=1).max()))
    else:
        items_field = Field("item_id", tuple(np.sort(train["item_id"].unique()).tolist()), role="item")
        width = max(1, max((len(g) for g in train["genres"]), default=1))
    return Schema((
        Field("user_id", tuple(np.sort(train["user_id"].unique()).tolist()), role="user"),
        items_field,
        Field("age_bucket", AGE_BUCKETS, role="user"),
        Field("gender", ("F", "M"), role="user"),
        Field("occupation", tuple(sorted(train["occupation"].astype(str).unique())), role="user"),
        Field("zip1", tuple(sorted(train["zip1"].astype(str).unique())), role="user"),
        Field("year_bucket", YEAR_BUCKETS, role="item"),
        Field("genres", tuple(GENRES), multi=True, role="item", max_len=width),
    ))


@dataclass(frozen=True)
class ItemCatalogue:
    """Every item's features as tensors, one row per item code (rows 0 and 1: padding, unknown).

    ``features`` holds one tensor per item field of the schema, aligned with the ``item_id``
    codes: ``features["item_id"][c] == c``, ``features["year_bucket"]`` ``[n]`` and
    ``features["genres"]`` ``[n, G]`` (right-padded with 0). Full ranking scores every row from 2
    on; the two-tower model's item tower embeds them all at once; DIN reads a history item's genres
    from here. ``frame`` holds the readable values (raw ``item_id``, ``title`` when known,
    ``year_bucket``, ``genres``), indexed by code.
    """

    schema: Schema
    features: TensorData
    frame: pd.DataFrame

    def __len__(self) -> int:
        return len(self.features)

    @property
    def n_codes(self) -> int:
        """Rows of the catalogue, reserved codes included: the width of a full score matrix."""
        return len(self.features)

    def codes(self, item_ids) -> np.ndarray:
        """Codes of raw item ids (unknown ids map to 1)."""
        return self.schema["item_id"].encode(pd.Series(np.asarray(item_ids)))

    def ctr_batch(self, schema: Schema, fixed: dict) -> dict:
        """A CTR batch with one row per real item (codes 2, 3, ...): the item fields come from the
        catalogue, every other single-valued field from ``fixed`` (``{field: code}``).

        Scores a user against the whole catalogue with any CTR model, e.g.
        ``model(catalogue.ctr_batch(data.schema, {"user_id": 5, "gender": 3, ...}))``.
        """
        n = self.n_codes - N_RESERVED
        columns = []
        for f in schema.single:
            if f.name in self.features:
                columns.append(self.features[f.name][N_RESERVED:])
            elif f.name in fixed:
                code = int(fixed[f.name])
                if not 0 <= code < f.size:
                    raise ValueError(f"fixed['{f.name}']: code {code} is out of range [0, {f.size})")
                columns.append(torch.full((n,), code, dtype=torch.long))
            else:
                raise ValueError(f"fixed: missing a code for field '{f.name}'; expected one for every "
                                 "single-valued field that is not an item field")
        batch = {"x": torch.stack(columns, dim=1)}
        for f in schema.multi:
            if f.name not in self.features:
                raise ValueError(f"{f.name}: multi-valued field not in the catalogue")
            batch[f.name] = self.features[f.name][N_RESERVED:]
        return batch


def item_catalogue(items: pd.DataFrame, schema: Schema) -> ItemCatalogue:
    """The :class:`ItemCatalogue` of ``items`` under ``schema`` (its fields of role ``"item"``)."""
    from .movielens import GENRES

    require_columns(items, ["item_id", "release_year", *GENRES], name="items")
    item_fields = schema.select("item")
    if "item_id" not in [f.name for f in item_fields]:
        raise ValueError("schema: has no item_id field of role 'item'")
    ids = schema["item_id"]
    by_id = items.set_index("item_id")
    known = np.array(ids.categories)
    missing = ~np.isin(known, by_id.index.to_numpy())
    if missing.any():
        raise ValueError(f"items: item_id {known[missing][0]!r} of the schema's vocabulary is not in items")
    rows = by_id.loc[known]
    n = ids.size
    readable = pd.DataFrame({
        "item_id": pd.array([pd.NA, pd.NA, *known.tolist()], dtype="Int64"),
        "title": pd.array([pd.NA, pd.NA, *(rows["title"].astype(str).tolist() if "title" in rows
                                           else [pd.NA] * len(rows))], dtype="string"),
        "year_bucket": ["<pad>", "<unk>", *year_bucket(rows["release_year"]).tolist()],
        "genres": [(), (), *_genre_tuples(rows.reset_index())],
    })
    readable.index.name = "code"
    tensors = {}
    for f in item_fields:
        if f.name == "item_id":
            tensors[f.name] = torch.arange(n, dtype=torch.long)
        elif f.name == "year_bucket":
            codes = f.encode(readable["year_bucket"].iloc[N_RESERVED:])
            tensors[f.name] = torch.from_numpy(np.r_[PAD, UNK, codes].astype(np.int64))
        elif f.name == "genres":
            codes = f.encode_multi(readable["genres"].tolist())
            tensors[f.name] = torch.from_numpy(codes)
        else:
            raise ValueError(f"schema: no catalogue column for item field '{f.name}'")
    sub = Schema(tuple(item_fields))
    return ItemCatalogue(sub, TensorData(tensors), readable)


def behaviour_histories(frame: pd.DataFrame, max_len: int = 50):
    """For every row, the items the same user rated strictly earlier (the last ``max_len``).

    Returns ``(items, mask)``: ``items`` is an ``[N, max_len]`` int64 array of raw item ids,
    right-aligned (most recent in the last column) and left-padded with 0; ``mask`` is True where
    an item is present. Ratings with the same timestamp as the row are *not* history: they happened
    at the same second, and which came first is unknown. Earlier ratings that share a second keep
    the frame's row order (the book's tie rule, :func:`time_order`). Vectorised: no loop over rows.
    """
    max_len = require_positive_int(max_len, name="max_len")
    require_columns(frame, ["user_id", "item_id", "timestamp"], name="frame")
    _require_timestamps(frame, "frame")
    n = len(frame)
    order = np.lexsort((np.arange(n), frame["timestamp"].to_numpy(), frame["user_id"].to_numpy()))
    users = frame["user_id"].to_numpy()[order]
    ts = frame["timestamp"].to_numpy().astype("datetime64[s]").astype(np.int64)[order]
    items = frame["item_id"].to_numpy()[order]
    # Position where each user's block starts, and, per row, the first position in that block
    # with the same timestamp: everything before it in the block is strictly earlier.
    group_start = np.r_[0, np.flatnonzero(users[1:] != users[:-1]) + 1]
    block = np.repeat(group_start, np.diff(np.r_[group_start, n]))
    new_ts = np.r_[True, (users[1:] != users[:-1]) | (ts[1:] != ts[:-1])]
    first_same_ts = np.maximum.accumulate(np.where(new_ts, np.arange(n), 0))
    end = first_same_ts  # exclusive end of the history, per row (sorted order)
    cols = end[:, None] - max_len + np.arange(max_len)[None, :]
    mask_sorted = cols >= block[:, None]
    hist_sorted = np.where(mask_sorted, items[np.clip(cols, 0, n - 1)], 0)
    hist = np.empty_like(hist_sorted)
    mask = np.empty_like(mask_sorted)
    hist[order] = hist_sorted
    mask[order] = mask_sorted
    return hist, mask


def _check_history(history, n_rows: int):
    """``(items, mask)`` of :func:`behaviour_histories`: two ``[N, L]`` arrays of the same shape,
    raw item ids (0 = padding) and a bool mask that is False wherever the id is padding."""
    if not (isinstance(history, (tuple, list)) and len(history) == 2):
        raise ValueError(f"history: expected a pair (items, mask) from behaviour_histories, got "
                         f"{type(history).__name__}")
    items, mask = (np.asarray(h.cpu() if isinstance(h, torch.Tensor) else h) for h in history)
    if items.ndim != 2:
        raise ValueError(f"history items: expected a 2-D array [rows, L] of item ids, got shape {items.shape}")
    if len(items) != n_rows:
        raise ValueError(f"history: has {len(items)} rows; expected {n_rows} like frame")
    if mask.shape != items.shape:
        raise ValueError(f"history mask: has shape {mask.shape}; expected {items.shape} like the history items "
                         "(one flag per history position)")
    if mask.dtype != np.bool_:
        raise ValueError(f"history mask: expected a bool array (True where an item is present), got dtype "
                         f"{mask.dtype}")
    if not np.issubdtype(items.dtype, np.integer):
        raise ValueError(f"history items: expected integer item ids (0 = padding), got dtype {items.dtype}")
    on_padding = mask & (items == PAD)
    if on_padding.any():
        r, c = (int(v) for v in np.argwhere(on_padding)[0])
        raise ValueError(f"history mask: is True at {int(on_padding.sum()):,} padding position(s) (item id 0), "
                         f"the first at row {r}, column {c}; expected False wherever the item is padding, "
                         "or padding would be pooled as an item")
    return items, mask


def encode_ctr(frame: pd.DataFrame, schema: Schema, *, history=None) -> TensorData:
    """Turn protocol rows into tensors.

    Keys: ``x`` int64 ``[N, S]`` (the single-valued fields, in the schema's order), one int64
    ``[N, max_len]`` matrix per multi-valued field (``genres``; its width is the field's
    ``max_len``, the same for every split), ``label`` float32 ``[N]`` and ``user`` int64 ``[N]``
    (the raw user id, the group for GAUC, since cold-start users all share the unknown index in
    ``x``). With ``history`` = ``(items, mask)`` from :func:`behaviour_histories`: ``hist_item``
    ``[N, L]`` encoded with the item_id vocabulary, and ``hist_mask`` bool ``[N, L]``.
    """
    require_columns(frame, [*(f.name for f in schema.fields), "label", "user_id"], name="frame")
    x = np.stack([f.encode(frame[f.name]) for f in schema.single], axis=1)
    tensors = {"x": torch.from_numpy(x)}
    for f in schema.multi:
        tensors[f.name] = torch.from_numpy(f.encode_multi(frame[f.name].tolist()))
    tensors["label"] = torch.from_numpy(frame["label"].to_numpy(dtype=np.float32, copy=True))
    tensors["user"] = torch.from_numpy(frame["user_id"].to_numpy(dtype=np.int64, copy=True))
    if history is not None:
        items, mask = _check_history(history, len(frame))
        codes = schema["item_id"].encode(pd.Series(items.ravel())).reshape(items.shape)
        tensors["hist_item"] = torch.from_numpy(np.where(mask, codes, 0))
        tensors["hist_mask"] = torch.from_numpy(mask)
    return TensorData(tensors)


@dataclass(frozen=True)
class CTRData:
    """The CTR protocol, encoded. ``frames`` keeps the readable rows behind each split;
    ``catalogue`` every item's features under the same codes."""

    schema: Schema
    train: TensorData
    valid: TensorData
    test: TensorData
    frames: dict
    catalogue: ItemCatalogue | None = None

    def summary(self) -> pd.DataFrame:
        rows = []
        for name in ("train", "valid", "test"):
            f = self.frames[name]
            rows.append({"split": name, "rows": len(f), "positive rate": float(f["label"].mean()),
                         "users": f["user_id"].nunique(), "items": f["item_id"].nunique(),
                         "from": f["timestamp"].min(), "to": f["timestamp"].max()})
        return pd.DataFrame(rows).set_index("split")


def ctr_protocol(ml, *, history_len: int | None = None, fractions=(0.8, 0.1, 0.1)) -> CTRData:
    """The book's CTR protocol on a loaded MovieLens-100K (see the module docstring).

    With ``history_len`` set, each split also carries DIN behaviour histories of that length.
    """
    frame = ctr_frame(ml)
    train, valid, test = chronological_split(frame, fractions)
    sizes = {"train": len(train), "valid": len(valid), "test": len(test)}
    if min(sizes.values()) == 0:
        got = ", ".join(f"{k} {v}" for k, v in sizes.items())
        raise ValueError(f"ratings: {len(frame)} rating(s) split {'/'.join(f'{f:g}' for f in fractions)} by time "
                         f"give {got}; expected at least one rating in each of the train, valid and test "
                         "blocks (more ratings, or other fractions)")
    history = behaviour_histories(frame, history_len) if history_len is not None else None
    schema = ctr_schema(train, items=ml.items)
    parts = {}
    for name, part in (("train", train), ("valid", valid), ("test", test)):
        h = None if history is None else (history[0][part.index], history[1][part.index])
        parts[name] = encode_ctr(part, schema, history=h)
    frames = {"train": train.reset_index(drop=True), "valid": valid.reset_index(drop=True),
              "test": test.reset_index(drop=True)}
    catalogue = item_catalogue(ml.items, schema)
    return CTRData(schema, parts["train"], parts["valid"], parts["test"], frames, catalogue)


# --------------------------------------------------------------------------------------------
# Leave-last-out sequences
# --------------------------------------------------------------------------------------------

SPLITS = ("valid", "test")


@dataclass(frozen=True)
class SequenceData:
    """Leave-last-out sequences of item **codes** (the ``item_id`` field's; 0 = padding).

    ``train[u]`` is user ``users[u]``'s items in time order minus the last two; ``valid[u]`` is the
    second-last item and ``test[u]`` the last one. ``n_items`` is the number of item codes,
    reserved ones included: the width of a full score matrix (columns 0 and 1 are never ranked).

    :func:`sequence_protocol` also fills ``schema`` (user and item fields), ``user_features``
    (one row per user, aligned with ``users``: a tensor of codes per user field) and
    ``catalogue``; :func:`leave_last_out` alone leaves them ``None``.
    """

    users: np.ndarray
    train: list
    valid: np.ndarray
    test: np.ndarray
    n_items: int
    schema: Schema | None = None
    user_features: TensorData | None = None
    catalogue: ItemCatalogue | None = None

    def __len__(self) -> int:
        return len(self.users)

    def targets(self, split: str) -> np.ndarray:
        """The held-out item of every user for ``split`` (``"valid"`` or ``"test"``)."""
        if split not in SPLITS:
            raise ValueError(f"split: expected 'valid' or 'test', got {split!r}")
        return self.valid if split == "valid" else self.test

    def history(self, split: str) -> list:
        """Every user's items before the ``split`` target, in time order: what a model may read
        when it predicts that target (``"valid"``: the training sequence; ``"test"``: the training
        sequence and the validation item)."""
        if split == "valid":
            return [np.asarray(s) for s in self.train]
        if split == "test":
            return [np.r_[s, v] for s, v in zip(self.train, self.valid)]
        raise ValueError(f"split: expected 'valid' or 'test', got {split!r}")

    def seen(self, split: str) -> list:
        """Items to exclude when ranking for ``split`` in the retrieval protocol: everything the
        user had before the target (the same items as :meth:`history`)."""
        return self.history(split)

    def padded(self, max_len: int | None = None, *, split: str | None = None) -> np.ndarray:
        """Sequences as a right-aligned ``[U, L]`` matrix, left-padded with 0 (the last ``L``
        items; ``L`` defaults to the longest sequence). ``split=None`` pads the training
        sequences; ``"valid"`` or ``"test"`` pads :meth:`history` of that split."""
        seqs = self.train if split is None else self.history(split)
        if max_len is None:
            max_len = max(len(s) for s in seqs)
        max_len = require_positive_int(max_len, name="max_len")
        out = np.zeros((len(seqs), max_len), dtype=np.int64)
        for i, s in enumerate(seqs):
            s = s[-max_len:]
            out[i, max_len - len(s):] = s
        return out


def _require_id_column(frame: pd.DataFrame, column: str, name: str) -> None:
    kind = frame[column].dtype
    if not pd.api.types.is_integer_dtype(kind):
        raise ValueError(f"{name}.{column}: expected integer ids, got dtype {kind}"
                         f" (e.g. {_plain(frame[column].iloc[0])!r}); convert them first, e.g. .astype('int64')")


def leave_last_out(ratings: pd.DataFrame, *, items: Field | None = None, min_rating: int | None = None
                   ) -> SequenceData:
    """Per-user chronological sequences: the last item for test, the second-last for validation.

    Items are encoded with ``items`` (the ``item_id`` field, see :func:`item_field`; default: a
    vocabulary of the ratings' own item ids). Each user's ratings are ordered by timestamp, and
    ratings made in the same second keep their order in ``ratings`` (for MovieLens-100K the
    order of ``u.data``): see :func:`time_order` for why never by item id. Users with fewer than 3
    ratings (after ``min_rating``) are dropped; MovieLens-100K has none.
    """
    require_columns(ratings, ["user_id", "item_id", "timestamp"], name="ratings")
    require_no_nan(ratings, ["user_id", "item_id", "timestamp"], name="ratings")
    _require_id_column(ratings, "user_id", "ratings")
    _require_id_column(ratings, "item_id", "ratings")
    _require_timestamps(ratings, "ratings")
    _require_unique_ratings(ratings, "a duplicate would make the validation and test targets equal")
    r = ratings
    if min_rating is not None:
        require_columns(ratings, ["rating"], name="ratings")
        r = r[r["rating"] >= min_rating]
    if items is None:
        items = Field("item_id", tuple(np.sort(ratings["item_id"].unique()).tolist()), role="item")
    elif not isinstance(items, Field) or items.multi:
        raise ValueError(f"items: expected the single-valued item_id Field, got {items!r}")
    codes_all = items.encode(r["item_id"])
    if (codes_all == UNK).any():
        bad = r["item_id"].to_numpy()[codes_all == UNK][0]
        raise ValueError(f"ratings.item_id: {bad!r} is not in the items vocabulary")
    order = np.lexsort((np.arange(len(r)), r["timestamp"].to_numpy(), r["user_id"].to_numpy()))
    user_sorted = r["user_id"].to_numpy()[order]
    codes = codes_all[order].astype(np.int64)
    users, starts, counts = np.unique(user_sorted, return_index=True, return_counts=True)
    keep = counts >= 3
    if not keep.any():
        raise ValueError("ratings: no user has 3 or more ratings; expected at least one")
    train = [codes[s:s + c - 2] for s, c, k in zip(starts, counts, keep) if k]
    valid = np.array([codes[s + c - 2] for s, c, k in zip(starts, counts, keep) if k], dtype=np.int64)
    test = np.array([codes[s + c - 1] for s, c, k in zip(starts, counts, keep) if k], dtype=np.int64)
    return SequenceData(users[keep], train, valid, test, items.size)


USER_FIELDS = ("user_id", "age_bucket", "gender", "occupation", "zip1")


def sequence_protocol(ml) -> SequenceData:
    """The book's leave-last-out protocol on a loaded MovieLens-100K, with features.

    Sequences of item codes from :func:`leave_last_out` under the catalogue vocabulary
    (:func:`item_field`), plus a schema of the user fields (every user is in training here) and
    the item fields, each user's field codes (``user_features``, aligned with ``users``) and the
    :class:`ItemCatalogue`. The retrieval chapter (two-tower) ranks with each user's earlier items
    excluded; the GRU4Rec chapter ranks all items.
    """
    from .movielens import GENRES

    frame = ctr_frame(ml)  # validates the tables; its rows are already in time order
    users = frame.drop_duplicates("user_id").set_index("user_id")
    ids = item_field(ml.items)
    width = max(1, int(ml.items[list(GENRES)].to_numpy(dtype=bool).sum(axis=1).max()))
    schema = Schema((
        Field("user_id", tuple(np.sort(users.index.to_numpy()).tolist()), role="user"),
        ids,
        Field("age_bucket", AGE_BUCKETS, role="user"),
        Field("gender", ("F", "M"), role="user"),
        Field("occupation", tuple(sorted(users["occupation"].astype(str).unique())), role="user"),
        Field("zip1", tuple(sorted(users["zip1"].astype(str).unique())), role="user"),
        Field("year_bucket", YEAR_BUCKETS, role="item"),
        Field("genres", tuple(GENRES), multi=True, role="item", max_len=width),
    ))
    seq = leave_last_out(ml.ratings, items=ids)
    per_user = users.loc[seq.users]
    feats = {name: torch.from_numpy(schema[name].encode(per_user.index.to_series() if name == "user_id"
                                                         else per_user[name]))
             for name in USER_FIELDS}
    return SequenceData(seq.users, seq.train, seq.valid, seq.test, seq.n_items, schema,
                        TensorData(feats), item_catalogue(ml.items, schema))

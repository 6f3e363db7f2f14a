"""The book's three evaluation protocols on MovieLens-100K.

1. **CTR rows** (every click-through-rate chapter and the leaderboard): label = rating >= 4; all
   ratings sorted by (timestamp, user, item); the first 80% train, the next 10% validation, the last
   10% test. Fields: user_id, item_id, age bucket, gender, occupation, first character of the zip
   code, release-year bucket and the multi-valued genres.
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

from .._checks import require_columns, require_fraction, require_int_range, require_no_nan, require_positive_int
from .features import Field, Schema
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


def ctr_frame(ml) -> pd.DataFrame:
    """All ratings joined with user and item features, labelled, in the protocol's time order.

    Columns: user_id, item_id, rating, timestamp, label, age_bucket, gender, occupation, zip1,
    year_bucket, genres (a tuple of genre names per row).
    """
    from .movielens import GENRES

    ratings, users, items = ml.ratings, ml.users, ml.items
    require_columns(ratings, ["user_id", "item_id", "rating", "timestamp"], name="ratings")
    require_columns(users, ["user_id", "age", "gender", "occupation", "zip_code"], name="users")
    require_columns(items, ["item_id", "release_year", *GENRES], name="items")
    require_no_nan(ratings, ["user_id", "item_id", "rating", "timestamp"], name="ratings")
    require_no_nan(users, ["user_id", "age", "gender", "occupation", "zip_code"], name="users")
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
    flags = items[list(GENRES)].to_numpy(dtype=bool)
    names = np.array(GENRES, dtype=object)
    i = pd.DataFrame({
        "item_id": items["item_id"].to_numpy(),
        "year_bucket": year_bucket(items["release_year"]).to_numpy(),
        "genres": [tuple(names[row]) for row in flags],
    })
    frame = ratings[["user_id", "item_id", "rating", "timestamp"]].merge(u, on="user_id", how="left")
    frame = frame.merge(i, on="item_id", how="left")
    frame["label"] = (frame["rating"] >= LABEL_THRESHOLD).astype(np.float32)
    frame = frame.sort_values(["timestamp", "user_id", "item_id"], kind="stable").reset_index(drop=True)
    return frame


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


def ctr_schema(train: pd.DataFrame, users: pd.DataFrame) -> Schema:
    """Vocabularies for the CTR fields.

    user_id and item_id take their vocabulary from the **training rows only**: a user or movie that
    first appears later is encoded as unknown (index 1), the honest cold-start situation.
    Occupation and zip prefix come from the user table (side information known at sign-up, no
    labels involved); the bucket fields have fixed vocabularies.
    """
    from .movielens import GENRES

    return Schema((
        Field("user_id", tuple(np.sort(train["user_id"].unique()).tolist())),
        Field("item_id", tuple(np.sort(train["item_id"].unique()).tolist())),
        Field("age_bucket", AGE_BUCKETS),
        Field("gender", ("F", "M")),
        Field("occupation", tuple(sorted(users["occupation"].astype(str).unique()))),
        Field("zip1", tuple(sorted(users["zip_code"].astype(str).str[0].unique()))),
        Field("year_bucket", YEAR_BUCKETS),
        Field("genres", tuple(GENRES), multi=True),
    ))


def behaviour_histories(frame: pd.DataFrame, max_len: int = 50):
    """For every row, the items the same user rated strictly earlier (the last ``max_len``).

    Returns ``(items, mask)``: ``items`` is an ``[N, max_len]`` int64 array of raw item ids,
    right-aligned (most recent in the last column) and left-padded with 0; ``mask`` is True where
    an item is present. Ratings with the same timestamp as the row are *not* history: they happened
    at the same second, and which came first is unknown. Vectorised: no loop over rows.
    """
    max_len = require_positive_int(max_len, name="max_len")
    require_columns(frame, ["user_id", "item_id", "timestamp"], name="frame")
    order = np.lexsort((frame["item_id"].to_numpy(), frame["timestamp"].to_numpy(),
                        frame["user_id"].to_numpy()))
    users = frame["user_id"].to_numpy()[order]
    ts = frame["timestamp"].to_numpy().astype("datetime64[s]").astype(np.int64)[order]
    items = frame["item_id"].to_numpy()[order]
    n = len(order)
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


def encode_ctr(frame: pd.DataFrame, schema: Schema, *, history=None) -> TensorData:
    """Turn protocol rows into tensors.

    Keys: ``x`` int64 ``[N, 7]`` (the single-valued fields in schema order), ``genres`` int64
    ``[N, G]``, ``label`` float32 ``[N]`` and ``user`` int64 ``[N]`` (the raw user id, the group
    for GAUC, since cold-start users all share the unknown index in ``x``). With ``history`` =
    ``(items, mask)`` from :func:`behaviour_histories`: ``hist_item`` ``[N, L]`` encoded with the
    item_id vocabulary, and ``hist_mask`` bool ``[N, L]``.
    """
    require_columns(frame, [*CTR_FIELDS, "genres", "label"], name="frame")
    x = np.stack([schema[f].encode(frame[f]) for f in CTR_FIELDS], axis=1)
    genres = schema["genres"].encode_multi(frame["genres"].tolist())
    tensors = {
        "x": torch.from_numpy(x),
        "genres": torch.from_numpy(genres),
        "label": torch.from_numpy(frame["label"].to_numpy(dtype=np.float32, copy=True)),
        "user": torch.from_numpy(frame["user_id"].to_numpy(dtype=np.int64, copy=True)),
    }
    if history is not None:
        items, mask = history
        if len(items) != len(frame):
            raise ValueError(f"history: has {len(items)} rows; expected {len(frame)} like frame")
        codes = schema["item_id"].encode(pd.Series(items.ravel())).reshape(items.shape)
        tensors["hist_item"] = torch.from_numpy(np.where(mask, codes, 0))
        tensors["hist_mask"] = torch.from_numpy(mask)
    return TensorData(tensors)


@dataclass(frozen=True)
class CTRData:
    """The CTR protocol, encoded. ``frames`` keeps the readable rows behind each split."""

    schema: Schema
    train: TensorData
    valid: TensorData
    test: TensorData
    frames: dict

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
    history = behaviour_histories(frame, history_len) if history_len is not None else None
    train, valid, test = chronological_split(frame, fractions)
    schema = ctr_schema(train, ml.users)
    parts = {}
    for name, part in (("train", train), ("valid", valid), ("test", test)):
        h = None if history is None else (history[0][part.index], history[1][part.index])
        parts[name] = encode_ctr(part, schema, history=h)
    frames = {"train": train.reset_index(drop=True), "valid": valid.reset_index(drop=True),
              "test": test.reset_index(drop=True)}
    return CTRData(schema, parts["train"], parts["valid"], parts["test"], frames)


@dataclass(frozen=True)
class SequenceData:
    """Leave-last-out sequences. Items keep their raw ids (1..n_items-1); 0 is padding.

    ``train[u]`` is user ``users[u]``'s items in time order minus the last two; ``valid[u]`` is the
    second-last item and ``test[u]`` the last one.
    """

    users: np.ndarray
    train: list
    valid: np.ndarray
    test: np.ndarray
    n_items: int

    def seen(self, split: str) -> list:
        """Items to exclude when ranking for ``split``: everything the user had before the target."""
        if split == "valid":
            return [np.asarray(s) for s in self.train]
        if split == "test":
            return [np.r_[s, v] for s, v in zip(self.train, self.valid)]
        raise ValueError(f"split: expected 'valid' or 'test', got {split!r}")

    def padded(self, max_len: int | None = None) -> np.ndarray:
        """Training sequences as a right-aligned ``[U, L]`` matrix, left-padded with 0."""
        L = max_len or max(len(s) for s in self.train)
        out = np.zeros((len(self.train), L), dtype=np.int64)
        for i, s in enumerate(self.train):
            s = s[-L:]
            out[i, L - len(s):] = s
        return out


def leave_last_out(ratings: pd.DataFrame, *, min_rating: int | None = None, n_items: int | None = None
                   ) -> SequenceData:
    """Per-user chronological sequences with the last item for test and the second-last for
    validation. Ties in time are ordered by item id so the split is deterministic. Users with
    fewer than 3 ratings (after ``min_rating``) are dropped; MovieLens-100K has none.
    """
    require_columns(ratings, ["user_id", "item_id", "timestamp"], name="ratings")
    require_no_nan(ratings, ["user_id", "item_id", "timestamp"], name="ratings")
    r = ratings
    if min_rating is not None:
        require_columns(ratings, ["rating"], name="ratings")
        r = r[r["rating"] >= min_rating]
    n_items = int(n_items or ratings["item_id"].max() + 1)
    require_int_range(r["item_id"].to_numpy(), 1, n_items, field="ratings.item_id")
    r = r.sort_values(["user_id", "timestamp", "item_id"], kind="stable")
    users, starts, counts = np.unique(r["user_id"].to_numpy(), return_index=True, return_counts=True)
    items = r["item_id"].to_numpy(dtype=np.int64)
    keep = counts >= 3
    train = [items[s:s + c - 2] for s, c, k in zip(starts, counts, keep) if k]
    valid = np.array([items[s + c - 2] for s, c, k in zip(starts, counts, keep) if k], dtype=np.int64)
    test = np.array([items[s + c - 1] for s, c, k in zip(starts, counts, keep) if k], dtype=np.int64)
    if not train:
        raise ValueError("ratings: no user has 3 or more ratings; expected at least one")
    return SequenceData(users[keep], train, valid, test, n_items)

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch

from recbook.data import (
    GENRES, UNK, age_bucket, behaviour_histories, chronological_split, ctr_frame, ctr_protocol,
    leave_last_out, year_bucket,
)


def make_ml(n_users=20, n_items=20, n_ratings=300, seed=0):
    """A tiny MovieLens-shaped data set with ties in time, built from a seeded generator."""
    rng = np.random.default_rng(seed)
    pairs = rng.choice(n_users * n_items, size=n_ratings, replace=False)
    ratings = pd.DataFrame({
        "user_id": (pairs // n_items + 1).astype(np.int64),
        "item_id": (pairs % n_items + 1).astype(np.int64),
        "rating": rng.integers(1, 6, n_ratings).astype(np.int64),
        # few distinct seconds, so many ratings share a timestamp
        "timestamp": pd.to_datetime(rng.integers(0, 60, n_ratings) * 1000, unit="s"),
    })
    users = pd.DataFrame({
        "user_id": np.arange(1, n_users + 1, dtype=np.int64),
        "age": rng.integers(10, 70, n_users).astype(np.int64),
        "gender": pd.Categorical(rng.choice(["F", "M"], n_users)),
        "occupation": pd.Categorical(rng.choice(["artist", "writer", "other"], n_users)),
        "zip_code": pd.array(rng.choice(["12345", "T8H1N", "90210"], n_users), dtype="string"),
    })
    items = pd.DataFrame({"item_id": np.arange(1, n_items + 1, dtype=np.int64),
                          "title": pd.array([f"m{i}" for i in range(n_items)], dtype="string"),
                          "release_year": pd.array([None] + list(rng.integers(1930, 1999, n_items - 1)),
                                                   dtype="Int64")})
    flags = rng.random((n_items, len(GENRES))) < 0.2
    for j, g in enumerate(GENRES):
        items[g] = flags[:, j]
    return SimpleNamespace(ratings=ratings, users=users, items=items)


def test_buckets_follow_the_protocol_edges():
    assert list(age_bucket([7, 18, 24, 25, 44, 45, 49, 50, 55, 56, 73])) == [
        "<18", "18-24", "18-24", "25-34", "35-44", "45-49", "45-49", "50-55", "50-55", "56+", "56+"]
    years = pd.array([None, 1922, 1950, 1969, 1975, 1989, 1990, 1994, 1995, 1998], dtype="Int64")
    assert list(year_bucket(years)) == ["unknown", "<1950", "1950s", "1960s", "1970s", "1980s",
                                        "1990-94", "1990-94", "1995", "1998"]
    with pytest.raises(ValueError, match="release_year"):
        year_bucket([2005])


def test_ctr_frame_labels_and_orders_rows():
    ml = make_ml()
    f = ctr_frame(ml)
    assert len(f) == len(ml.ratings)
    np.testing.assert_array_equal(f["label"], (f["rating"] >= 4).astype(np.float32))
    key = list(zip(f["timestamp"], f["user_id"], f["item_id"]))
    assert key == sorted(key)
    # genres come from the item's flags
    row = f.iloc[0]
    flags = ml.items.set_index("item_id").loc[row["item_id"], list(GENRES)]
    assert set(row["genres"]) == {g for g in GENRES if flags[g]}


def test_chronological_split_is_contiguous_and_complete():
    f = ctr_frame(make_ml())
    tr, va, te = chronological_split(f)
    assert (len(tr), len(va), len(te)) == (240, 30, 30)
    assert tr["timestamp"].max() <= va["timestamp"].min() and va["timestamp"].max() <= te["timestamp"].min()
    with pytest.raises(ValueError, match="fractions"):
        chronological_split(f, (0.5, 0.5, 0.5))


def test_ctr_protocol_cold_users_are_unknown_and_groups_keep_raw_ids():
    ml = make_ml(n_users=30, n_ratings=400)
    data = ctr_protocol(ml)
    train_users = set(data.frames["train"]["user_id"])
    test = data.frames["test"]
    cold = ~test["user_id"].isin(train_users).to_numpy()
    x = data.test["x"].numpy()
    assert np.all(x[cold, 0] == UNK) and np.all(x[~cold, 0] > UNK)
    np.testing.assert_array_equal(data.test["user"].numpy(), test["user_id"].to_numpy())
    assert data.train["x"].shape[1] == 7 and data.train["x"].dtype == torch.int64
    assert int(data.train["x"][:, 1].min()) > UNK  # every training item is in the vocabulary
    assert data.summary().loc["train", "rows"] == len(data.train)


def brute_force_history(frame, max_len):
    out = []
    for _, row in frame.iterrows():
        mine = frame[(frame.user_id == row.user_id) & (frame.timestamp < row.timestamp)]
        mine = mine.sort_values(["timestamp", "item_id"])
        out.append(list(mine.item_id)[-max_len:])
    return out


@pytest.mark.parametrize("max_len", [1, 3, 50])
def test_behaviour_histories_match_brute_force(max_len):
    f = ctr_frame(make_ml(n_users=5, n_items=12, n_ratings=50, seed=3))
    items, mask = behaviour_histories(f, max_len)
    assert items.shape == (len(f), max_len) and mask.dtype == bool
    for i, expected in enumerate(brute_force_history(f, max_len)):
        got = items[i][mask[i]].tolist()
        assert got == expected, f"row {i}"
        assert mask[i, max_len - len(expected):].all()  # right-aligned
        assert (items[i][~mask[i]] == 0).all()


def test_histories_in_protocol_are_encoded_with_item_vocabulary():
    data = ctr_protocol(make_ml(), history_len=4)
    h, m = data.train["hist_item"], data.train["hist_mask"]
    assert h.shape == (len(data.train), 4)
    assert torch.all(h[~m] == 0) and torch.all(h[m] >= UNK)


def test_leave_last_out_holds_out_the_last_two_items_in_time():
    ml = make_ml(n_users=6, n_items=14, n_ratings=60, seed=1)
    seq = leave_last_out(ml.ratings)
    for u, tr, va, te in zip(seq.users, seq.train, seq.valid, seq.test):
        mine = ml.ratings[ml.ratings.user_id == u].sort_values(["timestamp", "item_id"])
        assert list(mine.item_id) == list(tr) + [va, te]
    assert seq.n_items == ml.ratings.item_id.max() + 1
    assert all(len(s) == len(t) + 1 for s, t in zip(seq.seen("test"), seq.train))
    padded = seq.padded()
    assert padded.shape[0] == len(seq.users) and list(padded[0][padded[0] > 0]) == list(seq.train[0])
    with pytest.raises(ValueError, match="split"):
        seq.seen("train")


@pytest.mark.parametrize("column", ["user_id", "timestamp"])
def test_bad_input_names_the_field(column):
    ml = make_ml()
    broken = ml.ratings.drop(columns=[column])
    with pytest.raises(ValueError, match=column):
        leave_last_out(broken)
    bad = ml.ratings.copy()
    bad.loc[0, "item_id"] = 999
    with pytest.raises(ValueError, match="item_id"):
        ctr_frame(SimpleNamespace(ratings=bad, users=ml.users, items=ml.items))
    with pytest.raises(ValueError, match="empty"):
        ctr_frame(SimpleNamespace(ratings=ml.ratings.iloc[:0], users=ml.users, items=ml.items))
    nan = ml.users.copy()
    nan["age"] = nan["age"].astype(float)
    nan.loc[0, "age"] = np.nan
    with pytest.raises(ValueError, match="age"):
        ctr_frame(SimpleNamespace(ratings=ml.ratings, users=nan, items=ml.items))

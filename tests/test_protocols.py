"""The book's protocols: CTR rows, behaviour histories, leave-last-out sequences, the item
catalogue, and the conventions they share (one tie rule, one item id space, field roles)."""
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch

from recbook.data import (
    GENRES, N_RESERVED, PAD, UNK, Field, Schema, age_bucket, behaviour_histories, chronological_split,
    ctr_frame, ctr_protocol, ctr_schema, encode_ctr, item_catalogue, item_field, leave_last_out,
    sequence_protocol, time_order, year_bucket,
)
from recbook.metrics import ranking_report


def by_time_then_row(ratings):
    """The tie rule written out: sort by timestamp; equal timestamps keep their row order."""
    keyed = ratings.assign(_row=np.arange(len(ratings)))
    return keyed.sort_values(["timestamp", "_row"])


def test_buckets_follow_the_protocol_edges():
    assert list(age_bucket([7, 18, 24, 25, 44, 45, 49, 50, 55, 56, 73])) == [
        "<18", "18-24", "18-24", "25-34", "35-44", "45-49", "45-49", "50-55", "50-55", "56+", "56+"]
    years = pd.array([None, 1922, 1950, 1969, 1975, 1989, 1990, 1994, 1995, 1998], dtype="Int64")
    assert list(year_bucket(years)) == ["unknown", "<1950", "1950s", "1960s", "1970s", "1980s",
                                        "1990-94", "1990-94", "1995", "1998"]
    with pytest.raises(ValueError, match="release_year"):
        year_bucket([2005])


# --------------------------------------------------------------------------------------------
# One tie rule: timestamp, then the order of the rows
# --------------------------------------------------------------------------------------------

def test_ctr_frame_orders_rows_by_time_then_file_order(make_ml):
    ml = make_ml()
    f = ctr_frame(ml)
    assert len(f) == len(ml.ratings)
    expected = by_time_then_row(ml.ratings)
    assert list(zip(f["user_id"], f["item_id"])) == list(zip(expected["user_id"], expected["item_id"]))
    np.testing.assert_array_equal(f["label"], (f["rating"] >= 4).astype(np.float32))
    row = f.iloc[0]
    flags = ml.items.set_index("item_id").loc[row["item_id"], list(GENRES)]
    assert set(row["genres"]) == {g for g in GENRES if flags[g]}


def test_time_order_keeps_the_row_order_of_a_tie_whatever_the_item_ids():
    t = pd.to_datetime([5, 5, 5, 1], unit="s")
    frame = pd.DataFrame({"timestamp": t, "item_id": [9, 3, 7, 1]})
    assert time_order(frame).tolist() == [3, 0, 1, 2]


def test_leave_last_out_breaks_same_second_ties_by_row_order_not_item_id():
    ratings = pd.DataFrame({
        "user_id": [1, 1, 1, 1, 2, 2, 2],
        # user 1's last two ratings share a second; the later row has the *lower* item id
        "item_id": [10, 20, 30, 5, 1, 2, 3],
        "timestamp": pd.to_datetime([1, 2, 3, 3, 1, 1, 1], unit="s"),
    })
    seq = leave_last_out(ratings)  # own vocabulary: ids 1, 2, 3, 5, 10, 20, 30 -> codes 2..8
    code = dict(zip([1, 2, 3, 5, 10, 20, 30], range(N_RESERVED, N_RESERVED + 7)))
    assert seq.valid[0] == code[30] and seq.test[0] == code[5]  # by item id it would be 30 last
    assert seq.train[1].tolist() == [code[1]] and seq.test[1] == code[3]


def test_leave_last_out_matches_the_tie_rule_on_random_data(make_ml):
    ml = make_ml(n_users=6, n_items=14, n_ratings=60, seed=1, seconds=5)
    ids = item_field(ml.items)
    seq = leave_last_out(ml.ratings, items=ids)
    ordered = by_time_then_row(ml.ratings)
    for u, tr, va, te in zip(seq.users, seq.train, seq.valid, seq.test):
        mine = ids.encode(ordered.loc[ordered.user_id == u, "item_id"]).tolist()
        assert mine == list(tr) + [va, te]
    assert seq.n_items == ids.size == len(ml.items) + N_RESERVED
    assert all((h == np.r_[t, v]).all() for h, t, v in zip(seq.history("test"), seq.train, seq.valid))
    assert all((h == t).all() for h, t in zip(seq.seen("valid"), seq.train))
    padded = seq.padded()
    assert padded.shape[0] == len(seq.users) and list(padded[0][padded[0] > 0]) == list(seq.train[0])
    assert (seq.padded(2, split="test")[:, -1] == seq.valid).all()
    with pytest.raises(ValueError, match="split"):
        seq.seen("train")


def test_behaviour_histories_order_earlier_ties_by_row():
    frame = pd.DataFrame({"user_id": [1, 1, 1, 1], "item_id": [8, 2, 5, 4],
                          "timestamp": pd.to_datetime([1, 1, 1, 2], unit="s")})
    items, mask = behaviour_histories(frame, 3)
    assert items[3].tolist() == [8, 2, 5] and mask[3].all()     # row order, not [2, 5, 8]
    assert not mask[:3].any()                                    # same second: not history


def brute_force_history(frame, max_len):
    out = []
    keyed = frame.assign(_row=np.arange(len(frame)))
    for _, row in keyed.iterrows():
        mine = keyed[(keyed.user_id == row.user_id) & (keyed.timestamp < row.timestamp)]
        out.append(list(mine.sort_values(["timestamp", "_row"]).item_id)[-max_len:])
    return out


@pytest.mark.parametrize("max_len", [1, 3, 50])
def test_behaviour_histories_match_brute_force(make_ml, max_len):
    f = ctr_frame(make_ml(n_users=5, n_items=12, n_ratings=50, seed=3, seconds=10))
    items, mask = behaviour_histories(f, max_len)
    assert items.shape == (len(f), max_len) and mask.dtype == bool
    for i, expected in enumerate(brute_force_history(f, max_len)):
        got = items[i][mask[i]].tolist()
        assert got == expected, f"row {i}"
        assert mask[i, max_len - len(expected):].all()  # right-aligned
        assert (items[i][~mask[i]] == 0).all()


def test_on_movielens_next_higher_id_does_not_beat_most_popular(movielens):
    """The guard the tie rule needs: ML-100K's item ids follow popularity, so a tie rule by item id
    turns the last same-second rating into "the highest id", which a trivial rule predicts."""
    ids = item_field(movielens.items)

    def hit_rates(ratings):
        seq = leave_last_out(ratings, items=ids)
        counts = np.bincount(np.concatenate(seq.train), minlength=seq.n_items).astype(float)
        popular = np.tile(counts, (len(seq), 1))
        # "next higher id": rank items by how little their id exceeds the last item seen
        last = np.array([h[-1] for h in seq.history("test")])
        gap = np.arange(seq.n_items)[None, :] - last[:, None]
        next_id = np.where(gap > 0, -gap, -1e9).astype(float)
        seen = seq.seen("test")
        return (ranking_report(popular, seq.test, ks=(10,), exclude=seen)["hit_rate@10"],
                ranking_report(next_id, seq.test, ks=(10,), exclude=seen)["hit_rate@10"])

    pop, nxt = hit_rates(movielens.ratings)
    assert pop > nxt + 0.02, (pop, nxt)
    # The same two rules with ties broken by item id: the leak the rule prevents.
    by_id = movielens.ratings.sort_values(["timestamp", "item_id"], kind="stable")
    pop_id, nxt_id = hit_rates(by_id)
    assert nxt_id > pop_id, (pop_id, nxt_id)


# --------------------------------------------------------------------------------------------
# One id space, the catalogue, roles
# --------------------------------------------------------------------------------------------

def test_one_item_code_for_ctr_rows_histories_sequences_and_catalogue(make_ml):
    ml = make_ml(n_users=30, n_items=25, n_ratings=400)
    ctr = ctr_protocol(ml, history_len=5)
    seq = sequence_protocol(ml)
    code = {int(r): i + N_RESERVED for i, r in enumerate(sorted(ml.items["item_id"]))}
    col = ctr.schema.column("item_id")
    for split in ("train", "valid", "test"):
        raw = ctr.frames[split]["item_id"].to_numpy()
        assert ctr.__getattribute__(split)["x"][:, col].tolist() == [code[i] for i in raw]
    assert ctr.schema["item_id"] == seq.schema["item_id"] == ctr.catalogue.schema["item_id"]
    raw_hist, mask = behaviour_histories(ctr_frame(ml), 5)
    h = torch.cat([ctr.train["hist_item"], ctr.valid["hist_item"], ctr.test["hist_item"]])
    assert h[torch.from_numpy(mask)].tolist() == [code[i] for i in raw_hist[mask]]
    ordered = by_time_then_row(ml.ratings)
    last = ordered.groupby("user_id")["item_id"].last()
    assert seq.test.tolist() == [code[last[u]] for u in seq.users]
    assert seq.n_items == ctr.catalogue.n_codes == len(ml.items) + N_RESERVED


def test_catalogue_rows_are_aligned_with_item_codes(make_ml):
    ml = make_ml(n_items=15)
    ctr = ctr_protocol(ml)
    cat = ctr.catalogue
    assert cat.features["item_id"].tolist() == list(range(len(ml.items) + N_RESERVED))
    assert (cat.features["genres"][:N_RESERVED] == PAD).all()
    items = ml.items.set_index("item_id")
    for c in range(N_RESERVED, cat.n_codes):
        raw = int(cat.frame.loc[c, "item_id"])
        assert cat.codes([raw]).tolist() == [c]
        expected = {g for g in GENRES if items.loc[raw, g]}
        got = {ctr.schema["genres"].decode(int(g)) for g in cat.features["genres"][c] if g != PAD}
        assert got == expected
        assert ctr.schema["year_bucket"].decode(int(cat.features["year_bucket"][c])) == \
            year_bucket(pd.array([items.loc[raw, "release_year"]], dtype="Int64")).iloc[0]
    # a CTR row rebuilt from the catalogue equals the encoded row
    row = ctr.test["x"][0]
    fixed = {f.name: int(row[ctr.schema.column(f.name)]) for f in ctr.schema.single if f.role != "item"}
    batch = cat.ctr_batch(ctr.schema, fixed)
    item = int(row[ctr.schema.column("item_id")])
    assert torch.equal(batch["x"][item - N_RESERVED], row)
    assert torch.equal(batch["genres"][item - N_RESERVED], ctr.test["genres"][0])
    with pytest.raises(ValueError, match="gender"):
        cat.ctr_batch(ctr.schema, {k: v for k, v in fixed.items() if k != "gender"})


def test_fields_carry_roles_and_schema_selects_by_role(make_ml):
    ctr = ctr_protocol(make_ml())
    assert [f.name for f in ctr.schema.select("item")] == ["item_id", "year_bucket", "genres"]
    assert [f.name for f in ctr.schema.select("user")] == ["user_id", "age_bucket", "gender", "occupation", "zip1"]
    assert ctr.schema.select("context") == []
    with pytest.raises(ValueError, match="role"):
        ctr.schema.select("nope")
    with pytest.raises(ValueError, match="role"):
        Field("a", (1,), role="buyer")


def test_sequence_protocol_user_features_match_the_user_table(make_ml):
    ml = make_ml(n_users=12, n_ratings=150)
    seq = sequence_protocol(ml)
    users = ml.users.set_index("user_id")
    for i, u in enumerate(seq.users):
        assert seq.schema["user_id"].decode(int(seq.user_features["user_id"][i])) == u
        assert seq.schema["gender"].decode(int(seq.user_features["gender"][i])) == users.loc[u, "gender"]
        assert seq.schema["age_bucket"].decode(int(seq.user_features["age_bucket"][i])) == \
            age_bucket([users.loc[u, "age"]]).iloc[0]


# --------------------------------------------------------------------------------------------
# CTR encoding
# --------------------------------------------------------------------------------------------

def test_chronological_split_is_contiguous_and_complete(make_ml):
    f = ctr_frame(make_ml())
    tr, va, te = chronological_split(f)
    assert (len(tr), len(va), len(te)) == (240, 30, 30)
    assert tr["timestamp"].max() <= va["timestamp"].min() and va["timestamp"].max() <= te["timestamp"].min()
    with pytest.raises(ValueError, match="fractions"):
        chronological_split(f, (0.5, 0.5, 0.5))


def test_ctr_protocol_cold_users_are_unknown_and_groups_keep_raw_ids(make_ml):
    ml = make_ml(n_users=30, n_ratings=400)
    data = ctr_protocol(ml)
    train_users = set(data.frames["train"]["user_id"])
    test = data.frames["test"]
    cold = ~test["user_id"].isin(train_users).to_numpy()
    x = data.test["x"].numpy()
    assert np.all(x[cold, 0] == UNK) and np.all(x[~cold, 0] > UNK)
    np.testing.assert_array_equal(data.test["user"].numpy(), test["user_id"].to_numpy())
    assert data.train["x"].shape[1] == 7 and data.train["x"].dtype == torch.int64
    assert int(data.train["x"][:, 1].min()) > UNK
    assert data.summary().loc["train", "rows"] == len(data.train)


def test_vocabularies_come_from_training_rows_only(make_ml):
    ml = make_ml(n_users=30, n_ratings=400)
    # user 7 arrives after everybody else, with a zip prefix and an occupation nobody else has
    late = 7
    ratings = ml.ratings.copy()
    mine = ratings.user_id == late
    ratings.loc[mine, "timestamp"] = ratings["timestamp"].max() + pd.Timedelta(seconds=1)
    users = ml.users.copy()
    users["occupation"] = users["occupation"].astype(str)
    users.loc[users.user_id == late, ["zip_code", "occupation"]] = ["Z9999", "astronaut"]
    changed = SimpleNamespace(ratings=ratings, users=users, items=ml.items)
    data = ctr_protocol(changed)
    assert "Z" not in data.schema["zip1"].categories
    assert "astronaut" not in data.schema["occupation"].categories
    rows = torch.from_numpy((data.frames["test"]["user_id"] == late).to_numpy(copy=True))
    assert (data.test["x"][rows][:, data.schema.column("zip1")] == UNK).all()


def test_genre_width_is_fixed_by_the_schema_not_by_each_split(make_ml):
    ml = make_ml()
    frame = ctr_frame(ml)
    schema = ctr_schema(frame, items=ml.items)
    width = int(ml.items[list(GENRES)].sum(axis=1).max())
    one_genre = frame[frame["genres"].map(len) == 1].iloc[:5]
    assert encode_ctr(one_genre, schema)["genres"].shape == (5, width)
    assert encode_ctr(frame, schema)["genres"].shape[1] == width


def test_encoding_follows_the_schema_order_when_fields_are_permuted(make_ml):
    ml = make_ml()
    frame = ctr_frame(ml)
    schema = ctr_schema(frame, items=ml.items)
    permuted = Schema(tuple(reversed(schema.fields)))
    assert [f.name for f in permuted.single] != [f.name for f in schema.single]
    x = encode_ctr(frame, permuted)["x"]
    for c, f in enumerate(permuted.single):
        decoded = [f.decode(int(v)) for v in x[:20, c]]
        assert decoded == frame[f.name].iloc[:20].astype(str).tolist() if f.name not in ("user_id", "item_id") \
            else decoded == frame[f.name].iloc[:20].tolist()


def test_histories_in_protocol_are_encoded_with_item_codes(make_ml):
    data = ctr_protocol(make_ml(), history_len=4)
    h, m = data.train["hist_item"], data.train["hist_mask"]
    assert h.shape == (len(data.train), 4)
    assert torch.all(h[~m] == 0) and torch.all(h[m] >= N_RESERVED)


# --------------------------------------------------------------------------------------------
# Bad input names the field
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("column", ["user_id", "timestamp"])
def test_bad_input_names_the_field(make_ml, column):
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


def test_catalogue_needs_every_vocabulary_item(make_ml):
    ml = make_ml()
    schema = ctr_schema(ctr_frame(ml), items=ml.items)
    with pytest.raises(ValueError, match="item_id"):
        item_catalogue(ml.items.iloc[1:], schema)

"""Bad input to the protocols and features: a clear ValueError naming the field, before any work.

Cases (each failed silently or with a raw traceback before):
  ctr_frame       ratings outside 1-5; duplicated users / items in the side tables (rows multiplied);
                  ids of different dtypes across tables; negative ages
  leave_last_out  string ids; a duplicated (user, item, timestamp) row
  Field           values of another kind than the vocabulary; all values unknown (warning);
                  decode(-1) / decode(99); encode_multi(max_len=0); a bare string; categories as a string
  SequenceData    padded(0), padded(-1)
  TensorData      subset([]), subset of float indices, an out-of-range row
"""
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch

from recbook.data import Field, TensorData, ctr_frame, leave_last_out


def with_(ml, **tables):
    return SimpleNamespace(**{"ratings": ml.ratings, "users": ml.users, "items": ml.items, **tables})


# ---------------------------------------------------------------- ctr_frame

@pytest.mark.parametrize("value", [0, 6, 10])
def test_ratings_outside_one_to_five(make_ml, value):
    ml = make_ml()
    ratings = ml.ratings.copy()
    ratings.loc[3, "rating"] = value
    with pytest.raises(ValueError, match=rf"ratings.rating: {value} is outside 1-5"):
        ctr_frame(with_(ml, ratings=ratings))


def test_duplicated_users_or_items_would_multiply_rows(make_ml):
    ml = make_ml()
    with pytest.raises(ValueError, match=r"users.user_id: 1 appears 2 times"):
        ctr_frame(with_(ml, users=pd.concat([ml.users, ml.users.iloc[:1]])))
    with pytest.raises(ValueError, match=r"items.item_id: 2 appears 2 times"):
        ctr_frame(with_(ml, items=pd.concat([ml.items, ml.items.iloc[1:2]])))


def test_ids_of_different_kinds_across_tables(make_ml):
    ml = make_ml()
    users = ml.users.astype({"user_id": str})
    with pytest.raises(ValueError, match=r"users.user_id: has dtype \w+ but ratings.user_id has dtype int64"):
        ctr_frame(with_(ml, users=users))


def test_negative_ages(make_ml):
    ml = make_ml()
    users = ml.users.copy()
    users.loc[2, "age"] = -4
    with pytest.raises(ValueError, match=r"users.age: -4 is not a valid age"):
        ctr_frame(with_(ml, users=users))


# ---------------------------------------------------------------- leave_last_out

def test_string_ids(make_ml):
    ratings = make_ml().ratings.astype({"item_id": str})
    with pytest.raises(ValueError, match=r"ratings.item_id: expected integer ids, got dtype \w+"):
        leave_last_out(ratings)


def test_duplicated_rating_rows(make_ml):
    ratings = make_ml().ratings
    twice = pd.concat([ratings, ratings.iloc[[5]]], ignore_index=True)
    with pytest.raises(ValueError, match=r"ratings: the row \(user_id=.*appears .*validation and test"):
        leave_last_out(twice)


# ---------------------------------------------------------------- Field

def test_values_of_another_kind_than_the_vocabulary():
    users = Field("user_id", (196, 186, 22))
    with pytest.raises(ValueError, match=r"user_id: got strings .*'196'.* vocabulary holds numbers"):
        users.encode(pd.Series(["196", "22"]))
    genders = Field("gender", ("F", "M"))
    with pytest.raises(ValueError, match=r"gender: got numbers .* vocabulary holds strings"):
        genders.encode([0, 1])
    assert users.encode(np.array([196.0, 5.0])).tolist() == [2, 1]  # numbers of another dtype are fine


def test_all_values_unknown_warns_but_a_few_do_not():
    f = Field("user_id", (1, 2, 3))
    with pytest.warns(UserWarning, match=r"user_id: all 25 value\(s\) are outside the vocabulary"):
        f.encode(np.arange(100, 125))
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        f.encode([100])   # one cold-start user is normal


@pytest.mark.parametrize("index", [-1, 5, 99])
def test_decode_out_of_range(index):
    with pytest.raises(ValueError, match=rf"gender: index {index} is out of range; expected 0 <= index < 4"):
        Field("gender", ("F", "M")).decode(index)


def test_encode_multi_refuses_zero_width_and_bare_strings():
    g = Field("genres", ("Drama", "Comedy"), multi=True)
    with pytest.raises(ValueError, match=r"max_len: expected a positive integer"):
        g.encode_multi([("Drama",)], max_len=0)
    with pytest.raises(ValueError, match=r"genres\[1\]: .*got the string 'Drama'"):
        g.encode_multi([("Comedy",), "Drama"])
    with pytest.raises(ValueError, match=r"genres: expected one collection of values per row, got the string"):
        g.encode_multi("Drama")
    with pytest.raises(ValueError, match=r"categories must be a sequence of values, got the string"):
        Field("genres", "Drama", multi=True)
    with pytest.raises(ValueError, match=r"max_len must be a positive integer"):
        Field("genres", ("a",), multi=True, max_len=0)


# ---------------------------------------------------------------- SequenceData, TensorData

@pytest.mark.parametrize("max_len", [0, -1, 2.5])
def test_padded_needs_a_positive_length(make_ml, max_len):
    seq = leave_last_out(make_ml().ratings)
    with pytest.raises(ValueError, match=r"max_len: expected a positive integer"):
        seq.padded(max_len)


def test_tensor_data_subset_refuses_empty_float_and_out_of_range():
    d = TensorData(x=torch.arange(10).reshape(5, 2))
    with pytest.raises(ValueError, match=r"index: selects no rows"):
        d.subset([])
    with pytest.raises(ValueError, match=r"index: the slice .* selects no rows"):
        d.subset(slice(3, 3))
    with pytest.raises(ValueError, match=r"index: expected integer row numbers or a boolean mask"):
        d.subset([0.5, 1.0])
    with pytest.raises(ValueError, match=r"index: row 7 is out of range for 5 rows"):
        d.subset([0, 7])
    with pytest.raises(ValueError, match=r"boolean mask of length 2; expected 5"):
        d.subset(torch.tensor([True, False]))
    assert d.subset([4, 0])["x"].tolist() == [[8, 9], [0, 1]]

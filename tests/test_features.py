import numpy as np
import pandas as pd
import pytest
import torch

from recbook.data import PAD, UNK, Field, Schema, TensorData


def test_field_reserves_padding_and_unknown():
    f = Field("gender", ("F", "M"))
    assert f.size == 4
    np.testing.assert_array_equal(f.encode(["M", "F", "X"]), [3, 2, UNK])
    assert f.decode(PAD) == "<pad>" and f.decode(UNK) == "<unk>" and f.decode(3) == "M"


def test_field_rejects_missing_values_naming_the_field():
    with pytest.raises(ValueError, match="occupation"):
        Field("occupation", ("a", "b")).encode(pd.Series(["a", None]))


def test_field_rejects_duplicate_categories():
    with pytest.raises(ValueError, match="duplicates"):
        Field("x", ("a", "a"))


def test_encode_multi_pads_right_and_maps_unknown():
    f = Field("genres", ("Action", "Drama", "War"), multi=True)
    out = f.encode_multi([("Drama",), ("Action", "War", "Noir"), ()])
    np.testing.assert_array_equal(out, [[3, 0, 0], [2, 4, UNK], [0, 0, 0]])


def test_schema_puts_single_fields_first_and_offsets_are_cumulative():
    s = Schema((Field("genres", ("a", "b"), multi=True), Field("user", (1, 2, 3)), Field("g", ("F", "M"))))
    assert s.names == ["user", "g", "genres"]
    np.testing.assert_array_equal(s.sizes, [5, 4, 4])
    np.testing.assert_array_equal(s.offsets, [0, 5, 9])
    assert s.total_size == 13 and s.offset_of("genres") == 9
    assert [f.name for f in s.single] == ["user", "g"] and [f.name for f in s.multi] == ["genres"]
    assert list(s.describe()["offset"]) == [0, 5, 9]


def test_schema_rejects_duplicate_names_and_unknown_lookups():
    with pytest.raises(ValueError, match="duplicate"):
        Schema((Field("a", (1,)), Field("a", (2,))))
    with pytest.raises(KeyError, match="nope"):
        Schema((Field("a", (1,)),))["nope"]


def test_tensor_data_checks_lengths_and_batches_cover_every_row_once():
    d = TensorData(x=torch.arange(10).reshape(5, 2), y=np.arange(5.0))
    assert len(d) == 5 and d.n_batches(2) == 3
    with pytest.raises(ValueError, match="y"):
        TensorData(x=torch.zeros(5), y=torch.zeros(4))
    with pytest.raises(ValueError, match="batch_size"):
        next(d.batches(0))
    g = torch.Generator().manual_seed(0)
    seen = torch.cat([b["y"] for b in d.batches(2, shuffle=True, generator=g)])
    assert sorted(seen.tolist()) == [0, 1, 2, 3, 4]
    ordered = [b["x"] for b in d.batches(2)]
    assert torch.equal(torch.cat(ordered), d["x"])
    # rows stay aligned across tensors after shuffling
    for b in d.batches(3, shuffle=True, generator=g):
        assert torch.equal(b["x"][:, 0] // 2, b["y"].long())


def test_tensor_data_rejects_empty_and_scalars():
    with pytest.raises(ValueError, match="empty"):
        TensorData(x=torch.zeros(0, 3))
    with pytest.raises(ValueError, match="scalar"):
        TensorData(x=torch.tensor(1.0))
    with pytest.raises(ValueError, match="at least one tensor"):
        TensorData()

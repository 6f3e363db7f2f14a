"""Cross-product features: vocabularies against a brute-force pandas groupby, unknown pairs, the
model's one-lookup codes against the readable ones, CrossLinear against a sum over labels, and
input validation."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from recbook.data import (CROSSES, Crosses, Field, Schema, TensorData, build_crosses, ctr_crosses,
                          ctr_protocol, encode_ctr, load_movielens100k)
from recbook.layers import CrossLinear

SMALL_CROSSES = [("gender", "genres"), ("user_id", "item_id"), ("gender", "item_id")]


def small_frame(n=200, seed=0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    genres = ["A", "B", "C", "D"]
    return pd.DataFrame({
        "user_id": rng.integers(0, 12, n),
        "item_id": rng.integers(0, 15, n),
        "gender": rng.choice(["F", "M"], n),
        "genres": [tuple(rng.choice(genres, size=rng.integers(0, 4), replace=False)) for _ in range(n)],
        "label": rng.integers(0, 2, n).astype(np.float32),
    })


def small_schema(train: pd.DataFrame) -> Schema:
    return Schema((
        Field("user_id", tuple(sorted(train["user_id"].unique()))),
        Field("item_id", tuple(sorted(train["item_id"].unique()))),
        Field("gender", ("F", "M")),
        Field("genres", ("A", "B", "C", "D"), multi=True),
    ))


def encode(frame: pd.DataFrame, schema: Schema) -> dict:
    x = np.stack([schema[f.name].encode(frame[f.name]) for f in schema.single], axis=1)
    return {"x": torch.from_numpy(x), "genres": torch.from_numpy(schema["genres"].encode_multi(frame["genres"].tolist(), 3))}


def expected_labels(frame: pd.DataFrame, train: pd.DataFrame, a: str, b: str, min_count: int = 1):
    """Brute force: the readable pair of every row (every member for genres), '<unk>' unless the
    pair occurs in ``train`` at least ``min_count`` times (pandas groupby over exploded rows)."""
    counts = train[[a, b]].explode(b).dropna().groupby([a, b]).size()
    known = set(counts[counts >= min_count].index)
    out = []
    for va, vb in zip(frame[a], frame[b]):
        members = vb if isinstance(vb, tuple) else (vb,)
        out.append([f"{a}={va} × {b}={m}" if (va, m) in known else "<unk>" for m in members])
    return out, len(known)


@pytest.mark.parametrize("min_count", [1, 3])
def test_vocabulary_and_codes_match_a_pandas_groupby(min_count):
    frame = small_frame()
    train, test = frame.iloc[:150], frame.iloc[150:]
    schema = small_schema(train)
    crosses = build_crosses(train, schema, SMALL_CROSSES, min_count=min_count)
    assert crosses.names == ["gender × genres", "user_id × item_id", "gender × item_id"]
    for part in (train, test):
        codes = crosses.codes(encode(part, schema))
        for c in crosses.crosses:
            labels, n_known = expected_labels(part, train, c.a, c.b, min_count)
            assert len(c.pairs) == n_known
            got = codes[c.name] if c.multi else codes["x"][:, [d.name for d in crosses.weight_schema.single].index(c.name)][:, None]
            for row, members in enumerate(labels):
                decoded = [c.decode(int(k)) for k in got[row] if int(k) != 0]  # 0: padding
                assert decoded == members, (c.name, row)
    # The test block has pairs never seen in training, which must be unknown.
    codes = crosses.codes(encode(test, schema))
    assert (codes["x"] == 1).any()


def test_unknown_values_and_padding():
    frame = small_frame()
    train = frame.iloc[:150]
    schema = small_schema(train)
    crosses = build_crosses(train, schema, SMALL_CROSSES)
    c = crosses["user_id × item_id"]
    assert (c.table[1, :] <= 1).all() and (c.table[:, 1] <= 1).all()  # an unknown value: unknown pair
    assert (c.table[0, :] == 0).all() and (c.table[:, 0] == 0).all()  # padding stays padding
    # Codes 2.. are exactly the known pairs, each once.
    known = np.sort(c.table[c.table >= 2])
    np.testing.assert_array_equal(known, np.arange(2, c.size))
    row = pd.DataFrame({"user_id": [999], "item_id": [train["item_id"].iloc[0]], "gender": ["F"],
                        "genres": [("A", "B")], "label": [1.0]})
    codes = crosses.codes(encode(row, schema))
    assert codes["x"][0].tolist()[0] == 1  # user 999 is unknown, so is its pair with any item
    assert crosses["gender × genres"].decode(int(codes["gender × genres"][0, 0])) == "gender=F × genres=A"


def test_cross_linear_adds_the_weights_of_the_rows_pairs():
    frame = small_frame()
    train, test = frame.iloc[:150], frame.iloc[150:]
    schema = small_schema(train)
    crosses = build_crosses(train, schema, SMALL_CROSSES)
    torch.manual_seed(0)
    for pooling in ("mean", "sum"):
        layer = CrossLinear(crosses, pooling=pooling).double()
        with torch.no_grad():
            layer.weight.normal_()
        by_label = dict(zip(crosses.labels(), layer.weight.tolist()))
        assert len(by_label) == crosses.total_size - 2 * (len(crosses) - 1)  # <pad>, <unk> repeat
        by_row = dict(enumerate(layer.weight.tolist()))
        out = layer(encode(test, schema))
        for i, r in enumerate(test.itertuples()):
            expected = 0.0
            for c in crosses.crosses:
                va, vb = getattr(r, c.a), getattr(r, c.b)
                members = vb if c.multi else (vb,)
                offset = int(crosses.weight_schema.offsets[crosses.weight_schema.names.index(c.name)])
                ws = []
                for m in members:
                    label = f"{c.a}={va} × {c.b}={m}"
                    ws.append(by_label[label] if label in by_label else by_row[offset + 1])  # unknown row
                if ws:
                    expected += np.mean(ws) if (pooling == "mean" and c.multi) else np.sum(ws)
            assert out[i].item() == pytest.approx(expected, abs=1e-12), (pooling, i)


def test_cross_linear_trains_only_the_rows_of_the_batch():
    frame = small_frame()
    train = frame.iloc[:150]
    schema = small_schema(train)
    crosses = build_crosses(train, schema, SMALL_CROSSES)
    layer = CrossLinear(crosses)
    batch = encode(train.iloc[:5], schema)
    layer(batch).sum().backward()
    single, multi = layer.rows(batch)
    used = set(single.flatten().tolist())
    mask = batch["genres"] != 0
    used |= set(multi["genres"][mask[:, None, :].expand_as(multi["genres"])].tolist())
    grad = layer.weight.grad
    assert set(torch.nonzero(grad).flatten().tolist()) == used
    # Mean pooling: one row with k = 3 genres gives each of its genre pairs a gradient of 1/3.
    i = int(np.flatnonzero(train["genres"].map(len).to_numpy() == 3)[0])
    layer.weight.grad = None
    one = encode(train.iloc[[i]], schema)
    layer(one).sum().backward()
    rows = layer.rows(one)[1]["genres"][0, 0, :3]  # gender × genres: the row's three pairs
    torch.testing.assert_close(layer.weight.grad[rows], torch.full((3,), 1 / 3))


def test_cross_linear_validates_the_batch():
    frame = small_frame()
    train = frame.iloc[:150]
    schema = small_schema(train)
    layer = CrossLinear(build_crosses(train, schema, SMALL_CROSSES))
    batch = encode(train.iloc[:5], schema)
    batch["x"][2, 2] = 9
    with pytest.raises(ValueError, match=r"x\[:, 2\] \(field 'gender'\): index 9 out of range \[0, 4\)"):
        layer(batch)
    with pytest.raises(ValueError, match="pooling"):
        CrossLinear(build_crosses(train, schema, SMALL_CROSSES), pooling="max")
    with pytest.raises(ValueError, match="crosses: expected a recbook.data.Crosses"):
        CrossLinear(SMALL_CROSSES)


@pytest.mark.parametrize("crosses, message", [
    ([("gender", "year")], r"no field 'year'"),
    ([("genres", "gender")], r"genres × gender: field_a must be single-valued"),
    ([("gender", "gender")], "crossed with itself"),
    ([("gender", "genres"), ("gender", "genres")], "listed twice"),
    ([], "at least one"),
    (["gender"], "pairs of field names"),
])
def test_build_crosses_rejects_bad_specs(crosses, message):
    frame = small_frame()
    with pytest.raises(ValueError, match=message):
        build_crosses(frame, small_schema(frame), crosses)


def test_build_crosses_rejects_bad_frames_and_counts():
    frame = small_frame()
    schema = small_schema(frame)
    with pytest.raises(ValueError, match=r"train: missing column\(s\) \['gender'\]"):
        build_crosses(frame.drop(columns="gender"), schema, SMALL_CROSSES)
    with pytest.raises(ValueError, match="min_count"):
        build_crosses(frame, schema, SMALL_CROSSES, min_count=0)
    with pytest.raises(ValueError, match="data: expected a recbook.data.CTRData"):
        ctr_crosses(frame)
    crosses = build_crosses(frame, schema, SMALL_CROSSES)
    with pytest.raises(ValueError, match="row: expected an integer"):
        crosses.label(crosses.total_size)
    with pytest.raises(KeyError, match="no cross named"):
        crosses["gender × user_id"]


def test_ctr_crosses_on_movielens_match_a_groupby_of_the_training_rows():
    data = ctr_protocol(load_movielens100k(progress=False))
    crosses = ctr_crosses(data)
    assert isinstance(crosses, Crosses) and [tuple(n.split(" × ")) for n in crosses.names] == list(CROSSES)
    train, valid = data.frames["train"], data.frames["valid"]
    layer = CrossLinear(crosses)
    single, multi = layer.rows(dict(data.valid))
    codes = crosses.codes(dict(data.valid))
    ws = crosses.weight_schema
    for c in crosses.crosses:
        counts = train[[c.a, c.b]].explode(c.b).groupby([c.a, c.b]).size()
        assert len(c.pairs) == len(counts), c.name
        # Share of validation (row, member) pairs seen in training: brute force vs codes.
        v = valid[[c.a, c.b]].explode(c.b) if c.multi else valid[[c.a, c.b]]
        seen = pd.MultiIndex.from_frame(v).isin(counts.index).mean()
        got = codes[c.name] if c.multi else codes["x"][:, [f.name for f in ws.single].index(c.name)]
        got = got[got != 0]
        assert (got >= 2).float().mean().item() == pytest.approx(seen), c.name
        # The model's one-lookup rows are the readable codes plus the cross's offset.
        offset = int(ws.offsets[ws.names.index(c.name)])
        if c.multi:
            j = [d.name for d in ws.multi if d.name.endswith(c.b)].index(c.name)
            torch.testing.assert_close(multi[c.b][:, j], codes[c.name] + offset)
    assert crosses.label(int(ws.offsets[ws.names.index("occupation × genres")]) + 2).startswith(
        "occupation=administrator × genres=")

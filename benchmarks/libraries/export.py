"""Write the book's exact protocols as plain files, for the established libraries to read.

Run with recbook's own environment (``python benchmarks/libraries/export.py [--out DIR]``).
Every file holds *codes* exactly as recbook encodes them (0 = padding, 1 = unknown, item code =
raw item id + 1, user/occupation/zip vocabularies from the CTR training rows), so every library
sees the same rows, the same vocabularies and the same time order as recbook.

Files (default folder ``_build/libraries/data``):

* ``ctr_train.csv``, ``ctr_valid.csv``, ``ctr_test.csv`` — the CTR rows in time order: the seven
  single-valued fields (``user_id``, ``item_id``, ``age_bucket``, ``gender``, ``occupation``,
  ``zip1``, ``year_bucket``), the genres as ``genre_0..genre_{G-1}`` (right-padded with 0),
  ``label``, ``user`` (the raw user id: the GAUC group), ``timestamp`` (seconds), ``row`` (the
  row's position in the protocol's time order) and the behaviour history ``hist_0..hist_49``
  (item codes, right-aligned, most recent last, 0 = padding).
* ``items.csv`` — the item catalogue: one row per item code (2..), its ``year_bucket`` code and
  genre codes, and the raw item id.
* ``sequences.csv`` — the leave-last-out protocol in long form: ``user`` (raw id), ``user_code``
  (0..U-1, the row of the user in recbook's ``SequenceData``), ``item_id`` (code), ``timestamp``,
  ``position`` (0-based, in the book's time order) and ``split`` (``train``, ``valid``, ``test``).
* ``users.csv`` — one row per user of the sequences: raw ``user``, ``user_code`` and the codes of
  the user fields under the sequence protocol's schema (``user_id``, ``age_bucket``, ``gender``,
  ``occupation``, ``zip1``).
* ``meta.json`` — field sizes (number of codes, reserved ones included), the vocabularies (code ->
  raw value), the history length, row counts and a checksum of the MovieLens tables.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
DEFAULT_OUT = ROOT / "_build" / "libraries" / "data"


def ctr_table(data, split: str) -> pd.DataFrame:
    """One split of recbook's CTR protocol as a flat table of codes."""
    t = getattr(data, split)
    frame = data.frames[split]
    names = [f.name for f in data.schema.single]
    out = pd.DataFrame(t["x"].numpy(), columns=names)
    genres = t["genres"].numpy()
    for j in range(genres.shape[1]):
        out[f"genre_{j}"] = genres[:, j]
    out["label"] = t["label"].numpy().astype(np.int8)
    out["user"] = t["user"].numpy()
    out["timestamp"] = frame["timestamp"].to_numpy().astype("datetime64[s]").astype(np.int64)
    hist = t["hist_item"].numpy()
    for j in range(hist.shape[1]):
        out[f"hist_{j}"] = hist[:, j]
    return out


def export(out: Path) -> dict:
    from recbook.bench import CTR_HISTORY_LEN, movielens_checksum
    from recbook.data import ctr_protocol, load_movielens100k, sequence_protocol

    ml = load_movielens100k(progress=False)
    out.mkdir(parents=True, exist_ok=True)
    data = ctr_protocol(ml, history_len=CTR_HISTORY_LEN)
    offset = 0
    counts = {}
    for split in ("train", "valid", "test"):
        table = ctr_table(data, split)
        table.insert(len(table.columns) - CTR_HISTORY_LEN, "row", np.arange(offset, offset + len(table)))
        offset += len(table)
        table.to_csv(out / f"ctr_{split}.csv", index=False)
        counts[f"ctr_{split}"] = len(table)

    cat = data.catalogue
    items = pd.DataFrame({"item_id": cat.features["item_id"].numpy(),
                          "year_bucket": cat.features["year_bucket"].numpy()})
    g = cat.features["genres"].numpy()
    for j in range(g.shape[1]):
        items[f"genre_{j}"] = g[:, j]
    items["raw_item_id"] = cat.frame["item_id"].to_numpy()
    items = items.iloc[2:].astype({"raw_item_id": np.int64})  # codes 0 and 1: padding, unknown
    items.to_csv(out / "items.csv", index=False)

    seq = sequence_protocol(ml)
    # The timestamp of every (user, code) position: the ratings in the book's time order.
    frame_ts = _sequence_timestamps(ml, seq)
    rows = []
    for u, user in enumerate(seq.users):
        items_u = np.r_[seq.train[u], seq.valid[u], seq.test[u]]
        n = len(items_u)
        split = np.array(["train"] * (n - 2) + ["valid", "test"])
        rows.append(pd.DataFrame({"user": int(user), "user_code": u, "item_id": items_u,
                                  "timestamp": frame_ts[u], "position": np.arange(n), "split": split}))
    seqs = pd.concat(rows, ignore_index=True)
    seqs.to_csv(out / "sequences.csv", index=False)
    users = pd.DataFrame({"user": seq.users.astype(np.int64), "user_code": np.arange(len(seq))})
    for name in seq.user_features.keys():
        users[name] = seq.user_features[name].numpy()
    users.to_csv(out / "users.csv", index=False)
    counts["sequence_users"] = len(seq)
    counts["sequence_events"] = len(seqs)

    meta = {
        "checksum": movielens_checksum(),
        "history_len": CTR_HISTORY_LEN,
        "single_fields": [f.name for f in data.schema.single],
        "field_sizes": {f.name: f.size for f in data.schema.fields},
        "genre_width": int(g.shape[1]),
        "vocabularies": {f.name: ["<pad>", "<unk>", *map(str, f.categories)] for f in data.schema.fields},
        "sequence_n_items": int(seq.n_items),
        "sequence_field_sizes": {f.name: f.size for f in seq.schema.fields},
        "counts": counts,
    }
    (out / "meta.json").write_text(json.dumps(meta, indent=1))
    return meta


def _sequence_timestamps(ml, seq) -> list:
    """Per user of ``seq``, the timestamps of the items of its full sequence, in the same order."""
    from recbook.data import time_order

    r = ml.ratings.reset_index(drop=True)
    r = r.iloc[time_order(r)]
    ts = r["timestamp"].to_numpy().astype("datetime64[s]").astype(np.int64)
    by_user = pd.Series(ts).groupby(r["user_id"].to_numpy(), sort=True)
    out = []
    groups = {k: v.to_numpy() for k, v in by_user}
    codes_check = {k: v.to_numpy() for k, v in pd.Series(r["item_id"].to_numpy() + 1).groupby(
        r["user_id"].to_numpy(), sort=True)}
    for u, user in enumerate(seq.users):
        full = np.r_[seq.train[u], seq.valid[u], seq.test[u]]
        if not np.array_equal(codes_check[user], full):
            raise RuntimeError(f"user {user}: the sequence does not match the ratings in time order")
        out.append(groups[user])
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = p.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    meta = export(args.out)
    print(f"wrote {args.out}: " + ", ".join(f"{k} {v}" for k, v in meta["counts"].items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())

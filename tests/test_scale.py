"""recbook.scale: the seeded click generator, the MovieLens loader, the distributed exactness
checks (DDP against one process; TorchRec's sharded model against the unsharded one), and clean
failure of the launcher (bad arguments, timeouts that leave no process behind)."""
from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from recbook.scale.data import (ClickStream, filter_and_hash, load_movielens_ratings, ratings_to_clicks,
                                vocabulary_stats)
from recbook.scale.launch import run_distributed
from recbook.scale.model import ScaleCTR, initial_weights

HAS_TORCHREC = importlib.util.find_spec("torchrec") is not None and importlib.util.find_spec("fbgemm_gpu") is not None
needs_torchrec = pytest.mark.skipif(
    not HAS_TORCHREC, reason="TorchRec is not installed (install fbgemm-gpu-cpu==1.8.0, then torchrec==1.8.0 --no-deps)")


# ------------------------------------------------------------------------------------ generator
def test_chunks_depend_only_on_seed_and_index():
    s = ClickStream(rows=[1000, 500, 20], num_fields=3, chunk_rows=256, seed=3)
    a_ids, a_y = s.chunk(5)
    b_ids, b_y = ClickStream(rows=[1000, 500, 20], num_fields=3, chunk_rows=256, seed=3).chunk(5)
    assert np.array_equal(a_ids, b_ids) and np.array_equal(a_y, b_y)
    c_ids, _ = s.chunk(6)
    d_ids, _ = ClickStream(rows=[1000, 500, 20], num_fields=3, chunk_rows=256, seed=4).chunk(5)
    assert not np.array_equal(a_ids, c_ids) and not np.array_equal(a_ids, d_ids)
    assert a_ids.shape == (256, 3) and a_ids.dtype == np.int64 and a_y.dtype == np.float32
    assert (a_ids >= 0).all() and (a_ids < np.array([1000, 500, 20])).all()
    assert set(np.unique(a_y)) <= {0.0, 1.0}


def test_shards_partition_the_stream():
    s = ClickStream(rows=5000, chunk_rows=100, seed=1)
    whole = np.concatenate([s.chunk(c)[0] for c in range(7)])
    shards = [list(s.shard(r, 3, 7)) for r in range(3)]
    assert [len(x) for x in shards] == [3, 2, 2]
    rebuilt = {c: shards[c % 3][c // 3][0] for c in range(7)}
    assert np.array_equal(np.concatenate([rebuilt[c] for c in range(7)]), whole)


def test_ids_follow_a_power_law_and_labels_carry_the_groups():
    s = ClickStream(rows=100_000, chunk_rows=200_000, seed=0)
    ids, y = s.chunk(0)
    counts = np.sort(np.bincount(ids[:, 1], minlength=100_000))[::-1]
    assert counts[:1000].sum() / counts.sum() > 0.4  # the top 1% of ids: a large share of rows
    assert (counts == 0).mean() > 0.5  # most ids never occur in 200k rows
    match = s.group(ids[:, 0], 0) == s.group(ids[:, 1], 1)
    assert y[match].mean() > y[~match].mean() + 0.3


def test_vocabulary_stats_and_filter_hash():
    s = ClickStream(rows=20_000, chunk_rows=1000, seed=0)
    stats = vocabulary_stats(s, 8, checkpoints=[1, 4, 8])
    assert list(stats["rows"]) == [1000, 4000, 8000]
    assert stats["distinct"].is_monotonic_increasing and (stats["distinct"] < stats["rows"]).all()
    counts = np.array([5, 0, 1, 1, 3, 0, 10])
    t = filter_and_hash(counts, min_counts=[1, 2, 4], buckets=[1, 1000])
    f = t[t["method"] == "filter"].set_index("param")
    assert f.loc[1, "rows_affected"] == 0 and f.loc[2, "rows_affected"] == pytest.approx(2 / 20)
    assert f.loc[4, "rows_affected"] == pytest.approx(5 / 20) and f.loc[4, "table_rows"] == 3
    h = t[t["method"] == "hash"].set_index("param")
    assert h.loc[1, "rows_affected"] == 1.0  # one bucket: every id collides


@pytest.mark.parametrize("kwargs, field", [
    ({"rows": 0}, "rows[0]"), ({"num_fields": 1}, "num_fields"), ({"alpha": 1.0}, "alpha"),
    ({"rows": [10, 10, 10]}, "rows"), ({"chunk_rows": -1}, "chunk_rows"), ({"seed": -1}, "seed"),
])
def test_generator_rejects_bad_arguments(kwargs, field):
    with pytest.raises(ValueError, match=field.replace("[", r"\[").replace("]", r"\]")):
        ClickStream(**kwargs)


def test_generator_rejects_bad_shard_and_chunk():
    s = ClickStream(rows=100)
    with pytest.raises(ValueError, match="rank"):
        list(s.shard(2, 2, 4))
    with pytest.raises(ValueError, match="index"):
        s.chunk(-1)
    with pytest.raises(ValueError, match="counts"):
        filter_and_hash(np.array([0.5, 1.0]))


# -------------------------------------------------------------------------------------- loader
def test_loader_reads_ml1m_and_ml20m_formats(tmp_path):
    dat = tmp_path / "ratings.dat"
    dat.write_text("1::1193::5::978300760\n1::661::3::978302109\n2::1193::4::978298413\n", encoding="utf-8")
    csv = tmp_path / "ratings.csv"
    csv.write_text("userId,movieId,rating,timestamp\n1,2,3.5,1112486027\n1,29,4.0,1112484676\n7,2,5.0,1\n",
                   encoding="utf-8")
    one = load_movielens_ratings(dat)
    twenty = load_movielens_ratings(csv)
    assert list(one.columns) == ["user", "item", "rating", "timestamp"] and len(one) == 3
    assert one["item"].tolist() == [1193, 661, 1193] and twenty["rating"].tolist() == [3.5, 4.0, 5.0]
    ids, labels, sizes = ratings_to_clicks(one)
    assert ids.tolist() == [[0, 0], [0, 1], [1, 0]] and labels.tolist() == [1.0, 0.0, 1.0] and sizes == (2, 2)


def test_loader_errors_name_the_problem(tmp_path):
    with pytest.raises(ValueError, match="path: .* is not a file"):
        load_movielens_ratings(tmp_path / "missing.dat")
    bad = tmp_path / "u.data"
    bad.write_text("1\t2\t3\t4\n", encoding="utf-8")
    with pytest.raises(ValueError, match="expected 'user::item::rating::timestamp'"):
        load_movielens_ratings(bad)
    with pytest.raises(ValueError, match="ratings: missing column"):
        ratings_to_clicks(pd.DataFrame({"user": [1]}))


# --------------------------------------------------------------------------------------- model
def test_model_shapes_and_sparse_gradients():
    m = ScaleCTR([100, 50], dim=4, hidden=[8], sparse=True, seed=0)
    ids = torch.tensor([[1, 2], [3, 4], [1, 49]])
    out = m(ids)
    assert out.shape == (3,)
    out.sum().backward()
    assert m.tables[0].weight.grad.is_sparse
    same = ScaleCTR([100, 50], dim=4, hidden=[8], sparse=False, seed=0)
    assert torch.equal(same(ids), out.detach())
    with pytest.raises(ValueError, match=r"ids: expected shape \[batch, 2\]"):
        m(torch.zeros(3, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="field_rows"):
        initial_weights(100, 4)


# --------------------------------------------------------------------------------- launcher
@pytest.mark.parametrize("kwargs, match", [
    ({"nproc": 0}, "nproc"), ({"timeout": -1}, "timeout"), ({"tasks": ["train"]}, "tasks"),
    ({"batch": 4095}, "batch"), ({"sizes": [1]}, "overrides"),
])
def test_launcher_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        run_distributed(**kwargs)


def test_launcher_timeout_ends_every_process(monkeypatch):
    started = []
    real = subprocess.Popen

    def spy(*a, **k):
        p = real(*a, **k)
        started.append(p)
        return p

    monkeypatch.setattr(subprocess, "Popen", spy)
    with pytest.raises(TimeoutError, match="did not finish within"):
        # a run of minutes, stopped after 10 s (when the workers are running)
        run_distributed(tasks=["cost"], cost_sizes=[1_000_000], strategies=["ddp_dense"], cost_steps=1000,
                        timeout=10)
    (proc,) = started
    assert proc.poll() is not None
    with pytest.raises(ProcessLookupError):
        os.killpg(proc.pid, 0)  # nothing of the group it started is left
    config = proc.args[-2]  # the workers run in sessions of their own: none may name its config
    time.sleep(0.5)
    left = []
    for cmd in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if config in cmd.read_bytes().decode(errors="replace"):
                left.append(cmd.parent.name)
        except OSError:
            pass
    assert not left, f"processes left behind: {left}"


def test_ddp_gradients_equal_one_process_on_the_global_batch():
    out = run_distributed(tasks=["ddp_exact"], timeout=240)["ddp_exact"]
    for kind in ("dense", "sparse"):
        assert out[kind]["max_grad"] > 1e-4  # a non-trivial gradient ...
        assert out[kind]["max_grad_diff"] < 1e-6  # ... equal to float rounding
    assert out["sparse"]["sparse_grad"] and not out["dense"]["sparse_grad"]


@needs_torchrec
def test_torchrec_sharded_model_equals_unsharded():
    out = run_distributed(tasks=["torchrec_exact"], timeout=240)["torchrec_exact"]
    tw, cw = out["table_wise"], out["column_wise"]
    for res in (tw, cw):
        assert res["forward_max_diff"] < 1e-6 and res["step_max_diff"] < 1e-6
        assert sum(res["embedding_bytes"]) == out["full_embedding_bytes"]  # every row held exactly once
    assert {r["sharding"] for r in tw["plan"]} == {"table_wise"} and {r["rank"] for r in tw["plan"]} == {0, 1}
    assert all(r["cols"] == 8 for r in cw["plan"])  # column-wise: each table split into two halves of 16
    # table-wise output keys come in plan order; reading .values() would permute the MLP input
    assert tw["output_keys"] != tw["declared_keys"] and tw["plan_order_max_diff"] > 1e-3

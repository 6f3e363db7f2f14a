"""Vector indexes: exact top-K against a full argsort, faiss IVF and HNSW against exact search,
the optional-dependency error, the clustered-vector generator and the ANN benchmark on a small size."""
from __future__ import annotations

import builtins

import numpy as np
import pandas as pd
import pytest
import torch

from recbook import ann_bench
from recbook.retrieval import ExactIndex, HNSWIndex, IVFFlatIndex, import_faiss


def unit(n, d, seed):
    x = np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_exact_topk_equals_full_argsort():
    base, queries = unit(500, 16, 0), unit(37, 16, 1)
    index = ExactIndex(block_entries=2000)  # several query blocks
    index.add(base[:200])
    index.add(torch.from_numpy(base[200:]))  # numpy and torch, in two parts
    scores, ids = index.search(queries, 25)
    full = queries.astype(np.float64) @ base.T.astype(np.float64)
    want = np.argsort(-full, axis=1, kind="stable")[:, :25]
    np.testing.assert_array_equal(ids.numpy(), want)
    np.testing.assert_allclose(scores.numpy(), np.take_along_axis(full, want, 1), rtol=1e-5, atol=1e-6)
    assert ids.dtype == torch.long and scores.dtype == torch.float32


def test_exact_pads_when_k_exceeds_the_vectors_and_validates():
    index = ExactIndex()
    with pytest.raises(ValueError, match="index: is empty"):
        index.search(unit(1, 4, 0), 3)
    index.add(unit(3, 4, 0))
    scores, ids = index.search(unit(2, 4, 1), 5)
    assert (ids[:, 3:] == -1).all() and torch.isinf(scores[:, 3:]).all()
    assert sorted(ids[0, :3].tolist()) == [0, 1, 2]
    with pytest.raises(ValueError, match="queries: vectors of dimension 5"):
        index.search(unit(2, 5, 0), 2)
    with pytest.raises(ValueError, match="k: expected a positive integer"):
        index.search(unit(2, 4, 0), 0)
    with pytest.raises(ValueError, match="vectors: contains NaN"):
        index.add(np.full((1, 4), np.nan, dtype=np.float32))
    with pytest.raises(ValueError, match="vectors: expected a float"):
        index.add(np.zeros((2, 4), dtype=np.int64))


@pytest.fixture
def faiss():
    return pytest.importorskip("faiss")


def same_neighbours(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(np.mean([len(set(x) & set(y)) / len(x) for x, y in zip(a.tolist(), b.tolist())]))


def test_ivf_probing_every_cell_is_exact(faiss):
    base, queries = unit(600, 16, 2), unit(40, 16, 3)
    exact = ExactIndex()
    exact.add(base)
    _, want = exact.search(queries, 10)
    ivf = IVFFlatIndex(16, nlist=8, nprobe=8)
    ivf.add(base)
    _, got = ivf.search(queries, 10)
    np.testing.assert_array_equal(got.numpy(), want.numpy())
    assert len(ivf) == 600
    # probing one cell of eight misses neighbours on unclustered data
    ivf.nprobe = 1
    assert same_neighbours(ivf.search(queries, 10)[1], want) < 0.9


def test_hnsw_with_a_wide_beam_finds_the_exact_neighbours(faiss):
    base, queries = unit(600, 16, 4), unit(40, 16, 5)
    exact = ExactIndex()
    exact.add(base)
    want_scores, want = exact.search(queries, 10)
    hnsw = HNSWIndex(16, m=16, ef_construction=200, ef_search=600)
    hnsw.add(base)
    scores, got = hnsw.search(queries, 10)
    np.testing.assert_array_equal(got.numpy(), want.numpy())
    torch.testing.assert_close(scores, want_scores)


def test_missing_faiss_names_the_package_and_how_to_install_it(monkeypatch):
    real_import = builtins.__import__

    def no_faiss(name, *args, **kwargs):
        if name == "faiss" or name.startswith("faiss."):
            raise ModuleNotFoundError("No module named 'faiss'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_faiss)
    with pytest.raises(ImportError, match=r"faiss.*pip install faiss-cpu"):
        import_faiss()
    with pytest.raises(ImportError, match="faiss-cpu"):
        IVFFlatIndex(8)
    ExactIndex().add(unit(2, 3, 0))  # the exact index needs nothing but torch


def test_ivf_validation_names_the_field(faiss):
    with pytest.raises(ValueError, match="nlist"):
        IVFFlatIndex(8, nlist=0)
    ivf = IVFFlatIndex(8, nlist=50)
    with pytest.raises(ValueError, match="nlist=50"):
        ivf.add(unit(10, 8, 0))
    with pytest.raises(ValueError, match="vectors: vectors of dimension 4"):
        ivf.add(unit(100, 4, 0))


# --------------------------------------------------------------------------------------------
# Clustered vectors and the benchmark
# --------------------------------------------------------------------------------------------

def test_clustered_vectors_are_seeded_unit_and_clustered():
    a = ann_bench.clustered_vectors(2000, 16, n_clusters=20, n_queries=50, seed=0)
    b = ann_bench.clustered_vectors(2000, 16, n_clusters=20, n_queries=50, seed=0)
    np.testing.assert_array_equal(a.base, b.base)
    assert a.base.shape == (2000, 16) and a.queries.shape == (50, 16) and a.base.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(a.base, axis=1), 1, rtol=1e-5)
    # points sit much closer to their own centre than to the others
    own = np.einsum("nd,nd->n", a.base, a.centres[a.labels])
    other = a.base @ a.centres.T
    assert own.mean() > np.sort(other, axis=1)[:, -2].mean() + 0.3
    c = ann_bench.clustered_vectors(2000, 16, n_clusters=20, n_queries=50, seed=1)
    assert not np.allclose(a.base, c.base)
    with pytest.raises(ValueError, match="n_clusters"):
        ann_bench.clustered_vectors(10, 4, n_clusters=0)


def test_recall_at_k_against_exact():
    exact = np.array([[1, 2, 3, 4], [5, 6, 7, 8]])
    approx = np.array([[4, 3, 9, -1], [5, 6, 7, 8]])
    assert ann_bench.recall_at_k(approx, exact) == pytest.approx((2 / 4 + 1) / 2)


def test_benchmark_runs_on_a_small_size(faiss, tmp_path):
    table = ann_bench.run(sizes=(3000,), dim=16, n_queries=100, k=20, nprobes=(1, 4, 64, 200), ef_searches=(20, 80),
                          repeats=1, learned=None, progress=False)
    assert set(table["method"]) == {"exact", "flat", "ivf", "hnsw"}
    exact = table[table["method"].isin(["exact", "flat"])]
    assert (exact["recall"] >= 0.999).all() and exact["speedup"].max() == pytest.approx(1.0)
    ivf = table[table["method"] == "ivf"].set_index("param")
    # nlist = min(4 sqrt(3000), 3000 // 39) = 76 cells: nprobe=200 is capped at 76 and scans every
    # cell, which is exact; more probes never lose recall
    assert list(ivf.index) == [1, 4, 64, 76] and ivf.loc[76, "recall"] == 1.0
    assert ivf["recall"].is_monotonic_increasing
    assert (table["query_s"] > 0).all() and (table["n"] == 3000).all()
    path = ann_bench.write(table, tmp_path / "ann.csv")
    back = pd.read_csv(path)
    assert list(back.columns) == list(table.columns) and len(back) == len(table)

"""Product quantisation at a million items: why compressed codes need a re-ranking stage.

:func:`pq_table` builds a faiss IVF-PQ index (each vector stored as ``m`` one-byte codes instead
of ``4 * dim`` bytes of floats) on seeded clustered unit vectors
(:func:`recbook.ann_bench.clustered_vectors`), and measures recall@k against exact search for
several re-ranking depths ``r``: the index returns ``r * k`` candidates by their approximate scores
and exact inner products with the full vectors re-order them (``r = 1``: no re-ranking). One
thread; CPU seconds of the whole query batch.
"""
from __future__ import annotations

import math
import time
from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch

from .._checks import require_positive_int
from ..ann_bench import clustered_vectors, recall_at_k
from ..retrieval import ExactIndex, import_faiss

__all__ = ["pq_table", "rerank"]


def rerank(base: np.ndarray, queries: np.ndarray, candidates: np.ndarray, k: int) -> np.ndarray:
    """Re-order each query's ``candidates`` ``[q, c]`` (ids into ``base``; -1 = none) by exact inner
    product and keep the top ``k``: ``[q, k]`` ids."""
    candidates = np.asarray(candidates)
    if candidates.ndim != 2 or candidates.shape[0] != len(queries):
        raise ValueError(f"candidates: expected shape [{len(queries)}, c], got {candidates.shape}")
    k = require_positive_int(k, name="k")
    safe = np.where(candidates < 0, 0, candidates)
    scores = np.einsum("qd,qcd->qc", queries, base[safe])
    scores[candidates < 0] = -np.inf
    top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(candidates, top, axis=1)


def pq_table(n: int = 100_000, *, dim: int = 64, n_queries: int = 1000, k: int = 100, m: int = 8,
             nlist: int | None = None, nprobe: int = 32, reranks: Sequence[int] = (1, 2, 4, 10),
             seed: int = 0) -> pd.DataFrame:
    """Recall@k of IVF-PQ (``m`` sub-quantisers of 8 bits) without and with re-ranking, against
    exact search, plus IVF-Flat at the same ``nprobe`` for reference; columns ``method``,
    ``rerank``, ``recall``, ``query_s`` (CPU), ``bytes_per_vector``, ``build_s`` (CPU)."""
    n = require_positive_int(n, name="n")
    dim = require_positive_int(dim, name="dim")
    m = require_positive_int(m, name="m")
    if dim % m:
        raise ValueError(f"m: expected a divisor of dim={dim}, got {m}")
    k = require_positive_int(k, name="k")
    reranks = [require_positive_int(r, name="reranks") for r in reranks]
    faiss = import_faiss()
    data = clustered_vectors(n, dim, n_queries=n_queries, seed=seed)
    base, queries = data.base, data.queries
    nlist = nlist or max(1, min(round(4 * math.sqrt(n)), n // 39))
    old = torch.get_num_threads(), faiss.omp_get_max_threads()
    torch.set_num_threads(1)
    faiss.omp_set_num_threads(1)
    rows = []
    try:
        exact = ExactIndex(dim)
        exact.add(base)
        t = time.process_time()
        _, truth = exact.search(queries, k)
        exact_s = time.process_time() - t
        truth = np.asarray(truth)
        rows.append({"method": "exact", "rerank": 0, "recall": 1.0, "query_s": exact_s,
                     "bytes_per_vector": 4 * dim, "build_s": 0.0})
        rng = np.random.default_rng(seed)
        sample = base[rng.choice(n, size=min(n, max(40 * nlist, 256 * 39)), replace=False)]
        for method in ("ivf-flat", "ivf-pq"):
            t = time.process_time()
            quantizer = faiss.IndexFlatIP(dim)
            if method == "ivf-flat":
                index = faiss.IndexIVFFlat(quantizer, dim, nlist, faiss.METRIC_INNER_PRODUCT)
            else:
                index = faiss.IndexIVFPQ(quantizer, dim, nlist, m, 8, faiss.METRIC_INNER_PRODUCT)
            index.cp.seed = seed
            index.cp.niter = 10
            index.train(sample)
            index.add(base)
            build = time.process_time() - t
            index.nprobe = min(nprobe, nlist)
            for r in (reranks if method == "ivf-pq" else [1]):
                t = time.process_time()
                _, cand = index.search(queries, k * r)
                ids = rerank(base, queries, cand, k) if r > 1 else cand[:, :k]
                rows.append({"method": method, "rerank": r, "recall": recall_at_k(ids, truth),
                             "query_s": time.process_time() - t,
                             "bytes_per_vector": 4 * dim if method == "ivf-flat" else m, "build_s": build})
    finally:
        torch.set_num_threads(old[0])
        faiss.omp_set_num_threads(old[1])
    table = pd.DataFrame(rows)
    table.insert(0, "n", n)
    table["nprobe"] = min(nprobe, nlist)
    return table


def main(argv=None) -> int:
    import argparse
    from pathlib import Path
    p = argparse.ArgumentParser(prog="python -m recbook.scale.ann",
                                description="IVF-PQ recall with and without re-ranking against exact search.")
    p.add_argument("--n", type=int, default=1_000_000, help="number of item vectors")
    p.add_argument("--m", type=int, default=8, help="bytes per vector (8-bit sub-quantisers)")
    p.add_argument("--out", type=Path, default=Path("book") / "results" / "scale_pq.csv")
    args = p.parse_args(argv)
    table = pq_table(args.n, m=args.m)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(args.out, index=False, float_format="%.6g")
    print(table.to_string(index=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Vector search at scale: exact search against faiss IVF-Flat and HNSW, on clustered vectors.

``python -m recbook.ann_bench`` generates seeded clustered unit vectors (:func:`clustered_vectors`)
at 10k, 100k and 1M items (dimension 64), searches 1,000 queries with every index, one thread,
and writes one row per (data set, index, setting) to ``book/results/ann_bench.csv``:

``dataset, n, dim, method, param_name, param, build_s, query_s, recall, speedup, build_wall_s, query_wall_s``

* ``recall`` is recall@k (k = 100) against exact search: the share of the exact top-k ids that the
  index returns, averaged over the queries;
* ``query_s`` is the CPU time of **one** ``search`` call with the batch of 1,000 queries, one
  thread (the best of ``repeats`` calls; a call over one CPU second is not repeated);
  ``query_wall_s`` the wall time. With one thread the two
  agree on an idle machine, but only the CPU time stays put when other processes share the cores;
* ``speedup`` is the faster exact search's ``query_s`` divided by the row's; the exact searches
  are ``exact`` (:class:`~recbook.retrieval.ExactIndex`: a torch matrix product and ``topk``)
  and ``flat`` (faiss's brute-force ``IndexFlatIP``);
* ``build_s`` (CPU) and ``build_wall_s``: building the index (for IVF: k-means training on a
  sample and adding the vectors; for HNSW: inserting every vector into the graph).

``--learned FILE.npz`` adds a data set of learned vectors (arrays ``items`` and ``queries``, e.g.
a two-tower model's item and user vectors). ``--quick`` runs the 10k and 100k sizes only. The
run is seeded: the same command gives the same recalls (times vary with the machine).
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ._checks import require_positive_int
from .retrieval import ExactIndex, HNSWIndex, IVFFlatIndex, import_faiss

__all__ = [
    "COLUMNS", "DEFAULT_OUT", "ClusteredVectors", "clustered_vectors", "main", "recall_at_k", "run",
    "search_table", "write",
]

DEFAULT_OUT = Path("book") / "results" / "ann_bench.csv"
COLUMNS = ["dataset", "n", "dim", "method", "param_name", "param", "build_s", "query_s", "recall", "speedup",
           "build_wall_s", "query_wall_s"]
SIZES = (10_000, 100_000, 1_000_000)
NPROBES = (1, 2, 4, 8, 16, 32, 64, 128)
EF_SEARCHES = (64, 128, 256, 512)
HNSW_M = 16
HNSW_EF_CONSTRUCTION = 40


@dataclass(frozen=True, eq=False)
class ClusteredVectors:
    """Unit vectors drawn around random unit centres: ``base`` ``[n, d]``, ``queries`` ``[q, d]``
    (float32), the ``centres`` ``[c, d]`` and each base vector's cluster ``labels`` ``[n]``."""

    base: np.ndarray
    queries: np.ndarray
    centres: np.ndarray
    labels: np.ndarray


def clustered_vectors(n: int, dim: int, *, n_clusters: int | None = None, spread: float = 0.5,
                      n_queries: int = 1000, seed: int = 0) -> ClusteredVectors:
    """Seeded clustered unit vectors, as item embeddings tend to be (genres, tastes).

    ``c = n_clusters`` centres (default ``max(1, n // 100)``) are uniform on the unit sphere; each
    vector picks a centre uniformly, adds Gaussian noise of total size ``spread`` (each
    coordinate ``N(0, spread^2 / dim)``) and is normalised, so its cosine with its centre is about
    ``1 / sqrt(1 + spread^2)`` (0.89 for the default 0.5). The queries come from the same mixture.

    Why clusters of about 100 vectors: with k = 100 a query's exact neighbours are its own cluster
    and the edges of the nearest ones, so an index must look beyond one cell or one region of its
    graph. Clusters of 1,000 make the top-100 one cluster's core (IVF is exact with 2 probes);
    ``spread=1`` at 100 per cluster is close to unclustered noise, where IVF needs most cells.
    """
    n = require_positive_int(n, name="n")
    dim = require_positive_int(dim, name="dim")
    c = max(1, n // 100) if n_clusters is None else require_positive_int(n_clusters, name="n_clusters")
    n_queries = require_positive_int(n_queries, name="n_queries")
    if not (isinstance(spread, (int, float)) and spread >= 0):
        raise ValueError(f"spread: expected a non-negative number, got {spread!r}")
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((c, dim)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)

    def draw(m):
        labels = rng.integers(0, c, m)
        x = centres[labels] + rng.standard_normal((m, dim), dtype=np.float32) * np.float32(spread / math.sqrt(dim))
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        return x, labels

    base, labels = draw(n)
    queries, _ = draw(n_queries)
    return ClusteredVectors(base, queries, centres, labels)


def recall_at_k(approx, exact) -> float:
    """Mean over queries of ``|approx_ids ∩ exact_ids| / k`` (``-1`` ids never match)."""
    a, e = np.asarray(approx), np.asarray(exact)
    if a.shape != e.shape or a.ndim != 2:
        raise ValueError(f"approx: shape {a.shape} must equal exact's {e.shape} ([queries, k])")
    hits = [len(np.intersect1d(x[x >= 0], y)) for x, y in zip(a, e)]
    return float(np.mean(hits) / e.shape[1])


def _timed(fn, repeats: int = 1, budget: float = 1.0):
    """``(cpu_seconds, wall_seconds, result)`` of ``fn()``, each the best of ``repeats`` calls
    (a call that takes more than ``budget`` CPU seconds is not repeated).

    CPU time (``time.process_time``) is what the tables compare: with one thread it equals the
    wall time on an idle machine and, unlike wall time, barely moves when other processes share
    the cores.
    """
    cpu, wall, out = math.inf, math.inf, None
    for _ in range(repeats):
        c, w = time.process_time(), time.perf_counter()
        out = fn()
        cpu, wall = min(cpu, time.process_time() - c), min(wall, time.perf_counter() - w)
        if cpu > budget:
            break
    return cpu, wall, out


def search_table(base: np.ndarray, queries: np.ndarray, *, dataset: str, k: int = 100, nlist: int | None = None,
                 nprobes: Sequence[int] = NPROBES, ef_searches: Sequence[int] = EF_SEARCHES, m: int = HNSW_M,
                 ef_construction: int = HNSW_EF_CONSTRUCTION, hnsw: bool = True, repeats: int = 3, seed: int = 0,
                 progress: bool = True) -> pd.DataFrame:
    """Exact (torch and faiss flat), IVF-Flat (each ``nprobe``) and HNSW (each ``ef_search``) on one
    data set, one thread; recall against the torch exact search (see the module docstring).

    ``nlist`` defaults to faiss's guideline ``4 sqrt(n)`` cells (at most ``n / 39``, so that k-means
    sees at least 39 vectors per centroid), trained with 10 k-means iterations on a seeded sample of
    40 vectors per cell. ``hnsw=False`` skips HNSW (its build is the
    slowest step: single-threaded, about two minutes for a million vectors).
    """
    base = np.ascontiguousarray(base, dtype=np.float32)
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    if base.ndim != 2 or queries.ndim != 2 or base.shape[1] != queries.shape[1]:
        raise ValueError(f"queries: shape {queries.shape} does not match base {base.shape} ([n, d] and [q, d])")
    n, dim = base.shape
    k = min(require_positive_int(k, name="k"), n)
    nlist = nlist or max(1, min(round(4 * math.sqrt(n)), n // 39))
    faiss = import_faiss()
    rows = []

    def record(method, pname, param, build, search, ids):
        (build_cpu, build_wall), (q_cpu, q_wall) = build, search
        recall = 1.0 if ids is None else recall_at_k(ids, truth)
        rows.append({"dataset": dataset, "n": n, "dim": dim, "method": method, "param_name": pname,
                     "param": param, "build_s": build_cpu, "query_s": q_cpu, "recall": recall,
                     "build_wall_s": build_wall, "query_wall_s": q_wall})
        if progress:
            print(f"  {dataset:>9s} n={n:>9,} {method:5s} {pname:9s}={param!s:>5s} build {build_cpu:7.2f}s "
                  f"query {q_cpu:7.3f}s recall@{k} {recall:.4f}", flush=True)

    def build(make):
        cpu, wall, index = _timed(make)
        return index, (cpu, wall)

    def search(index, r=repeats):
        cpu, wall, (_, ids) = _timed(lambda: index.search(queries, k), r)
        return (cpu, wall), np.asarray(ids)

    old_torch, old_omp = torch.get_num_threads(), faiss.omp_get_max_threads()
    torch.set_num_threads(1)
    faiss.omp_set_num_threads(1)
    try:
        def make_exact():
            index = ExactIndex(dim)
            index.add(base)
            return index
        exact, cost = build(make_exact)
        timing, truth = search(exact)
        record("exact", "-", "-", cost, timing, None)

        def make_flat():  # faiss's brute force: a second exact baseline (BLAS and a heap)
            index = faiss.IndexFlatIP(dim)
            index.add(base)
            return index
        flat, cost = build(make_flat)
        timing, ids = search(flat)
        record("flat", "-", "-", cost, timing, ids)

        def make_ivf():
            index = IVFFlatIndex(dim, nlist=nlist, train_size=40 * nlist, niter=10, seed=seed, threads=1)
            index.add(base)
            return index
        ivf, cost = build(make_ivf)
        for p in sorted({min(int(p), nlist) for p in nprobes}):  # nprobe = nlist already scans every cell
            ivf.nprobe = p
            timing, ids = search(ivf)
            record("ivf", "nprobe", p, cost, timing, ids)

        if hnsw:
            def make_hnsw():
                index = HNSWIndex(dim, m=m, ef_construction=ef_construction, threads=1)
                index.add(base)
                return index
            graph, cost = build(make_hnsw)
            for ef in ef_searches:
                graph.ef_search = int(ef)
                timing, ids = search(graph)
                record("hnsw", "ef_search", int(ef), cost, timing, ids)
    finally:
        torch.set_num_threads(old_torch)
        faiss.omp_set_num_threads(old_omp)
    table = pd.DataFrame(rows)
    fastest_exact = table.loc[table["method"].isin(["exact", "flat"]), "query_s"].min()
    table["speedup"] = fastest_exact / table["query_s"]
    return table[COLUMNS]


def run(sizes: Sequence[int] = SIZES, *, dim: int = 64, n_queries: int = 1000, k: int = 100, spread: float = 0.5,
        nprobes: Sequence[int] = NPROBES, ef_searches: Sequence[int] = EF_SEARCHES, repeats: int = 3,
        learned: str | Path | None = None, seed: int = 0, progress: bool = True) -> pd.DataFrame:
    """The benchmark's table: :func:`search_table` on clustered vectors of each size, and on the
    learned vectors of ``learned`` (an ``.npz`` with ``items`` and ``queries``) when given."""
    tables = []
    if learned is not None:
        z = np.load(learned)
        if "items" not in z or "queries" not in z:
            raise ValueError(f"learned: {learned} must hold arrays 'items' and 'queries'")
        tables.append(search_table(z["items"], z["queries"], dataset="learned", k=k, nprobes=nprobes,
                                   ef_searches=ef_searches, repeats=repeats, seed=seed, progress=progress))
    for n in sizes:
        t = time.perf_counter()
        data = clustered_vectors(int(n), dim, spread=spread, n_queries=n_queries, seed=seed)
        if progress:
            print(f"clustered n={n:,}: generated in {time.perf_counter() - t:.1f}s", flush=True)
        tables.append(search_table(data.base, data.queries, dataset="clustered", k=k, nprobes=nprobes,
                                   ef_searches=ef_searches, repeats=repeats, seed=seed, progress=progress))
    return pd.concat(tables, ignore_index=True)


def write(table: pd.DataFrame, path: str | Path = DEFAULT_OUT) -> Path:
    """Write the table as CSV atomically, locked and keeping the file's mode; return the path."""
    from .bench import write_table

    return write_table(table, path)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m recbook.ann_bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", default=",".join(str(s) for s in SIZES), help="comma-separated numbers of vectors")
    p.add_argument("--quick", action="store_true", help="only 10k and 100k vectors")
    p.add_argument("--dim", type=int, default=64)
    p.add_argument("--spread", type=float, default=0.5, help="noise around the cluster centres")
    p.add_argument("--learned", type=Path, default=None, help=".npz with arrays 'items' and 'queries'")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = p.parse_args(argv)
    try:
        sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    except ValueError:
        p.error(f"--sizes: expected comma-separated integers, got {args.sizes!r}")
    if args.quick:
        sizes = [s for s in sizes if s <= 100_000]
    t = time.perf_counter()
    table = run(sizes, dim=args.dim, spread=args.spread, repeats=args.repeats, learned=args.learned)
    path = write(table, args.out)
    print(f"wrote {path} ({len(table)} rows) in {time.perf_counter() - t:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())

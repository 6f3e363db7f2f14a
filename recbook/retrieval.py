"""Retrieval: full-corpus evaluation of a two-tower model, and vector indexes behind one interface.

**Evaluation.** :func:`evaluate_retrieval` ranks every item code for every user of a
:class:`~recbook.data.retrieval.RetrievalSplit` with :func:`recbook.metrics.ranking_report`: each
user's earlier items and the reserved codes 0 and 1 removed from the candidates, ties counted
against the target. :func:`train_two_tower` is the one-call recipe of the chapter; the leaderboard
builds the same model with :meth:`recbook.models.twotower.TwoTower.from_data`.

**Indexes.** Every index has ``add(vectors)`` (float ``[N, d]``, ids ``0..N-1`` in the order
added) and ``search(queries, k) -> (scores, ids)`` (float32 and int64 ``[Q, k]``, best first,
scores are inner products):

* :class:`ExactIndex` — a matrix product and ``topk``, torch only;
* :class:`IVFFlatIndex` — faiss's inverted file: k-means cells, search the ``nprobe`` cells
  nearest each query;
* :class:`HNSWIndex` — faiss's hierarchical navigable small-world graph, beam width ``ef_search``.

faiss is an optional dependency (``pip install faiss-cpu``): it is imported when an approximate
index is built, and a missing faiss raises an ``ImportError`` that says how to install it.
"""
from __future__ import annotations

import contextlib
import math
from collections.abc import Mapping, Sequence

import numpy as np
import torch

from ._checks import require_positive_int

__all__ = [
    "KS", "ExactIndex", "HNSWIndex", "IVFFlatIndex", "evaluate_retrieval", "import_faiss",
    "train_two_tower", "two_tower_setup", "user_item_scores",
]

KS = (10, 20, 50, 100)
"""The cut-offs of the retrieval chapter's Recall@K and NDCG@K."""

FAISS_INSTALL = "pip install faiss-cpu"


# --------------------------------------------------------------------------------------------
# Full-corpus evaluation
# --------------------------------------------------------------------------------------------

@torch.no_grad()
def user_item_scores(model, split, batch_size: int = 4096) -> torch.Tensor:
    """``[U, n_items]`` logits of every user of ``split`` against every item code (on the CPU)."""
    was = model.training
    model.eval()
    try:
        items = model.item_vectors()
        out = [(model.user_vectors(b) @ items.T / model.temperature).float().cpu()
               for b in split.users.batches(batch_size)]
    finally:
        model.train(was)
    return torch.cat(out)


def evaluate_retrieval(model, split, ks: Sequence[int] = KS) -> dict:
    """Full-corpus Recall@K and NDCG@K of ``model`` on a :class:`~recbook.data.retrieval.RetrievalSplit`:
    :func:`recbook.metrics.ranking_report` (pessimistic ranks, reserved codes never ranked) with
    each user's earlier items excluded."""
    from .metrics import ranking_report

    for attr in ("users", "targets", "exclude"):
        if not hasattr(split, attr):
            raise ValueError(f"split: expected a RetrievalSplit, missing attribute {attr!r}")
    report = ranking_report(user_item_scores(model, split).numpy(), split.targets.cpu().numpy(), ks,
                            exclude=split.exclude)
    return {k: v for k, v in report.items() if k.startswith(("recall@", "ndcg@"))}


# --------------------------------------------------------------------------------------------
# The recipe
# --------------------------------------------------------------------------------------------

def two_tower_setup(data, *, seed: int = 0, dim: int = 32, hidden: Sequence[int] = (64,), out_dim: int = 32,
                    temperature: float = 0.1, correction: str | None = None, negatives: int = 0,
                    sampler: str = "uniform", mask_hits: bool = True, alpha: float = 0.01,
                    model_kwargs: Mapping | None = None):
    """A fresh ``(model, loss_fn)`` pair for one training run on ``data``.

    ``data`` is :func:`recbook.data.retrieval.retrieval_data`'s result. The model is
    :class:`recbook.models.twotower.TwoTower` (``dim``, ``hidden``, ``out_dim``, ``temperature``
    and ``model_kwargs``), initialised from ``seed``; the loss is
    :class:`recbook.sampled_softmax.SampledSoftmaxLoss` (``correction``, ``negatives``,
    ``sampler``, ``mask_hits``; ``alpha`` of the streaming estimator), whose sampler is seeded
    with ``seed``. Build a new pair for every run: the streaming estimator keeps state.
    """
    from .models.twotower import TwoTower
    from .sampled_softmax import FrequencyEstimator, SampledSoftmaxLoss
    from .train import seed_everything

    seed_everything(seed)
    model = TwoTower(data.features, dim, hidden, out_dim, temperature=temperature, **dict(model_kwargs or {}))
    n_items = data.features.n_items
    estimator = FrequencyEstimator(n_items, alpha=alpha) if correction == "streaming" else None
    loss = SampledSoftmaxLoss(n_items, correction=correction, item_counts=data.item_counts, negatives=negatives,
                              sampler=sampler, mask_hits=mask_hits, estimator=estimator, seed=seed)
    return model, loss


def train_two_tower(data, *, seed: int = 0, epochs: int = 30, batch_size: int = 1024, lr: float = 1e-3,
                    weight_decay: float = 0.0, patience: int = 3, metric: str = "recall@50",
                    threads: int | None = 1, progress: bool = False, **settings):
    """Build (:func:`two_tower_setup` with ``settings``), train with early stopping on validation
    ``metric`` (:func:`recbook.train.fit`) and return ``(model, FitResult)``; the model keeps its
    loss as ``model.loss`` (e.g. to read the streaming estimator). Same seed, same numbers."""
    from .train import fit, num_threads

    with num_threads(threads):
        model, loss = two_tower_setup(data, seed=seed, **settings)
        result = fit(model, data.train, data.valid, epochs=epochs, batch_size=batch_size, lr=lr,
                     weight_decay=weight_decay, loss_fn=loss, evaluate=evaluate_retrieval, metric=metric,
                     mode="max", patience=patience, seed=seed, threads=threads, progress=progress)
    model.loss = loss
    return model, result


# --------------------------------------------------------------------------------------------
# Vector indexes
# --------------------------------------------------------------------------------------------

def import_faiss():
    """The ``faiss`` module, or an ``ImportError`` saying how to install it."""
    try:
        import faiss
    except ImportError as exc:
        raise ImportError(
            "the approximate indexes (IVFFlatIndex, HNSWIndex) need the optional package faiss; "
            f"install it with `{FAISS_INSTALL}` (the exact index needs only torch)"
        ) from exc
    return faiss


def _as_matrix(x, name: str, dim: int | None = None) -> torch.Tensor:
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(x)
    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        raise ValueError(f"{name}: expected a float tensor or array [N, d], got "
                         f"{getattr(x, 'dtype', type(x).__name__)}")
    if x.dim() != 2 or x.shape[1] == 0:
        raise ValueError(f"{name}: expected a 2-D [N, d] matrix, got shape {tuple(x.shape)}")
    if dim is not None and x.shape[1] != dim:
        raise ValueError(f"{name}: vectors of dimension {x.shape[1]}; the index holds dimension {dim}")
    if not torch.isfinite(x).all():
        raise ValueError(f"{name}: contains NaN or infinite values")
    return x.detach().to("cpu", torch.float32).contiguous()


class _Index:
    """Shared argument checks of the indexes."""

    dim: int | None = None
    ntotal: int = 0

    def __len__(self) -> int:
        return self.ntotal

    def _check_add(self, vectors) -> torch.Tensor:
        x = _as_matrix(vectors, "vectors", self.dim)
        if x.shape[0] == 0:
            raise ValueError("vectors: is empty; expected at least one vector")
        return x

    def _check_search(self, queries, k) -> tuple[torch.Tensor, int]:
        if self.ntotal == 0:
            raise ValueError("index: is empty; add vectors before searching")
        return _as_matrix(queries, "queries", self.dim), require_positive_int(k, name="k")


class ExactIndex(_Index):
    """Exact maximum-inner-product search: ``scores = queries @ vectors.T``, then ``topk``.

    Torch only. Queries are processed in blocks of at most ``block_entries`` scores, so that 1,000
    queries against a million vectors never hold the full ``[Q, N]`` matrix. When ``k`` exceeds
    the number of vectors, the missing places hold score ``-inf`` and id ``-1``.
    """

    def __init__(self, dim: int | None = None, *, block_entries: int = 1 << 24):
        self.dim = None if dim is None else require_positive_int(dim, name="dim")
        self.block_entries = require_positive_int(block_entries, name="block_entries")
        self._parts: list[torch.Tensor] = []
        self._vectors: torch.Tensor | None = None
        self.ntotal = 0

    def add(self, vectors) -> None:
        x = self._check_add(vectors)
        self.dim = x.shape[1]
        self._parts.append(x)
        self._vectors = None
        self.ntotal += x.shape[0]

    @property
    def vectors(self) -> torch.Tensor:
        if self._vectors is None:
            self._vectors = self._parts[0] if len(self._parts) == 1 else torch.cat(self._parts)
            self._parts = [self._vectors]
        return self._vectors

    @torch.no_grad()
    def search(self, queries, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        q, k = self._check_search(queries, k)
        v = self.vectors
        kk = min(k, self.ntotal)
        scores = torch.full((q.shape[0], k), -math.inf)
        ids = torch.full((q.shape[0], k), -1, dtype=torch.long)
        step = max(1, self.block_entries // self.ntotal)
        for a in range(0, q.shape[0], step):
            s = q[a:a + step] @ v.T
            top = torch.topk(s, kk, dim=1)
            scores[a:a + step, :kk] = top.values
            ids[a:a + step, :kk] = top.indices
        return scores, ids


@contextlib.contextmanager
def _faiss_threads(faiss, n: int | None):
    if n is None:
        yield
        return
    old = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(n)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(old)


class _FaissIndex(_Index):
    """An inner-product faiss index; ``threads`` is faiss's OpenMP thread count while it works."""

    def __init__(self, dim: int, threads: int | None):
        self.faiss = import_faiss()
        self.dim = require_positive_int(dim, name="dim")
        self.threads = None if threads is None else require_positive_int(threads, name="threads")
        self.index = None

    @property
    def ntotal(self) -> int:
        return 0 if self.index is None else int(self.index.ntotal)

    def _search(self, queries, k):
        q, k = self._check_search(queries, k)
        with _faiss_threads(self.faiss, self.threads):
            d, i = self.index.search(q.numpy(), k)
        return torch.from_numpy(d), torch.from_numpy(i)


class IVFFlatIndex(_FaissIndex):
    """faiss ``IndexIVFFlat`` with inner product: ``nlist`` k-means cells, ``nprobe`` searched.

    The first :meth:`add` trains the cells by k-means (``niter`` iterations, seeded) on a seeded
    sample of at most ``train_size`` of its vectors; later adds only assign. faiss suggests
    ``nlist`` between ``4 sqrt(n)`` and ``16 sqrt(n)`` and 30 to 256 training vectors per cell.
    Search scans the ``nprobe`` cells whose centroids score highest with the query; with
    ``nprobe = nlist`` it is exact. Where fewer than ``k`` vectors were scanned, faiss pads with
    id ``-1``.
    """

    def __init__(self, dim: int, nlist: int = 100, nprobe: int = 8, *, train_size: int | None = None,
                 niter: int = 25, seed: int = 0, threads: int | None = 1):
        super().__init__(dim, threads)
        self.nlist = require_positive_int(nlist, name="nlist")
        self.nprobe = require_positive_int(nprobe, name="nprobe")
        self.train_size = None if train_size is None else require_positive_int(train_size, name="train_size")
        self.seed = int(seed)
        f = self.faiss
        self.quantizer = f.IndexFlatIP(self.dim)
        self.index = f.IndexIVFFlat(self.quantizer, self.dim, self.nlist, f.METRIC_INNER_PRODUCT)
        self.index.cp.seed = self.seed
        self.index.cp.niter = require_positive_int(niter, name="niter")
        self.index.cp.verbose = False

    def add(self, vectors) -> None:
        x = self._check_add(vectors)
        with _faiss_threads(self.faiss, self.threads):
            if not self.index.is_trained:
                if x.shape[0] < self.nlist:
                    raise ValueError(f"vectors: {x.shape[0]} vectors cannot train nlist={self.nlist} cells; "
                                     "add at least nlist vectors first or lower nlist")
                sample = x
                if self.train_size is not None and x.shape[0] > self.train_size:
                    g = torch.Generator().manual_seed(self.seed)
                    sample = x[torch.randperm(x.shape[0], generator=g)[: self.train_size]]
                self.index.cp.max_points_per_centroid = max(1, -(-sample.shape[0] // self.nlist))
                self.index.train(sample.numpy())
            self.index.add(x.numpy())

    def search(self, queries, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        self.index.nprobe = min(self.nprobe, self.nlist)
        return self._search(queries, k)


class HNSWIndex(_FaissIndex):
    """faiss ``IndexHNSWFlat`` with inner product.

    ``m`` links per node, ``ef_construction`` the beam width while inserting, ``ef_search`` the
    beam width of a query (at least ``k`` is used). Built with one thread it is reproducible;
    with several, the insertion order (and so the graph) varies.
    """

    def __init__(self, dim: int, m: int = 32, ef_construction: int = 40, ef_search: int = 64, *,
                 threads: int | None = 1):
        super().__init__(dim, threads)
        self.m = require_positive_int(m, name="m")
        self.ef_construction = require_positive_int(ef_construction, name="ef_construction")
        self.ef_search = require_positive_int(ef_search, name="ef_search")
        self.index = self.faiss.IndexHNSWFlat(self.dim, self.m, self.faiss.METRIC_INNER_PRODUCT)
        self.index.hnsw.efConstruction = self.ef_construction

    def add(self, vectors) -> None:
        x = self._check_add(vectors)
        with _faiss_threads(self.faiss, self.threads):
            self.index.add(x.numpy())

    def search(self, queries, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        self.index.hnsw.efSearch = max(self.ef_search, int(k))
        return self._search(queries, k)

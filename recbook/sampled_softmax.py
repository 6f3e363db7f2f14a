"""Sampled softmax for retrieval: in-batch negatives, the logQ correction, extra sampled negatives.

A retrieval model wants ``P(item | user) = softmax over the whole catalogue``. Summing over every
item per example is too costly for a real catalogue, so each example compares its positive with a
few *candidates*: the other positives of the batch ("in-batch negatives") and, optionally, ``M``
extra items drawn from a sampler shared by the batch.

**The bias, and the logQ correction.** A batch is drawn from the training stream, so an item shows
up as a candidate in proportion to its popularity: popular items are pushed down far more often
than in the full softmax. Sampled-softmax theory (Bengio & Senecal 2008; Jean et al. 2015; for
two towers Yi et al., RecSys 2019) corrects this by subtracting ``log Q(j)`` from candidate
``j``'s logit, where ``Q(j)`` is how many times ``j`` is expected among the candidates:

    ``logit_c(u, j) = <u, v_j> / tau - log Q(j)``,  ``Q(j) = B * p_j + M * r_j``

with ``p_j`` the probability that a training example's item is ``j`` (so ``B * p_j`` is its
expected count among a batch's ``B`` positives) and ``r_j`` the extra sampler's probability. The
correction is applied to every candidate, the positive included, as in Yi et al.; with in-batch
negatives alone it is ``log p_j`` up to a constant that the softmax ignores.

``p_j`` comes either from counts over the training examples (``correction="counts"``) or from the
streaming :class:`FrequencyEstimator` of Yi et al. (``correction="streaming"``), which needs no
pass over the data and follows drifting popularity.

**Accidental hits.** When item ``j`` is the positive of two rows of a batch, it is each row's
positive and a "negative" of the other: pushing it down contradicts the label. Such entries (and
extra negatives equal to the row's positive) are masked out of the softmax (logit ``-inf``).

:func:`sampled_softmax_loss` is the loss on logits; :class:`SampledSoftmaxLoss` is a
``loss_fn(model, batch)`` for :func:`recbook.train.fit` that builds those logits from a
two-tower model.
"""
from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import torch
import torch.nn.functional as F

from ._checks import require_number, require_positive_int
from .data.features import N_RESERVED

__all__ = [
    "CORRECTIONS", "SAMPLERS", "FrequencyEstimator", "NegativeSampler", "SampledSoftmaxLoss",
    "sampled_softmax_loss",
]

CORRECTIONS = (None, "counts", "streaming")
SAMPLERS = ("uniform", "popularity")
_MERSENNE = 2_147_483_647  # 2^31 - 1, the prime of the universal hash


def sampled_softmax_loss(logits: torch.Tensor, candidates: torch.Tensor, positives: torch.Tensor, *,
                         log_q: torch.Tensor | None = None, mask_hits: bool = True,
                         reduction: str = "mean") -> torch.Tensor:
    """Cross-entropy of row ``b``'s positive among its candidates, from logits.

    Args:
        logits: float ``[B, C]``, ``C >= B``: row ``b``'s scores of the candidates. The first
            ``B`` candidates are the batch's own positives, so row ``b``'s positive is column ``b``;
            columns ``B..C-1`` are extra negatives shared by all rows.
        candidates: int64 ``[C]``, the item code of each column.
        positives: int64 ``[B]``, each row's positive item code (``candidates[:B]``).
        log_q: optional float ``[C]``, ``log Q`` of each candidate, subtracted from its column.
        mask_hits: drop every column ``c != b`` whose item is row ``b``'s positive.
        reduction: ``"mean"``, ``"sum"`` or ``"none"`` (per-row losses ``[B]``).
    """
    if not isinstance(logits, torch.Tensor) or logits.dim() != 2:
        raise ValueError(f"logits: expected a [B, C] tensor, got shape {tuple(getattr(logits, 'shape', ()))}")
    b, c = logits.shape
    if c < b:
        raise ValueError(f"logits: has {c} columns; expected at least one per row (B = {b})")
    if c < 2:
        raise ValueError(f"logits: has shape ({b}, {c}): one row and one candidate, its own positive, so no "
                         "negative and a loss of exactly 0 whatever the model; expected at least one negative "
                         "(a batch of 2 or more rows, or extra sampled negatives)")
    for name, t, n in (("candidates", candidates, c), ("positives", positives, b)):
        if not isinstance(t, torch.Tensor) or t.dtype != torch.long or t.shape != (n,):
            raise ValueError(f"{name}: expected an int64 tensor of shape ({n},), got "
                             f"{getattr(t, 'dtype', type(t).__name__)} {tuple(getattr(t, 'shape', ()))}")
    if not torch.equal(candidates[:b], positives):
        raise ValueError("candidates: the first B candidates must be the rows' positives, in order")
    if log_q is not None:
        if not isinstance(log_q, torch.Tensor) or log_q.shape != (c,):
            got = tuple(getattr(log_q, "shape", ()))
            raise ValueError(f"log_q: expected a float tensor of shape ({c},), got {got}")
        logits = logits - log_q.to(logits.dtype)[None, :]
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(f"reduction: expected 'mean', 'sum' or 'none', got {reduction!r}")
    if mask_hits:
        hits = candidates[None, :] == positives[:, None]
        hits[:, :b].fill_diagonal_(False)
        logits = logits.masked_fill(hits, -math.inf)
    target = torch.arange(b, device=logits.device)
    return F.cross_entropy(logits, target, reduction=reduction)


class FrequencyEstimator:
    """Streaming estimate of how often each item appears per batch (Yi et al. 2019, Algorithms 2-3).

    For every item ``y`` the estimator keeps ``A[y]``, the last step ``y`` was seen, and ``B[y]``, a
    moving average of the number of steps between two sightings; ``1 / B[y]`` estimates the
    expected number of times ``y`` appears in a batch, i.e. ``batch_size * p_y``. At step ``t``::

        B[y] <- (1 - alpha) * B[y] + alpha * (t - A[y]);   A[y] <- t

    An item seen ``c > 1`` times in one batch contributes ``c`` gaps: ``t - A[y]`` and ``c - 1``
    gaps of 0, so that the average gap is ``1 / (expected count)`` even for items that appear
    several times per batch (the paper's per-item update, vectorised). The first sighting sets
    ``B[y] = t + 1`` (a gap measured from the start of the stream); an item never seen has rate 0.

    With ``n_buckets`` smaller than the number of items, items are hashed into ``n_hashes``
    arrays of ``n_buckets`` with independent universal hashes; a collision can only shorten the
    gaps, so the estimate is the **largest** ``B`` over the hashes (Algorithm 3). With
    ``n_buckets=None`` every item has its own entry (exact bookkeeping, no collisions).

    Args:
        n_items: number of item codes.
        alpha: the moving average's step (the paper's learning rate); smaller is smoother and slower.
        n_buckets: entries per hash array, or None for one entry per item.
        n_hashes: number of hash arrays (only with ``n_buckets``).
        seed: seeds the hash functions.
    """

    def __init__(self, n_items: int, *, alpha: float = 0.01, n_buckets: int | None = None, n_hashes: int = 1,
                 seed: int = 0):
        self.n_items = require_positive_int(n_items, name="n_items")
        require_number(alpha, name="alpha", low=0, high=1, low_open=True)
        self.alpha = float(alpha)
        if n_buckets is None:
            self.n_buckets, self.n_hashes = self.n_items, 1
            self._a = self._b = None
        else:
            self.n_buckets = require_positive_int(n_buckets, name="n_buckets")
            self.n_hashes = require_positive_int(n_hashes, name="n_hashes")
            rng = np.random.default_rng(seed)
            self._a = torch.from_numpy(rng.integers(1, _MERSENNE, self.n_hashes))
            self._b = torch.from_numpy(rng.integers(0, _MERSENNE, self.n_hashes))
        self.step = 0
        self.last = torch.full((self.n_hashes, self.n_buckets), -1.0, dtype=torch.float64)
        self.gap = torch.zeros((self.n_hashes, self.n_buckets), dtype=torch.float64)

    def _buckets(self, items: torch.Tensor) -> torch.Tensor:
        """``[n_hashes, N]`` bucket of each item in each hash array."""
        items = items.to("cpu", torch.long)
        if self._a is None:
            return items[None, :]
        return ((self._a[:, None] * items[None, :] + self._b[:, None]) % _MERSENNE) % self.n_buckets

    def _check(self, items, name: str = "items") -> torch.Tensor:
        if not isinstance(items, torch.Tensor) or items.dtype != torch.long or items.dim() != 1:
            raise ValueError(f"{name}: expected a 1-D int64 tensor of item codes, got "
                             f"{getattr(items, 'dtype', type(items).__name__)} {tuple(getattr(items, 'shape', ()))}")
        if items.numel() and (int(items.min()) < 0 or int(items.max()) >= self.n_items):
            bad = int(items.min()) if int(items.min()) < 0 else int(items.max())
            raise ValueError(f"{name}: item code {bad} out of range [0, {self.n_items})")
        return items

    @torch.no_grad()
    def update(self, items: torch.Tensor) -> None:
        """Record one batch of item codes ``[N]`` (duplicates allowed) and advance one step."""
        items = self._check(items)
        t = float(self.step)
        a = self.alpha
        for h, buckets in enumerate(self._buckets(items)):
            uniq, count = torch.unique(buckets, return_counts=True)
            last, gap = self.last[h], self.gap[h]  # views of hash array h
            seen_at = last[uniq]
            # c sightings at this step: first the gap since the last sighting (since the start of
            # the stream for a first sighting), then c - 1 gaps of 0; in closed form:
            decay = torch.pow(1 - a, count.to(torch.float64) - 1)
            moved = torch.where(seen_at < 0, t + 1, (1 - a) * gap[uniq] + a * (t - seen_at))
            gap[uniq] = decay * moved
            last[uniq] = t
        self.step += 1

    @torch.no_grad()
    def rate(self, items: torch.Tensor | None = None) -> torch.Tensor:
        """Estimated expected count per batch (float64) of each item code (default: every code)."""
        items = torch.arange(self.n_items) if items is None else self._check(items)
        buckets = self._buckets(items)
        rows = torch.arange(self.n_hashes)[:, None]
        gap = self.gap[rows, buckets].max(dim=0).values
        seen = (self.last[rows, buckets] >= 0).all(dim=0)
        return torch.where(seen & (gap > 0), 1.0 / gap.clamp(min=1e-12), torch.zeros_like(gap))


class NegativeSampler:
    """Draws extra negatives (with replacement) from fixed probabilities over item codes.

    :meth:`uniform` spreads them over every non-reserved code; :meth:`popularity` draws item
    ``j`` with probability proportional to ``count_j ** power`` (``power=1``: as often as in the
    training stream; word2vec's 0.75 flattens it).
    """

    def __init__(self, probs: torch.Tensor, *, seed: int = 0):
        if not isinstance(probs, torch.Tensor) or probs.dim() != 1:
            raise ValueError("probs: expected a 1-D tensor of probabilities over item codes")
        probs = probs.to(torch.float64)
        if not torch.isfinite(probs).all() or bool((probs < 0).any()) or float(probs.sum()) <= 0:
            raise ValueError("probs: expected finite non-negative weights with a positive sum")
        if bool((probs[:N_RESERVED] > 0).any()):
            raise ValueError(f"probs: reserved codes 0..{N_RESERVED - 1} must have probability 0")
        self.probs = probs / probs.sum()
        self.generator = torch.Generator().manual_seed(int(seed))

    @classmethod
    def uniform(cls, n_items: int, *, seed: int = 0) -> NegativeSampler:
        n_items = require_positive_int(n_items, name="n_items")
        if n_items <= N_RESERVED:
            raise ValueError(f"n_items: expected more than {N_RESERVED} codes, got {n_items}")
        p = torch.ones(n_items, dtype=torch.float64)
        p[:N_RESERVED] = 0
        return cls(p, seed=seed)

    @classmethod
    def popularity(cls, counts: torch.Tensor, *, power: float = 1.0, seed: int = 0) -> NegativeSampler:
        if not isinstance(counts, torch.Tensor) or counts.dim() != 1:
            raise ValueError("counts: expected a 1-D tensor of counts per item code")
        require_number(power, name="power", low=0)
        w = counts.to(torch.float64).clamp(min=0) ** power * (counts > 0)
        w[:N_RESERVED] = 0
        return cls(w, seed=seed)

    def sample(self, m: int) -> torch.Tensor:
        """``m`` item codes, int64 ``[m]``."""
        m = require_positive_int(m, name="m")
        return torch.multinomial(self.probs, m, replacement=True, generator=self.generator)


class SampledSoftmaxLoss:
    """``loss_fn(model, batch)`` for :func:`recbook.train.fit`: in-batch sampled softmax.

    The candidates of a batch are its ``B`` positives plus ``negatives`` extra items from
    ``sampler``; the logits are ``<u_b, v_j> / model.temperature``, corrected by ``log Q(j)``
    (see the module docstring) unless ``correction`` is None, with accidental hits masked.

    Args:
        n_items: number of item codes.
        correction: None (plain in-batch softmax), ``"counts"`` (``p_j`` = ``item_counts`` /
            total) or ``"streaming"`` (a :class:`FrequencyEstimator` fed every training batch).
        item_counts: float ``[n_items]``, each item's count among the training examples
            (needed for ``"counts"`` and for the popularity sampler).
        negatives: number ``M`` of extra negatives per batch (0: in-batch only).
        sampler: ``"uniform"`` or ``"popularity"`` (the extra negatives' distribution).
        mask_hits: mask accidental hits (see :func:`sampled_softmax_loss`).
        estimator: the streaming estimator to use (default: a new exact one, ``alpha=0.01``).
        seed: seeds the extra negatives' sampler.

    The model needs ``user_vectors(batch)``, ``item_vectors(codes)`` and ``temperature``
    (:class:`recbook.models.twotower.TwoTower`).
    """

    def __init__(self, n_items: int, *, correction: str | None = None, item_counts: torch.Tensor | None = None,
                 negatives: int = 0, sampler: str = "uniform", mask_hits: bool = True,
                 estimator: FrequencyEstimator | None = None, seed: int = 0):
        self.n_items = require_positive_int(n_items, name="n_items")
        if correction not in CORRECTIONS:
            raise ValueError(f"correction: expected one of {CORRECTIONS}, got {correction!r}")
        if sampler not in SAMPLERS:
            raise ValueError(f"sampler: expected one of {SAMPLERS}, got {sampler!r}")
        if isinstance(negatives, bool) or not isinstance(negatives, (int, np.integer)) or negatives < 0:
            raise ValueError(f"negatives: expected a non-negative integer, got {negatives!r}")
        needs_counts = correction == "counts" or (negatives and sampler == "popularity")
        if item_counts is not None:
            if not isinstance(item_counts, torch.Tensor) or item_counts.shape != (self.n_items,):
                raise ValueError(f"item_counts: expected a tensor of shape ({self.n_items},), got "
                                 f"{tuple(getattr(item_counts, 'shape', ()))}")
            if not torch.isfinite(item_counts).all() or bool((item_counts < 0).any()) or float(item_counts.sum()) <= 0:
                raise ValueError("item_counts: expected finite non-negative counts with a positive sum")
            item_counts = item_counts.to(torch.float64)
        elif needs_counts:
            raise ValueError(f"item_counts: required for correction={correction!r} / sampler={sampler!r}")
        self.correction, self.sampler_name, self.negatives = correction, sampler, int(negatives)
        self.mask_hits = bool(mask_hits)
        self.item_probs = None if item_counts is None else item_counts / item_counts.sum()
        self.sampler = None
        if self.negatives:
            self.sampler = (NegativeSampler.uniform(self.n_items, seed=seed) if sampler == "uniform"
                            else NegativeSampler.popularity(item_counts, seed=seed))
        self.estimator = None
        if correction == "streaming":
            self.estimator = estimator or FrequencyEstimator(self.n_items)
            if self.estimator.n_items != self.n_items:
                raise ValueError(f"estimator: covers {self.estimator.n_items} item codes, expected {self.n_items}")

    def expected_counts(self, candidates: torch.Tensor, batch_size: int) -> torch.Tensor:
        """``Q(j) = B * p_j + M * r_j`` for each candidate code (float64, on the CPU)."""
        cand = candidates.cpu()
        if self.correction == "counts":
            q = batch_size * self.item_probs[cand]
        elif self.correction == "streaming":
            q = self.estimator.rate(cand)
        else:
            raise ValueError("correction: None has no expected counts")
        if self.sampler is not None:
            q = q + self.negatives * self.sampler.probs[cand]
        return q

    def __call__(self, model, batch: Mapping) -> torch.Tensor:
        items = batch["item_id"]
        if model.training and self.estimator is not None:
            self.estimator.update(items)
        u = model.user_vectors(batch)
        candidates = items
        if self.sampler is not None:
            candidates = torch.cat([items, self.sampler.sample(self.negatives).to(items.device)])
        v = model.item_vectors(candidates)
        logits = u @ v.T / model.temperature
        log_q = None
        if self.correction is not None:
            q = self.expected_counts(candidates, items.shape[0])
            log_q = torch.log(q.clamp(min=1e-12)).to(logits.device, logits.dtype)
        return sampled_softmax_loss(logits, candidates, items, log_q=log_q, mask_hits=self.mask_hits)

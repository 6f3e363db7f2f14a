"""Synthetic data with planted structure, for teaching.

* :func:`planted_interactions`: CTR rows with planted feature interactions (factorization machines);
* :func:`planted_markov_chain`: item sequences from a planted Markov chain (GRU4Rec).

Planted interactions
--------------------

Each row has ``n_fields`` categorical fields with ``field_size`` values each, drawn uniformly.
Every feature value ``a`` gets a hidden vector ``u_a`` of size ``rank`` and the label's logit is

    logit = sum_i w_{x_i}  +  sum_{i<j} <u_{x_i}, u_{x_j}>,      label ~ Bernoulli(sigmoid(logit))

which is exactly the form of a factorization machine with ``dim >= rank``. By default the
first-order weights ``w`` are 0 and each field's vectors are centred (their mean over the field's
values is 0), so averaged over the other fields every single value has the same logit: there is
no main effect for logistic regression to find, only XOR-like interactions ("value a is good with
value b, bad with value c"). Logistic regression stays near AUC 0.5; an FM recovers the planted
``<u_a, u_b>``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .._checks import require_fraction, require_positive_int
from ..data.features import N_RESERVED, Field, Schema
from ..data.tensors import TensorData

__all__ = ["PlantedData", "PlantedMarkov", "planted_interactions", "planted_markov_chain"]


@dataclass(frozen=True)
class PlantedData:
    """Planted-interaction data and the truth behind it.

    Feature values are numbered field by field: value ``v`` of field ``f`` is number
    ``f * field_size + v`` (``V = n_fields * field_size`` in all), the order of every matrix here.

    Attributes:
        schema: fields ``f0, f1, ...``, single-valued; value ``v`` is encoded as ``v + 2``.
        data: ``x`` int64 ``[N, n_fields]`` and ``label`` float32 ``[N]``.
        factors: ``[V, rank]``, the planted vectors ``u``.
        interactions: ``[V, V]``, ``<u_a, u_b>`` between values of different fields; 0 inside a
            field (two values of one field never occur in the same row).
        first_order: ``[V]``, the planted weights ``w`` (zero by default).
        logit: ``[N]`` float64, the true logit of each row (the best possible score).
        rows: ``[V]``, the row of each value in a model's shared embedding table.
    """

    schema: Schema
    data: TensorData
    factors: np.ndarray
    interactions: np.ndarray
    first_order: np.ndarray
    logit: np.ndarray
    rows: np.ndarray

    @property
    def n_fields(self) -> int:
        return len(self.schema)

    @property
    def field_interactions(self) -> np.ndarray:
        """``[n_fields, n_fields]``: root-mean-square planted interaction between two fields."""
        return _field_rms(self.interactions, self.n_fields)

    def learned_interactions(self, table) -> np.ndarray:
        """``<v_a, v_b>`` from a model's ``[total_size, dim]`` embedding table, in the same
        ``[V, V]`` layout as :attr:`interactions` (0 inside a field), ready for a side-by-side
        heatmap. ``table`` is e.g. ``fm.embedding.table.weight``."""
        w = table.detach().cpu().numpy() if isinstance(table, torch.Tensor) else np.asarray(table)
        if w.ndim != 2 or w.shape[0] != self.schema.total_size:
            raise ValueError(f"table: expected shape [{self.schema.total_size}, dim], got {w.shape}")
        v = w[self.rows].astype(np.float64)
        return _zero_within_field(v @ v.T, self.n_fields)

    def split(self, test_fraction: float = 0.25) -> tuple[TensorData, TensorData]:
        """``(train, test)``: the first rows and the last ``test_fraction`` of them (rows are
        already in random order)."""
        test_fraction = require_fraction(test_fraction, name="test_fraction")
        n_test = max(1, int(round(len(self.data) * test_fraction)))
        cut = len(self.data) - n_test
        if cut < 1:
            raise ValueError(f"test_fraction: {test_fraction} leaves no training rows "
                             f"out of {len(self.data)}")
        return self.data.subset(slice(0, cut)), self.data.subset(slice(cut, None))

    def split3(self, test_fraction: float = 0.2, valid_fraction: float = 0.1
               ) -> tuple[TensorData, TensorData, TensorData]:
        """``(train, valid, test)``: :meth:`split` off the last ``test_fraction`` for test, then the
        last ``valid_fraction`` of all rows before it for validation (early stopping)."""
        train, test = self.split(test_fraction)
        valid_fraction = require_fraction(valid_fraction, name="valid_fraction")
        n_valid = int(len(self.data) * valid_fraction)
        if not 1 <= n_valid < len(train):
            raise ValueError(f"valid_fraction: {valid_fraction} leaves {n_valid} validation rows out of "
                             f"{len(train)} training rows; expected at least one of each")
        return train.subset(slice(0, -n_valid)), train.subset(slice(-n_valid, None)), test


def _zero_within_field(m: np.ndarray, n_fields: int) -> np.ndarray:
    size = m.shape[0] // n_fields
    field = np.repeat(np.arange(n_fields), size)
    return np.where(field[:, None] == field[None, :], 0.0, m)


def _field_rms(m: np.ndarray, n_fields: int) -> np.ndarray:
    size = m.shape[0] // n_fields
    blocks = m.reshape(n_fields, size, n_fields, size)
    return np.sqrt((blocks ** 2).mean(axis=(1, 3)))


def planted_interactions(n_fields: int = 8, field_size: int = 10, n_samples: int = 50_000, rank: int = 2,
                         *, interaction_scale: float = 3.0, main_scale: float = 0.0, seed: int = 0
                         ) -> PlantedData:
    """Draw categorical rows whose labels depend on planted low-rank pairwise interactions.

    Args:
        n_fields: number of categorical fields (at least 2).
        field_size: values per field (at least 2).
        n_samples: rows.
        rank: size of the planted vectors ``u`` (an FM needs ``dim >= rank`` to fit exactly).
        interaction_scale: standard deviation of the interaction part of the logit (3 gives a
            best achievable AUC of about 0.9).
        main_scale: standard deviation of the first-order part; 0 (default) means no main effects,
            so logistic regression stays near AUC 0.5.
        seed: seed of the ``numpy.random.Generator``; the same seed gives the same data.
    """
    n_fields = require_positive_int(n_fields, name="n_fields")
    field_size = require_positive_int(field_size, name="field_size")
    n_samples = require_positive_int(n_samples, name="n_samples")
    rank = require_positive_int(rank, name="rank")
    if n_fields < 2:
        raise ValueError(f"n_fields: expected at least 2 (interactions need a pair), got {n_fields}")
    if field_size < 2:
        raise ValueError(f"field_size: expected at least 2, got {field_size}")
    for name, value in (("interaction_scale", interaction_scale), ("main_scale", main_scale)):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and np.isfinite(value)
        if not ok or value < 0:
            raise ValueError(f"{name}: expected a finite number >= 0, got {value!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise ValueError(f"seed: expected an integer, got {seed!r}")

    rng = np.random.default_rng(seed)
    u = rng.normal(size=(n_fields, field_size, rank))
    u -= u.mean(axis=1, keepdims=True)  # centred per field: no main effect through the pairs
    w = rng.normal(size=(n_fields, field_size))
    w -= w.mean(axis=1, keepdims=True)
    values = rng.integers(0, field_size, size=(n_samples, n_fields), dtype=np.int64)

    # Logits with the vectors as drawn, then one rescaling to the requested standard deviations
    # (scaling u by c scales every <u_a, u_b> by c^2).
    rows_u = u[np.arange(n_fields), values]  # [N, F, rank]
    s = rows_u.sum(axis=1)
    pair = 0.5 * ((s ** 2).sum(axis=1) - (rows_u ** 2).sum(axis=(1, 2)))
    first = w[np.arange(n_fields), values].sum(axis=1)
    c_pair = interaction_scale / pair.std() if pair.std() > 0 else 0.0
    c_first = main_scale / first.std() if first.std() > 0 else 0.0
    u *= np.sqrt(c_pair)
    w *= c_first
    logit = c_pair * pair + c_first * first
    label = (rng.random(n_samples) < 1.0 / (1.0 + np.exp(-logit))).astype(np.float32)

    schema = Schema(tuple(Field(f"f{i}", tuple(range(field_size))) for i in range(n_fields)))
    factors = u.reshape(n_fields * field_size, rank)
    interactions = _zero_within_field(factors @ factors.T, n_fields)
    table_rows = (schema.offsets[:, None] + N_RESERVED + np.arange(field_size)[None, :]).reshape(-1)
    data = TensorData(x=torch.from_numpy(values + N_RESERVED), label=torch.from_numpy(label))
    return PlantedData(schema, data, factors, interactions, w.reshape(-1), logit, table_rows)


# --------------------------------------------------------------------------------------------
# Planted Markov chain: sequences for the GRU4Rec chapter
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class PlantedMarkov:
    """Item sequences drawn from a planted first-order Markov chain, and the chain itself.

    Items are numbered ``0 .. n_items - 1``; as everywhere in the book, item ``i`` has the code
    ``i + 2`` (0 = padding, 1 = unknown), so score matrices have ``n_items + 2`` columns.

    Attributes:
        transitions: ``[n_items, n_items]``, row ``i`` = the probabilities of the next item after
            item ``i`` (each row sums to 1).
        start: ``[n_items]``, the distribution of a sequence's first item.
        sequences: list of int64 arrays of item **codes**, one per user, in time order.
        successors: ``[n_items, out_degree]``, the planted likely successors of each item, most
            likely first.
    """

    transitions: np.ndarray
    start: np.ndarray
    sequences: list
    successors: np.ndarray

    @property
    def n_items(self) -> int:
        """Number of item codes (columns of a score matrix): the items plus 2 reserved codes."""
        return self.transitions.shape[0] + N_RESERVED

    def split(self):
        """Leave-last-out: per sequence, the last item is the test target, the second-last the
        validation target, the rest the training sequence. Returns an object with ``train``,
        ``valid``, ``test`` and ``n_items``, as :func:`recbook.next_item.next_item_split` reads it."""
        from types import SimpleNamespace

        return SimpleNamespace(train=[s[:-2] for s in self.sequences],
                               valid=np.array([s[-2] for s in self.sequences]),
                               test=np.array([s[-1] for s in self.sequences]), n_items=self.n_items)

    def score_next(self, histories) -> torch.Tensor:
        """The oracle: the true next-item probabilities after each history's last item
        (``[U, n_items]``, reserved columns ``-inf``). No model can rank better on average."""
        out = torch.full((len(histories), self.n_items), float("-inf"), dtype=torch.float64)
        for u, h in enumerate(histories):
            row = self.transitions[int(h[-1]) - N_RESERVED] if len(h) else self.start
            out[u, N_RESERVED:] = torch.from_numpy(row)
        return out

    def learned_transitions(self, model) -> np.ndarray:
        """``[n_items, n_items]``: a next-item model's softmax over the items after each one-item
        history ``[i]``, in the layout of :attr:`transitions` (for a side-by-side heatmap)."""
        n = self.transitions.shape[0]
        scores = model.score_next([np.array([i + N_RESERVED]) for i in range(n)])
        scores = torch.as_tensor(scores, dtype=torch.float64)[:, N_RESERVED:]
        return torch.softmax(scores, dim=1).numpy()


def planted_markov_chain(n_items: int = 30, n_sequences: int = 400, length: tuple = (10, 40), *,
                         out_degree: int = 3, noise: float = 0.05, seed: int = 0) -> PlantedMarkov:
    """Draw item sequences from a random sparse Markov chain.

    Each item gets ``out_degree`` distinct likely successors (never itself) with Dirichlet(1)
    weights; a share ``noise`` of every row is spread uniformly over all items. A sequence starts
    at a uniformly drawn item and has a length drawn uniformly from ``length`` (inclusive).
    A next-item model that only looks at the last item can reach the oracle
    (:meth:`PlantedMarkov.score_next`); nothing about the earlier items helps.

    Args:
        n_items: number of items (at least ``out_degree + 1``).
        n_sequences: number of sequences (users).
        length: ``(min, max)`` sequence length, at least 3 (training item, validation, test).
        out_degree: likely successors per item.
        noise: share of each row spread uniformly, in ``[0, 1)``.
        seed: seed of the ``numpy.random.Generator``.
    """
    n_items = require_positive_int(n_items, name="n_items")
    n_sequences = require_positive_int(n_sequences, name="n_sequences")
    out_degree = require_positive_int(out_degree, name="out_degree")
    if out_degree >= n_items:
        raise ValueError(f"out_degree: expected fewer than n_items={n_items} successors, got {out_degree}")
    if (not isinstance(length, (tuple, list)) or len(length) != 2
            or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in length)
            or not 3 <= length[0] <= length[1]):
        raise ValueError(f"length: expected (min, max) integers with 3 <= min <= max, got {length!r}")
    noise = require_fraction(noise, name="noise", inclusive=True)
    if noise == 1:
        raise ValueError("noise: expected a number in [0, 1); 1 would leave no planted structure")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise ValueError(f"seed: expected an integer, got {seed!r}")

    rng = np.random.default_rng(seed)
    successors = np.empty((n_items, out_degree), dtype=np.int64)
    transitions = np.full((n_items, n_items), noise / n_items)
    for i in range(n_items):
        others = np.delete(np.arange(n_items), i)
        succ = rng.choice(others, size=out_degree, replace=False)
        w = np.sort(rng.dirichlet(np.ones(out_degree)))[::-1]
        successors[i] = succ
        transitions[i, succ] += (1 - noise) * w
    start = np.full(n_items, 1.0 / n_items)
    cum = np.cumsum(transitions, axis=1)
    cum[:, -1] = 1.0
    lengths = rng.integers(length[0], length[1] + 1, size=n_sequences)
    sequences = []
    for n in lengths:
        s = np.empty(n, dtype=np.int64)
        s[0] = rng.integers(n_items)
        u = rng.random(n - 1)
        for t in range(1, n):
            s[t] = np.searchsorted(cum[s[t - 1]], u[t - 1], side="right")
        sequences.append(s + N_RESERVED)
    return PlantedMarkov(transitions, start, sequences, successors)

"""Synthetic CTR data with planted feature interactions, for the factorization-machine chapter.

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

__all__ = ["PlantedData", "planted_interactions"]


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

"""Looking inside a factorization machine: where its logit comes from, and what its trick costs.

The factorization-machine chapter calls these helpers; they hold the code, the chapter explains it.

* :func:`contribution_table` / :func:`pair_contributions`: split an FM's logit into the bias, one
  first-order term per field and one term ``<v_i, v_j>`` per pair of fields. The terms add up to
  the model's logit (up to float32 rounding), so they say exactly why the model scored a row as it did.
* :func:`user_movie_batch`: a one-row CTR batch for any user and movie of the protocol's data,
  including pairs that never occur in it (what the FM predicts for them is the point of FMs).
* :func:`unseen_pair_share`: how many test rows carry a pair of field values never seen together
  in training, the situation where Poly2 has nothing to go on.
* :func:`time_pairwise`: measured time of the ``O(kn)`` FM identity against the explicit
  ``O(kn^2)`` sum over pairs, for a range of ``n``.
* :func:`two_vector_interaction`: the interaction of two 2-D feature vectors given by angle and
  length, for the chapter's picture of a dot product.
"""
from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from ._checks import require_columns, require_positive_int
from .data.protocols import CTR_FIELDS, encode_ctr
from .layers import FMInteraction, check_batch, pairwise_interaction_naive
from .models import FactorizationMachine
from .train import num_threads

__all__ = [
    "TwoVectors", "contribution_table", "pair_contributions", "pair_names", "time_pairwise",
    "two_vector_interaction", "unseen_pair_share", "user_movie_batch",
]

PAIR_SEP = " × "
"""Separator of the two field names in a pair's name, e.g. ``"user_id × item_id"``."""


# --------------------------------------------------------------------------------------------
# Where an FM's logit comes from
# --------------------------------------------------------------------------------------------

def pair_names(fields: Sequence[str]) -> list[str]:
    """``"a × b"`` for every pair of ``fields``, in the order of ``torch.triu_indices``."""
    fields = list(fields)
    n = len(fields)
    return [f"{fields[i]}{PAIR_SEP}{fields[j]}" for i in range(n) for j in range(i + 1, n)]


def _require_fm(model) -> FactorizationMachine:
    if not isinstance(model, FactorizationMachine):
        raise ValueError(f"model: expected a recbook.models.FactorizationMachine, got {type(model).__name__}")
    return model


def _terms(model: FactorizationMachine, batch: Mapping):
    """Every additive term of the FM's logit for every row: names, kinds, fields, ``[B, T]``."""
    check_batch(model.schema, batch)
    names = model.schema.names
    with torch.no_grad():
        first = model.linear.weights(batch)[..., 0]  # [B, F]: w_i of each field (mean for genres)
        e = model.embedding(batch)  # [B, F, k]
        i, j = torch.triu_indices(len(names), len(names), offset=1)
        pairs = (e[:, i] * e[:, j]).sum(dim=-1)  # [B, P]: <v_i, v_j> of each pair of fields
        bias = model.linear.bias.expand(first.shape[0], 1)
        values = torch.cat([bias, first, pairs], dim=1).double()
    kinds = ["bias"] + ["first order"] * len(names) + ["pair"] * len(i)
    field_a = [None] + names + [names[a] for a in i.tolist()]
    field_b = [None] * (1 + len(names)) + [names[b] for b in j.tolist()]
    return ["bias", *names, *pair_names(names)], kinds, field_a, field_b, values.cpu().numpy()


def contribution_table(model: FactorizationMachine, batch: Mapping) -> pd.DataFrame:
    """The terms of an FM's logit for every row of ``batch``: one row per example, one column per term.

    Columns: ``bias``; one column per field (its first-order weight ``w_i``; for a multi-valued
    field the mean of its members' weights); one column ``"a × b"`` per pair of fields (``<v_a,
    v_b>``). Each row sums to the model's logit for that example, up to float32 rounding.
    ``contribution_table(fm, data.test).abs().mean()`` ranks the pairs by average size.
    """
    model = _require_fm(model)
    names, _, _, _, values = _terms(model, batch)
    return pd.DataFrame(values, columns=names)


def pair_contributions(model: FactorizationMachine, batch: Mapping, row: int = 0) -> pd.DataFrame:
    """Every additive term of the FM's logit for one example, as a long table.

    Args:
        model: a :class:`recbook.models.FactorizationMachine`.
        batch: a CTR batch (dict of tensors, or a :class:`~recbook.data.TensorData`).
        row: which example of ``batch``.

    Returns:
        One row per term with columns ``term`` (``"bias"``, a field name, or ``"a × b"``),
        ``kind`` (``"bias"``, ``"first order"`` or ``"pair"``), ``field_a``, ``field_b`` (None
        where they do not apply) and ``contribution``. The contributions sum to the model's logit
        for that example, up to float32 rounding.
    """
    model = _require_fm(model)
    if not isinstance(batch, Mapping) or "x" not in batch:
        raise ValueError("batch: expected a dict of tensors with key 'x'")
    n = batch["x"].shape[0] if isinstance(batch["x"], torch.Tensor) else None
    if isinstance(row, bool) or not isinstance(row, (int, np.integer)) or n is None or not 0 <= row < n:
        raise ValueError(f"row: expected an integer in [0, {n}), got {row!r}")
    one = {k: v[int(row): int(row) + 1] for k, v in batch.items() if isinstance(v, torch.Tensor)}
    names, kinds, fa, fb, values = _terms(model, one)
    return pd.DataFrame({"term": names, "kind": kinds, "field_a": fa, "field_b": fb,
                         "contribution": values[0]})


def user_movie_batch(data, user_id: int, item_id: int) -> dict:
    """A one-row CTR batch for ``user_id`` and ``item_id`` of a :class:`recbook.data.CTRData`.

    The user's features (age bucket, gender, occupation, zip prefix) and the movie's (release-year
    bucket, genres) are taken from any row of ``data.frames`` where they appear, so the pair itself
    need not have been rated. A user or movie absent from the training rows is encoded as unknown,
    as in the protocol. The label is the pair's label where the pair was rated, else NaN.
    """
    frames = getattr(data, "frames", None)
    if not isinstance(frames, Mapping) or not frames:
        raise ValueError(f"data: expected a recbook.data.CTRData with .frames, got {type(data).__name__}")
    rows = pd.concat([frames[s] for s in ("train", "valid", "test") if s in frames], ignore_index=True)
    require_columns(rows, [*CTR_FIELDS, "genres", "label"], name="data.frames")
    for name, value, column in (("user_id", user_id, "user_id"), ("item_id", item_id, "item_id")):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise ValueError(f"{name}: expected an integer id, got {value!r}")
        if not (rows[column] == value).any():
            raise ValueError(f"{name}: {value} does not occur in data.frames")
    user = rows.loc[rows["user_id"] == user_id].iloc[0]
    item = rows.loc[rows["item_id"] == item_id].iloc[0]
    rated = rows[(rows["user_id"] == user_id) & (rows["item_id"] == item_id)]
    one = {"user_id": user_id, "item_id": item_id,
           **{f: user[f] for f in ("age_bucket", "gender", "occupation", "zip1")},
           "year_bucket": item["year_bucket"], "genres": item["genres"],
           "label": float(rated["label"].iloc[0]) if len(rated) else float("nan")}
    return dict(encode_ctr(pd.DataFrame([one]), data.schema))


# --------------------------------------------------------------------------------------------
# Sparse data: pairs never seen together
# --------------------------------------------------------------------------------------------

def unseen_pair_share(train: pd.DataFrame, test: pd.DataFrame,
                      pairs: Sequence[tuple[str, str]]) -> pd.DataFrame:
    """For each pair of columns ``(a, b)``: how often the test rows' value pair never occurs in train.

    Poly2 learns one weight per value pair from the training rows where that pair occurs, so for
    these test rows it has no weight at all; an FM still has ``<v_a, v_b>``.

    Returns:
        One row per pair (index ``"a × b"``) with ``pairs in train`` (distinct value pairs seen in
        training), ``median train rows per pair`` and ``test rows unseen`` (share of test rows whose
        value pair has no training row).
    """
    pairs = [tuple(p) for p in pairs]
    if not pairs or any(len(p) != 2 for p in pairs):
        raise ValueError(f"pairs: expected a non-empty list of (column, column) tuples, got {pairs!r}")
    columns = sorted({c for p in pairs for c in p})
    require_columns(train, columns, name="train")
    require_columns(test, columns, name="test")
    out = {}
    for a, b in pairs:
        counts = train.groupby([a, b], observed=True).size()
        seen = pd.MultiIndex.from_frame(test[[a, b]]).isin(counts.index)
        out[f"{a}{PAIR_SEP}{b}"] = {"pairs in train": len(counts),
                                    "median train rows per pair": float(counts.median()),
                                    "test rows unseen": float(1 - seen.mean())}
    return pd.DataFrame.from_dict(out, orient="index")


# --------------------------------------------------------------------------------------------
# What the O(kn) identity saves
# --------------------------------------------------------------------------------------------

def _best_time(f, v: torch.Tensor, repeats: int, backward: bool, min_seconds: float = 2e-3) -> float:
    """Best of ``repeats`` timings of ``f(v)``; each timing averages enough calls to last about
    ``min_seconds``, so that sub-millisecond calls are not swamped by timer and scheduling noise."""
    def call():
        if backward:
            v.grad = None
            f(v).sum().backward()
        else:
            with torch.no_grad():
                f(v)

    t0 = time.perf_counter()
    call()  # warm-up, also estimates how many calls one timing needs
    inner = max(1, math.ceil(min_seconds / max(time.perf_counter() - t0, 1e-9)))
    best = math.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(inner):
            call()
        best = min(best, (time.perf_counter() - t0) / inner)
    return best


def time_pairwise(ns: Sequence[int] = (8, 16, 32, 64, 128, 256, 512, 1024), dim: int = 16, batch: int = 64,
                  repeats: int = 3, *, backward: bool = False, threads: int | None = 1, seed: int = 0
                  ) -> pd.DataFrame:
    """Seconds per call of the FM identity and of the explicit pairwise sum, for each ``n``.

    Both compute ``sum_{i<j} <v_i, v_j>`` for ``batch`` random ``[n, dim]`` sets of vectors:
    :class:`recbook.layers.FMInteraction` in ``O(kn)`` and
    :func:`recbook.layers.pairwise_interaction_naive` in ``O(kn^2)``. Each time is the best of
    ``repeats`` timings after one warm-up call (a timing averages as many calls as fit in about
    2 ms); ``backward=True`` times forward and backward.

    Returns:
        One row per ``n`` with ``n``, ``fm_seconds``, ``naive_seconds`` and ``ratio``
        (naive / FM).
    """
    if isinstance(ns, (str, bytes)) or not isinstance(ns, Sequence) or not ns:
        raise ValueError(f"ns: expected a non-empty list of positive integers, got {ns!r}")
    ns = [require_positive_int(n, name="ns") for n in ns]
    dim = require_positive_int(dim, name="dim")
    batch = require_positive_int(batch, name="batch")
    repeats = require_positive_int(repeats, name="repeats")
    fm = FMInteraction()
    g = torch.Generator().manual_seed(int(seed))
    rows = []
    with num_threads(threads):
        for n in ns:
            v = torch.randn(batch, n, dim, generator=g).requires_grad_(backward)
            t_fm = _best_time(fm, v, repeats, backward)
            t_naive = _best_time(pairwise_interaction_naive, v, repeats, backward)
            rows.append({"n": n, "fm_seconds": t_fm, "naive_seconds": t_naive, "ratio": t_naive / t_fm})
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------------------------
# Two feature vectors in the plane
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class TwoVectors:
    """Two 2-D feature vectors and what an FM makes of them (angles in degrees)."""

    v1: np.ndarray
    v2: np.ndarray
    angle1: float
    angle2: float
    bias: float
    interaction: float
    """``<v1, v2> = |v1| |v2| cos(angle2 - angle1)``."""

    @property
    def logit(self) -> float:
        return self.bias + self.interaction

    @property
    def probability(self) -> float:
        return 1.0 / (1.0 + math.exp(-self.logit)) if self.logit >= 0 else \
            math.exp(self.logit) / (1.0 + math.exp(self.logit))


def two_vector_interaction(angle1: float, len1: float, angle2: float, len2: float, bias: float = 0.0
                           ) -> TwoVectors:
    """Feature vectors ``v1``, ``v2`` of the given angles (degrees) and lengths, and their FM term.

    With only these two features active, an FM's logit is ``bias + <v1, v2>`` (first-order weights
    folded into ``bias``). ``<v1, v2> = len1 * len2 * cos(angle2 - angle1)``: same direction
    raises the predicted probability, opposite directions lower it, perpendicular vectors leave
    it at ``sigmoid(bias)``.
    """
    named = (("angle1", angle1), ("len1", len1), ("angle2", angle2), ("len2", len2), ("bias", bias))
    for name, value in named:
        if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) \
                or not math.isfinite(value):
            raise ValueError(f"{name}: expected a finite number, got {value!r}")
    for name, value in (("len1", len1), ("len2", len2)):
        if value < 0:
            raise ValueError(f"{name}: expected a length >= 0, got {value!r}")
    a1, a2 = math.radians(angle1), math.radians(angle2)
    v1 = float(len1) * np.array([math.cos(a1), math.sin(a1)])
    v2 = float(len2) * np.array([math.cos(a2), math.sin(a2)])
    return TwoVectors(v1, v2, float(angle1), float(angle2), float(bias), float(v1 @ v2))

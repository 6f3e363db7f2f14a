"""Helpers of the factorization-machines chapter: looking inside an FM, and what its trick costs.

The chapter calls these helpers; they hold the code, the chapter explains it.

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
* Figures: :func:`plot_interaction_heatmaps`, :func:`plot_pairwise_timing`,
  :func:`plot_pair_contributions`, :func:`plot_two_vectors`; and the widgets
  :func:`two_vector_slider` and :func:`contribution_dropdown`, precomputed so that they work on
  the website.
"""
from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import ipywidgets as widgets
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from matplotlib.axes import Axes
from matplotlib.patches import Arc
from matplotlib.ticker import NullFormatter

from .._checks import require_columns, require_positive_int
from ..data.protocols import CTR_FIELDS, encode_ctr
from ..layers import FMInteraction, check_batch, pairwise_interaction_naive
from ..models import FactorizationMachine
from ..plots import axes_or_new as _axes
from ..train import num_threads
from ..widgets import precomputed_slider


__all__ = [
    "TwoVectors", "contribution_dropdown", "contribution_table", "pair_contributions", "pair_names",
    "plot_interaction_heatmaps", "plot_pair_contributions", "plot_pairwise_timing", "plot_two_vectors",
    "time_pairwise", "two_vector_interaction", "two_vector_slider", "unseen_pair_share",
    "user_movie_batch",
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


# --------------------------------------------------------------------------------------------
# Factorization machines
# --------------------------------------------------------------------------------------------

INTERACTION_CMAP = "RdBu_r"
"""Diverging colour map of every interaction figure: red raises the logit, blue lowers it."""
_POSITIVE, _NEGATIVE = "#C44E52", "#4C72B0"


def _square_matrix(m, name: str) -> np.ndarray:
    arr = np.asarray(m.detach().cpu() if hasattr(m, "detach") else m, dtype=float)
    if arr.ndim != 2 or arr.shape[0] != arr.shape[1] or arr.shape[0] == 0:
        raise ValueError(f"{name}: expected a non-empty square matrix, got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name}: contains NaN or infinite values")
    return arr


def plot_interaction_heatmaps(planted, learned, *, n_fields: int, field_names: Sequence[str] | None = None,
                              axes=None) -> np.ndarray:
    """Two heatmaps side by side on one colour scale: the planted interaction matrix and the one a
    model learned (``<v_a, v_b>`` for every pair of feature values, fields in blocks).

    Args:
        planted, learned: ``[V, V]`` matrices in the same layout (e.g. ``PlantedData.interactions``
            and ``PlantedData.learned_interactions(fm.embedding.table.weight)``).
        n_fields: number of fields; ``V`` must be a multiple of it (one block per field).
        field_names: labels of the blocks (default ``f0, f1, ...``).
        axes: two Axes to draw into (default: a new figure).

    Returns:
        The two Axes.
    """
    planted = _square_matrix(planted, "planted")
    learned = _square_matrix(learned, "learned")
    if planted.shape != learned.shape:
        raise ValueError(f"learned: expected shape {planted.shape} like planted, got {learned.shape}")
    n_fields = require_positive_int(n_fields, name="n_fields")
    if planted.shape[0] % n_fields:
        raise ValueError(f"n_fields: {n_fields} does not divide the matrix size {planted.shape[0]}")
    names = [f"f{i}" for i in range(n_fields)] if field_names is None else [str(f) for f in field_names]
    if len(names) != n_fields:
        raise ValueError(f"field_names: expected {n_fields} names, got {len(names)}")
    if axes is None:
        fig, axes = plt.subplots(1, 2, figsize=(9.0, 4.0), layout="constrained")
    else:
        axes = np.asarray(axes, dtype=object).ravel()
        if len(axes) != 2 or not all(isinstance(a, Axes) for a in axes):
            raise ValueError("axes: expected two matplotlib Axes or None")
        fig = axes[0].figure
    size = planted.shape[0] // n_fields
    vmax = max(np.abs(planted).max(), np.abs(learned).max()) or 1.0
    centres = np.arange(n_fields) * size + (size - 1) / 2
    for ax, m, title in zip(axes, (planted, learned),
                            ("planted  ⟨u_a, u_b⟩", "learned by the FM  ⟨v_a, v_b⟩")):
        im = ax.imshow(m, cmap=INTERACTION_CMAP, vmin=-vmax, vmax=vmax, interpolation="nearest")
        for b in range(1, n_fields):
            ax.axhline(b * size - 0.5, color="0.35", lw=0.6)
            ax.axvline(b * size - 0.5, color="0.35", lw=0.6)
        ax.set_xticks(centres, names)
        ax.set_yticks(centres, names)
        ax.tick_params(length=0)
        ax.set_title(title)
    fig.colorbar(im, ax=list(axes), shrink=0.85, label="interaction (added to the logit)")
    return np.asarray(axes, dtype=object)


def plot_pairwise_timing(times: pd.DataFrame, *, ax: Axes | None = None) -> Axes:
    """Seconds per call of the FM identity and of the explicit pairwise sum against ``n``, log-log.

    ``times`` is :func:`recbook.interactions.time_pairwise`'s table (columns ``n``,
    ``fm_seconds``, ``naive_seconds``). Dashed grey lines of slope 1 and 2 through the last
    points show what ``O(n)`` and ``O(n^2)`` growth look like; the ratio at the largest ``n`` is
    written on the plot.
    """
    require_columns(times, ["n", "fm_seconds", "naive_seconds"], name="times")
    t = times.sort_values("n")
    n = t["n"].to_numpy(dtype=float)
    if (n <= 0).any() or (t[["fm_seconds", "naive_seconds"]].to_numpy() <= 0).any():
        raise ValueError("times: expected positive n and positive times (log-log axes)")
    ax = _axes(ax, figsize=(6.4, 4.0))
    for col, label, color in (("naive_seconds", "explicit sum over pairs, $O(kn^2)$", _POSITIVE),
                              ("fm_seconds", "FM identity, $O(kn)$", _NEGATIVE)):
        y = t[col].to_numpy(dtype=float)
        ax.plot(n, y, marker="o", lw=2, color=color, label=label)
        # Reference slope through the last point, over the upper half of the n range.
        slope = 2 if col == "naive_seconds" else 1
        ref = n[len(n) // 2:]
        ax.plot(ref, y[-1] * (ref / n[-1]) ** slope, ls="--", lw=1, color="0.55",
                label="slopes 2 and 1 (∝ n², ∝ n)" if slope == 1 else None)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xticks(n, [f"{int(v):,}" for v in n])
    ax.xaxis.set_minor_formatter(NullFormatter())
    last = t.iloc[-1]
    ratio = last["naive_seconds"] / last["fm_seconds"]
    ax.annotate(f"at n = {int(last['n']):,} the explicit sum is {ratio:,.0f}× slower", (0.98, 0.03),
                xycoords="axes fraction", ha="right", va="bottom", fontsize=9)
    ax.set_xlabel("active features per example, n (log scale)")
    ax.set_ylabel("seconds per call (log scale)")
    ax.set_ylim(bottom=min(t["fm_seconds"].min(), t["naive_seconds"].min()) / 4)  # room for the note
    ax.set_title("Cost of the pairwise term")
    ax.legend(loc="upper left", frameon=False, fontsize=9)
    ax.grid(alpha=0.3, which="major")
    return ax


def plot_pair_contributions(contributions: pd.DataFrame, *, top: int | None = 15, title: str | None = None,
                            ax: Axes | None = None) -> Axes:
    """Horizontal bars: each term's contribution to one example's FM logit, largest at the top.

    ``contributions`` is :func:`recbook.interactions.pair_contributions`'s table. Red bars raise the
    logit, blue bars lower it; first-order terms are hatched and the bias is grey. With ``top``
    only the ``top`` largest terms (by absolute value) get their own bar and the rest are summed
    into one "other terms" bar, so the bars always add up to the logit shown in the title.
    """
    require_columns(contributions, ["term", "kind", "contribution"], name="contributions")
    c = contributions[["term", "kind", "contribution"]].copy()
    if not np.isfinite(c["contribution"].to_numpy(dtype=float)).all():
        raise ValueError("contributions: column 'contribution' has NaN or infinite values")
    if top is not None:
        top = require_positive_int(top, name="top")
        if len(c) > top + 1:
            order = c["contribution"].abs().sort_values(ascending=False).index
            rest = c.loc[order[top:]]
            other = {"term": f"{len(rest)} other terms", "kind": "other",
                     "contribution": rest["contribution"].sum()}
            c = pd.concat([c.loc[order[:top]], pd.DataFrame([other])], ignore_index=True)
    c = c.iloc[np.argsort(np.abs(c["contribution"].to_numpy()), kind="stable")]
    logit = float(contributions["contribution"].sum())
    ax = _axes(ax, figsize=(6.4, 0.26 * len(c) + 1.3))
    colors = [("0.6" if k in ("bias", "other") else _POSITIVE if v >= 0 else _NEGATIVE)
              for k, v in zip(c["kind"], c["contribution"])]
    hatches = ["///" if k == "first order" else "" for k in c["kind"]]
    bars = ax.barh(np.arange(len(c)), c["contribution"].to_numpy(), color=colors, hatch=hatches,
                   edgecolor="white", linewidth=0.5)
    labels = [t if k != "first order" else f"{t} (first order)" for t, k in zip(c["term"], c["kind"])]
    ax.set_yticks(np.arange(len(c)), labels, fontsize=8)
    ax.bar_label(bars, labels=[f"{v:+.2f}" for v in c["contribution"]], fontsize=7, padding=2)
    ax.axvline(0, color="0.2", lw=0.8)
    ax.margins(x=0.18)
    ax.set_xlabel("contribution to the logit")
    p = 1.0 / (1.0 + np.exp(-logit))
    head = f"{title}\n" if title else ""
    ax.set_title(f"{head}logit = sum of the bars = {logit:+.2f}  →  p = {p:.2f}", fontsize=10)
    ax.grid(axis="x", alpha=0.3)
    return ax


def plot_two_vectors(result, *, limit: float = 2.2, axes=None) -> np.ndarray:
    """Two feature vectors in the plane and the probability an FM predicts from them.

    Left: the arrows ``v1`` and ``v2``, the angle between them, and the projection of ``v2`` on
    ``v1``'s direction (the dot product is that projection times ``|v1|``). Right: the sigmoid
    with the current logit ``bias + <v1, v2>`` marked.

    Args:
        result: :func:`recbook.interactions.two_vector_interaction`'s result.
        limit: half-width of the square plane shown (keep it fixed across a slider's frames).
        axes: two Axes to draw into (default: a new figure).
    """
    for attr in ("v1", "v2", "interaction", "logit", "probability", "bias", "angle1", "angle2"):
        if not hasattr(result, attr):
            raise ValueError(f"result: expected the result of two_vector_interaction, missing {attr!r}")
    if not (isinstance(limit, (int, float)) and limit > 0):
        raise ValueError(f"limit: expected a positive number, got {limit!r}")
    if axes is None:
        fig, axes = plt.subplots(1, 2, figsize=(8.0, 3.5), layout="constrained",
                                 gridspec_kw={"width_ratios": [1.0, 1.15]})
    else:
        axes = np.asarray(axes, dtype=object).ravel()
        if len(axes) != 2 or not all(isinstance(a, Axes) for a in axes):
            raise ValueError("axes: expected two matplotlib Axes or None")
    ax, sx = axes
    v1, v2 = np.asarray(result.v1, float), np.asarray(result.v2, float)
    ax.axhline(0, color="0.85", lw=0.8, zorder=0)
    ax.axvline(0, color="0.85", lw=0.8, zorder=0)
    n1 = np.linalg.norm(v1)
    if n1 > 0:
        u = v1 / n1
        proj = (v2 @ u) * u
        ax.plot([0, proj[0]], [0, proj[1]], color="#2A9D8F", lw=6, alpha=0.45, solid_capstyle="butt",
                label="projection of $v_2$ on $v_1$")
        ax.plot([v2[0], proj[0]], [v2[1], proj[1]], color="0.5", ls=":", lw=1)
    for v, name, color in ((v1, "$v_1$", "#333333"), (v2, "$v_2$", "#DD8452")):
        ax.annotate("", xy=tuple(v), xytext=(0, 0),
                    arrowprops=dict(arrowstyle="-|>", lw=2.2, color=color, mutation_scale=16))
        ax.annotate(name, tuple(v), xytext=(6 * np.sign(v[0] or 1), 6 * np.sign(v[1] or 1)),
                    textcoords="offset points", fontsize=12, color=color, ha="center", va="center")
    delta = (result.angle2 - result.angle1 + 180.0) % 360.0 - 180.0
    if n1 > 0 and np.linalg.norm(v2) > 0 and abs(delta) > 1e-9:
        lo, hi = sorted((result.angle1, result.angle1 + delta))
        r = 0.3 * min(n1, np.linalg.norm(v2), limit)
        ax.add_patch(Arc((0, 0), 2 * r, 2 * r, theta1=lo, theta2=hi, color="0.3"))
    ax.set_xlim(-limit, limit)
    ax.set_ylim(-limit, limit)
    ax.set_aspect("equal")
    ax.set_title(f"angle between them: {abs(delta):.0f}°", fontsize=10)
    if n1 > 0:
        ax.legend(loc="lower left", frameon=False, fontsize=8)

    z = np.linspace(-6, 6, 200)
    sx.plot(z, 1 / (1 + np.exp(-z)), color="0.4", lw=1.5)
    zc = float(np.clip(result.logit, -6, 6))
    sx.plot([zc], [1 / (1 + np.exp(-zc))], "o", ms=9, color="#DD8452")
    sx.axvline(result.bias, color="0.7", ls="--", lw=1)
    sx.annotate("bias", (result.bias, 0.02), xytext=(3, 0), textcoords="offset points", fontsize=8,
                color="0.5")
    sx.set_xlim(-6, 6)
    sx.set_ylim(0, 1)
    sx.set_xlabel("logit = bias + ⟨v₁, v₂⟩")
    sx.set_ylabel("predicted probability")
    sx.set_title(f"⟨v₁, v₂⟩ = {result.interaction:+.2f},  logit = {result.logit:+.2f},  "
                 f"p = {result.probability:.2f}", fontsize=10)
    sx.grid(alpha=0.3)
    return np.asarray([ax, sx], dtype=object)


# --------------------------------------------------------------------------------------------
# Factorization machines (precomputed, so they work on the website)
# --------------------------------------------------------------------------------------------

def two_vector_slider(len1: float = 1.5, len2: float = 1.2, bias: float = -0.5,
                      angles: Sequence[float] = tuple(range(0, 181, 15)), *, value: float | None = 60
                      ) -> widgets.VBox:
    """A slider over the angle between two 2-D feature vectors: the arrows, their dot product and
    the FM's predicted probability ``sigmoid(bias + <v1, v2>)`` for each angle (precomputed).

    ``v1`` points along the x axis; ``v2`` is rotated by the slider's angle (degrees).
    """
    two_vector_interaction(0.0, len1, 0.0, len2, bias)  # validate once, naming the bad argument
    limit = 1.15 * max(len1, len2, 1e-9)

    def render(angle):
        return plot_two_vectors(two_vector_interaction(0.0, len1, float(angle), len2, bias), limit=limit)[0]

    return precomputed_slider(render, list(angles), "angle between v₁ and v₂ (°)", value=value)


def contribution_dropdown(model, batch, rows: Mapping[str, int], *, top: int | None = 15) -> widgets.VBox:
    """A dropdown of examples; each shows every term's contribution to the FM's logit (precomputed).

    Args:
        model: a :class:`recbook.models.FactorizationMachine`.
        batch: CTR rows (dict of tensors or :class:`~recbook.data.TensorData`).
        rows: ``{label: row of batch}``, e.g. ``{"user 13 × Star Wars (1977)": 42}``.
        top: terms drawn as their own bar (see :func:`recbook.plots.plot_pair_contributions`).
    """
    if not isinstance(rows, Mapping) or not rows:
        raise ValueError("rows: expected a non-empty dict {label: row}")
    for label, row in rows.items():
        pair_contributions(model, batch, row)  # validate every row before rendering any

    def render(label):
        return plot_pair_contributions(pair_contributions(model, batch, rows[label]), top=top, title=label)

    box = precomputed_slider(render, list(rows), "example", control="dropdown")
    box.control.layout.width = "min(100%, 600px)"  # room for "user 13 (seen) × Star Wars: 5★"
    return box

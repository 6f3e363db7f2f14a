"""Helpers of the factorization-machines chapter: looking inside an FM, and what its trick costs.

The chapter calls these helpers; they hold the code, the chapter explains it.

* :func:`contribution_table` / :func:`pair_contributions`: split an FM's logit into the bias, one
  first-order term per field and one term ``<v_i, v_j>`` per pair of fields. The terms add up to
  the model's logit (up to float32 rounding), so they say exactly why the model scored a row as it did.
* :func:`user_movie_batch`: a one-row CTR batch for any user and movie of the protocol's data,
  including pairs that never occur in it (what the FM predicts for them is the point of FMs).
* :func:`fm_tables` and :func:`contribution_chart`: the trained FM's weights exported with the
  page, and a chart that computes every term of any user × movie logit **in the browser**.
* :func:`two_vector_interaction` and :func:`two_vector_chart`: two 2-D feature vectors, their dot
  product and the predicted probability, computed in the browser as five sliders move.
* :func:`unseen_pair_share`: how many test rows carry a pair of field values never seen together
  in training, the situation where Poly2 has nothing to go on.
* :func:`read_ablation` and :func:`init_comparison`: the committed comparison of the FM's
  initialisations (``book/results/fm_ablation.csv``), read rather than typed.
* :func:`time_pairwise`: measured time of the ``O(kn)`` FM identity against two ``O(kn^2)`` forms,
  a Python loop over pairs and a vectorised Gram matrix (:func:`pairwise_interaction_gram`).
* Figures: :func:`plot_fm_architecture`, :func:`plot_gram_identity`,
  :func:`plot_interaction_heatmaps`, :func:`plot_pairwise_timing`.

Comparing two models over seeds and over users, and learning curves, are shared by every chapter:
:func:`recbook.bench.seed_comparison`, :func:`recbook.metrics.paired_bootstrap_auc`,
:func:`recbook.plots.plot_learning_curves`.
"""
from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import partial

import altair as alt
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from matplotlib.axes import Axes
from matplotlib.patches import Rectangle
from matplotlib.ticker import NullFormatter

from . import BOOK_RESULTS
from .. import widgets
from .._checks import require_columns, require_positive_int
from ..data.features import N_RESERVED, PAD
from ..data.protocols import CTR_FIELDS, encode_ctr
from ..layers import FMInteraction, check_batch, pairwise_interaction_naive
from ..models import FactorizationMachine
from ..plots import axes_or_new as _axes
from ..plots import diagram_arrow, diagram_axes, diagram_box, diagram_fields_table
from ..train import num_threads

__all__ = [
    "FMTables", "TWO_VECTOR_CHECK", "TwoVectors", "XAVIER_VARIANT", "contribution_chart", "contribution_table",
    "d3_signed", "default_contribution_checks", "fm_tables", "init_comparison",
    "pair_contributions", "pair_names", "pairwise_interaction_gram",
    "plot_fm_architecture", "read_ablation",
    "plot_gram_identity", "plot_interaction_heatmaps", "plot_pairwise_timing",
    "tables_logit", "time_pairwise", "two_vector_chart", "two_vector_interaction",
    "unseen_pair_share", "user_movie_batch",
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

def pairwise_interaction_gram(v: torch.Tensor) -> torch.Tensor:
    """``sum_{i<j} <v_i, v_j>`` from the Gram matrix: ``O(k n^2)``, vectorised. ``[B, n, k]`` -> ``[B]``.

    ``G = V V^T`` (one batched matrix product) holds every ``<v_i, v_j>``; the pairs ``i < j`` are
    half of what is left after removing the diagonal: ``(sum(G) - trace(G)) / 2``. The fair
    ``O(kn^2)`` baseline for the FM identity: no Python loop, one large matrix product.
    """
    if not isinstance(v, torch.Tensor) or v.dim() != 3:
        raise ValueError(f"v: expected a [B, n, k] tensor, got shape {tuple(getattr(v, 'shape', ()))}")
    gram = torch.bmm(v, v.transpose(1, 2))  # [B, n, n]
    return 0.5 * (gram.sum(dim=(1, 2)) - gram.diagonal(dim1=1, dim2=2).sum(dim=1))


def _best_time(f, v: torch.Tensor, repeats: int, backward: bool, min_seconds: float = 5e-3) -> float:
    """Best of ``repeats`` timings of ``f(v)``; each timing averages enough calls to last about
    ``min_seconds``, so that sub-millisecond calls are not swamped by timer and scheduling noise.
    The best (not the mean) is the least disturbed by other processes on the machine."""
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


TIMED_FORMS = {
    "fm": FMInteraction(),
    "gram": pairwise_interaction_gram,
    "loop": pairwise_interaction_naive,
}
"""The three forms :func:`time_pairwise` times: the FM identity, the Gram matrix, the loop."""


def time_pairwise(ns: Sequence[int] = (8, 16, 32, 64, 128, 256, 512, 1024), dim: int = 16, batch: int = 64,
                  repeats: int = 5, *, backward: bool = False, threads: int | None = 1, seed: int = 0
                  ) -> pd.DataFrame:
    """Seconds per call of three ways to compute ``sum_{i<j} <v_i, v_j>``, for each ``n``.

    Each form gets ``batch`` random ``[n, dim]`` sets of vectors: the FM identity
    (:class:`recbook.layers.FMInteraction`, ``O(kn)``), the Gram matrix
    (:func:`pairwise_interaction_gram`, ``O(kn^2)`` in one batched matrix product) and the loop over
    pairs (:func:`recbook.layers.pairwise_interaction_naive`, ``O(kn^2)`` with a Python loop over
    ``i``). Each time is the best of ``repeats`` timings after one warm-up call (a timing averages
    as many calls as fit in about 5 ms); ``backward=True`` times forward and backward.

    Returns:
        One row per ``n`` with ``n``, ``fm_seconds``, ``gram_seconds``, ``loop_seconds``,
        ``gram_ratio`` (Gram / FM) and ``loop_ratio`` (loop / FM).
    """
    if isinstance(ns, (str, bytes)) or not isinstance(ns, Sequence) or not ns:
        raise ValueError(f"ns: expected a non-empty list of positive integers, got {ns!r}")
    ns = [require_positive_int(n, name="ns") for n in ns]
    dim = require_positive_int(dim, name="dim")
    batch = require_positive_int(batch, name="batch")
    repeats = require_positive_int(repeats, name="repeats")
    g = torch.Generator().manual_seed(int(seed))
    rows = []
    with num_threads(threads):
        for n in ns:
            v = torch.randn(batch, n, dim, generator=g).requires_grad_(backward)
            row = {"n": n}
            for name, form in TIMED_FORMS.items():
                row[f"{name}_seconds"] = _best_time(form, v, repeats, backward)
            rows.append(row)
    out = pd.DataFrame(rows)
    out["gram_ratio"] = out["gram_seconds"] / out["fm_seconds"]
    out["loop_ratio"] = out["loop_seconds"] / out["fm_seconds"]
    return out


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


def d3_signed(value: float, decimals: int = 2) -> str:
    """``value`` as the browser's ``format(value, '+.2f')`` writes it (a true minus sign, U+2212)."""
    return f"{value:+.{decimals}f}".replace("-", "\N{MINUS SIGN}")


def _two_vector_texts(r: TwoVectors) -> list[str]:
    delta = abs((r.angle2 - r.angle1 + 180.0) % 360.0 - 180.0)
    return [f"angle between them: {delta:.0f}°", f"⟨v₁, v₂⟩ = {d3_signed(r.interaction)}",
            f"logit = {d3_signed(r.logit)} · p = {r.probability:.2f}"]


TWO_VECTOR_CHECK = dict(angle1=20, len1=2.0, angle2=150, len2=1.0, bias=0.5)
"""The browser check :func:`two_vector_chart` adds by default: every slider moved."""


def two_vector_chart(angle1: float = 0, len1: float = 1.5, angle2: float = 60, len2: float = 1.2,
                     bias: float = -0.5, *, checks: Sequence[Mapping] | None = None) -> alt.HConcatChart:
    """Two feature vectors in the plane and the probability an FM predicts from them, computed in
    the browser as five sliders move (the angles in degrees, the lengths, the bias).

    Left: the arrows ``v1`` and ``v2``, the projection of ``v2`` on ``v1``'s direction (the dot
    product is that projection times ``|v1|``) and the angle between them. Right: the sigmoid with
    the logit ``bias + <v1, v2>`` marked. The arguments are the sliders' starting values; each of
    ``checks`` (``{"angle1": ..., "len1": ..., ...}``) becomes a browser check whose expected
    texts :func:`two_vector_interaction` computes in Python; by default (``None``), one setting
    that moves every slider (:data:`TWO_VECTOR_CHECK`).
    """
    if checks is None:
        checks = [TWO_VECTOR_CHECK]
    start = two_vector_interaction(angle1, len1, angle2, len2, bias)  # validates
    params = {
        "angle1": widgets.slider("angle1", 0, 360, 5, angle1, "angle of v₁ (°)"),
        "len1": widgets.slider("len1", 0, 2, 0.1, len1, "length of v₁"),
        "angle2": widgets.slider("angle2", 0, 360, 5, angle2, "angle of v₂ (°)"),
        "len2": widgets.slider("len2", 0, 2, 0.1, len2, "length of v₂"),
        "bias": widgets.slider("bias", -3, 3, 0.25, bias, "bias"),
    }
    rad = "PI / 180"
    dot = f"len1 * len2 * cos((angle2 - angle1) * {rad})"
    plane_scale = alt.Scale(domain=[-2.2, 2.2], nice=False)
    size = 230
    one = alt.Data(values=[{"one": 1}])

    vectors = alt.Chart(alt.Data(values=[{"v": "v₁"}, {"v": "v₂"}])).transform_calculate(
        a=f"(datum.v == 'v₁' ? angle1 : angle2) * {rad}",
        r="datum.v == 'v₁' ? len1 : len2",
        x="datum.r * cos(datum.a)", y="datum.r * sin(datum.a)",
        heading="90 - (datum.v == 'v₁' ? angle1 : angle2)",
        lx="datum.x + 0.22 * cos(datum.a)", ly="datum.y + 0.22 * sin(datum.a)",
    )
    colour = alt.Color("v:N", scale=alt.Scale(domain=["v₁", "v₂"], range=["#333333", "#DD8452"]),
                       legend=None)
    x_axis = alt.X("x:Q", scale=plane_scale, title=None)
    y_axis = alt.Y("y:Q", scale=plane_scale, title=None)
    projection = alt.Chart(one).transform_calculate(
        d=f"{dot} / max(len1, 1e-9)",
        x=f"datum.d * cos(angle1 * {rad})", y=f"datum.d * sin(angle1 * {rad})",
        x2=f"len2 * cos(angle2 * {rad})", y2=f"len2 * sin(angle2 * {rad})",
    )
    plane = alt.layer(
        alt.Chart(one).mark_rule(color="#dddddd").encode(x=alt.datum(0)),
        alt.Chart(one).mark_rule(color="#dddddd").encode(y=alt.datum(0)),
        projection.mark_rule(color="#2A9D8F", strokeWidth=7, opacity=0.45).encode(
            x=x_axis, y=y_axis, x2=alt.datum(0), y2=alt.datum(0)),
        projection.mark_rule(color="#999999", strokeDash=[2, 3]).encode(
            x=x_axis, y=y_axis, x2="x2:Q", y2="y2:Q"),
        vectors.mark_rule(strokeWidth=3).encode(x=x_axis, y=y_axis, x2=alt.datum(0), y2=alt.datum(0),
                                                color=colour),
        vectors.mark_point(shape="triangle", filled=True, size=140, opacity=1).encode(
            x=x_axis, y=y_axis, angle=alt.Angle("heading:Q", scale=None), color=colour),
        vectors.mark_text(fontSize=15).encode(x=alt.X("lx:Q", scale=plane_scale),
                                              y=alt.Y("ly:Q", scale=plane_scale), text="v:N", color=colour),
        alt.Chart(one).transform_calculate(
            t="'angle between them: ' + format(abs(((angle2 - angle1 + 180) % 360 + 360) % 360 - 180), '.0f') + '°'"
        ).mark_text(align="left", fontSize=13).encode(x=alt.value(0), y=alt.value(-12), text="t:N"),
    ).properties(width=size, height=size)

    z = alt.X("z:Q", scale=alt.Scale(domain=[-6, 6], nice=False), title="logit = bias + ⟨v₁, v₂⟩")
    p = alt.Y("p:Q", scale=alt.Scale(domain=[0, 1]), title="predicted probability")
    current = alt.Chart(one).transform_calculate(
        dot=dot, logit=f"bias + {dot}", z="clamp(datum.logit, -6, 6)", p="1 / (1 + exp(-datum.z))",
        # The readout in two short lines, so that the panel keeps its width on a phone.
        t1="'⟨v₁, v₂⟩ = ' + format(datum.dot, '+.2f')",
        t2="'logit = ' + format(datum.logit, '+.2f') + ' · p = ' + format(1 / (1 + exp(-datum.logit)), '.2f')",
        b="clamp(bias, -6, 6)",
    )
    sigmoid = alt.layer(
        alt.Chart(alt.sequence(-6, 6.001, 0.05, as_="z")).transform_calculate(
            p="1 / (1 + exp(-datum.z))").mark_line(color="#666666").encode(x=z, y=p),
        current.mark_rule(strokeDash=[4, 3], color="#aaaaaa").encode(x=alt.X("b:Q", scale=alt.Scale(domain=[-6, 6]))),
        current.mark_text(align="left", dx=3, color="#888888").encode(
            x=alt.X("b:Q", scale=alt.Scale(domain=[-6, 6])), y=alt.value(size - 8), text=alt.value("bias")),
        current.mark_point(filled=True, size=160, color="#DD8452", opacity=1).encode(x=z, y=p),
        current.mark_text(align="left", fontSize=13).encode(x=alt.value(0), y=alt.value(-30), text="t1:N"),
        current.mark_text(align="left", fontSize=13).encode(x=alt.value(0), y=alt.value(-12), text="t2:N"),
    ).properties(width=260, height=size)

    chart = alt.hconcat(plane, sigmoid, spacing=36)
    all_checks = [{"set": dict(angle1=angle1, len1=len1, angle2=angle2, len2=len2, bias=bias),
                   "texts": _two_vector_texts(start)}]
    for c in checks:
        if not isinstance(c, Mapping) or set(c) - set(params):
            raise ValueError(f"checks: expected dicts with keys among {list(params)}, got {c!r}")
        values = {**dict(angle1=angle1, len1=len1, angle2=angle2, len2=len2, bias=bias), **c}
        r = two_vector_interaction(values["angle1"], values["len1"], values["angle2"], values["len2"],
                                   values["bias"])
        all_checks.append({"set": values, "texts": _two_vector_texts(r)})
    return widgets.browser_chart(chart, params=list(params.values()), checks=all_checks)


# --------------------------------------------------------------------------------------------
# The trained FM, shipped with the page: any user × movie, term by term, in the browser
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class FMTables:
    """A trained FM as three small tables, everything needed to score any user × movie.

    Attributes:
        weights: one row per feature value a row can hold: ``key`` (``"f:c"``, field number ``f``
            in schema order and code ``c``; for the multi-valued genres, ``c`` numbers the distinct
            genre *sets* and the row holds the mean of their members, exactly what the model pools),
            ``w`` (first-order weight) and ``v0 .. v{k-1}`` (the vector).
        users: ``user`` (raw id), ``c{f}`` (the code of each field ``f`` of role "user"), ``seen``
            (1 if the user has training rows, else 0: the user id is then "unknown").
        items: ``movie`` (raw id), ``title`` and ``c{f}`` for each field of role "item".
        bias: ``w0``.
        fields: field names in schema order (their numbers are the ``f`` above).
    """

    weights: pd.DataFrame
    users: pd.DataFrame
    items: pd.DataFrame
    bias: float
    fields: tuple

    @property
    def dim(self) -> int:
        return sum(c.startswith("v") and c[1:].isdigit() for c in self.weights.columns)


def fm_tables(model: FactorizationMachine, data, titles: Mapping | None = None) -> FMTables:
    """Export a trained FM over the CTR fields of MovieLens-100K to :class:`FMTables`.

    The schema's fields must each describe the user or the item (:attr:`recbook.data.Field.role`).
    Every user and every movie of ``data.frames`` (train, valid and test) gets its codes under
    ``data.schema``, as the protocol encodes them: a user or movie absent from the training rows
    has the "unknown" code of its id field. ``titles`` (``{item_id: title}``, e.g.
    ``ml.items.set_index("item_id")["title"]``) fills ``items["title"]``.
    """
    model = _require_fm(model)
    frames = getattr(data, "frames", None)
    if not isinstance(frames, Mapping) or not frames:
        raise ValueError(f"data: expected a recbook.data.CTRData with .frames, got {type(data).__name__}")
    schema = data.schema
    if schema is not model.schema and schema.names != model.schema.names:
        raise ValueError("data: its schema differs from the model's")
    names = schema.names
    user_side = [f.name for f in schema.select("user")]
    item_side = [f.name for f in schema.select("item")]
    if len(user_side) + len(item_side) != len(names) or "user_id" not in user_side \
            or "item_id" not in item_side or any(f.multi for f in schema.select("user")):
        raise ValueError(f"model: expected fields of role 'user' (user_id, single-valued) and 'item' "
                         f"(item_id, ...), got {[(f.name, f.role) for f in schema.fields]}")
    rows = pd.concat([frames[s] for s in ("train", "valid", "test") if s in frames], ignore_index=True)
    require_columns(rows, [*CTR_FIELDS, "genres"], name="data.frames")
    train_users = set(frames["train"]["user_id"]) if "train" in frames else set()
    index = {f: i for i, f in enumerate(names)}

    user_rows = rows.drop_duplicates("user_id").sort_values("user_id")
    users = pd.DataFrame({"user": user_rows["user_id"].to_numpy()})
    for f in user_side:
        users[f"c{index[f]}"] = schema[f].encode(user_rows[f].reset_index(drop=True))
    users["seen"] = users["user"].isin(train_users).astype(int)

    item_rows = rows.drop_duplicates("item_id").sort_values("item_id").reset_index(drop=True)
    items = pd.DataFrame({"movie": item_rows["item_id"].to_numpy()})
    if titles is not None:
        titles = pd.Series(titles)
        missing = sorted(set(items["movie"]) - set(titles.index))
        if missing:
            raise ValueError(f"titles: no title for item_id {missing[:5]}")
        items["title"] = titles.loc[items["movie"]].astype(str).to_numpy()
    sets = {}  # for each multi-valued item field: its distinct sets of codes
    for f in item_side:
        if schema[f].multi:
            codes = schema[f].encode_multi(item_rows[f])
            sets[f], set_id = np.unique(np.sort(codes, axis=1), axis=0, return_inverse=True)
            items[f"c{index[f]}"] = set_id.ravel()
        else:
            items[f"c{index[f]}"] = schema[f].encode(item_rows[f])

    with torch.no_grad():
        table = model.embedding.table.weight.detach().cpu().double().numpy()
        first = model.linear.weights.table.weight.detach().cpu().double().numpy()[:, 0]
        bias = float(model.linear.bias)
    offsets = schema.offsets
    keys, w, v = [], [], []
    for f, field in enumerate(schema.fields):
        if field.multi:
            for s, members in enumerate(sets[field.name]):
                rows_ = offsets[f] + members[members != PAD]
                keys.append(f"{f}:{s}")
                w.append(first[rows_].mean() if len(rows_) else 0.0)
                v.append(table[rows_].mean(axis=0) if len(rows_) else np.zeros(table.shape[1]))
        else:
            for code in range(1, field.size):  # every code but padding
                keys.append(f"{f}:{code}")
                w.append(first[offsets[f] + code])
                v.append(table[offsets[f] + code])
    weights = pd.DataFrame(np.column_stack([w, np.asarray(v)]),
                           columns=["w", *[f"v{d}" for d in range(table.shape[1])]])
    weights.insert(0, "key", keys)
    return FMTables(weights, users, items, bias, tuple(names))


def tables_logit(tables: FMTables, user: int, movie: int) -> dict:
    """The FM's terms for ``user`` × ``movie`` computed from :class:`FMTables` with NumPy: what the
    browser computes from the same tables. ``{term name: value}``, bias first; they sum to the logit."""
    users = tables.users.set_index("user")
    items = tables.items.set_index("movie")
    if user not in users.index:
        raise ValueError(f"user: {user!r} is not in the tables")
    if movie not in items.index:
        raise ValueError(f"movie: {movie!r} is not in the tables")
    codes = {**users.loc[user].to_dict(), **items.loc[movie].to_dict()}
    weights = tables.weights.set_index("key")
    vcols = [f"v{d}" for d in range(tables.dim)]
    rows = [weights.loc[f"{f}:{int(codes[f'c{f}'])}"] for f in range(len(tables.fields))]
    terms = {"bias": tables.bias}
    terms.update({name: float(r["w"]) for name, r in zip(tables.fields, rows)})
    for a in range(len(rows)):
        for b in range(a + 1, len(rows)):
            terms[f"{tables.fields[a]}{PAIR_SEP}{tables.fields[b]}"] = float(
                rows[a][vcols].to_numpy(float) @ rows[b][vcols].to_numpy(float))
    return terms


def _contribution_texts(model, data, tables: FMTables, user: int, movie: int) -> list[str]:
    """What the chart must show for ``user`` × ``movie``, computed by the PyTorch model itself."""
    catalogue = getattr(data, "catalogue", None)
    if catalogue is None:
        batch, row = user_movie_batch(data, user, movie), 0
    else:  # the user against the whole catalogue: one forward pass, no search through the rows
        codes = tables.users.set_index("user").loc[user]
        fixed = {f: int(codes[f"c{i}"]) for i, f in enumerate(tables.fields) if f"c{i}" in codes.index}
        batch = catalogue.ctr_batch(model.schema, fixed)
        row = int(catalogue.codes([movie])[0]) - N_RESERVED
    was_training = model.training
    model.eval()
    with torch.no_grad():
        logit = float(model(batch)[row])
    model.train(was_training)
    # The browser adds up weights rounded to 4 decimals: a logit within 0.001 of a rounding
    # boundary of its 2-decimal text could show either neighbour.
    if abs(abs(logit * 100) % 1 - 0.5) < 0.1:
        raise ValueError(f"checks: the logit of user {user} × movie {movie} ({logit:.5f}) is too close "
                         "to a rounding boundary for a 2-decimal check; pick another pair")
    seen = int(tables.users.set_index("user").loc[user, "seen"])
    return [f"logit = {d3_signed(logit)}", "seen in training" if seen else "new user"]


def default_contribution_checks(model: FactorizationMachine, data, tables: FMTables, user: int,
                                movie: int, n: int = 3) -> list[tuple[int, int]]:
    """``n`` (user, movie) pairs for the browser checks of :func:`contribution_chart`, besides its
    start: users of both kinds (seen in training and new, alternating, starting with the kind
    ``user`` is not) and movies other than ``movie``, in table order, skipping pairs whose logit
    is too close to a rounding boundary for a 2-decimal check."""
    users, movies = tables.users, tables.items["movie"].tolist()
    seen = int(users.set_index("user").loc[user, "seen"])
    by_kind = {s: [u for u in users.loc[users["seen"] == s, "user"].tolist() if u != user] for s in (0, 1)}
    pairs, kind, i, j = [], 1 - seen, 0, 0
    candidates = [movie, *[m for m in movies if m != movie]]
    while len(pairs) < n and j < len(candidates):
        pool = by_kind[kind] or by_kind[1 - kind]
        if not pool:
            break
        u, m = pool[i % len(pool)], candidates[j]
        j += 1
        try:
            _contribution_texts(model, data, tables, u, m)
        except ValueError:
            continue                                # too close to a rounding boundary
        pairs.append((int(u), int(m)))
        kind, i = 1 - kind, i + (kind == 1)
    return pairs


def contribution_chart(model: FactorizationMachine, data, *, user: int, movie: int,
                       titles: Mapping | None = None, top: int = 12,
                       checks: Sequence[tuple[int, int]] | None = None, decimals: int = 4):
    """Every term of the FM's logit for any user × movie, computed in the browser.

    The trained model travels with the chart as :func:`fm_tables` (weights rounded to
    ``decimals`` and shipped as integers, about 2,700 rows × (k + 1) numbers for MovieLens-100K;
    ``titles`` as in
    :func:`fm_tables` label the movies). Two dropdowns pick the
    user (943) and the movie (1,682, by title); Vega looks up the codes of the eight fields, the
    first-order weights and the vectors, and computes the bias, the eight first-order terms and the
    28 dot products. The ``top`` largest terms get a bar each, the rest one "other terms" bar, so
    the bars always add up to the logit in the header. ``(user, movie)`` and each pair of
    ``checks`` become browser checks of the header, with the logit computed by the PyTorch model;
    by default (``None``), :func:`default_contribution_checks` picks three pairs.
    """
    model = _require_fm(model)
    top = require_positive_int(top, name="top")
    tables = fm_tables(model, data, titles)
    users, items = tables.users, tables.items
    if checks is None:
        checks = default_contribution_checks(model, data, tables, user, movie)
    for u, m in [(user, movie), *checks]:
        if u not in set(users["user"]):
            raise ValueError(f"user: {u!r} is not a user of data")
        if m not in set(items["movie"]):
            raise ValueError(f"movie: {m!r} is not a movie of data")
    n_fields, k = len(tables.fields), tables.dim
    vcols = [f"v{d}" for d in range(k)]
    # Weights as integers in units of 10^-decimals: about 40% fewer bytes than decimal fractions.
    scale = 10 ** require_positive_int(decimals, name="decimals")
    scaled = tables.weights.copy()
    scaled[["w", *vcols]] = np.rint(scaled[["w", *vcols]].to_numpy() * scale).astype(np.int64)
    weights = widgets.CsvData(scaled, name="fm_weights")
    user_data = widgets.CsvData(users, name="fm_users")
    item_data = widgets.CsvData(items.drop(columns=["title"], errors="ignore"), name="fm_items")
    term_rows = [("bias", "bias", -1, -1)]
    term_rows += [(f, "first order", i, -1) for i, f in enumerate(tables.fields)]
    term_rows += [(f"{tables.fields[a]}{PAIR_SEP}{tables.fields[b]}", "pair", a, b)
                  for a in range(n_fields) for b in range(a + 1, n_fields)]
    terms = widgets.CsvData(pd.DataFrame(term_rows, columns=["term", "kind", "a", "b"]), name="fm_terms")

    by_title = items.sort_values(["title", "movie"]) if "title" in items else items
    titles = by_title["title"].tolist() if "title" in items else [str(m) for m in by_title["movie"]]
    dup = pd.Series(titles).duplicated(keep=False).to_numpy()
    labels = [f"{t} [{m}]" if d else t for t, m, d in zip(titles, by_title["movie"], dup)]
    user_param = widgets.dropdown(
        "user", users["user"].tolist(), user, label="user",
        labels=[f"{u} · {'seen' if s else 'new'}"
                for u, s in zip(users["user"], users["seen"])])
    movie_param = widgets.dropdown("movie", by_title["movie"].tolist(), movie, labels=labels, label="movie")

    user_fields = [c for c in users.columns if c.startswith("c") and c[1:].isdigit()]
    item_fields = [c for c in items.columns if c.startswith("c") and c[1:].isdigit()]
    dot = "(" + " + ".join(f"datum.a{d} * datum.b{d}" for d in range(k)) + f") / {scale * scale}"
    base = (
        alt.Chart(terms.ref)
        .transform_calculate(user="user", movie="movie")
        .transform_lookup(lookup="user", from_=alt.LookupData(user_data.ref, "user", [*user_fields, "seen"]))
        .transform_lookup(lookup="movie", from_=alt.LookupData(item_data.ref, "movie", item_fields))
        .transform_calculate(ka="datum.a + ':' + datum['c' + datum.a]",
                             kb="datum.b + ':' + datum['c' + datum.b]")
        .transform_lookup(lookup="ka", from_=alt.LookupData(weights.ref, "key", ["w", *vcols]),
                          as_=["aw", *[f"a{d}" for d in range(k)]])
        .transform_lookup(lookup="kb", from_=alt.LookupData(weights.ref, "key", vcols),
                          as_=[f"b{d}" for d in range(k)])
        .transform_calculate(value=f"datum.kind == 'bias' ? {tables.bias!r} : "
                                   f"datum.kind == 'first order' ? datum.aw / {scale} : {dot}")
    )
    # The readout: three short lines (at most about 35 characters each), so that it fits a phone.
    header = base.transform_aggregate(logit="sum(value)", seen="max(seen)").transform_calculate(
        t="'logit = ' + format(datum.logit, '+.2f') + ' → p = ' + format(1 / (1 + exp(-datum.logit)), '.2f')",
        s1="toNumber(datum.seen) > 0 ? 'seen in training:' : 'new user: its user_id is \"unknown\",'",
        s2="toNumber(datum.seen) > 0 ? 'its user_id has a trained vector' : 'whose vector was never trained'",
    )
    head = alt.layer(
        header.mark_text(align="left", fontSize=15, fontWeight="bold").encode(
            x=alt.value(0), y=alt.value(10), text="t:N"),
        header.mark_text(align="left", fontSize=12, color="#555555").encode(
            x=alt.value(0), y=alt.value(32), text="s1:N"),
        header.mark_text(align="left", fontSize=12, color="#555555").encode(
            x=alt.value(0), y=alt.value(48), text="s2:N"),
    ).properties(width=400, height=56)

    # The legend below the bars, one entry per line: beside them it would widen the chart.
    effect = alt.Color("effect:N", title=None, legend=alt.Legend(orient="bottom", direction="vertical"),
                       scale=alt.Scale(domain=["raises the logit", "lowers the logit", "bias and the other terms"],
                                       range=["#C44E52", "#4C72B0", "#A0A0A0"]))
    bars = (
        base.transform_calculate(size="abs(datum.value)")
        .transform_window(rank="row_number()", sort=[alt.SortField("size", order="descending")])
        .transform_calculate(
            group=f"datum.rank <= {top} ? datum.term : 'other terms'",
            gkind=f"datum.rank <= {top} ? datum.kind : 'other'")
        .transform_aggregate(value="sum(value)", n="count()", groupby=["group", "gkind"])
        .transform_calculate(
            label="datum.gkind == 'other' ? datum.n + ' other terms' : "
                  "datum.gkind == 'first order' ? datum.group + ' (first order)' : datum.group",
            effect="datum.gkind == 'other' || datum.gkind == 'bias' ? 'bias and the other terms' : "
                   "datum.value >= 0 ? 'raises the logit' : 'lowers the logit'",
            # "n other terms" goes last, whatever its size.
            size="datum.gkind == 'other' ? -1 : abs(datum.value)", shown="format(datum.value, '+.2f')",
            max_zero="max(datum.value, 0)")
    )
    y = alt.Y("label:N", sort=alt.EncodingSortField("size", op="max", order="descending"), title=None,
              axis=alt.Axis(labelLimit=180, labelFontSize=12))
    chart_bars = alt.layer(
        bars.mark_bar(height={"band": 0.75}).encode(
            x=alt.X("value:Q", title="contribution to the logit"), y=y, color=effect,
            tooltip=[alt.Tooltip("label:N", title="term"), alt.Tooltip("value:Q", format="+.4f")]),
        bars.mark_text(align="left", dx=4, fontSize=11).encode(
            x=alt.X("max_zero:Q"), y=y, text="shown:N"),
    ).properties(width=400, height={"step": 22})
    chart = alt.vconcat(head, chart_bars, spacing=12).resolve_scale(
        color="independent")
    checks_ = [{"set": {"user": int(u), "movie": int(m)}, "texts": _contribution_texts(model, data, tables, u, m)}
               for u, m in [(user, movie), *checks]]
    return widgets.browser_chart(chart, params=[user_param, movie_param],
                                 data=[terms, user_data, item_data, weights], checks=checks_)


# --------------------------------------------------------------------------------------------
# How the leaderboard's FM starts: the committed comparison of initialisations
# --------------------------------------------------------------------------------------------

XAVIER_VARIANT = "recbook+recbole:embed_init"
"""The row of ``book/results/fm_ablation.csv`` whose FM draws its vectors Xavier-normal (RecBole's
initialisation) instead of ``N(0, 0.01²)``, everything else as the leaderboard's recipe."""


def read_ablation(name: str = "fm_ablation.csv") -> pd.DataFrame:
    """An ablation table of the book (``book/results/NAME``, written by :mod:`recbook.ablation`,
    two comment lines first), found where :func:`recbook.bench.read_results` looks: next to the
    notebook, in the repository recbook was installed from, else downloaded from the repository."""
    from pathlib import Path

    from .. import REPOSITORY_URL

    if not isinstance(name, str) or "/" in name or not name.endswith(".csv"):
        raise ValueError(f"name: expected a file name ending in .csv, got {name!r}")
    here = Path.cwd()
    for folder in (here / "results", here / "book" / "results", BOOK_RESULTS):
        if (folder / name).is_file():
            return pd.read_csv(folder / name, comment="#")
    return pd.read_csv(f"{REPOSITORY_URL.rstrip('/')}/raw/HEAD/book/results/{name}", comment="#")


def init_comparison(ablation: pd.DataFrame, variant: str = XAVIER_VARIANT, baseline: str = "recbook",
                    level: float = 0.95) -> pd.DataFrame:
    """``variant`` against ``baseline`` (rows of side ``recbook`` of an FM ablation table, e.g.
    :func:`read_ablation`): per metric (``valid_auc``, ``test_auc``) the mean of each over the seeds
    both ran, the mean paired difference ``variant - baseline`` and its ``level`` t-interval
    (:func:`recbook.metrics.paired_t_interval`), and the number of seeds."""
    from ..metrics import paired_t_interval

    require_columns(ablation, ["side", "variant", "seed", "valid_auc", "test_auc"], name="ablation")
    rows = ablation[ablation["side"] == "recbook"]
    tables = {}
    for v in (baseline, variant):
        mine = rows[rows["variant"] == v]
        if mine.empty:
            raise ValueError(f"variant: no rows of variant {v!r} on side 'recbook'")
        if mine["seed"].duplicated().any():
            raise ValueError(f"ablation: variant {v!r} has several rows for one seed")
        tables[v] = mine.set_index("seed")
    seeds = sorted(set(tables[baseline].index) & set(tables[variant].index))
    if len(seeds) < 2:
        raise ValueError(f"ablation: variants {baseline!r} and {variant!r} share {len(seeds)} seed(s); "
                         "an interval needs at least 2")
    out = {}
    for m in ("valid_auc", "test_auc"):
        a, b = (tables[v].loc[seeds, m].to_numpy(float) for v in (baseline, variant))
        mean, low, high = paired_t_interval(b - a, level)
        out[m] = {baseline: a.mean(), variant: b.mean(), "difference": mean, "low": low, "high": high,
                  "seeds": len(seeds)}
    return pd.DataFrame(out).T


# --------------------------------------------------------------------------------------------
# Figures
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
        fig, axes = plt.subplots(1, 2, figsize=(7.2, 3.4), layout="constrained")
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
        ax.set_title(title, fontsize=10)
    fig.colorbar(im, ax=list(axes), shrink=0.85, label="interaction (added to the logit)")
    return np.asarray(axes, dtype=object)


def plot_pairwise_timing(times: pd.DataFrame, *, ax: Axes | None = None) -> Axes:
    """Seconds per call of the three forms of the pairwise term against ``n``, log-log.

    ``times`` is :func:`time_pairwise`'s table. Dashed grey lines of slope 1 and 2 show what
    ``O(n)`` and ``O(n^2)`` growth look like; the two ratios at the smallest and the largest ``n``
    are written on the plot.
    """
    require_columns(times, ["n", "fm_seconds", "gram_seconds", "loop_seconds"], name="times")
    t = times.sort_values("n")
    n = t["n"].to_numpy(dtype=float)
    cols = ["fm_seconds", "gram_seconds", "loop_seconds"]
    if (n <= 0).any() or (t[cols].to_numpy() <= 0).any():
        raise ValueError("times: expected positive n and positive times (log-log axes)")
    ax = _axes(ax, figsize=(7.0, 4.4))
    styles = (("loop_seconds", "loop over pairs (Python), $O(kn^2)$", _POSITIVE, "o"),
              ("gram_seconds", "Gram matrix, one batched matmul, $O(kn^2)$", "#8172B2", "s"),
              ("fm_seconds", "FM identity, $O(kn)$", _NEGATIVE, "D"))
    for col, label, color, marker in styles:
        ax.plot(n, t[col].to_numpy(dtype=float), marker=marker, ms=5, lw=2, color=color, label=label)
    ref = n[len(n) // 2:]
    for col, slope in (("loop_seconds", 2), ("fm_seconds", 1)):
        y_last = float(t[col].iloc[-1])
        ax.plot(ref, y_last * (ref / n[-1]) ** slope, ls="--", lw=1, color="0.6",
                label="slopes 2 and 1 (∝ n², ∝ n)" if slope == 1 else None)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xticks(n, [f"{int(v):,}" for v in n])
    ax.xaxis.set_minor_formatter(NullFormatter())
    first, last = t.iloc[0], t.iloc[-1]
    ax.annotate(f"n = {int(first['n']):,}: Gram {first['gram_seconds'] / first['fm_seconds']:.1f}×, "
                f"loop {first['loop_seconds'] / first['fm_seconds']:.1f}× the FM identity\n"
                f"n = {int(last['n']):,}: Gram {last['gram_seconds'] / last['fm_seconds']:,.0f}×, "
                f"loop {last['loop_seconds'] / last['fm_seconds']:,.0f}×",
                (0.98, 0.03), xycoords="axes fraction", ha="right", va="bottom", fontsize=9)
    ax.set_xlabel("active features per example, n (log scale)")
    ax.set_ylabel("seconds per call (log scale)")
    ax.set_ylim(bottom=t[cols].min().min() / 6)  # room for the note
    ax.set_title("Cost of the pairwise term (64 rows, k = 16, one thread)")
    ax.legend(loc="upper left", frameon=False, fontsize=9)
    ax.grid(alpha=0.3, which="major")
    return ax


def plot_gram_identity(v, names: Sequence[str] | None = None, *, axes=None) -> np.ndarray:
    """The FM identity as a picture: the Gram matrix ``G = V V^T`` of ``n`` vectors, its diagonal
    struck out, and the pairs ``i < j`` as half of what is left.

    Left: ``G`` with every entry written in, the pairs ``i < j`` highlighted, the diagonal hatched.
    Right: the same numbers through the identity: ``sum(G) = |sum_i v_i|^2`` (the square of the
    sum), ``trace(G) = sum_i |v_i|^2`` (the sum of the squares), and ``(sum(G) - trace(G)) / 2``,
    the pairwise term.

    Args:
        v: ``[n, k]`` vectors (a small worked example: n of 3 or 4).
        names: labels of the vectors (default ``v1, v2, ...``).
        axes: two Axes to draw into (default: a new figure).
    """
    v = np.asarray(v.detach().cpu() if hasattr(v, "detach") else v, dtype=float)
    if v.ndim != 2 or not 2 <= v.shape[0] <= 6 or v.shape[1] < 1:
        raise ValueError(f"v: expected an [n, k] array with 2 <= n <= 6, got shape {v.shape}")
    n = v.shape[0]
    names = [f"v{i + 1}" for i in range(n)] if names is None else [str(x) for x in names]
    if len(names) != n:
        raise ValueError(f"names: expected {n} names, got {len(names)}")
    if axes is None:
        fig, axes = plt.subplots(1, 2, figsize=(7.2, 3.1), layout="constrained",
                                 gridspec_kw={"width_ratios": [1.0, 1.3]})
    else:
        axes = np.asarray(axes, dtype=object).ravel()
        if len(axes) != 2 or not all(isinstance(a, Axes) for a in axes):
            raise ValueError("axes: expected two matplotlib Axes or None")
    ax, tx = axes
    gram = v @ v.T
    for i in range(n):
        for j in range(n):
            upper, diag = j > i, i == j
            face = "#F3C9A6" if upper else "#EEEEEE" if diag else "white"
            ax.add_patch(Rectangle((j, n - 1 - i), 1, 1, facecolor=face, edgecolor="0.6",
                                   hatch="//" if diag else None, lw=0.8))
            ax.text(j + 0.5, n - 0.5 - i, f"{gram[i, j]:g}", ha="center", va="center", fontsize=12,
                    color="0.55" if diag else "black", fontweight="bold" if upper else "normal")
    ax.set_xlim(0, n)
    ax.set_ylim(0, n)
    ax.set_aspect("equal")
    ax.set_xticks(np.arange(n) + 0.5, names)
    ax.set_yticks(np.arange(n) + 0.5, names[::-1])
    ax.xaxis.tick_top()
    ax.tick_params(length=0, labelsize=11)
    for side in ax.spines.values():
        side.set_visible(False)
    ax.set_title("G = V Vᵀ: pairs i < j shaded, diagonal hatched", fontsize=10, pad=26)

    s = v.sum(axis=0)
    total, trace = float(gram.sum()), float(np.trace(gram))
    pairs = float(sum(gram[i, j] for i in range(n) for j in range(i + 1, n)))
    vec = lambda x: "(" + ", ".join(f"{c:g}" for c in x) + ")"  # noqa: E731
    lines = [
        ("sum of all entries of G", f"= |Σᵢ vᵢ|² = |{vec(s)}|² = {total:g}"),
        ("minus the diagonal", f"= Σᵢ |vᵢ|² = {' + '.join(f'{g:g}' for g in np.diag(gram))} = {trace:g}"),
        ("half of what is left", f"= ({total:g} − {trace:g}) / 2 = {(total - trace) / 2:g}"),
        ("the pairs i < j, one by one",
         "= " + " + ".join(f"({gram[i, j]:g})" if gram[i, j] < 0 else f"{gram[i, j]:g}"
                           for i in range(n) for j in range(i + 1, n)) + f" = {pairs:g}"),
    ]
    for k, (what, value) in enumerate(lines):
        y = 0.86 - 0.24 * k
        tx.text(0.0, y, what, fontsize=10, color="0.35", transform=tx.transAxes)
        tx.text(0.0, y - 0.09, value, fontsize=11.5, transform=tx.transAxes,
                fontweight="bold" if k >= 2 else "normal")
    tx.axis("off")
    return np.asarray([ax, tx], dtype=object)


def plot_fm_architecture(fields: Sequence[str] = ("user_id", "item_id", "age_bucket", "gender",
                                                  "occupation", "zip1", "year_bucket", "genres"),
                         dim: int = 16, *, ax: Axes | None = None) -> Axes:
    """The FM as the book builds it: one-hot fields → one shared table with per-field offsets →
    the first-order and the pairwise term → the logit (the sigmoid lives in the loss)."""
    fields = [str(f) for f in fields]
    if len(fields) < 2:
        raise ValueError(f"fields: expected at least two field names, got {fields}")
    dim = require_positive_int(dim, name="dim")
    ax = diagram_axes(ax, (7.2, 3.9), (0, 100), (0, 50))
    box, arrow = partial(diagram_box, ax), partial(diagram_arrow, ax)

    diagram_fields_table(ax, fields, top=47, table_x=27, table_w=20, fields_title="one-hot fields",
                         row_label="{} rows")
    ax.text(37, 4.2, "row = offset[field] + code\ncolumns: w (1) and v (" + str(dim) + ")", ha="center",
            va="top", fontsize=9, color="0.3")
    # The two terms.
    arrow(47.5, 33, 57, 36)
    arrow(47.5, 17, 57, 14)
    box(57.5, 31.5, 20, 9, "first order\nw₀ + Σᵢ wᵢ", "#DCE6F2", 9.5)
    box(57.5, 9.5, 20, 9, "pairwise, O(kn)\n" + r"$\sum_{i<j}\,\langle v_i, v_j\rangle$", "#DCE6F2", 9.5)
    arrow(78.5, 36, 86, 27)
    arrow(78.5, 14, 86, 23)
    box(86.5, 21, 10, 8, "logit\nŷ", "#D5EDE4", 10, "bold")
    ax.text(91.5, 16.5, "σ(ŷ) only in\nthe loss or\nfor display", ha="center", va="top", fontsize=9,
            color="0.35")
    ax.text(67.5, 24.8, "vectors vᵢ (k each)", ha="center", fontsize=9, color="0.35")
    ax.text(67.5, 44, "weights wᵢ", ha="center", fontsize=9, color="0.35")
    return ax


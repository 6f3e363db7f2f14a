"""Helpers of the DeepFM chapter: one prediction split into its three parts and computed in the
browser, the FM inside DeepFM, the leaderboard read as paired comparisons, and a typical
DeepFM listing run as written.

The chapter calls these helpers; they hold the code, the chapter explains it.

* :func:`fm_part`: the factorization machine inside a :class:`~recbook.models.DeepFM` (its
  first-order weights and its shared embeddings), as a :class:`~recbook.models.FactorizationMachine`.
* :func:`deepfm_parts`: one user–movie pair's logit split into its bias, first-order, FM and deep
  parts, by the PyTorch model.
* :func:`deepfm_tables`, :func:`tables_parts` and :func:`parts_chart`: the trained DeepFM exported
  with the page (the shared embedding table once, the MLP's weights), and a chart that computes
  the three parts of any user × movie logit **in the browser**, the MLP included, one forward
  pass per change of a control (a few hundred rows, not one row per weight).
* :func:`pair_weight_matrix` and :func:`plot_pair_weights`: the FM's weight ``<v_a, v_b>`` for
  every pair of values of two fields, the crosses DeepFM learns without being given them.
* :func:`shared_gradients`: how much of the gradient on the shared embeddings comes from the FM
  part and how much from the MLP.
* :func:`part_summary`: what each part contributes over a block of rows (its spread, its AUC
  alone, the AUC without it).
* :func:`results_table` and :func:`paired_table`: the leaderboard's rows, mean ± std per model and
  paired differences over seeds with a verdict ("ahead", "behind" or "tied").
* :func:`config_entries` and :func:`run_configs`: the configurations of DeepFM tried on
  validation, trained like leaderboard entries into their own file (:data:`CONFIGS_FILE`).
* :func:`read_ablation` and :func:`init_choice`: the ablation record of one-setting changes
  (:data:`ABLATION_FILE`) and the paired validation difference behind the entry's initialisation.
* :func:`plot_deepfm_architecture`: the model as a diagram.

A typical DeepFM listing, as found in tutorials and course notes, as written:
:class:`ListingDeepFM` (and :class:`ListingDeepFMShapesFixed`), and

* :func:`listing_broadcast`: the ``[B] + [B, 1]`` broadcast into ``[B, B]``;
* :func:`saturation_at_init`: ``sigmoid`` inside the model, ``BCELoss`` and ``N(0, 1)``
  embeddings: share of saturated outputs and of zero gradients at initialisation;
* :func:`time_per_field_tables`: the measured cost of one ``nn.Embedding`` per field.

(The FM chapter shows the broadcast and the sigmoid/``BCELoss`` problem on a miniature and on
single logits; these helpers measure them on the full listing and on real data.)
"""
from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import partial

import altair as alt
import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from matplotlib.axes import Axes
from torch import nn

from . import BOOK_RESULTS
from .. import widgets
from .._checks import require_columns, require_positive_int
from ..data.features import Schema
from ..models import DeepFM, FactorizationMachine
from ..plots import axes_or_new as _axes
from ..plots import diagram_arrow, diagram_axes, diagram_box, diagram_fields_table
from ..train import num_threads
from .fm import FMTables, d3_signed, fm_tables, user_movie_batch
from .widedeep import _require, _require_data

__all__ = [
    "ABLATION_FILE", "CONFIGS_FILE", "PARTS_CHECK_MOVIES", "PARTS_CHECK_USERS", "DeepFMTables", "ListingDeepFM", "ListingDeepFMShapesFixed", "config_entries",
    "decode36", "deepfm_parts", "deepfm_tables", "encode36", "fm_part", "init_choice", "listing_broadcast",
    "pair_weight_matrix", "paired_table", "part_summary", "parts_chart", "plot_deepfm_architecture",
    "plot_pair_weights", "read_ablation", "results_table", "run_configs", "saturation_at_init", "shared_gradients",
    "tables_parts", "time_per_field_tables",
]

PARTS = ("bias", "first order", "FM (pairs)", "deep (MLP)")
"""The parts of a DeepFM logit, in the order the chapter shows them."""



# --------------------------------------------------------------------------------------------
# The FM inside DeepFM, and one logit in three parts
# --------------------------------------------------------------------------------------------

def fm_part(model: DeepFM) -> FactorizationMachine:
    """The factorization machine inside ``model``: a :class:`~recbook.models.FactorizationMachine`
    holding a copy of its bias, first-order weights and shared embedding table. Its logit is
    DeepFM's ``linear + fm`` parts; DeepFM adds the MLP's output to it."""
    model = _require(model, DeepFM)
    fm = FactorizationMachine(model.schema, dim=model.embedding.dim, validate=model.validate)
    state = {k: v for k, v in model.state_dict().items() if k.startswith(("linear.", "embedding."))}
    fm.load_state_dict(state)
    return fm.train(model.training)


def deepfm_parts(model: DeepFM, data, user_id: int, item_id: int) -> pd.DataFrame:
    """The logit of a :class:`~recbook.models.DeepFM` for one user and movie, split into its parts.

    Rows: ``bias``, ``first order`` (the per-feature weights), ``FM (pairs)`` (the pairwise term),
    ``deep (MLP)``, and ``logit`` (their sum, the model's output); column ``value``. The batch is
    built by :func:`recbook.chapters.fm.user_movie_batch`, so the pair need not have been rated.
    """
    model = _require(model, DeepFM)
    batch = user_movie_batch(data, user_id, item_id)
    was = model.training
    model.eval()
    with torch.no_grad():
        parts = model.parts(batch)
        logit = model(batch)
    model.train(was)
    bias = float(model.linear.bias.detach())
    values = {"bias": bias, "first order": float(parts["linear"][0]) - bias, "FM (pairs)": float(parts["fm"][0]),
              "deep (MLP)": float(parts["deep"][0]), "logit": float(logit[0])}
    return pd.DataFrame({"value": values})


def part_summary(model: DeepFM, split: Mapping) -> pd.DataFrame:
    """What each part of a :class:`~recbook.models.DeepFM` contributes on a block of rows.

    One row per part: ``first order`` (with the bias), ``FM (pairs)``, ``deep (MLP)``, and
    ``logit`` (their sum). Columns: ``std over rows`` (how much the part moves from row to row; a
    constant shifts every score alike and ranks nothing), ``AUC alone`` (the part used as the
    score by itself) and ``AUC without it`` (the logit minus that part; for ``logit``: the
    model's AUC).
    """
    from ..metrics import auc

    model = _require(model, DeepFM)
    was = model.training
    model.eval()
    with torch.no_grad():
        p = model.parts(dict(split))
    model.train(was)
    parts = {"first order": p["linear"], "FM (pairs)": p["fm"], "deep (MLP)": p["deep"]}
    logit = (p["linear"] + p["fm"] + p["deep"]).double().numpy()
    y = split["label"].numpy()
    rows = {}
    for name, t in parts.items():
        v = t.double().numpy()
        rows[name] = {"std over rows": float(v.std()), "AUC alone": auc(y, v), "AUC without it": auc(y, logit - v)}
    rows["logit"] = {"std over rows": float(logit.std()), "AUC alone": auc(y, logit), "AUC without it": auc(y, logit)}
    return pd.DataFrame(rows).T


# --------------------------------------------------------------------------------------------
# The whole model in the browser
# --------------------------------------------------------------------------------------------

def _mlp_layers(model: DeepFM) -> list[nn.Linear]:
    """The MLP's three Linear layers; refuses an MLP the browser chart cannot compute."""
    kinds = [type(m) for m in model.mlp]
    linears = [m for m in model.mlp if isinstance(m, nn.Linear)]
    if any(k not in (nn.Linear, nn.ReLU, nn.Dropout) for k in kinds) or len(linears) != 3:
        raise ValueError("model: the browser chart computes an MLP of two hidden layers (Linear, ReLU, "
                         f"optional Dropout), without batch normalisation; got {[k.__name__ for k in kinds]}")
    return linears


def encode36(values, width: int) -> tuple[list[str], float]:
    """Each row of ``values`` (``[rows, cols]``) as one string of ``cols`` fixed-width base-36
    numbers: how the page ships a weight matrix compactly (``width`` characters per weight, no
    separators). A value ``v`` becomes the integer ``round(v / step) + 36**width // 2``, written in
    ``width`` base-36 digits, with one ``step`` for the whole matrix (its largest ``|v|`` maps to
    the largest code). Returns the strings and ``step``; :func:`decode36` inverts it, and the
    browser does the same with ``parseInt(substring(...), 36)``."""
    width = require_positive_int(width, name="width")
    values = np.asarray(values, dtype=float)
    if values.ndim != 2 or not np.isfinite(values).all():
        raise ValueError(f"values: expected a finite 2-D array, got shape {values.shape}")
    half = 36 ** width // 2
    top = float(np.abs(values).max())
    step = top / (half - 1) if top > 0 else 1.0
    codes = np.rint(values / step).astype(np.int64) + half            # [rows, cols], in [1, 36**width)
    return widgets.encode_digits(codes, width, _BASE36), step


_BASE36 = "0123456789abcdefghijklmnopqrstuvwxyz"   # the digits of JavaScript's parseInt(..., 36)


def decode36(strings: Sequence[str], step: float, width: int) -> np.ndarray:
    """The matrix :func:`encode36` wrote (up to its rounding): ``[len(strings), cols]``."""
    return (widgets.decode_digits(strings, width, _BASE36) - 36 ** width // 2).astype(float) * step


@dataclass(frozen=True)
class DeepFMTables:
    """A trained DeepFM as small tables, everything needed to compute any user × movie logit.

    Attributes:
        fm: the FM part (:func:`fm_part`) as :class:`recbook.chapters.fm.FMTables`: the bias, the
            first-order weights and the **shared** vectors, which the MLP reads too.
        w1, b1, w2, b2, w3, b3: the MLP's weights (``h1 = relu(w1 x + b1)``, ``h2 = relu(w2 h1 +
            b2)``, ``deep = w3 . h2 + b3``), where ``x`` is the fields' vectors concatenated in
            schema order.
    """

    fm: FMTables
    w1: np.ndarray
    b1: np.ndarray
    w2: np.ndarray
    b2: np.ndarray
    w3: np.ndarray
    b3: float


def deepfm_tables(model: DeepFM, data, titles: Mapping | None = None) -> DeepFMTables:
    """Export a trained :class:`~recbook.models.DeepFM` over the CTR fields of MovieLens-100K.

    The FM part goes through :func:`recbook.chapters.fm.fm_tables` (every user's and movie's codes,
    one row per feature value with its weight and vector); the MLP's weights are taken as they are.
    """
    model = _require(model, DeepFM)
    l1, l2, l3 = _mlp_layers(model)
    fm = fm_tables(fm_part(model), data, titles)
    get = lambda t: t.detach().cpu().double().numpy()  # noqa: E731
    return DeepFMTables(fm, get(l1.weight), get(l1.bias), get(l2.weight), get(l2.bias), get(l3.weight)[0],
                        float(l3.bias.detach()[0]))


@dataclass(frozen=True)
class _Page:
    """What the page carries: the tables as text, and the numbers the browser computes with."""

    weights: pd.DataFrame    # key, w (10^-4 units), v (base-36 string)
    mlp: pd.DataFrame        # key ("u" + a), b1 (10^-4 units), p (w1[a, :]), q (w2[:, a])
    v_step: float
    p_step: float
    q_step: float
    v: np.ndarray            # the vectors as the browser decodes them, [rows, k]
    w: np.ndarray            # the first-order weights as the browser reads them
    w1: np.ndarray
    w2: np.ndarray
    units: np.ndarray        # b1, b2 (padded), w3 (padded) as the browser reads them, [h1, 3]
    bias: float
    b3: float


UNITS = 10 ** 4
"""Scalars (first-order weights, biases, the output layer) travel as integers in units of 10⁻⁴."""
V_WIDTH, MLP_WIDTH = 3, 2
"""Base-36 digits per shared-vector coordinate and per MLP weight (:func:`encode36`): the vectors
get a step of about 10⁻⁵ of their largest value, the two weight matrices about 10⁻³."""


def _page(tables: DeepFMTables) -> _Page:
    fm = tables.fm
    k = fm.dim
    vcols = [f"v{d}" for d in range(k)]
    v_text, v_step = encode36(fm.weights[vcols].to_numpy(float), V_WIDTH)
    w_int = np.rint(fm.weights["w"].to_numpy(float) * UNITS).astype(np.int64)
    h1, h2 = tables.w1.shape[0], tables.w2.shape[0]
    if h2 > h1:
        raise ValueError(f"model: the chart expects the second hidden layer ({h2}) no wider than the first ({h1})")
    p_text, p_step = encode36(tables.w1, MLP_WIDTH)        # row a: w1[a, b] for every input b
    q_text, q_step = encode36(tables.w2.T, MLP_WIDTH)      # row a: w2[b, a] for every unit b of layer 2
    units = np.zeros((h1, 3))
    units[:, 0] = tables.b1
    units[:h2, 1] = tables.b2
    units[:h2, 2] = tables.w3
    units_int = np.rint(units * UNITS).astype(np.int64)
    weights = pd.DataFrame({"key": fm.weights["key"], "w": w_int, "v": v_text})
    mlp = pd.DataFrame({"key": [f"u{a}" for a in range(h1)], "b1": units_int[:, 0], "p": p_text, "q": q_text})
    return _Page(weights, mlp, v_step, p_step, q_step, decode36(v_text, v_step, V_WIDTH), w_int / UNITS,
                 decode36(p_text, p_step, MLP_WIDTH), decode36(q_text, q_step, MLP_WIDTH).T, units_int / UNITS,
                 round(fm.bias * UNITS) / UNITS, round(tables.b3 * UNITS) / UNITS)


def tables_parts(tables: DeepFMTables, user: int, movie: int) -> dict:
    """The parts of the logit of ``user`` × ``movie`` computed with NumPy from the numbers the
    page carries (rounded and encoded as the browser reads them): ``{"bias", "first order",
    "FM (pairs)", "deep (MLP)", "logit"}``."""
    fm = tables.fm
    users, items = fm.users.set_index("user"), fm.items.set_index("movie")
    if user not in users.index:
        raise ValueError(f"user: {user!r} is not in the tables")
    if movie not in items.index:
        raise ValueError(f"movie: {movie!r} is not in the tables")
    page = _page(tables)
    codes = {**users.loc[user].to_dict(), **items.loc[movie].to_dict()}
    position = {key: i for i, key in enumerate(fm.weights["key"])}
    rows = [position[f"{f}:{int(codes[f'c{f}'])}"] for f in range(len(fm.fields))]
    v, w = page.v[rows], page.w[rows]                       # [F, k], [F]
    first = float(w.sum())
    fm_term = float(0.5 * (v.sum(0) ** 2 - (v ** 2).sum(0)).sum())
    h2 = tables.w2.shape[0]
    h1 = np.maximum(0, page.w1 @ v.reshape(-1) + page.units[:, 0])   # the MLP's input: fields in order
    hidden2 = np.maximum(0, page.w2 @ h1 + page.units[:h2, 1])
    deep = float(page.units[:h2, 2] @ hidden2 + page.b3)
    return {"bias": page.bias, "first order": first, "FM (pairs)": fm_term, "deep (MLP)": deep,
            "logit": page.bias + first + fm_term + deep}


CHECKED_PARTS = (("logit", "logit = "), ("FM (pairs)", "FM (pairs) "), ("deep (MLP)", "deep (MLP) "))


def _part_texts(model: DeepFM, data, tables: DeepFMTables, user: int, movie: int,
                margin: float = 0.0015) -> list[str] | None:
    """What the chart must show for ``user`` × ``movie``, computed by the PyTorch model; None when
    a value lies within ``margin`` of a rounding boundary of its 2-decimal text (the browser
    computes with the page's rounded numbers) or the page's numbers give another text."""
    torch_parts = deepfm_parts(model, data, user, movie)["value"]
    browser = tables_parts(tables, user, movie)
    texts = []
    for name, label in CHECKED_PARTS:
        value = float(torch_parts[name])
        if abs(abs(value * 100) % 1 - 0.5) * 0.01 < margin or d3_signed(value) != d3_signed(browser[name]):
            return None
        texts.append(label + d3_signed(value))
    return texts


PARTS_CHECK_USERS = (1, 13, 100, 405, 500, 655)
PARTS_CHECK_MOVIES = (1, 50, 100, 181, 258, 294, 313, 1682)
"""The users and movies whose pairs :func:`parts_chart` tries as browser checks when it is given
none (with the chart's first user, and a new user, first)."""


def _decoded(string: str, index: int, width: int) -> str:
    """Vega expression: the integer code of entry ``index`` of the base-36 row ``string`` (an
    expression), centred (multiply by the matrix's step to get the weight)."""
    return f"(parseInt(substring({string},{width * index},{width * (index + 1)}),36)-{36 ** width // 2})"


def _rows_of(codes: pd.DataFrame, fields: Sequence[str], position: Mapping[str, int]) -> pd.DataFrame:
    """For each ``c{f}`` column of ``codes``, ``r{f}``: the row of the page's weight table that
    holds field ``f``'s weight and vector for that code."""
    out = {}
    for col in fields:
        f = int(col[1:])
        out[f"r{f}"] = [position[f"{f}:{int(c)}"] for c in codes[col]]
    return pd.DataFrame(out, index=codes.index)


def _parts_flow(tables: DeepFMTables, page: _Page, data: Mapping, user_ids: Sequence[int],
               movie_ids: Sequence[int]):
    """The chart's computation for the user and movie of the two parameters ``user`` and
    ``movie``, as :func:`tables_parts` does it in NumPy. Returns ``(chart, params)``: an Altair
    chart without a mark whose one row holds ``first``, ``fm``, ``deep``, ``bias``, ``logit`` and
    ``seen``, and the expression parameters it reads.

    ``data`` maps ``"weights"``, ``"mlp"``, ``"users"``, ``"items"`` to :class:`recbook.widgets.CsvData`
    (users and items carry, per field, the row ``r{f}`` of the weight table). What one change
    of a control costs is one forward pass and nothing more:

    * parameters (Vega signals) read the eight fields' rows of the shared table, decode the
      128 inputs ``x``, and compute the first-order and FM terms;
    * the rows of the MLP table are the 256 units of the first layer; each row's weights are
      decoded **once**, when the page loads (they do not depend on a control); a change computes
      ``h_a = relu(w1[a, :] · x + b1[a])`` and the row's share ``w2[:, a] h_a`` of every
      second-layer unit, and one ``aggregate`` sums the shares into the 128 units of layer 2.
    """
    fm = tables.fm
    k, n_fields = fm.dim, len(fm.fields)
    h1, n_in = tables.w1.shape
    h2 = tables.w2.shape[0]
    user_fields = [c for c in fm.users.columns if c.startswith("c") and c[1:].isdigit()]
    row = {int(c[1:]): (f"dfm_u.r{c[1:]}") for c in user_fields}
    row.update({f: f"dfm_m.r{f}" for f in range(n_fields) if f not in row})
    params = [
        alt.param(name="dfm_u", expr=f"data('{data['users'].name}')[indexof({list(map(int, user_ids))}, user)]"),
        alt.param(name="dfm_m", expr=f"data('{data['items'].name}')[indexof({list(map(int, movie_ids))}, movie)]"),
        alt.param(name="dfm_f", expr="[" + ", ".join(f"data('{data['weights'].name}')[toNumber({row[f]})]"
                                                      for f in range(n_fields)) + "]"),
        alt.param(name="dfm_first", expr="(" + " + ".join(f"toNumber(dfm_f[{f}].w)" for f in range(n_fields))
                                          + f") / {UNITS}"),
        # the inputs as integer codes: x = dfm_x * v_step
        alt.param(name="dfm_x", expr="[" + ", ".join(
            _decoded(f"dfm_f[{f}].v", d, V_WIDTH) for f in range(n_fields) for d in range(k)) + "]"),
    ]
    x = lambda f, d: f"dfm_x[{f * k + d}]"  # noqa: E731
    fm_term = " + ".join(f"pow({' + '.join(x(f, d) for f in range(n_fields))}, 2)"
                         f" - ({' + '.join(f'{x(f, d)} * {x(f, d)}' for f in range(n_fields))})" for d in range(k))
    params.append(alt.param(name="dfm_fm", expr=f"0.5 * ({fm_term}) * {page.v_step ** 2!r}"))
    flow = alt.Chart(data["mlp"].ref)
    # The user, movie and weight tables are read by the parameters above; a lookup that matches
    # nothing puts them on the page.
    for name, key in (("weights", "key"), ("users", "user"), ("items", "movie")):
        flow = flow.transform_lookup(lookup="key", from_=alt.LookupData(data[name].ref, key, [key]),
                                     as_=[f"none_{name}"])
    # each unit's weights as integer codes, decoded once: pa = w1[a, :] / p_step, qa = w2[:, a] / q_step
    pa = ", ".join(_decoded("datum.p", b, MLP_WIDTH) for b in range(n_in))
    qa = ", ".join(_decoded("datum.q", b, MLP_WIDTH) for b in range(h2))
    layer1 = " + ".join(f"datum.pa[{b}] * dfm_x[{b}]" for b in range(n_in))
    b2, w3 = page.units[:h2, 1], page.units[:h2, 2]
    q_step = float(page.q_step)
    deep = " + ".join(f"{float(w3[b])!r} * max(0, datum.s{b} * {q_step!r} + {float(b2[b])!r})"
                      for b in range(h2) if w3[b] != 0)
    flow = (flow.transform_calculate(pa=f"[{pa}]", qa=f"[{qa}]")
            .transform_calculate(h=f"max(0, ({layer1}) * {float(page.p_step * page.v_step)!r}"
                                   f" + toNumber(datum.b1) / {UNITS})")                    # layer 1, unit a
            .transform_calculate(**{f"c{b}": f"datum.qa[{b}] * datum.h" for b in range(h2)})
            .transform_aggregate(**{f"s{b}": f"sum(c{b})" for b in range(h2)})            # layer 2, before relu
            .transform_calculate(deep=f"{deep or 0} + {float(page.b3)!r}", first="dfm_first", fm="dfm_fm",
                                 seen="toNumber(dfm_u.seen)", bias=repr(float(page.bias)))
            .transform_calculate(logit="datum.bias + datum.first + datum.fm + datum.deep"))
    return flow, params


def parts_chart(model: DeepFM, data, *, user: int, movie: int, titles: Mapping | None = None,
                checks: Sequence[tuple[int, int]] | None = None, n_checks: int = 3):
    """The three parts of DeepFM's logit for any user × movie, computed in the browser.

    The page carries the trained model (:func:`deepfm_tables`): the shared embedding table with the
    first-order weights (about 2,700 rows, as in the FM chapter) and the MLP's weights, each weight
    matrix row as one string of base-36 numbers (:func:`encode36`). Two dropdowns pick the user
    (943) and the movie (1,682). For the pair, Vega looks up the eight fields' vectors, adds the
    first-order weights, computes the FM term with the square-of-sum identity, and runs the MLP
    over them, one row per hidden unit (:func:`_parts_flow`). The header gives the logit and its
    parts, one short line each, the bars the four parts.

    ``checks``: candidate user × movie pairs; the first ``n_checks`` whose logit, FM and deep
    texts are safely away from a rounding boundary become browser checks, with the texts computed
    by the PyTorch model. Without ``checks``, the candidates are the pairs of ``user``, the
    first new user and :data:`PARTS_CHECK_USERS` with :data:`PARTS_CHECK_MOVIES` that the data has.
    """
    model = _require(model, DeepFM)
    tables = deepfm_tables(model, data, titles)
    page = _page(tables)
    fm = tables.fm
    users, items = fm.users, fm.items
    if checks is None:
        new_users = users.loc[~users["seen"].astype(bool), "user"].tolist()[:1]
        known_u, known_m = set(users["user"]), set(items["movie"])
        checks = [(u, m) for u in dict.fromkeys([user, *new_users, *PARTS_CHECK_USERS])
                  for m in PARTS_CHECK_MOVIES if u in known_u and m in known_m]
    for u, m in [(user, movie), *checks]:
        if u not in set(users["user"]):
            raise ValueError(f"user: {u!r} is not a user of data")
        if m not in set(items["movie"]):
            raise ValueError(f"movie: {m!r} is not a movie of data")
    k, n_fields = fm.dim, len(fm.fields)
    h1, n_in = tables.w1.shape
    h2 = tables.w2.shape[0]
    if n_in != n_fields * k:
        raise ValueError(f"model: the MLP reads {n_in} inputs, expected {n_fields} fields × {k}")
    position = {key: i for i, key in enumerate(page.weights["key"])}
    user_codes = [c for c in users.columns if c.startswith("c") and c[1:].isdigit()]
    item_codes = [c for c in items.columns if c.startswith("c") and c[1:].isdigit()]
    weights = widgets.CsvData(page.weights, name="dfm_weights")
    mlp_data = widgets.CsvData(page.mlp, name="dfm_mlp")
    user_data = widgets.CsvData(pd.concat([users[["user", "seen"]], _rows_of(users, user_codes, position)], axis=1),
                                name="dfm_users")
    item_data = widgets.CsvData(pd.concat([items[["movie"]], _rows_of(items, item_codes, position)], axis=1),
                                name="dfm_items")

    by_title = items.sort_values(["title", "movie"]) if "title" in items else items
    names = by_title["title"].tolist() if "title" in items else [str(m) for m in by_title["movie"]]
    dup = pd.Series(names).duplicated(keep=False).to_numpy()
    labels = [f"{t} [{m}]" if d else t for t, m, d in zip(names, by_title["movie"], dup)]
    user_param = widgets.dropdown(
        "user", users["user"].tolist(), user, label="user",
        labels=[f"{u} · {'seen' if s else 'new'}" for u, s in zip(users["user"], users["seen"])])
    movie_param = widgets.dropdown("movie", by_title["movie"].tolist(), movie, labels=labels, label="movie")

    flow, flow_params = _parts_flow(tables, page, {"weights": weights, "mlp": mlp_data, "users": user_data,
                                                  "items": item_data}, users["user"].tolist(), items["movie"].tolist())
    # The readout, one short line each, so that it fits a phone's width.
    header = alt.Chart().transform_calculate(
        t="'logit = ' + format(datum.logit, '+.2f') + ' → p = ' + format(1 / (1 + exp(-datum.logit)), '.2f')",
        s1="'FM (pairs) ' + format(datum.fm, '+.2f') + ' · deep (MLP) ' + format(datum.deep, '+.2f')",
        s2="'first order ' + format(datum.first, '+.2f') + ' · bias ' + format(datum.bias, '+.2f')",
        u="toNumber(datum.seen) > 0 ? 'seen user: a trained user_id vector'"
          " : 'new user: its user_id vector is zero'")
    lines = [("t", 10, 15, "bold", "black"), ("s1", 32, 12, "normal", "black"), ("s2", 50, 12, "normal", "black"),
             ("u", 68, 12, "normal", "#555555")]
    head = alt.layer(*[
        header.mark_text(align="left", fontSize=size, fontWeight=weight, color=colour).encode(
            x=alt.value(0), y=alt.value(y_), text=f"{field}:N")
        for field, y_, size, weight, colour in lines]).properties(width=180, height=76)
    names_ = {"bias": "bias w₀", "first": "first order", "fm": "FM pairs", "deep": "deep (MLP)"}
    label = " : ".join(f"datum.part == '{p_}' ? '{n_}'" for p_, n_ in names_.items()) + " : ''"
    rank = " : ".join(f"datum.part == '{p_}' ? {i}" for i, p_ in enumerate(names_)) + " : 9"
    bars = (alt.Chart().transform_fold(list(names_), as_=["part", "value"])
            .transform_calculate(
                label=label, rank=rank, shown="format(datum.value, '+.2f')", max_zero="max(datum.value, 0)",
                effect="datum.part == 'bias' ? 'bias' : datum.value >= 0 ? 'raises the logit' : 'lowers the logit'"))
    y = alt.Y("label:N", sort=alt.EncodingSortField("rank", op="min"), title=None,
              axis=alt.Axis(labelLimit=90, labelFontSize=12))
    effect = alt.Color("effect:N", title=None, legend=alt.Legend(orient="bottom", direction="vertical"),
                       scale=alt.Scale(domain=["raises the logit", "lowers the logit", "bias"],
                                       range=["#C44E52", "#4C72B0", "#A0A0A0"]))
    chart_bars = alt.layer(
        bars.mark_bar(height={"band": 0.7}).encode(x=alt.X("value:Q", title="contribution to the logit",
                                                           axis=alt.Axis(tickCount=4)), y=y,
                                                   color=effect),
        bars.mark_text(align="left", dx=4, fontSize=12).encode(x="max_zero:Q", y=y, text="shown:N"),
    ).properties(width=180, height={"step": 30})
    # one forward pass per change, shared by the readout and the bars
    chart = alt.vconcat(head, chart_bars, spacing=12, data=flow.data, transform=flow.transform)
    n_checks = require_positive_int(n_checks, name="n_checks")
    checks_ = []
    for u, m in [(user, movie), *checks]:
        if len(checks_) == n_checks:
            break
        texts = _part_texts(model, data, tables, u, m)
        if texts is not None:
            checks_.append({"set": {"user": int(u), "movie": int(m)}, "texts": texts})
    if len(checks_) < n_checks:
        raise ValueError(f"checks: only {len(checks_)} of the pairs can be checked at 2 decimals "
                         f"(n_checks = {n_checks}); give more candidate pairs")
    return widgets.browser_chart(chart, params=[user_param, movie_param, *flow_params],
                                 data=[mlp_data, user_data, item_data, weights], checks=checks_)


# --------------------------------------------------------------------------------------------
# The crosses DeepFM learns, and the shared embeddings
# --------------------------------------------------------------------------------------------

def _field_vectors(model, schema: Schema, name: str):
    """The vectors of every value of field ``name`` (padding and unknown left out) and their labels."""
    if name not in schema.names:
        raise ValueError(f"field: {name!r} is not a field of the schema {schema.names}")
    field = schema[name]
    table = model.embedding.table.weight.detach().cpu().double().numpy()
    start = schema.offset_of(name)
    return table[start + 2: start + field.size], [str(c) for c in field.categories]


def pair_weight_matrix(model: DeepFM | FactorizationMachine, field_a: str, field_b: str) -> pd.DataFrame:
    """The FM term's weight ``<v_a, v_b>`` for every value ``a`` of ``field_a`` and ``b`` of
    ``field_b``: rows the values of ``field_a``, columns those of ``field_b``.

    It is what a cross ``field_a × field_b`` of Wide & Deep learns as one free weight per pair, here
    a dot product of two vectors, defined for every pair, seen in training or not. For a
    multi-valued field (genres) each value's own vector is used; a movie with ``m`` genres adds
    the mean of its genres' weights.
    """
    if not isinstance(model, (DeepFM, FactorizationMachine)):
        raise ValueError(f"model: expected a recbook.models.DeepFM or FactorizationMachine, got {type(model).__name__}")
    if field_a == field_b:
        raise ValueError(f"field_b: expected a field other than field_a, got {field_b!r} twice")
    va, la = _field_vectors(model, model.schema, field_a)
    vb, lb = _field_vectors(model, model.schema, field_b)
    return pd.DataFrame(va @ vb.T, index=pd.Index(la, name=field_a), columns=pd.Index(lb, name=field_b))


def plot_pair_weights(matrix: pd.DataFrame, *, ax: Axes | None = None, title: str | None = None) -> Axes:
    """A heatmap of :func:`pair_weight_matrix` (red raises the logit, blue lowers it), with the
    value labels on both axes."""
    if not isinstance(matrix, pd.DataFrame) or matrix.empty:
        raise ValueError("matrix: expected a non-empty DataFrame from pair_weight_matrix")
    values = matrix.to_numpy(float)
    if not np.isfinite(values).all():
        raise ValueError("matrix: contains NaN or infinite values")
    ax = _axes(ax, figsize=(7.2, 0.26 * len(matrix) + 1.9))
    vmax = float(np.abs(values).max()) or 1.0
    im = ax.imshow(values, cmap="RdBu_r", vmin=-vmax, vmax=vmax, aspect="auto", interpolation="nearest")
    ax.set_xticks(range(matrix.shape[1]), matrix.columns, rotation=60, ha="right", fontsize=9)
    ax.set_yticks(range(matrix.shape[0]), matrix.index, fontsize=9)
    ax.tick_params(length=0)
    ax.set_xlabel(matrix.columns.name or "")
    ax.set_ylabel(matrix.index.name or "")
    ax.figure.colorbar(im, ax=ax, shrink=0.8, label="⟨v_a, v_b⟩, added to the logit")
    if title:
        ax.set_title(title, fontsize=10)
    return ax


def shared_gradients(model: DeepFM, batch: Mapping) -> pd.DataFrame:
    """Where the gradient on DeepFM's shared embedding table comes from, per field.

    The loss's gradient on the table is the sum of two parts, one through the FM term and one
    through the MLP (the first-order weights are a separate table). For the binary cross-entropy of
    ``batch``, returns one row per field: ``rows`` (table rows the batch touches), the norm of the
    gradient through the FM term and through the MLP, and ``MLP share`` = ``|g_mlp|^2 / (|g_fm|^2 +
    |g_mlp|^2)``; column ``sum error`` checks that the two add up to the whole gradient.
    """
    model = _require(model, DeepFM)
    was = model.training
    model.eval()  # no dropout: the three gradients below see the same network
    try:
        table = model.embedding.table.weight
        parts = model.parts(batch)
        logit = parts["linear"] + parts["fm"] + parts["deep"]
        dz = torch.autograd.grad(F.binary_cross_entropy_with_logits(logit, batch["label"]), logit,
                                 retain_graph=True)[0].detach()
        (g_fm,) = torch.autograd.grad((dz * parts["fm"]).sum(), table, retain_graph=True)
        (g_mlp,) = torch.autograd.grad((dz * parts["deep"]).sum(), table, retain_graph=True)
        (g_all,) = torch.autograd.grad(F.binary_cross_entropy_with_logits(logit, batch["label"]), table)
    finally:
        model.train(was)
    schema = model.schema
    rows = {}
    for f, size, start in zip(schema.fields, schema.sizes, schema.offsets):
        sl = slice(int(start), int(start + size))
        touched = (g_fm[sl].abs().sum(1) + g_mlp[sl].abs().sum(1)) > 0
        a, b = float(g_fm[sl].norm()), float(g_mlp[sl].norm())
        rows[f.name] = {"rows": int(touched.sum()), "|gradient| via FM": a, "|gradient| via MLP": b,
                        "MLP share": b * b / (a * a + b * b) if a + b > 0 else float("nan"),
                        "sum error": float((g_fm[sl] + g_mlp[sl] - g_all[sl]).abs().max())}
    return pd.DataFrame(rows).T


# --------------------------------------------------------------------------------------------
# The leaderboard, read
# --------------------------------------------------------------------------------------------

RESULT_COLUMNS = {"test_auc": "test AUC", "test_logloss": "test logloss", "test_gauc": "test GAUC",
                  "valid_auc": "valid AUC", "cpu_s_per_epoch": "CPU s/epoch", "epochs": "epochs"}
"""Leaderboard columns the chapters show, with their names in words."""


def _model_rows(bench: pd.DataFrame, model: str, protocol: str) -> pd.DataFrame:
    rows = bench[(bench["model"] == model) & (bench["protocol"] == protocol)]
    if rows.empty:
        raise ValueError(f"bench: no rows of model {model!r} under protocol {protocol!r}; "
                         f"it has {sorted(bench.loc[bench['protocol'] == protocol, 'model'].unique())}")
    return rows


def results_table(bench: pd.DataFrame, models: Sequence[str], *, protocol: str = "ctr",
                  columns: Mapping[str, str] = RESULT_COLUMNS) -> pd.DataFrame:
    """Mean and standard deviation over seeds of the leaderboard's rows, one row per model (in
    the order given). Columns: ``seeds``, then for each of ``columns`` (file column -> name) the
    mean under the name and the population standard deviation under ``name + " ±"``;
    ``CPU s to train`` is ``cpu_s_per_epoch × epochs`` per seed, averaged."""
    require_columns(bench, ["model", "protocol", "seed", *columns], name="bench")
    if isinstance(models, str) or not models:
        raise ValueError(f"models: expected a list of model names, got {models!r}")
    out = {}
    for m in models:
        rows = _model_rows(bench, m, protocol)
        row = {"seeds": len(rows)}
        for col, name in columns.items():
            row[name] = float(rows[col].mean())
            row[name + " ±"] = float(rows[col].std(ddof=0))
        if {"cpu_s_per_epoch", "epochs"} <= set(rows.columns):
            row["CPU s to train"] = float((rows["cpu_s_per_epoch"] * rows["epochs"]).mean())
        out[m] = row
    return pd.DataFrame(out).T


def paired_table(bench: pd.DataFrame, pairs: Sequence[tuple[str, str]], *, metric: str = "test_auc",
                 protocol: str = "ctr", level: float = 0.9) -> pd.DataFrame:
    """Paired differences ``b − a`` over the seeds both models ran (same seed, same data), one row
    per ``(a, b)`` of ``pairs``: ``mean``, ``low`` and ``high`` (the ``level`` t-interval of the
    mean, :func:`recbook.metrics.paired_t_interval`), ``min``, ``max``, ``spread`` (the larger of
    the two models' seed-to-seed standard deviations) and ``verdict``: ``"b ahead"`` when the
    difference has the same sign in every seed and its mean exceeds the spread, ``"b behind"``
    likewise below, else ``"tied"``.
    """
    from ..bench import seed_comparison
    from ..metrics import paired_t_interval

    rows = {}
    for a, b in pairs:
        cmp = seed_comparison(bench, a, b, protocol=protocol, metrics=[metric])
        d = cmp[f"{metric} {b} − {a}"]
        spread = max(float(cmp[f"{metric} {a}"].std(ddof=0)), float(cmp[f"{metric} {b}"].std(ddof=0)))
        if (d > 0).all() and d.mean() > spread:
            verdict = f"{b} ahead"
        elif (d < 0).all() and -d.mean() > spread:
            verdict = f"{b} behind"
        else:
            verdict = "tied"
        _, low, high = paired_t_interval(d.to_numpy(), level=level, name=f"{b} − {a}")
        rows[f"{b} − {a}"] = {"seeds": len(d), "mean": float(d.mean()), "low": low, "high": high,
                              "min": float(d.min()), "max": float(d.max()), "spread": spread, "verdict": verdict}
    return pd.DataFrame(rows).T


CONFIGS_FILE = "deepfm_configs.csv"
"""The results of :func:`config_entries` (``book/results/deepfm_configs.csv``), read with
:func:`recbook.bench.read_results`."""


def config_entries() -> list:
    """The configurations of DeepFM tried on validation, each changing one setting of the
    leaderboard's ``DeepFM`` entry: as :class:`recbook.bench.Entry` objects, **not** registered on
    the leaderboard (they are the chapter's evidence, not models of the book). Their rows carry
    the same fingerprints as the leaderboard's, so a change of settings shows."""
    from ..bench import CTR_FIT, REGISTRY, Entry

    unknown = {"unknown_rate": {"user_id": 0.1}}
    base = dict(REGISTRY["DeepFM"].params)  # the leaderboard entry's settings (its initialisation included)
    nobase = {k: v for k, v in base.items() if k != "base_rate"}
    return [
        Entry("DeepFM-nobase", "ctr", DeepFM.from_data, nobase, dict(CTR_FIT),
              description="DeepFM with the bias starting at 0 instead of the training log-odds"),
        Entry("DeepFM-wd", "ctr", DeepFM.from_data, base, dict(CTR_FIT, weight_decay=1e-5),
              description="DeepFM with weight decay 1e-5"),
        Entry("DeepFM-unk", "ctr", DeepFM.from_data, {**base, **unknown}, dict(CTR_FIT),
              description="DeepFM whose unknown-user row is trained (10% of user ids replaced)"),
        Entry("DeepFM-bn", "ctr", DeepFM.from_data, {**base, "batchnorm": True}, dict(CTR_FIT),
              description="DeepFM with batch normalisation in the MLP"),
    ]


def run_configs(path=None, seeds: Sequence[int] = (0, 1, 2), *, threads: int = 1) -> pd.DataFrame:
    """Train every configuration of :func:`config_entries` with ``seeds`` as the leaderboard does
    (:func:`recbook.bench.run_one`) and write the rows to ``path`` (default: the repository's
    ``book/results/deepfm_configs.csv``). About 12 runs of 15-30 s with one thread::

        python -c "from recbook.chapters import deepfm; deepfm.run_configs()"
    """
    from pathlib import Path

    from ..bench import load_protocol, run_one

    seeds = [int(s) for s in seeds]
    if not seeds:
        raise ValueError("seeds: expected at least one seed")
    path = Path(path) if path is not None else BOOK_RESULTS / CONFIGS_FILE
    data = load_protocol("ctr")
    rows = [run_one(e, data, s, threads=threads, quick=False, progress=False) for e in config_entries() for s in seeds]
    out = pd.DataFrame(rows)
    from ..bench import write_table

    write_table(out, path)  # whole or not at all, locked, keeping the mode
    return out


ABLATION_FILE = "deepfm_ablation.csv"
"""The DeepFM ablation record (``book/results/deepfm_ablation.csv``, ``python -m recbook.ablation``):
the leaderboard's recipe beside each library's, one setting moved at a time, seeds 0-2."""
XAVIER_VARIANT = "recbook+recbole-fm:embed_init"
"""The ablation's variant that draws DeepFM's embeddings Xavier-normal (RecBole's rule) instead of
``N(0, 0.01^2)``, everything else the leaderboard's."""


def read_ablation(name: str = ABLATION_FILE) -> pd.DataFrame:
    """An ablation record of ``book/results/`` with its comment lines skipped, found where
    :func:`recbook.bench.read_results` finds a result file (next to the notebook, in the
    repository, else downloaded)."""
    from pathlib import Path

    from .. import REPOSITORY_URL

    if not isinstance(name, str) or "/" in name or not name.endswith(".csv"):
        raise ValueError(f"name: expected a file name ending in .csv, got {name!r}")
    here = Path.cwd()
    for path in (here / "results" / name, here / "book" / "results" / name,
                 BOOK_RESULTS / name):
        if path.is_file():
            return pd.read_csv(path, comment="#")
    return pd.read_csv(f"{REPOSITORY_URL.rstrip('/')}/raw/HEAD/book/results/{name}", comment="#")


def init_choice(record: pd.DataFrame, *, variant: str = XAVIER_VARIANT, level: float = 0.9) -> dict:
    """Validation AUC of the ablation's ``variant`` minus recbook's own recipe, seed by seed
    (``side == "recbook"``): ``{"mean", "low", "high"}`` (the ``level`` t-interval,
    :func:`recbook.metrics.paired_t_interval`), ``seeds`` and ``ahead`` (seeds with a positive
    difference)."""
    from ..metrics import paired_t_interval

    require_columns(record, ["side", "variant", "seed", "valid_auc"], name="record")
    ours = record[(record["side"] == "recbook") & (record["variant"] == "recbook")].set_index("seed")["valid_auc"]
    other = record[(record["side"] == "recbook") & (record["variant"] == variant)].set_index("seed")["valid_auc"]
    if other.empty or ours.empty:
        raise ValueError(f"record: no rows of recbook's recipe and of variant {variant!r}; it has "
                         f"{sorted(record['variant'].unique())}")
    seeds = sorted(set(ours.index) & set(other.index))
    d = other.loc[seeds].to_numpy() - ours.loc[seeds].to_numpy()
    mean, low, high = paired_t_interval(d, level=level, name="differences")
    return {"mean": mean, "low": low, "high": high, "seeds": len(seeds), "ahead": int((d > 0).sum())}


# --------------------------------------------------------------------------------------------
# Diagram
# --------------------------------------------------------------------------------------------

def plot_deepfm_architecture(fields: Sequence[str] = ("user_id", "item_id", "age_bucket", "gender",
                                                      "occupation", "zip1", "year_bucket", "genres"),
                             dim: int = 16, hidden: Sequence[int] = (256, 128), *,
                             ax: Axes | None = None) -> Axes:
    """DeepFM as the book builds it: the fields → one shared embedding table → the FM part (first
    order and pairs) and the MLP, both reading the same vectors → one logit."""
    fields = [str(f) for f in fields]
    if len(fields) < 2:
        raise ValueError(f"fields: expected at least two field names, got {fields}")
    dim = require_positive_int(dim, name="dim")
    hidden = [require_positive_int(h, name="hidden") for h in hidden]
    ax = diagram_axes(ax, (7.2, 4.2), (0, 100), (0, 54))
    box, arrow = partial(diagram_box, ax), partial(diagram_arrow, ax)

    n = len(fields)
    diagram_fields_table(ax, fields, top=49, table_x=26, table_w=18)
    ax.text(35, 5.5, f"w (1) and v ({dim}) per value", ha="center", va="top", fontsize=8, color="0.3")
    fm_colour, deep_colour = "#DCE6F2", "#E5DCF2"
    arrow(44.5, 40, 55, 44)
    arrow(44.5, 33, 55, 31)
    arrow(44.5, 20, 55, 13, "#6A51A3")
    box(55.5, 41, 21, 7, "first order\nw₀ + Σᵢ wᵢ", fm_colour, 9)
    box(55.5, 27.5, 21, 7, "FM pairs\n" + r"$\sum_{i<j}\,\langle v_i, v_j\rangle$", fm_colour, 9)
    box(55.5, 6, 21, 12, "MLP on [v₁; …; v₈]\n" + " → ".join(str(h) for h in [n * dim, *hidden, 1]),
        deep_colour, 9)
    ax.text(66, 50.5, "FM part", ha="center", fontsize=9, color="0.35")
    ax.text(66, 19.5, "deep part", ha="center", fontsize=9, color="0.35")
    for y in (44.5, 31, 12):
        arrow(77.5, y, 86, 27 + (y - 27) * 0.15)
    box(86.5, 23.5, 10, 7, "logit\nŷ", "#D5EDE4", 10, "bold")
    ax.text(91.5, 19.5, "σ(ŷ) only in\nthe loss", ha="center", va="top", fontsize=8, color="0.35")
    return ax


# --------------------------------------------------------------------------------------------
# A typical DeepFM listing, as written
# --------------------------------------------------------------------------------------------

class ListingDeepFM(nn.Module):
    """A DeepFM as you will typically find it, as written (only comments translated).

    ``x`` is ``[B, F]`` with one local index per field. Problems the chapter measures: the
    output is ``[B, B]`` (``linear_part`` is ``[B]``, the other parts ``[B, 1]``), ``sigmoid``
    inside ``forward`` (a loss on probabilities), ``nn.Embedding``'s ``N(0, 1)`` initialisation,
    and one table per field looked up in a Python loop.
    """

    def __init__(self, feature_sizes, embed_dim=8):
        super(ListingDeepFM, self).__init__()

        # FM part: embeddings
        self.embeddings = nn.ModuleList([
            nn.Embedding(size, embed_dim) for size in feature_sizes
        ])

        # Deep part: DNN
        self.dnn = nn.Sequential(
            nn.Linear(len(feature_sizes) * embed_dim, 128),
            nn.ReLU(),
            nn.Dropout(0.5),
            nn.Linear(128, 64),
            nn.ReLU(),
            nn.Dropout(0.5),
            nn.Linear(64, 1)
        )

        # FM first-order weights
        self.linear = nn.ModuleList([
            nn.Embedding(size, 1) for size in feature_sizes
        ])

    def forward(self, x):
        # FM first-order part
        linear_part = sum([emb(x[:, i]).squeeze(1)
                           for i, emb in enumerate(self.linear)])

        # FM second-order part
        embeddings = [emb(x[:, i]) for i, emb in enumerate(self.embeddings)]
        embeddings = torch.stack(embeddings, dim=1)

        square_of_sum = torch.sum(embeddings, dim=1) ** 2
        sum_of_square = torch.sum(embeddings ** 2, dim=1)
        fm_part = 0.5 * torch.sum(square_of_sum - sum_of_square, dim=1, keepdim=True)

        # Deep part
        deep_input = embeddings.view(x.size(0), -1)
        deep_part = self.dnn(deep_input)

        # Combine
        output = linear_part + fm_part + deep_part
        return torch.sigmoid(output)


class ListingDeepFMShapesFixed(ListingDeepFM):
    """:class:`ListingDeepFM` with the broadcast fixed and nothing else: every part ``[B, 1]``,
    output ``[B]``. ``logits=True`` also drops the final ``sigmoid``."""

    def __init__(self, feature_sizes, embed_dim=8, *, logits: bool = False):
        super().__init__(feature_sizes, embed_dim)
        self.logits = bool(logits)

    def forward(self, x):
        linear_part = sum([emb(x[:, i]) for i, emb in enumerate(self.linear)])  # [B, 1]: no squeeze
        embeddings = torch.stack([emb(x[:, i]) for i, emb in enumerate(self.embeddings)], dim=1)
        square_of_sum = torch.sum(embeddings, dim=1) ** 2
        sum_of_square = torch.sum(embeddings ** 2, dim=1)
        fm_part = 0.5 * torch.sum(square_of_sum - sum_of_square, dim=1, keepdim=True)
        deep_part = self.dnn(embeddings.view(x.size(0), -1))
        output = (linear_part + fm_part + deep_part).squeeze(1)
        return output if self.logits else torch.sigmoid(output)



def _single_schema(schema: Schema) -> Schema:
    single = schema.single
    if not single:
        raise ValueError("schema: has no single-valued fields; the listings read x[:, i] per field")
    return Schema(tuple(single))


def listing_broadcast(data, batch_size: int = 1024, seed: int = 0) -> dict:
    """Run :class:`ListingDeepFM` as written on one batch of ``data.train`` (single-valued fields).

    Returns ``output shape``, ``label shape``, ``off-diagonal share`` (the share of the output's
    entries that mix the first-order part of one row with the other parts of another row: all
    but the diagonal) and ``diagonal equals fixed``: whether the diagonal of the ``[B, B]`` output
    is exactly the output of the same weights with the shapes fixed.
    """
    data = _require_data(data)
    batch_size = require_positive_int(batch_size, name="batch_size")
    torch.manual_seed(seed)
    sizes = [f.size for f in data.schema.single]
    listing = ListingDeepFM(sizes).eval()  # eval: dropout off, so both forwards are comparable
    fixed = ListingDeepFMShapesFixed(sizes).eval()
    fixed.load_state_dict(listing.state_dict())
    x = data.train["x"][:batch_size]
    with torch.no_grad():
        out = listing(x)
        ref = fixed(x)
    b = x.shape[0]
    return {"output shape": tuple(out.shape), "label shape": tuple(data.train["label"][:batch_size].shape),
            "off-diagonal share": 1 - 1 / b if out.dim() == 2 else 0.0,
            "diagonal equals fixed": bool(torch.equal(out.diagonal(), ref)) if out.dim() == 2 else False}


def saturation_at_init(data, *, batch_size: int = 1024, seed: int = 0, threshold: float = 1e-6) -> pd.DataFrame:
    """Outputs and gradients at initialisation: the listing's DeepFM (shapes fixed, ``sigmoid``
    inside, ``BCELoss``, ``N(0, 1)`` embeddings) against :class:`~recbook.models.DeepFM` (logits,
    ``binary_cross_entropy_with_logits``, embeddings ``N(0, 0.01^2)``), on the single-valued fields.

    Columns, one row per model, over the first ``batch_size`` training rows:

    * ``std of initial logit``;
    * ``saturated outputs``: share of rows with ``p < threshold`` or ``p > 1 - threshold``;
    * ``p exactly 0 or 1``: share of rows where float32 rounds the probability to 0 or 1;
    * ``zero gradient``: share of rows whose loss has an exactly zero gradient with respect to
      the model's output logit (the row teaches the model nothing);
    * ``wrong and zero gradient``: rows that are confidently wrong (``|p - y| > 0.5``) and
      still get no gradient;
    * ``initial loss``.
    """
    data = _require_data(data)
    batch_size = require_positive_int(batch_size, name="batch_size")
    single = _single_schema(data.schema)
    x = data.train["x"][:batch_size]
    y = data.train["label"][:batch_size]
    rows = {}
    torch.manual_seed(seed)
    listing = ListingDeepFMShapesFixed([f.size for f in single.fields], logits=True).eval()
    torch.manual_seed(seed)
    ours = DeepFM(single, dim=8, hidden=(128, 64)).eval()
    for name, logit_fn, loss_fn in (
        ("source listing: sigmoid + BCELoss, N(0, 1)", lambda: listing(x),
         lambda z: nn.BCELoss(reduction="sum")(torch.sigmoid(z), y)),
        ("recbook DeepFM: logits + BCE with logits", lambda: ours({"x": x}),
         lambda z: F.binary_cross_entropy_with_logits(z, y, reduction="sum")),
    ):
        z = logit_fn().detach().requires_grad_()
        loss = loss_fn(z)
        (g,) = torch.autograd.grad(loss, z)
        p = torch.sigmoid(z.detach())
        wrong = (p - y).abs() > 0.5
        rows[name] = {"std of initial logit": float(z.detach().std()),
                      "saturated outputs": float(((p < threshold) | (p > 1 - threshold)).float().mean()),
                      "p exactly 0 or 1": float(((p == 0) | (p == 1)).float().mean()),
                      "zero gradient": float((g == 0).float().mean()),
                      "wrong and zero gradient": float(((g == 0) & wrong).float().mean()),
                      "initial loss": float(loss.detach()) / len(y)}
    return pd.DataFrame(rows).T


def time_per_field_tables(data, *, n_batches: int = 30, batch_size: int = 1024, repeats: int = 3,
                          threads: int = 1, seed: int = 0) -> pd.DataFrame:
    """Measured CPU time of one training step (forward, backward, Adam) of the same DeepFM with
    one ``nn.Embedding`` per field in a Python loop (the listing, shapes fixed, logits) and with
    one shared table (:class:`~recbook.models.DeepFM`, same sizes: dim 8, MLP 128-64,
    dropout 0.5), on the single-valued fields.

    Returns one row per layout: ``parameter tensors``, ``ms per step`` (best of ``repeats`` runs
    of ``n_batches`` steps, the two layouts taking turns), and ``slowdown`` relative to the shared
    table.
    """
    data = _require_data(data)
    n_batches = require_positive_int(n_batches, name="n_batches")
    single = _single_schema(data.schema)
    torch.manual_seed(seed)
    models = {"one table per field (listing)": ListingDeepFMShapesFixed([f.size for f in single.fields], logits=True),
              "one shared table (recbook)": DeepFM(single, dim=8, hidden=(128, 64), dropout=0.5)}
    g = torch.Generator().manual_seed(seed)
    batches = [b for _, b in zip(range(n_batches), data.train.batches(batch_size, shuffle=True, generator=g))]

    def stepper(model):
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        listing = isinstance(model, ListingDeepFM)

        def step(b):
            z = model(b["x"]) if listing else model({"x": b["x"]})
            loss = F.binary_cross_entropy_with_logits(z, b["label"])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        return step

    steps = {name: stepper(model) for name, model in models.items()}
    best = dict.fromkeys(models, float("inf"))
    with num_threads(threads):
        for step in steps.values():
            step(batches[0])  # warm-up
        # The two layouts take turns, so that a change in the machine's load hits both alike.
        for _ in range(repeats):
            for name, step in steps.items():
                t0 = time.process_time()
                for b in batches:
                    step(b)
                best[name] = min(best[name], (time.process_time() - t0) / len(batches))
    rows = {name: {"parameter tensors": sum(1 for _ in model.parameters()), "ms per step": best[name] * 1e3}
            for name, model in models.items()}
    out = pd.DataFrame(rows).T
    out["slowdown"] = out["ms per step"] / out.loc["one shared table (recbook)", "ms per step"]
    return out



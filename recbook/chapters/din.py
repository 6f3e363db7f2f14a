"""Helpers of the Deep Interest Network chapter: what DIN attends to, and where it helps.

The chapter calls these helpers; they hold the code, the chapter explains it.

* :func:`rela_impr`: the paper's relative improvement over a base model's AUC.
* :func:`user_types` and :func:`results_by_user_type`: AUC, GAUC and logloss of several models on
  the rows of *known* users (who have training rows, so a trained ``user_id`` vector) and of *cold*
  users (``user_id`` unknown: their only signal is the history collected before the row).
* :func:`last_row_of_user`, :func:`attention_table`: the attention weights over one row's history
  for any candidate movies, with titles, genres and the predicted probability (long format: one
  line per history item and candidate); :func:`genre_overlap_summary` asks whether the weights
  follow the genres the history item shares with the candidate.
* :func:`plot_attention_heatmap`: history titles x candidates, coloured by weight.
* :func:`widget_table` and :func:`attention_dropdown`: precomputed attention for a handful of
  users and candidates (a small table), and a dropdown over it that works without a kernel.
* :func:`catalogue_display_titles`: item labels that tell repeated titles apart.
* :func:`attention_chart`: the attention over a history for any candidate, computed in the
  browser from the unit as :func:`shipped_unit` rounds it and :func:`unit_expressions` writes it;
  :func:`shipped_scores` is the same arithmetic in numpy.
* :func:`regularisation_run` and :func:`run_regularisation_sweep`: DIN with mini-batch aware L2 or
  weight decay against no penalty, over seeds (the record :data:`MBA_FILE`).
* :func:`attention_spread`, :func:`gradient_norms`, :func:`softmax_probe` and
  :func:`run_softmax_probe`: how far attention weights are from the mean of the history, and how
  much gradient reaches the activation unit (the softmax variant's record,
  :data:`SOFTMAX_PROBE_FILE`); :func:`attention_probe_table` shows it.
* :func:`leaderboard_table` and :func:`paired_summary`: the leaderboard's DIN rows, and two models
  compared seed by seed.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import partial

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from matplotlib.axes import Axes

from . import BOOK_RESULTS
from .._checks import require_columns, require_positive_int
from ..data import GENRES
from ..data.features import UNK
from ..metrics import ctr_report
from ..models.din import DIN
from ..plots import axes_or_new as _axes
from ..plots import diagram_arrow, diagram_axes, diagram_box
from ..train import predict
from ..widgets import precomputed_slider

__all__ = [
    "USER_TYPES", "catalogue_display_titles", "plot_din_architecture", "attention_chart", "attention_dropdown", "dice_chart", "dice_values", "unit_scores", "attention_table", "genre_overlap_summary", "last_row_of_user",
    "plot_attention_heatmap", "rela_impr", "results_by_user_type", "user_types", "widget_table",
    "shipped_scores", "shipped_unit", "unit_expressions", "MBA_FILE", "MBA_L2", "WEIGHT_DECAYS",
    "regularisation_run", "run_regularisation_sweep",
    "DICE_CHECKS", "LEADERBOARD_METRICS", "PROBE_COLUMNS", "SOFTMAX_PROBE_FILE", "attention_probe_table",
    "attention_spread", "gradient_norms", "leaderboard_table", "paired_summary", "run_softmax_probe",
    "softmax_probe",
]

USER_TYPES = ("known", "cold")
"""``known``: the user has training rows (a trained ``user_id`` vector); ``cold``: the user first
appears after the training period, so ``user_id`` is unknown and the history is all there is."""


# --------------------------------------------------------------------------------------------
# RelaImpr and results by user type
# --------------------------------------------------------------------------------------------

def rela_impr(auc: float, base_auc: float) -> float:
    """RelaImpr (Zhou et al. 2018, Eq. 11), in percent:
    ``((AUC(model) - 0.5) / (AUC(base) - 0.5) - 1) * 100``.

    A random guesser has AUC 0.5, so this measures the improvement of the part of the AUC above
    chance: 0.70 -> 0.72 is +10%, while 0.90 -> 0.92 is only +5%.
    """
    for name, v in (("auc", auc), ("base_auc", base_auc)):
        if isinstance(v, bool) or not isinstance(v, (int, float, np.floating)) or not 0 <= v <= 1:
            raise ValueError(f"{name}: expected an AUC in [0, 1], got {v!r}")
    if base_auc == 0.5:
        raise ValueError("base_auc: is 0.5 (a random guesser); RelaImpr is undefined")
    return float(((auc - 0.5) / (base_auc - 0.5) - 1.0) * 100.0)


def _require_split(split, *, history: bool = False):
    keys = ("x", "label", "user") + (("hist_item", "hist_mask") if history else ())
    if not isinstance(split, Mapping) or any(k not in split for k in keys):
        raise ValueError(f"split: expected CTR rows (TensorData) with keys {list(keys)}, got "
                         f"{sorted(split) if isinstance(split, Mapping) else type(split).__name__}")
    return split


def user_types(split) -> np.ndarray:
    """``"known"`` or ``"cold"`` for every row of ``split`` (CTR rows, e.g. ``data.test``):
    cold where the ``user_id`` column holds the unknown index."""
    x = _require_split(split)["x"]
    return np.where(x[:, 0].cpu().numpy() == UNK, "cold", "known")


def results_by_user_type(models: Mapping[str, torch.nn.Module], split) -> pd.DataFrame:
    """AUC, GAUC and logloss of every model on all rows of ``split`` and on each user type.

    Returns one line per model and group (``all``, ``known``, ``cold``) with ``rows``, ``users``,
    ``positive rate``, ``mean history`` (real items in the history, when the split has histories),
    ``auc``, ``gauc`` (grouped by user, over the users with both labels) and ``logloss``.
    """
    if not isinstance(models, Mapping) or not models:
        raise ValueError("models: expected a non-empty dict {name: model}")
    split = _require_split(split)
    kinds = user_types(split)
    labels = split["label"].cpu().numpy()
    users = split["user"].cpu().numpy()
    hist = split["hist_mask"].sum(1).cpu().numpy() if "hist_mask" in split else None
    groups = {"all": np.ones(len(labels), dtype=bool), **{k: kinds == k for k in USER_TYPES}}
    rows = []
    for name, model in models.items():
        scores = predict(model, split).numpy()
        for group, sel in groups.items():
            line = {"model": name, "users": group, "rows": int(sel.sum()),
                    "distinct users": int(len(np.unique(users[sel]))),
                    "positive rate": float(labels[sel].mean()) if sel.any() else float("nan")}
            if hist is not None:
                line["mean history"] = float(hist[sel].mean()) if sel.any() else float("nan")
            if sel.any() and 0 < labels[sel].sum() < sel.sum():
                rep = ctr_report(labels[sel], scores[sel], users[sel])
                line.update(auc=rep["auc"], gauc=rep["gauc"], logloss=rep["logloss"])
            rows.append(line)
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------------------------
# Attention over one history
# --------------------------------------------------------------------------------------------

def _require_din(model) -> DIN:
    if not isinstance(model, DIN):
        raise ValueError(f"model: expected a recbook.models.DIN, got {type(model).__name__}")
    return model


def _require_catalogue(catalogue):
    frame = getattr(catalogue, "frame", None)
    if not hasattr(catalogue, "features") or not isinstance(frame, pd.DataFrame):
        raise ValueError(f"catalogue: expected a recbook.data.ItemCatalogue (data.catalogue), got "
                         f"{type(catalogue).__name__}")
    require_columns(frame, ["item_id", "title", "genres"], name="catalogue.frame")
    return catalogue


def last_row_of_user(frame: pd.DataFrame, user_id: int) -> int:
    """The position in ``frame`` (e.g. ``data.frames["test"]``) of ``user_id``'s last row: the row
    with the longest history of that user in the split."""
    require_columns(frame, ["user_id"], name="frame")
    hits = np.flatnonzero(frame["user_id"].to_numpy() == user_id)
    if not len(hits):
        raise ValueError(f"user_id: {user_id!r} has no row in frame")
    return int(hits[-1])


def _candidate_batch(model: DIN, split, row: int, codes: np.ndarray, catalogue) -> dict:
    """Row ``row`` of ``split`` repeated once per candidate code, with the candidate's item fields
    taken from the catalogue."""
    one = {k: v[row: row + 1] for k, v in split.items()}
    n = len(codes)
    batch = {k: v.expand(n, *v.shape[1:]).clone() for k, v in one.items()}
    idx = torch.as_tensor(codes, dtype=torch.long)
    for col, f in enumerate(model.schema.single):
        if f.name in catalogue.features:
            batch["x"][:, col] = catalogue.features[f.name][idx]
    for f in model.schema.multi:
        if f.name in catalogue.features:
            batch[f.name] = catalogue.features[f.name][idx]
    return batch


def attention_table(model: DIN, split, frame: pd.DataFrame, catalogue, rows: int | Sequence[int],
                    candidates: Sequence[int] | None = None) -> pd.DataFrame:
    """DIN's attention weight of every history item of ``rows`` for each candidate movie.

    Args:
        model: a trained :class:`recbook.models.DIN` (weights are computed in eval mode).
        split: CTR rows with histories (e.g. ``data.test``).
        frame: the readable rows of the same split (``data.frames["test"]``).
        catalogue: the protocol's :class:`recbook.data.ItemCatalogue` (``data.catalogue``):
            titles and genres, and the candidates' item fields.
        rows: one row position or several (see :func:`last_row_of_user`).
        candidates: raw ``item_id`` of the candidate movies (any movie of the catalogue);
            default: each row's own movie.

    Returns:
        Long format, one line per (row, candidate, real history item), oldest item first:
        ``row``, ``user_id``, ``candidate_id``, ``candidate``, ``candidate_genres``,
        ``probability`` (the model's predicted probability for the candidate), ``position``
        (1 = oldest item of the history), ``item_id``, ``title``, ``genres``, ``shared_genres``
        (genres the item has in common with the candidate) and ``weight``.
    """
    model = _require_din(model)
    split = _require_split(split, history=True)
    catalogue = _require_catalogue(catalogue)
    require_columns(frame, ["user_id", "item_id"], name="frame")
    if len(frame) != len(split["label"]):
        raise ValueError(f"frame: has {len(frame)} rows; expected {len(split['label'])} like split")
    rows = [rows] if isinstance(rows, (int, np.integer)) and not isinstance(rows, bool) else list(rows)
    n = len(frame)
    for r in rows:
        if isinstance(r, bool) or not isinstance(r, (int, np.integer)) or not 0 <= r < n:
            raise ValueError(f"rows: expected row positions in [0, {n}), got {r!r}")
    if candidates is not None:
        candidates = [int(c) for c in candidates]
        codes = catalogue.codes(candidates) if candidates else np.zeros(0, dtype=np.int64)
        missing = [c for c, k in zip(candidates, codes) if k < 2]
        if missing or not candidates:
            raise ValueError(f"candidates: expected item ids of the catalogue, got {missing or candidates}")
    info = catalogue.frame
    titles = catalogue_display_titles(catalogue)
    genres_of = [tuple(g) if isinstance(g, (tuple, list)) else () for g in info["genres"]]
    items = [-1 if pd.isna(i) else int(i) for i in info["item_id"]]
    out = []
    was_training = model.training
    model.eval()
    try:
        for r in rows:
            cands = candidates or [int(frame["item_id"].iloc[r])]
            cand_codes = catalogue.codes(cands)
            batch = _candidate_batch(model, split, int(r), cand_codes, catalogue)
            with torch.no_grad():
                prob = torch.sigmoid(model(batch)).numpy()
            w = model.attention_weights(batch).numpy()  # [C, L]
            mask = batch["hist_mask"][0].numpy()
            hist = batch["hist_item"][0].numpy()[mask]
            user_id = int(frame["user_id"].iloc[r])
            for ci, (c, cc) in enumerate(zip(cands, cand_codes)):
                cg = set(genres_of[cc])
                for p, (code, weight) in enumerate(zip(hist, w[ci][mask]), start=1):
                    g = genres_of[code]
                    out.append({"row": int(r), "user_id": user_id, "candidate_id": c,
                                "candidate": titles[cc], "candidate_genres": "|".join(genres_of[cc]),
                                "probability": float(prob[ci]), "position": p,
                                "item_id": items[code], "title": titles[code],
                                "genres": "|".join(g), "shared_genres": len(set(g) & cg),
                                "weight": float(weight)})
    finally:
        model.train(was_training)
    return pd.DataFrame(out)


def genre_overlap_summary(table: pd.DataFrame) -> pd.DataFrame:
    """Do the weights follow the genres? Per (row, candidate): the mean weight of the history items
    that share at least one genre with the candidate, of those that share none, and the Spearman
    correlation between ``shared_genres`` and ``weight``.
    """
    require_columns(table, ["row", "candidate", "shared_genres", "weight"], name="table")
    out = []
    for (row, cand), g in table.groupby(["row", "candidate"], sort=False):
        shared = g["shared_genres"] > 0
        rho = g["shared_genres"].rank().corr(g["weight"].rank()) if g["shared_genres"].nunique() > 1 else np.nan
        out.append({"row": row, "candidate": cand, "items": len(g), "sharing a genre": int(shared.sum()),
                    "mean weight, sharing": float(g.loc[shared, "weight"].mean()) if shared.any() else np.nan,
                    "mean weight, not sharing": float(g.loc[~shared, "weight"].mean()) if (~shared).any() else np.nan,
                    "spearman(shared genres, weight)": float(rho)})
    return pd.DataFrame(out)


def plot_attention_heatmap(table: pd.DataFrame, *, row: int | None = None, ax: Axes | None = None,
                           annotate: bool = True, max_title: int = 32) -> Axes:
    """History titles (oldest at the top) x candidates, coloured by attention weight.

    ``table`` comes from :func:`attention_table`; ``row`` picks one of its rows (default: the only
    one). Each candidate's column title shows its predicted probability; a title marks the history
    items that share a genre with each candidate with a dot after the weight.
    """
    require_columns(table, ["row", "candidate", "probability", "position", "title", "shared_genres", "weight"],
                    name="table")
    if row is None:
        if table["row"].nunique() != 1:
            raise ValueError(f"row: table holds rows {sorted(table['row'].unique())}; pick one")
        row = int(table["row"].iloc[0])
    t = table[table["row"] == row]
    if t.empty:
        raise ValueError(f"row: {row!r} is not in table")
    cands = list(dict.fromkeys(t["candidate"]))
    w = t.pivot_table(index="position", columns="candidate", values="weight", sort=True)[cands]
    shared = t.pivot_table(index="position", columns="candidate", values="shared_genres", sort=True)[cands]
    titles = t.drop_duplicates("position").set_index("position").loc[w.index, "title"]
    titles = [_short(s, max_title) for s in titles]
    ax = _axes(ax, figsize=(2.6 + 1.8 * len(cands), 1.0 + 0.26 * len(w)))
    lim = float(np.abs(w.to_numpy()).max()) or 1.0
    vmin = -lim if (w.to_numpy() < 0).any() else 0.0
    im = ax.imshow(w.to_numpy(), aspect="auto", cmap="RdBu_r" if vmin < 0 else "Reds", vmin=vmin, vmax=lim)
    ax.set_yticks(range(len(w)), titles, fontsize=9)
    probs = t.drop_duplicates("candidate").set_index("candidate")["probability"]
    ax.set_xticks(range(len(cands)), [f"{c}\np = {probs[c]:.2f}" for c in cands], fontsize=9)
    ax.xaxis.tick_top()
    if annotate:
        for i in range(len(w)):
            for j in range(len(cands)):
                mark = " •" if shared.iat[i, j] > 0 else ""
                ax.text(j, i, f"{w.iat[i, j]:.2f}{mark}", ha="center", va="center", fontsize=9)
    ax.figure.colorbar(im, ax=ax, label="attention weight", shrink=0.6)
    ax.set_ylabel("history, oldest first (• shares a genre with the candidate)")
    return ax


# --------------------------------------------------------------------------------------------
# A widget that works without a kernel
# --------------------------------------------------------------------------------------------

def widget_table(model: DIN, split, frame: pd.DataFrame, catalogue, users: Sequence[int],
                 candidates: Sequence[int], *, decimals: int = 3) -> pd.DataFrame:
    """Precomputed attention for a handful of ``users`` (their last row in ``frame``) and
    ``candidates``: everything a kernel-free widget needs, as one small table.

    Columns: ``user_id``, ``candidate``, ``probability``, ``position``, ``title``, ``genres``,
    ``shared_genres``, ``weight`` (rounded to ``decimals``). About ``users x candidates x 50``
    lines; a page stores it inline (e.g. as the data of an Altair chart with a dropdown, or the
    figures of :func:`attention_dropdown`).
    """
    if isinstance(users, (str, bytes)) or not isinstance(users, Sequence) or not users:
        raise ValueError(f"users: expected a non-empty list of user ids, got {users!r}")
    if isinstance(candidates, (str, bytes)) or not isinstance(candidates, Sequence) or not candidates:
        raise ValueError(f"candidates: expected a non-empty list of item ids, got {candidates!r}")
    decimals = require_positive_int(decimals, name="decimals")
    rows = [last_row_of_user(frame, u) for u in users]
    t = attention_table(model, split, frame, catalogue, rows, candidates)
    t = t[["user_id", "candidate", "probability", "position", "title", "genres", "shared_genres", "weight"]].copy()
    t[["probability", "weight"]] = t[["probability", "weight"]].round(decimals)
    return t.reset_index(drop=True)


def _plot_bars(t: pd.DataFrame, title: str, lim: float) -> plt.Figure:
    fig, ax = plt.subplots(figsize=(6.4, 0.6 + 0.16 * len(t)), layout="constrained")
    colors = ["#C44E52" if s > 0 else "#8C8C8C" for s in t["shared_genres"]]
    ax.barh(range(len(t)), t["weight"], color=colors)
    ax.set_yticks(range(len(t)), [_short(s, 36) for s in t["title"]], fontsize=7)
    ax.invert_yaxis()
    ax.set_xlim(min(0.0, -lim), lim)
    ax.axvline(0, color="0.5", lw=0.8)
    ax.set_xlabel("attention weight (red: shares a genre with the candidate)")
    ax.set_title(title, fontsize=9)
    return fig


def attention_dropdown(table: pd.DataFrame):
    """A dropdown over the (user, candidate) pairs of a :func:`widget_table`; each shows the
    attention bars over the user's history and the predicted probability (precomputed, so it
    works on the static website)."""
    require_columns(table, ["user_id", "candidate", "probability", "title", "shared_genres", "weight"],
                    name="table")
    pairs = list(dict.fromkeys(zip(table["user_id"], table["candidate"])))
    lim = float(table["weight"].abs().max()) or 1.0
    labels = {f"user {u} × {c}": (u, c) for u, c in pairs}

    def render(label):
        u, c = labels[label]
        t = table[(table["user_id"] == u) & (table["candidate"] == c)]
        return _plot_bars(t, f"user {u}, candidate {c}: p = {t['probability'].iloc[0]:.2f}", lim)

    box = precomputed_slider(render, list(labels), "user × movie", control="dropdown")
    box.control.layout.width = "min(100%, 600px)"
    return box


# --------------------------------------------------------------------------------------------
# Charts that compute in the browser
# --------------------------------------------------------------------------------------------

_BLOCKS = ("e", "v", "p", "d")
GENRE_BITS = {g: i for i, g in enumerate(GENRES)}
"""Bit of each genre in the genre masks the attention chart ships (one integer per movie)."""  # the four parts of the unit's input: e_j, v_A, e_j * v_A, e_j - v_A


def _unit_parts(model: DIN):
    """The activation unit of a one-hidden-layer DIN as numpy arrays: the first layer split into
    the blocks that meet ``e``, ``v``, ``e * v`` and ``e - v`` (each ``[H, Di]``), its bias, the
    activation (slope ``alpha``; Dice's running mean and variance) and the output layer."""
    from ..layers import Dice, PReLU

    unit = model.attention.unit
    if len(unit.rest.linears):
        raise ValueError("model: expected an activation unit with one hidden layer (attention_hidden=(H,))")
    act = unit.first_activation
    if not isinstance(act, (PReLU, Dice)):
        raise ValueError(f"model: expected a PReLU or Dice activation unit, got {type(act).__name__}")
    with torch.no_grad():
        blocks = [b.numpy().astype(np.float64) for b in unit.first.weight.split(unit.dim, dim=1)]
        h = unit.first.out_features
        hidden = pd.DataFrame({
            "h": np.arange(h), "b1": unit.first.bias.numpy(), "alpha": act.alpha.numpy(),
            "mean": act.running_mean.numpy() if isinstance(act, Dice) else np.zeros(h),
            "var": act.running_var.numpy() if isinstance(act, Dice) else np.ones(h),
            "w2": unit.rest.out.weight[0].numpy()}).astype({c: float for c in ("b1", "alpha", "mean", "var", "w2")})
        b2 = float(unit.rest.out.bias[0])
    dice = {"eps": act.eps} if isinstance(act, Dice) else None
    return dict(zip(_BLOCKS, blocks)), hidden, b2, dice


def unit_scores(model: DIN, keys: np.ndarray, query: np.ndarray, *, decimals: int | None = None) -> np.ndarray:
    """The activation unit's scores written out in numpy, as the browser chart computes them:
    ``w2 . act(W_e e + W_v v + W_p (e * v) + W_d (e - v) + b1) + b2`` for each row of ``keys``
    ``[N, Di]`` and one candidate ``query`` ``[Di]`` -> ``[N]`` (before any softmax).

    With ``decimals``, the item vectors are rounded as the chart ships them, so the result is
    what the browser shows; without, it is the model's own score (up to float64 rounding).
    """
    model = _require_din(model)
    blocks, hidden, b2, dice = _unit_parts(model)
    e, v = np.asarray(keys, dtype=np.float64), np.asarray(query, dtype=np.float64)
    if decimals is not None:
        e, v = np.round(e, decimals), np.round(v, decimals)
    z = e @ blocks["e"].T + v @ blocks["v"].T + (e * v) @ blocks["p"].T + (e - v) @ blocks["d"].T
    z = z + hidden["b1"].to_numpy()
    alpha = hidden["alpha"].to_numpy()
    if dice is None:
        a = np.where(z > 0, z, alpha * z)
    else:
        p = 1 / (1 + np.exp(-(z - hidden["mean"].to_numpy()) / np.sqrt(hidden["var"].to_numpy() + dice["eps"])))
        a = z * (alpha + p * (1 - alpha))
    return a @ hidden["w2"].to_numpy() + b2


def _genre_mask(genres) -> int:
    if not isinstance(genres, (tuple, list)):
        return 0
    return int(sum(1 << GENRE_BITS[g] for g in genres if g in GENRE_BITS))


def catalogue_display_titles(catalogue) -> list[str]:
    """One label per item code of ``catalogue`` (:class:`recbook.data.ItemCatalogue`) that tells
    the items apart, :func:`recbook.data.display_titles` of its items: the title, with
    `` (#item_id)`` added where another item of the catalogue has the same title (MovieLens-100K
    lists some movies twice under two ids, such as *Chasing Amy*, 246 and 268). The padding and
    unknown codes read ``"<unknown item>"``."""
    from ..data.titles import display_titles

    info = _require_catalogue(catalogue).frame
    reserved = info["item_id"].isna().to_numpy()
    labels = np.full(len(info), "<unknown item>", dtype=object)
    labels[~reserved] = display_titles(info.loc[~reserved, ["item_id", "title"]]).to_numpy()
    return labels.tolist()


def _short(title, n: int = 38) -> str:
    """``title`` cut to ``n`` characters with "…", keeping a trailing " (#id)" that tells two
    items of the same title apart (:func:`catalogue_display_titles`)."""
    title = "<unknown item>" if pd.isna(title) else str(title)
    if len(title) <= n:
        return title
    head, sep, tail = title.rpartition(" (#")
    if sep and tail.endswith(")") and tail[:-1].isdigit():
        keep = n - len(sep + tail) - 1
        return head[: max(keep, 1)] + "…" + sep + tail
    return title[: n - 1] + "…"


def _sig(values, digits: int = 6) -> np.ndarray:
    """``values`` rounded to ``digits`` significant digits, as the chart's expressions write them."""
    return np.vectorize(lambda x: float(f"{x:.{digits}g}"), otypes=[float])(np.asarray(values, dtype=np.float64))


def _num(x: float) -> str:
    """A number as written into a Vega expression (it reads back as exactly ``x``)."""
    return f"{x:.6g}"


def shipped_unit(model: DIN, *, decimals: int = 5) -> dict:
    """The activation unit as :func:`attention_chart` ships it, for item vectors given as integers
    in units of ``10**-decimals``: the first layer regrouped (see
    :meth:`recbook.layers.ActivationUnit.first_layer`) as

        ``z = A e + B v + P (e * v) + b1``,  ``A = W_e + W_d``, ``B = W_v - W_d``, ``P = W_p``

    with the scale folded into ``A``, ``B`` (``/ 10**decimals``) and ``P`` (``/ 10**(2 decimals)``),
    every number rounded to 6 significant digits. Keys: ``A``, ``B``, ``P`` ``[H, Di]``, ``b1``,
    ``alpha``, ``w2`` ``[H]``, ``b2``, ``dice`` (``None`` or ``{"mean", "var", "eps"}``).
    """
    model = _require_din(model)
    decimals = require_positive_int(decimals, name="decimals")
    blocks, hidden, b2, dice = _unit_parts(model)
    scale = 10.0 ** decimals
    out = {"A": _sig((blocks["e"] + blocks["d"]) / scale), "B": _sig((blocks["v"] - blocks["d"]) / scale),
           "P": _sig(blocks["p"] / scale ** 2), "b1": _sig(hidden["b1"]), "alpha": _sig(hidden["alpha"]),
           "w2": _sig(hidden["w2"]), "b2": float(_sig([b2])[0]), "dice": None}
    if dice is not None:
        out["dice"] = {"mean": _sig(hidden["mean"]), "var": _sig(hidden["var"]), "eps": dice["eps"]}
    return out


def shipped_scores(unit: Mapping, keys, query) -> np.ndarray:
    """What the chart's expressions compute from :func:`shipped_unit` for history items ``keys``
    ``[N, Di]`` and one candidate ``query`` ``[Di]``, both integers as shipped -> scores ``[N]``."""
    e, v = np.asarray(keys, dtype=np.float64), np.asarray(query, dtype=np.float64)
    z = e @ unit["A"].T + v @ unit["B"].T + (e * v) @ unit["P"].T + unit["b1"]
    alpha = unit["alpha"]
    if unit["dice"] is None:
        a = np.where(z > 0, z, alpha * z)
    else:
        d = unit["dice"]
        a = z * (alpha + (1 - alpha) / (1 + np.exp(-(z - d["mean"]) / np.sqrt(d["var"] + d["eps"]))))
    return a @ unit["w2"] + unit["b2"]


def unit_expressions(unit: Mapping) -> tuple[dict[str, str], str]:
    """Vega expressions of :func:`shipped_unit`: ``{"z0": ..., "z1": ...}``, each hidden unit's input
    from the fields ``e0..`` (the history item) and ``c0..`` (the candidate), and the score from
    the fields ``z0..``. Each is compiled once by Vega and then runs on the ~50 items of a history:
    no fold into one line per dimension, which made every control change slow."""
    h, di = unit["A"].shape
    z = {}
    for k in range(h):
        terms = [_num(unit["b1"][k])]
        terms += [f"{_num(unit['A'][k, d])}*datum.e{d}" for d in range(di)]
        terms += [f"{_num(unit['B'][k, d])}*datum.c{d}" for d in range(di)]
        terms += [f"{_num(unit['P'][k, d])}*datum.e{d}*datum.c{d}" for d in range(di)]
        z[f"z{k}"] = " + ".join(terms)
    acts = []
    for k in range(h):
        zk, alpha = f"datum.z{k}", _num(unit["alpha"][k])
        if unit["dice"] is None:
            act = f"({zk} > 0 ? {zk} : {alpha}*{zk})"
        else:
            d = unit["dice"]
            act = (f"{zk}*({alpha} + (1 - {alpha})/(1 + exp(-({zk} - {_num(d['mean'][k])})"
                   f"/sqrt({_num(d['var'][k])} + {d['eps']!r}))))")
        acts.append(f"{_num(unit['w2'][k])}*{act}")
    return z, " + ".join([_num(unit["b2"]), *acts])


def attention_chart(model: DIN, split, frame: pd.DataFrame, catalogue, *, users: Sequence[int],
                    candidates: Sequence[int], user: int | None = None, candidate: int | None = None,
                    checks: Sequence[tuple[int, int]] = (), decimals: int = 5):
    """DIN's attention over a user's history for any of ``candidates``, **computed in the browser**.

    For each of ``users`` the chart ships the history of the user's last row in ``frame`` (item
    codes, oldest first), and for those items and the ``candidates`` their item vectors
    ``e = [item_id, genres]`` (``Di`` integers each, in units of ``10**-decimals``); the trained
    activation unit travels as expressions (:func:`unit_expressions` of :func:`shipped_unit`). Two
    dropdowns pick the user and the candidate; Vega then computes, for each of the ~50 history
    items, the unit's hidden layer from ``[e_j, v_A, e_j * v_A, e_j - v_A]``, the activation and
    the score: the attention weight (with a softmax over the history when the model has one).
    A control change runs the unit on one history only, well within the 200 ms budget.

    The predicted probability needs the model's whole MLP on top (tens of thousands of weights);
    it is **precomputed** in PyTorch for every (user, candidate) pair and shipped as a small table.

    ``(user, candidate)`` and each pair of ``checks`` become browser checks of the readout, whose
    sum of weights and largest weight come from the PyTorch model (:meth:`DIN.attention_weights`).
    The readout is three short lines, so that it fits a phone.
    """
    import altair as alt

    from .. import widgets

    model = _require_din(model)
    split = _require_split(split, history=True)
    catalogue = _require_catalogue(catalogue)
    decimals = require_positive_int(decimals, name="decimals")
    users, candidates = [int(u) for u in users], [int(c) for c in candidates]
    if not users or not candidates:
        raise ValueError("users, candidates: expected non-empty lists of user ids and item ids")
    user = users[0] if user is None else int(user)
    candidate = candidates[0] if candidate is None else int(candidate)
    for u, c in [(user, candidate), *checks]:
        if u not in users:
            raise ValueError(f"checks: user {u!r} is not one of users {users}")
        if c not in candidates:
            raise ValueError(f"checks: candidate {c!r} is not one of candidates {candidates}")
    t = attention_table(model, split, frame, catalogue, [last_row_of_user(frame, u) for u in users], candidates)
    info = catalogue.frame
    cand_codes = catalogue.codes(candidates)
    rows = [last_row_of_user(frame, u) for u in users]
    hist = pd.DataFrame([{"user": u, "pos": p, "code": int(code)}
                         for u, r in zip(users, rows)
                         for p, code in enumerate(split["hist_item"][r][split["hist_mask"][r]].tolist(), start=1)])
    with torch.no_grad():
        table = model.item_vectors().numpy().astype(np.float64)
    di = table.shape[1]
    ecols, ccols = [f"e{d}" for d in range(di)], [f"c{d}" for d in range(di)]
    ints = np.rint(table * 10 ** decimals).astype(np.int64)       # the item vectors as shipped
    labels = catalogue_display_titles(catalogue)
    # Each history row carries its item's vector: the chart's own data, parsed as numbers once.
    hist = pd.concat([hist, pd.DataFrame(ints[hist["code"].to_numpy()], columns=ecols)], axis=1)
    hist["title"] = [_short(labels[c], 22) for c in hist["code"]]
    hist["gmask"] = [_genre_mask(info.at[c, "genres"]) for c in hist["code"]]
    cand_list = [int(c) for c in cand_codes]
    items = pd.DataFrame(ints[cand_list], columns=ecols)          # the candidates' vectors
    items.insert(0, "code", cand_list)
    items["gmask"] = [_genre_mask(info.at[c, "genres"]) for c in cand_list]
    unit = shipped_unit(model, decimals=decimals)
    z_exprs, score_expr = unit_expressions(unit)
    probs = t.drop_duplicates(["user_id", "candidate_id"])[["user_id", "candidate_id", "probability"]]
    code_of = dict(zip(candidates, (int(c) for c in cand_codes)))
    probs = pd.DataFrame({"key": [f"{u}|{code_of[c]}" for u, c in zip(probs["user_id"], probs["candidate_id"])],
                          "p": probs["probability"].round(2)})
    d_hist = widgets.CsvData(hist, name="din_hist")
    d_items = widgets.CsvData(items, name="din_items")
    d_prob = widgets.CsvData(probs, name="din_prob")
    u_param = widgets.dropdown("user", users, user, label="user",
                               labels=[f"{u} · {'known' if k == 'known' else 'cold'} · {int(split['hist_mask'][r].sum())} items"
                                       for u, r, k in zip(users, rows, user_types(split)[rows])])
    by_title = sorted(candidates, key=lambda c: labels[code_of[c]])
    c_param = widgets.dropdown("candidate", [code_of[c] for c in by_title], code_of[candidate], label="candidate",
                               labels=[_short(labels[code_of[c]], 44) for c in by_title])
    # The unit runs once per control change, in the transforms of the whole chart (shared by
    # the readout and the bars), on the history of the chosen user only. The candidate's vector
    # is looked up, and fields looked up from a CsvData arrive as text: they are turned into
    # numbers once per row, not in every term of the expressions.
    def weights(chart):
        chart = (chart.transform_filter("datum.user == user")
                 .transform_calculate(cand="candidate")
                 .transform_lookup(lookup="cand", from_=alt.LookupData(d_items.ref, "code", [*ecols, "gmask"]),
                                   as_=[*ccols, "cmask"])
                 .transform_calculate(**{c: f"toNumber(datum.{c})" for c in ccols})
                 .transform_calculate(**z_exprs)
                 .transform_calculate(score=score_expr))
        if model.attention.softmax:
            return (chart.transform_calculate(q=f"exp(datum.score / {float(np.sqrt(di))!r})")
                    .transform_joinaggregate(total="sum(q)").transform_calculate(weight="datum.q / datum.total"))
        return chart.transform_calculate(weight="datum.score")

    shared = " + ".join(f"(floor(toNumber(datum.gmask) / {1 << b}) % 2) * (floor(toNumber(datum.cmask) / {1 << b}) % 2)"
                        for b in range(len(GENRE_BITS)))
    head = alt.layer(*[
        alt.Chart().mark_text(align="left", fontSize=size, fontWeight=weight, color=colour).encode(
            x=alt.value(0), y=alt.value(y), text=f"{field}:N")
        for field, y, size, weight, colour in [("t1", 10, 14, "bold", "black"), ("t2", 30, 12, "normal", "#333333"),
                                               ("t3", 48, 12, "normal", "#555555")]
    ]).transform_aggregate(total="sum(weight)", top="max(weight)", n="count()").transform_calculate(
        key="user + '|' + candidate").transform_lookup(
        lookup="key", from_=alt.LookupData(d_prob.ref, "key", ["p"])).transform_calculate(
        t1="'sum of weights = ' + format(datum.total, '.2f')",
        t2="'largest weight = ' + format(datum.top, '.2f') + ' · ' + datum.n + ' items'",
        t3="'probability ' + format(toNumber(datum.p), '.2f') + ' (precomputed)'",
    ).properties(width=300, height=56)
    colour = alt.Color("colour:N", title=None, legend=alt.Legend(orient="bottom", columns=1), scale=alt.Scale(
        domain=["shares a genre", "no shared genre"], range=["#C44E52", "#8C8C8C"]))
    y = alt.Y("label:N", sort=alt.EncodingSortField("pos", order="ascending"), title="history, oldest first",
              axis=alt.Axis(labelLimit=130, labelFontSize=10))
    bars = alt.Chart().transform_calculate(
        shared=shared,
        colour="datum.shared > 0 ? 'shares a genre' : 'no shared genre'",
        label="datum.pos + '. ' + datum.title",
    ).mark_bar(height={"band": 0.8}).encode(
        x=alt.X("weight:Q", title="attention weight"), y=y, color=colour,
        tooltip=[alt.Tooltip("title:N"), alt.Tooltip("weight:Q", format=".3f")],
    ).properties(width=300, height={"step": 13})
    chart = weights(alt.vconcat(head, bars, data=d_hist.ref, spacing=10))
    checks_ = []
    for u, c in [(user, candidate), *checks]:
        texts = _attention_header(t, u, c)
        r = rows[users.index(u)]
        shipped = shipped_scores(unit, ints[split["hist_item"][r][split["hist_mask"][r]].numpy()], ints[code_of[c]])
        if model.attention.softmax:
            shipped = np.exp(shipped / np.sqrt(di) - (shipped / np.sqrt(di)).max())
            shipped = shipped / shipped.sum()
        if texts != _header_text(shipped.sum(), shipped.max()):
            raise ValueError(f"checks: for user {u} and candidate {c} the readout is {texts!r} in PyTorch but "
                             "rounds differently from the shipped, rounded numbers; pick another pair")
        checks_.append({"set": {"user": int(u), "candidate": code_of[c]}, "texts": texts})
    return widgets.browser_chart(chart, params=[u_param, c_param], data=[d_hist, d_items, d_prob], checks=checks_)


def _attention_header(table: pd.DataFrame, user: int, candidate: int) -> list[str]:
    w = table[(table["user_id"] == user) & (table["candidate_id"] == candidate)]["weight"]
    return _header_text(w.sum(), w.max())


def _d3(value: float, spec: str = ".2f") -> str:
    """``value`` as the browser's ``format(value, spec)`` writes it (a true minus sign, U+2212)."""
    return format(value, spec).replace("-", "\N{MINUS SIGN}")


def _header_text(total: float, top: float) -> list[str]:
    """The first line of the readout and the start of the second, as the browser writes them."""
    return [f"sum of weights = {_d3(total)}", f"largest weight = {_d3(top)}"]


def dice_values(s, *, mean: float, var: float, alpha: float, eps: float = 1e-8) -> np.ndarray:
    """Dice of ``s`` with the given statistics and slope, computed by :class:`recbook.layers.Dice`
    in ``eval()`` mode (one neuron whose running mean and variance are ``mean`` and ``var``)."""
    from ..layers import Dice

    if not (isinstance(var, (int, float)) and var > 0):
        raise ValueError(f"var: expected a positive number, got {var!r}")
    dice = Dice(1, eps=eps, alpha_init=float(alpha)).eval()
    dice.running_mean.fill_(float(mean))
    dice.running_var.fill_(float(var))
    with torch.no_grad():
        x = torch.as_tensor(np.asarray(s, dtype=np.float64), dtype=torch.float64).reshape(-1, 1)
        return dice.double()(x).reshape(-1).numpy()


def _dice_texts(at: float, mean: float, std: float, alpha: float) -> list[str]:
    dice = float(dice_values([at], mean=mean, var=std ** 2, alpha=alpha)[0])
    prelu = at if at > 0 else alpha * at
    return [f"at s = {_d3(at, '+.1f')}: Dice {_d3(dice, '+.2f')}, PReLU {_d3(prelu, '+.2f')}"]


DICE_CHECKS = (dict(mean=1.0, std=0.5, alpha=0.5), dict(mean=-1.5, std=2.0, alpha=0.1))
"""The slider settings :func:`dice_chart` checks in the browser when it is given no checks."""


def dice_chart(*, mean: float = 0.0, std: float = 1.0, alpha: float = 0.25, at: float = -1.0,
               checks: Sequence[Mapping] | None = None):
    """Dice and PReLU of one neuron, ``s`` from -4 to 4, computed in the browser.

    Sliders set the neuron's mean ``E[s]``, its standard deviation ``sqrt(Var[s])`` and the slope
    ``alpha`` (both activations use it); the header gives both values at ``s = at``, and each
    of ``checks`` (``dict(mean=..., std=..., alpha=...)``) becomes a browser check of it computed by
    :class:`recbook.layers.Dice` (without ``checks``: :data:`DICE_CHECKS`). A dashed line marks
    ``E[s]``, where Dice's switch is centred.
    """
    import altair as alt

    from .. import widgets

    m = widgets.slider("mean", -2, 2, 0.1, mean, label="E[s]")
    sd = widgets.slider("std", 0.2, 3, 0.1, std, label="√Var[s]")
    a = widgets.slider("alpha", 0, 1, 0.05, alpha, label="α")
    dice = "datum.s * (alpha + (1 - alpha) / (1 + exp(-(datum.s - mean) / sqrt(std * std + 1e-8))))"
    prelu = "datum.s > 0 ? datum.s : alpha * datum.s"
    curves = (alt.Chart(alt.sequence(-4, 4.001, 0.05, as_="s"))
              .transform_calculate(Dice=dice, PReLU=prelu)
              .transform_fold(["Dice", "PReLU"], as_=["activation", "f"]))
    lines = curves.mark_line(strokeWidth=2.5).encode(
        x=alt.X("s:Q", title="input s of the neuron"), y=alt.Y("f:Q", title="output f(s)"),
        color=alt.Color("activation:N", title=None, scale=alt.Scale(domain=["Dice", "PReLU"],
                                                                     range=["#C44E52", "#4C72B0"])),
        strokeDash=alt.StrokeDash("activation:N", legend=None, scale=alt.Scale(
            domain=["Dice", "PReLU"], range=[[1, 0], [5, 3]])))
    centre = alt.Chart(alt.sequence(0, 1, 1, as_="i")).transform_calculate(s="mean").mark_rule(
        color="#888888", strokeDash=[2, 2]).encode(x="s:Q")
    at_expr = f"{float(at)!r}"
    head = (alt.Chart(alt.sequence(0, 1, 1, as_="i"))
            .transform_calculate(s=at_expr)
            .transform_calculate(d=dice, p=prelu)
            .transform_calculate(t="'at s = ' + format(datum.s, '+.1f') + ': Dice ' + format(datum.d, '+.2f')"
                                   " + ', PReLU ' + format(datum.p, '+.2f')")
            .mark_text(align="left", fontSize=14).encode(x=alt.value(0), y=alt.value(8), text="t:N")
            .properties(width=420, height=22))
    chart = alt.vconcat(head, alt.layer(centre, lines).properties(width=420, height=260), spacing=8)
    checks_ = [{"set": {"mean": mean, "std": std, "alpha": alpha}, "texts": _dice_texts(at, mean, std, alpha)}]
    for c in DICE_CHECKS if checks is None else checks:
        c = dict(c)
        checks_.append({"set": {"mean": c["mean"], "std": c["std"], "alpha": c["alpha"]},
                        "texts": _dice_texts(at, c["mean"], c["std"], c["alpha"])})
    return widgets.browser_chart(chart, params=[m, sd, a], checks=checks_)


# --------------------------------------------------------------------------------------------
# The architecture
# --------------------------------------------------------------------------------------------

def plot_din_architecture(n_items: int = 4, *, attention_hidden: int = 36, hidden: Sequence[int] = (200, 80),
                          ax: Axes | None = None) -> Axes:
    """DIN as the book builds it: each history item and the candidate go through the activation
    unit, the weights pool the history for the candidate, and the MLP reads the user's fields,
    the pooled history and the candidate. A note says what the base model does instead."""
    n_items = require_positive_int(n_items, name="n_items")
    if n_items < 2:
        raise ValueError(f"n_items: expected at least 2 history items to draw, got {n_items}")
    attention_hidden = require_positive_int(attention_hidden, name="attention_hidden")
    hidden = [require_positive_int(h, name="hidden") for h in hidden]
    ax = diagram_axes(ax, (7.2, 4.6), (0, 110), (-6, 62))
    box, arrow = partial(diagram_box, ax), partial(diagram_arrow, ax, head=11)

    top, bottom = 50.0, 22.0
    step = (top - bottom) / (n_items - 1)
    ys = [top - i * step for i in range(n_items)]
    h = min(5.0, step * 0.7)
    ax.text(9.5, 60, "history (oldest first)", ha="center", fontsize=10, fontweight="bold")
    ax.text(35, 60, "activation unit", ha="center", fontsize=10, fontweight="bold")
    ax.text(35, 57.5, "MLP on $[e_j, v_A, e_j \\odot v_A, e_j - v_A]$\n"
            f"{attention_hidden} units → one score per item", ha="center", va="top", fontsize=8, color="0.35")
    for i, y in enumerate(ys):
        j = "L" if i == n_items - 1 else str(i + 1)
        box(2, y - h / 2, 15, h, f"$e_{j}$", "#EAEAF2", 10)
        box(28, y - h / 2, 14, h, f"$a(e_{j}, v_A)$", "#FBE3CF", 9.5)
        arrow(17.6, y, 27.4, y)
        arrow(42.6, y, 53.4, 38 + (y - 38) * 0.25)
    ax.text(9.5, bottom - h / 2 - 1.2, "⋮ padding: masked out", ha="center", va="top", fontsize=8, color="0.35")
    # The candidate feeds every unit (dashed) and the MLP.
    box(2, 5, 15, 6, "candidate $v_A$", "#D5EDE4", 9.5)
    for y in ys:
        arrow(17.6, 9, 30, y - h / 2 - 0.6, colour="#2E8B57", style=(0, (3, 2)))
    box(2, -5, 15, 6, "user fields", "#EAEAF2", 9.5)
    box(54, 33, 16, 10, "$v_U(A) =$\n$\\sum_j a_j e_j$", "#DCE6F2", 10)
    ax.text(62, 31, "raw weights:\nno softmax", ha="center", va="top", fontsize=8, color="0.35")
    # The MLP reads the user fields, the pooled history and the candidate.
    box(78, 18, 9, 24, "concat", "#EAEAF2", 9.5)
    arrow(70.6, 38, 77.4, 34)
    arrow(17.6, 8, 77.4, 24, colour="#2E8B57")
    arrow(17.6, -2, 77.4, 20)
    box(91, 24, 9, 12, "MLP\n" + "-".join(str(x) for x in hidden), "#DCE6F2", 9)
    arrow(87.6, 30, 90.4, 30)
    box(103, 26, 6, 8, "$\\hat y$", "#D5EDE4", 11, "bold")
    arrow(100.6, 30, 102.4, 30)
    ax.text(55, -5.5, "base model: $v_U$ = mean of the $e_j$, the same for every candidate (no activation unit)",
            ha="center", va="bottom", fontsize=8.5, color="0.25", style="italic")
    return ax


# --------------------------------------------------------------------------------------------
# Does a softmax variant attend at all?
# --------------------------------------------------------------------------------------------

def attention_spread(model: DIN, split, *, n_rows: int = 2000) -> dict:
    """How far a DIN's attention weights are from the mean of the history, over the first
    ``n_rows`` rows of ``split`` that hold at least two history items.

    Returns a dict: ``rows``; ``normalised entropy`` (mean over rows of ``H(w) / log n``, with ``w``
    the row's weights scaled to sum to one: 1 for uniform weights, the mean pooling of the base
    model); ``max weight x n`` (mean over rows of the largest weight times the history length: 1
    for uniform weights); ``weight cv`` (mean over rows of the weights' std / mean: 0 for uniform);
    ``score std`` (mean over rows of the std of the unit's scores before any softmax, divided by
    ``sqrt(Di)`` when the model normalises with a softmax, as it does before the softmax).
    """
    _require_din(model)
    n_rows = require_positive_int(n_rows, name="n_rows")
    batch = {k: t[:n_rows] for k, t in _require_split(split, history=True).items()}
    mask = batch["hist_mask"]
    keep = mask.sum(1) >= 2
    if not bool(keep.any()):
        raise ValueError("split: no row among the first n_rows has two or more history items")
    w = model.attention_weights(batch)
    softmax = model.attention.softmax
    try:
        model.attention.softmax = False
        scores = model.attention_weights(batch)  # the unit's raw scores, 0 on padding
    finally:
        model.attention.softmax = softmax
    if softmax:
        scores = scores / float(model.item_dim) ** 0.5
    w, scores, mask = w[keep].double(), scores[keep].double(), mask[keep]
    n = mask.sum(1).double()
    p = w.abs() / w.abs().sum(1, keepdim=True).clamp_min(1e-300)
    entropy = -(torch.where(mask & (p > 0), p * p.clamp_min(1e-300).log(), torch.zeros_like(p))).sum(1)
    mean_w = (w * mask).sum(1) / n
    std_w = (((w - mean_w[:, None]) ** 2) * mask).sum(1).div(n).sqrt()
    mean_s = (scores * mask).sum(1) / n
    std_s = (((scores - mean_s[:, None]) ** 2) * mask).sum(1).div(n).sqrt()
    return {"rows": int(keep.sum()),
            "normalised entropy": float((entropy / n.log()).mean()),
            "max weight x n": float(((p.masked_fill(~mask, 0)).max(1).values * n).mean()),
            "weight cv": float((std_w / mean_w.abs().clamp_min(1e-300)).mean()),
            "score std": float(std_s.mean())}


def gradient_norms(model: DIN, split, *, batch_size: int = 1024) -> dict:
    """The gradient norm of the loss (binary cross-entropy on the logits) on the first
    ``batch_size`` rows of ``split``, per part of a DIN: ``activation unit``, ``embeddings``
    and ``MLP``. The model's weights are left as they were (gradients are cleared)."""
    _require_din(model)
    batch_size = require_positive_int(batch_size, name="batch_size")
    batch = {k: t[:batch_size] for k, t in _require_split(split, history=True).items()}
    was_training = model.training
    model.eval()  # no side effects: Dice uses its running statistics, nothing is updated
    model.zero_grad(set_to_none=True)
    try:
        loss = torch.nn.functional.binary_cross_entropy_with_logits(model(batch), batch["label"])
        loss.backward()
        parts = {"activation unit": model.attention.parameters(), "embeddings": model.embedding.parameters(),
                 "MLP": model.mlp.parameters()}
        out = {name: float(torch.sqrt(sum((p.grad.double() ** 2).sum() for p in params if p.grad is not None)))
               for name, params in parts.items()}
    finally:
        model.zero_grad(set_to_none=True)
        model.train(was_training)
    return out


SOFTMAX_PROBE_FILE = "din_softmax_attention.csv"
"""The record of :func:`run_softmax_probe` (``book/results/din_softmax_attention.csv``)."""


def softmax_probe(data, seed: int = 0, *, entry: str = "DIN-softmax", n_rows: int = 2000) -> pd.DataFrame:
    """Train the leaderboard's ``entry`` (by default ``DIN-softmax``) with ``seed`` exactly as the
    leaderboard does (:func:`recbook.bench.run_one`'s steps) and measure its attention before and
    after training: :func:`attention_spread` on the first ``n_rows`` test rows and
    :func:`gradient_norms` on the first 1,024 training rows. One row per stage (``init``,
    ``trained``), with the seed, the validation and test AUC of the trained model."""
    from ..bench import REGISTRY, train_entry
    from ..train import evaluate_ctr, num_threads, seed_everything

    if entry not in REGISTRY:
        raise ValueError(f"entry: {entry!r} is not a registered model; expected one of {list(REGISTRY)}")
    e = REGISTRY[entry]
    rows = []
    with num_threads(1):
        seed_everything(seed)
        model = e.build(data)
        _require_din(model)
        rows.append({"stage": "init", **attention_spread(model, data.test, n_rows=n_rows),
                     **gradient_norms(model, data.train)})
        res = train_entry(e, model, data, seed, threads=1, quick=False, progress=False)
        test = evaluate_ctr(model, data.test)
        rows.append({"stage": "trained", **attention_spread(model, data.test, n_rows=n_rows),
                     **gradient_norms(model, data.train), "valid_auc": res.best_score,
                     "test_auc": test["auc"], "epochs": len(res.history), "best_epoch": res.best_epoch})
    out = pd.DataFrame(rows)
    out.insert(0, "seed", int(seed))
    out.insert(0, "model", entry)
    return out


def run_softmax_probe(path=None, seeds: Sequence[int] = (0,)) -> pd.DataFrame:
    """:func:`softmax_probe` for each of ``seeds``, written to ``path`` (default: the repository's
    ``book/results/din_softmax_attention.csv``). One run of about a minute per seed::

        python -c "from recbook.chapters import din; din.run_softmax_probe()"
    """
    from pathlib import Path

    from ..bench import load_protocol

    seeds = [int(s) for s in seeds]
    if not seeds:
        raise ValueError("seeds: expected at least one seed")
    path = (Path(path) if path is not None
            else BOOK_RESULTS / SOFTMAX_PROBE_FILE)
    data = load_protocol("ctr")
    out = pd.concat([softmax_probe(data, s) for s in seeds], ignore_index=True)
    out.to_csv(path, index=False, float_format="%.6g")
    return out


MBA_FILE = "din_regularisation.csv"
"""The record of :func:`run_regularisation_sweep` (``book/results/din_regularisation.csv``)."""

MBA_L2 = (0.1, 1.0)
"""Strengths of DIN's mini-batch aware L2 in the record (``DIN.from_data(data, l2=...)``)."""

WEIGHT_DECAYS = (1e-4,)
"""Strengths of plain weight decay on the whole model in the record (``fit(..., weight_decay=...)``)."""


def regularisation_run(data, *, seed: int, l2: float = 0.0, weight_decay: float = 0.0) -> dict:
    """Train the paper's DIN (``DIN.from_data(data, dim=16, l2=l2)``) with the leaderboard's CTR
    settings (:data:`recbook.bench.CTR_FIT`) and ``seed``, the loss :func:`recbook.models.din.din_loss`
    (cross-entropy + mini-batch aware L2) and Adam's ``weight_decay``. One dict: the settings,
    validation AUC (the early-stopping metric), test AUC, epochs and CPU seconds per epoch."""
    from ..bench import CTR_FIT
    from ..models.din import din_loss
    from ..train import evaluate_ctr, fit, num_threads, seed_everything

    if l2 and weight_decay:
        raise ValueError("l2, weight_decay: expected one of the two regularisers at a time")
    with num_threads(1):
        seed_everything(seed)
        model = DIN.from_data(data, dim=16, l2=float(l2))
        res = fit(model, data.train, data.valid, seed=seed, progress=False, loss_fn=din_loss,
                  weight_decay=float(weight_decay), **CTR_FIT)
        test = evaluate_ctr(model, data.test)
    kind = "mini-batch aware L2" if l2 else "weight decay" if weight_decay else "none"
    return {"regulariser": kind, "strength": float(l2 or weight_decay), "seed": int(seed),
            "valid_auc": float(res.best_score), "test_auc": float(test["auc"]),
            "epochs": len(res.history), "best_epoch": int(res.best_epoch),
            "cpu_s_per_epoch": float(res.history["cpu_seconds"].mean())}


def run_regularisation_sweep(path=None, seeds: Sequence[int] = (0, 1, 2), l2s: Sequence[float] = MBA_L2,
                             weight_decays: Sequence[float] = WEIGHT_DECAYS) -> pd.DataFrame:
    """:func:`regularisation_run` without a penalty, then for every strength, for each seed, written
    to ``path`` (default: the repository's ``book/results/din_regularisation.csv``). About half a
    minute per run on a quiet machine::

        python -c "from recbook.chapters import din; din.run_regularisation_sweep()"
    """
    from pathlib import Path

    from ..bench import load_protocol

    seeds = [int(s) for s in seeds]
    if not seeds:
        raise ValueError("seeds: expected at least one seed")
    path = Path(path) if path is not None else BOOK_RESULTS / MBA_FILE
    data = load_protocol("ctr")
    rows = [regularisation_run(data, seed=s) for s in seeds]                      # no penalty
    rows += [regularisation_run(data, seed=s, l2=v) for v in l2s for s in seeds]
    rows += [regularisation_run(data, seed=s, weight_decay=v) for v in weight_decays for s in seeds]
    out = pd.DataFrame(rows)
    out.to_csv(path, index=False, float_format="%.6g")
    return out


# --------------------------------------------------------------------------------------------
# The leaderboard's DIN rows
# --------------------------------------------------------------------------------------------

LEADERBOARD_METRICS = {"test_auc": "test AUC", "test_gauc": "test GAUC", "test_logloss": "test logloss",
                       "valid_auc": "validation AUC", "cpu_s_per_epoch": "CPU s / epoch"}


def leaderboard_table(results: pd.DataFrame, names: Sequence[str], *, base: str = "DIN-base"):
    """The CTR rows of the leaderboard's ``results`` for the models ``names``, in that order:
    ``(board, agg)``. ``board`` shows "mean ± std" over the seeds of each metric of
    :data:`LEADERBOARD_METRICS` (CPU time: the mean), the number of seeds and the RelaImpr of the
    mean test AUC against ``base`` (:func:`rela_impr`); ``agg`` holds the means and standard
    deviations as numbers (columns ``(metric, "mean" | "std")``)."""
    require_columns(results, ["model", "protocol", "seed", *LEADERBOARD_METRICS], name="results")
    names = list(names)
    if base not in names:
        raise ValueError(f"base: {base!r} is not among names {names}")
    ctr = results[(results["protocol"] == "ctr") & results["model"].isin(names)]
    missing = [n for n in names if n not in set(ctr["model"])]
    if missing:
        raise ValueError(f"names: no CTR rows for {missing}")
    agg = ctr.groupby("model")[list(LEADERBOARD_METRICS)].agg(["mean", "std"]).reindex(names)
    board = pd.DataFrame({words: [f"{m:.4f} ± {s:.4f}" if key != "cpu_s_per_epoch" else f"{m:.2f}"
                                  for m, s in agg[key].to_numpy()]
                          for key, words in LEADERBOARD_METRICS.items()}, index=names)
    board["seeds"] = ctr.groupby("model").size().reindex(names).to_numpy()
    mean_auc = agg[("test_auc", "mean")]
    board[f"RelaImpr vs {base}"] = [f"{rela_impr(a, mean_auc[base]):+.1f}%" for a in mean_auc]
    return board, agg


def paired_summary(results: pd.DataFrame, a: str, b: str,
                   metrics: Sequence[str] = ("valid_auc", "test_auc", "test_gauc")) -> pd.DataFrame:
    """Model ``b`` against model ``a``, paired by seed (:func:`recbook.bench.seed_comparison`):
    the mean, smallest and largest difference ``b − a`` over the seeds, one row per metric
    ("validation AUC, b − a")."""
    from ..bench import seed_comparison

    for m in metrics:
        if m not in LEADERBOARD_METRICS:
            raise ValueError(f"metrics: {m!r} is not one of {list(LEADERBOARD_METRICS)}")
    by_seed = seed_comparison(results, a, b, metrics=list(metrics))
    diff = by_seed[[f"{m} {b} − {a}" for m in metrics]]
    out = pd.DataFrame({"mean": diff.mean().to_numpy(), "min": diff.min().to_numpy(),
                        "max": diff.max().to_numpy()},
                       index=[f"{LEADERBOARD_METRICS[m]}, {b} − {a}" for m in metrics])
    return out


PROBE_COLUMNS = {"normalised entropy": "normalised entropy", "max weight x n": "largest weight × n",
                 "weight cv": "weights' std / mean", "activation unit": "|gradient|, activation unit",
                 "embeddings": "|gradient|, embeddings", "MLP": "|gradient|, MLP"}
"""The columns of :func:`attention_probe_table`: :func:`attention_spread` and
:func:`gradient_norms` keys, in words."""


def attention_probe_table(probe: pd.DataFrame, live: Mapping[str, tuple] | None = None) -> pd.DataFrame:
    """The record of :func:`run_softmax_probe` (one row per seed and stage) as a table in words,
    with one more row per entry of ``live``, ``{label: (model, data)}``: that DIN measured now, on
    ``data.test`` (:func:`attention_spread`) and ``data.train`` (:func:`gradient_norms`)."""
    require_columns(probe, ["model", "seed", "stage", *PROBE_COLUMNS], name="probe")
    out = probe.set_index(probe["model"] + ", seed " + probe["seed"].astype(str) + ", " + probe["stage"])
    out = out[list(PROBE_COLUMNS)]
    for label, (model, data) in (live or {}).items():
        out.loc[label] = {**attention_spread(model, data.test), **gradient_norms(model, data.train)}
    out.index.name = None
    return out.rename(columns=PROBE_COLUMNS)

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
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from matplotlib.axes import Axes

from .._checks import require_columns, require_positive_int
from ..data.features import UNK
from ..metrics import ctr_report
from ..models.din import DIN
from ..plots import axes_or_new as _axes
from ..train import predict
from ..widgets import precomputed_slider

__all__ = [
    "USER_TYPES", "attention_dropdown", "attention_table", "genre_overlap_summary", "last_row_of_user",
    "plot_attention_heatmap", "rela_impr", "results_by_user_type", "user_types", "widget_table",
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
            for ci, (c, cc) in enumerate(zip(cands, cand_codes)):
                cg = tuple(info.at[cc, "genres"])
                for p, (code, weight) in enumerate(zip(hist, w[ci][mask]), start=1):
                    g = tuple(info.at[code, "genres"])
                    title = info.at[code, "title"]
                    item = info.at[code, "item_id"]
                    out.append({"row": int(r), "user_id": int(frame["user_id"].iloc[r]), "candidate_id": c,
                                "candidate": str(info.at[cc, "title"]), "candidate_genres": "|".join(cg),
                                "probability": float(prob[ci]), "position": p,
                                "item_id": -1 if pd.isna(item) else int(item),
                                "title": "<unknown item>" if pd.isna(title) else str(title),
                                "genres": "|".join(g), "shared_genres": len(set(g) & set(cg)),
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
    titles = [s if len(s) <= max_title else s[: max_title - 1] + "…" for s in titles]
    ax = _axes(ax, figsize=(2.0 + 1.6 * len(cands), 0.8 + 0.22 * len(w)))
    lim = float(np.abs(w.to_numpy()).max()) or 1.0
    vmin = -lim if (w.to_numpy() < 0).any() else 0.0
    im = ax.imshow(w.to_numpy(), aspect="auto", cmap="RdBu_r" if vmin < 0 else "Reds", vmin=vmin, vmax=lim)
    ax.set_yticks(range(len(w)), titles, fontsize=7)
    probs = t.drop_duplicates("candidate").set_index("candidate")["probability"]
    ax.set_xticks(range(len(cands)), [f"{c}\np = {probs[c]:.2f}" for c in cands], fontsize=8)
    ax.xaxis.tick_top()
    if annotate:
        for i in range(len(w)):
            for j in range(len(cands)):
                mark = " •" if shared.iat[i, j] > 0 else ""
                ax.text(j, i, f"{w.iat[i, j]:.2f}{mark}", ha="center", va="center", fontsize=6)
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
    ax.set_yticks(range(len(t)), [s if len(s) <= 36 else s[:35] + "…" for s in t["title"]], fontsize=7)
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

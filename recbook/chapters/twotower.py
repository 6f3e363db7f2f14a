"""Helpers of the two-tower retrieval chapter: what in-batch negatives do, what logQ changes, the
temperature, and retrieved lists to look at.

* :func:`negative_exposure` / :func:`plot_negative_exposure`: how often each item serves as an
  in-batch negative in one epoch against how often it is a positive: in-batch negatives are
  sampled in proportion to popularity, where a full softmax would push every item down alike.
* :func:`frequency_estimates` / :func:`plot_frequency_estimates`: the streaming frequency
  estimator of Yi et al. run over the training batches, against the rates counted from the data.
* :func:`popularity_breakdown` / :func:`plot_popularity_breakdown`: recall and the share of the
  top-K slots per popularity band (head, torso, tail), for several models (logQ on and off).
* :func:`temperature_sweep` / :func:`plot_temperature_sweep`: validation and test Recall@50 per
  temperature.
* :func:`top_k_items`: each user's top-K items with the user's earlier items removed.
* :func:`retrieval_table` / :func:`retrieval_widget`: for a handful of users, the recent history
  and the top-10 of several models side by side, with titles and genres; the widget is
  precomputed, so it works on the website without a kernel.
"""
from __future__ import annotations

import html
from collections.abc import Mapping, Sequence

import ipywidgets as widgets
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from matplotlib.axes import Axes
from matplotlib.ticker import PercentFormatter

from .._checks import require_columns, require_positive_int
from ..data.features import N_RESERVED, PAD
from ..plots import axes_or_new as _axes
from ..retrieval import evaluate_retrieval, train_two_tower, user_item_scores
from ..widgets import precomputed_slider

__all__ = [
    "BANDS", "frequency_estimates", "negative_exposure", "plot_frequency_estimates", "plot_negative_exposure",
    "plot_popularity_breakdown", "plot_temperature_sweep", "popularity_bands", "popularity_breakdown",
    "retrieval_table", "retrieval_widget", "temperature_sweep", "top_k_items",
]

BANDS = ("head", "torso", "tail")
"""Popularity bands: the most popular items that make up the first third of the training
interactions, the next third, and the rest (see :func:`popularity_bands`)."""
_BAND_COLORS = {"head": "#C44E52", "torso": "#DD8452", "tail": "#4C72B0"}


def _require_data(data) -> None:
    for attr in ("train", "valid", "test", "item_counts", "features"):
        if not hasattr(data, attr):
            raise ValueError(f"data: expected recbook.data.retrieval.retrieval_data(...), missing {attr!r}")


def _require_models(models) -> dict:
    if not isinstance(models, Mapping) or not models:
        raise ValueError("models: expected a non-empty dict {name: TwoTower}")
    for name, m in models.items():
        if not (hasattr(m, "user_vectors") and hasattr(m, "item_vectors")):
            raise ValueError(f"models['{name}']: expected a two-tower model, got {type(m).__name__}")
    return dict(models)


def _split(data, split: str):
    if split not in ("valid", "test"):
        raise ValueError(f"split: expected 'valid' or 'test', got {split!r}")
    return getattr(data, split)


# --------------------------------------------------------------------------------------------
# In-batch negatives and popularity
# --------------------------------------------------------------------------------------------

def negative_exposure(data, *, batch_size: int = 1024, seed: int = 0, mask_hits: bool = True) -> pd.DataFrame:
    """Times each item is an in-batch negative during one epoch, against its count as a positive.

    The batches are cut as :func:`recbook.train.fit` cuts them (a seeded permutation). In a batch
    where item ``j`` is the positive of ``c_j`` rows, each of its ``c_j`` columns is a negative for
    the ``B - c_j`` rows with another positive (``B - 1`` rows without ``mask_hits``).

    Returns one row per item code (reserved codes dropped) with ``code``, ``title``,
    ``positives`` (training examples with that target), ``negatives`` (uses as a negative), and
    ``uniform`` (the uses each item would get if the same total were spread evenly over the
    catalogue, as in a full softmax). Sorted by ``positives``, most popular first.
    """
    _require_data(data)
    batch_size = require_positive_int(batch_size, name="batch_size")
    items = data.train["item_id"]
    n_items = data.features.n_items
    g = torch.Generator().manual_seed(int(seed))
    order = torch.randperm(len(items), generator=g)
    neg = torch.zeros(n_items, dtype=torch.float64)
    for a in range(0, len(items), batch_size):
        batch = items[order[a:a + batch_size]]
        c = torch.bincount(batch, minlength=n_items).to(torch.float64)
        b = float(len(batch))
        neg += c * (b - c) if mask_hits else c * (b - 1)
    pos = torch.bincount(items, minlength=n_items).to(torch.float64)
    codes = np.arange(N_RESERVED, n_items)
    table = pd.DataFrame({
        "code": codes,
        "title": [data.features.titles[c] for c in codes],
        "positives": pos[N_RESERVED:].numpy().astype(np.int64),
        "negatives": neg[N_RESERVED:].numpy(),
    })
    table["uniform"] = table["negatives"].sum() / len(table)
    return table.sort_values(["positives", "code"], ascending=[False, True], kind="stable").reset_index(drop=True)


def plot_negative_exposure(table: pd.DataFrame, *, ax: Axes | None = None) -> Axes:
    """Log-log scatter of uses as a negative against count as a positive, one dot per item, with
    the even spread of a full softmax as a dashed line and the head's share of negatives written."""
    require_columns(table, ["positives", "negatives", "uniform"], name="table")
    ax = _axes(ax, figsize=(6.0, 4.0))
    t = table[table["positives"] > 0]
    ax.scatter(t["positives"], t["negatives"], s=8, alpha=0.5, color="#4C72B0", label="in-batch negatives")
    ax.axhline(float(table["uniform"].iloc[0]), color="0.4", ls="--", lw=1,
               label="every item alike (full softmax)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("times the item is a positive (training examples)")
    ax.set_ylabel("times it is a negative (one epoch)")
    top = table.nlargest(max(1, len(table) // 100), "positives")
    share = top["negatives"].sum() / max(table["negatives"].sum(), 1e-12)
    ax.set_title(f"The top 1% of items take {share:.0%} of the in-batch negatives", fontsize=10)
    ax.legend(frameon=False, fontsize=8, loc="upper left")
    ax.grid(alpha=0.3, which="major")
    return ax


def frequency_estimates(data, *, batch_size: int = 1024, epochs: int = 1, alpha: float = 0.01, seed: int = 0,
                        n_buckets: int | None = None, n_hashes: int = 1) -> pd.DataFrame:
    """Run the streaming :class:`~recbook.sampled_softmax.FrequencyEstimator` over ``epochs``
    epochs of training batches (cut as :func:`recbook.train.fit` cuts them, one seeded permutation
    per epoch) and compare it with the counted rate.

    Returns one row per item code seen in training: ``code``, ``positives`` (its count),
    ``counted`` (``batch_size * count / N``, the expected number per batch) and ``estimated``.
    """
    from ..sampled_softmax import FrequencyEstimator

    _require_data(data)
    batch_size = require_positive_int(batch_size, name="batch_size")
    epochs = require_positive_int(epochs, name="epochs")
    items = data.train["item_id"]
    n_items = data.features.n_items
    est = FrequencyEstimator(n_items, alpha=alpha, n_buckets=n_buckets, n_hashes=n_hashes, seed=seed)
    g = torch.Generator().manual_seed(int(seed))
    for _ in range(epochs):
        order = torch.randperm(len(items), generator=g)
        for a in range(0, len(items), batch_size):
            est.update(items[order[a:a + batch_size]])
    counts = torch.bincount(items, minlength=n_items).to(torch.float64)
    seen = torch.nonzero(counts > 0).ravel()
    return pd.DataFrame({"code": seen.numpy(), "positives": counts[seen].numpy().astype(np.int64),
                         "counted": (batch_size * counts[seen] / len(items)).numpy(),
                         "estimated": est.rate(seen).numpy()})


def plot_frequency_estimates(table: pd.DataFrame, *, ax: Axes | None = None) -> Axes:
    """Estimated against counted items per batch, log-log, one dot per item, with the diagonal."""
    require_columns(table, ["counted", "estimated"], name="table")
    ax = _axes(ax, figsize=(5.0, 4.0))
    t = table[(table["counted"] > 0) & (table["estimated"] > 0)]
    ax.scatter(t["counted"], t["estimated"], s=8, alpha=0.5, color="#4C72B0")
    lo, hi = float(t[["counted", "estimated"]].min().min()), float(t[["counted", "estimated"]].max().max())
    ax.plot([lo, hi], [lo, hi], color="0.4", ls="--", lw=1, label="estimate = count")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("expected per batch, counted from the data")
    ax.set_ylabel("streaming estimate")
    ax.legend(frameon=False, fontsize=8)
    ax.grid(alpha=0.3)
    return ax


def popularity_bands(item_counts) -> np.ndarray:
    """The band (index into :data:`BANDS`) of every item code, from training counts.

    Items are sorted by count (ties by code); the head is the smallest set of most popular items
    holding a third of all training interactions, the torso the next third, the tail the rest
    (including items never seen in training). Reserved codes get -1.
    """
    counts = np.asarray(item_counts.cpu() if isinstance(item_counts, torch.Tensor) else item_counts, dtype=float)
    if counts.ndim != 1 or len(counts) <= N_RESERVED or (counts < 0).any() or counts.sum() <= 0:
        raise ValueError("item_counts: expected non-negative counts per item code with a positive sum")
    codes = np.arange(N_RESERVED, len(counts))
    order = codes[np.lexsort((codes, -counts[codes]))]
    before = np.r_[0, np.cumsum(counts[order])[:-1]] / counts.sum()  # share held by more popular items
    band = np.full(len(counts), -1, dtype=np.int64)
    band[order] = np.digitize(before, [1 / 3, 2 / 3])
    return band


def top_k_items(scores, exclude, k: int = 10) -> np.ndarray:
    """Each user's ``k`` best item codes ``[U, k]``, best first, with the user's ``exclude`` codes and
    the reserved codes removed (ties: lower code first)."""
    s = torch.as_tensor(np.asarray(scores) if not isinstance(scores, torch.Tensor) else scores).double().clone()
    if s.dim() != 2:
        raise ValueError(f"scores: expected a [U, n_items] matrix, got shape {tuple(s.shape)}")
    k = require_positive_int(k, name="k")
    if len(exclude) != s.shape[0]:
        raise ValueError(f"exclude: length {len(exclude)} does not match scores rows {s.shape[0]}")
    s[:, :N_RESERVED] = -np.inf
    for u, e in enumerate(exclude):
        s[u, torch.as_tensor(np.asarray(e, dtype=np.int64))] = -np.inf
    # stable sort on -score keeps lower codes first among equal scores
    return torch.sort(-s, dim=1, stable=True).indices[:, :k].numpy()


def popularity_breakdown(models: Mapping, data, *, split: str = "test", k: int = 50) -> pd.DataFrame:
    """Per model and popularity band: how many targets fall in the band, the model's Recall@k on
    them, and the share of all top-k slots (earlier items excluded) that go to items of the band.

    Returns columns ``model, band, targets, recall, slot_share``, plus one ``all`` row per model
    (its overall Recall@k, identical to :func:`recbook.retrieval.evaluate_retrieval`'s).
    """
    models = _require_models(models)
    _require_data(data)
    k = require_positive_int(k, name="k")
    sp = _split(data, split)
    band = popularity_bands(data.item_counts)
    targets = sp.targets.cpu().numpy()
    rows = []
    for name, model in models.items():
        scores = user_item_scores(model, sp)
        top = top_k_items(scores, sp.exclude, k)
        hit = (top == targets[:, None]).any(axis=1)
        slot_band = band[top]
        for b, label in enumerate(BANDS):
            in_band = band[targets] == b
            rows.append({"model": name, "band": label, "targets": int(in_band.sum()),
                         "recall": float(hit[in_band].mean()) if in_band.any() else float("nan"),
                         "slot_share": float((slot_band == b).mean())})
        rows.append({"model": name, "band": "all", "targets": len(targets), "recall": float(hit.mean()),
                     "slot_share": 1.0})
    return pd.DataFrame(rows)


def plot_popularity_breakdown(table: pd.DataFrame, *, axes=None) -> np.ndarray:
    """Two panels of grouped bars per band: Recall@k and share of the top-k slots, one bar per model,
    with the share of test targets in each band marked on the right panel."""
    require_columns(table, ["model", "band", "targets", "recall", "slot_share"], name="table")
    t = table[table["band"].isin(BANDS)]
    if axes is None:
        _, axes = plt.subplots(1, 2, figsize=(9.0, 3.6), layout="constrained")
    axes = np.asarray(axes, dtype=object).ravel()
    if len(axes) != 2:
        raise ValueError("axes: expected two matplotlib Axes or None")
    names = list(dict.fromkeys(t["model"]))
    width = 0.8 / max(len(names), 1)
    x = np.arange(len(BANDS))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, name in enumerate(names):
        m = t[t["model"] == name].set_index("band").reindex(BANDS)
        for ax, col in zip(axes, ("recall", "slot_share")):
            ax.bar(x + (i - (len(names) - 1) / 2) * width, m[col].to_numpy(), width, label=name,
                   color=colors[i % len(colors)])
    first = t[t["model"] == names[0]].set_index("band").reindex(BANDS)
    share = first["targets"] / first["targets"].sum()
    axes[1].scatter(x, share.to_numpy(), marker="_", s=600, color="black", zorder=3, label="share of targets")
    for ax, title in zip(axes, ("Recall by band of the target", "Share of the top-K slots")):
        ax.set_xticks(x, BANDS)
        ax.yaxis.set_major_formatter(PercentFormatter(1.0))
        ax.set_title(title, fontsize=10)
        ax.grid(axis="y", alpha=0.3)
    axes[1].legend(frameon=False, fontsize=8)
    return axes


# --------------------------------------------------------------------------------------------
# Temperature
# --------------------------------------------------------------------------------------------

def temperature_sweep(data, temperatures: Sequence[float], *, seeds: Sequence[int] = (0,), metric: str = "recall@50",
                      progress: bool = False, **settings) -> pd.DataFrame:
    """Train one model per temperature and seed (:func:`recbook.retrieval.train_two_tower` with
    ``settings``); return ``temperature, seed, best_epoch, cpu_s_per_epoch``, ``valid_<metric>``
    (at the best epoch) and ``test_<metric>``."""
    _require_data(data)
    temps = [float(t) for t in temperatures]
    if not temps or any(t <= 0 for t in temps):
        raise ValueError(f"temperatures: expected positive numbers, got {list(temperatures)!r}")
    if "temperature" in settings:
        raise ValueError("settings: pass the temperatures in `temperatures`, not `temperature`")
    rows = []
    for t in temps:
        for seed in seeds:
            model, res = train_two_tower(data, seed=int(seed), temperature=t, metric=metric, **settings)
            test = evaluate_retrieval(model, data.test)
            rows.append({"temperature": t, "seed": int(seed), "best_epoch": res.best_epoch,
                         "cpu_s_per_epoch": float(res.history["cpu_seconds"].mean()),
                         f"valid_{metric}": res.best_score, f"test_{metric}": test[metric]})
            if progress:
                print(f"temperature {t:g} seed {seed}: valid {res.best_score:.4f} test {test[metric]:.4f}", flush=True)
    return pd.DataFrame(rows)


def plot_temperature_sweep(table: pd.DataFrame, metric: str = "recall@50", *, by: str | None = None,
                           ax: Axes | None = None) -> Axes:
    """Validation and test ``metric`` against the temperature (log axis), mean over seeds with the
    seeds' range shaded; one pair of lines per value of column ``by`` (e.g. the correction)."""
    require_columns(table, ["temperature", f"valid_{metric}", f"test_{metric}"], name="table")
    ax = _axes(ax, figsize=(6.0, 3.8))
    groups = [(None, table)] if by is None else list(table.groupby(by, sort=False))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, (key, g) in enumerate(groups):
        for split, ls in (("valid", "--"), ("test", "-")):
            col = f"{split}_{metric}"
            s = g.groupby("temperature")[col].agg(["mean", "min", "max"]).sort_index()
            label = split if key is None else f"{key}, {split}"
            ax.plot(s.index, s["mean"], ls=ls, marker="o", color=colors[i % len(colors)], label=label)
            ax.fill_between(s.index, s["min"], s["max"], color=colors[i % len(colors)], alpha=0.12)
    ax.set_xscale("log")
    ax.set_xlabel("temperature τ (log scale)")
    ax.set_ylabel(metric.replace("recall", "Recall"))
    ax.legend(frameon=False, fontsize=8)
    ax.grid(alpha=0.3)
    return ax


# --------------------------------------------------------------------------------------------
# What the models retrieve, for a handful of users
# --------------------------------------------------------------------------------------------

def retrieval_table(models: Mapping, data, users: Sequence[int], *, k: int = 10, history: int = 5,
                    split: str = "test") -> pd.DataFrame:
    """The recent history and each model's top-``k`` for a few users, as one long table.

    Args:
        models: ``{setting label: model}``, e.g. ``{"logQ on, τ=0.1": m1, "logQ off, τ=0.1": m2}``.
        users: raw user ids.
        history: how many of the most recent earlier items to list.

    Returns columns ``user, list, position, code, title, genres, is_target``: ``list`` is
    ``"history"`` (position 1 = the most recent) or a model's label (position 1 = its best item).
    """
    models = _require_models(models)
    _require_data(data)
    sp = _split(data, split)
    k = require_positive_int(k, name="k")
    history = require_positive_int(history, name="history")
    codes = sp.users["user_id"].numpy()
    want = data.features.user_codes(list(users))
    rows_of = []
    for u, c in zip(users, want):
        where = np.flatnonzero(codes == c)
        if not len(where):
            raise ValueError(f"users: user {u} has no row in the {split} split")
        rows_of.append(int(where[0]))
    feats = data.features
    out = []

    def add(user, lst, pos, code, target):
        out.append({"user": int(user), "list": lst, "position": pos, "code": int(code), "title": feats.titles[code],
                    "genres": feats.item_genres[code], "is_target": bool(code == target)})

    targets = sp.targets.numpy()
    for u, r in zip(users, rows_of):
        hist = sp.users["hist_item"][r].numpy()
        hist = hist[hist != PAD][::-1][:history]
        for i, code in enumerate(hist, 1):
            add(u, "history", i, code, targets[r])
    for name, model in models.items():
        sub = _Rows(sp, rows_of)
        top = top_k_items(user_item_scores(model, sub), [sp.exclude[r] for r in rows_of], k)
        for u, r, row in zip(users, rows_of, top):
            for i, code in enumerate(row, 1):
                add(u, name, i, code, targets[r])
    return pd.DataFrame(out)


class _Rows:
    """A few rows of a split, in the shape :func:`recbook.retrieval.user_item_scores` reads."""

    def __init__(self, split, rows):
        self.users = split.users.subset(torch.as_tensor(rows))


def _user_html(table: pd.DataFrame, user: int) -> str:
    t = table[table["user"] == user]
    lists = list(dict.fromkeys(t["list"]))

    def cell(r):
        title = html.escape(str(r["title"]))
        genres = html.escape(str(r["genres"]).replace("|", ", "))
        style = ' style="background:#d9f2e6;font-weight:bold"' if r["is_target"] else ""
        return f'<td{style}>{title}<br><span style="color:#777;font-size:85%">{genres}</span></td>'

    hist = t[t["list"] == "history"]
    parts = [f"<p><b>User {user}</b>: most recent first — "
             + "; ".join(html.escape(str(x)) for x in hist["title"]) + "</p>"]
    cols = [c for c in lists if c != "history"]
    depth = int(t[t["list"].isin(cols)]["position"].max()) if cols else 0
    head = "".join(f"<th>{html.escape(c)}</th>" for c in cols)
    body = []
    for p in range(1, depth + 1):
        cells = []
        for c in cols:
            r = t[(t["list"] == c) & (t["position"] == p)]
            cells.append(cell(r.iloc[0]) if len(r) else "<td></td>")
        body.append(f"<tr><td>{p}</td>{''.join(cells)}</tr>")
    parts.append('<table style="font-size:85%;border-collapse:collapse"><tr><th>#</th>' + head + "</tr>"
                 + "".join(body) + "</table>")
    parts.append('<p style="font-size:85%;color:#555">Green: the held-out item the user watched next.</p>')
    return "".join(parts)


def retrieval_widget(table: pd.DataFrame) -> widgets.VBox:
    """A dropdown of the users of :func:`retrieval_table`'s ``table``; each shows the history and
    every model's top-K side by side (precomputed HTML: it works on the website without a kernel)."""
    require_columns(table, ["user", "list", "position", "title", "genres", "is_target"], name="table")
    users = list(dict.fromkeys(int(u) for u in table["user"]))
    return precomputed_slider(lambda u: _user_html(table, int(u)), users, "user", control="dropdown")

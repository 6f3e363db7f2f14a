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
* :func:`sweep_entries` / :func:`run_temperature_sweep` / :func:`selected_temperatures`: the
  leaderboard's two entries at five temperatures, trained as the leaderboard trains them, their rows
  committed to ``book/results/twotower_temperature.csv``.
* :func:`user_retrieval_chart`: pick a user; their history and the top ten of the model with logQ
  on or off, with softmax probabilities at a chosen temperature, computed in the browser from the
  models' cosines (each offered user's top ten and the softmax's normaliser per temperature).
* :func:`top_k_items`: each user's top-K items with the user's earlier items removed.
* :func:`retrieval_results` / :func:`results_chart`: the leaderboard's three retrieval entries,
  metric and K chosen in the browser; :func:`ann_summary` / :func:`ann_chart`: the committed
  vector-search benchmark, recall against query time per catalogue size.
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

from . import BOOK_RESULTS
from .._checks import require_columns, require_positive_int
from ..data.features import N_RESERVED, PAD
from ..data.titles import display_titles
from ..plots import axes_or_new as _axes
from ..retrieval import evaluate_retrieval, train_two_tower, user_item_scores
from ..widgets import decode_digits, encode_digits, precomputed_slider

__all__ = [
    "BANDS", "RETRIEVAL_MODELS", "ann_chart", "ann_summary", "frequency_estimates", "negative_exposure",
    "plot_frequency_estimates", "plot_negative_exposure", "plot_popularity_breakdown", "plot_temperature_sweep",
    "popularity_bands", "popularity_breakdown", "results_chart", "retrieval_results", "retrieval_table",
    "retrieval_widget", "decode_vectors", "encode_vectors", "user_retrieval_chart", "run_temperature_sweep", "selected_temperatures", "sweep_entries", "temperature_sweep",
    "top_k_items", "SWEEP_FILE", "TEMPERATURES", "temperature_mass",
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


TEMPERATURES = (0.05, 0.1, 0.2, 0.5, 1.0)
"""The temperatures of the chapter's sweep (:func:`sweep_entries`)."""
SWEEP_FILE = "twotower_temperature.csv"
"""The sweep's rows in ``book/results/``, written by :func:`run_temperature_sweep`."""


def sweep_entries(temperatures: Sequence[float] = TEMPERATURES) -> list:
    """The leaderboard's ``TwoTower`` (logQ off) and ``TwoTower-logQ`` (on) entries, each at every
    temperature of ``temperatures`` and otherwise unchanged, as :class:`recbook.bench.Entry` objects
    named ``TwoTower-t<τ>`` / ``TwoTower-logQ-t<τ>``; **not** registered on the leaderboard (they are
    the chapter's evidence). Their rows carry fingerprints, so a change of settings shows."""
    from dataclasses import replace

    from ..bench import REGISTRY

    temps = [float(t) for t in temperatures]
    if not temps or any(not np.isfinite(t) or t <= 0 for t in temps) or len(set(temps)) != len(temps):
        raise ValueError(f"temperatures: expected distinct positive numbers, got {list(temperatures)!r}")
    out = []
    for base in ("TwoTower", "TwoTower-logQ"):
        entry = REGISTRY[base]
        for t in temps:
            out.append(replace(entry, name=f"{base}-t{t:g}", params=dict(entry.params, temperature=t),
                               description=f"{entry.name} at temperature {t:g}"))
    return out


def run_temperature_sweep(path=None, temperatures: Sequence[float] = TEMPERATURES, seeds: Sequence[int] = (0,), *,
                          threads: int = 1, progress: bool = False) -> pd.DataFrame:
    """Train every entry of :func:`sweep_entries` with ``seeds`` as the leaderboard does
    (:func:`recbook.bench.run_one`: early stopping on validation Recall@50, then the test split) and
    write the rows, with ``temperature`` and ``logq`` columns, to ``path`` (default: the repository's
    ``book/results/twotower_temperature.csv``). Ten runs of one to two minutes with one thread::

        python -c "from recbook.chapters import twotower; twotower.run_temperature_sweep(progress=True)"
    """
    from pathlib import Path

    from ..bench import load_protocol, run_one

    entries = sweep_entries(temperatures)
    seeds = [int(s) for s in seeds]
    if not seeds:
        raise ValueError("seeds: expected at least one seed")
    path = Path(path) if path is not None else BOOK_RESULTS / SWEEP_FILE
    data = load_protocol("retrieval")
    rows = []
    for e in entries:
        for s in seeds:
            row = run_one(e, data, s, threads=threads, quick=False, progress=False)
            row["temperature"] = float(e.params["temperature"])
            row["logq"] = e.params.get("correction") is not None
            rows.append(row)
            if progress:
                print(f"{e.name} seed {s}: valid {row['valid_recall@50']:.4f} test {row['test_recall@50']:.4f}",
                      flush=True)
    out = pd.DataFrame(rows)
    from ..bench import write_table

    write_table(out, path)  # whole or not at all, locked, keeping the mode
    return out


def selected_temperatures(table: pd.DataFrame, metric: str = "recall@50") -> dict:
    """The temperature with the best mean validation ``metric`` per setting of the correction:
    ``{False: τ without logQ, True: τ with logQ}`` (ties: the lower temperature)."""
    require_columns(table, ["temperature", "logq", f"valid_{metric}"], name="table")
    out = {}
    for logq, g in table.groupby("logq"):
        m = g.groupby("temperature")[f"valid_{metric}"].mean().sort_index()
        out[bool(logq)] = float(m.index[int(np.argmax(m.to_numpy()))])
    return out


def plot_temperature_sweep(table: pd.DataFrame, metric: str = "recall@50", *, by: str | None = None,
                           labels: Mapping | None = None, ax: Axes | None = None) -> Axes:
    """Validation (solid) and test (lighter, dashed) ``metric`` against the temperature (log axis),
    mean over seeds with the seeds' range shaded; one pair of lines per value of column ``by``
    (e.g. ``"logq"``, named by ``labels``), the best validation point of each circled."""
    require_columns(table, ["temperature", f"valid_{metric}", f"test_{metric}"], name="table")
    ax = _axes(ax, figsize=(6.0, 3.8))
    groups = [(None, table)] if by is None else list(table.groupby(by, sort=False))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    nice = metric.replace("recall", "Recall").replace("ndcg", "NDCG")
    for i, (key, g) in enumerate(groups):
        color = colors[i % len(colors)]
        name = "" if key is None else f"{(labels or {}).get(key, key)}, "
        for split, ls, alpha in (("valid", "-", 1.0), ("test", "--", 0.35)):
            s = g.groupby("temperature")[f"{split}_{metric}"].agg(["mean", "min", "max"]).sort_index()
            ax.plot(s.index, s["mean"], ls=ls, marker="o", color=color, alpha=alpha,
                    label=f"{name}{'validation' if split == 'valid' else 'test'}")
            if (s["max"] > s["min"]).any():
                ax.fill_between(s.index, s["min"], s["max"], color=color, alpha=0.12 * alpha)
            if split == "valid":
                best = s["mean"].idxmax()
                ax.scatter([best], [s["mean"][best]], s=160, facecolors="none", edgecolors=color, lw=1.5, zorder=3)
    ax.set_xscale("log")
    ax.set_xticks(sorted(table["temperature"].unique()), [f"{t:g}" for t in sorted(table["temperature"].unique())])
    ax.minorticks_off()
    ax.set_xlabel("temperature τ (log scale; circle: best on validation)")
    ax.set_ylabel(nice)
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


# --------------------------------------------------------------------------------------------
# Results read from the committed files, as charts that compute in the browser
# --------------------------------------------------------------------------------------------

RETRIEVAL_MODELS = ("Pop-retrieval", "ItemKNN-retrieval", "TwoTower", "TwoTower-logQ")
"""The chapter's leaderboard entries (protocol ``retrieval``), in the order the chapter shows them."""


def retrieval_results(results: pd.DataFrame, models: Sequence[str] = RETRIEVAL_MODELS) -> pd.DataFrame:
    """The leaderboard's test metrics of ``models`` as a long table: ``model, seed, metric, k,
    value`` (``metric`` is ``"recall"`` or ``"ndcg"``), from ``book/results/bench.csv``."""
    require_columns(results, ["model", "protocol", "seed"], name="results")
    rows = results[(results["protocol"] == "retrieval") & results["model"].isin(models)]
    missing = [m for m in models if m not in set(rows["model"])]
    if missing:
        raise ValueError(f"results: no 'retrieval' rows of model(s) {missing}; run "
                         f"`python -m recbook.bench --models {','.join(models)}`")
    cols = [c for c in rows.columns if c.startswith(("test_recall@", "test_ndcg@"))]
    long = rows.melt(id_vars=["model", "seed"], value_vars=cols, var_name="column", value_name="value")
    long = long.dropna(subset=["value"])
    name = long["column"].str.removeprefix("test_").str.split("@")
    long["metric"], long["k"] = name.str[0], name.str[1].astype(int)
    order = {m: i for i, m in enumerate(models)}
    long = long.sort_values(["metric", "k", "model", "seed"], key=lambda s: s.map(order) if s.name == "model" else s)
    return long[["model", "seed", "metric", "k", "value"]].reset_index(drop=True)


def results_chart(long: pd.DataFrame):
    """Mean test metric per model (bars, value printed) and each seed (dots); dropdowns choose the
    metric and K. Computed in the browser from the rows of :func:`retrieval_results`."""
    import altair as alt

    from .. import widgets

    require_columns(long, ["model", "seed", "metric", "k", "value"], name="long")
    models = list(dict.fromkeys(long["model"]))
    table = widgets.CsvData(long, name="retrieval_results", decimals={"value": 5})
    metric = widgets.dropdown("metric", ["recall", "ndcg"], "recall", labels=["Recall@K", "NDCG@K"], label="metric")
    ks = sorted(long["k"].unique().tolist())
    k = widgets.dropdown("k", ks, 50 if 50 in ks else ks[0], label="K")
    base = alt.Chart(table.ref).transform_filter("datum.metric == metric && datum.k == k")
    x = alt.X("model:N", sort=models, title=None, axis=alt.Axis(labelAngle=0))
    mean = base.transform_aggregate(mean="mean(value)", groupby=["model"])
    bars = mean.mark_bar(color="#4C72B0", opacity=0.6).encode(
        x=x, y=alt.Y("mean:Q", title="test value (mean of 3 seeds)", scale=alt.Scale(domain=[0, 0.8])))
    labels = mean.transform_calculate(label="format(datum.mean, '.3f')").mark_text(dy=-8, fontSize=12).encode(
        x=x, y="mean:Q", text="label:N")
    dots = base.mark_circle(color="black", size=30).encode(x=x, y="value:Q", tooltip=["model:N", "seed:O", "value:Q"])
    chart = (bars + dots + labels).properties(width=420, height=260)
    checks = []
    for m, kk in (("recall", 50), ("ndcg", 10)):
        if kk in ks:
            g = long[(long["metric"] == m) & (long["k"] == kk)].groupby("model", sort=False)["value"].mean()
            checks.append({"set": {"metric": m, "k": kk}, "texts": [f"{g[name]:.3f}" for name in models]})
    return widgets.browser_chart(chart, params=[metric, k], data=[table], checks=checks)


def ann_summary(table: pd.DataFrame, *, target: float = 0.99) -> pd.DataFrame:
    """Per data set size and approximate method, the fastest setting whose recall@100 reaches
    ``target`` (``ann_bench.csv`` rows): ``n, method, param_name, param, recall, query_s, speedup,
    build_s``; a method that never reaches it is absent."""
    require_columns(table, ["n", "method", "param_name", "param", "recall", "query_s", "speedup", "build_s"],
                    name="table")
    ok = table[~table["method"].isin(["exact", "flat"]) & (table["recall"] >= target)]
    best = ok.sort_values("query_s").groupby(["n", "method"], sort=True).head(1)
    return best.sort_values(["n", "method"])[["n", "method", "param_name", "param", "recall", "query_s",
                                              "speedup", "build_s"]].reset_index(drop=True)


def ann_chart(table: pd.DataFrame, *, target: float = 0.99):
    """Recall@100 against the CPU time of 1,000 queries (one thread, log scale) for IVF (each
    ``nprobe``) and HNSW (each ``ef_search``), exact search as a vertical rule; a dropdown picks
    the number of items. The title line, computed in the browser, names the fastest setting of
    each method with recall ``>= target``."""
    import altair as alt

    from .. import widgets

    require_columns(table, ["dataset", "n", "method", "param", "recall", "query_s", "speedup"], name="table")
    rows = table[table["dataset"] == "clustered"][["n", "method", "param", "recall", "query_s", "speedup"]]
    rows = rows.assign(param=rows["param"].astype(str))
    data = widgets.CsvData(rows, name="ann_rows", decimals={"recall": 4, "query_s": 4, "speedup": 2})
    sizes = sorted(rows["n"].unique().tolist())
    n = widgets.dropdown("n", sizes, sizes[-1], labels=[f"{s:,}" for s in sizes], label="items")
    base = alt.Chart(data.ref).transform_filter("datum.n == n")
    approx = base.transform_filter("datum.method == 'ivf' || datum.method == 'hnsw'")
    lines = approx.mark_line(point=True).encode(
        x=alt.X("query_s:Q", scale=alt.Scale(type="log"), title="CPU seconds for 1,000 queries (one thread)",
                axis=alt.Axis(values=[0.01, 0.1, 1, 10, 100], format="~g")),
        y=alt.Y("recall:Q", scale=alt.Scale(domain=[0.5, 1]), title="recall@100 against exact search"),
        color=alt.Color("method:N", title="index"), order="query_s:Q",
        tooltip=["method:N", "param:N", "recall:Q", "query_s:Q", "speedup:Q"])
    exact_rows = base.transform_filter("datum.method == 'exact'")
    exact = exact_rows.mark_rule(color="gray", strokeDash=[4, 3]).encode(x="query_s:Q") + \
        exact_rows.mark_text(align="right", dx=-4, dy=-6, color="gray", fontSize=12).encode(
            x="query_s:Q", y=alt.value(12), text=alt.value("exact search"))
    best = (approx.transform_filter(f"datum.recall >= {target}")
            .transform_aggregate(speedup="max(speedup)", groupby=["method"])
            .transform_calculate(label=f"datum.method + ': ' + format(datum.speedup, '.0f') + '× faster than exact at recall ≥ {target}'")
            .transform_window(row="row_number()", sort=[alt.SortField("method")])
            .mark_text(align="left", fontSize=12).encode(
                x=alt.value(5), y=alt.Y("row:Q", scale=alt.Scale(domain=[0, 6]), axis=None), text="label:N"))
    chart = alt.vconcat(best.properties(width=480, height=40), (lines + exact).properties(width=480, height=260))
    checks = []
    for size in sizes:
        s = ann_summary(table[table["dataset"] == "clustered"], target=target)
        s = s[s["n"] == size]
        speed = table[(table["dataset"] == "clustered") & (table["n"] == size)
                      & table["method"].isin(["ivf", "hnsw"]) & (table["recall"] >= target)]
        speed = speed.groupby("method")["speedup"].max().round(2)
        if len(s):
            checks.append({"set": {"n": int(size)}, "texts": [
                f"{m}: {v:.0f}× faster than exact at recall ≥ {target}" for m, v in speed.items()]})
    return widgets.browser_chart(chart, params=[n], data=[data], checks=checks)



# --------------------------------------------------------------------------------------------
# Pick a user: retrieval computed in the browser from the models' vectors
# --------------------------------------------------------------------------------------------

VECTOR_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
"""The 52 letters that write one vector component as two characters (no digits: the browser's
CSV reader must never mistake a vector for a number)."""
_BASE = len(VECTOR_ALPHABET)
_OFFSET = _BASE * _BASE // 2          # 1352: component 0 is written "aA"
VECTOR_SCALE = 1000
COS_SCALE = 10_000
""":func:`user_retrieval_chart` ships cosines as integers in units of ``1 / COS_SCALE``."""
"""Components are rounded to multiples of 1/1000 (three decimals) before they are written."""


def encode_vectors(vectors) -> list[str]:
    """Each row of ``vectors`` ``[N, D]`` as a string of ``2 D`` letters: component ``x`` is rounded
    to ``q = round(1000 x)``, shifted to ``q + 1352`` and written in base 52 with
    :data:`VECTOR_ALPHABET` (high digit first). Components must lie in ``[-1.352, 1.351]`` (unit
    vectors do)."""
    x = np.asarray(vectors.detach().cpu() if isinstance(vectors, torch.Tensor) else vectors, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] == 0 or not np.isfinite(x).all():
        raise ValueError(f"vectors: expected a finite [N, D] matrix, got shape {x.shape}")
    q = np.rint(x * VECTOR_SCALE).astype(np.int64) + _OFFSET
    if q.min() < 0 or q.max() >= _BASE * _BASE:
        raise ValueError(f"vectors: components must lie in [{-_OFFSET / VECTOR_SCALE}, "
                         f"{(_BASE * _BASE - 1 - _OFFSET) / VECTOR_SCALE}], got {x.min():.3f} .. {x.max():.3f}")
    return encode_digits(q, 2, VECTOR_ALPHABET)


def decode_vectors(strings: Sequence[str]) -> np.ndarray:
    """The inverse of :func:`encode_vectors` (up to its rounding): ``[N, D]`` floats."""
    try:
        codes = decode_digits(strings, 2, VECTOR_ALPHABET)
    except ValueError as err:
        raise ValueError(f"strings: not vectors written by encode_vectors ({err})") from None
    return (codes - _OFFSET).astype(np.float64) / VECTOR_SCALE


def _dot_expr(a: str, b: str, dim: int) -> str:
    """A Vega expression for the dot product of the vectors written in fields ``a`` and ``b``."""
    alpha = f"'{VECTOR_ALPHABET}'"

    def comp(f, d):
        return (f"(indexof({alpha}, substring(datum.{f}, {2 * d}, {2 * d + 1})) * {_BASE} + "
                f"indexof({alpha}, substring(datum.{f}, {2 * d + 1}, {2 * d + 2})) - {_OFFSET})")
    terms = " + ".join(f"{comp(a, d)} * {comp(b, d)}" for d in range(dim))
    return f"({terms}) / {VECTOR_SCALE * VECTOR_SCALE}"


def _catalogue_titles(data) -> np.ndarray:
    """One distinct title per item code of ``data.catalogue`` (:func:`recbook.data.display_titles`;
    reserved codes: ``"<pad>"``, ``"<unk>"``)."""
    frame = data.catalogue.frame
    titles = frame["title"].astype(object).to_numpy().copy()
    real = np.arange(len(frame)) >= N_RESERVED   # codes 0, 1 are reserved
    titles[real] = display_titles(frame.iloc[N_RESERVED:][["item_id", "title"]]).to_numpy()
    titles[~real] = ["<pad>", "<unk>"][: int((~real).sum())]
    return titles.astype(str)


def _model_vectors(model, data, rows: np.ndarray):
    """Unit user vectors of ``data.users[rows]`` before their test target, and every item's vector
    (codes from 2), as float64 arrays."""
    with torch.no_grad():
        was = model.training
        model.eval()
        users = model.user_vectors({
            "user_id": torch.from_numpy(model.features.user_codes(data.users[rows]).astype("int64")),
            "hist_item": torch.from_numpy(data.padded(model.history_len, split="test")[rows])})
        items = model.item_vectors()[N_RESERVED:]
        model.train(was)
    return users.double().numpy(), items.double().numpy()


def _softmax_top(cos: np.ndarray, seen, k: int, tau: float):
    """Top-``k`` codes of one user's cosines (reserved and ``seen`` codes removed; ties: lower
    code first) and their softmax probabilities at temperature ``tau`` over all unseen items."""
    s = np.asarray(cos, dtype=np.float64).copy()
    s[:N_RESERVED] = -np.inf
    s[np.asarray(seen, dtype=np.int64)] = -np.inf
    order = np.lexsort((np.arange(len(s)), -s))[:k]
    ok = np.isfinite(s)
    z = s[ok] / tau
    p = np.exp(s[order] / tau - z.max()) / np.exp(z - z.max()).sum()
    return order, p


def temperature_mass(models: Mapping, data, users: Sequence[int], temperatures: Sequence[float] = (0.05, 0.1, 1.0),
                     *, k: int = 10) -> pd.DataFrame:
    """How much of the softmax the top of the list holds, per temperature: for each model (logQ
    on, off), user and ``tau``, the probability of the top movie (``top 1``) and of the top ``k``
    together (``top k``), over the user's unseen movies, as :func:`user_retrieval_chart` computes
    it in the browser. Returns one row per (logq, tau) with the smallest and largest value over
    ``users`` and ``uniform``, the share ``k`` movies would hold if every unseen movie were equally
    likely (the mean over users)."""
    if not isinstance(models, Mapping) or set(models) != {True, False}:
        raise ValueError("models: expected {True: model with logQ, False: model without}")
    k = require_positive_int(k, name="k")
    pos = {int(u): i for i, u in enumerate(data.users)}
    missing = [int(u) for u in users if int(u) not in pos]
    if not len(users) or missing:
        raise ValueError(f"users: expected raw user ids of data.users, got unknown {missing or list(users)}")
    taus = [float(t) for t in temperatures]
    if not taus or min(taus) <= 0:
        raise ValueError(f"temperatures: expected positive temperatures, got {temperatures!r}")
    rows = np.array([pos[int(u)] for u in users])
    seen = data.seen("test")
    n_unseen = np.array([data.n_items - N_RESERVED - len(np.unique(seen[r])) for r in rows])
    out = []
    for on in (True, False):
        uvec, ivec = _model_vectors(models[on], data, rows)
        for tau in taus:
            p1, pk = [], []
            for i, r in enumerate(rows):
                _, p = _softmax_top(np.r_[np.zeros(N_RESERVED), ivec @ uvec[i]], seen[r], k, tau)
                p1.append(p[0])
                pk.append(p.sum())
            out.append({"logq": on, "tau": tau, "top 1 min": min(p1), "top 1 max": max(p1),
                        f"top {k} min": min(pk), f"top {k} max": max(pk),
                        "uniform": float(np.mean(k / n_unseen))})
    return pd.DataFrame(out)


def user_retrieval_chart(models: Mapping, data, users: Sequence[int], *, k: int = 10, history: int = 5,
                         temperatures: Sequence[float] = (0.05, 1.0), n_checks: int = 4):
    """Pick a user; see their most recent movies and the top-``k`` unseen movies of the model with
    logQ on or off, with each movie's softmax probability at a temperature chosen with a slider.
    The page carries, for each offered user and both models, the ``k`` unseen movies with the
    highest cosine (four decimals, from the float vectors; the order does not depend on the
    temperature) and, for every temperature of the slider, ``log Σ exp(cos / τ)`` over all the
    user's unseen movies; the browser computes each movie's probability ``exp(cos / τ − log Σ)``
    and the share of the ``k``. Data ``tt_top`` (user, logq, rank, code, title, genres, cos in
    units of ``1 / COS_SCALE``) and ``tt_lse`` (key ``"user|logq|τ"``, lse).

    Args:
        models: ``{True: model trained with logQ, False: without}``, two-tower models with the
            same output dimension.
        data: :func:`recbook.data.sequence_protocol`'s data; the user's items before the test
            target are their history and are excluded from the candidates, as in the protocol.
        users: raw user ids offered in the dropdown.
        temperatures: the slider's ends (its step is 0.05); the checks use both ends, which
            proves the ranking does not move with the inference temperature.

    The probability axis is fixed (from 0 to the largest top-movie probability any offered user
    and model reach at the lowest temperature), so the bars shrink as ``tau`` grows; a line above
    the list gives the share of the probability the ``k`` movies hold together.

    Returns a :class:`recbook.widgets.BrowserChart` whose ``checks`` (texts computed from the
    float vectors in PyTorch) are the browser test's evidence.
    """
    import altair as alt

    from .. import widgets as W

    if not isinstance(models, Mapping) or set(models) != {True, False}:
        raise ValueError("models: expected {True: model with logQ, False: model without}")
    for key, m in models.items():
        if not (hasattr(m, "user_vectors") and hasattr(m, "item_vectors")):
            raise ValueError(f"models[{key}]: expected a two-tower model, got {type(m).__name__}")
    if not hasattr(data, "seen") or getattr(data, "catalogue", None) is None:
        raise ValueError("data: expected recbook.data.sequence_protocol(...)'s data")
    k = require_positive_int(k, name="k")
    history = require_positive_int(history, name="history")
    users = [int(u) for u in users]
    pos = {int(u): i for i, u in enumerate(data.users)}
    missing = [u for u in users if u not in pos]
    if not users or missing:
        raise ValueError(f"users: expected raw user ids of data.users, got unknown {missing or users}")
    lo, hi = (float(t) for t in temperatures)
    if not 0 < lo < hi:
        raise ValueError(f"temperatures: expected (low, high) with 0 < low < high, got {temperatures!r}")
    rows = np.array([pos[u] for u in users])
    frame = data.catalogue.frame
    titles = _catalogue_titles(data)
    genres = np.array([", ".join(g) for g in frame["genres"]], dtype=object)
    seen = [np.asarray(data.seen("test")[r], dtype=np.int64) for r in rows]

    vec = {key: _model_vectors(m, data, rows) for key, m in models.items()}
    dims = {v[0].shape[1] for v in vec.values()}
    if len(dims) != 1:
        raise ValueError(f"models: expected the same output dimension, got {sorted(dims)}")
    # Precomputed for what the controls reach (dot products over every movie in Vega took several
    # hundred ms a change): each offered user's cosines with every movie, for both models, rounded
    # to 1 / COS_SCALE; from them the top k unseen movies (the order does not depend on tau) and,
    # for every temperature of the slider, log Σ exp(cos / tau) over the unseen movies. The browser
    # computes each shown movie's probability exp(cos / tau − log Σ) and the share of the k.
    cos_units = {(i, on): np.rint(vec[on][1] @ vec[on][0][i] * COS_SCALE).astype(np.int64)
                 for i in range(len(users)) for on in (True, False)}
    taus = np.round(np.arange(lo, hi + 1e-9, 0.05), 2)
    # the probability axis: fixed, up to the largest top-movie probability at the lowest temperature
    p_max = max(_softmax_top(np.r_[np.zeros(N_RESERVED), vec[on][1] @ vec[on][0][i]], seen[i], 1, lo)[1][0]
                for on in (True, False) for i in range(len(users)))
    p_axis = float(np.ceil(p_max * 20) / 20)
    top_rows, lse_rows = [], []
    for i, u in enumerate(users):
        for on in (True, False):
            q = np.r_[np.zeros(N_RESERVED), cos_units[i, on] / COS_SCALE]
            q[:N_RESERVED] = -np.inf
            q[seen[i]] = -np.inf
            order = np.lexsort((np.arange(len(q)), -q))[:k]      # ties: lower code first
            for r, c in enumerate(order, 1):
                top_rows.append({"user": u, "logq": int(on), "rank": r, "code": int(c), "title": titles[c],
                                 "genres": genres[c], "cos": int(cos_units[i, on][c - N_RESERVED])})
            unseen = q[np.isfinite(q)]
            for t in taus:
                z = unseen / t
                lse_rows.append({"key": f"{u}|{int(on)}|{t:.2f}",
                                 "lse": round(float(z.max() + np.log(np.exp(z - z.max()).sum())), 6)})
    hist_rows = []
    for u, s in zip(users, seen):
        for i, c in enumerate(s[::-1][:history], 1):
            hist_rows.append({"user": u, "position": i, "label": f"{titles[c]} ({genres[c]})"})
    top_d = W.CsvData(pd.DataFrame(top_rows), name="tt_top")
    lse_d = W.CsvData(pd.DataFrame(lse_rows), name="tt_lse")
    hist_d = W.CsvData(pd.DataFrame(hist_rows), name="tt_history")

    user = W.dropdown("user", users, users[0], labels=[f"user {u}" for u in users], label="user")
    logq = W.checkbox("logq", True, label="logQ correction")
    tau = W.slider("tau", lo, hi, 0.05, 0.1 if lo <= 0.1 <= hi else lo, label="temperature τ")

    recent = (alt.Chart(hist_d.ref, title=alt.Title("Most recent movies (latest first)", fontSize=12))
              .transform_filter("datum.user == user")
              .mark_text(align="left", fontSize=12)
              .encode(x=alt.value(0), y=alt.Y("position:O", axis=None), text="label:N")
              .properties(width=560, height=18 * history))
    base = (alt.Chart(top_d.ref)
            .transform_filter("toNumber(datum.user) == user && toNumber(datum.logq) == (logq ? 1 : 0)")
            .transform_calculate(key="user + '|' + (logq ? 1 : 0) + '|' + format(tau, '.2f')")
            .transform_lookup(lookup="key", from_=alt.LookupData(lse_d.ref, key="key", fields=["lse"]))
            .transform_calculate(p=f"exp(toNumber(datum.cos) / {COS_SCALE} / tau - toNumber(datum.lse))",
                                 rank="toNumber(datum.rank)")
            .transform_joinaggregate(mass="sum(p)")
            .transform_calculate(label="datum.rank + '. ' + datum.title", pct="format(datum.p, '.1%')"))
    y = alt.Y("rank:O", axis=None)
    mass = (base.transform_filter("datum.rank == 1")
            .transform_calculate(text=f"'The {k} movies below hold ' + format(datum.mass, '.1%') + "
                                      f"' of the probability at τ = ' + format(tau, '.2f')")
            .mark_text(align="left", fontSize=12, fontWeight="bold")
            .encode(x=alt.value(0), y=alt.value(8), text="text:N").properties(width=560, height=16))
    names = base.mark_text(align="left", fontSize=12).encode(x=alt.value(0), y=y, text="label:N")
    kinds = base.mark_text(align="left", fontSize=11, color="#777").encode(x=alt.value(0), y=y, text="genres:N")
    bars = base.mark_bar(color="#4C72B0", opacity=0.7).encode(
        x=alt.X("p:Q", title="softmax probability", scale=alt.Scale(domain=[0, p_axis], clamp=True),
                axis=alt.Axis(format="%", tickCount=4)), y=y)
    pct = base.mark_text(align="left", dx=3, fontSize=11).encode(x="p:Q", y=y, text="pct:N")
    top = alt.hconcat(names.properties(width=250, height=20 * k, title=alt.Title(f"Top {k} unseen movies", fontSize=12)),
                      kinds.properties(width=170, height=20 * k), (bars + pct).properties(width=140, height=20 * k),
                      spacing=5)
    chart = alt.vconcat(recent, mass, top)

    # checks: computed from the float vectors; kept only where the browser's rounded cosines give
    # the same texts, away from a rounding boundary.
    checks = []
    for u_i, u in enumerate(users):
        for on in (True, False):
            uvec, ivec = vec[on]
            cos = np.r_[np.zeros(N_RESERVED), ivec @ uvec[u_i]]
            q_cos = np.r_[np.zeros(N_RESERVED), cos_units[u_i, on] / COS_SCALE]
            texts_of = {}
            ok = True
            for t in (lo, hi):
                order, p = _softmax_top(cos, seen[u_i], k, t)
                q_order, q_p = _softmax_top(q_cos, seen[u_i], k, t)
                if ((order[:3] != q_order[:3]).any() or any(abs((x * 1000) % 1 - 0.5) < 0.15 for x in (p[0], p.sum()))
                        or f"{p[0]:.1%}" != f"{q_p[0]:.1%}" or f"{p.sum():.1%}" != f"{q_p.sum():.1%}"):
                    ok = False
                    break
                texts_of[t] = ([f"{r}. {titles[c]}" for r, c in enumerate(order[:3], 1)] + [f"{p[0]:.1%}"]
                               + [f"The {k} movies below hold {p.sum():.1%} of the probability at τ = {t:.2f}"])
            if ok:
                checks += [{"set": {"user": u, "logq": on, "tau": t}, "texts": texts_of[t]} for t in (lo, hi)]
            if len(checks) >= 2 * n_checks:
                break
        if len(checks) >= 2 * n_checks:
            break
    if not checks:
        raise ValueError("users: no user whose top list is stable under the browser's rounding; offer other users")
    return W.browser_chart(chart, params=[user, logq, tau], data=[top_d, lse_d, hist_d], checks=checks)


# --------------------------------------------------------------------------------------------
# Architecture diagram
# --------------------------------------------------------------------------------------------

def plot_twotower_architecture(user_fields: Sequence[str] = ("user_id", "age_bucket", "gender", "occupation",
                                                             "zip1"),
                               item_fields: Sequence[str] = ("item_id", "year_bucket", "genres"), *,
                               history_len: int | None = 3, hidden: Sequence[int] = (128,), out_dim: int = 64,
                               temperature: float = 0.2, ax: Axes | None = None) -> Axes:
    """The two-tower model as the book builds it: the user's fields and the mean of their
    ``history_len`` most recent items (``None``: no history) → concat → MLP → L2-normalised user
    vector ``u``; the item's fields → concat → MLP → item vector ``v``; the logit is
    ``<u, v> / temperature``. Notes say how it trains (softmax over the batch's items, logQ) and
    serves (item vectors computed once, searched with an index)."""
    from functools import partial

    from ..plots import diagram_arrow, diagram_axes, diagram_box

    user_fields, item_fields = [str(f) for f in user_fields], [str(f) for f in item_fields]
    if not user_fields or not item_fields:
        raise ValueError("user_fields, item_fields: expected at least one field on each side")
    if history_len is not None:
        history_len = require_positive_int(history_len, name="history_len")
    hidden = [require_positive_int(h, name="hidden") for h in hidden]
    out_dim = require_positive_int(out_dim, name="out_dim")
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not temperature > 0:
        raise ValueError(f"temperature: expected a number > 0, got {temperature!r}")

    user_boxes = user_fields + ([f"last {history_len} items (mean)"] if history_len else [])
    item_boxes = [f + " (mean)" if f == "genres" else f for f in item_fields]
    n = len(user_boxes) + len(item_boxes)
    step = 6.0
    height = n * step + 22
    ax = diagram_axes(ax, (7.2, 0.3 + height * 0.072), (0, 100), (0, height))
    box, arrow = partial(diagram_box, ax), partial(diagram_arrow, ax, head=10)
    mlp_text = "MLP\n" + "-".join(str(h) for h in [*hidden, out_dim])

    def tower(names, top, colour, title, vec):
        ys = [top - step * (i + 0.5) for i in range(len(names))]
        mid = (ys[0] + ys[-1]) / 2
        ax.text(12, top + 1.2, title, ha="center", fontsize=10, fontweight="bold")
        for name, y in zip(names, ys):
            box(2, y - 1.7, 20, 3.4, name, colour, 9)
            arrow(22.6, y, 30.4, mid + (y - mid) * 0.4)
        half = max(2.2, (ys[0] - ys[-1]) * 0.25)
        box(31, mid - half, 9, 2 * half, "concat", "#EAEAF2", 9)
        arrow(40.6, mid, 44.4, mid)
        box(45, mid - 3.4, 11, 6.8, mlp_text, "#DCE6F2", 9)
        arrow(56.6, mid, 60.4, mid)
        box(61, mid - 3.4, 12, 6.8, f"normalise\n{vec}, |{vec}| = 1", "#DCE6F2", 9)
        return mid

    top = height - 4
    u_mid = tower(user_boxes, top, "#EAEAF2", "user tower", "u")
    i_top = top - step * len(user_boxes) - 5
    i_mid = tower(item_boxes, i_top, "#FBE3CF", "item tower", "v")
    centre = (u_mid + i_mid) / 2
    arrow(73.6, u_mid, 79.4, centre + 2.5)
    arrow(73.6, i_mid, 79.4, centre - 2.5)
    box(80, centre - 4, 17, 8, "logit\n" + r"$\langle u, v\rangle / \tau$" + f"\nτ = {temperature:g}", "#D5EDE4", 9.5, "bold")
    ax.text(50, 8.5, "training: softmax over the items of the batch (in-batch negatives), "
            "optionally − log Q per item", ha="center", va="center", fontsize=9, color="0.3")
    ax.text(50, 3.5, "serving: every v computed once and put in a vector index; one u per request",
            ha="center", va="center", fontsize=9, color="0.3")
    return ax

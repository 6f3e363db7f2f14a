"""Matplotlib figures for the book's chapters.

Every function draws into ``ax`` when one is given (or into a new figure otherwise) and returns
the Axes; none calls ``plt.show()``, so a chapter decides where a figure goes. Inputs are validated
once, at the top, and a bad input raises ``ValueError`` naming the field.

Data exploration (the data chapter), on the tables of
:func:`recbook.data.load_movielens100k` or the frames of :func:`recbook.data.ctr_protocol`:

* :func:`plot_rating_distribution` -- how many ratings of each star value, split at the CTR label;
* :func:`plot_item_popularity` -- ratings per movie against popularity rank (the long tail);
* :func:`plot_popularity_share` -- share of all ratings that the top items receive (Lorenz-style);
* :func:`plot_user_activity` -- how many ratings users give;
* :func:`plot_users_over_time` -- when users make their first rating (users arrive over time);
* :func:`plot_genre_counts` -- movies (or ratings) per genre;
* :func:`plot_split_timeline` -- the train/valid/test blocks of a time split and their cold users.

Training (every model chapter): :func:`plot_learning_curves` draws the histories returned by
:func:`recbook.train.fit`.

Factorization machines (the FM chapter), on the tables of :mod:`recbook.interactions`:

* :func:`plot_interaction_heatmaps` -- planted and learned pairwise interactions side by side;
* :func:`plot_pairwise_timing` -- time of the ``O(kn)`` identity and the explicit pairwise sum;
* :func:`plot_pair_contributions` -- each term's share of one example's logit;
* :func:`plot_two_vectors` -- two feature vectors, their dot product and the predicted probability.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.dates as mdates
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.patches import Arc
from matplotlib.ticker import FuncFormatter, MaxNLocator, NullFormatter, PercentFormatter

from ._checks import require_columns, require_positive_int
from .data.movielens import GENRES
from .data.protocols import LABEL_THRESHOLD

__all__ = [
    "SPLITS", "SPLIT_COLORS", "LABEL_COLORS", "plot_genre_counts", "plot_item_popularity",
    "plot_learning_curves", "plot_popularity_share", "plot_rating_distribution",
    "plot_split_timeline", "plot_user_activity", "plot_users_over_time", "popularity_share",
    "split_counts",
    # factorization machines
    "plot_interaction_heatmaps", "plot_pair_contributions", "plot_pairwise_timing", "plot_two_vectors",
]

SPLITS = ("train", "valid", "test")
SPLIT_COLORS = {"train": "#4C72B0", "valid": "#DD8452", "test": "#C44E52"}
"""One colour per split, shared by every figure that shows the time split."""
LABEL_COLORS = {0: "#8C8C8C", 1: "#2A9D8F"}
"""Colour of a negative (label 0) and a positive (label 1) rating."""

_thousands = FuncFormatter(lambda v, _: f"{v:,.0f}")


def _axes(ax: Axes | None, figsize=(6.4, 3.6)) -> Axes:
    if ax is None:
        _, ax = plt.subplots(figsize=figsize, layout="constrained")
    elif not isinstance(ax, Axes):
        raise ValueError(f"ax: expected a matplotlib Axes or None, got {type(ax).__name__}")
    return ax


def _ratings(ratings: pd.DataFrame, columns: Sequence[str]) -> pd.DataFrame:
    require_columns(ratings, columns, name="ratings")
    return ratings


# --------------------------------------------------------------------------------------------
# Ratings, items and users
# --------------------------------------------------------------------------------------------

def plot_rating_distribution(ratings: pd.DataFrame, *, threshold: int = LABEL_THRESHOLD,
                             ax: Axes | None = None) -> Axes:
    """One bar per star value (1-5) with its count and share; bars at or above ``threshold``
    (the CTR label, default 4) are coloured as positives."""
    _ratings(ratings, ["rating"])
    counts = ratings["rating"].value_counts().sort_index()
    ax = _axes(ax)
    colors = [LABEL_COLORS[int(v >= threshold)] for v in counts.index]
    bars = ax.bar(counts.index.astype(str), counts.to_numpy(), color=colors)
    total = counts.sum()
    ax.bar_label(bars, labels=[f"{c:,}\n({c / total:.0%})" for c in counts], fontsize=8)
    ax.set_xlabel("rating (stars)")
    ax.set_ylabel("number of ratings")
    ax.yaxis.set_major_formatter(_thousands)
    ax.margins(y=0.2)
    ax.legend(handles=[plt.Rectangle((0, 0), 1, 1, color=LABEL_COLORS[1]),
                       plt.Rectangle((0, 0), 1, 1, color=LABEL_COLORS[0])],
              labels=[f"label 1 (rating ≥ {threshold})", f"label 0 (rating < {threshold})"],
              loc="upper left", frameon=False)
    ax.set_title("How users rate")
    return ax


def plot_item_popularity(ratings: pd.DataFrame, *, ax: Axes | None = None) -> Axes:
    """Ratings per item against the item's popularity rank (1 = most rated), log-scaled counts.

    A straight fall on this log scale followed by a long flat-ish tail near 1 is the long tail:
    a few blockbusters collect most ratings, most items very few.
    """
    _ratings(ratings, ["item_id"])
    counts = ratings["item_id"].value_counts().to_numpy()  # sorted, most popular first
    ranks = np.arange(1, len(counts) + 1)
    ax = _axes(ax)
    ax.plot(ranks, counts, color=SPLIT_COLORS["train"], lw=1.5)
    ax.fill_between(ranks, counts, 0.8, color=SPLIT_COLORS["train"], alpha=0.15)
    ax.set_yscale("log")
    ax.set_ylim(bottom=0.8)
    ax.set_xlim(1, len(counts))
    median = float(np.median(counts))
    ax.axhline(median, color="0.3", ls="--", lw=1)
    ax.annotate(f"median item: {median:g} ratings", (len(counts), median), xytext=(-4, 4),
                textcoords="offset points", ha="right", va="bottom", fontsize=8, color="0.3")
    ax.set_xlabel("item popularity rank (1 = most rated)")
    ax.set_ylabel("ratings per item (log scale)")
    ax.yaxis.set_major_formatter(_thousands)
    ax.set_title("Item popularity: a long tail")
    return ax


def popularity_share(ratings: pd.DataFrame, top_k: int) -> float:
    """Fraction of all ratings that go to the ``top_k`` most rated items."""
    _ratings(ratings, ["item_id"])
    top_k = require_positive_int(top_k, name="top_k")
    counts = ratings["item_id"].value_counts().to_numpy()
    return float(counts[:top_k].sum() / counts.sum())


def plot_popularity_share(ratings: pd.DataFrame, *, top_k: int | None = None,
                          ax: Axes | None = None) -> Axes:
    """Lorenz-style curve: the share of all ratings received by the top x% of items.

    The diagonal is what equal popularity would give. With ``top_k`` a marker shows the share of
    ratings that the ``top_k`` most rated items receive, and the title states it.
    """
    _ratings(ratings, ["item_id"])
    counts = ratings["item_id"].value_counts().to_numpy()
    n = len(counts)
    if top_k is not None:
        top_k = require_positive_int(top_k, name="top_k")
        if top_k > n:
            raise ValueError(f"top_k: expected at most the number of items ({n}), got {top_k}")
    x = np.r_[0, np.arange(1, n + 1) / n]
    y = np.r_[0, np.cumsum(counts) / counts.sum()]
    ax = _axes(ax, figsize=(4.8, 4.0))
    ax.plot(x, y, color=SPLIT_COLORS["train"], lw=2, label="observed")
    ax.plot([0, 1], [0, 1], color="0.5", ls=":", lw=1, label="equal popularity")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.xaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
    ax.yaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
    ax.set_xlabel("top items, as a share of all items")
    ax.set_ylabel("share of all ratings")
    if top_k is not None:
        share = y[top_k]
        ax.plot([x[top_k], x[top_k], 0], [0, share, share], color=SPLIT_COLORS["test"], lw=1, ls="--")
        ax.plot([x[top_k]], [share], "o", color=SPLIT_COLORS["test"])
        ax.set_title(f"Top {top_k:,} items ({top_k / n:.0%}) get {share:.0%} of ratings")
    else:
        ax.set_title("Share of ratings received by the top items")
    ax.legend(loc="lower right", frameon=False)
    return ax


def plot_user_activity(ratings: pd.DataFrame, *, bins: int = 30, ax: Axes | None = None) -> Axes:
    """Histogram of ratings per user on logarithmic bins, with the median marked."""
    _ratings(ratings, ["user_id"])
    bins = require_positive_int(bins, name="bins")
    per_user = ratings["user_id"].value_counts().to_numpy()
    ax = _axes(ax)
    edges = np.geomspace(per_user.min(), per_user.max() + 1, bins + 1)
    ax.hist(per_user, bins=edges, color=SPLIT_COLORS["train"], edgecolor="white")
    ax.set_xscale("log")
    ticks = [m * 10**k for k in range(0, 7) for m in (1, 2, 5)]
    ax.set_xticks([t for t in ticks if per_user.min() <= t <= per_user.max() + 1])
    ax.xaxis.set_minor_formatter(NullFormatter())
    median = float(np.median(per_user))
    ax.axvline(median, color="0.2", ls="--", lw=1)
    ax.annotate(f"median {median:g}", (median, 1), xycoords=("data", "axes fraction"),
                xytext=(4, -12), textcoords="offset points", fontsize=8)
    ax.xaxis.set_major_formatter(_thousands)
    ax.set_xlabel("ratings per user (log scale)")
    ax.set_ylabel("number of users")
    ax.set_title(f"User activity ({len(per_user):,} users)")
    return ax


def plot_users_over_time(ratings: pd.DataFrame, *, boundaries: Mapping | None = None,
                         ax: Axes | None = None) -> Axes:
    """When users arrive: the cumulative share of users by the date of their first rating, next to
    the cumulative share of all ratings.

    If the two curves rise together, users rate in bursts right after they arrive. ``boundaries``
    (``{name: timestamp}``, e.g. where validation and test begin) adds labelled vertical lines.
    """
    _ratings(ratings, ["user_id", "timestamp"])
    ts = pd.to_datetime(ratings["timestamp"])
    first = np.sort(ts.groupby(ratings["user_id"]).min().to_numpy())
    every = np.sort(ts.to_numpy())
    ax = _axes(ax, figsize=(7.0, 3.6))
    ax.step(first, np.arange(1, len(first) + 1) / len(first), where="post", lw=2,
            color=SPLIT_COLORS["train"], label=f"users, by first rating ({len(first):,})")
    ax.step(every, np.arange(1, len(every) + 1) / len(every), where="post", lw=1.2,
            color=SPLIT_COLORS["valid"], ls="--", label=f"ratings ({len(every):,})")
    for name, when in (boundaries or {}).items():
        when = pd.Timestamp(when)
        ax.axvline(when, color="0.3", lw=1, ls=":")
        ax.annotate(str(name), (when, 0.02), xycoords=("data", "axes fraction"), rotation=90,
                    xytext=(-3, 0), textcoords="offset points", ha="right", va="bottom", fontsize=8)
    ax.yaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
    ax.xaxis.set_major_locator(mdates.MonthLocator())
    ax.xaxis.set_major_formatter(mdates.DateFormatter("%b\n%Y"))
    ax.set_ylim(0, 1.02)
    ax.set_ylabel("cumulative share")
    ax.set_title("Users arrive over time")
    ax.legend(loc="upper left", frameon=False)
    return ax


def plot_genre_counts(items: pd.DataFrame, *, ratings: pd.DataFrame | None = None,
                      genres: Sequence[str] = GENRES, ax: Axes | None = None) -> Axes:
    """One horizontal bar per genre, sorted: the number of movies tagged with it, or, when
    ``ratings`` is given, the number of ratings of such movies. A movie can have several genres."""
    genres = list(genres)
    if not genres:
        raise ValueError("genres: expected at least one genre name")
    require_columns(items, ["item_id", *genres], name="items")
    flags = items.set_index("item_id")[genres].astype(bool)
    if ratings is None:
        counts = flags.sum()
        what = "movies"
    else:
        _ratings(ratings, ["item_id"])
        per_item = ratings["item_id"].value_counts()
        counts = flags.mul(per_item.reindex(flags.index, fill_value=0), axis=0).sum()
        what = "ratings"
    counts = counts.sort_values()
    ax = _axes(ax, figsize=(5.6, 0.22 * len(genres) + 1.2))
    bars = ax.barh(counts.index, counts.to_numpy(), color=SPLIT_COLORS["train"])
    ax.bar_label(bars, labels=[f"{c:,}" for c in counts], fontsize=7, padding=2)
    ax.margins(x=0.12)
    ax.xaxis.set_major_locator(MaxNLocator(5))
    ax.xaxis.set_major_formatter(_thousands)
    ax.set_xlabel(f"number of {what}")
    ax.set_title(f"{what.capitalize()} per genre")
    return ax


# --------------------------------------------------------------------------------------------
# The time split
# --------------------------------------------------------------------------------------------

def _check_frames(frames: Mapping) -> dict:
    if not isinstance(frames, Mapping):
        raise ValueError(f"frames: expected a dict with keys {list(SPLITS)}, got {type(frames).__name__}")
    missing = [s for s in SPLITS if s not in frames]
    if missing:
        raise ValueError(f"frames: missing split(s) {missing}; expected keys {list(SPLITS)}")
    for s in SPLITS:
        require_columns(frames[s], ["user_id", "timestamp"], name=f"frames['{s}']")
    return {s: frames[s] for s in SPLITS}


def split_counts(frames: Mapping) -> pd.DataFrame:
    """Per split: rows, rows from cold users (users with no training row), their share, time span.

    ``frames`` maps ``"train"``, ``"valid"`` and ``"test"`` to DataFrames with ``user_id`` and
    ``timestamp`` (as :attr:`recbook.data.CTRData.frames`).
    """
    frames = _check_frames(frames)
    known = set(frames["train"]["user_id"].unique())
    rows = []
    for s, f in frames.items():
        cold = int((~f["user_id"].isin(known)).sum())
        rows.append({"split": s, "rows": len(f), "cold-user rows": cold,
                     "cold share": cold / len(f) if len(f) else float("nan"),
                     "from": f["timestamp"].min(), "to": f["timestamp"].max()})
    return pd.DataFrame(rows).set_index("split")


def plot_split_timeline(frames: Mapping, *, freq: str = "D", ax: Axes | None = None) -> Axes:
    """Ratings per day (``freq``), stacked and coloured by split, over the whole time range.

    The legend gives each split's row count and how many of its rows come from cold users
    (users with no training row; see :func:`split_counts`).
    """
    frames = _check_frames(frames)
    counts = split_counts(frames)
    per_period = pd.DataFrame({
        s: pd.to_datetime(f["timestamp"]).dt.to_period(freq).value_counts() for s, f in frames.items()
    }).fillna(0).sort_index()
    if per_period.empty:
        raise ValueError("frames: all splits are empty; expected rows to draw")
    full = pd.period_range(per_period.index.min(), per_period.index.max(), freq=freq)
    per_period = per_period.reindex(full, fill_value=0)
    x = per_period.index.to_timestamp()
    width = (per_period.index[0] + 1).to_timestamp() - per_period.index[0].to_timestamp()
    ax = _axes(ax, figsize=(7.0, 3.4))
    bottom = np.zeros(len(per_period))
    for s in SPLITS:
        c = counts.loc[s]
        label = f"{s}: {c['rows']:,} rows, {c['cold-user rows']:,} from cold users"
        if s != "train":
            label += f" ({c['cold share']:.0%})"
        ax.bar(x, per_period[s].to_numpy(), width=width, bottom=bottom, align="edge",
               color=SPLIT_COLORS[s], label=label, linewidth=0)
        bottom += per_period[s].to_numpy()
    ax.xaxis.set_major_locator(mdates.MonthLocator())
    ax.xaxis.set_major_formatter(mdates.DateFormatter("%b\n%Y"))
    ax.yaxis.set_major_formatter(_thousands)
    ax.set_ylabel(f"ratings per {'day' if freq == 'D' else freq}")
    ax.set_title("The chronological split")
    ax.set_ylim(0, bottom.max() * 1.35)  # room for the legend above the tallest day
    ax.legend(loc="upper left", frameon=False, fontsize=8)
    return ax


# --------------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------------

def plot_learning_curves(histories: Mapping[str, pd.DataFrame], metric: str = "valid_auc", *,
                         mode: str | None = None, ax: Axes | None = None) -> Axes:
    """One line per model: ``metric`` against the epoch, with each model's best epoch marked.

    Args:
        histories: ``{name: history}``, each history a DataFrame as ``recbook.train.fit(...).history``
            (index ``epoch``; columns such as ``train_loss``, ``valid_auc``, ``valid_logloss``).
        metric: the column to draw.
        mode: ``"max"`` or ``"min"``: which value is best. Default: ``"min"`` when the metric name
            contains "loss", else ``"max"``.
    """
    if not isinstance(histories, Mapping) or not histories:
        raise ValueError("histories: expected a non-empty dict {name: DataFrame}")
    if not isinstance(metric, str):
        raise ValueError(f"metric: expected a column name (str), got {metric!r}")
    for name, h in histories.items():
        if not isinstance(h, pd.DataFrame):
            raise ValueError(f"histories['{name}']: expected a DataFrame, got {type(h).__name__}")
        if metric not in h.columns:
            raise ValueError(f"histories['{name}']: has no column {metric!r}; "
                             f"columns are {list(h.columns)}")
        if h[metric].notna().sum() == 0:
            raise ValueError(f"histories['{name}']: column {metric!r} has no values")
    if mode is None:
        mode = "min" if "loss" in metric else "max"
    if mode not in ("max", "min"):
        raise ValueError(f"mode: expected 'max', 'min' or None, got {mode!r}")
    ax = _axes(ax)
    for name, h in histories.items():
        values = h[metric].astype(float)
        (line,) = ax.plot(values.index, values.to_numpy(), marker="o", ms=3, label=str(name))
        best = values.idxmax() if mode == "max" else values.idxmin()
        ax.plot([best], [values[best]], marker="*", ms=12, color=line.get_color(),
                markeredgecolor="black", markeredgewidth=0.5, linestyle="none")
    ax.set_xlabel("epoch")
    ax.set_ylabel(metric)
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.set_title(f"{metric} by epoch (★ best, {mode})")
    ax.legend(frameon=False)
    ax.grid(alpha=0.3)
    return ax


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

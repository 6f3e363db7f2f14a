"""Helpers of the data chapter: exploring MovieLens-100K and drawing the time split.

Figures on the tables of :func:`recbook.data.load_movielens100k` or the frames of
:func:`recbook.data.ctr_protocol`:

* :func:`plot_rating_distribution` -- how many ratings of each star value, split at the CTR label;
* :func:`plot_item_popularity` -- ratings per movie against popularity rank (the long tail);
* :func:`plot_popularity_share` -- share of all ratings that the top items receive (Lorenz-style);
* :func:`plot_user_activity` -- how many ratings users give;
* :func:`plot_users_over_time` -- when users make their first rating (users arrive over time);
* :func:`plot_genre_counts` -- movies (or ratings) per genre;
* :func:`plot_split_timeline` -- the train/valid/test blocks of a time split and their cold users;
* :func:`user_timeline` and :func:`user_timeline_widget` -- one user's ratings over time.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import ipywidgets as widgets
import matplotlib.dates as mdates
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.ticker import FuncFormatter, MaxNLocator, NullFormatter, PercentFormatter

from .._checks import require_columns, require_positive_int
from ..data.movielens import GENRES
from ..data.protocols import LABEL_THRESHOLD, chronological_split, ctr_frame
from ..plots import LABEL_COLORS, SPLIT_COLORS, SPLITS
from ..plots import axes_or_new as _axes

__all__ = [
    "ctr_splits", "plot_genre_counts", "plot_item_popularity", "plot_popularity_share",
    "plot_rating_distribution", "plot_split_timeline", "plot_user_activity", "plot_users_over_time",
    "popularity_share", "split_counts", "user_timeline", "user_timeline_widget",
]

_thousands = FuncFormatter(lambda v, _: f"{v:,.0f}")


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
# One user's ratings over time
# --------------------------------------------------------------------------------------------

def _ratings_of(ml) -> pd.DataFrame:
    ratings = getattr(ml, "ratings", None)
    if ratings is None:
        raise ValueError(f"ml: expected a loaded MovieLens100K (with .ratings), got {type(ml).__name__}")
    require_columns(ratings, ["user_id", "item_id", "rating", "timestamp"], name="ml.ratings")
    return ratings


def ctr_splits(ml) -> pd.DataFrame:
    """Which CTR split every rating falls in, under :func:`recbook.data.ctr_protocol`'s time split.

    Returns the protocol's rows in time order with columns user_id, item_id, timestamp, label and
    split (``"train"``, ``"valid"`` or ``"test"``). Compute it once and pass it to
    :func:`user_timeline` when drawing many users.
    """
    _ratings_of(ml)
    frame = ctr_frame(ml)
    parts = chronological_split(frame)
    split = np.concatenate([np.full(len(p), s, dtype=object) for s, p in zip(SPLITS, parts)])
    out = frame[["user_id", "item_id", "timestamp", "label"]].copy()
    out["split"] = pd.Categorical(split, categories=list(SPLITS))
    return out


def _boundaries(splits: pd.DataFrame) -> dict:
    """Timestamp of the first validation row and of the first test row."""
    return {s: splits.loc[splits["split"] == s, "timestamp"].min() for s in SPLITS[1:]}


def user_timeline(ml, user_id: int, *, splits: pd.DataFrame | None = None,
                  ax: Axes | None = None, seed: int = 0) -> Axes:
    """One user's ratings as a timeline: date against rating, one point per rating.

    Colour is the CTR label (rating >= 4 is a positive). The periods of the validation and test
    blocks of the time split are shaded, with a line where each begins, and the title counts the
    user's ratings in each split. Many ratings share a date and a star value, so points get a
    small vertical jitter (seeded by ``seed``, so the figure is reproducible).

    Args:
        ml: the data set from :func:`recbook.data.load_movielens100k`.
        user_id: a user id present in ``ml.ratings``.
        splits: the result of :func:`ctr_splits` (computed here when not given).
    """
    ratings = _ratings_of(ml)
    if isinstance(user_id, bool) or not isinstance(user_id, (int, np.integer)):
        raise ValueError(f"user_id: expected an integer user id, got {user_id!r}")
    mine = ratings[ratings["user_id"] == user_id].sort_values(["timestamp", "item_id"])
    if mine.empty:
        raise ValueError(f"user_id: user {user_id} has no ratings in ml.ratings")
    if splits is None:
        splits = ctr_splits(ml)
    else:
        require_columns(splits, ["user_id", "item_id", "timestamp", "split"], name="splits")
    where = mine.merge(splits[["user_id", "item_id", "split"]], on=["user_id", "item_id"], how="left")
    if where["split"].isna().any():
        raise ValueError(f"splits: has no row for some ratings of user {user_id}; "
                         "expected the result of ctr_splits(ml) for the same ml")
    per_split = where["split"].value_counts().reindex(list(SPLITS), fill_value=0)

    ax = plt.subplots(figsize=(7.0, 3.2), layout="constrained")[1] if ax is None else ax
    if not isinstance(ax, Axes):
        raise ValueError(f"ax: expected a matplotlib Axes or None, got {type(ax).__name__}")
    t = pd.to_datetime(where["timestamp"])
    lo, hi = t.min(), t.max()
    pad = max((hi - lo) * 0.05, pd.Timedelta(minutes=2))
    lo, hi = lo - pad, hi + pad

    bounds = _boundaries(splits)
    ends = {"valid": bounds["test"], "test": pd.Timestamp(splits["timestamp"].max())}
    for s in SPLITS[1:]:
        start, end = pd.Timestamp(bounds[s]), pd.Timestamp(ends[s])
        if start <= hi and end >= lo:
            ax.axvspan(max(start, lo), min(end, hi), color=SPLIT_COLORS[s], alpha=0.12, lw=0)
        if lo <= start <= hi:
            ax.axvline(start, color=SPLIT_COLORS[s], lw=1.5)
            ax.annotate(f"{s} begins", (start, 1), xycoords=("data", "axes fraction"),
                        xytext=(3, -3), textcoords="offset points", va="top",
                        fontsize=8, color=SPLIT_COLORS[s])

    rng = np.random.default_rng(seed)
    jitter = rng.uniform(-0.15, 0.15, size=len(where))
    positive = (where["rating"] >= LABEL_THRESHOLD).to_numpy()
    for label, name in ((1, "label 1"), (0, "label 0")):
        keep = positive == bool(label)
        ax.scatter(t[keep], where["rating"].to_numpy()[keep] + jitter[keep], s=16, alpha=0.75,
                   color=LABEL_COLORS[label], label=f"{name} ({int(keep.sum())})", linewidths=0)
    ax.set_xlim(lo, hi)
    ax.set_ylim(0.5, 5.5)
    ax.set_yticks([1, 2, 3, 4, 5])
    ax.set_ylabel("rating")
    locator = mdates.AutoDateLocator(maxticks=7)
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
    counts = " / ".join(f"{per_split[s]} {s}" for s in SPLITS)
    ax.set_title(f"User {user_id}: {len(where)} ratings ({counts})", fontsize=10)
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False, fontsize=8)
    return ax


def user_timeline_widget(ml, users: Sequence[int] | None = None) -> widgets.interactive:
    """A dropdown of users and the :func:`user_timeline` of the selected one (needs a kernel).

    ``users`` limits the dropdown (default: every user, in id order).
    """
    ratings = _ratings_of(ml)
    known = np.sort(ratings["user_id"].unique())
    if users is None:
        options = known.tolist()
    else:
        options = [int(u) for u in users]
        unknown = sorted(set(options) - set(known.tolist()))
        if not options or unknown:
            raise ValueError(f"users: expected user ids present in ml.ratings, got unknown {unknown[:5]}"
                             if unknown else "users: expected at least one user id")
    splits = ctr_splits(ml)

    def show(user_id):
        user_timeline(ml, int(user_id), splits=splits)

    picker = widgets.Dropdown(options=options, value=options[0], description="user")
    return widgets.interactive(show, user_id=picker)

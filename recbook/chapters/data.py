"""Helpers of the data chapter: exploring MovieLens-100K and drawing the time split.

Figures on the tables of :func:`recbook.data.load_movielens100k` or the frames of
:func:`recbook.data.ctr_protocol`:

* :func:`plot_rating_distribution` -- how many ratings of each star value, split at the CTR label;
* :func:`plot_item_popularity` -- ratings per movie against popularity rank (the long tail);
* :func:`popularity_chart` -- share of all ratings that the top x% of items receive, with a slider
  (computed in the browser);
* :func:`plot_user_activity` -- how many ratings users give;
* :func:`plot_users_over_time` -- when users make their first rating (users arrive over time);
* :func:`plot_genre_counts` -- movies (or ratings) per genre;
* :func:`plot_split_timeline` -- the train/valid/test blocks of a time split and their cold users;
* :func:`user_timeline_chart` -- any user's ratings over time, coloured by block of the time split
  (computed in the browser);
* :func:`random_split_protocol` -- the CTR protocol with a random instead of a time split, for
  comparison;
* :func:`tie_statistics` -- how often ratings share a second, and why a tie rule by item id leaks.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import altair as alt
import matplotlib.dates as mdates
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.ticker import FuncFormatter, MaxNLocator, NullFormatter, PercentFormatter

from .. import widgets
from .._checks import require_columns, require_positive_int
from ..data.movielens import GENRES
from ..data.protocols import (LABEL_THRESHOLD, CTRData, chronological_split, ctr_frame, ctr_schema,
                              encode_ctr, item_catalogue, time_order)
from ..plots import LABEL_COLORS, SPLIT_COLORS, SPLITS
from ..plots import axes_or_new as _axes

__all__ = [
    "ctr_splits", "plot_genre_counts", "plot_item_popularity", "plot_rating_distribution",
    "plot_split_timeline", "plot_user_activity", "plot_users_over_time", "popularity_chart",
    "popularity_share", "random_split_protocol", "split_counts", "tie_statistics",
    "timeline_check_users", "user_timeline_chart",
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
    ax.bar_label(bars, labels=[f"{c:,}" for c in counts], fontsize=8, padding=2)
    ax.tick_params(axis="y", labelsize=9)
    ax.margins(x=0.16)
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

    Returns the protocol's rows in time order with columns user_id, item_id, rating, timestamp,
    label and split (``"train"``, ``"valid"`` or ``"test"``).
    """
    _ratings_of(ml)
    frame = ctr_frame(ml)
    parts = chronological_split(frame)
    split = np.concatenate([np.full(len(p), s, dtype=object) for s, p in zip(SPLITS, parts)])
    out = frame[["user_id", "item_id", "rating", "timestamp", "label"]].copy()
    out["split"] = pd.Categorical(split, categories=list(SPLITS))
    return out


def _boundaries(splits: pd.DataFrame) -> dict:
    """Timestamp of the first validation row and of the first test row."""
    return {s: splits.loc[splits["split"] == s, "timestamp"].min() for s in SPLITS[1:]}


def _d3_percent(x: float) -> str:
    return f"{x:.0%}"


def popularity_chart(ratings: pd.DataFrame, *, percent: int = 10, checks: Sequence[int] | None = None):
    """The share of all ratings that the most rated x% of movies receive, x set by a slider
    (1-100%), computed in the browser from the ratings per movie (one number per movie).

    The curve is a Lorenz curve: the diagonal is what equal popularity would give. ``percent`` is
    the slider's start; it and each of ``checks`` (by default the slider's ends, 1 and 100, and
    50) become browser checks of the title, computed with :func:`popularity_share`.
    """
    _ratings(ratings, ["item_id"])
    if checks is None:
        checks = [p for p in (1, 50, 100) if p != percent]
    counts = ratings["item_id"].value_counts().to_numpy()
    n, total = len(counts), int(counts.sum())
    table = pd.DataFrame({"rank": np.arange(1, n + 1), "ratings": counts})
    data = widgets.CsvData(table, name="popularity")
    top = widgets.slider("top", 1, 100, 1, percent, "most rated movies (%)")

    def texts(pct: int) -> list[str]:
        k = max(1, round(pct / 100 * n))
        return [f"The top {pct}% of movies ({k:,}) get {_d3_percent(popularity_share(ratings, k))} "
                f"of all ratings"]

    curve = alt.Chart(data.ref).transform_window(
        cum="sum(ratings)", sort=[alt.SortField("rank")]).transform_calculate(
        x=f"datum.rank / {n}", y=f"datum.cum / {total}", k=f"max(1, round(top / 100 * {n}))")
    x = alt.X("x:Q", title="most rated movies, as a share of all movies",
              axis=alt.Axis(format="%"), scale=alt.Scale(domain=[0, 1], nice=False))
    y = alt.Y("y:Q", title="share of all ratings", axis=alt.Axis(format="%"),
              scale=alt.Scale(domain=[0, 1], nice=False))
    marked = curve.transform_filter("datum.rank == datum.k")
    chart = alt.layer(
        alt.Chart(alt.Data(values=[{"x": 0, "y": 0}, {"x": 1, "y": 1}])).mark_line(
            color="#999999", strokeDash=[2, 3]).encode(x=x, y=y),
        curve.mark_line(color=SPLIT_COLORS["train"], strokeWidth=2.5).encode(x=x, y=y),
        marked.mark_rule(color=SPLIT_COLORS["test"], strokeDash=[4, 3]).encode(x=x, y=y, y2=alt.datum(0)),
        marked.mark_rule(color=SPLIT_COLORS["test"], strokeDash=[4, 3]).encode(x=x, x2=alt.datum(0), y=y),
        marked.mark_point(filled=True, size=90, color=SPLIT_COLORS["test"], opacity=1).encode(x=x, y=y),
        marked.transform_calculate(
            t="'The top ' + top + '% of movies (' + format(datum.k, ',') + ') get '"
              " + format(datum.y, '.0%') + ' of all ratings'"
        ).mark_text(align="left", fontSize=14).encode(x=alt.value(0), y=alt.value(-14), text="t:N"),
    ).properties(width=420, height=300)
    return widgets.browser_chart(chart, params=[top], data=[data], checks=[
        {"set": {"top": int(pct)}, "texts": texts(int(pct))} for pct in (percent, *checks)])


def timeline_check_users(splits: pd.DataFrame) -> list[int]:
    """The first user (by id) of each kind of :func:`user_timeline_chart`'s examples: all ratings
    in training; ratings in training and in test; no training rating but some in test."""
    require_columns(splits, ["user_id", "split"], name="splits")
    per_user = pd.crosstab(splits["user_id"], splits["split"].astype(str)).reindex(columns=list(SPLITS),
                                                                                    fill_value=0)
    kinds = [per_user["train"] == per_user.sum(axis=1),
             (per_user["train"] > 0) & (per_user["test"] > 0),
             (per_user["train"] == 0) & (per_user["test"] > 0)]
    return [int(per_user.index[k.to_numpy()][0]) for k in kinds if k.any()]


def user_timeline_chart(splits: pd.DataFrame, *, user: int, checks: Sequence[int] | None = None):
    """Any user's ratings over time, picked from a dropdown of every user, computed in the browser.

    One point per user, hour and star value (its size counts the ratings), coloured by the block of
    the time split the ratings fall in; the dashed line separates the CTR label (4 and 5 stars
    are positives). The time axis follows the chosen user's own time range, and the title counts
    the user's ratings per block. ``splits`` is :func:`ctr_splits`'s table; ``user`` and each of
    ``checks`` become browser checks of the title, computed here with pandas. By default
    (``None``) the checks are one user of each kind (:func:`timeline_check_users`).
    """
    require_columns(splits, ["user_id", "rating", "timestamp", "split"], name="splits")
    t = pd.to_datetime(splits["timestamp"])
    start = t.min().floor("h")
    hour = ((t - start) // pd.Timedelta(hours=1)).astype(np.int64)
    code = {s: i for i, s in enumerate(SPLITS)}
    binned = (pd.DataFrame({"u": splits["user_id"].to_numpy(), "h": hour.to_numpy(),
                            "r": splits["rating"].to_numpy(),
                            "s": splits["split"].astype(str).map(code).to_numpy()})
              .groupby(["u", "h", "r", "s"]).size().rename("n").reset_index())
    data = widgets.CsvData(binned, name="user_hours")
    per_user = pd.crosstab(splits["user_id"], splits["split"].astype(str)).reindex(columns=list(SPLITS),
                                                                                    fill_value=0)
    users = per_user.index.to_numpy()
    if checks is None:
        checks = [u for u in timeline_check_users(splits) if u != user]
    for u in (user, *checks):
        if u not in set(users.tolist()):
            raise ValueError(f"user: {u!r} has no ratings in splits")
    picker = widgets.dropdown("user", users.tolist(), int(user), label="user",
                              labels=[f"{u} ({per_user.loc[u].sum():,} ratings)" for u in users])

    def texts(u: int) -> list[str]:
        c = per_user.loc[u]
        return [f"User {u}: {c.sum():,} ratings ({c['train']:,} train / {c['valid']:,} valid / "
                f"{c['test']:,} test)"]

    start_ms = int(start.value // 10**6)
    base = alt.Chart(data.ref).transform_filter("datum.u == user").transform_calculate(
        time=f"toDate({start_ms} + datum.h * 3600000)",
        block=f"[{', '.join(repr(s) for s in SPLITS)}][datum.s]")
    colour = alt.Color("block:N", title="block of the time split",
                       scale=alt.Scale(domain=list(SPLITS), range=[SPLIT_COLORS[s] for s in SPLITS]))
    title = base.transform_aggregate(n="sum(n)", groupby=["s"]).transform_pivot(
        "s", value="n", groupby=[]).transform_calculate(
        t="'User ' + user + ': ' + format((datum['0'] || 0) + (datum['1'] || 0) + (datum['2'] || 0), ',')"
          " + ' ratings (' + format(datum['0'] || 0, ',') + ' train / ' + format(datum['1'] || 0, ',')"
          " + ' valid / ' + format(datum['2'] || 0, ',') + ' test)'")
    chart = alt.layer(
        base.mark_circle(opacity=0.7).encode(
            x=alt.X("time:T", title="time (UTC; ratings binned by hour)", axis=alt.Axis(labelOverlap=True)),
            y=alt.Y("r:Q", title="rating (stars)", scale=alt.Scale(domain=[0.5, 5.5]),
                    axis=alt.Axis(values=[1, 2, 3, 4, 5])),
            size=alt.Size("n:Q", title="ratings in that hour", scale=alt.Scale(range=[25, 400])),
            color=colour,
            tooltip=[alt.Tooltip("time:T", format="%d %b %Y %H:00"), alt.Tooltip("r:Q", title="stars"),
                     alt.Tooltip("n:Q", title="ratings"), alt.Tooltip("block:N")]),
        alt.Chart(alt.Data(values=[{"y": 3.5}])).mark_rule(strokeDash=[4, 3], color="#999999").encode(
            y=alt.Y("y:Q")),
        title.mark_text(align="left", fontSize=14).encode(x=alt.value(0), y=alt.value(-14), text="t:N"),
    ).properties(width=480, height=230)
    return widgets.browser_chart(chart, params=[picker], data=[data], checks=[
        {"set": {"user": int(u)}, "texts": texts(int(u))} for u in (user, *checks)])


def random_split_protocol(ml, *, seed: int = 0, fractions=(0.8, 0.1, 0.1)) -> CTRData:
    """The CTR protocol with the rows shuffled before the 80/10/10 cut: the split many tutorials use.

    Vocabularies, encoding and the item catalogue are built exactly as in
    :func:`recbook.data.ctr_protocol`, from the (now random) training rows, so the two protocols
    differ only in which rows land in which block.
    """
    frame = ctr_frame(ml)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise ValueError(f"seed: expected an integer, got {seed!r}")
    shuffled = frame.iloc[np.random.default_rng(int(seed)).permutation(len(frame))].reset_index(drop=True)
    train, valid, test = chronological_split(shuffled, fractions)
    schema = ctr_schema(train, items=ml.items)
    parts = {name: encode_ctr(part, schema) for name, part in
             (("train", train), ("valid", valid), ("test", test))}
    frames = {"train": train.reset_index(drop=True), "valid": valid.reset_index(drop=True),
              "test": test.reset_index(drop=True)}
    return CTRData(schema, parts["train"], parts["valid"], parts["test"], frames,
                   item_catalogue(ml.items, schema))


def tie_statistics(ratings: pd.DataFrame) -> dict:
    """How often ratings share a second, and how item ids relate to popularity.

    Each user's ratings are put in the book's time order (:func:`recbook.data.time_order`: by
    timestamp, ties in file order). Returns:

    * ``same_second_share``: share of consecutive pairs in the users' sequences whose two ratings
      have the same timestamp;
    * ``users``, ``users_last_two_tied``: the number of users, and of users whose last two
      ratings (the leave-last-out validation and test targets) share a second;
    * ``spearman_id_popularity``: Spearman's rank correlation between an item's id and its number
      of ratings (negative: low ids are the popular ones).
    """
    _ratings(ratings, ["user_id", "item_id", "timestamp"])
    ordered = ratings.iloc[time_order(ratings)]
    ordered = ordered.iloc[np.argsort(ordered["user_id"].to_numpy(), kind="stable")]
    users = ordered["user_id"].to_numpy()
    ts = ordered["timestamp"].to_numpy()
    same_user = users[1:] == users[:-1]
    same_second = (ts[1:] == ts[:-1]) & same_user
    last = np.r_[users[1:] != users[:-1], True]              # the last rating of each user
    second_last = np.r_[last[1:], False] & ~last
    tied = ts[last] == ts[second_last]
    counts = ratings["item_id"].value_counts()
    ids = counts.index.to_series()
    spearman = float(ids.rank().corr(counts.rank()))
    return {"same_second_share": float(same_second.sum() / same_user.sum()),
            "users": int(last.sum()), "users_last_two_tied": int(tied.sum()),
            "spearman_id_popularity": spearman}

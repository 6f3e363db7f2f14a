"""Helpers of the leaderboard chapter: every model's results side by side, and which gaps are real.

The chapter reads two committed files and trains nothing:

* ``book/results/bench.csv``: recbook's models, one row per model, protocol and seed
  (``python -m recbook.bench``);
* ``book/results/libraries.csv``: the same protocols run through established libraries
  (``benchmarks/libraries/``), in the same format plus ``library`` and ``status`` columns.

Helpers:

* :func:`protocol_metrics`: the test metrics a protocol reports, headline first.
* :func:`summary`: mean and spread over seeds per model, for one protocol.
* :func:`compare` and :func:`paired_gaps`: one model against another, or each model against the
  next one below it, seed by seed: the mean paired difference with a 90% interval
  (:func:`paired_interval`), and a verdict that calls a gap real only when the interval excludes 0.
* :func:`best_on_validation`: which variant of a family validation selects.
* :func:`comparison_table`, :func:`describe`: several comparisons as one table, one as a sentence.
* :func:`ranking_table`: the styled table of one protocol (means and seed spreads).
* :func:`headline_table`: every model of every protocol on its headline metric, validation and test.
* :func:`versus_library`: recbook's model against a library's run of it, paired by seed, on both
  splits; :func:`verdict_words`: a comparison in words for the page.
* :func:`long_results`: recbook's and the libraries' rows as one long table (one row per source,
  model, protocol and metric), what the interactive chart ships.
* :func:`leaderboard_chart`: pick a protocol and a metric; the ranking table and the
  accuracy–cost scatter update in the browser.
* :func:`speed_table`: CPU seconds per epoch of recbook beside each library, model by model.
* :func:`scatter_layout`: where the scatter's point labels go so that none overlaps another or a
  point (a greedy placement measured with matplotlib's text extents); :func:`label_figure` draws
  that layout with matplotlib, to check it.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import altair as alt
import numpy as np
import pandas as pd

from .. import widgets
from .._checks import require_columns

__all__ = [
    "INTERVAL_LEVEL", "LIBRARY_MODELS", "LOWER_IS_BETTER", "best_on_validation", "chart_checks", "compare",
    "comparison_table", "describe", "leaderboard_chart", "long_results", "paired_gaps", "paired_interval",
    "headline_table", "label_figure", "protocol_metrics", "verdict_words", "versus_library", "ranking_table", "scatter_domains", "scatter_layout", "speed_table",
    "summary", "view_name",
]

INTERVAL_LEVEL = 0.9
"""The level of the paired intervals of :func:`compare`."""

LOWER_IS_BETTER = frozenset({"logloss"})
"""Metrics where a smaller value is better (every other metric: larger is better)."""

_HEADLINE = {"ctr": ("auc", "gauc", "logloss"),
             "retrieval": ("recall@50", "ndcg@50", "recall@10", "recall@20", "recall@100"),
             "sequence": ("recall@20", "mrr@20", "recall@10", "mrr@10", "ndcg@10")}

LIBRARY_MODELS = {"WDL": "WideDeep", "DeepFM": "DeepFM", "DIN": "DIN", "FM": "FM", "LR": "LR",
                  "GRU4Rec": "GRU4Rec-XE", "DSSM": "TwoTower", "SASRec": "SASRec"}
"""A library's model name -> the recbook model it corresponds to (the family compared)."""


def protocol_metrics(results: pd.DataFrame, protocol: str) -> list[str]:
    """The test metrics (without ``test_``) that ``protocol``'s rows carry, headline first (not
    the coverage of GAUC nor ``seen@K``, the number of earlier items in the top K: diagnostics).

    Raises:
        ValueError: if no row has that protocol.
    """
    require_columns(results, ["protocol"], name="results")
    rows = results[results["protocol"] == protocol]
    if rows.empty:
        raise ValueError(f"protocol: no rows with protocol {protocol!r}; the file has "
                         f"{sorted(results['protocol'].unique())}")
    present = [c[len("test_"):] for c in rows.columns
               if c.startswith("test_") and not c.endswith("_coverage") and not c.startswith("test_seen@")
               and rows[c].notna().any()]
    first = [m for m in _HEADLINE.get(protocol, ()) if m in present]
    return first + [m for m in present if m not in first]


def _better_sign(metric: str) -> float:
    return -1.0 if metric in LOWER_IS_BETTER else 1.0


def summary(results: pd.DataFrame, protocol: str, metrics: Sequence[str] | None = None) -> pd.DataFrame:
    """One row per model of ``protocol``: seeds, mean and standard deviation (over seeds,
    ``ddof=0``) of each test metric, CPU seconds per epoch and epochs. Rows are ranked by the
    validation metric the protocol's early stopping watches (``valid_...``, mean over seeds), never
    by a test metric: a table ranked on test makes its first row a choice made on test. Models
    without validation rows keep the results' order, after the others."""
    metrics = list(metrics) if metrics is not None else protocol_metrics(results, protocol)
    cols = ["model", "protocol", "seed", *[f"test_{m}" for m in metrics]]
    require_columns(results, cols, name="results")
    rows = results[results["protocol"] == protocol]
    if rows.empty:
        raise ValueError(f"protocol: no rows with protocol {protocol!r}")
    out = []
    for model, g in rows.groupby("model", sort=False):
        rec = {"model": model, "seeds": len(g)}
        for m in metrics:
            v = g[f"test_{m}"].astype(float)
            rec[m] = v.mean()
            rec[f"{m} sd"] = v.std(ddof=0)
        for c in ("cpu_s_per_epoch", "epochs"):
            if c in g.columns:
                rec[c] = g[c].astype(float).mean()
        valid = [c for c in g.columns if c.startswith("valid_") and g[c].notna().any()]
        rec["_valid"] = g[valid[0]].astype(float).mean() if len(valid) == 1 else np.nan
        out.append(rec)
    table = pd.DataFrame(out)
    return (table.sort_values("_valid", ascending=False, kind="stable", na_position="last")
            .drop(columns="_valid").reset_index(drop=True))


def paired_interval(diffs, level: float = INTERVAL_LEVEL) -> tuple[float, float]:
    """A ``level`` confidence interval for the mean of paired differences (one per seed): mean ±
    t quantile (``n - 1`` degrees of freedom) × standard error. With three seeds the t quantile
    for 90% is 2.92, so the interval is wide unless the differences agree closely; it measures
    seed noise only (the test users are the same for both models)."""
    from ..metrics import paired_t_interval

    d = np.asarray(diffs, dtype=float)
    if d.ndim != 1 or len(d) < 2 or np.isnan(d).any():
        raise ValueError(f"diffs: expected at least two paired differences without NaN, got {d.tolist()}")
    _, low, high = paired_t_interval(d, level, name="diffs")
    return low, high


def compare(results: pd.DataFrame, protocol: str, better: str, worse: str,
            metric: str | None = None, *, split: str = "test", level: float = INTERVAL_LEVEL) -> dict:
    """Model ``better`` against model ``worse`` on the seeds both ran, on ``split`` (``"test"`` or
    ``"valid"``, the column ``<split>_<metric>``): ``gap`` (mean paired difference, positive when
    ``better`` is better), ``low`` and ``high`` (its ``level`` interval, :func:`paired_interval`),
    ``min gap``, ``max gap``, ``ahead on`` (seeds where ``better`` is ahead), ``seeds``, ``seed sd``
    (the larger of the two models' seed-to-seed standard deviations) and ``verdict``: ``"real"``
    when the interval lies above 0, ``"reversed"`` when it lies below, else ``"tied"`` (``"too
    few seeds"`` under two shared seeds)."""
    if split not in ("test", "valid"):
        raise ValueError(f"split: expected 'test' or 'valid', got {split!r}")
    metric = metric or protocol_metrics(results, protocol)[0]
    column = f"{split}_{metric}"
    require_columns(results, ["model", "protocol", "seed", column], name="results")
    rows = results[results["protocol"] == protocol]
    series = {}
    for name in (better, worse):
        mine = rows[rows["model"] == name]
        if mine.empty:
            raise ValueError(f"results: no rows of model {name!r} under protocol {protocol!r}")
        series[name] = mine.set_index("seed")[column].astype(float)
    a, b = series[better], series[worse]
    seeds = sorted(set(a.dropna().index) & set(b.dropna().index))
    d = _better_sign(metric) * (a.loc[seeds].to_numpy() - b.loc[seeds].to_numpy())
    sd = max(a.std(ddof=0), b.std(ddof=0))
    low = high = np.nan
    if len(seeds) < 2:
        verdict = "too few seeds"
    else:
        low, high = paired_interval(d, level)
        verdict = "real" if low > 0 else "reversed" if high < 0 else "tied"
    return {"better": better, "worse": worse, "metric": f"{split} {metric}", "seeds": len(seeds),
            "gap": d.mean() if len(d) else np.nan, "low": low, "high": high,
            "min gap": d.min() if len(d) else np.nan, "max gap": d.max() if len(d) else np.nan,
            "ahead on": int((d > 0).sum()), "seed sd": sd, "verdict": verdict}


def describe(c: Mapping) -> str:
    """One comparison of :func:`compare` as a sentence fragment, e.g. ``"DIN-base vs WideDeep (test
    auc): +0.0032, 90% interval [+0.0018, +0.0047], ahead on 3 of 3 seeds -> real"``."""
    return (f"{c['better']} vs {c['worse']} ({c['metric']}): {c['gap']:+.4f}, "
            f"{INTERVAL_LEVEL:.0%} interval [{c['low']:+.4f}, {c['high']:+.4f}], "
            f"ahead on {c['ahead on']} of {c['seeds']} seeds -> {c['verdict']}")


def comparison_table(results: pd.DataFrame, protocol: str, pairs: Mapping) -> pd.DataFrame:
    """:func:`compare` for each of ``pairs`` (``{key: (better, worse[, metric[, split]])}``), one row
    per key, with the columns the chapter shows."""
    out = {}
    for key, pair in pairs.items():
        better, worse, *rest = pair
        metric = rest[0] if rest else None
        split = rest[1] if len(rest) > 1 else "test"
        out[key] = compare(results, protocol, better, worse, metric, split=split)
    return pd.DataFrame(out).T[["better", "worse", "metric", "gap", "low", "high", "ahead on", "seeds", "verdict"]]


def best_on_validation(results: pd.DataFrame, protocol: str, models: Sequence[str], metric: str | None = None) -> str:
    """The model of ``models`` with the best mean validation ``metric`` (default: the protocol's
    headline metric) over its seeds: how a variant is chosen. Ties: the first of ``models``."""
    metric = metric or protocol_metrics(results, protocol)[0]
    column = f"valid_{metric}"
    require_columns(results, ["model", "protocol", column], name="results")
    rows = results[(results["protocol"] == protocol) & results["model"].isin(list(models))]
    missing = sorted(set(models) - set(rows["model"]))
    if missing or not len(models):
        raise ValueError(f"models: no rows of {missing or list(models)} under protocol {protocol!r}")
    means = rows.groupby("model")[column].mean().reindex(list(models))
    if means.isna().any():
        raise ValueError(f"results: no {column} for {list(means[means.isna()].index)}")
    values = _better_sign(metric) * means.to_numpy()
    return str(means.index[int(np.argmax(values))])


def ranking_table(results: pd.DataFrame, protocol: str, metrics: Sequence[str] | None = None, *,
                  valid: str | None = None):
    """:func:`summary` of ``protocol`` as a styled table: mean and sd of each test metric over the
    seeds (four decimals), CPU seconds per epoch, epochs and, with ``valid`` (a metric), the mean
    validation value of that metric (the column models are chosen on)."""
    table = summary(results, protocol, metrics)
    metrics = list(metrics) if metrics is not None else protocol_metrics(results, protocol)
    cols = ["model", "seeds", *[c for m in metrics for c in (m, f"{m} sd")]]
    if valid is not None:
        column = f"valid_{valid}"
        require_columns(results, [column], name="results")
        means = results[results["protocol"] == protocol].groupby("model")[column].mean()
        table[f"valid {valid}"] = table["model"].map(means)
        cols.append(f"valid {valid}")
    cols += [c for c in ("cpu_s_per_epoch", "epochs") if c in table.columns]
    fmt = {c: "{:.4f}" for c in cols if c not in ("model", "seeds", "cpu_s_per_epoch", "epochs")}
    fmt |= {"cpu_s_per_epoch": "{:.2f}", "epochs": "{:.1f}"}
    return table[cols].style.format({k: v for k, v in fmt.items() if k in cols}, na_rep="–").hide(axis="index")


def paired_gaps(results: pd.DataFrame, protocol: str, metric: str | None = None) -> pd.DataFrame:
    """Each model against the model ranked just below it (by ``metric``), seed by seed.

    Columns: ``better``, ``worse``, ``seeds`` (shared seeds), ``gap`` (mean paired difference,
    signed so that positive favours ``better``), ``min gap`` and ``max gap`` over seeds,
    ``seed sd`` (the larger of the two models' seed-to-seed standard deviations), ``low`` and
    ``high`` (the 90% interval of the mean paired difference, :func:`paired_interval`) and
    ``verdict``: ``"real"`` when the interval lies above 0, else ``"tied"`` (see :func:`compare`).
    Models with fewer than 2 shared seeds get ``"too few seeds"``.
    """
    metric = metric or protocol_metrics(results, protocol)[0]
    # Neighbours on the reported metric: this describes the test results, it chooses nothing.
    means = summary(results, protocol, [metric]).set_index("model")[metric]
    order = list(means.sort_values(ascending=metric in LOWER_IS_BETTER, kind="stable").index)
    out = [compare(results, protocol, hi, lo, metric) for hi, lo in zip(order[:-1], order[1:])]
    return pd.DataFrame(out, columns=["better", "worse", "seeds", "gap", "low", "high", "min gap", "max gap",
                                      "seed sd", "verdict"])


def headline_table(results: pd.DataFrame, exclude: Sequence[str] = ()) -> pd.DataFrame:
    """The chapter's first table: every model of every protocol on its headline metric (AUC,
    Recall@50, Recall@20), mean validation and test value over the seeds and the test value's seed
    standard deviation, ranked by validation within each protocol (the column a model is chosen
    on). ``exclude``: models left out (named in the text)."""
    require_columns(results, ["model", "protocol", "seed"], name="results")
    out = []
    for protocol in dict.fromkeys(results["protocol"]):
        rows = results[(results["protocol"] == protocol) & ~results["model"].isin(list(exclude))]
        if rows.empty:
            continue
        metric = protocol_metrics(rows, protocol)[0]
        valid = rows.groupby("model", sort=False)[f"valid_{metric}"].mean() \
            if f"valid_{metric}" in rows.columns else pd.Series(np.nan, index=rows["model"].unique())
        table = summary(rows, protocol, [metric])
        for _, r in table.iterrows():
            out.append({"protocol": protocol, "metric": metric, "model": r["model"], "seeds": int(r["seeds"]),
                        "validation": float(valid.get(r["model"], np.nan)), "test": float(r[metric]),
                        "test sd": float(r[f"{metric} sd"])})
    return pd.DataFrame(out)


def versus_library(results: pd.DataFrame, libraries: pd.DataFrame, model: str, library: str,
                   library_model: str | None = None, *, protocol: str = "ctr", metric: str | None = None,
                   level: float = INTERVAL_LEVEL) -> pd.DataFrame:
    """recbook's ``model`` against ``library``'s run of ``library_model`` (default: the same name),
    paired by seed, on validation and on test: one row per split with the columns of
    :func:`compare` (``better`` is recbook's model, named ``"<model> (recbook)"``)."""
    require_columns(libraries, ["library", "model", "protocol", "seed", "status"], name="libraries")
    library_model = library_model or model
    theirs = libraries[(libraries["library"] == library) & (libraries["model"] == library_model)
                       & (libraries["protocol"] == protocol) & (libraries["status"] == "ok")]
    if theirs.empty:
        raise ValueError(f"libraries: no successful rows of {library} {library_model!r} under {protocol!r}")
    ours = results[(results["model"] == model) & (results["protocol"] == protocol)]
    a, b = f"{model} (recbook)", f"{library_model} ({library})"
    both = pd.concat([ours.assign(model=a), theirs.assign(model=b)], ignore_index=True)
    return pd.DataFrame([compare(both, protocol, a, b, metric, split=s, level=level) for s in ("valid", "test")],
                        index=["validation", "test"])


def verdict_words(c: Mapping, unit: str = "", *, seeds: bool = False) -> str:
    """One comparison of :func:`compare` in words for the page: ``"ahead by 0.0059 (90% interval
    +0.0032 to +0.0086)"``, ``"behind by ..."`` or ``"tied: +0.0010 (...)"``; with ``seeds``, the
    parenthesis also says on how many seeds the first model is ahead."""
    interval = f"{INTERVAL_LEVEL:.0%} interval {c['low']:+.4f} to {c['high']:+.4f}"
    if seeds:
        interval += f", ahead on {c['ahead on']} of {c['seeds']} seeds"
    unit = f" {unit}" if unit else ""
    if c["verdict"] == "real":
        return f"ahead by {c['gap']:.4f}{unit} ({interval})"
    if c["verdict"] == "reversed":
        return f"behind by {-c['gap']:.4f}{unit} ({interval})"
    return f"tied: {c['gap']:+.4f}{unit} ({interval})"


def long_results(bench: pd.DataFrame, libraries: pd.DataFrame | None = None) -> pd.DataFrame:
    """recbook's rows and the libraries' successful rows as one long table.

    One row per (source, model, protocol, metric): ``source`` (``"recbook"`` or the library's
    name), ``version``, ``model``, ``family`` (the recbook model a library's model corresponds to,
    :data:`LIBRARY_MODELS`), ``protocol``, ``metric``, ``mean``, ``sd`` (over seeds, ``ddof=0``),
    ``seeds``, ``cpu_s_per_epoch`` (mean over seeds) and ``better`` (+1 when larger is better,
    -1 for logloss).
    """
    frames = [bench.assign(library="recbook", library_version=bench["recbook"].astype(str)
                           if "recbook" in bench.columns else "")]
    if libraries is not None and not libraries.empty:
        require_columns(libraries, ["library", "library_version", "model", "protocol", "seed", "status"],
                        name="libraries")
        frames.append(libraries[libraries["status"] == "ok"])
    out = []
    for frame in frames:
        for (source, version, model, protocol), g in frame.groupby(
                ["library", "library_version", "model", "protocol"], sort=False):
            cpu = g["cpu_s_per_epoch"].astype(float).mean() if "cpu_s_per_epoch" in g.columns else np.nan
            for m in protocol_metrics(g, protocol):
                v = g[f"test_{m}"].dropna().astype(float)
                if v.empty:
                    continue
                out.append({"source": source, "version": str(version), "model": model,
                            "family": model if source == "recbook" else LIBRARY_MODELS.get(model, model),
                            "protocol": protocol, "metric": m, "mean": v.mean(), "sd": v.std(ddof=0),
                            "seeds": len(v), "cpu_s_per_epoch": cpu, "better": _better_sign(m)})
    return pd.DataFrame(out)


BOOK_ARCH = " (book's architecture)"
"""Suffix of a library's source in ``speed.csv`` when it ran with the book's architecture."""
EQUAL_RATIO = "at the book's architecture ÷ recbook"
EQUAL_RECBOOK = "recbook, same architecture"
SAME_ARCHITECTURE = {"WideDeep": "WideDeep-nocross"}
"""recbook's model with a library model's architecture where the family's entry differs: no
library's Wide & Deep has cross-product features, so its counterpart is WideDeep-nocross (the
wide part is one weight per feature value, plus the MLP)."""


def speed_table(long: pd.DataFrame, protocol: str = "ctr") -> pd.DataFrame:
    """CPU seconds per epoch (one thread) per model family: recbook's fastest variant of the
    family beside each library's, the ratio of the fastest library to recbook, and (when the timing
    run has an ``arch`` column) the ratio of the fastest library **at the book's architecture**:
    its row with the book's MLP (source ending in :data:`BOOK_ARCH`), or its default row for a
    model without an MLP (LR, FM: the default is the book's architecture), to recbook's model of
    the same architecture (:data:`SAME_ARCHITECTURE`, column :data:`EQUAL_RECBOOK` when it differs
    from the family's entry)."""
    require_columns(long, ["source", "family", "protocol", "cpu_s_per_epoch"], name="long")
    rows = long[(long["protocol"] == protocol)].drop_duplicates(["source", "model", "protocol"])
    mine = rows[rows["source"] == "recbook"]
    others = rows[rows["source"] != "recbook"]
    has_arch = "arch" in rows.columns
    out = []
    for family, g in others.groupby("family", sort=False):
        ours = mine[mine["model"] == family]["cpu_s_per_epoch"]
        if ours.empty or ours.isna().all():
            continue
        rec = {"model": family, "recbook": float(ours.min())}
        for source, h in g.groupby("source", sort=False):
            rec[source] = float(h["cpu_s_per_epoch"].min())
        libs = [v for k, v in rec.items() if k not in ("model", "recbook")]
        rec["fastest library ÷ recbook"] = min(libs) / rec["recbook"]
        if has_arch:
            booked = g["source"].str.endswith(BOOK_ARCH)
            equal = g[booked] if booked.any() else g
            same = mine[mine["model"] == SAME_ARCHITECTURE.get(family, family)]["cpu_s_per_epoch"]
            base = float(same.min()) if not same.empty else rec["recbook"]
            if family in SAME_ARCHITECTURE and not same.empty:
                rec[EQUAL_RECBOOK] = base
            rec[EQUAL_RATIO] = float(equal["cpu_s_per_epoch"].min()) / base
        out.append(rec)
    table = pd.DataFrame(out)
    if not out:
        return table
    ratios = [c for c in ("fastest library ÷ recbook", EQUAL_RATIO) if c in table.columns]
    first = ["model", "recbook"] + ([EQUAL_RECBOOK] if EQUAL_RECBOOK in table.columns else [])
    return table[first + [c for c in table.columns if c not in ratios + first] + ratios]


def view_name(protocol, metric):
    """The chart's dropdown option for a protocol and a metric: ``"ctr · auc"`` (works on
    strings and on pandas Series)."""
    return protocol + " · " + metric


def chart_checks(long: pd.DataFrame, views: Sequence[tuple[str, str]] | None = None) -> list[dict]:
    """The browser checks of :func:`leaderboard_chart`: for each ``(protocol, metric)`` of ``views``
    (default: AUC and logloss of ``ctr`` and the headline metric of every other protocol), the
    title text ``"best test mean: MODEL (SOURCE) VALUE"`` computed here in pandas."""
    require_columns(long, ["source", "model", "protocol", "metric", "mean", "better"], name="long")
    if views is None:
        views = []
        for p in dict.fromkeys(long["protocol"]):
            present = list(dict.fromkeys(long.loc[long["protocol"] == p, "metric"]))
            wanted = [m for m in (("auc", "logloss") if p == "ctr" else _HEADLINE.get(p, ())[:1]) if m in present]
            views += [(p, m) for m in (wanted or present[:1])]
    out = []
    for p, m in views:
        g = long[(long["protocol"] == p) & (long["metric"] == m)]
        if g.empty:
            raise ValueError(f"views: no rows for protocol {p!r} and metric {m!r}")
        top = g.loc[(g["better"] * g["mean"]).idxmax()]
        out.append({"set": {"view": view_name(p, m)},
                    "texts": [f"best test mean: {top['model']} ({top['source']}) {top['mean']:.4f}"]})
    return out


# --------------------------------------------------------------------------------------------
# The scatter's labels: placed in Python so that none overlaps another or a point
# --------------------------------------------------------------------------------------------

SCATTER_WIDTH, SCATTER_HEIGHT = 560, 320
"""The scatter's size in the chart (pixels)."""
LAYOUT_WIDTH = 250
"""The narrowest scatter the labels are laid out for (a phone of 390 px narrows the plot to about
this: the page's margins and the y axis take the rest; the legend sits below the plot).
A layout without overlaps at this width has none at any larger width: every label is anchored at
a fraction of the width on the side facing its point, so horizontal gaps only grow, and the height
does not change."""
LABEL_FONT_PX = 9
MARKER_RADIUS = 5.0   # a filled point of size 70 (px²) has a radius of about 4.7 px
_GAP = 1.0            # pixels kept free around every label box
_RENDERER = []


def _text_size(text: str, font_px: float = LABEL_FONT_PX) -> tuple[float, float]:
    """Width and height in pixels of ``text`` at ``font_px``, as matplotlib's renderer measures
    it at 72 dpi (one point = one pixel) in its default sans-serif font (DejaVu Sans, wider than
    most browsers' sans-serif: a conservative measure)."""
    from matplotlib.backends.backend_agg import RendererAgg
    from matplotlib.font_manager import FontProperties

    if not _RENDERER:
        _RENDERER.append(RendererAgg(10, 10, 72))
    w, h, _ = _RENDERER[0].get_text_width_height_descent(str(text), FontProperties(size=font_px), ismath=False)
    return float(w), float(max(h, font_px * 1.2))


def scatter_domains(long: pd.DataFrame) -> dict:
    """Per view (:func:`view_name`): the scatter's fixed domains ``(x_low, x_high, y_low,
    y_high)``, CPU seconds per epoch (log scale) and the metric's mean, with room around the points
    for their labels. Fixed domains (not Vega's rounded ones) let Python know where each point is
    drawn."""
    require_columns(long, ["protocol", "metric", "mean", "cpu_s_per_epoch"], name="long")
    out = {}
    for (p, m), g in long.groupby(["protocol", "metric"], sort=False):
        g = g[g["cpu_s_per_epoch"] > 0]
        if g.empty:
            continue
        lx = np.log10(g["cpu_s_per_epoch"].astype(float))
        span = max(float(lx.max() - lx.min()), 0.5)
        y = g["mean"].astype(float)
        yspan = float(y.max() - y.min()) or max(abs(float(y.mean())) * 0.02, 1e-3)
        out[view_name(p, m)] = (10 ** (float(lx.min()) - 0.06 * span), 10 ** (float(lx.max()) + 0.25 * span),
                                float(y.min()) - 0.10 * yspan, float(y.max()) + 0.10 * yspan)
    return out


def _place(points: np.ndarray, sizes: Sequence[tuple[float, float]], width: float, height: float):
    """Greedy label placement in pixels (y down). ``points``: ``[n, 2]`` pixel positions; ``sizes``:
    each label's (width, height). Each label takes, among positions around its point (then
    anywhere in the plot), the one nearest its point whose box stays inside the plot and clear of
    every point and of every label placed before it; crowded points choose first. Returns ``[n, 4]``
    boxes (left, top, right, bottom) and each label's alignment on its anchor (``"left"``: the box
    starts there, right of its point; ``"right"``: it ends there; ``"center"``: above or below)."""
    r = MARKER_RADIUS
    obstacles = [np.column_stack([points - r, points + r])]            # [left, top, right, bottom]
    boxes, aligns = np.zeros((len(points), 4)), [""] * len(points)
    dist = np.hypot(*(points[:, None, :] - points[None, :, :]).transpose(2, 0, 1))
    order = np.argsort(-(dist < 40).sum(1), kind="stable")
    near_dx = [r + 2, r + 6, r + 12, r + 20, r + 30, r + 44]
    near_dy = [0, -7, 7, -13, 13, -20, 20, -28, 28, -38, 38, -50, 50]
    for i in order:
        (px, py), (w, h) = points[i], sizes[i]
        cands, kinds = [], []
        for dx in near_dx:
            for dy in near_dy:
                cands += [(px + dx, py + dy - h / 2), (px - dx - w, py + dy - h / 2)]
                kinds += ["left", "right"]
        for dy in (r + 2, r + 8, r + 16, r + 26):
            cands += [(px - w / 2, py - dy - h), (px - w / 2, py + dy)]
            kinds += ["center", "center"]
        gx, gy = np.meshgrid(np.arange(0.0, width - w + 1e-9, 3.0), np.arange(0.0, height - h + 1e-9, 3.0))
        cands += list(zip(gx.ravel(), gy.ravel()))
        kinds = np.asarray(kinds + ["grid"] * gx.size)
        c = np.asarray(cands, dtype=float)
        c = np.column_stack([c, c + [w, h]])
        nx = np.clip(px, c[:, 0], c[:, 2]) - px
        ny = np.clip(py, c[:, 1], c[:, 3]) - py
        cost = (np.hypot(nx, ny) + 2.0 * (kinds == "right") + 4.0 * (kinds == "center") + 8.0 * (kinds == "grid"))
        inside = (c[:, 0] >= 0) & (c[:, 1] >= 0) & (c[:, 2] <= width) & (c[:, 3] <= height)
        ob = np.vstack(obstacles)
        clash = ((c[:, None, 0] < ob[None, :, 2] + _GAP) & (c[:, None, 2] > ob[None, :, 0] - _GAP)
                 & (c[:, None, 1] < ob[None, :, 3] + _GAP) & (c[:, None, 3] > ob[None, :, 1] - _GAP)).any(1)
        ok = np.flatnonzero(inside & ~clash)
        if not len(ok):
            raise ValueError(f"labels: no free place for a label of {w:.0f} x {h:.0f} px in a "
                             f"{width} x {height} plot; expected fewer or shorter labels")
        best = ok[np.argmin(cost[ok])]
        box, kind = c[best], str(kinds[best])
        if kind == "grid":   # anchored on the side facing its point
            kind = "left" if box[0] >= px else "right" if box[2] <= px else "center"
        boxes[i], aligns[i] = box, kind
        obstacles.append(box[None, :])
    return boxes, aligns


def scatter_layout(long: pd.DataFrame, *, width: float = LAYOUT_WIDTH, height: float = SCATTER_HEIGHT) -> pd.DataFrame:
    """Where each point label of :func:`leaderboard_chart`'s scatter goes, in data coordinates,
    laid out at ``width`` x ``height`` pixels (:func:`_place`). One row per point (``view``,
    ``source``, ``model``): ``align`` and ``label_x``, ``label_y`` (the label's anchor at
    mid-height: its left edge, right edge or centre), ``lead_x``, ``lead_y`` (the point of the
    label's edge facing its point: the end of the leader line) and ``leader`` (1 when the label is
    more than 8 pixels from its point: a line joins them)."""
    domains = scatter_domains(long)
    rows = []
    for (p, m), g in long.groupby(["protocol", "metric"], sort=False):
        g = g[g["cpu_s_per_epoch"] > 0]
        if g.empty:
            continue
        view = view_name(p, m)
        x0, x1, y0, y1 = domains[view]
        lx0, lx1 = np.log10(x0), np.log10(x1)
        fx = (np.log10(g["cpu_s_per_epoch"].astype(float).to_numpy()) - lx0) / (lx1 - lx0)
        fy = (g["mean"].astype(float).to_numpy() - y0) / (y1 - y0)
        pts = np.column_stack([fx * width, (1 - fy) * height])
        boxes, aligns = _place(pts, [_text_size(t) for t in g["model"]], width, height)
        for (src, model), (px, py), box, align in zip(g[["source", "model"]].itertuples(index=False), pts,
                                                      boxes, aligns):
            anchor = {"left": box[0], "right": box[2], "center": (box[0] + box[2]) / 2}[align]
            # the leader ends on the box's edge facing the point (above or below: under the point)
            lead_px = px if align == "center" else anchor
            lead_py = (box[3] if box[3] <= py else box[1]) if align == "center" else np.clip(py, box[1], box[3])
            rows.append({"view": view, "source": src, "model": model, "align": align,
                         "label_x": 10 ** (lx0 + anchor / width * (lx1 - lx0)),
                         "label_y": y0 + (1 - (box[1] + box[3]) / 2 / height) * (y1 - y0),
                         "lead_x": 10 ** (lx0 + lead_px / width * (lx1 - lx0)),
                         "lead_y": y0 + (1 - lead_py / height) * (y1 - y0),
                         "leader": int(np.hypot(lead_px - px, lead_py - py) > 8)})
    return pd.DataFrame(rows)


def label_figure(long: pd.DataFrame, view: str, *, width: float = LAYOUT_WIDTH, height: float = SCATTER_HEIGHT,
                 layout: pd.DataFrame | None = None):
    """The scatter of ``view`` with its labels where ``layout`` (default :func:`scatter_layout`)
    puts them, drawn with matplotlib at ``width`` x ``height`` pixels (72 dpi, the axes filling the
    figure, the chart's fixed domains): a second drawing of the layout, whose text extents show
    whether labels overlap. Returns the figure, its axes, the text artists and the points' pixel
    positions (``[n, 2]``, y up)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    domains = scatter_domains(long)
    if view not in domains:
        raise ValueError(f"view: expected one of {list(domains)}, got {view!r}")
    layout = scatter_layout(long, height=height) if layout is None else layout
    lay = layout[layout["view"] == view]
    x0, x1, y0, y1 = domains[view]
    fig = Figure(figsize=(width / 72, height / 72), dpi=72)
    FigureCanvasAgg(fig)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xscale("log")
    ax.set_xlim(x0, x1)
    ax.set_ylim(y0, y1)
    pts = long[(view_name(long["protocol"], long["metric"]) == view) & (long["cpu_s_per_epoch"] > 0)]
    ax.scatter(pts["cpu_s_per_epoch"], pts["mean"], s=70.0)
    texts = [ax.text(r.label_x, r.label_y, r.model, ha=r.align, va="center", fontsize=LABEL_FONT_PX)
             for r in lay.itertuples(index=False)]
    for r in lay[lay["leader"] == 1].itertuples(index=False):
        pt = pts[(pts["source"] == r.source) & (pts["model"] == r.model)].iloc[0]
        ax.plot([pt["cpu_s_per_epoch"], r.lead_x], [pt["mean"], r.lead_y], lw=0.6, color="0.5")
    xy = ax.transData.transform(pts[["cpu_s_per_epoch", "mean"]].to_numpy(dtype=float))
    return fig, ax, texts, xy


def leaderboard_chart(long: pd.DataFrame, *, protocol: str = "ctr", metric: str = "auc",
                      checks: Sequence[dict] | None = None) -> widgets.BrowserChart:
    """Pick a protocol and a metric (one dropdown, :func:`view_name`): a ranking table (best first) and an accuracy–cost scatter
    (CPU seconds per epoch, log scale) update **in the browser** from the shipped long table.

    ``checks`` (see :func:`recbook.widgets.browser_chart`; default :func:`chart_checks`) require
    the title text ``"best test mean: MODEL (SOURCE) VALUE"`` for a protocol and metric,
    computed in Python. The title reports the test results; it chooses nothing.
    """
    require_columns(long, ["source", "model", "protocol", "metric", "mean", "sd", "seeds",
                           "cpu_s_per_epoch", "better"], name="long")
    data = long[["source", "model", "protocol", "metric", "mean", "sd", "seeds", "cpu_s_per_epoch",
                 "better"]].copy()
    data["cpu_s_per_epoch"] = data["cpu_s_per_epoch"].fillna(-1.0)
    data.insert(0, "view", view_name(data["protocol"], data["metric"]))
    data = data.drop(columns=["protocol", "metric"])
    layout = scatter_layout(long)
    data = data.merge(layout, on=["view", "source", "model"], how="left")
    data["align"] = data["align"].fillna("")   # no cost measured: no point, no label
    data["leader"] = data["leader"].fillna(0).astype(int)
    data[["label_x", "label_y", "lead_x", "lead_y"]] = data[["label_x", "label_y", "lead_x", "lead_y"]].fillna(0.0)
    table = widgets.CsvData(data, name="leaderboard",
                            decimals={"mean": 4, "sd": 4, "cpu_s_per_epoch": 2, "label_x": 5, "label_y": 6,
                                      "lead_x": 5, "lead_y": 6})
    views = list(dict.fromkeys(data["view"]))
    first = view_name(protocol, metric)
    if first not in views:
        raise ValueError(f"protocol, metric: {first!r} is not in the table; expected one of {views}")
    view = widgets.dropdown("view", views, first, label="protocol · metric")
    base = (alt.Chart(table.ref)
            .transform_filter("datum.view == view")
            .transform_calculate(score="datum.better * datum.mean")
            .transform_window(rank="row_number()", sort=[alt.SortField("score", order="descending")]))
    title = (base.transform_filter("datum.rank == 1")
             .transform_calculate(text="'best test mean: ' + datum.model + ' (' + datum.source + ') ' + "
                                       "format(datum.mean, '.4f')")
             .mark_text(align="left", fontSize=13, fontWeight="bold")
             .encode(text="text:N", x=alt.value(0), y=alt.value(8)).properties(width=640, height=16))
    row = alt.Y("rank:O", axis=None)
    cols = []
    for field, header, width, expr in (
            ("rank", "#", 24, "datum.rank"),
            ("model", "model", 170, "datum.model"),
            ("source", "source", 120, "datum.source"),
            ("value", "mean ± sd over seeds", 150, "format(datum.mean, '.4f') + (datum.seeds > 1 ? "
                                                 "' ± ' + format(datum.sd, '.4f') : ' (1 seed)')"),
            ("cpu", "CPU s/epoch", 90, "datum.cpu_s_per_epoch < 0 ? '–' : format(datum.cpu_s_per_epoch, '.2f')")):
        cols.append(base.transform_calculate(cell=expr).mark_text(align="left")
                    .encode(text="cell:N", y=row, x=alt.value(0)).properties(title=header, width=width))
    ranking = alt.hconcat(*cols, spacing=4)
    # Fixed domains per view and labels placed in Python (scatter_layout): no two labels overlap.
    domains = scatter_domains(long)

    def domain(i, j):
        cases = " : ".join(f"view == '{v}' ? [{d[i]!r}, {d[j]!r}]" for v, d in domains.items())
        return alt.ExprRef(expr=f"{cases} : [1, 10]")

    xscale = alt.Scale(type="log", domain=domain(0, 1), nice=False)
    yscale = alt.Scale(zero=False, domain=domain(2, 3), nice=False)
    points = base.transform_filter("datum.cpu_s_per_epoch > 0")
    scatter = (points.mark_point(filled=True, size=70)
               .encode(x=alt.X("cpu_s_per_epoch:Q", scale=xscale,
                               title="CPU seconds per epoch (one thread, log scale)"),
                       y=alt.Y("mean:Q", scale=yscale, title="test metric (mean over seeds)"),
                       color=alt.Color("source:N", title="source",   # below: the plot keeps a phone's width
                                       legend=alt.Legend(orient="bottom", direction="horizontal", columns=2)),
                       tooltip=["model:N", "source:N", alt.Tooltip("mean:Q", format=".4f"),
                                alt.Tooltip("sd:Q", format=".4f"), "cpu_s_per_epoch:Q"])
               .properties(width=SCATTER_WIDTH, height=SCATTER_HEIGHT))
    leaders = (points.transform_filter("datum.leader == 1").mark_rule(strokeWidth=0.6, color="#888")
               .encode(x=alt.X("cpu_s_per_epoch:Q", scale=xscale), y=alt.Y("mean:Q", scale=yscale),
                       x2="lead_x:Q", y2="lead_y:Q"))
    labels = [points.transform_filter(f"datum.align == '{a}'")
              .mark_text(align=a, baseline="middle", fontSize=LABEL_FONT_PX)
              .encode(x=alt.X("label_x:Q", scale=xscale), y=alt.Y("label_y:Q", scale=yscale), text="model:N")
              for a in ("left", "right", "center")]
    chart = alt.vconcat(title, ranking, alt.layer(scatter, leaders, *labels), spacing=12)
    if checks is None:
        checks = chart_checks(long)
    return widgets.browser_chart(chart, params=[view], data=[table], checks=checks)

"""Helpers of the scaling chapter: cost models, their measured counterparts, and the figures.

* :func:`communication_mb`: megabytes each process receives in one training step under the three
  strategies (data-parallel with dense gradients, with sparse gradients, model-parallel
  embeddings): the formulas that :func:`cost_chart` evaluates in the browser.
* :func:`cost_chart`: pick the table size, batch, dimension and number of processes; bars of the
  three costs, computed in the browser.
* :func:`plot_cost`: step time and memory per process against rows per table, for each strategy,
  from a live run and the committed larger run.
* :func:`plot_vocabulary`: distinct ids against rows streamed, and frequency filtering against
  hashing (share of rows that lose their own vector against table size).
* :func:`plan_frame`: a sharding plan as a table.
* :func:`ann_frame`: the committed vector-search and product-quantisation results side by side.
"""
from __future__ import annotations

from collections.abc import Mapping

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from .._checks import require_columns, require_positive_int

STRATEGY_LABELS = {
    "single": "one process, sparse gradients",
    "ddp_dense": "data-parallel, dense gradients",
    "ddp_sparse": "data-parallel, sparse gradients",
    "torchrec": "model-parallel tables (TorchRec)",
}
STRATEGY_COLORS = {"single": "#7f7f7f", "ddp_dense": "#d62728", "ddp_sparse": "#1f77b4", "torchrec": "#2ca02c"}


def communication_mb(rows: int, *, fields: int = 2, dim: int = 16, batch: int = 4096, world: int = 2) -> dict:
    """Megabytes (10^6 bytes) that one process receives per training step, float32 vectors,
    int64 ids, for ``fields`` tables of ``rows`` rows each and a global ``batch`` split over
    ``world`` processes:

    * ``ddp_dense``: a ring all-reduce of every table's gradient, ``2 (W-1)/W * F * rows * D * 4``;
    * ``ddp_sparse``: an all-gather of the other processes' sparse gradients (at most one row per
      example and field, with its id), ``(W-1) * F * min(B/W, rows) * (4 D + 8)``;
    * ``torchrec`` (table-wise): two all-to-alls of pooled vectors (forward; gradients backward)
      and one of ids, ``2 (W-1)/W * B * F * D * 4 / W + (W-1)/W * B * F * 8 / W``.
    """
    rows = require_positive_int(rows, name="rows")
    fields = require_positive_int(fields, name="fields")
    dim = require_positive_int(dim, name="dim")
    batch = require_positive_int(batch, name="batch")
    world = require_positive_int(world, name="world")
    share = (world - 1) / world
    local = batch / world
    return {
        "ddp_dense": 2 * share * fields * rows * dim * 4 / 1e6,
        "ddp_sparse": (world - 1) * fields * min(local, rows) * (4 * dim + 8) / 1e6,
        "torchrec": (2 * share * local * fields * dim * 4 + share * local * fields * 8) / 1e6,
    }


def cost_chart():
    """The three communication costs per step, computed in the browser from the controls."""
    import altair as alt

    from .. import widgets

    strategies = ["ddp_dense", "ddp_sparse", "torchrec"]
    data = widgets.CsvData(pd.DataFrame({"strategy": strategies, "label": [STRATEGY_LABELS[s] for s in strategies]}),
                           name="scale_strategies")
    log_rows = widgets.slider("log_rows", 4, 9, 0.5, 6, label="rows per table (10^x)")
    log_batch = widgets.slider("log_batch", 10, 16, 1, 12, label="global batch (2^x)")
    dim = widgets.dropdown("dim", [8, 16, 32, 64, 128], 16, label="dimension")
    world = widgets.dropdown("world", [2, 4, 8, 16, 64], 2, label="processes")
    fields = 2
    mb = ("datum.strategy == 'ddp_dense' ? 2 * (world - 1) / world * {F} * pow(10, log_rows) * dim * 4 / 1e6 : "
          "datum.strategy == 'ddp_sparse' ? (world - 1) * {F} * min(pow(2, log_batch) / world, pow(10, log_rows)) "
          "* (4 * dim + 8) / 1e6 : "
          "(2 * (world - 1) / world * pow(2, log_batch) / world * {F} * dim * 4 "
          "+ (world - 1) / world * pow(2, log_batch) / world * {F} * 8) / 1e6").format(F=fields)
    base = alt.Chart(data.ref).transform_calculate(mb=mb).transform_calculate(
        text="format(datum.mb, ',.2f') + ' MB'", floor="0.001")
    ticks = [10.0 ** e for e in range(-3, 9)]
    # a log axis has no zero: the bars start at its left edge (floor)
    bars = base.mark_bar().encode(
        y=alt.Y("label:N", title=None, sort=strategies, axis=alt.Axis(labelLimit=260)),
        x=alt.X("mb:Q", scale=alt.Scale(type="log", domain=[1e-3, 1e8]),
                title="MB received per process per step (log scale)",
                axis=alt.Axis(format="~g", values=ticks, labelExpr="datum.value >= 1e4 ? format(datum.value, '.0e') : datum.label")),
        x2="floor:Q",
        color=alt.Color("strategy:N", legend=None,
                        scale=alt.Scale(domain=strategies, range=[STRATEGY_COLORS[s] for s in strategies])))
    labels = base.mark_text(align="left", dx=4, fontSize=12).encode(
        y=alt.Y("label:N", sort=strategies), x="mb:Q", text="text:N")
    chart = (bars + labels).properties(width=420, height=150,
                                       title=f"{fields} tables; float32 vectors, int64 ids")
    checks = []
    for lr, lb, d, w in [(6, 12, 16, 2), (8, 14, 64, 8), (4.5, 16, 32, 64)]:
        mbs = communication_mb(int(round(10 ** lr)), fields=fields, dim=d, batch=2 ** lb, world=w)
        checks.append({"set": {"log_rows": lr, "log_batch": lb, "dim": d, "world": w},
                       "texts": [f"{v:,.2f} MB" for v in mbs.values()]})
    return widgets.browser_chart(chart, params=[log_rows, log_batch, dim, world], data=[data], checks=checks)


def plot_cost(live: pd.DataFrame, committed: pd.DataFrame | None = None, *, axes=None):
    """Step time (ms) and weights + gradients + optimiser state per process (MB) against rows per
    table, one line per strategy; the committed larger run solid, the live run as open markers."""
    require_columns(live, ["rows", "strategy", "step_s", "state_bytes"], name="live")
    if axes is None:
        _, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for table, style in ((committed, dict(ls="-", marker="o")), (live, dict(ls="none", marker="s", mfc="none", ms=9))):
        if table is None:
            continue
        require_columns(table, ["rows", "strategy", "step_s", "state_bytes"], name="committed")
        for strategy, part in table.groupby("strategy", sort=False):
            part = part.sort_values("rows")
            label = STRATEGY_LABELS.get(strategy, strategy) if table is committed or committed is None else None
            axes[0].plot(part["rows"], part["step_s"] * 1000, color=STRATEGY_COLORS.get(strategy), label=label, **style)
            axes[1].plot(part["rows"], part["state_bytes"] / 2 ** 20, color=STRATEGY_COLORS.get(strategy), **style)
    for ax, ylabel in zip(axes, ["milliseconds per training step", "MB per process (weights, gradients,\noptimiser state)"]):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("rows per table (2 tables, dimension 16)")
        ax.set_ylabel(ylabel)
        ax.grid(True, which="major", alpha=0.3)
    axes[0].legend(fontsize=9, loc="upper left")
    if committed is not None:
        axes[1].plot([], [], "ks", mfc="none", ls="none", label="this page's run")
        axes[1].plot([], [], "ko-", label="larger committed run")
        axes[1].legend(fontsize=9, loc="upper left")
    plt.tight_layout()
    return axes


def plot_vocabulary(stats: pd.DataFrame, bounded: pd.DataFrame, *, axes=None):
    """Left: distinct ids against rows streamed. Right: table rows against the share of rows
    whose id loses a vector of its own, for frequency filtering and for hashing."""
    require_columns(stats, ["rows", "distinct"], name="stats")
    require_columns(bounded, ["method", "param", "table_rows", "rows_affected"], name="bounded")
    if axes is None:
        _, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    axes[0].plot(stats["rows"], stats["distinct"], "o-", label="distinct item ids")
    axes[0].plot(stats["rows"], stats["rows"], "k:", label="one new id per row")
    axes[0].set_xscale("log")
    axes[0].set_yscale("log")
    axes[0].set_xlabel("rows streamed")
    axes[0].set_ylabel("ids")
    axes[0].legend(fontsize=9)
    for method, marker, label in (("filter", "o-", "keep ids seen ≥ k times"), ("hash", "s-", "hash into b rows")):
        part = bounded[bounded["method"] == method].sort_values("table_rows")
        axes[1].plot(part["table_rows"], part["rows_affected"] * 100, marker, label=label)
        for _, r in part.iterrows():
            axes[1].annotate(f"{'k' if method == 'filter' else 'b'}={int(r['param']):,}",
                             (r["table_rows"], r["rows_affected"] * 100), fontsize=9,
                             xytext=(4, 4), textcoords="offset points")
    axes[1].set_xscale("log")
    axes[1].set_xlabel("table rows")
    axes[1].set_ylabel("% of rows without a vector of their own")
    axes[1].legend(fontsize=9)
    plt.tight_layout()
    return axes


def plan_frame(plan: list) -> pd.DataFrame:
    """A sharding plan (the worker's rows) as a table: table, sharding, rank, shard shape."""
    if not isinstance(plan, list) or not plan or not all(isinstance(r, Mapping) for r in plan):
        raise ValueError("plan: expected a non-empty list of shard rows (a worker's 'plan')")
    frame = pd.DataFrame(plan)
    frame["shard"] = [f"rows {r:,}, columns {c0}–{c0 + c - 1}" for r, c, c0 in
                      zip(frame["rows"], frame["cols"], frame["col_offset"])]
    return frame[["table", "sharding", "kernel", "rank", "shard"]]


def ann_frame(ann: pd.DataFrame, pq: pd.DataFrame, *, n: int = 1_000_000) -> pd.DataFrame:
    """At ``n`` items: the committed IVF-Flat and HNSW settings (recall@100, query CPU seconds for
    1,000 queries) next to IVF-PQ with and without re-ranking."""
    require_columns(ann, ["dataset", "n", "method", "param_name", "param", "recall", "query_s", "build_s"], name="ann")
    require_columns(pq, ["n", "method", "rerank", "recall", "query_s", "bytes_per_vector", "build_s"], name="pq")
    a = ann[(ann["dataset"] == "clustered") & (ann["n"] == n) & ann["method"].isin(["exact", "ivf", "hnsw"])]
    a = a.assign(setting=a["param_name"].astype(str) + "=" + a["param"].astype(str), bytes_per_vector=256)
    a.loc[a["method"] == "exact", "setting"] = "-"
    p = pq[(pq["n"] == n) & (pq["method"] == "ivf-pq")]
    p = p.assign(setting="re-rank " + p["rerank"].astype(str) + "×k")
    cols = ["method", "setting", "recall", "query_s", "build_s", "bytes_per_vector"]
    return pd.concat([a[cols], p[cols]], ignore_index=True)

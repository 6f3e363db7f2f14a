"""Helpers of the scaling chapter: the communication formulas, the browser chart's checks, the
figures and tables, and the committed results they read."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from recbook.bench import read_results  # noqa: E402
from recbook.chapters import scaling as chapter  # noqa: E402
from recbook.scale.ann import pq_table, rerank  # noqa: E402


def test_communication_by_hand():
    mb = chapter.communication_mb(1_000_000, fields=2, dim=16, batch=4096, world=2)
    assert mb["ddp_dense"] == pytest.approx(2 * 0.5 * 2 * 1_000_000 * 16 * 4 / 1e6)  # 128 MB
    assert mb["ddp_sparse"] == pytest.approx(1 * 2 * 2048 * (64 + 8) / 1e6)
    assert mb["torchrec"] == pytest.approx((2 * 0.5 * 2048 * 2 * 64 + 0.5 * 2048 * 2 * 8) / 1e6)
    small = chapter.communication_mb(100, fields=2, dim=16, batch=4096, world=2)
    assert small["ddp_sparse"] == pytest.approx(2 * 100 * 72 / 1e6)  # never more rows than the table has
    assert chapter.communication_mb(1_000_000, world=1) == {"ddp_dense": 0, "ddp_sparse": 0, "torchrec": 0}
    with pytest.raises(ValueError, match="world"):
        chapter.communication_mb(10, world=0)


def test_cost_chart_checks_match_the_formula():
    spec = chapter.cost_chart().to_dict()
    checks = spec["usermeta"]["recbook"]["checks"]
    assert len(checks) == 3
    first = checks[0]
    mb = chapter.communication_mb(10 ** 6, fields=2, dim=16, batch=4096, world=2)
    assert first["set"] == {"log_rows": 6, "log_batch": 12, "dim": 16, "world": 2}
    assert first["texts"] == [f"{v:,.2f} MB" for v in mb.values()] == ["128.00 MB", "0.29 MB", "0.28 MB"]


def _cost_rows(strategies=("single", "ddp_dense", "ddp_sparse", "torchrec")):
    rows = []
    for n in (100_000, 1_000_000):
        for i, s in enumerate(strategies):
            rows.append({"rows": n, "strategy": s, "step_s": 0.01 * (i + 1) * n / 1e5, "state_bytes": n * 128 * (i + 1)})
    return pd.DataFrame(rows)


def test_figures_draw():
    axes = chapter.plot_cost(_cost_rows(), _cost_rows())
    assert axes[0].get_xscale() == "log" and len(axes[0].lines) == 8
    stats = pd.DataFrame({"rows": [10, 100], "distinct": [9, 60]})
    bounded = pd.DataFrame({"method": ["filter", "hash"], "param": [2, 50], "table_rows": [30, 50],
                            "rows_affected": [0.1, 0.3]})
    axes = chapter.plot_vocabulary(stats, bounded)
    assert axes[1].get_ylabel().startswith("%")
    with pytest.raises(ValueError, match="live: missing column"):
        chapter.plot_cost(pd.DataFrame({"rows": [1]}))


def test_plan_frame():
    plan = [{"table": "table0", "sharding": "column_wise", "kernel": "fused", "rank": 1, "rows": 50, "cols": 8,
             "row_offset": 0, "col_offset": 8}]
    frame = chapter.plan_frame(plan)
    assert frame.iloc[0]["shard"] == "rows 50, columns 8–15"
    with pytest.raises(ValueError, match="plan"):
        chapter.plan_frame([])


def test_rerank_orders_by_exact_score():
    base = np.eye(4, dtype=np.float32)
    queries = np.array([[0.1, 0.9, 0.5, 0.0]], dtype=np.float32)
    assert rerank(base, queries, np.array([[0, 2, 1, -1]]), 2).tolist() == [[1, 2]]
    with pytest.raises(ValueError, match="candidates"):
        rerank(base, queries, np.array([0, 1]), 1)


def test_pq_table_small():
    table = pq_table(5000, dim=16, m=4, n_queries=50, k=10, reranks=(1, 4), nprobe=8)
    pq = table[table["method"] == "ivf-pq"].set_index("rerank")["recall"]
    assert pq[4] >= pq[1] and table["bytes_per_vector"].tolist() == [64, 64, 4, 4]
    with pytest.raises(ValueError, match="m: expected a divisor"):
        pq_table(1000, dim=16, m=5)


def test_committed_results_are_whole():
    cost = read_results("scale_cost.csv")
    assert set(cost["strategy"]) == {"single", "ddp_dense", "ddp_sparse", "torchrec"}
    assert cost["rows"].max() >= 4_000_000 and (cost["step_s"] > 0).all() and (cost["state_bytes"] > 0).all()
    stream = read_results("scale_stream.csv").iloc[0]
    assert stream["rows"] >= 0.99e8 and 0.5 < stream["auc"] <= stream["oracle_auc"] + 0.01
    pq = read_results("scale_pq.csv")
    assert (pq["n"] == 1_000_000).all() and {"exact", "ivf-flat", "ivf-pq"} <= set(pq["method"])
    frame = chapter.ann_frame(read_results("ann_bench.csv"), pq)
    assert {"exact", "ivf", "hnsw", "ivf-pq"} <= set(frame["method"])

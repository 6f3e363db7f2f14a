"""The leaderboard chapter's helpers, on small hand-made result tables."""
import numpy as np
import pandas as pd
import pytest

from recbook.chapters import leaderboard as lb
from recbook.widgets import bound_params


def rows(model, aucs, *, protocol="ctr", cpu=1.0, logloss=None):
    out = []
    for seed, a in enumerate(aucs):
        out.append({"model": model, "protocol": protocol, "seed": seed, "test_auc": a,
                    "test_logloss": (logloss[seed] if logloss else 0.6), "test_gauc": a + 0.01,
                    "test_gauc_coverage": 0.99, "cpu_s_per_epoch": cpu, "epochs": 5, "recbook": "0.1.0"})
    return out


@pytest.fixture
def bench():
    return pd.DataFrame(rows("A", [0.70, 0.71, 0.72], cpu=0.5)
                        + rows("B", [0.74, 0.75, 0.76], cpu=2.0, logloss=[0.5, 0.5, 0.5])
                        + rows("C", [0.745, 0.74, 0.77], cpu=3.0))


def test_protocol_metrics_headline_first_and_unknown_protocol(bench):
    assert lb.protocol_metrics(bench, "ctr") == ["auc", "gauc", "logloss"]
    with pytest.raises(ValueError, match="protocol"):
        lb.protocol_metrics(bench, "sequence")


def test_summary_means_spreads_and_order(bench):
    t = lb.summary(bench, "ctr")
    assert list(t["model"]) == ["A", "B", "C"]                      # no validation rows: as given
    a = t.set_index("model").loc["A"]
    assert a["auc"] == pytest.approx(0.71)
    assert a["auc sd"] == pytest.approx(np.std([0.70, 0.71, 0.72]))
    assert a["seeds"] == 3 and a["cpu_s_per_epoch"] == 0.5
    # Ranked by validation, whatever the test metric says: B, then C, then A.
    valid = {"A": 0.60, "B": 0.70, "C": 0.65}
    t = lb.summary(bench.assign(valid_auc=bench["model"].map(valid)), "ctr")
    assert list(t["model"]) == ["B", "C", "A"]
    assert lb.summary(bench.assign(valid_auc=bench["model"].map(valid)), "ctr", ["logloss"])["model"].iloc[0] == "B"


def test_paired_gaps_verdicts(bench):
    gaps = lb.paired_gaps(bench, "ctr").set_index("better")
    # C vs B: per-seed differences +0.005, -0.01, +0.01: the sign flips, so tied.
    assert gaps.loc["C", "worse"] == "B" and gaps.loc["C", "verdict"] == "tied"
    assert gaps.loc["C", "min gap"] == pytest.approx(-0.01)
    # B vs A: +0.04 on every seed, so its interval is [+0.04, +0.04]: real.
    assert gaps.loc["B", "gap"] == pytest.approx(0.04)
    assert gaps.loc["B", "verdict"] == "real"


def test_same_sign_on_every_seed_is_not_enough():
    # X ahead of Y on all three seeds (+0.001, +0.010, +0.001), but the paired differences vary
    # so much that the 90% interval of their mean includes 0: tied. The old rule ("same sign on
    # every seed and above the seed spread") would have called a larger version of this real.
    t = pd.DataFrame(rows("X", [0.70, 0.72, 0.74]) + rows("Y", [0.699, 0.710, 0.739]))
    c = lb.compare(t, "ctr", "X", "Y")
    assert c["ahead on"] == 3 and c["gap"] == pytest.approx(0.004)
    d = np.array([0.001, 0.010, 0.001])
    half = 2.919986 * d.std(ddof=1) / np.sqrt(3)               # t quantile 0.95, 2 degrees of freedom
    assert (c["low"], c["high"]) == pytest.approx((d.mean() - half, d.mean() + half), abs=1e-6)
    assert c["low"] < 0 < c["high"] and c["verdict"] == "tied"
    # the same gap on every seed is real however large the models' own spread (0.016)
    same = pd.DataFrame(rows("X", [0.70, 0.72, 0.74]) + rows("Y", [0.698, 0.718, 0.738]))
    assert lb.compare(same, "ctr", "X", "Y")["verdict"] == "real"
    with pytest.raises(ValueError, match="diffs"):
        lb.paired_interval([0.1])


def test_compare_on_validation_and_best_on_validation():
    t = pd.DataFrame(rows("X", [0.70, 0.72, 0.74]) + rows("Y", [0.71, 0.73, 0.75]))
    t["valid_auc"] = t["test_auc"] * np.where(t["model"] == "X", 1.0, 0.98)   # Y best on test, X on validation
    assert lb.compare(t, "ctr", "Y", "X")["verdict"] == "real"
    assert lb.compare(t, "ctr", "Y", "X", split="valid")["verdict"] == "reversed"
    assert lb.best_on_validation(t, "ctr", ["Y", "X"]) == "X"
    with pytest.raises(ValueError, match="models"):
        lb.best_on_validation(t, "ctr", ["Z"])
    table = lb.comparison_table(t, "ctr", {"a": ("Y", "X"), "b": ("Y", "X", "auc", "valid")})
    assert list(table["verdict"]) == ["real", "reversed"] and list(table["metric"]) == ["test auc", "valid auc"]
    assert "interval" in lb.describe(lb.compare(t, "ctr", "Y", "X"))


def test_long_results_drops_failed_library_rows_and_maps_families(bench):
    libs = pd.DataFrame([
        {"library": "L1", "library_version": "1.0", "model": "WDL", "protocol": "ctr", "seed": 0,
         "status": "ok", "test_auc": 0.7, "test_logloss": 0.6, "test_gauc": 0.7, "cpu_s_per_epoch": 4.0},
        {"library": "L1", "library_version": "1.0", "model": "WDL", "protocol": "ctr", "seed": 1,
         "status": "ok", "test_auc": 0.8, "test_logloss": 0.6, "test_gauc": 0.7, "cpu_s_per_epoch": 6.0},
        {"library": "L2", "library_version": "2.0", "model": "LR", "protocol": "ctr", "seed": 0,
         "status": "unsupported", "test_auc": np.nan, "test_logloss": np.nan, "test_gauc": np.nan,
         "cpu_s_per_epoch": np.nan},
    ])
    long = lb.long_results(bench, libs)
    assert set(long["source"]) == {"recbook", "L1"}
    wdl = long[(long["source"] == "L1") & (long["metric"] == "auc")].iloc[0]
    assert wdl["family"] == "WideDeep" and wdl["mean"] == pytest.approx(0.75)
    assert wdl["sd"] == pytest.approx(0.05) and wdl["cpu_s_per_epoch"] == pytest.approx(5.0)
    assert (long[long["metric"] == "logloss"]["better"] == -1).all()
    assert len(long[long["source"] == "recbook"]) == 3 * 3              # 3 models x 3 metrics


def test_speed_table_ratio():
    long = pd.DataFrame([
        {"source": "recbook", "model": "FM", "family": "FM", "protocol": "ctr", "cpu_s_per_epoch": 0.5},
        {"source": "recbook", "model": "FM-unk", "family": "FM-unk", "protocol": "ctr", "cpu_s_per_epoch": 0.4},
        {"source": "L1", "model": "FM", "family": "FM", "protocol": "ctr", "cpu_s_per_epoch": 2.0},
        {"source": "L2", "model": "FM", "family": "FM", "protocol": "ctr", "cpu_s_per_epoch": 1.5},
        {"source": "L2", "model": "SASRec", "family": "SASRec", "protocol": "ctr", "cpu_s_per_epoch": 1.0},
        {"source": "recbook", "model": "LR", "family": "LR", "protocol": "ctr", "cpu_s_per_epoch": 0.1},
        {"source": "L3", "model": "LR", "family": "LR", "protocol": "ctr", "cpu_s_per_epoch": 0.3},
    ])
    t = lb.speed_table(long)
    assert list(t.columns) == ["model", "recbook", "L1", "L2", "L3", "fastest library ÷ recbook"]  # ratio last
    t = t.set_index("model")
    assert list(t.index) == ["FM", "LR"]                # no recbook SASRec: no row
    assert t.loc["LR", "fastest library ÷ recbook"] == pytest.approx(3.0) and pd.isna(t.loc["LR", "L1"])
    assert t.loc["FM", "recbook"] == 0.5 and t.loc["FM", "L2"] == 1.5
    assert t.loc["FM", "fastest library ÷ recbook"] == pytest.approx(3.0)


def test_speed_table_ratio_at_the_books_architecture():
    """A library's row with the book's MLP is what an equal-architecture comparison reads; a
    model without an MLP compares with the library's default (its architecture is the book's)."""
    arch = lb.BOOK_ARCH
    long = pd.DataFrame([
        {"source": "recbook", "model": "WideDeep", "family": "WideDeep", "arch": "book", "cpu_s_per_epoch": 0.5},
        {"source": "L1", "model": "WDL", "family": "WideDeep", "arch": "library default", "cpu_s_per_epoch": 0.6},
        {"source": "L1" + arch, "model": "WDL", "family": "WideDeep", "arch": "book", "cpu_s_per_epoch": 2.0},
        {"source": "L2", "model": "WDL", "family": "WideDeep", "arch": "library default", "cpu_s_per_epoch": 3.0},
        {"source": "L2" + arch, "model": "WDL", "family": "WideDeep", "arch": "book", "cpu_s_per_epoch": 1.5},
        {"source": "recbook", "model": "LR", "family": "LR", "arch": "book", "cpu_s_per_epoch": 0.1},
        {"source": "L1", "model": "LR", "family": "LR", "arch": "library default", "cpu_s_per_epoch": 0.3},
    ]).assign(protocol="ctr")
    t = lb.speed_table(long).set_index("model")
    assert list(t.columns)[-2:] == ["fastest library ÷ recbook", lb.EQUAL_RATIO]
    assert lb.EQUAL_RECBOOK not in t.columns
    assert t.loc["WideDeep", "fastest library ÷ recbook"] == pytest.approx(1.2)   # L1's small default MLP
    assert t.loc["WideDeep", lb.EQUAL_RATIO] == pytest.approx(3.0)                # L2 with the book's MLP
    assert t.loc["LR", lb.EQUAL_RATIO] == pytest.approx(3.0)
    # With recbook's Wide & Deep without crosses timed, the equal-architecture ratio reads it.
    nocross = {"source": "recbook", "model": "WideDeep-nocross", "family": "WideDeep-nocross", "arch": "book",
               "cpu_s_per_epoch": 0.3, "protocol": "ctr"}
    t = lb.speed_table(pd.concat([long, pd.DataFrame([nocross])])).set_index("model")
    assert list(t.columns)[:2] == ["recbook", lb.EQUAL_RECBOOK] and t.loc["WideDeep", lb.EQUAL_RECBOOK] == 0.3
    assert t.loc["WideDeep", lb.EQUAL_RATIO] == pytest.approx(5.0) and pd.isna(t.loc["LR", lb.EQUAL_RECBOOK])


def test_chart_ships_one_control_and_refuses_unknown_view(bench):
    long = lb.long_results(bench)
    chart = lb.leaderboard_chart(long, protocol="ctr", metric="gauc")
    checks = chart.spec["usermeta"]["recbook"]["checks"]
    assert {"set": {"view": "ctr · auc"}, "texts": ["best test mean: C (recbook) 0.7517"]} in checks
    assert {"set": {"view": "ctr · logloss"}, "texts": ["best test mean: B (recbook) 0.5000"]} in checks
    params = bound_params(chart.spec)
    assert list(params) == ["view"]
    assert params["view"]["value"] == "ctr · gauc"
    assert set(params["view"]["bind"]["options"]) == {"ctr · auc", "ctr · gauc", "ctr · logloss"}
    with pytest.raises(ValueError, match="protocol, metric"):
        lb.leaderboard_chart(long, protocol="ctr", metric="recall@20")


def test_compare_any_pair_and_reversed(bench):
    assert lb.compare(bench, "ctr", "B", "A")["verdict"] == "real"
    back = lb.compare(bench, "ctr", "A", "B")
    assert back["verdict"] == "reversed" and back["gap"] == pytest.approx(-0.04)
    assert lb.compare(bench, "ctr", "A", "B", "logloss")["gap"] == pytest.approx(-0.1)  # A's 0.6 vs B's 0.5
    with pytest.raises(ValueError, match="model 'Z'"):
        lb.compare(bench, "ctr", "Z", "A")


def _overlap(a, b, gap=0.0):
    """Whether two boxes (x0, y0, x1, y1) intersect (with ``gap`` pixels of margin)."""
    return a[0] < b[2] + gap and b[0] < a[2] + gap and a[1] < b[3] + gap and b[1] < a[3] + gap


def _check_drawn_labels(long, view, width, layout=None):
    """Draw ``view`` with matplotlib at ``width`` px and check the labels' text extents: inside the
    plot, clear of each other and of every point (radius 4.5 px)."""
    fig, ax, texts, xy = lb.label_figure(long, view, width=width, layout=layout)
    renderer = fig.canvas.get_renderer()
    boxes = [t.get_window_extent(renderer).extents for t in texts]
    assert len(boxes) == len(xy) and len(boxes) > 0
    plot = ax.get_window_extent(renderer).extents
    for i, a in enumerate(boxes):
        assert plot[0] - 0.5 <= a[0] and a[2] <= plot[2] + 0.5 and plot[1] - 0.5 <= a[1] and a[3] <= plot[3] + 0.5, \
            (view, texts[i].get_text(), "outside the plot")
        for j in range(i + 1, len(boxes)):
            assert not _overlap(a, boxes[j]), (view, width, texts[i].get_text(), texts[j].get_text())
        for x, y in xy:
            assert not _overlap(a, (x - 4.5, y - 4.5, x + 4.5, y + 4.5)), (view, texts[i].get_text(), "covers a point")


def test_scatter_labels_never_overlap_on_the_committed_results():
    """Every view of the chart (the committed bench.csv and libraries.csv), drawn at the phone's
    width the layout is made for and at the page's width: no label box overlaps another label or
    a point, measured with matplotlib's text extents."""
    from recbook.bench import read_results

    long = lb.long_results(read_results("bench.csv"), read_results("libraries.csv"))
    layout = lb.scatter_layout(long)
    views = list(dict.fromkeys(layout["view"]))
    assert "ctr · auc" in views and len(layout[layout["view"] == "ctr · auc"]) >= 20
    for view in views:
        for width in (lb.LAYOUT_WIDTH, lb.SCATTER_WIDTH):
            _check_drawn_labels(long, view, width, layout)


def test_scatter_labels_of_a_tight_cluster_and_the_old_placement_overlaps():
    """Twelve models at almost the same accuracy and cost: every label finds a free place (leader
    lines join the far ones). The chart's old placement, every label 6 px right of its point, made
    them overlap."""
    rng = np.random.default_rng(0)
    long = pd.DataFrame({"source": ["recbook"] * 12 + ["L1"] * 2, "model": [f"Model-{i}" for i in range(12)] + ["X", "Y"],
                         "protocol": "ctr", "metric": "auc", "mean": np.r_[0.71 + rng.normal(0, 2e-4, 12), 0.70, 0.72],
                         "sd": 0.001, "seeds": 3, "cpu_s_per_epoch": np.r_[1.0 + rng.normal(0, 0.01, 12), 0.1, 10.0],
                         "better": 1.0})
    layout = lb.scatter_layout(long)
    _check_drawn_labels(long, "ctr · auc", lb.LAYOUT_WIDTH, layout)
    assert layout["leader"].sum() >= 1
    old = layout.assign(align="left", label_x=long["cpu_s_per_epoch"] * 1.02, label_y=long["mean"])
    with pytest.raises(AssertionError):
        _check_drawn_labels(long, "ctr · auc", lb.LAYOUT_WIDTH, old)


def test_chart_scales_use_the_layouts_domains(bench):
    """The Vega scatter draws on the same fixed domains as the layout (no rounding by Vega), and
    ships each label's anchor."""
    long = lb.long_results(bench)
    spec = lb.leaderboard_chart(long).spec
    text = str(spec)
    lo, hi = lb.scatter_domains(long)["ctr · auc"][:2]
    assert f"view == 'ctr · auc' ? [{lo!r}, {hi!r}]" in text and "'nice': False" in text
    assert "label_x" in text and "lead_y" in text


def test_headline_table_ranks_by_validation_within_each_protocol(bench):
    valid = {"A": 0.60, "B": 0.70, "C": 0.65}
    t = lb.headline_table(bench.assign(valid_auc=bench["model"].map(valid)), exclude=["C"])
    assert list(t["model"]) == ["B", "A"] and (t["metric"] == "auc").all()       # C left out, B first
    b = t.set_index("model").loc["B"]
    assert b["validation"] == pytest.approx(0.70) and b["test"] == pytest.approx(0.75)
    assert b["test sd"] == pytest.approx(np.std([0.74, 0.75, 0.76])) and b["seeds"] == 3


def test_versus_library_pairs_by_seed_on_both_splits(bench):
    ours = bench.assign(valid_auc=bench["test_auc"] - 0.01)
    libs = pd.DataFrame([{"library": "L1", "model": "B", "protocol": "ctr", "seed": s, "status": "ok",
                          "test_auc": a, "valid_auc": v} for s, (a, v) in enumerate([(0.73, 0.74), (0.74, 0.73), (0.75, 0.75)])]
                        + [{"library": "L1", "model": "B", "protocol": "ctr", "seed": 3, "status": "failed",
                            "test_auc": np.nan, "valid_auc": np.nan}])
    v = lb.versus_library(ours, libs, "B", "L1")
    assert list(v.index) == ["validation", "test"] and v.loc["test", "better"] == "B (recbook)"
    assert v.loc["test", "gap"] == pytest.approx(0.01) and v.loc["test", "verdict"] == "real"   # +0.01 on every seed
    assert v.loc["validation", "gap"] == pytest.approx(0.0) and v.loc["validation", "verdict"] == "tied"
    with pytest.raises(ValueError, match="no successful rows"):
        lb.versus_library(ours, libs, "B", "L2")


def test_verdict_words():
    c = {"gap": 0.0059, "low": 0.0032, "high": 0.0086, "verdict": "real", "ahead on": 3, "seeds": 3}
    assert lb.verdict_words(c, "AUC") == "ahead by 0.0059 AUC (90% interval +0.0032 to +0.0086)"
    assert lb.verdict_words(dict(c, gap=-0.004, low=-0.006, high=-0.002, verdict="reversed")).startswith("behind by 0.0040")
    tied = lb.verdict_words(dict(c, gap=0.001, low=-0.002, high=0.004, verdict="tied", **{"ahead on": 2}), seeds=True)
    assert tied == "tied: +0.0010 (90% interval -0.0020 to +0.0040, ahead on 2 of 3 seeds)"

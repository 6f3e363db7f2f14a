"""recbook.chapters.data on small synthetic data: each figure draws what it should, each chart ships
the right data and computes its browser checks from an independent count, the random split and
the tie statistics match hand-made cases, and bad input raises ValueError naming the field."""
from __future__ import annotations

import io
from types import SimpleNamespace

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402

from recbook import plots  # noqa: E402
from recbook.chapters import data as chapter  # noqa: E402
from recbook.data import GENRES  # noqa: E402


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def synthetic_ml(n_users: int = 12, n_items: int = 9, seed: int = 0) -> SimpleNamespace:
    """A tiny MovieLens-like data set: users arrive one after another and rate in a burst."""
    rng = np.random.default_rng(seed)
    start = pd.Timestamp("1998-01-01")
    rows = []
    for u in range(1, n_users + 1):
        arrive = start + pd.Timedelta(days=3 * u)
        items = rng.choice(np.arange(1, n_items + 1), size=rng.integers(3, n_items + 1), replace=False)
        for k, i in enumerate(items):
            rows.append((u, int(i), int(rng.integers(1, 6)), arrive + pd.Timedelta(minutes=7 * k)))
    ratings = pd.DataFrame(rows, columns=["user_id", "item_id", "rating", "timestamp"])
    ratings["timestamp"] = ratings["timestamp"].astype("datetime64[s]")
    users = pd.DataFrame({
        "user_id": np.arange(1, n_users + 1),
        "age": rng.integers(15, 70, n_users),
        "gender": pd.Categorical(rng.choice(["F", "M"], n_users)),
        "occupation": pd.Categorical(rng.choice(["artist", "student", "writer"], n_users)),
        "zip_code": pd.array([f"{z:05d}" for z in rng.integers(0, 99999, n_users)], dtype="string"),
    })
    items = pd.DataFrame({
        "item_id": np.arange(1, n_items + 1),
        "title": [f"Movie {i}" for i in range(1, n_items + 1)],
        "release_year": pd.array(rng.integers(1940, 1999, n_items), dtype="Int64"),
    })
    flags = rng.random((n_items, len(GENRES))) < 0.25
    for j, g in enumerate(GENRES):
        items[g] = flags[:, j]
    return SimpleNamespace(ratings=ratings, users=users, items=items)


@pytest.fixture
def ml():
    return synthetic_ml()


def split_frames(ratings: pd.DataFrame) -> dict:
    r = ratings.sort_values(["timestamp", "user_id", "item_id"]).reset_index(drop=True)
    a, b = int(len(r) * 0.6), int(len(r) * 0.8)
    return {"train": r.iloc[:a], "valid": r.iloc[a:b], "test": r.iloc[b:]}


def bars(ax) -> list[Rectangle]:
    return list(ax.patches)


# --------------------------------------------------------------------------------------------
# plots
# --------------------------------------------------------------------------------------------

def test_rating_distribution_one_bar_per_star_coloured_by_label(ml):
    ax = chapter.plot_rating_distribution(ml.ratings)
    counts = ml.ratings["rating"].value_counts().sort_index()
    heights = [p.get_height() for p in bars(ax)]
    assert heights == counts.tolist()
    colours = [matplotlib.colors.to_hex(p.get_facecolor()) for p in bars(ax)]
    expected = [matplotlib.colors.to_hex(plots.LABEL_COLORS[int(v >= 4)]) for v in counts.index]
    assert colours == expected


def test_item_popularity_is_sorted_counts(ml):
    ax = chapter.plot_item_popularity(ml.ratings)
    x, y = ax.lines[0].get_data()
    expected = np.sort(ml.ratings["item_id"].value_counts().to_numpy())[::-1]
    np.testing.assert_array_equal(y, expected)
    np.testing.assert_array_equal(x, np.arange(1, len(expected) + 1))
    assert ax.get_yscale() == "log"


def test_popularity_share_matches_a_direct_count(ml):
    counts = ml.ratings["item_id"].value_counts()
    top3 = counts.sort_values(ascending=False).iloc[:3].sum() / counts.sum()
    assert chapter.popularity_share(ml.ratings, 3) == pytest.approx(top3)
    with pytest.raises(ValueError, match="top_k"):
        chapter.popularity_share(ml.ratings, 0)


def test_user_activity_counts_every_user_once(ml):
    ax = chapter.plot_user_activity(ml.ratings, bins=5)
    assert len(bars(ax)) == 5
    assert sum(p.get_height() for p in bars(ax)) == ml.ratings["user_id"].nunique()


def test_users_over_time_reaches_every_user(ml):
    first = ml.ratings.groupby("user_id")["timestamp"].min()
    ax = chapter.plot_users_over_time(ml.ratings, boundaries={"test": first.iloc[-3]})
    users_line, ratings_line = ax.lines[:2]
    assert len(users_line.get_ydata()) == len(first)
    assert users_line.get_ydata()[-1] == pytest.approx(1.0)
    assert len(ratings_line.get_ydata()) == len(ml.ratings)
    assert any(t.get_text() == "test" for t in ax.texts)


def test_genre_counts_one_bar_per_genre(ml):
    ax = chapter.plot_genre_counts(ml.items)
    assert len(bars(ax)) == len(GENRES)
    labels = [t.get_text() for t in ax.get_yticklabels()]
    widths = dict(zip(labels, (p.get_width() for p in bars(ax))))
    assert widths == {g: int(ml.items[g].sum()) for g in GENRES}
    assert [p.get_width() for p in bars(ax)] == sorted(widths.values())


def test_genre_counts_weighted_by_ratings(ml):
    ax = chapter.plot_genre_counts(ml.items, ratings=ml.ratings, genres=["Drama", "Comedy"])
    assert len(bars(ax)) == 2
    labels = [t.get_text() for t in ax.get_yticklabels()]
    merged = ml.ratings.merge(ml.items, on="item_id")
    for label, p in zip(labels, bars(ax)):
        assert p.get_width() == merged[label].sum()


def test_split_counts_and_timeline(ml):
    frames = split_frames(ml.ratings)
    counts = chapter.split_counts(frames)
    train_users = set(frames["train"]["user_id"])
    for s in ("valid", "test"):
        cold = (~frames[s]["user_id"].isin(train_users)).sum()
        assert counts.loc[s, "cold-user rows"] == cold
        assert counts.loc[s, "rows"] == len(frames[s])
    assert counts.loc["train", "cold-user rows"] == 0
    assert counts.loc["test", "cold share"] > 0  # users arrive over time

    ax = chapter.plot_split_timeline(frames)
    assert sum(p.get_height() for p in bars(ax)) == len(ml.ratings)
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend[0].startswith(f"train: {len(frames['train']):,} rows")
    assert f"{counts.loc['test', 'cold-user rows']:,} from cold users" in legend[2]


@pytest.mark.parametrize("call, field", [
    (lambda ml: chapter.plot_rating_distribution(ml.ratings.drop(columns="rating")), "rating"),
    (lambda ml: chapter.plot_item_popularity(ml.ratings.iloc[:0]), "ratings"),
    (lambda ml: chapter.plot_users_over_time(ml.ratings.drop(columns="timestamp")), "timestamp"),
    (lambda ml: chapter.plot_genre_counts(ml.items.drop(columns="Drama")), "Drama"),
    (lambda ml: chapter.plot_genre_counts(ml.items, genres=[]), "genres"),
    (lambda ml: chapter.plot_split_timeline({"train": ml.ratings}), "frames"),
    (lambda ml: chapter.plot_user_activity(ml.ratings, ax="left"), "ax"),
])
def test_plots_bad_input_names_the_field(ml, call, field):
    with pytest.raises(ValueError, match=field):
        call(ml)


def test_plots_draw_into_a_given_axes(ml):
    fig, axes = plt.subplots(1, 2)
    assert chapter.plot_item_popularity(ml.ratings, ax=axes[0]) is axes[0]
    assert chapter.plot_genre_counts(ml.items, ax=axes[1]) is axes[1]
    assert len(plt.get_fignums()) == 1


# --------------------------------------------------------------------------------------------
# The time split, charts computed in the browser, the random split, ties
# --------------------------------------------------------------------------------------------

def test_ctr_splits_follow_the_protocol(ml):
    splits = chapter.ctr_splits(ml)
    assert len(splits) == len(ml.ratings)
    assert splits["timestamp"].is_monotonic_increasing
    sizes = splits["split"].value_counts()
    assert (sizes["train"], sizes["valid"], sizes["test"]) == (
        round(0.8 * len(ml.ratings)), round(0.9 * len(ml.ratings)) - round(0.8 * len(ml.ratings)),
        len(ml.ratings) - round(0.9 * len(ml.ratings)))
    assert (splits["label"] == (splits.merge(ml.ratings)["rating"] >= 4)).all()


def _chart_spec(chart) -> dict:
    return chart.to_dict(validate=False)


def test_popularity_chart_ships_the_counts_and_checks_direct_shares(ml):
    chart = chapter.popularity_chart(ml.ratings, percent=20, checks=[1, 100])
    spec = _chart_spec(chart)
    table = pd.read_csv(io.StringIO(spec["datasets"]["popularity"]))
    counts = np.sort(ml.ratings["item_id"].value_counts().to_numpy())[::-1]
    assert table["rank"].tolist() == list(range(1, len(counts) + 1))
    assert table["ratings"].tolist() == counts.tolist()
    checks = spec["usermeta"]["recbook"]["checks"]
    assert [c["set"] for c in checks] == [{"top": 20}, {"top": 1}, {"top": 100}]
    n = len(counts)
    for check in checks:
        pct = check["set"]["top"]
        k = max(1, round(pct / 100 * n))
        share = counts[:k].sum() / counts.sum()
        assert check["texts"] == [f"The top {pct}% of movies ({k:,}) get {share:.0%} of all ratings"]
    assert "100%" in checks[-1]["texts"][0].split("get ")[1]


def test_user_timeline_chart_bins_every_rating_and_counts_blocks(ml):
    splits = chapter.ctr_splits(ml)
    users = sorted(ml.ratings["user_id"].unique())
    chart = chapter.user_timeline_chart(splits, user=users[-1], checks=[users[0]])
    spec = _chart_spec(chart)
    binned = pd.read_csv(io.StringIO(spec["datasets"]["user_hours"]))
    assert binned["n"].sum() == len(ml.ratings)
    assert binned.groupby("u")["n"].sum().to_dict() == ml.ratings["user_id"].value_counts().to_dict()
    param = chapter.widgets.bound_params(spec)["user"]
    assert param["bind"]["options"] == users
    for check in spec["usermeta"]["recbook"]["checks"]:
        u = check["set"]["user"]
        mine = splits[splits["user_id"] == u]["split"].astype(str)
        n = {s: int((mine == s).sum()) for s in ("train", "valid", "test")}
        assert check["texts"] == [f"User {u}: {len(mine):,} ratings ({n['train']:,} train / "
                                  f"{n['valid']:,} valid / {n['test']:,} test)"]
    with pytest.raises(ValueError, match="user"):
        chapter.user_timeline_chart(splits, user=10_000)


def test_random_split_partitions_the_rows_and_builds_vocabularies_from_its_training_rows(ml):
    rnd = chapter.random_split_protocol(ml, seed=3)
    parts = rnd.frames
    sizes = [len(parts[s]) for s in ("train", "valid", "test")]
    n = len(ml.ratings)
    assert sizes == [round(0.8 * n), round(0.9 * n) - round(0.8 * n), n - round(0.9 * n)]
    pairs = pd.concat(parts.values())[["user_id", "item_id"]]
    assert sorted(map(tuple, pairs.to_numpy())) == sorted(map(tuple, ml.ratings[["user_id", "item_id"]].to_numpy()))
    assert set(rnd.schema["user_id"].categories) == set(parts["train"]["user_id"])
    assert len(rnd.train) == sizes[0] and rnd.train["x"].shape[1] == 7
    again = chapter.random_split_protocol(ml, seed=3)
    assert parts["test"].equals(again.frames["test"])
    time_test = chapter.ctr_splits(ml).query("split == 'test'")
    # a random test block reaches back in time; the time split's does not
    assert parts["test"]["timestamp"].min() < time_test["timestamp"].min()
    with pytest.raises(ValueError, match="seed"):
        chapter.random_split_protocol(ml, seed=1.5)


def test_tie_statistics_on_a_hand_made_case():
    t = pd.to_datetime(["1998-01-01 00:00:01", "1998-01-01 00:00:01", "1998-01-01 00:00:02",
                        "1998-01-01 00:00:05", "1998-01-01 00:00:06", "1998-01-01 00:00:06"])
    ratings = pd.DataFrame({"user_id": [1, 1, 1, 2, 2, 2], "item_id": [1, 2, 3, 1, 2, 1],
                            "timestamp": t})
    ratings = ratings.iloc[[3, 0, 4, 1, 5, 2]]   # file order interleaves the users
    stats = chapter.tie_statistics(ratings)
    # user 1: (1s, 1s) tie, (1s, 2s) not; user 2: (5s, 6s) not, (6s, 6s) tie
    assert stats["same_second_share"] == pytest.approx(2 / 4)
    assert stats["users"] == 2 and stats["users_last_two_tied"] == 1
    # item 1: 3 ratings, item 2: 2, item 3: 1 -> ids and counts perfectly anti-correlated
    assert stats["spearman_id_popularity"] == pytest.approx(-1.0)


def test_charts_pick_their_own_browser_checks(ml):
    """The chapter calls the charts without ``checks``: each helper adds checks of its own."""
    spec = _chart_spec(chapter.popularity_chart(ml.ratings, percent=10))
    assert [c["set"]["top"] for c in spec["usermeta"]["recbook"]["checks"]] == [10, 1, 50, 100]
    splits = chapter.ctr_splits(ml)
    kinds = chapter.timeline_check_users(splits)
    per_user = pd.crosstab(splits["user_id"], splits["split"].astype(str))
    tests = [lambda r: r["train"] == r.sum(), lambda r: r["train"] > 0 and r["test"] > 0,
             lambda r: r["train"] == 0 and r["test"] > 0]
    kind_of = [next(i for i, t in enumerate(tests) if t(per_user.loc[u])) for u in kinds]
    assert kinds and kind_of == sorted(set(kind_of))       # one user of each kind the data has, in order
    for i, t in enumerate(tests):                          # ... the first such user
        has = [u for u in per_user.index if t(per_user.loc[u])]
        assert (i in kind_of) == bool(has) and (not has or has[0] == kinds[kind_of.index(i)])
    spec = _chart_spec(chapter.user_timeline_chart(splits, user=kinds[0]))
    assert [c["set"]["user"] for c in spec["usermeta"]["recbook"]["checks"]] == kinds


def test_the_chapter_defines_every_metric_once_under_its_label():
    """Other chapters link to ``data-metrics``: the section exists, defines each metric with a
    glossary link and a formula, and checks a hand-computed example of each."""
    import json
    import re
    from pathlib import Path

    nb = json.loads((Path(__file__).resolve().parents[1] / "book" / "data.ipynb").read_text(encoding="utf-8"))
    sources = ["".join(c["source"]) for c in nb["cells"]]
    start = next(i for i, s in enumerate(sources) if s.startswith("(data-metrics)=\n## How we measure"))
    end = next(i for i in range(start + 1, len(sources)) if re.match(r"(\([\w-]+\)=\n)?## ", sources[i]))
    section = "\n".join(sources[start:end])
    for term in ("{term}`AUC`", "<logloss>`", "{term}`GAUC`", "{term}`Recall@K`", "<NDCG>`", "<MRR>`"):
        assert term in section, term
    for formula in (r"\mathrm{AUC} =", r"\mathrm{logloss} =", r"\mathrm{GAUC} =", r"\mathrm{Recall@}K",
                    r"\mathrm{NDCG@}K", r"\mathrm{MRR@}K"):
        assert formula in section, formula
    checks = [c for c in nb["cells"][start:end] if "remove-cell" in c["metadata"].get("tags", [])]
    calls = "".join("".join(c["source"]) for c in checks)
    for call in ("auc(", "logloss(", "gauc(", 'top_k["recall@', 'top_k["ndcg@', 'top_k["mrr@'):
        assert call in calls, call
    assert sum(s.count("(data-metrics)=") for s in sources) == 1
    assert nb["metadata"]["recbook"]["lesson_words_max"] == 3000

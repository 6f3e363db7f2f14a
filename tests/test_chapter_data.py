"""recbook.plots, recbook.widgets and recbook.chapters.data on small synthetic data: each figure draws
the precomputed slider is wired as documented, and bad input raises ValueError naming the field."""
from __future__ import annotations

from types import SimpleNamespace

import matplotlib

matplotlib.use("Agg")

import ipywidgets as ipw  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from matplotlib.collections import PathCollection  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402

from recbook import plots, widgets  # noqa: E402
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
    ax = chapter.plot_popularity_share(ml.ratings, top_k=3)
    x, y = ax.lines[0].get_data()
    assert y[0] == 0 and y[-1] == pytest.approx(1.0) and len(x) == counts.size + 1
    assert y[3] == pytest.approx(top3)
    assert f"{top3:.0%}" in ax.get_title()


def test_popularity_share_rejects_a_cut_off_beyond_the_items(ml):
    n = ml.ratings["item_id"].nunique()
    with pytest.raises(ValueError, match="top_k"):
        chapter.plot_popularity_share(ml.ratings, top_k=n + 1)
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


def test_learning_curves_one_line_per_model_and_best_marked():
    idx = pd.Index([1, 2, 3], name="epoch")
    h = {"FM": pd.DataFrame({"train_loss": [0.6, 0.5, 0.4], "valid_auc": [0.70, 0.74, 0.73]}, index=idx),
         "DeepFM": pd.DataFrame({"train_loss": [0.6, 0.5, 0.45], "valid_auc": [0.71, 0.72, 0.75]}, index=idx)}
    ax = plots.plot_learning_curves(h, "valid_auc")
    curves = [ln for ln in ax.lines if ln.get_linestyle() != "None"]
    stars = [ln for ln in ax.lines if ln.get_linestyle() == "None"]
    assert [ln.get_label() for ln in curves] == ["FM", "DeepFM"]
    assert [(s.get_xdata()[0], s.get_ydata()[0]) for s in stars] == [(2, 0.74), (3, 0.75)]
    ax = plots.plot_learning_curves(h, "train_loss")   # losses: lower is better
    stars = [ln for ln in ax.lines if ln.get_linestyle() == "None"]
    assert [s.get_xdata()[0] for s in stars] == [3, 3]


@pytest.mark.parametrize("histories, metric, field", [
    ({}, "valid_auc", "histories"),
    ({"FM": pd.DataFrame({"train_loss": [0.5]})}, "valid_auc", "histories['FM']"),
    ({"FM": [0.5]}, "valid_auc", "histories['FM']"),
    ({"FM": pd.DataFrame({"valid_auc": [0.5]})}, 3, "metric"),
])
def test_learning_curves_bad_input_names_the_field(histories, metric, field):
    with pytest.raises(ValueError, match=field.replace("[", r"\[").replace("]", r"\]")):
        plots.plot_learning_curves(histories, metric)


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
# widgets: one user's timeline
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


def test_user_timeline_one_point_per_rating(ml):
    user = int(ml.ratings["user_id"].iloc[0])
    mine = ml.ratings[ml.ratings["user_id"] == user]
    ax = chapter.user_timeline(ml, user)
    points = [c for c in ax.collections if isinstance(c, PathCollection)]
    assert sum(len(c.get_offsets()) for c in points) == len(mine)
    positives = int((mine["rating"] >= 4).sum())
    assert [len(c.get_offsets()) for c in points] == [positives, len(mine) - positives]
    assert f"{len(mine)} ratings" in ax.get_title()
    # jitter is small: every point stays within 0.15 of its star value
    y = np.concatenate([c.get_offsets()[:, 1] for c in points])
    assert np.all(np.abs(y - np.round(y)) <= 0.15)


def test_user_timeline_marks_the_split_boundaries(ml):
    splits = chapter.ctr_splits(ml)
    # the user of the first test row: the test boundary falls inside their timeline
    user = int(splits.loc[splits["split"] == "test", "user_id"].iloc[0])
    ax = chapter.user_timeline(ml, user, splits=splits)
    title = ax.get_title()
    mine = splits[splits["user_id"] == user]["split"].value_counts()
    assert f"{mine['test']} test" in title
    assert any(t.get_text() == "test begins" for t in ax.texts)


@pytest.mark.parametrize("user, field", [(10_000, "user_id"), ("7", "user_id"), (True, "user_id")])
def test_user_timeline_bad_user(ml, user, field):
    with pytest.raises(ValueError, match=field):
        chapter.user_timeline(ml, user)


def test_user_timeline_bad_ml():
    with pytest.raises(ValueError, match="ml"):
        chapter.user_timeline(object(), 1)


def test_user_timeline_widget_offers_every_user(ml):
    w = chapter.user_timeline_widget(ml)
    assert isinstance(w, ipw.interactive)
    picker = w.children[0]
    assert isinstance(picker, ipw.Dropdown)
    assert list(picker.options) == sorted(ml.ratings["user_id"].unique().tolist())
    w2 = chapter.user_timeline_widget(ml, users=[3, 5])
    assert list(w2.children[0].options) == [3, 5]
    with pytest.raises(ValueError, match="users"):
        chapter.user_timeline_widget(ml, users=[3, 99_999])
    with pytest.raises(ValueError, match="users"):
        chapter.user_timeline_widget(ml, users=[])


# --------------------------------------------------------------------------------------------
# widgets: precomputed slider
# --------------------------------------------------------------------------------------------

def test_precomputed_slider_one_output_per_value_and_linked():
    calls = []

    def render(k):
        calls.append(k)
        fig, ax = plt.subplots()
        ax.plot([0, k])
        return fig

    box = widgets.precomputed_slider(render, [1, 2, 5, 10], "k")
    assert isinstance(box, ipw.VBox)
    control, stack = box.children
    assert control is box.control and stack is box.stack
    assert isinstance(control, ipw.SelectionSlider)
    assert isinstance(stack, ipw.Stack)
    assert calls == [1, 2, 5, 10]
    assert len(stack.children) == 4 and all(isinstance(o, ipw.Output) for o in stack.children)
    assert control.description == "k"
    assert [label for label, _ in control.options] == ["1", "2", "5", "10"]
    assert box.link.source == (control, "index")
    assert box.link.target == (stack, "selected_index")
    assert control.index == stack.selected_index == 0
    assert plt.get_fignums() == []  # figures were closed, so they do not show twice


def test_precomputed_slider_dropdown_start_value_and_html():
    box = widgets.precomputed_slider(lambda name: f"<b>{name}</b>", ["a", "b", "c"], "name",
                                     control="dropdown", value="b")
    assert isinstance(box.control, ipw.Dropdown)
    assert box.control.index == box.stack.selected_index == 1
    assert box.link.source == (box.control, "index")


def test_precomputed_slider_closes_pyplot_figures_of_render_returning_none():
    def render(k):
        plt.figure()
        plt.plot([0, k])

    widgets.precomputed_slider(render, [1, 2])
    assert plt.get_fignums() == []


@pytest.mark.parametrize("kwargs, field", [
    (dict(render=None, values=[1]), "render"),
    (dict(render=str, values=[]), "values"),
    (dict(render=str, values="abc"), "values"),
    (dict(render=str, values=5), "values"),
    (dict(render=str, values=[1, "1"]), "values"),
    (dict(render=str, values=[1, 2], control="radio"), "control"),
    (dict(render=str, values=[1, 2], value=3), "value"),
    (dict(render=str, values=[1, 2], description=None), "description"),
])
def test_precomputed_slider_bad_input_names_the_field(kwargs, field):
    with pytest.raises(ValueError, match=field):
        widgets.precomputed_slider(**kwargs)

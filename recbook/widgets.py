"""Interactive helpers (ipywidgets) for the book's chapters.

Two kinds of interactivity, because the book is read both in a live notebook and as a static
website with no Python kernel behind it:

* **live**: :func:`user_timeline_widget` re-draws :func:`user_timeline` for the user picked in a
  dropdown. It needs a kernel; on the website it shows the figure for the first user only.
* **precomputed**: :func:`precomputed_slider` renders a figure (or HTML) for every value up
  front, puts the results in a ``widgets.Stack`` of ``Output`` widgets and links the stack's
  ``selected_index`` to a slider with ``widgets.jslink``. The link runs in the browser, so the
  slider keeps working on the static website. Use it for a handful of values: every rendered
  figure is stored in the page. :func:`two_vector_slider` and :func:`contribution_dropdown` (the
  factorization-machine chapter) are built on it.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import ipywidgets as widgets
import matplotlib.dates as mdates
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from IPython.display import HTML, display
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from ._checks import require_columns
from .data.protocols import LABEL_THRESHOLD, chronological_split, ctr_frame
from .plots import LABEL_COLORS, SPLIT_COLORS, SPLITS

__all__ = ["contribution_dropdown", "ctr_splits", "precomputed_slider", "two_vector_slider",
           "user_timeline", "user_timeline_widget"]


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


# --------------------------------------------------------------------------------------------
# Interactivity without a kernel
# --------------------------------------------------------------------------------------------

def _show(result, new_figures) -> None:
    """Display what a render function returned inside the current Output widget."""
    if isinstance(result, Axes):
        result = result.figure
    if isinstance(result, Figure):
        display(result)
    elif isinstance(result, str):
        display(HTML(result))
    elif result is None:
        for fig in new_figures:   # the render function drew with pyplot and returned nothing
            display(fig)
    else:
        display(result)


def precomputed_slider(render: Callable, values: Sequence, description: str = "value", *,
                       control: str = "slider", value=None) -> widgets.VBox:
    """A slider (or dropdown) over ``values`` that shows ``render(value)``, computed up front.

    ``render(v)`` may return a matplotlib Figure or Axes, an HTML string, any displayable object,
    or None after drawing with pyplot. Each result goes into its own ``Output`` widget; the
    outputs form a ``widgets.Stack`` whose ``selected_index`` is tied to the control's ``index``
    with ``widgets.jslink``, so moving the slider switches the visible output in the browser,
    without a kernel. Figures are closed after rendering so they do not also appear below the cell.

    Args:
        render: ``callable(value) -> Figure | Axes | str | object | None``.
        values: the values to precompute (a short list: each result is stored in the page).
        description: the control's label.
        control: ``"slider"`` (a ``SelectionSlider``) or ``"dropdown"``.
        value: the value shown first (default: the first of ``values``).

    Returns:
        ``VBox([control, stack])``; also available as its attributes ``control``, ``stack``
        and ``link``.
    """
    if not callable(render):
        raise ValueError(f"render: expected a callable value -> figure/HTML, got {type(render).__name__}")
    if isinstance(values, (str, bytes)) or not hasattr(values, "__iter__"):
        raise ValueError(f"values: expected a sequence of values, got {type(values).__name__}")
    values = list(values)
    if not values:
        raise ValueError("values: expected at least one value")
    labels = [str(v) for v in values]
    if len(set(labels)) != len(labels):
        raise ValueError(f"values: expected distinct values, got {labels}")
    if control not in ("slider", "dropdown"):
        raise ValueError(f"control: expected 'slider' or 'dropdown', got {control!r}")
    if not isinstance(description, str):
        raise ValueError(f"description: expected a string, got {description!r}")
    if value is None:
        start = 0
    elif str(value) in labels:
        start = labels.index(str(value))
    else:
        raise ValueError(f"value: expected one of {labels}, got {value!r}")

    outputs = []
    for v in values:
        out = widgets.Output()
        before = set(plt.get_fignums())
        # Render outside the Output: inside IPython, `with out:` would swallow an exception.
        result = render(v)
        new = [plt.figure(n) for n in plt.get_fignums() if n not in before]
        with out:
            _show(result, new)
        for fig in new:
            plt.close(fig)
        if isinstance(result, (Figure, Axes)):
            plt.close(result if isinstance(result, Figure) else result.figure)
        outputs.append(out)

    options = list(zip(labels, range(len(values))))
    style = {"description_width": "initial"}
    if control == "slider":
        picker = widgets.SelectionSlider(options=options, index=start, description=description,
                                         continuous_update=True, style=style,
                                         layout=widgets.Layout(width="min(100%, 480px)"))
    else:
        picker = widgets.Dropdown(options=options, index=start, description=description, style=style)
    stack = widgets.Stack(children=outputs, selected_index=start)
    link = widgets.jslink((picker, "index"), (stack, "selected_index"))
    box = widgets.VBox([picker, stack])
    box.control, box.stack, box.link = picker, stack, link
    return box


# --------------------------------------------------------------------------------------------
# Factorization machines (precomputed, so they work on the website)
# --------------------------------------------------------------------------------------------

def two_vector_slider(len1: float = 1.5, len2: float = 1.2, bias: float = -0.5,
                      angles: Sequence[float] = tuple(range(0, 181, 15)), *, value: float | None = 60
                      ) -> widgets.VBox:
    """A slider over the angle between two 2-D feature vectors: the arrows, their dot product and
    the FM's predicted probability ``sigmoid(bias + <v1, v2>)`` for each angle (precomputed).

    ``v1`` points along the x axis; ``v2`` is rotated by the slider's angle (degrees).
    """
    from .interactions import two_vector_interaction
    from .plots import plot_two_vectors

    two_vector_interaction(0.0, len1, 0.0, len2, bias)  # validate once, naming the bad argument
    limit = 1.15 * max(len1, len2, 1e-9)

    def render(angle):
        return plot_two_vectors(two_vector_interaction(0.0, len1, float(angle), len2, bias), limit=limit)[0]

    return precomputed_slider(render, list(angles), "angle between v₁ and v₂ (°)", value=value)


def contribution_dropdown(model, batch, rows: Mapping[str, int], *, top: int | None = 15) -> widgets.VBox:
    """A dropdown of examples; each shows every term's contribution to the FM's logit (precomputed).

    Args:
        model: a :class:`recbook.models.FactorizationMachine`.
        batch: CTR rows (dict of tensors or :class:`~recbook.data.TensorData`).
        rows: ``{label: row of batch}``, e.g. ``{"user 13 × Star Wars (1977)": 42}``.
        top: terms drawn as their own bar (see :func:`recbook.plots.plot_pair_contributions`).
    """
    from .interactions import pair_contributions
    from .plots import plot_pair_contributions

    if not isinstance(rows, Mapping) or not rows:
        raise ValueError("rows: expected a non-empty dict {label: row}")
    for label, row in rows.items():
        pair_contributions(model, batch, row)  # validate every row before rendering any

    def render(label):
        return plot_pair_contributions(pair_contributions(model, batch, rows[label]), top=top, title=label)

    box = precomputed_slider(render, list(rows), "example", control="dropdown")
    box.control.layout.width = "min(100%, 600px)"  # room for "user 13 (seen) × Star Wars: 5★"
    return box

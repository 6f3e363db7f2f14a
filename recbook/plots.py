"""Figures every model chapter uses: learning curves, and the colours shared by all figures.

Every function draws into ``ax`` when one is given (or into a new figure otherwise) and returns
the Axes; none calls ``plt.show()``, so a chapter decides where a figure goes. Inputs are validated
once, at the top, and a bad input raises ``ValueError`` naming the field.

Figures that serve one chapter live with that chapter's helpers in :mod:`recbook.chapters`.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch, Rectangle

__all__ = ["FIGURE_FORMAT", "LABEL_COLORS", "SPLITS", "SPLIT_COLORS", "axes_or_new", "diagram_arrow", "diagram_axes",
           "diagram_box", "plot_learning_curves", "sharp_inline_figures"]

SPLITS = ("train", "valid", "test")
SPLIT_COLORS = {"train": "#4C72B0", "valid": "#DD8452", "test": "#C44E52"}
"""One colour per split, shared by every figure that shows the time split."""
LABEL_COLORS = {0: "#8C8C8C", 1: "#2A9D8F"}
"""Colour of a negative (label 0) and a positive (label 1) rating."""


FIGURE_FORMAT = "retina"
"""How a notebook shows matplotlib figures: PNG at twice the resolution, displayed at the
figure's size (the image carries its width and height). Labels stay sharp on high-DPI screens and
when a phone scales the figure down to its width, and the file stays bounded, unlike an SVG of a
scatter plot with thousands of points."""


def sharp_inline_figures(fmt: str = FIGURE_FORMAT) -> bool:
    """In a Jupyter kernel, draw every inline matplotlib figure as ``fmt`` (:data:`FIGURE_FORMAT`).

    ``import recbook`` calls it, so every chapter (and the website, which runs the notebooks) gets
    sharp figures without a line of its own. Outside a kernel it does nothing and returns False.

    Raises:
        ValueError: if ``fmt`` is not a format the inline backend knows.
    """
    if fmt not in {"png", "retina", "png2x", "svg", "jpeg", "jpg", "pdf"}:
        raise ValueError(f"fmt: expected 'retina', 'png', 'svg', 'jpeg' or 'pdf', got {fmt!r}")
    import sys

    if "ipykernel" not in sys.modules:
        return False
    from IPython import get_ipython

    shell = get_ipython()
    if shell is None or not hasattr(shell, "kernel"):
        return False
    from matplotlib_inline.config import InlineBackend

    # The backend's one configuration object: setting its formats re-registers the formatters now,
    # and the inline backend reads the same object when pyplot switches it on later.
    cfg = InlineBackend.instance(parent=shell)
    cfg.shell = shell
    cfg.figure_formats = {fmt}
    return True


def axes_or_new(ax: Axes | None, figsize=(6.4, 3.6)) -> Axes:
    """``ax`` itself, or the Axes of a new figure of ``figsize`` when ``ax`` is None."""
    if ax is None:
        _, ax = plt.subplots(figsize=figsize, layout="constrained")
    elif not isinstance(ax, Axes):
        raise ValueError(f"ax: expected a matplotlib Axes or None, got {type(ax).__name__}")
    return ax


# --------------------------------------------------------------------------------------------
# Architecture diagrams: boxes and arrows on a blank canvas
# --------------------------------------------------------------------------------------------

def diagram_axes(ax: Axes | None, figsize, xlim: tuple[float, float], ylim: tuple[float, float]) -> Axes:
    """A blank canvas for a diagram: ``ax`` (or a new figure of ``figsize``) with the given data
    limits and no axes drawn; boxes and arrows are placed in those data coordinates."""
    ax = axes_or_new(ax, figsize=figsize)
    ax.set_xlim(*xlim)
    ax.set_ylim(*ylim)
    ax.axis("off")
    return ax


def diagram_box(ax: Axes, x: float, y: float, w: float, h: float, text: str, colour, size: float = 9.5,
                weight: str = "normal") -> None:
    """A rounded box with its lower-left corner at ``(x, y)``, ``text`` centred in it."""
    ax.add_patch(FancyBboxPatch((x, y), w, h, boxstyle="round,pad=0.4", facecolor=colour,
                                edgecolor="0.35", lw=1))
    ax.text(x + w / 2, y + h / 2, text, ha="center", va="center", fontsize=size, fontweight=weight)


def diagram_arrow(ax: Axes, x0: float, y0: float, x1: float, y1: float, colour="0.3", style: str = "-",
                  head: float = 12) -> None:
    """An arrow from ``(x0, y0)`` to ``(x1, y1)`` (``style``: a matplotlib line style; ``head``:
    the arrow head's size)."""
    ax.add_patch(FancyArrowPatch((x0, y0), (x1, y1), arrowstyle="-|>", mutation_scale=head,
                                 color=colour, lw=1, linestyle=style))


def diagram_fields_table(ax: Axes, fields: Sequence[str], *, top: float, table_x: float, table_w: float,
                         fields_title: str = "fields", row_label: str = "{}") -> None:
    """The left half of the FM-family diagrams: one box per field (``genres`` marked as a mean),
    each with an arrow into "one shared table" drawn as one block of rows per field.

    ``top``: the y of the fields' column top (titles above it); ``table_x``, ``table_w``: where the
    table stands; ``row_label``: a block's text, ``{}`` replaced by the field name.
    """
    n = len(fields)
    step, block, centre = 44 / n, 40 / n, top - 22
    ax.text(8, top + 2.5, fields_title, ha="center", fontsize=10, fontweight="bold")
    for i, f in enumerate(fields):
        y = top - step * (i + 0.5)
        diagram_box(ax, 1.5, y - step * 0.32, 13, step * 0.64, f + (" (mean)" if f == "genres" else ""),
                    "#EAEAF2", 8.5)
        diagram_arrow(ax, 15.3, y, table_x - 0.5, centre + (y - centre) * 0.75)
    mid = table_x + table_w / 2
    ax.text(mid, top + 2.5, "one shared table", ha="center", fontsize=10, fontweight="bold")
    for i, f in enumerate(fields):
        y0 = top - 1 - block * (i + 1)
        ax.add_patch(Rectangle((table_x, y0), table_w, block, facecolor="#F3C9A6" if i % 2 else "#FBE3CF",
                               edgecolor="0.5", lw=0.6))
        ax.text(mid, y0 + block / 2, row_label.format(f), ha="center", va="center", fontsize=7.5)


# --------------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------------

def plot_learning_curves(fits: Mapping, metrics: Sequence[str] = ("valid_auc", "valid_logloss"), *,
                         axes=None) -> np.ndarray:
    """Validation metrics by epoch, one line per model, one panel per metric, with the epoch whose
    weights early stopping restored marked (★) on every panel.

    Args:
        fits: ``{name: FitResult}`` from :func:`recbook.train.fit`.
        metrics: columns of the histories; titles and axes name them in words.
        axes: one Axes per metric (default: a new figure).
    """
    if not isinstance(fits, Mapping) or not fits:
        raise ValueError("fits: expected a non-empty dict {name: FitResult}")
    for name, f in fits.items():
        if not hasattr(f, "history") or not hasattr(f, "best_epoch"):
            raise ValueError(f"fits['{name}']: expected a FitResult (with history and best_epoch)")
        missing = [m for m in metrics if m not in f.history.columns]
        if missing:
            raise ValueError(f"fits['{name}']: its history has no column {missing[0]!r}")
    words = {"valid_auc": "validation AUC", "valid_logloss": "validation logloss",
             "valid_gauc": "validation GAUC", "train_loss": "training loss"}
    if axes is None:
        fig, axes = plt.subplots(1, len(metrics), figsize=(3.6 * len(metrics), 3.3), layout="constrained",
                                 squeeze=False)
    axes = np.asarray(axes, dtype=object).ravel()
    if len(axes) != len(metrics) or not all(isinstance(a, Axes) for a in axes):
        raise ValueError(f"axes: expected {len(metrics)} matplotlib Axes or None")
    colours = ["#4C72B0", "#DD8452", "#55A868", "#C44E52", "#8172B2"]
    for ax, metric in zip(axes, metrics):
        for (name, f), colour in zip(fits.items(), colours):
            h = f.history[metric].astype(float)
            ax.plot(h.index, h.to_numpy(), marker="o", ms=3, lw=1.6, color=colour, label=name)
            ax.plot([f.best_epoch], [h[f.best_epoch]], marker="*", ms=15, color=colour,
                    markeredgecolor="black", markeredgewidth=0.6, linestyle="none")
        ax.set_xlabel("epoch")
        ax.set_ylabel(words.get(metric, metric.replace("_", " ")))
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.grid(alpha=0.3)
        ax.set_title(words.get(metric, metric), fontsize=11)
    handles, labels = axes[0].get_legend_handles_labels()
    handles.append(plt.Line2D([], [], marker="*", ms=13, color="0.5", markeredgecolor="black",
                              linestyle="none"))
    labels.append("epoch whose weights were restored")
    axes[0].legend(handles, labels, frameon=False, fontsize=9, loc="lower right")
    return axes

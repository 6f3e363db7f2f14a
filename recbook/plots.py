"""Figures every model chapter uses: learning curves, and the colours shared by all figures.

Every function draws into ``ax`` when one is given (or into a new figure otherwise) and returns
the Axes; none calls ``plt.show()``, so a chapter decides where a figure goes. Inputs are validated
once, at the top, and a bad input raises ``ValueError`` naming the field.

Figures that serve one chapter live with that chapter's helpers in :mod:`recbook.chapters`.
"""
from __future__ import annotations

from collections.abc import Mapping

import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.axes import Axes

__all__ = ["LABEL_COLORS", "SPLITS", "SPLIT_COLORS", "axes_or_new", "plot_learning_curves"]

SPLITS = ("train", "valid", "test")
SPLIT_COLORS = {"train": "#4C72B0", "valid": "#DD8452", "test": "#C44E52"}
"""One colour per split, shared by every figure that shows the time split."""
LABEL_COLORS = {0: "#8C8C8C", 1: "#2A9D8F"}
"""Colour of a negative (label 0) and a positive (label 1) rating."""


def axes_or_new(ax: Axes | None, figsize=(6.4, 3.6)) -> Axes:
    """``ax`` itself, or the Axes of a new figure of ``figsize`` when ``ax`` is None."""
    if ax is None:
        _, ax = plt.subplots(figsize=figsize, layout="constrained")
    elif not isinstance(ax, Axes):
        raise ValueError(f"ax: expected a matplotlib Axes or None, got {type(ax).__name__}")
    return ax


# --------------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------------

def plot_learning_curves(histories: Mapping[str, pd.DataFrame], metric: str = "valid_auc", *,
                         mode: str | None = None, ax: Axes | None = None) -> Axes:
    """One line per model: ``metric`` against the epoch, with each model's best epoch marked.

    Args:
        histories: ``{name: history}``, each history a DataFrame as ``recbook.train.fit(...).history``
            (index ``epoch``; columns such as ``train_loss``, ``valid_auc``, ``valid_logloss``).
        metric: the column to draw.
        mode: ``"max"`` or ``"min"``: which value is best. Default: ``"min"`` when the metric name
            contains "loss", else ``"max"``.
    """
    if not isinstance(histories, Mapping) or not histories:
        raise ValueError("histories: expected a non-empty dict {name: DataFrame}")
    if not isinstance(metric, str):
        raise ValueError(f"metric: expected a column name (str), got {metric!r}")
    for name, h in histories.items():
        if not isinstance(h, pd.DataFrame):
            raise ValueError(f"histories['{name}']: expected a DataFrame, got {type(h).__name__}")
        if metric not in h.columns:
            raise ValueError(f"histories['{name}']: has no column {metric!r}; "
                             f"columns are {list(h.columns)}")
        if h[metric].notna().sum() == 0:
            raise ValueError(f"histories['{name}']: column {metric!r} has no values")
    if mode is None:
        mode = "min" if "loss" in metric else "max"
    if mode not in ("max", "min"):
        raise ValueError(f"mode: expected 'max', 'min' or None, got {mode!r}")
    ax = axes_or_new(ax)
    for name, h in histories.items():
        values = h[metric].astype(float)
        (line,) = ax.plot(values.index, values.to_numpy(), marker="o", ms=3, label=str(name))
        best = values.idxmax() if mode == "max" else values.idxmin()
        ax.plot([best], [values[best]], marker="*", ms=12, color=line.get_color(),
                markeredgecolor="black", markeredgewidth=0.5, linestyle="none")
    ax.set_xlabel("epoch")
    ax.set_ylabel(metric)
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.set_title(f"{metric} by epoch (★ best, {mode})")
    ax.legend(frameon=False)
    ax.grid(alpha=0.3)
    return ax



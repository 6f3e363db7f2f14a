"""Interactivity without a kernel, shared by every chapter.

The book is read both in a live notebook and as a static website with no Python kernel behind
it. :func:`precomputed_slider` renders a figure (or HTML) for every value up front, puts the
results in a ``widgets.Stack`` of ``Output`` widgets and links the stack's ``selected_index`` to a
slider with ``widgets.jslink``. The link runs in the browser, so the slider keeps working on the
static website. Use it for a handful of values: every rendered figure is stored in the page.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import ipywidgets as widgets
import matplotlib.pyplot as plt
from IPython.display import HTML, display
from matplotlib.axes import Axes
from matplotlib.figure import Figure

__all__ = ["precomputed_slider"]


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

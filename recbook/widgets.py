"""Interactivity without a kernel, shared by every chapter.

The book is read in a live notebook (Jupyter, Colab, Binder) and as a static website with no
Python kernel behind it. Its interactive figures are Vega-Lite charts built with Altair: the data
(a model's weights, a table of ratings) travels inside the chart, and the parameters bound to
sliders and dropdowns drive Vega transforms that **compute in the browser**, the same way on the
website and in a notebook. A chapter builds one like this::

    weights = widgets.CsvData(table, name="fm_weights", decimals=4)   # data shipped with the page
    user = widgets.dropdown("user", users, labels=names, label="user")
    chart = alt.Chart(weights.ref).transform_calculate(...).mark_bar().encode(...)
    widgets.browser_chart(chart, params=[user], data=[weights], checks=[
        {"set": {"user": 13}, "texts": ["logit = +0.53"]},   # what Python computed for user 13
    ])

:func:`browser_chart` ships the data, renders as SVG (so the browser test can read it), checks
that every parameter is bound to a control and that the page stays small, and records
``checks``: the browser test (tests/browser/) moves every control of every chart, fails when the
figure does not change, then sets each check's controls and fails unless the figure shows each
expected text. A text computed in Python from the real model thus proves that the browser computes
the same thing.

On the website every chart fits its cell: one wider than the page (a phone is 390 px wide) is
drawn again with its side-by-side panels stacked and its fixed widths narrowed
(``_ext/static/recbook-fit.js``). Design charts that still read when stacked, and that respond to a
control within 200 ms: ship what the controls can reach rather than computing a model in Vega.
The browser test times every control change and measures every chart at 390 px.

:func:`precomputed_slider` is the fallback for a figure that cannot be computed in the browser:
one figure per value, rendered up front, switched by a slider through ``widgets.jslink``.
"""
from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Mapping, Sequence

import altair as alt
import ipywidgets as widgets
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from IPython.display import HTML, Markdown, display
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from .i18n import spec_translation, translate_texts

__all__ = [
    "BrowserChart", "CsvData", "EMBED_OPTIONS", "MAX_SPEC_BYTES", "bound_params", "browser_chart", "checkbox",
    "decode_digits", "dropdown", "encode_digits", "precomputed_slider", "show_source", "slider", "spec_bytes",
]

EMBED_OPTIONS = {"renderer": "svg", "actions": False}
"""How vega-embed draws every chart: as SVG (readable by the browser test, sharp when zoomed),
without the "..." export menu."""

MAX_SPEC_BYTES = 500_000
"""Largest chart :func:`browser_chart` accepts (bytes of JSON). The whole page should stay under
about 1 MB; ship what the controls can reach, compactly (:class:`CsvData`)."""

BOOK_CONFIG = {
    "font": "sans-serif",
    "axis": {"labelFontSize": 12, "titleFontSize": 13, "titleFontWeight": "normal"},
    "legend": {"labelFontSize": 12, "titleFontSize": 12, "orient": "bottom"},
    "title": {"fontSize": 14, "fontWeight": "normal", "anchor": "start"},
    "view": {"stroke": None},
}
"""Chart styling shared by every chapter: labels readable at the page's width."""


# --------------------------------------------------------------------------------------------
# Data that travels with a chart
# --------------------------------------------------------------------------------------------

class CsvData:
    """A table shipped inside a chart as one CSV string, under a name.

    CSV is about half the size of the list of records Altair writes for a DataFrame, and naming
    the table lets several transforms (``transform_lookup``) and layers use it with one copy in
    the page. Numeric columns are parsed back to numbers in the browser (``parse``), so an
    expression such as ``datum.w + datum.b`` adds numbers rather than joining strings. That parsing
    happens in a chart's own data flow only: fields that ``transform_lookup`` brings in from a
    ``CsvData`` arrive as text. Multiplication and division convert them by themselves; wrap them in
    ``toNumber(...)`` before adding, comparing or testing them (``toNumber(datum.seen) > 0``).

    Args:
        frame: the table; its column names become the fields (``datum.name``).
        name: the dataset's name in the chart (letters, digits and ``_``).
        decimals: round float columns to this many decimals (an int for all, or a dict per
            column); None keeps full precision.

    Attributes:
        ref: the ``alt.NamedData`` to pass to ``alt.Chart`` or ``alt.LookupData``.
        csv: the CSV text.
    """

    def __init__(self, frame: pd.DataFrame, *, name: str, decimals: int | Mapping[str, int] | None = None):
        if not isinstance(frame, pd.DataFrame) or frame.empty:
            raise ValueError(f"frame: expected a non-empty pandas DataFrame, got {type(frame).__name__}")
        if not isinstance(name, str) or not name or not name.replace("_", "").isalnum():
            raise ValueError(f"name: expected letters, digits and '_', got {name!r}")
        bad = [c for c in frame.columns if not isinstance(c, str) or not c]
        if bad:
            raise ValueError(f"frame: column names must be non-empty strings, got {bad}")
        numeric = [c for c in frame.columns if pd.api.types.is_numeric_dtype(frame[c])
                   and not pd.api.types.is_bool_dtype(frame[c])]
        values = frame[numeric].to_numpy(dtype=float) if numeric else np.zeros((1, 0))
        if not np.isfinite(values).all():
            raise ValueError("frame: numeric columns contain NaN or infinite values")
        out = frame.copy()
        if decimals is not None:
            per = decimals if isinstance(decimals, Mapping) else {c: decimals for c in numeric}
            for c, d in per.items():
                if c not in out.columns:
                    raise ValueError(f"decimals: no column {c!r} in frame")
                if isinstance(d, bool) or not isinstance(d, (int, np.integer)) or d < 0:
                    raise ValueError(f"decimals[{c!r}]: expected an integer >= 0, got {d!r}")
                if pd.api.types.is_float_dtype(out[c]):
                    out[c] = out[c].round(int(d))
        self.name = name
        self.columns = list(frame.columns)
        self.numeric = numeric
        # "%g"-like output without trailing zeros keeps the text short.
        self.csv = out.to_csv(index=False, float_format=lambda v: f"{v:.10g}", lineterminator="\n")
        fmt = alt.CsvDataFormat(type="csv", parse={c: "number" for c in numeric})
        self.ref = alt.NamedData(name=name, format=fmt)

    def __len__(self) -> int:
        return self.csv.count("\n") - 1

    def __repr__(self) -> str:
        return f"CsvData({self.name!r}, {len(self)} rows, {len(self.csv):,} characters)"


# --------------------------------------------------------------------------------------------
# Controls
# --------------------------------------------------------------------------------------------

def _require_name(name) -> str:
    if not isinstance(name, str) or not name or not (name[0].isalpha() and name.replace("_", "").isalnum()):
        raise ValueError(f"name: expected an identifier (letters, digits, '_'), got {name!r}")
    return name


def _require_number(value, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) \
            or not math.isfinite(value):
        raise ValueError(f"{what}: expected a finite number, got {value!r}")
    return float(value)


def slider(name: str, min: float, max: float, step: float, value: float, label: str | None = None
           ) -> alt.Parameter:
    """A parameter bound to a range slider: ``datum``-free expressions read it as ``name``.

    Args:
        name: the parameter's name in the chart's expressions.
        min, max, step: the slider's range and step.
        value: the initial value (within ``[min, max]``).
        label: the text before the slider (default ``name``).
    """
    name = _require_name(name)
    lo, hi = _require_number(min, "min"), _require_number(max, "max")
    step = _require_number(step, "step")
    value = _require_number(value, "value")
    if not lo < hi:
        raise ValueError(f"max: expected a number above min = {lo}, got {hi}")
    if step <= 0:
        raise ValueError(f"step: expected a positive number, got {step}")
    if not lo <= value <= hi:
        raise ValueError(f"value: expected a number in [{lo}, {hi}], got {value}")
    return alt.param(name=name, value=value,
                     bind=alt.binding_range(min=lo, max=hi, step=step, name=f"{label or name} "))


def dropdown(name: str, options: Sequence, value=None, *, labels: Sequence[str] | None = None,
             label: str | None = None) -> alt.Parameter:
    """A parameter bound to a dropdown (an HTML ``<select>``) of ``options``.

    Args:
        name: the parameter's name in the chart's expressions.
        options: the values the parameter can take (numbers or strings, distinct).
        value: the initial value (default: the first option).
        labels: what the dropdown shows for each option (default: the options themselves).
        label: the text before the dropdown (default ``name``).
    """
    name = _require_name(name)
    if isinstance(options, (str, bytes)) or not isinstance(options, Iterable):
        raise ValueError(f"options: expected a list of values, got {type(options).__name__}")
    options = [o.item() if isinstance(o, np.generic) else o for o in options]
    if not options:
        raise ValueError("options: expected at least one value")
    if len(set(options)) != len(options):
        raise ValueError("options: expected distinct values")
    if value is None:
        value = options[0]
    value = value.item() if isinstance(value, np.generic) else value
    if value not in options:
        raise ValueError(f"value: expected one of the options, got {value!r}")
    if labels is not None:
        labels = [str(x) for x in labels]
        if len(labels) != len(options):
            raise ValueError(f"labels: expected {len(options)} labels (one per option), got {len(labels)}")
    bind = alt.binding_select(options=options, labels=labels, name=f"{label or name} ") if labels \
        else alt.binding_select(options=options, name=f"{label or name} ")
    return alt.param(name=name, value=value, bind=bind)


def checkbox(name: str, value: bool = False, label: str | None = None) -> alt.Parameter:
    """A parameter bound to a checkbox (true or false)."""
    name = _require_name(name)
    if not isinstance(value, bool):
        raise ValueError(f"value: expected True or False, got {value!r}")
    return alt.param(name=name, value=value, bind=alt.binding_checkbox(name=f"{label or name} "))


# --------------------------------------------------------------------------------------------
# The chart as the page ships it
# --------------------------------------------------------------------------------------------

def _walk(node):
    if isinstance(node, dict):
        yield node
        for v in node.values():
            yield from _walk(v)
    elif isinstance(node, list):
        for v in node:
            yield from _walk(v)


def bound_params(spec) -> dict[str, dict]:
    """``{name: param}`` of every parameter of a chart (or its spec dict) that has a control."""
    spec = spec.to_dict() if hasattr(spec, "to_dict") else spec
    if not isinstance(spec, Mapping):
        raise ValueError(f"spec: expected an Altair chart or a Vega-Lite spec dict, got {type(spec).__name__}")
    found = {}
    for node in _walk(spec):
        for p in node.get("params", []) if isinstance(node.get("params"), list) else []:
            if isinstance(p, Mapping) and "bind" in p and "name" in p:
                found[p["name"]] = dict(p)
    return found


def _check_digits(width, alphabet) -> tuple[int, int]:
    """``(width, base)`` of a digit codec, refusing what would not round-trip: a width that is not
    a positive integer, an alphabet that is not a string of at least 2 distinct ASCII characters
    (a repeated character would decode two digits as one)."""
    if isinstance(width, bool) or not isinstance(width, (int, np.integer)) or width < 1:
        raise ValueError(f"width: expected a positive integer number of digits per code, got {width!r}")
    if not isinstance(alphabet, str) or not alphabet.isascii() or len(alphabet) < 2:
        raise ValueError(f"alphabet: expected a string of at least 2 ASCII characters (the digits), "
                         f"got {alphabet!r}")
    repeated = sorted({ch for ch in alphabet if alphabet.count(ch) > 1})
    if repeated:
        raise ValueError(f"alphabet: the character(s) {repeated} appear more than once in {alphabet!r}; "
                         "expected distinct characters, one per digit value")
    return int(width), len(alphabet)


def encode_digits(codes, width: int, alphabet: str) -> list[str]:
    """Each row of the non-negative integers ``codes`` ``[rows, cols]`` as one string of ``cols``
    numbers of ``width`` digits in base ``len(alphabet)`` (high digit first, no separators): how a
    page ships a quantised weight matrix compactly. The caller quantises (and says how the browser
    decodes); :func:`decode_digits` inverts it.

    Raises:
        ValueError: if ``codes`` is not a 2-D integer array or a code needs more than ``width`` digits.
    """
    width, base = _check_digits(width, alphabet)
    codes = np.asarray(codes)
    if codes.ndim != 2 or not np.issubdtype(codes.dtype, np.integer):
        raise ValueError(f"codes: expected a 2-D integer array, got shape {codes.shape}, dtype {codes.dtype}")
    if codes.size and (codes.min() < 0 or codes.max() >= base ** width):
        raise ValueError(f"codes: expected integers in [0, {base ** width}) ({width} digits in base {base}), "
                         f"got {codes.min()} .. {codes.max()}")
    powers = base ** np.arange(width - 1, -1, -1, dtype=np.int64)
    digits = (codes[:, :, None] // powers) % base                     # [rows, cols, width]
    letters = np.frombuffer(alphabet.encode("ascii"), dtype=np.uint8)[digits]
    return [row.tobytes().decode("ascii") for row in letters.reshape(len(codes), -1)]


def decode_digits(strings: Sequence[str], width: int, alphabet: str) -> np.ndarray:
    """The integer codes :func:`encode_digits` wrote: int64 ``[len(strings), cols]``.

    Raises:
        ValueError: if a string's length is not a multiple of ``width`` or it holds another character;
            if ``width`` or ``alphabet`` is not a valid codec (as for :func:`encode_digits`).
    """
    width, base = _check_digits(width, alphabet)
    if isinstance(strings, str):
        raise ValueError(f"strings: expected a list of strings, got the string {strings[:20]!r}")
    lookup = np.full(128, -1, dtype=np.int64)
    lookup[np.frombuffer(alphabet.encode("ascii"), dtype=np.uint8)] = np.arange(base)
    powers = base ** np.arange(width - 1, -1, -1, dtype=np.int64)
    out = []
    for s in strings:
        if not isinstance(s, str):
            raise ValueError(f"strings: expected strings, got {type(s).__name__} {s!r}")
        digits = lookup[np.frombuffer(s.encode("ascii"), dtype=np.uint8)] if s.isascii() else None
        if digits is None or len(s) % width or (digits < 0).any():
            raise ValueError(f"strings: {s[:20]!r}... is not {width}-digit numbers in the alphabet {alphabet!r}")
        out.append(digits.reshape(-1, width) @ powers)
    if len({len(row) for row in out}) > 1:
        raise ValueError(f"strings: hold {sorted({len(row) for row in out})} codes per string; expected the same "
                         "number in every string (one row of a matrix each)")
    return np.asarray(out, dtype=np.int64)


def spec_bytes(chart) -> int:
    """Bytes of a chart's JSON spec: what it adds to the page."""
    spec = chart.to_dict(validate=False) if hasattr(chart, "to_dict") else chart
    return len(json.dumps(spec, separators=(",", ":")).encode("utf-8"))


def _check_value(name: str, param: Mapping, value) -> None:
    bind = param["bind"]
    if "options" in bind:
        if value not in bind["options"]:
            raise ValueError(f"checks: {value!r} is not an option of the dropdown {name!r}")
    elif bind.get("input") == "range":
        v = _require_number(value, f"checks: value of {name!r}")
        lo, hi, step = bind.get("min", -math.inf), bind.get("max", math.inf), bind.get("step")
        if not lo <= v <= hi:
            raise ValueError(f"checks: {value!r} is outside the range of the slider {name!r}")
        if step and math.isfinite(lo) and abs((v - lo) / step - round((v - lo) / step)) > 1e-9:
            raise ValueError(f"checks: {value!r} is not on the steps of the slider {name!r} "
                             f"(min {lo}, step {step}); a browser would move it to the nearest step")
    elif bind.get("input") == "checkbox" and not isinstance(value, bool):
        raise ValueError(f"checks: the checkbox {name!r} takes True or False, got {value!r}")


class BrowserChart:
    """A chart as the page ships it: its Vega-Lite spec (``.spec``, a dict), displayed by Altair's
    active renderer (HTML on the website, Colab and Jupyter; the Vega-Lite MIME type in
    JupyterLab). Made by :func:`browser_chart`; ``to_dict()`` returns the spec."""

    def __init__(self, spec: dict):
        self.spec = spec

    def to_dict(self, *args, **kwargs) -> dict:
        return self.spec

    def _repr_mimebundle_(self, include=None, exclude=None):
        return alt.renderers.get()(self.spec)

    def __repr__(self) -> str:
        return f"BrowserChart({spec_bytes(self.spec):,} bytes, controls {sorted(bound_params(self.spec))})"


def browser_chart(chart, *, params: Sequence = (), data: Sequence[CsvData] = (),
                  checks: Sequence[Mapping] = (), max_bytes: int = MAX_SPEC_BYTES,
                  config: bool = True) -> BrowserChart:
    """Prepare an Altair chart for the page: its controls, its data, SVG drawing, its checks.

    Args:
        chart: any top-level Altair chart (single, layered or concatenated) whose expressions
            use the parameters of ``params`` by name.
        params: the controls (:func:`slider`, :func:`dropdown`, :func:`checkbox`). They are
            declared once, at the top of the spec, for every view of the chart (cheaper than
            ``chart.add_params``, which copies them into every view).
        data: the :class:`CsvData` tables the chart refers to by name.
        checks: what the browser must show for given control settings, each
            ``{"set": {param: value, ...}, "texts": ["...", ...]}``: with the controls set so, each
            text must appear in one of the chart's text marks (titles included). Compute the
            texts in Python from the real model; the browser test compares.
        max_bytes: the largest spec accepted (see :data:`MAX_SPEC_BYTES`).
        config: apply the book's styling (:data:`BOOK_CONFIG`).

    Returns:
        A :class:`BrowserChart`, ready to display (the last expression of a cell).

    Raises:
        ValueError: naming what is wrong: a parameter without a control (nothing could move
            it), a check that names an unknown parameter or an impossible value, a duplicate data
            name, or a chart larger than ``max_bytes``.
    """
    if not isinstance(chart, alt.TopLevelMixin):
        raise ValueError(f"chart: expected an Altair chart, got {type(chart).__name__}")
    params = list(params)
    if not all(isinstance(p, alt.Parameter) for p in params):
        raise ValueError("params: expected Altair parameters (recbook.widgets.slider, dropdown, checkbox)")
    data = list(data)
    if not all(isinstance(d, CsvData) for d in data):
        raise ValueError("data: expected a list of recbook.widgets.CsvData")
    names = [d.name for d in data]
    if len(set(names)) != len(names):
        raise ValueError(f"data: duplicate names {names}")
    if config:
        chart = chart.configure(**BOOK_CONFIG)
    spec = chart.to_dict()  # validates against the Vega-Lite schema (without the bulky parts)
    spec["params"] = list(spec.get("params", [])) + [p.param.to_dict() for p in params]
    if not spec["params"]:
        del spec["params"]
    spec["datasets"] = {**spec.get("datasets", {}), **{d.name: d.csv for d in data}}
    controls = bound_params(spec)
    unbound = [p.get("name") for node in _walk(spec)
               for p in (node.get("params") if isinstance(node.get("params"), list) else [])
               if isinstance(p, Mapping) and "bind" not in p and "select" not in p and "expr" not in p
               and p.get("name") not in controls]
    if unbound:
        raise ValueError(f"chart: parameters {unbound} have no control (bind=...); a value no "
                         "control can change belongs in the chart itself")
    checked = []
    for i, check in enumerate(checks):
        if not isinstance(check, Mapping) or set(check) - {"set", "texts"} or "texts" not in check:
            raise ValueError(f"checks[{i}]: expected {{'set': {{param: value}}, 'texts': [str, ...]}}")
        settings = dict(check.get("set", {}))
        for name, value in settings.items():
            if name not in controls:
                raise ValueError(f"checks[{i}]: {name!r} is not a parameter with a control; "
                                 f"the chart's controls are {sorted(controls)}")
            _check_value(name, controls[name], value)
        texts = check["texts"]
        if isinstance(texts, str) or not texts or not all(isinstance(t, str) and t for t in texts):
            raise ValueError(f"checks[{i}]: texts must be a non-empty list of non-empty strings")
        checked.append({"set": {k: (v.item() if isinstance(v, np.generic) else v) for k, v in settings.items()},
                        "texts": list(texts)})
    # The Chinese edition's strings (recbook.i18n): the page applies them before drawing, and the
    # browser test expects each check's texts in Chinese there.
    i18n = spec_translation(spec)
    pairs = i18n.pop("pairs")
    i18n["checks"] = [translate_texts(check["texts"], pairs) for check in checked]  # one per check
    spec["usermeta"] = {**spec.get("usermeta", {}), "embedOptions": dict(EMBED_OPTIONS),
                        "recbook": {"checks": checked, "i18n": i18n}}
    size = spec_bytes(spec)
    if size > max_bytes:
        raise ValueError(f"chart: its spec has {size:,} bytes, above max_bytes = {max_bytes:,}; ship "
                         "less data (only what the controls can reach, rounded: CsvData(decimals=...))")
    return BrowserChart(spec)


# --------------------------------------------------------------------------------------------
# Code listings
# --------------------------------------------------------------------------------------------

def show_source(*objects) -> Markdown:
    """The source code of functions, methods or classes as one highlighted listing.

    Returned as Markdown holding a ``python`` code block, which Jupyter and the website both
    highlight (the website also wraps long lines), so a chapter shows the package's own code rather
    than a copy: ``widgets.show_source(FactorizationMachine.forward)``.
    """
    import inspect
    import textwrap

    if not objects:
        raise ValueError("objects: expected at least one function, method or class")
    parts = []
    for obj in objects:
        try:
            parts.append(textwrap.dedent(inspect.getsource(obj)).rstrip())
        except (TypeError, OSError) as err:
            raise ValueError(f"objects: cannot read the source of {obj!r} ({err})") from None
    code = "\n\n".join(parts)
    fence = "```"
    while fence in code:
        fence += "`"
    return Markdown(f"{fence}python\n{code}\n{fence}")


# --------------------------------------------------------------------------------------------
# Fallback: one precomputed figure per value
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

    The fallback for a figure that cannot be computed in the browser (prefer
    :func:`browser_chart`). ``render(v)`` may return a matplotlib Figure or Axes, an HTML string,
    any displayable object, or None after drawing with pyplot. Each result goes into its own
    ``Output`` widget; the outputs form a ``widgets.Stack`` whose ``selected_index`` is tied to the
    control's ``index`` with ``widgets.jslink``, so moving the slider switches the visible output in
    the browser, without a kernel. Figures are closed after rendering so they do not also appear
    below the cell.

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


def escape_html(value):
    """``value`` made safe to place in HTML (and in a pandas ``Styler``, which escapes nothing).

    A string has ``&``, ``<``, ``>`` and quotes replaced by their entities, so that a value such
    as ``"<unk>"`` or ``"age_bucket=<18"`` is *shown* by the browser instead of being read as a
    tag and hidden. A pandas ``DataFrame`` or ``Series`` is returned as a copy whose text cells,
    index labels and column labels (every level) are escaped; numbers and other values are left
    as they are, so number formats still apply. Anything else that is not a string is returned
    unchanged. Escape once, right before the value is turned into HTML::

        widgets.escape_html(table).style.format({"weight": "{:+.4f}"})
    """
    import html

    def one(v):
        return html.escape(v) if isinstance(v, str) else v

    def labels(index: pd.Index) -> pd.Index:
        if isinstance(index, pd.MultiIndex):
            return index.set_levels([labels(level) for level in index.levels])
        if index.dtype == object or pd.api.types.is_string_dtype(index.dtype):
            return index.map(one)
        return index

    if isinstance(value, pd.DataFrame):
        out = value.copy()
        for i in range(out.shape[1]):
            col = out.iloc[:, i]
            if col.dtype == object or pd.api.types.is_string_dtype(col.dtype):
                out.isetitem(i, col.map(one))
        out.index, out.columns = labels(out.index), labels(out.columns)
        return out
    if isinstance(value, pd.Series):
        out = value.map(one) if (value.dtype == object or pd.api.types.is_string_dtype(value.dtype)) \
            else value.copy()
        out.index = labels(out.index)
        out.name = one(value.name)
        return out
    return one(value)

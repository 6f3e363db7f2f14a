"""Figures and charts in both editions of the book: the Chinese labels of every figure drawn by code.

The book's website has an English and a Chinese edition built from one set of executed notebooks
(the code runs once; see CONTRIBUTING.md, "Two editions"). The prose is translated by Sphinx's
catalogues; what code draws is translated here, as it is drawn, so that each output carries both
languages:

* **matplotlib figures.** In a Jupyter kernel every figure is displayed as PNG (English, what
  Jupyter and Colab show) and, beside it in the same output, as :data:`ZH_PNG`: the same figure
  drawn again with its titles, axis labels, legends and texts in Chinese, in fonts that have every
  glyph (:data:`FAMILIES`). The Chinese build of the website shows that one; the English build and
  every notebook front end ignore it.
* **browser charts** (:func:`recbook.widgets.browser_chart`). The spec carries, in
  ``usermeta.recbook.zh``, the Chinese of each of its strings (titles, control labels, texts built
  in expressions) as ``[path, text]`` pairs; the Chinese website applies them before it draws the
  chart.

The Chinese comes from one catalogue, ``locales/zh_CN/figures.po`` (English msgid, Chinese msgstr).
A label with numbers in it is looked up with each number replaced by ``{0}``, ``{1}``, ...
(``"valid AUC 0.7100"`` is the msgid ``"valid AUC {0}"``), so one entry serves every value. A
label without an entry stays English and is recorded in the output (``untranslated``), as is a
glyph no font has (``missing_glyphs``): ``python _ext/recbook_i18n_tool.py figures`` fails on
either (``make book`` runs it), and ``... figures --update`` adds the missing labels to the
catalogue, untranslated, for a translator.

Without the catalogue (recbook installed from a wheel) or without Babel, nothing Chinese is drawn.
"""
from __future__ import annotations

import contextlib
import functools
import json
import re
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path

from matplotlib.ticker import Formatter

__all__ = ["FAMILIES", "ZH_PNG", "catalogue", "chinese_figures", "figure_texts", "label_key", "needs_translation",
           "register", "spec_translation", "strict_glyphs", "translate", "zh_png"]

ZH_PNG = "image/vnd.recbook.zh+png"
"""MIME type of a figure's Chinese drawing (base64 PNG, like ``image/png``)."""

CATALOGUE = Path(__file__).resolve().parents[1] / "locales" / "zh_CN" / "figures.po"
"""The figure labels' catalogue in a checkout of the repository."""

CJK_FONT = "WenQuanYi Micro Hei"
FAMILIES = ["DejaVu Sans", CJK_FONT]
"""The fonts of a Chinese label: matplotlib's default first (Latin letters and digits look as in the
English figure), then WenQuanYi Micro Hei, which has the Han characters, full-width punctuation and
U+2212 MINUS SIGN (WenQuanYi Zen Hei lacks the minus sign). matplotlib falls back glyph by glyph."""

DEBIAN_PACKAGE = "fonts-wqy-microhei"
MISSING_GLYPH = re.compile(r"Glyph \d+ .* missing from (?:current )?font|does not have a glyph for")
"""What matplotlib says (a warning, or for maths a log record) when no font of a text has a glyph."""
MATH_FAMILIES = [CJK_FONT, "DejaVu Sans"]
"""The fonts of a label with ``$...$`` maths: mathtext sets the text around the maths in the first
family only, so the Chinese font comes first there."""


@contextlib.contextmanager
def strict_glyphs():
    """Within the block, a glyph missing from every font of a figure is an error (matplotlib only
    warns, and the book's build hides warnings: the page would show empty boxes)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=MISSING_GLYPH.pattern, category=UserWarning)
        yield


def register(family: str = CJK_FONT) -> str | None:
    """Make matplotlib know ``family`` if fontconfig has it (matplotlib's font list is a cache
    made when it first ran, which misses a font installed later). Returns the file, or None."""
    import subprocess

    from matplotlib import font_manager

    for f in font_manager.fontManager.ttflist:
        if f.name == family:
            return f.fname
    try:
        path = subprocess.run(["fc-match", "-f", "%{file}", f"{family}:style=Regular"],
                              capture_output=True, text=True, check=True).stdout.strip()
        found = subprocess.run(["fc-match", "-f", "%{family}", f"{family}:style=Regular"],
                               capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    if family not in found.split(",") or not path:
        return None
    font_manager.fontManager.addfont(path)
    return path

NUMBER = re.compile(r"(?<![\w.@{])[-\u2212]?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?(?![\w@])")
"""A number inside a label (``0.7100``, ``-3``, ``1e-3``), not a digit inside a name (``MRR@20``,
``GRU4Rec``, ``S512``)."""
PLACEHOLDER = re.compile(r"\{(\d+)\}")
_MATH = re.compile(r"\$[^$]*\$")
_LETTERS = re.compile(r"[A-Za-z]")


def label_key(text: str) -> tuple[str, list[str]]:
    """The catalogue key of ``text`` and the numbers it held: ``("valid AUC {0}", ["0.7100"])``.
    Spaces around the label are not part of the key."""
    if not isinstance(text, str):
        raise ValueError(f"text: expected a string, got {type(text).__name__}")
    text = text.strip()
    numbers: list[str] = []

    def hold(m: re.Match) -> str:
        numbers.append(m.group(0))
        return "{%d}" % (len(numbers) - 1)

    return NUMBER.sub(hold, text), numbers


def _entry(text: str, table: Mapping[str, str]) -> str:
    """The catalogue entry that translated ``text``."""
    return text if text in table else text.strip() if text.strip() in table else label_key(text)[0]


def needs_translation(text: str) -> bool:
    """Whether a label has English in it: an ASCII letter outside ``$...$`` maths."""
    return bool(_LETTERS.search(_MATH.sub("", text)))


def read_catalogue(path: Path) -> dict[str, str]:
    """{msgid: msgstr} of the translated, non-fuzzy entries of a ``.po`` file."""
    from babel.messages.pofile import read_po

    with Path(path).open("rb") as f:
        catalog = read_po(f)
    return {m.id: m.string for m in catalog
            if m.id and isinstance(m.id, str) and m.string and not m.fuzzy}


@functools.lru_cache(maxsize=1)
def catalogue() -> dict[str, str]:
    """The figure labels' catalogue, read once; empty without the file or without Babel."""
    try:
        return read_catalogue(CATALOGUE) if CATALOGUE.is_file() else {}
    except ImportError:
        return {}


def translate(text: str, table: Mapping[str, str] | None = None) -> str | None:
    """The Chinese of ``text``: its own entry, else the entry of its key with the numbers put back.
    None when the catalogue has neither."""
    table = catalogue() if table is None else table
    if text in table:
        return table[text]
    core = text.strip()
    if not core:
        return None
    lead, trail = text[:len(text) - len(text.lstrip())], text[len(text.rstrip()):]
    if core in table:
        return lead + table[core] + trail
    key, numbers = label_key(core)
    if not numbers or key not in table:
        return None
    return lead + PLACEHOLDER.sub(lambda m: numbers[int(m.group(1))] if int(m.group(1)) < len(numbers)
                                  else m.group(0), table[key]) + trail


# ---------------------------------------------------------------------------------------------
# matplotlib figures
# ---------------------------------------------------------------------------------------------

def figure_texts(fig) -> list[tuple[object, bool]]:
    """Every label of a figure as ``(Text, required)``: titles, axis labels, legends, texts and
    annotations are required (an English one must have an entry); tick labels are data or numbers,
    translated only when the catalogue has them."""
    found: list[tuple[object, bool]] = []
    seen: set[int] = set()

    def add(t, required=True):
        if t is not None and id(t) not in seen and t.get_visible() and t.get_text():
            seen.add(id(t))
            found.append((t, required))

    def legend(leg):
        if leg is not None:
            add(leg.get_title())
            for t in leg.get_texts():
                add(t)

    def figure(f):
        add(getattr(f, "_suptitle", None))
        add(getattr(f, "_supxlabel", None))
        add(getattr(f, "_supylabel", None))
        for t in f.texts:
            add(t)
        for leg in f.legends:
            legend(leg)
        for sub in getattr(f, "subfigs", []):
            figure(sub)

    figure(fig)
    for ax in fig.axes:
        for t in (ax.title, getattr(ax, "_left_title", None), getattr(ax, "_right_title", None),
                  ax.xaxis.label, ax.yaxis.label):
            add(t)
        for t in ax.texts:
            add(t)
        legend(ax.get_legend())
        for t in ax.get_xticklabels() + ax.get_yticklabels():
            add(t, required=False)
    return found


class _TranslatedTicks(Formatter):
    """A tick formatter that translates what another one writes (when the catalogue has it)."""

    def __init__(self, inner, table, used):
        self.inner, self.table, self.used = inner, table, used

    def _zh(self, text):
        zh = translate(text, self.table) if isinstance(text, str) and needs_translation(text) else None
        if zh is None:
            return text
        self.used.add(_entry(text, self.table))
        return zh

    def __call__(self, x, pos=None):
        return self._zh(self.inner(x, pos))

    def format_ticks(self, values):
        return [self._zh(t) for t in self.inner.format_ticks(values)]

    def set_locs(self, locs):
        self.inner.set_locs(locs)

    def get_offset(self):
        return self.inner.get_offset()

    def format_data_short(self, value):
        return self.inner.format_data_short(value)


@contextlib.contextmanager
def _matplotlib_log():
    """Collect what matplotlib logs while a Chinese figure is drawn, instead of printing it (a
    missing glyph in maths is a log record; WenQuanYi Micro Hei has no bold, which matplotlib
    reports as it falls back to the regular weight)."""
    import logging

    messages: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record):
            messages.append(record.getMessage())

    log = logging.getLogger("matplotlib")
    handler, propagate = Collect(level=logging.WARNING), log.propagate
    log.addHandler(handler)
    log.propagate = False
    try:
        yield messages
    finally:
        log.removeHandler(handler)
        log.propagate = propagate


def zh_png(fig, *, table: Mapping[str, str] | None = None, print_kwargs: Mapping | None = None):
    """The figure drawn with Chinese labels: ``(base64 PNG, metadata)``, the figure left as it was.

    The metadata holds the displayed ``width`` and ``height`` (the PNG is drawn at twice the
    resolution, like the English one) and ``recbook``: the catalogue keys used, the ``untranslated``
    labels and the ``missing_glyphs`` warnings (a character no font of the label has)."""
    import matplotlib
    from IPython.core.pylabtools import retina_figure

    table = catalogue() if table is None else table
    texts = figure_texts(fig)
    saved = [(t, t.get_text(), t.get_fontfamily()) for t, _ in texts]
    axes = [axis for ax in fig.axes for axis in (ax.xaxis, ax.yaxis)]
    saved_ticks = [(axis, axis.major.formatter) for axis in axes]
    used, untranslated = set(), []
    # Text in the generic family (ticks, most labels) falls back to the Chinese font too.
    fonts = {"font.sans-serif": [*FAMILIES, *matplotlib.rcParams["font.sans-serif"]]}
    try:
        for t, required in texts:
            text = t.get_text()
            zh = translate(text, table)
            if zh is None:
                if required and needs_translation(text):
                    untranslated.append(label_key(text)[0])
                continue
            used.add(_entry(text, table))
            t.set_text(zh)
            t.set_fontfamily(MATH_FAMILIES if "$" in zh else FAMILIES)
        for axis, formatter in saved_ticks:
            axis.major.formatter = _TranslatedTicks(formatter, table, used)
        with warnings.catch_warnings(record=True) as caught, matplotlib.rc_context(fonts), \
                _matplotlib_log() as logged:
            warnings.simplefilter("always")
            png, meta = retina_figure(fig, base64=True, **dict(print_kwargs or {"bbox_inches": "tight"}))
    finally:
        for t, text, family in saved:
            t.set_text(text)
            t.set_fontfamily(family)
        for axis, formatter in saved_ticks:
            axis.major.formatter = formatter
    said = [str(w.message) for w in caught] + logged
    missing = sorted({m for m in said if MISSING_GLYPH.search(m)})
    meta = dict(meta)
    meta["recbook"] = {"used": sorted(used), "untranslated": sorted(set(untranslated)),
                       "missing_glyphs": missing}
    return png, meta


def chinese_figures(shell=None) -> bool:
    """In a Jupyter kernel, display every matplotlib figure also as :data:`ZH_PNG`.

    ``import recbook`` calls it. Does nothing (returns False) outside a kernel, or where the
    catalogue or Babel is missing (recbook installed from a wheel: only the English is drawn)."""
    import sys

    if "ipykernel" not in sys.modules:
        return False
    if shell is None:
        from IPython import get_ipython

        shell = get_ipython()
    if shell is None or not hasattr(shell, "display_formatter") or not CATALOGUE.is_file():
        return False
    try:
        import babel  # noqa: F401  (reads the catalogue)
    except ImportError:
        return False
    formatters = shell.display_formatter.formatters
    if ZH_PNG in formatters:
        return True
    from IPython.core.formatters import BaseFormatter
    from matplotlib.figure import Figure
    from traitlets import ObjectName, Unicode

    class ChineseFigureFormatter(BaseFormatter):
        """Figures only: no other object has the ``_repr_recbook_zh_png_`` method it looks for."""
        format_type = Unicode(ZH_PNG)
        print_method = ObjectName("_repr_recbook_zh_png_")
        _return_type = (str,)

    def draw(fig):
        if not fig.axes and not fig.texts:
            return None
        from matplotlib_inline.config import InlineBackend

        kwargs = InlineBackend.instance().print_figure_kwargs
        return zh_png(fig, print_kwargs=kwargs)

    register()  # a font installed after matplotlib made its font cache
    formatter = ChineseFigureFormatter(parent=shell.display_formatter)
    formatter.for_type(Figure, draw)
    formatters[ZH_PNG] = formatter
    return True


# ---------------------------------------------------------------------------------------------
# browser charts (Vega-Lite specs)
# ---------------------------------------------------------------------------------------------

TEXT_KEYS = {"title", "text", "subtitle", "name", "labels", "description", "placeholder"}
"""Keys of a Vega-Lite spec whose strings a reader reads (``name`` and ``labels`` only inside a
control's ``bind``; ``text`` as a literal, not a field)."""
EXPRESSION_KEYS = {"expr", "calculate", "labelExpr"}
_LITERAL = re.compile(r"""'((?:[^'\\]|\\.)*)'|"((?:[^"\\]|\\.)*)\"""")
_DISPLAY_LITERAL = re.compile(r"""(?:\+\s*$|^\s*\+|^\s*[?:]\s*$|^\s*$)""")


def _expression_literals(expr: str) -> list[tuple[int, int, str]]:
    """String literals of a Vega expression that are shown, not compared: joined with ``+``, or
    the value of a ``?:`` branch; not one compared (``==``) or used as a field name (``datum['c' +
    ...]``). ``(start, end, text)`` of each literal's content. A branch's value that is compared
    later in the chart (a category) keeps its English through an entry that repeats it."""
    found = []
    for m in _LITERAL.finditer(expr):
        before, after = expr[:m.start()].rstrip(), expr[m.end():].lstrip()
        joined = before.endswith("+") or after.startswith("+")
        branch = (before.endswith("?") or before.endswith(":")) and not before.endswith("==") \
            and (after == "" or after.startswith(":") or after.startswith(")") or after.startswith(","))
        compared = before.endswith(("==", "!=", "===", "!==", "[")) or after.startswith(("==", "!=", "<", ">"))
        whole = before == "" and after == ""
        if (joined or branch or whole) and not compared:
            group = 1 if m.group(1) is not None else 2
            found.append((m.start(group), m.end(group), m.group(group)))
    return found


def _spec_strings(node, path=(), parent_key=None, in_bind=False):
    """Yield ``(path, text, kind)`` for each string of a spec a reader reads; kind is "text",
    "optional" (translated if the catalogue has it) or ("expr", start, end) for a literal inside
    an expression string."""
    if isinstance(node, Mapping):
        for key, value in node.items():
            if key in ("datasets", "data", "usermeta", "$schema", "config"):
                continue
            yield from _spec_strings(value, path + (key,), key, in_bind or key == "bind")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _spec_strings(value, path + (i,), parent_key, in_bind)
    elif isinstance(node, str):
        if parent_key == "domain" and len(path) >= 3 and path[-3] == "scale":
            # A colour scale's categories: translated with the values an expression gives them
            # (the same entry), left alone when they are data.
            yield path, node, "optional"
        elif parent_key in EXPRESSION_KEYS or (parent_key == "test"):
            if parent_key != "test":
                for start, end, text in _expression_literals(node):
                    yield path, text, ("expr", start, end)
        elif parent_key == "value" and len(path) >= 2 and path[-2] == "text":
            yield path, node, "text"  # a text mark's constant text: encode(text=alt.value("bias"))
        elif parent_key in TEXT_KEYS and (parent_key not in ("name", "labels") or in_bind):
            # A dropdown's option labels are data (movie titles, users): translated when the
            # catalogue has them, never required.
            yield path, node, "optional" if parent_key == "labels" else "text"


def spec_translation(spec: Mapping, table: Mapping[str, str] | None = None) -> dict:
    """The Chinese of a chart: ``{"zh": [[path, text], ...], "untranslated": [...], "used": [...],
    "pairs": {"whole" | "parts": {English: Chinese}}}``, ``path`` a list of keys and indices into ``spec``. Strings
    without English need no entry."""
    table = catalogue() if table is None else table
    texts: dict[tuple, str] = {}      # path -> the Chinese of a whole string
    spans: dict[tuple, list] = {}     # path of an expression -> (start, end, Chinese) of its literals
    untranslated, used, pairs = set(), set(), {}
    for path, text, kind in _spec_strings(spec):
        if not needs_translation(text):
            continue
        zh = translate(text, table)
        if zh is None:
            if kind != "optional":
                untranslated.add(label_key(text)[0])
            continue
        used.add(_entry(text, table))
        pairs.setdefault("parts" if isinstance(kind, tuple) else "whole", {})[text] = zh
        if isinstance(kind, tuple):
            spans.setdefault(path, []).append((kind[1], kind[2], zh))
        else:
            texts[path] = zh
    for path, literals in spans.items():
        value = _lookup(spec, path)
        for start, end, zh in sorted(literals, reverse=True):  # from the end: offsets stay valid
            value = value[:start] + zh.replace("\\", "\\\\").replace("'", "\\'") + value[end:]
        texts[path] = value
    return {"zh": [[list(path), value] for path, value in texts.items()], "untranslated": sorted(untranslated),
            "used": sorted(used), "pairs": pairs}


def _lookup(spec, path):
    node = spec
    for key in path:
        node = node[key]
    return node


def translate_texts(texts: Sequence[str], pairs: Mapping[str, Mapping[str, str]]) -> list[str]:
    """The Chinese of a chart check's expected texts: what the chart shows once its strings are
    translated. ``pairs`` (from :func:`spec_translation`) holds ``whole`` strings (a title, a
    label) and the ``parts`` that expressions join into a text; a text that is a whole string
    becomes its Chinese, otherwise each part inside it is replaced, longest first; a text that is
    a piece of one string becomes that string's Chinese."""
    whole, parts = pairs.get("whole", {}), pairs.get("parts", {})
    out = []
    for text in texts:
        if text in whole:
            out.append(whole[text])
            continue
        original = text
        for english in sorted(parts, key=len, reverse=True):
            if english.strip():
                text = text.replace(english, parts[english])
        if text == original and needs_translation(text):
            # A check may quote part of one string ("new user" of "new user: its user_id ..."):
            # the page then shows that string's Chinese, which is what to expect.
            holders = sorted((e for e in {**whole, **parts} if text in e), key=len)
            if holders:
                text = {**whole, **parts}[holders[0]].strip()
        out.append(text)
    return out


def figure_metadata(outputs: Sequence[Mapping]) -> list[dict]:
    """The ``recbook`` records of a notebook cell's outputs: one per Chinese figure, and one per
    chart (its ``usermeta.recbook`` i18n fields), for the catalogue check."""
    found = []
    for out in outputs:
        meta = out.get("metadata", {}).get(ZH_PNG)
        if meta is not None:
            found.append({"kind": "figure", **meta.get("recbook", {})})
        data = out.get("data", {})
        if "image/png" in data and ZH_PNG not in data:
            found.append({"kind": "figure", "no_chinese": True})
        html = data.get("text/html")
        if isinstance(html, list):
            html = "".join(html)
        if isinstance(html, str):
            decoder = json.JSONDecoder()
            for m in re.finditer(r'"i18n":\s*', html):
                try:
                    record, _ = decoder.raw_decode(html, m.end())
                except json.JSONDecodeError:
                    record = {"unreadable": True}
                found.append({"kind": "chart", **record})
    return found


# ---------------------------------------------------------------------------------------------
# the website: which drawing each edition shows (a myst-nb MIME renderer, registered in
# pyproject.toml under myst_nb.mime_renderers)
# ---------------------------------------------------------------------------------------------

ZH_PRIORITY = ("html", ZH_PNG, 45)
"""The Chinese build's MIME priority for :data:`ZH_PNG`: before ``image/png`` (50), after SVG. The
Chinese edition's Sphinx extension adds it to ``nb_mime_priority_overrides``; the English build
never selects the type."""


def _language(renderer) -> str:
    inner = getattr(renderer, "renderer", None)
    env = getattr(inner, "sphinx_env", None)
    if env is None:
        env = getattr(getattr(getattr(inner, "document", None), "settings", None), "env", None)
    return (getattr(getattr(env, "config", None), "language", None) or "en") if env is not None else "en"


class ChineseFigures:
    """Renders :data:`ZH_PNG` as the figure's image in the Chinese edition, and as nothing in any
    other. (Sphinx renders every MIME type of an output and picks one later by priority, so a
    figure without its Chinese drawing cannot be told here: ``recbook_i18n_tool.py figures`` and
    ``compare`` find it.)"""

    mime_priority_overrides: tuple = ()

    @staticmethod
    def handle_mime(renderer, data, inline):
        chinese = _language(renderer).startswith("zh")
        if data.mime_type == ZH_PNG:
            if not chinese:
                return []
            import dataclasses

            meta = dict(data.output_metadata.get(ZH_PNG, {}))
            meta.pop("recbook", None)
            return renderer.render_image(dataclasses.replace(data, mime_type="image/png",
                                                             output_metadata={"image/png": meta}))
        return None

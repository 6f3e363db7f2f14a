"""The recbook website's own Sphinx extension, loaded by _config.yml (``sphinx: local_extensions``).

What it adds to the stock Jupyter Book 1 stack (Sphinx 7.4, sphinx-thebe, myst-nb with
ipywidgets 8, MathJax 3):

A. **One repository URL.** The launch buttons (Binder, Colab), the repository and issue buttons
   and ``{{ repository_url }}`` in Markdown pages all read ``recbook.REPOSITORY_URL``
   (``recbook/__init__.py``), the same constant the notebooks' setup cell is rendered from.
   ``_config.yml`` carries no URL (Jupyter Book refuses the repository buttons without one there,
   so this extension switches them on); a URL set there that differs is an error. Change the URL
   in one place: ``python tools/set_repository_url.py NEW_URL``.
B. **Figures that compute in the browser.** Altair charts (Vega-Lite with parameters bound to
   controls) need vega, vega-lite and vega-embed. On pages that hold a chart we load the three,
   pinned (:func:`vega_packages`), from ``recbook_vega_base`` (a CDN on the website,
   ``_static/`` in the offline browser test), before require.js so that their UMD wrappers do not
   meet an AMD loader. Altair's own loader then finds them already loaded: it fetches nothing.
C. **Diagrams drawn at build time**: the ``{recbook-diagram}`` directive runs a drawing function
   of ``_ext/recbook_diagrams.py`` and shows the SVG it writes (see there).
D. **Exercises are numbered per chapter** (Exercise 1, 2, ... in every chapter), not across the
   book; solutions follow their exercise's number, and so does every reference to an exercise:
   write ``{numref}`fm-ex-poly2``` (it reads "Exercise 5", the number printed on that exercise),
   never a typed number. **Citations and the bibliography** both read author–year
   ("Rendle, 2010"), the list sorted by author (pybtex style ``recbook``).
F. **Chinese text.** A line break inside a paragraph is a space in HTML, which Chinese does not
   put between characters: a break between two Chinese characters (or Chinese punctuation) is
   removed at build time (:func:`join_cjk_lines`), so Chinese paragraphs may be wrapped in the
   source like English ones. Straight double quotes in a paragraph with Chinese text become
   “ and ” in pairs (:func:`cjk_quotes`) before Sphinx's smart quotes, which would take a quote
   after a Chinese character for a closing one (”宽”).
E. Three fixes for browser errors, each found by the browser test (tests/browser/):

   1. Sphinx 7.4 writes every inline script that an extension registers after the builder has
      started (sphinx-thebe, sphinx-togglebutton) twice: once from ``app.add_js_file`` and once
      more when it copies the registry in ``prepare_writing`` (``None`` versus ``''`` as file name
      defeats its duplicate check). sphinx-thebe's ``const THEBE_JS_URL`` declared twice is a
      SyntaxError on every page. We drop the registry copies that the builder already holds.
   2. ipywidgets 8 typesets widget labels with the MathJax 2 API, ``MathJax.Hub.Queue``, and the
      book loads MathJax 3, so every labelled widget throws a TypeError while it renders. A small
      shim maps ``Hub.Queue(["Typeset", MathJax.Hub, element])`` to ``MathJax.typesetPromise``.
   3. The widget manager (@jupyter-widgets/html-manager 1.x) computes where its icon fonts live
      from the require.js URL of its own module, which defaults to the page's folder
      (``book/@jupyter-widgets/html-manager/dist/*.woff2``: 404 on every widget page). On pages
      with widgets we configure require.js, before it loads, to map that module folder to the
      folder ``embed-amd.js`` really comes from (the CDN on the website, ``_static/`` offline).
"""
from __future__ import annotations

import ast
import json
import re
from pathlib import Path

from sphinx.application import Sphinx
from sphinx.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
JUPYTER_BOOK_DEFAULT_URL = "https://github.com/executablebooks/jupyter-book"


# ---------------------------------------------------------------------------------------------
# A. One repository URL
# ---------------------------------------------------------------------------------------------
def repository_url(root: Path = ROOT) -> str:
    """``REPOSITORY_URL`` of ``recbook/__init__.py``, read without importing the package."""
    tree = ast.parse((root / "recbook" / "__init__.py").read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "REPOSITORY_URL"
                                                for t in node.targets):
            return ast.literal_eval(node.value)
    raise ConfigError("recbook/__init__.py defines no REPOSITORY_URL")


def _set_repository_url(app: Sphinx, config) -> None:
    url = repository_url()
    options = dict(config.html_theme_options or {})
    given = options.get("repository_url")
    if given not in (None, "", JUPYTER_BOOK_DEFAULT_URL, url):
        raise ConfigError(
            f"_config.yml sets repository.url to {given!r}, but the book's repository URL is "
            f"recbook.REPOSITORY_URL = {url!r}. Remove repository.url from _config.yml and change "
            f"the URL with: python tools/set_repository_url.py NEW_URL")
    options["repository_url"] = url
    options.setdefault("use_repository_button", True)
    options.setdefault("use_issues_button", True)
    config.html_theme_options = options
    # Markdown pages write {{ repository_url }} (e.g. book/intro.md's "clone the repository").
    config.myst_substitutions = {**(config.myst_substitutions or {}), "repository_url": url}


# ---------------------------------------------------------------------------------------------
# B. Vega, Vega-Lite and vega-embed for Altair charts
# ---------------------------------------------------------------------------------------------
def vega_packages() -> dict[str, str]:
    """``{npm package: version}`` of the three scripts every chart page loads.

    vega-lite is the version the installed Altair writes its specs for (Altair's loader checks
    it); vega must be 6.3.1 or newer (6.3.0's build reports itself as 5.33.1).
    """
    import altair

    return {"vega": "6.4.0", "vega-lite": altair.VEGALITE_VERSION, "vega-embed": "7.3.0"}


VEGA_FILES = {"vega": "build/vega.min.js", "vega-lite": "build/vega-lite.min.js",
              "vega-embed": "build/vega-embed.min.js"}
"""Where each package keeps its browser build (UMD), relative to the package folder."""

# Altair's HTML output loads vega from a CDN unless VEGA_DEBUG already holds the versions it
# expects (altair.VEGA_VERSION, VEGALITE_VERSION, VEGAEMBED_VERSION). We record what really
# loaded, so a version Altair does not expect makes it fetch its own (and the offline test fail).
# With require.js on the page (widgets), Altair asks require.js for "vega-embed": we register the
# loaded globals as named AMD modules so that nothing is fetched either.
VEGA_READY = """\
(function () {
  var want = %(want)s;
  var have = {vega_version: window.vega && vega.version,
              vegalite_version: window.vegaLite && vegaLite.version,
              vegaembed_version: window.vegaEmbed && vegaEmbed.version};
  window.VEGA_DEBUG = window.VEGA_DEBUG || {};
  Object.keys(want).forEach(function (key) {
    var v = have[key] || "";
    if (v === want[key] || v.split(".")[0] === want[key]) VEGA_DEBUG[key] = want[key];
    else console.error("recbook: " + key + " " + v + " loaded, Altair expects " + want[key]);
  });
  // Keep each chart's element, spec and Vega view, for the browser test (tests/browser/).
  var embed = window.vegaEmbed;
  if (!embed) return;
  window.recbookCharts = [];
  // The Chinese edition draws each chart with its Chinese strings (recbook.i18n.spec_translation):
  // usermeta.recbook.i18n.zh holds [path, text] pairs, applied to a copy of the spec.
  var chinese = /^zh/i.test(document.documentElement.lang || "");
  function translated(spec) {
    var i18n = spec && spec.usermeta && spec.usermeta.recbook && spec.usermeta.recbook.i18n;
    if (!chinese || !i18n || !i18n.zh || !i18n.zh.length) return spec;
    var copy = JSON.parse(JSON.stringify(spec));
    i18n.zh.forEach(function (edit) {
      var node = copy, path = edit[0];
      for (var k = 0; k < path.length - 1 && node; k++) node = node[path[k]];
      if (node) node[path[path.length - 1]] = edit[1];
    });
    return copy;
  }
  window.vegaEmbed = Object.assign(function (el, spec, opt) {
    spec = translated(spec);
    return embed(el, spec, opt).then(function (result) {
      var element = typeof el === "string" ? document.querySelector(el) : el;
      window.recbookCharts.push({element: element, spec: spec, view: result.view});
      return result;
    });
  }, embed);
})();"""

VEGA_AMD = """\
if (typeof define === "function" && define.amd && window.vegaEmbed) {
  define("vega", [], function () { return window.vega; });
  define("vega-lite", [], function () { return window.vegaLite; });
  define("vega-embed", [], function () { return window.vegaEmbed; });
}"""

CHART_MARKER = "VEGA_DEBUG"  # in every chart Altair writes as HTML


def _vega_urls(base: str) -> list[str]:
    base = base.rstrip("/")
    return [f"{base}/{name}@{version}/{VEGA_FILES[name]}" for name, version in vega_packages().items()]


def _add_vega(app: Sphinx, pagename, templatename, context, doctree) -> None:
    if CHART_MARKER not in (context.get("body") or ""):
        return
    import altair

    for url in _vega_urls(app.config.recbook_vega_base):
        app.add_js_file(url, priority=200)  # before require.js (500): no AMD loader yet
    want = {"vega_version": altair.VEGA_VERSION, "vegalite_version": altair.VEGALITE_VERSION,
            "vegaembed_version": altair.VEGAEMBED_VERSION}
    app.add_js_file(None, body=VEGA_READY % {"want": json.dumps(want)}, priority=201)
    app.add_js_file(None, body=VEGA_AMD, priority=510)  # after require.js, before the charts


# ---------------------------------------------------------------------------------------------
# D. Exercise numbers per chapter; author-year bibliography labels
# ---------------------------------------------------------------------------------------------
def _number_exercises_per_chapter(app: Sphinx, env) -> list[str]:
    """Restart the exercise count in every document (Sphinx counts across the whole book)."""
    changed = []
    for docname, per_type in env.toc_fignumbers.items():
        numbers = per_type.get("exercise")
        if not numbers:
            continue
        renumbered = {ids: (i,) for i, ids in enumerate(numbers, start=1)}  # document order
        if renumbered != numbers:
            per_type["exercise"] = renumbered
            changed.append(docname)
    return changed


def _register_bibliography_style() -> None:
    from pybtex.plugin import register_plugin
    from pybtex.style.formatting.unsrt import Style as UnsrtStyle
    from pybtex.style.labels import BaseLabelStyle

    class AuthorYearLabels(BaseLabelStyle):
        """Labels as the citations read: "Rendle, 2010", "Juan et al., 2016"."""

        def format_labels(self, sorted_entries):
            labels = [self.format_label(entry) for entry in sorted_entries]
            seen: dict[str, int] = {}
            for label in labels:
                seen[label] = seen.get(label, 0) + 1
            suffix: dict[str, int] = {}
            for label in labels:
                if seen[label] > 1:  # "Rendle, 2010a", "Rendle, 2010b"
                    suffix[label] = suffix.get(label, 0) + 1
                    yield f"{label}{chr(ord('a') + suffix[label] - 1)}"
                else:
                    yield label

        @staticmethod
        def format_label(entry) -> str:
            people = entry.persons.get("author") or entry.persons.get("editor") or []
            names = [" ".join(p.last_names) or " ".join(p.first_names) for p in people]
            who = "Anon." if not names else names[0] if len(names) == 1 else \
                f"{names[0]} and {names[1]}" if len(names) == 2 else f"{names[0]} et al."
            return f"{who}, {entry.fields.get('year', 'n.d.')}"

    class Style(UnsrtStyle):
        default_sorting_style = "author_year_title"
        default_label_style = "recbook_author_year"

    register_plugin("pybtex.style.labels", "recbook_author_year", AuthorYearLabels, force=True)
    register_plugin("pybtex.style.formatting", "recbook", Style, force=True)


# ---------------------------------------------------------------------------------------------
# E. Fixes for browser errors
# ---------------------------------------------------------------------------------------------
# Runs at DOMContentLoaded: after the deferred MathJax script, before the widget manager renders
# the widgets (on window load).
MATHJAX2_HUB_SHIM = """\
document.addEventListener("DOMContentLoaded", function () {
  var mj = window.MathJax;
  if (!mj || mj.Hub || !mj.startup || typeof mj.typesetPromise !== "function") return;
  mj.Hub = {Queue: function () {
    Array.prototype.forEach.call(arguments, function (job) {
      if (Array.isArray(job) && job[0] === "Typeset" && job[2]) {
        mj.startup.promise.then(function () { return mj.typesetPromise([job[2]]); });
      }
    });
  }};
});"""


def _drop_duplicate_inline_scripts(app: Sphinx, env) -> None:
    held = getattr(app.builder, "_js_files", None)
    if held is None:  # not an HTML builder
        return
    bodies = {js.attributes.get("body") for js in held if not js.filename}
    app.registry.js_files[:] = [
        (filename, attrs) for filename, attrs in app.registry.js_files
        if filename or attrs.get("body") not in bodies
    ]


def _point_require_at_widget_manager(app: Sphinx, pagename, templatename, context, doctree):
    scripts = context.get("script_files") or []
    embed = next((js.filename for js in scripts
                  if js.filename and js.filename.split("?")[0].endswith("/embed-amd.js")), None)
    if embed is None:  # no widgets on this page
        return
    folder = embed.split("?")[0].rsplit("/", 1)[0]
    if "://" not in folder and not folder.startswith("/"):
        folder = context["pathto"](folder, 1)  # relative to this page
    config = {"paths": {"@jupyter-widgets/html-manager/dist": folder}}
    # Priority 499: before require.js and embed-amd.js (500), which read this global.
    app.add_js_file(None, body=f"var require = {json.dumps(config)};", priority=499)


def _add_stylesheet(app: Sphinx) -> None:
    # Our own static folder rather than a _static/ beside _config.yml: Jupyter Book links every
    # .js file under the static paths into each page once that folder exists.
    app.config.html_static_path.append(str(Path(__file__).parent / "static"))


# ---------------------------------------------------------------------------------------------
# F. Chinese text: no stray spaces from line breaks, quotes the right way round
# ---------------------------------------------------------------------------------------------
CJK = re.compile(
    "[\u2e80-\u2fdf\u3000-\u303f\u3040-\u30ff\u3100-\u312f\u3400-\u4dbf\u4e00-\u9fff"
    "\uf900-\ufaff\ufe30-\ufe4f\uff00-\uffef]")
"""Chinese (and Japanese) characters and punctuation, full-width forms included."""


def join_cjk_lines(text: str) -> str:
    """Remove each line break (with the indentation around it) that sits between two CJK
    characters: ``"处相遇，\n  物品向量"`` -> ``"处相遇，物品向量"``. Other breaks are kept."""
    return re.sub(f"(?<={CJK.pattern})[ \t]*\n[ \t]*(?={CJK.pattern})", "", text)


def cjk_quotes(text: str, opening: bool = True) -> tuple[str, bool]:
    """Straight double quotes as “ and ”, alternating, starting with “ when ``opening``.

    Returns the text and whether the next quote opens (quotes may pair across text nodes)."""
    out = []
    for char in text:
        if char == '"':
            out.append("“" if opening else "”")
            opening = not opening
        else:
            out.append(char)
    return "".join(out), opening


_NOT_PROSE = {"literal", "literal_block", "math", "math_block", "raw", "comment"}


def _is_prose(text, paragraph) -> bool:
    """Whether a text node of ``paragraph`` is prose (not code, maths or raw markup)."""
    parent = text.parent
    while parent is not None and parent is not paragraph:
        if parent.tagname in _NOT_PROSE:
            return False
        parent = parent.parent
    return True


def _chinese_text_transform():
    from docutils import nodes
    from sphinx.transforms import SphinxTransform

    class ChineseTextTransform(SphinxTransform):
        """:func:`join_cjk_lines` and :func:`cjk_quotes` on every paragraph with CJK text."""

        default_priority = 740  # before SphinxSmartQuotes (750), which would turn the quotes

        def apply(self, **kwargs) -> None:
            for paragraph in list(self.document.findall(nodes.paragraph)):
                texts = list(paragraph.findall(nodes.Text))
                strings = [str(t) for t in texts]
                if not any(CJK.search(t) for t in strings):
                    continue
                opening = True
                for i, text in enumerate(texts):
                    if not _is_prose(text, paragraph):
                        continue
                    new = strings[i]
                    if "\n" in new:  # look one character into the neighbouring text nodes
                        before = strings[i - 1][-1:] if i > 0 else ""
                        after = strings[i + 1][:1] if i + 1 < len(texts) else ""
                        joined = join_cjk_lines(before + new + after)
                        new = joined[len(before):len(joined) - len(after)]
                    new, opening = cjk_quotes(new, opening)
                    if new != strings[i]:
                        text.parent.replace(text, nodes.Text(new))
                        strings[i] = new

    return ChineseTextTransform


def setup(app: Sphinx) -> dict:
    import recbook_diagrams  # the same folder is on sys.path (local_extensions)
    import recbook_reader  # going-deeper sections, reading time, charts that fit a phone

    app.add_config_value("recbook_vega_base", "https://cdn.jsdelivr.net/npm", "html", str)
    _register_bibliography_style()
    app.connect("env-get-updated", _number_exercises_per_chapter, priority=900)
    app.add_transform(_chinese_text_transform())
    app.connect("config-inited", _set_repository_url)
    app.connect("builder-inited", _add_stylesheet)
    # Tables drawn by pandas' Styler carry no class, so the theme gives their cells no padding.
    app.add_css_file("recbook.css")
    app.add_js_file(None, body=MATHJAX2_HUB_SHIM)
    app.connect("env-updated", _drop_duplicate_inline_scripts)
    # After myst-nb (priority 500) has added the widget scripts to the page.
    app.connect("html-page-context", _point_require_at_widget_manager, priority=600)
    app.connect("html-page-context", _add_vega, priority=600)
    recbook_diagrams.setup(app)
    recbook_reader.setup(app)
    return {"version": "1.1", "parallel_read_safe": True, "parallel_write_safe": True}

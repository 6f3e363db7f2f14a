"""Three fixes for the recbook website, loaded by _config.yml (``sphinx: local_extensions``).

Each shows up as an error in the browser test (tests/browser/) on the stock Jupyter Book 1 stack
(Sphinx 7.4, sphinx-thebe, myst-nb with ipywidgets 8, MathJax 3):

1. Sphinx 7.4 writes every inline script that an extension registers after the builder has
   started (sphinx-thebe, sphinx-togglebutton) twice: once from ``app.add_js_file`` and once more
   when it copies the registry in ``prepare_writing`` (``None`` versus ``''`` as file name defeats
   its duplicate check). sphinx-thebe's ``const THEBE_JS_URL`` declared twice is a SyntaxError on
   every page. We drop the registry copies that the builder already holds.
2. ipywidgets 8 typesets widget labels with the MathJax 2 API, ``MathJax.Hub.Queue``, and the
   book loads MathJax 3, so every labelled widget throws a TypeError while it renders. A small
   shim maps ``Hub.Queue(["Typeset", MathJax.Hub, element])`` to ``MathJax.typesetPromise``.
3. The widget manager (@jupyter-widgets/html-manager 1.x) computes where its icon fonts live from
   the require.js URL of its own module, which defaults to the page's folder
   (``book/@jupyter-widgets/html-manager/dist/*.woff2``: 404 on every widget page). On pages with
   widgets we configure require.js, before it loads, to map that module folder to the folder
   ``embed-amd.js`` really comes from (the CDN on the website, ``_static/`` in the offline test).
"""
from __future__ import annotations

import json
from pathlib import Path

from sphinx.application import Sphinx

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


def setup(app: Sphinx) -> dict:
    app.connect("builder-inited", _add_stylesheet)
    # Tables drawn by pandas' Styler carry no class, so the theme gives their cells no padding.
    app.add_css_file("recbook.css")
    app.add_js_file(None, body=MATHJAX2_HUB_SHIM)
    app.connect("env-updated", _drop_duplicate_inline_scripts)
    # After myst-nb (priority 500) has added the widget scripts to the page.
    app.connect("html-page-context", _point_require_at_widget_manager, priority=600)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}

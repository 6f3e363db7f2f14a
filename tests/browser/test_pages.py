"""Open every page of the built book in headless Chromium and check what a reader would see.

A page fails on
  * a page over the size budget (:data:`PAGE_BUDGET` bytes of HTML);
  * a control that does nothing (``test_controls_change_their_figures``): every slider, dropdown
    and checkbox of every chart (Altair / Vega-Lite) and every widget (ipywidgets) is moved, alone,
    and the figure it belongs to must change; a control that belongs to no figure, a chart that
    did not render, and a chart whose checks (``recbook.widgets.browser_chart(checks=...)``) do
    not show the texts Python computed fail too. A kernel-only ``interact`` left on a page fails
    here: on a static page its figure never changes. The logic is in tests/browser/controls.js;
  * a JavaScript error: an uncaught exception, a console error, or a resource that did not load;
  * LaTeX that MathJax did not typeset: a math element without rendered output, a MathJax error
    (``mjx-merror``), or raw TeX (``$$``, ``\\(``, ``\\begin{``, ``\\frac`` ...) in the page text;
  * a widget that did not render: a widget view without its rendered widget, views without widget
    state, or "Error displaying widget";
  * a broken image;
  * a broken internal link: an ``<a href>``, ``<img src>``, ``<script src>`` or ``<link href>``
    inside the site that names a missing file, or a ``#fragment`` missing from its page;
  * a slow chart (``test_controls_change_their_figures``): every control change is timed, from
    the change until the chart has redrawn (:data:`RESPONSE_BUDGET_MS`), except for the charts
    of :data:`SLOW_CHARTS`; the times go to _build/browser/chart-times.{json,csv} and are printed
    at the end of the run;
  * a chart, image or figure wider than its cell on a phone (``test_fits_a_phone``: the page
    opened at :data:`conftest.PHONE` CSS pixels, every "Going deeper" section opened), or a page
    that scrolls sideways there; the widths go to _build/browser/phone-widths.{json,csv}.

The first screen of every chapter (the pages under book/) is saved to _build/screenshots/, and
every chart before and after all its controls moved to _build/screenshots/controls/.

Needs _build/html built by tests/browser/build.py (MathJax, require.js and the widget manager
served from _static/, no CDN); otherwise the module is skipped, with the reason. Run everything,
from installing Chromium to this test, with ``bash tests/browser/run.sh``.
"""
from __future__ import annotations

import csv
import html.parser
import json
import os
import posixpath
import re
from functools import lru_cache
from pathlib import Path
from urllib.parse import unquote, urljoin, urlsplit

import pytest

from conftest import PHONE

ROOT = Path(__file__).resolve().parents[2]
HTML = ROOT / "_build" / "html"
SCREENSHOTS = ROOT / "_build" / "screenshots"
CONTROLS_JS = Path(__file__).with_name("controls.js")
PAGE_BUDGET = 2_000_000  # bytes of HTML per page: charts carry their data, keep it small
RECORDS = ROOT / "_build" / "browser"  # chart-times.*, phone-widths.* (printed by conftest.py)
RESPONSE_BUDGET_MS = 200  # from a control's change until its chart has redrawn, in Chromium here

SLOW_CHARTS = {
    # Charts known to take longer than RESPONSE_BUDGET_MS per change, being reworked to
    # precompute what their controls reach. Key: (page, the chart's controls, comma-separated);
    # value: the slowest change measured when the entry was added (ms, headless Chromium on a
    # loaded 2-core machine), which the chart may not exceed by more than twice (the load makes
    # the times vary by 2-4x between runs). Remove an entry once its chart is fast: the budget
    # then applies to it. Empty: every chart of the book responds within the budget.
}

WIDE_CHARTS = {
    # Charts still wider than a phone's cell (358 px at PHONE) after being redrawn to fit: what
    # sticks out is text (a readout on one long line, long labels), which narrowing the views
    # cannot shorten. Their owners are rewriting them; key (page, chart number): CSS px measured
    # when the entry was added (PHONE = 390 px, a 358 px cell). Remove an entry once it fits.
    # Empty: every chart of the book fits a phone.
}
MARKER = HTML / ".recbook-vendored"  # written by tests/browser/build.py
EXTERNAL = re.compile(r"^(?:[a-zA-Z][a-zA-Z0-9+.-]*:|//)")  # http:, mailto:, data:, //host ...


def _pages() -> list[str]:
    """Every page of both editions (the Chinese one under zh/), without Sphinx's own folders."""
    skip = ("_sources", "_static", "_images", "_downloads")
    return sorted(p.relative_to(HTML).as_posix() for p in HTML.rglob("*.html")
                  if not any(part in skip for part in p.relative_to(HTML).parts))


class _Collector(html.parser.HTMLParser):
    """Collects the URLs a page refers to and the ids it defines."""

    ATTRS = {"a": "href", "img": "src", "script": "src", "link": "href", "source": "src",
             "iframe": "src"}

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.urls: list[tuple[str, str]] = []  # (tag, url)
        self.ids: set[str] = set()

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        for key in ("id", "name") if tag == "a" else ("id",):
            if attrs.get(key):
                self.ids.add(attrs[key])
        url = attrs.get(self.ATTRS.get(tag, ""))
        if url is not None:
            self.urls.append((tag, url.strip()))


@lru_cache(maxsize=None)
def _parse(page: str) -> _Collector:
    collector = _Collector()
    collector.feed((HTML / page).read_text(encoding="utf-8"))
    return collector


def _external_scripts() -> list[str]:
    return [f"{page}: {url}" for page in _pages() for tag, url in _parse(page).urls
            if tag in ("script", "link") and EXTERNAL.match(url) and not url.startswith("data:")
            and (tag == "script" or url.split("?")[0].endswith((".css", ".js")))]


def _why_not_ready() -> str | None:
    if not HTML.is_dir():
        return "_build/html does not exist: build the book first (bash tests/browser/run.sh)"
    if not MARKER.is_file():
        return ("_build/html was not built with vendored MathJax and widget manager "
                "(make book loads them from CDNs): run bash tests/browser/run.sh")
    external = _external_scripts()
    if external:
        return ("pages load scripts from other hosts, which this offline test cannot reach; "
                "rebuild with tests/browser/build.py: " + "; ".join(external[:5]))
    return None


REASON = _why_not_ready()
if REASON is not None:
    if os.environ.get("RECBOOK_BROWSER_TEST", "") not in ("", "0"):  # set by run.sh
        raise RuntimeError(REASON)
    pytest.skip(REASON, allow_module_level=True)

PAGES = _pages()


# ---------------------------------------------------------------------------------------------
# Links: static, from the HTML files
# ---------------------------------------------------------------------------------------------
def _target(page: str, url: str) -> tuple[Path, str] | None:
    """The file and fragment that ``url`` on ``page`` points to; None for external URLs."""
    if not url or EXTERNAL.match(url):
        return None
    parts = urlsplit(urljoin("/" + page, url))
    path = posixpath.normpath(unquote(parts.path)).lstrip("/")
    target = HTML / path
    if url.startswith("#") or parts.path.endswith("/"):
        target = HTML / page if url.startswith("#") else target / "index.html"
    return target, unquote(parts.fragment)


@pytest.mark.parametrize("page", PAGES)
def test_internal_links(page):
    broken = []
    for tag, url in _parse(page).urls:
        resolved = _target(page, url)
        if resolved is None or url in ("#", ""):
            continue
        target, fragment = resolved
        if not target.resolve().is_relative_to(HTML.resolve()):
            broken.append(f"<{tag}> {url!r}: points outside the site")
        elif not target.is_file():
            broken.append(f"<{tag}> {url!r}: no file {target.relative_to(HTML)}")
        elif fragment and target.suffix == ".html":
            if fragment not in _parse(target.relative_to(HTML).as_posix()).ids:
                broken.append(f"<{tag}> {url!r}: no id {fragment!r} in {target.relative_to(HTML)}")
    assert not broken, f"{page}: broken internal links:\n  " + "\n  ".join(broken)


@pytest.mark.parametrize("page", PAGES)
def test_page_size(page):
    size = (HTML / page).stat().st_size
    assert size <= PAGE_BUDGET, (f"{page}: {size:,} bytes of HTML, over the budget of {PAGE_BUDGET:,}; "
                                 "ship less data with the charts (recbook.widgets.CsvData)")


# ---------------------------------------------------------------------------------------------
# Rendering: in Chromium
# ---------------------------------------------------------------------------------------------
# Waits for MathJax, the widgets and the images, then reports what went wrong. Runs as an async
# script: the last argument is Selenium's callback.
SETTLE_AND_INSPECT = r"""
const done = arguments[arguments.length - 1];
const timeoutMs = arguments[0];
const deadline = Date.now() + timeoutMs;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const VIEW = 'script[type="application/vnd.jupyter.widget-view+json"]';
const STATE = 'script[type="application/vnd.jupyter.widget-state+json"]';
const WIDGET_ERROR = /Error displaying widget|Could not create a view|Failed to load model class/;

// The widget manager renders each view into a div.widget-subarea it inserts before the view's
// <script>; a view that failed renders ipywidgets' error widget there instead.
function viewSettled(view) {
  const area = view.previousElementSibling;
  return !!(area && area.classList.contains("widget-subarea") && area.querySelector(".jupyter-widgets"));
}
async function mathjaxDone() {
  const mj = window.MathJax;
  if (mj && mj.startup && mj.startup.promise) {
    try { await Promise.race([mj.startup.promise, sleep(Math.max(0, deadline - Date.now()))]); }
    catch (e) { /* reported as unrendered math */ }
  }
}

(async () => {
  const report = {};
  await mathjaxDone();
  const views = Array.from(document.querySelectorAll(VIEW));
  while (Date.now() < deadline && !views.every(viewSettled)) await sleep(100);
  await mathjaxDone();  // widgets may have queued labels for typesetting

  // Images: load lazy ones now, then wait for all of them.
  const images = Array.from(document.images);
  images.forEach((img) => { if (img.loading === "lazy") img.loading = "eager"; });
  await Promise.race([
    Promise.all(images.map((img) => img.complete ? null
      : new Promise((r) => { img.addEventListener("load", r); img.addEventListener("error", r); }))),
    sleep(Math.max(0, deadline - Date.now())),
  ]);
  report.brokenImages = images.filter((img) => !(img.complete && img.naturalWidth > 0))
                              .map((img) => img.getAttribute("src"));

  // Math: every Sphinx math element holds typeset output, and MathJax reported no TeX error.
  const math = Array.from(document.querySelectorAll(".math"));
  report.mathCount = math.length;
  report.mathjaxLoaded = !!(window.MathJax && window.MathJax.startup);
  report.unrenderedMath = math.filter((el) => !el.querySelector("mjx-container"))
                              .map((el) => el.textContent.trim().slice(0, 80));
  report.mathErrors = Array.from(document.querySelectorAll("mjx-merror"))
                           .map((el) => el.getAttribute("data-mjx-error") || el.textContent);

  // Raw TeX left in the text (outside code, scripts and typeset math).
  const skip = "pre, code, script, style, textarea, kbd, samp, mjx-container, .highlight";
  const rawTex = /\$\$|\\\(|\\\)|\\\[|\\\]|\\begin\{|\\(?:frac|sum|prod|mathbf|mathrm|hat|langle|log|sigma|alpha|beta|lambda|top|cdot|in)\b/;
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  report.rawTex = [];
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    const parent = node.parentElement;
    if (!parent || parent.closest(skip)) continue;
    const m = node.textContent.match(rawTex);
    if (m) report.rawTex.push(node.textContent.trim().slice(0, 100));
  }

  // Widgets: every view rendered, no error text, state present where views are.
  report.viewCount = views.length;
  report.stateCount = document.querySelectorAll(STATE).length;
  report.missingViews = views.filter((v) => !viewSettled(v)).map((v) => v.textContent.trim());
  report.widgetErrors = Array.from(document.querySelectorAll(".jupyter-widgets-error-widget"))
    .map((el) => (el.getAttribute("title") || el.textContent || "error widget").trim().slice(0, 200))
    .concat(Array.from(document.querySelectorAll(".jupyter-widgets"))
      .filter((el) => WIDGET_ERROR.test(el.textContent) && !el.querySelector(".jupyter-widgets"))
      .map((el) => el.textContent.trim().slice(0, 200)));
  done(report);
})().catch((e) => done({scriptError: String(e && e.stack || e)}));
"""

# Chromium's own request for /favicon.ico is not something a page asked for.
IGNORED_LOG = re.compile(r"/favicon\.ico\b")


def _severe(log: list[dict]) -> list[str]:
    return [entry["message"] for entry in log
            if entry.get("level") == "SEVERE" and not IGNORED_LOG.search(entry["message"])]


REFRESH = re.compile(r'<meta\s+http-equiv="Refresh"\s+content="0;\s*url=([^"]+)"', re.IGNORECASE)


def _redirect(page: str) -> str | None:
    """Where a redirect-only page (``<meta http-equiv="Refresh">``, like index.html) sends the reader."""
    m = REFRESH.search((HTML / page).read_text(encoding="utf-8"))
    return posixpath.normpath(posixpath.join(posixpath.dirname(page), m.group(1))) if m else None


def _wait_for_url(browser, url: str, timeout_s: float = 10.0) -> None:
    import time

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if browser.current_url == url and browser.execute_script("return document.readyState") == "complete":
            return
        time.sleep(0.05)
    raise AssertionError(f"the browser did not reach {url} (it is at {browser.current_url})")


@pytest.mark.parametrize("page", PAGES)
def test_page_renders(page, browser, site):
    browser.get("about:blank")
    browser.get_log("browser")  # drop whatever the previous page logged late
    browser.get(site + page)
    target = _redirect(page)
    if target is not None:
        # Inspect the page the reader lands on: while the redirect is under way the document
        # can be between pages (no body yet), which is not something a reader ever sees.
        assert (HTML / target).is_file(), f"{page}: redirects to the missing page {target}"
        _wait_for_url(browser, site + target)
    report = browser.execute_async_script(SETTLE_AND_INSPECT, 20_000)
    errors = _severe(browser.get_log("browser"))

    if page.startswith("book/"):
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        browser.execute_script("window.scrollTo(0, 0);")
        browser.save_screenshot(str(SCREENSHOTS / (page[len("book/"):-len(".html")]
                                                   .replace("/", "-") + ".png")))

    problems = []
    if "scriptError" in report:
        problems.append(f"the inspection script failed: {report['scriptError']}")
    problems += [f"JavaScript error: {message}" for message in errors]
    if report.get("mathCount") and not report.get("mathjaxLoaded"):
        problems.append(f"MathJax did not load; {report['mathCount']} math elements left as TeX")
    problems += [f"LaTeX not typeset: {tex!r}" for tex in report.get("unrenderedMath", [])]
    problems += [f"MathJax error: {err!r}" for err in report.get("mathErrors", [])]
    problems += [f"raw TeX in the page text: {text!r}" for text in report.get("rawTex", [])]
    if report.get("viewCount") and not report.get("stateCount"):
        problems.append(f"{report['viewCount']} widget views but no widget state on the page")
    problems += [f"widget view not rendered: {view}" for view in report.get("missingViews", [])]
    problems += [f"widget error: {err!r}" for err in report.get("widgetErrors", [])]
    problems += [f"broken image: {src}" for src in report.get("brokenImages", [])]
    assert not problems, f"{page}:\n  " + "\n  ".join(problems)


# Text from the data that looks like HTML must be shown, not read as a tag and hidden (values are
# escaped with recbook.widgets.escape_html before they reach a table).
SHOWN_TEXT = {"book/widedeep.html": ["user_id=<unk>", "<unk> (user_id × genres)"]}


@pytest.mark.parametrize("page", sorted(p for p in SHOWN_TEXT if p in PAGES))
def test_data_text_is_shown(page, browser, site):
    browser.get("about:blank")
    browser.get(site + page)
    browser.execute_script(CONTROLS_JS.read_text(encoding="utf-8"))
    browser.execute_script("window.recbookControls.openAll()")  # tables inside "Going deeper"
    text = browser.execute_script("return document.body.innerText")
    missing = [t for t in SHOWN_TEXT[page] if t not in text]
    assert not missing, f"{page}: the page does not show {missing} (written as raw HTML?)"


# ---------------------------------------------------------------------------------------------
# Controls: every one must change its figure
# ---------------------------------------------------------------------------------------------
def _call(browser, method: str, *args):
    """Run ``window.recbookControls.<method>(*args)`` (a Promise) and return its result."""
    result = browser.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        f"window.recbookControls.{method}(...Array.from(arguments).slice(0, -1))"
        ".then(done, (e) => done({scriptError: String(e && e.stack || e)}));", *args)
    if isinstance(result, dict) and "scriptError" in result:
        raise AssertionError(f"controls.js {method} failed: {result['scriptError']}")
    return result


def _shot_name(page: str) -> str:
    return page[:-len(".html")].replace("/", "-")


@pytest.mark.parametrize("page", PAGES)
def test_controls_change_their_figures(page, browser, site):
    target = _redirect(page)
    if target is not None:
        pytest.skip(f"{page} only redirects to {target}, which is tested itself")
    browser.get("about:blank")
    browser.get(site + page)
    browser.execute_script(CONTROLS_JS.read_text(encoding="utf-8"))
    browser.execute_script("window.recbookControls.openAll()")  # charts in "Going deeper" too
    charts = _call(browser, "waitForCharts", 20_000)
    problems = []
    times = []
    if charts["rendered"] < charts["expected"]:
        errors = browser.execute_script(
            "return Array.from(document.querySelectorAll('.vega-embed .error, .cell_output .error'))"
            ".map((e) => e.textContent.slice(0, 300))")
        problems.append(f"{charts['expected'] - charts['rendered']} of {charts['expected']} charts did "
                        f"not render: {errors}")
    shots = SCREENSHOTS / "controls"
    for i in range(charts["rendered"]):
        element = browser.execute_script("return window.recbookCharts[arguments[0]].element", i)
        browser.execute_script("arguments[0].scrollIntoView({block: 'center'})", element)
        shots.mkdir(parents=True, exist_ok=True)
        element.screenshot(str(shots / f"{_shot_name(page)}-chart{i + 1}-before.png"))
        moved = _call(browser, "exerciseChart", i)
        key = (page, ",".join(moved.get("params", [])))
        slowest = max((t["ms"] for t in moved["timings"]), default=0.0)
        times += [{"page": page, "chart": i + 1, "controls": key[1], "control": t["control"],
                   "ms": round(t["ms"], 1)} for t in moved["timings"]]
        allowed = SLOW_CHARTS.get(key)
        if allowed is None and slowest > RESPONSE_BUDGET_MS:
            problems.append(f"chart {i + 1} ({key[1]}): {slowest:.0f} ms after a control change, over the "
                            f"budget of {RESPONSE_BUDGET_MS} ms; precompute what the controls reach, or compute less")
        elif allowed is not None and slowest > 2 * allowed:
            problems.append(f"chart {i + 1} ({key[1]}): {slowest:.0f} ms after a control change, slower than "
                            f"the {allowed} ms recorded in SLOW_CHARTS")
        if not moved["controls"]:
            problems.append(f"chart {i + 1} has no control (a static chart belongs in matplotlib)")
        problems += [f"chart {i + 1}: {p}" for p in moved["problems"]]
        _call(browser, "moveAll", i)
        element.screenshot(str(shots / f"{_shot_name(page)}-chart{i + 1}-after.png"))
        _call(browser, "restoreAll", i)
        checked = _call(browser, "checkChart", i)
        problems += [f"chart {i + 1}: {p}" for p in checked["problems"]]
    widgets = _call(browser, "exerciseWidgets")
    problems += [f"widget: {p}" for p in widgets["problems"]]
    problems += [f"a control that belongs to no chart or widget: {c}"
                 for c in browser.execute_script("return window.recbookControls.strayControls()")]
    problems += [f"JavaScript error while moving controls: {m}" for m in _severe(browser.get_log("browser"))]
    _record("chart-times", page, times)
    assert not problems, f"{page}:\n  " + "\n  ".join(problems)


def _record(name: str, page: str, rows: list[dict]) -> None:
    """Replace ``page``'s rows in _build/browser/<name>.json (and .csv); other pages' rows stay."""
    RECORDS.mkdir(parents=True, exist_ok=True)
    path = RECORDS / f"{name}.json"
    old = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else []
    rows = [r for r in old if r["page"] != page] + rows
    path.write_text(json.dumps(rows, indent=1), encoding="utf-8")
    if rows:
        with open(RECORDS / f"{name}.csv", "w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=list(dict.fromkeys(k for r in rows for k in r)))
            writer.writeheader()
            writer.writerows(rows)


# ---------------------------------------------------------------------------------------------
# A phone: nothing wider than its cell
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("page", PAGES)
def test_fits_a_phone(page, phone, site):
    target = _redirect(page)
    if target is not None:
        pytest.skip(f"{page} only redirects to {target}, which is tested itself")
    phone.get("about:blank")
    phone.get(site + page)
    phone.execute_script(CONTROLS_JS.read_text(encoding="utf-8"))
    phone.execute_script("window.recbookControls.openAll()")
    charts = _call(phone, "waitForCharts", 30_000)
    phone.execute_async_script(SETTLE_AND_INSPECT, 20_000)  # images loaded, maths typeset
    measured = _call(phone, "widths")
    rows = [{"page": page, **m, "width": round(m["width"], 1), "room": round(m["room"], 1)} for m in measured]
    _record("phone-widths", page, rows)
    problems = []
    if charts["rendered"] < charts["expected"]:
        problems.append(f"{charts['expected'] - charts['rendered']} of {charts['expected']} charts did not render")
    for m in measured:
        if m["kind"] == "page" and not _is_chapter(page):
            continue  # API pages and indexes: long signatures and listings, not the reader's path
        if m["kind"] == "chart" and (page, m["index"]) in WIDE_CHARTS:
            continue
        if m.get("distorted"):
            problems.append(f"{m['kind']} {m['index']} ({m['src']}): out of shape, scaled in width but not in height")
        if m["width"] > m["room"] + 1:
            what = "the page scrolls sideways" if m["kind"] == "page" else f"{m['kind']} {m['index']}"
            problems.append(f"{what}: {m['width']:.0f} px wide in {m['room']:.0f} px"
                            + (f" ({m['src']})" if m.get("src") else "")
                            + (" (scrolls inside its cell)" if m["scrolls"] else ""))
    assert not problems, f"{page} at {PHONE[0]} px:\n  " + "\n  ".join(problems)


def _is_chapter(page: str) -> bool:
    return page.startswith("book/") and "/" not in page[len("book/"):]


@pytest.mark.parametrize("page", [p for p in PAGES if p.startswith(("book/", "zh/book/"))])
def test_language_switcher_goes_to_the_same_page(page):
    """Every page links to its twin in the other edition (the switcher in the top bar, which the
    phone menu shows too), and the twin exists: English book/x.html <-> zh/book/x.html."""
    chinese = page.startswith("zh/")
    twin = page[len("zh/"):] if chinese else f"zh/{page}"
    html = (HTML / page).read_text(encoding="utf-8")
    links = re.findall(r'<a class="recbook-language" href="([^"]+)" hreflang="([^"]+)"', html)
    assert links, f"{page}: no language switcher"
    for href, lang in links:
        assert lang == ("en" if chinese else "zh-Hans"), (page, href, lang)
        target = (HTML / page).parent / href
        assert target.resolve() == (HTML / twin).resolve(), (page, href, twin)
        assert target.is_file(), (page, href)

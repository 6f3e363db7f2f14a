"""The reader's edition: two layers per chapter, a reading time, charts that fit a phone.

Loaded by ``_ext/recbook_site.py`` (its ``setup`` calls :func:`setup`). What it adds:

1. **Going deeper.** A heading whose text starts with "Going deeper" (any level) opens a section
   that the website shows collapsed: the heading becomes the summary line of a ``<details>``
   element (with the section's own reading time), the rest of the section its body. In Jupyter
   and Colab the notebook is unchanged: it is an ordinary heading. The table of contents and the
   "On this page" links still work: a link to anything inside a closed section opens it
   (``_ext/static/recbook-reader.js``).
2. **Reading time.** Under the title of every notebook page: "Reading time: lesson 14 min ·
   going deeper 12 min", from the words of the notebook's Markdown cells (:func:`notebook_words`)
   at :data:`WORDS_PER_MINUTE`. Code, maths, cell outputs, labels and link targets are not
   counted. A chapter opts into a word budget with the notebook metadata key
   ``"recbook": {"lesson_words_max": N}`` (checked by tests/test_reading_time.py).
3. **Charts that fit.** ``_ext/static/recbook-fit.js`` wraps ``vegaEmbed``: a chart wider than its cell
   (a phone is 390 px wide) is drawn again to fit: panels side by side are stacked, and views
   narrowed. Charts inside a closed "Going deeper" section are drawn when it is opened.
4. **The reading-time table.** ``{recbook-reading-times}`` (the introduction's "Before you start"
   box) lists the chapters named in its body, one per line, with the lesson and going-deeper
   minutes of each, computed from the notebooks when the site is built
   (:func:`reading_times_markdown`).

Run ``python _ext/recbook_reader.py`` for the table of lesson and going-deeper words of every
notebook under ``book/``.
"""
from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path

WORDS_PER_MINUTE = 200
"""Reading speed behind every reading time (technical prose, read with care)."""

DEEPER = re.compile(r"^\s*(?:going\s+deeper\b|深入阅读)", re.IGNORECASE)
"""A going-deeper heading: English, or as the Chinese edition translates it (深入阅读：...)."""
"""A heading whose text matches this opens a "Going deeper" section."""

BUDGET_KEY = "lesson_words_max"
"""Notebook metadata ``"recbook": {"lesson_words_max": N}``: the chapter's lesson word budget."""

HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
FENCE = re.compile(r"^\s*(`{3,}|~{3,}|:{3,})\s*(\{[^}]*\})?\s*(.*)$")
# Directives whose body is not prose: maths, code, figures drawn at build time, raw output.
NOT_PROSE_DIRECTIVES = {"{math}", "{code-cell}", "{code-block}", "{code}", "{literalinclude}",
                        "{recbook-diagram}", "{raw}", "{eval-rst}", "{toctree}", "{bibliography}",
                        "{list-table}", "{automodule}", "{autofunction}", "{autoclass}"}
ROLE = re.compile(r"\{([\w:-]+)\}`([^`]*)`")
DISPLAY_MATH = re.compile(r"\$\$.*?\$\$|\\begin\{(\w+\*?)\}.*?\\end\{\1\}", re.S)
INLINE_MATH = re.compile(r"(?<![\\$])\$(?!\s)[^$\n]+?(?<![\s\\])\$(?!\d)")
INLINE_CODE = re.compile(r"(`+)[^`].*?\1", re.S)
IMAGE = re.compile(r"!\[[^\]]*\]\([^)]*\)")
LINK = re.compile(r"\[([^\]]*)\]\([^)]*\)|\[([^\]]*)\]\[[^\]]*\]|<https?://[^>]+>")
TAG = re.compile(r"<!--.*?-->|</?[A-Za-z][^>]*>", re.S)
LABEL_LINE = re.compile(r"^\s*\([\w.:-]+\)=\s*$|^\s*:[\w-]+:.*$|^\s*\+\+\+.*$", re.M)
WORD = re.compile(r"[A-Za-z0-9\u00C0-\u024F]+(?:['’.\-][A-Za-z0-9\u00C0-\u024F]+)*")
CJK_CHAR = re.compile("[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")


def count_words(text: str) -> int:
    """Words of prose in ``text`` (Markdown without fences). Each Chinese character counts as
    one word; numbers count as words ("0.72"); maths, code, roles' targets, link URLs and HTML
    tags do not count."""
    text = DISPLAY_MATH.sub(" ", text)
    text = INLINE_MATH.sub(" ", text)

    def role(m: re.Match) -> str:  # {term}`Embedding <embedding>` reads "Embedding"
        name, body = m.group(1), m.group(2)
        if name in {"cite", "cite:p", "cite:t", "numref", "eq", "math", "code"}:
            return " "
        return body[:body.rindex("<")] if body.endswith(">") and "<" in body else body

    text = ROLE.sub(role, text)
    text = INLINE_CODE.sub(" ", text)
    text = IMAGE.sub(" ", text)
    text = LINK.sub(lambda m: m.group(1) or m.group(2) or " ", text)
    text = TAG.sub(" ", text)
    text = LABEL_LINE.sub(" ", text)
    return len(WORD.findall(text)) + len(CJK_CHAR.findall(text))


@dataclass
class Words:
    """Words of a page: in the lesson (main flow) and in its "Going deeper" sections."""

    lesson: int = 0
    deeper: int = 0

    @property
    def lesson_minutes(self) -> int:
        return minutes(self.lesson)

    @property
    def deeper_minutes(self) -> int:
        return minutes(self.deeper)


def minutes(words: int) -> int:
    """Reading time in whole minutes (at least 1 for any text) at :data:`WORDS_PER_MINUTE`."""
    return max(1, math.ceil(words / WORDS_PER_MINUTE)) if words > 0 else 0


def markdown_blocks(text: str):
    """Split Markdown into ``(kind, level, text)`` pieces: ``("heading", level, title)`` and
    ``("prose", 0, text)``; fenced code and non-prose directives (maths, code, diagrams) are
    dropped, the bodies of other directives (exercises, notes, solutions) kept as prose."""
    prose: list[str] = []
    fence: str | None = None
    skipping = False
    for line in text.split("\n"):
        if fence is not None:
            if line.strip() == fence or (line.strip().startswith(fence) and not line.strip()[len(fence):].strip()):
                fence, skipping = None, False
            elif not skipping:
                prose.append(line)
            continue
        m = FENCE.match(line)
        if m:
            marker, directive, rest = m.group(1), m.group(2), m.group(3)
            if marker[0] == ":" and not directive:
                prose.append(line)
                continue
            if directive is None or directive in NOT_PROSE_DIRECTIVES:
                fence, skipping = marker, True
            else:
                fence, skipping = marker, False
                prose.append(rest)  # a directive's argument is its title ({exercise} Title)
            continue
        h = HEADING.match(line)
        if h:
            if prose:
                yield "prose", 0, "\n".join(prose)
                prose = []
            yield "heading", len(h.group(1)), h.group(2)
            continue
        prose.append(line)
    if prose:
        yield "prose", 0, "\n".join(prose)


def markdown_words(texts) -> Words:
    """:class:`Words` of a sequence of Markdown texts read in order (a notebook's Markdown
    cells): a "Going deeper" heading of level L opens going-deeper text until the next heading of
    level L or higher (fewer #)."""
    words = Words()
    deeper_level: int | None = None
    for text in texts:
        for kind, level, body in markdown_blocks(text):
            if kind == "heading":
                if deeper_level is not None and level <= deeper_level:
                    deeper_level = None
                if deeper_level is None and DEEPER.match(body):
                    deeper_level = level
            n = count_words(body)
            if deeper_level is None:
                words.lesson += n
            else:
                words.deeper += n
    return words


def _cells(nb: dict):
    for cell in nb.get("cells", []):
        tags = set(cell.get("metadata", {}).get("tags", []))
        if cell.get("cell_type") == "markdown" and not tags & {"remove-cell"}:
            source = cell.get("source", "")
            yield "".join(source) if isinstance(source, list) else source


def notebook_words(path: str | Path) -> Words:
    """:class:`Words` of a notebook's Markdown cells (or of a Markdown page). Code cells and their
    outputs never count; neither do cells tagged ``remove-cell``."""
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    if path.suffix != ".ipynb":
        return markdown_words([text])
    return markdown_words(_cells(json.loads(text)))


def lesson_budget(path: str | Path) -> int | None:
    """The notebook's lesson word budget (metadata ``recbook.lesson_words_max``), or None.

    Raises:
        ValueError: if the key is there but not a positive integer.
    """
    meta = json.loads(Path(path).read_text(encoding="utf-8")).get("metadata", {}).get("recbook", {})
    if BUDGET_KEY not in meta:
        return None
    value = meta[BUDGET_KEY]
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{path}: metadata recbook.{BUDGET_KEY}: expected a positive integer, got {value!r}")
    return value


def reading_time_text(words: Words, language: str = "en") -> str:
    """"Reading time: lesson 14 min · going deeper 12 min" (without the second part when the
    page has no going-deeper text); in the Chinese edition "阅读时间：正文 14 分钟 · 深入阅读 12 分钟".
    The minutes are those of the English text, which the translation follows paragraph by
    paragraph."""
    if language.startswith("zh"):
        text = f"阅读时间：正文 {words.lesson_minutes} 分钟"
        if words.deeper:
            text += f" · 深入阅读 {words.deeper_minutes} 分钟"
        return text
    text = f"Reading time: lesson {words.lesson_minutes} min"
    if words.deeper:
        text += f" · going deeper {words.deeper_minutes} min"
    return text


# ---------------------------------------------------------------------------------------------
# Sphinx: collapsed "Going deeper" sections, the reading time under the title
# ---------------------------------------------------------------------------------------------
def _section_words(section) -> int:
    """Words of prose in a section of a doctree (code, maths and outputs left out)."""
    from docutils import nodes

    skip = (nodes.literal_block, nodes.literal, nodes.math, nodes.math_block, nodes.raw,
            nodes.comment, nodes.image, nodes.target)
    total = 0
    for text in section.findall(nodes.Text):
        parent, ok = text.parent, True
        while parent is not None:
            if isinstance(parent, skip) or "cell_output" in parent.get("classes", []) \
                    or "cell_input" in parent.get("classes", []):
                ok = False
                break
            parent = parent.parent
        if ok:
            total += len(WORD.findall(str(text))) + len(CJK_CHAR.findall(str(text)))
    return total


def _collapse_going_deeper(app, doctree, docname) -> None:
    """On the website: each "Going deeper" section as ``<details>`` (closed), its heading the
    summary. Runs after the table of contents was collected, which needs the plain sections."""
    from docutils import nodes

    if app.builder.format != "html":
        return
    for section in list(doctree.findall(nodes.section)):
        if not section.children or not isinstance(section[0], nodes.title):
            continue
        title = section[0]
        if not DEEPER.match(title.astext()):
            continue
        n = _section_words(section)
        if str(app.config.language or "").startswith("zh"):
            note = f"约 {minutes(n)} 分钟 · 点击展开" if n else "点击展开"
        else:
            note = f"{minutes(n)} min read · click to open" if n else "click to open"
        body = section.children[1:]
        section.children = [title]
        title.parent = section
        section.insert(0, nodes.raw("", '<details class="recbook-deeper"><summary>', format="html"))
        section.append(nodes.raw("", f'<span class="recbook-deeper-time">{note}</span></summary>',
                                 format="html"))
        for child in body:
            section.append(child)
        section.append(nodes.raw("", "</details>", format="html"))
        section["classes"].append("recbook-deeper-section")


def _add_reading_time(app, doctree, docname) -> None:
    """Under the title of every notebook page: its reading time (lesson, going deeper)."""
    from docutils import nodes

    if app.builder.format != "html":
        return
    source = Path(app.env.doc2path(docname))
    if source.suffix != ".ipynb":
        return
    words = notebook_words(source)
    first = next(iter(doctree.findall(nodes.section)), None)
    if first is None or not isinstance(first[0], nodes.title):
        return
    text = reading_time_text(words, str(app.config.language or "en"))
    line = nodes.paragraph("", text, classes=["recbook-reading-time"])
    first.insert(1, line)


def setup(app) -> None:
    # "doctree-resolved": the table of contents has been collected from the plain sections.
    app.connect("doctree-resolved", _add_reading_time)
    app.connect("doctree-resolved", _collapse_going_deeper)
    app.add_css_file("recbook-reader.css")
    # Before _ext/recbook_site.py's vegaEmbed wrapper (same priority 201, registered first): it
    # must wrap the real vegaEmbed, so that the browser test records the chart as finally drawn.
    app.connect("html-page-context", _add_fit_script, priority=590)
    app.add_js_file("recbook-reader.js", priority=600)
    # The introduction's table of reading times ({recbook-reading-times}).
    app.add_directive("recbook-reading-times", _reading_times_directive())


def _add_fit_script(app, pagename, templatename, context, doctree) -> None:
    if "VEGA_DEBUG" in (context.get("body") or ""):  # a page with a chart
        app.add_js_file("recbook-fit.js", priority=201)


# ---------------------------------------------------------------------------------------------
# Sphinx: the reading-time table of the introduction
# ---------------------------------------------------------------------------------------------
TABLE_HEADERS = {"en": ("Chapter", "Lesson", "Going deeper"), "zh": ("章节", "正文", "深入阅读")}
MINUTES = {"en": "{} min", "zh": "{} 分钟"}


def reading_times_markdown(chapters, language: str = "en") -> str:
    """A Markdown table of the reading time of each chapter: ``chapters`` holds ``(link, path)``
    pairs, ``link`` the Markdown of the chapter's cell (such as ``{doc}`data```), ``path`` its
    notebook. Minutes of the lesson and of the going-deeper sections, and their totals.

    Raises:
        ValueError: if a path is not a notebook (``.ipynb``) or does not exist.
    """
    lang = "zh" if str(language or "en").lower().startswith("zh") else "en"
    head = TABLE_HEADERS[lang]
    fmt = MINUTES[lang]
    rows = [f"| {head[0]} | {head[1]} | {head[2]} |", "|---|---:|---:|"]
    total = Words()
    for link, path in chapters:
        path = Path(path)
        if path.suffix != ".ipynb" or not path.is_file():
            raise ValueError(f"recbook-reading-times: {link}: expected an existing notebook (.ipynb), got {path}")
        words = notebook_words(path)
        total.lesson += words.lesson_minutes
        total.deeper += words.deeper_minutes
        deeper = fmt.format(words.deeper_minutes) if words.deeper else "–"
        rows.append(f"| {link} | {fmt.format(words.lesson_minutes)} | {deeper} |")
    label = "all chapters" if lang == "en" else "全部章节"
    rows.append(f"| **{label}** | **{fmt.format(total.lesson)}** | **{fmt.format(total.deeper)}** |")
    return "\n".join(rows)


def _reading_times_directive():
    from docutils import nodes
    from sphinx.util import docname_join
    from sphinx.util.docutils import SphinxDirective

    class ReadingTimes(SphinxDirective):
        """``{recbook-reading-times}`` with one chapter (a document name relative to the page) per
        line: a table of each chapter's lesson and going-deeper minutes, computed from its notebook
        when the site is built (the same numbers as the line under each chapter's title)."""

        has_content = True

        def run(self):
            chapters = []
            for line in self.content:
                name = line.strip()
                if not name:
                    continue
                docname = docname_join(self.env.docname, name)
                path = Path(self.env.doc2path(docname))
                if path.suffix != ".ipynb" or not path.is_file():
                    raise self.error(f"recbook-reading-times: {name!r}: expected a chapter notebook, "
                                     f"found no {docname}.ipynb")
                self.env.note_dependency(str(path))
                chapters.append((f"{{doc}}`{name}`", path))
            if not chapters:
                raise self.error("recbook-reading-times: expected one chapter per line, got none")
            container = nodes.container(classes=["recbook-reading-times"])
            container.extend(self.parse_text_to_nodes(
                reading_times_markdown(chapters, self.config.language or "en")))
            # Computed numbers, not prose: kept out of the translation catalogues.
            for node in container.findall(nodes.TextElement):
                node["translatable"] = False
            return [container]

    return ReadingTimes


def _table(root: Path) -> str:
    rows = ["| notebook | lesson words | lesson min | going-deeper words | going-deeper min | budget |",
            "|---|---:|---:|---:|---:|---:|"]
    for path in sorted((root / "book").glob("*.ipynb")):
        w = notebook_words(path)
        budget = lesson_budget(path)
        rows.append(f"| {path.name} | {w.lesson:,} | {w.lesson_minutes} | {w.deeper:,} | {w.deeper_minutes} | "
                    f"{budget if budget else '-'} |")
    return "\n".join(rows)


if __name__ == "__main__":
    print(_table(Path(__file__).resolve().parents[1]))

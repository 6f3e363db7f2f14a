"""Two editions of the book from one source: English and Simplified Chinese (Sphinx gettext).

The English text is the source. ``make i18n-update`` extracts every page's prose into
``_build/gettext/<page>.pot`` and merges it into ``locales/zh_CN/LC_MESSAGES/<page>.po`` (changed
English becomes a fuzzy entry that keeps the previous English, ``#|``); ``make book-zh`` builds
the Chinese site into ``_build/html/zh/`` from the same notebooks and the same execution cache.
Code, outputs and maths are shared. This extension, loaded by both builds, adds:

A. **Catalogue settings**: one catalogue per page (``gettext_compact = False``), no uuids and no
   source locations (quiet diffs).
B. **Three gaps of the stock stack closed**:
   1. sphinx-exercise titles ("Exercise 3 (*Polynomial features*)") carry no source, so Sphinx
      neither extracts nor translates them: :class:`ExerciseTitles` gives them one.
   2. The part captions of ``_toc.yml`` are extracted but inserted after the locale transform
      (sphinx-external-toc): :class:`TocCaptions` translates them after it.
   3. Display maths is shared, not a message: :class:`UntranslatableMaths`.

   And a chapter's 本章要点 section (the Chinese summary for readers of the English edition) is
   not a message, and the Chinese edition leaves it out (:class:`ChineseSummary`).
C. **Site title and search-box text** of the Chinese edition from ``locales/<lang>/site.po``.
D. **Search**: overlapping Han bigrams (``recbook_i18n_search.py``).
E. **Language switcher** in the top bar (``navbar_end``; the phone menu shows the same items)
   and ``<link rel="alternate" hreflang=...>`` in every page's head, both with relative links,
   so the site works under any sub-path. The Chinese edition lives in the folder ``zh/`` of the
   English one. The English pages link to the Chinese ones only when ``recbook_edition_links``
   is set (the Chinese build sets it; the English build will when both are built together).
"""
from __future__ import annotations

from pathlib import Path

from docutils import nodes
from sphinx import addnodes
from sphinx.application import Sphinx
from sphinx.transforms import SphinxTransform

HERE = Path(__file__).resolve().parent

EDITIONS = [
    # (language code of the build, folder under the English site, hreflang, label)
    ("en", "", "en", "English"),
    ("zh_CN", "zh", "zh-Hans", "中文"),
]


def edition_of(language: str | None) -> tuple[str, str, str, str]:
    language = language or "en"
    for edition in EDITIONS:
        if edition[0] == language or edition[0].split("_")[0] == language.split("_")[0]:
            return edition
    return EDITIONS[0]


def is_source_language(language: str | None) -> bool:
    return edition_of(language)[0] == "en"


# ---------------------------------------------------------------------------------------------
# A and C. Settings
# ---------------------------------------------------------------------------------------------
def site_messages(srcdir: Path, language: str) -> dict[str, str]:
    """Translated strings of the site itself (``locales/<lang>/site.po``): title, search box."""
    path = Path(srcdir) / "locales" / language / "site.po"
    if not path.is_file():
        return {}
    from babel.messages.pofile import read_po

    with path.open("rb") as f:
        catalog = read_po(f)
    return {m.id: m.string for m in catalog if m.id and m.string and not m.fuzzy}


def _settings(app: Sphinx, config) -> None:
    config.gettext_compact = False
    config.gettext_uuid = False
    config.gettext_location = False
    if is_source_language(config.language):
        return
    # Each figure drawn by code carries a Chinese drawing beside its English one (recbook.i18n).
    if "nb_mime_priority_overrides" in config:  # notebooks (myst-nb) on this site
        from recbook.i18n import ZH_PRIORITY

        config.nb_mime_priority_overrides = [*config.nb_mime_priority_overrides, ZH_PRIORITY]
    words = site_messages(Path(app.srcdir), config.language)
    if config.html_title in words:
        config.html_title = words[config.html_title]
    options = dict(config.html_theme_options or {})
    search = options.get("search_bar_text", "Search this book...")
    if search in words:
        options["search_bar_text"] = words[search]
    config.html_theme_options = options


# ---------------------------------------------------------------------------------------------
# B. Gaps
# ---------------------------------------------------------------------------------------------
class ExerciseTitles(SphinxTransform):
    """Give exercise and solution subtitles a source, so that they are extracted and translated
    (Sphinx skips a text element without one as a "built-in message")."""

    default_priority = 15  # before Locale (20)

    def apply(self, **kwargs) -> None:
        try:
            from sphinx_exercise.nodes import exercise_subtitle, solution_subtitle
        except ImportError:
            return
        for node in self.document.findall(lambda n: isinstance(n, (exercise_subtitle, solution_subtitle))):
            if node.source:
                continue
            holder = node.parent.parent if node.parent is not None else None
            node.source = (holder.source if holder is not None else None) or self.document["source"]
            node.line = (holder.line if holder is not None else None) or 1
            if not node.rawsource:
                node.rawsource = node.astext()


def _exercise_subtitle_extractor():
    from sphinx.transforms.post_transforms import SphinxPostTransform

    class ExerciseSubtitleMessages(SphinxPostTransform):
        """For the gettext builder only: sphinx-exercise rebuilds every title in a post-transform
        (priority 20), which the builder runs before it extracts; a copy of each subtitle, as a
        paragraph with a source, keeps it in the catalogue. Nothing is rendered by this builder."""

        default_priority = 19
        builders = ("gettext",)

        def run(self, **kwargs) -> None:
            try:
                from sphinx_exercise.nodes import exercise_subtitle, solution_subtitle
            except ImportError:
                return
            for node in list(self.document.findall(
                    lambda n: isinstance(n, (exercise_subtitle, solution_subtitle)))):
                if node.rawsource and node.source:
                    copy = nodes.paragraph(node.rawsource, "", *[c.deepcopy() for c in node.children])
                    copy.source, copy.line = node.source, node.line
                    copy.uid = getattr(node, "uid", "")  # the catalogue skips nodes without one
                    node.parent.parent.append(copy)

    return ExerciseSubtitleMessages


def _solution_titles_from_page():
    from sphinx.transforms.post_transforms import SphinxPostTransform

    class SolutionTitlesFromPage(SphinxPostTransform):
        """A solution's title repeats its exercise's title ("Solution to Exercise 3 (*Title*)"),
        which sphinx-exercise copies from the exercise as it was read, before translation, so the
        Chinese edition showed the English title there. After sphinx-exercise has built the
        titles (priority 21), copy the words in brackets from the exercise's title on the same
        page, which by then is the translated one. In English the two are the same words."""

        default_priority = 21.5  # after ResolveTitlesInSolutions (21), before link texts (22)

        def run(self, **kwargs) -> None:
            try:
                from sphinx_exercise.nodes import solution_node
            except ImportError:
                return
            exercises = {}
            for node in self.document.findall(nodes.Element):
                label = node.get("label")
                if label and node.tagname.startswith("exercise") and node.children \
                        and isinstance(node[0], nodes.title):
                    exercises[label] = node[0]
            for node in self.document.findall(solution_node):
                title = exercises.get(node.get("target_label"))
                refs = list(node[0].findall(nodes.reference)) if node.children else []
                if title is None or not refs:
                    continue
                theirs, ours = _bracketed(title), _bracketed(refs[0])
                if theirs is None or ours is None:
                    continue
                ref = refs[0]
                for child in ref.children[ours:]:
                    ref.remove(child)
                for child in title.children[theirs:]:
                    ref += child.deepcopy()

    return SolutionTitlesFromPage


def _bracketed(element) -> int | None:
    """Index of the child that opens " (", the start of an exercise's own title words."""
    for i, child in enumerate(element.children):
        if isinstance(child, nodes.Text) and child.astext().startswith(" ("):
            return i
    return None


CHINESE_SUMMARY = "本章要点"


class ChineseSummary(SphinxTransform):
    """A chapter's 本章要点 section restates its English summary in Chinese for readers of the
    English edition. It is never a message (it is Chinese already), and the Chinese edition,
    whose translated summary says the same, leaves it out: the summary appears once."""

    default_priority = 15

    def apply(self, **kwargs) -> None:
        for section in list(self.document.findall(nodes.section)):
            title = section.next_node(nodes.title)
            if title is None or title.parent is not section or title.astext().strip() != CHINESE_SUMMARY:
                continue
            if is_source_language(self.config.language):
                for node in section.findall(nodes.TextElement):
                    node["translatable"] = False
            else:
                section.parent.remove(section)


class UntranslatableMaths(SphinxTransform):
    """Display maths is the same in both editions: never a message of the catalogue."""

    default_priority = 15

    def apply(self, **kwargs) -> None:
        for node in self.document.findall(nodes.math_block):
            node["translatable"] = False


class TocCaptions(SphinxTransform):
    """Translate the part captions that sphinx-external-toc inserts (priority 100), after the
    locale transform has run, from the page's own catalogue (where gettext extracted them)."""

    default_priority = 105

    def apply(self, **kwargs) -> None:
        if is_source_language(self.config.language):
            return
        toctrees = [n for n in self.document.findall(addnodes.toctree) if n.get("caption")]
        if not toctrees:
            return
        from sphinx.locale import init as init_locale
        from sphinx.util.i18n import docname_to_domain

        domain = docname_to_domain(self.env.docname, self.config.gettext_compact)
        dirs = [str(Path(self.env.srcdir) / d) for d in self.config.locale_dirs]
        catalog, has_catalog = init_locale(dirs, self.config.language, domain)
        if not has_catalog:
            return
        for toctree in toctrees:
            translated = catalog.gettext(toctree["caption"])
            if translated:
                toctree["caption"] = translated


# ---------------------------------------------------------------------------------------------
# E. Language switcher and hreflang alternates
# ---------------------------------------------------------------------------------------------
def edition_links(pagename: str, language: str | None, suffix: str = ".html") -> list[dict]:
    """Every edition's copy of ``pagename``, as a link relative to the page itself."""
    here = edition_of(language)
    depth = pagename.count("/") + (1 if here[1] else 0)
    to_root = "../" * depth
    links = []
    for code, folder, hreflang, label in EDITIONS:
        href = to_root + (f"{folder}/" if folder else "") + pagename + suffix
        links.append({"language": code, "hreflang": hreflang, "label": label, "href": href,
                      "current": code == here[0]})
    return links


def _add_switcher_template(app: Sphinx, config) -> None:
    config.templates_path = list(config.templates_path or []) + [str(HERE / "templates")]
    if not (config.recbook_edition_links or not is_source_language(config.language)):
        return
    options = dict(config.html_theme_options or {})
    end = list(options.get("navbar_end") or [])
    if "recbook-language-switcher.html" not in end:
        end.insert(0, "recbook-language-switcher.html")
    options["navbar_end"] = end
    # The top bar exists for the switcher; the search field stays where it is, in the sidebar.
    options.setdefault("navbar_persistent", [])
    config.html_theme_options = options


def _page_context(app: Sphinx, pagename, templatename, context, doctree) -> None:
    if not (app.config.recbook_edition_links or not is_source_language(app.config.language)):
        context["recbook_editions"] = []
        return
    if doctree is None and pagename not in app.env.found_docs:  # search, genindex
        context["recbook_editions"] = []
        return
    links = edition_links(pagename, app.config.language, app.builder.out_suffix)
    context["recbook_editions"] = links
    alternates = "".join(f'<link rel="alternate" hreflang="{e["hreflang"]}" href="{e["href"]}" />\n'
                         for e in links)
    context["metatags"] = context.get("metatags", "") + alternates


def _write_root_redirect(app: Sphinx, exception) -> None:
    """``index.html`` that Jupyter Book writes for the English site, for the other editions."""
    if exception is not None or app.builder.format != "html" or is_source_language(app.config.language):
        return
    root = app.config.root_doc
    index = Path(app.outdir) / "index.html"
    if root != "index" and not index.exists():
        target = root + app.builder.out_suffix
        index.write_text(f'<!DOCTYPE html>\n<meta charset="utf-8">\n<meta http-equiv="Refresh" '
                         f'content="0; url={target}" />\n<link rel="canonical" href="{target}" />\n',
                         encoding="utf-8")


def _add_static(app: Sphinx) -> None:
    static = str(HERE / "static")
    if static not in app.config.html_static_path:
        app.config.html_static_path.append(static)


def setup(app: Sphinx) -> dict:
    from recbook_i18n_search import SearchChineseBigrams

    app.add_config_value("recbook_edition_links", False, "html", bool)
    app.connect("config-inited", _settings)
    app.connect("config-inited", _add_switcher_template)
    app.add_transform(ExerciseTitles)
    app.add_post_transform(_exercise_subtitle_extractor())
    app.add_post_transform(_solution_titles_from_page())
    app.add_transform(UntranslatableMaths)
    app.add_transform(ChineseSummary)
    app.add_transform(TocCaptions)
    app.add_search_language(SearchChineseBigrams)
    app.connect("html-page-context", _page_context)
    app.connect("build-finished", _write_root_redirect)
    app.connect("builder-inited", _add_static, priority=600)  # after recbook_site's (500)
    app.add_css_file("recbook-i18n.css")
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}

"""The Chinese edition's pipeline (_ext/recbook_i18n*.py), on tiny Sphinx builds:

- extraction: exercise titles are messages, display maths is not, part captions are;
- the Chinese build applies every translation, exercise titles and part captions included;
- search finds Chinese compounds typed without spaces (overlapping Han bigrams, the same cut in
  Python and in the browser's JavaScript);
- the language switcher and the hreflang alternates lead to the same page in the other edition,
  with relative links (the site may live under any sub-path);
- the drift check fails on untranslated, fuzzy and obsolete messages, on a glossary term
  translated inconsistently and on editions of different structure; and passes on the book's
  own catalogues of the pages listed as translated.
"""
from __future__ import annotations

import json
import posixpath
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "_ext"))

import recbook_i18n  # noqa: E402
import recbook_i18n_search as search  # noqa: E402
import recbook_i18n_tool as tool  # noqa: E402

CONF = """
import sys
sys.path.insert(0, {ext!r})
extensions = ["myst_parser", "sphinx_exercise", "sphinx_external_toc"{extra}]
myst_enable_extensions = ["dollarmath", "amsmath"]
external_toc_path = "_toc.yml"
exclude_patterns = ["_build", "locales"]
html_theme = "sphinx_book_theme"
html_title = "recbook: deep recommendation models"
numfig = True
"""

TOC = """
format: jb-book
root: index
parts:
  - caption: Foundations
    chapters:
      - file: book/one
      - file: book/two
"""

PAGES = {
    "index.md": """
        # Tiny

        The embedding vector of logistic regression.
        """,
    "book/one.md": """
        # One

        Negative sampling and retrieval with a factorization machine.

        $$
        \\hat y = \\sigma(w^\\top x)
        $$

        ```{exercise} Polynomial features
        :label: one-ex-a

        Write it.
        ```

        ```{solution} one-ex-a
        :label: one-sol-a

        Like this.
        ```
        """,
    "book/two.md": """
        # Two

        A page about ranking.

        ## Summary

        Ranking orders the candidates.

        ## 本章要点

        排序为候选打分。
        """,
}

ZH = {
    "Foundations": "基础",
    "Tiny": "小书",
    "The embedding vector of logistic regression.": "逻辑回归的嵌入向量。",
    "One": "第一章",
    "Negative sampling and retrieval with a factorization machine.": "用因子分解机做负采样与召回。",
    "Polynomial features": "多项式特征",
    "Write it.": "写出来。",
    "Like this.": "像这样。",
    "Two": "第二章",
    "A page about ranking.": "关于排序的一页。",
    "Summary": "小结",
    "Ranking orders the candidates.": "排序阶段给候选排出先后。",
}


def _sphinx(*args, cwd: Path) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, "-m", "sphinx", "-q", "-W", *map(str, args)],
                          capture_output=True, text=True, cwd=cwd)
    assert done.returncode == 0, done.stdout + done.stderr
    return done


def _source(root: Path, with_extension: bool = True) -> Path:
    extra = ', "recbook_i18n"' if with_extension else ""
    (root / "conf.py").write_text(CONF.format(ext=str(ROOT / "_ext"), extra=extra), encoding="utf-8")
    (root / "_toc.yml").write_text(TOC, encoding="utf-8")
    for name, text in PAGES.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
    return root


def _messages(pot_dir: Path) -> dict[str, list[str]]:
    return {page: [m.id for m in tool._read(pot) if m.id] for page, pot in tool.pages(pot_dir).items()}


@pytest.fixture(scope="module")
def editions(tmp_path_factory):
    """A tiny book extracted, translated with ZH, and built in both editions: site/ and site/zh/."""
    src = _source(tmp_path_factory.mktemp("src"))
    _sphinx("-b", "gettext", src, src / "_build" / "gettext", cwd=src)
    locales = src / "locales" / "zh_CN" / "LC_MESSAGES"
    tool.update(src / "_build" / "gettext", locales)
    for po in locales.rglob("*.po"):
        catalog = tool._read(po)
        for message in catalog:
            if message.id:
                message.string = ZH[message.id]
        tool._write(po, catalog)
    shutil.copy(ROOT / "locales" / "zh_CN" / "site.po", src / "locales" / "zh_CN" / "site.po")
    site = src / "_build" / "site"
    _sphinx("-b", "html", "-D", "recbook_edition_links=1", "-d", src / "_build" / "en-doctrees",
            src, site, cwd=src)
    _sphinx("-b", "html", "-D", "language=zh_CN", "-d", src / "_build" / "zh-doctrees",
            src, site / "zh", cwd=src)
    return {"src": src, "pot": src / "_build" / "gettext", "site": site, "zh": site / "zh"}


# --------------------------------------------------------------------------------------------
# Extraction and the three gaps
# --------------------------------------------------------------------------------------------
def test_exercise_titles_and_captions_are_messages_and_display_maths_is_not(editions):
    messages = _messages(editions["pot"])
    assert "Polynomial features" in messages["book/one"]
    assert "Foundations" in messages["index"]                     # the part caption of _toc.yml
    assert not any("sigma" in m for page in messages.values() for m in page), messages
    assert set(ZH) == {m for page in messages.values() for m in page}


def test_without_the_extension_the_gaps_are_there(tmp_path):
    """The stock stack (what the extension fixes): no exercise title, display maths as noise."""
    src = _source(tmp_path, with_extension=False)
    (src / "conf.py").write_text((src / "conf.py").read_text() + "gettext_compact = False\n")
    _sphinx("-b", "gettext", src, src / "_build" / "gettext", cwd=src)
    messages = _messages(src / "_build" / "gettext")
    assert "Polynomial features" not in messages["book/one"]
    assert any("sigma" in m for m in messages["book/one"])


def _article(html: str) -> str:
    article = html[html.index("<article"):html.index("</article>")]
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", article))


def test_the_chinese_edition_applies_every_translation(editions):
    one = (editions["zh"] / "book" / "one.html").read_text(encoding="utf-8")
    text = _article(one)
    for page, messages in _messages(editions["pot"]).items():
        html = (editions["zh"] / f"{page}.html").read_text(encoding="utf-8")
        for english in messages:
            assert ZH[english] in html, (page, english, ZH[english])
            assert english not in _article(html), (page, english)
    assert "多项式特征" in text                                      # the exercise's title
    solution = re.search(r'admonition-title">[^<]*<a [^>]*>([^<]*)</a>', one).group(1)
    assert "多项式特征" in solution, solution                         # ... repeated by its solution
    assert re.search(r'caption-text">\s*基础\s*<', one), "part caption not translated"
    assert "\\sigma" in one                                          # maths shared, unchanged
    assert 'lang="zh-CN"' in one
    assert "recbook：深度推荐模型" in one and "搜索本书" in one         # site title, search box
    index = (editions["zh"] / "index.html").read_text(encoding="utf-8")
    assert "逻辑回归的嵌入向量" in index
    english = (editions["site"] / "book" / "one.html").read_text(encoding="utf-8")
    assert "Polynomial features" in english and "多项式特征" not in english
    assert re.search(r'caption-text">\s*Foundations\s*<', english)


def test_the_chinese_summary_is_in_the_english_edition_only(editions):
    messages = _messages(editions["pot"])
    assert not any("本章要点" in m or "排序为候选打分" in m for m in messages["book/two"]), messages
    english = _article((editions["site"] / "book" / "two.html").read_text(encoding="utf-8"))
    chinese = _article((editions["zh"] / "book" / "two.html").read_text(encoding="utf-8"))
    assert "本章要点" in english and "排序为候选打分" in english
    assert "本章要点" not in chinese and "排序为候选打分" not in chinese
    assert "小结" in chinese and "排序阶段给候选排出先后" in chinese     # the translated summary, once


# --------------------------------------------------------------------------------------------
# Search
# --------------------------------------------------------------------------------------------
def test_han_runs_are_cut_into_overlapping_bigrams():
    assert search.split("嵌入向量") == ["嵌入", "入向", "向量"]
    assert search.split("召回") == ["召回"] and search.split("宽") == ["宽"]
    assert search.split("用 DeepFM 做点击率预估(CTR)") == ["用", "DeepFM", "做点", "点击", "击率", "率预",
                                                       "预估", "CTR"]
    assert search.split("负采样x2") == ["负采", "采样", "x2"]


def test_sphinx_chinese_search_alone_indexes_no_chinese():
    """The gap the bigram splitter closes: without jieba, Sphinx's own Chinese splitter drops
    every Chinese word (and jieba cuts a query typed without spaces differently from the text)."""
    from sphinx.search.zh import JIEBA, SearchChinese

    if not JIEBA:
        assert SearchChinese({}).split("用逻辑回归做点击率预估") == []
    assert "逻辑" in search.SearchChineseBigrams({}).split("用逻辑回归做点击率预估")


NODE = shutil.which("node")
STRINGS = ["嵌入向量", "逻辑回归", "因子分解机", "负采样", "召回", "用 DeepFM 做点击率预估(CTR)",
           "两个塔：user tower 与 item_tower，logQ 校正", "宽", "x2"]


def _js_split(strings: list[str]) -> list[list[str]]:
    script = search.JS_SPLITTER + f"\nconsole.log(JSON.stringify({json.dumps(strings)}.map(splitQuery)));"
    done = subprocess.run([NODE, "-e", script], capture_output=True, text=True, check=True)
    return json.loads(done.stdout)


@pytest.mark.skipif(NODE is None, reason="node is not installed")
def test_the_browser_cuts_queries_as_the_index_was_cut():
    assert _js_split(STRINGS) == [search.split(s) for s in STRINGS]


def _search_index(site: Path) -> dict:
    text = (site / "searchindex.js").read_text(encoding="utf-8")
    return json.loads(text[text.index("(") + 1:text.rindex(")")])


def _find(index: dict, terms: list[str]) -> set[str]:
    """Pages holding every term (in the text or the titles), as searchtools.js requires."""
    docs = None
    for term in terms:
        found = set()
        for table in ("terms", "titleterms"):
            hits = index[table].get(term, [])
            found |= {hits} if isinstance(hits, int) else set(hits)
        docs = found if docs is None else docs & found
    return {index["docnames"][i] for i in docs or set()}


@pytest.mark.parametrize("query, page", [("嵌入向量", "index"), ("逻辑回归", "index"),
                                         ("因子分解机", "book/one"), ("负采样", "book/one"),
                                         ("召回", "book/one")])
def test_chinese_compounds_typed_without_spaces_are_found(editions, query, page):
    index = _search_index(editions["zh"])
    terms = _js_split([query])[0] if NODE else search.split(query)
    assert page in _find(index, terms), (query, terms)
    assert _find(index, search.split("排序向量")) == set()          # not on one page: no hit
    language_data = (editions["zh"] / "_static" / "language_data.js").read_text(encoding="utf-8")
    assert "function splitQuery" in language_data


# --------------------------------------------------------------------------------------------
# Language switcher and hreflang
# --------------------------------------------------------------------------------------------
def _links(html: str) -> dict[str, str]:
    switcher = html[html.index('class="recbook-language-switcher"'):]
    switcher = switcher[:switcher.index("</nav>")]
    return dict(re.findall(r'<a class="recbook-language" href="([^"]+)" hreflang="([^"]+)"', switcher))


@pytest.mark.parametrize("page", ["index", "book/one", "book/two"])
def test_the_switcher_leads_to_the_same_page_in_the_other_edition(editions, page):
    for here, other, hreflang in [(editions["site"], editions["zh"], "zh-Hans"),
                                  (editions["zh"], editions["site"], "en")]:
        html = (here / f"{page}.html").read_text(encoding="utf-8")
        links = _links(html)
        assert list(links.values()) == [hreflang], links
        href = next(iter(links))
        assert not href.startswith(("/", "http")), href                 # relative: any sub-path
        target = Path(posixpath.normpath(posixpath.join(str((here / page).parent), href)))
        assert target == other / f"{page}.html" and target.is_file(), (href, target)
        head = html[:html.index("</head>")]
        alternates = dict(re.findall(r'<link rel="alternate" hreflang="([^"]+)" href="([^"]+)"', head))
        assert set(alternates) == {"en", "zh-Hans"} and alternates[hreflang] == href


def test_english_pages_have_no_switcher_until_the_chinese_edition_is_built_with_them(tmp_path):
    src = _source(tmp_path)
    _sphinx("-b", "html", src, src / "_build" / "html", cwd=src)
    html = (src / "_build" / "html" / "book" / "one.html").read_text(encoding="utf-8")
    assert "recbook-language-switcher" not in html and "hreflang" not in html


def test_edition_links_are_relative_to_the_page():
    links = {e["language"]: e["href"] for e in recbook_i18n.edition_links("book/fm", "zh_CN")}
    assert links == {"en": "../../book/fm.html", "zh_CN": "../../zh/book/fm.html"}
    links = {e["language"]: e["href"] for e in recbook_i18n.edition_links("book/fm", "en")}
    assert links == {"en": "../book/fm.html", "zh_CN": "../zh/book/fm.html"}


# --------------------------------------------------------------------------------------------
# Drift check
# --------------------------------------------------------------------------------------------
BAD_PO = """\
msgid ""
msgstr ""
"Content-Type: text/plain; charset=utf-8\\n"

msgid "Translated."
msgstr "已翻译。"

msgid "Not yet."
msgstr ""

#, fuzzy
#| msgid "The old English."
msgid "The new English."
msgstr "旧的中文。"

#~ msgid "Removed English."
#~ msgstr "删掉的中文。"
"""


def test_the_catalogue_check_fails_on_untranslated_fuzzy_and_obsolete(tmp_path):
    po = tmp_path / "page.po"
    po.write_text(BAD_PO, encoding="utf-8")
    problems = tool.catalogue_problems("page", po, None)
    assert len(problems) == 3, problems
    assert "untranslated: 'Not yet.'" in problems[0] or any("untranslated" in p for p in problems)
    assert any("fuzzy" in p and "The new English." in p for p in problems)
    assert any("obsolete" in p and "Removed English." in p for p in problems)
    pot = tmp_path / "page.pot"
    pot.write_text('msgid ""\nmsgstr ""\n\nmsgid "Translated."\nmsgstr ""\n\nmsgid "Added."\nmsgstr ""\n',
                   encoding="utf-8")
    stale = tool.catalogue_problems("page", po, pot)
    assert any("lacks" in p and "Added." in p for p in stale)
    assert any("no longer" in p and "Not yet." in p for p in stale)


def test_a_merge_keeps_the_old_english_beside_a_fuzzy_entry(tmp_path):
    pot_dir = tmp_path / "pot"
    (pot_dir / "book").mkdir(parents=True)
    pot = pot_dir / "book" / "p.pot"
    pot.write_text('msgid ""\nmsgstr ""\n\nmsgid "Negative sampling draws five items per user."\nmsgstr ""\n',
                   encoding="utf-8")
    out = tmp_path / "po"
    tool.update(pot_dir, out)
    catalog = tool._read(out / "book" / "p.po")
    catalog["Negative sampling draws five items per user."].string = "负采样为每个用户抽取五个物品。"
    tool._write(out / "book" / "p.po", catalog)
    pot.write_text('msgid ""\nmsgstr ""\n\nmsgid "Negative sampling draws ten items per user."\nmsgstr ""\n',
                   encoding="utf-8")
    tool.update(pot_dir, out)
    text = (out / "book" / "p.po").read_text(encoding="utf-8")
    assert '#, fuzzy\n#| msgid "Negative sampling draws five items per user."\n' \
           'msgid "Negative sampling draws ten items per user."\nmsgstr "负采样为每个用户抽取五个物品。"' in text, text
    assert tool.catalogue_problems("book/p", out / "book" / "p.po", pot) != []


def test_glossary_terms_are_translated_consistently():
    entries = tool.glossary_entries()
    by_name = {name: e for e in entries for name in e.english}
    assert by_name["Negative sampling"].chinese == ["负采样"]
    assert by_name["Retrieval"].chinese == ["召回"] and "Candidate generation" in by_name["Retrieval"].english
    messages = [("a", "Retrieval picks candidates.", "召回挑选候选。", []),
                ("b", "Retrieval picks candidates.", "检索挑选候选。", []),              # inconsistent
                ("c", "We use {term}`negative sampling <Negative sampling>`.", "我们用负采样。", []),
                ("d", "The retrieval stage.", "候选生成阶段。", ["glossary: Retrieval"]),  # waived
                ("e", "Negative samples ($k=5$).", "负样本（$k=5$）。", []),
                ("f", "Click-through rate", "Click-through rate", [])]                # a term's name
    problems = tool.glossary_problems(messages, entries)
    assert len(problems) == 1 and problems[0].startswith("b: 'Retrieval'"), problems


def test_the_structure_comparison_finds_a_missing_page_section_or_equation(tmp_path):
    page = ('<article><section><h1>T</h1><div class="math notranslate nohighlight">x</div>'
            '<img src="a.png"></section>{extra}</article>')
    (tmp_path / "en" / "book").mkdir(parents=True)
    (tmp_path / "zh" / "book").mkdir(parents=True)
    (tmp_path / "en" / "book" / "a.html").write_text(page.format(extra="<section>s</section>"))
    (tmp_path / "zh" / "book" / "a.html").write_text(page.format(extra=""))
    (tmp_path / "en" / "book" / "b.html").write_text(page.format(extra=""))
    problems = tool.compare(tmp_path / "en", tmp_path / "zh")
    assert problems == ["book/b.html: only in the English edition",
                        "book/a.html: 2 sections in English, 1 in Chinese"], problems


def test_the_tiny_editions_have_the_same_structure(editions):
    assert tool.compare(editions["site"], editions["zh"]) == []


def test_the_pages_listed_as_translated_are_complete_and_consistent():
    """The book's own catalogues. With an extraction in _build/gettext (make i18n-update) the
    check also compares them with the English of today."""
    pot = ROOT / "_build" / "gettext"
    problems = tool.check(pot if pot.is_dir() else None)
    assert not problems, "\n".join(problems)
    for page in tool.translated_pages():
        assert (tool.po_dir() / f"{page}.po").is_file(), page


BUILT = ROOT / "_build" / "html"


@pytest.mark.skipif(not (BUILT / "zh").is_dir(), reason="the Chinese edition is not built (make book-zh)")
def test_the_built_editions_have_the_same_structure():
    problems = tool.compare(BUILT, BUILT / "zh")
    assert not problems, "\n".join(problems)


def test_the_structure_leaves_out_the_chinese_summary_with_its_subsections():
    """The English-only 本章要点 section may hold subsections of its own; none of them counts."""
    def page(summary: str) -> str:
        return ("<article><section id='a'><h1>A</h1><section id='s'><h2>Summary</h2></section>"
                f"{summary}<section id='e'><h2>Exercises</h2></section></section></article>")

    nested = ("<section id='z'><h3>本章要点</h3><p>要点</p>"
              "<section id='zd'><h4>Going deeper：结论</h4></section></section>")
    assert tool.structure(page(nested))["sections"] == tool.structure(page(""))["sections"] == 3

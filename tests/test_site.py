"""The website's own machinery, without building it: the repository URL has one source and every
copy follows it, the chart scripts are pinned to what Altair writes, the bibliography labels read
author-year like the citations, exercises are numbered per chapter, and the build-time diagrams
draw what the pages say. (tests/browser/ builds the site and checks it in a browser.)"""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

import recbook

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "_ext"))
sys.path.insert(0, str(ROOT / "tools"))

import recbook_diagrams  # noqa: E402
import recbook_site  # noqa: E402
import set_repository_url  # noqa: E402


# --------------------------------------------------------------------------------------------
# One repository URL
# --------------------------------------------------------------------------------------------

def test_the_site_reads_the_package_s_repository_url():
    assert recbook_site.repository_url() == recbook.REPOSITORY_URL
    config = SimpleNamespace(html_theme_options={"launch_buttons": {"binderhub_url": "x"}},
                             myst_substitutions={})
    recbook_site._set_repository_url(None, config)
    assert config.html_theme_options["repository_url"] == recbook.REPOSITORY_URL
    assert config.html_theme_options["use_repository_button"] is True
    assert config.html_theme_options["launch_buttons"] == {"binderhub_url": "x"}
    assert config.myst_substitutions["repository_url"] == recbook.REPOSITORY_URL


def test_a_different_url_in_the_site_config_is_an_error():
    from sphinx.errors import ConfigError

    config = SimpleNamespace(html_theme_options={"repository_url": "https://github.com/other/repo"},
                             myst_substitutions={})
    with pytest.raises(ConfigError, match="set_repository_url"):
        recbook_site._set_repository_url(None, config)


def test_config_yml_carries_no_repository_url():
    config = yaml.safe_load((ROOT / "_config.yml").read_text(encoding="utf-8"))
    assert "url" not in (config.get("repository") or {})


def test_readme_clones_the_package_s_repository():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    clones = re.findall(r"git clone (\S+)", readme)
    assert clones and all(url == recbook.REPOSITORY_URL for url in clones), clones


def test_set_repository_url_rewrites_every_copy(tmp_path):
    for rel in ("recbook", "README.md"):
        src = ROOT / rel
        (shutil.copytree if src.is_dir() else shutil.copy)(src, tmp_path / rel)
    (tmp_path / "book").mkdir()
    shutil.copy(ROOT / "book" / "fm.ipynb", tmp_path / "book" / "fm.ipynb")
    new = "https://gitlab.example.org/someone/my-book"
    changed = set_repository_url.set_url(new + ".git", tmp_path)
    assert changed == ["recbook/__init__.py", "README.md", "book/fm.ipynb"]
    assert set_repository_url.current_url(tmp_path) == new
    assert f"git clone {new} " in (tmp_path / "README.md").read_text(encoding="utf-8")
    setup = json.loads((tmp_path / "book" / "fm.ipynb").read_text(encoding="utf-8"))["cells"][0]
    assert f"recbook @ git+{new}" in "".join(setup["source"])
    assert recbook.REPOSITORY_URL not in (tmp_path / "README.md").read_text(encoding="utf-8")
    with pytest.raises(ValueError, match="url"):
        set_repository_url.set_url("not a url", tmp_path)


def test_set_repository_url_command_line(tmp_path):
    shutil.copytree(ROOT / "recbook", tmp_path / "recbook")
    done = subprocess.run([sys.executable, str(ROOT / "tools" / "set_repository_url.py"),
                           "https://github.com/me/book", "--root", str(tmp_path)],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert set_repository_url.current_url(tmp_path) == "https://github.com/me/book"
    bad = subprocess.run([sys.executable, str(ROOT / "tools" / "set_repository_url.py"), "ftp://x",
                          "--root", str(tmp_path)], capture_output=True, text=True)
    assert bad.returncode == 2 and "url" in bad.stderr


# --------------------------------------------------------------------------------------------
# Chart scripts, bibliography, exercises, diagrams
# --------------------------------------------------------------------------------------------

def test_chart_scripts_are_the_versions_altair_writes_for():
    import altair

    packages = recbook_site.vega_packages()
    assert packages["vega-lite"] == altair.VEGALITE_VERSION
    assert packages["vega"].split(".")[0] == altair.VEGA_VERSION
    assert packages["vega-embed"].split(".")[0] == altair.VEGAEMBED_VERSION
    major, minor, patch = map(int, packages["vega"].split("."))
    assert (major, minor, patch) >= (6, 3, 1)          # 6.3.0's build reports itself as 5.33.1
    urls = recbook_site._vega_urls("https://cdn.example/npm/")
    assert urls[0] == f"https://cdn.example/npm/vega@{packages['vega']}/build/vega.min.js"


def test_bibliography_labels_read_author_year():
    from pybtex.database import parse_string
    from pybtex.plugin import find_plugin

    recbook_site._register_bibliography_style()
    bib = parse_string("""
        @article{a, author = {Rendle, Steffen}, title = {T}, journal = {J}, year = {2010}}
        @article{b, author = {Juan, Yuchin and Zhuang, Yong and Lin, Chih-Jen}, title = {T},
                 journal = {J}, year = {2016}}
        @article{c, author = {Cheng, A. and Koc, B.}, title = {T}, journal = {J}, year = {2016}}
        @article{d, author = {Rendle, Steffen}, title = {U}, journal = {J}, year = {2010}}
    """, "bibtex")
    style = find_plugin("pybtex.style.formatting", "recbook")()
    labels = {e.key: e.label for e in style.format_entries(bib.entries.values())}
    assert labels == {"c": "Cheng and Koc, 2016", "b": "Juan et al., 2016",
                      "a": "Rendle, 2010a", "d": "Rendle, 2010b"}
    assert list(labels) == ["c", "b", "a", "d"]            # sorted by author, then year


def test_exercises_are_numbered_per_chapter():
    env = SimpleNamespace(toc_fignumbers={
        "book/data": {"exercise": {"e1": (1,), "e2": (2,)}, "figure": {"f": (1,)}},
        "book/fm": {"exercise": {"e3": (3,), "e4": (4,), "e5": (5,)}},
        "book/intro": {},
    })
    changed = recbook_site._number_exercises_per_chapter(None, env)
    assert changed == ["book/fm"]
    assert env.toc_fignumbers["book/fm"]["exercise"] == {"e3": (1,), "e4": (2,), "e5": (3,)}
    assert env.toc_fignumbers["book/data"]["figure"] == {"f": (1,)}


def test_pipeline_diagram_places_every_chapter(tmp_path):
    path = recbook_diagrams.write_diagram("pipeline", tmp_path)
    svg = path.read_text(encoding="utf-8")
    assert path == tmp_path / "_build" / "diagrams" / "pipeline.svg" and svg.lstrip().startswith("<?xml")
    for name in ("retrieval", "ranking", "Two-tower retrieval", "GRU4Rec", "Factorization machines",
                 "Wide &amp; Deep", "DeepFM", "DIN", "Leaderboard", "Data chapter"):
        assert name in svg, name
    mtime = path.stat().st_mtime_ns
    recbook_diagrams.write_diagram("pipeline", tmp_path)   # unchanged: not rewritten
    assert path.stat().st_mtime_ns == mtime
    with pytest.raises(ValueError, match="unknown diagram"):
        recbook_diagrams.write_diagram("nope", tmp_path)


# --------------------------------------------------------------------------------------------
# The introduction: reading times computed from the notebooks, the repository as a link
# --------------------------------------------------------------------------------------------

import recbook_reader  # noqa: E402


def _notebook(path: Path, lesson_words: int, deeper_words: int) -> Path:
    cells = [{"cell_type": "markdown", "id": "a", "metadata": {},
              "source": "# Title\n\n" + "word " * (lesson_words - 1)}]
    if deeper_words:
        cells.append({"cell_type": "markdown", "id": "b", "metadata": {},
                      "source": "## Going deeper\n\n" + "word " * (deeper_words - 2)})
    path.write_text(json.dumps({"cells": cells, "metadata": {
        "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
        "nbformat": 4, "nbformat_minor": 5}), encoding="utf-8")
    return path


def test_reading_times_table_counts_each_notebook(tmp_path):
    one = _notebook(tmp_path / "one.ipynb", 401, 199)      # 3 min lesson, 1 min going deeper
    two = _notebook(tmp_path / "two.ipynb", 200, 0)        # 1 min, no going deeper
    table = recbook_reader.reading_times_markdown([("{doc}`one`", one), ("{doc}`two`", two)])
    assert table.splitlines() == [
        "| Chapter | Lesson | Going deeper |", "|---|---:|---:|",
        "| {doc}`one` | 3 min | 1 min |", "| {doc}`two` | 1 min | – |",
        "| **all chapters** | **4 min** | **1 min** |"]
    zh = recbook_reader.reading_times_markdown([("{doc}`one`", one)], language="zh_CN")
    assert zh.splitlines()[0] == "| 章节 | 正文 | 深入阅读 |" and "| 3 分钟 | 1 分钟 |" in zh
    with pytest.raises(ValueError, match="expected an existing notebook"):
        recbook_reader.reading_times_markdown([("{doc}`gone`", tmp_path / "gone.ipynb")])


TINY_BOOK_CONF = """
import sys
sys.path.insert(0, {ext!r})
extensions = ["myst_nb", "sphinx_exercise", "recbook_site"]
exclude_patterns = ["_build"]
html_theme = "sphinx_book_theme"
nb_execution_mode = "off"
myst_enable_extensions = ["colon_fence", "substitution"]
"""


def _tiny_build(src: Path, index: str, builder: str = "html") -> subprocess.CompletedProcess:
    (src / "conf.py").write_text(TINY_BOOK_CONF.format(ext=str(ROOT / "_ext")), encoding="utf-8")
    (src / "index.md").write_text(index, encoding="utf-8")
    return subprocess.run([sys.executable, "-m", "sphinx", "-b", builder, "-q", "-W", str(src),
                           str(src / "_build" / builder)], capture_output=True, text=True, cwd=src)


def test_reading_times_directive_renders_links_and_minutes_and_stays_out_of_translations(tmp_path):
    _notebook(tmp_path / "chapter.ipynb", 650, 450)   # 4 min lesson, 3 min going deeper
    index = ("# Tiny\n\n:::{admonition} Before you start\n\n```{recbook-reading-times}\nchapter\n```\n:::\n\n"
             "Clone {{ \"[%s](%s)\" % (repository_url, repository_url) }} now.\n\n"
             "```{toctree}\nchapter\n```\n")
    done = _tiny_build(tmp_path, index)
    assert done.returncode == 0, done.stdout + done.stderr
    html = (tmp_path / "_build" / "html" / "index.html").read_text(encoding="utf-8")
    table = html[html.index("recbook-reading-times"):html.index("</table>", html.index("recbook-reading-times"))]
    assert re.search(r'<a class="reference internal" href="chapter.html">.*?Title.*?</a>', table, re.S), table
    cells = re.findall(r"<td[^>]*><p>(.*?)</p></td>", table, re.S)
    assert [c for c in cells if "min" in c][:2] == ["4 min", "3 min"], cells
    assert f'href="{recbook.REPOSITORY_URL}"' in html       # the repository is a link
    # Computed minutes are not prose to translate: gettext extracts the box's title, not the table.
    done = _tiny_build(tmp_path, index, builder="gettext")
    assert done.returncode == 0, done.stdout + done.stderr
    pot = (tmp_path / "_build" / "gettext" / "index.pot").read_text(encoding="utf-8")
    assert "Before you start" in pot and "min" not in pot and "Chapter" not in pot


def test_reading_times_directive_refuses_a_page_that_is_not_a_notebook(tmp_path):
    (tmp_path / "page.md").write_text("# Page\n", encoding="utf-8")
    done = _tiny_build(tmp_path, "# Tiny\n\n```{recbook-reading-times}\npage\n```\n\n```{toctree}\npage\n```\n")
    assert done.returncode != 0 and "expected a chapter notebook" in done.stdout + done.stderr


def test_the_introduction_computes_its_reading_times_for_every_chapter():
    intro = (ROOT / "book" / "intro.md").read_text(encoding="utf-8")
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text(encoding="utf-8"))
    chapters = [c["file"].removeprefix("book/") for part in toc["parts"] for c in part["chapters"]
                if (ROOT / f"{c['file']}.ipynb").is_file()]
    m = re.search(r"```\{recbook-reading-times\}\n(.*?)```", intro, re.S)
    assert m, "book/intro.md: no {recbook-reading-times} table"
    assert m.group(1).split() == chapters          # every chapter notebook, in the book's order
    assert f"{recbook_reader.WORDS_PER_MINUTE} words a minute" in intro
    assert not re.search(r"\|\s*Status\s*\|", intro) and "| available |" not in intro
    assert '{{ "[%s](%s)" % (repository_url, repository_url) }}' in intro
    for label in ("data-protocol-ctr", "data-protocol-histories", "data-protocol-sequences", "data-metrics"):
        assert f"<{label}>`" in intro, label
    data = (ROOT / "book" / "data.ipynb").read_text(encoding="utf-8")
    for label in ("data-protocol-ctr", "data-protocol-histories", "data-protocol-sequences",
                  "data-metrics", "data-ties"):
        assert f"({label})=" in data, label


def test_every_glossary_entry_has_a_chinese_name():
    text = (ROOT / "book" / "glossary.md").read_text(encoding="utf-8")
    body = text.split("```{glossary}", 1)[1].split("\n```", 1)[0]
    entries, terms, in_definition = [], [], False
    for line in body.splitlines():
        if not line.strip() or line.startswith(":"):
            continue
        if line.startswith(" "):
            in_definition = True
            continue
        if in_definition or not terms:
            terms = []
            entries.append(terms)
            in_definition = False
        terms.append(line.strip())
    assert len(entries) > 80
    missing = [t[0] for t in entries if not any(re.search("[\u4e00-\u9fff]", name) for name in t)]
    assert not missing, f"glossary entries without a Chinese name: {missing}"

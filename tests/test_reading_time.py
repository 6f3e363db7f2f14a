"""Reading time and the two layers of a chapter: the lesson and "Going deeper".

- the word count behind every page's reading time (``_ext/recbook_reader.py``) counts prose only:
  not code, maths, outputs, labels or link targets; a "Going deeper" heading of any level opens
  going-deeper text until the next heading of its level or above;
- every notebook with the metadata key ``"recbook": {"lesson_words_max": N}`` keeps its lesson
  (the prose outside "Going deeper" sections) within N words: adding the key is how a chapter opts
  into its budget once it is written as a lesson plus going deeper;
- a small Sphinx build with the book's extension shows the reading time under the title and each
  "Going deeper" section as a closed ``<details>`` whose summary is the heading, while the table
  of contents still links into it.
"""
from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from book_pages import ROOT, notebooks

sys.path.insert(0, str(ROOT / "_ext"))

import recbook_reader as rr  # noqa: E402

MODEL_CHAPTER_WORDS = 3000
"""The lesson budget of a model chapter (about 15 minutes of prose at 200 words a minute)."""


# --------------------------------------------------------------------------------------------
# Counting words
# --------------------------------------------------------------------------------------------

def test_prose_words_count_and_code_maths_and_markup_do_not():
    text = textwrap.dedent("""
        (fm-intro)=
        # The model {cite}`rendle2010fm`

        A factorization machine adds $\\sum_i w_i x_i$ to pairwise terms `fm(x)` in
        [one line](https://example.org/a/b/c) and ![a figure](fig.png) <span class="x">here</span>.

        $$
        \\hat y = w_0 + \\sum_i w_i x_i
        $$

        ```python
        import torch  # seven words of code that never count
        ```

        ```{math}
        :label: eq-one
        a + b = c
        ```

        :::{note}
        :class: tip
        Read {term}`embeddings <embedding>` first.
        :::

        宽部分
        """)
    # The(1) model(2) | A factorization machine adds to pairwise terms in one line and here (12)
    # | Read embeddings first (3) | 宽部分 (3 characters)
    blocks = list(rr.markdown_blocks(text))
    assert blocks[0] == ("prose", 0, blocks[0][2]) and ("heading", 1, "The model {cite}`rendle2010fm`") in blocks
    assert rr.markdown_words([text]).lesson == 2 + 12 + 3 + 3


def test_going_deeper_sections_end_at_a_heading_of_their_level_or_above():
    cells = ["# Chapter\n\none two three", "## Going deeper: seeds\n\nfour five",
             "### A sweep\n\nsix seven eight", "## Summary\n\nnine", "### going deeper\n\nten eleven",
             "# Next\n\ntwelve"]
    words = rr.markdown_words(cells)
    # lesson: Chapter, one two three, Summary, nine, Next, twelve = 1+3+1+1+1+1
    # deeper: Going deeper seeds, four five, A sweep, six seven eight, going deeper, ten eleven = 3+2+2+3+2+2
    assert (words.lesson, words.deeper) == (8, 14)


def test_reading_time_rounds_up_to_whole_minutes_at_the_stated_rate():
    assert rr.WORDS_PER_MINUTE == 200
    assert [rr.minutes(n) for n in (0, 1, 200, 201, 2999)] == [0, 1, 1, 2, 15]
    assert rr.reading_time_text(rr.Words(2800, 2400)) == "Reading time: lesson 14 min · going deeper 12 min"
    assert rr.reading_time_text(rr.Words(2800, 0)) == "Reading time: lesson 14 min"
    assert rr.reading_time_text(rr.Words(2800, 2400), "zh_CN") == "阅读时间：正文 14 分钟 · 深入阅读 12 分钟"


def test_notebook_words_skip_code_cells_outputs_and_removed_cells(tmp_path):
    nb = {"cells": [
        {"cell_type": "markdown", "metadata": {}, "source": ["# Title\n", "one two"]},
        {"cell_type": "code", "metadata": {}, "source": "x = 1  # many words in a comment here",
         "outputs": [{"output_type": "stream", "name": "stdout", "text": "lots of printed words"}]},
        {"cell_type": "markdown", "metadata": {"tags": ["remove-cell"]}, "source": "hidden words here"},
        {"cell_type": "markdown", "metadata": {}, "source": "## Going deeper\n\nthree four five"},
    ], "metadata": {"recbook": {"lesson_words_max": 2}}, "nbformat": 4, "nbformat_minor": 5}
    path = tmp_path / "x.ipynb"
    path.write_text(json.dumps(nb), encoding="utf-8")
    assert rr.notebook_words(path) == rr.Words(lesson=3, deeper=5)
    assert rr.lesson_budget(path) == 2
    assert _over_budget([path]) == [f"{path.name}: lesson 3 words, over its budget of 2 (1 min at 200 words/min)"]


def test_a_bad_budget_is_an_error_naming_the_key(tmp_path):
    path = tmp_path / "x.ipynb"
    path.write_text(json.dumps({"cells": [], "metadata": {"recbook": {"lesson_words_max": "3000"}}}))
    with pytest.raises(ValueError, match="lesson_words_max"):
        rr.lesson_budget(path)


# --------------------------------------------------------------------------------------------
# Budgets
# --------------------------------------------------------------------------------------------

def _over_budget(paths) -> list[str]:
    over = []
    for path in paths:
        budget = rr.lesson_budget(path)
        if budget is None:
            continue
        words = rr.notebook_words(path)
        if words.lesson > budget:
            over.append(f"{Path(path).name}: lesson {words.lesson} words, over its budget of {budget} "
                        f"({rr.minutes(budget)} min at {rr.WORDS_PER_MINUTE} words/min)")
    return over


def test_every_chapter_with_a_budget_keeps_its_lesson_within_it():
    over = _over_budget(notebooks())
    assert not over, ("move seed tables, sweeps, ablations, timings and library comparisons into a "
                      "'Going deeper' section:\n" + "\n".join(over))


def test_budgets_of_model_chapters_are_at_most_the_standard():
    loose = [f"{p.name}: {b}" for p in notebooks() if (b := rr.lesson_budget(p)) and b > MODEL_CHAPTER_WORDS
             and p.stem not in {"data", "leaderboard"}]
    assert not loose, f"a model chapter's lesson budget is at most {MODEL_CHAPTER_WORDS} words: {loose}"


# --------------------------------------------------------------------------------------------
# The website: a small Sphinx build with the book's extension
# --------------------------------------------------------------------------------------------

TINY_CONF = """
import sys
sys.path.insert(0, {ext!r})
extensions = ["myst_nb", "sphinx_exercise", "recbook_site"]
exclude_patterns = ["_build"]
html_theme = "sphinx_book_theme"
nb_execution_mode = "off"
"""

CHAPTER = {"cells": [
    {"cell_type": "markdown", "id": "a", "metadata": {}, "source": "# A chapter\n\nThe lesson has eight words of prose here."},
    {"cell_type": "code", "id": "b", "metadata": {}, "source": "x = 1", "outputs": [], "execution_count": None},
    {"cell_type": "markdown", "id": "c", "metadata": {}, "source": "## Going deeper: the seeds\n\n" + "seed " * 450},
    {"cell_type": "markdown", "id": "d", "metadata": {}, "source": "(tiny-sweep)=\n### A sweep\n\nAnother table."},
    {"cell_type": "markdown", "id": "e", "metadata": {}, "source": "## Summary\n\nBack in the lesson."},
], "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
    "nbformat": 4, "nbformat_minor": 5}


@pytest.fixture(scope="module")
def tiny_site(tmp_path_factory) -> Path:
    src = tmp_path_factory.mktemp("tiny-reader")
    (src / "conf.py").write_text(TINY_CONF.format(ext=str(ROOT / "_ext")), encoding="utf-8")
    (src / "index.md").write_text("# Tiny\n\nSee {ref}`tiny-sweep`.\n\n```{toctree}\nchapter\n```\n",
                                  encoding="utf-8")
    (src / "chapter.ipynb").write_text(json.dumps(CHAPTER), encoding="utf-8")
    out = src / "_build"
    done = subprocess.run([sys.executable, "-m", "sphinx", "-b", "html", "-q", "-W", str(src), str(out)],
                          capture_output=True, text=True, cwd=src)
    assert done.returncode == 0, done.stdout + done.stderr
    return out


def _article(html: str) -> str:
    return html[html.index("<article"):html.index("</article>")]


def test_the_reading_time_is_under_the_title(tiny_site):
    article = _article((tiny_site / "chapter.html").read_text(encoding="utf-8"))
    m = re.search(r"</h1>\s*<p class=\"recbook-reading-time\">([^<]*)</p>", article)
    assert m, article[:2000]
    # lesson: "A chapter" + 8 words + "Summary" + "Back in the lesson" = 2 + 8 + 1 + 4 = 15 words
    # going deeper: "Going deeper the seeds" + 450 + "A sweep" + "Another table" = 4 + 450 + 2 + 2 = 458
    assert m.group(1) == "Reading time: lesson 1 min · going deeper 3 min"


def test_going_deeper_is_a_closed_details_with_the_heading_as_summary(tiny_site):
    article = _article((tiny_site / "chapter.html").read_text(encoding="utf-8"))
    m = re.search(r'<details class="recbook-deeper"><summary>\s*<h2>Going deeper: the seeds.*?</h2>\s*'
                  r'<span class="recbook-deeper-time">3 min read · click to open</span></summary>(.*?)</details>',
                  article, flags=re.S)
    assert m, article
    inside = m.group(1)
    assert "seed seed" in inside and "<h3>A sweep" in inside and 'id="tiny-sweep"' in inside
    assert "Back in the lesson" not in inside and "Back in the lesson" in article
    assert article.count("<details") == 1 and "open" not in article[article.index("<details"):article.index("<summary>")]


def test_links_and_the_table_of_contents_still_reach_inside_a_closed_section(tiny_site):
    index = (tiny_site / "index.html").read_text(encoding="utf-8")
    chapter = (tiny_site / "chapter.html").read_text(encoding="utf-8")
    assert 'href="chapter.html#tiny-sweep"' in index
    # The page's own table of contents lists both headings of the closed section.
    toc = chapter[chapter.index('id="pst-page-navigation-heading'):] if "pst-page-navigation-heading" in chapter else chapter
    assert "#going-deeper-the-seeds" in toc and "#a-sweep" in toc
    assert "recbook-reader.js" in chapter  # opens the section a link points into


def test_markdown_pages_get_no_reading_time(tiny_site):
    assert "recbook-reading-time" not in (tiny_site / "index.html").read_text(encoding="utf-8")


def test_going_deeper_headings_collapse_in_both_editions():
    """The collapse matches the heading text after translation, so every catalogue must translate a
    going-deeper heading as 深入阅读 (which the pattern knows), or the Chinese page shows it open."""
    from babel.messages.pofile import read_po

    assert rr.DEEPER.match("Going deeper: the seeds") and rr.DEEPER.match("深入阅读：随机种子")
    assert not rr.DEEPER.match("The seeds, going deeper") and not rr.DEEPER.match("深入一步：随机种子")
    wrong = []
    for po in sorted((ROOT / "locales" / "zh_CN" / "LC_MESSAGES").rglob("*.po")):
        with po.open("rb") as f:
            catalog = read_po(f)
        for m in catalog:
            if m.id and isinstance(m.id, str) and rr.DEEPER.match(m.id) and m.string \
                    and not rr.DEEPER.match(m.string):
                wrong.append(f"{po.name}: {m.id!r} -> {m.string!r}")
    assert not wrong, "going-deeper headings that would not collapse in Chinese:\n" + "\n".join(wrong)

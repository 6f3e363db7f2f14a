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

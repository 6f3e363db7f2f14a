"""Structure of the book's notebooks and table of contents.

* Every notebook under book/ starts with the setup cell, exactly
  ``recbook.notebook_setup.setup_cell_source()``, tagged ``remove-cell``. Run where recbook is
  importable it starts no process; where it is not (Colab, a bare Binder) it pip-installs recbook
  from ``recbook.REPOSITORY_URL``. Both are checked by executing the notebook's own cell with
  ``subprocess.check_call`` replaced.
* Notebooks are stored without outputs (the build executes them).
* A code cell with an ``assert`` is a test, not text for the reader: it is tagged ``remove-cell``.
* Every file named in _toc.yml exists, and every notebook under book/ is named in _toc.yml.
"""
from __future__ import annotations

import ast
import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import recbook
from recbook.notebook_setup import SETUP_TAGS, setup_cell_source

ROOT = Path(__file__).resolve().parents[1]
BOOK = ROOT / "book"
TOC = ROOT / "_toc.yml"
SOURCE_SUFFIXES = (".md", ".ipynb", ".rst")
FIX_SETUP = "fix with: python -m recbook.notebook_setup book/*.ipynb"
FIX_OUTPUTS = "fix with: jupyter nbconvert --clear-output --inplace"


def _notebooks() -> list[Path]:
    return sorted(p for p in BOOK.rglob("*.ipynb")
                  if ".ipynb_checkpoints" not in p.parts and "_build" not in p.parts)


NOTEBOOKS = _notebooks()
ids = [p.relative_to(ROOT).as_posix() for p in NOTEBOOKS]


def _load(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def _source(cell: dict) -> str:
    source = cell.get("source", "")
    return "".join(source) if isinstance(source, list) else source


def _tags(cell: dict) -> list[str]:
    return list(cell.get("metadata", {}).get("tags", []))


def _run_setup_cell(source: str, monkeypatch, *, installed: bool) -> list:
    """Execute the setup cell; return the argument lists that reached subprocess.check_call."""
    calls = []

    def fake_check_call(args, *a, **k):
        if installed:
            raise AssertionError(f"the setup cell started a process although recbook is "
                                 f"importable: {args!r}")
        calls.append(list(args))
        return 0

    monkeypatch.setattr(subprocess, "check_call", fake_check_call)
    if not installed:
        real_find_spec = importlib.util.find_spec
        monkeypatch.setattr(importlib.util, "find_spec",
                            lambda name, *a, **k: None if name == "recbook"
                            else real_find_spec(name, *a, **k))
    exec(compile(source, "<setup cell>", "exec"), {"__name__": "__setup_cell__"})
    return calls


# ---------------------------------------------------------------------------------------------
# The setup cell itself (runs even before any notebook exists)
# ---------------------------------------------------------------------------------------------
def test_setup_cell_installs_from_the_repository_only_when_missing(monkeypatch):
    source = setup_cell_source()
    assert _run_setup_cell(source, monkeypatch, installed=True) == []
    calls = _run_setup_cell(source, monkeypatch, installed=False)
    assert len(calls) == 1, calls
    args = calls[0]
    assert args[:4] == [sys.executable, "-m", "pip", "install"], args
    assert any(recbook.REPOSITORY_URL in arg for arg in args), (
        f"the setup cell does not install from recbook.REPOSITORY_URL "
        f"({recbook.REPOSITORY_URL}): {args}")


# ---------------------------------------------------------------------------------------------
# Every notebook
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("path", NOTEBOOKS, ids=ids)
def test_first_cell_is_the_setup_cell(path):
    cells = _load(path)["cells"]
    assert cells, f"{path.name} has no cells"
    first = cells[0]
    assert first["cell_type"] == "code", f"{path.name}: the first cell is not a code cell; {FIX_SETUP}"
    assert _source(first) == setup_cell_source(), (
        f"{path.name}: the first cell is not recbook.notebook_setup.setup_cell_source(); {FIX_SETUP}")
    missing = [tag for tag in SETUP_TAGS if tag not in _tags(first)]
    assert not missing, f"{path.name}: the setup cell lacks the tags {missing}; {FIX_SETUP}"
    assert "remove-cell" in _tags(first)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=ids)
def test_setup_cell_runs_no_process_when_recbook_is_importable(path, monkeypatch):
    source = _source(_load(path)["cells"][0])
    assert importlib.util.find_spec("recbook") is not None
    assert _run_setup_cell(source, monkeypatch, installed=True) == []


@pytest.mark.parametrize("path", NOTEBOOKS, ids=ids)
def test_setup_cell_pip_installs_the_repository_when_recbook_is_missing(path, monkeypatch):
    source = _source(_load(path)["cells"][0])
    calls = _run_setup_cell(source, monkeypatch, installed=False)
    assert len(calls) == 1, f"{path.name}: expected one pip call, got {calls}"
    args = calls[0]
    assert args[:4] == [sys.executable, "-m", "pip", "install"], args
    assert any(recbook.REPOSITORY_URL in arg for arg in args), (
        f"{path.name}: the setup cell does not install from recbook.REPOSITORY_URL: {args}")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=ids)
def test_stored_without_outputs(path):
    dirty = [i for i, cell in enumerate(_load(path)["cells"]) if cell["cell_type"] == "code"
             and (cell.get("outputs") or cell.get("execution_count") is not None)]
    assert not dirty, f"{path.name}: code cells {dirty} have outputs or execution counts; {FIX_OUTPUTS}"


def _has_assert(source: str) -> bool:
    # IPython magics and shell escapes are not Python; blank them out before parsing.
    python = "\n".join("" if line.lstrip().startswith(("%", "!")) else line
                       for line in source.splitlines())
    try:
        return any(isinstance(node, ast.Assert) for node in ast.walk(ast.parse(python)))
    except SyntaxError:
        return re.search(r"^\s*assert\b", source, flags=re.MULTILINE) is not None


@pytest.mark.parametrize("path", NOTEBOOKS, ids=ids)
def test_assert_cells_are_removed_from_the_page(path):
    untagged = [i for i, cell in enumerate(_load(path)["cells"])
                if cell["cell_type"] == "code" and _has_assert(_source(cell))
                and "remove-cell" not in _tags(cell)]
    assert not untagged, (f"{path.name}: code cells {untagged} contain assert but are not "
                          f"tagged remove-cell")


# ---------------------------------------------------------------------------------------------
# Table of contents
# ---------------------------------------------------------------------------------------------
def _toc_files(node) -> list[str]:
    files = []
    if isinstance(node, dict):
        for key in ("root", "file"):
            if isinstance(node.get(key), str):
                files.append(node[key])
        for value in node.values():
            if isinstance(value, (dict, list)):
                files += _toc_files(value)
    elif isinstance(node, list):
        for item in node:
            files += _toc_files(item)
    return files


def _resolve(entry: str) -> Path | None:
    path = ROOT / entry
    if path.suffix in SOURCE_SUFFIXES:
        return path if path.is_file() else None
    return next((p for s in SOURCE_SUFFIXES if (p := path.with_name(path.name + s)).is_file()),
                None)


def test_every_toc_entry_exists():
    entries = _toc_files(yaml.safe_load(TOC.read_text(encoding="utf-8")))
    assert entries, "_toc.yml names no files"
    missing = [entry for entry in entries if _resolve(entry) is None]
    assert not missing, f"_toc.yml names files that do not exist: {missing}"


def test_every_notebook_is_in_the_toc():
    entries = _toc_files(yaml.safe_load(TOC.read_text(encoding="utf-8")))
    listed = {p.resolve() for entry in entries if (p := _resolve(entry)) is not None}
    orphans = [p.relative_to(ROOT).as_posix() for p in NOTEBOOKS if p.resolve() not in listed]
    assert not orphans, f"notebooks missing from _toc.yml (the build skips them): {orphans}"

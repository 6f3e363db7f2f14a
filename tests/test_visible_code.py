"""The code a reader sees runs when copied, in order, into a fresh kernel.

Visible code is every code cell not tagged ``remove-cell`` or ``remove-input`` (``hide-input``
code is one click away, so it counts). A name that only a hidden cell defines (``tables`` built
in a hidden check, then used by a visible solution) is a NameError for the reader.

Two checks, per notebook:

- ``test_visible_code_defines_what_it_uses`` (fast, always runs): reads the visible cells with
  Python's ``symtable`` and fails on a name used before any visible cell defines it;
- ``test_visible_code_runs_alone`` (runs the notebook): executes the setup cell and the visible
  cells alone in a fresh kernel and fails with the notebook, the cell id and the error. It takes
  as long as the notebook (10-60 s each), so it runs only when asked for:
  ``pytest tests/test_visible_code.py -m visible_code``.
"""
from __future__ import annotations

import builtins
import json
import symtable
import time

import pytest

from book_pages import ROOT, notebook_cells, notebooks

SETUP_CELL = "recbook-setup"
IPYTHON_NAMES = {"display", "get_ipython", "In", "Out", "exit", "quit", "__file__"}


def visible_cells(path):
    """The setup cell (the only hidden cell a reader runs too: it installs recbook) and the
    visible code cells, in order."""
    return [c for c in notebook_cells(path) if c.kind == "code" and (c.id == SETUP_CELL or c.visible_code)]


def _python(source: str) -> str:
    from IPython.core.inputtransformer2 import TransformerManager

    return TransformerManager().transform_cell(source)      # %magics and !commands as Python


def _free_names(table: symtable.SymbolTable, top: bool = True) -> set[str]:
    """Names a cell reads from the notebook's global namespace without defining them itself."""
    free = set()
    for sym in table.get_symbols():
        if not sym.is_referenced():
            continue
        if top and not (sym.is_assigned() or sym.is_imported() or sym.is_namespace()):
            free.add(sym.get_name())
        elif not top and sym.is_global() and not sym.is_declared_global():
            free.add(sym.get_name())
    for child in table.get_children():
        free |= _free_names(child, top=False)
    return free


def _defined_names(table: symtable.SymbolTable) -> set[str]:
    return {s.get_name() for s in table.get_symbols()
            if s.is_assigned() or s.is_imported() or s.is_namespace()}


def _name(path) -> str:
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else path.name


def undefined_names(path) -> list[str]:
    known = set(dir(builtins)) | IPYTHON_NAMES
    problems = []
    for cell in visible_cells(path):
        table = symtable.symtable(_python(cell.source), f"{path.name}:{cell.id}", "exec")
        defined_here = _defined_names(table)
        # Functions defined in the cell may read names that the cell defines further down.
        missing = sorted(_free_names(table) - known - defined_here)
        if missing:
            problems.append(f"{_name(path)} cell {cell.id}: {', '.join(missing)} "
                            "defined only in hidden cells (or nowhere before this cell)")
        known |= defined_here
    return problems


NOTEBOOKS = [pytest.param(p, id=p.stem) for p in notebooks()]


@pytest.mark.parametrize("path", NOTEBOOKS)
def test_visible_code_defines_what_it_uses(path):
    problems = undefined_names(path)
    assert not problems, "\n".join(problems)


def test_the_static_check_sees_a_name_from_a_hidden_cell(tmp_path):
    cells = [
        {"id": SETUP_CELL, "cell_type": "code", "metadata": {"tags": ["remove-cell"]},
         "source": "import sys", "outputs": [], "execution_count": None},
        {"id": "hidden", "cell_type": "code", "metadata": {"tags": ["remove-cell"]},
         "source": "tables = {'a': 1}", "outputs": [], "execution_count": None},
        {"id": "shown", "cell_type": "code", "metadata": {"tags": ["hide-input"]},
         "source": "def f(x):\n    return [x + y for y in tables] + [z]\nz = 2\n%timeit f(1)",
         "outputs": [], "execution_count": None},
    ]
    nb = {"cells": cells, "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    path = tmp_path / "probe.ipynb"
    path.write_text(json.dumps(nb), encoding="utf-8")
    problems = undefined_names(path)
    assert problems == ["probe.ipynb cell shown: tables defined only in hidden cells "
                        "(or nowhere before this cell)"]


def _selected(config) -> bool:
    return "visible_code" in (config.getoption("-m") or "")


@pytest.mark.visible_code
@pytest.mark.parametrize("path", NOTEBOOKS)
def test_visible_code_runs_alone(path, request):
    if not _selected(request.config):
        pytest.skip("executes the notebook: run with -m visible_code")
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    cells = visible_cells(path)
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(c.source, id=c.id) for c in cells]
    client = NotebookClient(nb, timeout=300, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}})
    start = time.perf_counter()
    try:
        client.execute()
        failure = None
    except CellExecutionError as err:
        failure = err
    if failure is not None:
        failed = next((c for c in nb.cells if any(o.get("output_type") == "error" for o in c.get("outputs", []))),
                      None)
        error = next((o for o in failed.outputs if o.get("output_type") == "error"), {}) if failed else {}
        pytest.fail(f"{_name(path)} cell {failed.id if failed is not None else '?'}, run with only the setup "
                    f"cell before the visible cells: {error.get('ename', type(failure).__name__)}: "
                    f"{error.get('evalue', failure)}", pytrace=False)
    print(f"{path.name}: visible cells ran in {time.perf_counter() - start:.0f} s")

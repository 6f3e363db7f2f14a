"""Matplotlib figures in a notebook come out at twice the resolution, displayed at their size
(``recbook.plots.sharp_inline_figures``, called by ``import recbook`` in a kernel)."""
from __future__ import annotations

import base64
import struct

import nbformat
import pytest
from nbclient import NotebookClient

from book_pages import ROOT
from recbook import plots


def _png_size(data: str) -> tuple[int, int]:
    raw = base64.b64decode(data)
    return struct.unpack(">II", raw[16:24])


def _run(source: str) -> dict:
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(source)])
    # The kernel inherits PYTHONPATH, which names this checkout (as for every notebook test).
    NotebookClient(nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(ROOT)}}).execute()
    return next(o for o in nb.cells[0].outputs if "image/png" in o.get("data", {}))


FIGURE = "import matplotlib.pyplot as plt\nplt.figure(figsize=(4, 2))\nplt.plot([0, 1])\n"


@pytest.mark.parametrize("first", ["import recbook\n", "import recbook.data\n"])
def test_a_notebook_figure_is_a_2x_png_shown_at_its_size(first):
    out = _run(first + FIGURE)
    width, height = _png_size(out["data"]["image/png"])
    shown = out["metadata"]["image/png"]
    assert (width // 2, height // 2) == (shown["width"], shown["height"]), (width, height, shown)


def test_without_recbook_the_figure_is_1x():  # the check above can fail
    out = _run(FIGURE)
    assert "width" not in out.get("metadata", {}).get("image/png", {})


def test_outside_a_kernel_nothing_changes_and_bad_formats_are_named():
    assert plots.sharp_inline_figures() is False
    with pytest.raises(ValueError, match="fmt"):
        plots.sharp_inline_figures("gif")

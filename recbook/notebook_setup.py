"""The first cell of every notebook: install recbook on Colab or Binder when it is missing.

The repository URL lives in one place, :data:`recbook.REPOSITORY_URL`; every notebook carries a
rendered copy of :func:`setup_cell_source` (a test checks they agree). On a machine where recbook
is installed (``pip install -e .``, as the Makefile does) the cell starts no process. On Colab it
installs recbook from the repository with pip; recbook's requirements do not pin torch, so the
torch that Colab ships is kept. When pip fails, the cell raises one short error (Jupyter shows
its message without a traceback) that ends with the remedy for a local checkout and for Colab.

``python -m recbook.notebook_setup book/*.ipynb`` rewrites the setup cell of the given notebooks.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from . import REPOSITORY_URL

SETUP_TAGS = ["remove-cell"]

_TEMPLATE = '''\
# Setup: on Colab or Binder, install recbook from its repository when it is not importable.
import importlib.util, subprocess, sys
if importlib.util.find_spec("recbook") is None:
    try:
        subprocess.check_call([sys.executable, "-m", "pip", "install", "-q",
                               "recbook @ git+{url}"])
    except (OSError, subprocess.CalledProcessError) as err:
        class RecbookSetupError(RuntimeError):
            def _render_traceback_(self):  # Jupyter shows this message alone, no traceback
                return [f"RecbookSetupError: {{self}}"]
        why = (f"pip exited with status {{err.returncode}}"
               if isinstance(err, subprocess.CalledProcessError) else str(err))
        raise RecbookSetupError(
            f"could not install recbook ({{why}}). To fix it: in a local checkout, run "
            "`pip install -e .` in the repository folder and restart the kernel; on Colab or "
            "Binder, check that the notebook has internet access, run "
            "`!pip install 'recbook @ git+{url}'` in a cell, "
            "then run this cell again.") from None'''


def setup_cell_source(url: str = REPOSITORY_URL) -> str:
    return _TEMPLATE.format(url=url)


def setup_cell() -> dict:
    """The setup cell as an nbformat v4 code-cell dict."""
    # The source as a list of lines, as Jupyter itself stores it (smaller diffs).
    return {"cell_type": "code", "execution_count": None, "id": "recbook-setup",
            "metadata": {"tags": list(SETUP_TAGS)}, "outputs": [],
            "source": setup_cell_source().splitlines(keepends=True)}


def write_setup_cell(path: str | Path) -> bool:
    """Make the first cell of the notebook at ``path`` the setup cell. Returns True if changed."""
    path = Path(path)
    nb = json.loads(path.read_text(encoding="utf-8"))
    cells = nb.get("cells", [])
    first = cells[0] if cells else None
    cell = setup_cell()
    if first is not None and first.get("id") == "recbook-setup":
        same_source = "".join(first.get("source", "")) == "".join(cell["source"])
        if same_source and first.get("metadata", {}).get("tags") == SETUP_TAGS:
            return False
        cells[0] = cell
    else:
        cells.insert(0, cell)
    nb["cells"] = cells
    path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return True


if __name__ == "__main__":  # pragma: no cover - a maintenance command
    changed = [p for p in sys.argv[1:] if write_setup_cell(p)]
    print(f"setup cell rewritten in {len(changed)} of {len(sys.argv) - 1} notebook(s)")

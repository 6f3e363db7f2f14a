"""The book's pages as the checks of its text and code see them: every notebook cell and every
Markdown page under ``book/``, with where it comes from (for clear failure messages)."""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BOOK = ROOT / "book"

HIDDEN_CODE_TAGS = {"remove-cell", "remove-input"}
"""Code cells whose code the reader never sees (``hide-input`` code is one click away: visible)."""


@dataclass(frozen=True)
class Cell:
    path: Path          # the notebook or Markdown page
    id: str             # the cell id ("-" for a Markdown page)
    kind: str           # "markdown" or "code"
    tags: tuple
    source: str

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)} cell {self.id}"

    @property
    def visible_code(self) -> bool:
        return self.kind == "code" and not HIDDEN_CODE_TAGS & set(self.tags)

    def line_of(self, offset: int) -> int:
        return self.source.count("\n", 0, offset) + 1


def notebooks() -> list[Path]:
    return sorted(BOOK.glob("*.ipynb"))


def markdown_pages() -> list[Path]:
    return sorted(BOOK.glob("*.md"))


def notebook_cells(path: Path) -> list[Cell]:
    nb = json.loads(path.read_text(encoding="utf-8"))
    return [Cell(path, c.get("id", str(i)), c["cell_type"], tuple(c.get("metadata", {}).get("tags", [])),
                 "".join(c["source"]))
            for i, c in enumerate(nb["cells"])]


def all_cells() -> list[Cell]:
    cells = [c for path in notebooks() for c in notebook_cells(path)]
    cells += [Cell(p, "-", "markdown", (), p.read_text(encoding="utf-8")) for p in markdown_pages()]
    return cells


def prose_cells() -> list[Cell]:
    """What the reader reads: Markdown cells and pages."""
    return [c for c in all_cells() if c.kind == "markdown"]


FENCE = re.compile(r"^(`{3,}|~{3,})(.*)$", re.M)


def without_code_blocks(text: str) -> str:
    """``text`` with fenced code blocks (```python ...```) blanked out, line numbers kept; the
    fences of directives ({exercise}, {solution-start}, ...) and their content are kept."""
    out, fence = [], None
    for line in text.split("\n"):
        m = FENCE.match(line.strip())
        if fence is None and m and not m.group(2).strip().startswith("{"):
            fence = m.group(1)
            out.append("")
            continue
        if fence is not None:
            if line.strip() == fence:
                fence = None
            out.append("")
            continue
        out.append(line)
    return "\n".join(out)

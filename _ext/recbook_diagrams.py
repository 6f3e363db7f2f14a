"""Diagrams of the book's Markdown pages, drawn with matplotlib when the site is built.

``{recbook-diagram} NAME`` (with an ``:alt:`` text and an optional caption as its content) calls
``DIAGRAMS[NAME]()``, writes the SVG it returns to ``_build/diagrams/NAME.svg`` (only when it
changed) and shows it as a figure. The drawing code is the diagram's source: change it here and
rebuild. Notebook chapters draw their diagrams with a function of their own ``recbook.chapters``
module instead, so that the figure also appears on Colab and Binder.
"""
from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

from docutils import nodes
from docutils.parsers.rst import directives
from sphinx.application import Sphinx
from sphinx.util.docutils import SphinxDirective

OUT = Path("_build") / "diagrams"  # relative to the source folder (the repository root)

# Colours of the book's figures (recbook.plots): blue for retrieval, orange for ranking.
BLUE, ORANGE, GREY, INK = "#4C72B0", "#DD8452", "#8C8C8C", "#222222"


def _svg(fig) -> str:
    import matplotlib.pyplot as plt

    buf = io.StringIO()
    # Text stays text (smaller, selectable, sharp at any zoom); the "metadata" line would put a
    # date in the file and make every build differ.
    with plt.rc_context({"svg.fonttype": "none", "svg.hashsalt": "recbook"}):
        fig.savefig(buf, format="svg", bbox_inches="tight", metadata={"Date": None})
    plt.close(fig)
    return buf.getvalue()


def pipeline() -> str:
    """The two stages of a recommender, with the book's chapters placed on them."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import FancyBboxPatch, Polygon

    fig, ax = plt.subplots(figsize=(9.6, 4.6))
    ax.set_xlim(0, 100)
    ax.set_ylim(0, 50)
    ax.axis("off")

    # The funnel: each stage keeps fewer items than it receives.
    stages = [  # x0, x1, half-height at x0, at x1, colour, title, items
        (0, 20, 11, 11, GREY, "catalogue", "all items\n(10⁵–10⁹)"),
        (22, 48, 11, 6, BLUE, "retrieval", "a few hundred\ncandidates"),
        (50, 76, 6, 3.5, ORANGE, "ranking", "scored and\nsorted"),
        (78, 96, 3.5, 3.5, GREY, "shown", "top 10"),
    ]
    mid = 33
    for x0, x1, h0, h1, colour, title, items in stages:
        ax.add_patch(Polygon([(x0, mid - h0), (x1, mid - h1), (x1, mid + h1), (x0, mid + h0)],
                             closed=True, facecolor=colour, alpha=0.22, edgecolor=colour, lw=1.5))
        ax.text((x0 + x1) / 2, mid + max(h0, h1) + 1.2, title, ha="center", va="bottom",
                fontsize=12, fontweight="bold", color=INK)
        ax.text((x0 + x1) / 2, mid, items, ha="center", va="center", fontsize=9, color=INK)
    for x in (20.4, 48.4, 76.4):
        ax.annotate("", xy=(x + 1.4, mid), xytext=(x, mid),
                    arrowprops=dict(arrowstyle="-|>", color=INK, lw=1.2))

    # What each stage needs, and the chapters that teach it.
    notes = [
        (35, BLUE, "cheap per item:\nuser vector · item vector,\nnearest-neighbour search",
         ["Two-tower retrieval", "GRU4Rec (next item)"]),
        (63, ORANGE, "rich per item:\nmany features and their\ninteractions, CTR",
         ["Factorization machines", "Wide & Deep", "DeepFM", "DIN"]),
    ]
    for x, colour, need, chapters in notes:
        ax.text(x, 20.5, need, ha="center", va="top", fontsize=8.5, color="0.25", style="italic")
        for i, name in enumerate(chapters):
            y = 10.6 - 3.1 * i
            ax.add_patch(FancyBboxPatch((x - 11, y - 1.25), 22, 2.5, boxstyle="round,pad=0.25",
                                        facecolor="white", edgecolor=colour, lw=1.2))
            ax.text(x, y, name, ha="center", va="center", fontsize=9, color=INK)
    ax.text(10, 20.5, "Data chapter:\nCTR rows → ranking,\nsequences → retrieval",
            ha="center", va="top", fontsize=8.5, color="0.25")
    ax.text(87, 20.5, "Leaderboard:\nevery model,\none protocol each", ha="center", va="top",
            fontsize=8.5, color="0.25")
    return _svg(fig)


DIAGRAMS: dict[str, Callable[[], str]] = {"pipeline": pipeline}


def write_diagram(name: str, srcdir: Path) -> Path:
    """Draw diagram ``name`` into ``srcdir/_build/diagrams/NAME.svg``; return the file's path."""
    if name not in DIAGRAMS:
        raise ValueError(f"recbook-diagram: unknown diagram {name!r}; expected one of {sorted(DIAGRAMS)}")
    path = Path(srcdir) / OUT / f"{name}.svg"
    svg = DIAGRAMS[name]()
    if not path.is_file() or path.read_text(encoding="utf-8") != svg:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(svg, encoding="utf-8")
    return path


class DiagramDirective(SphinxDirective):
    """``{recbook-diagram} NAME`` with ``:alt:`` (required) and an optional caption."""

    required_arguments = 1
    has_content = True
    option_spec = {"alt": directives.unchanged_required, "width": directives.length_or_percentage_or_unitless}

    def run(self):
        name = self.arguments[0]
        if "alt" not in self.options:
            raise self.error("recbook-diagram: give the diagram an :alt: text")
        try:
            write_diagram(name, Path(self.env.srcdir))
        except ValueError as err:
            raise self.error(str(err)) from None
        self.env.note_dependency(__file__)
        image = nodes.image(uri=f"/{OUT.as_posix()}/{name}.svg", alt=self.options["alt"],
                            width=self.options.get("width", "100%"))
        figure = nodes.figure("", image, classes=["recbook-diagram"])
        if self.content:
            caption = nodes.caption()
            inline, messages = self.state.inline_text(" ".join(self.content), self.lineno)
            caption.extend(inline)
            figure += caption
            figure.extend(messages)
        return [figure]


def setup(app: Sphinx) -> None:
    app.add_directive("recbook-diagram", DiagramDirective)

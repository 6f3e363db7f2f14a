"""Fonts for figures with Chinese labels (the Chinese edition), and missing glyphs as errors.

A figure drawn for the Chinese edition needs a font with every glyph it uses. WenQuanYi Micro
Hei (Debian ``fonts-wqy-microhei``, 5 MB) has the Han characters, the full-width punctuation and
U+2212 MINUS SIGN, which matplotlib writes on negative ticks; WenQuanYi Zen Hei has no U+2212,
so its negative ticks come out as empty boxes, and the only sign is a warning that the book's
build hides (``stderr_output: remove-warn``). So:

- :data:`FAMILIES` puts DejaVu Sans (matplotlib's default: English figures look as before) first
  and WenQuanYi Micro Hei after it; matplotlib falls back glyph by glyph along the list;
- :func:`strict_glyphs` turns matplotlib's "Glyph ... missing from font(s)" warning into an
  error while a figure is drawn.

    with strict_glyphs(), matplotlib.rc_context({"font.family": FAMILIES}):
        fig = draw_something_in_chinese()
        fig.canvas.draw()
"""
from __future__ import annotations

import contextlib
import subprocess
import warnings

CJK_FONT = "WenQuanYi Micro Hei"
DEBIAN_PACKAGE = "fonts-wqy-microhei"
FAMILIES = ["DejaVu Sans", CJK_FONT]

MISSING_GLYPH = r"Glyph \d+ .* missing from (?:current )?font"


@contextlib.contextmanager
def strict_glyphs():
    """Within the block, a glyph missing from every font of a figure is an error."""
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=MISSING_GLYPH, category=UserWarning)
        yield


def register(family: str = CJK_FONT) -> str | None:
    """Make matplotlib know ``family`` if fontconfig has it (matplotlib's font list is a cache
    made when it first ran, which misses a font installed later). Returns the file, or None."""
    from matplotlib import font_manager

    if any(f.name == family for f in font_manager.fontManager.ttflist):
        return next(f.fname for f in font_manager.fontManager.ttflist if f.name == family)
    try:
        path = subprocess.run(["fc-match", "-f", "%{file}", f"{family}:style=Regular"],
                              capture_output=True, text=True, check=True).stdout.strip()
        found = subprocess.run(["fc-match", "-f", "%{family}", f"{family}:style=Regular"],
                               capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    if family not in found.split(",") or not path:
        return None
    font_manager.fontManager.addfont(path)
    return path

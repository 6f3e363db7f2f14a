"""Figures with Chinese labels: the font has every glyph, and a missing glyph is an error.

matplotlib only warns when a glyph is missing (and the book's build hides warnings), so the
Chinese edition would show empty boxes without failing. These tests draw a figure the way a
Chinese figure of the book is drawn (``recbook.i18n``): Chinese title and axis labels, a negative
tick (U+2212 MINUS SIGN), full-width punctuation.
"""
from __future__ import annotations

import matplotlib
import pytest

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from recbook import i18n as fonts  # noqa: E402


def _draw(families) -> None:
    with matplotlib.rc_context({"font.family": families, "axes.unicode_minus": True}):
        fig, ax = plt.subplots(figsize=(4, 3))
        try:
            ax.plot([-2.0, -1.0, 0.0, 1.0], label="验证集 AUC")
            ax.set_title("嵌入向量的余弦（温度系数 τ）")
            ax.set_xlabel("训练轮数")
            ax.set_ylabel("对数几率 −1 到 1")
            ax.legend()
            fig.canvas.draw()
        finally:
            plt.close(fig)


@pytest.fixture(scope="module")
def cjk_font():
    path = fonts.register()
    if path is None:
        pytest.skip(f"{fonts.CJK_FONT} is not installed (apt-get install {fonts.DEBIAN_PACKAGE})")
    return path


def test_chinese_figures_have_every_glyph_with_the_book_fonts(cjk_font):
    with fonts.strict_glyphs():
        _draw(fonts.FAMILIES)


def test_a_missing_glyph_is_an_error():
    with fonts.strict_glyphs(), pytest.raises(UserWarning, match="missing from font"):
        _draw(["DejaVu Sans"])                         # no Han characters in DejaVu Sans


def test_a_cjk_font_without_the_minus_sign_fails():
    """WenQuanYi Zen Hei has the Han characters but not U+2212: negative ticks would be boxes."""
    if fonts.register("WenQuanYi Zen Hei") is None:
        pytest.skip("WenQuanYi Zen Hei is not installed")
    with fonts.strict_glyphs(), pytest.raises(UserWarning, match="8722"):
        _draw(["WenQuanYi Zen Hei"])

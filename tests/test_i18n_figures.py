"""The Chinese labels of figures and charts drawn by code (recbook.i18n).

A figure is drawn a second time with its labels looked up in the catalogue (numbers held out of
the key); what has no entry, or a glyph no font has, is recorded so that the build fails on it.
A chart carries the Chinese of its strings as edits the Chinese page applies.
"""
from __future__ import annotations

import base64
import json
import sys
from pathlib import Path

import altair as alt
import matplotlib
import pytest

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from recbook import i18n, widgets  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]

TABLE = {
    "valid AUC {0}": "验证集 AUC {0}",
    "epoch": "训练轮数",
    "logit": "对数几率",
    "FM": "FM",
    "learned by the FM": "FM 学到的",
    "angle between them: ": "两者夹角：",
    "angle of v₁ (°)": "v₁ 的角度（°）",
    "Share of ratings": "评分占比",
}


@pytest.fixture(scope="module")
def cjk_font():
    if i18n.register() is None:
        pytest.skip(f"{i18n.CJK_FONT} is not installed (apt-get install {i18n.DEBIAN_PACKAGE})")


def _figure(title="valid AUC 0.7100"):
    fig, ax = plt.subplots(figsize=(4, 3))
    ax.plot([-2.0, -1.0, 0.5], label="FM")
    ax.set_title(title)
    ax.set_xlabel("epoch")
    ax.set_ylabel("logit")
    ax.text(0, 0, "learned by the FM")
    ax.set_xticks([0, 1, 2], ["Toy Story", "Fargo", "epoch"])  # data, except one with an entry
    ax.legend()
    return fig, ax


def _png_text(png: str) -> bytes:
    return base64.b64decode(png)


def test_label_keys_hold_numbers_out_and_keep_names():
    key, numbers = i18n.label_key("valid AUC 0.7100, MRR@20 of GRU4Rec at -3 (1e-3, 256-128)")
    assert key == "valid AUC {0}, MRR@20 of GRU4Rec at {1} ({2}, {3}-{4})"
    assert numbers == ["0.7100", "-3", "1e-3", "256", "128"]
    assert i18n.translate("valid AUC 0.7100", TABLE) == "验证集 AUC 0.7100"
    assert i18n.translate("valid AUC 0.5", TABLE) == "验证集 AUC 0.5"
    assert i18n.translate("test AUC 0.5", TABLE) is None
    assert i18n.translate("epoch", TABLE) == "训练轮数"
    assert not i18n.needs_translation("$\\langle v_i, v_j \\rangle$ = 0.5")
    assert i18n.needs_translation("pairs $i < j$")


def test_a_figure_is_drawn_in_chinese_and_left_as_it_was(cjk_font):
    fig, ax = _figure()
    try:
        english = i18n.zh_png(fig, table={})  # nothing translated: the English drawing
        png, meta = i18n.zh_png(fig, table=TABLE)
        assert meta["recbook"]["untranslated"] == []
        assert meta["recbook"]["missing_glyphs"] == []      # Han characters and U+2212 on ticks
        assert {"valid AUC {0}", "epoch", "logit", "learned by the FM"} <= set(meta["recbook"]["used"])
        assert meta["width"] > 0 and meta["height"] > 0
        assert _png_text(png)[:8] == b"\x89PNG\r\n\x1a\n"
        assert png != english[0]
        assert ax.get_title() == "valid AUC 0.7100" and ax.get_xlabel() == "epoch"
        assert ax.get_legend().get_texts()[0].get_text() == "FM"
        assert [t.get_text() for t in ax.get_xticklabels()] == ["Toy Story", "Fargo", "epoch"]
    finally:
        plt.close(fig)


def test_a_label_without_an_entry_is_recorded_not_dropped(cjk_font):
    fig, _ = _figure(title="test AUC 0.6900")
    try:
        _, meta = i18n.zh_png(fig, table=TABLE)
    finally:
        plt.close(fig)
    assert meta["recbook"]["untranslated"] == ["test AUC {0}"]   # tick labels (data) are not required


def test_chinese_around_maths_and_bold_draw_quietly(cjk_font, capfd):
    """mathtext sets the text around $...$ in one font only, and WenQuanYi Micro Hei has no bold:
    neither may leave a missing glyph or a message on stderr (the build fails on stderr)."""
    fig, ax = plt.subplots(figsize=(4, 3))
    ax.set_title("bias $b_u$", fontweight="bold")
    ax.text(0.1, 0.5, "vector $\\mathbf{p}_u$ ($k$)")
    try:
        _, meta = i18n.zh_png(fig, table={"bias $b_u$": "偏置 $b_u$", "vector $\\mathbf{p}_u$ ($k$)":
                                          "向量 $\\mathbf{p}_u$（$k$ 维）"})
    finally:
        plt.close(fig)
    assert meta["recbook"]["missing_glyphs"] == [] and meta["recbook"]["untranslated"] == []
    assert capfd.readouterr().err == ""


def test_a_glyph_no_font_has_is_recorded(cjk_font):
    fig, _ = _figure()
    try:
        _, meta = i18n.zh_png(fig, table={**TABLE, "epoch": "训练轮数 \U00020000"})  # CJK extension B
    finally:
        plt.close(fig)
    assert meta["recbook"]["missing_glyphs"] and "missing from" in meta["recbook"]["missing_glyphs"][0]
    fig, ax = plt.subplots()
    ax.set_title("bias $b_u$")
    try:  # in maths, matplotlib logs instead of warning: recorded too
        _, meta = i18n.zh_png(fig, table={"bias $b_u$": "偏置 \U00020000 $b_u$"})
    finally:
        plt.close(fig)
    assert any("does not have a glyph" in m for m in meta["recbook"]["missing_glyphs"])


def _chart():
    angle = widgets.slider("angle", 0, 360, 5, 30, "angle of v₁ (°)")
    pick = widgets.dropdown("pick", [1, 2], labels=["Toy Story", "Fargo"], label="movie")
    data = alt.Data(values=[{"v": "a", "share": 0.5}])
    text = alt.Chart(data).transform_calculate(
        t="'angle between them: ' + format(angle, '.0f')",
        kind="datum.v == 'a' ? 'first' : 'second'",
    ).mark_text().encode(text="t:N")
    bars = alt.Chart(data).mark_bar().encode(x=alt.X("share:Q", title="Share of ratings"))
    label = alt.Chart(data).mark_text().encode(text=alt.value("epoch"))
    return widgets.browser_chart(alt.layer(text, bars, label), params=[angle, pick],
                                 checks=[{"set": {"angle": 30}, "texts": ["angle between them: 30"]}])


def test_a_chart_carries_the_chinese_of_its_strings(monkeypatch):
    monkeypatch.setattr(i18n, "catalogue", lambda: TABLE)
    spec = _chart().spec
    record = spec["usermeta"]["recbook"]["i18n"]
    # the dropdown's label and the branches of a ?: have no entry; the compared 'a' needs none
    assert record["untranslated"] == ["first", "movie", "second"]
    chinese = json.loads(json.dumps(spec))
    for path, text in record["zh"]:
        node = chinese
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = text
    flat = json.dumps(chinese, ensure_ascii=False)
    assert "'两者夹角：' + format(angle, '.0f')" in flat           # a shown literal, translated
    assert "datum.v == 'a' ? 'first' : 'second'" in flat          # compared: kept; no entry: kept
    assert '"训练轮数"' in flat                                     # a constant text of a mark
    assert '"评分占比"' in flat and '"v₁ 的角度（°） "' in flat       # the label's own space kept
    assert '"Toy Story"' in flat                                  # option labels are data
    assert spec["usermeta"]["recbook"]["checks"] == [{"set": {"angle": 30}, "texts": ["angle between them: 30"]}]
    assert record["checks"] == [["两者夹角：30"]]                 # the check's texts in Chinese
    pairs = {"whole": {"Share of ratings": "评分占比"}, "parts": {"new user: its id is unknown": "新用户：id 未知"}}
    assert i18n.translate_texts(["new user", "Share of ratings", "+0.25"], pairs) == ["新用户：id 未知", "评分占比", "+0.25"]


def test_the_figure_check_reads_figures_and_charts(tmp_path, monkeypatch):
    sys.path.insert(0, str(ROOT / "_ext"))
    import recbook_i18n_tool as tool

    monkeypatch.setattr(i18n, "catalogue", lambda: TABLE)
    chart_html = "<div></div><script>var spec = " + json.dumps(_chart().spec) + ";</script>"
    outputs = [
        {"output_type": "display_data", "data": {"image/png": "AAAA", i18n.ZH_PNG: "AAAA"},
         "metadata": {i18n.ZH_PNG: {"width": 1, "height": 1, "recbook": {
             "used": ["epoch"], "untranslated": ["test AUC {0}"], "missing_glyphs": []}}}},
        {"output_type": "display_data", "data": {"image/png": "AAAA"}, "metadata": {}},
        {"output_type": "display_data", "data": {"text/html": chart_html}, "metadata": {}},
    ]
    executed = tmp_path / "executed" / "book"
    executed.mkdir(parents=True)
    (executed / "page.ipynb").write_text(json.dumps({"cells": [{"cell_type": "code", "outputs": outputs}]}))
    po = tmp_path / "figures.po"
    from babel.messages.catalog import Catalog
    catalog = Catalog(locale="zh_CN")
    catalog.add("epoch", "训练轮数")
    catalog.add("unused label", "没用")
    tool._write(po, catalog)

    problems = tool.figures(tmp_path / "executed", po)
    text = "\n".join(problems)
    assert "book/page cell 0: a figure without its Chinese drawing" in text
    assert "'test AUC {0}'" in text and "'movie'" in text
    assert "no figure or chart uses this label any more" in text and "'unused label'" in text

    tool.figures(tmp_path / "executed", po, update=True)
    ids = {m.id: m.string for m in tool._read(po) if m.id}
    assert ids == {"epoch": "训练轮数", "test AUC {0}": "", "movie": "", "first": "", "second": ""}
    assert any("untranslated" in p for p in tool.figure_catalogue_problems(po))


def test_catalogue_is_complete():
    """Every label of the figures' catalogue is translated (the build checks that every figure's
    labels are in it)."""
    sys.path.insert(0, str(ROOT / "_ext"))
    import recbook_i18n_tool as tool

    assert tool.figure_catalogue_problems(tool.figures_po()) == []
    table = i18n.read_catalogue(i18n.CATALOGUE)
    assert len(table) > 100
    for english, chinese in table.items():
        assert sorted(i18n.PLACEHOLDER.findall(english)) == sorted(i18n.PLACEHOLDER.findall(chinese)), english
    # A label that is another one with punctuation before it ("· deep (MLP)", "deep (MLP)") is
    # translated around the same Chinese: a chart's check quoting the shorter one expects it.
    for english, chinese in table.items():
        core = english.lstrip(" ·:→,")
        if core != english and core in table:
            assert table[core] in chinese, (english, chinese, table[core])


def test_the_chinese_drawing_is_registered_in_a_kernel(cjk_font):
    from IPython.core.interactiveshell import InteractiveShell

    shell = InteractiveShell.instance()
    monkey = sys.modules.setdefault("ipykernel", type(sys)("ipykernel"))
    try:
        from IPython.core.pylabtools import select_figure_formats

        select_figure_formats(shell, {"png"})
        assert i18n.chinese_figures(shell)
        fig, _ = _figure()
        data, meta = shell.display_formatter.format(fig)
        plt.close(fig)
        other, _ = shell.display_formatter.format({"not": "a figure"})
    finally:
        if monkey.__spec__ is None:
            del sys.modules["ipykernel"]
        shell.display_formatter.formatters.pop(i18n.ZH_PNG, None)
        InteractiveShell.clear_instance()
    assert i18n.ZH_PNG in data and "image/png" in data
    assert i18n.ZH_PNG not in other                                # figures only
    assert meta[i18n.ZH_PNG]["recbook"]["missing_glyphs"] == []
    assert base64.b64decode(data[i18n.ZH_PNG])[:4] == b"\x89PNG"


class _FakeRenderer:
    """What ChineseFigures uses of myst-nb's element renderer."""

    def __init__(self, language):
        config = type("Config", (), {"language": language})()
        self.renderer = type("Inner", (), {"sphinx_env": type("Env", (), {"config": config})()})()
        self.images, self.warnings = [], []
        self.logger = type("Logger", (), {"warning": lambda _, msg, **kw: self.warnings.append(msg)})()

    def render_image(self, data):
        self.images.append(data)
        return ["image node"]


def test_each_edition_shows_its_own_drawing():
    from myst_nb.core.render import MimeData

    meta = {i18n.ZH_PNG: {"width": 320, "height": 240, "recbook": {"used": []}}}
    zh = MimeData(i18n.ZH_PNG, "QUJD", output_metadata=meta, cell_index=3)
    english = MimeData("image/png", "QUJD", cell_index=3)

    chinese = _FakeRenderer("zh_CN")
    assert i18n.ChineseFigures.handle_mime(chinese, zh, False) == ["image node"]
    shown = chinese.images[0]
    assert shown.mime_type == "image/png" and shown.output_metadata == {"image/png": {"width": 320, "height": 240}}
    assert i18n.ChineseFigures.handle_mime(chinese, english, False) is None    # myst-nb's own rendering

    source = _FakeRenderer("en")
    assert i18n.ChineseFigures.handle_mime(source, zh, False) == []             # never in English
    assert i18n.ChineseFigures.handle_mime(source, english, False) is None and not source.warnings

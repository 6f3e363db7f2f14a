"""recbook.widgets: charts that compute in the browser (their data, controls, checks and size
budget), highlighted source listings, the book's result files, and the precomputed-slider fallback.

What a chart computes in the browser is checked by the browser test (tests/browser/), which sets
each chart's controls as its checks say and compares the texts it shows; here we check what
Python hands to the browser."""
from __future__ import annotations

import io
import json

import matplotlib

matplotlib.use("Agg")

import altair as alt  # noqa: E402
import ipywidgets as ipw  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from recbook import widgets  # noqa: E402


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def small_chart():
    data = widgets.CsvData(pd.DataFrame({"x": [1.0, 2.0, 3.0], "y": [4.0, 5.0, 6.5]}), name="small")
    chart = alt.Chart(data.ref).transform_calculate(z="datum.y * k").mark_point().encode(x="x:Q", y="z:Q")
    return chart, data


# --------------------------------------------------------------------------------------------
# CsvData
# --------------------------------------------------------------------------------------------

def test_csv_data_round_trips_and_parses_numbers_back():
    frame = pd.DataFrame({"key": ["a", "b,c", 'd"e'], "w": [0.123456, -1.5, 2.0], "n": [1, 2, 3],
                          "flag": [True, False, True]})
    data = widgets.CsvData(frame, name="t", decimals=3)
    back = pd.read_csv(io.StringIO(data.csv))
    assert back["key"].tolist() == ["a", "b,c", 'd"e']             # quoting survives
    assert back["w"].tolist() == [0.123, -1.5, 2.0]                # rounded to 3 decimals
    assert back["n"].tolist() == [1, 2, 3]
    spec = data.ref.to_dict()
    assert spec["name"] == "t" and spec["format"]["type"] == "csv"
    assert spec["format"]["parse"] == {"w": "number", "n": "number"}  # booleans, strings stay text
    assert len(data) == 3


def test_csv_data_is_smaller_than_records():
    frame = pd.DataFrame(np.random.default_rng(0).normal(size=(200, 8)).round(4),
                         columns=[f"v{i}" for i in range(8)])
    data = widgets.CsvData(frame, name="t")
    assert len(data.csv) < 0.6 * len(json.dumps(frame.to_dict(orient="records")))


@pytest.mark.parametrize("kwargs, field", [
    (dict(frame=pd.DataFrame(), name="t"), "frame"),
    (dict(frame=[1, 2], name="t"), "frame"),
    (dict(frame=pd.DataFrame({"a": [1]}), name="bad name"), "name"),
    (dict(frame=pd.DataFrame({"a": [np.nan]}), name="t"), "frame"),
    (dict(frame=pd.DataFrame({"a": [1.0]}), name="t", decimals={"b": 2}), "decimals"),
    (dict(frame=pd.DataFrame({"a": [1.0]}), name="t", decimals=-1), "decimals"),
    (dict(frame=pd.DataFrame({0: [1.0]}), name="t"), "frame"),
])
def test_csv_data_bad_input_names_the_field(kwargs, field):
    with pytest.raises(ValueError, match=field):
        widgets.CsvData(**kwargs)


# --------------------------------------------------------------------------------------------
# Controls
# --------------------------------------------------------------------------------------------

def test_slider_and_dropdown_bind_to_the_right_inputs():
    s = widgets.slider("k", 0, 2, 0.5, 1.0, "scale").param.to_dict()
    assert s["name"] == "k" and s["value"] == 1.0
    assert s["bind"] == {"input": "range", "min": 0.0, "max": 2.0, "step": 0.5, "name": "scale "}
    d = widgets.dropdown("user", np.array([3, 1, 2]), 1, labels=["three", "one", "two"]).param.to_dict()
    assert d["bind"]["options"] == [3, 1, 2] and d["bind"]["labels"] == ["three", "one", "two"]
    assert d["value"] == 1 and isinstance(d["bind"]["options"][0], int)   # NumPy ints converted
    c = widgets.checkbox("on", True).param.to_dict()
    assert c["bind"]["input"] == "checkbox" and c["value"] is True


@pytest.mark.parametrize("call, field", [
    (lambda: widgets.slider("1k", 0, 1, 0.1, 0.5), "name"),
    (lambda: widgets.slider("k", 1, 0, 0.1, 0.5), "max"),
    (lambda: widgets.slider("k", 0, 1, 0, 0.5), "step"),
    (lambda: widgets.slider("k", 0, 1, 0.1, 2), "value"),
    (lambda: widgets.slider("k", 0, float("nan"), 0.1, 0.5), "max"),
    (lambda: widgets.dropdown("d", []), "options"),
    (lambda: widgets.dropdown("d", "abc"), "options"),
    (lambda: widgets.dropdown("d", [1, 1]), "options"),
    (lambda: widgets.dropdown("d", [1, 2], 3), "value"),
    (lambda: widgets.dropdown("d", [1, 2], labels=["a"]), "labels"),
    (lambda: widgets.checkbox("c", 1), "value"),
])
def test_controls_bad_input_names_the_field(call, field):
    with pytest.raises(ValueError, match=field):
        call()


# --------------------------------------------------------------------------------------------
# browser_chart
# --------------------------------------------------------------------------------------------

def test_browser_chart_ships_the_data_and_records_the_checks():
    chart, data = small_chart()
    out = widgets.browser_chart(chart, params=[widgets.slider("k", 0, 2, 0.5, 1.0)], data=[data],
                                checks=[{"set": {"k": 1.5}, "texts": ["x"]}])
    spec = out.to_dict()
    assert spec["params"] == [{"name": "k", "value": 1.0, "bind": {
        "input": "range", "min": 0.0, "max": 2.0, "step": 0.5, "name": "k "}}]
    assert spec["datasets"] == {"small": data.csv}
    assert spec["usermeta"]["embedOptions"] == widgets.EMBED_OPTIONS
    assert spec["usermeta"]["recbook"]["checks"] == [{"set": {"k": 1.5}, "texts": ["x"]}]
    assert list(widgets.bound_params(out)) == ["k"]
    assert spec["config"]["axis"]["labelFontSize"] == widgets.BOOK_CONFIG["axis"]["labelFontSize"]
    assert widgets.spec_bytes(out) == len(json.dumps(spec, separators=(",", ":")).encode())


def test_browser_chart_refuses_a_parameter_without_a_control():
    chart, data = small_chart()
    with pytest.raises(ValueError, match="no control"):
        widgets.browser_chart(chart, params=[alt.param(name="k", value=1.0)], data=[data])
    with pytest.raises(ValueError, match="params"):
        widgets.browser_chart(chart, params=["k"], data=[data])


@pytest.mark.parametrize("check, match", [
    ({"set": {"q": 1.0}, "texts": ["x"]}, "'q' is not a parameter"),
    ({"set": {"k": 3.0}, "texts": ["x"]}, "outside the range"),
    ({"set": {"k": 0.7}, "texts": ["x"]}, "not on the steps"),
    ({"set": {"k": 1.0}, "texts": []}, "texts"),
    ({"set": {"k": 1.0}, "texts": "x"}, "texts"),
    ({"set": {"k": 1.0}}, "checks"),
    ({"set": {"k": 1.0}, "texts": ["x"], "extra": 1}, "checks"),
])
def test_browser_chart_refuses_impossible_checks(check, match):
    chart, data = small_chart()
    with pytest.raises(ValueError, match=match):
        widgets.browser_chart(chart, params=[widgets.slider("k", 0, 2, 0.5, 1.0)], data=[data],
                              checks=[check])


def test_browser_chart_checks_dropdown_values_and_size():
    data = widgets.CsvData(pd.DataFrame({"x": np.arange(3000.0)}), name="big")
    chart = alt.Chart(data.ref).mark_point().encode(x="x:Q")
    d = [widgets.dropdown("d", ["a", "b"])]
    with pytest.raises(ValueError, match="not an option"):
        widgets.browser_chart(chart, params=d, data=[data], checks=[{"set": {"d": "c"}, "texts": ["x"]}])
    with pytest.raises(ValueError, match="max_bytes"):
        widgets.browser_chart(chart, params=d, data=[data], max_bytes=1000)
    out = widgets.browser_chart(chart, params=d, data=[data])
    assert out.to_dict()["datasets"]["big"].count("\n") == 3001
    bundle = out._repr_mimebundle_()                    # what a notebook displays
    html = bundle[0]["text/html"] if isinstance(bundle, tuple) else bundle["text/html"]
    assert "vegaEmbed" in html and "VEGA_DEBUG" in html
    with pytest.raises(ValueError, match="duplicate"):
        widgets.browser_chart(chart, params=d, data=[data, data])
    with pytest.raises(ValueError, match="chart"):
        widgets.browser_chart({"mark": "point"})


# --------------------------------------------------------------------------------------------
# Listings and result files
# --------------------------------------------------------------------------------------------

def _example(a, b):
    """Docstring."""
    return a + b  # a comment


def test_show_source_is_a_python_code_block_of_the_real_source():
    text = widgets.show_source(_example).data
    assert text.startswith("```python\ndef _example(a, b):")
    assert "return a + b  # a comment" in text and text.endswith("\n```")
    two = widgets.show_source(_example, widgets.checkbox).data
    assert "def checkbox(" in two and two.count("```") == 2
    with pytest.raises(ValueError, match="objects"):
        widgets.show_source()
    with pytest.raises(ValueError, match="objects"):
        widgets.show_source(len)


# --------------------------------------------------------------------------------------------
# Fallback: precomputed slider
# --------------------------------------------------------------------------------------------

def test_precomputed_slider_one_output_per_value_and_linked():
    calls = []

    def render(k):
        calls.append(k)
        fig, ax = plt.subplots()
        ax.plot([0, k])
        return fig

    box = widgets.precomputed_slider(render, [1, 2, 5, 10], "k")
    assert isinstance(box, ipw.VBox)
    control, stack = box.children
    assert control is box.control and stack is box.stack
    assert isinstance(control, ipw.SelectionSlider)
    assert isinstance(stack, ipw.Stack)
    assert calls == [1, 2, 5, 10]
    assert len(stack.children) == 4 and all(isinstance(o, ipw.Output) for o in stack.children)
    assert control.description == "k"
    assert [label for label, _ in control.options] == ["1", "2", "5", "10"]
    assert box.link.source == (control, "index")
    assert box.link.target == (stack, "selected_index")
    assert control.index == stack.selected_index == 0
    assert plt.get_fignums() == []  # figures were closed, so they do not show twice


def test_precomputed_slider_dropdown_start_value_and_html():
    box = widgets.precomputed_slider(lambda name: f"<b>{name}</b>", ["a", "b", "c"], "name",
                                     control="dropdown", value="b")
    assert isinstance(box.control, ipw.Dropdown)
    assert box.control.index == box.stack.selected_index == 1
    assert box.link.source == (box.control, "index")


def test_precomputed_slider_closes_pyplot_figures_of_render_returning_none():
    def render(k):
        plt.figure()
        plt.plot([0, k])

    widgets.precomputed_slider(render, [1, 2])
    assert plt.get_fignums() == []


@pytest.mark.parametrize("kwargs, field", [
    (dict(render=None, values=[1]), "render"),
    (dict(render=str, values=[]), "values"),
    (dict(render=str, values="abc"), "values"),
    (dict(render=str, values=5), "values"),
    (dict(render=str, values=[1, "1"]), "values"),
    (dict(render=str, values=[1, 2], control="radio"), "control"),
    (dict(render=str, values=[1, 2], value=3), "value"),
    (dict(render=str, values=[1, 2], description=None), "description"),
])
def test_precomputed_slider_bad_input_names_the_field(kwargs, field):
    with pytest.raises(ValueError, match=field):
        widgets.precomputed_slider(**kwargs)


def test_encode_digits_by_hand_round_trip_and_refusals():
    from recbook.widgets import decode_digits, encode_digits

    assert encode_digits([[0, 35, 36], [1295, 1, 2]], 2, "0123456789abcdefghijklmnopqrstuvwxyz") == ["000z10",
                                                                                                     "zz0102"]
    assert encode_digits(np.array([[27 * 52 + 0]]), 2, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz") == ["bA"]
    codes = np.random.default_rng(0).integers(0, 52 ** 3, size=(20, 7))
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
    np.testing.assert_array_equal(decode_digits(encode_digits(codes, 3, alphabet), 3, alphabet), codes)
    with pytest.raises(ValueError, match="codes"):
        encode_digits([[36]], 1, "0123456789abcdefghijklmnopqrstuvwxyz")      # needs two digits
    with pytest.raises(ValueError, match="codes"):
        encode_digits([[0.5]], 1, "01")                                        # not integers
    for bad in ["0", "0!", "0é"]:
        with pytest.raises(ValueError, match="strings"):
            decode_digits([bad], 2, "0123456789")

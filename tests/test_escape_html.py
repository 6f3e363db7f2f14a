"""recbook.widgets.escape_html: values that reach HTML are shown, not read as tags."""
import numpy as np
import pandas as pd

from recbook.widgets import escape_html


def test_string_is_escaped():
    assert escape_html("user_id=<unk>") == "user_id=&lt;unk&gt;"
    assert escape_html("age_bucket=<18 & more") == "age_bucket=&lt;18 &amp; more"
    assert escape_html("plain") == "plain"


def test_non_strings_are_unchanged():
    assert escape_html(3) == 3 and escape_html(None) is None
    x = np.arange(3)
    assert escape_html(x) is x


def test_frame_cells_and_labels_are_escaped_numbers_kept():
    t = pd.DataFrame({"term": ["<unk> (user_id × genres)", "gender=F"], "<w>": [0.5, -1.0]},
                     index=pd.Index(["a<b", "c"]))
    out = escape_html(t)
    assert out["term"].tolist() == ["&lt;unk&gt; (user_id × genres)", "gender=F"]
    assert list(out.columns) == ["term", "&lt;w&gt;"] and list(out.index) == ["a&lt;b", "c"]
    assert out["&lt;w&gt;"].dtype == float and out["&lt;w&gt;"].tolist() == [0.5, -1.0]
    assert t["term"].iloc[0] == "<unk> (user_id × genres)"          # the input is not modified


def test_styler_html_shows_the_text():
    """A Styler escapes nothing by itself (and a second .format() drops escape="html"): the
    escaped frame renders "<unk>" as text."""
    t = pd.DataFrame({"term": ["user_id=<unk>"], "x": [1.0]})
    raw = t.style.format(escape="html").format({"x": "{:g}"}).to_html()
    safe = escape_html(t).style.format({"x": "{:g}"}).to_html()
    assert "&lt;unk&gt;" in safe and "<unk>" not in safe
    assert "<unk>" in raw or "&lt;unk&gt;" in raw          # whichever pandas does, the helper is safe


def test_multiindex_and_series():
    cols = pd.MultiIndex.from_tuples([("a<", "x"), ("b", "<y>")])
    t = pd.DataFrame([[1, 2]], columns=cols)
    out = escape_html(t)
    assert list(out.columns) == [("a&lt;", "x"), ("b", "&lt;y&gt;")]
    s = pd.Series(["<a>", "b"], index=["<i>", "j"], name="<n>")
    e = escape_html(s)
    assert e.tolist() == ["&lt;a&gt;", "b"] and list(e.index) == ["&lt;i&gt;", "j"] and e.name == "&lt;n&gt;"

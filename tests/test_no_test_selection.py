"""Nothing in the book is chosen on test data: no chapter helper, no benchmark code and no notebook
cell sorts, ranks or picks by a test metric (a column ``test_auc``, ``"test AUC"``, ...).

A model, an epoch or a setting is chosen on validation; the test block is only reported. The
check reads the code (Python's ``ast``), so it covers hidden cells too, and lists every place.
"""
from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from book_pages import ROOT, notebook_cells, notebooks

TEST_COLUMN = re.compile(r"^test[_ ]", re.I)
# Calls that order rows or pick the best one.
SELECTORS = {"sort_values", "nlargest", "nsmallest", "idxmax", "idxmin", "argmax", "argmin", "max", "min",
             "sorted", "sort", "rank", "topk"}
ORDERING = {"sort_values", "nlargest", "nsmallest", "sorted", "sort", "rank", "topk"}
SOURCES = [*sorted((ROOT / "recbook" / "chapters").glob("*.py")), ROOT / "recbook" / "bench.py"]


def _strings(node) -> list[str]:
    return [n.value for n in ast.walk(node) if isinstance(n, ast.Constant) and isinstance(n.value, str)]


def _name(func) -> str | None:
    return func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else None


def selections_on_test(source: str) -> list[tuple[int, str]]:
    """``(line, code)`` of each call that orders or picks by a test column."""
    from IPython.core.inputtransformer2 import TransformerManager

    tree = ast.parse(TransformerManager().transform_cell(source))
    hits = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call) or _name(node.func) not in SELECTORS:
            continue
        name = _name(node.func)
        builtin = isinstance(node.func, ast.Name)
        if name in {"max", "min"} and not builtin:
            continue            # a column's max or min is a value (a spread, an axis limit), not a pick
        if name in {"max", "min"}:
            # max(rows, key=lambda r: r["test_auc"]) picks a row; max(sd_a, table["test sd"]) is a value
            keyed = [s for k in node.keywords if k.arg == "key" for s in _strings(k)]
        else:
            keyed = [s for a in [*node.args, *node.keywords] for s in _strings(a)] \
                if name in ORDERING or builtin else []
        # df["test_auc"].idxmax(), df.test_auc.max(), df[["test_auc"]].sort_values(...)
        receiver = node.func.value if isinstance(node.func, ast.Attribute) else None
        while isinstance(receiver, ast.Call) and isinstance(receiver.func, ast.Attribute) and \
                _name(receiver.func) in {"abs", "round", "astype", "to_numpy", "dropna"}:
            receiver = receiver.func.value
        if isinstance(receiver, ast.Subscript):
            keyed += _strings(receiver.slice)
        elif isinstance(receiver, ast.Attribute) and name != "sort":
            keyed.append(receiver.attr)
        if any(TEST_COLUMN.match(s) for s in keyed):
            hits.append((node.lineno, ast.get_source_segment(TransformerManager().transform_cell(source), node)))
    return hits


def _places():
    for path in SOURCES:
        yield str(path.relative_to(ROOT)), path.read_text(encoding="utf-8")
    for path in notebooks():
        for cell in notebook_cells(path):
            if cell.kind == "code":
                yield cell.where, cell.source


def test_nothing_is_sorted_or_picked_by_a_test_metric():
    hits = [f"{where}, line {line}: {code}" for where, source in _places()
            for line, code in selections_on_test(source)]
    assert not hits, "selection on test data (choose on validation, report test):\n" + "\n".join(hits)


@pytest.mark.parametrize("code", [
    'best = table.sort_values("test_auc", ascending=False).iloc[0]',
    'best_din = runs.loc[runs["test_auc"].idxmax(), "config"]',
    "top = board.nlargest(3, 'test AUC')",
    'best = max(rows, key=lambda r: r["test_auc"])',
    'pick = results.test_auc.argmax()',
    'best = results[["test_auc", "valid_auc"]].sort_values(by=["test_auc"])',
])
def test_the_scan_sees_a_selection_on_test(code):
    assert selections_on_test(code), code


@pytest.mark.parametrize("code", [
    'best = table.sort_values("valid_auc", ascending=False).iloc[0]',
    'board = runs.groupby("model")["test_auc"].mean()',
    'assert diff["test_auc FM − LR"].mean() > 0',
    'chosen = runs.loc[runs["valid_auc"].idxmax()]; report = chosen["test_auc"]',
    'assert gap > max(lib_sd, board.loc["DeepFM", "test AUC ±"])',
])
def test_the_scan_lets_validation_choices_and_test_reports_pass(code):
    assert not selections_on_test(code), code


def test_the_leaderboard_summary_does_not_rank_models_by_test_metrics():
    """A summary sorted by test AUC makes its first row "the best model on test": whatever picks
    it (``summary(...).iloc[0]``) selects on test. Rows keep the results' order, or follow
    validation."""
    import pandas as pd

    from recbook.chapters import leaderboard

    rows = []
    for seed in range(3):   # input and validation order A, B, C; test order C, B, A
        for model, valid, test in [("A", 0.72, 0.70), ("B", 0.71, 0.71), ("C", 0.70, 0.72)]:
            rows.append({"model": model, "protocol": "ctr", "seed": seed, "valid_auc": valid,
                         "test_auc": test + seed * 1e-4, "test_logloss": 0.6, "test_gauc": test})
    table = leaderboard.summary(pd.DataFrame(rows), "ctr")
    assert table["model"].tolist() != ["C", "B", "A"], (
        "recbook.chapters.leaderboard.summary ranks the models by their test metric")

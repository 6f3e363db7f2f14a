"""Input validation shared by the whole package.

Every public entry point validates once, at the boundary, and raises a ``ValueError`` that names
the offending field and what was expected, before any computation starts.
"""
from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np
import pandas as pd


def require_columns(frame: pd.DataFrame, columns: Iterable[str], *, name: str = "frame") -> None:
    """Raise if ``frame`` is not a non-empty DataFrame holding ``columns``."""
    if not isinstance(frame, pd.DataFrame):
        raise ValueError(f"{name}: expected a pandas DataFrame, got {type(frame).__name__}")
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(
            f"{name}: missing column(s) {missing}; expected columns {list(columns)}, "
            f"got {list(frame.columns)}"
        )
    if len(frame) == 0:
        raise ValueError(f"{name}: is empty; expected at least one row")


def require_no_nan(frame: pd.DataFrame, columns: Iterable[str], *, name: str = "frame") -> None:
    """Raise naming the first column of ``columns`` that holds a missing value."""
    for c in columns:
        n_missing = int(frame[c].isna().sum())
        if n_missing:
            raise ValueError(f"{name}: column '{c}' has {n_missing} missing value(s) (NaN); expected none")


def require_int_range(values, low: int, high: int, *, field: str) -> None:
    """Raise unless every value is an integer in ``[low, high)``."""
    arr = np.asarray(values)
    if arr.size == 0:
        return
    if not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"{field}: expected integer ids, got dtype {arr.dtype}")
    lo, hi = int(arr.min()), int(arr.max())
    if lo < low or hi >= high:
        bad = lo if lo < low else hi
        raise ValueError(f"{field}: id {bad} is out of range; expected ids in [{low}, {high})")


def require_positive_int(value, *, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name}: expected a positive integer, got {value!r}")
    return int(value)


def require_fraction(value, *, name: str, inclusive: bool = False) -> float:
    ok = isinstance(value, (int, float, np.floating)) and (0 <= value <= 1 if inclusive else 0 < value < 1)
    if not ok:
        interval = "[0, 1]" if inclusive else "(0, 1)"
        raise ValueError(f"{name}: expected a number in {interval}, got {value!r}")
    return float(value)


def require_number(value, *, name: str, low: float | None = None, high: float | None = None,
                   low_open: bool = False, high_open: bool = False) -> float:
    """Raise unless ``value`` is a finite real number (not a bool) in the given interval.

    ``low``/``high`` are the bounds (None: unbounded); ``low_open``/``high_open`` exclude them.
    NaN and infinities are always refused: a setting of ``inf`` or ``nan`` silently turns a
    model into a constant (every logit 0, every weight NaN) instead of failing. Returns a float.
    """
    if low is None and high is None:
        expected = "a finite number"
    else:
        left = "-inf" if low is None else f"{low:g}"
        right = "inf" if high is None else f"{high:g}"
        lb = "(" if low is None or low_open else "["
        rb = ")" if high is None or high_open else "]"
        expected = f"a finite number in {lb}{left}, {right}{rb}"
        if low == 0 and low_open and high is None:
            expected = "a finite positive number"
        elif low == 0 and not low_open and high is None:
            expected = "a finite non-negative number"
    ok = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))
    if ok:
        v = float(value)
        ok = math.isfinite(v)
        if ok and low is not None:
            ok = v > low if low_open else v >= low
        if ok and high is not None:
            ok = v < high if high_open else v <= high
    if not ok:
        raise ValueError(f"{name}: expected {expected}, got {value!r}")
    return float(value)

"""Input validation shared by the whole package.

Every public entry point validates once, at the boundary, and raises a ``ValueError`` that names
the offending field and what was expected, before any computation starts.
"""
from __future__ import annotations

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

"""Movie titles a reader can tell apart.

MovieLens-100K lists some movies twice under different ids (18 pairs of ids share their title
and release year, such as "Chasing Amy" (1997) as items 246 and 268), and some titles belong to
different movies ("Cape Fear", 1962 and 1991). A chart or a table that names movies by title alone
shows two identical labels for different items; :func:`display_titles` adds what tells them apart.
"""
from __future__ import annotations

import pandas as pd

from .._checks import require_columns


def display_titles(items: pd.DataFrame) -> pd.Series:
    """One label per item, unique across ``items``: the title, with the release year added where
    another item has the same title and a different year, and the item id added where the year
    does not tell them apart either.

    Args:
        items: one row per item, with ``item_id``, ``title`` and ``release_year`` (may be missing),
            such as ``load_movielens100k().items``. Without a ``release_year`` column (an item
            catalogue that keeps only a year bucket), a shared title gets the item id alone.

    Returns:
        A Series indexed by ``item_id``: ``"Toy Story"``, ``"Cape Fear (1962)"``,
        ``"Chasing Amy (1997, #246)"``, ``"Chasing Amy (1997, #268)"``; without ``release_year``:
        ``"Cape Fear (#564)"``, ``"Chasing Amy (#246)"``.

    Raises:
        ValueError: a column is missing or an ``item_id`` appears twice.
    """
    require_columns(items, ["item_id", "title"], name="items")
    if items["item_id"].duplicated().any():
        dup = items.loc[items["item_id"].duplicated(), "item_id"].tolist()[:5]
        raise ValueError(f"items: item_id must be unique, got repeated ids {dup}")
    if "release_year" not in items.columns:
        title = items["title"].astype(str)
        shared = title.duplicated(keep=False).to_numpy()
        ids = items["item_id"].to_numpy()
        labels = [f"{t} (#{i})" if sh else t for t, i, sh in zip(title.to_numpy(), ids, shared)]
        return pd.Series(labels, index=pd.Index(ids, name="item_id"), name="title")
    title = items["title"].astype(str).to_numpy()
    years = items["release_year"].astype("Int64")
    year = [str(y) if pd.notna(y) else "year unknown" for y in years]
    ids = items["item_id"].to_numpy()
    frame = pd.DataFrame({"title": title, "year": year})
    shared_title = frame["title"].duplicated(keep=False).to_numpy()
    shared_year = frame.duplicated(["title", "year"], keep=False).to_numpy()
    labels = [t if not st else f"{t} ({y})" if not sy else f"{t} ({y}, #{i})"
              for t, y, i, st, sy in zip(title, year, ids, shared_title, shared_year)]
    return pd.Series(labels, index=pd.Index(ids, name="item_id"), name="title")


def duplicate_titles(items: pd.DataFrame) -> pd.DataFrame:
    """The items whose title another item also has, sorted by title and id, with ``same_year``:
    whether an item with the same title also has the same release year (then it is most likely
    the same movie listed twice)."""
    require_columns(items, ["item_id", "title", "release_year"], name="items")
    out = items.loc[items["title"].duplicated(keep=False), ["item_id", "title", "release_year"]].copy()
    out["same_year"] = out.duplicated(["title", "release_year"], keep=False)
    return out.sort_values(["title", "item_id"], kind="stable").reset_index(drop=True)

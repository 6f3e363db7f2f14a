"""recbook.data.display_titles: labels a reader can tell apart, changed only where needed."""
from __future__ import annotations

import pandas as pd
import pytest

from recbook.data import display_titles, duplicate_titles


def _items(rows):
    return pd.DataFrame(rows, columns=["item_id", "title", "release_year"]).astype(
        {"release_year": "Int64"})


def test_titles_are_unique_and_disambiguated_only_where_needed():
    items = _items([(1, "Toy Story", 1995), (2, "Cape Fear", 1962), (3, "Cape Fear", 1991),
                    (4, "Chasing Amy", 1997), (5, "Chasing Amy", 1997), (6, "That Darn Cat!", 1965),
                    (7, "That Darn Cat!", 1997), (8, "That Darn Cat!", 1997), (9, "Solo", None),
                    (10, "Solo", None), (11, "Heat", None)])
    labels = display_titles(items)
    assert labels.index.tolist() == list(range(1, 12)) and labels.is_unique
    assert labels.to_dict() == {
        1: "Toy Story", 2: "Cape Fear (1962)", 3: "Cape Fear (1991)",
        4: "Chasing Amy (1997, #4)", 5: "Chasing Amy (1997, #5)",
        6: "That Darn Cat! (1965)", 7: "That Darn Cat! (1997, #7)", 8: "That Darn Cat! (1997, #8)",
        9: "Solo (year unknown, #9)", 10: "Solo (year unknown, #10)", 11: "Heat"}
    same = duplicate_titles(items)
    assert same["item_id"].tolist() == [2, 3, 4, 5, 9, 10, 6, 7, 8]
    assert same.set_index("item_id")["same_year"].to_dict() == {
        2: False, 3: False, 4: True, 5: True, 9: True, 10: True, 6: False, 7: True, 8: True}


def test_without_release_year_a_shared_title_gets_the_id():
    items = pd.DataFrame({"item_id": [246, 1, 268, 7], "title": ["Chasing Amy", "Toy Story", "Chasing Amy", "Heat"]})
    labels = display_titles(items)
    assert labels.to_dict() == {246: "Chasing Amy (#246)", 1: "Toy Story", 268: "Chasing Amy (#268)", 7: "Heat"}


def test_bad_items_are_refused_with_the_field_named():
    with pytest.raises(ValueError, match="title"):
        display_titles(pd.DataFrame({"item_id": [1], "name": ["A"]}))
    with pytest.raises(ValueError, match="item_id must be unique"):
        display_titles(pd.DataFrame({"item_id": [1, 1], "title": ["A", "B"]}))
    with pytest.raises(ValueError, match="item_id must be unique"):
        display_titles(_items([(1, "A", 1990), (1, "B", 1991)]))


def test_movielens_titles(movielens):
    labels = display_titles(movielens.items)
    assert labels.is_unique and len(labels) == 1682
    same = duplicate_titles(movielens.items)
    assert same["title"].nunique() == 22 and len(same) == 45          # 22 titles shared by 45 ids
    assert same["same_year"].sum() == 36                              # 18 movies listed twice
    assert labels[246] == "Chasing Amy (1997, #246)" and labels[1] == "Toy Story"
    assert (labels != movielens.items.set_index("item_id")["title"]).sum() == 45

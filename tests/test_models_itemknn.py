"""Item-based kNN retrieval: similarities and scores checked by hand on a tiny example, the
protocol interface, and bad input."""
from __future__ import annotations

import math

import numpy as np
import pytest

from recbook.data import SequenceData
from recbook.metrics import ranking_report
from recbook.models import ItemKNN
from recbook.models.itemknn import item_cosine, itemknn_sweep

N = 7  # codes 0 and 1 reserved; items 2..6
# users of each item: 2 -> {0, 1, 2}, 3 -> {0, 1}, 4 -> {1, 2}, 5 -> {2}, 6 -> {} (never rated)
SEQS = [np.array([2, 3, 2]), np.array([3, 4, 2]), np.array([4, 2, 5])]


def test_cosine_by_hand():
    s = item_cosine(SEQS, N)
    # items 2 and 3 share users 0, 1: 2 / sqrt(3 * 2); the repeated 2 of user 0 counts once
    assert s[2, 3] == pytest.approx(2 / math.sqrt(6))
    assert s[3, 2] == pytest.approx(2 / math.sqrt(6))
    assert s[3, 4] == pytest.approx(1 / 2)          # user 1 only: 1 / sqrt(2 * 2)
    assert s[2, 5] == pytest.approx(1 / math.sqrt(3))
    assert s[3, 5] == 0 and s[6].sum() == 0 and s[:, 6].sum() == 0
    assert np.all(np.diag(s) == 0) and np.all(s[:2] == 0) and np.all(s[:, :2] == 0)
    shrunk = item_cosine(SEQS, N, shrink=1.0)
    assert shrunk[2, 3] == pytest.approx(2 / (math.sqrt(6) + 1))


def test_scores_sum_the_history_rows_and_break_ties_by_popularity():
    m = ItemKNN.from_sequences(SEQS, N)
    scores = m.score_next([np.array([3]), np.array([5, 5]), np.array([3, 4])])
    assert scores.shape == (3, N) and scores.dtype == np.float64
    assert np.all(np.isinf(scores[:, :2]) & (scores[:, :2] < 0))
    s = item_cosine(SEQS, N)
    np.testing.assert_allclose(scores[2, 2:], (s[3] + s[4])[2:], atol=1e-6)
    # after item 3: 2 (0.816) > 4 (0.5) > 3 = 5 = 6 = 0, those ordered by users: 3 (2), 5 (1), 6 (0)
    assert np.argsort(-scores[0])[:5].tolist() == [2, 4, 3, 5, 6]
    assert scores[0, 3] - scores[0, 6] < 1e-6
    # a repeated item counts once
    np.testing.assert_allclose(scores[1], m.score_next([np.array([5])])[0])


def test_neighbours_keeps_each_rows_largest_similarities():
    full = item_cosine(SEQS, N)
    m = ItemKNN.from_sequences(SEQS, N, neighbours=1)
    for i in range(2, N):
        row = m.similarity[i]
        assert np.count_nonzero(row) <= 1
        if full[i].max() > 0:
            assert row.max() == full[i].max() and row.argmax() == full[i].argmax()


def test_score_items_on_the_protocol_reads_the_history_before_the_target():
    data = SequenceData(users=np.arange(3), train=[s[:-1] for s in SEQS[:2]] + [np.array([4, 2])],
                        valid=np.array([6, 6, 5]), test=np.array([5, 5, 6]), n_items=N)
    m = ItemKNN.from_data(data)
    np.testing.assert_allclose(m.score_items(data, "valid"), m.score_next(data.history("valid")))
    test_scores = m.score_items(data, "test")
    np.testing.assert_allclose(test_scores[2], m.score_next([np.array([4, 2, 5])])[0])
    report = ranking_report(test_scores, data.targets("test"), (1, 5), exclude=data.seen("test"))
    assert 0 <= report["recall@1"] <= report["recall@5"] == 1.0


def test_sweep_rows_cover_the_grid_and_read_validation_only():
    data = SequenceData(users=np.arange(3), train=[np.array([2, 3]), np.array([3, 4]), np.array([4, 2])],
                        valid=np.array([4, 2, 3]), test=np.array([5, 5, 5]), n_items=N)
    rows = itemknn_sweep(data, neighbours=(1, None), shrinks=(0.0, 5.0))
    assert [(r["neighbours"], r["shrink"]) for r in rows] == [(1, 0.0), (1, 5.0), (0, 0.0), (0, 5.0)]
    # user 0 saw 2, 3: item 4 is the only candidate left besides 5 and 6 -> it ranks first
    assert all(r["valid_recall@10"] == 1.0 for r in rows)


@pytest.mark.parametrize("kwargs, match", [
    (dict(neighbours=0), "neighbours"),
    (dict(neighbours=2.5), "neighbours"),
    (dict(shrink=-1.0), "shrink"),
    (dict(shrink=float("nan")), "shrink"),
])
def test_bad_settings_name_the_field(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ItemKNN.from_sequences(SEQS, N, **kwargs)


def test_bad_input_names_the_field():
    with pytest.raises(ValueError, match="similarity"):
        ItemKNN(np.zeros((4, 5)), np.zeros(4))
    with pytest.raises(ValueError, match="similarity"):
        ItemKNN(np.full((4, 4), np.nan), np.zeros(4))
    with pytest.raises(ValueError, match="counts"):
        ItemKNN(np.zeros((4, 4)), np.zeros(3))
    m = ItemKNN.from_sequences(SEQS, N)
    with pytest.raises(ValueError, match="histories"):
        m.score_next([np.array([2, 9])])
    with pytest.raises(ValueError, match="sequences"):
        ItemKNN.from_sequences([np.array([2, 99])], N)

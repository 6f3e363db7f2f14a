"""Most-popular and ItemKNN-last baselines against brute-force counts, and their scores' shape."""
from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from recbook.models.baselines import ItemKNNLast, MostPopular, cooccurrence
from recbook.next_item import evaluate_next_item, next_item_split, pessimistic_ranks

N = 9
SEQS = [np.array([2, 3, 4, 2, 5]), np.array([3, 4, 6]), np.array([7, 2, 3, 4, 8, 8])]


def brute_cooc(seqs, window, directed, decay):
    c = np.zeros((N, N))
    for s in seqs:
        for p, q in itertools.combinations(range(len(s)), 2):
            if q - p <= window:
                c[s[p], s[q]] += 1.0 / (q - p) ** decay
                if not directed:
                    c[s[q], s[p]] += 1.0 / (q - p) ** decay
    return c


@pytest.mark.parametrize("window, directed, decay", [(1, True, 0.0), (2, False, 1.0), (3, True, 1.0), (10, False, 0.0)])
def test_cooccurrence_matches_all_pairs_within_the_window(window, directed, decay):
    np.testing.assert_allclose(cooccurrence(SEQS, N, window=window, directed=directed, decay=decay),
                               brute_cooc(SEQS, window, directed, decay))


def test_most_popular_scores_are_the_counts():
    m = MostPopular.from_sequences(SEQS, N)
    s = m.score_next([np.array([2]), np.array([5, 6])])
    assert s.shape == (2, N) and torch.all(torch.isinf(s[:, :2]))
    assert s[0, 2:].tolist() == [3, 3, 3, 1, 1, 1, 2]
    # pessimistic ties: item 5 (count 1) is behind items 2, 3, 4, 8 and tied with 6 and 7
    assert pessimistic_ranks(s, [5, 2]).tolist() == [6, 2]


def test_itemknn_ranks_by_cooccurrence_with_the_last_item_then_popularity():
    m = ItemKNNLast.from_sequences(SEQS, N, window=1)
    s = m.score_next([np.array([6, 3]), np.array([4])])
    # after 3: 4 follows 3 three times; nothing else follows 3
    assert int(torch.argmax(s[0])) == 4
    # after 4: 2, 6 and 8 each once; equal co-occurrence is ordered by popularity (2: 3 events)
    order = torch.argsort(s[1], descending=True)[:3].tolist()
    assert order == [2, 8, 6]
    # items never seen after 4 still have distinct scores (popularity), below every co-occurring one
    assert s[1, 3] > s[1, 5] and s[1, 5] < s[1, 6]
    assert torch.all(torch.isinf(s[:, :2]))


def test_itemknn_normalize_divides_by_the_candidate_count():
    c = cooccurrence(SEQS, N, window=2)
    counts = np.bincount(np.concatenate(SEQS), minlength=N)
    m = ItemKNNLast(c, counts, normalize=0.5)
    s = m.score_next([np.array([3])])[0].numpy()
    expect = c[3] / np.sqrt(np.maximum(counts, 1))
    np.testing.assert_allclose(s[2:], expect[2:], atol=2e-6)


def test_baselines_evaluate_through_the_common_function():
    d = type("D", (), dict(train=[s[:-2] for s in SEQS], valid=np.array([s[-2] for s in SEQS]),
                           test=np.array([s[-1] for s in SEQS]), n_items=N))
    for m in (MostPopular.from_sequences(d.train, N), ItemKNNLast.from_sequences(d.train, N)):
        r = evaluate_next_item(m, next_item_split(d, "test"), ks=(1, 5))
        assert set(r) == {"recall@1", "mrr@1", "recall@5", "mrr@5", "ndcg@10"}


@pytest.mark.parametrize("make, field", [
    (lambda: MostPopular(np.array([1, 2])), "counts"),
    (lambda: MostPopular(np.array([0, 0, -1, 3])), "counts"),
    (lambda: cooccurrence(SEQS, N, window=0), "window"),
    (lambda: cooccurrence(SEQS, N, decay=-1.0), "decay"),
    (lambda: cooccurrence([np.array([2, 12])], N), r"sequences\[0\]"),
    (lambda: ItemKNNLast(np.zeros((N, N - 1)), np.zeros(N)), "cooc"),
    (lambda: ItemKNNLast(np.zeros((N, N)), np.zeros(N - 1)), "counts"),
    (lambda: ItemKNNLast(np.zeros((N, N)), np.zeros(N), normalize=2.0), "normalize"),
    (lambda: MostPopular.from_sequences(SEQS, N).score_next([np.array([1])]), r"histories\[0\]"),
])
def test_bad_input_names_the_field(make, field):
    with pytest.raises(ValueError, match=f"^{field}"):
        make()


def _sequence_data(seqs, valid, test):
    from recbook.data import SequenceData

    return SequenceData(np.arange(len(seqs)), seqs, np.array(valid), np.array(test), N)


@pytest.mark.parametrize("split", ["valid", "test"])
def test_score_items_ranks_like_score_next_in_float32(split):
    """The leaderboard ranks float32 scores: ItemKNN's ordinal scores must keep score_next's
    float64 ranking, ties included (brute-force pessimistic ranks)."""
    from recbook.metrics import rank_of_target

    data = _sequence_data(SEQS, [8, 2, 3], [5, 6, 7])
    model = ItemKNNLast.from_data(data, window=3, directed=False, decay=1.0)
    exact = model.score_next(data.history(split)).numpy()
    fast = model.score_items(data, split)
    assert fast.dtype == torch.float32 and fast.shape == (3, N)
    targets = data.targets(split)
    brute = [int(sum(exact[u, j] >= exact[u, t] for j in range(2, N) if j != t)) for u, t in enumerate(targets)]
    assert rank_of_target(fast.numpy(), targets).tolist() == brute
    for u in range(3):  # the same order of every pair of items
        a, b = exact[u, 2:], fast[u, 2:].numpy()
        assert np.array_equal(np.sign(a[:, None] - a[None, :]), np.sign(b[:, None] - b[None, :]))


def test_most_popular_score_items_is_one_row_per_user():
    data = _sequence_data(SEQS, [8, 2, 3], [5, 6, 7])
    s = MostPopular.from_data(data).score_items(data, "test")
    counts = np.bincount(np.concatenate(SEQS), minlength=N)
    assert s.shape == (3, N) and torch.equal(s[:, 2:], torch.tensor(counts[2:], dtype=s.dtype).expand(3, -1))

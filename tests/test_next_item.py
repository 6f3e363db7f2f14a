"""Next-item evaluation: ranks against a brute-force full sort with ties counted against the
target, metrics against hand-computed values, histories of the leave-last-out splits."""
from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from recbook.next_item import (
    NextItemSplit,
    evaluate_next_item,
    next_item_metrics,
    next_item_split,
    pessimistic_ranks,
)


def brute_force_rank(row, target):
    """Sort every non-reserved item by score, best first; among equal scores the target goes last."""
    items = [j for j in range(2, len(row))]
    ordered = sorted(items, key=lambda j: (-row[j], j == target))
    return ordered.index(target)


def test_ranks_equal_a_full_sort_with_ties_against_the_target():
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 4, size=(200, 12)).astype(np.float32)  # many ties
    scores[:, :2] = 100.0  # reserved columns are never ranked, whatever their score
    targets = rng.integers(2, 12, size=200)
    want = [brute_force_rank(scores[u].tolist(), int(targets[u])) for u in range(200)]
    assert pessimistic_ranks(scores, targets).tolist() == want
    assert pessimistic_ranks(torch.from_numpy(scores), targets).tolist() == want


def test_constant_scores_rank_every_target_last():
    ranks = pessimistic_ranks(np.zeros((3, 10)), [2, 5, 9])
    assert ranks.tolist() == [7, 7, 7]


def test_metrics_by_hand():
    ranks = np.array([0, 1, 9, 10, 19, 20, 500])
    m = next_item_metrics(ranks, ks=(10, 20), ndcg_ks=(10,))
    assert m["recall@10"] == pytest.approx(3 / 7)
    assert m["recall@20"] == pytest.approx(5 / 7)
    assert m["mrr@10"] == pytest.approx((1 + 1 / 2 + 1 / 10) / 7)
    assert m["mrr@20"] == pytest.approx((1 + 1 / 2 + 1 / 10 + 1 / 11 + 1 / 20) / 7)
    assert m["ndcg@10"] == pytest.approx((1 + 1 / math.log2(3) + 1 / math.log2(11)) / 7)


def toy_data():
    return SimpleNamespace(train=[np.array([2, 3, 4]), np.array([5, 6])], valid=np.array([7, 3]),
                           test=np.array([8, 9]), n_items=10)


def test_histories_of_each_split():
    d = toy_data()
    va, te = next_item_split(d, "valid"), next_item_split(d, "test")
    assert [h.tolist() for h in va.histories] == [[2, 3, 4], [5, 6]] and va.targets.tolist() == [7, 3]
    assert [h.tolist() for h in te.histories] == [[2, 3, 4, 7], [5, 6, 3]] and te.targets.tolist() == [8, 9]


class LastItemPlusOne:
    """Scores item ``last + 1`` highest: a model whose ranks we know."""

    def score_next(self, histories):
        out = torch.zeros(len(histories), 10)
        for u, h in enumerate(histories):
            out[u, int(h[-1]) + 1] = 1.0
        return out


def test_evaluate_reads_the_whole_history_up_to_the_target():
    d = toy_data()
    m, ranks = evaluate_next_item(LastItemPlusOne(), next_item_split(d, "test"), ks=(1,), ndcg_ks=(),
                                  return_ranks=True)
    # user 0: last item 7 -> predicts 8 = target (rank 0); user 1: last 3 -> 4, target 9 ties
    # with the 6 other zero-score items and is ranked behind them all.
    assert ranks.tolist() == [0, 7]
    assert m == {"recall@1": 0.5, "mrr@1": 0.5}


@pytest.mark.parametrize("call, field", [
    (lambda: pessimistic_ranks(np.zeros((2, 5)), [2, 5]), "targets"),
    (lambda: pessimistic_ranks(np.zeros((2, 5)), [1, 2]), "targets"),
    (lambda: pessimistic_ranks(np.zeros((2, 5)), [2]), "targets"),
    (lambda: pessimistic_ranks(np.zeros(5), [2]), "scores"),
    (lambda: pessimistic_ranks(np.full((1, 5), np.nan), [2]), "scores"),
    (lambda: next_item_split(toy_data(), "train"), "split"),
    (lambda: next_item_split(SimpleNamespace(train=[], valid=[]), "valid"), "data"),
    (lambda: evaluate_next_item(object(), next_item_split(toy_data(), "valid")), "model"),
    (lambda: evaluate_next_item(LastItemPlusOne(), [np.array([2])]), "split"),
    (lambda: next_item_metrics(np.array([-1, 2])), "ranks"),
])
def test_bad_input_names_the_field(call, field):
    with pytest.raises(ValueError, match=f"^{field}"):
        call()


def test_split_repr_and_length():
    s = NextItemSplit("valid", [np.array([2, 3]), np.array([4])], np.array([5, 6]))
    assert len(s) == 2 and "2 users" in repr(s)


class HistoryFirst:
    """Scores the user's own earlier items highest (item code = score among them), then the rest."""

    def score_next(self, histories):
        out = torch.zeros(len(histories), 10)
        for u, h in enumerate(histories):
            out[u, torch.as_tensor(h)] = 1.0 + torch.as_tensor(h, dtype=torch.float32) / 10
        return out


def test_exclude_seen_removes_the_earlier_items_from_the_candidates():
    split = next_item_split(toy_data(), "test")   # histories [2, 3, 4, 7] and [5, 6, 3]; targets 8, 9
    _, with_seen = evaluate_next_item(HistoryFirst(), split, ks=(1,), ndcg_ks=(), return_ranks=True)
    _, without = evaluate_next_item(HistoryFirst(), split, ks=(1,), ndcg_ks=(), return_ranks=True,
                                    exclude_seen=True)
    # every earlier item outranks the target (then 0-score ties count against it): brute force
    assert with_seen.tolist() == [7, 7]
    # excluded: only the other 0-score items remain ahead (8 codes minus 4 (or 3) seen, minus the target)
    assert without.tolist() == [8 - 4 - 1, 8 - 3 - 1]
    repeat = NextItemSplit("test", [np.array([2, 8])], np.array([8]))
    with pytest.raises(ValueError, match="exclude_seen"):
        evaluate_next_item(HistoryFirst(), repeat, exclude_seen=True)


def test_sequence_protocol_reports_both_rankings_and_the_seen_count():
    from recbook import bench

    class Data(SimpleNamespace):
        def __len__(self):
            return len(self.users)

        def targets(self, split):
            return self.test

        def seen(self, split):
            return [np.r_[s, v] for s, v in zip(self.train, self.valid)]

    d = Data(users=np.array([1, 2]), train=[np.array([2, 3, 4]), np.array([5, 6])], valid=np.array([7, 3]),
             test=np.array([8, 9]), n_items=10)

    class Model:
        def score_items(self, data, split):
            return HistoryFirst().score_next(data.seen(split))

    out = bench.PROTOCOLS["sequence"].evaluate(Model(), d, "test")
    # nothing excluded: ranks 7 and 7 (as above); excluded: ranks 3 and 4
    assert out["recall@10"] == 1.0 and out["mrr@10"] == pytest.approx((1 / 8 + 1 / 8) / 2)
    assert out["mrr@10_excl"] == pytest.approx((1 / 4 + 1 / 5) / 2)
    assert out["recall@20_excl"] == 1.0
    # top 20 of 8 rankable codes: all 4 (user 0) and 3 (user 1) earlier items are in it
    assert out["seen@20"] == pytest.approx(3.5)
    assert bench.seen_in_top(np.array([[0, 0, 5.0, 1, 4, 2]]), [np.array([3, 4])], k=2).tolist() == [1]

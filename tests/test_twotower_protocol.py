"""The two-tower model and the popularity baseline on the leaderboard's ``retrieval`` protocol:
tower features from :func:`recbook.data.sequence_protocol`, training examples and counts, scores
that read only the past, and the protocol's metrics against a brute-force count."""
from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch

from recbook import bench
from recbook.data import SequenceData, sequence_protocol, year_bucket
from recbook.data.protocols import age_bucket
from recbook.data.retrieval import USER_FIELDS, tower_features
from recbook.models import Popularity, TwoTower, two_tower_examples, two_tower_loss


@pytest.fixture
def seq(make_ml):
    return sequence_protocol(make_ml(n_users=15, n_items=25, n_ratings=200, seed=3))


def test_tower_features_of_the_sequence_protocol_decode_to_the_raw_tables(make_ml):
    ml = make_ml(n_users=15, n_items=25, n_ratings=200, seed=3)
    feat = tower_features(sequence_protocol(ml))
    s = feat.schema
    for _, u in ml.users.iterrows():
        row = feat.users[int(u["user_id"]) + 1].tolist()  # user code = position in sorted users + 2
        got = dict(zip(USER_FIELDS, (s[f].decode(c) for f, c in zip(USER_FIELDS, row))))
        assert got == {"user_id": u["user_id"], "age_bucket": age_bucket([u["age"]]).iloc[0],
                       "gender": str(u["gender"]), "occupation": str(u["occupation"]),
                       "zip1": str(u["zip_code"])[0]}
    years = year_bucket(ml.items["release_year"])
    for i, item in ml.items.iterrows():
        code = int(item["item_id"]) + 1
        assert s["year_bucket"].decode(int(feat.items[code, 1])) == years.iloc[i]
        assert feat.titles[code] == item["title"]
    with pytest.raises(ValueError, match="sequence_protocol"):
        tower_features(SequenceData(np.array([1]), [np.array([2])], np.array([3]), np.array([4]), 27))


def test_popularity_counts_training_items_and_its_metrics_match_a_brute_force_count(seq):
    model = Popularity.from_data(seq)
    counts = Counter(int(i) for s in seq.train for i in s)
    expected = np.array([counts.get(c, 0) for c in range(seq.n_items)], dtype=np.float32)
    scores = model.score_items(seq, "test").numpy()
    assert scores.shape == (len(seq), seq.n_items)
    np.testing.assert_array_equal(scores, np.tile(expected, (len(seq), 1)))
    # Recall@K by hand: the target's pessimistic rank among unseen, non-reserved items.
    report = bench.PROTOCOLS["retrieval"].evaluate(model, seq, "test")
    seen = seq.history("test")
    ranks = []
    for u, t in enumerate(seq.test):
        others = [c for c in range(2, seq.n_items) if c != t and c not in set(seen[u].tolist())]
        ranks.append(sum(expected[c] >= expected[t] for c in others))
    for k in (10, 20):
        assert report[f"recall@{k}"] == pytest.approx(np.mean(np.array(ranks) < k))
    with pytest.raises(ValueError, match="counts"):
        Popularity(torch.tensor([1, 2]))


def test_two_tower_scores_read_only_what_came_before_the_split_target(seq):
    torch.manual_seed(0)
    model = TwoTower.from_data(seq, dim=8, hidden=(16,), out_dim=8, history_len=5).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.3)
    valid, test = model.score_items(seq, "valid"), model.score_items(seq, "test")
    assert valid.shape == test.shape == (len(seq), seq.n_items)
    moved = seq.test.copy()
    moved[0] = next(c for c in range(2, seq.n_items) if c not in (seq.test[0], seq.valid[0]))
    other = SequenceData(seq.users, seq.train, seq.valid, moved, seq.n_items, seq.schema, seq.user_features,
                         seq.catalogue)
    torch.testing.assert_close(model.score_items(other, "test"), test)  # the test target is never read
    new_valid = seq.valid.copy()
    new_valid[0] = moved[0]
    other = SequenceData(seq.users, seq.train, new_valid, seq.test, seq.n_items, seq.schema, seq.user_features,
                         seq.catalogue)
    torch.testing.assert_close(model.score_items(other, "valid"), valid)  # nor the validation target
    changed = model.score_items(other, "test")  # ... until it is history, for the test target
    assert not torch.allclose(changed[0], test[0]) and torch.allclose(changed[1:], test[1:])


def test_training_examples_and_the_loss_counts_agree_with_the_sequences(seq):
    ex = two_tower_examples(seq, history_len=4)
    targets = [int(i) for s in seq.train for i in s[1:]]  # every position but the first
    assert ex["item_id"].tolist() == targets
    u0 = np.asarray(seq.train[0])
    np.testing.assert_array_equal(ex["hist_item"][0].numpy(), np.r_[np.zeros(3, np.int64), u0[:1]])
    torch.manual_seed(0)
    model = TwoTower.from_data(seq, correction="counts", dim=8, hidden=(), out_dim=8)
    probs = np.bincount(targets, minlength=seq.n_items) / len(targets)
    np.testing.assert_allclose(model.loss_fn.item_probs.numpy(), probs)
    loss = two_tower_loss(model, ex.subset(torch.arange(6)))
    assert loss.dim() == 0 and torch.isfinite(loss)
    with pytest.raises(ValueError, match="loss_fn"):
        two_tower_loss(TwoTower(model.features), ex.subset(torch.arange(6)))


def test_a_two_tower_entry_trains_and_tests_on_the_retrieval_protocol(seq):
    entry = bench.Entry("TT-test", "retrieval", TwoTower.from_data,
                        {"correction": "counts", "dim": 8, "hidden": (), "out_dim": 8},
                        dict(batch_size=64, lr=1e-2, epochs=3, patience=3, loss_fn=two_tower_loss),
                        train_data=two_tower_examples)
    row = bench.run_one(entry, seq, 0, threads=1, quick=False, progress=False)
    metrics = [f"test_{m}@{k}" for m in ("recall", "ndcg") for k in bench.RETRIEVAL_KS]
    assert all(0 <= row[m] <= 1 for m in metrics) and row["epochs"] == 3
    again = bench.run_one(entry, seq, 0, threads=1, quick=False, progress=False)
    assert [again[m] for m in metrics] == [row[m] for m in metrics]  # same seed, same numbers


def test_history_len_pools_only_the_most_recent_items(seq):
    torch.manual_seed(0)
    model = TwoTower.from_data(seq, dim=8, hidden=(16,), out_dim=8, history_len=3).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.3)
    users = torch.tensor([2, 2])
    full = model.user_vectors({"user_id": users, "hist_item": torch.tensor([[9, 8, 3, 4, 5], [0, 0, 0, 4, 5]])})
    short = model.user_vectors({"user_id": users, "hist_item": torch.tensor([[3, 4, 5], [0, 4, 5]])})
    torch.testing.assert_close(full, short)  # older items than the last three are never read
    with pytest.raises(ValueError, match="history_len"):
        TwoTower.from_data(seq, history_len=0)

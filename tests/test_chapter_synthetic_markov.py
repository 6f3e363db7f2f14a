"""The planted Markov chain: the sequences follow the planted transitions, and GRU4Rec trained on
them recovers the planted successors and comes close to the oracle."""
from __future__ import annotations

import numpy as np
import pytest

from recbook.chapters.synthetic import planted_markov_chain
from recbook.models.gru4rec import GRU4RecConfig, train_gru4rec
from recbook.next_item import evaluate_next_item, next_item_split


def test_sequences_follow_the_planted_transitions():
    m = planted_markov_chain(n_items=8, n_sequences=600, length=(20, 40), out_degree=2, noise=0.1, seed=3)
    n = 8
    np.testing.assert_allclose(m.transitions.sum(axis=1), 1.0)
    assert m.n_items == n + 2
    for i in range(n):  # the planted successors carry the weight, never the item itself
        assert i not in m.successors[i]
        assert m.transitions[i, m.successors[i]].sum() == pytest.approx(0.9 + 0.1 * 2 / n)
    counts = np.zeros((n, n))
    for s in m.sequences:
        assert s.min() >= 2 and s.max() < n + 2 and 20 <= len(s) <= 40
        np.add.at(counts, (s[:-1] - 2, s[1:] - 2), 1)
    # Pearson chi-square per row against the planted row: 7 degrees of freedom, 99.99% ~ 29.9
    for i in range(n):
        e = counts[i].sum() * m.transitions[i]
        assert ((counts[i] - e) ** 2 / e).sum() < 29.9


def test_same_seed_same_sequences():
    a, b = planted_markov_chain(seed=5), planted_markov_chain(seed=5)
    assert all(np.array_equal(x, y) for x, y in zip(a.sequences, b.sequences))
    c = planted_markov_chain(seed=6)
    assert not all(np.array_equal(x, y) for x, y in zip(a.sequences, c.sequences))


def test_split_and_oracle():
    m = planted_markov_chain(n_items=10, n_sequences=50, seed=0)
    d = m.split()
    assert [len(t) + 2 for t in d.train] == [len(s) for s in m.sequences]
    te = next_item_split(d, "test")
    scores = m.score_next(te.histories)
    last = np.array([h[-1] for h in te.histories])
    np.testing.assert_allclose(scores[:, 2:].numpy(), m.transitions[last - 2])
    # the oracle ranks the true successor distribution: its recall@out_degree is high
    assert evaluate_next_item(m, te, ks=(3,), ndcg_ks=())["recall@3"] > 0.8


def test_gru4rec_recovers_the_planted_transitions():
    m = planted_markov_chain(n_items=20, n_sequences=300, length=(10, 30), seed=0)
    d = m.split()
    cfg = GRU4RecConfig(loss="cross-entropy", layers=(32,), batch_size=32, n_negatives=16, alpha=0.0,
                        lr=0.1, epochs=6, patience=6, metric="recall@3")
    model, _ = train_gru4rec(d, cfg, seed=0)
    te = next_item_split(d, "test")
    got = evaluate_next_item(model, te, ks=(3,), ndcg_ks=())["recall@3"]
    oracle = evaluate_next_item(m, te, ks=(3,), ndcg_ks=())["recall@3"]
    assert got > 0.9 * oracle
    learned = m.learned_transitions(model)
    np.testing.assert_allclose(learned.sum(axis=1), 1.0)
    top = np.argsort(-learned, axis=1)[:, :3]
    found = np.mean([len(set(top[i]) & set(m.successors[i])) / 3 for i in range(20)])
    assert found > 0.85
    # and the cross-entropy model's probabilities are close to the planted ones
    assert 0.5 * np.abs(learned - m.transitions).sum(axis=1).mean() < 0.3


@pytest.mark.parametrize("kwargs, field", [
    (dict(n_items=0), "n_items"),
    (dict(n_items=3, out_degree=3), "out_degree"),
    (dict(length=(2, 5)), "length"),
    (dict(length=(9, 5)), "length"),
    (dict(noise=1.0), "noise"),
    (dict(noise=-0.1), "noise"),
    (dict(seed=1.5), "seed"),
])
def test_bad_settings_name_the_field(kwargs, field):
    with pytest.raises(ValueError, match=f"^{field}"):
        planted_markov_chain(**kwargs)

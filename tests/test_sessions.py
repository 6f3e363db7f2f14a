"""Session-parallel mini-batches and popularity sampling, checked against a slot-by-slot simulation
written independently here, and against the closed-form sampling probabilities."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from recbook.data.sessions import (
    PopularitySampler,
    SessionParallelData,
    item_counts,
    session_parallel_schedule,
)


def brute_force_slots(sequences, batch_size, order=None):
    """Reference: simulate the slots step by step, as GRU4Rec's paper describes them.

    Returns one list per step of (sequence index, position, slot, new_sequence) for the active
    slots, in slot order."""
    order = list(range(len(sequences))) if order is None else list(order)
    queue = [i for i in order if len(sequences[i]) >= 2]
    slots = [None] * batch_size  # per slot: [sequence, next position] or None
    steps = []
    while True:
        for s in range(batch_size):  # free slots take the next sequence, lowest slot first
            if slots[s] is None and queue:
                slots[s] = [queue.pop(0), 0, True]
        if all(x is None for x in slots):
            return steps
        rows = []
        for s in range(batch_size):
            if slots[s] is not None:
                seq, pos, new = slots[s]
                rows.append((seq, pos, s, new))
                slots[s][1] += 1
                slots[s][2] = False
                if slots[s][1] == len(sequences[seq]) - 1:
                    slots[s] = None
        steps.append(rows)


def distinct_sequences(lengths, n_items=400, seed=0):
    """Sequences whose items are all distinct, so that an item identifies its sequence."""
    rng = np.random.default_rng(seed)
    codes = rng.permutation(np.arange(2, n_items))[: sum(lengths)]
    return np.split(codes, np.cumsum(lengths)[:-1]), n_items


LENGTHS = [5, 2, 9, 3, 1, 7, 4, 12, 2, 6, 3, 8, 5]


@pytest.mark.parametrize("batch_size", [1, 3, 4, 20])
def test_batches_match_a_slot_by_slot_simulation(batch_size):
    seqs, n = distinct_sequences(LENGTHS)
    data = SessionParallelData(seqs, n, n_negatives=0, order="fixed")
    expected = brute_force_slots(seqs, batch_size)
    got = list(data.batches(batch_size, shuffle=True, generator=torch.Generator().manual_seed(0)))
    assert len(got) == len(expected) == data.n_batches(batch_size)
    prev_slots = []
    for batch, rows in zip(got, expected):
        assert batch["item"].tolist() == [int(seqs[q][p]) for q, p, _, _ in rows]
        assert batch["target"].tolist() == [int(seqs[q][p + 1]) for q, p, _, _ in rows]
        # prev: -1 exactly where a new sequence takes the slot, else the slot's previous row
        want_prev = [-1 if new else prev_slots.index(s) for _, _, s, new in rows]
        assert batch["prev"].tolist() == want_prev
        prev_slots = [s for _, _, s, _ in rows]
        assert batch["negatives"].shape == (0,)


def test_every_event_is_used_exactly_once_and_in_order():
    seqs, n = distinct_sequences(LENGTHS, seed=1)
    data = SessionParallelData(seqs, n, n_negatives=0)
    owner = {int(c): (q, p) for q, s in enumerate(seqs) for p, c in enumerate(s)}
    seen = []
    chains = {}  # row of the previous step -> sequence read there
    for batch in data.batches(4, shuffle=True, generator=torch.Generator().manual_seed(3)):
        new_chains = {}
        for r, (i, t, prev) in enumerate(zip(batch["item"].tolist(), batch["target"].tolist(),
                                             batch["prev"].tolist())):
            q, p = owner[i]
            assert owner[t] == (q, p + 1)  # the target is the next event of the same sequence
            assert (prev == -1) == (p == 0)  # state resets exactly at a sequence's first event
            if prev >= 0:
                assert chains[prev] == q  # the state carried in comes from the same sequence
            new_chains[r] = q
            seen.append((q, p))
        chains = new_chains
    expected = [(q, p) for q, s in enumerate(seqs) for p in range(len(s) - 1)]
    assert sorted(seen) == expected  # every (input, next) pair once; a 1-item sequence gives none
    assert len(seen) == len(data)
    for q in range(len(seqs)):  # within a sequence, positions come in order
        ps = [p for qq, p in seen if qq == q]
        assert ps == sorted(ps)


def test_shuffle_changes_the_order_fixed_order_does_not():
    seqs, n = distinct_sequences(LENGTHS)
    firsts = lambda d, seed: [b["item"].tolist() for b in d.batches(3, shuffle=True,  # noqa: E731
                                                                   generator=torch.Generator().manual_seed(seed))][0]
    shuffled = SessionParallelData(seqs, n, n_negatives=0, order="shuffle")
    fixed = SessionParallelData(seqs, n, n_negatives=0, order="fixed")
    assert firsts(shuffled, 0) != firsts(shuffled, 1)
    assert firsts(shuffled, 0) == firsts(shuffled, 0)
    assert firsts(fixed, 0) == firsts(fixed, 1) == [int(seqs[0][0]), int(seqs[1][0]), int(seqs[2][0])]


def test_longest_first_starts_the_longest_sequences_and_shuffles_ties():
    seqs, n = distinct_sequences([3, 9, 3, 5, 9, 3, 2])
    data = SessionParallelData(seqs, n, n_negatives=0, order="longest-first")
    owner = {int(c): q for q, s in enumerate(seqs) for c in s}
    def starts(seed):
        out = []
        for b in data.batches(2, shuffle=True, generator=torch.Generator().manual_seed(seed)):
            out += [owner[i] for i, p in zip(b["item"].tolist(), b["prev"].tolist()) if p < 0]
        return out
    orders = {tuple(starts(seed)) for seed in range(20)}
    for o in orders:
        assert [len(seqs[q]) for q in o] == [9, 9, 5, 3, 3, 3, 2]
    assert len(orders) > 1  # equal lengths come in a new random order
    # no shuffle: ties keep the given order
    fixed = [owner[i] for b in data.batches(2) for i, p in zip(b["item"].tolist(), b["prev"].tolist()) if p < 0]
    assert fixed == [1, 4, 3, 0, 2, 5, 6]


def test_schedule_shrinks_once_no_sequence_is_left():
    sched = session_parallel_schedule([3, 11, 3, 3], batch_size=2)
    sizes = np.diff(sched.step_start)
    # slot 0: seq 0 (2 steps), seq 2 (2), seq 3 (2); slot 1: seq 1 (10 steps)
    assert sizes.tolist() == [2] * 6 + [1] * 4
    assert sched.n_steps == 10


def test_negatives_are_shared_and_drawn_per_step():
    seqs, n = distinct_sequences(LENGTHS)
    data = SessionParallelData(seqs, n, n_negatives=16, alpha=1.0)
    batches = list(data.batches(4, generator=torch.Generator().manual_seed(0)))
    seen_items = set(np.concatenate(seqs).tolist())
    for b in batches:
        assert b["negatives"].shape == (16,)
        assert set(b["negatives"].tolist()) <= seen_items
    assert not torch.equal(batches[0]["negatives"], batches[1]["negatives"])
    again = list(data.batches(4, generator=torch.Generator().manual_seed(0)))
    assert all(torch.equal(a["negatives"], b["negatives"]) for a, b in zip(batches, again))


def test_log_q_is_the_log_weight_each_candidate_was_drawn_with():
    seqs = [np.array([2, 3, 3, 4, 2]), np.array([5, 2, 3])]  # counts: 2 -> 3, 3 -> 3, 4 -> 1, 5 -> 1
    counts = {2: 3, 3: 3, 4: 1, 5: 1}
    data = SessionParallelData(seqs, 7, n_negatives=5, alpha=0.5)
    for b in data.batches(2, generator=torch.Generator().manual_seed(1)):
        cands = b["target"].tolist() + b["negatives"].tolist()
        expected = [np.log(counts[c]) for c in b["target"].tolist()]
        expected += [0.5 * np.log(counts[c]) for c in b["negatives"].tolist()]
        assert b["log_q"].shape == (len(cands),)
        assert np.allclose(b["log_q"].numpy(), expected, atol=1e-6)


@pytest.mark.parametrize("alpha", [0.0, 0.5, 1.0])
def test_sampling_follows_popularity_to_the_alpha(alpha):
    counts = np.array([0, 0, 50, 10, 1, 0, 200, 3, 30])  # codes 0, 1 reserved; code 5 unseen
    sampler = PopularitySampler(counts, alpha)
    n = 200_000
    draws = sampler.sample(n, torch.Generator().manual_seed(0)).numpy()
    observed = np.bincount(draws, minlength=len(counts))
    seen = counts > 0
    expected_p = np.where(seen, np.where(seen, counts, 1) ** alpha, 0.0)
    expected_p = expected_p / expected_p.sum()
    assert observed[~seen].sum() == 0  # never a reserved or unseen code
    # Pearson chi-square over the seen items: 5 degrees of freedom, 99.9% quantile 20.5
    e = n * expected_p[seen]
    chi2 = float(((observed[seen] - e) ** 2 / e).sum())
    assert chi2 < 20.5
    if alpha == 0.0:
        assert np.allclose(expected_p[seen], 1 / seen.sum())


def test_item_counts():
    assert item_counts([np.array([2, 3, 3]), np.array([4, 2])], 6).tolist() == [0, 0, 2, 2, 1, 0]


@pytest.mark.parametrize("kwargs, field", [
    (dict(sequences=[np.array([2, 3]), np.array([4, 1])]), "sequences[1]"),
    (dict(sequences=[np.array([2, 9])]), "sequences[0]"),
    (dict(sequences=[np.array([[2, 3]])]), "sequences[0]"),
    (dict(sequences=[np.array([2.0, 3.0])]), "sequences[0]"),
    (dict(sequences=[]), "sequences"),
    (dict(sequences=np.array([2, 3])), "sequences"),
    (dict(n_negatives=-1), "n_negatives"),
    (dict(alpha=-0.5), "alpha"),
    (dict(order="time"), "order"),
    (dict(order="longest"), "order"),
    (dict(n_items=0), "n_items"),
])
def test_bad_input_names_the_field(kwargs, field):
    args = dict(sequences=[np.array([2, 3, 4])], n_items=6)
    args.update(kwargs)
    seqs, n_items = args.pop("sequences"), args.pop("n_items")
    with pytest.raises(ValueError, match=rf"^{field.replace('[', '.').replace(']', '.')}"):
        SessionParallelData(seqs, n_items, **args)


def test_batch_size_and_too_short_sequences_are_rejected():
    data = SessionParallelData([np.array([2, 3, 4])], 6, n_negatives=0)
    with pytest.raises(ValueError, match="^batch_size"):
        next(data.batches(0))
    with pytest.raises(ValueError, match="^sequences"):
        SessionParallelData([np.array([2])], 6).n_batches(2)

"""Two-tower retrieval: tower inputs, the model, the sampled softmax with logQ correction, the
streaming frequency estimator and full-corpus evaluation, each against an independent reference."""
from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch

from recbook.data import GENRES, SequenceData
from recbook.data.retrieval import RetrievalData, retrieval_data, tower_features
from recbook.models.twotower import TwoTower
from recbook.retrieval import evaluate_retrieval, train_two_tower
from recbook.sampled_softmax import (
    FrequencyEstimator, NegativeSampler, SampledSoftmaxLoss, sampled_softmax_loss,
)


def make_ml(n_users=12, n_items=30, seed=0):
    """Users and items shaped like MovieLens-100K's tables (no ratings: sequences are built apart)."""
    rng = np.random.default_rng(seed)
    users = pd.DataFrame({
        "user_id": np.arange(1, n_users + 1, dtype=np.int64),
        "age": rng.integers(10, 70, n_users).astype(np.int64),
        "gender": pd.Categorical(rng.choice(["F", "M"], n_users)),
        "occupation": pd.Categorical(rng.choice(["artist", "writer", "other"], n_users)),
        "zip_code": pd.array(rng.choice(["12345", "T8H1N", "90210"], n_users), dtype="string"),
    })
    items = pd.DataFrame({"item_id": np.arange(1, n_items + 1, dtype=np.int64),
                          "title": pd.array([f"m{i}" for i in range(1, n_items + 1)], dtype="string"),
                          "release_year": pd.array([None] + list(rng.integers(1930, 1999, n_items - 1)),
                                                   dtype="Int64")})
    flags = rng.random((n_items, len(GENRES))) < 0.2
    for j, g in enumerate(GENRES):
        items[g] = flags[:, j]
    return SimpleNamespace(users=users, items=items)


def make_seq(ml, lengths, seed=0):
    """Leave-last-out sequences of item codes (raw id + 1) with the given total lengths."""
    rng = np.random.default_rng(seed)
    n_items = len(ml.items)
    seqs = [rng.choice(n_items, size=n, replace=False) + 2 for n in lengths]
    return SequenceData(ml.users["user_id"].to_numpy()[: len(lengths)], [s[:-2] for s in seqs],
                        np.array([s[-2] for s in seqs]), np.array([s[-1] for s in seqs]), n_items + 2)


@pytest.fixture(scope="module")
def small():
    ml = make_ml()
    feat = tower_features(ml)
    seq = make_seq(ml, [5, 3, 8, 4, 6, 7, 3, 9, 5, 4, 6, 10])
    return ml, feat, seq


# --------------------------------------------------------------------------------------------
# Tower features and examples
# --------------------------------------------------------------------------------------------

def test_tower_features_follow_the_one_id_space(small):
    ml, feat, _ = small
    assert feat.n_items == len(ml.items) + 2 and feat.n_users == len(ml.users) + 2
    # the catalogue's rows: row c holds item code c (0 padding, 1 unknown), no genres on the reserved rows
    np.testing.assert_array_equal(feat.items[:, 0].numpy(), np.arange(feat.n_items))
    assert (feat.genres[:2] == 0).all() and (feat.users[:2] == 0).all()
    # item code = raw id + 1, for every item
    np.testing.assert_array_equal(feat.items[2:, 0].numpy(), ml.items["item_id"].to_numpy() + 1)
    np.testing.assert_array_equal(feat.users[2:, 0].numpy(), ml.users["user_id"].to_numpy() + 1)
    # genres row of raw item 7 decodes to its flags
    raw = 7
    codes = feat.genres[raw + 1]
    names = {feat.schema["genres"].decode(int(c)) for c in codes if c}
    flags = ml.items.loc[ml.items["item_id"] == raw, list(GENRES)].iloc[0]
    assert names == {g for g in GENRES if flags[g]}
    assert feat.titles[raw + 1] == f"m{raw}"


def test_retrieval_data_examples_match_a_hand_built_case():
    ml = make_ml(n_users=2, n_items=9)
    feat = tower_features(ml)
    # user 1 (code 2): 3 4 5 6 | valid 7 | test 8 ; user 2 (code 3): 9 10 | valid 4 | test 3
    seq = SequenceData(np.array([1, 2]), [np.array([3, 4, 5, 6]), np.array([9, 10])],
                       np.array([7, 4]), np.array([8, 3]), 11)
    data = retrieval_data(seq, feat, history_len=2, min_history=1)
    np.testing.assert_array_equal(data.train["item_id"].numpy(), [4, 5, 6, 10])
    np.testing.assert_array_equal(data.train["user_id"].numpy(), [2, 2, 2, 3])
    np.testing.assert_array_equal(data.train["hist_item"].numpy(), [[0, 3], [3, 4], [4, 5], [0, 9]])
    np.testing.assert_array_equal(data.valid.users["hist_item"].numpy(), [[5, 6], [9, 10]])
    np.testing.assert_array_equal(data.test.users["hist_item"].numpy(), [[6, 7], [10, 4]])
    np.testing.assert_array_equal(data.test.targets.numpy(), [8, 3])
    assert [e.tolist() for e in data.valid.exclude] == [[3, 4, 5, 6], [9, 10]]
    assert [e.tolist() for e in data.test.exclude] == [[3, 4, 5, 6, 7], [4, 9, 10]]
    np.testing.assert_array_equal(np.flatnonzero(data.item_counts.numpy()), [4, 5, 6, 10])
    data0 = retrieval_data(seq, feat, history_len=3, min_history=0)
    np.testing.assert_array_equal(data0.train["item_id"].numpy(), [3, 4, 5, 6, 9, 10])
    np.testing.assert_array_equal(data0.train["hist_item"][0].numpy(), [0, 0, 0])


def test_retrieval_data_rejects_raw_ids_and_names_the_field(small):
    _, feat, seq = small
    raw = SequenceData(seq.users, [s - 1 for s in seq.train], seq.valid - 1, seq.test - 1, seq.n_items - 1)
    with pytest.raises(ValueError, match="seq.n_items"):
        retrieval_data(raw, feat)
    bad = SequenceData(seq.users, [s - 1 for s in seq.train], seq.valid, seq.test, seq.n_items)
    bad.train[0][0] = 1
    with pytest.raises(ValueError, match="seq.train: item code 1"):
        retrieval_data(bad, feat)
    with pytest.raises(ValueError, match="history_len"):
        retrieval_data(seq, feat, history_len=0)
    with pytest.raises(ValueError, match="user_id: raw id 99"):
        retrieval_data(SequenceData(np.r_[seq.users[:-1], 99], seq.train, seq.valid, seq.test, seq.n_items), feat)


# --------------------------------------------------------------------------------------------
# The model
# --------------------------------------------------------------------------------------------

def user_batch(feat, hist, users=None):
    hist = torch.as_tensor(hist, dtype=torch.long)
    users = torch.as_tensor(users if users is not None else [2] * len(hist), dtype=torch.long)
    return {"user_id": users, "hist_item": hist}


def randomised(model, std=0.3):
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, std)
    return model


def test_vectors_are_unit_length_and_logits_bounded_by_the_temperature(small):
    _, feat, _ = small
    torch.manual_seed(0)
    model = randomised(TwoTower(feat, dim=8, hidden=(16,), out_dim=8, temperature=0.05))
    items = model.item_vectors()
    assert items.shape == (feat.n_items, 8)
    torch.testing.assert_close(items.norm(dim=1), torch.ones(feat.n_items))
    b = user_batch(feat, [[0, 3, 4], [5, 6, 7]], [2, 5]) | {"item_id": torch.tensor([9, 20])}
    logits = model(b)
    assert logits.shape == (2,) and (logits.abs() <= 1 / 0.05 + 1e-4).all()
    # the logit is the cosine of the two vectors over the temperature
    u = model.user_vectors(b)
    cos = torch.nn.functional.cosine_similarity(u, items[[9, 20]], dim=1)
    torch.testing.assert_close(logits, cos / 0.05)


def test_history_is_an_order_free_mean_that_ignores_padding(small):
    _, feat, _ = small
    torch.manual_seed(1)
    model = randomised(TwoTower(feat, dim=8, hidden=(16,), out_dim=8)).eval()
    a = model.user_vectors(user_batch(feat, [[0, 0, 3, 4]]))
    b = model.user_vectors(user_batch(feat, [[4, 3]]))
    c = model.user_vectors(user_batch(feat, [[3, 4, 3, 4]]))  # same mean as [3, 4]
    d = model.user_vectors(user_batch(feat, [[3, 5]]))
    torch.testing.assert_close(a, b)
    torch.testing.assert_close(a, c)
    assert not torch.allclose(a, d)


def test_recent_pool_reads_the_last_columns_of_the_history(small):
    _, feat, _ = small
    torch.manual_seed(5)
    model = randomised(TwoTower(feat, dim=8, hidden=(16,), out_dim=8, recent=2)).eval()
    base = model.user_vectors(user_batch(feat, [[3, 4, 5]]))
    # same items, same mean; the two most recent differ -> a different vector
    assert not torch.allclose(base, model.user_vectors(user_batch(feat, [[5, 4, 3]])))
    # swapping the two most recent keeps both pools
    torch.testing.assert_close(base, model.user_vectors(user_batch(feat, [[3, 5, 4]])))
    # with the recent pool's input weights zeroed, only the full mean is left: order no longer matters
    with torch.no_grad():
        first = model.user_mlp[0]
        first.weight[:, -8:] = 0
    torch.testing.assert_close(model.user_vectors(user_batch(feat, [[3, 4, 5]])),
                               model.user_vectors(user_batch(feat, [[5, 4, 3]])))
    with pytest.raises(ValueError, match="recent"):
        TwoTower(feat, recent=0)


def test_item_tower_sees_only_item_features_and_embeds_the_catalogue_at_once(small):
    _, feat, _ = small
    torch.manual_seed(2)
    model = randomised(TwoTower(feat, dim=8, hidden=(16,), out_dim=8)).eval()
    every = model.item_vectors()
    some = model.item_vectors(torch.tensor([7, 2, 31]))
    torch.testing.assert_close(some, every[[7, 2, 31]])
    # Two items with the same year and genres differ only through their id embedding:
    # zeroing the item_id rows makes them identical.
    with torch.no_grad():
        model.embedding.field_weight("item_id").zero_()
    year, genres = feat.items[:, 1], feat.genres
    same = [(i, j) for i in range(2, feat.n_items) for j in range(i + 1, feat.n_items)
            if year[i] == year[j] and torch.equal(genres[i], genres[j])]
    vec = model.item_vectors()
    for i, j in same:
        torch.testing.assert_close(vec[i], vec[j])


def test_gradient_reaches_every_parameter(small):
    _, feat, seq = small
    data = retrieval_data(seq, feat, history_len=4)
    torch.manual_seed(3)
    model = randomised(TwoTower(feat, dim=8, hidden=(16,), out_dim=8, share_history=False), 0.1)
    loss = SampledSoftmaxLoss(feat.n_items, correction="counts", item_counts=data.item_counts, negatives=5)
    loss(model, dict(data.train.subset(slice(0, 16)))).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name


def test_model_validation_names_the_field(small):
    _, feat, _ = small
    model = TwoTower(feat, dim=4, hidden=(), out_dim=4)
    good = user_batch(feat, [[0, 3]]) | {"item_id": torch.tensor([5])}
    model(good)
    with pytest.raises(ValueError, match=r"user_id: code 99 out of range \[0, 14\)"):
        model(good | {"user_id": torch.tensor([99])})
    with pytest.raises(ValueError, match="hist_item: expected an int64"):
        model(good | {"hist_item": good["hist_item"].float()})
    with pytest.raises(ValueError, match=r"item_id: code 32 out of range"):
        model(good | {"item_id": torch.tensor([32])})
    with pytest.raises(ValueError, match="missing key 'item_id'"):
        model({k: v for k, v in good.items() if k != "item_id"})
    with pytest.raises(ValueError, match="hist_item: has 2 rows"):
        model(good | {"hist_item": torch.zeros(2, 3, dtype=torch.long)})
    with pytest.raises(ValueError, match="temperature"):
        TwoTower(feat, temperature=0)
    with pytest.raises(ValueError, match="item_fields"):
        TwoTower(feat, item_fields=("item_id", "age_bucket"))


# --------------------------------------------------------------------------------------------
# Sampled softmax, logQ and accidental hits
# --------------------------------------------------------------------------------------------

def brute_force_loss(logits, candidates, positives, log_q=None, mask_hits=True):
    """Mean over rows of -log softmax, written as explicit loops over rows and columns."""
    logits = logits.double().tolist()
    cand, pos = candidates.tolist(), positives.tolist()
    total = 0.0
    for b in range(len(pos)):
        z = [logits[b][c] - (0.0 if log_q is None else float(log_q[c])) for c in range(len(cand))]
        denom = 0.0
        for c in range(len(cand)):
            if mask_hits and c != b and cand[c] == pos[b]:
                continue
            denom += math.exp(z[c])
        total += -(z[b] - math.log(denom))
    return total / len(pos)


def test_corrected_loss_equals_brute_force():
    g = torch.Generator().manual_seed(0)
    positives = torch.tensor([5, 7, 5, 9, 3, 7, 11, 5])
    extra = torch.tensor([5, 8, 12, 3])  # two extra negatives collide with positives
    candidates = torch.cat([positives, extra])
    logits = torch.randn(8, 12, generator=g) * 3
    log_q = torch.log(torch.rand(12, generator=g) + 0.1)
    for lq in (None, log_q):
        for mask in (True, False):
            got = sampled_softmax_loss(logits, candidates, positives, log_q=lq, mask_hits=mask)
            assert got.item() == pytest.approx(brute_force_loss(logits, candidates, positives, lq, mask), rel=1e-5)


def test_accidental_hits_are_masked():
    # Rows 0 and 1 share their positive; masking makes each row's loss what it would be with the
    # other copy removed, and no gradient reaches the masked entries.
    logits = torch.tensor([[2.0, 2.0, 0.5, -1.0], [1.0, 3.0, 0.0, 0.2], [0.3, 0.1, 1.0, 0.0],
                           [0.0, 0.0, 0.0, 2.0]], requires_grad=True)
    pos = torch.tensor([4, 4, 6, 8])
    loss = sampled_softmax_loss(logits, pos, pos, reduction="none")
    expected0 = -(2.0 - math.log(math.exp(2.0) + math.exp(0.5) + math.exp(-1.0)))
    assert loss[0].item() == pytest.approx(expected0, rel=1e-6)
    loss.sum().backward()
    assert logits.grad[0, 1] == 0 and logits.grad[1, 0] == 0
    assert (logits.grad[2:, :] != 0).all()
    unmasked = sampled_softmax_loss(logits.detach(), pos, pos, mask_hits=False, reduction="none")
    assert unmasked[0] > loss[0] + 0.5  # the duplicate counted as a negative costs ~log 2 here


def test_loss_fn_corrects_with_counts_and_extra_negatives(small):
    _, feat, seq = small
    data = retrieval_data(seq, feat, history_len=4)
    torch.manual_seed(4)
    model = randomised(TwoTower(feat, dim=8, hidden=(16,), out_dim=8, temperature=0.2), 0.2)
    batch = dict(data.train.subset(slice(0, 12)))
    counts = data.item_counts
    m = 6
    loss_fn = SampledSoftmaxLoss(feat.n_items, correction="counts", item_counts=counts, negatives=m, seed=7)
    got = loss_fn(model, batch).item()
    # Reference: the same draws from an identically seeded sampler; Q(j) = B p_j + M / (n - 2).
    extra = NegativeSampler.uniform(feat.n_items, seed=7).sample(m)
    cand = torch.cat([batch["item_id"], extra])
    with torch.no_grad():
        u = model.user_vectors(batch)
        v = model.item_vectors(cand)
    logits = u @ v.T / 0.2
    p = counts / counts.sum()
    q = [12 * float(p[c]) + m / (feat.n_items - 2) for c in cand.tolist()]
    want = brute_force_loss(logits, cand, batch["item_id"], torch.log(torch.tensor(q)))
    assert got == pytest.approx(want, rel=1e-5)
    # Without correction the loss is the plain softmax over the same candidates.
    plain = SampledSoftmaxLoss(feat.n_items, negatives=m, seed=7)(model, batch).item()
    assert plain == pytest.approx(brute_force_loss(logits, cand, batch["item_id"]), rel=1e-5)


def test_popular_items_are_pushed_up_by_the_correction():
    # With log Q subtracted, a frequent candidate's logit drops: the loss of a row whose positive
    # is rare falls when the frequent negative's Q grows.
    logits = torch.zeros(2, 2)
    cand = torch.tensor([2, 3])
    flat = sampled_softmax_loss(logits, cand, cand, log_q=torch.log(torch.tensor([1.0, 1.0])), reduction="none")
    skew = sampled_softmax_loss(logits, cand, cand, log_q=torch.log(torch.tensor([1.0, 9.0])), reduction="none")
    assert skew[0] < flat[0] and skew[1] > flat[1]
    assert skew[0].item() == pytest.approx(math.log(1 + 1 / 9))


def test_loss_validation_names_the_argument():
    with pytest.raises(ValueError, match="correction"):
        SampledSoftmaxLoss(10, correction="logq")
    with pytest.raises(ValueError, match="item_counts: required"):
        SampledSoftmaxLoss(10, correction="counts")
    with pytest.raises(ValueError, match="sampler"):
        SampledSoftmaxLoss(10, negatives=3, sampler="zipf")
    with pytest.raises(ValueError, match="candidates: the first B"):
        sampled_softmax_loss(torch.zeros(2, 2), torch.tensor([3, 2]), torch.tensor([2, 3]))
    with pytest.raises(ValueError, match="logits: has 1 columns"):
        sampled_softmax_loss(torch.zeros(2, 1), torch.tensor([3]), torch.tensor([2, 3]))
    with pytest.raises(ValueError, match="probs: reserved codes"):
        NegativeSampler(torch.ones(5))


def test_popularity_sampler_draws_in_proportion_to_counts():
    counts = torch.tensor([0.0, 0.0, 10.0, 30.0, 60.0, 0.0])
    draws = NegativeSampler.popularity(counts, seed=0).sample(20000)
    freq = torch.bincount(draws, minlength=6).double() / 20000
    torch.testing.assert_close(freq, torch.tensor([0, 0, 0.1, 0.3, 0.6, 0], dtype=torch.float64), atol=0.01, rtol=0)
    uni = torch.bincount(NegativeSampler.uniform(6, seed=0).sample(20000), minlength=6)
    assert uni[:2].sum() == 0 and (uni[2:] > 4500).all()


# --------------------------------------------------------------------------------------------
# Streaming frequency estimator
# --------------------------------------------------------------------------------------------

def test_estimator_update_matches_a_hand_computed_case():
    est = FrequencyEstimator(6, alpha=0.5)
    est.update(torch.tensor([2, 3]))       # step 0: first sightings, gap = 0 + 1
    est.update(torch.tensor([2]))          # step 1: gap of 2 becomes 0.5 * 1 + 0.5 * 1 = 1
    est.update(torch.tensor([3, 3, 2]))    # step 2: 3 seen twice (gaps 2 then 0), 2 once (gap 1)
    # item 2: 0.5 * 1 + 0.5 * 1 = 1 -> rate 1; item 3: 0.5 * 1 + 0.5 * 2 = 1.5, then 0.5 * 1.5 = 0.75
    want = torch.tensor([1.0, 1 / 0.75, 0.0], dtype=torch.float64)
    torch.testing.assert_close(est.rate(torch.tensor([2, 3, 4])), want)


@pytest.mark.parametrize("buckets", [None, 64])
def test_streaming_estimator_converges_to_the_true_rate(buckets):
    # A seeded i.i.d. stream of batches over 40 items with Zipf-like probabilities: the estimated
    # count per batch of each frequent item approaches batch_size * p (with 64 buckets and two
    # hashes, collisions only add to a bucket's count, and the larger gap of the two wins).
    n, batch, steps = 40, 32, 2500
    p = 1.0 / np.arange(1, n + 1)
    p /= p.sum()
    stream = torch.from_numpy(np.random.default_rng(0).choice(n, size=(steps, batch), p=p))
    est = FrequencyEstimator(n, alpha=0.005, n_buckets=buckets, n_hashes=2, seed=0)
    for items in stream:
        est.update(items)
    true = batch * p
    got = est.rate().numpy()
    frequent = true > 0.3
    np.testing.assert_allclose(got[frequent], true[frequent], rtol=0.15)
    # the most frequent item appears ~7.5 times per batch: duplicates count, the rate is not capped at 1
    assert got[0] > 6
    # the first updates have not converged: after 20 steps the estimate is still far off
    early = FrequencyEstimator(n, alpha=0.005)
    for items in stream[:20]:
        early.update(items)
    assert abs(early.rate()[0].item() - true[0]) > 0.5 * true[0]


def test_estimator_validation():
    with pytest.raises(ValueError, match="alpha"):
        FrequencyEstimator(10, alpha=0)
    with pytest.raises(ValueError, match=r"items: item code 10 out of range \[0, 10\)"):
        FrequencyEstimator(10).update(torch.tensor([10]))


# --------------------------------------------------------------------------------------------
# Full-corpus evaluation
# --------------------------------------------------------------------------------------------

def brute_force_rank(row, target, excluded):
    return sum(1 for j in range(2, len(row)) if j != target and j not in excluded and row[j] >= row[target])


def test_two_tower_learns_planted_taste():
    # Items 2..31 fall into three groups of 10; each user consumes 9 items of one group. Before the
    # test item a user has seen 8 of them, so 2 unseen items of the group remain among 22
    # candidates: a model that learned the groups from the histories ranks the target in its top 3
    # (chance: 3/22).
    ml = make_ml(n_users=60, n_items=30, seed=1)
    feat = tower_features(ml)
    rng = np.random.default_rng(1)
    groups = np.arange(30) % 3
    seqs = []
    for u in range(60):
        pool = np.flatnonzero(groups == u % 3) + 2
        seqs.append(rng.permutation(pool)[:9])
    seq = SequenceData(ml.users["user_id"].to_numpy(), [s[:-2] for s in seqs], np.array([s[-2] for s in seqs]),
                       np.array([s[-1] for s in seqs]), 32)
    data = retrieval_data(seq, feat, history_len=8)
    assert isinstance(data, RetrievalData)
    model, res = train_two_tower(data, seed=0, dim=8, hidden=(16,), out_dim=8, temperature=0.1, epochs=40,
                                 batch_size=64, lr=1e-2, patience=40, metric="recall@10",
                                 model_kwargs={"user_fields": ()})
    test = evaluate_retrieval(model, data.test, ks=(3, 10))
    assert test["recall@3"] > 0.8
    assert res.history["train_loss"].iloc[-1] < res.history["train_loss"].iloc[0]

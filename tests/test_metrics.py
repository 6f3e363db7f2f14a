"""recbook.metrics against brute-force references on small inputs with many ties."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from recbook import metrics as M

SEEDS = [0, 1, 2, 3, 4]


# --------------------------------------------------------------------------------------------
# Brute-force references
# --------------------------------------------------------------------------------------------


def brute_auc(labels, scores):
    pos = [s for y, s in zip(labels, scores) if y == 1]
    neg = [s for y, s in zip(labels, scores) if y == 0]
    total = 0.0
    for p in pos:
        for n in neg:
            total += 1.0 if p > n else 0.5 if p == n else 0.0
    return total / (len(pos) * len(neg))


def brute_logloss(labels, probs):
    return sum(-(y * math.log(p) + (1 - y) * math.log(1 - p)) for y, p in zip(labels, probs)) / len(labels)


def brute_gauc(labels, scores, groups):
    num = den = 0.0
    covered = 0
    for g in sorted(set(groups)):
        idx = [i for i, gi in enumerate(groups) if gi == g]
        ys = [labels[i] for i in idx]
        if len(set(ys)) < 2:
            continue
        a = brute_auc(ys, [scores[i] for i in idx])
        num += len(idx) * a
        den += len(idx)
        covered += len(idx)
    return num / den, covered / len(labels)


R = M.N_RESERVED  # columns 0 (padding) and 1 (unknown) are never candidates


def brute_ranking(scores, exclude=None, reserved=R):
    """Each user's full ranking for display: sorted by (-score, item), reserved and excluded dropped."""
    out = []
    for u, row in enumerate(scores):
        banned = set() if exclude is None else {int(i) for i in exclude[u]}
        items = [i for i in range(reserved, len(row)) if i not in banned]
        out.append(sorted(items, key=lambda i: (-row[i], i)))
    return out


def brute_rank(row, target, banned, reserved=R):
    """The pessimistic rank, by its definition: other candidates scoring >= the target."""
    return sum(1 for i in range(reserved, len(row))
               if i != target and i not in banned and row[i] >= row[target])


def brute_report(scores, targets, ks, exclude=None, reserved=R):
    report = {}
    for k in ks:
        rec, hr, ndcg, mrr = [], [], [], []
        for u, row in enumerate(scores):
            banned = set() if exclude is None else {int(i) for i in exclude[u]}
            t_u = [int(t) for t in np.atleast_1d(targets[u])]
            ranks = [brute_rank(row, t, banned, reserved) for t in t_u]
            hits = sorted(r for r in ranks if r < k)
            rec.append(len(hits) / len(t_u))
            hr.append(1.0 if hits else 0.0)
            dcg = sum(1 / math.log2(r + 2) for r in hits)
            idcg = sum(1 / math.log2(i + 2) for i in range(min(len(t_u), k)))
            ndcg.append(dcg / idcg)
            mrr.append(1 / (hits[0] + 1) if hits else 0.0)
        report[f"recall@{k}"] = sum(rec) / len(rec)
        report[f"hit_rate@{k}"] = sum(hr) / len(hr)
        report[f"ndcg@{k}"] = sum(ndcg) / len(ndcg)
        report[f"mrr@{k}"] = sum(mrr) / len(mrr)
    return report


def random_ranking_case(seed, n_users=7, n_items=12, n_targets=None, n_excluded=3):
    """Integer scores in [0, 4) (many ties); targets are item codes >= 2; each user excludes some
    items (reserved columns among them at times), never its targets."""
    rng = np.random.default_rng(seed)
    scores = rng.integers(0, 4, size=(n_users, n_items)).astype(np.float64)
    targets, exclude = [], []
    for _ in range(n_users):
        perm = R + rng.permutation(n_items - R)
        m = 1 if n_targets is None else int(rng.integers(1, n_targets + 1))
        targets.append(perm[:m])
        others = np.r_[perm[m:], np.arange(R)]
        rng.shuffle(others)
        exclude.append(np.sort(others[: int(rng.integers(0, n_excluded + 1))]))
    if n_targets is None:
        targets = np.array([t[0] for t in targets])
    return scores, targets, exclude


# --------------------------------------------------------------------------------------------
# AUC
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", SEEDS)
def test_auc_matches_pairwise_brute_force_with_ties(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(5, 60))
    labels = rng.integers(0, 2, size=n)
    labels[:2] = [0, 1]
    scores = rng.integers(0, 5, size=n)  # few distinct values: many ties
    assert M.auc(labels, scores) == pytest.approx(brute_auc(labels.tolist(), scores.tolist()), abs=1e-12)


@pytest.mark.parametrize("seed", SEEDS)
def test_auc_matches_sklearn(seed):
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, size=2000)
    scores = np.round(rng.normal(size=2000) + 0.7 * labels, 1)
    assert M.auc(labels, scores) == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)


def test_auc_accepts_torch_and_bool_and_is_rank_based():
    labels = torch.tensor([0, 1, 1, 0, 1])
    logits = torch.tensor([-1.0, 2.0, 0.5, 0.5, -3.0], requires_grad=True)
    a = M.auc(labels, logits)
    assert isinstance(a, float)
    assert a == pytest.approx(brute_auc(labels.tolist(), logits.tolist()))
    assert M.auc(labels.numpy().astype(bool), torch.sigmoid(logits)) == pytest.approx(a)


# --------------------------------------------------------------------------------------------
# LogLoss
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", SEEDS)
def test_logloss_matches_formula_and_sklearn(seed):
    from sklearn.metrics import log_loss

    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, size=200)
    logits = rng.normal(scale=3.0, size=200)
    probs = 1 / (1 + np.exp(-logits))
    expected = brute_logloss(labels.tolist(), probs.tolist())
    assert M.logloss(labels, logits) == pytest.approx(expected, rel=1e-10)
    assert M.logloss(labels, probs=probs) == pytest.approx(expected, rel=1e-10)
    assert M.logloss(labels, probs=probs) == pytest.approx(log_loss(labels, probs, labels=[0, 1]), rel=1e-10)
    assert M.logloss(torch.from_numpy(labels), torch.from_numpy(logits).float()) == pytest.approx(expected, rel=1e-5)


def test_logloss_large_logits_are_finite_and_exact():
    labels = np.array([1, 0, 1, 0])
    logits = np.array([100.0, -100.0, -100.0, 100.0])
    value = M.logloss(labels, logits)
    # two near-perfect rows (loss ~ e^-100) and two confident mistakes (loss ~ 100)
    assert math.isfinite(value)
    assert value == pytest.approx(50.0, rel=1e-12)


def test_logloss_probabilities_are_clipped():
    value = M.logloss([1, 0], probs=[0.0, 1.0])
    assert value == pytest.approx(-math.log(1e-7), rel=1e-6)
    assert M.logloss([1, 0], probs=[1.0, 0.0]) == pytest.approx(-math.log(1 - 1e-7), rel=1e-6)


# --------------------------------------------------------------------------------------------
# GAUC
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", SEEDS)
def test_gauc_matches_per_user_brute_force(seed):
    rng = np.random.default_rng(seed)
    n = 300
    groups = rng.integers(0, 40, size=n)
    labels = (rng.random(n) < 0.3).astype(int)
    scores = rng.integers(0, 4, size=n).astype(float)
    expected, coverage = brute_gauc(labels.tolist(), scores.tolist(), groups.tolist())
    value, cov = M.gauc(labels, scores, groups, return_coverage=True)
    assert value == pytest.approx(expected, abs=1e-12)
    assert cov == pytest.approx(coverage, abs=1e-12)
    assert M.gauc(labels, scores, groups) == pytest.approx(expected, abs=1e-12)
    # group ids are opaque: strings, or relabelled ints, give the same value
    assert M.gauc(labels, scores, np.array([f"u{g}" for g in groups])) == pytest.approx(expected, abs=1e-12)
    assert M.gauc(labels, scores, 1000 - groups) == pytest.approx(expected, abs=1e-12)


def test_gauc_skips_single_class_users_and_reports_coverage():
    labels = np.array([1, 0, 1, 1, 1, 0, 0, 1, 0])
    scores = np.array([0.9, 0.1, 0.5, 0.6, 0.7, 0.2, 0.8, 0.3, 0.3])
    groups = np.array([0, 0, 1, 1, 1, 2, 2, 3, 3])
    # user 0: AUC 1 (2 rows); user 1: all positive, skipped; user 2: all negative, skipped;
    # user 3: tie, AUC 0.5 (2 rows)
    value, coverage = M.gauc(labels, scores, groups, return_coverage=True)
    assert value == pytest.approx((2 * 1.0 + 2 * 0.5) / 4)
    assert coverage == pytest.approx(4 / 9)


def test_gauc_single_group_equals_auc():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, size=500)
    scores = rng.integers(0, 10, size=500)
    assert M.gauc(labels, scores, np.zeros(500, dtype=int)) == pytest.approx(M.auc(labels, scores))


def test_ctr_report_keys_and_values():
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 2, size=400)
    logits = rng.normal(size=400) + labels
    groups = rng.integers(0, 20, size=400)
    rep = M.ctr_report(labels, logits)
    assert set(rep) == {"auc", "logloss"}
    rep = M.ctr_report(labels, logits, groups)
    assert set(rep) == {"auc", "logloss", "gauc", "gauc_coverage"}
    assert rep["auc"] == pytest.approx(M.auc(labels, logits))
    assert rep["logloss"] == pytest.approx(M.logloss(labels, logits))
    assert rep["gauc"] == pytest.approx(M.gauc(labels, logits, groups))
    assert all(isinstance(v, float) for v in rep.values())


# --------------------------------------------------------------------------------------------
# Full ranking
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("k", [1, 3, 8, 12, 20])
def test_rank_items_matches_sorted_brute_force(seed, k):
    scores, _, exclude = random_ranking_case(seed, n_excluded=6)
    for excl in (None, exclude):
        top = M.rank_items(scores, k, exclude=excl)
        assert top.shape == (scores.shape[0], k)
        for u, ranking in enumerate(brute_ranking(scores.tolist(), excl)):
            expected = ranking[:k] + [-1] * max(0, k - len(ranking))  # -1 pads past the candidates
            assert top[u].tolist() == expected


def test_reserved_columns_are_never_ranked_even_with_the_best_scores():
    scores = np.zeros((2, 5))
    scores[:, :2] = 9.0  # padding and unknown score highest
    assert M.rank_items(scores, 3).tolist() == [[2, 3, 4], [2, 3, 4]]
    assert M.rank_items(scores, 3, reserved=0).tolist() == [[0, 1, 2], [0, 1, 2]]
    # the target's rank counts only real candidates: two other items tie with it
    assert M.rank_of_target(scores, [3, 4]).tolist() == [2, 2]
    with pytest.raises(ValueError, match="reserved column"):
        M.ranking_report(scores, [1, 2])


def test_ties_count_against_the_target():
    # A model that scores every item the same ranks every target last, not by its index.
    n_items = 102
    flat = np.zeros((3, n_items))
    assert M.rank_of_target(flat, [2, 50, 101]).tolist() == [99, 99, 99]
    rep = M.ranking_report(flat, [2, 50, 101], ks=(10,))
    assert rep["hit_rate@10"] == 0.0
    # ... and does worse than random scores, which hit K/n of the time
    rng = np.random.default_rng(0)
    targets = rng.integers(2, n_items, size=5000)
    random_hr = M.ranking_report(rng.normal(size=(5000, n_items)), targets, ks=(10,))["hit_rate@10"]
    collapsed_hr = M.ranking_report(np.zeros((5000, n_items)), targets, ks=(10,))["hit_rate@10"]
    assert random_hr == pytest.approx(10 / (n_items - 2), abs=0.015) and collapsed_hr == 0.0


def test_rank_items_all_ties_lower_index_first_and_inf_scores():
    scores = np.array([[0.0, 0.0, 0.0, 0.0], [-np.inf, 1.0, -np.inf, np.inf]])
    assert M.rank_items(scores, 4, reserved=0).tolist() == [[0, 1, 2, 3], [3, 1, 0, 2]]
    # an excluded item goes after even a -inf-scored item, and is never returned
    assert M.rank_items(scores, 4, exclude=[[1], [0]], reserved=0).tolist() == [[0, 2, 3, -1], [3, 1, 2, -1]]


def test_rank_items_small_blocks_give_the_same_result(monkeypatch):
    scores, targets, exclude = random_ranking_case(7, n_users=9)
    full = M.rank_items(scores, 5, exclude=exclude)
    ranks = M.rank_of_target(scores, targets, exclude=exclude)
    monkeypatch.setattr(M, "_BLOCK_ENTRIES", 20)  # one or two rows per block
    assert np.array_equal(M.rank_items(scores, 5, exclude=exclude), full)
    assert np.array_equal(M.rank_of_target(scores, targets, exclude=exclude), ranks)


def test_exclude_formats_agree():
    sparse = pytest.importorskip("scipy.sparse")
    scores, targets, exclude = random_ranking_case(11)
    rows = np.concatenate([np.full(len(e), u) for u, e in enumerate(exclude)])
    cols = np.concatenate(exclude)
    csr = sparse.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=scores.shape)
    as_list = M.rank_items(scores, 6, exclude=exclude)
    assert np.array_equal(M.rank_items(scores, 6, exclude=csr), as_list)
    assert np.array_equal(M.rank_items(scores, 6, exclude=[list(e) for e in exclude]), as_list)
    assert np.array_equal(M.rank_of_target(scores, targets, exclude=csr), M.rank_of_target(scores, targets, exclude=exclude))
    # explicitly stored zeros in a sparse matrix are not exclusions
    csr_zero = csr.copy()
    csr_zero.data[:] = 0
    assert np.array_equal(M.rank_items(scores, 6, exclude=csr_zero), M.rank_items(scores, 6))


@pytest.mark.parametrize("seed", SEEDS)
def test_rank_of_target_matches_brute_force(seed):
    scores, targets, exclude = random_ranking_case(seed)
    for excl in (None, exclude):
        ranks = M.rank_of_target(scores, targets, exclude=excl)
        banned = [set() if excl is None else set(map(int, e)) for e in (excl or [None] * len(targets))]
        assert ranks.tolist() == [brute_rank(row, int(t), b) for row, t, b in zip(scores.tolist(), targets, banned)]


@pytest.mark.parametrize("seed", SEEDS)
def test_without_ties_rank_of_target_is_the_position_in_rank_items(seed):
    rng = np.random.default_rng(seed)
    scores = rng.normal(size=(6, 15))   # distinct scores: pessimistic and display order agree
    targets = rng.integers(R, 15, size=6)
    ranks = M.rank_of_target(scores, targets)
    top = M.rank_items(scores, 15 - R)
    assert all(top[u, r] == t for u, (r, t) in enumerate(zip(ranks, targets)))


@pytest.mark.parametrize("seed", SEEDS)
def test_ranking_report_single_target_matches_brute_force(seed):
    scores, targets, exclude = random_ranking_case(seed, n_users=15, n_items=12, n_excluded=5)
    ks = (1, 3, 5, 10, 25)  # 10 and 25 reach past every user's candidates
    for excl in (None, exclude):
        rep = M.ranking_report(scores, targets, ks, exclude=excl)
        ref = brute_report(scores.tolist(), targets, ks, excl)
        assert rep.keys() == ref.keys()
        for key in ref:
            assert rep[key] == pytest.approx(ref[key], abs=1e-12), key
        for k in ks:
            assert rep[f"recall@{k}"] == rep[f"hit_rate@{k}"]
        assert rep["hit_rate@25"] == 1.0


@pytest.mark.parametrize("seed", SEEDS)
def test_ranking_report_multiple_targets_matches_brute_force(seed):
    scores, targets, exclude = random_ranking_case(seed, n_users=10, n_items=16, n_targets=5)
    ks = (1, 2, 4, 20)
    for excl in (None, exclude):
        rep = M.ranking_report(scores, targets, ks, exclude=excl)
        ref = brute_report(scores.tolist(), targets, ks, excl)
        for key in ref:
            assert rep[key] == pytest.approx(ref[key], abs=1e-12), key
        ranks = M.rank_of_target(scores, targets, exclude=excl)
        banned = [set() if excl is None else set(map(int, excl[u])) for u in range(len(targets))]
        assert [r.tolist() for r in ranks] == [[brute_rank(scores[u].tolist(), int(t), banned[u]) for t in ts]
                                               for u, ts in enumerate(targets)]


def test_ranking_accepts_torch_and_float32():
    scores, targets, exclude = random_ranking_case(5)
    ref = M.ranking_report(scores, targets, (3,), exclude=exclude)
    rep = M.ranking_report(torch.tensor(scores, dtype=torch.float32), torch.tensor(targets), (3,),
                           exclude=[torch.tensor(e, dtype=torch.long) for e in exclude])
    assert rep == pytest.approx(ref)
    assert np.array_equal(M.rank_items(torch.tensor(scores), 4, exclude=exclude),
                          M.rank_items(scores, 4, exclude=exclude))


# --------------------------------------------------------------------------------------------
# Sanity: perfect and random scorers
# --------------------------------------------------------------------------------------------


def test_perfect_scorer():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, size=1000)
    assert M.auc(labels, labels * 2.0 - 1.0) == 1.0
    groups = rng.integers(0, 50, size=1000)
    assert M.gauc(labels, labels.astype(float), groups) == 1.0

    n_users, n_items = 30, 50
    scores = rng.normal(size=(n_users, n_items))
    targets = rng.integers(R, n_items, size=n_users)
    scores[np.arange(n_users), targets] = 10.0
    rep = M.ranking_report(scores, targets, ks=(1, 10))
    assert all(v == 1.0 for v in rep.values())

    multi = [R + rng.choice(n_items - R, size=3, replace=False) for _ in range(n_users)]
    for u, t in enumerate(multi):
        scores[u, t] = [20.0, 21.0, 22.0]  # distinct: tied targets would count against each other
    rep = M.ranking_report(scores, multi, ks=(3, 10))
    assert all(v == 1.0 for v in rep.values())
    rep = M.ranking_report(scores, multi, ks=(2,))
    assert rep["ndcg@2"] == 1.0 and rep["hit_rate@2"] == 1.0 and rep["mrr@2"] == 1.0
    assert rep["recall@2"] == pytest.approx(2 / 3)  # |hits| / |T_u|, not / min(|T_u|, K)


def test_random_scorer_is_near_chance():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 2, size=200_000)
    assert M.auc(labels, rng.normal(size=200_000)) == pytest.approx(0.5, abs=0.01)
    groups = rng.integers(0, 2000, size=200_000)
    assert M.gauc(labels, rng.normal(size=200_000), groups) == pytest.approx(0.5, abs=0.01)
    n_users, n_items = 2000, 200
    rep = M.ranking_report(rng.normal(size=(n_users, n_items)), rng.integers(R, n_items, size=n_users), ks=(20,))
    assert rep["hit_rate@20"] == pytest.approx(20 / (n_items - R), abs=0.03)


# --------------------------------------------------------------------------------------------
# Validation: a ValueError naming the field, before any computation
# --------------------------------------------------------------------------------------------

S = np.arange(12, dtype=float).reshape(3, 4)


@pytest.mark.parametrize(
    "call, field",
    [
        (lambda: M.auc([0, 1, 2], [0.1, 0.2, 0.3]), r"labels: expected only 0 and 1, got values \[2\]"),
        (lambda: M.auc([0, 1, np.nan], [0.1, 0.2, 0.3]), r"labels: contains NaN"),
        (lambda: M.auc([0, 1], [0.1, np.nan]), r"scores: contains NaN"),
        (lambda: M.auc([0, 1, 1], [0.1, 0.2]), r"scores: length 2 does not match labels length 3"),
        (lambda: M.auc([1, 1, 1], [0.1, 0.2, 0.3]), r"labels: only class 1 is present"),
        (lambda: M.auc([], []), r"labels: is empty"),
        (lambda: M.auc([[0, 1]], [[0.1, 0.2]]), r"labels: expected a 1-D array"),
        (lambda: M.auc([0, 1], ["a", "b"]), r"scores: expected numeric values"),
        (lambda: M.logloss([0, 1]), r"logits/probs: expected exactly one"),
        (lambda: M.logloss([0, 1], [0.0, 0.0], probs=[0.5, 0.5]), r"logits/probs: expected exactly one"),
        (lambda: M.logloss([0, 1], probs=[0.5, 1.5]), r"probs: expected values in \[0, 1\]"),
        (lambda: M.logloss([0, 1], [0.0, np.inf]), r"logits: contains inf"),
        (lambda: M.logloss([0, 1], [0.0]), r"logits: length 1 does not match labels length 2"),
        (lambda: M.gauc([0, 1], [0.1, 0.2], [0]), r"groups: length 1 does not match labels length 2"),
        (lambda: M.gauc([0, 1], [0.1, 0.2], [0.0, np.nan]), r"groups: contains NaN"),
        (lambda: M.gauc([0, 1], [0.1, 0.2], [0, 1]), r"labels: no group in groups has both classes"),
        (lambda: M.rank_items(S, 0), r"k: expected a positive integer"),
        (lambda: M.rank_items(S[0], 2), r"scores: expected a 2-D array"),
        (lambda: M.rank_items(np.where(S > 5, np.nan, S), 2), r"scores: contains NaN"),
        (lambda: M.rank_items(S, 2, exclude=[[0], [1]]), r"exclude: length 2 does not match scores rows 3"),
        (lambda: M.rank_items(S, 2, exclude=[[0], [4], []]), r"exclude\[1\]: id 4 is out of range"),
        (lambda: M.rank_items(S, 2, exclude=[[0], [0.5], []]), r"exclude\[1\]: expected integer ids"),
        (lambda: M.rank_items(S, 2, exclude={0: [1]}), r"exclude: expected a sequence"),
        (lambda: M.ranking_report(S, [2, 3, 2, 3, 2]), r"targets: length 5 does not match scores rows 3"),
        (lambda: M.ranking_report(S, [2, 3, 4]), r"targets: id 4 is out of range"),
        (lambda: M.ranking_report(S, [2, 3, 2], ks=(10, 0)), r"ks: expected a positive integer"),
        (lambda: M.ranking_report(S, [2, 3, 2], ks=()), r"ks: is empty"),
        (lambda: M.ranking_report(S, [[2], [], [3]]), r"targets\[1\]: is empty"),
        (lambda: M.ranking_report(S, [[2], [3, 3], [3]]), r"targets\[1\]: contains duplicate"),
        (lambda: M.ranking_report(S, [2, 3, 2], exclude=[[3], [3], []]), r"exclude: user 1 excludes its target item 3"),
        (lambda: M.rank_of_target(S, [[2], [2, 3], [3]], exclude=[[], [0, 3], []]), r"exclude: user 1 excludes its target item 3"),
        (lambda: M.rank_of_target(S, [2, 0, 3]), r"targets: user 1's target 0 is a reserved column"),
        (lambda: M.rank_items(S, 2, reserved=4), r"reserved: 4 reserved column\(s\) leave no candidate"),
        (lambda: M.rank_items(S, 2, reserved=-1), r"reserved: expected a non-negative integer"),
    ],
)
def test_validation_errors_name_the_field(call, field):
    with pytest.raises(ValueError, match=field):
        call()


def test_sparse_exclude_shape_is_checked():
    sparse = pytest.importorskip("scipy.sparse")
    with pytest.raises(ValueError, match=r"exclude: sparse shape \(3, 5\) does not match scores shape \(3, 4\)"):
        M.rank_items(S, 2, exclude=sparse.csr_matrix((3, 5)))


def test_paired_bootstrap_of_identical_scores_is_zero_and_brackets_the_difference():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 600)
    groups = np.repeat(np.arange(60), 10)
    a = rng.normal(size=600) + y * 0.5
    same = M.paired_bootstrap_auc(y, a, a, groups, n_boot=10)
    assert same["diff"] == same["low"] == same["high"] == 0
    b = a + y * 0.5                                            # b separates the classes better
    r = M.paired_bootstrap_auc(y, a, b, groups, n_boot=30)
    from sklearn.metrics import roc_auc_score
    assert r["diff"] == pytest.approx(roc_auc_score(y, b) - roc_auc_score(y, a))
    assert 0 < r["low"] <= r["diff"] <= r["high"]
    with pytest.raises(ValueError, match="labels"):
        M.paired_bootstrap_auc(y[:5], a, b, groups)


def test_paired_t_interval_matches_the_t_table_and_refuses_bad_input():
    from recbook.metrics import paired_t_interval

    mean, low, high = paired_t_interval([1.0, 2.0, 3.0], 0.95)       # sd 1, n 3: t(0.975, 2) = 4.303
    assert mean == 2.0 and high - mean == pytest.approx(4.303 / np.sqrt(3), abs=1e-3)
    assert mean - low == pytest.approx(high - mean)
    _, low90, high90 = paired_t_interval([1.0, 2.0, 3.0], 0.9)        # t(0.95, 2) = 2.920
    assert high90 - 2.0 == pytest.approx(2.920 / np.sqrt(3), abs=1e-3)
    assert np.isnan(paired_t_interval([0.5])[1])
    for bad in ([], [1.0, float("nan")], [[1.0, 2.0]]):
        with pytest.raises(ValueError, match="differences"):
            paired_t_interval(bad)
    with pytest.raises(ValueError, match="level"):
        paired_t_interval([1.0, 2.0], 1.5)

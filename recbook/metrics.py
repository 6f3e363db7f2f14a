"""Evaluation metrics: CTR metrics (AUC, LogLoss, GAUC) and full-ranking top-K metrics.

Every function takes numpy arrays or torch tensors (converted with ``.detach().cpu().numpy()``),
validates its inputs once before computing anything, and returns plain Python floats.

CTR metrics
    :func:`auc`, :func:`logloss`, :func:`gauc` and :func:`ctr_report`. Labels are 0/1; scores may
    be logits or probabilities, since AUC and GAUC depend only on the order of the scores.

Top-K metrics
    :func:`rank_items`, :func:`rank_of_target` and :func:`ranking_report` rank **all** items for
    every user (no sampled candidates). Score matrices have one column per item *code* (see
    :func:`recbook.data.item_field`), and these conventions hold everywhere:

    * **Reserved columns are never candidates.** Columns ``0`` (padding) and ``1`` (unknown), the
      first ``reserved`` columns (default :data:`recbook.data.N_RESERVED` = 2), are dropped from
      every ranking, whatever their scores; a target there raises ``ValueError``. Pass
      ``reserved=0`` to rank plain 0-based item indices.
    * **Ties count against the target.** The rank of a target is the number of *other*
      candidates whose score is greater than **or equal to** its own (a pessimistic rank), so a
      model that gives many items the same score gains nothing from the tie: one that scores every
      item equally ranks every target last. :func:`rank_items`, which lists the top items for
      display, orders equal scores by lower index.
    * **Exclusion**: ``exclude`` lists, per user, the items that must not be recommended (usually
      the user's training items). Excluded items are removed from the ranking: they occupy no
      position and push no other item down. ``exclude`` is either a sequence of ``U`` integer
      arrays (``exclude[u]`` holds user ``u``'s item indices; duplicates are harmless) or a
      ``scipy.sparse`` matrix of shape ``[U, n_items]`` whose non-zero entries are the excluded
      (user, item) pairs. A held-out target must never be excluded; that raises ``ValueError``.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from recbook._checks import require_int_range, require_positive_int
from recbook.data.features import N_RESERVED

__all__ = [
    "auc",
    "logloss",
    "gauc",
    "ctr_report",
    "paired_bootstrap_auc",
    "rank_items",
    "rank_of_target",
    "ranking_report",
]

# Probabilities are clipped to [_PROB_EPS, 1 - _PROB_EPS] before taking logs.
_PROB_EPS = 1e-7
# Ranking works on blocks of rows with at most this many score entries, to bound memory.
_BLOCK_ENTRIES = 1 << 22


# --------------------------------------------------------------------------------------------
# Input conversion and validation
# --------------------------------------------------------------------------------------------


def _as_numpy(x, name: str) -> np.ndarray:
    """Convert a torch tensor / array-like to a numpy array (no copy when already numpy)."""
    if hasattr(x, "detach") and hasattr(x, "cpu"):  # torch.Tensor, without importing torch
        t = x.detach().cpu()
        try:
            return t.numpy()
        except TypeError:  # bfloat16 and other dtypes numpy lacks
            return t.float().numpy()
    if x is None:
        raise ValueError(f"{name}: expected an array, got None")
    try:
        return np.asarray(x)
    except (ValueError, TypeError) as err:
        raise ValueError(f"{name}: could not be converted to an array ({err})") from None


def _numeric(x, name: str, ndim: int) -> np.ndarray:
    """A float array with ``ndim`` dimensions, at least one entry per dimension and no NaN."""
    arr = _as_numpy(x, name)
    if arr.ndim != ndim:
        raise ValueError(f"{name}: expected a {ndim}-D array, got shape {tuple(arr.shape)}")
    if arr.dtype == object or not (
        np.issubdtype(arr.dtype, np.number) or np.issubdtype(arr.dtype, np.bool_)
    ):
        raise ValueError(f"{name}: expected numeric values, got dtype {arr.dtype}")
    if np.issubdtype(arr.dtype, np.complexfloating):
        raise ValueError(f"{name}: expected real numbers, got dtype {arr.dtype}")
    if arr.size == 0:
        raise ValueError(f"{name}: is empty; expected at least one entry, got shape {tuple(arr.shape)}")
    if not np.issubdtype(arr.dtype, np.floating) or arr.dtype == np.float16:
        arr = arr.astype(np.float64)
    if np.isnan(arr).any():
        raise ValueError(f"{name}: contains NaN; expected numbers only")
    return arr


def _labels(x, name: str = "labels") -> np.ndarray:
    """1-D labels holding only 0 and 1, returned as an int8 array."""
    arr = _as_numpy(x, name)
    if arr.ndim != 1:
        raise ValueError(f"{name}: expected a 1-D array, got shape {tuple(arr.shape)}")
    if arr.size == 0:
        raise ValueError(f"{name}: is empty; expected at least one row")
    if arr.dtype == object or not (
        np.issubdtype(arr.dtype, np.number) or np.issubdtype(arr.dtype, np.bool_)
    ):
        raise ValueError(f"{name}: expected 0/1 numbers, got dtype {arr.dtype}")
    if np.issubdtype(arr.dtype, np.floating) and np.isnan(arr).any():
        raise ValueError(f"{name}: contains NaN; expected only 0 and 1")
    bad = np.setdiff1d(np.unique(arr), [0, 1])
    if bad.size:
        shown = bad[:5].tolist()
        raise ValueError(f"{name}: expected only 0 and 1, got values {shown}")
    return arr.astype(np.int8)


def _same_length(arr: np.ndarray, name: str, n: int, other: str) -> None:
    if len(arr) != n:
        raise ValueError(f"{name}: length {len(arr)} does not match {other} length {n}")


def _require_both_classes(labels: np.ndarray, name: str = "labels") -> None:
    n_pos = int(labels.sum())
    if n_pos == 0 or n_pos == len(labels):
        only = 1 if n_pos else 0
        raise ValueError(
            f"{name}: only class {only} is present ({len(labels)} rows); "
            "AUC needs at least one positive and one negative"
        )


# --------------------------------------------------------------------------------------------
# CTR metrics
# --------------------------------------------------------------------------------------------


def _average_ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks of ``values`` in ascending order, ties sharing their average rank."""
    n = len(values)
    order = np.argsort(values, kind="stable")
    sorted_vals = values[order]
    # start[i] marks the first element of each run of equal values.
    start = np.empty(n, dtype=bool)
    start[0] = True
    np.not_equal(sorted_vals[1:], sorted_vals[:-1], out=start[1:])
    run_id = np.cumsum(start) - 1
    first = np.flatnonzero(start)  # 0-based position where each run starts
    last = np.append(first[1:], n) - 1  # 0-based position where each run ends
    run_rank = (first + last) / 2.0 + 1.0  # average of the 1-based positions first+1 .. last+1
    ranks = np.empty(n, dtype=np.float64)
    ranks[order] = run_rank[run_id]
    return ranks


def auc(labels, scores) -> float:
    """Area under the ROC curve, ties counted as 1/2.

    Equal to the probability that a random positive scores higher than a random negative
    (Mann-Whitney U / (n_pos * n_neg)), computed from average ranks in O(N log N).

    >>> auc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])
    0.75
    >>> auc([0, 1], [3, 3])   # a tie counts as half a correctly ordered pair
    0.5
    """
    y = _labels(labels)
    s = _numeric(scores, "scores", 1)
    _same_length(s, "scores", len(y), "labels")
    _require_both_classes(y)
    return _auc_unchecked(y, s)


def _auc_unchecked(y: np.ndarray, s: np.ndarray) -> float:
    pos = y == 1
    n_pos = int(pos.sum())
    n_neg = len(y) - n_pos
    rank_sum = float(_average_ranks(s)[pos].sum())
    return (rank_sum - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg)


def logloss(labels, logits=None, *, probs=None) -> float:
    """Mean binary cross-entropy. Pass exactly one of ``logits`` or ``probs`` (keyword).

    From logits it is computed stably as ``softplus(z) - y * z``, finite for any finite logit.
    Probabilities are clipped to ``[1e-7, 1 - 1e-7]`` first, so a confident mistake costs at
    most ``-log(1e-7) ~= 16.1``.

    >>> round(logloss([1, 0], [0.0, 0.0]), 6)   # log 2
    0.693147
    >>> round(logloss([1, 0], probs=[0.5, 0.5]), 6)
    0.693147
    """
    if (logits is None) == (probs is None):
        raise ValueError("logits/probs: expected exactly one of logits or probs, "
                         f"got {'both' if logits is not None else 'neither'}")
    y = _labels(labels).astype(np.float64)
    if logits is not None:
        z = _numeric(logits, "logits", 1).astype(np.float64, copy=False)
        _same_length(z, "logits", len(y), "labels")
        if not np.isfinite(z).all():
            raise ValueError("logits: contains inf; expected finite numbers")
        # -[y log sigmoid(z) + (1-y) log sigmoid(-z)] = softplus(z) - y z
        loss = np.maximum(z, 0.0) - y * z + np.log1p(np.exp(-np.abs(z)))
    else:
        p = _numeric(probs, "probs", 1).astype(np.float64, copy=False)
        _same_length(p, "probs", len(y), "labels")
        if p.min() < 0.0 or p.max() > 1.0:
            raise ValueError(
                f"probs: expected values in [0, 1], got range [{p.min():g}, {p.max():g}]"
            )
        p = np.clip(p, _PROB_EPS, 1.0 - _PROB_EPS)
        loss = -(y * np.log(p) + (1.0 - y) * np.log1p(-p))
    return float(loss.mean())


def _group_codes(groups, n: int) -> np.ndarray:
    g = _as_numpy(groups, "groups")
    if g.ndim != 1:
        raise ValueError(f"groups: expected a 1-D array, got shape {tuple(g.shape)}")
    _same_length(g, "groups", n, "labels")
    if np.issubdtype(g.dtype, np.floating) and np.isnan(g).any():
        raise ValueError("groups: contains NaN; expected a group id for every row")
    try:
        _, codes = np.unique(g, return_inverse=True)
    except TypeError as err:
        raise ValueError(f"groups: ids could not be compared ({err}); expected one id type") from None
    return codes.reshape(-1)


def gauc(labels, scores, groups, *, return_coverage: bool = False):
    """Group AUC: the impression-weighted mean of per-group (per-user) AUC.

    ``GAUC = sum_u n_u * AUC_u / sum_u n_u`` (Zhou et al., *Deep Interest Network*, 2018, §6.1),
    where ``n_u`` is the number of rows (impressions) of group ``u``. Groups whose rows hold only
    one class have no AUC and are skipped, from both the numerator and the denominator.

    With ``return_coverage=True`` returns ``(gauc, coverage)``, where ``coverage`` is the fraction
    of rows that belong to a scored group. Raises ``ValueError`` if no group has both classes.

    Vectorised: one lexicographic sort by (group, score), average ranks within each group, and
    per-group sums with ``np.bincount``.

    >>> gauc([0, 1, 1, 0, 1], [0.2, 0.9, 0.1, 0.3, 0.5], ["a", "a", "b", "b", "c"], return_coverage=True)
    (0.5, 0.8)
    """
    y = _labels(labels)
    s = _numeric(scores, "scores", 1)
    _same_length(s, "scores", len(y), "labels")
    codes = _group_codes(groups, len(y))
    n = len(y)

    order = np.lexsort((s, codes))  # by group, then by score
    g_sorted = codes[order]
    s_sorted = s[order]
    # Runs of equal (group, score) share their average within-group rank.
    new_group = np.empty(n, dtype=bool)
    new_group[0] = True
    np.not_equal(g_sorted[1:], g_sorted[:-1], out=new_group[1:])
    new_run = new_group.copy()
    new_run[1:] |= s_sorted[1:] != s_sorted[:-1]
    group_start = np.flatnonzero(new_group)
    group_size = np.diff(np.append(group_start, n))
    pos_in_group = np.arange(n) - np.repeat(group_start, group_size)  # 0-based
    run_first = np.flatnonzero(new_run)
    run_last = np.append(run_first[1:], n) - 1
    run_id = np.cumsum(new_run) - 1
    # within-group 1-based average rank of each run
    run_rank = (pos_in_group[run_first] + pos_in_group[run_last]) / 2.0 + 1.0
    ranks = run_rank[run_id]

    y_sorted = y[order].astype(np.float64)
    n_groups = len(group_start)
    gid = np.cumsum(new_group) - 1
    n_pos = np.bincount(gid, weights=y_sorted, minlength=n_groups)
    rank_sum = np.bincount(gid, weights=ranks * y_sorted, minlength=n_groups)
    n_neg = group_size - n_pos
    valid = (n_pos > 0) & (n_neg > 0)
    if not valid.any():
        raise ValueError(
            f"labels: no group in groups has both classes ({n_groups} groups); GAUC is undefined"
        )
    npv, nnv = n_pos[valid], n_neg[valid]
    group_auc = (rank_sum[valid] - npv * (npv + 1) / 2.0) / (npv * nnv)
    weights = group_size[valid].astype(np.float64)
    value = float((weights * group_auc).sum() / weights.sum())
    if return_coverage:
        return value, float(weights.sum() / n)
    return value


def ctr_report(labels, logits, groups=None) -> dict:
    """``{"auc", "logloss"}`` from logits, plus ``"gauc"`` and ``"gauc_coverage"`` when ``groups``
    (e.g. user ids) is given. See :func:`auc`, :func:`logloss` and :func:`gauc`."""
    report = {"auc": auc(labels, logits), "logloss": logloss(labels, logits)}
    if groups is not None:
        value, coverage = gauc(labels, logits, groups, return_coverage=True)
        report["gauc"] = value
        report["gauc_coverage"] = coverage
    return report


def paired_t_interval(differences, level: float = 0.9, *, name: str = "differences") -> tuple[float, float, float]:
    """Mean of paired differences (one per seed: model B minus model A on the same seed) and its
    ``level`` t-interval, ``(mean, low, high)``: ``mean ± t_{n-1} · sd / sqrt(n)``. It says how
    far the mean difference could move with other seeds (seed noise only: both models are scored
    on the same rows). With one difference the interval is ``(nan, nan)``."""
    from scipy import stats

    d = np.asarray(differences, dtype=np.float64)
    if d.ndim != 1 or d.size == 0 or not np.isfinite(d).all():
        raise ValueError(f"{name}: expected a non-empty 1-d array of finite numbers (one per seed), "
                         f"got {np.asarray(differences).tolist()!r}")
    if isinstance(level, bool) or not isinstance(level, (int, float)) or not 0 < level < 1:
        raise ValueError(f"level: expected a number in (0, 1), got {level!r}")
    mean = float(d.mean())
    if d.size == 1:
        return mean, float("nan"), float("nan")
    half = float(stats.t.ppf((1 + level) / 2, d.size - 1)) * float(d.std(ddof=1)) / float(np.sqrt(d.size))
    return mean, mean - half, mean + half


def paired_bootstrap_auc(labels, scores_a, scores_b, groups, *, n_boot: int = 200, seed: int = 0,
                         level: float = 0.9) -> dict:
    """AUC of ``scores_b`` minus AUC of ``scores_a`` on the same rows, with a bootstrap interval.

    Resamples whole groups (users) with replacement, so that the interval reflects which users
    happen to be in the test block, and scores both models on the same resample (paired).

    Returns:
        ``{"a": auc_a, "b": auc_b, "diff": auc_b - auc_a, "low": ..., "high": ...}``, the interval
        holding the central ``level`` share of the resampled differences.
    """
    y = np.asarray(labels, dtype=float)
    sa, sb = np.asarray(scores_a, dtype=float), np.asarray(scores_b, dtype=float)
    g = np.asarray(groups)
    if not (len(y) == len(sa) == len(sb) == len(g)) or len(y) == 0:
        raise ValueError("labels, scores_a, scores_b, groups: expected non-empty arrays of one length")
    n_boot = require_positive_int(n_boot, name="n_boot")
    if not 0 < level < 1:
        raise ValueError(f"level: expected a number in (0, 1), got {level!r}")
    order = np.argsort(g, kind="stable")
    _, starts = np.unique(g[order], return_index=True)
    members = np.split(order, starts[1:])
    rng = np.random.default_rng(seed)
    diffs = []
    for _ in range(n_boot):
        rows = np.concatenate([members[i] for i in rng.integers(0, len(members), len(members))])
        if 0 < y[rows].sum() < len(rows):
            diffs.append(auc(y[rows], sb[rows]) - auc(y[rows], sa[rows]))
    lo, hi = np.quantile(diffs, [(1 - level) / 2, (1 + level) / 2])
    a_, b_ = auc(y, sa), auc(y, sb)
    return {"a": a_, "b": b_, "diff": b_ - a_, "low": float(lo), "high": float(hi)}


# --------------------------------------------------------------------------------------------
# Full-ranking top-K metrics
# --------------------------------------------------------------------------------------------


def _score_matrix(scores) -> np.ndarray:
    return _numeric(scores, "scores", 2)


class _Exclusion:
    """Excluded (user, item) pairs in CSR form: user ``u``'s items are ``indices[indptr[u]:indptr[u+1]]``;
    the first ``reserved`` columns are excluded for every user."""

    def __init__(self, indptr: np.ndarray | None, indices: np.ndarray | None, reserved: int = 0):
        self.indptr = indptr
        self.indices = indices
        self.reserved = reserved

    def mask(self, rows: np.ndarray, n_items: int) -> np.ndarray:
        """Dense boolean mask ``[len(rows), n_items]``; ``rows`` may repeat and be in any order."""
        out = np.zeros((len(rows), n_items), dtype=bool)
        out[:, : self.reserved] = True
        if self.indptr is None:
            return out
        starts = self.indptr[rows]
        counts = self.indptr[rows + 1] - starts
        total = int(counts.sum())
        if total:
            offsets = np.arange(total) - np.repeat(np.cumsum(counts) - counts, counts)
            cols = self.indices[np.repeat(starts, counts) + offsets]
            out[np.repeat(np.arange(len(rows)), counts), cols] = True
        return out


def _reserved(reserved, n_items: int) -> int:
    if isinstance(reserved, bool) or not isinstance(reserved, (int, np.integer)) or reserved < 0:
        raise ValueError(f"reserved: expected a non-negative integer, got {reserved!r}")
    if reserved >= n_items:
        raise ValueError(f"reserved: {reserved} reserved column(s) leave no candidate among the "
                         f"{n_items} columns of scores")
    return int(reserved)


def _exclusion(exclude, n_users: int, n_items: int, reserved: int = 0) -> _Exclusion | None:
    if exclude is None:
        return _Exclusion(None, None, reserved) if reserved else None
    if hasattr(exclude, "tocsr") and hasattr(exclude, "shape"):  # scipy.sparse matrix / array
        if tuple(exclude.shape) != (n_users, n_items):
            raise ValueError(
                f"exclude: sparse shape {tuple(exclude.shape)} does not match scores shape "
                f"({n_users}, {n_items})"
            )
        csr = exclude.tocsr(copy=True)
        csr.eliminate_zeros()
        return _Exclusion(np.asarray(csr.indptr, dtype=np.int64), np.asarray(csr.indices, dtype=np.int64),
                          reserved)
    if isinstance(exclude, (str, bytes)) or not isinstance(exclude, (Sequence, np.ndarray)):
        raise ValueError(
            "exclude: expected a sequence of U integer arrays or a scipy.sparse matrix of shape "
            f"[U, n_items], got {type(exclude).__name__}"
        )
    if len(exclude) != n_users:
        raise ValueError(f"exclude: length {len(exclude)} does not match scores rows {n_users}")
    parts = []
    for u, items in enumerate(exclude):
        arr = _as_numpy(items, f"exclude[{u}]")
        if arr.ndim != 1:
            raise ValueError(f"exclude[{u}]: expected a 1-D array of item indices, got shape {tuple(arr.shape)}")
        if arr.size == 0:
            arr = arr.astype(np.int64)
        require_int_range(arr, 0, n_items, field=f"exclude[{u}]")
        parts.append(arr.astype(np.int64, copy=False))
    counts = np.array([len(p) for p in parts], dtype=np.int64)
    indptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    indices = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)
    return _Exclusion(indptr, indices, reserved)


def _row_blocks(n_rows: int, n_cols: int):
    step = max(1, _BLOCK_ENTRIES // max(n_cols, 1))
    for a in range(0, n_rows, step):
        yield a, min(a + step, n_rows)


def rank_items(scores, k: int, *, exclude=None, reserved: int = N_RESERVED) -> np.ndarray:
    """Top-``k`` item indices per user over the full item set, best first: ``int64 [U, k]``.

    ``scores`` is ``[U, n_items]``. The first ``reserved`` columns (padding and unknown) and the
    items in ``exclude`` (see the module docstring for its two formats) are never returned. Equal
    scores are listed lower index first (a display order; :func:`rank_of_target` counts ties
    against the target).

    The result always has ``k`` columns. When a user has fewer than ``k`` rankable items, the
    trailing positions hold ``-1``.

    Cost: one ``np.partition`` per row to find the k-th best score, then a sort of only the
    ``k`` selected items (processed in row blocks to bound memory).

    >>> rank_items([[0.1, 0.9, 0.5, 0.9]], 3, reserved=0)
    array([[1, 3, 2]])
    >>> rank_items([[0.1, 0.9, 0.5, 0.9]], 3, exclude=[[1]], reserved=0)
    array([[3, 2, 0]])
    >>> rank_items([[9.0, 9.0, 1.0, 2.0]], 3)        # columns 0 and 1 are reserved
    array([[ 3,  2, -1]])
    """
    s = _score_matrix(scores)
    k = require_positive_int(k, name="k")
    n_users, n_items = s.shape
    reserved = _reserved(reserved, n_items)
    excl = _exclusion(exclude, n_users, n_items, reserved)
    kk = min(k, n_items)
    out = np.full((n_users, k), -1, dtype=np.int64)
    for a, b in _row_blocks(n_users, n_items):
        neg = -s[a:b]  # ascending order of neg = best first; a fresh copy
        if excl is not None:
            neg[excl.mask(np.arange(a, b), n_items)] = np.nan  # NaN sorts after every number
        out[a:b, :kk] = _top_block(neg, kk)
    return out


def _top_block(neg: np.ndarray, kk: int) -> np.ndarray:
    """Indices of the ``kk`` smallest entries per row of ``neg`` in (value, index) order; NaN
    entries (excluded items) come last and are reported as -1."""
    m = neg.shape[0]
    thr = np.partition(neg, kk - 1, axis=1)[:, kk - 1 : kk]  # kk-th best value, NaN if too few
    isnan = np.isnan(neg)
    thr_nan = np.isnan(thr)
    # Items strictly better than the threshold are always selected. Items tied with it (or, when
    # the threshold is NaN, the excluded items) fill the remaining places, lowest index first.
    better = np.where(thr_nan, ~isnan, neg < thr)
    tied = np.where(thr_nan, isnan, neg == thr)
    need = kk - better.sum(axis=1, keepdims=True)
    selected = better | (tied & (np.cumsum(tied, axis=1) <= need))
    rows, cols = np.nonzero(selected)  # row-major: per row, ascending item index
    vals = neg[rows, cols].reshape(m, kk)
    cols = cols.reshape(m, kk)
    order = np.argsort(vals, axis=1, kind="stable")  # stable: equal values keep index order
    top = np.take_along_axis(cols, order, axis=1)
    top[np.isnan(np.take_along_axis(vals, order, axis=1))] = -1
    return top


def _targets(targets, n_users: int, n_items: int):
    """Returns (user_of_pair, item_of_pair, counts, multi): flat (user, target) pairs."""
    if hasattr(targets, "detach"):
        targets = _as_numpy(targets, "targets")
    multi = isinstance(targets, (list, tuple)) and any(np.ndim(t) > 0 for t in targets)
    multi = multi or (isinstance(targets, np.ndarray) and targets.dtype == object)
    if not multi:
        t = _as_numpy(targets, "targets")
        if t.ndim != 1:
            raise ValueError(
                f"targets: expected a 1-D array with one item per user or a list of U arrays, "
                f"got shape {tuple(t.shape)}"
            )
        if len(t) != n_users:
            raise ValueError(f"targets: length {len(t)} does not match scores rows {n_users}")
        require_int_range(t, 0, n_items, field="targets")
        t = t.astype(np.int64)
        return np.arange(n_users), t, np.ones(n_users, dtype=np.int64), False
    if len(targets) != n_users:
        raise ValueError(f"targets: length {len(targets)} does not match scores rows {n_users}")
    parts = []
    for u, items in enumerate(targets):
        arr = np.atleast_1d(_as_numpy(items, f"targets[{u}]"))
        if arr.ndim != 1:
            raise ValueError(f"targets[{u}]: expected a 1-D array of item indices, got shape {tuple(arr.shape)}")
        if arr.size == 0:
            raise ValueError(f"targets[{u}]: is empty; expected at least one target item")
        require_int_range(arr, 0, n_items, field=f"targets[{u}]")
        if len(np.unique(arr)) != len(arr):
            raise ValueError(f"targets[{u}]: contains duplicate items; expected distinct item indices")
        parts.append(arr.astype(np.int64))
    counts = np.array([len(p) for p in parts], dtype=np.int64)
    return np.repeat(np.arange(n_users), counts), np.concatenate(parts), counts, True


def _check_no_leak(excl: _Exclusion | None, users: np.ndarray, items: np.ndarray, n_items: int) -> None:
    """Raise if any (user, target) pair is a reserved column or an excluded pair."""
    if excl is None:
        return
    reserved = items < excl.reserved
    if reserved.any():
        i = int(np.flatnonzero(reserved)[0])
        raise ValueError(f"targets: user {int(users[i])}'s target {int(items[i])} is a reserved column "
                         f"(0 = padding, 1 = unknown); expected an item code >= {excl.reserved}")
    if excl.indices is None or len(excl.indices) == 0:
        return
    excl_users = np.repeat(np.arange(len(excl.indptr) - 1), np.diff(excl.indptr))
    leaked = np.isin(users * n_items + items, excl_users * n_items + excl.indices)
    if leaked.any():
        i = int(np.flatnonzero(leaked)[0])
        raise ValueError(
            f"exclude: user {int(users[i])} excludes its target item {int(items[i])}; "
            "a held-out target must never be excluded (exclude training items only)"
        )


def _ranking_inputs(scores, targets, exclude, reserved):
    """The checks :func:`rank_of_target` and :func:`ranking_report` share, done once, before any
    ranking: returns ``(scores, users, items, counts, multi, exclusion)``."""
    s = _score_matrix(scores)
    n_users, n_items = s.shape
    reserved = _reserved(reserved, n_items)
    users, items, counts, multi = _targets(targets, n_users, n_items)
    excl = _exclusion(exclude, n_users, n_items, reserved)
    _check_no_leak(excl, users, items, n_items)
    return s, users, items, counts, multi, excl


def _pair_ranks(s: np.ndarray, users: np.ndarray, items: np.ndarray, excl: _Exclusion | None) -> np.ndarray:
    """0-based pessimistic rank of item ``items[i]`` in user ``users[i]``'s ranking: the number of
    other candidates scoring greater than or equal to it."""
    n_items = s.shape[1]
    ranks = np.empty(len(users), dtype=np.int64)
    idx = np.arange(n_items)
    for a, b in _row_blocks(len(users), n_items):
        u, t = users[a:b], items[a:b]
        rows = s[u]
        st = rows[np.arange(b - a), t][:, None]
        ahead = (rows >= st) & (idx[None, :] != t[:, None])
        if excl is not None:
            ahead &= ~excl.mask(u, n_items)
        ranks[a:b] = ahead.sum(axis=1)
    return ranks


def rank_of_target(scores, targets, exclude=None, *, reserved: int = N_RESERVED):
    """0-based rank of each target item in its user's full ranking (0 = ranked first).

    The rank counts the non-excluded, non-reserved items other than the target whose score is
    greater than **or equal to** the target's: ties count against the target (see the module
    docstring). Other targets of the same user count like any other item.

    ``targets`` is either ``[U]`` integer item indices (one target per user), giving an ``int64
    [U]`` array, or a list of ``U`` integer arrays (several targets per user), giving a list of
    ``int64`` arrays of the same lengths. Raises ``ValueError`` if a target is excluded or reserved.

    >>> rank_of_target([[0.1, 0.9, 0.5, 0.9]], [3], reserved=0)   # tied with item 1: counted ahead
    array([1])
    >>> rank_of_target([[0.1, 0.9, 0.5, 0.9]], [1], reserved=0)
    array([1])
    >>> rank_of_target([[0.1, 0.9, 0.5, 0.9]], [3], exclude=[[1]], reserved=0)
    array([0])
    """
    s, users, items, counts, multi, excl = _ranking_inputs(scores, targets, exclude, reserved)
    ranks = _pair_ranks(s, users, items, excl)
    if not multi:
        return ranks
    return np.split(ranks, np.cumsum(counts)[:-1])


def _ks(ks) -> list[int]:
    if isinstance(ks, (int, np.integer)) and not isinstance(ks, bool):
        ks = [ks]
    try:
        values = list(ks)
    except TypeError:
        raise ValueError(f"ks: expected a positive integer or a sequence of them, got {ks!r}") from None
    if not values:
        raise ValueError("ks: is empty; expected at least one cut-off K")
    return [require_positive_int(k, name="ks") for k in values]


def ranking_report(scores, targets, ks=(10, 20), *, exclude=None, reserved: int = N_RESERVED) -> dict:
    """Top-K metrics over the full item set, averaged over users.

    Designed for leave-last-out evaluation: ``targets[u]`` is user ``u``'s held-out item and
    ``exclude`` holds each user's earlier items when they may not be recommended (never the
    target: that raises ``ValueError``). Reserved columns are never candidates. With the
    pessimistic rank ``r`` (0-based, from :func:`rank_of_target`) of the target, per user:

    * ``hit_rate@K`` = ``recall@K`` = 1 if ``r < K`` else 0
    * ``ndcg@K`` = ``1 / log2(r + 2)`` if ``r < K`` else 0
    * ``mrr@K`` = ``1 / (r + 1)`` if ``r < K`` else 0

    Several targets per user (``targets`` a list of ``U`` arrays ``T_u``), with ``H_u`` the
    targets ranked in the top K:

    * ``recall@K`` = ``|H_u| / |T_u|`` (not ``/ min(|T_u|, K)``, so it is below 1 when
      ``|T_u| > K`` even for a perfect ranking)
    * ``hit_rate@K`` = 1 if ``H_u`` is not empty
    * ``ndcg@K`` = ``sum_{t in H_u} 1/log2(r_t + 2)`` divided by the ideal DCG
      ``sum_{i < min(|T_u|, K)} 1/log2(i + 2)``
    * ``mrr@K`` = ``1 / (r_first + 1)`` for the best-ranked target, if it is in the top K

    A ``K`` larger than a user's number of rankable items simply makes every target a hit.
    Returns ``{"recall@10": ..., "hit_rate@10": ..., "ndcg@10": ..., "mrr@10": ..., ...}`` for
    each ``K`` in ``ks``, as Python floats.

    >>> ranking_report([[0.1, 0.9, 0.5], [0.3, 0.2, 0.1]], [2, 0], ks=(1,), reserved=0)
    {'recall@1': 0.5, 'hit_rate@1': 0.5, 'ndcg@1': 0.5, 'mrr@1': 0.5}
    """
    k_list = _ks(ks)
    s, users, items, counts, _, excl = _ranking_inputs(scores, targets, exclude, reserved)
    n_users = s.shape[0]
    ranks = _pair_ranks(s, users, items, excl)

    gain = 1.0 / np.log2(ranks + 2.0)
    first = np.full(n_users, np.iinfo(np.int64).max, dtype=np.int64)
    np.minimum.at(first, users, ranks)
    report = {}
    for k in k_list:
        hit = ranks < k
        n_hits = np.bincount(users, weights=hit, minlength=n_users)
        dcg = np.bincount(users, weights=np.where(hit, gain, 0.0), minlength=n_users)
        ideal_len = np.minimum(counts, k)
        ideal_dcg = np.cumsum(1.0 / np.log2(np.arange(int(ideal_len.max())) + 2.0))[ideal_len - 1]
        report[f"recall@{k}"] = float(np.mean(n_hits / counts))
        report[f"hit_rate@{k}"] = float(np.mean(n_hits > 0))
        report[f"ndcg@{k}"] = float(np.mean(dcg / ideal_dcg))
        report[f"mrr@{k}"] = float(np.mean(np.where(first < k, 1.0 / (first + 1.0), 0.0)))
    return report

"""Helpers of the Wide & Deep chapter: the cross-product transformation, what the wide part
memorised, what the deep part adds, what FTRL-Proximal's L1 does, a typical listing, and a
chart that scales the two parts and ranks the movies in the browser.

The chapter calls these helpers; they hold the code, the chapter explains it.

* :func:`plot_widedeep_architecture`: the model as a diagram.
* :func:`scratch_inputs`: a batch as the plain tensors the chapter's from-scratch model reads
  (active feature ids and values, their fields, cross pair ids and values).
* :func:`wide_terms` and :func:`cross_coverage`: the cross-product transformation on one row,
  term by readable term, and how well the training rows cover each cross.
* :func:`cross_weight_table` / :func:`top_cross_weights`: the wide part's learned cross weights
  with readable names ("occupation=programmer × genres=Sci-Fi") and how many training rows
  support each one: what the wide part memorised; :func:`genre_cross_weights` and
  :func:`cross_weight_chart`: the demographic × genre weights, explored **in the browser**.
* :func:`unseen_by_cross` and :func:`unseen_pair_rows`: AUC of the whole model and of its two
  parts on rows whose cross pairs were all seen in training and on rows with a pair never seen
  (per cross), and those rows, readable.
* :func:`wide_sparsity` and :func:`zero_share_by_support`: which wide weights FTRL-Proximal with L1
  (:func:`recbook.models.ftrl_adagrad`) leaves exactly zero.
* :func:`catalogue_parts`, :func:`top_movies`, :func:`ranking_overlap` and :func:`scaling_chart`:
  the wide and deep logits of every movie for one user, and a chart that scales the two parts and
  ranks the movies **in the browser**.

Joint training against an ensemble and the optimiser split are compared over seeds by the
leaderboard (``WideDeep``, ``WideDeep-ensemble``, ``WideDeep-FTRL``, ``WideDeep-nocross`` in
:mod:`recbook.bench`); the chapter reads those results.

A typical Wide & Deep listing, as found in tutorials and course notes, as written:
:class:`ListingWideAndDeep`, and

* :func:`listing_wide_is_lr` and :func:`one_hot`: its wide part without cross features is
  logistic regression, so the listing is LR + MLP;
* :func:`dense_wide_input`, :func:`listing_wide_with_crosses` and :func:`time_wide_dense_vs_sparse`:
  the same ``nn.Linear`` with the crosses in its input computes the book's wide part, over a dense
  input that is almost all zeros; what that costs, measured.
"""
from __future__ import annotations

import copy
import json
import time
from collections.abc import Mapping, Sequence
from functools import partial

import altair as alt
import numpy as np
import pandas as pd
import torch
from matplotlib.axes import Axes
from torch import nn

from . import BOOK_RESULTS
from .. import widgets
from .._checks import require_columns, require_positive_int
from ..data.features import PAD, Schema
from ..layers import CrossLinear, check_batch
from ..metrics import auc as _auc
from ..models import LogisticRegression, WideDeep
from ..plots import diagram_arrow, diagram_axes, diagram_box
from ..train import num_threads

__all__ = [
    "EXPLORED_CROSSES", "ListingWideAndDeep", "SCALES", "SUPPORT_BINS", "catalogue_parts", "cross_coverage",
    "cross_weight_chart", "cross_weight_table", "genre_cross_weights",
    "dense_wide_input", "listing_wide_is_lr", "listing_wide_with_crosses", "one_hot", "plot_widedeep_architecture",
    "ranking_overlap", "scaling_chart", "scratch_inputs", "short_title", "time_wide_dense_vs_sparse", "top_cross_weights",
    "top_movies", "unseen_by_cross", "unseen_pair_rows", "user_codes", "wide_sparsity", "wide_terms",
    "zero_share_by_support", "FTRL_SWEEP_FILE", "ftrl_sweep_entries", "run_ftrl_sweep", "ftrl_sweep_table",
    "paired_seeds", "by_seed_table", "split_dates", "CROSS_CANDIDATE", "CROSS_CANDIDATE_FILE",
    "cross_candidate_entry", "run_cross_candidate", "CROSS_CHART_CHECKS", "SCALING_CHECKS", "FTRL_GRID",
]


def _require(model, cls):
    if not isinstance(model, cls):
        raise ValueError(f"model: expected a recbook.models.{cls.__name__}, got {type(model).__name__}")
    return model


def _require_data(data):
    for key in ("schema", "train", "valid", "test"):
        if not hasattr(data, key):
            raise ValueError(f"data: expected a recbook.data.CTRData, got {type(data).__name__} without .{key}")
    return data


# --------------------------------------------------------------------------------------------
# What the wide part memorised
# --------------------------------------------------------------------------------------------

def scratch_inputs(batch: Mapping, schema: Schema, crosses=None) -> dict[str, torch.Tensor]:
    """A CTR batch as plain tensors for a Wide & Deep written without ``recbook``.

    Every field's active values become entries of one vocabulary of all feature values (row
    ``schema.offsets[f] + code``, the layout of :class:`recbook.layers.FieldEmbedding`):

    * ``ids`` ``[B, M]``: the active feature values, single-valued fields first (one each), then
      each multi-valued field's members (padded);
    * ``x`` ``[B, M]``: their values: 1, or ``1/k`` for each of ``k`` members, 0 for padding;
    * ``field`` ``[B, M]``: the field (``0 .. len(schema) - 1``, schema order) of each entry;
    * ``pairs`` ``[B, P]`` and ``x_pair`` ``[B, P]``: the rows of the cross weights
      (:class:`recbook.layers.CrossLinear`'s layout, ``crosses.total_size`` rows) of the row's
      pairs, with ``x = 1``, or ``1/k`` for each pair of a cross with a ``k``-member field, 0 for
      padding. Without ``crosses``: ``P = 0``.

    So ``w[ids] * x`` summed is the wide part's first-order term, ``w_pair[pairs] * x_pair``
    summed its cross term, and ``x``-weighted embeddings summed per field are the deep part's
    field vectors (a multi-valued field's mean).
    """
    if not isinstance(schema, Schema):
        raise ValueError(f"schema: expected a recbook.data.Schema, got {type(schema).__name__}")
    check_batch(schema, batch)
    x_codes = batch["x"]
    n = x_codes.shape[0]
    offsets = torch.as_tensor(schema.offsets, dtype=torch.long)
    n_single = len(schema.single)
    ids = [x_codes + offsets[:n_single]]
    vals = [torch.ones(n, n_single)]
    field = [torch.arange(n_single).expand(n, n_single)]
    for j, f in enumerate(schema.multi):
        members = batch[f.name]
        mask = (members != PAD).float()
        ids.append(members + offsets[n_single + j])
        vals.append(mask / mask.sum(1, keepdim=True).clamp(min=1))
        field.append(torch.full_like(members, n_single + j))
    out = {"ids": torch.cat(ids, 1), "x": torch.cat(vals, 1), "field": torch.cat(field, 1)}
    if crosses is None:
        out["pairs"], out["x_pair"] = torch.zeros(n, 0, dtype=torch.long), torch.zeros(n, 0)
        return out
    layer = CrossLinear(crosses, validate=False)
    if layer.schema != schema:
        raise ValueError("crosses: were built over another schema; build them with this schema")
    single, multi = layer.rows(batch)
    pairs, x_pair = [single], [torch.ones(single.shape)]
    for b, rows in multi.items():  # rows: [B, C, L]
        mask = (batch[b] != PAD).float()
        w = (mask / mask.sum(1, keepdim=True).clamp(min=1))[:, None, :].expand(rows.shape)
        pairs.append(rows.reshape(n, -1))
        x_pair.append(w.reshape(n, -1))
    out["pairs"], out["x_pair"] = torch.cat(pairs, 1), torch.cat(x_pair, 1)
    return out


def _cross_rows_used(model: WideDeep, batch: Mapping):
    """Every (example, weight row) the cross term reads, with the example's weight ``x_i``:
    ``(example index, row, x)`` as flat tensors (padding members excluded)."""
    single, multi = model.cross.rows(batch)
    n = single.shape[0]
    ex = [torch.arange(n)[:, None].expand_as(single).reshape(-1)]
    rows = [single.reshape(-1)]
    xs = [torch.ones(single.numel())]
    for b, r in multi.items():  # r: [B, C, L]
        mask = (batch[b] != PAD)[:, None, :].expand_as(r)
        k = (batch[b] != PAD).sum(1).clamp(min=1)[:, None, None].expand_as(r)
        x = 1.0 / k if model.cross.pooling == "mean" else torch.ones_like(k, dtype=torch.float32)
        ex.append(torch.arange(n)[:, None, None].expand_as(r)[mask])
        rows.append(r[mask])
        xs.append(x[mask].float())
    return torch.cat(ex), torch.cat(rows), torch.cat(xs)


def cross_weight_table(model: WideDeep, train: Mapping | None = None) -> pd.DataFrame:
    """Every cross pair of a :class:`~recbook.models.WideDeep` with its learned weight.

    Columns: ``cross`` ("occupation × genres"), ``pair`` ("occupation=programmer ×
    genres=Sci-Fi"), ``weight``; with ``train`` (the training split) also ``train rows`` (rows in
    which the pair occurs) and ``positive rate`` (their share of positive labels). The reserved
    padding and unknown rows are left out. One row per weight, in table order.
    """
    model = _require(model, WideDeep)
    if model.cross is None:
        raise ValueError("model: has no cross features (built with crosses=None)")
    crosses = model.cross.crosses
    ws = crosses.weight_schema
    labels = crosses.labels()
    names = np.repeat(ws.names, ws.sizes)
    weight = model.cross.weight.detach().cpu().double().numpy()
    table = pd.DataFrame({"cross": names, "pair": labels, "weight": weight})
    if train is not None:
        check_batch(model.schema, train)
        ex, rows, _ = _cross_rows_used(model, {k: v.cpu() for k, v in train.items()})
        size = crosses.total_size
        table["train rows"] = np.bincount(rows.numpy(), minlength=size)
        pos = np.bincount(rows.numpy(), weights=train["label"].cpu().double().numpy()[ex.numpy()], minlength=size)
        with np.errstate(invalid="ignore", divide="ignore"):
            table["positive rate"] = pos / table["train rows"].to_numpy()
    reserved = np.isin(np.arange(len(table)) - np.repeat(ws.offsets, ws.sizes), [0, 1])
    return table[~reserved].reset_index(drop=True)


def top_cross_weights(model: WideDeep, train: Mapping | None = None, n: int = 10, *,
                      cross: str | None = None, min_rows: int = 0) -> pd.DataFrame:
    """The ``n`` most positive and ``n`` most negative cross weights (see :func:`cross_weight_table`).

    Args:
        model: a trained :class:`~recbook.models.WideDeep`.
        train: the training split, to report each pair's support (required when ``min_rows > 0``).
        n: how many of each sign.
        cross: only this cross (e.g. ``"occupation × genres"``).
        min_rows: only pairs seen in at least this many training rows.

    Returns the rows sorted by weight, largest first, with a ``sign`` column.
    """
    n = require_positive_int(n, name="n")
    if min_rows and train is None:
        raise ValueError("train: needed to filter by min_rows")
    table = cross_weight_table(model, train)
    if cross is not None:
        if cross not in set(table["cross"]):
            raise ValueError(f"cross: {cross!r} is not among {sorted(set(table['cross']))}")
        table = table[table["cross"] == cross]
    if min_rows:
        table = table[table["train rows"] >= min_rows]
    top = table.nlargest(n, "weight").assign(sign="+")
    bottom = table.nsmallest(n, "weight").assign(sign="-")
    return pd.concat([top, bottom.iloc[::-1]]).reset_index(drop=True)


def _unseen_masks(model: WideDeep, batch: Mapping) -> dict:
    """``{cross name: bool [B]}``: rows whose pair of that cross is unknown (never seen in training)."""
    crosses = model.cross.crosses
    codes = crosses.codes(batch)
    single = [c for c in crosses.crosses if not c.multi]
    out = {}
    for c in crosses.crosses:
        if c.multi:
            out[c.name] = (codes[c.name] == 1).any(1).numpy()
        else:
            out[c.name] = (codes["x"][:, single.index(c)] == 1).numpy()
    return out


def unseen_by_cross(model: WideDeep, split: Mapping, *, min_rows: int = 50) -> pd.DataFrame:
    """AUC of the whole model and of its two parts alone on the rows of ``split`` whose pairs were
    all seen in training, and, for each cross, on the rows whose pair of that cross was not (its
    weight is 0 there, so the wide part knows nothing about that pair). Columns ``rows``, ``AUC,
    whole model``, ``AUC, wide part``, ``AUC, deep part``; NaN for groups under ``min_rows`` rows
    or with one label only."""
    model = _require(model, WideDeep)
    if model.cross is None:
        raise ValueError("model: has no cross features (built with crosses=None)")
    batch = {k: v.cpu() for k, v in split.items()}
    check_batch(model.schema, batch)
    masks = _unseen_masks(model, batch)
    was = model.training
    model.eval()
    with torch.no_grad():
        wide, deep = model.wide(batch).numpy(), model.deep(batch).numpy()
    model.train(was)
    y = batch["label"].numpy()
    groups = {"all pairs seen": ~np.any(list(masks.values()), axis=0)}
    groups.update({f"{name}: pair unseen": m for name, m in masks.items()})
    out = {}
    for name, m in groups.items():
        ok = m.sum() >= min_rows and 0 < y[m].sum() < m.sum()
        row = {"rows": int(m.sum())}
        for part, s in (("whole model", wide + deep), ("wide part", wide), ("deep part", deep)):
            row[f"AUC, {part}"] = _auc(y[m], s[m]) if ok else float("nan")
        out[name] = row
    return pd.DataFrame(out).T


def unseen_pair_rows(model: WideDeep, data, cross: str, split: str = "test", *,
                     titles: Mapping | None = None) -> pd.DataFrame:
    """The rows of ``data``'s ``split`` whose pair of ``cross`` was never seen in training, readable:
    the user's fields, the movie (title when ``titles`` is given) and how many training rows it has,
    the label, and the wide and deep logits the model gives them; most-rated movies first."""
    model = _require(model, WideDeep)
    if model.cross is None:
        raise ValueError("model: has no cross features (built with crosses=None)")
    names = model.cross.crosses.names
    if cross not in names:
        raise ValueError(f"cross: {cross!r} is not among {names}")
    batch = {k: v.cpu() for k, v in getattr(data, split).items()}
    mask = _unseen_masks(model, batch)[cross]
    frame = data.frames[split].reset_index(drop=True)
    was = model.training
    model.eval()
    with torch.no_grad():
        wide, deep = model.wide(batch).numpy(), model.deep(batch).numpy()
    model.train(was)
    counts = data.frames["train"]["item_id"].value_counts()
    out = frame.loc[mask, ["user_id", "gender", "age_bucket", "occupation", "item_id"]].copy()
    out["movie"] = out["item_id"].map(titles) if titles is not None else out["item_id"].astype(str)
    out["movie's training rows"] = out["item_id"].map(counts).fillna(0).astype(int)
    out["label"] = batch["label"].numpy()[mask].astype(int)
    out["wide logit"], out["deep logit"] = wide[mask], deep[mask]
    return out.sort_values(["movie's training rows", "item_id"], ascending=[False, True]).reset_index(drop=True)


# --------------------------------------------------------------------------------------------
# FTRL-Proximal: which wide weights stay exactly zero
# --------------------------------------------------------------------------------------------

def wide_sparsity(model: WideDeep, train: Mapping | None = None) -> dict:
    """Share of the wide part's weights that are exactly zero.

    Keys ``feature weights``, ``cross weights`` and ``all wide weights``. With ``train``, only
    weights of feature values and cross pairs that occur in the training rows count (the
    others never get a gradient, so they are zero under any optimiser).
    """
    model = _require(model, WideDeep)
    feat = model.linear.weights.table.weight.detach().reshape(-1).cpu()
    keep_f = torch.ones_like(feat, dtype=torch.bool)
    cross = model.cross.weight.detach().cpu() if model.cross is not None else torch.zeros(0)
    keep_c = torch.ones_like(cross, dtype=torch.bool)
    if train is not None:
        check_batch(model.schema, train)
        x = train["x"].cpu() + model.single_offsets.cpu()
        keep_f = torch.zeros_like(keep_f)
        keep_f[x.reshape(-1)] = True
        for f in model.schema.multi:
            idx = train[f.name].cpu()
            keep_f[(idx[idx != PAD] + model.schema.offset_of(f.name))] = True
        if model.cross is not None:
            _, rows, _ = _cross_rows_used(model, {k: v.cpu() for k, v in train.items()})
            keep_c = torch.zeros_like(keep_c)
            keep_c[rows] = True
    zf, zc = feat[keep_f] == 0, cross[keep_c] == 0
    share = lambda z: float(z.float().mean()) if z.numel() else float("nan")  # noqa: E731
    return {"feature weights": share(zf), "cross weights": share(zc),
            "all wide weights": share(torch.cat([zf, zc]))}


SUPPORT_BINS = (1, 2, 4, 8, 16, 64, 256)
"""Lower edges of the bins of training rows per cross pair in :func:`zero_share_by_support`."""


def zero_share_by_support(model: WideDeep, train: Mapping, bins: Sequence[int] = SUPPORT_BINS) -> pd.DataFrame:
    """Share of cross weights exactly zero, by how many training rows carry the pair.

    One row per bin ``[bins[i], bins[i + 1])`` (the last bin open-ended): ``pairs`` and ``zero
    share``. Under FTRL-Proximal with L1 a weight stays zero while its accumulated gradient is below
    the L1 strength, which takes evidence: the rarely seen pairs stay zero the longest."""
    table = cross_weight_table(model, train)
    edges = [int(b) for b in bins]
    if not edges or edges[0] < 1 or sorted(set(edges)) != edges:
        raise ValueError(f"bins: expected increasing positive integers, got {bins!r}")
    rows = {}
    for lo, hi in zip(edges, [*edges[1:], None]):
        sel = (table["train rows"] >= lo) & ((table["train rows"] < hi) if hi else True)
        name = f"{lo}" if hi == lo + 1 else (f"{lo}–{hi - 1}" if hi else f"{lo} or more")
        rows[name] = {"pairs": int(sel.sum()),
                      "zero share": float((table.loc[sel, "weight"] == 0).mean()) if sel.any() else float("nan")}
    out = pd.DataFrame(rows).T
    out.index.name = "training rows per pair"
    return out


# --------------------------------------------------------------------------------------------
# The cross-product transformation, one row at a time
# --------------------------------------------------------------------------------------------

def _item_label(label: str, titles: Mapping | None) -> str:
    """``"gender=F × item_id=50"`` -> ``"gender=F × Star Wars (1977)"`` when ``titles`` knows 50."""
    if titles is None or "item_id=" not in label:
        return label
    head, _, raw = label.rpartition("item_id=")
    try:
        return head + str(titles[int(raw)])
    except (KeyError, ValueError, IndexError):
        return label


def wide_terms(model: WideDeep, batch: Mapping, row: int = 0, *, titles: Mapping | None = None) -> pd.DataFrame:
    """Every term of the wide part's logit for one row of ``batch``, by readable name.

    One row per term: the bias, one first-order weight per active feature value (``x = 1/k`` for
    each of a movie's ``k`` genres), and one weight per active **cross pair**, the cross-product
    transformation (a pair of a cross with genres enters with ``x = 1/k``, as the model pools it;
    a pair never seen in training is ``<unk>``, weight 0). Columns ``kind`` ("bias", "feature",
    "cross"), ``term``, ``x``, ``weight``, ``contribution`` (``x × weight``); the contributions add
    up to ``model.wide(batch)[row]``. The pair codes come from the crosses' readable lookup
    (:meth:`recbook.data.Crosses.codes`), not from the model's fused one. ``titles`` (``{item_id:
    title}``) names the movies.
    """
    model = _require(model, WideDeep)
    check_batch(model.schema, batch)
    n = batch["x"].shape[0]
    if isinstance(row, bool) or not isinstance(row, (int, np.integer)) or not 0 <= row < n:
        raise ValueError(f"row: expected an integer in [0, {n}), got {row!r}")
    one = {k: v[int(row): int(row) + 1].cpu() for k, v in batch.items() if isinstance(v, torch.Tensor)}
    schema = model.schema
    feat = model.linear.weights.table.weight.detach().cpu().double()[:, 0]
    terms = [("bias", "bias", 1.0, float(model.linear.bias.detach()))]
    for i, f in enumerate(schema.single):
        code = int(one["x"][0, i])
        terms.append(("feature", f"{f.name}={f.decode(code)}", 1.0, float(feat[schema.offset_of(f.name) + code])))
    for f in schema.multi:
        members = [int(c) for c in one[f.name][0] if int(c) != PAD]
        for c in members:
            terms.append(("feature", f"{f.name}={f.decode(c)}", 1.0 / len(members),
                          float(feat[schema.offset_of(f.name) + c])))
    if model.cross is not None:
        crosses = model.cross.crosses
        codes = crosses.codes(one)
        ws = crosses.weight_schema
        weight = model.cross.weight.detach().cpu().double()
        single = [c for c in crosses.crosses if not c.multi]
        for j, c in enumerate(single):
            r = ws.offset_of(c.name) + int(codes["x"][0, j])
            terms.append(("cross", _item_label(crosses.label(r), titles), 1.0, float(weight[r])))
        for c in crosses.crosses:
            if not c.multi:
                continue
            member_codes = [int(p) for p, m in zip(codes[c.name][0], one[c.b][0]) if int(m) != PAD]
            k = len(member_codes)
            x = 1.0 / k if model.cross.pooling == "mean" else 1.0
            for p in member_codes:
                r = ws.offset_of(c.name) + p
                label = crosses.label(r)
                if p == 1:  # unknown pair: say which pair it was
                    label = f"<unk> ({c.name})"
                terms.append(("cross", _item_label(label, titles), x, float(weight[r])))
    out = pd.DataFrame(terms, columns=["kind", "term", "x", "weight"])
    out["contribution"] = out["x"] * out["weight"]
    return out


def cross_coverage(crosses, train: Mapping, test: Mapping) -> pd.DataFrame:
    """How well the training rows cover each cross: one row per cross with ``pairs`` (known pairs,
    its vocabulary), ``median train rows per pair``, and ``test pairs seen in training`` (share of
    the test block's pairs, one per row or per (row, genre), that are in the vocabulary; the
    others are unknown and get no weight)."""
    from ..data.crosses import Crosses

    if not isinstance(crosses, Crosses):
        raise ValueError(f"crosses: expected a recbook.data.Crosses, got {type(crosses).__name__}")
    out = {}
    tr, te = crosses.codes(train), crosses.codes(test)
    single = [c for c in crosses.crosses if not c.multi]
    for c in crosses.crosses:
        if c.multi:
            a, b = tr[c.name], te[c.name]
        else:
            j = single.index(c)
            a, b = tr["x"][:, j], te["x"][:, j]
        a, b = a[a != PAD].numpy(), b[b != PAD].numpy()
        counts = np.bincount(a, minlength=c.size)[2:]
        out[c.name] = {"pairs": len(c.pairs), "median train rows per pair": float(np.median(counts[counts > 0])),
                       "test pairs seen in training": float((b >= 2).mean())}
    return pd.DataFrame(out).T


# --------------------------------------------------------------------------------------------
# Turning the parts up and down: one user's top ten
# --------------------------------------------------------------------------------------------

def user_codes(data, user_id: int) -> dict:
    """``{field: code}`` of the user fields (role ``"user"``) of ``user_id`` under ``data.schema``,
    as the protocol encodes them (a user absent from training has the unknown user id)."""
    schema = data.schema
    frames = getattr(data, "frames", None)
    if not isinstance(frames, Mapping) or not frames:
        raise ValueError(f"data: expected a recbook.data.CTRData with .frames, got {type(data).__name__}")
    user_fields = [f.name for f in schema.select("user")]
    for s in ("train", "valid", "test"):
        rows = frames.get(s)
        if rows is not None and (rows["user_id"] == user_id).any():
            one = rows.loc[rows["user_id"] == user_id].iloc[:1]
            return {f: int(schema[f].encode(one[f])[0]) for f in user_fields}
    raise ValueError(f"user_id: {user_id!r} does not occur in data.frames")


def catalogue_parts(model: WideDeep, data, user_id: int) -> pd.DataFrame:
    """The wide and the deep logit of every movie of the catalogue for ``user_id``.

    One row per item code (2, 3, ...), columns ``item_id`` (raw id), ``wide`` and ``deep``
    (the two parts the model adds), computed by the model in one batch
    (:meth:`recbook.data.ItemCatalogue.ctr_batch`)."""
    model = _require(model, WideDeep)
    catalogue = data.catalogue
    batch = catalogue.ctr_batch(data.schema, user_codes(data, user_id))
    was = model.training
    model.eval()
    with torch.no_grad():
        wide, deep = model.wide(batch), model.deep(batch)
    model.train(was)
    codes = np.arange(2, catalogue.n_codes)
    item_ids = catalogue.frame["item_id"].iloc[2:].to_numpy(dtype=np.int64)
    return pd.DataFrame({"item_id": item_ids, "wide": wide.double().numpy(), "deep": deep.double().numpy()},
                        index=pd.Index(codes, name="code"))


def top_movies(parts: pd.DataFrame, wide_scale: float = 1.0, deep_scale: float = 1.0, k: int = 10) -> pd.DataFrame:
    """The ``k`` best movies of ``wide_scale × wide + deep_scale × deep`` (``parts`` from
    :func:`catalogue_parts`), best first; ties go to the smaller item code. Columns ``item_id``,
    ``score``, ``wide``, ``deep``, index ``rank`` 1 to ``k``."""
    require_columns(parts, ["item_id", "wide", "deep"], name="parts")
    k = require_positive_int(k, name="k")
    score = wide_scale * parts["wide"].to_numpy() + deep_scale * parts["deep"].to_numpy()
    order = np.lexsort((parts.index.to_numpy(), -score))[:k]
    out = parts.iloc[order][["item_id", "wide", "deep"]].assign(score=score[order])
    return out.set_index(pd.RangeIndex(1, len(out) + 1, name="rank"))[["item_id", "score", "wide", "deep"]]


SCALES = tuple(np.round(np.arange(0, 2.001, 0.25), 2).tolist())
"""The values the chart's two sliders can take (0 to 2 in steps of 0.25)."""


TITLE_LIMIT = 28
"""The longest movie title :func:`scaling_chart` shows (longer ones are cut with "…"), so that a
label fits a phone's width beside the bars."""


def short_title(title, limit: int = TITLE_LIMIT) -> str:
    """A movie title cut to ``limit`` characters (with "…"), as the chart's labels show it."""
    title = str(title)
    return title if len(title) <= limit else title[: limit - 1].rstrip() + "…"


def _rank_texts(top: pd.DataFrame, titles: Mapping) -> list[str]:
    return [f"{r}. {short_title(titles[int(i)])}" for r, i in zip(top.index, top["item_id"])]


SCALING_CHECKS = ((1.0, 0.0), (0.0, 1.0), (2.0, 0.5))
"""The ``(a, b)`` settings :func:`scaling_chart` tries as browser checks, for every user it
offers, when it is given no checks: each part alone, and one mix."""


def scaling_chart(parts: Mapping[int, pd.DataFrame], data, *, user: int, titles: Mapping, k: int = 10,
                  checks: Sequence[tuple[int, float, float]] | None = None, n_checks: int = 3,
                  decimals: int = 4):
    """One user's top ``k`` movies under ``score = a × wide + b × deep``, computed in the browser.

    ``parts`` maps each user the chart offers to :func:`catalogue_parts` (the trained model's wide
    and deep logit of every movie for that user); ``data`` (a :class:`recbook.data.CTRData`) says
    who the users are. A dropdown picks the user; two sliders set ``a`` and ``b``
    (:data:`SCALES`). The page carries, for each user, the two logits (rounded to ``decimals``) of every movie
    that is in the top ``k`` for at least one setting of the sliders (computed here on the rounded
    numbers, so it holds exactly what any setting can show; both at 0 is the one setting with no
    ranking). The browser adds, ranks and draws the two scaled parts of each movie of the top ``k``.
    ``checks``: candidate ``(user, a, b)``; the first ``n_checks`` whose top ``k + 1`` scores are
    at least ``4 × 10^-decimals`` apart become browser checks of the ``k`` titles in order, ranked
    by the PyTorch model. Without ``checks``, every user of ``parts`` with the settings of
    :data:`SCALING_CHECKS` are the candidates.
    """
    k = require_positive_int(k, name="k")
    if not isinstance(parts, Mapping) or not parts:
        raise ValueError("parts: expected {user: catalogue_parts(model, data, user)} for at least one user")
    for u, frame in parts.items():
        require_columns(frame, ["item_id", "wide", "deep"], name=f"parts[{u}]")
    users = [int(u) for u in parts]
    if user not in users:
        raise ValueError(f"user: {user!r} is not among the users of parts {users}")
    scale = 10 ** require_positive_int(decimals, name="decimals")
    frames, rows, models_top = data.frames, [], {int(u): p for u, p in parts.items()}
    train_users = set(frames["train"]["user_id"])
    described = {}
    everyone = pd.concat([frames[s] for s in ("train", "valid", "test")], ignore_index=True)
    for u in users:
        parts_u = models_top[u]
        w = np.rint(parts_u["wide"].to_numpy() * scale) / scale
        d = np.rint(parts_u["deep"].to_numpy() * scale) / scale
        keep = set()
        for a in SCALES:
            for b in SCALES:
                if a == 0 and b == 0:
                    continue
                score = a * w + b * d
                keep.update(np.lexsort((parts_u.index.to_numpy(), -score))[:k].tolist())
        keep = sorted(keep)
        rows.append(pd.DataFrame({"user": u, "movie": parts_u["item_id"].to_numpy()[keep],
                                  "w": np.rint(w[keep] * scale).astype(np.int64),
                                  "d": np.rint(d[keep] * scale).astype(np.int64)}))
        one = everyone.loc[everyone["user_id"] == u].iloc[0]
        described[u] = (f"user {u} · {'seen in training' if u in train_users else 'new: user_id unknown'}",
                        f"{one['gender']}, age {one['age_bucket']}, {one['occupation']}")
    cand = pd.concat(rows, ignore_index=True)
    movies = sorted(set(cand["movie"]))
    title_data = widgets.CsvData(pd.DataFrame({"movie": movies, "title": [short_title(titles[m]) for m in movies]}),
                                 name="wd_titles")
    cand_data = widgets.CsvData(cand, name="wd_candidates")
    user_param = widgets.dropdown("user", users, user, label="user",
                                  labels=[f"{u} · {'seen' if u in train_users else 'new'}" for u in users])
    wide_param = widgets.slider("wide", SCALES[0], SCALES[-1], 0.25, 1.0, label="wide part ×")
    deep_param = widgets.slider("deep", SCALES[0], SCALES[-1], 0.25, 1.0, label="deep part ×")

    base = (
        alt.Chart(cand_data.ref)
        .transform_filter("datum.user == user && (wide != 0 || deep != 0)")
        .transform_calculate(sw=f"wide * datum.w / {scale}", sd=f"deep * datum.d / {scale}")
        .transform_calculate(score="datum.sw + datum.sd", both=f"(datum.w + datum.d) / {scale}")
        .transform_window(rank="row_number()", sort=[alt.SortField("score", order="descending"),
                                                      alt.SortField("movie", order="ascending")])
        .transform_window(rank11="row_number()", sort=[alt.SortField("both", order="descending"),
                                                        alt.SortField("movie", order="ascending")])
        .transform_filter(f"datum.rank <= {k}")
        .transform_lookup(lookup="movie", from_=alt.LookupData(title_data.ref, "movie", ["title"]))
        .transform_calculate(note="datum.rank11 == datum.rank ? '' : datum.rank11 <= " + str(k)
                                  + " ? 'was #' + datum.rank11 : 'new'")
        .transform_calculate(label="datum.rank + '. ' + datum.title + '|' + datum.note")
    )
    # Two lines per movie (rank and title, then "was #k"), so that labels and bars fit a phone.
    y = alt.Y("label:N", sort=alt.EncodingSortField("rank", op="min"), title=None,
              axis=alt.Axis(labelLimit=220, labelFontSize=11, labelExpr="split(datum.label, '|')"))
    parts_layer = base.transform_fold(["sw", "sd"], as_=["part", "value"]).transform_calculate(
        part="datum.part == 'sw' ? 'wide part × a' : 'deep part × b'")
    colour = alt.Color("part:N", title=None, scale=alt.Scale(domain=["wide part × a", "deep part × b"],
                                                             range=["#DD8452", "#4C72B0"]),
                       legend=alt.Legend(orient="bottom", direction="vertical"))  # narrower than the labels and bars
    bars = alt.layer(
        parts_layer.mark_bar().encode(
            x=alt.X("value:Q", title="added to the score (logit)"), y=y,
            yOffset=alt.YOffset("part:N", sort=["wide part × a", "deep part × b"]), color=colour),
        base.mark_tick(color="black", thickness=2).encode(x=alt.X("score:Q"), y=y),
    ).properties(width=155, height={"step": 13})
    # The readout is the chart's title, in short lines that each fit a phone: the formula, then
    # who the user is and their demographics. A title starts at the chart's left edge, not above
    # the bars (which sit right of the movie labels).
    def pick(line: int) -> str:  # the user's line of ``described``, as a Vega expression
        out = "''"
        for u in reversed(users):
            out = f"user == {u} ? {json.dumps(described[u][line], ensure_ascii=False)} : {out}"
        return out

    title = alt.TitleParams(
        text=alt.ExprRef("[wide == 0 && deep == 0 ? 'a = b = 0: all scores 0' : 'score = ' + format(wide, '.2f')"
                         f" + ' × wide + ' + format(deep, '.2f') + ' × deep', {pick(0)}, {pick(1)}]"),
        anchor="start", frame="bounds", fontSize=12, fontWeight="normal", lineHeight=16, offset=10)
    chart = bars.properties(title=title)

    n_checks = require_positive_int(n_checks, name="n_checks")
    if checks is None:
        checks = [(u, a, b) for u in users for a, b in SCALING_CHECKS]
    checks_ = []
    for u, a, b in [(user, 1.0, 1.0), *checks]:
        if u not in models_top:
            raise ValueError(f"checks: user {u!r} is not among users")
        if a not in SCALES or b not in SCALES or (a == 0 and b == 0):
            raise ValueError(f"checks: scales ({a}, {b}) must be values of {SCALES}, not both 0")
        top = top_movies(models_top[u], a, b, k + 1)
        gaps = -np.diff(top["score"].to_numpy())
        if gaps.min() < 4 * (a + b) / scale or len(checks_) >= n_checks:
            continue
        checks_.append({"set": {"user": u, "wide": float(a), "deep": float(b)},
                        "texts": _rank_texts(top.iloc[:k], titles)})
    if len(checks_) < n_checks:
        raise ValueError(f"checks: only {len(checks_)} settings have top-{k} scores far enough apart to "
                         f"check (n_checks = {n_checks}); give more candidates")
    return widgets.browser_chart(chart, params=[user_param, wide_param, deep_param],
                                 data=[cand_data, title_data], checks=checks_)


def ranking_overlap(parts: Mapping[int, pd.DataFrame], k: int = 10) -> pd.DataFrame:
    """For each user of ``parts`` (``{user: catalogue_parts(...)}``), how many of the top ``k``
    movies two settings of the parts share: wide alone (1, 0) with deep alone (0, 1), and each of
    them with the whole model (1, 1)."""
    if not isinstance(parts, Mapping) or not parts:
        raise ValueError("parts: expected {user: catalogue_parts(model, data, user)} for at least one user")
    rows = {}
    for u, frame in parts.items():
        tops = {s: set(top_movies(frame, *s, k=k)["item_id"]) for s in ((1, 0), (0, 1), (1, 1))}
        rows[int(u)] = {"wide ∩ deep": len(tops[(1, 0)] & tops[(0, 1)]),
                        "wide ∩ both": len(tops[(1, 0)] & tops[(1, 1)]),
                        "deep ∩ both": len(tops[(0, 1)] & tops[(1, 1)])}
    return pd.DataFrame(rows).T.rename_axis("user")


# --------------------------------------------------------------------------------------------
# The listing's dense wide part, with the crosses
# --------------------------------------------------------------------------------------------

def dense_wide_input(model: WideDeep, batch: Mapping) -> torch.Tensor:
    """The dense input a wide ``nn.Linear`` (the listing's) needs to compute ``model``'s wide part:
    :func:`one_hot` of the fields followed by one column per cross pair (``x = 1/k`` for each of a
    movie's ``k`` genre pairs with mean pooling), ``[B, schema.total_size + crosses.total_size]``."""
    model = _require(model, WideDeep)
    fields = one_hot(batch, model.schema)
    if model.cross is None:
        return fields
    crosses = model.cross.crosses
    codes = crosses.codes(batch)
    ws = crosses.weight_schema
    out = torch.zeros(fields.shape[0], crosses.total_size)
    single = [c for c in crosses.crosses if not c.multi]
    for j, c in enumerate(single):
        out.scatter_(1, (codes["x"][:, j] + ws.offset_of(c.name))[:, None], 1.0)
    for c in crosses.crosses:
        if c.multi:
            mask = (batch[c.b] != PAD).float()
            x = mask / mask.sum(1, keepdim=True).clamp(min=1) if model.cross.pooling == "mean" else mask
            out.scatter_add_(1, codes[c.name] + ws.offset_of(c.name), x)
    # Padding rows of the crosses (code 0) have weight 0 and no say; drop nothing, as the listing would not.
    return torch.cat([fields, out], dim=1)


def listing_wide_with_crosses(model: WideDeep, batch: Mapping) -> dict:
    """The listing's wide part (``nn.Linear(wide_dim, 1)`` on a dense input) with ``model``'s wide
    weights copied in and the crosses in its input (:func:`dense_wide_input`), against the model's
    own wide part on ``batch``: ``max |difference|``, ``dense input`` shape and ``nonzero share``."""
    model = _require(model, WideDeep)
    dense = dense_wide_input(model, batch)
    linear = nn.Linear(dense.shape[1], 1)
    with torch.no_grad():
        linear.weight.copy_(_wide_vector(model)[None])
        linear.bias.copy_(model.linear.bias.detach().reshape(1))
        was = model.training
        model.eval()
        ref = model.wide(batch)
        model.train(was)
        out = linear(dense).squeeze(1)
    return {"max |difference|": float((out - ref).abs().max()), "dense input": tuple(dense.shape),
            "nonzero share": float((dense != 0).float().mean())}


def _wide_vector(model: WideDeep) -> torch.Tensor:
    feat = model.linear.weights.table.weight.detach()[:, 0]
    return feat if model.cross is None else torch.cat([feat, model.cross.weight.detach()])


def time_wide_dense_vs_sparse(model: WideDeep, data, *, n_batches: int = 10, batch_size: int = 1024,
                              repeats: int = 5, threads: int = 1) -> pd.DataFrame:
    """CPU time of the wide part's forward and backward on ``n_batches`` training batches: the
    listing's dense ``nn.Linear`` over :func:`dense_wide_input` (built beforehand, not timed)
    against ``model``'s lookups (:class:`~recbook.layers.FeatureLinear` and
    :class:`~recbook.layers.CrossLinear`, which read one row per active feature and pair).

    Returns one row per layout: ``inputs per row`` (columns of the dense input; rows read by the
    lookups), ``ms per batch`` (best of ``repeats``), ``MB of input per batch`` (float32), and
    ``slowdown`` against the lookups."""
    model = _require(model, WideDeep)
    data = _require_data(data)
    n_batches = require_positive_int(n_batches, name="n_batches")
    batches = [b for _, b in zip(range(n_batches), data.train.batches(batch_size, shuffle=False))]
    dense = [dense_wide_input(model, b) for b in batches]
    linear = nn.Linear(dense[0].shape[1], 1)
    sparse = copy.deepcopy(model)
    sparse.validate = False

    def run_dense():
        for x in dense:
            linear(x).sum().backward()

    def run_sparse():
        for b in batches:
            sparse._wide(b).sum().backward()

    rows = {}
    with num_threads(threads):
        for name, fn in (("dense nn.Linear on one-hot (listing)", run_dense), ("lookups (recbook)", run_sparse)):
            fn()  # warm-up
            best = float("inf")
            for _ in range(repeats):
                t0 = time.process_time()
                fn()
                best = min(best, (time.process_time() - t0) / n_batches)
            rows[name] = {"ms per batch": best * 1e3}
    ex, rows_used, _ = _cross_rows_used(model, batches[0]) if model.cross is not None else (None, torch.zeros(0), None)
    lookups = len(model.schema.single) + float((batches[0]["genres"] != PAD).sum(1).float().mean()) \
        + rows_used.numel() / batches[0]["x"].shape[0]
    rows["dense nn.Linear on one-hot (listing)"]["inputs per row"] = dense[0].shape[1]
    rows["lookups (recbook)"]["inputs per row"] = lookups
    rows["dense nn.Linear on one-hot (listing)"]["MB of input per batch"] = dense[0].numel() * 4 / 2 ** 20
    rows["lookups (recbook)"]["MB of input per batch"] = sum(
        v.numel() * v.element_size() for v in batches[0].values()) / 2 ** 20
    out = pd.DataFrame(rows).T[["inputs per row", "MB of input per batch", "ms per batch"]]
    out["slowdown"] = out["ms per batch"] / out.loc["lookups (recbook)", "ms per batch"]
    return out


# --------------------------------------------------------------------------------------------
# Diagram
# --------------------------------------------------------------------------------------------

def plot_widedeep_architecture(fields: Sequence[str] = ("user_id", "item_id", "age_bucket", "gender",
                                                        "occupation", "zip1", "year_bucket", "genres"),
                               crosses: Sequence[str] = ("gender × genres", "age_bucket × genres",
                                                         "occupation × genres", "user_id × genres",
                                                         "gender × item_id"),
                               dim: int = 16, hidden: Sequence[int] = (256, 128), *,
                               ax: Axes | None = None) -> Axes:
    """Wide & Deep as the book builds it: the fields feed a wide part (one weight per value and one
    per cross pair, looked up) and a deep part (embeddings, concatenated, through an MLP); the two
    logits add up to one, trained with one loss."""
    fields = [str(f) for f in fields]
    crosses = [str(c) for c in crosses]
    if len(fields) < 2:
        raise ValueError(f"fields: expected at least two field names, got {fields}")
    dim = require_positive_int(dim, name="dim")
    hidden = [require_positive_int(h, name="hidden") for h in hidden]
    ax = diagram_axes(ax, (7.2, 4.4), (0, 100), (0, 56))
    arrow = partial(diagram_arrow, ax)

    def box(x, y, w, h, text, colour, size=9.0, weight="normal"):   # this figure's text is smaller
        diagram_box(ax, x, y, w, h, text, colour, size, weight)

    n = len(fields)
    step = 44 / n
    ys = [49 - step * (i + 0.5) for i in range(n)]
    ax.text(8, 53.5, "fields", ha="center", fontsize=10, fontweight="bold")
    for f, y in zip(fields, ys):
        box(1.5, y - step * 0.32, 13, step * 0.64, f, "#EAEAF2", 8.5)
    wide_colour, deep_colour = "#F6DCC8", "#DCE6F2"
    # Wide part (top): per-value weights and cross pairs.
    ax.text(37, 53.5, "wide part: memorisation", ha="center", fontsize=10, fontweight="bold", color="#8C4A17")
    box(22, 43.5, 30, 6, "one weight per value\nw₀ + Σᵢ wᵢ", wide_colour, 8.5)
    box(22, 29, 30, 11.5, "cross-product features\n" + "\n".join(crosses), wide_colour, 7.5)
    arrow(15.3, 40, 21.5, 46)
    arrow(15.3, 36, 21.5, 34)
    # Deep part (bottom): embeddings and MLP.
    ax.text(37, 2.2, "deep part: generalisation", ha="center", fontsize=10, fontweight="bold", color="#2F4B7C")
    box(22, 16, 30, 8, f"embeddings, {dim} per field\nconcatenated: {n} × {dim} = {n * dim}", deep_colour, 8.5)
    box(22, 5.5, 30, 6.5, "MLP " + " → ".join(str(h) for h in [*hidden, 1]) + " (ReLU)", deep_colour, 8.5)
    arrow(15.3, 20, 21.5, 20)
    arrow(37, 15.3, 37, 12.7)
    # Sum and logit.
    box(63, 38, 14, 6, "wide logit", wide_colour, 9)
    box(63, 8, 14, 6, "deep logit", deep_colour, 9)
    arrow(52.7, 46, 62.5, 42)
    arrow(52.7, 35, 62.5, 40)
    arrow(52.7, 9, 62.5, 11)
    box(84, 22.5, 12, 8, "logit ŷ\n= wide + deep", "#D5EDE4", 9, "bold")
    arrow(77.7, 40, 86, 31.3)
    arrow(77.7, 12, 86, 21.7)
    ax.text(90, 19, "one loss:\nboth parts\ntrained jointly", ha="center", va="top", fontsize=8, color="0.35")
    return ax


# --------------------------------------------------------------------------------------------
# A typical Wide & Deep listing, as written
# --------------------------------------------------------------------------------------------

class ListingWideAndDeep(nn.Module):
    """A Wide & Deep as you will typically find it, as written (only comments translated).

    ``wide_input`` is a dense ``[B, wide_dim]`` vector (one-hot or multi-hot features, and cross
    features if the caller builds them); ``deep_input`` a dense ``[B, deep_dim]`` vector. Without
    cross features in ``wide_input`` the wide part is logistic regression
    (:func:`listing_wide_is_lr`).
    """

    def __init__(self, wide_dim, deep_dim):
        super(ListingWideAndDeep, self).__init__()

        # Wide part: linear model
        self.wide = nn.Linear(wide_dim, 1)

        # Deep part: DNN
        self.deep = nn.Sequential(
            nn.Linear(deep_dim, 128),
            nn.ReLU(),
            nn.Dropout(0.5),
            nn.Linear(128, 64),
            nn.ReLU(),
            nn.Linear(64, 1)
        )

    def forward(self, wide_input, deep_input):
        wide_out = self.wide(wide_input)
        deep_out = self.deep(deep_input)
        output = wide_out + deep_out
        return torch.sigmoid(output)


def one_hot(batch: Mapping, schema: Schema) -> torch.Tensor:
    """The dense ``[B, total_size]`` input the listing's ``nn.Linear`` wide part expects: 1 in the
    column of every single-valued field's value, ``1/k`` on each of a multi-valued field's ``k``
    members (the ``x_i`` of :class:`~recbook.layers.FeatureLinear`)."""
    check_batch(schema, batch)
    x = batch["x"]
    out = torch.zeros(x.shape[0], schema.total_size)
    offsets = torch.as_tensor(schema.offsets[: len(schema.single)])
    out.scatter_(1, x + offsets, 1.0)
    for f in schema.multi:
        idx = batch[f.name]
        mask = (idx != PAD).float()
        w = mask / mask.sum(1, keepdim=True).clamp(min=1)
        out.scatter_add_(1, idx + schema.offset_of(f.name), w)
    return out


def listing_wide_is_lr(data, *, batch_size: int = 1024, seed: int = 0) -> dict:
    """The listing's wide part on a one-hot input is logistic regression.

    Builds :class:`ListingWideAndDeep` with ``wide_dim = schema.total_size``, copies its
    ``nn.Linear`` weights into a :class:`~recbook.models.LogisticRegression` (one weight per
    feature value) and compares their logits on a batch of ``data.train``.

    Returns ``max |difference|`` of the logits, the ``dense input`` shape the listing needs, its
    ``nonzero share`` (the dense ``Linear`` multiplies mostly zeros) and ``lookup rows`` per row
    (what :class:`~recbook.layers.FeatureLinear` reads instead).
    """
    data = _require_data(data)
    schema = data.schema
    torch.manual_seed(seed)
    listing = ListingWideAndDeep(schema.total_size, len(schema) * 16)
    lr = LogisticRegression(schema)
    with torch.no_grad():
        lr.linear.weights.table.weight.copy_(listing.wide.weight.T)
        lr.linear.bias.copy_(listing.wide.bias[0])
    batch = {k: v[:batch_size] for k, v in data.train.items()}
    dense = one_hot(batch, schema)
    with torch.no_grad():
        wide = listing.wide(dense).squeeze(1)
        ref = lr(batch)
    return {"max |difference|": float((wide - ref).abs().max()), "dense input": tuple(dense.shape),
            "nonzero share": float((dense != 0).float().mean()),
            "lookup rows": len(schema.single) + float((batch["genres"] != PAD).sum(1).float().mean())}


# --------------------------------------------------------------------------------------------
# The cross weights, explored in the browser
# --------------------------------------------------------------------------------------------

EXPLORED_CROSSES = ("gender × genres", "age_bucket × genres", "occupation × genres")
"""The crosses :func:`cross_weight_chart` offers by default: the demographic × genre ones."""


def genre_cross_weights(model: WideDeep, train: Mapping, crosses: Sequence[str] = EXPLORED_CROSSES) -> pd.DataFrame:
    """The weights of the ``field × genres`` crosses ``crosses`` as one row per (value, genre):
    columns ``group`` ("occupation=programmer"), ``genre``, ``weight``, ``train rows`` and
    ``positive rate`` (see :func:`cross_weight_table`)."""
    table = cross_weight_table(model, train)
    crosses = [str(c) for c in crosses]
    known = sorted(set(table["cross"]))
    for c in crosses:
        if c not in known or not c.endswith(" × genres"):
            raise ValueError(f"crosses: {c!r} is not a '<field> × genres' cross of the model; its crosses are {known}")
    sub = table[table["cross"].isin(crosses)].copy()
    parts = sub["pair"].str.split(" × genres=", n=1, regex=False)
    sub["group"], sub["genre"] = parts.str[0], parts.str[1]
    return sub[["cross", "group", "genre", "weight", "train rows", "positive rate"]].reset_index(drop=True)


CROSS_CHART_CHECKS = ("gender=F", "age_bucket=<18", "occupation=student", "occupation=writer")
"""The values :func:`cross_weight_chart` tries as browser checks when it is given none (those the
trained model has)."""


def cross_weight_chart(model: WideDeep, train: Mapping, *, value: str = "occupation=programmer",
                       crosses: Sequence[str] = EXPLORED_CROSSES, checks: Sequence[str] | None = None,
                       n_checks: int = 2, decimals: int = 4):
    """The learned weight of every genre crossed with one user value, chosen in a dropdown.

    The page carries the cross weights of ``crosses`` (:func:`genre_cross_weights`, rounded to
    ``decimals``) with their training rows and positive rates; the browser filters the chosen
    value's pairs, sorts them by weight and draws them, and writes the largest and the smallest
    weight in the header. ``checks``: candidate values (``"gender=F"``); the first ``n_checks`` of
    ``[value, *checks]`` whose extreme weights sit away from a rounding boundary become browser
    checks of the header, with the weights read from the model. Without ``checks``, the values
    of :data:`CROSS_CHART_CHECKS` that the model has are the candidates.
    """
    from .fm import d3_signed

    frame = genre_cross_weights(model, train, crosses)
    groups = list(dict.fromkeys(frame["group"]))
    if value not in groups:
        raise ValueError(f"value: {value!r} is not among the crossed values {groups}")
    scale = 10 ** require_positive_int(decimals, name="decimals")
    codes = {g: i for i, g in enumerate(groups)}
    shipped = pd.DataFrame({"g": frame["group"].map(codes), "genre": frame["genre"],
                            "w": np.rint(frame["weight"].to_numpy() * scale).astype(np.int64),
                            "n": frame["train rows"].astype(np.int64),
                            "r": np.rint(frame["positive rate"].to_numpy() * 100).astype(np.int64)})
    weights = widgets.CsvData(shipped, name="wd_cross_weights")
    group_param = widgets.dropdown("group", list(range(len(groups))), codes[value], labels=groups,
                                   label="user value")
    base = (alt.Chart(weights.ref).transform_filter("datum.g == group")
            .transform_calculate(weight=f"datum.w / {scale}",
                                 note="datum.n + ' rows, ' + datum.r + '% liked'"))
    y = alt.Y("genre:N", sort=alt.EncodingSortField("weight", order="descending"), title=None,
              axis=alt.Axis(labelFontSize=11))
    bars = base.mark_bar().encode(
        x=alt.X("weight:Q", title="cross weight (added to the logit)"), y=y,
        color=alt.condition("datum.weight > 0", alt.value("#DD8452"), alt.value("#4C72B0")))
    # Bars 150 px wide and the notes right of them: with the genre labels, about 340 px, which
    # fits a phone's cell (358 px) as drawn.
    notes = base.mark_text(align="left", dx=4, fontSize=10, color="#555555").encode(
        x=alt.value(152), y=y, text="note:N")
    body = alt.layer(bars, notes).properties(width=150, height={"step": 15})
    extremes = (base.transform_window(hi="rank()", sort=[alt.SortField("weight", order="descending")])
                .transform_window(lo="rank()", sort=[alt.SortField("weight", order="ascending")])
                .transform_filter("datum.hi == 1 || datum.lo == 1")
                .transform_calculate(t="(datum.hi == 1 ? 'largest: ' : 'smallest: ') + datum.genre + ' ('"
                                       " + format(datum.weight, '+.3f') + ')'",
                                     line="datum.hi == 1 ? 0 : 1"))
    head = extremes.mark_text(align="left", fontSize=12).encode(
        x=alt.value(0), y=alt.Y("line:O", axis=None), text="t:N").properties(width=260, height=34)
    chart = alt.vconcat(head, body, spacing=6)

    def texts(group: str) -> list[str] | None:
        rows = frame[frame["group"] == group]
        out = []
        for w, g in ((rows["weight"].max(), rows.loc[rows["weight"].idxmax(), "genre"]),
                     (rows["weight"].min(), rows.loc[rows["weight"].idxmin(), "genre"])):
            if (rows["weight"] == w).sum() > 1 or abs(w * 1000 - np.floor(w * 1000) - 0.5) < 0.1:
                return None  # a tie, or too close to a rounding boundary of 3 decimals
            out.append(("largest: " if not out else "smallest: ") + f"{g} ({d3_signed(w, 3)})")
        return out

    n_checks = require_positive_int(n_checks, name="n_checks")
    if checks is None:
        checks = [g for g in CROSS_CHART_CHECKS if g in codes]
    checks_ = []
    for g in [value, *checks]:
        if g not in codes:
            raise ValueError(f"checks: {g!r} is not among the crossed values")
        t = texts(g)
        if t is not None and len(checks_) < n_checks:
            checks_.append({"set": {"group": codes[g]}, "texts": t})
    if len(checks_) < n_checks:
        raise ValueError(f"checks: only {len(checks_)} values have extreme weights away from a rounding "
                         f"boundary (n_checks = {n_checks}); give more candidates")
    return widgets.browser_chart(chart, params=[group_param], data=[weights], checks=checks_)


# --------------------------------------------------------------------------------------------
# FTRL settings: the sweep behind the WideDeep-FTRL entry
# --------------------------------------------------------------------------------------------

FTRL_SWEEP_FILE = "widedeep_ftrl_sweep.csv"
"""The results of :func:`run_ftrl_sweep` (``book/results/widedeep_ftrl_sweep.csv``), read with
:func:`recbook.bench.read_results`."""

FTRL_GRID = (
    *[dict(alpha=a, beta=b, l1=0.001, l2=0.0, deep_lr=0.005) for a in (0.02, 0.05, 0.1) for b in (0.01, 1.0)],
    *[dict(alpha=0.05, beta=0.01, l1=0.001, l2=0.0, deep_lr=lr) for lr in (0.002, 0.01)],
    *[dict(alpha=0.05, beta=0.01, l1=l1, l2=0.0, deep_lr=0.005) for l1 in (0.0001, 0.01)],
)
"""The FTRL-Proximal (wide part) and AdaGrad (deep part) settings tried on validation: the rates
``alpha`` x ``beta`` (``beta = 1`` is the value McMahan et al. 2013 suggest), then the deep part's
learning rate and the L1 strength one at a time around the best of them."""

_FTRL_KEYS = ("alpha", "beta", "l1", "l2", "deep_lr")


def _ftrl_name(setting: Mapping) -> str:
    return "WideDeep-FTRL " + " ".join(f"{k}={setting[k]:g}" for k in _FTRL_KEYS)


def ftrl_sweep_entries(grid: Sequence[Mapping] = FTRL_GRID) -> list:
    """One :class:`recbook.bench.Entry` per setting of ``grid``: the leaderboard's ``WideDeep-FTRL``
    entry (same factory, same fit settings) with that optimiser setting; **not** registered on
    the leaderboard. Names read ``"WideDeep-FTRL alpha=0.05 beta=0.01 l1=0.001 l2=0 deep_lr=0.005"``."""
    from ..bench import CTR_FIT, Entry
    from ..models import ftrl_adagrad

    out = []
    for setting in grid:
        if not isinstance(setting, Mapping) or set(setting) != set(_FTRL_KEYS):
            raise ValueError(f"grid: expected dicts with the keys {list(_FTRL_KEYS)}, got {setting!r}")
        out.append(Entry(_ftrl_name(setting), "ctr", WideDeep.from_data, {},
                         dict(CTR_FIT, optimizer=ftrl_adagrad(**setting)),
                         description="Wide & Deep, FTRL-Proximal (wide) + AdaGrad (deep): " + _ftrl_name(setting)))
    return out


_SWEEP_DATA: dict = {}


def _ftrl_sweep_run(task) -> dict:
    """One run of the sweep (in a worker process): ``task = (setting, seed, threads)``."""
    from ..bench import load_protocol, run_one

    setting, seed, threads = task
    entry = ftrl_sweep_entries([setting])[0]
    if "ctr" not in _SWEEP_DATA:  # loaded once per process
        _SWEEP_DATA["ctr"] = load_protocol("ctr")
    row = run_one(entry, _SWEEP_DATA["ctr"], seed, threads=threads, quick=False, progress=False)
    return {**row, **{k: float(setting[k]) for k in _FTRL_KEYS}}


def run_ftrl_sweep(path=None, seeds: Sequence[int] = (0, 1, 2), *, grid: Sequence[Mapping] = FTRL_GRID,
                   threads: int = 1, jobs: int = 1) -> pd.DataFrame:
    """Train every setting of ``grid`` with ``seeds`` as the leaderboard trains an entry
    (:func:`recbook.bench.run_one`: early stopping on validation AUC) and write the rows, with
    the setting in the columns ``alpha``, ``beta``, ``l1``, ``l2`` and ``deep_lr``, to ``path``
    (default: the repository's ``book/results/widedeep_ftrl_sweep.csv``), in the order of the
    grid and the seeds. 30 runs of 10-60 s with one thread each, ``jobs`` at a time::

        python -c "from recbook.chapters import widedeep; widedeep.run_ftrl_sweep(jobs=4)"
    """
    from concurrent.futures import ProcessPoolExecutor
    from pathlib import Path

    seeds = [int(s) for s in seeds]
    if not seeds:
        raise ValueError("seeds: expected at least one seed")
    jobs = require_positive_int(jobs, name="jobs")
    ftrl_sweep_entries(grid)  # validates the grid
    path = (Path(path) if path is not None
            else BOOK_RESULTS / FTRL_SWEEP_FILE)
    tasks = [(dict(setting), s, threads) for setting in grid for s in seeds]
    if jobs == 1:
        rows = [_ftrl_sweep_run(t) for t in tasks]
    else:
        with ProcessPoolExecutor(max_workers=jobs) as pool:
            rows = list(pool.map(_ftrl_sweep_run, tasks))
    out = pd.DataFrame(rows)
    out.to_csv(path, index=False, float_format="%.6g")
    return out


CROSS_CANDIDATE = ("occupation", "year_bucket")
"""The cross an exercise of the chapter tries on top of :data:`recbook.data.CROSSES`."""

CROSS_CANDIDATE_FILE = "widedeep_cross_candidate.csv"
"""The results of :func:`run_cross_candidate` (``book/results/widedeep_cross_candidate.csv``),
read with :func:`recbook.bench.read_results`."""


def cross_candidate_entry(cross: tuple[str, str] = CROSS_CANDIDATE):
    """The leaderboard's ``WideDeep`` entry (same factory settings, same fit settings) with one
    more cross, ``cross``, added to :data:`recbook.data.CROSSES`; **not** registered on the
    leaderboard. Its name reads ``"WideDeep+occupation×year_bucket"``."""
    from ..bench import REGISTRY, Entry
    from ..data import CROSSES

    if (not isinstance(cross, tuple) or len(cross) != 2 or not all(isinstance(f, str) for f in cross)):
        raise ValueError(f"cross: expected a pair of field names such as ('occupation', 'year_bucket'), got {cross!r}")
    if cross in CROSSES:
        raise ValueError(f"cross: {cross!r} is already one of CROSSES {list(CROSSES)}")
    base = REGISTRY["WideDeep"]
    return Entry(f"WideDeep+{cross[0]}×{cross[1]}", "ctr", base.factory,
                 {**base.params, "crosses": [*CROSSES, cross]}, dict(base.fit),
                 description=f"Wide & Deep with the cross {cross[0]} × {cross[1]} added")


def run_cross_candidate(path=None, seeds: Sequence[int] = (0, 1, 2), *,
                        cross: tuple[str, str] = CROSS_CANDIDATE, threads: int = 1) -> pd.DataFrame:
    """Train :func:`cross_candidate_entry` with ``seeds`` as the leaderboard trains an entry
    (:func:`recbook.bench.run_one`) and write the rows to ``path`` (default: the repository's
    ``book/results/widedeep_cross_candidate.csv``). Three runs of about 10 s with one thread::

        python -c "from recbook.chapters import widedeep; widedeep.run_cross_candidate()"
    """
    from pathlib import Path

    from ..bench import load_protocol, run_one

    seeds = [int(s) for s in seeds]
    if not seeds:
        raise ValueError("seeds: expected at least one seed")
    entry = cross_candidate_entry(cross)
    path = (Path(path) if path is not None
            else BOOK_RESULTS / CROSS_CANDIDATE_FILE)
    data = load_protocol("ctr")
    out = pd.DataFrame([run_one(entry, data, s, threads=threads, quick=False, progress=False) for s in seeds])
    out.to_csv(path, index=False, float_format="%.6g")
    return out


def ftrl_sweep_table(rows: pd.DataFrame) -> pd.DataFrame:
    """The sweep's rows (:func:`run_ftrl_sweep`, :data:`FTRL_SWEEP_FILE`) by setting: mean and
    standard deviation of the validation AUC over the seeds, the number of seeds and the mean
    number of epochs, best validation AUC first. Test AUC is left out: settings are chosen on
    validation only."""
    require_columns(rows, [*_FTRL_KEYS, "seed", "valid_auc", "epochs"], name="rows")
    g = rows.groupby(list(_FTRL_KEYS))
    out = pd.DataFrame({"seeds": g["seed"].nunique(), "valid AUC": g["valid_auc"].mean(),
                        "valid AUC ±": g["valid_auc"].std(ddof=1), "epochs": g["epochs"].mean()})
    return out.sort_values("valid AUC", ascending=False)


# --------------------------------------------------------------------------------------------
# Leaderboard comparisons, and the dates of the splits
# --------------------------------------------------------------------------------------------

_METRIC_WORDS = {"test_auc": "test AUC", "valid_auc": "validation AUC", "test_logloss": "test logloss"}


def paired_seeds(results: pd.DataFrame, a: str, b: str, metrics: Sequence[str] = tuple(_METRIC_WORDS)):
    """Models ``a`` and ``b`` of the leaderboard's ``results`` compared seed by seed
    (:func:`recbook.bench.seed_comparison`): returns ``(by_seed, summary)``, the per-seed table
    (``"<metric> a"``, ``"<metric> b"``, ``"<metric> b − a"``) and, for each difference, its
    ``mean``, ``min`` and ``max`` over the seeds, indexed in words ("test AUC, b − a")."""
    from ..bench import seed_comparison

    for m in metrics:
        if m not in _METRIC_WORDS:
            raise ValueError(f"metrics: {m!r} is not one of {list(_METRIC_WORDS)}")
    by_seed = seed_comparison(results, a, b, metrics=list(metrics))
    diff = by_seed.filter(like=" − ")
    out = pd.DataFrame({"mean": diff.mean(), "min": diff.min(), "max": diff.max()})
    out.index = [f"{_METRIC_WORDS[c.split(' ', 1)[0]]}, {c.split(' ', 1)[1]}" for c in out.index]
    return by_seed, out


def by_seed_table(by_seed: pd.DataFrame):
    """:func:`paired_seeds`'s per-seed table for the page: metrics in words over the models and
    their difference, four decimals, differences signed."""
    shown = by_seed.copy()
    shown.columns = pd.MultiIndex.from_tuples(
        [(_METRIC_WORDS[c.split(" ", 1)[0]], c.split(" ", 1)[1]) for c in shown.columns])
    return widgets.escape_html(shown).style.format("{:.4f}").format(
        "{:+.4f}", subset=[c for c in widgets.escape_html(shown).columns if " − " in c[1]])


def split_dates(data) -> pd.DataFrame:
    """First and last rating date of each CTR split (``data.frames``, column ``timestamp`` in
    seconds), with the span in days and weeks."""
    rows = {}
    for name in ("train", "valid", "test"):
        frame = data.frames[name]
        require_columns(frame, ["timestamp"], name=f"data.frames[{name!r}]")
        t = pd.to_datetime(frame["timestamp"], unit="s")
        days = (t.max() - t.min()).total_seconds() / 86400
        rows[name] = {"first": t.min().date(), "last": t.max().date(), "days": days, "weeks": days / 7}
    return pd.DataFrame(rows).T

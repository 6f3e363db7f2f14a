"""Helpers of the Wide & Deep and DeepFM chapters: measured analyses, and the source notes' listings.

The chapters call these helpers; they hold the code, the chapters explain it.

Wide & Deep:

* :func:`cross_weight_table` / :func:`top_cross_weights`: the wide part's learned cross weights
  with readable names ("occupation=programmer × genres=Sci-Fi") and how many training rows
  support each one: what the wide part memorised.
* :class:`ModelPart` and :func:`joint_vs_ensemble`: the same architecture trained jointly (one
  logit, one loss) or as an ensemble of a wide and a deep model trained separately.
* :func:`wide_sparsity` and :func:`optimizer_split`: the paper's FTRL-Proximal (L1) + AdaGrad
  against one Adam: share of wide weights exactly zero, AUC, time.
* :func:`with_and_without_crosses`: the same model with and without its cross features.
* :func:`unseen_pair_auc`: test AUC of the wide part alone and of the whole model on rows whose
  cross pairs were all seen in training, and on rows with a pair never seen.

DeepFM:

* :func:`deepfm_parts`: one user–movie pair's logit split into its first-order, FM and deep parts.

The source notes' listings (``deep-recommendation-models.zh.md``, sections 1 and 2), run as
written: :class:`ListingDeepFM`, :class:`ListingWideAndDeep`, and

* :func:`listing_broadcast`: the ``[B] + [B, 1]`` broadcast into ``[B, B]``;
* :func:`saturation_at_init`: ``sigmoid`` inside the model, ``BCELoss`` and ``N(0, 1)``
  embeddings: share of saturated outputs and of zero gradients at initialisation;
* :func:`time_per_field_tables`: the measured cost of one ``nn.Embedding`` per field;
* :func:`listing_wide_is_lr` and :func:`one_hot`: the listing's wide part without cross
  features is logistic regression, so the listing is LR + MLP.

(The FM chapter already shows the broadcast and the sigmoid/``BCELoss`` problem on a miniature
and on single logits; these helpers measure them on the full listings.)
"""
from __future__ import annotations

import time
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from .._checks import require_positive_int
from ..data.features import PAD, Schema
from ..layers import check_batch
from ..metrics import auc as _auc
from ..models import DeepFM, LogisticRegression, WideDeep, ftrl_adagrad
from ..train import evaluate_ctr, fit, num_threads, predict, seed_everything
from .fm import user_movie_batch

__all__ = [
    "ListingDeepFM", "ListingDeepFMShapesFixed", "ListingWideAndDeep", "ModelPart", "cross_weight_table",
    "deepfm_parts", "joint_vs_ensemble", "listing_broadcast", "listing_wide_is_lr", "one_hot",
    "optimizer_split", "saturation_at_init", "time_per_field_tables", "top_cross_weights",
    "unseen_pair_auc", "wide_sparsity", "with_and_without_crosses",
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


def unseen_pair_auc(model: WideDeep, split: Mapping) -> pd.DataFrame:
    """AUC of the whole model and of its wide and deep parts alone, on the rows of ``split`` whose
    cross pairs were all seen in training and on the rows with at least one unknown pair.

    On the second group the wide part's crosses contribute nothing (an unknown pair's weight is
    0): whatever the model gets right there comes from the per-feature weights and the deep part.
    """
    model = _require(model, WideDeep)
    if model.cross is None:
        raise ValueError("model: has no cross features (built with crosses=None)")
    batch = {k: v.cpu() for k, v in split.items()}
    check_batch(model.schema, batch)
    ex, rows, _ = _cross_rows_used(model, batch)
    ws = model.cross.crosses.weight_schema
    local = rows - torch.as_tensor(np.repeat(ws.offsets, ws.sizes))[rows]
    n = batch["x"].shape[0]
    unseen = torch.zeros(n, dtype=torch.bool)
    unseen[ex[local == 1]] = True
    was = model.training
    model.eval()
    with torch.no_grad():
        scores = {"whole model": model(batch), "wide part": model.wide(batch), "deep part": model.deep(batch)}
    model.train(was)
    y = batch["label"].numpy()
    out = {}
    for name, mask in (("all pairs seen", ~unseen), ("some pair unseen", unseen)):
        m = mask.numpy()
        row = {"rows": int(m.sum())}
        for k, s in scores.items():
            row[f"AUC, {k}"] = _auc(y[m], s.numpy()[m]) if 0 < y[m].sum() < m.sum() else float("nan")
        out[name] = row
    return pd.DataFrame(out).T


# --------------------------------------------------------------------------------------------
# Joint training vs an ensemble
# --------------------------------------------------------------------------------------------

class ModelPart(nn.Module):
    """One part of a :class:`~recbook.models.WideDeep` as a model of its own: ``forward`` returns
    ``model.wide(batch)`` or ``model.deep(batch)``. Training it with :func:`recbook.train.fit`
    trains that part only (the other part's parameters get no gradient)."""

    def __init__(self, model: WideDeep, part: str):
        super().__init__()
        self.model = _require(model, WideDeep)
        if part not in ("wide", "deep"):
            raise ValueError(f"part: expected 'wide' or 'deep', got {part!r}")
        self.part = part

    def forward(self, batch: Mapping) -> torch.Tensor:
        return self.model.wide(batch) if self.part == "wide" else self.model.deep(batch)

    def parameters(self, recurse: bool = True):
        # Only this part's parameters, so an optimiser built from them leaves the other alone.
        own = self.model.wide_parameters() if self.part == "wide" else self.model.deep_parameters()
        return iter(own)


def _fit_row(model, data, seed, fit_kwargs, evaluate_model=None):
    res = fit(model, data.train, data.valid, seed=seed, progress=False, **fit_kwargs)
    target = evaluate_model or model
    h = res.history
    return {"valid AUC": evaluate_ctr(target, data.valid)["auc"], **{
        f"test {k}": v for k, v in evaluate_ctr(target, data.test).items() if k in ("auc", "logloss", "gauc")},
        "epochs": len(h), "CPU s/epoch": float(h["cpu_seconds"].mean())}


def joint_vs_ensemble(data, *, seed: int = 0, crosses=None, fit_kwargs: Mapping | None = None,
                      **model_kwargs) -> pd.DataFrame:
    """Wide & Deep trained jointly, against the same two parts trained separately and added.

    * ``joint``: one :class:`~recbook.models.WideDeep`, one loss on ``wide + deep``.
    * ``wide alone`` / ``deep alone``: a second model with the same initial weights; its wide
      part is trained alone (early stopping on its own validation AUC), then its deep part alone.
    * ``ensemble (sum of logits)``: that second model as it is, ``wide + deep`` of the separately
      trained parts; ``ensemble (stacked on validation)``: ``a * wide + b * deep + c`` with
      ``a, b, c`` fitted by logistic regression on the validation split.

    Args:
        data: a :class:`recbook.data.CTRData`.
        seed: seeds the initial weights (the same for both models) and training.
        crosses: a :class:`recbook.data.Crosses`; default: :func:`recbook.data.ctr_crosses`.
        fit_kwargs: settings for :func:`recbook.train.fit`; default the leaderboard's CTR settings.
        model_kwargs: further arguments of :class:`~recbook.models.WideDeep`.

    Returns one row per model: validation AUC, test AUC / logloss / GAUC, epochs, CPU s/epoch.
    """
    from ..bench import CTR_FIT
    from ..data.crosses import ctr_crosses

    data = _require_data(data)
    fit_kwargs = dict(CTR_FIT if fit_kwargs is None else fit_kwargs)
    crosses = ctr_crosses(data) if crosses is None else crosses
    rows = {}
    seed_everything(seed)
    joint = WideDeep(data.schema, crosses, **model_kwargs)
    state = {k: v.clone() for k, v in joint.state_dict().items()}
    rows["joint"] = _fit_row(joint, data, seed, fit_kwargs)
    separate = WideDeep(data.schema, crosses, **model_kwargs)
    separate.load_state_dict(state)
    rows["wide alone"] = _fit_row(ModelPart(separate, "wide"), data, seed, fit_kwargs)
    rows["deep alone"] = _fit_row(ModelPart(separate, "deep"), data, seed, fit_kwargs)
    summed = {"valid AUC": evaluate_ctr(separate, data.valid)["auc"],
              **{f"test {k}": v for k, v in evaluate_ctr(separate, data.test).items() if k in ("auc", "logloss", "gauc")}}
    rows["ensemble (sum of logits)"] = summed
    rows["ensemble (stacked on validation)"] = _stacked(separate, data)
    cols = ["valid AUC", "test auc", "test logloss", "test gauc", "epochs", "CPU s/epoch"]
    return pd.DataFrame(rows).T.reindex(columns=cols).rename(columns={
        "test auc": "test AUC", "test logloss": "test logloss", "test gauc": "test GAUC"})


def _parts_matrix(model: WideDeep, split) -> torch.Tensor:
    wide = predict(ModelPart(model, "wide"), split)
    deep = predict(ModelPart(model, "deep"), split)
    return torch.stack([wide, deep], 1).double()


def _stacked(model: WideDeep, data) -> dict:
    """Fit ``a * wide + b * deep + c`` on validation by Newton's method; evaluate on both splits."""
    from ..metrics import ctr_report

    xv = torch.cat([_parts_matrix(model, data.valid), torch.ones(len(data.valid), 1, dtype=torch.float64)], 1)
    yv = data.valid["label"].double()
    w = torch.zeros(3, dtype=torch.float64)
    for _ in range(25):  # logistic regression in 3 unknowns: Newton converges in a few steps
        p = torch.sigmoid(xv @ w)
        grad = xv.T @ (p - yv)
        hess = (xv * (p * (1 - p))[:, None]).T @ xv + 1e-9 * torch.eye(3, dtype=torch.float64)
        w = w - torch.linalg.solve(hess, grad)
    out = {"valid AUC": _auc(yv.numpy(), (xv @ w).numpy())}
    xt = torch.cat([_parts_matrix(model, data.test), torch.ones(len(data.test), 1, dtype=torch.float64)], 1)
    rep = ctr_report(data.test["label"].numpy(), (xt @ w).numpy(), data.test["user"].numpy())
    out.update({f"test {k}": v for k, v in rep.items() if k in ("auc", "logloss", "gauc")})
    return out


def with_and_without_crosses(data, *, seed: int = 0, crosses=None, fit_kwargs: Mapping | None = None,
                             **model_kwargs) -> pd.DataFrame:
    """Wide & Deep with its cross features against the same model without them, which is the
    source listing's model: logistic regression plus an MLP (see :func:`listing_wide_is_lr`).

    Same seed, same initial deep part, same training (default: the leaderboard's CTR settings).
    Returns one row per model: validation AUC, test AUC / logloss / GAUC, epochs, CPU s/epoch.
    """
    from ..bench import CTR_FIT
    from ..data.crosses import ctr_crosses

    data = _require_data(data)
    fit_kwargs = dict(CTR_FIT if fit_kwargs is None else fit_kwargs)
    crosses = ctr_crosses(data) if crosses is None else crosses
    rows = {}
    for name, c in (("LR + MLP (no crosses)", None), ("Wide & Deep (crosses)", crosses)):
        seed_everything(seed)
        rows[name] = _fit_row(WideDeep(data.schema, c, **model_kwargs), data, seed, fit_kwargs)
    return pd.DataFrame(rows).T.rename(columns={"test auc": "test AUC", "test gauc": "test GAUC"})


# --------------------------------------------------------------------------------------------
# The optimiser split
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


def optimizer_split(data, *, seed: int = 0, ftrl: Mapping | None = None, crosses=None,
                    fit_kwargs: Mapping | None = None, **model_kwargs) -> pd.DataFrame:
    """The same Wide & Deep trained with one Adam and with FTRL-Proximal (wide) + AdaGrad (deep).

    Args:
        data: a :class:`recbook.data.CTRData`.
        seed: initial weights and training.
        ftrl: arguments of :func:`recbook.models.ftrl_adagrad` (default: its defaults).
        crosses: default :func:`recbook.data.ctr_crosses`.
        fit_kwargs: default the leaderboard's CTR settings (Adam, learning rate 1e-3).

    Returns one row per optimiser: validation AUC, test AUC / logloss / GAUC, share of the wide
    weights (of values and pairs that occur in training) that are exactly zero, epochs, CPU
    s/epoch.
    """
    from ..bench import CTR_FIT
    from ..data.crosses import ctr_crosses

    data = _require_data(data)
    base = dict(CTR_FIT if fit_kwargs is None else fit_kwargs)
    crosses = ctr_crosses(data) if crosses is None else crosses
    rows = {}
    for name, opt in (("Adam", None), ("FTRL (wide) + AdaGrad (deep)", ftrl_adagrad(**dict(ftrl or {})))):
        seed_everything(seed)
        model = WideDeep(data.schema, crosses, **model_kwargs)
        kwargs = dict(base, optimizer=opt) if opt is not None else base
        row = _fit_row(model, data, seed, kwargs)
        sp = wide_sparsity(model, data.train)
        row.update({f"zero {k}": v for k, v in sp.items()})
        rows[name] = row
    return pd.DataFrame(rows).T.rename(columns={"test auc": "test AUC", "test gauc": "test GAUC"})


# --------------------------------------------------------------------------------------------
# DeepFM: three parts of one logit
# --------------------------------------------------------------------------------------------

def deepfm_parts(model: DeepFM, data, user_id: int, item_id: int) -> pd.DataFrame:
    """The logit of a :class:`~recbook.models.DeepFM` for one user and movie, split into its parts.

    Rows: ``bias``, ``first order`` (the per-feature weights), ``FM (pairs)`` (the pairwise term),
    ``deep (MLP)``, and ``logit`` (their sum, the model's output); column ``value``. The batch is
    built by :func:`recbook.chapters.fm.user_movie_batch`, so the pair need not have been rated.
    """
    model = _require(model, DeepFM)
    batch = user_movie_batch(data, user_id, item_id)
    was = model.training
    model.eval()
    with torch.no_grad():
        parts = model.parts(batch)
        logit = model(batch)
    model.train(was)
    bias = float(model.linear.bias.detach())
    values = {"bias": bias, "first order": float(parts["linear"][0]) - bias, "FM (pairs)": float(parts["fm"][0]),
              "deep (MLP)": float(parts["deep"][0]), "logit": float(logit[0])}
    return pd.DataFrame({"value": values})


# --------------------------------------------------------------------------------------------
# The source notes' listings, as written
# --------------------------------------------------------------------------------------------

class ListingDeepFM(nn.Module):
    """The DeepFM of the source notes (section 1), as written (only comments translated).

    ``x`` is ``[B, F]`` with one local index per field. Problems the chapter measures: the
    output is ``[B, B]`` (``linear_part`` is ``[B]``, the other parts ``[B, 1]``), ``sigmoid``
    inside ``forward`` (a loss on probabilities), ``nn.Embedding``'s ``N(0, 1)`` initialisation,
    and one table per field looked up in a Python loop.
    """

    def __init__(self, feature_sizes, embed_dim=8):
        super(ListingDeepFM, self).__init__()

        # FM part: embeddings
        self.embeddings = nn.ModuleList([
            nn.Embedding(size, embed_dim) for size in feature_sizes
        ])

        # Deep part: DNN
        self.dnn = nn.Sequential(
            nn.Linear(len(feature_sizes) * embed_dim, 128),
            nn.ReLU(),
            nn.Dropout(0.5),
            nn.Linear(128, 64),
            nn.ReLU(),
            nn.Dropout(0.5),
            nn.Linear(64, 1)
        )

        # FM first-order weights
        self.linear = nn.ModuleList([
            nn.Embedding(size, 1) for size in feature_sizes
        ])

    def forward(self, x):
        # FM first-order part
        linear_part = sum([emb(x[:, i]).squeeze(1)
                           for i, emb in enumerate(self.linear)])

        # FM second-order part
        embeddings = [emb(x[:, i]) for i, emb in enumerate(self.embeddings)]
        embeddings = torch.stack(embeddings, dim=1)

        square_of_sum = torch.sum(embeddings, dim=1) ** 2
        sum_of_square = torch.sum(embeddings ** 2, dim=1)
        fm_part = 0.5 * torch.sum(square_of_sum - sum_of_square, dim=1, keepdim=True)

        # Deep part
        deep_input = embeddings.view(x.size(0), -1)
        deep_part = self.dnn(deep_input)

        # Combine
        output = linear_part + fm_part + deep_part
        return torch.sigmoid(output)


class ListingDeepFMShapesFixed(ListingDeepFM):
    """:class:`ListingDeepFM` with the broadcast fixed and nothing else: every part ``[B, 1]``,
    output ``[B]``. ``logits=True`` also drops the final ``sigmoid``."""

    def __init__(self, feature_sizes, embed_dim=8, *, logits: bool = False):
        super().__init__(feature_sizes, embed_dim)
        self.logits = bool(logits)

    def forward(self, x):
        linear_part = sum([emb(x[:, i]) for i, emb in enumerate(self.linear)])  # [B, 1]: no squeeze
        embeddings = torch.stack([emb(x[:, i]) for i, emb in enumerate(self.embeddings)], dim=1)
        square_of_sum = torch.sum(embeddings, dim=1) ** 2
        sum_of_square = torch.sum(embeddings ** 2, dim=1)
        fm_part = 0.5 * torch.sum(square_of_sum - sum_of_square, dim=1, keepdim=True)
        deep_part = self.dnn(embeddings.view(x.size(0), -1))
        output = (linear_part + fm_part + deep_part).squeeze(1)
        return output if self.logits else torch.sigmoid(output)


class ListingWideAndDeep(nn.Module):
    """The Wide & Deep of the source notes (section 2), as written (only comments translated).

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


def _single_schema(schema: Schema) -> Schema:
    single = schema.single
    if not single:
        raise ValueError("schema: has no single-valued fields; the listings read x[:, i] per field")
    return Schema(tuple(single))


def listing_broadcast(data, batch_size: int = 1024, seed: int = 0) -> dict:
    """Run :class:`ListingDeepFM` as written on one batch of ``data.train`` (single-valued fields).

    Returns ``output shape``, ``label shape``, ``off-diagonal share`` (the share of the output's
    entries that mix the first-order part of one row with the other parts of another row: all
    but the diagonal) and ``diagonal equals fixed``: whether the diagonal of the ``[B, B]`` output
    is exactly the output of the same weights with the shapes fixed.
    """
    data = _require_data(data)
    batch_size = require_positive_int(batch_size, name="batch_size")
    torch.manual_seed(seed)
    sizes = [f.size for f in data.schema.single]
    listing = ListingDeepFM(sizes).eval()  # eval: dropout off, so both forwards are comparable
    fixed = ListingDeepFMShapesFixed(sizes).eval()
    fixed.load_state_dict(listing.state_dict())
    x = data.train["x"][:batch_size]
    with torch.no_grad():
        out = listing(x)
        ref = fixed(x)
    b = x.shape[0]
    return {"output shape": tuple(out.shape), "label shape": tuple(data.train["label"][:batch_size].shape),
            "off-diagonal share": 1 - 1 / b if out.dim() == 2 else 0.0,
            "diagonal equals fixed": bool(torch.equal(out.diagonal(), ref)) if out.dim() == 2 else False}


def saturation_at_init(data, *, batch_size: int = 1024, seed: int = 0, threshold: float = 1e-6) -> pd.DataFrame:
    """Outputs and gradients at initialisation: the listing's DeepFM (shapes fixed, ``sigmoid``
    inside, ``BCELoss``, ``N(0, 1)`` embeddings) against :class:`~recbook.models.DeepFM` (logits,
    ``binary_cross_entropy_with_logits``, embeddings ``N(0, 0.01^2)``), on the single-valued fields.

    Columns, one row per model, over the first ``batch_size`` training rows:

    * ``std of initial logit``;
    * ``saturated outputs``: share of rows with ``p < threshold`` or ``p > 1 - threshold``;
    * ``p exactly 0 or 1``: share of rows where float32 rounds the probability to 0 or 1;
    * ``zero gradient``: share of rows whose loss has an exactly zero gradient with respect to
      the model's output logit (the row teaches the model nothing);
    * ``wrong and zero gradient``: rows that are confidently wrong (``|p - y| > 0.5``) and
      still get no gradient;
    * ``initial loss``.
    """
    data = _require_data(data)
    batch_size = require_positive_int(batch_size, name="batch_size")
    single = _single_schema(data.schema)
    x = data.train["x"][:batch_size]
    y = data.train["label"][:batch_size]
    rows = {}
    torch.manual_seed(seed)
    listing = ListingDeepFMShapesFixed([f.size for f in single.fields], logits=True).eval()
    torch.manual_seed(seed)
    ours = DeepFM(single, dim=8, hidden=(128, 64)).eval()
    for name, logit_fn, loss_fn in (
        ("source listing: sigmoid + BCELoss, N(0, 1)", lambda: listing(x),
         lambda z: nn.BCELoss(reduction="sum")(torch.sigmoid(z), y)),
        ("recbook DeepFM: logits + BCE with logits", lambda: ours({"x": x}),
         lambda z: F.binary_cross_entropy_with_logits(z, y, reduction="sum")),
    ):
        z = logit_fn().detach().requires_grad_()
        loss = loss_fn(z)
        (g,) = torch.autograd.grad(loss, z)
        p = torch.sigmoid(z.detach())
        wrong = (p - y).abs() > 0.5
        rows[name] = {"std of initial logit": float(z.detach().std()),
                      "saturated outputs": float(((p < threshold) | (p > 1 - threshold)).float().mean()),
                      "p exactly 0 or 1": float(((p == 0) | (p == 1)).float().mean()),
                      "zero gradient": float((g == 0).float().mean()),
                      "wrong and zero gradient": float(((g == 0) & wrong).float().mean()),
                      "initial loss": float(loss.detach()) / len(y)}
    return pd.DataFrame(rows).T


def time_per_field_tables(data, *, n_batches: int = 30, batch_size: int = 1024, repeats: int = 3,
                          threads: int = 1, seed: int = 0) -> pd.DataFrame:
    """Measured CPU time of one training step (forward, backward, Adam) of the same DeepFM with
    one ``nn.Embedding`` per field in a Python loop (the listing, shapes fixed, logits) and with
    one shared table (:class:`~recbook.models.DeepFM`, same sizes: dim 8, MLP 128-64,
    dropout 0.5), on the single-valued fields.

    Returns one row per layout: ``parameter tensors``, ``ms per step`` (best of ``repeats`` runs
    of ``n_batches`` steps), and ``slowdown`` relative to the shared table.
    """
    data = _require_data(data)
    n_batches = require_positive_int(n_batches, name="n_batches")
    single = _single_schema(data.schema)
    torch.manual_seed(seed)
    models = {"one table per field (listing)": ListingDeepFMShapesFixed([f.size for f in single.fields], logits=True),
              "one shared table (recbook)": DeepFM(single, dim=8, hidden=(128, 64), dropout=0.5)}
    g = torch.Generator().manual_seed(seed)
    batches = [b for _, b in zip(range(n_batches), data.train.batches(batch_size, shuffle=True, generator=g))]
    rows = {}
    with num_threads(threads):
        for name, model in models.items():
            opt = torch.optim.Adam(model.parameters(), lr=1e-3)
            listing = isinstance(model, ListingDeepFM)

            def step(b):
                z = model(b["x"]) if listing else model({"x": b["x"]})
                loss = F.binary_cross_entropy_with_logits(z, b["label"])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()

            step(batches[0])  # warm-up
            best = float("inf")
            for _ in range(repeats):
                t0 = time.process_time()
                for b in batches:
                    step(b)
                best = min(best, (time.process_time() - t0) / len(batches))
            rows[name] = {"parameter tensors": sum(1 for _ in model.parameters()), "ms per step": best * 1e3}
    out = pd.DataFrame(rows).T
    out["slowdown"] = out["ms per step"] / out.loc["one shared table (recbook)", "ms per step"]
    return out


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

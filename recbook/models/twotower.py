"""Two-tower retrieval model (Covington et al., RecSys 2016; Yi et al., RecSys 2019)."""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .._checks import require_number, require_positive_int
from ..data.features import Field, Schema
from ..data.retrieval import ITEM_FIELDS, USER_FIELDS, TowerFeatures
from ..layers import FieldEmbedding, mlp

HISTORY_FIELD = "hist_item"


def _require_codes(t, key: str, dim: int, size: int, rows: int | None = None) -> None:
    if not isinstance(t, torch.Tensor) or t.dtype != torch.long:
        raise ValueError(f"{key}: expected an int64 tensor, got {getattr(t, 'dtype', type(t).__name__)}")
    if t.dim() != dim:
        raise ValueError(f"{key}: expected a {dim}-D tensor, got shape {tuple(t.shape)}")
    if rows is not None and t.shape[0] != rows:
        raise ValueError(f"{key}: has {t.shape[0]} rows; expected {rows} like user_id")
    if t.numel():
        lo, hi = torch.aminmax(t)
        if bool(lo < 0) or bool(hi >= size):
            bad = int(lo) if bool(lo < 0) else int(hi)
            raise ValueError(f"{key}: code {bad} out of range [0, {size})")


class TwoTower(nn.Module):
    """``logit(u, i) = <f(u), g(i)> / temperature`` with ``|f(u)| = |g(i)| = 1``.

    The user tower ``f`` concatenates the embeddings of the user's fields (``user_id`` and the
    demographics) and the **mean** of the embeddings of the user's recent items (``hist_item``,
    padding excluded), then applies an MLP; the item tower ``g`` does the same with ``item_id``,
    ``year_bucket`` and the pooled ``genres``. Both outputs are L2-normalised, so the dot product
    is a cosine in ``[-1, 1]`` and ``temperature`` sets how peaked the softmax over items is.
    The towers meet only at the dot product: item vectors can be computed once for the whole
    catalogue (:meth:`item_vectors`) and searched with a vector index.

    All fields share one :class:`~recbook.layers.FieldEmbedding` over ``features.schema``. By
    default the history reads the ``item_id`` rows (an item means the same on both sides); with
    ``share_history=False`` it gets its own ``hist_item`` field (YouTube's separate input
    embeddings).

    Where the book simplifies: one history pool (no watch/search split, no example age), and the
    towers' feature rows are static per user and item (:class:`~recbook.data.retrieval.TowerFeatures`).

    Args:
        features: the schema and per-code feature rows (:func:`recbook.data.retrieval.tower_features`).
        dim: embedding size of every field.
        hidden: hidden widths of each tower's MLP (``()``: a single linear map).
        out_dim: size of the output vectors.
        temperature: divides the cosine; the logits lie in ``[-1/temperature, 1/temperature]``.
        user_fields, item_fields: which fields each tower reads (``item_fields`` may include
            ``"genres"``); ``history``: whether the user tower pools the history.
        history_len: the user tower pools the ``history_len`` most recent items of ``hist_item``
            (its last columns), and :meth:`score_items` gives it that many.
        recent: also pool the ``recent`` most recent history items into a second vector (the
            history is right-aligned, so these are its last columns); None: one pool only.
        validate: check each batch (turn off to benchmark).

    Shapes: a batch holds ``user_id`` int64 ``[B]`` (user codes), ``hist_item`` int64 ``[B, L]``
    (item codes, 0 = padding) and, for :meth:`forward`, ``item_id`` int64 ``[B]``.
    ``user_vectors(batch) -> [B, out_dim]``, ``item_vectors(codes) -> [N, out_dim]`` (all item
    codes when ``codes`` is None), ``forward(batch) -> [B]`` logits of the pairs
    ``(user_id[b], item_id[b])``, ``score(batch) -> [B, n_items]`` logits against every item code.
    """

    def __init__(self, features: TowerFeatures, dim: int = 32, hidden: Sequence[int] = (64,), out_dim: int = 32,
                 *, temperature: float = 0.1, user_fields: Sequence[str] = USER_FIELDS,
                 item_fields: Sequence[str] = (*ITEM_FIELDS, "genres"), history: bool = True,
                 history_len: int = 50, recent: int | None = None, share_history: bool = True,
                 dropout: float = 0.0, init_std: float = 0.01,
                 validate: bool = True):
        super().__init__()
        if not isinstance(features, TowerFeatures):
            raise ValueError(f"features: expected TowerFeatures (tower_features(ml)), got {type(features).__name__}")
        require_number(temperature, name="temperature", low=0, low_open=True)
        user_fields, item_fields = tuple(user_fields), tuple(item_fields)
        for name, chosen, allowed in (("user_fields", user_fields, USER_FIELDS),
                                      ("item_fields", item_fields, (*ITEM_FIELDS, "genres"))):
            bad = [f for f in chosen if f not in allowed]
            if bad or len(set(chosen)) != len(chosen):
                raise ValueError(f"{name}: expected distinct names from {allowed}, got {list(chosen)}")
        if not (user_fields or history):
            raise ValueError("user_fields: empty and history=False leave the user tower no input")
        if not item_fields:
            raise ValueError("item_fields: expected at least one item field")
        self.features = features
        self.temperature = float(temperature)
        self.validate = bool(validate)
        self.history = bool(history)
        self.history_len = require_positive_int(history_len, name="history_len")
        self.recent = None if recent is None else require_positive_int(recent, name="recent")
        if self.recent is not None and not self.history:
            raise ValueError("recent: needs history=True (it pools the most recent part of the history)")
        self.user_fields, self.item_fields = user_fields, item_fields
        schema = features.schema
        self.history_field = "item_id"
        if history and not share_history:
            schema = Schema((*schema.fields, Field(HISTORY_FIELD, schema["item_id"].categories)))
            self.history_field = HISTORY_FIELD
        self.embedding = FieldEmbedding(schema, require_positive_int(dim, name="dim"), init_std=init_std,
                                        validate=False)
        out_dim = require_positive_int(out_dim, name="out_dim")
        n_user = len(user_fields) + int(self.history) + int(self.recent is not None)
        self.user_mlp = mlp(n_user * dim, hidden, dropout=dropout, out_dim=out_dim)
        self.item_mlp = mlp(len(item_fields) * dim, hidden, dropout=dropout, out_dim=out_dim)
        # Per-code feature rows as buffers (not learned, not saved): they follow .to(device).
        self.register_buffer("user_rows", features.users[:, [USER_FIELDS.index(f) for f in user_fields]].clone(),
                             persistent=False)
        single = [f for f in item_fields if f != "genres"]
        self.register_buffer("item_rows", features.items[:, [ITEM_FIELDS.index(f) for f in single]].clone(),
                             persistent=False)
        self.register_buffer("item_genres", features.genres.clone(), persistent=False)
        self._item_single = tuple(single)
        self.loss_fn = None  # the training loss, set by from_data

    @property
    def n_items(self) -> int:
        return self.features.n_items

    def check(self, batch: Mapping, *, items: bool) -> None:
        """Raise ``ValueError`` naming the key unless ``batch`` holds valid codes."""
        if not isinstance(batch, Mapping):
            raise ValueError(f"batch: expected a dict of tensors, got {type(batch).__name__}")
        keys = ["user_id"] + ([HISTORY_FIELD] if self.history else []) + (["item_id"] if items else [])
        for k in keys:
            if k not in batch:
                raise ValueError(f"batch: missing key '{k}'; expected keys {keys}")
        _require_codes(batch["user_id"], "user_id", 1, self.features.n_users)
        rows = batch["user_id"].shape[0]
        if self.history:
            _require_codes(batch[HISTORY_FIELD], HISTORY_FIELD, 2, self.n_items, rows)
        if items:
            _require_codes(batch["item_id"], "item_id", 1, self.n_items, rows)

    def user_vectors(self, batch: Mapping) -> torch.Tensor:
        """L2-normalised user vectors ``[B, out_dim]``."""
        if self.validate:
            self.check(batch, items=False)
        rows = self.user_rows[batch["user_id"]]  # [B, n_user_fields]
        parts = [self.embedding.lookup(f, rows[:, j]) for j, f in enumerate(self.user_fields)]
        if self.history:
            hist = batch[HISTORY_FIELD][:, -self.history_len:]  # right-aligned: the most recent items
            parts.append(self.embedding.pool(self.history_field, hist))
            if self.recent is not None:  # right-aligned: the last columns are the most recent items
                parts.append(self.embedding.pool(self.history_field, hist[:, -self.recent:]))
        return F.normalize(self.user_mlp(torch.cat(parts, dim=1)), dim=1)

    def item_vectors(self, codes: torch.Tensor | None = None) -> torch.Tensor:
        """L2-normalised item vectors ``[N, out_dim]`` for item ``codes`` ``[N]`` (default: every
        code ``0 .. n_items - 1``, so that row ``c`` is item code ``c``; rows 0 and 1 are the
        reserved codes, which rankings drop)."""
        if codes is None:
            codes = torch.arange(self.n_items, device=self.item_rows.device)
        elif self.validate:
            _require_codes(codes, "item_id", 1, self.n_items)
        rows = self.item_rows[codes]
        parts = [self.embedding.lookup(f, rows[:, j]) for j, f in enumerate(self._item_single)]
        if "genres" in self.item_fields:
            parts.append(self.embedding.pool("genres", self.item_genres[codes]))
        return F.normalize(self.item_mlp(torch.cat(parts, dim=1)), dim=1)

    def forward(self, batch: Mapping) -> torch.Tensor:
        if self.validate:
            self.check(batch, items=True)
        u = self.user_vectors(batch)
        v = self.item_vectors(batch["item_id"])
        return (u * v).sum(dim=1) / self.temperature

    def score(self, batch: Mapping) -> torch.Tensor:
        """Logits ``[B, n_items]`` of every user of ``batch`` against every item code."""
        return self.user_vectors(batch) @ self.item_vectors().T / self.temperature

    @torch.no_grad()
    def score_items(self, data, split: str) -> torch.Tensor:
        """Logits ``[U, n_items]`` of every user of ``data`` (:func:`recbook.data.sequence_protocol`)
        against every item code, from what each user did before the ``split`` target: the user's
        features and the last ``history_len`` items of :meth:`~recbook.data.SequenceData.history`.
        The leaderboard's ``retrieval`` protocol ranks these rows (earlier items excluded)."""
        if int(data.n_items) != self.n_items:
            raise ValueError(f"data.n_items: {data.n_items} item codes; the model was built for {self.n_items}")
        users = torch.from_numpy(self.features.user_codes(data.users).astype("int64"))
        hist = torch.from_numpy(data.padded(self.history_len, split=split))
        device = self.item_rows.device
        items = self.item_vectors()
        out = [self.user_vectors({"user_id": u.to(device), HISTORY_FIELD: h.to(device)}) @ items.T / self.temperature
               for u, h in zip(users.split(4096), hist.split(4096))]
        return torch.cat(out).cpu()

    @classmethod
    def from_data(cls, data, *, correction: str | None = None, negatives: int = 0, sampler: str = "uniform",
                  mask_hits: bool = True, alpha: float = 0.01, **model_kwargs) -> TwoTower:
        """A two-tower model for the leave-last-out data of :func:`recbook.data.sequence_protocol`,
        carrying its training loss (:attr:`loss_fn`, read by :func:`two_tower_loss`).

        ``model_kwargs`` go to :class:`TwoTower` (``dim``, ``hidden``, ``out_dim``, ``temperature``,
        ...); ``correction``, ``negatives``, ``sampler``, ``mask_hits`` and ``alpha`` (of the
        streaming estimator) to :class:`recbook.sampled_softmax.SampledSoftmaxLoss`, whose item
        counts are those of :func:`two_tower_examples` and whose extra-negative sampler is seeded
        from torch's generator (seed it first).
        """
        from ..data.retrieval import tower_features
        from ..sampled_softmax import FrequencyEstimator, SampledSoftmaxLoss

        features = tower_features(data)
        model = cls(features, **model_kwargs)
        counts = _training_counts(data, features.n_items)
        estimator = FrequencyEstimator(features.n_items, alpha=alpha) if correction == "streaming" else None
        seed = int(torch.randint(0, 2**31 - 1, ()))
        model.loss_fn = SampledSoftmaxLoss(features.n_items, correction=correction, item_counts=counts,
                                           negatives=negatives, sampler=sampler, mask_hits=mask_hits,
                                           estimator=estimator, seed=seed)
        return model

    def extra_repr(self) -> str:
        return (f"user_fields={list(self.user_fields)}, history={self.history}, "
                f"history_len={self.history_len}, recent={self.recent}, item_fields={list(self.item_fields)}, "
                f"temperature={self.temperature}")


def _training_counts(data, n_items: int) -> torch.Tensor:
    """How often each item code is a training target of :func:`two_tower_examples` (every
    position of the training sequences but the first)."""
    import numpy as np

    targets = [np.asarray(s[1:], dtype=np.int64) for s in data.train]
    flat = np.concatenate(targets) if targets else np.zeros(0, np.int64)
    return torch.from_numpy(np.bincount(flat, minlength=n_items).astype("float64"))


def two_tower_examples(data, history_len: int = 50):
    """The training examples of :func:`recbook.data.retrieval.retrieval_data` for the leave-last-out
    data of :func:`recbook.data.sequence_protocol`: one per position of each training sequence but
    the first (target item ``item_id``, user ``user_id``, the ``history_len`` items before it
    ``hist_item``). The leaderboard's ``train_data`` for the two-tower entries."""
    from ..data.retrieval import retrieval_data

    return retrieval_data(data, history_len=history_len, min_history=1).train


def two_tower_loss(model: TwoTower, batch: Mapping) -> torch.Tensor:
    """``loss_fn`` for :func:`recbook.train.fit`: the sampled softmax the model was built with
    (:meth:`TwoTower.from_data`)."""
    if getattr(model, "loss_fn", None) is None:
        raise ValueError("model: has no loss_fn; build it with TwoTower.from_data or pass a SampledSoftmaxLoss to fit")
    return model.loss_fn(model, batch)

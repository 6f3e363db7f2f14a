"""Deep Interest Network (Zhou et al., "Deep Interest Network for Click-Through Rate Prediction",
KDD 2018) and the base model it is compared with.

Both read a CTR batch with behaviour histories (:func:`recbook.data.ctr_protocol` with
``history_len``): ``x`` ``[B, S]``, ``genres`` ``[B, G]``, ``hist_item`` ``[B, L]`` item codes
(right-aligned, 0 = padding) and ``hist_mask`` bool ``[B, L]``. An **item** is represented by the
concatenation of its ``item_id`` vector and the vectors of its side features (genres pooled by
their mean, optionally the release-year bucket), all rows of the one shared
:class:`~recbook.layers.FieldEmbedding` table. The candidate's side features come from the batch;
the history items' come from a per-item-code table given to the model (the protocol's
:class:`~recbook.data.ItemCatalogue`), so the batch carries only the history's item codes.

    user/context fields ─┐
    history e_1..e_L ─── pool(e_1..e_L ; v_A) ─┤── MLP ── logit
    candidate v_A ───────┘

* :class:`DINBase`: ``pool`` = the mean of the history (the paper's "Base Model").
* :class:`DIN`: ``pool`` = ``sum_j a(e_j, v_A) e_j`` with DIN's local activation unit
  (:class:`~recbook.layers.TargetAttention`); with ``activation="dice"`` every hidden layer, in
  the MLP and in the activation unit, uses :class:`~recbook.layers.Dice` instead of PReLU.
* Optional mini-batch aware L2 on the embedding table (:meth:`add_minibatch_l2` and
  :func:`din_loss`; :class:`~recbook.layers.MiniBatchAwareL2`).

Where the book simplifies the paper: MovieLens has no shops or categories of goods, so an item is
``[item_id, genres]`` (+ ``year_bucket``) instead of ``[goods_id, shop_id, cate_id]``; there are no
context features; the output is one logit trained with ``binary_cross_entropy_with_logits``
(the paper's two-way softmax is the same model with one redundant output).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F

from ..data.features import PAD, Schema
from ..layers import (FeatureLinear, FieldEmbedding, MaskedMLP, MiniBatchAwareL2, SchemaModule, TargetAttention,
                      check_batch, masked_mean, occurrence_counts)

__all__ = ["DIN", "DINBase", "din_loss"]

ITEM_FIELD = "item_id"


def _check_history(schema: Schema, batch: Mapping) -> None:
    """``hist_item`` int64 ``[B, L]`` codes of the item_id field and ``hist_mask`` bool ``[B, L]``."""
    for key in ("hist_item", "hist_mask"):
        if key not in batch:
            raise ValueError(f"batch: missing key '{key}' (the behaviour history; build the data with "
                             "ctr_protocol(..., history_len=L))")
    hist, mask = batch["hist_item"], batch["hist_mask"]
    if not isinstance(hist, torch.Tensor) or hist.dtype != torch.long or hist.dim() != 2:
        raise ValueError(f"hist_item: expected an int64 tensor [B, L], got "
                         f"{getattr(hist, 'dtype', type(hist).__name__)} of shape {tuple(getattr(hist, 'shape', ()))}")
    if hist.shape[0] != batch["x"].shape[0]:
        raise ValueError(f"hist_item: has {hist.shape[0]} rows; expected {batch['x'].shape[0]} like x")
    if not isinstance(mask, torch.Tensor) or mask.dtype != torch.bool or mask.shape != hist.shape:
        raise ValueError(f"hist_mask: expected a bool tensor of shape {tuple(hist.shape)} like hist_item, got "
                         f"{getattr(mask, 'dtype', type(mask).__name__)} of shape {tuple(getattr(mask, 'shape', ()))}")
    on_padding = mask & (hist == 0)
    if bool(on_padding.any()):
        r, c = (int(v) for v in on_padding.nonzero()[0])
        raise ValueError(f"hist_mask: is True at {int(on_padding.sum())} padding position(s) of hist_item (code 0), "
                         f"the first at row {r}, column {c}; expected False wherever hist_item is padding")
    size = schema[ITEM_FIELD].size
    if hist.numel():
        lo, hi = torch.aminmax(hist)
        if bool(lo < 0) or bool(hi >= size):
            bad = int(lo) if bool(lo < 0) else int(hi)
            raise ValueError(f"hist_item (field '{ITEM_FIELD}'): index {bad} out of range [0, {size})")


class _BehaviourModel(SchemaModule):
    """What DIN and its base model share: item vectors, user/context vectors, the MLP, the L2.

    Subclasses define ``pool(table, codes, candidate, mask) -> [B, Di]``: the history is the
    rows ``table[codes]`` of the item table, only the real items of the batch, packed in the
    row-major order of ``mask`` (see :meth:`history_vectors`).
    """

    def __init__(self, schema: Schema, item_features: Mapping[str, torch.Tensor], dim: int = 16, *,
                 hidden: Sequence[int] = (200, 80), activation: str = "prelu", dropout: float = 0.0,
                 product: bool = False, linear: bool = False, ignore: Sequence[str] = (),
                 init_std: float = 0.01, validate: bool = True, unknown_rate: dict | None = None):
        super().__init__(schema, validate=validate, unknown_rate=unknown_rate)
        if ITEM_FIELD not in schema.names or schema[ITEM_FIELD].multi:
            raise ValueError(f"schema: expected a single-valued field '{ITEM_FIELD}', got fields {schema.names}")
        if not isinstance(item_features, Mapping):
            raise ValueError("item_features: expected a dict {field: codes per item code} "
                             "(e.g. data.catalogue.features)")
        n_codes = schema[ITEM_FIELD].size
        self.side_fields = tuple(item_features)
        self.ignore = tuple(ignore)
        for name in self.ignore:
            if name not in schema.names or name == ITEM_FIELD or name in self.side_fields:
                raise ValueError(f"ignore: {name!r} is not a user/context field of the schema")
        for name, codes in item_features.items():
            if name == ITEM_FIELD:
                raise ValueError(f"item_features: '{ITEM_FIELD}' is the item itself; expected only its "
                                 "side features, e.g. {'genres': catalogue.features['genres']}")
            if name not in schema.names:
                raise ValueError(f"item_features: no field named {name!r} in the schema {schema.names}")
            f = schema[name]
            want = 2 if f.multi else 1
            if not isinstance(codes, torch.Tensor) or codes.dtype != torch.long or codes.dim() != want:
                raise ValueError(f"item_features['{name}']: expected an int64 tensor of "
                                 f"{'[n_codes, G]' if f.multi else '[n_codes]'}, got "
                                 f"{getattr(codes, 'dtype', type(codes).__name__)} {tuple(getattr(codes, 'shape', ()))}")
            if codes.shape[0] != n_codes:
                raise ValueError(f"item_features['{name}']: has {codes.shape[0]} rows; expected {n_codes}, "
                                 f"one per code of field '{ITEM_FIELD}'")
            if codes.numel() and (int(codes.min()) < 0 or int(codes.max()) >= f.size):
                raise ValueError(f"item_features['{name}'] (field '{name}'): codes out of range [0, {f.size})")
            self.register_buffer(f"side_{name}", codes.clone(), persistent=False)
        self.embedding = FieldEmbedding(schema, dim, init_std=init_std, validate=False)
        self.dim = self.embedding.dim
        names = schema.names
        item_names = (ITEM_FIELD, *self.side_fields)
        # Slots of FieldEmbedding's [B, F, D] output: the candidate item's and everything else.
        self.register_buffer("item_slots", torch.tensor([names.index(n) for n in item_names]), persistent=False)
        self.register_buffer("other_slots", torch.tensor([i for i, n in enumerate(names)
                                                          if n not in item_names and n not in self.ignore],
                                                         dtype=torch.long), persistent=False)
        self.item_dim = self.dim * len(item_names)
        self.product = bool(product)
        in_dim = self.dim * len(self.other_slots) + (3 if self.product else 2) * self.item_dim
        self.mlp = MaskedMLP(in_dim, hidden, activation=activation, dropout=dropout, out_dim=1)
        self.linear = FeatureLinear(schema, validate=False) if linear else None
        self.regularizer: MiniBatchAwareL2 | None = None

    # ---------------------------------------------------------------- item vectors

    def item_vectors(self) -> torch.Tensor:
        """The vector of every item code, ``[n_codes, Di]``: ``[item_id, side features...]``."""
        emb = self.embedding
        parts = [emb.field_weight(ITEM_FIELD)]
        for name in self.side_fields:
            codes = getattr(self, f"side_{name}")
            parts.append(emb.pool(name, codes) if codes.dim() == 2 else emb.lookup(name, codes))
        return torch.cat(parts, dim=1)

    def history_vectors(self, hist_item: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Item codes ``[B, L]`` -> padded ``[B, L, Di]``; with ``mask``, only the real items,
        packed in row-major order: ``[N, Di]`` (one gather from :meth:`item_vectors`)."""
        table = self.item_vectors()
        if mask is not None:
            return table.index_select(0, hist_item[mask])
        return table.index_select(0, hist_item.reshape(-1)).view(*hist_item.shape, self.item_dim)

    def check(self, batch: Mapping) -> None:
        if self.validate:
            check_batch(self.schema, batch, self.single_sizes)
            _check_history(self.schema, batch)

    def _inputs(self, batch: Mapping):
        """Candidate ``[B, Di]``, other fields ``[B, (F - k) * D]`` and the history: the item table
        ``[n_codes, Di]``, the codes of the real history items packed ``[N]`` (row-major), the mask."""
        e = self.embedding(batch)  # [B, F, D]
        candidate = e.index_select(1, self.item_slots).flatten(1)
        other = e.index_select(1, self.other_slots).flatten(1)
        mask = batch["hist_mask"]
        return candidate, other, self.item_vectors(), batch["hist_item"][mask], mask

    def pool(self, table, codes, candidate, mask) -> torch.Tensor:  # pragma: no cover - abstract
        """The user's vector ``[B, Di]`` from the history items ``table[codes]`` (``codes`` ``[N]``:
        the real items of ``mask`` ``[B, L]``, row-major) and the candidate ``[B, Di]``."""
        raise NotImplementedError

    @classmethod
    def from_data(cls, data, *, fields: Sequence[str] = ("genres",), l2: float = 0.0, **params):
        """The model for the CTR protocol's data (the leaderboard's factory).

        Args:
            data: a :class:`recbook.data.CTRData` built with ``history_len`` (it carries the
                :class:`~recbook.data.ItemCatalogue`).
            fields: the item side features history items carry (catalogue fields, e.g.
                ``("genres", "year_bucket")``).
            l2: strength of the mini-batch aware L2 (counted on ``data.train``); train with
                ``loss_fn=din_loss`` for it to act.
            params: the model's other arguments (``dim``, ``hidden``, ``activation``, ...).
        """
        catalogue = getattr(data, "catalogue", None)
        if catalogue is None or "hist_item" not in data.train:
            raise ValueError("data: expected CTRData with behaviour histories and an item catalogue; "
                             "build it with ctr_protocol(ml, history_len=50)")
        for f in fields:
            if f not in catalogue.features or f == ITEM_FIELD:
                raise ValueError(f"fields: {f!r} is not an item side feature of the catalogue; expected some "
                                 f"of {[k for k in catalogue.features if k != ITEM_FIELD]}")
        model = cls(data.schema, {f: catalogue.features[f] for f in fields}, **params)
        return model.add_minibatch_l2(data.train, l2) if l2 else model

    def forward(self, batch: Mapping) -> torch.Tensor:
        batch = self.prepare(batch)  # validates; in training, unknown_rate replaces codes
        candidate, other, table, codes, mask = self._inputs(batch)
        user = self.pool(table, codes, candidate, mask)
        parts = [other, user, candidate] + ([user * candidate] if self.product else [])
        logit = self.mlp(torch.cat(parts, dim=1)).squeeze(-1)
        return logit if self.linear is None else logit + self.linear(batch)

    # ---------------------------------------------------------------- mini-batch aware L2

    def embedding_rows(self, batch: Mapping) -> torch.Tensor:
        """The rows of the embedding table each sample uses: int64 ``[B, K]`` (repeats, padding
        rows included): its fields, its history items and their side features."""
        offsets = {n: self.schema.offset_of(n) for n in self.schema.names}
        parts = [batch["x"] + self.single_offsets]
        parts += [batch[f.name] + offsets[f.name] for f in self.schema.multi]
        hist = batch["hist_item"]
        parts.append(hist + offsets[ITEM_FIELD])
        for name in self.side_fields:
            codes = getattr(self, f"side_{name}")[hist] + offsets[name]  # [B, L] or [B, L, G]
            parts.append(codes.flatten(1))
        return torch.cat(parts, dim=1)

    def add_minibatch_l2(self, train, l2: float, *, batch_size: int = 8192):
        """Turn on DIN's mini-batch aware L2 with strength ``l2`` (returns ``self``).

        ``n_j`` (:func:`~recbook.layers.occurrence_counts`) is counted on ``train`` (a
        :class:`~recbook.data.TensorData` of the training rows). The penalty is added to the loss
        by :func:`din_loss`; the padding rows are never penalised.
        """
        size = self.schema.total_size
        counts = torch.zeros(size, dtype=torch.long)
        for b in train.batches(batch_size, shuffle=False):
            counts += occurrence_counts(self.embedding_rows(b).cpu(), size)
        pads = [int(o) + PAD for o in self.schema.offsets]
        self.regularizer = MiniBatchAwareL2(counts, l2, exclude=pads).to(self.embedding.table.weight.device)
        return self

    def regularization(self, batch: Mapping) -> torch.Tensor:
        """The mini-batch aware L2 penalty for ``batch`` (0 when it is off)."""
        if self.regularizer is None or self.regularizer.l2 == 0:
            return self.embedding.table.weight.new_zeros(())
        return self.regularizer(self.embedding.table.weight, self.embedding_rows(batch))


def din_loss(model: _BehaviourModel, batch: Mapping) -> torch.Tensor:
    """Binary cross-entropy on the logits plus the model's mini-batch aware L2 penalty.

    For :func:`recbook.train.fit`'s ``loss_fn``; without :meth:`~DIN.add_minibatch_l2` it equals
    :func:`recbook.train.bce_loss`.
    """
    return F.binary_cross_entropy_with_logits(model(batch), batch["label"]) + model.regularization(batch)


class DINBase(_BehaviourModel):
    """The paper's base model (Embedding & MLP): the history is **averaged**, whatever the candidate.

    ``logit = MLP([user/context fields, mean_j e_j, v_A])``. Every candidate sees the same user
    vector: a user with 40 dramas and 2 westerns is 95% drama even when the candidate is a
    western. See :class:`DIN` for the arguments.
    """

    def pool(self, table, codes, candidate, mask):
        return masked_mean(table.index_select(0, codes), mask)


class DIN(_BehaviourModel):
    """Deep Interest Network: the history is pooled **for the candidate**.

    ``v_U(A) = sum_j a(e_j, v_A) e_j`` over the real (unpadded) history items, with ``a`` DIN's
    local activation unit fed ``[e_j, v_A, e_j * v_A, e_j - v_A]``
    (:class:`~recbook.layers.ActivationUnit`, whose docstring relates this to the paper's "out
    product"); then ``logit = MLP([user/context fields, v_U(A), v_A])``.

    Args:
        schema: the CTR schema (must hold ``item_id`` and the side-feature fields).
        item_features: ``{field: codes per item_id code}`` from :func:`item_side_features`, e.g.
            ``{"genres": [n_codes, G]}``; these fields join ``item_id`` in every item's vector.
        dim: embedding size ``D``; an item vector has ``Di = D * (1 + len(item_features))``.
        hidden: widths of the MLP (the paper: 200, 80).
        product: also feed the MLP ``v_U(A) * v_A`` (the authors' code does).
        ignore: user/context fields left out of the model, e.g. ``("user_id",)``.
        linear: add a first-order term ``w0 + sum_i w_i x_i`` over the batch's fields to the
            logit (the authors' code adds a per-item bias).
        attention_hidden: widths of the activation unit's MLP (the paper: 36; the authors' code:
            80, 40).
        activation: ``"prelu"`` (the paper's DIN) or ``"dice"`` (DIN with Dice), in both MLPs.
            Dice in the activation unit takes its statistics over real history positions only.
        attention_activation: the activation unit's own activation when it differs from the
            MLP's (the authors' code: ``"sigmoid"``); ``None`` uses ``activation``.
        softmax: normalise the weights with a softmax of ``score / sqrt(Di)`` (authors' code)
            instead of the paper's raw weights, which keep the intensity of interest.
        dropout: dropout after each hidden layer of the MLP.
        init_std: standard deviation of the initial embeddings.
        validate: check each batch (turn off to benchmark).
        unknown_rate: ``{field: rate}``: train the unknown rows by replacing that share of the
            field's codes by unknown during training (see :class:`recbook.layers.SchemaModule`).

    Shapes: ``forward(batch) -> [B]`` logits; :meth:`attention_weights` -> ``[B, L]``.

    For the CTR protocol: ``DIN.from_data(data, fields=("genres",), ...)``.
    """

    def __init__(self, schema: Schema, item_features: Mapping[str, torch.Tensor], dim: int = 16, *,
                 hidden: Sequence[int] = (200, 80), attention_hidden: Sequence[int] = (36,),
                 activation: str = "prelu", attention_activation: str | None = None,
                 softmax: bool = False, dropout: float = 0.0,
                 product: bool = False, linear: bool = False, ignore: Sequence[str] = (),
                 init_std: float = 0.01, validate: bool = True, unknown_rate: dict | None = None):
        super().__init__(schema, item_features, dim, hidden=hidden, activation=activation,
                         dropout=dropout, product=product, linear=linear, ignore=ignore,
                         init_std=init_std, validate=validate, unknown_rate=unknown_rate)
        unit_activation = activation if attention_activation is None else attention_activation
        if unit_activation not in ("prelu", "dice", "relu", "sigmoid"):
            raise ValueError(f"attention_activation: expected 'prelu', 'dice', 'relu', 'sigmoid' or None, "
                             f"got {attention_activation!r}")
        self.attention = TargetAttention(self.item_dim, attention_hidden, activation=unit_activation,
                                         softmax=softmax)

    def pool(self, table, codes, candidate, mask):
        keys = table.index_select(0, codes)
        return self.attention.pool(keys, candidate, mask, table=table, index=codes)[0]

    @torch.no_grad()
    def attention_weights(self, batch: Mapping) -> torch.Tensor:
        """The weight of every history position for the row's candidate, ``[B, L]`` (0 on padding),
        computed as in ``eval()`` mode (Dice uses its running statistics)."""
        self.check(batch)
        was_training = self.training
        self.eval()
        try:
            candidate, _, table, codes, mask = self._inputs(batch)
            keys = table.index_select(0, codes)
            return self.attention.pool(keys, candidate, mask, table=table, index=codes)[1]
        finally:
            self.train(was_training)


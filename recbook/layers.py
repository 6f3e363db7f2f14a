"""Layers shared by every click-through-rate model in the book.

A CTR batch (see :mod:`recbook.data.protocols`) is a dict of tensors: ``x`` int64 ``[B, S]`` holds
the ``S`` single-valued fields in schema order, and each multi-valued field (``genres``) is its own
int64 ``[B, L]`` matrix, right-padded with 0. Every model is a short composition of the pieces here:

* :class:`FieldEmbedding`: one vector per field, ``[B, F, D]``, from **one** shared table;
* :class:`FeatureLinear`: the first-order term ``w0 + sum_i w_i x_i``, ``[B]``;
* :class:`FMInteraction`: the factorization-machine pairwise term in ``O(kn)``, ``[B]``;
* :func:`mlp`: the multi-layer perceptron used by the deep models;
* :class:`CrossLinear`: the cross-product term of a wide model (Wide & Deep), ``[B]``;
* :func:`check_batch` and :class:`SchemaModule`: validation, done once at the model's boundary.

Models return **logits** (no sigmoid): the loss is ``binary_cross_entropy_with_logits``, which is
exact where ``sigmoid`` followed by ``log`` would round to 0 and return ``-inf``.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ._checks import require_fraction, require_number, require_positive_int
from .data.features import PAD, UNK, Schema

__all__ = [
    "CrossLinear", "FMInteraction", "FeatureLinear", "FieldEmbedding", "SchemaModule", "check_batch", "mlp",
    "pairwise_interaction_naive",
]


# --------------------------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------------------------

def _require_index_tensor(t, key: str) -> torch.Tensor:
    if not isinstance(t, torch.Tensor):
        raise ValueError(f"{key}: expected an int64 tensor, got {type(t).__name__}")
    if t.dtype != torch.long:
        raise ValueError(f"{key}: expected dtype torch.int64 (long), got {t.dtype}")
    if t.dim() != 2:
        raise ValueError(f"{key}: expected a 2-D tensor [B, columns], got shape {tuple(t.shape)}")
    return t


def check_batch(schema: Schema, batch: Mapping, sizes: torch.Tensor | None = None) -> None:
    """Raise ``ValueError`` unless ``batch`` holds valid indices for every field of ``schema``.

    Checks that ``x`` is int64 with one column per single-valued field, that every multi-valued
    field's key is present, int64 and has as many rows as ``x``, and that every index lies in its
    field's range ``[0, field.size)``. The message names the field, e.g.
    ``x[:, 3] (field 'gender'): index 5 out of range [0, 4)``.

    Why it matters: all fields share one embedding table, so an index that is too large for its
    field does not fail on its own: it silently reads the next field's rows.

    Args:
        schema: the fields the batch must match.
        batch: dict of tensors; keys other than ``x`` and the multi-valued fields are ignored.
        sizes: optional int64 ``[S]`` tensor of the single-valued fields' sizes, on ``x``'s
            device (modules keep it as a buffer so that no tensor is built per batch).
    """
    if not isinstance(batch, Mapping):
        raise ValueError(f"batch: expected a dict of tensors, got {type(batch).__name__}")
    single = schema.single
    rows = None
    if single:
        if "x" not in batch:
            raise ValueError(f"batch: missing key 'x' (the single-valued fields {[f.name for f in single]})")
        x = _require_index_tensor(batch["x"], "x")
        if x.shape[1] != len(single):
            raise ValueError(f"x: expected {len(single)} columns, one per single-valued field "
                             f"{[f.name for f in single]}, got {x.shape[1]}")
        rows = x.shape[0]
        if rows:
            if sizes is None:
                sizes = torch.tensor([f.size for f in single], dtype=torch.long, device=x.device)
            # Fast path: one global minimum and one per-column maximum compared against the sizes.
            # Only when it fails do we pay for locating the first bad entry.
            if bool(x.min() < 0) or bool((x.amax(0) >= sizes).any()):
                bad = (x < 0) | (x >= sizes)
                r, c = (int(v) for v in bad.nonzero()[0])
                f = single[c]
                raise ValueError(f"x[:, {c}] (field '{f.name}'): index {int(x[r, c])} "
                                 f"out of range [0, {f.size})")
    for f in schema.multi:
        if f.name not in batch:
            raise ValueError(f"batch: missing key '{f.name}' (multi-valued field '{f.name}')")
        t = _require_index_tensor(batch[f.name], f.name)
        if rows is not None and t.shape[0] != rows:
            raise ValueError(f"{f.name}: has {t.shape[0]} rows; expected {rows} like x")
        if t.numel():
            lo, hi = torch.aminmax(t)
            if bool(lo < 0) or bool(hi >= f.size):
                bad = (t < 0) | (t >= f.size)
                r, c = (int(v) for v in bad.nonzero()[0])
                raise ValueError(f"{f.name}[:, {c}] (field '{f.name}'): index {int(t[r, c])} "
                                 f"out of range [0, {f.size})")


def resolve_base_rate(data, params: Mapping) -> dict:
    """``params`` with ``base_rate="train"`` replaced by the positive rate of ``data.train``'s
    labels, so that a leaderboard entry can ask for it without typing a number."""
    params = dict(params)
    if params.get("base_rate") == "train":
        params["base_rate"] = float(data.train["label"].float().mean())
    return params


class SchemaModule(nn.Module):
    """Base class of the layers and models that read a batch: keeps the schema and validates.

    ``validate`` is a plain attribute: set ``model.validate = False`` to skip :func:`check_batch`
    (benchmarks; the check costs well under 1% of an FM training step on CPU, but it reads every
    index and, on a GPU, waits for the device). A model validates once at its boundary and builds
    its inner layers with ``validate=False`` so the same batch is not checked twice.

    **Unknown values.** Index 1 of every field means "a value never seen when the vocabulary was
    built" (a user who signed up after the training block). No training row carries it, so its
    embedding row and weight start at exactly zero and, by default, stay there: an unknown value
    contributes nothing. ``unknown_rate={"user_id": 0.1}`` trains them instead: during training,
    each row's code of that single-valued field is replaced by the unknown index with that
    probability (like dropout, and only in ``train()`` mode), so the unknown row learns what an
    average new user looks like. :meth:`prepare` applies it.
    """

    def __init__(self, schema: Schema, *, validate: bool = True, unknown_rate: Mapping[str, float] | None = None):
        super().__init__()
        if not isinstance(schema, Schema):
            raise ValueError(f"schema: expected a recbook.data.Schema, got {type(schema).__name__}")
        if len(schema) == 0:
            raise ValueError("schema: has no fields; expected at least one")
        self.schema = schema
        self.validate = bool(validate)
        single = schema.single
        offsets = torch.as_tensor(schema.offsets, dtype=torch.long)
        # Buffers, not per-batch tensors: built once, moved by .to(device), not saved in the
        # state dict (they are derived from the schema, not learned).
        self.register_buffer("single_offsets", offsets[: len(single)].clone(), persistent=False)
        self.register_buffer("single_sizes", torch.tensor([f.size for f in single], dtype=torch.long),
                             persistent=False)
        self.unknown_rate = self._check_unknown_rate(schema, unknown_rate)

    @staticmethod
    def _check_unknown_rate(schema: Schema, rates) -> dict:
        if rates is None:
            return {}
        if not isinstance(rates, Mapping):
            raise ValueError(f"unknown_rate: expected a dict {{field: rate}}, got {type(rates).__name__}")
        names = [f.name for f in schema.single]
        out = {}
        for name, rate in rates.items():
            if name not in names:
                raise ValueError(f"unknown_rate: '{name}' is not a single-valued field; expected one of {names}")
            out[name] = require_fraction(rate, name=f"unknown_rate['{name}']", inclusive=True)
        return {names.index(n): r for n, r in out.items() if r > 0}

    @classmethod
    def from_data(cls, data, **params):
        """The model for a protocol's data: ``cls(data.schema, **params)`` (the leaderboard's factory).

        ``base_rate="train"`` becomes the positive rate of ``data.train``'s labels.
        """
        return cls(data.schema, **resolve_base_rate(data, params))

    def check(self, batch: Mapping) -> None:
        """Validate ``batch`` against the schema unless ``self.validate`` is False."""
        if self.validate:
            check_batch(self.schema, batch, self.single_sizes)

    def prepare(self, batch: Mapping) -> Mapping:
        """Validate ``batch``; in training mode, also replace codes by unknown at ``unknown_rate``.

        Returns the batch to use (a shallow copy with a new ``x`` when codes were replaced; the
        caller's tensors are never modified).
        """
        self.check(batch)
        if not (self.training and self.unknown_rate):
            return batch
        x = batch["x"].clone()
        for column, rate in self.unknown_rate.items():
            hit = torch.rand(x.shape[0], device=x.device) < rate
            x[:, column] = torch.where(hit & (x[:, column] != PAD), UNK, x[:, column])
        return {**batch, "x": x}


# --------------------------------------------------------------------------------------------
# Embeddings and the first-order term
# --------------------------------------------------------------------------------------------

class FieldEmbedding(SchemaModule):
    """One ``dim``-vector per field from a single table shared by all fields.

    Row ``offset[f] + i`` of ``table`` (an ``nn.Embedding(schema.total_size, dim)``) is value ``i``
    of field ``f``. All single-valued fields are looked up with one call (``x + offsets``); each
    multi-valued field is the **mean** of its members' vectors, padding (index 0) excluded, and a
    row with no members gives a zero vector.

    Init ``N(0, init_std^2)`` with a small ``init_std`` (0.01), except the padding and unknown
    rows of every field, which start at exactly zero: the FM term adds ``F(F-1)/2``
    products of two embeddings, so with PyTorch's default ``N(0, 1)`` a model with 8 fields and
    ``dim=16`` starts with logits of size ``~sqrt(28 * 16) ~ 20`` (a saturated sigmoid, huge
    loss and gradients); with 0.01 it starts near the base rate and Adam grows the vectors.

    Shapes: ``forward(batch) -> [B, F, dim]`` with ``F = len(schema)``, fields in schema order.
    """

    def __init__(self, schema: Schema, dim: int, *, init_std: float = 0.01, validate: bool = True):
        super().__init__(schema, validate=validate)
        self.dim = require_positive_int(dim, name="dim")
        require_number(init_std, name="init_std", low=0)
        self.table = nn.Embedding(schema.total_size, self.dim)
        nn.init.normal_(self.table.weight, 0.0, float(init_std))
        with torch.no_grad():  # padding and unknown start at exactly zero (see SchemaModule)
            reserved = torch.as_tensor(schema.offsets)[:, None] + torch.tensor([PAD, UNK])
            self.table.weight[reserved.reshape(-1)] = 0.0
        self._offset = {f.name: int(o) for f, o in zip(schema.fields, schema.offsets)}
        self._multi = [f.name for f in schema.multi]

    def _gather(self, rows: torch.Tensor) -> torch.Tensor:
        """Rows of the table for global indices ``rows`` (any shape) -> ``[*rows.shape, dim]``.

        Same values and gradients as ``self.table(rows)``, but ``index_select``'s backward (an
        ``index_add``) is 1.4x (dim 16) to 4x (dim 1) faster on CPU than ``nn.Embedding``'s dense
        backward for these small tables, and the backward pass dominates a training step here.
        """
        return self.table.weight.index_select(0, rows.reshape(-1)).view(*rows.shape, self.dim)

    @property
    def num_fields(self) -> int:
        return len(self.schema)

    def field_weight(self, name: str) -> torch.Tensor:
        """The rows of field ``name``: a ``[size, dim]`` view of the table (index 0 = padding)."""
        f = self.schema[name]
        o = self._offset[name]
        return self.table.weight[o: o + f.size]

    def _check_local(self, name: str, idx, key: str | None) -> None:
        f = self.schema[name]
        key = key or name
        if not isinstance(idx, torch.Tensor) or idx.dtype != torch.long:
            raise ValueError(f"{key}: expected an int64 tensor of indices, got "
                             f"{getattr(idx, 'dtype', type(idx).__name__)}")
        if idx.numel():
            lo, hi = torch.aminmax(idx)
            if bool(lo < 0) or bool(hi >= f.size):
                bad = int(lo) if bool(lo < 0) else int(hi)
                raise ValueError(f"{key} (field '{name}'): index {bad} out of range [0, {f.size})")

    def lookup(self, name: str, idx: torch.Tensor, *, key: str | None = None) -> torch.Tensor:
        """Vectors of field ``name``'s local indices ``idx`` (any shape) -> ``[*idx.shape, dim]``.

        For keys outside the CTR batch layout, e.g. DIN's behaviour history:
        ``lookup("item_id", batch["hist_item"], key="hist_item")`` (``key`` only names the tensor
        in error messages). Padding entries return the field's padding row; mask them.
        """
        if self.validate:
            self._check_local(name, idx, key)
        return self._gather(idx + self._offset[name])

    def pool(self, name: str, idx: torch.Tensor, *, key: str | None = None) -> torch.Tensor:
        """Mean of the vectors of ``idx`` ``[B, L]`` over its non-padding entries -> ``[B, dim]``."""
        if self.validate:
            self._check_local(name, idx, key)
        return self._pool(name, idx)

    def _pool(self, name: str, idx: torch.Tensor) -> torch.Tensor:
        mask = idx != PAD
        count = mask.sum(1, keepdim=True).clamp_(min=1)
        # Weight 1/k on the k members and 0 on padding: the padding rows are multiplied by 0, so
        # they neither change the output nor receive a gradient, and an empty row gives a zero
        # vector. (Multiply-and-sum is ~3x faster on CPU than bmm for these tiny [1, L] x [L, D].)
        dtype = self.table.weight.dtype  # 1/k in the table's precision (float32 would round it)
        w = (mask.to(dtype) / count.to(dtype)).unsqueeze(-1)  # [B, L, 1]
        return (self._gather(idx + self._offset[name]) * w).sum(dim=1)

    def forward(self, batch: Mapping) -> torch.Tensor:
        self.check(batch)
        parts = []
        if self.single_offsets.numel():
            parts.append(self._gather(batch["x"] + self.single_offsets))  # [B, S, D], one lookup
        for name in self._multi:
            parts.append(self._pool(name, batch[name]).unsqueeze(1))  # [B, 1, D], checked above
        return parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)


class FeatureLinear(SchemaModule):
    """First-order term ``w0 + sum_i w_i x_i`` over one-hot features -> logits ``[B]``.

    One scalar weight per feature *value* (an embedding of dim 1 over the same offsets as
    :class:`FieldEmbedding`), not a linear layer over embeddings. A multi-valued field with ``k``
    members has ``x_i = 1/k`` on each, so it contributes the mean of its members' weights,
    matching the pooled embedding.

    Init: weights 0 and ``w0`` = 0, or the log-odds of ``base_rate`` when given, so an untrained
    model predicts the base rate (a zero-weight model is then exactly the constant predictor).
    """

    def __init__(self, schema: Schema, *, base_rate: float | None = None, validate: bool = True):
        super().__init__(schema, validate=validate)
        self.weights = FieldEmbedding(schema, 1, validate=False)  # the boundary checks once
        nn.init.zeros_(self.weights.table.weight)
        bias = 0.0
        if base_rate is not None:
            p = require_fraction(base_rate, name="base_rate")
            bias = math.log(p / (1 - p))
        self.bias = nn.Parameter(torch.tensor(bias))

    def forward(self, batch: Mapping) -> torch.Tensor:
        self.check(batch)
        return self.weights(batch).sum(dim=(1, 2)) + self.bias


# --------------------------------------------------------------------------------------------
# Factorization-machine interaction
# --------------------------------------------------------------------------------------------

class FMInteraction(nn.Module):
    """Pairwise term of a factorization machine (Rendle, ICDM 2010), in ``O(kn)``.

    ``sum_{i<j} <v_i, v_j> = 0.5 * sum_d [ (sum_i v_id)^2 - sum_i v_id^2 ]``: the square of the sum
    contains every product ``v_i v_j`` twice plus the ``n`` squares, which are subtracted. Cost
    ``O(kn)`` instead of ``O(kn^2)`` for the explicit sum over pairs.

    Shapes: ``v`` ``[B, n, k]`` -> ``[B]``, or ``[B, k]`` with ``reduce_sum=False`` (the
    per-dimension terms, which the deep models feed onward).
    """

    def __init__(self, reduce_sum: bool = True):
        super().__init__()
        self.reduce_sum = bool(reduce_sum)

    def forward(self, v: torch.Tensor) -> torch.Tensor:
        if not isinstance(v, torch.Tensor) or v.dim() != 3:
            raise ValueError(f"v: expected a [B, n, k] tensor, got shape {tuple(getattr(v, 'shape', ()))}")
        square_of_sum = v.sum(dim=1).square()  # [B, k]
        sum_of_square = v.square().sum(dim=1)  # [B, k]
        out = 0.5 * (square_of_sum - sum_of_square)
        return out.sum(dim=1) if self.reduce_sum else out

    def extra_repr(self) -> str:
        return f"reduce_sum={self.reduce_sum}"


def pairwise_interaction_naive(v: torch.Tensor) -> torch.Tensor:
    """``sum_{i<j} <v_i, v_j>`` by visiting every pair: ``O(k n^2)``. ``[B, n, k]`` -> ``[B]``.

    The reference for :class:`FMInteraction` in tests and the chapter's speed comparison. The
    outer loop over ``i`` is Python; the inner loop over ``j > i`` is one vectorised product, so
    that timings measure the ``n(n-1)/2`` dot products rather than Python's per-call overhead.
    """
    if not isinstance(v, torch.Tensor) or v.dim() != 3:
        raise ValueError(f"v: expected a [B, n, k] tensor, got shape {tuple(getattr(v, 'shape', ()))}")
    out = v.new_zeros(v.shape[0])
    for i in range(v.shape[1] - 1):
        out = out + (v[:, i: i + 1] * v[:, i + 1:]).sum(dim=(1, 2))  # <v_i, v_j> for all j > i
    return out


# --------------------------------------------------------------------------------------------
# Multi-layer perceptron
# --------------------------------------------------------------------------------------------

def mlp(in_dim: int, hidden: Sequence[int] = (64, 32), dropout: float = 0.0, batchnorm: bool = False,
        out_dim: int | None = 1) -> nn.Sequential:
    """``Linear -> [BatchNorm1d] -> ReLU -> [Dropout]`` per hidden width, then ``Linear(out_dim)``.

    ``[B, in_dim]`` -> ``[B, out_dim]`` (``[B, hidden[-1]]`` when ``out_dim`` is None). Weights keep
    PyTorch's default ``U(+-1/sqrt(fan_in))``, which keeps activations of order 1 at these widths;
    the output bias starts at 0 so the model's global bias lives in one place (the linear term).
    """
    in_dim = require_positive_int(in_dim, name="in_dim")
    hidden = tuple(hidden)
    for i, h in enumerate(hidden):
        require_positive_int(h, name=f"hidden[{i}]")
    require_number(dropout, name="dropout", low=0, high=1, high_open=True)
    layers: list[nn.Module] = []
    d = in_dim
    for h in hidden:
        # A bias before BatchNorm is cancelled by its mean subtraction, so drop it.
        layers.append(nn.Linear(d, h, bias=not batchnorm))
        if batchnorm:
            layers.append(nn.BatchNorm1d(h))
        layers.append(nn.ReLU())
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        d = h
    if out_dim is not None:
        out = nn.Linear(d, require_positive_int(out_dim, name="out_dim"))
        nn.init.zeros_(out.bias)
        layers.append(out)
    return nn.Sequential(*layers)


# --------------------------------------------------------------------------------------------
# Cross-product features (the wide part of Wide & Deep)
# --------------------------------------------------------------------------------------------

class CrossLinear(SchemaModule):
    """Cross-product term of a wide model: ``sum_c w_c[pair_c(row)]`` -> ``[B]``.

    One scalar weight per known value pair of every cross in a :class:`recbook.data.Crosses`
    (Cheng et al., 2016), all in one table ``weight`` ``[crosses.total_size]`` laid out by
    ``crosses.weight_schema`` (row ``offset[c] + code``); each row holds one weight, so a batch
    reads and updates only the rows of its pairs (never a dense ``Linear`` over a multi-hot
    vector). Weights start at 0; an unknown pair's row is never trained when the vocabulary keeps
    every training pair, so it contributes nothing.

    A cross with a multi-valued field (``occupation × genres``) has one pair per member; they
    enter with ``x_i = 1/k`` (``pooling="mean"``, as in :class:`FeatureLinear`) or ``x_i = 1``
    (``pooling="sum"``). Padding members are masked out.

    Speed: the pair codes of all crosses come from **one** flat lookup buffer (every cross's
    ``table``, shifted to its rows of ``weight``), so a batch costs two index operations per
    kind of cross whatever their number.

    Shapes: ``forward(batch) -> [B]``; :meth:`rows` gives the weight rows ``([B, C_single],
    {field: [B, C_multi, L]})``.
    """

    def __init__(self, crosses, *, pooling: str = "mean", validate: bool = True):
        from .data.crosses import Crosses

        if not isinstance(crosses, Crosses):
            raise ValueError(f"crosses: expected a recbook.data.Crosses, got {type(crosses).__name__}")
        super().__init__(crosses.schema, validate=validate)
        if pooling not in ("mean", "sum"):
            raise ValueError(f"pooling: expected 'mean' or 'sum', got {pooling!r}")
        self.crosses = crosses
        self.pooling = pooling
        ws = crosses.weight_schema
        row_offset = dict(zip(ws.names, ws.offsets.tolist()))
        column = {f.name: i for i, f in enumerate(self.schema.single)}
        flat, start = [], 0
        single = {"a": [], "b": [], "size_b": [], "start": []}
        multi: dict[str, dict[str, list]] = {}
        for c in crosses.crosses:
            # Lookup entry start + code_a * size_b + code_b holds the pair's row of `weight`.
            flat.append(torch.as_tensor(c.table, dtype=torch.long).reshape(-1) + row_offset[c.name])
            size_b = c.table.shape[1]
            if c.multi:
                m = multi.setdefault(c.b, {"a": [], "start": []})
                m["a"].append(column[c.a])
                m["start"].append(start)
            else:
                for key, v in (("a", column[c.a]), ("b", column[c.b]), ("size_b", size_b), ("start", start)):
                    single[key].append(v)
            start += c.table.size
        self.register_buffer("lookup", torch.cat(flat), persistent=False)
        for key, v in single.items():
            self.register_buffer(f"single_{key}", torch.tensor(v, dtype=torch.long), persistent=False)
        self._multi = list(multi)
        for i, (b, m) in enumerate(multi.items()):
            self.register_buffer(f"multi{i}_a", torch.tensor(m["a"], dtype=torch.long), persistent=False)
            self.register_buffer(f"multi{i}_start", torch.tensor(m["start"], dtype=torch.long),
                                 persistent=False)
        self.weight = nn.Parameter(torch.zeros(crosses.total_size))

    def rows(self, batch: Mapping):
        """Rows of ``weight`` used by each row of ``batch``: ``(single [B, Cs], {b: [B, Cm, L]})``."""
        x = batch["x"]
        single = self._lookup(x.index_select(1, self.single_a) * self.single_size_b
                              + x.index_select(1, self.single_b) + self.single_start)
        multi = {}
        for i, b in enumerate(self._multi):
            members = batch[b]  # [B, L]
            base = x.index_select(1, getattr(self, f"multi{i}_a")) * self.schema[b].size \
                + getattr(self, f"multi{i}_start")  # [B, Cm]
            multi[b] = self._lookup(base.unsqueeze(2) + members.unsqueeze(1))
        return single, multi

    def _lookup(self, idx: torch.Tensor) -> torch.Tensor:
        return self.lookup.index_select(0, idx.reshape(-1)).view(idx.shape)

    def _gather(self, rows: torch.Tensor) -> torch.Tensor:
        # index_select: same values as weight[rows], with the faster index_add backward (see
        # FieldEmbedding._gather).
        return self.weight.index_select(0, rows.reshape(-1)).view(rows.shape)

    def forward(self, batch: Mapping) -> torch.Tensor:
        self.check(batch)
        single, multi = self.rows(batch)
        out = self._gather(single).sum(1) if single.shape[1] else None
        for b, rows in multi.items():
            mask = batch[b] != PAD  # [B, L]
            w = mask.to(self.weight.dtype)
            if self.pooling == "mean":
                w = w / mask.sum(1, keepdim=True).clamp_(min=1)
            term = (self._gather(rows) * w.unsqueeze(1)).sum(dim=(1, 2))
            out = term if out is None else out + term
        return out if out is not None else self.weight.new_zeros(batch["x"].shape[0])

    def extra_repr(self) -> str:
        return f"crosses={self.crosses.names}, pairs={self.crosses.total_size}, pooling={self.pooling!r}"


# ============================================================================================
# Behaviour sequences: Dice, target attention, mini-batch-aware L2 (DIN, Zhou et al. 2018)
# ============================================================================================
# Self-contained: the pieces below use only the imports at the top of the module. A behaviour
# history is either padded, [B, L, D] with a bool mask [B, L] (True = a real item, False =
# padding), or packed, [N, D]: only its N real items, in the row-major order of the mask.

__all__ += [
    "ActivationUnit", "Dice", "MaskedMLP", "MiniBatchAwareL2", "PReLU", "TargetAttention",
    "masked_mean", "masked_softmax", "occurrence_counts",
]


def _require_mask(mask, shape, key: str = "mask") -> torch.Tensor:
    if not isinstance(mask, torch.Tensor) or mask.dtype != torch.bool:
        raise ValueError(f"{key}: expected a bool tensor, got {getattr(mask, 'dtype', type(mask).__name__)}")
    if tuple(mask.shape) != tuple(shape):
        raise ValueError(f"{key}: expected shape {tuple(shape)}, got {tuple(mask.shape)}")
    return mask


class PReLU(nn.Module):
    """``max(s, 0) + alpha * min(s, 0)`` with one learned ``alpha`` per neuron of the **last** dim.

    ``torch.nn.PReLU`` puts its channels on dim 1, which for a history ``[B, L, H]`` is the
    position, not the neuron. Takes (and ignores) ``mask`` so it can stand where :class:`Dice` does.
    """

    def __init__(self, num_features: int, *, alpha_init: float = 0.25):
        super().__init__()
        self.num_features = require_positive_int(num_features, name="num_features")
        self.alpha = nn.Parameter(torch.full((self.num_features,), require_number(alpha_init, name="alpha_init")))

    def forward(self, s: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        # relu(s) + alpha * (s - relu(s)): measured about 1.5x faster here, forward + backward,
        # than F.prelu on an [N, H] tensor (whose backward reduces the slopes slowly on one thread).
        r = F.relu(s)
        return r + self.alpha * (s - r)

    def extra_repr(self) -> str:
        return f"{self.num_features}"


class Dice(nn.Module):
    """Dice, the data-adaptive activation of DIN (Zhou et al., KDD 2018, Sec. 4.3).

    ``f(s) = p(s) * s + (1 - p(s)) * alpha * s`` with ``p(s) = sigmoid((s - E[s]) / sqrt(Var[s] + eps))``.

    PReLU switches from slope ``alpha`` to slope 1 at ``s = 0`` for every input distribution;
    Dice switches smoothly around the neuron's own mean, with a width set by its spread.
    ``E[s]`` and ``Var[s]`` are **per neuron** (one mean and one variance for each of the ``H``
    neurons, over all rows of the batch, as in BatchNorm; not one statistic across the neurons of a
    row). In training they are the batch's; in ``eval()`` they are running averages,
    ``running = (1 - momentum) * running + momentum * batch`` (the variance unbiased, as
    ``nn.BatchNorm1d`` keeps it), so a prediction does not depend on the other rows scored with it.

    ``mask`` (bool, ``s.shape[:-1]``): only positions where it is True enter the statistics; the
    padded positions of a history are transformed with the same statistics but never shift them.
    A training batch with no True position uses (and keeps) the running statistics. (DIN's
    :class:`ActivationUnit` needs no mask: it hands Dice only the real items, packed.)

    Shapes: ``s`` ``[..., H]`` -> ``[..., H]``. ``alpha`` starts at 0 (as in the authors' code).
    """

    def __init__(self, num_features: int, *, eps: float = 1e-8, momentum: float = 0.1,
                 alpha_init: float = 0.0):
        super().__init__()
        self.num_features = require_positive_int(num_features, name="num_features")
        self.eps = require_number(eps, name="eps", low=0, low_open=True)
        self.momentum = require_fraction(momentum, name="momentum", inclusive=True)
        self.alpha = nn.Parameter(torch.full((self.num_features,), require_number(alpha_init, name="alpha_init")))
        self.register_buffer("running_mean", torch.zeros(self.num_features))
        self.register_buffer("running_var", torch.ones(self.num_features))

    def batch_statistics(self, s: torch.Tensor, mask: torch.Tensor | None = None):
        """Per-neuron mean, biased variance and count over the (unmasked) rows of ``s``: ``[H], [H], n``."""
        flat = s.reshape(-1, self.num_features)
        if mask is None:
            return flat.mean(0), flat.var(0, unbiased=False), flat.shape[0]
        w = mask.reshape(-1, 1).to(s.dtype)
        n = int(mask.sum())
        count = max(n, 1)
        mean = (flat * w).sum(0) / count
        var = ((flat - mean).square() * w).sum(0) / count
        return mean, var, n

    def forward(self, s: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        if not isinstance(s, torch.Tensor) or s.dim() < 2 or s.shape[-1] != self.num_features:
            raise ValueError(f"s: expected a tensor [..., {self.num_features}], got shape "
                             f"{tuple(getattr(s, 'shape', ()))}")
        if mask is not None:
            _require_mask(mask, s.shape[:-1])
        flat = s.reshape(-1, self.num_features)
        if mask is None and (not self.training or flat.shape[0] > 1):
            # The standardisation (s - E[s]) / sqrt(Var[s] + eps) with these statistics and
            # running averages is exactly what batch_norm computes, in one fused kernel.
            z = F.batch_norm(flat, self.running_mean, self.running_var, None, None, self.training,
                             self.momentum, self.eps).view(s.shape)
        else:
            mean, var = self.running_mean, self.running_var
            if self.training:
                b_mean, b_var, n = self.batch_statistics(s, mask)
                if n > 0:
                    mean, var = b_mean, b_var
                    with torch.no_grad():
                        unbiased = b_var * (n / (n - 1)) if n > 1 else b_var
                        self.running_mean.lerp_(b_mean.detach(), self.momentum)
                        self.running_var.lerp_(unbiased.detach(), self.momentum)
            z = (s - mean) * torch.rsqrt(var + self.eps)
        p = torch.sigmoid(z)
        return s * torch.addcmul(self.alpha, p, 1 - self.alpha)  # p s + (1 - p) alpha s

    def extra_repr(self) -> str:
        return f"{self.num_features}, eps={self.eps}, momentum={self.momentum}"


_ACTIVATIONS = ("prelu", "dice", "relu", "sigmoid")


def _activation(name: str, width: int) -> nn.Module:
    if name == "prelu":
        return PReLU(width)
    if name == "dice":
        return Dice(width)
    if name == "relu":
        return nn.ReLU()
    if name == "sigmoid":
        return nn.Sigmoid()
    raise ValueError(f"activation: expected one of {_ACTIVATIONS}, got {name!r}")


class MaskedMLP(nn.Module):
    """``Linear -> activation -> [Dropout]`` per hidden width, then ``Linear(out_dim)``, over the
    last dim; the mask reaches every :class:`Dice` so padded positions stay out of its statistics.

    ``activation``: ``"prelu"`` (:class:`PReLU`), ``"dice"`` (:class:`Dice`), ``"relu"`` or
    ``"sigmoid"``. Shapes: ``x`` ``[..., in_dim]``, ``mask`` bool ``x.shape[:-1]`` or None ->
    ``[..., out_dim]`` (``[..., hidden[-1]]`` when ``out_dim`` is None). Output bias starts at 0.
    """

    def __init__(self, in_dim: int, hidden: Sequence[int] = (200, 80), *, activation: str = "prelu",
                 dropout: float = 0.0, out_dim: int | None = 1):
        super().__init__()
        d = require_positive_int(in_dim, name="in_dim")
        hidden = tuple(hidden)
        for i, h in enumerate(hidden):
            require_positive_int(h, name=f"hidden[{i}]")
        require_number(dropout, name="dropout", low=0, high=1, high_open=True)
        if activation not in _ACTIVATIONS:
            raise ValueError(f"activation: expected one of {_ACTIVATIONS}, got {activation!r}")
        self.activation = activation
        self.linears = nn.ModuleList()
        self.activations = nn.ModuleList()
        for h in hidden:
            self.linears.append(nn.Linear(d, h))
            self.activations.append(_activation(activation, h))
            d = h
        self.dropout = nn.Dropout(dropout) if dropout > 0 else None
        self.out = None
        if out_dim is not None:
            self.out = nn.Linear(d, require_positive_int(out_dim, name="out_dim"))
            nn.init.zeros_(self.out.bias)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        for linear, act in zip(self.linears, self.activations):
            x = act(linear(x), mask) if isinstance(act, (Dice, PReLU)) else act(linear(x))
            if self.dropout is not None:
                x = self.dropout(x)
        return x if self.out is None else self.out(x)


class ActivationUnit(nn.Module):
    """DIN's local activation unit: one score per history item for one candidate.

    ``a(e_j, v_A) = MLP([e_j, v_A, e_j * v_A, e_j - v_A])`` for every item ``e_j`` of a row's
    history and the row's candidate ``v_A``; the MLP (``Linear -> activation`` per width of
    ``hidden``, then ``Linear(1)``) ends in a score, not a probability.

    *The paper's "out product".* Fig. 2 of the paper feeds the unit ``e_j``, ``v_A`` and their
    "out product". The full outer product ``e_j v_A^T`` has ``D^2`` entries, and a linear layer on
    it is one bilinear form ``e_j^T W_h v_A`` per hidden unit ``h``. The authors' released code uses
    the element-wise product ``e_j * v_A`` instead, which is the **diagonal** of the outer product:
    the same bilinear forms restricted to a diagonal ``W_h``, with ``D`` inputs instead of ``D^2``.
    That is what this unit does. The difference ``e_j - v_A`` (also from the authors' code) adds
    nothing a linear layer on ``[e_j, v_A]`` could not express; it is a re-parametrisation that
    hands the MLP "how far is this item from the candidate" directly.

    *Packed histories.* The unit sees only the real history items of the whole batch, stacked:
    ``keys`` ``[N, D]`` (``N`` = number of real items in the batch) with ``rows`` ``[N]`` saying
    which row (and so which candidate) each belongs to. Padding never enters it, so no
    :class:`Dice` statistic can see a padded position, and no work is spent on padding (a quarter
    of the positions on this data). Everything is computed at once, with no loop over rows.

    *The first layer* is one ``nn.Linear(4D, H)`` on the concatenation (:meth:`features`), and
    that is what it computes; but splitting its weight into the blocks ``[W_e, W_v, W_p, W_d]``
    that meet the four parts,

        ``W [e, v, e*v, e-v] + b = e (W_e + W_d)^T + (e * v) W_p^T + (v (W_v - W_d)^T + b)``

    the last term depends only on the candidate, so it is computed once per *row*; and when the
    keys are rows of a table (``keys == table[index]``, DIN's item vectors), the first term is
    computed once per *table row* and gathered. Only ``(e * v) W_p^T`` is computed per history
    item: a third of the literal layer's multiply-adds (tested against the literal form).

    Shapes: ``keys`` ``[N, D]``, ``query`` ``[B, D]``, ``rows`` int64 ``[N]`` in ``[0, B)``,
    optionally ``table`` ``[V, D]`` and ``index`` ``[N]`` with ``keys == table[index]`` ->
    scores ``[N]``.
    """

    def __init__(self, dim: int, hidden: Sequence[int] = (36,), *, activation: str = "prelu"):
        super().__init__()
        self.dim = require_positive_int(dim, name="dim")
        hidden = tuple(hidden)
        if not hidden:
            raise ValueError("hidden: expected at least one hidden width for the activation unit")
        for i, h in enumerate(hidden):
            require_positive_int(h, name=f"hidden[{i}]")
        self.first = nn.Linear(4 * self.dim, hidden[0])
        self.first_activation = _activation(activation, hidden[0])
        self.rest = MaskedMLP(hidden[0], hidden[1:], activation=activation, out_dim=1)

    @staticmethod
    def features(keys: torch.Tensor, query: torch.Tensor) -> torch.Tensor:
        """``[e_j, v_A, e_j * v_A, e_j - v_A]`` for keys and queries of the same shape ``[..., D]``."""
        return torch.cat([keys, query, keys * query, keys - query], dim=-1)

    def first_layer(self, keys: torch.Tensor, query: torch.Tensor, rows: torch.Tensor, *,
                    table: torch.Tensor | None = None, index: torch.Tensor | None = None) -> torch.Tensor:
        """``self.first(self.features(keys, query[rows]))`` without building the features: ``[N, H]``."""
        w_e, w_v, w_p, w_d = self.first.weight.split(self.dim, dim=1)  # each [H, D]
        per_row = F.linear(query, w_v - w_d, self.first.bias)  # [B, H]: once per candidate
        if table is None:
            per_key = F.linear(keys, w_e + w_d)  # [N, H]
        else:
            per_key = F.linear(table, w_e + w_d).index_select(0, index)  # once per table row
        q = query.index_select(0, rows)  # [N, D]: each item's candidate
        return torch.addmm(per_key + per_row.index_select(0, rows), keys * q, w_p.t())

    def forward(self, keys: torch.Tensor, query: torch.Tensor, rows: torch.Tensor, *,
                table: torch.Tensor | None = None, index: torch.Tensor | None = None) -> torch.Tensor:
        h = self.first_activation(self.first_layer(keys, query, rows, table=table, index=index))
        return self.rest(h).squeeze(-1)  # [N]: real items only


def masked_softmax(scores: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Softmax over the True positions of each row; 0 on padding, and an all-zero row when the row
    has no True position. ``[B, L]`` -> ``[B, L]``."""
    w = torch.softmax(scores.masked_fill(~mask, torch.finfo(scores.dtype).min), dim=-1)
    return w * mask


class TargetAttention(nn.Module):
    """Pool a history into one vector *for a given candidate*: ``v_U(A) = sum_j w_j e_j``.

    ``w_j = a(e_j, v_A)`` from the :class:`ActivationUnit`, over the real items of the row. By
    default the weights are **not** normalised (paper, Sec. 4.2: the sum keeps the *intensity* of
    the user's interest: a history with many items related to the candidate gives a larger vector
    than one with a single related item, and softmax would erase that difference). With
    ``softmax=True`` they are a softmax over the real items of ``score / sqrt(D)``, as in the
    authors' released code.

    Two entry points with the same result:

    * ``forward(keys [B, L, D], query [B, D], mask [B, L])``: a padded history;
    * :meth:`pool` ``(keys [N, D], query, mask)``: the same history *packed*, only its real items,
      in the row-major order of ``mask`` (``keys_padded[mask]``). DIN gathers its history this way,
      straight from the item table, and never builds the padded ``[B, L, D]`` tensor.

    Both return ``(pooled [B, D], weights [B, L])``; weights are 0 on padding, and a row with an
    empty history pools to a zero vector.
    """

    def __init__(self, dim: int, hidden: Sequence[int] = (36,), *, activation: str = "prelu",
                 softmax: bool = False):
        super().__init__()
        self.unit = ActivationUnit(dim, hidden, activation=activation)
        self.softmax = bool(softmax)

    def pool(self, keys: torch.Tensor, query: torch.Tensor, mask: torch.Tensor, *,
             table: torch.Tensor | None = None, index: torch.Tensor | None = None):
        """``keys`` ``[N, D]``: the real items of ``mask`` ``[B, L]``, packed in row-major order.
        When they are rows of a table, ``keys == table[index]``, passing ``table`` and ``index``
        saves work (see :class:`ActivationUnit`); the result is the same."""
        d = self.unit.dim
        if not (isinstance(query, torch.Tensor) and query.dim() == 2 and query.shape[1] == d):
            raise ValueError(f"query: expected a [B, {d}] tensor, got shape {tuple(getattr(query, 'shape', ()))}")
        _require_mask(mask, (query.shape[0], mask.shape[-1] if isinstance(mask, torch.Tensor) else 0))
        rows, cols = mask.nonzero(as_tuple=True)
        if not (isinstance(keys, torch.Tensor) and tuple(keys.shape) == (len(rows), d)):
            raise ValueError(f"keys: expected the {len(rows)} real items of mask packed as a [{len(rows)}, {d}] "
                             f"tensor, got shape {tuple(getattr(keys, 'shape', ()))}")
        scores = self.unit(keys, query, rows, table=table, index=index)  # [N]
        dense = scores.new_zeros(mask.shape).index_put((rows, cols), scores)  # [B, L], 0 on padding
        if self.softmax:
            dense = masked_softmax(dense / math.sqrt(d), mask)
            scores = dense[rows, cols]
        pooled = keys.new_zeros(query.shape).index_add(0, rows, scores.unsqueeze(1) * keys)
        return pooled, dense

    def forward(self, keys: torch.Tensor, query: torch.Tensor, mask: torch.Tensor):
        if not (isinstance(keys, torch.Tensor) and keys.dim() == 3 and keys.shape[-1] == self.unit.dim):
            raise ValueError(f"keys: expected a [B, L, {self.unit.dim}] tensor, got shape "
                             f"{tuple(getattr(keys, 'shape', ()))}")
        _require_mask(mask, keys.shape[:2])
        return self.pool(keys[mask], query, mask)

    def extra_repr(self) -> str:
        return f"softmax={self.softmax}"


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``values`` over the True positions of ``mask`` ``[B, L]`` -> ``[B, D]`` (a zero
    vector for a row with none): the DIN base model's pooling. ``values`` is either padded
    ``[B, L, D]`` or packed ``[N, D]`` (the real positions, in the row-major order of ``mask``)."""
    count = mask.sum(1, keepdim=True).clamp(min=1)
    if values.dim() == 3:
        _require_mask(mask, values.shape[:2])
        values = values[mask]
    rows = mask.nonzero(as_tuple=True)[0]
    if values.shape[0] != rows.shape[0]:
        raise ValueError(f"values: has {values.shape[0]} packed rows; expected {rows.shape[0]}, one per "
                         "True entry of mask")
    return values.new_zeros(mask.shape[0], values.shape[1]).index_add(0, rows, values) / count


class MiniBatchAwareL2(nn.Module):
    """DIN's mini-batch aware regularisation (Zhou et al. 2018, Sec. 4.1, Eq. 4-5).

    L2 on a whole embedding table at every step would touch every row, most of which the batch
    never uses. The paper penalises only the rows present in the batch, each scaled by how rarely
    it occurs: for batch ``B_m`` the penalty is ``(l2 / 2) * sum_j alpha_mj * ||w_j||^2 / n_j``,
    where ``alpha_mj`` is 1 if row ``j`` occurs in the batch and ``n_j`` is the number of training
    samples in which it occurs. Its gradient on ``w_j`` is exactly the paper's update term
    ``l2 * alpha_mj / n_j * w_j``. Over an epoch a rare row is penalised about once, a frequent row
    about ``n_batches / n_j`` times: rare ids, which overfit most, are shrunk most.

    ``counts``: ``n_j`` for every row of the table (:func:`occurrence_counts`). Rows with
    ``n_j = 0`` (never in training) and the rows listed in ``exclude`` (padding) are never
    penalised. ``forward(weight, rows)`` -> the scalar penalty, ``rows`` = the table rows the batch
    uses (any shape, repeats allowed).
    """

    def __init__(self, counts: torch.Tensor, l2: float, *, exclude: Sequence[int] = ()):
        super().__init__()
        require_number(l2, name="l2", low=0)
        if not isinstance(counts, torch.Tensor) or counts.dim() != 1 or bool((counts < 0).any()):
            raise ValueError("counts: expected a 1-D tensor of non-negative occurrence counts")
        self.l2 = float(l2)
        inv = torch.where(counts > 0, 1.0 / counts.clamp(min=1).double(), 0.0).float()
        if len(exclude):
            inv[torch.as_tensor(list(exclude), dtype=torch.long)] = 0.0
        self.register_buffer("inv_counts", inv, persistent=False)

    def forward(self, weight: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        if weight.shape[0] != self.inv_counts.shape[0]:
            raise ValueError(f"weight: has {weight.shape[0]} rows; expected {self.inv_counts.shape[0]} "
                             "like counts")
        present = torch.zeros_like(self.inv_counts).index_fill_(0, rows.reshape(-1), 1.0)
        return 0.5 * self.l2 * (present * self.inv_counts * weight.square().sum(1)).sum()

    def extra_repr(self) -> str:
        return f"l2={self.l2}, rows={self.inv_counts.shape[0]}"


def occurrence_counts(rows: torch.Tensor, size: int, *, chunk: int = 4096) -> torch.Tensor:
    """``n_j``: in how many samples row ``j`` occurs, counting a row once per sample.

    ``rows`` int64 ``[N, K]``: the table rows sample ``i`` uses (repeats allowed) -> ``[size]``.
    Vectorised per chunk of samples: sort each sample's rows and count the first of each run.
    """
    if not isinstance(rows, torch.Tensor) or rows.dim() != 2 or rows.dtype != torch.long:
        raise ValueError("rows: expected an int64 tensor [N, K]")
    size = require_positive_int(size, name="size")
    out = torch.zeros(size, dtype=torch.long)
    for start in range(0, rows.shape[0], chunk):
        s = rows[start:start + chunk].sort(dim=1).values
        first = torch.ones_like(s, dtype=torch.bool)
        first[:, 1:] = s[:, 1:] != s[:, :-1]
        out += torch.bincount(s[first], minlength=size)
    return out

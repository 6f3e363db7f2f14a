"""Degree-2 polynomial model (Poly2) with hashed pair weights."""
from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from .._checks import require_positive_int
from ..data.features import Schema
from ..layers import FeatureLinear, SchemaModule


class Poly2(SchemaModule):
    """``logit = w0 + sum_i w_i x_i + sum_{i<j} w_{h(i, j)} x_i x_j``: a free weight per pair.

    Poly2 (Chang et al., "Training and Testing Low-degree Polynomial Data Mappings via Linear SVM",
    JMLR 2010; written with a hashed pair index as in Juan et al., "Field-aware Factorization
    Machines for CTR Prediction", RecSys 2016). The weight of a pair is learned only from the rows
    where the pair occurs: a pair never seen together in training keeps its initial weight 0,
    which is the chapter's argument for factorization machines.

    Pairs: one per pair of single-valued fields, ``S(S-1)/2`` per row. The pair of feature values
    with global indices ``a < b`` (``x + offsets``) has id ``a * total_size + b``; the full table
    of ``total_size^2`` ids is folded into ``n_buckets`` rows by ``id % n_buckets`` (the hashing
    trick). Distinct pairs may share a bucket and so a weight; collisions stay rare while the
    number of distinct pairs seen is well below ``n_buckets``, and vanish when ``n_buckets >=
    total_size^2``. Multi-valued fields enter the first-order term only (book simplification).

    Args:
        schema: the fields.
        n_buckets: rows of the pair-weight table (default about one million: 4 MB of weights).
        base_rate: optional positive rate of the training labels; the bias starts at its log-odds.
        validate: check each batch with :func:`recbook.layers.check_batch` (turn off to benchmark).
        unknown_rate: ``{field: rate}``: train the unknown rows by replacing that share of the
            field's codes by unknown during training (see :class:`recbook.layers.SchemaModule`).

    Shapes: ``forward(batch) -> [B]`` logits (no sigmoid).
    """

    def __init__(self, schema: Schema, n_buckets: int = 1_000_003, *, base_rate: float | None = None,
                 validate: bool = True,
                 unknown_rate: dict | None = None):
        super().__init__(schema, validate=validate, unknown_rate=unknown_rate)
        self.n_buckets = require_positive_int(n_buckets, name="n_buckets")
        self.linear = FeatureLinear(schema, base_rate=base_rate, validate=False)
        self.pair_weight = nn.Embedding(self.n_buckets, 1)
        nn.init.zeros_(self.pair_weight.weight)  # an unseen pair contributes nothing
        i, j = torch.triu_indices(len(schema.single), len(schema.single), offset=1)
        self.register_buffer("pair_i", i, persistent=False)
        self.register_buffer("pair_j", j, persistent=False)

    def pair_buckets(self, x: torch.Tensor) -> torch.Tensor:
        """Bucket of every field pair of every row: ``x`` ``[B, S]`` -> int64 ``[B, S(S-1)/2]``."""
        g = x + self.single_offsets  # global feature index; field i < field j gives a < b
        return (g[:, self.pair_i] * self.schema.total_size + g[:, self.pair_j]) % self.n_buckets

    def forward(self, batch: Mapping) -> torch.Tensor:
        batch = self.prepare(batch)
        logit = self.linear(batch)
        if self.pair_i.numel():
            logit = logit + self.pair_weight(self.pair_buckets(batch["x"])).sum(dim=(1, 2))
        return logit

"""Factorization machine (Rendle, "Factorization Machines", ICDM 2010)."""
from __future__ import annotations

from collections.abc import Mapping

import torch

from ..data.features import Schema
from ..layers import FeatureLinear, FieldEmbedding, FMInteraction, SchemaModule


class FactorizationMachine(SchemaModule):
    """``logit = w0 + sum_i w_i x_i + sum_{i<j} <v_i, v_j> x_i x_j``.

    Every feature value ``i`` gets a vector ``v_i`` of size ``dim``, and the weight of a pair is
    the dot product of its two vectors. A pair never seen together in training still gets a
    sensible weight, because each vector is learned from all the pairs its value *did* appear in
    (Poly2, with one free weight per pair, cannot do this). The pairwise sum is computed in
    ``O(kn)`` (:class:`recbook.layers.FMInteraction`).

    Where the book simplifies Rendle's model: a multi-valued field (genres) enters as **one**
    pooled vector, the mean of its members' vectors (``x_i = 1/k`` on each of ``k`` genres). Its
    pairs with other fields are exactly Rendle's, but the genre x genre pairs *inside* the field
    are dropped. Rows carry one value per single-valued field, so the ``n`` of the ``O(kn)`` is the
    number of fields.

    Args:
        schema: the fields.
        dim: size ``k`` of the factor vectors.
        init_std: standard deviation of the initial factors (see ``FieldEmbedding``).
        base_rate: optional positive rate of the training labels; the bias starts at its log-odds.
        validate: check each batch with :func:`recbook.layers.check_batch` (turn off to benchmark).
        unknown_rate: ``{field: rate}``: train the unknown rows by replacing that share of the
            field's codes by unknown during training (see :class:`recbook.layers.SchemaModule`).

    Shapes: ``forward(batch) -> [B]`` logits (no sigmoid).
    """

    def __init__(self, schema: Schema, dim: int = 16, *, init_std: float = 0.01,
                 base_rate: float | None = None, validate: bool = True,
                 unknown_rate: dict | None = None):
        super().__init__(schema, validate=validate, unknown_rate=unknown_rate)
        self.linear = FeatureLinear(schema, base_rate=base_rate, validate=False)
        self.embedding = FieldEmbedding(schema, dim, init_std=init_std, validate=False)
        self.interaction = FMInteraction()

    def forward(self, batch: Mapping) -> torch.Tensor:
        batch = self.prepare(batch)
        return self.linear(batch) + self.interaction(self.embedding(batch))

"""Logistic regression on one-hot features: the baseline every CTR model has to beat."""
from __future__ import annotations

from collections.abc import Mapping

import torch

from ..data.features import Schema
from ..layers import FeatureLinear, SchemaModule


class LogisticRegression(SchemaModule):
    """``logit = w0 + sum_i w_i x_i`` with one weight per feature value.

    The one-hot logistic regression of large-scale CTR systems (McMahan et al., "Ad Click
    Prediction: a View from the Trenches", KDD 2013). It can only add up main effects: it has no
    way to say "this user likes *this* genre", which is what the factorization machine adds.

    Args:
        schema: the fields; a multi-valued field contributes the mean of its members' weights.
        base_rate: optional positive rate of the training labels; the bias starts at its log-odds.
        validate: check each batch with :func:`recbook.layers.check_batch` (turn off to benchmark).
        unknown_rate: ``{field: rate}``: train the unknown rows by replacing that share of the
            field's codes by unknown during training (see :class:`recbook.layers.SchemaModule`).

    Shapes: ``forward(batch) -> [B]`` logits (no sigmoid).
    """

    def __init__(self, schema: Schema, *, base_rate: float | None = None, validate: bool = True,
                 unknown_rate: dict | None = None):
        super().__init__(schema, validate=validate, unknown_rate=unknown_rate)
        self.linear = FeatureLinear(schema, base_rate=base_rate, validate=False)

    def forward(self, batch: Mapping) -> torch.Tensor:
        batch = self.prepare(batch)
        return self.linear(batch)

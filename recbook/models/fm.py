"""Factorization machine (Rendle, "Factorization Machines", ICDM 2010)."""
from __future__ import annotations

import math
from collections.abc import Mapping

import torch

from ..data.features import PAD, UNK, Schema
from ..layers import FeatureLinear, FieldEmbedding, FMInteraction, SchemaModule

XAVIER = "xavier"


def xavier_blocks(schema: Schema, dim: int) -> list[tuple[int, int, float]]:
    """Rows ``[lo, hi)`` of a shared table and the Xavier-normal (Glorot) standard deviation
    ``sqrt(2 / (rows + dim))`` of each: one block for the single-valued fields together, one per
    multi-valued field (RecBole's layout: one offset table for the single fields, one table per
    token sequence)."""
    offsets = [int(o) for o in schema.offsets]
    ends = offsets[1:] + [int(schema.total_size)]
    n_single = len(schema.single)
    spans = ([(offsets[0], ends[n_single - 1])] if n_single else []) + \
        [(offsets[i], ends[i]) for i in range(n_single, len(offsets))]
    return [(lo, hi, math.sqrt(2.0 / ((hi - lo) + dim))) for lo, hi in spans]


def check_init_std(init_std) -> float | str:
    """``init_std``: a non-negative number, or ``"xavier"``."""
    if init_std == XAVIER:
        return XAVIER
    if isinstance(init_std, bool) or not isinstance(init_std, (int, float)) or not init_std >= 0:
        raise ValueError(f"init_std: expected a non-negative number or 'xavier', got {init_std!r}")
    return float(init_std)


@torch.no_grad()
def xavier_init_(embedding: FieldEmbedding) -> None:
    """Draw ``embedding``'s table Xavier-normal per block (:func:`xavier_blocks`); the padding and
    unknown rows stay at exactly zero, as in every :class:`recbook.layers.FieldEmbedding`."""
    w = embedding.table.weight
    for lo, hi, std in xavier_blocks(embedding.schema, w.shape[1]):
        w[lo:hi].normal_(0.0, std)
    reserved = torch.as_tensor(embedding.schema.offsets)[:, None] + torch.tensor([PAD, UNK])
    w[reserved.reshape(-1)] = 0.0


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
        init_std: standard deviation of the initial factors (see ``FieldEmbedding``), or
            ``"xavier"``: Xavier-normal, ``sqrt(2 / (rows + dim))`` over the single-valued fields'
            rows together (about 0.028 on MovieLens) and over each multi-valued field's own rows
            (genres: about 0.24), as RecBole initialises its FM. The leaderboard's FM uses it:
            it wins on validation AUC over 0.01 (``book/results/fm_ablation.csv``).
        base_rate: optional positive rate of the training labels; the bias starts at its log-odds.
        validate: check each batch with :func:`recbook.layers.check_batch` (turn off to benchmark).
        unknown_rate: ``{field: rate}``: train the unknown rows by replacing that share of the
            field's codes by unknown during training (see :class:`recbook.layers.SchemaModule`).

    Shapes: ``forward(batch) -> [B]`` logits (no sigmoid).
    """

    def __init__(self, schema: Schema, dim: int = 16, *, init_std: float | str = 0.01,
                 base_rate: float | None = None, validate: bool = True,
                 unknown_rate: dict | None = None):
        super().__init__(schema, validate=validate, unknown_rate=unknown_rate)
        init_std = check_init_std(init_std)
        self.linear = FeatureLinear(schema, base_rate=base_rate, validate=False)
        self.embedding = FieldEmbedding(schema, dim, init_std=0.01 if init_std == XAVIER else init_std,
                                        validate=False)
        if init_std == XAVIER:
            xavier_init_(self.embedding)
        self.interaction = FMInteraction()

    def forward(self, batch: Mapping) -> torch.Tensor:
        batch = self.prepare(batch)
        return self.linear(batch) + self.interaction(self.embedding(batch))

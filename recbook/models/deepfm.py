"""DeepFM (Guo et al., "DeepFM: A Factorization-Machine based Neural Network for CTR Prediction",
IJCAI 2017)."""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

from ..data.features import Schema
from ..layers import FeatureLinear, FieldEmbedding, FMInteraction, SchemaModule, mlp
from .fm import XAVIER, check_init_std, xavier_init_


class DeepFM(SchemaModule):
    """``logit = w0 + sum_i w_i x_i + sum_{i<j} <v_i, v_j> + MLP(concat_f v_f)``.

    A factorization machine (:class:`~recbook.models.FactorizationMachine`) and an MLP that read
    **one** shared embedding table: the vector ``v_f`` of a field value is both a factor of the
    FM's pairwise term and part of the MLP's input ``[B, F * dim]``, and both parts' gradients
    train it. Unlike Wide & Deep it needs no hand-made crosses: the FM term supplies every
    pairwise interaction, the MLP the higher-order ones. The first-order weights are one scalar
    per feature value (:class:`~recbook.layers.FeatureLinear`), not a layer over embeddings, and
    the pairwise term works on ``[B, F, dim]`` (flattening to ``[B, F * dim]`` first would sum
    products of unrelated coordinates).

    Where the book simplifies the paper: MLP 256-128 (the paper: 200-200-200), and a multi-valued
    field (genres) is the mean of its members' vectors, so the genre x genre pairs inside the
    field are dropped (as in the book's FM).

    Args:
        schema: the fields.
        dim: size of the shared embeddings.
        hidden: MLP widths.
        dropout, batchnorm: MLP regularisation (see :func:`recbook.layers.mlp`).
        init_std: standard deviation of the initial embeddings, or ``"xavier"`` (see
            :class:`~recbook.models.FactorizationMachine`).
        base_rate: optional positive rate of the training labels; the bias starts at its log-odds.
        validate: check each batch with :func:`recbook.layers.check_batch`.
        unknown_rate: ``{field: rate}``: train the unknown rows by replacing that share of the
            field's codes by unknown during training (see :class:`recbook.layers.SchemaModule`).

    Shapes: ``forward(batch) -> [B]`` logits (no sigmoid); :meth:`parts` gives the three terms.
    """

    def __init__(self, schema: Schema, dim: int = 16, hidden: Sequence[int] = (256, 128), *,
                 dropout: float = 0.0, batchnorm: bool = False, init_std: float | str = 0.01,
                 base_rate: float | None = None, validate: bool = True, unknown_rate: dict | None = None):
        super().__init__(schema, validate=validate, unknown_rate=unknown_rate)
        init_std = check_init_std(init_std)
        self.linear = FeatureLinear(schema, base_rate=base_rate, validate=False)
        self.embedding = FieldEmbedding(schema, dim, init_std=0.01 if init_std == XAVIER else init_std,
                                        validate=False)
        self.interaction = FMInteraction()
        self.mlp = mlp(len(schema) * self.embedding.dim, hidden, dropout=dropout, batchnorm=batchnorm)
        if init_std == XAVIER:  # drawn last, so the other weights are those of the default init
            xavier_init_(self.embedding)

    def parts(self, batch: Mapping) -> dict[str, torch.Tensor]:
        """The three terms of the logit, each ``[B]``: ``linear`` (bias included), ``fm``, ``deep``."""
        batch = self.prepare(batch)
        v = self.embedding(batch)  # [B, F, dim], shared by the FM term and the MLP
        return {"linear": self.linear(batch), "fm": self.interaction(v),
                "deep": self.mlp(v.flatten(1)).squeeze(1)}

    def forward(self, batch: Mapping) -> torch.Tensor:
        p = self.parts(batch)
        return p["linear"] + p["fm"] + p["deep"]

"""Wide & Deep (Cheng et al., "Wide & Deep Learning for Recommender Systems", DLRS 2016)."""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F

from .._checks import require_number
from ..data.crosses import CROSSES, Crosses, ctr_crosses
from ..data.features import Schema
from ..layers import CrossLinear, FeatureLinear, FieldEmbedding, SchemaModule, mlp, resolve_base_rate
from ..optim import FTRLProximal, check_ftrl_hyperparameters


class WideDeep(SchemaModule):
    """``logit = wide(x) + deep(x)``, trained jointly: memorisation plus generalisation.

    * **wide** = ``w0 + sum_i w_i x_i + sum_c w_c[pair_c(x)]``: one weight per feature value
      (:class:`~recbook.layers.FeatureLinear`) plus one weight per known value pair of each cross
      (:class:`~recbook.layers.CrossLinear`; which crosses: :mod:`recbook.data.crosses`). It
      memorises: "occupation=programmer × genres=Sci-Fi" gets its own weight, learned from the
      rows where that pair occurs, and a pair never seen in training gets nothing.
    * **deep** = ``MLP(concat_f e_f)``: the fields' embeddings ``[B, F, dim]``, flattened to
      ``[B, F * dim]``, through ``Linear -> ReLU`` layers of widths ``hidden`` to one output. It
      generalises to pairs the wide part never saw, through embeddings shared across rows.

    The parts share no parameters (the paper's wide part reads the raw sparse features, the deep
    part their embeddings). They are trained **jointly**: one logit, one loss, and the gradient
    of every step reaches both, so the wide part only has to correct what the deep part gets
    wrong (an ensemble would train each part alone and add their logits afterwards).
    :meth:`wide_parameters` and :meth:`deep_parameters` split the parameters for the paper's
    optimisers (FTRL-Proximal with L1 for the wide part, AdaGrad for the deep part; see
    :func:`ftrl_adagrad`); one Adam over all parameters also works.

    Where the book simplifies the paper: MLP 256-128 instead of 1024-512-256, no continuous
    features, and a multi-valued field (genres) enters the deep part as the mean of its members'
    embeddings. ``crosses=None`` gives the wide part without crosses, i.e. logistic regression
    plus an MLP (the source notes' listing).

    Args:
        schema: the fields.
        crosses: the cross features (:func:`recbook.data.ctr_crosses`), over ``schema``'s fields.
        dim: embedding size of the deep part.
        hidden: MLP widths.
        dropout, batchnorm: MLP regularisation (see :func:`recbook.layers.mlp`).
        init_std: standard deviation of the initial embeddings.
        base_rate: optional positive rate of the training labels; the bias starts at its log-odds.
        pooling: how a cross with genres adds its pairs' weights, ``"mean"`` or ``"sum"``.
        validate: check each batch with :func:`recbook.layers.check_batch`.
        unknown_rate: ``{field: rate}``: train the unknown rows by replacing that share of the
            field's codes by unknown during training (see :class:`recbook.layers.SchemaModule`);
            both parts see the same replaced codes.

    Shapes: ``forward(batch) -> [B]`` logits (no sigmoid); :meth:`wide` and :meth:`deep` ``[B]``.
    """

    def __init__(self, schema: Schema, crosses: Crosses | None = None, dim: int = 16,
                 hidden: Sequence[int] = (256, 128), *, dropout: float = 0.0, batchnorm: bool = False,
                 init_std: float = 0.01, base_rate: float | None = None, pooling: str = "mean",
                 validate: bool = True, unknown_rate: dict | None = None):
        super().__init__(schema, validate=validate, unknown_rate=unknown_rate)
        if crosses is not None:
            if not isinstance(crosses, Crosses):
                raise ValueError(f"crosses: expected a recbook.data.Crosses or None, got {type(crosses).__name__}")
            if crosses.schema != schema:
                raise ValueError("crosses: were built over another schema; build them with this model's "
                                 f"schema (crosses over {crosses.schema.names}, model over {schema.names})")
        self.linear = FeatureLinear(schema, base_rate=base_rate, validate=False)
        self.cross = None if crosses is None else CrossLinear(crosses, pooling=pooling, validate=False)
        self.embedding = FieldEmbedding(schema, dim, init_std=init_std, validate=False)
        self.mlp = mlp(len(schema) * self.embedding.dim, hidden, dropout=dropout, batchnorm=batchnorm)

    @classmethod
    def from_data(cls, data, crosses: Sequence | None = CROSSES, *, min_count: int = 1, **kwargs) -> "WideDeep":
        """The model for a :class:`recbook.data.CTRData` (the leaderboard's factory), with the cross
        features ``crosses`` learned from its training rows; ``None`` or ``()``: no crosses.
        ``base_rate="train"``: the positive rate of the training labels."""
        built = ctr_crosses(data, crosses, min_count=min_count) if crosses else None
        return cls(data.schema, built, **resolve_base_rate(data, kwargs))

    def wide(self, batch: Mapping) -> torch.Tensor:
        """The wide part's logit ``[B]`` (bias included)."""
        return self._wide(self.prepare(batch))

    def deep(self, batch: Mapping) -> torch.Tensor:
        """The deep part's logit ``[B]``."""
        return self._deep(self.prepare(batch))

    def _wide(self, batch: Mapping) -> torch.Tensor:
        out = self.linear(batch)
        return out if self.cross is None else out + self.cross(batch)

    def _deep(self, batch: Mapping) -> torch.Tensor:
        return self.mlp(self.embedding(batch).flatten(1)).squeeze(1)

    def forward(self, batch: Mapping) -> torch.Tensor:
        batch = self.prepare(batch)  # validated once; both parts see the same codes
        return self._wide(batch) + self._deep(batch)

    def wide_parameters(self) -> list[torch.nn.Parameter]:
        """Feature weights, cross weights and the bias."""
        return list(self.linear.parameters()) + ([] if self.cross is None else list(self.cross.parameters()))

    def deep_parameters(self) -> list[torch.nn.Parameter]:
        """Embeddings and MLP."""
        return list(self.embedding.parameters()) + list(self.mlp.parameters())


def ensemble_loss(model: WideDeep, batch: Mapping) -> torch.Tensor:
    """The loss of Wide & Deep's two parts trained as an **ensemble**, as ``fit(loss_fn=...)`` takes it.

    ``BCE(wide(x), y) + BCE(deep(x), y)``: each part is fitted to the labels on its own, and the
    gradient of either loss never reaches the other part (their parameters are disjoint), so one
    ``fit`` trains two separate models side by side, with one shuffling and one early stopping
    (on the validation AUC of ``wide + deep``, the ensemble's prediction). Joint training, the
    default loss on ``wide + deep``, instead lets each part fit what the other gets wrong
    (Cheng et al., section 3.3). Both parts see the same (possibly unknown-replaced) codes.
    """
    if not isinstance(model, WideDeep):
        raise ValueError(f"model: expected a recbook.models.WideDeep, got {type(model).__name__}")
    batch = model.prepare(batch)
    y = batch["label"]
    return (F.binary_cross_entropy_with_logits(model._wide(batch), y)
            + F.binary_cross_entropy_with_logits(model._deep(batch), y))


def ftrl_adagrad(alpha: float = 0.05, beta: float = 0.01, l1: float = 0.001, l2: float = 0.0,
                 deep_lr: float = 0.005):
    """The paper's optimiser split, as ``fit(optimizer=...)`` takes it: ``model -> [FTRL, AdaGrad]``.

    FTRL-Proximal (:class:`recbook.optim.FTRLProximal`, with ``alpha``, ``beta``, ``l1``, ``l2``)
    for the wide part's weights; the bias gets no L1 (it is not a feature) but the same rates;
    AdaGrad with learning rate ``deep_lr`` for the deep part. For a :class:`WideDeep`.

    The defaults were chosen on the CTR protocol's validation AUC (seeds 0-2; the grid and its
    results: ``recbook.chapters.widedeep.run_ftrl_sweep``, ``book/results/widedeep_ftrl_sweep.csv``),
    where they are tied with the grid's best. ``beta`` is far
    below the paper's 1 because ``fit``'s loss is a batch **mean**: a feature's gradient is about
    ``1/B`` of a per-example one, so ``sqrt(n)`` stays far below 1 for all but the most frequent
    values and, with ``beta = 1``, their rates would stay near ``alpha / beta`` (plain SGD; it did
    worse on validation). With a small ``beta`` the rate ``alpha / (beta + sqrt(n))`` adapts per
    coordinate, as intended. ``l1`` is on the same scale:
    a pair whose accumulated gradient ``|z|`` stays below it keeps a weight of exactly 0.
    """
    check_ftrl_hyperparameters(alpha=alpha, beta=beta, l1=l1, l2=l2)
    deep_lr = require_number(deep_lr, name="deep_lr", low=0, low_open=True)

    def make(model: WideDeep) -> list[torch.optim.Optimizer]:
        if not isinstance(model, WideDeep):
            raise ValueError(f"model: expected a recbook.models.WideDeep, got {type(model).__name__}")
        bias = model.linear.bias
        weights = [p for p in model.wide_parameters() if p is not bias]
        wide = FTRLProximal([{"params": weights}, {"params": [bias], "l1": 0.0}],
                            alpha=alpha, beta=beta, l1=l1, l2=l2)
        deep = model.deep_parameters()
        # The fused kernel (CPU) does the same update as the default loop, in one call per step.
        fused = all(p.device.type == "cpu" and p.dtype in (torch.float32, torch.float64) for p in deep) or None
        return [wide, torch.optim.Adagrad(deep, lr=deep_lr, fused=fused)]

    settings = dict(alpha=alpha, beta=beta, l1=l1, l2=l2, deep_lr=deep_lr)
    make.settings = settings
    # The name records the settings: the leaderboard fingerprints a callable by its name.
    make.__name__ = make.__qualname__ = "ftrl_adagrad(" + ", ".join(f"{k}={v!r}" for k, v in settings.items()) + ")"
    return make

"""GRU4Rec (Hidasi et al., "Session-based Recommendations with Recurrent Neural Networks", ICLR
2016; Hidasi & Karatzoglou, "Recurrent Neural Networks with Top-k Gains for Session-based
Recommendations", CIKM 2018).

A GRU reads a sequence one item at a time; after each item its output ``h`` scores every candidate
next item ``j`` as ``h · w_j + b_j``. What makes it GRU4Rec, and what third-party versions tend to
drop (Hidasi & Czapp, "The Effect of Third Party Implementations on Reproducibility", RecSys 2023):

* **session-parallel mini-batches** (:class:`recbook.data.sessions.SessionParallelData`): no
  padding; a slot's hidden state is carried from step to step and reset to zero where a new
  sequence takes the slot;
* a loss at **every** step, not only at the end of a sequence;
* scores only for the batch's own targets plus ``S`` shared extra negatives sampled in proportion
  to ``popularity ** alpha``, not a softmax over the whole catalogue;
* ranking losses on raw scores: cross-entropy, BPR-max or TOP1-max (:mod:`recbook.losses`);
* optional tied item embeddings (the input vector of an item is its output vector ``w_j``);
* dropout on the input embedding and on every GRU layer's output (the state carried on);
* Adagrad with momentum (:class:`recbook.optim.AdagradM`), Glorot-uniform initialisation per gate.

As in the original, the hidden state is detached after every step (truncated back-propagation
through one step): the gradient of a step's loss reaches the GRU weights through that step only.

Shapes: a training batch (``item``, ``target``, ``prev`` ``[b]``, ``negatives`` ``[S]``, ``state``)
gives scores ``[b, b + S]`` with the positives on the diagonal; ``score_next(histories)`` gives
``[U, n_items]`` full-catalogue scores (columns 0 and 1, padding and unknown, are ``-inf``).
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .._checks import require_fraction, require_positive_int
from ..data.sessions import N_RESERVED, SessionParallelData, check_item_sequences
from ..losses import bpr_max_loss, sampled_softmax_loss, top1_max_loss
from ..optim import AdagradM

__all__ = ["GRU4Rec", "GRU4RecConfig", "SessionLoss", "adagradm", "session_parallel", "train_gru4rec"]

LOSSES = ("cross-entropy", "bpr-max", "top1-max")


def _glorot_(weight: torch.Tensor, chunks: int = 1) -> None:
    """Uniform in ``±sqrt(6 / (fan_in + fan_out))``, separately for each of ``chunks`` row blocks
    (the gates of a GRU weight matrix)."""
    with torch.no_grad():
        for w in weight.chunk(chunks, dim=0):
            bound = math.sqrt(6.0 / (w.shape[0] + w.shape[1]))
            w.uniform_(-bound, bound)


class GRU4Rec(nn.Module):
    """GRU4Rec's network: item embedding -> stacked GRU cells -> scores against item vectors.

    Args:
        n_items: number of item codes (score columns), reserved codes 0 and 1 included.
        layers: hidden size of each GRU layer.
        tied: the input embedding of an item is its output vector (size ``layers[-1]``); the
            original's "constrained embedding", used by all of its authors' published best settings.
        embedding_dim: size of a separate input embedding when ``tied`` is False (default
            ``layers[0]``).
        dropout_embed: dropout on the input embedding.
        dropout_hidden: dropout on each GRU layer's output, which is also the state carried on.
        sparse_grad: embedding lookups give sparse gradients (for :class:`recbook.optim.AdagradM`
            or SGD; Adam does not take them). Then only the rows of a batch's items are updated.
    """

    def __init__(self, n_items: int, layers: Sequence[int] = (100,), *, tied: bool = True,
                 embedding_dim: int | None = None, dropout_embed: float = 0.0, dropout_hidden: float = 0.0,
                 sparse_grad: bool = False, validate: bool = True):
        super().__init__()
        self.n_items = require_positive_int(n_items, name="n_items")
        if self.n_items <= N_RESERVED:
            raise ValueError(f"n_items: expected more than {N_RESERVED} codes (0 and 1 are reserved), got {n_items}")
        if isinstance(layers, (int, str)) or not layers:
            raise ValueError(f"layers: expected a non-empty list of hidden sizes, got {layers!r}")
        self.layers = tuple(require_positive_int(h, name="layers") for h in layers)
        self.tied = bool(tied)
        if self.tied and embedding_dim is not None:
            raise ValueError("embedding_dim: a tied embedding has the size of the last layer; leave it None")
        self.embedding_dim = self.layers[-1] if self.tied else require_positive_int(
            embedding_dim or self.layers[0], name="embedding_dim")
        self.dropout_embed = require_fraction(dropout_embed, name="dropout_embed", inclusive=True)
        self.dropout_hidden = require_fraction(dropout_hidden, name="dropout_hidden", inclusive=True)
        if self.dropout_embed == 1 or self.dropout_hidden == 1:
            raise ValueError("dropout_embed/dropout_hidden: expected a probability below 1")
        self.sparse_grad = bool(sparse_grad)
        self.validate = bool(validate)

        self.item_vectors = nn.Parameter(torch.empty(self.n_items, self.layers[-1]))  # w_j
        self.item_bias = nn.Parameter(torch.zeros(self.n_items, 1))  # b_j
        self.input_vectors = None if self.tied else nn.Parameter(torch.empty(self.n_items, self.embedding_dim))
        sizes = (self.embedding_dim, *self.layers)
        self.cells = nn.ModuleList(nn.GRUCell(sizes[i], sizes[i + 1]) for i in range(len(self.layers)))
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        for table in (self.item_vectors, self.input_vectors):
            if table is not None:
                _glorot_(table)
                table[:N_RESERVED] = 0  # padding and unknown start at exactly zero
        self.item_bias.zero_()
        for cell in self.cells:
            _glorot_(cell.weight_ih, 3)
            _glorot_(cell.weight_hh, 3)
            cell.bias_ih.zero_()
            cell.bias_hh.zero_()

    # ---------------------------------------------------------------------------------- pieces
    def embed(self, items: torch.Tensor) -> torch.Tensor:
        table = self.item_vectors if self.tied else self.input_vectors
        return F.embedding(items, table, sparse=self.sparse_grad)

    def step(self, items: torch.Tensor, hidden: list, embedded: torch.Tensor | None = None
             ) -> tuple[torch.Tensor, list]:
        """Read one item per row: ``([b] codes, [[b, h_l]] per layer) -> (output [b, h], new state)``.

        ``embedded`` (optional) is ``embed(items)`` already looked up."""
        x = self.embed(items) if embedded is None else embedded
        x = F.dropout(x, self.dropout_embed, self.training)
        new = []
        for cell, h in zip(self.cells, hidden):
            x = F.dropout(cell(x, h), self.dropout_hidden, self.training)
            new.append(x)
        return x, new

    def score(self, output: torch.Tensor, candidates: torch.Tensor, vectors: torch.Tensor | None = None
              ) -> torch.Tensor:
        """``[b, h] x [C] codes -> [b, C]`` scores ``h · w_j + b_j`` (``vectors``: the ``w_j``,
        if already looked up)."""
        w = F.embedding(candidates, self.item_vectors, sparse=self.sparse_grad) if vectors is None else vectors
        b = F.embedding(candidates, self.item_bias, sparse=self.sparse_grad)
        return torch.addmm(b.T, output, w.T)

    def zero_state(self, rows: int, device=None) -> list:
        return [torch.zeros(rows, h, device=device) for h in self.layers]

    # ---------------------------------------------------------------------------------- training
    def _check_batch(self, batch: Mapping) -> None:
        if not isinstance(batch, Mapping):
            raise ValueError(f"batch: expected a dict from SessionParallelData, got {type(batch).__name__}")
        for key in ("item", "target", "prev", "negatives", "state"):
            if key not in batch:
                raise ValueError(f"batch: missing key {key!r}; expected a batch from SessionParallelData")
        b = batch["item"].shape[0]
        for key in ("item", "target", "prev", "negatives"):
            t = batch[key]
            if not isinstance(t, torch.Tensor) or t.dtype != torch.long or t.dim() != 1:
                raise ValueError(f"{key}: expected a 1-D int64 tensor")
            if key in ("target", "prev") and t.shape[0] != b:
                raise ValueError(f"{key}: has {t.shape[0]} rows; expected {b} like item")
        for key in ("item", "target", "negatives"):
            t = batch[key]
            if t.numel() and (int(t.min()) < N_RESERVED or int(t.max()) >= self.n_items):
                bad = int(t.min()) if int(t.min()) < N_RESERVED else int(t.max())
                raise ValueError(f"{key}: item code {bad} is out of range; expected codes in "
                                 f"[{N_RESERVED}, {self.n_items})")

    def carried_state(self, batch: Mapping) -> list:
        """The state each row starts from: its slot's state after the previous step, or zeros where
        ``prev`` is -1 (a new sequence took the slot)."""
        prev, old = batch["prev"], batch["state"].hidden
        if old is None:
            return self.zero_state(prev.shape[0], prev.device)
        keep = (prev >= 0)[:, None]
        index = prev.clamp(min=0)
        return [h.index_select(0, index).masked_fill(~keep, 0.0) for h in old]

    def forward(self, batch: Mapping) -> torch.Tensor:
        """Training scores ``[b, b + S]``: each row against the batch's targets, then the shared
        negatives (row ``i``'s positive is column ``i``). Leaves the new state, detached, in
        ``batch['state']``."""
        if self.validate:
            self._check_batch(batch)
        items, candidates = batch["item"], torch.cat([batch["target"], batch["negatives"]])
        embedded = vectors = None
        if self.tied:  # one lookup serves the inputs and the candidates (one gradient to add up)
            both = F.embedding(torch.cat([items, candidates]), self.item_vectors, sparse=self.sparse_grad)
            embedded, vectors = both[:len(items)], both[len(items):]
        output, hidden = self.step(items, self.carried_state(batch), embedded)
        batch["state"].hidden = [h.detach() for h in hidden]
        return self.score(output, candidates, vectors)

    # ---------------------------------------------------------------------------------- inference
    @torch.no_grad()
    def final_state(self, histories) -> torch.Tensor:
        """``[U, layers[-1]]``: the last layer's output after reading each history from a zero state.

        Histories are read together, longest first; at step ``t`` only the histories longer than
        ``t`` advance (no padding is ever read). An empty history gives the zero state.
        """
        seqs = check_item_sequences(histories, self.n_items, name="histories")
        was_training = self.training
        self.eval()
        try:
            device = self.item_vectors.device
            lengths = np.array([len(s) for s in seqs])
            order = np.argsort(-lengths, kind="stable")
            n, L = len(seqs), int(lengths.max(initial=0))
            padded = np.zeros((n, max(L, 1)), dtype=np.int64)
            for row, u in enumerate(order):
                padded[row, :lengths[u]] = seqs[u]
            x = torch.from_numpy(padded).to(device)
            n_active = (lengths[order][None, :] > np.arange(L)[:, None]).sum(axis=1)
            hidden = self.zero_state(n, device)
            for t in range(L):
                m = int(n_active[t])
                _, new = self.step(x[:m, t], [h[:m] for h in hidden])
                for h, h_new in zip(hidden, new):
                    h[:m] = h_new
            out = torch.empty_like(hidden[-1])
            out[torch.from_numpy(order).to(device)] = hidden[-1]
            return out
        finally:
            self.train(was_training)

    @torch.no_grad()
    def score_next(self, histories) -> torch.Tensor:
        """``[U, n_items]``: every item's score as the next item after each history."""
        h = self.final_state(histories)
        scores = torch.addmm(self.item_bias.T, h, self.item_vectors.T)
        scores[:, :N_RESERVED] = float("-inf")
        return scores.cpu()

    def score_items(self, data, split: str) -> torch.Tensor:
        """``[U, n_items]`` scores for the leaderboard's ``sequence`` protocol: each user's whole
        history before the ``split`` target (:meth:`recbook.data.SequenceData.history`), read from
        a zero state."""
        return self.score_next(data.history(split))

    @classmethod
    def from_data(cls, data, layers: Sequence[int] = (100,), **kwargs) -> "GRU4Rec":
        """A network over ``data``'s item codes (``data.n_items`` columns); ``kwargs`` as in the
        constructor."""
        return cls(data.n_items, layers, **kwargs)


class SessionLoss:
    """``loss_fn(model, batch)`` for :func:`recbook.train.fit`: a ranking loss on GRU4Rec's scores.

    Args:
        kind: ``"cross-entropy"`` (softmax over the candidates), ``"bpr-max"`` or ``"top1-max"``.
        bpreg: BPR-max's score regularisation weight.
        elu: BPR-max's final activation ``ELU(alpha=elu)`` (0 or None: the raw scores).
        logq: cross-entropy only; weight of the logQ correction (0: none, 1: full): the scores
            minus ``logq * batch['log_q']``, the log of how often each candidate comes into a
            batch (in-batch targets in proportion to their counts, the extra negatives to
            ``counts ** alpha``; see :class:`recbook.data.sessions.SessionParallelData`).
    """

    def __init__(self, kind: str = "bpr-max", *, bpreg: float = 1.0, elu: float | None = 0.5,
                 logq: float = 0.0):
        if kind not in LOSSES:
            raise ValueError(f"kind: expected one of {LOSSES}, got {kind!r}")
        for name, v in (("bpreg", bpreg), ("logq", logq), ("elu", elu or 0.0)):
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
                raise ValueError(f"{name}: expected a finite number >= 0, got {v!r}")
        if logq and kind != "cross-entropy":
            raise ValueError("logq: the logQ correction applies to the cross-entropy loss only")
        self.kind, self.bpreg, self.elu, self.logq = kind, float(bpreg), float(elu or 0.0), float(logq)
        # The leaderboard fingerprints a callable by its name: let the name carry the settings.
        self.__qualname__ = repr(self)

    def __call__(self, model: GRU4Rec, batch: Mapping) -> torch.Tensor:
        scores = model(batch)
        if self.kind == "cross-entropy" and scores.shape[0] == 1 and scores.shape[1] == 1:
            # The tail of a session-parallel epoch can leave one session and, with no sampled
            # negatives, no candidate but its own target: the cross-entropy is exactly 0 and the
            # step changes no weight. Training goes on (sampled_softmax_loss refuses this shape
            # when a caller hands it over directly).
            return F.cross_entropy(scores, torch.zeros(1, dtype=torch.long, device=scores.device))
        if self.kind == "cross-entropy":
            log_q = None
            if self.logq:
                if "log_q" not in batch:
                    raise ValueError("batch: missing key 'log_q'; the logQ correction needs batches "
                                     "from SessionParallelData")
                log_q = self.logq * batch["log_q"].to(scores.device)
            return sampled_softmax_loss(scores, log_q)
        if self.kind == "bpr-max":
            return bpr_max_loss(scores, self.bpreg, self.elu)
        return top1_max_loss(scores)

    def __repr__(self) -> str:
        return f"SessionLoss({self.kind!r}, bpreg={self.bpreg}, elu={self.elu}, logq={self.logq})"


def _named(fn, name: str, settings: dict):
    """Give ``fn`` a name that records ``settings`` (the leaderboard fingerprints a callable by
    its name)."""
    fn.settings = settings
    fn.__name__ = fn.__qualname__ = f"{name}(" + ", ".join(f"{k}={v!r}" for k, v in settings.items()) + ")"
    return fn


def session_parallel(n_negatives: int = 2048, alpha: float = 0.5, order: str = "shuffle"):
    """``data -> SessionParallelData`` of ``data.train`` (a leaderboard entry's ``train_data``)."""
    SessionParallelData([np.array([2, 3])], 4, n_negatives=n_negatives, alpha=alpha, order=order)  # checks

    def make(data) -> SessionParallelData:
        return SessionParallelData(list(data.train), data.n_items, n_negatives=n_negatives, alpha=alpha,
                                   order=order)

    return _named(make, "session_parallel", dict(n_negatives=n_negatives, alpha=alpha, order=order))


def adagradm(lr: float = 0.05, momentum: float = 0.0):
    """``model -> AdagradM`` over all its parameters (``fit(optimizer=...)``)."""
    AdagradM([torch.zeros(1, requires_grad=True)], lr=lr, momentum=momentum)  # checks the settings

    def make(model: nn.Module) -> torch.optim.Optimizer:
        return AdagradM(model.parameters(), lr=lr, momentum=momentum)

    return _named(make, "adagradm", dict(lr=lr, momentum=momentum))


@dataclass(frozen=True)
class GRU4RecConfig:
    """Everything that defines a GRU4Rec training run (see :func:`train_gru4rec`)."""

    loss: str = "bpr-max"
    layers: tuple = (100,)
    tied: bool = True
    embedding_dim: int | None = None
    dropout_embed: float = 0.0
    dropout_hidden: float = 0.0
    batch_size: int = 64
    optimizer: str = "adagradm"  # 'adagradm' (Adagrad with momentum, sparse rows) or 'adam'
    lr: float = 0.05
    momentum: float = 0.0
    n_negatives: int = 2048
    alpha: float = 0.5
    bpreg: float = 1.0
    elu: float = 0.5
    logq: float = 0.0
    order: str = "shuffle"
    sparse: bool = False  # sparse embedding gradients (AdagradM then updates only the rows used)
    epochs: int = 30
    patience: int = 3
    metric: str = "recall@20"

    def replace(self, **changes) -> "GRU4RecConfig":
        return GRU4RecConfig(**{**asdict(self), **changes})


def build_gru4rec(n_items: int, config: GRU4RecConfig, *, validate: bool = True) -> GRU4Rec:
    """The network of ``config`` (seed torch first for a reproducible initialisation)."""
    return GRU4Rec(n_items, config.layers, tied=config.tied, embedding_dim=config.embedding_dim,
                   dropout_embed=config.dropout_embed, dropout_hidden=config.dropout_hidden,
                   sparse_grad=config.sparse, validate=validate)


def train_gru4rec(data, config: GRU4RecConfig = GRU4RecConfig(), *, seed: int = 0, n_items: int | None = None,
                  progress: bool = False, threads: int | None = 1):
    """Train GRU4Rec on leave-last-out ``data`` with early stopping on validation.

    ``data`` has ``train`` (per-user arrays of item codes), ``valid`` and ``test`` (see
    :func:`recbook.next_item.next_item_split`); ``n_items`` defaults to ``data.n_items``.
    Returns ``(model, fit_result)``; the model holds the weights of the best validation epoch.
    """
    from ..next_item import evaluate_next_item, next_item_split
    from ..train import fit, num_threads, seed_everything

    if not isinstance(config, GRU4RecConfig):
        raise ValueError(f"config: expected a GRU4RecConfig, got {type(config).__name__}")
    if config.optimizer not in ("adagradm", "adam"):
        raise ValueError(f"optimizer: expected 'adagradm' or 'adam', got {config.optimizer!r}")
    n_items = int(n_items if n_items is not None else data.n_items)
    train = SessionParallelData(list(data.train), n_items, n_negatives=config.n_negatives,
                                alpha=config.alpha, order=config.order)
    valid = next_item_split(data, "valid")
    with num_threads(threads):
        seed_everything(seed)
        # SessionParallelData has validated every code once; no need to check each batch again.
        model = build_gru4rec(n_items, config, validate=False)
    loss = SessionLoss(config.loss, bpreg=config.bpreg, elu=config.elu, logq=config.logq)
    if config.optimizer == "adagradm":
        optimizer = adagradm(lr=config.lr, momentum=config.momentum)
    else:
        optimizer = "adam"
    ks = sorted({10, 20, *([int(config.metric.split("@")[1])] if config.metric.split("@")[-1].isdigit() else [])})
    evaluate = lambda m, split: evaluate_next_item(m, split, ks=ks)  # noqa: E731
    result = fit(model, train, valid, epochs=config.epochs, batch_size=config.batch_size, lr=config.lr,
                 optimizer=optimizer, loss_fn=loss, evaluate=evaluate, metric=config.metric,
                 patience=config.patience, seed=seed, threads=threads, progress=progress)
    model.validate = True
    return model, result

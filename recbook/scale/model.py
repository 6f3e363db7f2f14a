"""The CTR model that the scaling chapter distributes, in plain PyTorch and in TorchRec.

Both are the deep part of the ranking chapters' models, reduced to what distribution changes:
one embedding table per field (one id per field and row), the field vectors concatenated, an MLP,
one logit. Both start from the same seeded weights (:func:`initial_weights`), so a sharded model,
a data-parallel one and one process can be compared number for number.

* :class:`ScaleCTR` takes ids ``[B, F]``; ``sparse=True`` gives its tables sparse gradients (only
  the rows of the batch), which ``torch.optim.SGD``/``Adagrad``/``SparseAdam`` accept and
  ``torch.optim.Adam`` refuses.
* :class:`TorchRecCTR` takes a ``KeyedJaggedTensor`` (one id per feature per row, the jagged
  format in which TorchRec also takes multi-id features such as a history) and reads the pooled
  field vectors **by key**: a sharded ``EmbeddingBagCollection`` returns its keys in the order of
  the sharding plan, so ``KeyedTensor.values()`` would silently permute the MLP's input.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from .._checks import require_positive_int

__all__ = ["ScaleCTR", "TorchRecCTR", "initial_weights", "make_mlp", "to_kjt"]


def _require_rows(field_rows) -> tuple[int, ...]:
    if isinstance(field_rows, (int, np.integer)) or not isinstance(field_rows, (list, tuple)) or not field_rows:
        raise ValueError(f"field_rows: expected a non-empty list of table sizes, got {field_rows!r}")
    return tuple(require_positive_int(n, name=f"field_rows[{i}]") for i, n in enumerate(field_rows))


def make_mlp(in_dim: int, hidden: Sequence[int]) -> nn.Sequential:
    layers, width = [], in_dim
    for h in hidden:
        layers += [nn.Linear(width, require_positive_int(h, name="hidden")), nn.ReLU()]
        width = h
    layers.append(nn.Linear(width, 1))
    return nn.Sequential(*layers)


def initial_weights(field_rows: Sequence[int], dim: int, hidden: Sequence[int] = (64,), *, seed: int = 0,
                    std: float = 0.05) -> dict[str, torch.Tensor]:
    """The seeded starting weights of both models: ``table{f}`` ``[rows_f, dim]`` and the MLP's
    state dict under ``mlp.*``."""
    field_rows = _require_rows(field_rows)
    dim = require_positive_int(dim, name="dim")
    gen = torch.Generator().manual_seed(int(seed))
    out = {f"table{f}": torch.randn(n, dim, generator=gen) * std for f, n in enumerate(field_rows)}
    torch.manual_seed(int(seed) + 1)
    mlp = make_mlp(len(field_rows) * dim, hidden)
    out.update({f"mlp.{k}": v.detach().clone() for k, v in mlp.state_dict().items()})
    return out


class ScaleCTR(nn.Module):
    """Embeddings (one table per field) -> concatenation ``[B, F*D]`` -> MLP -> logit ``[B]``."""

    def __init__(self, field_rows: Sequence[int], dim: int = 16, hidden: Sequence[int] = (64,), *,
                 sparse: bool = False, seed: int = 0):
        super().__init__()
        field_rows = _require_rows(field_rows)
        weights = initial_weights(field_rows, dim, hidden, seed=seed)
        self.tables = nn.ModuleList(
            nn.Embedding.from_pretrained(weights[f"table{f}"], freeze=False, sparse=bool(sparse))
            for f in range(len(field_rows)))
        self.mlp = make_mlp(len(field_rows) * dim, hidden)
        self.mlp.load_state_dict({k[4:]: v for k, v in weights.items() if k.startswith("mlp.")})

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        if ids.dim() != 2 or ids.shape[1] != len(self.tables):
            raise ValueError(f"ids: expected shape [batch, {len(self.tables)}], got {tuple(ids.shape)}")
        x = torch.cat([table(ids[:, f]) for f, table in enumerate(self.tables)], dim=1)
        return self.mlp(x).squeeze(-1)


def to_kjt(ids: torch.Tensor, keys: Sequence[str]):
    """Ids ``[B, F]`` (one id per field) as a TorchRec ``KeyedJaggedTensor``: values feature-major,
    every length 1."""
    from torchrec import KeyedJaggedTensor
    if ids.dim() != 2 or ids.shape[1] != len(keys):
        raise ValueError(f"ids: expected shape [batch, {len(keys)}], got {tuple(ids.shape)}")
    return KeyedJaggedTensor.from_lengths_sync(
        keys=list(keys), values=ids.t().reshape(-1).contiguous(),
        lengths=torch.ones(ids.numel(), dtype=torch.int32))


class TorchRecCTR(nn.Module):
    """The same model on a TorchRec ``EmbeddingBagCollection`` (tables ``table{f}``, features
    ``f{f}``). Build it on ``device=torch.device("meta")`` when ``DistributedModelParallel`` will
    shard it (each process then allocates only its own shards), then copy the weights in with
    :func:`recbook.scale.worker.load_full_weights`."""

    def __init__(self, field_rows: Sequence[int], dim: int = 16, hidden: Sequence[int] = (64,), *,
                 seed: int = 0, device: torch.device | None = None):
        super().__init__()
        from torchrec import EmbeddingBagCollection, EmbeddingBagConfig
        field_rows = _require_rows(field_rows)
        self.keys = [f"f{f}" for f in range(len(field_rows))]
        tables = [EmbeddingBagConfig(name=f"table{f}", embedding_dim=dim, num_embeddings=n,
                                     feature_names=[self.keys[f]]) for f, n in enumerate(field_rows)]
        self.ebc = EmbeddingBagCollection(tables=tables, device=device or torch.device("cpu"))
        weights = initial_weights(field_rows, dim, hidden, seed=seed)
        self.mlp = make_mlp(len(field_rows) * dim, hidden)
        self.mlp.load_state_dict({k[4:]: v for k, v in weights.items() if k.startswith("mlp.")})
        if device is None or device.type != "meta":
            with torch.no_grad():
                for f in range(len(field_rows)):
                    self.ebc.embedding_bags[f"table{f}"].weight.copy_(weights[f"table{f}"])

    def forward(self, kjt) -> torch.Tensor:
        pooled = self.ebc(kjt)
        x = torch.cat([pooled[k] for k in self.keys], dim=1)  # by key: plan order is not declared order
        return self.mlp(x).squeeze(-1)

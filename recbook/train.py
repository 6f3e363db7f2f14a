"""One small training loop for every chapter.

``fit`` trains any model whose forward takes a batch (a dict of tensors) on data that can cut
itself into batches (:class:`~recbook.data.TensorData`, or a sampler with the same ``batches``
method, such as GRU4Rec's session-parallel iterator). It evaluates on validation data after every
epoch, stops early when the chosen metric stops improving, restores the best weights and returns
the learning curves as a DataFrame.
"""
from __future__ import annotations

import contextlib
import copy
import math
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from . import metrics as _metrics

# Threads for the small models of this book. Measured on a 2-core machine (one CTR epoch, 80k
# rows, batch 1024): with the other core idle, 2 threads were ~5% faster in wall time than 1 at
# twice the CPU; with the other core busy, 2 threads were 3-4x slower (FM: 1.40 s vs 0.32 s).
# Each operation is too small to amortise handing work to a second thread.
DEFAULT_THREADS = 1


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch; return a torch Generator seeded the same way."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise ValueError(f"seed: expected an integer, got {seed!r}")
    seed = int(seed)
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    g = torch.Generator()
    g.manual_seed(seed)
    return g


@contextlib.contextmanager
def num_threads(n: int | None):
    """Temporarily set torch's intra-op thread count (``None`` leaves it alone)."""
    if n is None:
        yield
        return
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"threads: expected a positive integer or None, got {n!r}")
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def bce_loss(model: torch.nn.Module, batch: dict) -> torch.Tensor:
    """Binary cross-entropy on the model's logits against ``batch['label']``."""
    return F.binary_cross_entropy_with_logits(model(batch), batch["label"])


@torch.no_grad()
def predict(model: torch.nn.Module, data, batch_size: int = 8192) -> torch.Tensor:
    """The model's outputs (logits) for every row of ``data``, in order, on the CPU."""
    was_training = model.training
    model.eval()
    # Batches follow the model to its device, so CPU data can be scored by a model on a GPU.
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    try:
        out = [model({k: v.to(device) for k, v in b.items()}).float().cpu()
               for b in data.batches(batch_size, shuffle=False)]
    finally:
        model.train(was_training)
    return torch.cat(out)


def evaluate_ctr(model: torch.nn.Module, data) -> dict:
    """AUC, logloss and GAUC (grouped by ``data['user']`` when present) of a CTR model."""
    logits = predict(model, data).numpy()
    labels = data["label"].cpu().numpy()
    groups = data["user"].cpu().numpy() if "user" in data else None
    return _metrics.ctr_report(labels, logits, groups)


@dataclass
class FitResult:
    """What ``fit`` returns: the learning curves and where the best epoch was."""

    history: pd.DataFrame
    best_epoch: int
    best_score: float
    metric: str
    stopped_early: bool

    def __repr__(self) -> str:
        return (f"FitResult(best {self.metric}={self.best_score:.4f} at epoch {self.best_epoch}, "
                f"{len(self.history)} epochs, stopped_early={self.stopped_early})")


def _make_optimizers(model, optimizer, lr, weight_decay):
    if optimizer == "adam":
        return [torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)]
    if optimizer == "adagrad":
        return [torch.optim.Adagrad(model.parameters(), lr=lr, weight_decay=weight_decay)]
    if optimizer == "sgd":
        return [torch.optim.SGD(model.parameters(), lr=lr, weight_decay=weight_decay)]
    if callable(optimizer):
        made = optimizer(model)
        made = list(made) if isinstance(made, (list, tuple)) else [made]
        if not made or not all(isinstance(o, torch.optim.Optimizer) for o in made):
            raise ValueError("optimizer: the callable must return an Optimizer or a list of them")
        return made
    raise ValueError(f"optimizer: expected 'adam', 'adagrad', 'sgd' or a callable, got {optimizer!r}")


def fit(
    model: torch.nn.Module,
    train,
    valid=None,
    *,
    epochs: int = 20,
    batch_size: int = 1024,
    lr: float = 1e-3,
    weight_decay: float = 0.0,
    optimizer: str | Callable = "adam",
    loss_fn: Callable = bce_loss,
    evaluate: Callable | None = evaluate_ctr,
    metric: str = "auc",
    mode: str = "max",
    patience: int = 2,
    seed: int = 0,
    device: str | torch.device = "cpu",
    threads: int | None = DEFAULT_THREADS,
    progress: bool = True,
) -> FitResult:
    """Train ``model`` with early stopping on ``metric`` over ``valid``; restore the best weights.

    Args:
        model: maps a batch (dict of tensors) to outputs; ``loss_fn(model, batch)`` turns them
            into a scalar loss (default: binary cross-entropy on logits vs ``batch['label']``).
        train: has ``batches(batch_size, shuffle=..., generator=...)`` and ``n_batches``.
        valid: passed to ``evaluate(model, valid) -> dict``; ``metric`` names the key to watch.
            Without ``valid`` the model trains for ``epochs`` epochs.
        optimizer: 'adam', 'adagrad', 'sgd', or ``callable(model) -> Optimizer | [Optimizer]``
            (e.g. FTRL for a wide part and Adam for a deep part).
        patience: epochs without improvement before stopping.
        seed: seeds weight-independent randomness (shuffling, dropout). Seed the model's
            initialisation yourself with :func:`seed_everything` before building it.
        threads: torch intra-op threads while training (``None``: leave as is).

    Returns:
        :class:`FitResult`; ``history`` has one row per epoch with ``train_loss``, every
        validation metric, ``seconds`` (wall) and ``cpu_seconds`` (process CPU time).
    """
    for name, v in (("epochs", epochs), ("batch_size", batch_size), ("patience", patience)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{name}: expected a positive integer, got {v!r}")
    if not (isinstance(lr, (int, float)) and lr > 0):
        raise ValueError(f"lr: expected a positive number, got {lr!r}")
    if mode not in ("max", "min"):
        raise ValueError(f"mode: expected 'max' or 'min', got {mode!r}")
    if not hasattr(train, "batches"):
        raise ValueError(f"train: expected TensorData or an object with .batches(), got {type(train).__name__}")
    device = torch.device(device)

    with num_threads(threads):
        generator = seed_everything(seed)
        model.to(device)
        if hasattr(train, "to"):
            train = train.to(device)
        if valid is not None and hasattr(valid, "to"):
            valid = valid.to(device)
        optimizers = _make_optimizers(model, optimizer, lr, weight_decay)
        sign = 1.0 if mode == "max" else -1.0
        best_score, best_epoch, best_state = -math.inf, 0, None
        rows, waited, stopped_early = [], 0, False
        bar = tqdm(range(1, epochs + 1), desc=type(model).__name__, unit="epoch", disable=not progress)
        for epoch in bar:
            model.train()
            wall0, cpu0 = time.perf_counter(), time.process_time()
            total, count = 0.0, 0
            for batch in train.batches(batch_size, shuffle=True, generator=generator):
                loss = loss_fn(model, batch)
                for opt in optimizers:
                    opt.zero_grad(set_to_none=True)
                loss.backward()
                for opt in optimizers:
                    opt.step()
                total += float(loss.detach())
                count += 1
            if count == 0:
                raise ValueError("train: produced no batches")
            row = {"epoch": epoch, "train_loss": total / count,
                   "seconds": time.perf_counter() - wall0, "cpu_seconds": time.process_time() - cpu0}
            if valid is not None and evaluate is not None:
                scores = evaluate(model, valid)
                if metric not in scores:
                    raise ValueError(f"metric: {metric!r} is not among the evaluation keys {sorted(scores)}")
                row.update({f"valid_{k}": float(v) for k, v in scores.items()})
                score = float(scores[metric])
                if not math.isfinite(score):
                    raise FloatingPointError(f"validation {metric} is {score} at epoch {epoch}")
                if best_state is None or sign * score > sign * best_score:
                    best_score, best_epoch, waited = score, epoch, 0
                    best_state = copy.deepcopy(model.state_dict())
                else:
                    waited += 1
                bar.set_postfix({"loss": f"{row['train_loss']:.4f}", metric: f"{score:.4f}"})
            rows.append(row)
            if valid is not None and waited >= patience:
                stopped_early = True
                break
        bar.close()
        if best_state is not None:
            model.load_state_dict(best_state)
        else:
            best_epoch, best_score = len(rows), float("nan")
    history = pd.DataFrame(rows).set_index("epoch")
    return FitResult(history, best_epoch, best_score, metric, stopped_early)


def library_versions() -> dict:
    """Versions worth recording next to any timing or metric."""
    import platform

    return {"python": platform.python_version(), "torch": torch.__version__, "numpy": np.__version__,
            "pandas": pd.__version__, "cpu_count": os.cpu_count()}

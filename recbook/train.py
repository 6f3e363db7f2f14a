"""One small training loop for every chapter.

``fit`` trains any model whose forward takes a batch (a dict of tensors) on data that can cut
itself into batches (:class:`~recbook.data.TensorData`, or a sampler with the same ``batches``
method, such as GRU4Rec's session-parallel iterator). It evaluates on validation data after every
epoch, stops early when the chosen metric stops improving, restores the best weights and returns
the learning curves as a DataFrame.

It fails fast rather than finish a broken run "normally": labels that the default loss cannot use
are refused before the first step, and a loss that is not finite or that explodes stops training
at the batch where it happens (see :func:`fit`).
"""
from __future__ import annotations

import contextlib
import copy
import math
import os
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from . import metrics as _metrics
from ._checks import require_number

# Threads for the small models of this book. Measured on a 2-core machine (one CTR epoch, 80k
# rows, batch 1024): with the other core idle, 2 threads were ~5% faster in wall time than 1 at
# twice the CPU; with the other core busy, 2 threads were 3-4x slower (FM: 1.40 s vs 0.32 s).
# Each operation is too small to amortise handing work to a second thread.
DEFAULT_THREADS = 1

# A batch loss above DIVERGENCE_FACTOR * max(|loss of the first batch|, 1) means training has
# diverged. The first batch is scored by the untrained model, and a healthy run lowers that loss:
# over every batch of every fit in the book's notebooks and the unit tests, the largest ratio was
# 0.92 (1.12 without the floor). On the CTR protocol (LR and FM, 2 epochs, Adam, Adagrad or SGD)
# it stays below 1 up to lr=0.1, reaches 3e1 at lr=1 and 4e3 at lr=10 (FM), and 1e10 or more at
# lr=1e10. 1000 leaves room for noisy batches (a batch of one confidently wrong example costs the
# size of its logit); the floor of 1 keeps a loss that starts near 0 from tripping the check.
DIVERGENCE_FACTOR = 1000.0


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
    """The model's outputs (logits) for every row of ``data``, in order, on the CPU.

    Raises ``ValueError`` when ``data`` cannot be cut into batches or yields none, or when the
    model returns something other than a tensor of logits.
    """
    if not isinstance(model, torch.nn.Module):
        raise ValueError(f"model: expected a torch.nn.Module, got {type(model).__name__}")
    if not hasattr(data, "batches"):
        raise ValueError(f"data: expected TensorData or an object with .batches(), got {type(data).__name__}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size: expected a positive integer, got {batch_size!r}")
    was_training = model.training
    model.eval()
    # Batches follow the model to its device, so CPU data can be scored by a model on a GPU.
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    out = []
    try:
        for b in data.batches(batch_size, shuffle=False):
            logits = model({k: v.to(device) for k, v in b.items()})
            if not isinstance(logits, torch.Tensor):
                raise ValueError(
                    f"model: {type(model).__name__} returned a {type(logits).__name__}; expected a tensor "
                    "of logits, one per row (predict and evaluate_ctr read model(batch) as the logits)")
            out.append(logits.float().cpu())
    finally:
        model.train(was_training)
    if not out:
        raise ValueError(f"data: {type(data).__name__} produced no batches; expected at least one row to predict")
    return torch.cat(out)


def evaluate_ctr(model: torch.nn.Module, data) -> dict:
    """AUC, logloss and GAUC (grouped by ``data['user']`` when present) of a CTR model.

    Raises ``FloatingPointError`` when some of the model's outputs are NaN or infinite.
    """
    logits = predict(model, data).numpy()
    bad = ~np.isfinite(logits)
    if bad.any():
        raise FloatingPointError(
            f"the model's outputs are not finite for {int(bad.sum()):,} of {len(logits):,} rows "
            f"(the first is row {int(np.flatnonzero(bad)[0])}: {logits[bad][0]})")
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
    # The fused kernels (one call per step instead of a loop over parameters) do the same update;
    # on CPU they save about 0.1 s per CTR epoch. Only for float tensors on one CPU or GPU.
    params = [p for p in model.parameters() if p.requires_grad]
    fused = bool(params) and all(p.dtype in (torch.float32, torch.float64) for p in params) \
        and len({p.device for p in params}) == 1 and params[0].device.type in ("cpu", "cuda")
    if optimizer == "adam":
        return [torch.optim.Adam(params, lr=lr, weight_decay=weight_decay, fused=fused or None)]
    if optimizer == "adagrad":
        return [torch.optim.Adagrad(params, lr=lr, weight_decay=weight_decay, fused=fused or None)]
    if optimizer == "sgd":
        return [torch.optim.SGD(model.parameters(), lr=lr, weight_decay=weight_decay)]
    if callable(optimizer):
        made = optimizer(model)
        made = list(made) if isinstance(made, (list, tuple)) else [made]
        if not made or not all(isinstance(o, torch.optim.Optimizer) for o in made):
            raise ValueError("optimizer: the callable must return an Optimizer or a list of them")
        return made
    raise ValueError(f"optimizer: expected 'adam', 'adagrad', 'sgd' or a callable, got {optimizer!r}")


def _check_bce_labels(labels, name: str) -> None:
    """Labels that ``bce_loss`` can use: a float tensor of finite values in [0, 1]."""
    labels = torch.as_tensor(labels)
    if not torch.is_floating_point(labels):
        raise ValueError(
            f"{name}: expected float labels for the default loss (binary cross-entropy), "
            f"got dtype {str(labels.dtype).replace('torch.', '')}; convert them with .float()")
    if labels.numel() == 0:
        raise ValueError(f"{name}: is empty; expected one label per row")
    finite = torch.isfinite(labels)
    if not bool(finite.all()):
        raise ValueError(f"{name}: contains {int((~finite).sum()):,} NaN or infinite value(s); "
                         "expected finite labels in [0, 1]")
    lo, hi = float(labels.min()), float(labels.max())
    if lo < 0 or hi > 1:
        raise ValueError(f"{name}: expected labels in [0, 1] for binary cross-entropy, "
                         f"got values from {lo:g} to {hi:g}")


def _check_eval_labels(valid) -> None:
    """``evaluate_ctr`` needs ``valid['label']`` holding only 0 and 1 (AUC, logloss, GAUC)."""
    if not isinstance(valid, Mapping):
        return  # cannot look inside before evaluating; evaluate_ctr will read valid['label']
    if "label" not in valid:
        raise ValueError(
            f"valid: has no 'label' field (fields: {sorted(valid)}); the default evaluate "
            "(evaluate_ctr) scores the model against valid['label']. Add the labels, or pass "
            "evaluate= for validation data without labels")
    labels = torch.as_tensor(valid["label"])
    if labels.dtype == torch.bool:
        return
    if labels.is_complex() or not bool(((labels == 0) | (labels == 1)).all()):
        shown = torch.unique(labels[(labels != 0) & (labels != 1)])[:5].tolist()
        raise ValueError(f"valid['label']: expected only 0 and 1 (AUC and logloss need binary "
                         f"labels), got values {shown}")


# The hyper-parameter that scales the step, by name, for optimisers without an ``lr`` (FTRL's alpha).
_STEP_SIZES = ("lr", "alpha")


def _learning_rates(optimizers) -> str:
    """Every optimiser's step size(s), named: ``"lr=0.005"`` for one plain optimiser, or
    ``"FTRLProximal alpha=0.05; Adagrad lr=0.005"`` when several optimisers train the model."""
    parts = []
    for opt in optimizers:
        for key in _STEP_SIZES:
            values = sorted({float(g[key]) for g in opt.param_groups if key in g})
            if values:
                parts.append((type(opt).__name__, key, ", ".join(f"{v:g}" for v in values)))
                break
        else:
            parts.append((type(opt).__name__, "lr", "unknown"))
    if len(parts) == 1 and parts[0][1] == "lr":
        return f"lr={parts[0][2]}"
    return "; ".join(f"{name} {key}={v}" for name, key, v in parts)


def _non_finite_gradients(model) -> list[str]:
    """Names of the parameters whose gradient holds a NaN or an infinity (one sync per step)."""
    named = [(n, p.grad) for n, p in model.named_parameters() if p.grad is not None]
    if not named:
        return []
    values = [g._values() if g.is_sparse else g for _, g in named]
    # Fast path, exact: g * 0 is 0 where g is finite and NaN where it is not, so the sum of
    # every such product is finite exactly when every gradient is. Three operations on one
    # flat copy instead of five per tensor (isfinite().all(): about 4x faster for a CTR model's
    # ten gradients). Only a failure pays for finding the names.
    if len({v.device for v in values}) == 1 and bool(
            torch.cat([v.reshape(-1) for v in values]).mul_(0).sum().isfinite()):
        return []
    finite = torch.stack([torch.isfinite(v).all() for v in values])
    if bool(finite.all()):
        return []
    return [n for (n, _), ok in zip(named, finite.tolist()) if not ok]


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
    divergence_factor: float | None = DIVERGENCE_FACTOR,
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
        divergence_factor: a batch loss larger than ``divergence_factor`` times
            ``max(|loss of the first batch|, 1)`` stops training (``None``: only a loss that
            is NaN or infinite does).

    Returns:
        :class:`FitResult`; ``history`` has one row per epoch with ``train_loss``, every
        validation metric, ``seconds`` (wall) and ``cpu_seconds`` (process CPU time).

    Raises:
        ValueError: an argument is invalid; or, with the default ``loss_fn``, the labels are not
            float, finite and in [0, 1]; or, with the default ``evaluate``, ``valid`` has no
            ``label`` or labels other than 0 and 1. All checked before the first step.
        FloatingPointError: a batch loss is NaN or infinite, or exceeds ``divergence_factor``
            times the first batch's (see above); or a validation metric is not finite. The
            message names the epoch, the batch and the learning rate; the model keeps the weights
            it had when the check failed.
    """
    for name, v in (("epochs", epochs), ("batch_size", batch_size), ("patience", patience)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{name}: expected a positive integer, got {v!r}")
    require_number(lr, name="lr", low=0, low_open=True)
    require_number(weight_decay, name="weight_decay", low=0)
    if mode not in ("max", "min"):
        raise ValueError(f"mode: expected 'max' or 'min', got {mode!r}")
    if not hasattr(train, "batches"):
        raise ValueError(f"train: expected TensorData or an object with .batches(), got {type(train).__name__}")
    if divergence_factor is not None and not (
            isinstance(divergence_factor, (int, float)) and not isinstance(divergence_factor, bool)
            and divergence_factor > 1 and math.isfinite(divergence_factor)):
        raise ValueError(f"divergence_factor: expected a finite number above 1 or None, "
                         f"got {divergence_factor!r}")
    # Labels are checked once, here; a sampler that is not a mapping has its first batch checked.
    check_batch_labels = False
    if loss_fn is bce_loss:
        if isinstance(train, Mapping):
            if "label" not in train:
                raise ValueError(
                    f"train: has no 'label' field (fields: {sorted(train)}); the default loss "
                    "(bce_loss) needs one. Pass loss_fn= to train without labels")
            _check_bce_labels(train["label"], "train['label']")
        else:
            check_batch_labels = True
    if valid is not None and evaluate is evaluate_ctr:
        _check_eval_labels(valid)
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
        n_batches = train.n_batches(batch_size) if hasattr(train, "n_batches") else None
        first_loss = None  # the loss of the untrained model: the scale a healthy run stays under
        best_score, best_epoch, best_state = -math.inf, 0, None
        rows, waited, stopped_early = [], 0, False
        bar = tqdm(range(1, epochs + 1), desc=type(model).__name__, unit="epoch", disable=not progress)
        for epoch in bar:
            model.train()
            wall0, cpu0 = time.perf_counter(), time.process_time()
            total, count = 0.0, 0
            for batch in train.batches(batch_size, shuffle=True, generator=generator):
                if check_batch_labels:
                    if "label" not in batch:
                        raise ValueError(
                            f"train: its batches have no 'label' field (fields: {sorted(batch)}); "
                            "the default loss (bce_loss) needs one. Pass loss_fn= to train "
                            "without labels")
                    _check_bce_labels(batch["label"], "train['label']")
                    check_batch_labels = False
                loss = loss_fn(model, batch)
                value = float(loss.detach())
                count += 1
                # Checked before the step, so a bad loss never reaches the weights.
                if first_loss is None:
                    if not math.isfinite(value):
                        raise FloatingPointError(
                            f"the loss is {value} at epoch 1, batch 1, before any update "
                            f"({_learning_rates(optimizers)} has not been applied yet): the "
                            "model's initial outputs or the inputs are not finite")
                    first_loss = value
                elif not math.isfinite(value) or (
                        divergence_factor is not None
                        and abs(value) > divergence_factor * max(abs(first_loss), 1.0)):
                    of = f" of {n_batches}" if n_batches else ""
                    why = ("is " + str(value) if not math.isfinite(value) else
                           f"is {value:.4g}, more than {divergence_factor:g} times the first "
                           f"batch's {first_loss:.4g}")
                    raise FloatingPointError(
                        f"training diverged at epoch {epoch}, batch {count}{of}: the loss {why} "
                        f"({_learning_rates(optimizers)}). Try a learning rate 10 times "
                        f"smaller{' (each optimiser' + chr(39) + 's)' if len(optimizers) > 1 else ''}")
                for opt in optimizers:
                    opt.zero_grad(set_to_none=True)
                loss.backward()
                # Checked before the step: a NaN gradient under a finite loss is not a step that
                # was too large, and FTRL's or Adam's state would keep the NaN for good.
                bad = _non_finite_gradients(model)
                if bad:
                    of = f" of {n_batches}" if n_batches else ""
                    raise FloatingPointError(
                        f"the gradient of {', '.join(bad[:5])}{' and others' if len(bad) > 5 else ''} "
                        f"is NaN or infinite at epoch {epoch}, batch {count}{of}, while the loss is "
                        f"finite ({value:.4g}); no update was made ({_learning_rates(optimizers)}). "
                        "A smaller learning rate does not cure this: look for an operation whose "
                        "derivative is infinite at the inputs (sqrt or log at 0, a division by 0, "
                        "a norm of a zero vector) in the model or the loss")
                for opt in optimizers:
                    opt.step()
                total += value
            if count == 0:
                raise ValueError("train: produced no batches")
            row = {"epoch": epoch, "train_loss": total / count,
                   "seconds": time.perf_counter() - wall0, "cpu_seconds": time.process_time() - cpu0}
            if valid is not None and evaluate is not None:
                try:
                    scores = evaluate(model, valid)
                except FloatingPointError as exc:
                    raise FloatingPointError(
                        f"validation after epoch {epoch} failed "
                        f"({_learning_rates(optimizers)}): {exc}") from None
                if metric not in scores:
                    raise ValueError(f"metric: {metric!r} is not among the evaluation keys {sorted(scores)}")
                row.update({f"valid_{k}": float(v) for k, v in scores.items()})
                score = float(scores[metric])
                if not math.isfinite(score):
                    raise FloatingPointError(
                        f"validation {metric} is {score} after epoch {epoch} "
                        f"({_learning_rates(optimizers)})")
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

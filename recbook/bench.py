"""The leaderboard: train and evaluate the book's models on the book's protocols.

``python -m recbook.bench`` (or ``make bench``) trains every registered model with several seeds,
evaluates it on the test split of its protocol, and merges the rows into

* ``book/results/bench.csv`` — one row per model x seed: every test metric, epochs, wall and
  process-CPU seconds per epoch, total seconds, peak memory, thread count, library versions, and
  a **fingerprint** of what produced the row (the model's settings, the protocol's settings, a
  checksum of the data and recbook's version);
* ``book/results/bench.md`` — one markdown table per protocol, mean ± std per model.

A run of some models or seeds replaces only their rows (by model, protocol and seed) and keeps the
others. Same seeds, same machine → same metrics. ``--quick`` caps training at a small budget (a
smoke run) and writes under ``_build/bench-quick/`` unless ``--out`` says otherwise, so the
committed results always come from full runs.

**Protocols** (:data:`PROTOCOLS`) say how a model is trained, validated and tested on one data set:

* ``ctr`` — the CTR rows of :func:`recbook.data.ctr_protocol`; AUC, logloss, GAUC;
* ``retrieval`` — leave-last-out sequences (:func:`recbook.data.sequence_protocol`), each user's
  earlier items excluded from the candidates; Recall@K and NDCG@K for K in 10, 20, 50, 100;
* ``sequence`` — the same sequences, nothing excluded, as GRU4Rec's authors evaluate (their code
  ranks every item, the user's earlier ones included); Recall@K and MRR@K for K in 10, 20, and
  NDCG@10. On MovieLens-100K no user rates a movie twice, so an earlier item is never the target and
  a slot spent on one is lost; the protocol therefore also reports the same ranking with the user's
  earlier items excluded (``recall@K_excl``, ``mrr@K_excl``, comparable with the retrieval
  protocol) and the mean number of earlier items among the top 20 (``seen@20``). These extra
  columns are computed from the same scores and do not enter training or early stopping.

A model on a ranking protocol provides ``score_items(data, split) -> [U, n_items]`` scores, one
row per user of ``data`` and one column per item code, reading only what the user did before the
``split`` target (:meth:`recbook.data.SequenceData.history`).

**Entries** (:class:`Entry`, kept in :data:`REGISTRY`) name a factory and its parameters rather
than hiding them in a lambda, so the fingerprint sees every setting. Registering is idempotent:
the same entry again is a no-op, a changed one replaces the old with a message, and the built-in
entries are always present.
"""
from __future__ import annotations

import argparse
import contextlib
import csv
import errno
import hashlib
import io
import json
import math
import os
import platform
import signal
import stat
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from . import __version__
from ._checks import require_columns
from .train import FitResult, evaluate_ctr, fit, library_versions, num_threads, seed_everything

DEFAULT_OUT = Path("book") / "results"
QUICK_OUT = Path("_build") / "bench-quick"
QUICK_EPOCHS = 2
KEY = ["model", "protocol", "seed"]
MAX_SEED = 2**32 - 1


# --------------------------------------------------------------------------------------------
# Protocols
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Protocol:
    """How models are trained, validated and tested on one data set.

    ``load()`` returns the data (loaded once per run); ``train_data(data)`` what ``fit`` trains
    on by default; ``evaluate(model, data, split)`` the metrics on ``"valid"`` or ``"test"``;
    ``metric`` the validation metric that early stopping watches; ``settings`` what the protocol
    fixes and ``checksum()`` a checksum of its data (both recorded in every fingerprint).
    """

    name: str
    load: Callable[[], Any]
    evaluate: Callable[[Any, Any, str], dict]
    metric: str
    train_data: Callable[[Any], Any] | None = None
    settings: dict = field(default_factory=dict)
    description: str = ""
    checksum: Callable[[], str] | None = None


def _movielens():
    from .data import load_movielens100k

    return load_movielens100k(progress=False)


def _load_ctr():
    from .data import ctr_protocol

    return ctr_protocol(_movielens(), history_len=CTR_HISTORY_LEN)


def _load_sequences():
    from .data import sequence_protocol

    return sequence_protocol(_movielens())


def _evaluate_ctr(model, data, split: str) -> dict:
    return evaluate_ctr(model, getattr(data, split))


def _scores(model, data, split: str) -> np.ndarray:
    if not hasattr(model, "score_items"):
        raise ValueError(f"model: {type(model).__name__} has no score_items(data, split); a model on a "
                         "ranking protocol must score every item for every user")
    import torch

    was_training = getattr(model, "training", False)
    if hasattr(model, "eval"):
        model.eval()
    try:
        with torch.no_grad():
            scores = model.score_items(data, split)
    finally:
        if hasattr(model, "train"):
            model.train(was_training)
    if hasattr(scores, "detach"):
        scores = scores.detach().cpu().float().numpy()
    scores = np.asarray(scores)
    if scores.shape != (len(data), data.n_items):
        raise ValueError(f"score_items: returned shape {scores.shape}; expected ({len(data)}, {data.n_items}), "
                         "one row per user and one column per item code")
    return scores


RETRIEVAL_KS = (10, 20, 50, 100)
SEQUENCE_KS = (10, 20)


def _evaluate_retrieval(model, data, split: str) -> dict:
    from .metrics import ranking_report

    report = ranking_report(_scores(model, data, split), data.targets(split), RETRIEVAL_KS,
                            exclude=data.seen(split))
    return {k: v for k, v in report.items() if k.startswith(("recall@", "ndcg@"))}


SEEN_K = 20


def seen_in_top(scores: np.ndarray, seen: Sequence, k: int = SEEN_K, *, reserved: int = 2) -> np.ndarray:
    """How many of each user's top ``k`` items (by score, ties broken by the lower item code; the
    first ``reserved`` codes never ranked) are items the user already had (``seen[u]``)."""
    s = np.asarray(scores, dtype=float)
    if s.ndim != 2 or len(seen) != s.shape[0]:
        raise ValueError(f"scores, seen: expected [U, n_items] scores and U item lists, got shape "
                         f"{s.shape} and {len(seen)} lists")
    s = s[:, reserved:]
    top = np.argsort(-s, axis=1, kind="stable")[:, :k] + reserved
    return np.array([np.isin(t, np.asarray(h)).sum() for t, h in zip(top, seen)], dtype=np.int64)


def _evaluate_sequence(model, data, split: str) -> dict:
    from .metrics import ranking_report

    scores = _scores(model, data, split)
    report = ranking_report(scores, data.targets(split), SEQUENCE_KS)
    keep = [f"{m}@{k}" for k in SEQUENCE_KS for m in ("recall", "mrr")] + ["ndcg@10"]
    out = {k: report[k] for k in keep}
    # The same ranking with the user's earlier items excluded, as on the retrieval protocol (on
    # MovieLens-100K no user rates a movie twice, so an earlier item is never the target).
    excl = ranking_report(scores, data.targets(split), SEQUENCE_KS, exclude=data.seen(split))
    out.update({f"{m}@{k}_excl": excl[f"{m}@{k}"] for k in SEQUENCE_KS for m in ("recall", "mrr")})
    out[f"seen@{SEEN_K}"] = float(seen_in_top(scores, data.seen(split)).mean())
    return out


# The CTR protocol's shared settings (see the FM chapter): embedding 16, batch 1024, Adam 1e-3,
# early stopping on validation AUC. `epochs` is a cap, high enough that early stopping ends training.
CTR_FIT = dict(batch_size=1024, lr=1e-3, epochs=100, patience=3, metric="auc")
# Every CTR row carries the user's last 50 earlier items (DIN reads them; the other models ignore them).
CTR_HISTORY_LEN = 50

# GRU4Rec on the sequence protocol: session-parallel batches of 64 slots, early stopping on
# validation Recall@20 (`epochs` is a cap). The optimiser and the loss are set per entry.
GRU4REC_FIT = dict(batch_size=64, lr=0.05, epochs=25, patience=3)

# The FTRL-Proximal + AdaGrad settings of the WideDeep-FTRL entry, chosen on validation AUC (seeds 0-2)
# over the grid of recbook.chapters.widedeep.run_ftrl_sweep (book/results/widedeep_ftrl_sweep.csv):
# tied with the grid's best (l1 = 1e-4, ahead by 1e-4 on average, behind in one seed); the larger
# l1 is kept for its sparsity. beta = 1 (McMahan et al. 2013) is behind in every seed.
WIDEDEEP_FTRL = dict(alpha=0.05, beta=0.01, l1=0.001, l2=0.0, deep_lr=0.005)

def ctr_rows(data):
    """The CTR training rows without the behaviour histories (every CTR model but DIN)."""
    return data.train.drop("hist_item", "hist_mask")


def ctr_rows_with_history(data):
    """The CTR training rows with the behaviour histories (DIN)."""
    return data.train


def _movielens_checksum() -> str:
    return movielens_checksum()


PROTOCOLS: dict[str, Protocol] = {
    "ctr": Protocol(
        "ctr", _load_ctr, _evaluate_ctr, metric="auc", train_data=ctr_rows,
        settings={"label": "rating >= 4", "split": "time 80/10/10, ties by file order",
                  "history_len": CTR_HISTORY_LEN, "metrics": ["auc", "logloss", "gauc"]},
        description="CTR rows split by time; AUC, logloss, GAUC", checksum=_movielens_checksum),
    "retrieval": Protocol(
        "retrieval", _load_sequences, _evaluate_retrieval, metric="recall@50",
        settings={"split": "leave-last-out, ties by file order", "exclude": "earlier items",
                  "ks": list(RETRIEVAL_KS)},
        description="leave-last-out, earlier items excluded; Recall/NDCG@10,20,50,100",
        checksum=_movielens_checksum),
    "sequence": Protocol(
        "sequence", _load_sequences, _evaluate_sequence, metric="recall@20",
        settings={"split": "leave-last-out, ties by file order", "exclude": "nothing",
                  "ks": list(SEQUENCE_KS)},
        description="leave-last-out, nothing excluded; Recall/MRR@10,20, NDCG@10; also with earlier "
                    "items excluded",
        checksum=_movielens_checksum),
}


def load_protocol(name: str):
    """The data set a protocol needs."""
    if name not in PROTOCOLS:
        raise ValueError(f"protocol: unknown protocol {name!r}; expected one of {sorted(PROTOCOLS)}")
    return PROTOCOLS[name].load()


# --------------------------------------------------------------------------------------------
# Entries and the registry
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Entry:
    """How the leaderboard builds and trains one model.

    ``factory(data, **params)`` returns a fresh model for the protocol's data (CTR models:
    ``Model.from_data``, which passes ``data.schema``). ``fit`` holds the keyword arguments of
    :func:`recbook.train.fit`; ``None`` means the factory's model needs no training (a popularity
    count). ``train_data(data)`` replaces the protocol's training data (e.g. a session-parallel
    batcher). Parameters, fit settings and the factory's name go into the row's fingerprint.
    """

    name: str
    protocol: str
    factory: Callable
    params: dict = field(default_factory=dict)
    fit: dict | None = field(default_factory=dict)
    train_data: Callable | None = None
    description: str = ""

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name or "," in self.name:
            raise ValueError(f"name: expected a non-empty name without commas, got {self.name!r}")
        if self.protocol not in PROTOCOLS:
            raise ValueError(f"protocol: unknown protocol {self.protocol!r}; expected one of {sorted(PROTOCOLS)}")
        if not callable(self.factory):
            raise ValueError(f"factory: expected a callable factory(data, **params), got {self.factory!r}")
        if not isinstance(self.params, Mapping):
            raise ValueError(f"params: expected a dict of the factory's keyword arguments, got {self.params!r}")
        if self.fit is not None and not isinstance(self.fit, Mapping):
            raise ValueError(f"fit: expected a dict of fit() keyword arguments or None, got {self.fit!r}")

    def build(self, data):
        return self.factory(data, **self.params)


REGISTRY: dict[str, Entry] = {}


def register(entry: Entry) -> Entry:
    """Add ``entry`` to :data:`REGISTRY`. The same entry again is a no-op (a notebook cell can run
    twice); an entry with the same name and other settings replaces the old one, with a warning."""
    if not isinstance(entry, Entry):
        raise ValueError(f"entry: expected a recbook.bench.Entry, got {type(entry).__name__}")
    old = REGISTRY.get(entry.name)
    if old is not None and old != entry:
        warnings.warn(f"register: replacing the registered model {entry.name!r} "
                      f"({_describe(old)} -> {_describe(entry)})", stacklevel=2)
    REGISTRY[entry.name] = entry
    return entry


def _describe(entry: Entry) -> str:
    return f"{_qualname(entry.factory)}({_canonical(entry.params)}), fit={_canonical(entry.fit)}"


_BUILTIN: dict[str, Entry] = {}
"""The built-in entries, by name (what a worker process of :func:`run` knows)."""


def _register_builtin() -> None:
    from .models import (DIN, DeepFM, DINBase, FactorizationMachine, LogisticRegression, TwoTower,
                         WideDeep, ensemble_loss, ftrl_adagrad, two_tower_examples, two_tower_loss)
    from .models.baselines import ItemKNNLast, MostPopular
    from .models.gru4rec import GRU4Rec, SessionLoss, adagradm, session_parallel
    from .models.itemknn import ItemKNN

    unknown = {"unknown_rate": {"user_id": 0.1}}
    # FM, FM-unk and DeepFM draw their factors Xavier-normal (RecBole's initialisation) instead of
    # N(0, 0.01^2): ahead on validation AUC in the ablation (python -m recbook.ablation, seeds 0-2):
    # FM +0.0036 [+0.0008, +0.0064] (book/results/fm_ablation.csv, variant recbook+recbole:embed_init),
    # DeepFM +0.0015 [-0.0029, +0.0060], ahead in 2 of 3 seeds (deepfm_ablation.csv,
    # recbook+recbole-fm:embed_init): tied within the seed spread, chosen on its higher mean.
    XAVIER_INIT = {"init_std": "xavier"}
    # Two towers on the retrieval protocol: 64-d embeddings and outputs, one hidden layer of 128, the
    # 3 most recent items pooled, batch 1024. The temperatures are the best on validation Recall@50
    # in book/results/twotower_temperature.csv (recbook.chapters.twotower.run_temperature_sweep);
    # the sizes were set by hand and have no committed comparison.
    TWO_TOWER = {"dim": 64, "hidden": (128,), "out_dim": 64, "history_len": 3, "temperature": 0.2}
    TWO_TOWER_FIT = dict(batch_size=1024, lr=1e-3, epochs=100, patience=3, loss_fn=two_tower_loss)
    for e in (
        Entry("LR", "ctr", LogisticRegression.from_data, {}, dict(CTR_FIT),
              description="logistic regression on one-hot fields"),
        Entry("LR-unk", "ctr", LogisticRegression.from_data, unknown, dict(CTR_FIT),
              description="LR whose unknown-user weight is trained (10% of user ids replaced)"),
        Entry("FM", "ctr", FactorizationMachine.from_data, {"dim": 16, **XAVIER_INIT}, dict(CTR_FIT),
              description="factorization machine, k = 16, Xavier-initialised factors"),
        Entry("FM-unk", "ctr", FactorizationMachine.from_data, {"dim": 16, **XAVIER_INIT, **unknown}, dict(CTR_FIT),
              description="FM whose unknown-user row is trained (10% of user ids replaced)"),
        Entry("WideDeep", "ctr", WideDeep.from_data, {"base_rate": "train"}, dict(CTR_FIT, weight_decay=1e-5),
              description="Wide & Deep: 5 crosses, MLP 256-128, Adam"),
        Entry("WideDeep-FTRL", "ctr", WideDeep.from_data, {},
              dict(CTR_FIT, optimizer=ftrl_adagrad(**WIDEDEEP_FTRL)),
              description="Wide & Deep: FTRL-Proximal with L1 (wide), AdaGrad (deep)"),
        Entry("WideDeep-ensemble", "ctr", WideDeep.from_data, {"base_rate": "train"},
              dict(CTR_FIT, weight_decay=1e-5, loss_fn=ensemble_loss),
              description="Wide & Deep's parts trained as an ensemble: each on its own loss, logits added"),
        Entry("WideDeep-nocross", "ctr", WideDeep.from_data, {"crosses": (), "base_rate": "train"},
              dict(CTR_FIT, weight_decay=1e-5),
              description="Wide & Deep without crosses: LR + MLP, as a typical implementation writes it"),
        Entry("DeepFM", "ctr", DeepFM.from_data, {"base_rate": "train", **XAVIER_INIT}, dict(CTR_FIT),
              description="DeepFM: k = 16, MLP 256-128, one shared embedding table, Xavier-initialised"),
        # DIN reads the last 50 items of the user before each row (with their genres).
        Entry("DIN-base", "ctr", DINBase.from_data, {"dim": 16}, dict(CTR_FIT),
              train_data=ctr_rows_with_history,
              description="DIN's base model: mean of the history, MLP 200-80 with PReLU"),
        Entry("DIN", "ctr", DIN.from_data, {"dim": 16}, dict(CTR_FIT), train_data=ctr_rows_with_history,
              description="DIN as in the paper: target attention, raw weights, activation unit 36, PReLU"),
        Entry("DIN-Dice", "ctr", DIN.from_data, {"dim": 16, "activation": "dice"}, dict(CTR_FIT),
              train_data=ctr_rows_with_history, description="DIN with Dice instead of PReLU"),
        # The authors' released code: softmax over score / sqrt(d), activation unit 80-40 with sigmoid.
        Entry("DIN-softmax", "ctr", DIN.from_data,
              {"dim": 16, "softmax": True, "attention_hidden": (80, 40), "attention_activation": "sigmoid"},
              dict(CTR_FIT), train_data=ctr_rows_with_history,
              description="DIN with the authors' code's attention: softmax of score/sqrt(d), unit 80-40, sigmoid"),
        Entry("Pop-retrieval", "retrieval", MostPopular.from_data, {}, None,
              description="most popular unseen items (training sequences' counts)"),
        Entry("TwoTower", "retrieval", TwoTower.from_data, dict(TWO_TOWER), dict(TWO_TOWER_FIT),
              train_data=two_tower_examples,
              description="two towers, in-batch softmax, last 3 items pooled, temperature 0.2"),
        Entry("TwoTower-logQ", "retrieval", TwoTower.from_data, dict(TWO_TOWER, correction="counts", temperature=0.1),
              dict(TWO_TOWER_FIT), train_data=two_tower_examples,
              description="two towers, in-batch softmax with logQ correction (counts), temperature 0.1"),
        # Item-based kNN, neighbours and shrinkage chosen on validation Recall@50
        # (book/results/itemknn_sweep.csv, written by `python -m recbook.models.itemknn`).
        Entry("ItemKNN-retrieval", "retrieval", ItemKNN.from_data, {"neighbours": 10, "shrink": 0.0}, None,
              description="item-based kNN: cosine over users, 10 neighbours per item, whole history"),
        # Sequence protocol (the GRU4Rec chapter). ItemKNN-last's window and GRU4Rec's network, dropout,
        # learning rates and BPR-max settings have no committed comparison. The extra negatives (512) and alpha (0.5)
        # are, for each loss, the configuration with the best validation MRR@20 in the committed
        # comparison book/results/gru4rec_losses.csv (seed 0); on validation Recall@20 those
        # configurations are within one standard error of each other. Early stopping watches
        # validation Recall@20.
        Entry("Pop-seq", "sequence", MostPopular.from_data, {}, None,
              description="most popular items in the training sequences"),
        Entry("ItemKNN-last", "sequence", ItemKNNLast.from_data,
              {"window": 20, "directed": False, "decay": 1.0, "normalize": 0.0}, None,
              description="co-occurrence with the last item (window 20, weight 1/distance)"),
        Entry("GRU4Rec-XE", "sequence", GRU4Rec.from_data,
              {"layers": (100,), "tied": True, "dropout_embed": 0.5, "dropout_hidden": 0.3},
              dict(GRU4REC_FIT, optimizer=adagradm(lr=0.05), loss_fn=SessionLoss("cross-entropy", logq=1.0)),
              train_data=session_parallel(n_negatives=512, alpha=0.5, order="longest-first"),
              description="GRU4Rec 100, cross-entropy with logQ, 512 shared negatives, AdagradM"),
        Entry("GRU4Rec-BPRmax", "sequence", GRU4Rec.from_data,
              {"layers": (100,), "tied": True, "dropout_embed": 0.5, "dropout_hidden": 0.3},
              dict(GRU4REC_FIT, optimizer=adagradm(lr=0.1), loss_fn=SessionLoss("bpr-max", bpreg=2.0, elu=0.5)),
              train_data=session_parallel(n_negatives=512, alpha=0.5, order="longest-first"),
              description="GRU4Rec 100, BPR-max (bpreg 2, ELU 0.5), 512 shared negatives, AdagradM"),
    ):
        if e.name not in REGISTRY:
            REGISTRY[e.name] = e
        _BUILTIN[e.name] = e


# --------------------------------------------------------------------------------------------
# Fingerprints
# --------------------------------------------------------------------------------------------

def _qualname(obj) -> str:
    module = getattr(obj, "__module__", None) or type(obj).__module__
    if module == "__main__":  # ``python -m recbook.bench``: name the module, not the way it was run
        spec = getattr(sys.modules.get("__main__"), "__spec__", None)
        module = spec.name if spec is not None and spec.name else module
    name = getattr(obj, "__qualname__", None) or type(obj).__qualname__
    return f"{module}.{name}"


def _canonical(value):
    """A JSON-able form of settings: callables by name, tuples as lists, keys sorted later."""
    if isinstance(value, Mapping):
        return {str(k): _canonical(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_canonical(v) for v in value]
    if callable(value):
        return _qualname(value)
    if isinstance(value, (np.generic,)):
        return value.item()
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return repr(value)


def data_checksum(ml) -> str:
    """SHA-256 (first 16 hex digits) of the three MovieLens tables' contents and column names."""
    h = hashlib.sha256()
    for name in ("ratings", "users", "items"):
        table = getattr(ml, name)
        h.update(name.encode())
        h.update(",".join(map(str, table.columns)).encode())
        h.update(pd.util.hash_pandas_object(table, index=False).to_numpy().tobytes())
    return h.hexdigest()[:16]


def fingerprint(entry: Entry, checksum: str | None = None) -> str:
    """What produced a result row, as 16 hex digits: the entry's factory, parameters and fit
    settings, its protocol's settings, the data checksum (default: the protocol's) and recbook's
    version."""
    if checksum is None:
        protocol = PROTOCOLS[entry.protocol]
        checksum = protocol.checksum() if protocol.checksum is not None else "unknown"
    payload = {
        "model": entry.name, "protocol": entry.protocol, "factory": _qualname(entry.factory),
        "params": _canonical(entry.params), "fit": _canonical(entry.fit),
        "train_data": _canonical(entry.train_data), "protocol_settings": _canonical(PROTOCOLS[entry.protocol].settings),
        "data": checksum, "recbook": __version__,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


@lru_cache(maxsize=1)
def movielens_checksum() -> str:
    return data_checksum(_movielens())


# --------------------------------------------------------------------------------------------
# Running
# --------------------------------------------------------------------------------------------

class _PeakMemory:
    """Peak resident memory (MB) of this process while the block runs, sampled every 20 ms from
    /proc (Linux); NaN elsewhere. It includes what was resident before (the loaded data)."""

    def __init__(self, interval: float = 0.02):
        self.interval = interval
        self.peak = math.nan
        self._stop = threading.Event()

    @staticmethod
    def _rss() -> float:
        try:
            with open("/proc/self/statm") as f:
                return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
        except (OSError, ValueError, AttributeError):
            return math.nan

    def _run(self):
        while not self._stop.wait(self.interval):
            self.peak = max(self.peak, self._rss()) if not math.isnan(self.peak) else self._rss()

    def __enter__(self):
        self.peak = self._rss()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        now = self._rss()
        if not math.isnan(now):
            self.peak = max(self.peak, now) if not math.isnan(self.peak) else now


def train_entry(entry: Entry, model, data, seed: int, *, threads: int, quick: bool = False,
                progress: bool = True) -> FitResult | None:
    """Train ``model`` as the leaderboard does: ``fit`` with the entry's settings, early stopping on
    the protocol's validation metric. Returns None for an entry that needs no training."""
    if entry.fit is None:
        return None
    protocol = PROTOCOLS[entry.protocol]
    kwargs = dict(entry.fit)
    kwargs.setdefault("metric", protocol.metric)
    if quick:
        kwargs["epochs"] = min(kwargs.get("epochs", QUICK_EPOCHS), QUICK_EPOCHS)
    train = (entry.train_data or protocol.train_data)
    if train is None:
        raise ValueError(f"{entry.name}: protocol {entry.protocol!r} has no default training data; "
                         "give the entry a train_data(data) function")

    def validate(m, d):
        return protocol.evaluate(m, d, "valid")

    return fit(model, train(data), data, evaluate=validate, seed=seed, threads=threads,
               progress=progress, **kwargs)


def run_one(entry: Entry, data, seed: int, *, threads: int, quick: bool, progress: bool = True) -> dict:
    """Build, train and test one model with one seed; return the result row."""
    protocol = PROTOCOLS[entry.protocol]
    t_start = time.perf_counter()
    with num_threads(threads), _PeakMemory() as memory:
        seed_everything(seed)
        model = entry.build(data)
        t0 = time.perf_counter()
        res = train_entry(entry, model, data, seed, threads=threads, quick=quick, progress=progress)
        train_seconds = time.perf_counter() - t0
        test = protocol.evaluate(model, data, "test")
    row = {"model": entry.name, "protocol": entry.protocol, "seed": seed}
    row.update({f"test_{k}": float(v) for k, v in test.items()})
    if res is not None:
        h = res.history
        row.update({
            f"valid_{res.metric}": res.best_score, "epochs": len(h), "best_epoch": res.best_epoch,
            "wall_s_per_epoch": float(h["seconds"].mean()), "cpu_s_per_epoch": float(h["cpu_seconds"].mean()),
        })
    else:
        row.update({f"valid_{protocol.metric}": float(protocol.evaluate(model, data, "valid")[protocol.metric]),
                    "epochs": 0})
    params = [p for p in model.parameters()] if hasattr(model, "parameters") else []
    row.update({
        "train_s_total": train_seconds, "total_s": time.perf_counter() - t_start,
        "peak_rss_mb": memory.peak, "threads": threads, "quick": quick,
        "n_parameters": sum(p.numel() for p in params), "machine": platform.machine(),
        "fingerprint": fingerprint(entry),
        "recbook": __version__,
    })
    row.update(library_versions())
    return row


def _check_models(models) -> list[str]:
    if models is None:
        return list(REGISTRY)
    names = [models] if isinstance(models, str) else list(models)
    if not names:
        raise ValueError(f"models: is empty; expected one or more of {list(REGISTRY)} (or none given, for all)")
    unknown = [m for m in names if m not in REGISTRY]
    if unknown:
        raise ValueError(f"models: unknown model(s) {unknown}; expected some of {list(REGISTRY)}")
    if len(set(names)) != len(names):
        raise ValueError(f"models: {names} names a model twice; expected each once")
    return names


def _check_seeds(seeds) -> list[int]:
    seeds = list(seeds) if not isinstance(seeds, (int, np.integer)) else [seeds]
    if not seeds:
        raise ValueError("seeds: expected at least one seed")
    out = []
    for s in seeds:
        if isinstance(s, bool) or not isinstance(s, (int, np.integer)) or not 0 <= s <= MAX_SEED:
            raise ValueError(f"seeds: {s!r} is not a seed; expected integers from 0 to {MAX_SEED}")
        out.append(int(s))
    if len(set(out)) != len(out):
        raise ValueError(f"seeds: {out} repeats a seed; the same seed twice would fake a spread of 0")
    return out


def _run_in_worker(name: str, seed: int, threads: int, quick: bool) -> dict:
    """One (model, seed) run in a worker process of :func:`run` (``jobs > 1``): the entry is looked
    up by name in the worker's own registry (the built-in entries) and the data loaded once per
    worker."""
    entry = REGISTRY[name]
    if entry.protocol not in _WORKER_DATA:
        _WORKER_DATA[entry.protocol] = load_protocol(entry.protocol)
    return run_one(entry, _WORKER_DATA[entry.protocol], seed, threads=threads, quick=quick, progress=False)


_WORKER_DATA: dict = {}


def available_cpus() -> int:
    """CPUs this process may run on (its affinity mask on Linux; else ``os.cpu_count()``)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def _worker_init(parent: int) -> None:
    """Initializer of :func:`run`'s worker processes: end with the parent, leave Ctrl-C to it.

    A worker ignores SIGINT (the terminal sends it to the whole process group; the parent
    catches it and ends the workers, so the user sees one line rather than a traceback per
    worker). It asks the kernel for SIGKILL when its parent dies (``PR_SET_PDEATHSIG``, Linux),
    and a watchdog thread checks the parent's pid every second (any POSIX system, and the case
    where the parent died before the request): a parent killed outright (``kill -9``, the
    out-of-memory killer) does not leave workers training, nor holding memory, on their own. The
    resource tracker, whose pipe the workers keep open, then exits as well.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            pr_set_pdeathsig = 1
            ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, int(signal.SIGKILL), 0, 0, 0)
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent:  # the parent died before the request took effect
        os._exit(1)

    def watch() -> None:
        while True:
            time.sleep(1.0)
            if os.getppid() != parent:
                os._exit(1)

    threading.Thread(target=watch, name="recbook-watch-parent", daemon=True).start()


def _worker_pool(jobs: int):
    """A pool of ``jobs`` spawned worker processes that end with this process (:func:`_worker_init`)."""
    import importlib
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    init = importlib.import_module("recbook.bench")._worker_init  # never __main__'s copy
    return ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn"),
                               initializer=init, initargs=(os.getpid(),))


def _stop_pool(pool) -> None:
    """End a worker pool now: cancel what has not started and kill what runs (after an error or
    Ctrl-C, waiting for the other runs would only delay the message)."""
    processes = list((getattr(pool, "_processes", None) or {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for p in processes:
        with contextlib.suppress(Exception):
            p.kill()
    for p in processes:
        with contextlib.suppress(Exception):
            p.join(timeout=10)


def _jobs_message(jobs: int) -> str:
    cpus = available_cpus()
    return (f"jobs: {jobs} runs at once asked for, but this machine has {cpus} CPU(s) for this process; "
            f"running {cpus} at once (more would only share the same CPUs, each process holding its own "
            "copy of the data)")


def run(models=None, seeds=(0, 1, 2), *, threads: int = 1, quick: bool = False, progress: bool = True,
        jobs: int = 1, on_model_done: Callable[[pd.DataFrame], None] | None = None) -> pd.DataFrame:
    """Run the leaderboard and return its rows (one per model x seed). Every argument is checked
    before any data is loaded or model trained. ``on_model_done(rows)`` is called with each
    model's rows as soon as its seeds are done (the command line writes them then, so a failure
    later in the run loses nothing that finished).

    ``jobs > 1`` runs that many (model, seed) pairs at once, each in its own process with
    ``threads`` torch threads (on 2 cores: ``jobs=2, threads=1``); more than
    :func:`available_cpus` is capped there, with a warning. Every run seeds itself, so the rows are
    the same as with ``jobs=1`` except the times. Only the built-in entries can run in worker
    processes (an entry registered at run time exists only in this process). The workers end
    with this process, even when it is killed outright, and a failure or Ctrl-C ends them at once."""
    names = _check_models(models)
    seeds = _check_seeds(seeds)
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ValueError(f"threads: expected a positive integer, got {threads!r}")
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise ValueError(f"jobs: expected a positive integer, got {jobs!r}")
    if jobs > available_cpus():
        warnings.warn(_jobs_message(jobs), stacklevel=2)
        jobs = available_cpus()
    if jobs > 1:
        local = [n for n in names if n not in _BUILTIN
                 or fingerprint(_BUILTIN[n], checksum="-") != fingerprint(REGISTRY[n], checksum="-")]
        if local:
            raise ValueError(f"jobs: {local} were registered at run time and exist only in this process; "
                             "run them with jobs=1 (or register them in recbook.bench's built-in list)")
    from tqdm.auto import tqdm

    overall = tqdm(total=len(names) * len(seeds), desc="leaderboard", unit="run", disable=not progress)
    rows: dict[tuple[str, int], dict] = {}

    def finished(name: str, seed: int, row: dict) -> None:
        rows[(name, seed)] = row
        overall.update()
        if on_model_done is not None and all((name, s) in rows for s in seeds):
            on_model_done(pd.DataFrame([rows[(name, s)] for s in seeds]))

    try:
        if jobs == 1:
            datasets = {}
            for name in names:
                entry = REGISTRY[name]
                if entry.protocol not in datasets:
                    datasets[entry.protocol] = load_protocol(entry.protocol)
                for seed in seeds:
                    overall.set_postfix_str(f"{name} seed {seed}")
                    finished(name, seed, run_one(entry, datasets[entry.protocol], seed, threads=threads,
                                                 quick=quick, progress=progress))
        else:
            import importlib
            from concurrent.futures import as_completed

            worker = importlib.import_module("recbook.bench")._run_in_worker  # never __main__'s copy
            pool = _worker_pool(min(jobs, len(names) * len(seeds)))
            try:
                futures = {pool.submit(worker, name, seed, threads, quick): (name, seed)
                           for name in names for seed in seeds}
                for future in as_completed(futures):
                    name, seed = futures[future]
                    overall.set_postfix_str(f"{name} seed {seed} done")
                    finished(name, seed, future.result())
            except BaseException:  # a failed run, Ctrl-C: end the other runs now
                _stop_pool(pool)
                raise
            pool.shutdown(wait=True)
    finally:
        overall.close()
    return pd.DataFrame([rows[(n, s)] for n in names for s in seeds if (n, s) in rows])


# --------------------------------------------------------------------------------------------
# Results files
# --------------------------------------------------------------------------------------------

def summarize(results: pd.DataFrame) -> str:
    """Markdown: one table per protocol, mean ± std (population) of every test metric and of the
    per-epoch costs, per model, in the order the rows come."""
    blocks = []
    for protocol, rows in results.groupby("protocol", sort=False):
        metrics = [c for c in rows.columns if c.startswith("test_") and rows[c].notna().any()]
        costs = [c for c in ("wall_s_per_epoch", "cpu_s_per_epoch", "epochs") if c in rows.columns
                 and rows[c].notna().any()]
        cols = metrics + costs
        lines = [f"### {protocol}", "",
                 "| model | protocol | seeds | " + " | ".join(m.replace("test_", "") for m in cols) + " |",
                 "|" + "---|" * (len(cols) + 3)]
        for model, g in rows.groupby("model", sort=False):
            cells = []
            for m in cols:
                v = g[m].dropna()
                if v.empty:
                    cells.append("")
                elif m.startswith("test_"):
                    cells.append(f"{v.mean():.4f} ± {v.std(ddof=0):.4f}")
                else:
                    cells.append(f"{v.mean():.2f} ± {v.std(ddof=0):.2f}")
            lines.append(f"| {model} | {protocol} | {len(g)} | " + " | ".join(cells) + " |")
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks) + "\n"


def merge(old: pd.DataFrame | None, new: pd.DataFrame) -> pd.DataFrame:
    """``old`` rows whose (model, protocol, seed) is not in ``new``, then ``new``'s rows; rows are
    kept in registry order (other models after), then by protocol and seed."""
    if old is None or old.empty:
        merged = new.copy()
    else:
        missing = [c for c in KEY if c not in old.columns]
        if missing:
            raise ValueError(f"results: the existing file lacks column(s) {missing}; expected {KEY}")
        keys = set(map(tuple, new[KEY].astype(str).to_numpy()))
        keep = ~old[KEY].astype(str).apply(tuple, axis=1).isin(keys)
        merged = pd.concat([old[keep], new], ignore_index=True)
    order = {name: i for i, name in enumerate(REGISTRY)}
    rank = merged["model"].map(lambda m: order.get(m, len(order)))
    merged = merged.assign(_rank=rank).sort_values(["_rank", "model", "protocol", "seed"], kind="stable")
    return merged.drop(columns="_rank").reset_index(drop=True)


def _check_out(out) -> Path:
    """``out`` as a Path, once it is known that this process can create files in it.

    Not a guess from permission bits (``os.access`` says yes to root on a read-only folder's
    parent, or to ``/dev/null/x`` through ``/dev/null``): the folder is created if needed (it is
    about to be written) and a file is created in it and removed.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"out: {out} exists and is not a folder; expected a folder for bench.csv and bench.md")
    probe = out
    while not probe.exists() and not probe.is_symlink() and probe != probe.parent:
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        raise ValueError(f"out: {probe} is not a folder, so {out} cannot be created; expected a folder for "
                         "bench.csv and bench.md")
    try:
        out.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=out, prefix=".write-test-", suffix=".tmp")
        os.close(fd)
        os.unlink(name)
    except OSError as err:
        raise ValueError(f"out: cannot write to {out} ({err.strerror or err}); expected a folder this user "
                         "can create files in") from None
    return out


# --------------------------------------------------------------------------------------------
# One writer for every results file: locked, complete or not at all, keeping the file's mode
# --------------------------------------------------------------------------------------------

LOCK_TIMEOUT_S = 600.0
"""How long a writer waits for another writer of the same folder before giving up."""


@contextlib.contextmanager
def results_lock(folder: Path, *, timeout: float = LOCK_TIMEOUT_S):
    """Hold an exclusive lock on ``folder`` (``flock`` on the folder itself, so no lock file is
    left behind) while the block runs: two runs writing results into the same folder, in one
    process or several, take turns, and each reads the files after the other has written them.
    Waits up to ``timeout`` seconds, then raises ``TimeoutError``. Where ``fcntl`` does not exist
    (Windows) the block runs unlocked."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not Linux/macOS
        yield
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{folder}: another run has held the results lock for over "
                                       f"{timeout:g} s; expected it to finish writing") from None
                time.sleep(0.01)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _default_mode() -> int:
    """The mode a new file gets from ``open()`` here: 0666 less the umask (read from /proc on
    Linux, so that no other thread sees a changed umask)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return 0o666 & ~int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    umask = os.umask(0o022)
    os.umask(umask)
    return 0o666 & ~umask


def replace_files(texts: Mapping[Path, str]) -> None:
    """Replace every file of ``texts`` (``{path: new text}``, all in existing folders) with its text,
    all or none: each text goes to a temporary name next to its file, flushed to disk, with the
    mode of the file it replaces (a new file gets the usual 0666 less umask); only when all are
    complete are they renamed into place. If a rename fails, the files already renamed are put
    back, so the files never disagree, and the ``OSError`` is raised. Hold
    :func:`results_lock` around reading the old files and this call."""
    temps, backups, done = {}, {}, []
    default = None
    try:
        for path, text in texts.items():
            path = Path(path)
            if path.is_file():
                mode = stat.S_IMODE(os.stat(path).st_mode)
            else:
                default = _default_mode() if default is None else default
                mode = default
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
            temps[path] = Path(tmp)
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                os.fchmod(f.fileno(), mode)
                f.write(text)
                f.flush()
                os.fsync(f.fileno())
            if path.is_file():  # a second name for the old file, to put it back if needed
                backups[path] = Path(tempfile.mktemp(dir=path.parent, prefix=f".{path.name}.", suffix=".old"))
                os.link(path, backups[path])
        for path, tmp in temps.items():
            os.replace(tmp, path)
            done.append(path)
    except BaseException:  # OSError, or Ctrl-C between two renames
        for path in done:  # undo the renames that happened
            if path in backups:
                os.replace(backups[path], path)
            else:
                path.unlink(missing_ok=True)
        raise
    finally:
        for tmp in [*temps.values(), *backups.values()]:
            tmp.unlink(missing_ok=True)


def write_table(frame: pd.DataFrame, path, *, float_format: str = "%.6g") -> Path:
    """Write one results table as CSV, whole or not at all, under its folder's
    :func:`results_lock` and keeping the mode of the file it replaces (:func:`replace_files`):
    the one way the package writes a results file. Returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = frame.to_csv(index=False, float_format=float_format)
    with results_lock(path.parent):
        replace_files({path: text})
    return path


def read_results_file(path: Path) -> pd.DataFrame:
    """A results CSV, refused unless it parses cleanly: UTF-8, ending with a line break, and every
    line with as many fields as the header. A file cut off mid-line (an interrupted copy, a full
    disk) would otherwise come back with a normal-looking last row holding a wrong value; the
    ``ValueError`` names the file and the line."""
    path = Path(path)
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line = raw[:err.start].count(b"\n") + 1
        raise ValueError(f"{path}, line {line}: is not UTF-8 text ({err.reason}); expected a CSV written by "
                         "recbook.bench. Nothing was written: repair or remove the file") from None
    if not text.strip():
        raise ValueError(f"{path}: is empty; expected a header line and result rows. Nothing was written: "
                         "remove the file (or run with --replace) to start a new one")
    lines = text.split("\n")
    if not text.endswith("\n"):
        raise ValueError(f"{path}, line {len(lines)}: is cut off (the file does not end with a line break: "
                         f"{lines[-1][-40:]!r}); expected complete lines. Nothing was written: restore the "
                         "file (e.g. from git) or remove that line")
    reader = csv.reader(io.StringIO(text))
    header = next(reader)
    for row in reader:
        if len(row) != len(header):
            raise ValueError(f"{path}, line {reader.line_num}: has {len(row)} field(s); expected {len(header)} "
                             "like the header. Nothing was written: restore the file (e.g. from git) or "
                             "remove that line")
    return pd.read_csv(io.StringIO(text))


def _save_fallback(results: pd.DataFrame) -> str:
    """Save ``results`` to a new file in the system's temporary folder; say where (or that it failed)."""
    try:
        fd, name = tempfile.mkstemp(prefix=f"recbook-bench-{os.getpid()}-{int(time.time())}-", suffix=".csv",
                                    dir=tempfile.gettempdir())
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(results.to_csv(index=False, float_format="%.6g"))
        return f"the new rows are saved in {name}"
    except OSError:
        return "the new rows could not be saved either"


def write(results: pd.DataFrame, out: Path, *, replace: bool = False) -> tuple[Path, Path]:
    """Merge ``results`` into ``out/bench.csv`` (by model, protocol and seed; ``replace=True``
    drops the old rows instead) and rewrite ``out/bench.md``; return the two paths.

    Safe with several runs writing into one folder at once: the merge happens under
    :func:`results_lock`, re-reading ``bench.csv`` inside the lock, so no run's rows are lost.
    An existing ``bench.csv`` that does not parse cleanly (:func:`read_results_file`) is refused
    and nothing is written. Both files are replaced together (:func:`replace_files`), keeping
    their modes, so the CSV and the markdown never disagree and a failed write leaves the old
    files as they were. When anything fails, the new rows are saved to a fallback CSV in the
    system's temporary folder, named in the error.
    """
    csv_path, md = Path(out) / "bench.csv", Path(out) / "bench.md"
    try:
        out = Path(out)
        if out.exists() and not out.is_dir():
            raise NotADirectoryError(errno.ENOTDIR, "exists and is not a folder", str(out))
        out.mkdir(parents=True, exist_ok=True)
        with results_lock(out):
            old = None
            if csv_path.is_file() and not replace:
                old = read_results_file(csv_path)
            merged = merge(old, results)
            replace_files({csv_path: merged.to_csv(index=False, float_format="%.6g"), md: summarize(merged)})
    except ValueError as err:
        raise ValueError(f"{err}; {_save_fallback(results)}") from None
    except OSError as err:
        raise OSError(f"writing {csv_path} and {md} failed ({err}); the previous files are unchanged and "
                      f"{_save_fallback(results)}") from err
    return csv_path, md


# --------------------------------------------------------------------------------------------
# Reading the results: what the chapters call
# --------------------------------------------------------------------------------------------

def read_results(name: str = "bench.csv") -> pd.DataFrame:
    """A result file of the book (``book/results/NAME``, e.g. the leaderboard's ``bench.csv``).

    Chapters read results this way instead of typing numbers. Looked up next to the notebook
    (``results/``), in the repository recbook was installed from (``pip install -e .``), and
    finally, where neither exists (Colab), downloaded from :data:`recbook.REPOSITORY_URL`.
    """
    from pathlib import Path

    from . import REPOSITORY_URL

    if not isinstance(name, str) or "/" in name or not name.endswith(".csv"):
        raise ValueError(f"name: expected a file name ending in .csv, got {name!r}")
    here = Path.cwd()
    candidates = [here / "results" / name, here / "book" / "results" / name,
                  Path(__file__).resolve().parents[1] / "book" / "results" / name]
    for path in candidates:
        if path.is_file():
            return pd.read_csv(path)
    url = f"{REPOSITORY_URL.rstrip('/')}/raw/HEAD/book/results/{name}"
    try:
        return pd.read_csv(url)
    except Exception as err:  # no network, or no such file
        raise FileNotFoundError(f"{name}: not found in {[str(c.parent) for c in candidates]} "
                                f"nor at {url} ({err})") from None


def seed_comparison(results: pd.DataFrame, a: str = "LR", b: str = "FM", *, protocol: str = "ctr",
                    metrics: Sequence[str] = ("test_auc", "valid_auc", "test_logloss")) -> pd.DataFrame:
    """Model ``b`` against model ``a`` seed by seed, from the leaderboard's results.

    ``results`` is ``book/results/bench.csv`` (one row per model, protocol and seed). Returns one
    row per seed both models ran with, and for each metric the two values and the paired
    difference ``b - a`` (columns ``"<metric> <a>"``, ``"<metric> <b>"``, ``"<metric> <b> − <a>"``).
    A difference is worth reporting only when it keeps its sign across seeds and exceeds the
    seed-to-seed spread.
    """
    require_columns(results, ["model", "protocol", "seed", *metrics], name="results")
    rows = results[results["protocol"] == protocol]
    tables = {}
    for name in (a, b):
        mine = rows[rows["model"] == name]
        if mine.empty:
            raise ValueError(f"results: no rows of model {name!r} under protocol {protocol!r}")
        if mine["seed"].duplicated().any():
            raise ValueError(f"results: model {name!r} has several rows for one seed")
        tables[name] = mine.set_index("seed")[list(metrics)]
    seeds = sorted(set(tables[a].index) & set(tables[b].index))
    if not seeds:
        raise ValueError(f"results: models {a!r} and {b!r} share no seed")
    out = pd.DataFrame(index=pd.Index(seeds, name="seed"))
    for m in metrics:
        out[f"{m} {a}"] = tables[a].loc[seeds, m].to_numpy(float)
        out[f"{m} {b}"] = tables[b].loc[seeds, m].to_numpy(float)
        out[f"{m} {b} − {a}"] = out[f"{m} {b}"] - out[f"{m} {a}"]
    return out


def _parse_list(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m recbook.bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--models", type=_parse_list, default=None,
                   help="comma-separated model names (default: all registered)")
    p.add_argument("--seeds", type=_parse_list, default=["0", "1", "2"], help="comma-separated seeds")
    p.add_argument("--threads", type=int, default=1, help="torch threads while training (default 1)")
    p.add_argument("--jobs", type=int, default=1,
                   help="runs at once, each in its own process (default 1; on 2 cores: 2)")
    p.add_argument("--quick", action="store_true", help=f"at most {QUICK_EPOCHS} epochs per model")
    p.add_argument("--out", type=Path, default=None, help="output folder")
    p.add_argument("--replace", action="store_true",
                   help="replace the results file instead of merging these rows into it")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--list", action="store_true", help="list the registered models and exit")
    args = p.parse_args(argv)
    if args.list:
        for e in REGISTRY.values():
            print(f"{e.name:16s} {e.protocol:10s} {e.description}")
        return 0
    try:
        seeds = [int(s) for s in args.seeds]
    except ValueError:
        p.error(f"--seeds: expected comma-separated integers, got {','.join(args.seeds)!r}")
    if args.threads < 1:
        p.error(f"--threads: expected a positive integer, got {args.threads}")
    if args.jobs < 1:
        p.error(f"--jobs: expected a positive integer, got {args.jobs}")
    out = args.out or (QUICK_OUT if args.quick else DEFAULT_OUT)
    try:
        if args.models is not None and not args.models:
            raise ValueError("models: is empty; expected one or more comma-separated model names")
        _check_models(args.models)
        _check_seeds(seeds)
        _check_out(out)
        if not args.replace and (out / "bench.csv").is_file():
            read_results_file(out / "bench.csv")  # a damaged file is refused now, not after training
    except ValueError as e:
        p.error(str(e))
    except OSError as e:
        p.error(f"out: cannot read {out / 'bench.csv'} ({e}); expected a readable results file")
    jobs = args.jobs
    if jobs > available_cpus():
        print(f"{p.prog}: {_jobs_message(jobs)}", file=sys.stderr)
        jobs = available_cpus()
    first = [True]
    written = []

    class WriteFailed(Exception):
        pass

    def save(rows: pd.DataFrame) -> None:
        try:
            write(rows, out, replace=args.replace and first[0])
        except (OSError, ValueError) as err:
            raise WriteFailed(str(err)) from None
        first[0] = False
        written.extend(rows["model"].unique())

    def saved() -> str:
        return (f"the rows of {', '.join(written)} are in {out / 'bench.csv'}" if written
                else f"no rows were written to {out / 'bench.csv'}")

    try:
        results = run(args.models, seeds, threads=args.threads, quick=args.quick, jobs=jobs,
                      progress=not args.no_progress, on_model_done=save)
    except ValueError as e:
        p.error(str(e))
    except WriteFailed as e:
        print(f"{p.prog}: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{p.prog}: interrupted; {saved()}, the runs not finished were dropped", file=sys.stderr)
        return 130
    print(summarize(results))
    print(f"wrote {out / 'bench.csv'} and {out / 'bench.md'} ({len(results)} new row(s) merged)")
    return 0


_register_builtin()

if __name__ == "__main__":
    sys.exit(main())

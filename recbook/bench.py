"""The leaderboard: train and evaluate the book's models on the book's protocols.

``python -m recbook.bench`` (or ``make bench``) trains every registered model with several seeds,
evaluates it on the test split, and writes

* ``book/results/bench.csv`` — one row per model x seed: every test metric, epochs, wall and
  process-CPU seconds per epoch, thread count and library versions;
* ``book/results/bench.md`` — a markdown table of mean ± std per model.

Same seeds, same machine → same metrics. ``--quick`` caps training at a small budget (for a smoke
run) and writes under ``_build/bench-quick/`` unless ``--out`` says otherwise, so the committed
results always come from full runs.

A model registers itself with :func:`register` (name, protocol, builder, training settings); later
chapters add theirs to :data:`REGISTRY`.
"""
from __future__ import annotations

import argparse
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from .train import evaluate_ctr, fit, library_versions, num_threads, seed_everything

DEFAULT_OUT = Path("book") / "results"
QUICK_OUT = Path("_build") / "bench-quick"
QUICK_EPOCHS = 2


@dataclass(frozen=True)
class Entry:
    """How the leaderboard trains one model.

    ``build(data)`` returns a fresh model for the protocol's data; ``fit_kwargs`` go to
    :func:`recbook.train.fit`; ``evaluate(model, split)`` returns the test metrics.
    """

    name: str
    protocol: str
    build: Callable
    fit_kwargs: dict = field(default_factory=dict)
    evaluate: Callable = evaluate_ctr
    description: str = ""


REGISTRY: dict[str, Entry] = {}


def register(entry: Entry) -> Entry:
    if entry.name in REGISTRY:
        raise ValueError(f"name: a model called {entry.name!r} is already registered")
    REGISTRY[entry.name] = entry
    return entry


# The CTR protocol's shared settings (see the FM chapter): embedding 16, batch 1024, Adam 1e-3,
# early stopping on validation AUC. `epochs` is a cap, high enough that early stopping ends training.
CTR_FIT = dict(batch_size=1024, lr=1e-3, epochs=100, patience=3, metric="auc")


def _register_builtin():
    from .models import FactorizationMachine, LogisticRegression

    register(Entry("LR", "ctr", lambda d: LogisticRegression(d.schema), dict(CTR_FIT),
                   description="logistic regression on one-hot fields"))
    register(Entry("FM", "ctr", lambda d: FactorizationMachine(d.schema, dim=16), dict(CTR_FIT),
                   description="factorization machine, k = 16"))


def _load_ctr():
    from .data import ctr_protocol, load_movielens100k

    return ctr_protocol(load_movielens100k())


# Protocol name -> loader of its data (an object with .train, .valid, .test). Loaded once per run.
PROTOCOLS: dict[str, Callable] = {"ctr": _load_ctr}


def load_protocol(name: str):
    """The data set a protocol needs."""
    if name not in PROTOCOLS:
        raise ValueError(f"protocol: unknown protocol {name!r}; expected one of {sorted(PROTOCOLS)}")
    return PROTOCOLS[name]()


def run_one(entry: Entry, data, seed: int, *, threads: int, quick: bool, progress: bool = True) -> dict:
    """Train and test one model with one seed; return the result row."""
    kwargs = dict(entry.fit_kwargs)
    if quick:
        kwargs["epochs"] = min(kwargs.get("epochs", QUICK_EPOCHS), QUICK_EPOCHS)
    with num_threads(threads):
        seed_everything(seed)
        model = entry.build(data)
        t0 = time.perf_counter()
        res = fit(model, data.train, data.valid, seed=seed, threads=threads, progress=progress, **kwargs)
        train_seconds = time.perf_counter() - t0
        test = entry.evaluate(model, data.test)
    h = res.history
    row = {"model": entry.name, "protocol": entry.protocol, "seed": seed}
    row.update({f"test_{k}": float(v) for k, v in test.items()})
    row.update({
        f"valid_{res.metric}": res.best_score,
        "epochs": len(h), "best_epoch": res.best_epoch,
        "wall_s_per_epoch": float(h["seconds"].mean()),
        "cpu_s_per_epoch": float(h["cpu_seconds"].mean()),
        "train_s_total": train_seconds,
        "threads": threads, "quick": quick,
        "n_parameters": sum(p.numel() for p in model.parameters()),
        "machine": platform.machine(),
    })
    row.update(library_versions())
    return row


def summarize(results: pd.DataFrame) -> str:
    """Markdown table: mean ± std of every test metric and the per-epoch costs, per model."""
    metrics = [c for c in results.columns if c.startswith("test_")] + ["wall_s_per_epoch", "cpu_s_per_epoch", "epochs"]
    lines = ["| model | protocol | seeds | " + " | ".join(m.replace("test_", "") for m in metrics) + " |",
             "|" + "---|" * (len(metrics) + 3)]
    for (model, protocol), g in results.groupby(["model", "protocol"], sort=False):
        cells = []
        for m in metrics:
            v = g[m].dropna()
            if v.empty:
                cells.append("")
            elif m.startswith("test_"):
                cells.append(f"{v.mean():.4f} ± {v.std(ddof=0):.4f}")
            else:
                cells.append(f"{v.mean():.2f} ± {v.std(ddof=0):.2f}")
        lines.append(f"| {model} | {protocol} | {len(g)} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def run(models=None, seeds=(0, 1, 2), *, threads: int = 1, quick: bool = False, progress: bool = True
        ) -> pd.DataFrame:
    """Run the leaderboard and return its rows (one per model x seed)."""
    if not REGISTRY:
        _register_builtin()
    names = list(REGISTRY) if not models else list(models)
    unknown = [m for m in names if m not in REGISTRY]
    if unknown:
        raise ValueError(f"models: unknown model(s) {unknown}; expected some of {list(REGISTRY)}")
    if not seeds:
        raise ValueError("seeds: expected at least one seed")
    rows, datasets = [], {}
    for name in names:
        entry = REGISTRY[name]
        if entry.protocol not in datasets:
            datasets[entry.protocol] = load_protocol(entry.protocol)
        for seed in seeds:
            rows.append(run_one(entry, datasets[entry.protocol], int(seed), threads=threads, quick=quick,
                                progress=progress))
    return pd.DataFrame(rows)


def write(results: pd.DataFrame, out: Path) -> tuple[Path, Path]:
    """Write the CSV and the markdown summary atomically; return their paths."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    csv, md = out / "bench.csv", out / "bench.md"
    for path, text in ((csv, results.to_csv(index=False, float_format="%.6g")), (md, summarize(results))):
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)
    return csv, md


def _parse_list(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m recbook.bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--models", type=_parse_list, default=None,
                   help="comma-separated model names (default: all registered)")
    p.add_argument("--seeds", type=_parse_list, default=["0", "1", "2"], help="comma-separated seeds")
    p.add_argument("--threads", type=int, default=1, help="torch threads while training (default 1)")
    p.add_argument("--quick", action="store_true", help=f"at most {QUICK_EPOCHS} epochs per model")
    p.add_argument("--out", type=Path, default=None, help="output folder")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--list", action="store_true", help="list the registered models and exit")
    args = p.parse_args(argv)
    if not REGISTRY:
        _register_builtin()
    if args.list:
        for e in REGISTRY.values():
            print(f"{e.name:12s} {e.protocol:8s} {e.description}")
        return 0
    try:
        seeds = [int(s) for s in args.seeds]
    except ValueError:
        p.error(f"--seeds: expected comma-separated integers, got {','.join(args.seeds)!r}")
    if args.threads < 1:
        p.error(f"--threads: expected a positive integer, got {args.threads}")
    try:
        results = run(args.models, seeds, threads=args.threads, quick=args.quick, progress=not args.no_progress)
    except ValueError as e:
        p.error(str(e))
    out = args.out or (QUICK_OUT if args.quick else DEFAULT_OUT)
    csv, md = write(results, out)
    print(summarize(results))
    print(f"wrote {csv} and {md}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Process-CPU seconds per training epoch of leaderboard entries, as ``fit`` measures them.

Builds each entry as the leaderboard does (seed 0, the entry's fit settings, one torch thread)
and trains it one epoch at a time without validation, so only the training loop is timed
(``fit``'s ``cpu_seconds``, which the leaderboard averages into ``cpu_s_per_epoch``, leaves
validation out too). Prints the median over the epochs of each entry:

    python benchmarks/epoch_time.py --entries WideDeep,DeepFM --epochs 10

A timing on a shared machine means little on its own. ``--baseline DIR`` compares with another
version of the package (``DIR/recbook``, e.g. from ``git archive OLD recbook | tar -x -C DIR``)
in the same process, alternating the two epoch by epoch (the order flips every round), and
prints both medians and the median paired difference:

    python benchmarks/epoch_time.py --entries WideDeep,DeepFM --epochs 10 --baseline /tmp/old
"""
from __future__ import annotations

import argparse
import importlib
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

import torch


def _load(package: str):
    return importlib.import_module(f"{package}.bench"), importlib.import_module(f"{package}.train")


def _baseline_package(directory: str) -> str:
    """Copy ``directory/recbook`` to a temporary package ``recbook_baseline`` and return its name
    (the package imports itself relatively, so both versions live side by side)."""
    src = Path(directory) / "recbook"
    if not (src / "__init__.py").is_file():
        raise SystemExit(f"--baseline: expected a recbook package at {src}")
    root = Path(tempfile.mkdtemp(prefix="epoch_time_"))
    shutil.copytree(src, root / "recbook_baseline")
    sys.path.insert(0, str(root))
    return "recbook_baseline"


def _trainers(package: str, names: list[str]) -> dict:
    bench, train = _load(package)
    data = {}
    out = {}
    for n in names:
        entry = bench.REGISTRY[n]
        if entry.protocol not in data:
            data[entry.protocol] = bench.PROTOCOLS[entry.protocol].load()
        d = data[entry.protocol]
        kwargs = {k: v for k, v in entry.fit.items() if k not in ("epochs", "patience", "metric")}
        train.seed_everything(0)
        model = entry.build(d)
        rows = (entry.train_data or bench.PROTOCOLS[entry.protocol].train_data)(d)

        def one_epoch(seed, fit=train.fit, model=model, rows=rows, kwargs=kwargs):
            res = fit(model, rows, None, epochs=1, seed=seed, threads=1, progress=False, **kwargs)
            return float(res.history["cpu_seconds"].iloc[0])

        out[n] = one_epoch
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--entries", default="WideDeep,DeepFM", help="comma-separated leaderboard entries")
    p.add_argument("--epochs", type=int, default=5, help="epochs timed per entry (and version)")
    p.add_argument("--baseline", help="directory holding another version's recbook package")
    args = p.parse_args()
    torch.set_num_threads(1)
    names = [n for n in args.entries.split(",") if n]
    versions = {"current": _trainers("recbook", names)}
    if args.baseline:
        versions = {"baseline": _trainers(_baseline_package(args.baseline), names), **versions}
    secs = {(v, n): [] for v in versions for n in names}
    for epoch in range(args.epochs):
        order = list(versions) if epoch % 2 == 0 else list(versions)[::-1]
        for n in names:
            for v in order:
                secs[(v, n)].append(versions[v][n](epoch))
    for n in names:
        line = [n] + [f"{v} median {statistics.median(secs[(v, n)]):.3f}" for v in versions]
        if args.baseline:
            diff = [a - b for a, b in zip(secs[("baseline", n)], secs[("current", n)])]
            line.append(f"saving median {statistics.median(diff):+.3f} "
                        f"(positive in {sum(d > 0 for d in diff)}/{len(diff)})")
        print("\t".join(line) + "\tcpu_s/epoch", flush=True)


if __name__ == "__main__":
    main()

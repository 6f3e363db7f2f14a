"""Process-CPU seconds per training epoch of leaderboard entries, as ``fit`` measures them.

Builds each entry as the leaderboard does (seed 0, the entry's fit settings, one torch thread)
and trains it for a few epochs without validation, so only the training loop is timed; prints
one line per entry with the median and every epoch's CPU seconds.

    python benchmarks/epoch_time.py --entries WideDeep,DeepFM --epochs 3

On a shared machine only interleaved A/B runs (old and new code in alternation) mean anything.
"""
from __future__ import annotations

import argparse
import statistics

import torch

from recbook import bench
from recbook.train import fit, seed_everything


def epoch_cpu_seconds(name: str, data, epochs: int, threads: int = 1) -> list[float]:
    entry = bench.REGISTRY[name]
    kwargs = dict(entry.fit)
    for k in ("epochs", "patience", "metric"):
        kwargs.pop(k, None)
    seed_everything(0)
    model = entry.build(data)
    train = (entry.train_data or bench.PROTOCOLS[entry.protocol].train_data)(data)
    res = fit(model, train, None, epochs=epochs, seed=0, threads=threads, progress=False, **kwargs)
    return [float(s) for s in res.history["cpu_seconds"]]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--entries", default="WideDeep,DeepFM")
    p.add_argument("--epochs", type=int, default=3)
    args = p.parse_args()
    torch.set_num_threads(1)
    names = [n for n in args.entries.split(",") if n]
    protocols = {bench.REGISTRY[n].protocol for n in names}
    data = {pr: bench.PROTOCOLS[pr].load() for pr in protocols}
    for n in names:
        secs = epoch_cpu_seconds(n, data[bench.REGISTRY[n].protocol], args.epochs)
        print(f"{n}\tmedian {statistics.median(secs):.3f} cpu_s/epoch\t"
              + " ".join(f"{s:.3f}" for s in secs), flush=True)


if __name__ == "__main__":
    main()

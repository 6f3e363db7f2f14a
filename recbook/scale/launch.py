"""Start a distributed run from Python (a notebook, a test) and read its results back.

:func:`run_distributed` writes the configuration, starts ``torchrun --standalone
--nproc_per_node=N -m recbook.scale.worker`` in a new process group with one thread per process,
waits at most ``timeout`` seconds (then ends the whole group: no process is left behind) and
returns what rank 0 wrote. ``python -m recbook.scale.launch`` runs the larger sizes and writes
``book/results/scale_cost.csv``, ``scale_stream.csv`` and ``scale_run.json`` (everything,
including the exactness checks and the configuration).
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

from .._checks import require_positive_int

__all__ = ["DEFAULTS", "LARGE", "TASKS", "command", "cost_table", "main", "run_distributed", "stream_frame"]

DEFAULTS = {
    "tasks": ["ddp_exact", "torchrec_exact", "cost", "stream"],
    "seed": 0, "dim": 16, "hidden": [64], "batch": 4096,
    # the exactness checks: four tables of different sizes, so that a plan has something to place
    "exact_rows": [50_000, 20_000, 1_000, 100],
    "cost_sizes": [100_000, 1_000_000], "cost_fields": 2, "cost_steps": 3, "warmup": 1,
    "strategies": ["single", "ddp_dense", "ddp_sparse", "torchrec"], "dense_max_rows": 1_000_000,
    # the streamed log: rows generated and counted, rows trained on (one pass)
    "stream_rows": 1_000_000, "stream_table_rows": 1_000_000, "chunk_rows": 65_536, "train_rows": 500_000,
    "lr": 0.05, "counts_path": None,
}
TASKS = ("ddp_exact", "torchrec_exact", "cost", "stream")
# `python -m recbook.scale.launch`: the sizes the page shows beside its live run
LARGE = dict(DEFAULTS, cost_sizes=[100_000, 1_000_000, 4_000_000, 10_000_000], dense_max_rows=4_000_000,
             cost_steps=5, warmup=2,
             stream_rows=100_000_000, stream_table_rows=10_000_000, train_rows=20_000_000)


def command(nproc: int = 2, config: str = "CONFIG.json", out: str = "OUT.json") -> list[str]:
    """The command line that starts ``nproc`` worker processes on this machine."""
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
            "-m", "recbook.scale.worker", config, out]


def run_distributed(config: dict | None = None, *, nproc: int = 2, timeout: float = 300, **overrides) -> dict:
    """Run the worker tasks on ``nproc`` local processes (gloo) and return rank 0's results.

    ``config`` (default :data:`DEFAULTS`) and keyword ``overrides`` name the tasks and sizes.
    Raises ``TimeoutError`` after ``timeout`` seconds (having ended every process it started) and
    ``RuntimeError`` with the end of the workers' error output when they fail.
    """
    nproc = require_positive_int(nproc, name="nproc")
    if not isinstance(timeout, (int, float)) or isinstance(timeout, bool) or timeout <= 0:
        raise ValueError(f"timeout: expected a positive number of seconds, got {timeout!r}")
    cfg = dict(DEFAULTS if config is None else config)
    unknown = sorted(set(overrides) - set(DEFAULTS))
    if unknown:
        raise ValueError(f"overrides: unknown setting(s) {unknown}; expected some of {sorted(DEFAULTS)}")
    cfg.update(overrides)
    bad = sorted(set(cfg["tasks"]) - set(TASKS))
    if bad:
        raise ValueError(f"tasks: unknown task(s) {bad}; expected some of {list(TASKS)}")
    if cfg["batch"] % nproc:
        raise ValueError(f"batch: expected a multiple of nproc={nproc}, got {cfg['batch']}")
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONWARNINGS="ignore",
               TORCH_CPP_LOG_LEVEL="ERROR", LOGLEVEL="ERROR")
    with tempfile.TemporaryDirectory(prefix="recbook-scale-") as tmp:
        cfg_path, out_path, log_path = Path(tmp, "config.json"), Path(tmp, "out.json"), Path(tmp, "log.txt")
        cfg_path.write_text(json.dumps(cfg), encoding="utf-8")
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(command(nproc, str(cfg_path), str(out_path)), stdout=log,
                                    stderr=subprocess.STDOUT, env=env, start_new_session=True)
            try:
                rc = proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                _end_group(proc)
                raise TimeoutError(f"the {nproc} worker processes did not finish within {timeout} s") from None
            except BaseException:
                _end_group(proc)
                raise
        if rc != 0 or not out_path.exists():
            tail = log_path.read_text(encoding="utf-8", errors="replace")[-3000:]
            raise RuntimeError(f"the worker processes failed (exit status {rc}):\n{tail}")
        return json.loads(out_path.read_text(encoding="utf-8"))


def _descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (Linux ``/proc``; empty elsewhere). torchrun starts each worker
    in a session of its own, so ending the launcher's group alone may not reach them."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = entry.read_text().rsplit(")", 1)[1].split()
            children.setdefault(int(fields[1]), []).append(int(entry.parent.name))
        except (OSError, IndexError, ValueError):
            continue
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def _end_group(proc: subprocess.Popen) -> None:
    """End the launcher and its workers: the processes run_distributed started, by their ids."""
    workers = _descendants(proc.pid)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in workers:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout=10)
            break
        except subprocess.TimeoutExpired:
            continue
    proc.wait()


def cost_table(results: dict):
    """The ``cost`` task's rows as a DataFrame, with milliseconds and megabytes (2^20 bytes)."""
    import pandas as pd
    table = pd.DataFrame(results["cost"])
    table["step_ms"] = table["step_s"] * 1000
    table["state_mb"] = table["state_bytes"] / 2 ** 20
    table["rss_mb"] = table["rss_bytes"] / 2 ** 20
    return table


def stream_frame(results: dict):
    """The ``stream`` task's numbers as a one-row DataFrame (without the loss curve)."""
    import pandas as pd
    row = {k: v for k, v in results["stream"].items() if not isinstance(v, (list, dict))}
    row["wall_s"] = results.get("wall_s")
    return pd.DataFrame([row])


def main(argv=None) -> int:
    import argparse
    import time
    p = argparse.ArgumentParser(prog="python -m recbook.scale.launch",
                                description="The scaling chapter's larger run: cost per strategy up to 10M rows "
                                            "per table, and a 100M-row streamed log.")
    p.add_argument("--out", type=Path, default=Path("book") / "results", help="folder for scale_*.csv/json")
    p.add_argument("--sizes", default=",".join(str(s) for s in LARGE["cost_sizes"]))
    p.add_argument("--stream-rows", type=int, default=LARGE["stream_rows"])
    p.add_argument("--train-rows", type=int, default=LARGE["train_rows"])
    p.add_argument("--timeout", type=float, default=3 * 3600)
    args = p.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",") if s]
    t = time.perf_counter()
    results = run_distributed(LARGE, timeout=args.timeout, cost_sizes=sizes, stream_rows=args.stream_rows,
                              train_rows=args.train_rows)
    results["wall_s"] = time.perf_counter() - t
    args.out.mkdir(parents=True, exist_ok=True)
    table = cost_table(results)
    table.to_csv(args.out / "scale_cost.csv", index=False, float_format="%.6g")
    stream_frame(results).to_csv(args.out / "scale_stream.csv", index=False, float_format="%.6g")
    keep = {k: results[k] for k in ("world", "config", "seconds", "wall_s", "ddp_exact", "torchrec_exact", "stream")}
    (args.out / "scale_run.json").write_text(json.dumps(keep, indent=1) + "\n", encoding="utf-8")
    print(table[["rows", "strategy", "processes", "step_ms", "state_mb", "rss_mb"]].to_string(index=False))
    print(f"wall time {results['wall_s']:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

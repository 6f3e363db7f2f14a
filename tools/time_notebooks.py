"""Execute every notebook of the book in a fresh kernel and report its wall time.

    python tools/time_notebooks.py [book/*.ipynb] [--budget 60]

Exits non-zero if a notebook fails or runs over the budget (seconds). This is the measurement
behind the per-notebook time budget; the tests never time anything themselves.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient


def time_notebook(path: Path, timeout: int = 600) -> float:
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}})
    t0 = time.perf_counter()
    client.execute()
    return time.perf_counter() - t0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("notebooks", nargs="*", type=Path)
    p.add_argument("--budget", type=float, default=60.0, help="seconds allowed per notebook")
    args = p.parse_args(argv)
    paths = args.notebooks or sorted(Path("book").glob("*.ipynb"))
    status, total = 0, 0.0
    for path in paths:
        try:
            seconds = time_notebook(path)
        except Exception as e:  # report every notebook, then fail
            print(f"{path}: FAILED ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})")
            status = 1
            continue
        total += seconds
        flag = "" if seconds <= args.budget else f"  OVER BUDGET ({args.budget:g} s)"
        print(f"{path}: {seconds:6.1f} s{flag}", flush=True)
        if seconds > args.budget:
            status = 1
    print(f"total: {total:.1f} s for {len(paths)} notebook(s)")
    return status


if __name__ == "__main__":
    sys.exit(main())

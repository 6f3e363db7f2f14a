"""Collect the timing run (``make bench-speed``) into ``book/results/speed.csv|md``.

``run.sh --speed`` trains, one process after another on the same machine: recbook's entries
(``python -m recbook.bench --quick --seeds 0``, at most two epochs each) and every library model
that has a recbook counterpart (``--seeds 0 --max-epochs 2``), with the library's default
architecture and, for the models with an MLP, again with the book's (``--arch book``: embedding 16,
MLP 256-128 without dropout, the same 8 fields; DIN: activation unit 36, MLP 200-80). The second
kind of row has the source ``"<library> (book's architecture)"`` and ``arch = "book"``. This script reads both — recbook's
results file and the library runs of that invocation — and writes one row per (source, model):
CPU and wall seconds per epoch with one thread, the epochs timed, and the run's identifier, which
is the same on every row (they come from one run). Accuracy is not the point of this file: two
epochs are far from converged; ``libraries.csv`` and ``bench.csv`` hold the full runs.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pandas as pd

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT))

from common import RUNS  # noqa: E402

from recbook.chapters.leaderboard import LIBRARY_MODELS  # noqa: E402

OUT = ROOT / "book" / "results"
FAMILY_ORDER = ["LR", "FM", "WideDeep", "DeepFM", "DIN", "GRU4Rec-XE", "TwoTower"]
BOOK_ARCH = " (book's architecture)"
COLUMNS = ["run", "source", "version", "model", "family", "arch", "protocol", "epochs", "cpu_s_per_epoch",
           "wall_s_per_epoch", "threads", "python", "torch", "machine", "cpu_count", "command"]


def recbook_rows(csv: Path, run: str) -> pd.DataFrame:
    b = pd.read_csv(csv)
    b = b[b["model"].isin(set(LIBRARY_MODELS.values()))]
    return pd.DataFrame({
        "run": run, "source": "recbook", "version": b["recbook"].astype(str), "model": b["model"],
        "family": b["model"], "arch": "book", "protocol": b["protocol"], "epochs": b["epochs"],
        "cpu_s_per_epoch": b["cpu_s_per_epoch"], "wall_s_per_epoch": b["wall_s_per_epoch"],
        "threads": b["threads"], "python": b["python"], "torch": b["torch"], "machine": b["machine"],
        "cpu_count": b["cpu_count"], "command": "python -m recbook.bench --quick --seeds 0",
    })


def library_rows(runs: Path, run: str) -> pd.DataFrame:
    rows = []
    for js in sorted(runs.glob("*/*.json")):
        r = json.loads(js.read_text())
        model, _, arch = r["model"].partition("#")
        if r.get("status") != "ok" or model not in LIBRARY_MODELS or "@" in r["model"]:
            continue
        source = r["library"] + (BOOK_ARCH if arch == "book" else "")
        rows.append({"run": run, "source": source, "version": r["library_version"], "model": model,
                     "family": LIBRARY_MODELS[model], "arch": arch or "library default",
                     "protocol": r["protocol"], "epochs": r["epochs"],
                     "cpu_s_per_epoch": r["cpu_s_per_epoch"], "wall_s_per_epoch": r["wall_s_per_epoch"],
                     "threads": r["threads"], "python": r.get("python"), "torch": r.get("torch"),
                     "machine": r.get("machine"), "cpu_count": r.get("cpu_count"), "command": r.get("command", "")})
    return pd.DataFrame(rows, columns=COLUMNS)


def summarize(frame: pd.DataFrame) -> str:
    """Markdown: per protocol, one line per model family, recbook beside each library."""
    blocks = []
    for protocol, rows in frame.groupby("protocol", sort=False):
        sources = list(dict.fromkeys(["recbook", *rows["source"]]))
        head = "| model | " + " | ".join(sources) + " | fastest library ÷ recbook |"
        lines = [f"### {protocol}", "", head, "|" + "---|" * (len(sources) + 2)]
        for family, g in rows.groupby("family", sort=False):
            cpu = g.groupby("source")["cpu_s_per_epoch"].min()
            libs = cpu.drop("recbook", errors="ignore")
            ratio = f"{libs.min() / cpu['recbook']:.1f}×" if "recbook" in cpu and len(libs) else ""
            cells = [f"{cpu[s]:.2f}" if s in cpu else "" for s in sources]
            lines.append(f"| {family} | " + " | ".join(cells) + f" | {ratio} |")
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--recbook", type=Path, required=True, help="recbook's results file of the timing run")
    p.add_argument("--run", required=True, help="identifier of the run (its start time)")
    p.add_argument("--out", type=Path, default=OUT, help="folder of speed.csv and speed.md")
    args = p.parse_args(argv)
    libs = library_rows(RUNS, args.run)
    if libs.empty:
        raise SystemExit(f"no library runs under {RUNS}; run `benchmarks/libraries/run.sh --speed`")
    frame = pd.concat([recbook_rows(args.recbook, args.run), libs], ignore_index=True)
    frame = frame.assign(_p=frame["protocol"].map({"ctr": 0, "sequence": 1, "retrieval": 2}),
                         _f=frame["family"].map(lambda f: FAMILY_ORDER.index(f) if f in FAMILY_ORDER else 99),
                         _s=frame["source"] != "recbook")
    frame = frame.sort_values(["_p", "_f", "_s", "source"], kind="stable")
    # (a library's row with the book's architecture sorts right after its default row)[COLUMNS].reset_index(drop=True)
    args.out.mkdir(parents=True, exist_ok=True)
    csv = args.out / "speed.csv"
    text = (f"CPU seconds per epoch with one thread, every row from one run ({args.run}) on one machine: "
            "recbook's entries and the libraries' models one after another, seed 0, two epochs each "
            "(`make bench-speed`).\n\n" + summarize(frame))
    md = args.out / "speed.md"
    from recbook.bench import replace_files, results_lock

    with results_lock(args.out):  # both files whole or neither, keeping their modes
        replace_files({csv: frame.to_csv(index=False, float_format="%.6g"), md: text})
    print(text)
    print(f"wrote {csv} ({len(frame)} rows) and {md}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

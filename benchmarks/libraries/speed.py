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

Last, in the same invocation, it times the floor under Wide & Deep and DeepFM: their MLP alone on
random inputs, as many rows per epoch as the CTR training set (:func:`mlp_floor`, the row with
source ``"MLP alone"`` and family ``"floor"``); ``--no-floor`` leaves it out.
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

from recbook.chapters.leaderboard import LIBRARY_MODELS, SAME_ARCHITECTURE  # noqa: E402

OUT = ROOT / "book" / "results"
FAMILY_ORDER = ["LR", "FM", "WideDeep", "DeepFM", "DIN", "GRU4Rec-XE", "TwoTower"]
BOOK_ARCH = " (book's architecture)"
COLUMNS = ["run", "source", "version", "model", "family", "arch", "protocol", "epochs", "cpu_s_per_epoch",
           "wall_s_per_epoch", "threads", "python", "torch", "machine", "cpu_count", "command"]


def recbook_rows(csv: Path, run: str) -> pd.DataFrame:
    b = pd.read_csv(csv)
    b = b[b["model"].isin(set(LIBRARY_MODELS.values()) | set(SAME_ARCHITECTURE.values()))]
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


FLOOR = "MLP alone"
"""Source of the floor row: the book's MLP (8 fields x 16 -> 256 -> 128 -> 1) trained alone."""


def mlp_floor(run: str, epochs: int = 3) -> pd.DataFrame:
    """The floor under Wide & Deep and DeepFM, timed in this run: the deep part's MLP alone
    (input 8 x 16, hidden 256-128, ReLU, Adam), trained on as many rows as the CTR split's training
    set, in batches of the same size, on random inputs, with one thread: what is left of an epoch
    when nothing but the MLP's own arithmetic is done. The median of ``epochs`` timed epochs
    after one untimed."""
    import platform
    import statistics
    import time

    import torch

    from recbook import __version__
    from recbook.bench import CTR_FIT, PROTOCOLS

    torch.set_num_threads(1)
    torch.manual_seed(0)
    rows = len(PROTOCOLS["ctr"].train_data(PROTOCOLS["ctr"].load())["label"])
    batch = int(CTR_FIT.get("batch_size", 1024))
    mlp = torch.nn.Sequential(torch.nn.Linear(128, 256), torch.nn.ReLU(), torch.nn.Linear(256, 128),
                              torch.nn.ReLU(), torch.nn.Linear(128, 1))
    opt = torch.optim.Adam(mlp.parameters(), lr=1e-3)
    x, y = torch.randn(rows, 128), torch.randint(0, 2, (rows,)).float()
    times = []
    for epoch in range(epochs + 1):
        c0 = time.process_time()
        for i in range(0, rows, batch):
            opt.zero_grad(set_to_none=True)
            loss = torch.nn.functional.binary_cross_entropy_with_logits(mlp(x[i:i + batch]).squeeze(1), y[i:i + batch])
            loss.backward()
            opt.step()
        if epoch:
            times.append(time.process_time() - c0)
    flops = 3 * 2 * (128 * 256 + 256 * 128 + 128 * 1) * rows  # forward, and backward at twice its cost
    cpu = statistics.median(times)
    print(f"{FLOOR}: {flops / 1e9:.1f} GFLOP per epoch, {cpu:.3f} CPU s per epoch ({flops / cpu / 1e9:.0f} GFLOP/s)")
    return pd.DataFrame([{
        "run": run, "source": FLOOR, "version": __version__, "model": "MLP 128-256-128-1", "family": "floor",
        "arch": "book", "protocol": "ctr", "epochs": epochs, "cpu_s_per_epoch": cpu, "wall_s_per_epoch": None,
        "threads": 1, "python": platform.python_version(), "torch": torch.__version__,
        "machine": platform.machine(), "cpu_count": __import__("os").cpu_count(),
        "command": f"benchmarks/libraries/speed.py ({flops / 1e9:.1f} GFLOP per epoch)"}], columns=COLUMNS)


def summarize(frame: pd.DataFrame) -> str:
    """Markdown: per protocol, one line per model family, recbook beside each library; then the
    floor (the MLP alone), when the run timed it."""
    floor = frame[frame["family"] == "floor"]
    frame = frame[frame["family"] != "floor"]
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
    for _, r in floor.iterrows():
        blocks.append(f"The floor under Wide & Deep and DeepFM, {r['source']} ({r['model']}, {r['command'].split('(')[-1].rstrip(')')}): "
                      f"{r['cpu_s_per_epoch']:.2f} CPU s per epoch.")
    return "\n\n".join(blocks) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--recbook", type=Path, required=True, help="recbook's results file of the timing run")
    p.add_argument("--run", required=True, help="identifier of the run (its start time)")
    p.add_argument("--out", type=Path, default=OUT, help="folder of speed.csv and speed.md")
    p.add_argument("--no-floor", action="store_true", help="do not time the MLP alone")
    args = p.parse_args(argv)
    libs = library_rows(RUNS, args.run)
    if libs.empty:
        raise SystemExit(f"no library runs under {RUNS}; run `benchmarks/libraries/run.sh --speed`")
    frame = pd.concat([recbook_rows(args.recbook, args.run), libs], ignore_index=True)
    frame = frame.assign(_p=frame["protocol"].map({"ctr": 0, "sequence": 1, "retrieval": 2}),
                         _f=frame["family"].map(lambda f: FAMILY_ORDER.index(f) if f in FAMILY_ORDER else 99),
                         _s=frame["source"] != "recbook")
    # (a library's row with the book's architecture sorts right after its default row)
    frame = frame.sort_values(["_p", "_f", "_s", "source"], kind="stable")[COLUMNS].reset_index(drop=True)
    if not args.no_floor:
        frame = pd.concat([frame, mlp_floor(args.run)], ignore_index=True)
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

"""Score every library run with recbook's own metrics and write the results files.

Run with recbook's environment after the library scripts:
``python benchmarks/libraries/collect.py``. For every run recorded under
``_build/libraries/runs/<library>/`` it computes the test (and validation) metrics from the saved
predictions with the functions the leaderboard uses (:func:`recbook.metrics.ctr_report`;
``recbook.bench``'s ``sequence`` and ``retrieval`` evaluations), writes one results file per library
(``_build/libraries/results/<library>.csv``) and merges all rows into
``book/results/libraries.csv`` (same columns as ``book/results/bench.csv`` where they apply, plus
``library``, ``library_version``, ``settings``, ``notes`` and ``command``) and a markdown summary
``book/results/libraries.md``. Rows are replaced by (library, model, protocol, seed); rows of runs
no longer on disk are kept.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT))

from common import BUILD, DATA, RUNS  # noqa: E402

OUT = ROOT / "book" / "results"
KEY = ["library", "model", "protocol", "seed"]
LIBRARY_ORDER = ["recbook", "DeepCTR-Torch", "torch-rechub", "RecBole", "GRU4Rec-official"]
MODEL_ORDER = ["LR", "FM", "WDL", "DeepFM", "DIN", "GRU4Rec", "SASRec"]
FIRST = ["library", "library_version", "model", "protocol", "seed", "status"]
LAST = ["epochs", "best_epoch", "wall_s_per_epoch", "cpu_s_per_epoch", "train_s_total", "threads",
        "settings", "notes", "command", "data_checksum", "python", "torch", "numpy", "pandas",
        "machine", "cpu_count"]


class _Scores:
    """A model stand-in that returns saved score matrices (for recbook.bench's evaluations)."""

    def __init__(self, scores: dict):
        self.scores = scores

    def score_items(self, data, split):
        return self.scores[split]


def _ctr_metrics(pred, split: str) -> dict:
    from recbook.metrics import ctr_report

    frame = pd.read_csv(DATA / f"ctr_{split}.csv", usecols=["label", "user"])
    p = np.clip(np.asarray(pred, dtype=np.float64).reshape(-1), 1e-7, 1 - 1e-7)
    if len(p) != len(frame):
        raise ValueError(f"{split}: {len(p)} predictions for {len(frame)} rows")
    logits = np.log(p) - np.log1p(-p)
    return ctr_report(frame["label"].to_numpy(), logits, frame["user"].to_numpy())


_SEQ = {}


def _sequence_data():
    if "data" not in _SEQ:
        from recbook.bench import load_protocol

        _SEQ["data"] = load_protocol("sequence")
    return _SEQ["data"]


def _ranking_metrics(protocol: str, pred, split: str) -> dict:
    from recbook.bench import PROTOCOLS

    return PROTOCOLS[protocol].evaluate(_Scores({split: np.asarray(pred)}), _sequence_data(), split)


def score(record: dict, npz: Path | None) -> dict:
    row = {k: record.get(k) for k in ("library", "library_version", "model", "protocol", "seed", "status")}
    if record.get("status") == "ok" and npz is not None and npz.is_file():
        pred = np.load(npz)
        for split in ("test", "valid"):
            if split not in pred.files:
                continue
            if record["protocol"] == "ctr":
                m = _ctr_metrics(pred[split], split)
            else:
                m = _ranking_metrics(record["protocol"], pred[split], split)
            if split == "test":
                row.update({f"test_{k}": float(v) for k, v in m.items()})
            else:
                main = {"ctr": "auc", "sequence": "recall@20", "retrieval": "recall@50"}[record["protocol"]]
                row[f"valid_{main}"] = float(m[main])
    row.update({
        "epochs": record.get("epochs"), "best_epoch": record.get("best_epoch"),
        "wall_s_per_epoch": record.get("wall_s_per_epoch"), "cpu_s_per_epoch": record.get("cpu_s_per_epoch"),
        "train_s_total": record.get("wall_s_total"), "threads": record.get("threads"),
        "settings": json.dumps(record.get("settings", {}), sort_keys=True),
        "notes": record.get("notes", ""), "command": record.get("command", ""),
        "data_checksum": record.get("data_checksum"),
    })
    for k in ("python", "torch", "numpy", "pandas", "machine", "cpu_count"):
        row[k] = record.get(k)
    return row


def _order(frame: pd.DataFrame) -> pd.DataFrame:
    metrics = [c for c in frame.columns if c.startswith("test_")]
    valid = [c for c in frame.columns if c.startswith("valid_")]
    rest = [c for c in frame.columns if c not in FIRST + LAST + metrics + valid]
    cols = [c for c in FIRST if c in frame] + metrics + valid + rest + [c for c in LAST if c in frame]
    lib_rank = frame["library"].map(lambda x: LIBRARY_ORDER.index(x) if x in LIBRARY_ORDER else 99)
    proto_rank = frame["protocol"].map({"ctr": 0, "sequence": 1, "retrieval": 2}).fillna(9)
    model_rank = frame["model"].map(lambda m: MODEL_ORDER.index(m) if m in MODEL_ORDER else 99)
    frame = frame.assign(_p=proto_rank, _l=lib_rank, _m=model_rank)
    frame = frame.sort_values(["_p", "_m", "_l", "model", "seed"], kind="stable")
    return frame.drop(columns=["_p", "_l", "_m"])[cols].reset_index(drop=True)


def recbook_rows(bench_csv: Path) -> pd.DataFrame:
    """recbook's own leaderboard rows (book/results/bench.csv), shaped like the library rows, for
    the side-by-side summary (they are not copied into libraries.csv)."""
    if not bench_csv.is_file():
        return pd.DataFrame()
    b = pd.read_csv(bench_csv)
    b = b[b["model"].isin(MODEL_ORDER) & ~b.get("quick", pd.Series(False, index=b.index)).astype(bool)]
    return b.assign(library="recbook", library_version=b["recbook"].astype(str), status="ok", notes="")


def summarize(frame: pd.DataFrame) -> str:
    """Markdown: per protocol, mean ± std over seeds of each library model's test metrics and costs."""
    blocks = []
    for protocol, rows in frame.groupby("protocol", sort=False):
        metrics = [c for c in rows.columns if c.startswith("test_") and rows[c].notna().any()
                   and not c.endswith("coverage") and not c.startswith("test_hit_rate")]
        cols = metrics + ["cpu_s_per_epoch", "epochs"]
        head = "| library | version | model | seeds | " + " | ".join(c.replace("test_", "") for c in cols) + " | notes |"
        lines = [f"### {protocol}", "", head, "|" + "---|" * (len(cols) + 5)]
        for (lib, model), g in rows.groupby(["library", "model"], sort=False):
            cells = []
            for c in cols:
                v = pd.to_numeric(g[c], errors="coerce").dropna()
                if v.empty:
                    cells.append("")
                elif c.startswith("test_"):
                    cells.append(f"{v.mean():.4f} ± {v.std(ddof=0):.4f}" if len(v) > 1 else f"{v.mean():.4f}")
                else:
                    cells.append(f"{v.mean():.2f}")
            ok = g["status"].eq("ok")
            note = "" if ok.all() else str(g.loc[~ok, "notes"].iloc[0]).replace("|", "/")
            lines.append(f"| {lib} | {g['library_version'].iloc[0]} | {model} | {int(ok.sum())} | "
                         + " | ".join(cells) + f" | {note} |")
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=OUT, help="folder of libraries.csv and libraries.md")
    args = p.parse_args(argv)
    rows = []
    for js in sorted(RUNS.glob("*/*.json")):
        record = json.loads(js.read_text())
        rows.append(score(record, js.with_suffix(".npz")))
    if not rows:
        raise SystemExit(f"no runs under {RUNS}; run the library scripts first")
    new = pd.DataFrame(rows)
    results = BUILD / "results"
    results.mkdir(parents=True, exist_ok=True)
    for lib, g in new.groupby("library"):
        _order(g).to_csv(results / f"{lib}.csv", index=False, float_format="%.6g")
    from recbook.bench import read_results_file, replace_files, results_lock

    csv = args.out / "libraries.csv"
    args.out.mkdir(parents=True, exist_ok=True)
    with results_lock(args.out):  # read, merge and write as one step: a concurrent run loses nothing
        if csv.is_file():
            old = read_results_file(csv)
            keys = set(map(tuple, new[KEY].astype(str).to_numpy()))
            old = old[~old[KEY].astype(str).apply(tuple, axis=1).isin(keys)]
            merged = pd.concat([old, new], ignore_index=True)
        else:
            merged = new
        merged = _order(merged)
        side = _order(pd.concat([merged, recbook_rows(args.out / "bench.csv")], ignore_index=True))
        text = ("Established libraries on the book's protocols (rows from libraries.csv), with recbook's own "
                "rows from bench.csv; mean ± std over seeds; CPU seconds per epoch with one thread.\n\n"
                + summarize(side))
        replace_files({csv: merged.to_csv(index=False, float_format="%.6g"), args.out / "libraries.md": text})
    print(text)
    print(f"wrote {csv} ({len(new)} run(s) scored) and {args.out / 'libraries.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

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
no longer on disk are kept. A model that a library script now drops (its ``DROPPED`` dict: the
library's model is broken, see the reason) is one row with status ``dropped`` and the reason in its
notes, whatever rows the table held for it before (runs made with ``--run-dropped`` stay in the
per-library file). Without any run on disk the committed table is collected again (the drops and
recbook's rows applied), nothing retrained.
"""
from __future__ import annotations

import argparse
import ast
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))  # common.py, also when imported from elsewhere

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


def declared_drops(folder: Path = HERE) -> pd.DataFrame:
    """The models the library scripts in ``folder`` drop: one row (library, model, protocol, notes)
    per entry of a script's ``DROPPED`` dict, its protocol from the script's ``PROTOCOL`` (default
    ``ctr``). Read from the scripts' source (``ast``), so the libraries need not be installed."""
    rows = []
    for script in sorted(Path(folder).glob("*_bench.py")):
        names = {}
        for node in ast.parse(script.read_text(encoding="utf-8")).body:
            if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
                if node.targets[0].id in ("LIBRARY", "PROTOCOL", "DROPPED"):
                    try:
                        names[node.targets[0].id] = ast.literal_eval(node.value)
                    except ValueError as e:
                        raise ValueError(f"{script.name}: {node.targets[0].id} must be a literal ({e})") from None
        drops = names.get("DROPPED", {})
        if not drops:
            continue
        if not isinstance(names.get("LIBRARY"), str) or not isinstance(drops, dict):
            raise ValueError(f"{script.name}: expected LIBRARY = '<name>' and DROPPED = {{model: reason}}")
        for model, reason in drops.items():
            rows.append({"library": names["LIBRARY"], "model": model,
                         "protocol": names.get("PROTOCOL", {}).get(model, "ctr"), "notes": str(reason)})
    return pd.DataFrame(rows, columns=["library", "model", "protocol", "notes"])


def apply_drops(table: pd.DataFrame, drops: pd.DataFrame) -> pd.DataFrame:
    """``table`` with every (library, model, protocol) of ``drops`` shown as dropped: its rows
    (metrics of a broken model, any seeds) replaced by one row with status ``dropped``, the
    library's version, the first seed it had (else 0) and the reason in ``notes``."""
    if drops.empty or table.empty:
        return table
    out = table
    for d in drops.itertuples(index=False):
        same_lib = out["library"] == d.library
        hit = same_lib & (out["model"] == d.model) & (out["protocol"] == d.protocol)
        if not hit.any() and not same_lib.any():
            continue  # this library has not been collected: nothing to show
        if hit.any() and out.loc[hit, "status"].eq("dropped").all() and hit.sum() == 1 \
                and out.loc[hit, "notes"].iloc[0] == d.notes:
            continue
        versions = out.loc[same_lib, "library_version"].dropna()
        seeds = pd.to_numeric(out.loc[hit, "seed"], errors="coerce").dropna()
        row = {"library": d.library, "library_version": versions.iloc[0] if len(versions) else np.nan,
               "model": d.model, "protocol": d.protocol, "seed": int(seeds.min()) if len(seeds) else 0,
               "status": "dropped", "settings": "{}", "notes": d.notes}
        out = pd.concat([out[~hit], pd.DataFrame([row])], ignore_index=True)[list(out.columns)]
    return out


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
    csv = args.out / "libraries.csv"
    if not rows and not csv.is_file():
        raise SystemExit(f"no runs under {RUNS}; run the library scripts first")
    if not rows:
        print(f"no runs under {RUNS}: collecting {csv} again (drops and recbook's rows), nothing new scored")
    new = pd.DataFrame(rows, columns=KEY) if not rows else pd.DataFrame(rows)
    if rows:
        results = BUILD / "results"
        results.mkdir(parents=True, exist_ok=True)
        for lib, g in new.groupby("library"):
            _order(g).to_csv(results / f"{lib}.csv", index=False, float_format="%.6g")
    from recbook.bench import read_results_file, replace_files, results_lock

    args.out.mkdir(parents=True, exist_ok=True)
    with results_lock(args.out):  # read, merge and write as one step: a concurrent run loses nothing
        if csv.is_file():
            old = read_results_file(csv)
            keys = set(map(tuple, new[KEY].astype(str).to_numpy()))
            old = old[~old[KEY].astype(str).apply(tuple, axis=1).isin(keys)]
            merged = pd.concat([old, new], ignore_index=True) if rows else old
        else:
            merged = new
        merged = _order(apply_drops(merged, declared_drops()))
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

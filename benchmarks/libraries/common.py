"""What every library script shares: the exported data, one thread, seeds, CPU timing, run records.

Imported by the library scripts inside their own virtual environments, so it needs nothing but
numpy, pandas and torch (never recbook). A script trains one model with one seed, then calls
:func:`save_run` with its validation and test predictions; ``collect.py`` (recbook's environment)
scores them with recbook's own metrics and writes the results files.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sys
import time
import traceback
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
BUILD = Path(os.environ.get("RECBOOK_LIBRARIES_BUILD", ROOT / "_build" / "libraries"))
DATA = BUILD / "data"
# Where runs are written; the timing run (`run.sh --speed`) keeps its own folder.
RUNS = Path(os.environ.get("RECBOOK_LIBRARIES_RUNS", BUILD / "runs"))

# The book's CTR protocol settings (recbook.bench.CTR_FIT): embedding 16, batch 1024, Adam 1e-3,
# at most 100 epochs, early stopping on validation AUC with patience 3.
CTR = dict(embedding_dim=16, batch_size=1024, lr=1e-3, epochs=100, patience=3)
SEQUENCE_KS = (10, 20)
SEEDS = (0, 1, 2)


def one_thread() -> None:
    import torch

    torch.set_num_threads(1)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:  # already set, or work already started
        pass


def seed_everything(seed: int) -> None:
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def meta() -> dict:
    path = DATA / "meta.json"
    if not path.is_file():
        raise SystemExit(f"{path} is missing: run `python benchmarks/libraries/export.py` first")
    return json.loads(path.read_text())


def ctr_split(split: str) -> pd.DataFrame:
    return pd.read_csv(DATA / f"ctr_{split}.csv")


def sequences() -> pd.DataFrame:
    return pd.read_csv(DATA / "sequences.csv")


def items() -> pd.DataFrame:
    return pd.read_csv(DATA / "items.csv")


def ctr_arrays(inputs, meta: dict, din: bool):
    """The three CTR splits as a library's arrays: ``x[split] = inputs(frame, meta, item_year, din)``
    (``item_year``: the year bucket of every item code, 0 where a code has no item) and
    ``y[split]`` the float32 labels."""
    table = items()
    item_year = np.zeros(meta["field_sizes"]["item_id"], dtype=np.int64)
    item_year[table["item_id"].to_numpy()] = table["year_bucket"].to_numpy()
    splits = {s: ctr_split(s) for s in ("train", "valid", "test")}
    x = {s: inputs(f, meta, item_year, din) for s, f in splits.items()}
    y = {s: f["label"].to_numpy(np.float32) for s, f in splits.items()}
    return x, y


class CPUClock:
    """Process CPU seconds, with the time spent inside wrapped functions (validation) kept apart."""

    def __init__(self):
        self.excluded = 0.0
        self.excluded_wall = 0.0

    def exclude(self, fn):
        """``fn`` wrapped so that its CPU time is not counted as training time."""
        clock = self

        def wrapped(*args, **kwargs):
            c0, w0 = time.process_time(), time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                clock.excluded += time.process_time() - c0
                clock.excluded_wall += time.perf_counter() - w0

        wrapped.__wrapped__ = fn
        return wrapped

    @contextmanager
    def training(self):
        """Measure the block: ``self.cpu`` and ``self.wall`` hold its seconds minus the excluded ones."""
        self.excluded = self.excluded_wall = 0.0
        c0, w0 = time.process_time(), time.perf_counter()
        try:
            yield self
        finally:
            self.cpu = time.process_time() - c0 - self.excluded
            self.wall = time.perf_counter() - w0 - self.excluded_wall


def versions(*packages) -> dict:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for p in ("torch", "numpy", "pandas", *packages):
        try:
            out[p] = version(p)
        except PackageNotFoundError:
            out[p] = ""
    return out


def run_path(library: str, model: str, protocol: str, seed: int) -> Path:
    return RUNS / library / f"{model}__{protocol}__seed{seed}"


def save_run(library: str, version: str, model: str, protocol: str, seed: int, *, epochs: int | None = None,
             best_epoch: int | None = None, clock: CPUClock | None = None, predictions: dict | None = None,
             valid_metric: dict | None = None, settings: dict | None = None, notes: str = "",
             status: str = "ok", packages=()) -> Path:
    """Write one run: ``<run>.json`` (what produced it, costs, notes) and ``<run>.npz`` (predictions:
    ``valid`` and ``test``; CTR probabilities ``[N]``, ranking scores ``[U, n_items]``)."""
    path = run_path(library, model, protocol, seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {
        "library": library, "library_version": version, "model": model, "protocol": protocol, "seed": seed,
        "status": status, "epochs": epochs, "best_epoch": best_epoch,
        "cpu_s_total": getattr(clock, "cpu", None), "wall_s_total": getattr(clock, "wall", None),
        "cpu_s_per_epoch": (clock.cpu / epochs) if clock is not None and epochs else None,
        "wall_s_per_epoch": (clock.wall / epochs) if clock is not None and epochs else None,
        "threads": _threads(), "valid_library_metric": valid_metric or {}, "settings": settings or {},
        "notes": notes, "data_checksum": meta()["checksum"], "machine": platform.machine(),
        "cpu_count": os.cpu_count(), "command": _command(),
        **versions(*packages),
    }
    npz = path.with_name(path.name + ".npz")  # a name may hold dots (a variant's value)
    if predictions is not None:
        np.savez_compressed(npz, **{k: np.asarray(v) for k, v in predictions.items()})
    elif npz.exists():
        npz.unlink()
    path.with_name(path.name + ".json").write_text(json.dumps(record, indent=1, default=_jsonable))
    return path


def _command() -> str:
    """The command that produced a run, with the interpreter and script relative to the repository."""
    exe = Path(sys.executable)
    try:
        exe = exe.relative_to(ROOT)
    except ValueError:
        exe = Path(exe.name)
    script = Path(sys.argv[0]).resolve()
    try:
        script = script.relative_to(ROOT)
    except ValueError:
        pass
    return " ".join([str(exe), str(script), *sys.argv[1:]])


def _jsonable(v):
    if isinstance(v, np.generic):
        return v.item()
    return repr(v)


def _threads():
    try:
        import torch

        return torch.get_num_threads()
    except ImportError:
        return None


def parse_args(models, description: str, default_seeds=SEEDS, one_seed=(), variants=None, extra=()):
    """Command line of a library script: ``--models``, ``--seeds``, ``--max-epochs``, ``--all-seeds``,
    ``--arch`` and, where the script has them, ``--variant``. Models in ``one_seed`` (the expensive
    ones) run only the first seed unless ``--all-seeds``."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--models", default=",".join(models),
                   help=f"comma-separated subset of {','.join(models)} (default: all)")
    p.add_argument("--seeds", default=",".join(map(str, default_seeds)),
                   help="comma-separated seeds (models marked one-seed use only the first)")
    p.add_argument("--max-epochs", type=int, default=None, help="cap on epochs (smoke runs)")
    p.add_argument("--all-seeds", action="store_true",
                   help=f"run every seed for the expensive models too ({', '.join(one_seed) or 'none'})")
    p.add_argument("--arch", choices=("default", "book"), default="default",
                   help="'book': the book's architecture (embedding 16, MLP 256-128 for Wide & Deep and "
                        "DeepFM, no dropout; DIN: activation unit 36, MLP 200-80) instead of the library's "
                        "defaults; the run is saved as <model>#book")
    if variants:
        p.add_argument("--variant", default=None,
                       help="move one of recbook's settings into the library (the FM/DeepFM ablation): "
                            + "; ".join(f"{m}: {', '.join(v)}" for m, v in variants.items())
                            + "; the run is saved as <model>@<variant>")
    for flag, text in extra:  # script-specific switches
        p.add_argument(flag, action="store_true", help=text)
    args = p.parse_args()
    if not variants:
        args.variant = None
    args.models = [m for m in args.models.split(",") if m]
    unknown = sorted(set(args.models) - set(models))
    if unknown:
        p.error(f"--models: unknown {unknown}; expected some of {list(models)}")
    args.seeds = [int(s) for s in args.seeds.split(",") if s]
    args.seeds_for = lambda model: args.seeds if args.all_seeds or model not in one_seed else args.seeds[:1]
    return args


def run_name(model: str, arch: str = "default", variant: str | None = None) -> str:
    """The name a run is saved under: ``<model>``, ``<model>#book`` (the book's architecture) or
    ``<model>@<variant>`` (an ablation run)."""
    name = model + ("#book" if arch == "book" else "")
    return name + (f"@{variant}" if variant else "")


def recbook_settings(variants: dict, name: str, variant: str | None) -> dict:
    """The recbook settings a ``--variant`` moves into the library: ``{setting: value}``;
    ``variants`` maps each model to its allowed variants (``"setting:value"`` strings and ``"all"``)."""
    if not variant:
        return {}
    if variant not in variants.get(name, ()):
        raise SystemExit(f"--variant: {variant!r} is not a variant of {name}; expected one of {variants.get(name, ())}")
    if variant == "all":
        return dict(v.split(":", 1) for v in variants[name] if v != "all")
    key, value = variant.split(":", 1)
    return {key: value}


def variant_notes(arch: str = "default", variant: str | None = None) -> list:
    notes = []
    if arch == "book":
        notes.append("the book's architecture instead of the library's defaults (timing comparison)")
    if variant:
        notes.append(f"ablation: recbook's {variant} moved into the library")
    return notes


ONE_SEED_NOTE = "1 seed only (one run costs many CPU minutes here; --all-seeds runs the others)"


def guarded(library: str, version: str, model: str, protocol: str, seed: int, fn, packages=()):
    """Run ``fn()``; on an exception, record a failed run with the error as the reason."""
    try:
        return fn()
    except Exception as err:  # a library that cannot run a model still gets its row
        traceback.print_exc()
        reason = f"failed: {type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"[:300]
        save_run(library, version, model, protocol, seed, status="failed", notes=reason, packages=packages)
        return None


def sigmoid(x):
    x = np.asarray(x, dtype=np.float64)
    return 1.0 / (1.0 + np.exp(-x))

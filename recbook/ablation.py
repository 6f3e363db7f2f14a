"""FM and DeepFM beside the libraries' recipes: one setting at a time, both ways.

The library comparison (``benchmarks/libraries/``) trains the same FM and DeepFM on the same split
in DeepCTR-Torch and RecBole. Their runs differ from the leaderboard's ``FM`` and ``DeepFM``
entries in a handful of settings the protocol does not fix (initialisation, L2, how the batch loss
is reduced, the stopping rule, the unknown rows, the first-order term of genres). This module moves
each setting **from a library into recbook**, one at a time, with the same seeds, and records
validation and test AUC; the library scripts' ``--variant`` option does the other direction
(recbook's setting in the library) and :func:`collect_library_runs` scores those runs with the same
metric code.

A *recipe* is a dict of the settings below; :data:`RECBOOK` holds the leaderboard's as they were
when the ablation ran, :data:`LIBRARY_SETTINGS` what each library does instead, and
:data:`ADOPTED` what the leaderboard then took from the ablation because it won on validation
(the factors' Xavier initialisation):

``embed_init``
    ``"normal-0.01"`` (recbook: ``N(0, 0.01^2)``), ``"normal-0.0001"`` (DeepCTR-Torch's
    ``init_std``), ``"xavier"`` (RecBole: Xavier-normal over its one table of the single-valued
    fields, ``std = sqrt(2 / (rows + dim))``, and over the genre table on its own).
``linear_init``
    first-order weights: ``"zero"`` (recbook), ``"normal-0.0001"`` (DeepCTR-Torch),
    ``"xavier"`` (RecBole, the same rule with ``dim = 1``).
``mlp_init``
    DeepFM's hidden layers: ``"uniform"`` (PyTorch's default, recbook) or ``"normal-0.0001"``
    (DeepCTR-Torch's ``DNN`` draws every hidden weight from ``N(0, init_std^2)``).
``unknown_rows``
    ``"zero"`` (recbook: the padding and unknown rows start at 0) or ``"init"`` (drawn like every
    other row, as both libraries do; no training row carries them, so they keep that value).
``bias``
    ``"zero"`` or ``"base-rate"`` (the bias starts at the log-odds of the training labels).
``l2``
    DeepCTR-Torch's regulariser: ``l2 * sum(w^2)`` over the **whole** embedding and first-order
    tables, added to the loss at every step (``0.0``: none).
``loss``
    ``"mean"`` (recbook, RecBole) or ``"sum"`` over the batch (DeepCTR-Torch); with Adam this only
    changes the weight of ``l2`` and of Adam's epsilon against the gradient.
``patience``
    ``3`` (recbook, DeepCTR-Torch: stop after 3 epochs without a strict improvement) or ``4``
    (RecBole's ``stopping_step=3`` stops after the 4th epoch without an improvement).
``genre_linear``
    first-order term of the genres: ``"mean"`` of the members' weights (recbook, DeepCTR-Torch) or
    ``"sum"`` (RecBole's ``FMFirstOrderLinear`` sums a token sequence's weights).

Command line (about 15 minutes on one core; writes ``book/results/fm_ablation.csv`` and
``book/results/deepfm_ablation.csv``)::

    python -m recbook.ablation --models FM,DeepFM --seeds 0,1,2
"""
from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from .data.features import PAD, UNK

MODELS = ("FM", "DeepFM")

# The recipes the ablation starts from: recbook.bench's FM and DeepFM entries as they were when it
# ran (factors drawn from N(0, 0.01^2)); the committed tables' variant "recbook" is this recipe.
RECBOOK = {
    "FM": {"embed_init": "normal-0.01", "linear_init": "zero", "unknown_rows": "zero", "bias": "zero",
           "l2": 0.0, "loss": "mean", "patience": 3, "genre_linear": "mean"},
    "DeepFM": {"embed_init": "normal-0.01", "linear_init": "zero", "mlp_init": "uniform", "unknown_rows": "zero",
               "bias": "base-rate", "l2": 0.0, "loss": "mean", "patience": 3, "genre_linear": "mean"},
}
# What each library does instead (only the settings that differ from recbook's; batch 1024, Adam
# 1e-3 with eps 1e-8, embedding 16, the 8 fields, mean-pooled genre vectors and the MLP 256-128
# are the same in all three runs).
LIBRARY_SETTINGS = {
    ("FM", "DeepCTR-Torch"): {"embed_init": "normal-0.0001", "linear_init": "normal-0.0001",
                              "unknown_rows": "init", "l2": 1e-5, "loss": "sum"},
    ("FM", "RecBole"): {"embed_init": "xavier", "linear_init": "xavier", "unknown_rows": "init",
                        "patience": 4, "genre_linear": "sum"},
    ("DeepFM", "DeepCTR-Torch"): {"embed_init": "normal-0.0001", "linear_init": "normal-0.0001",
                                  "mlp_init": "normal-0.0001", "unknown_rows": "init", "bias": "zero",
                                  "l2": 1e-5, "loss": "sum"},
}
# Settings carried from one model's ablation into the other's (RecBole's DeepFM was not run; its
# FM's initialisation is tried in DeepFM as well).
CARRIED = {
    "DeepFM": {("RecBole FM", "embed_init"): {"embed_init": "xavier"},
               ("RecBole FM", "init"): {"embed_init": "xavier", "linear_init": "xavier"}},
}
# What the leaderboard adopted from the ablation, chosen on validation AUC (seeds 0-2): RecBole's
# Xavier initialisation of the factors (FM +0.0036 [+0.0008, +0.0064]; DeepFM +0.0015
# [-0.0029, +0.0060], ahead in 2 of 3 seeds). recbook.bench's FM, FM-unk and DeepFM entries build
# exactly build(data, model, **ADOPTED[model]) (``init_std="xavier"`` of recbook.models).
ADOPTED = {"FM": {"embed_init": "xavier"}, "DeepFM": {"embed_init": "xavier"}}
CHOICES = {
    "embed_init": ("normal-0.01", "normal-0.0001", "xavier"),
    "linear_init": ("zero", "normal-0.0001", "xavier"),
    "mlp_init": ("uniform", "normal-0.0001"),
    "unknown_rows": ("zero", "init"),
    "bias": ("zero", "base-rate"),
    "loss": ("mean", "sum"),
    "patience": (3, 4),
    "genre_linear": ("mean", "sum"),
}


def check_recipe(model: str, recipe: Mapping) -> dict:
    """``recipe`` completed with recbook's settings for ``model``; every key and value checked."""
    if model not in RECBOOK:
        raise ValueError(f"model: expected one of {list(RECBOOK)}, got {model!r}")
    out = dict(RECBOOK[model])
    for key, value in recipe.items():
        if key not in out:
            raise ValueError(f"recipe: unknown setting {key!r} for {model}; expected some of {sorted(out)}")
        if key == "l2":
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
                raise ValueError(f"recipe['l2']: expected a non-negative number, got {value!r}")
            value = float(value)
        elif value not in CHOICES[key]:
            raise ValueError(f"recipe[{key!r}]: expected one of {CHOICES[key]}, got {value!r}")
        out[key] = value
    return out


# --------------------------------------------------------------------------------------------
# Building a model with a recipe
# --------------------------------------------------------------------------------------------

def _blocks(schema) -> list[tuple[int, int]]:
    """Row ranges of the shared table initialised together: RecBole keeps the single-valued fields
    in one table (offsets) and each multi-valued field in its own."""
    offsets = [int(o) for o in schema.offsets]
    n_single = len(schema.single)
    ends = offsets[1:] + [int(schema.total_size)]
    blocks = [(offsets[0], ends[n_single - 1])] if n_single else []
    blocks += [(offsets[i], ends[i]) for i in range(n_single, len(offsets))]
    return blocks


@torch.no_grad()
def _init_table(weight: torch.Tensor, schema, how: str, unknown_rows: str, default: str) -> None:
    """Initialise ``weight`` (a model's shared table) as ``how`` says. A table the model's
    constructor already initialised that way (``how == default``) is left as it is, so recbook's
    recipe gives exactly the leaderboard's model; with ``unknown_rows="init"`` its unknown rows are
    then drawn like the others."""
    offsets = torch.as_tensor(schema.offsets, dtype=torch.long)
    if how == default:
        if unknown_rows == "init" and how.startswith("normal-"):
            weight[offsets + UNK] = torch.randn(len(offsets), weight.shape[1]) * float(how.split("-", 1)[1])
        return
    if how == "zero":
        weight.zero_()
    elif how.startswith("normal-"):
        weight.normal_(0.0, float(how.split("-", 1)[1]))
    elif how == "xavier":
        for lo, hi in _blocks(schema):
            std = math.sqrt(2.0 / ((hi - lo) + weight.shape[1]))
            weight[lo:hi].normal_(0.0, std)
    else:
        raise ValueError(f"init: unknown scheme {how!r}")
    weight[offsets + PAD] = 0.0  # padding never reaches a prediction; keep it at zero in every recipe
    if unknown_rows == "zero":
        weight[offsets + UNK] = 0.0


class _SumPooledGenres(torch.nn.Module):
    """First-order term with each multi-valued field's weights summed instead of averaged
    (RecBole's ``FMFirstOrderLinear``); wraps the model's own :class:`recbook.layers.FeatureLinear`."""

    def __init__(self, linear):
        super().__init__()
        self.inner = linear

    def forward(self, batch):
        emb = self.inner.weights
        out = emb._gather(batch["x"] + emb.single_offsets).sum(dim=(1, 2)) + self.inner.bias
        for name in emb._multi:
            idx = batch[name]
            out = out + (emb._gather(idx + emb._offset[name]).squeeze(-1) * (idx != PAD)).sum(dim=1)
        return out


def build(data, model: str = "FM", **recipe):
    """A fresh ``model`` ("FM" or "DeepFM", dim 16, MLP 256-128) for the CTR protocol's ``data``,
    initialised and set up as ``recipe`` says (missing settings: recbook's). The caller seeds the
    global generator first (the leaderboard's :func:`recbook.bench.run_one` does)."""
    from .models import DeepFM, FactorizationMachine

    r = check_recipe(model, recipe)
    base_rate = float(data.train["label"].float().mean()) if r["bias"] == "base-rate" else None
    if model == "FM":
        m = FactorizationMachine(data.schema, dim=16, base_rate=base_rate)
    else:
        m = DeepFM(data.schema, dim=16, hidden=(256, 128), base_rate=base_rate)
    _init_table(m.embedding.table.weight, data.schema, r["embed_init"], r["unknown_rows"], "normal-0.01")
    _init_table(m.linear.weights.table.weight, data.schema, r["linear_init"], r["unknown_rows"], "zero")
    if model == "DeepFM" and r["mlp_init"].startswith("normal-"):
        std = float(r["mlp_init"].split("-", 1)[1])
        with torch.no_grad():
            for layer in list(m.mlp)[:-1]:  # the hidden layers; the output layer keeps its default
                if isinstance(layer, torch.nn.Linear):
                    layer.weight.normal_(0.0, std)
    if r["genre_linear"] == "sum":
        m.linear = _SumPooledGenres(m.linear)
    m.recipe = r
    return m


def _tables(model):
    linear = model.linear.inner if isinstance(model.linear, _SumPooledGenres) else model.linear
    return [model.embedding.table.weight, linear.weights.table.weight]


def recipe_loss(model, batch) -> torch.Tensor:
    """Binary cross-entropy on logits, mean or sum over the batch as ``model.recipe['loss']`` says,
    plus ``l2 * sum(w^2)`` over the whole embedding and first-order tables (DeepCTR-Torch's
    regulariser) when ``model.recipe['l2'] > 0``."""
    r = model.recipe
    loss = F.binary_cross_entropy_with_logits(model(batch), batch["label"], reduction=r["loss"])
    if r["l2"] > 0:
        loss = loss + r["l2"] * sum(t.square().sum() for t in _tables(model))
    return loss


def entry(name: str, model: str, recipe: Mapping | None = None):
    """The :class:`recbook.bench.Entry` that trains ``model`` with ``recipe`` as the leaderboard
    trains its entries (``CTR_FIT``: batch 1024, Adam 1e-3, early stopping on validation AUC).
    Not registered: these are evidence, not models of the book."""
    from .bench import CTR_FIT, Entry

    r = check_recipe(model, recipe or {})
    fit = dict(CTR_FIT, patience=r["patience"])
    if r["loss"] != "mean" or r["l2"] > 0:
        fit["loss_fn"] = recipe_loss
    return Entry(name, "ctr", build, {"model": model, **r}, fit, description=f"{model} with {r}")


# --------------------------------------------------------------------------------------------
# The variants
# --------------------------------------------------------------------------------------------

def variants(model: str) -> list[dict]:
    """The runs of the ablation for ``model``: recbook's recipe, then for each library each of its
    settings moved into recbook alone, then all of them together (the library's recipe). Each is
    ``{"variant", "library", "setting", "value", "recipe"}``."""
    if model not in RECBOOK:
        raise ValueError(f"model: expected one of {list(RECBOOK)}, got {model!r}")
    out = [{"variant": "recbook", "library": "", "setting": "", "value": "", "recipe": {}}]
    for (m, library), changes in LIBRARY_SETTINGS.items():
        if m != model:
            continue
        tag = {"DeepCTR-Torch": "deepctr", "RecBole": "recbole"}[library]
        for key, value in changes.items():
            out.append({"variant": f"recbook+{tag}:{key}", "library": library, "setting": key,
                        "value": str(value), "recipe": {key: value}})
        out.append({"variant": f"recbook+{tag}:all", "library": library, "setting": "all",
                    "value": "", "recipe": dict(changes)})
    for (source, setting), recipe in CARRIED.get(model, {}).items():
        out.append({"variant": f"recbook+{source.split()[0].lower()}-{source.split()[1].lower()}:{setting}",
                    "library": source, "setting": setting, "value": ",".join(map(str, recipe.values())),
                    "recipe": dict(recipe)})
    return out


def run_ablation(model: str, seeds: Sequence[int] = (0, 1, 2), *, only: Sequence[str] | None = None,
                 threads: int = 1, progress: bool = False, on_variant_done=None) -> pd.DataFrame:
    """Train every variant of :func:`variants` (or those named in ``only``, in that order) with
    ``seeds``, as the leaderboard does (:func:`recbook.bench.run_one`); one row per variant and
    seed. ``on_variant_done(rows)`` gets the rows so far after each variant."""
    from .bench import load_protocol, run_one

    todo = variants(model)
    if only is not None:
        known = {v["variant"] for v in todo}
        unknown = sorted(set(only) - known)
        if unknown:
            raise ValueError(f"only: unknown variant(s) {unknown}; expected some of {sorted(known)}")
        by_name = {v["variant"]: v for v in todo}
        todo = [by_name[name] for name in only]
    data = load_protocol("ctr")
    rows = []
    for v in todo:
        e = entry(f"{model}:{v['variant']}", model, v["recipe"])
        for seed in seeds:
            row = run_one(e, data, int(seed), threads=threads, quick=False, progress=progress)
            rows.append({"model": model, "side": "recbook", "variant": v["variant"], "library": v["library"],
                         "setting": v["setting"], "value": v["value"], **_keep(row)})
            if progress:
                print(f"{model} {v['variant']} seed {seed}: valid {row['valid_auc']:.4f} "
                      f"test {row['test_auc']:.4f} ({row['epochs']} epochs)", flush=True)
        if on_variant_done is not None:
            on_variant_done(pd.DataFrame(rows))
    return pd.DataFrame(rows)


KEEP = ["seed", "valid_auc", "test_auc", "test_logloss", "epochs", "best_epoch", "cpu_s_per_epoch",
        "n_parameters", "fingerprint"]


def _keep(row: Mapping) -> dict:
    return {k: row.get(k, np.nan) for k in KEEP}


def collect_library_runs(folder, model: str) -> pd.DataFrame:
    """Score the library scripts' ``--variant`` runs of ``model`` under ``folder`` (their
    ``RECBOOK_LIBRARIES_RUNS``) with recbook's metric code; one row per run. A run is
    ``<library>/<model>@<variant>__ctr__seed<k>.json|npz``; ``<model>__ctr__seed<k>`` (no
    variant) is the library's own recipe."""
    import json

    from .bench import load_protocol
    from .metrics import auc, logloss

    folder = Path(folder)
    data = load_protocol("ctr")
    labels = {s: getattr(data, s)["label"].numpy() for s in ("valid", "test")}
    rows = []
    for record in sorted(folder.glob(f"*/{model}__ctr__seed*.json")) + sorted(folder.glob(f"*/{model}@*__ctr__seed*.json")):
        meta = json.loads(record.read_text())
        if meta.get("status") != "ok":
            continue
        preds = np.load(record.with_suffix(".npz"))
        p = {s: np.clip(preds[s].astype(np.float64), 1e-7, 1 - 1e-7) for s in ("valid", "test")}
        logit = {s: np.log(p[s]) - np.log1p(-p[s]) for s in p}
        name = record.name.split("__")[0]
        moved = name.split("@", 1)[1] if "@" in name else ""
        setting, _, value = moved.partition(":")
        variant = f"library+recbook:{setting}" if moved else "library"
        rows.append({"model": model, "side": meta["library"], "variant": variant, "library": meta["library"],
                     "setting": setting, "value": value, "seed": meta["seed"],
                     "valid_auc": auc(labels["valid"], logit["valid"]), "test_auc": auc(labels["test"], logit["test"]),
                     "test_logloss": logloss(labels["test"], logit["test"]), "epochs": meta["epochs"],
                     "best_epoch": meta["best_epoch"], "cpu_s_per_epoch": meta["cpu_s_per_epoch"],
                     "n_parameters": meta["settings"].get("n_parameters", np.nan), "fingerprint": ""})
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------------------------
# Paired comparisons over seeds
# --------------------------------------------------------------------------------------------

# Two-sided 95% quantiles of Student's t with 1..10 degrees of freedom.


def paired_interval(diffs, level: float = 0.95) -> tuple[float, float, float]:
    """Mean of paired differences (one per seed) and its 95% t-interval ``(mean, low, high)``
    (:func:`recbook.metrics.paired_t_interval`). With one difference the interval is ``(nan, nan)``."""
    from .metrics import paired_t_interval

    return paired_t_interval(diffs, level, name="diffs")


def summarize(rows: pd.DataFrame, baseline: Mapping[str, str]) -> pd.DataFrame:
    """One line per (side, variant): mean valid and test AUC, and the paired difference against
    the side's baseline variant (``baseline[side]``, e.g. ``{"recbook": "recbook", "RecBole":
    "library"}``) with its 95% interval over the seeds both ran."""
    out = []
    for (side, variant), g in rows.groupby(["side", "variant"], sort=False):
        line = {"side": side, "variant": variant, "setting": g["setting"].iloc[0], "value": g["value"].iloc[0],
                "seeds": len(g), "valid_auc": g["valid_auc"].mean(), "test_auc": g["test_auc"].mean(),
                "epochs": g["epochs"].mean()}
        base = rows[(rows["side"] == side) & (rows["variant"] == baseline.get(side, ""))].set_index("seed")
        mine = g.set_index("seed")
        seeds = sorted(set(base.index) & set(mine.index))
        for m in ("valid_auc", "test_auc"):
            if seeds and variant != baseline.get(side):
                mean, lo, hi = paired_interval(mine.loc[seeds, m].to_numpy() - base.loc[seeds, m].to_numpy())
            else:
                mean = lo = hi = math.nan
            line[f"d_{m}"], line[f"d_{m}_low"], line[f"d_{m}_high"] = mean, lo, hi
        out.append(line)
    return pd.DataFrame(out)


HEADER = ("# {model}: the leaderboard's recipe beside each library's, one setting moved at a time "
          "(side=recbook: a library's setting in recbook; side=<library>: recbook's setting in the "
          "library, variant 'library' = its own recipe). Seeds 0,1,2; AUC by recbook.metrics.\n"
          "# Reproduce: python -m recbook.ablation --models {model} --seeds 0,1,2 "
          "[--library-runs _build/libraries/ablation/runs] (library side: benchmarks/libraries/run.sh --ablation)\n")


def write_csv(rows: pd.DataFrame, path, model: str) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.write(HEADER.format(model=model))
        rows.to_csv(f, index=False, float_format="%.6g")
    return path


def read_csv(path) -> pd.DataFrame:
    """An ablation table written by :func:`write_csv` (its two comment lines skipped)."""
    return pd.read_csv(path, comment="#")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m recbook.ablation", description=__doc__.split("\n\n")[0])
    p.add_argument("--models", default="FM,DeepFM")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--only", default=None, help="comma-separated variants (default: all)")
    p.add_argument("--library-runs", type=Path, default=None,
                   help="folder of the library scripts' --variant runs to score and add")
    p.add_argument("--keep", action="store_true",
                   help="keep the recbook rows already in the file (only add the library rows or --only)")
    p.add_argument("--out", type=Path, default=Path("book") / "results")
    p.add_argument("--progress", action="store_true")
    args = p.parse_args(argv)
    models = [m for m in args.models.split(",") if m]
    bad = [m for m in models if m not in MODELS]
    if bad:
        p.error(f"--models: unknown {bad}; expected some of {list(MODELS)}")
    try:
        seeds = [int(s) for s in args.seeds.split(",") if s]
    except ValueError:
        p.error(f"--seeds: expected comma-separated integers, got {args.seeds!r}")
    only = [v for v in args.only.split(",") if v] if args.only else None
    for model in models:
        path = args.out / f"{model.lower()}_ablation.csv"
        old = read_csv(path) if path.is_file() else None
        parts = []
        if args.keep and old is not None:
            keep = old[old["side"] == "recbook"]
            if only is not None:
                keep = keep[~keep["variant"].isin(only)]
            parts.append(keep)
        others = old[old["side"] != "recbook"] if old is not None and args.library_runs is None else None

        def save(new, parts=parts, others=others, path=path, model=model):  # after every variant
            rows = pd.concat([x for x in [*parts, new, others] if x is not None and len(x)], ignore_index=True)
            write_csv(rows, path, model)
            return rows

        if not (args.keep and only is None and args.library_runs is not None):
            parts.append(run_ablation(model, seeds, only=only, progress=args.progress, on_variant_done=save))
        if args.library_runs is not None:
            parts.append(collect_library_runs(args.library_runs, model))
        rows = save(None)
        base = {"recbook": "recbook", **{s: "library" for s in rows["side"].unique() if s != "recbook"}}
        print(summarize(rows, base).to_string(index=False, float_format=lambda v: f"{v:.4f}"))
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""DeepCTR-Torch on the book's CTR protocol: LR, FM, WDL, DeepFM, DIN.

Run inside the DeepCTR-Torch environment (``run.sh deepctr`` makes it):
``_build/libraries/venv-deepctr/bin/python benchmarks/libraries/deepctr_torch_bench.py``.

Public API only: ``SparseFeat`` / ``VarLenSparseFeat`` feature columns, the library's models,
``compile`` with Adam, ``fit`` with ``validation_data`` and the library's ``EarlyStopping``
callback (monitor ``val_auc``, patience 3, best weights restored), ``predict``. Every setting the
book's protocol does not fix keeps the library's default (hidden units, regularisation, init).
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

LIBRARY = "DeepCTR-Torch"
MODELS = ("LR", "FM", "WDL", "DeepFM", "DIN")
ONE_SEED = ("DIN",)
SINGLE = ("user_id", "item_id", "age_bucket", "gender", "occupation", "zip1", "year_bucket")


def left_align(hist: np.ndarray) -> np.ndarray:
    """Right-aligned, left-padded histories -> left-aligned, right-padded (DeepCTR-Torch's DIN masks
    the positions ``>= seq_length``). The order inside the history is kept (most recent last)."""
    mask = hist != 0
    lengths = mask.sum(1)
    out = np.zeros_like(hist)
    cols = np.arange(hist.shape[1])[None, :]
    src = hist.shape[1] - lengths[:, None] + cols
    keep = cols < lengths[:, None]
    out[keep] = hist[np.repeat(np.arange(len(hist)), keep.sum(1)), src[keep]]
    return out


def inputs(frame, meta, item_year, din: bool) -> dict:
    x = {f: frame[f].to_numpy(np.int64) for f in SINGLE}
    x["genres"] = frame[[f"genre_{j}" for j in range(meta["genre_width"])]].to_numpy(np.int64)
    if din:
        hist = left_align(frame[[f"hist_{j}" for j in range(meta["history_len"])]].to_numpy(np.int64))
        x["hist_item_id"] = hist
        x["hist_year_bucket"] = np.where(hist != 0, item_year[hist], 0)
        x["seq_length"] = (hist != 0).sum(1).astype(np.int64)
    return x


def feature_columns(meta, din: bool):
    from deepctr_torch.inputs import SparseFeat, VarLenSparseFeat

    d = common.CTR["embedding_dim"]
    sizes = meta["field_sizes"]
    cols = [SparseFeat(f, vocabulary_size=sizes[f], embedding_dim=d) for f in SINGLE]
    cols.append(VarLenSparseFeat(SparseFeat("genres", vocabulary_size=sizes["genres"], embedding_dim=d),
                                 maxlen=meta["genre_width"], combiner="mean"))
    if din:
        L = meta["history_len"]
        cols += [VarLenSparseFeat(SparseFeat("hist_item_id", vocabulary_size=sizes["item_id"], embedding_dim=d,
                                             embedding_name="item_id"), maxlen=L, length_name="seq_length"),
                 VarLenSparseFeat(SparseFeat("hist_year_bucket", vocabulary_size=sizes["year_bucket"],
                                             embedding_dim=d, embedding_name="year_bucket"),
                                  maxlen=L, length_name="seq_length")]
    return cols


# recbook's settings, moved into the library one at a time (``--variant``; the ablation of
# ``python -m recbook.ablation``). Each names the setting of ``recbook.ablation`` it moves.
VARIANTS = {
    "FM": ("embed_init:normal-0.01", "linear_init:zero", "unknown_rows:zero", "l2:0", "loss:mean", "all"),
    "DeepFM": ("embed_init:normal-0.01", "linear_init:zero", "mlp_init:uniform", "unknown_rows:zero",
               "bias:base-rate", "l2:0", "loss:mean", "all"),
}


def apply_recbook_settings(model, settings: dict, base_rate: float) -> None:
    """Re-initialise ``model`` (a DeepCTR-Torch FM/DeepFM) with recbook's settings: embeddings
    ``N(0, 0.01^2)``, first-order weights 0, PyTorch's default init of the hidden layers, the
    padding and unknown rows (codes 0 and 1) at 0, the bias at the training log-odds."""
    import torch

    with torch.no_grad():
        if settings.get("embed_init") == "normal-0.01":
            for t in model.embedding_dict.values():
                t.weight.normal_(0.0, 0.01)
        if settings.get("linear_init") == "zero":
            for t in model.linear_model.embedding_dict.values():
                t.weight.zero_()
        if settings.get("mlp_init") == "uniform":
            for layer in model.dnn.linears:
                layer.reset_parameters()
        if settings.get("unknown_rows") == "zero":
            for table in (model.embedding_dict, model.linear_model.embedding_dict):
                for t in table.values():
                    t.weight[:2] = 0.0
        if settings.get("bias") == "base-rate":
            model.out.bias.fill_(float(np.log(base_rate / (1 - base_rate))))


def build(name: str, cols, seed: int, arch: str = "default", settings: dict | None = None):
    from deepctr_torch.models import DIN, WDL, DeepFM

    settings = settings or {}
    l2 = {"l2_reg_linear": 0.0, "l2_reg_embedding": 0.0} if settings.get("l2") == "0" else {}

    if name == "LR":  # the wide (linear) part alone: no DNN, no FM
        return WDL(cols, cols, dnn_hidden_units=(), task="binary", device="cpu", seed=seed)
    if name == "FM":  # linear + FM, no DNN
        return DeepFM(cols, cols, dnn_hidden_units=(), task="binary", device="cpu", seed=seed, **l2)
    if name == "WDL":
        return WDL(cols, cols, task="binary", device="cpu", seed=seed)
    if name == "DeepFM":
        return DeepFM(cols, cols, task="binary", device="cpu", seed=seed, **l2)
    if name == "DIN":
        if arch == "book":  # recbook's DIN: activation unit 36, MLP (200, 80)
            return DIN(cols, ["item_id", "year_bucket"], dnn_hidden_units=(200, 80), att_hidden_size=(36,),
                       task="binary", device="cpu", seed=seed)
        return DIN(cols, ["item_id", "year_bucket"], task="binary", device="cpu", seed=seed)
    raise ValueError(name)


NOTES = {
    "LR": "WDL(dnn_hidden_units=()) = its linear part alone (no LR class in the library)",
    "FM": "DeepFM(dnn_hidden_units=()) = linear + FM (no FM class in the library)",
    "WDL": "library defaults: DNN (256, 128), L2 1e-5 on linear and embeddings",
    "DeepFM": "library defaults: DNN (256, 128), L2 1e-5 on linear and embeddings",
    "DIN": ("behaviour sequence = item_id and year_bucket of the 50 earlier items, left-aligned with a "
            "seq_length (the library masks positions >= length); library defaults: attention (64, 16) "
            "Dice, DNN (256, 128)"),
}
COMMON_NOTE = ("genres: VarLenSparseFeat, mean pooling; inputs packed by the library into one float32 "
               "matrix (codes < 2^24: exact); verbose=0 (verbose>0 computes sklearn metrics on every "
               "training batch)")


def run(name: str, seed: int, max_epochs: int | None, arch: str = "default", variant: str | None = None) -> None:
    import deepctr_torch
    import torch
    import torch.nn.functional as F
    from deepctr_torch.callbacks import EarlyStopping

    common.one_thread()
    common.seed_everything(seed)
    meta = common.meta()
    din = name == "DIN"
    x, y = common.ctr_arrays(inputs, meta, din)
    cols = feature_columns(meta, din)
    settings = common.recbook_settings(VARIANTS, name, variant)
    model = build(name, cols, seed, arch, settings)
    apply_recbook_settings(model, settings, float(y["train"].mean()))
    model.compile(torch.optim.Adam(model.parameters(), lr=common.CTR["lr"]), "binary_crossentropy",
                  metrics=["auc"])
    if settings.get("loss") == "mean":  # the library's fit asks for reduction="sum"; recbook averages
        model.loss_func = lambda p, t, reduction="sum": F.binary_cross_entropy(p, t, reduction="mean")
    stop = EarlyStopping(monitor="val_auc", mode="max", patience=common.CTR["patience"],
                         restore_best_weights=True)
    clock = common.CPUClock()
    model.evaluate = clock.exclude(model.evaluate)  # validation time is not training time
    epochs = max_epochs or common.CTR["epochs"]
    with clock.training():
        history = model.fit(x["train"], y["train"], batch_size=common.CTR["batch_size"], epochs=epochs,
                            verbose=0, validation_data=(x["valid"], y["valid"]), callbacks=[stop],
                            shuffle=True)
    val = history.history["val_auc"]
    best = int(np.argmax(val))
    if stop.best_weights is not None:  # stopped by the epoch cap: restore the best epoch too
        model.load_state_dict(stop.best_weights)
    preds = {s: model.predict(x[s], batch_size=4096).reshape(-1) for s in ("valid", "test")}
    n_params = sum(p.numel() for p in model.parameters())
    print(f"{LIBRARY} {name} seed {seed}: {len(val)} epochs, best {best + 1} val_auc {val[best]:.4f}, "
          f"{clock.cpu / len(val):.2f} CPU s/epoch")
    common.save_run(LIBRARY, deepctr_torch.__version__, common.run_name(name, arch, variant), "ctr", seed, epochs=len(val), best_epoch=best + 1,
                    clock=clock, predictions=preds, valid_metric={"auc": float(val[best])},
                    settings={"embedding_dim": common.CTR["embedding_dim"], "batch_size": common.CTR["batch_size"],
                              "optimizer": "Adam", "lr": common.CTR["lr"], "patience": common.CTR["patience"],
                              "max_epochs": epochs, "n_parameters": n_params, "arch": arch,
                              "recbook_settings": settings},
                    notes="; ".join([NOTES[name], COMMON_NOTE] + common.variant_notes(arch, variant) + ([common.ONE_SEED_NOTE] if name in ONE_SEED else [])), packages=("deepctr-torch", "scikit-learn"))


def main() -> int:
    args = common.parse_args(MODELS, __doc__.split("\n\n")[0], one_seed=ONE_SEED, variants=VARIANTS)
    import deepctr_torch

    for name in args.models:
        for seed in args.seeds_for(name):
            common.guarded(LIBRARY, deepctr_torch.__version__, common.run_name(name, args.arch, args.variant),
                           "ctr", seed, lambda: run(name, seed, args.max_epochs, args.arch, args.variant),
                           packages=("deepctr-torch",))
    return 0


if __name__ == "__main__":
    sys.exit(main())

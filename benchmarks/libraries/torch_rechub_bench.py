"""torch-rechub on the book's CTR protocol: WideDeep, DeepFM, DIN (LR and FM: no such models).

Run inside the torch-rechub environment (``run.sh rechub`` makes it):
``_build/libraries/venv-rechub/bin/python benchmarks/libraries/torch_rechub_bench.py``.

Public API only: ``SparseFeature`` / ``SequenceFeature``, the ranking models, ``DataGenerator``
and ``CTRTrainer`` (``fit`` with a validation loader: early stopping on validation AUC, best
weights restored; ``predict``). Settings the book's protocol does not fix follow the library's
examples (``examples/ranking/run_criteo.py``, ``run_amazon_electronics.py``): MLP (256, 128),
dropout 0.2 and ReLU for WideDeep/DeepFM; DIN's MLP and attention MLP (256, 128); the trainer's
default weight decay 1e-5 (the examples pass 1e-3 on their own data sets).
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

LIBRARY = "torch-rechub"
MODELS = ("LR", "FM", "WDL", "DeepFM", "DIN")
ONE_SEED = ("DIN",)
SINGLE = ("user_id", "item_id", "age_bucket", "gender", "occupation", "zip1", "year_bucket")
USER_SIDE = ("user_id", "age_bucket", "gender", "occupation", "zip1")
MISSING = {
    "LR": "torch-rechub has no logistic-regression ranking model",
    "FM": "torch-rechub has no FM ranking model (FM exists only as a layer inside DeepFM)",
}
MLP = {"dims": [256, 128], "dropout": 0.2, "activation": "relu"}
NOTES = {
    "WDL": "WideDeep(wide = deep = all 8 fields); the library's wide part is a linear layer over the "
           "fields' 16-d embeddings (not one weight per id); MLP (256, 128), dropout 0.2",
    "DeepFM": "DeepFM(deep = fm = all 8 fields); MLP (256, 128), dropout 0.2",
    "DIN": "target = item_id, year_bucket; history = the 50 earlier items' item_id and year_bucket "
           "(embeddings shared with the target's, padding_idx 0 so padded positions embed to zero: the "
           "library's attention has no mask); other fields = user side + genres; MLP (256, 128) Dice, "
           "attention MLP (256, 128) as in the library's Amazon example",
}
COMMON_NOTE = ("genres: SequenceFeature, mean pooling over non-padding codes; Adam lr 1e-3 with the "
               "trainer's default weight decay 1e-5; tqdm progress bars on (the library's default)")


def inputs(frame, meta, item_year, din: bool) -> dict:
    x = {f: frame[f].to_numpy(np.int64) for f in SINGLE}
    x["genres"] = frame[[f"genre_{j}" for j in range(meta["genre_width"])]].to_numpy(np.int64)
    if din:
        hist = frame[[f"hist_{j}" for j in range(meta["history_len"])]].to_numpy(np.int64)
        x["hist_item_id"] = hist
        x["hist_year_bucket"] = np.where(hist != 0, item_year[hist], 0)
    return x


def build(name: str, meta):
    from torch_rechub.basic.features import SequenceFeature, SparseFeature
    from torch_rechub.models.ranking import DIN, DeepFM, WideDeep

    d = common.CTR["embedding_dim"]
    sizes = meta["field_sizes"]
    single = {f: SparseFeature(f, vocab_size=sizes[f], embed_dim=d, padding_idx=0) for f in SINGLE}
    genres = SequenceFeature("genres", vocab_size=sizes["genres"], embed_dim=d, pooling="mean", padding_idx=0)
    if name == "WDL":
        feats = [*single.values(), genres]
        return WideDeep(wide_features=feats, deep_features=feats, mlp_params=dict(MLP))
    if name == "DeepFM":
        feats = [*single.values(), genres]
        return DeepFM(deep_features=feats, fm_features=feats, mlp_params=dict(MLP))
    if name == "DIN":
        target = [single["item_id"], single["year_bucket"]]
        history = [SequenceFeature("hist_item_id", vocab_size=sizes["item_id"], embed_dim=d, pooling="concat",
                                   shared_with="item_id", padding_idx=0),
                   SequenceFeature("hist_year_bucket", vocab_size=sizes["year_bucket"], embed_dim=d,
                                   pooling="concat", shared_with="year_bucket", padding_idx=0)]
        features = [single[f] for f in USER_SIDE] + [genres]
        return DIN(features=features, history_features=history, target_features=target,
                   mlp_params={"dims": [256, 128]}, attention_mlp_params={"dims": [256, 128]})
    raise ValueError(name)


def run(name: str, seed: int, max_epochs: int | None, version: str) -> None:
    import tempfile

    from torch_rechub.trainers import CTRTrainer
    from torch_rechub.utils.data import DataGenerator

    common.one_thread()
    common.seed_everything(seed)
    meta = common.meta()
    din = name == "DIN"
    item_table = common.items()
    item_year = np.zeros(meta["field_sizes"]["item_id"], dtype=np.int64)
    item_year[item_table["item_id"].to_numpy()] = item_table["year_bucket"].to_numpy()
    splits = {s: common.ctr_split(s) for s in ("train", "valid", "test")}
    x = {s: inputs(f, meta, item_year, din) for s, f in splits.items()}
    y = {s: f["label"].to_numpy(np.float32) for s, f in splits.items()}
    model = build(name, meta)
    dg = DataGenerator(x["train"], y["train"])
    train_dl, valid_dl, test_dl = dg.generate_dataloader(x_val=x["valid"], y_val=y["valid"], x_test=x["test"],
                                                         y_test=y["test"], batch_size=common.CTR["batch_size"])
    epochs = max_epochs or common.CTR["epochs"]
    with tempfile.TemporaryDirectory() as tmp:
        trainer = CTRTrainer(model, optimizer_params={"lr": common.CTR["lr"], "weight_decay": 1e-5},
                             n_epoch=epochs, earlystop_patience=common.CTR["patience"], device="cpu",
                             model_path=tmp)
        val_aucs = []
        clock = common.CPUClock()
        evaluate = trainer.evaluate

        def tracked(model, loader):
            auc = evaluate(model, loader)
            val_aucs.append(auc)
            return auc

        trainer.evaluate = clock.exclude(tracked)  # validation time is not training time
        with clock.training():
            trainer.fit(train_dl, valid_dl)
        trainer.evaluate = evaluate
        if trainer.early_stopper.best_weights is not None:  # stopped by the cap: best epoch too
            trainer.model.load_state_dict(trainer.early_stopper.best_weights)
        preds = {"valid": np.asarray(trainer.predict(trainer.model, valid_dl), dtype=np.float64),
                 "test": np.asarray(trainer.predict(trainer.model, test_dl), dtype=np.float64)}
    best = int(np.argmax(val_aucs))
    n_params = sum(p.numel() for p in model.parameters())
    print(f"{LIBRARY} {name} seed {seed}: {len(val_aucs)} epochs, best {best + 1} val_auc {val_aucs[best]:.4f}, "
          f"{clock.cpu / len(val_aucs):.2f} CPU s/epoch")
    common.save_run(LIBRARY, version, name, "ctr", seed, epochs=len(val_aucs), best_epoch=best + 1, clock=clock,
                    predictions=preds, valid_metric={"auc": float(val_aucs[best])},
                    settings={"embedding_dim": common.CTR["embedding_dim"], "batch_size": common.CTR["batch_size"],
                              "optimizer": "Adam", "lr": common.CTR["lr"], "weight_decay": 1e-5,
                              "patience": common.CTR["patience"], "max_epochs": epochs, "n_parameters": n_params},
                    notes="; ".join([NOTES[name], COMMON_NOTE] + ([common.ONE_SEED_NOTE] if name in ONE_SEED else [])), packages=("torch-rechub", "scikit-learn"))


def main() -> int:
    args = common.parse_args(MODELS, __doc__.split("\n\n")[0], one_seed=ONE_SEED)
    from importlib.metadata import version

    v = version("torch-rechub")
    for name in args.models:
        for seed in args.seeds_for(name):
            if name in MISSING:  # one row with the reason, not one per seed
                if seed != args.seeds[0]:
                    continue
                common.save_run(LIBRARY, v, name, "ctr", seed, status="missing", notes=MISSING[name],
                                packages=("torch-rechub",))
                continue
            common.guarded(LIBRARY, v, name, "ctr", seed, lambda: run(name, seed, args.max_epochs, v),
                           packages=("torch-rechub",))
    return 0


if __name__ == "__main__":
    sys.exit(main())

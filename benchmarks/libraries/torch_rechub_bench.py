"""torch-rechub on the book's protocols: WideDeep, DeepFM, DIN on ``ctr`` (LR and FM: no such
models); its matching models GRU4Rec on ``sequence`` and DSSM on ``retrieval``.

Run inside the torch-rechub environment (``run.sh rechub`` makes it):
``_build/libraries/venv-rechub/bin/python benchmarks/libraries/torch_rechub_bench.py``.

Public API only: ``SparseFeature`` / ``SequenceFeature``, the ranking models, ``DataGenerator``
and ``CTRTrainer`` (``fit`` with a validation loader: early stopping on validation AUC, best
weights restored; ``predict``). Settings the book's protocol does not fix follow the library's
examples (``examples/ranking/run_criteo.py``, ``run_amazon_electronics.py``): MLP (256, 128),
dropout 0.2 and ReLU for WideDeep/DeepFM; DIN's MLP and attention MLP (256, 128); the trainer's
default weight decay 1e-5 (the examples pass 1e-3 on their own data sets).

The matching models use the library's data helpers (``generate_seq_feature_match``,
``gen_model_input``, ``MatchDataGenerator``), ``MatchTrainer`` and ``inference_embedding`` with
the settings of its MovieLens examples (``examples/matching/run_ml_gru4rec.py``,
``run_ml_dssm.py``). ``MatchTrainer`` validates with AUC on point-wise labels only, so the script
trains epoch by epoch (``train_one_epoch``) and stops on the protocol's validation metric
(Recall@20 for ``sequence``, Recall@50 with earlier items excluded for ``retrieval``; patience 3).
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

LIBRARY = "torch-rechub"
MODELS = ("LR", "FM", "WDL", "DeepFM", "DIN", "GRU4Rec", "DSSM")
PROTOCOL = {"GRU4Rec": "sequence", "DSSM": "retrieval"}
ONE_SEED = ("DIN", "GRU4Rec")
SINGLE = ("user_id", "item_id", "age_bucket", "gender", "occupation", "zip1", "year_bucket")
USER_SIDE = ("user_id", "age_bucket", "gender", "occupation", "zip1")
MISSING = {
    "LR": "torch-rechub has no logistic-regression ranking model",
    "FM": "torch-rechub has no FM ranking model (FM exists only as a layer inside DeepFM)",
}
# Models whose results would compare recbook with a broken baseline: one row with the reason, no
# metrics, unless --run-dropped asks for the run anyway.
DROPPED = {
    "DSSM": ("dropped: torch-rechub 0.9.0's DSSM.forward ignores its temperature (the division is "
             "commented out) and returns sigmoid(cosine of two L2-normalised towers), so every "
             "probability lies in [0.27, 0.73]: the point-wise loss of its MovieLens example cannot "
             "separate positives from negatives, and no setting restores the temperature. Its runs here "
             "(3 seeds, test Recall@50 0.056) were below the popularity baseline (0.197)"),
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


def build(name: str, meta, arch: str = "default"):
    from torch_rechub.basic.features import SequenceFeature, SparseFeature
    from torch_rechub.models.ranking import DIN, DeepFM, WideDeep

    d = common.CTR["embedding_dim"]
    sizes = meta["field_sizes"]
    mlp = dict(MLP, dropout=0.0) if arch == "book" else dict(MLP)  # the book's MLP has no dropout
    single = {f: SparseFeature(f, vocab_size=sizes[f], embed_dim=d, padding_idx=0) for f in SINGLE}
    genres = SequenceFeature("genres", vocab_size=sizes["genres"], embed_dim=d, pooling="mean", padding_idx=0)
    if name == "WDL":
        feats = [*single.values(), genres]
        return WideDeep(wide_features=feats, deep_features=feats, mlp_params=mlp)
    if name == "DeepFM":
        feats = [*single.values(), genres]
        return DeepFM(deep_features=feats, fm_features=feats, mlp_params=mlp)
    if name == "DIN":
        target = [single["item_id"], single["year_bucket"]]
        history = [SequenceFeature("hist_item_id", vocab_size=sizes["item_id"], embed_dim=d, pooling="concat",
                                   shared_with="item_id", padding_idx=0),
                   SequenceFeature("hist_year_bucket", vocab_size=sizes["year_bucket"], embed_dim=d,
                                   pooling="concat", shared_with="year_bucket", padding_idx=0)]
        features = [single[f] for f in USER_SIDE] + [genres]
        if arch == "book":  # recbook's DIN: activation unit 36, MLP 200-80
            return DIN(features=features, history_features=history, target_features=target,
                       mlp_params={"dims": [200, 80]}, attention_mlp_params={"dims": [36]})
        return DIN(features=features, history_features=history, target_features=target,
                   mlp_params={"dims": [256, 128]}, attention_mlp_params={"dims": [256, 128]})
    raise ValueError(name)


def run(name: str, seed: int, max_epochs: int | None, version: str, arch: str = "default") -> None:
    import tempfile

    from torch_rechub.trainers import CTRTrainer
    from torch_rechub.utils.data import DataGenerator

    common.one_thread()
    common.seed_everything(seed)
    meta = common.meta()
    din = name == "DIN"
    x, y = common.ctr_arrays(inputs, meta, din)
    model = build(name, meta, arch)
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
    common.save_run(LIBRARY, version, common.run_name(name, arch), "ctr", seed, epochs=len(val_aucs), best_epoch=best + 1, clock=clock,
                    predictions=preds, valid_metric={"auc": float(val_aucs[best])},
                    settings={"embedding_dim": common.CTR["embedding_dim"], "batch_size": common.CTR["batch_size"],
                              "optimizer": "Adam", "lr": common.CTR["lr"], "weight_decay": 1e-5,
                              "patience": common.CTR["patience"], "max_epochs": epochs, "n_parameters": n_params,
                              "arch": arch},
                    notes="; ".join([NOTES[name], COMMON_NOTE] + common.variant_notes(arch) + ([common.ONE_SEED_NOTE] if name in ONE_SEED else [])), packages=("torch-rechub", "scikit-learn"))


MATCH = {
    "GRU4Rec": dict(mode=2, lr=1e-3, weight_decay=1e-6, batch_size=256, max_epochs=100,
                    notes="list-wise mode 2 with 3 negatives (the library's popularity sampler, method 1) and "
                          "temperature 0.02, user MLP (128, 64, 16), as in run_ml_gru4rec.py; history = the last 50 "
                          "items, pre-padded (the example pads at the end) with padding_idx 0, so the GRU (no bias) "
                          "starts at the first real item; the library's sampler counts items over training + "
                          "validation events (its helper holds out each user's last event as the query); LIBRARY BUG "
                          "in 0.9.0: GRU4Rec.forward sums user x candidate products over the candidate axis "
                          "(sum(dim=1), where its YoutubeDNN sums dim=2 and divides by the temperature), so the "
                          "list-wise loss classifies the 16 embedding dimensions and the model learns no ranking: "
                          "the row shows what the library produces"),
    "DSSM": dict(mode=0, lr=1e-4, weight_decay=1e-6, batch_size=4096, max_epochs=100,
                 notes="point-wise mode 0 with 3 popularity-sampled negatives, temperature 0.02, towers (256, 128, "
                       "64) PReLU, lr 1e-4, batch 4096, as in run_ml_dssm.py; user tower = user fields + mean of the "
                       "last 50 items; item tower = item_id + year_bucket"),
}
USER_FIELDS = ("user_id", "age_bucket", "gender", "occupation", "zip1")


def ranking_recall(scores, targets, k, exclude=None) -> float:
    """Recall@k with pessimistic ties, reserved columns 0 and 1 never ranked (the early-stopping signal;
    the reported metrics come from recbook in collect.py)."""
    s = scores.astype(np.float64).copy()
    s[:, :2] = -np.inf
    t = s[np.arange(len(s)), targets]
    if exclude is not None:
        for u, items in enumerate(exclude):
            s[u, items] = -np.inf
    rank = (s >= t[:, None]).sum(1) - 1
    return float((rank < k).mean())


def run_matching(name: str, seed: int, max_epochs: int | None, version: str) -> None:
    import os
    import tempfile

    import torch
    from torch_rechub.basic.features import SequenceFeature, SparseFeature
    from torch_rechub.models.matching import DSSM, GRU4Rec
    from torch_rechub.trainers import MatchTrainer
    from torch_rechub.utils.data import MatchDataGenerator, df_to_dict
    from torch_rechub.utils.match import gen_model_input, generate_seq_feature_match

    common.one_thread()
    common.seed_everything(seed)
    cfg = MATCH[name]
    protocol = PROTOCOL[name]
    meta = common.meta()
    sizes = meta["sequence_field_sizes"]
    n_codes = meta["sequence_n_items"]
    users = common.DATA / "users.csv"
    users = __import__("pandas").read_csv(users)
    seqs = common.sequences().merge(users[["user_code", "user_id"]], on="user_code")
    seqs["time"] = seqs["timestamp"] * 10_000 + seqs["position"]
    user_profile = users[list(USER_FIELDS)]
    item_table = common.items()
    item_profile = item_table[["item_id", "year_bucket"]]

    def helper(events):
        return generate_seq_feature_match(events[["user_id", "item_id", "time"]].copy(), "user_id", "item_id",
                                          time_col="time", item_attribute_cols=[], sample_method=1,
                                          mode=cfg["mode"], neg_ratio=3, min_item=0)

    df_train, df_valid = helper(seqs[seqs["split"].isin(["train", "valid"])])
    _, df_test = helper(seqs)
    x = {}
    for split, df in (("train", df_train), ("valid", df_valid), ("test", df_test)):
        if split != "train":
            df = df.sort_values("user_id", kind="stable").reset_index(drop=True)  # user_id code order = user_code order
        x[split] = gen_model_input(df, user_profile, "user_id", item_profile, "item_id", seq_max_len=50,
                                   padding="pre", truncating="pre")
    y_train = x["train"]["label"] if cfg["mode"] == 0 else np.zeros(len(df_train), dtype=np.int64)
    targets = {s: x[s]["item_id"].astype(np.int64) for s in ("valid", "test")}
    if not np.array_equal(x["valid"]["user_id"], users["user_id"].to_numpy()):
        raise RuntimeError("validation rows are not one per user in user order")
    exclude = None
    if protocol == "retrieval":
        hist = {s: [g.to_numpy() for _, g in seqs[seqs["split"].isin(["train"] if s == "valid" else ["train", "valid"])]
                    .sort_values(["user_code", "position"]).groupby("user_code")["item_id"]] for s in ("valid", "test")}
        exclude = hist
    for key in ("label",):
        for split in ("valid", "test"):
            x[split].pop(key, None)
    all_item = df_to_dict(item_profile)
    d = common.CTR["embedding_dim"]
    user_features = [SparseFeature(f, vocab_size=sizes[f], embed_dim=d) for f in USER_FIELDS]
    if name == "GRU4Rec":
        item_features = [SparseFeature("item_id", vocab_size=sizes["item_id"], embed_dim=d, padding_idx=0)]
        history = [SequenceFeature("hist_item_id", vocab_size=sizes["item_id"], embed_dim=d, pooling="concat",
                                   shared_with="item_id", padding_idx=0)]
        neg = [SequenceFeature("neg_items", vocab_size=sizes["item_id"], embed_dim=d, pooling="concat",
                               shared_with="item_id")]
        model = GRU4Rec(user_features, history, item_features, neg, user_params={"dims": [128, 64, 16]},
                        temperature=0.02)
    else:
        user_features = user_features + [SequenceFeature("hist_item_id", vocab_size=sizes["item_id"], embed_dim=d,
                                                         pooling="mean", shared_with="item_id", padding_idx=0)]
        item_features = [SparseFeature("item_id", vocab_size=sizes["item_id"], embed_dim=d, padding_idx=0),
                         SparseFeature("year_bucket", vocab_size=sizes["year_bucket"], embed_dim=d)]
        model = DSSM(user_features, item_features, temperature=0.02,
                     user_params={"dims": [256, 128, 64], "activation": "prelu"},
                     item_params={"dims": [256, 128, 64], "activation": "prelu"})
    for split in ("train", "valid", "test"):  # only the model's inputs (the helper adds history lengths)
        x[split].pop("histlen_item_id", None)
    dg = MatchDataGenerator(x=x["train"], y=y_train)
    train_dl, _, item_dl = dg.generate_dataloader(x["valid"], all_item, batch_size=cfg["batch_size"], num_workers=0)
    loaders = {s: MatchDataGenerator(x=x[s]).generate_dataloader(x[s], all_item, batch_size=4096, num_workers=0)[1]
               for s in ("valid", "test")}
    epochs_cap = max_epochs or cfg["max_epochs"]
    clock = common.CPUClock()
    curve, best, wait = [], (-1.0, 0, None), 0
    with tempfile.TemporaryDirectory() as tmp:
        trainer = MatchTrainer(model, mode=cfg["mode"], optimizer_params={"lr": cfg["lr"], "weight_decay": cfg["weight_decay"]},
                               n_epoch=1, device="cpu", model_path=tmp)

        def scores(split):
            torch.save(model.state_dict(), os.path.join(tmp, "model.pth"))
            u = trainer.inference_embedding(model=model, mode="user", data_loader=loaders[split], model_path=tmp)
            i = trainer.inference_embedding(model=model, mode="item", data_loader=item_dl, model_path=tmp)
            model.mode = None
            s = (u @ i.T).numpy()
            out = np.full((len(s), n_codes), s.min() - 1.0, dtype=np.float32)
            out[:, all_item["item_id"].astype(np.int64)] = s
            return out

        def validate():
            k = 20 if protocol == "sequence" else 50
            return ranking_recall(scores("valid"), targets["valid"], k, exclude["valid"] if exclude else None)

        validate = clock.exclude(validate)
        with clock.training():
            for epoch in range(epochs_cap):
                trainer.train_one_epoch(train_dl)
                r = validate()
                curve.append(r)
                print(f"epoch {epoch + 1}: valid recall {r:.4f}", flush=True)
                if r > best[0]:
                    best, wait = (r, epoch + 1, {k: v.clone() for k, v in model.state_dict().items()}), 0
                else:
                    wait += 1
                    if wait >= common.CTR["patience"]:
                        break
        model.load_state_dict(best[2])
        preds = {s: scores(s) for s in ("valid", "test")}
    metric_name = "recall@20" if protocol == "sequence" else "recall@50"
    print(f"{LIBRARY} {name} seed {seed}: {len(curve)} epochs, best {best[1]} valid {metric_name} {best[0]:.4f}, "
          f"{clock.cpu / len(curve):.2f} CPU s/epoch")
    common.save_run(LIBRARY, version, name, protocol, seed, epochs=len(curve), best_epoch=best[1], clock=clock,
                    predictions=preds, valid_metric={metric_name: best[0]},
                    settings={k: v for k, v in cfg.items() if k != "notes"} | {
                        "embedding_dim": d, "patience": common.CTR["patience"], "neg_ratio": 3, "temperature": 0.02,
                        "n_parameters": sum(p.numel() for p in model.parameters())},
                    notes=cfg["notes"] + "; early stopping on the protocol's validation metric, epoch by epoch "
                          "(MatchTrainer validates with AUC only)", packages=("torch-rechub", "scikit-learn"))


def main() -> int:
    args = common.parse_args(MODELS, __doc__.split("\n\n")[0], one_seed=ONE_SEED,
                             extra=[("--run-dropped", f"run {', '.join(DROPPED)} anyway (a broken model: see the notes)")])
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
            if name in DROPPED and not args.run_dropped:
                if seed == args.seeds[0]:
                    common.save_run(LIBRARY, v, name, PROTOCOL[name], seed, status="dropped", notes=DROPPED[name],
                                    packages=("torch-rechub",))
                continue
            if name in PROTOCOL:
                common.guarded(LIBRARY, v, name, PROTOCOL[name], seed,
                               lambda: run_matching(name, seed, args.max_epochs, v), packages=("torch-rechub",))
                continue
            common.guarded(LIBRARY, v, common.run_name(name, args.arch), "ctr", seed,
                           lambda: run(name, seed, args.max_epochs, v, args.arch), packages=("torch-rechub",))
    return 0


if __name__ == "__main__":
    sys.exit(main())

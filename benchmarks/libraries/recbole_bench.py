"""RecBole on the book's protocols: FM, WDL (WideDeep), DIN on ``ctr``; GRU4Rec and SASRec on ``sequence``.

Run inside the RecBole environment (``run.sh recbole`` makes it):
``_build/libraries/venv-recbole/bin/python benchmarks/libraries/recbole_bench.py``.

RecBole reads *atomic files*. This script writes the book's exported split as three benchmark files
(``<name>.train.inter``, ``.valid.inter``, ``.test.inter``, with ``benchmark_filename``) plus
``.item`` / ``.user`` files, then uses the documented API: ``Config``, ``create_dataset``,
``data_preparation``, ``get_model``, ``get_trainer``, ``trainer.fit`` (early stopping on the
validation metric, best model saved), and the model's ``predict`` (CTR) or ``full_sort_predict``
(sequences). Every setting the book's protocol does not fix keeps RecBole's model defaults.
Tokens are recbook's codes, so RecBole's own re-indexing is a bijection of recbook's vocabularies.
"""
from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

LIBRARY = "RecBole"
MODELS = ("FM", "WDL", "DIN", "GRU4Rec", "SASRec")
ONE_SEED = ("DIN", "GRU4Rec", "SASRec")
RECBOLE_NAME = {"FM": "FM", "WDL": "WideDeep", "DIN": "DIN", "GRU4Rec": "GRU4Rec", "SASRec": "SASRec"}
PROTOCOL = {"FM": "ctr", "WDL": "ctr", "DIN": "ctr", "GRU4Rec": "sequence", "SASRec": "sequence"}
USER_FIELDS = ("age_bucket", "gender", "occupation", "zip1")
MAX_LEN = 50
NOTES = {
    "FM": "all 8 fields as features (user-side in the .inter file, year_bucket and genres in the .item file); "
          "RecBole defaults otherwise",
    "WDL": "all 8 fields as features; RecBole defaults: MLP (32, 16, 8), dropout 0.1",
    "DIN": ("history = the exported 50 earlier items as item_id_list (RecBole's benchmark-file presets), item "
            "features year_bucket + genres (mean), user features from a .user file keyed by the raw user id "
            "(RecBole's DIN reads user features by id, so cold-start users keep their own never-trained id "
            "instead of recbook's shared unknown code); RecBole defaults: MLP (256, 256, 256)"),
    "GRU4Rec": ("training rows = every prefix of each user's training sequence (the last 50 items) -> next "
                "item, as RecBole's own augmentation builds them; CE loss over all items; RecBole defaults: "
                "embedding 64, hidden 128, dropout 0.3; its early stopping on its own valid Recall@20"),
    "SASRec": ("training rows as for GRU4Rec; CE loss; RecBole defaults: 2 layers, 2 heads, hidden 64, "
               "dropout 0.5; extra reference (no SASRec in recbook)"),
}
CTR_NOTE = ("codes as tokens; a code seen only in valid/test (the unknown user code, new occupations) gets "
            "RecBole's random initial vector, never trained")


# recbook's settings, moved into the library one at a time (``--variant``; the ablation of
# ``python -m recbook.ablation``). Each names the setting of ``recbook.ablation`` it moves.
VARIANTS = {"FM": ("embed_init:normal-0.01", "linear_init:zero", "unknown_rows:zero", "patience:3",
                   "genre_linear:mean", "all")}


def apply_recbook_settings(model, dataset, settings: dict) -> None:
    """Re-initialise RecBole's FM with recbook's settings: embeddings ``N(0, 0.01^2)`` instead of
    Xavier-normal, first-order weights 0, the unknown code's rows (recbook's code 1, the one value
    every user or occupation seen only after training shares) at 0, and the genres' first-order
    weights averaged instead of summed."""
    import types

    import torch

    if not any(settings.get(k) for k in ("embed_init", "linear_init", "unknown_rows", "genre_linear")):
        return  # the library's own recipe (and the models without these tables: DIN, GRU4Rec)
    tables = [(model.token_embedding_table, model.token_seq_embedding_table),
              (model.first_order_linear.token_embedding_table, model.first_order_linear.token_seq_embedding_table)]
    with torch.no_grad():
        if settings.get("embed_init") == "normal-0.01":
            model.token_embedding_table.embedding.weight.normal_(0.0, 0.01)
            for t in model.token_seq_embedding_table:
                t.weight.normal_(0.0, 0.01)
        if settings.get("linear_init") == "zero":
            model.first_order_linear.token_embedding_table.embedding.weight.zero_()
            for t in model.first_order_linear.token_seq_embedding_table:
                t.weight.zero_()
        if settings.get("unknown_rows") == "zero":
            for single, seqs in tables:
                for f, name in enumerate(model.token_field_names):
                    token = dataset.field2token_id[name].get("1")
                    if token is not None:
                        single.embedding.weight[int(single.offsets[f]) + token] = 0.0
                for f, name in enumerate(model.token_seq_field_names):
                    token = dataset.field2token_id[name].get("1")
                    if token is not None:
                        seqs[f].weight[token] = 0.0
    if settings.get("genre_linear") == "mean":
        linear = model.first_order_linear

        def mean_pooled(self, token_seq_fields):
            out = []
            for i, field in enumerate(token_seq_fields):
                mask = (field != 0).float()
                emb = self.token_seq_embedding_table[i](field) * mask.unsqueeze(2)
                out.append(emb.sum(dim=1, keepdim=True) / mask.sum(dim=1, keepdim=True).clamp(min=1).unsqueeze(2))
            return torch.sum(torch.cat(out, dim=1), dim=1, keepdim=True) if out else None

        linear.embed_token_seq_fields = types.MethodType(mean_pooled, linear)


def _tokens(a) -> list:
    return [str(int(v)) for v in a]


def _seq(rows) -> list:
    return [" ".join(str(int(v)) for v in r if v != 0) for r in rows]


def write_ctr_files(folder: Path, name: str, meta, din: bool) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    L = meta["history_len"]
    for split in ("train", "valid", "test"):
        f = common.ctr_split(split)
        if din:
            out = pd.DataFrame({"user_id:token": _tokens(f["user"]), "item_id:token": _tokens(f["item_id"]),
                                "label:float": f["label"].astype(float),
                                "item_id_list:token_seq": _seq(f[[f"hist_{j}" for j in range(L)]].to_numpy())})
        else:
            out = pd.DataFrame({"user_id:token": _tokens(f["user_id"]), "item_id:token": _tokens(f["item_id"])})
            for c in USER_FIELDS:
                out[f"{c}:token"] = _tokens(f[c])
            out["label:float"] = f["label"].astype(float)
        out.to_csv(folder / f"{name}.{split}.inter", sep="\t", index=False)
    items = common.items()
    genres = items[[f"genre_{j}" for j in range(meta["genre_width"])]].to_numpy()
    pd.DataFrame({"item_id:token": _tokens(items["item_id"]), "year_bucket:token": _tokens(items["year_bucket"]),
                  "genres:token_seq": _seq(genres)}).to_csv(folder / f"{name}.item", sep="\t", index=False)
    if din:  # user features by raw user id; the codes of the row where the user first appears
        rows = pd.concat([common.ctr_split(s) for s in ("train", "valid", "test")]).drop_duplicates("user")
        user = pd.DataFrame({"user_id:token": _tokens(rows["user"])})
        for c in USER_FIELDS:
            user[f"{c}:token"] = _tokens(rows[c])
        user.to_csv(folder / f"{name}.user", sep="\t", index=False)


def write_sequence_files(folder: Path, name: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    seqs = common.sequences().sort_values(["user_code", "position"])
    parts = {"train": [], "valid": [], "test": []}
    for u, g in seqs.groupby("user_code"):
        items = g["item_id"].to_numpy()
        n = len(items)
        for t in range(1, n):
            split = "train" if t < n - 2 else ("valid" if t == n - 2 else "test")
            hist = items[max(0, t - MAX_LEN):t]
            parts[split].append((f"u{u}", str(int(items[t])), " ".join(map(str, hist))))
    for split, rows in parts.items():
        pd.DataFrame(rows, columns=["user_id:token", "item_id:token", "item_id_list:token_seq"]).to_csv(
            folder / f"{name}.{split}.inter", sep="\t", index=False)


def config_dict(model: str, seed: int, folder: Path, name: str, max_epochs: int | None, checkpoints: Path,
                arch: str = "default", settings: dict | None = None) -> dict:
    base = {
        "data_path": str(folder.parent), "dataset": name, "benchmark_filename": ["train", "valid", "test"],
        "seed": seed, "reproducibility": True, "device": "cpu", "use_gpu": False, "worker": 0,
        "show_progress": False, "checkpoint_dir": str(checkpoints), "log_wandb": False,
        # RecBole stops after stopping_step + 1 epochs without an improvement (>= counts as one);
        # recbook and DeepCTR-Torch after `patience` epochs without a strict improvement.
        "epochs": max_epochs or common.CTR["epochs"],
        "stopping_step": common.CTR["patience"] - (1 if (settings or {}).get("patience") == "3" else 0),
        "eval_step": 1, "learning_rate": common.CTR["lr"], "learner": "adam",
        "USER_ID_FIELD": "user_id", "ITEM_ID_FIELD": "item_id", "TIME_FIELD": None,
        "field_separator": "\t", "seq_separator": " ",
    }
    if PROTOCOL[model] == "ctr":
        din = model == "DIN"
        base.update({
            "LABEL_FIELD": "label", "train_batch_size": common.CTR["batch_size"], "eval_batch_size": 4096,
            "embedding_size": common.CTR["embedding_dim"], "train_neg_sample_args": None,
            "eval_args": {"split": {"RS": [0.8, 0.1, 0.1]}, "order": "TO", "group_by": None, "mode": "labeled"},
            "metrics": ["AUC", "LogLoss"], "valid_metric": "AUC",
            "load_col": {"inter": ["user_id", "item_id", "label"] + (["item_id_list"] if din else list(USER_FIELDS)),
                         "item": ["item_id", "year_bucket", "genres"],
                         **({"user": ["user_id", *USER_FIELDS]} if din else {})},
        })
        if din:
            base.update({"alias_of_item_id": ["item_id_list"], "MAX_ITEM_LIST_LENGTH": MAX_LEN})
        if arch == "book":  # the book's architecture (timing comparison): MLP 256-128 without dropout
            if model == "WDL":
                base.update({"mlp_hidden_size": [256, 128], "dropout_prob": 0.0})
            elif din:  # recbook's DIN: activation unit 36, MLP 200-80
                base.update({"mlp_hidden_size": [200, 80], "dropout_prob": 0.0})
    else:
        base.update({
            "train_batch_size": 2048, "eval_batch_size": 4096,
            "loss_type": "CE", "train_neg_sample_args": None, "MAX_ITEM_LIST_LENGTH": MAX_LEN,
            "alias_of_item_id": ["item_id_list"],
            "eval_args": {"split": {"LS": "valid_and_test"}, "order": "TO", "group_by": "user", "mode": "full"},
            "metrics": ["Recall", "MRR", "NDCG"], "topk": [10, 20], "valid_metric": "Recall@20",
            "load_col": {"inter": ["user_id", "item_id", "item_id_list"]},
        })
    return base


def ctr_predictions(model, loader, dataset, split: str) -> np.ndarray:
    import torch

    preds, items, labels = [], [], []
    model.eval()
    with torch.no_grad():
        for batch in loader:
            inter = batch[0] if isinstance(batch, tuple) else batch
            preds.append(model.predict(inter).cpu().numpy().reshape(-1))
            items.append(inter["item_id"].cpu().numpy())
            labels.append(inter["label"].cpu().numpy())
    preds = np.concatenate(preds).astype(np.float64)
    tokens = dataset.field2id_token["item_id"]
    got_items = np.array([int(t) for t in tokens[np.concatenate(items)]])
    frame = common.ctr_split(split)
    if not (np.array_equal(got_items, frame["item_id"].to_numpy())
            and np.array_equal(np.concatenate(labels), frame["label"].to_numpy())):
        raise RuntimeError(f"{split}: RecBole's loader did not keep the rows in the file's order")
    return preds


def sequence_scores(model, loader, dataset, n_codes: int, n_users: int) -> np.ndarray:
    import torch

    out = np.full((n_users, n_codes), np.nan, dtype=np.float32)
    user_tokens = dataset.field2id_token["user_id"]
    item_tokens = dataset.field2id_token["item_id"]
    cols = np.array([int(t) if t != "[PAD]" else -1 for t in item_tokens])
    keep = cols >= 0
    model.eval()
    done = np.zeros(n_users, dtype=bool)
    with torch.no_grad():
        for batch in loader:
            inter = batch[0]
            s = model.full_sort_predict(inter).reshape(len(inter), -1).cpu().numpy()
            users = np.array([int(t[1:]) for t in user_tokens[inter["user_id"].cpu().numpy()]])
            block = np.full((len(users), n_codes), np.nan, dtype=np.float32)
            block[:, cols[keep]] = s[:, keep]
            out[users] = block
            done[users] = True
    if not done.all():
        raise RuntimeError(f"{int((~done).sum())} users were not scored")
    low = np.nanmin(out) - 1.0
    return np.where(np.isnan(out), low, out)  # items RecBole never saw: ranked last


def _train(name, seed, max_epochs, meta, protocol, tmp, arch="default", variant=None):
    import torch
    from recbole.config import Config
    from recbole.data import create_dataset, data_preparation
    from recbole.utils import get_model, get_trainer, init_logger, init_seed

    ds_name = f"book{name.lower()}"
    folder = tmp / "data" / ds_name
    if protocol == "ctr":
        write_ctr_files(folder, ds_name, meta, din=name == "DIN")
    else:
        write_sequence_files(folder, ds_name)
    settings = common.recbook_settings(VARIANTS, name, variant)
    cfg = config_dict(name, seed, folder, ds_name, max_epochs, tmp / "saved", arch, settings)
    config = Config(model=RECBOLE_NAME[name], dataset=ds_name, config_dict=cfg)
    init_logger(config)  # RecBole's per-epoch log lines on stdout (files under the temporary folder)
    init_seed(config["seed"], config["reproducibility"])
    torch.set_num_threads(1)
    dataset = create_dataset(config)
    train_data, valid_data, test_data = data_preparation(config, dataset)
    init_seed(config["seed"] + config["local_rank"], config["reproducibility"])
    model = get_model(config["model"])(config, train_data._dataset).to(config["device"])
    apply_recbook_settings(model, dataset, settings)
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
    clock = common.CPUClock()
    counter = {"epochs": 0}
    train_epoch = trainer._train_epoch

    def counted(*a, **k):
        counter["epochs"] += 1
        return train_epoch(*a, **k)

    trainer._train_epoch = counted
    trainer._valid_epoch = clock.exclude(trainer._valid_epoch)  # validation time is not training time
    with clock.training():
        best_score, _ = trainer.fit(train_data, valid_data, saved=True, show_progress=False)
    checkpoint = torch.load(trainer.saved_model_file, map_location="cpu", weights_only=False)
    model.load_state_dict(checkpoint["state_dict"])
    model.load_other_parameter(checkpoint.get("other_parameter"))
    if protocol == "ctr":
        preds = {"valid": ctr_predictions(model, valid_data, dataset, "valid"),
                 "test": ctr_predictions(model, test_data, dataset, "test")}
        metric = {"auc": float(best_score)}
    else:
        n_users = int(common.sequences()["user_code"].max()) + 1
        preds = {s: sequence_scores(model, d, dataset, meta["sequence_n_items"], n_users)
                 for s, d in (("valid", valid_data), ("test", test_data))}
        metric = {"recall@20": float(best_score)}
    epochs = counter["epochs"]
    best_epoch = int(getattr(trainer, "cur_step", 0))
    best_epoch = epochs - best_epoch if best_epoch else epochs
    n_params = sum(p.numel() for p in model.parameters())
    settings = {k: config[k] for k in ("embedding_size", "hidden_size", "num_layers", "n_layers", "n_heads",
                                       "mlp_hidden_size", "dropout_prob", "hidden_dropout_prob",
                                       "train_batch_size", "learning_rate", "stopping_step", "epochs",
                                       "loss_type", "MAX_ITEM_LIST_LENGTH", "pooling_mode")
                if config[k] is not None}
    settings["n_parameters"] = n_params
    settings["arch"] = arch
    settings["recbook_settings"] = common.recbook_settings(VARIANTS, name, variant)
    return preds, metric, epochs, best_epoch, best_score, clock, settings


def run(name: str, seed: int, max_epochs: int | None, version: str, arch: str = "default",
        variant: str | None = None) -> None:
    common.one_thread()
    meta = common.meta()
    protocol = PROTOCOL[name]
    cwd = os.getcwd()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        os.chdir(tmp)  # RecBole writes its logs (log/, log_tensorboard/) into the working folder
        try:
            result = _train(name, seed, max_epochs, meta, protocol, tmp, arch, variant)
        finally:
            os.chdir(cwd)
    preds, metric, epochs, best_epoch, best_score, clock, settings = result
    print(f"{LIBRARY} {name} seed {seed}: {epochs} epochs, best valid {best_score:.4f}, "
          f"{clock.cpu / epochs:.2f} CPU s/epoch")
    notes = [NOTES[name]] + ([CTR_NOTE] if protocol == "ctr" else []) + common.variant_notes(arch, variant) \
        + ([common.ONE_SEED_NOTE] if name in ONE_SEED else [])
    common.save_run(LIBRARY, version, common.run_name(name, arch, variant), protocol, seed, epochs=epochs, best_epoch=best_epoch, clock=clock,
                    predictions=preds, valid_metric=metric, settings=settings, notes="; ".join(notes),
                    packages=("recbole", "scipy", "scikit-learn"))


def main() -> int:
    args = common.parse_args(MODELS, __doc__.split("\n\n")[0], one_seed=ONE_SEED, variants=VARIANTS)
    from importlib.metadata import version

    v = version("recbole")
    for name in args.models:
        for seed in args.seeds_for(name):
            common.guarded(LIBRARY, v, common.run_name(name, args.arch, args.variant), PROTOCOL[name], seed,
                           lambda: run(name, seed, args.max_epochs, v, args.arch, args.variant),
                           packages=("recbole",))
    return 0


if __name__ == "__main__":
    sys.exit(main())

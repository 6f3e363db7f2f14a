"""The GRU4Rec authors' PyTorch code on the book's leave-last-out ``sequence`` protocol.

The code is not on PyPI. ``run.sh gru4rec`` clones it at a pinned commit
(``GRU4REC_COMMIT`` below) into ``_build/libraries/GRU4Rec_PyTorch_Official``; on a machine
without access to GitHub, point ``GRU4REC_OFFICIAL_DIR`` at a local copy (a checkout of that
commit) instead. Nothing of that code is stored in this repository.

Run inside the GRU4Rec environment (torch, numpy, pandas):
``_build/libraries/venv-gru4rec/bin/python benchmarks/libraries/gru4rec_official_bench.py``.

What is the library's own: the model class ``GRU4Rec`` with its ``fit`` (session-parallel
mini-batches, sampled negatives, cross-entropy loss over a softmax, Adagrad with momentum, its
initialisation), and the network's step functions (``model.embed``, ``model.hidden_step``,
``model.score_items``) for scoring. What is adapted, and why:

* Sessions are the users' **training** sequences (all but the last two items), one session per
  user, in the book's time order (``Time`` = the rating's position in that order).
* The authors' README says that sequence-aware evaluation (the hidden state computed over the
  user's whole history) is not in the public code. Here each user's history (training sequence,
  plus the validation item for the test target) is run through the trained network with its own
  step functions, and the final hidden state scores every item, as the README describes.
* Early stopping: ``fit`` has a fixed ``n_epochs``. The book's protocol stops on validation
  Recall@20 (patience 3); a subclass of the library's ``SessionDataIterator`` calls back at the end
  of each training epoch, evaluates, keeps the best weights and ends ``fit`` when patience runs
  out. The training loop itself is unchanged.
* Items that never occur in a training session have no output row in the library's model; they get
  the lowest score (they are ranked last).
* Settings: the class defaults (one GRU layer of 100, batch 64, learning rate 0.05, 2048 sampled
  negatives, ``sample_alpha`` 0.5, constrained embedding) and, as the README recommends for the
  cross-entropy loss, ``logq=1.0``. The library initialises weights with its fixed compatibility
  seed; the run's seed drives the negative samples.
"""
from __future__ import annotations

import copy
import importlib
import os
import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

LIBRARY = "GRU4Rec-official"
GRU4REC_REPO = "https://github.com/hidasib/GRU4Rec_PyTorch_Official"
GRU4REC_COMMIT = "d1fc31105577665d2f105de1c8d9a38d223a9a22"
MODELS = ("GRU4Rec",)
PARAMS = dict(layers=[100], loss="cross-entropy", batch_size=64, dropout_p_embed=0.0, dropout_p_hidden=0.0,
              learning_rate=0.05, momentum=0.0, sample_alpha=0.5, n_sample=2048, embedding=0,
              constrained_embedding=True, logq=1.0)
MAX_EPOCHS = 100
PATIENCE = 3


class StopTraining(Exception):
    pass


def source_dir() -> Path:
    path = os.environ.get("GRU4REC_OFFICIAL_DIR") or str(common.BUILD / "GRU4Rec_PyTorch_Official")
    path = Path(path)
    if not (path / "gru4rec_pytorch.py").is_file():
        raise SystemExit(
            f"The GRU4Rec authors' code is not at {path}. Clone it first (needs access to GitHub):\n"
            f"  git clone {GRU4REC_REPO} {path} && git -C {path} checkout {GRU4REC_COMMIT}\n"
            "or set GRU4REC_OFFICIAL_DIR to a local copy of that commit.")
    return path


def histories(seqs: pd.DataFrame, split: str) -> list:
    """Per user (by user_code), the items before the ``split`` target, in time order."""
    keep = seqs["split"].eq("train") if split == "valid" else seqs["split"].isin(["train", "valid"])
    s = seqs[keep].sort_values(["user_code", "position"])
    return [g.to_numpy() for _, g in s.groupby("user_code")["item_id"]]


def final_scores(gru, hist: list, n_codes: int):
    """Scores ``[U, n_codes]``: each user's history run through the trained network step by step
    (the library's ``embed`` and ``hidden_step``), the last hidden state scored against every item."""
    import torch

    model = gru.model
    itemidmap = gru.data_iterator.itemidmap  # item code -> the library's item index
    lengths = np.array([len(h) for h in hist])
    order = np.argsort(-lengths, kind="stable")
    T = int(lengths.max())
    idx = np.full((len(hist), T), -1, dtype=np.int64)
    for row, u in enumerate(order):
        mapped = itemidmap.reindex(["i" + str(c) for c in hist[u]]).to_numpy()
        idx[row, :lengths[u]] = np.where(np.isnan(mapped), -1, mapped)
    final = torch.zeros((len(hist), gru.layers[-1]))
    H = [torch.zeros((len(hist), n)) for n in gru.layers]
    with torch.no_grad():
        for t in range(T):
            active = int((lengths[order] > t).sum())
            x = torch.as_tensor(idx[:active, t])
            known = x >= 0  # an item the network never saw in training: skip that step
            if not bool(known.all()):
                x = torch.where(known, x, torch.zeros_like(x))
            Hs = [h[:active].clone() for h in H]
            E, _, _ = model.embed(x, Hs, None)
            model.hidden_step(E, Hs, training=False)
            for i in range(len(H)):
                H[i][:active] = torch.where(known[:, None], Hs[i], H[i][:active])
            done = lengths[order][:active] == t + 1
            final[:active][torch.as_tensor(done)] = H[-1][:active][torch.as_tensor(done)]
        R = model.score_items(final, model.Wy.weight, model.By.weight).numpy()
    scores = np.full((len(hist), n_codes), np.float32(R.min() - 1.0), dtype=np.float32)
    cols = np.array([int(t[1:]) for t in itemidmap.index], dtype=np.int64)
    scores[np.ix_(order, cols)] = R[:, itemidmap.to_numpy()]
    return scores


def recall_at(scores, targets, k=20) -> float:
    s = scores.copy()
    s[:, :2] = -np.inf
    t = s[np.arange(len(s)), targets]
    rank = (s >= t[:, None]).sum(1) - 1
    return float((rank < k).mean())


def run(seed: int, max_epochs: int | None, commit: str) -> None:
    import torch

    src = source_dir()
    sys.path.insert(0, str(src))
    g4r = importlib.import_module("gru4rec_pytorch")
    common.one_thread()
    common.seed_everything(seed)
    meta = common.meta()
    seqs = common.sequences()
    n_codes = meta["sequence_n_items"]
    train = seqs[seqs["split"].eq("train")].copy()
    # The book's time order: rows are already sorted by user and position. Time = global order of
    # the rating (its timestamp, ties by the file order), so sessions are ordered by their first event.
    # Item ids as strings: the library builds torch tensors from pandas Series indexed by item id,
    # which torch accepts only through pandas' positional fallback for non-integer labels.
    train = train.assign(SessionId=train["user_code"], ItemId="i" + train["item_id"].astype(str),
                         Time=train["timestamp"] * 1_000_000 + train["position"])
    train = train.sort_values(["SessionId", "Time"], kind="stable")[["SessionId", "ItemId", "Time"]]
    targets = {s: seqs[seqs["split"].eq(s)].sort_values("user_code")["item_id"].to_numpy() for s in ("valid", "test")}
    hist = {s: histories(seqs, s) for s in ("valid", "test")}
    epochs = max_epochs or MAX_EPOCHS
    gru = g4r.GRU4Rec(device=torch.device("cpu"), n_epochs=epochs, **copy.deepcopy(PARAMS))
    clock = common.CPUClock()
    state = {"epoch": 0, "best": -1.0, "best_epoch": 0, "weights": None, "wait": 0, "curve": []}

    def end_of_epoch():
        state["epoch"] += 1
        r = recall_at(final_scores(gru, hist["valid"], n_codes), targets["valid"])
        state["curve"].append(r)
        print(f"epoch {state['epoch']}: valid recall@20 {r:.4f}", flush=True)
        if r > state["best"]:
            state.update(best=r, best_epoch=state["epoch"], weights=copy.deepcopy(gru.model.state_dict()), wait=0)
        else:
            state["wait"] += 1
            if state["wait"] >= PATIENCE:
                raise StopTraining

    # The library's own iterator class, kept aside the first time (a second seed in the same process
    # must not stack callbacks).
    base = g4r.__dict__.setdefault("_original_SessionDataIterator", g4r.SessionDataIterator)

    class Iterator(base):
        """The library's iterator; at the end of each training epoch, the validation callback."""

        def __call__(self, enable_neg_samples, reset_hook=None):
            yield from super().__call__(enable_neg_samples, reset_hook)
            if enable_neg_samples:  # a training epoch (evaluation iterators sample nothing)
                clock.exclude(end_of_epoch)()

    g4r.SessionDataIterator = Iterator
    try:
        with clock.training():
            try:
                gru.fit(train, item_key="ItemId", session_key="SessionId", time_key="Time")
            except StopTraining:
                pass
    finally:
        g4r.SessionDataIterator = base
    if gru.error_during_train:
        raise RuntimeError("the library reported a NaN loss during training")
    gru.model.load_state_dict(state["weights"])
    preds = {s: final_scores(gru, hist[s], n_codes) for s in ("valid", "test")}
    n_epochs = state["epoch"]
    print(f"{LIBRARY} GRU4Rec seed {seed}: {n_epochs} epochs, best {state['best_epoch']} "
          f"valid recall@20 {state['best']:.4f}, {clock.cpu / n_epochs:.2f} CPU s/epoch")
    common.save_run(LIBRARY, commit[:12], "GRU4Rec", "sequence", seed, epochs=n_epochs, best_epoch=state["best_epoch"],
                    clock=clock, predictions=preds, valid_metric={"recall@20": state["best"]},
                    settings={**PARAMS, "max_epochs": epochs, "patience": PATIENCE, "commit": commit,
                              "n_parameters": sum(p.numel() for p in gru.model.parameters())},
                    notes=("authors' code at commit " + commit[:12] + "; one session per user = the training "
                           "sequence; sequence-aware scoring (hidden state over the whole history, as the README "
                           "describes; not in the public code) with the library's step functions; early stopping "
                           "on valid Recall@20 through a callback in the library's data iterator; class defaults + "
                           "logq=1 (README); items absent from training ranked last"))


def commit_of(src: Path) -> str:
    head = src / ".git"
    if head.exists():
        import subprocess

        try:
            return subprocess.run(["git", "-C", str(src), "rev-parse", "HEAD"], capture_output=True, text=True,
                                  check=True).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            pass
    return os.environ.get("GRU4REC_OFFICIAL_COMMIT", GRU4REC_COMMIT)


def main() -> int:
    args = common.parse_args(MODELS, __doc__.split("\n\n")[0])
    src = source_dir()
    commit = commit_of(src)
    if commit != GRU4REC_COMMIT:
        print(f"warning: the code at {src} is at commit {commit}, not the pinned {GRU4REC_COMMIT}")
    for seed in args.seeds:
        common.guarded(LIBRARY, commit[:12], "GRU4Rec", "sequence", seed, lambda: run(seed, args.max_epochs, commit))
    return 0


if __name__ == "__main__":
    sys.exit(main())

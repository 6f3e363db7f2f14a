"""Helpers of the GRU4Rec chapter: a common GRU4Rec listing and what goes wrong with it, a padded GRU
done right, session-parallel slots step by step, loss comparisons, the tie-rule pitfall, and the
next-item widget.

* :data:`SOURCE_LISTING`, :func:`listing_model`, :func:`listing_checks`: a widely copied
  GRU4Rec listing, run as written, and each claimed problem checked on the listing itself.
* :class:`PaddedGRU`, :func:`padded_windows`, :func:`padded_loss`: the padded version done right
  (padding id 0 of its own, the last *real* state, a loss at every step), trainable with
  :func:`recbook.train.fit` and evaluated like every other next-item model.
* :func:`slot_table`, :func:`plot_slots`: which sequence occupies which slot of a session-parallel
  mini-batch, step by step.
* :func:`compare_variants`, :func:`plot_variants`: GRU4Rec variants (losses, number of negatives,
  alpha) trained and evaluated side by side, with the CPU time per epoch.
* :func:`loss_entries`, :func:`run_loss_comparison`: the losses, numbers of negatives and ``alpha``
  compared as the leaderboard trains (the committed ``book/results/gru4rec_losses.csv``).
* :func:`leave_last_out_by_tie_rule`, :func:`tie_rule_effect`: the same model evaluated on a split
  whose same-second ratings are ordered by item id instead of by the file's row order.
* :func:`prepared_sequences`, :func:`next_item_table`, :func:`next_item_payload`,
  :func:`next_item_chart`: top-10 next movies for a sequence of movies, scored in the browser
  from the GRU's state and the item vectors; :func:`next_item_builder`, the same in a live kernel.
"""
from __future__ import annotations

import ast
import html
from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from matplotlib.axes import Axes
from torch import nn

from . import BOOK_RESULTS
from .._checks import require_columns, require_positive_int
from ..data.sessions import N_RESERVED, check_item_sequences, session_parallel_schedule
from ..data.tensors import TensorData
from ..data.titles import display_titles
from ..models.gru4rec import GRU4RecConfig, train_gru4rec
from ..next_item import evaluate_next_item, next_item_split
from ..plots import axes_or_new as _axes

__all__ = [
    "PREPARED_SEQUENCES", "SOURCE_LISTING", "PaddedGRU", "compare_variants",
    "LOSSES_FILE", "LOSS_EPOCHS", "leave_last_out_by_tie_rule", "listing_checks", "loss_entries", "listing_model", "movie_titles", "next_item_builder",
    "next_item_chart", "next_item_payload", "next_item_ranking", "next_item_table", "padded_loss", "padded_windows", "plot_slots",
    "plot_variants", "prepared_sequences", "run_loss_comparison", "seen_share", "SELECTION_METRIC",
    "entry_configuration", "selected_configurations", "sequence_table", "sequence_chart", "slot_table", "tie_rule_effect", "training_signals",
]


# --------------------------------------------------------------------------------------------
# A common listing, run as written
# --------------------------------------------------------------------------------------------

SOURCE_LISTING = '''\
class GRU4Rec(nn.Module):
    def __init__(self, num_items, embedding_dim, hidden_size):
        super(GRU4Rec, self).__init__()
        self.embedding = nn.Embedding(num_items, embedding_dim)
        self.gru = nn.GRU(embedding_dim, hidden_size, batch_first=True)
        self.fc = nn.Linear(hidden_size, num_items)
    
    def forward(self, item_seq):
        # item_seq: [batch_size, seq_len]
        embedded = self.embedding(item_seq)
        output, hidden = self.gru(embedded)
        logits = self.fc(output[:, -1, :])
        return logits
'''
"""A GRU4Rec listing in the form tutorials often give it, character for character."""


def listing_class() -> type:
    """The class the listing defines, executed exactly as written (with ``torch``/``nn`` in scope)."""
    namespace = {"torch": torch, "nn": nn}
    exec(compile(SOURCE_LISTING, "<source listing>", "exec"), namespace)  # noqa: S102
    return namespace["GRU4Rec"]


def listing_model(num_items: int, embedding_dim: int = 32, hidden_size: int = 32, *, seed: int = 0) -> nn.Module:
    """An instance of the listing's ``GRU4Rec`` (torch seeded with ``seed`` first)."""
    for name, v in (("num_items", num_items), ("embedding_dim", embedding_dim), ("hidden_size", hidden_size)):
        require_positive_int(v, name=name)
    torch.manual_seed(seed)
    return listing_class()(num_items, embedding_dim, hidden_size)


def _calls_super_init(source: str) -> bool:
    """Whether the ``__init__`` in ``source`` calls ``super(...).__init__()``."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.FunctionDef) and node.name == "__init__":
            for call in ast.walk(node):
                if (isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute)
                        and call.func.attr == "__init__" and isinstance(call.func.value, ast.Call)
                        and getattr(call.func.value.func, "id", None) == "super"):
                    return True
    return False


def training_signals(lengths) -> dict:
    """Targets per pass over sequences of ``lengths``: one per sequence when only the last step
    has a loss, ``length - 1`` per sequence when every step has one."""
    n = np.asarray(lengths, dtype=np.int64)
    if n.ndim != 1 or n.size == 0 or (n < 1).any():
        raise ValueError("lengths: expected a non-empty 1-D array of sequence lengths >= 1")
    last = int((n >= 2).sum())
    every = int((n - 1).sum())
    return {"last step only": last, "every step": every, "share": last / every}


def listing_checks(train_lengths=None, *, num_items: int = 1684, seed: int = 0) -> pd.DataFrame:
    """Each problem attributed to the listing, checked on the listing itself.

    Returns one row per claim with ``claim``, ``holds`` (True where the listing really has the
    problem) and ``evidence``. ``train_lengths`` (the training sequences' lengths, e.g. ML-100K's)
    makes the loss-at-the-last-step evidence concrete.

    * *no super().__init__()*: does **not** hold: the listing calls ``super(GRU4Rec, self).__init__()``
      and the model builds with all its parameters registered.
    * *padding read as the last state*: holds: ``output[:, -1]`` is the state after the last
      *column*, which is padding for every sequence shorter than the batch's longest (right
      padding); with left padding the GRU reads the padding first. Either way a sequence's
      prediction depends on what it was batched with.
    * *loss only at the last step*: holds: ``forward`` returns one prediction per sequence, so a
      loss on it trains on one target per sequence instead of one per step.
    * *a full softmax over all items*: holds: ``fc`` scores every item for every prediction
      (``hidden_size x num_items`` multiply-adds); a cross-entropy on it is a softmax over the
      whole catalogue. Cheap at ML-100K's 1,684 items, prohibitive at millions.
    * *padding id colliding with item 0*: holds: ``nn.Embedding(num_items, ...)`` without
      ``padding_idx`` serves ids ``0 .. num_items - 1``, all items, so whatever pads a sequence
      (0 by convention) is read as an item, and its row is trained like one.
    """
    torch.manual_seed(seed)
    cls = listing_class()
    model = cls(num_items, 16, 16)
    n_params = sum(p.numel() for p in model.parameters())
    rows = []
    rows.append({"claim": "no super().__init__()", "holds": not _calls_super_init(SOURCE_LISTING),
                 "evidence": f"__init__ calls super(GRU4Rec, self).__init__(); the model builds and registers "
                             f"{len(list(model.parameters()))} parameter tensors ({n_params:,} numbers)"})
    # Padding: the same sequence alone, right-padded and left-padded in a batch with a longer one.
    model.eval()
    seq = torch.tensor([[5, 9, 12]])
    with torch.no_grad():
        alone = model(seq)[0]
        right = model(torch.tensor([[5, 9, 12, 0, 0, 0], [3, 4, 5, 6, 7, 8]]))[0]
        left = model(torch.tensor([[0, 0, 0, 5, 9, 12], [3, 4, 5, 6, 7, 8]]))[0]
    top_alone = set(alone.topk(10).indices.tolist())
    overlap_r = len(top_alone & set(right.topk(10).indices.tolist()))
    overlap_l = len(top_alone & set(left.topk(10).indices.tolist()))
    differs = not (torch.allclose(alone, right) and torch.allclose(alone, left))
    rows.append({"claim": "padding read as the last state", "holds": differs,
                 "evidence": f"the same sequence [5, 9, 12] batched with a longer one: logits change by up to "
                             f"{(alone - right).abs().max():.3f} (right padding) and {(alone - left).abs().max():.3f}"
                             f" (left padding); top-10 overlap {overlap_r}/10 and {overlap_l}/10"})
    out = model(torch.tensor([[5, 9, 12, 7]]))
    signals = ""
    if train_lengths is not None:
        s = training_signals(train_lengths)
        signals = (f"; on these training sequences that is {s['last step only']:,} targets per pass instead of "
                   f"{s['every step']:,} ({100 * s['share']:.1f}%)")
    rows.append({"claim": "loss only at the last step", "holds": tuple(out.shape) == (1, num_items),
                 "evidence": f"forward returns {tuple(out.shape)}: one prediction per sequence, for its last "
                             f"position{signals}"})
    rows.append({"claim": "a full softmax over all items", "holds": model.fc.out_features == num_items,
                 "evidence": f"fc = Linear({model.fc.in_features}, {model.fc.out_features}): every prediction "
                             f"scores all {num_items:,} items; a cross-entropy on it normalises over all of them"})
    rows.append({"claim": "padding id colliding with item 0", "holds": model.embedding.padding_idx is None,
                 "evidence": f"nn.Embedding({num_items}, 16) with padding_idx=None: ids 0..{num_items - 1} are all "
                             f"items, so a padding 0 reads (and trains) item 0's vector"})
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------------------------
# The padded version, done right
# --------------------------------------------------------------------------------------------

class PaddedGRU(nn.Module):
    """A GRU next-item model on right-padded windows, without the listing's mistakes.

    * Item codes start at 2; 0 is padding (``padding_idx=0``, a zero vector that never trains)
      and never collides with an item.
    * ``forward`` returns logits at **every** position ``[B, L, n_items]``; :func:`padded_loss`
      takes the cross-entropy at every real position and ignores the padding.
    * :meth:`score_next` reads each history up to its **last real item** (packed sequences: the
      GRU never reads padding), from a zero state.

    It keeps a full softmax over the 1,684 item codes: at this catalogue size that is cheap. What
    it cannot do, unlike session-parallel mini-batches, is carry the state from one window to the
    next: every window starts from zero.
    """

    def __init__(self, n_items: int, embedding_dim: int = 64, hidden_size: int = 100, dropout: float = 0.0):
        super().__init__()
        self.n_items = require_positive_int(n_items, name="n_items")
        self.embedding = nn.Embedding(n_items, embedding_dim, padding_idx=0)
        self.gru = nn.GRU(embedding_dim, hidden_size, batch_first=True)
        self.dropout = nn.Dropout(dropout)
        self.out = nn.Linear(hidden_size, n_items)

    def forward(self, batch: Mapping) -> torch.Tensor:
        x = batch["items"][:, :-1]
        lengths = (x != 0).sum(dim=1).clamp(min=1).cpu()
        packed = nn.utils.rnn.pack_padded_sequence(self.dropout(self.embedding(x)), lengths,
                                                   batch_first=True, enforce_sorted=False)
        out, _ = self.gru(packed)
        out, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])
        return self.out(self.dropout(out))

    @torch.no_grad()
    def score_next(self, histories) -> torch.Tensor:
        seqs = check_item_sequences(histories, self.n_items, name="histories", min_len=1)
        was = self.training
        self.eval()
        try:
            lengths = torch.tensor([len(s) for s in seqs])
            x = torch.zeros(len(seqs), int(lengths.max()), dtype=torch.long)
            for u, s in enumerate(seqs):
                x[u, :len(s)] = torch.from_numpy(s)
            packed = nn.utils.rnn.pack_padded_sequence(self.embedding(x), lengths, batch_first=True,
                                                       enforce_sorted=False)
            _, h = self.gru(packed)  # h: the state after each sequence's last real item
            scores = self.out(h[-1])
            scores[:, :N_RESERVED] = float("-inf")
            return scores
        finally:
            self.train(was)


def padded_windows(sequences, window: int = 50) -> TensorData:
    """Cut sequences into right-padded windows of ``window + 1`` items for :class:`PaddedGRU`.

    Consecutive windows of a sequence overlap by one item, so every (item, next item) pair of
    every sequence appears in exactly one window. Returns ``TensorData(items=[N, window + 1])``.
    """
    window = require_positive_int(window, name="window")
    rows = []
    for s in sequences:
        s = np.asarray(s, dtype=np.int64)
        for start in range(0, max(len(s) - 1, 0), window):
            chunk = s[start:start + window + 1]
            rows.append(np.pad(chunk, (0, window + 1 - len(chunk))))
    if not rows:
        raise ValueError("sequences: no sequence has 2 or more items")
    return TensorData(items=torch.from_numpy(np.stack(rows)))


def padded_loss(model: PaddedGRU, batch: Mapping) -> torch.Tensor:
    """Cross-entropy at every real position of the windows (padding targets are ignored)."""
    logits = model(batch)
    logits = logits.masked_fill(torch.arange(logits.shape[-1], device=logits.device) < N_RESERVED, float("-inf"))
    targets = batch["items"][:, 1:]
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=0)


# --------------------------------------------------------------------------------------------
# Session-parallel mini-batches, step by step
# --------------------------------------------------------------------------------------------

def slot_table(lengths, batch_size: int, order=None) -> pd.DataFrame:
    """Which sequence each slot reads at each step of session-parallel mini-batches.

    One row per (step, slot) with ``step``, ``slot``, ``sequence`` (index into ``lengths``),
    ``position`` (of the input event within its sequence) and ``reset`` (True where the sequence
    starts, i.e. where the slot's hidden state is set to zero). Empty slots have no row.
    Computed by :func:`recbook.data.sessions.session_parallel_schedule`, the code training uses.
    """
    sched = session_parallel_schedule(lengths, batch_size, order)
    step = np.repeat(np.arange(sched.n_steps), np.diff(sched.step_start))
    return pd.DataFrame({"step": step, "slot": sched.slot, "sequence": sched.sequence,
                         "position": sched.position, "reset": sched.prev < 0})


def plot_slots(table: pd.DataFrame, *, max_steps: int | None = None, ax: Axes | None = None) -> Axes:
    """A grid of slots (rows) by steps (columns): each cell coloured by the sequence it reads and
    labelled ``sequence:position``; a black bar marks where a slot's state is reset."""
    require_columns(table, ["step", "slot", "sequence", "position", "reset"], name="table")
    t = table if max_steps is None else table[table["step"] < require_positive_int(max_steps, name="max_steps")]
    n_steps, n_slots = int(t["step"].max()) + 1, int(t["slot"].max()) + 1
    ax = _axes(ax, figsize=(min(0.5 * n_steps + 1.5, 16), 0.45 * n_slots + 1.2))
    cmap = plt.get_cmap("tab20")
    for row in t.itertuples():
        ax.add_patch(plt.Rectangle((row.step, row.slot), 1, 1, color=cmap(row.sequence % 20), alpha=0.85))
        if n_steps <= 40:
            ax.text(row.step + 0.5, row.slot + 0.5, f"{row.sequence}:{row.position}", ha="center",
                    va="center", fontsize=6)
        if row.reset:
            ax.plot([row.step, row.step], [row.slot, row.slot + 1], color="black", lw=2.5)
    ax.set_xlim(0, n_steps)
    ax.set_ylim(n_slots, 0)
    ax.set_yticks(np.arange(n_slots) + 0.5, [f"slot {s}" for s in range(n_slots)])
    ax.set_xlabel("step (one mini-batch per step)")
    ax.set_title("Session-parallel mini-batches: cell = sequence:position, bar = state reset")
    return ax


# --------------------------------------------------------------------------------------------
# Variants side by side
# --------------------------------------------------------------------------------------------

def compare_variants(data, variants: Mapping[str, Mapping], base: GRU4RecConfig = GRU4RecConfig(), *,
                     seeds: Sequence[int] = (0,), progress: bool = False) -> pd.DataFrame:
    """Train ``base`` with each variant's changes and evaluate on validation and test.

    Args:
        data: leave-last-out sequences (``train``, ``valid``, ``test``, ``n_items``).
        variants: ``{name: {config field: value}}``, e.g. ``{"BPR-max": {"loss": "bpr-max"}}``.
        base: the configuration the changes apply to.
        seeds: one training run per seed.

    Returns:
        One row per variant and seed: ``variant``, ``seed``, ``best_epoch``, ``epochs``,
        ``cpu_s_per_epoch``, then ``valid_*`` (at the best epoch) and ``test_*`` metrics.
    """
    if not isinstance(variants, Mapping) or not variants:
        raise ValueError("variants: expected a non-empty dict {name: {field: value}}")
    test = next_item_split(data, "test")
    rows = []
    for name, changes in variants.items():
        config = base.replace(**dict(changes))
        for seed in seeds:
            model, res = train_gru4rec(data, config, seed=int(seed), progress=progress)
            h = res.history
            row = {"variant": name, "seed": int(seed), "best_epoch": res.best_epoch, "epochs": len(h),
                   "cpu_s_per_epoch": float(h["cpu_seconds"].mean())}
            row.update({c: float(h.loc[res.best_epoch, c]) for c in h.columns if c.startswith("valid_")})
            row.update({f"test_{k}": v for k, v in evaluate_next_item(model, test).items()})
            rows.append(row)
    return pd.DataFrame(rows)


def plot_variants(results: pd.DataFrame, metrics: Sequence[str] = ("test_recall@20", "test_mrr@20"),
                  *, axes=None) -> np.ndarray:
    """One bar chart per metric (mean over seeds, error bar = standard deviation), variants in the
    order they first appear; each bar's label carries the CPU seconds per epoch."""
    require_columns(results, ["variant", "cpu_s_per_epoch", *metrics], name="results")
    order = list(dict.fromkeys(results["variant"]))
    g = results.groupby("variant", sort=False)
    if axes is None:
        _, axes = plt.subplots(1, len(metrics), figsize=(4.2 * len(metrics), 0.4 * len(order) + 1.6),
                               layout="constrained", squeeze=False)
    axes = np.asarray(axes, dtype=object).ravel()
    if len(axes) != len(metrics):
        raise ValueError(f"axes: expected {len(metrics)} Axes, got {len(axes)}")
    cpu = g["cpu_s_per_epoch"].mean().reindex(order)
    for ax, m in zip(axes, metrics):
        mean, std = g[m].mean().reindex(order), g[m].std(ddof=0).reindex(order).fillna(0)
        y = np.arange(len(order))[::-1]
        ax.barh(y, mean, xerr=std, color="#4C72B0", alpha=0.85)
        ax.set_yticks(y, [f"{v}  ({cpu[v]:.1f} s/epoch)" for v in order], fontsize=8)
        ax.set_xlabel(m.replace("_", " "))
        ax.grid(axis="x", alpha=0.3)
    return axes


# --------------------------------------------------------------------------------------------
# The tie rule
# --------------------------------------------------------------------------------------------

def leave_last_out_by_tie_rule(ml, ties: str = "file"):
    """Leave-last-out sequences of item codes (:class:`recbook.data.SequenceData`), ratings ordered
    by timestamp and, within a second, by the file's row order (``ties="file"``: the book's rule,
    exactly :func:`recbook.data.sequence_protocol`'s sequences) or by item id (``ties="item_id"``:
    the pitfall). Both come from :func:`recbook.data.leave_last_out`, which keeps the order of
    the rows it is given within a second; for the pitfall it is given the rows sorted by item id
    within each user's second.
    """
    from ..data import item_field, leave_last_out

    if ties not in ("file", "item_id"):
        raise ValueError(f"ties: expected 'file' or 'item_id', got {ties!r}")
    require_columns(ml.ratings, ["user_id", "item_id", "timestamp"], name="ml.ratings")
    require_columns(ml.items, ["item_id"], name="ml.items")
    ratings = ml.ratings
    if ties == "item_id":
        ratings = ratings.sort_values(["user_id", "timestamp", "item_id"], kind="stable")
    return leave_last_out(ratings, items=item_field(ml.items))


def tie_rule_effect(model, ml) -> pd.DataFrame:
    """The same trained model evaluated on the split built with each tie rule.

    Returns one row per rule (``file``, ``item_id``) with the test metrics and ``targets changed``
    (users whose test target differs from the file-order split). The item-id split is not to be
    trusted: within a second the order is an artefact of the id numbering, which in ML-100K
    follows popularity, and 415 of 943 users have their last two ratings in the same second.
    """
    base = leave_last_out_by_tie_rule(ml, "file")
    rows = []
    for ties in ("file", "item_id"):
        d = leave_last_out_by_tie_rule(ml, ties)
        row = {"ties": ties, "targets changed": int((d.test != base.test).sum()),
               "validation targets changed": int((d.valid != base.valid).sum())}
        row.update({f"test_{k}": v for k, v in evaluate_next_item(model, next_item_split(d, "test")).items()})
        rows.append(row)
    return pd.DataFrame(rows).set_index("ties")


def seen_share(model, split, k: int = 20) -> dict:
    """How many of a model's top-``k`` slots go to items the user has already rated.

    The sequence protocol does not exclude seen items, and in ML-100K no user rates a movie
    twice, so every seen item in the top ``k`` is a slot lost. Returns ``{"mean share": ...,
    "users with none": ...}`` (the mean fraction of the top ``k`` that is seen, and the share of
    users whose top ``k`` holds no seen item)."""
    k = require_positive_int(k, name="k")
    scores = torch.as_tensor(model.score_next(split.histories))
    top = torch.topk(scores, k, dim=1).indices.numpy()
    seen = np.array([np.isin(top[u], split.histories[u]).mean() for u in range(len(top))])
    return {"mean share": float(seen.mean()), "users with none": float((seen == 0).mean())}


# --------------------------------------------------------------------------------------------
# Next movies for a sequence of movies (the widget)
# --------------------------------------------------------------------------------------------

PREPARED_SEQUENCES = {
    "Star Wars trilogy": [50, 172, 181],
    "Animated family films": [1, 95, 71, 588],
    "Crime classics": [127, 187, 56, 100],
    "Sci-fi and action": [195, 96, 183, 176],
    "Romantic comedies": [88, 739, 294],
    "Autumn 1997 releases": [258, 300, 286, 313],
    "Hitchcock and 1930s classics": [483, 604, 479, 603],
    "Horror": [200, 184, 219],
    "Star Trek films": [449, 228, 229, 230],
    "Indiana Jones": [174, 210],
}
"""A handful of sequences (raw MovieLens item ids, oldest first) for the precomputed widget."""


def movie_titles(ml) -> pd.DataFrame:
    """``item_id``, ``code`` (= position + 2 in the sorted catalogue) and ``title`` of every movie,
    indexed by code; titles that several movies share are told apart by
    :func:`recbook.data.display_titles` (release year, then id)."""
    require_columns(ml.items, ["item_id", "title"], name="ml.items")
    items = ml.items.sort_values("item_id")
    ids = items["item_id"].to_numpy()
    return pd.DataFrame({"item_id": ids, "code": np.arange(len(items)) + N_RESERVED,
                         "title": display_titles(items).to_numpy()}
                        ).set_index("code", drop=False)


def prepared_sequences(ml, sequences: Mapping[str, Sequence[int]] | None = None) -> dict:
    """``{name: [item codes]}`` for :data:`PREPARED_SEQUENCES` (or ``sequences``, raw item ids)."""
    cat = movie_titles(ml)
    code_of = dict(zip(cat["item_id"], cat["code"]))
    out = {}
    for name, ids in (sequences or PREPARED_SEQUENCES).items():
        missing = [i for i in ids if i not in code_of]
        if missing or not ids:
            raise ValueError(f"sequences[{name!r}]: item ids {missing} are not in the catalogue")
        out[name] = [int(code_of[i]) for i in ids]
    return out


def next_item_table(model, ml, codes: Sequence[int], k: int = 10) -> pd.DataFrame:
    """The model's top-``k`` next movies after the sequence ``codes`` (oldest first): ``rank``,
    ``title``, ``item_id``, ``score`` (the raw score) and ``share`` (its softmax over all items,
    a probability only for a model trained with cross-entropy). Already-seen movies are listed
    too, as the evaluation ranks them."""
    k = require_positive_int(k, name="k")
    cat = movie_titles(ml)
    scores = torch.as_tensor(model.score_next([np.asarray(codes, dtype=np.int64)]), dtype=torch.float64)[0]
    share = torch.softmax(scores, dim=0)
    top = torch.argsort(scores, descending=True, stable=True)[:k].numpy()  # ties: lower code first
    return pd.DataFrame({"rank": np.arange(1, k + 1), "title": cat.loc[top, "title"].to_numpy(),
                         "item_id": cat.loc[top, "item_id"].to_numpy(), "score": scores[top].numpy(),
                         "share": share[top].numpy(), "seen": np.isin(top, codes)})


def next_item_payload(model, ml, sequences: Mapping[str, Sequence[int]], k: int = 10) -> dict:
    """Everything a kernel-free widget needs, as plain JSON-ready data:
    ``{name: {"history": [titles], "top": [{"rank", "title", "item_id", "score", "share", "seen"}]}}``."""
    if not isinstance(sequences, Mapping) or not sequences:
        raise ValueError("sequences: expected a non-empty dict {name: [item codes]}")
    cat = movie_titles(ml)
    out = {}
    for name, codes in sequences.items():
        table = next_item_table(model, ml, codes, k)
        out[name] = {"history": cat.loc[list(codes), "title"].tolist(),
                     "top": [{key: (v.item() if hasattr(v, "item") else v) for key, v in row.items()}
                             for row in table.to_dict("records")]}
    return out


def _payload_html(name: str, entry: Mapping) -> str:
    hist = " → ".join(html.escape(t) for t in entry["history"])
    rows = "".join(f"<tr><td>{r['rank']}</td><td>{html.escape(r['title'])}{' (seen)' if r['seen'] else ''}</td>"
                   f"<td style='text-align:right'>{r['score']:.2f}</td></tr>" for r in entry["top"])
    return (f"<div><b>{html.escape(name)}</b>: {hist}<table><thead><tr><th>#</th><th>next movie</th>"
            f"<th>score</th></tr></thead><tbody>{rows}</tbody></table></div>")


def _browser_text(value: float, spec: str = ".2f") -> str:
    """``value`` as the browser's ``format(value, spec)`` writes it (a true minus sign, U+2212)."""
    return format(value, spec).replace("-", "\N{MINUS SIGN}")


def _next_item_tables(model, ml, sequences: Mapping[str, Sequence[int]], k: int, decimals: int):
    """What :func:`next_item_chart` ships: the GRU's state after each prefix of each sequence and
    the item vectors and biases of every item that enters a top ``k``, as integers in units of
    ``10 ** -decimals``; and the scores the browser computes from them."""
    if not isinstance(sequences, Mapping) or not sequences:
        raise ValueError("sequences: expected a non-empty dict {name: [item codes]}")
    names = list(sequences)
    longest = max(len(sequences[n]) for n in names)
    scale = 10 ** decimals
    cat = movie_titles(ml)
    states, keys, prefixes = [], [], []
    for s, name in enumerate(names):
        codes = [int(c) for c in sequences[name]]
        if not codes:
            raise ValueError(f"sequences[{name!r}]: expected at least one item code")
        for t in range(1, longest + 1):
            prefixes.append((s, t, codes[: min(t, len(codes))]))
    with torch.no_grad():
        h = model.final_state([np.asarray(p, dtype=np.int64) for _, _, p in prefixes]).double()
        w, b = model.item_vectors.detach().double(), model.item_bias.detach().double()[:, 0]
    scores = model.score_next([np.asarray(p, dtype=np.int64) for _, _, p in prefixes]).double()
    candidates = sorted({int(c) for row in scores for c in torch.argsort(row, descending=True, stable=True)[:k]})
    h_int = np.rint(h.numpy() * scale).astype(np.int64)
    w_int = np.rint(w.numpy()[candidates] * scale).astype(np.int64)
    b_int = np.rint(b.numpy()[candidates] * scale).astype(np.int64)
    hidden = h_int.shape[1]
    steps = pd.DataFrame(h_int, columns=[f"h{d}" for d in range(hidden)])
    steps.insert(0, "key", [f"{s}|{t}" for s, t, _ in prefixes])
    steps.insert(1, "n", [len(p) for _, _, p in prefixes])
    steps.insert(2, "of", [len(sequences[names[s]]) for s, _, _ in prefixes])
    steps.insert(3, "last", [cat.loc[p[-1], "title"] for _, _, p in prefixes])
    steps.insert(4, "read", ["|" + "|".join(str(c) for c in p) + "|" for _, _, p in prefixes])
    items = pd.DataFrame(w_int, columns=[f"w{d}" for d in range(hidden)])
    items.insert(0, "code", candidates)
    items.insert(1, "title", [cat.loc[c, "title"] for c in candidates])
    items.insert(2, "b", b_int)
    # the browser's arithmetic: (b + sum_d w_d h_d / scale) / scale, in doubles
    shipped = (b_int[None, :] + (h_int.astype(np.float64) @ w_int.T.astype(np.float64)) / scale) / scale
    return names, prefixes, steps, items, shipped, scores


def next_item_ranking(shipped_scores, candidates, k: int = 10) -> list:
    """The top ``k`` candidate codes of each row of ``shipped_scores`` ``[prefixes, candidates]``,
    ranked as the chart ranks them: by score, ties to the lower code."""
    codes = np.asarray(candidates)
    out = []
    for row in np.asarray(shipped_scores, dtype=np.float64):
        order = np.lexsort((codes, -row))
        out.append(codes[order[:k]].tolist())
    return out


def _next_item_summary(scores_row, read_codes, k: int) -> str:
    top = torch.argsort(torch.as_tensor(scores_row), descending=True, stable=True)[:k].tolist()
    seen = sum(c in set(read_codes) for c in top)
    best = float(torch.as_tensor(scores_row)[top[0]])
    return f"top score {_browser_text(best)} · {seen} of the {k} already read (grey)"


def next_item_chart(model, ml, sequences: Mapping[str, Sequence[int]] | None = None, *, k: int = 10,
                    sequence: str | None = None, read: int | None = None, checks=None, decimals: int = 4):
    """The model's top-``k`` next movies after a sequence, **computed in the browser** from the
    trained weights.

    For every prepared sequence (``sequences``, ``{name: [item codes]}``, default
    :data:`PREPARED_SEQUENCES`) and every number of movies read, the chart ships the GRU's state
    ``h`` after reading them (computed here: the recurrence itself needs the GRU's weights and
    loops, which Vega is not built for); it also ships the item vector ``w_j`` and bias ``b_j`` of
    every movie that enters some top ``k`` (integers in units of ``10 ** -decimals``). Two controls
    pick the sequence and how many of its movies the model has read; the browser then computes
    ``r_j = w_j · h + b_j`` for every shipped movie and ranks them. Since every movie of every top
    ``k`` is shipped, the browser's top ``k`` is the model's top ``k``.

    Checks (a test hook; default: the first sequence read in full, and the second after one movie)
    require the summary line ("top score ... · n of the k already read"), computed with PyTorch.
    """
    import altair as alt

    from .. import widgets

    k = require_positive_int(k, name="k")
    decimals = require_positive_int(decimals, name="decimals")
    sequences = dict(sequences or prepared_sequences(ml))
    names, prefixes, steps, items, shipped, scores = _next_item_tables(model, ml, sequences, k, decimals)
    longest = max(len(v) for v in sequences.values())
    sequence = names[0] if sequence is None else sequence
    if sequence not in names:
        raise ValueError(f"sequence: expected one of {names}, got {sequence!r}")
    read = len(sequences[sequence]) if read is None else read
    if isinstance(read, bool) or not isinstance(read, (int, np.integer)) or not 1 <= read <= longest:
        raise ValueError(f"read: expected a number of movies from 1 to {longest}, got {read!r}")
    # the shipped, rounded numbers must rank as the model does (else ship more decimals)
    candidates = items["code"].tolist()
    model_top = [torch.argsort(r, descending=True, stable=True)[:k].tolist() for r in scores]
    if next_item_ranking(shipped, candidates, k) != model_top:
        raise ValueError(f"decimals: with {decimals} decimals the shipped weights rank some sequence's top {k} "
                         "differently from the model; ship more decimals")
    if checks is None:
        checks = [(sequence, read)] + ([(names[1], 1)] if len(names) > 1 else [])
    check_list = []
    for name, t in checks:
        if name not in names or not 1 <= t <= longest:
            raise ValueError(f"checks: ({name!r}, {t!r}) is not a sequence of the chart and a number of movies read")
        row = prefixes.index(next(p for p in prefixes if p[0] == names.index(name) and p[1] == t))
        text = _next_item_summary(scores[row], prefixes[row][2], k)
        order = np.lexsort((np.asarray(candidates), -shipped[row]))
        best = float(shipped[row][order[0]])
        seen = sum(("|" + str(candidates[j]) + "|") in steps.loc[row, "read"] for j in order[:k])
        if text != f"top score {_browser_text(best)} · {seen} of the {k} already read (grey)":
            raise ValueError(f"checks: for ({name!r}, {t}) the summary rounds differently from the shipped "
                             "weights; pick another setting")
        check_list.append({"set": {"sequence": names.index(name), "read": int(t)}, "texts": [text]})

    scale = 10 ** decimals
    hidden = sum(c.startswith("h") and c[1:].isdigit() for c in steps.columns)
    d_steps = widgets.CsvData(steps, name="gru_steps")
    d_items = widgets.CsvData(items, name="gru_items")
    seq_param = widgets.dropdown("sequence", list(range(len(names))), names.index(sequence),
                                 labels=names, label="sequence")
    read_param = widgets.slider("read", 1, longest, 1, read, label="movies read")
    dot = " + ".join(f"datum.w{d} * datum.h{d}" for d in range(hidden))
    base = (alt.Chart(d_items.ref)
            .transform_calculate(key="sequence + '|' + read")
            .transform_lookup(lookup="key", from_=alt.LookupData(d_steps.ref, "key",
                                                                 ["n", "of", "last", "read", *[f"h{d}" for d in range(hidden)]]))
            .transform_calculate(score=f"(datum.b + ({dot}) / {scale}) / {scale}",
                                 seen="indexof(datum.read, '|' + datum.code + '|') >= 0 ? 1 : 0")
            .transform_window(rank="row_number()", sort=[alt.SortField("score", order="descending"),
                                                         alt.SortField("code", order="ascending")])
            .transform_filter(f"datum.rank <= {k}")
            .transform_calculate(status="datum.seen > 0 ? 'already read' : 'not read yet'",
                                 label="format(datum.score, '.2f')", line="datum.rank + '. ' + datum.title"))
    label_px = 175  # the axis of titles takes a fixed width; the header starts at its left edge
    y = alt.Y("line:N", sort=alt.EncodingSortField("rank", op="min", order="ascending"), title=None,
              axis=alt.Axis(labelLimit=label_px - 6, labelFontSize=11, minExtent=label_px, maxExtent=label_px))
    colour = alt.Color("status:N", title=None, legend=None,   # the header says what grey means
                       scale=alt.Scale(domain=["not read yet", "already read"], range=["#4C72B0", "#C9C9C9"]))
    x = alt.X("score:Q", title="score r = w·h + b")
    bars = base.mark_bar().encode(y=y, x=x, color=colour,
                                  tooltip=[alt.Tooltip("title:N"), alt.Tooltip("score:Q", format=".3f")])
    text = base.mark_text(align="left", dx=3, fontSize=10).encode(y=y, x=x, text="label:N")
    summary = base.transform_aggregate(best="max(score)", seen="sum(seen)", groupby=["n", "of", "last"])
    head = [
        summary.transform_calculate(t="'after ' + datum.n + ' of ' + datum.of + ': ' + datum.last")
        .mark_text(align="left", fontSize=12, fontWeight="bold", limit=330)
        .encode(x=alt.value(-label_px), y=alt.value(-30), text="t:N"),
        summary.transform_calculate(t=f"'top score ' + format(datum.best, '.2f') + ' · ' + datum.seen + ' of the {k} already read (grey)'")
        .mark_text(align="left", fontSize=12, color="#555555", limit=330)
        .encode(x=alt.value(-label_px), y=alt.value(-12), text="t:N"),
    ]
    chart = alt.layer(bars, text, *head).properties(width=120, height={"step": 17})
    return widgets.browser_chart(chart, params=[seq_param, read_param], data=[d_steps, d_items], checks=check_list)


# --------------------------------------------------------------------------------------------
# Losses compared (the committed file book/results/gru4rec_losses.csv)
# --------------------------------------------------------------------------------------------

LOSSES_FILE = "gru4rec_losses.csv"
LOSS_EPOCHS = 8
"""Epoch cap of the loss comparison (the leaderboard's entries allow 25 with patience 3; their
best epochs were 5 to 13)."""


def loss_entries(epochs: int = LOSS_EPOCHS) -> list:
    """The configurations of the loss comparison as :class:`recbook.bench.Entry` objects (**not**
    registered on the leaderboard): the three losses at the leaderboard entries' settings, then
    cross-entropy with 0 or 2048 extra negatives instead of 512, BPR-max with 2048, then BPR-max with
    ``alpha`` 0 or 1 instead of 0.5. Everything else is the entries' (GRU 100, tied embeddings,
    dropout 0.5/0.3, AdagradM, 64 slots, longest sequences first), with at most ``epochs`` epochs."""
    from ..bench import GRU4REC_FIT, Entry
    from ..models.gru4rec import GRU4Rec, SessionLoss, adagradm, session_parallel

    epochs = require_positive_int(epochs, name="epochs")
    net = {"layers": (100,), "tied": True, "dropout_embed": 0.5, "dropout_hidden": 0.3}
    fit_ = dict(GRU4REC_FIT, epochs=min(epochs, GRU4REC_FIT["epochs"]))
    losses = {
        "XE": (SessionLoss("cross-entropy", logq=1.0), 0.05, "cross-entropy with logQ"),
        "BPRmax": (SessionLoss("bpr-max", bpreg=2.0, elu=0.5), 0.1, "BPR-max (bpreg 2, ELU 0.5)"),
        "TOP1max": (SessionLoss("top1-max"), 0.1, "TOP1-max"),
    }
    # BPR-max without extra negatives is left out: when one slot is left at the end of an epoch,
    # its only candidate is its own target and BPR-max has no negative to weigh.
    runs = [("XE", 512, 0.5), ("BPRmax", 512, 0.5), ("TOP1max", 512, 0.5),
            ("XE", 0, 0.5), ("XE", 2048, 0.5), ("BPRmax", 2048, 0.5),
            ("BPRmax", 512, 0.0), ("BPRmax", 512, 1.0)]
    out = []
    for loss, n_neg, alpha in runs:
        loss_fn, lr, words = losses[loss]
        out.append(Entry(f"GRU4Rec-{loss}-S{n_neg}-a{alpha:g}", "sequence", GRU4Rec.from_data, dict(net),
                         dict(fit_, optimizer=adagradm(lr=lr), loss_fn=loss_fn),
                         train_data=session_parallel(n_negatives=n_neg, alpha=alpha, order="longest-first"),
                         description=f"GRU4Rec 100, {words}, {n_neg} extra negatives, alpha {alpha:g}"))
    return out


SELECTION_METRIC = "valid_mrr@20"
"""The column of :data:`LOSSES_FILE` that chose the leaderboard entries' extra negatives and alpha,
per loss (:func:`selected_configurations`)."""


def selected_configurations(table: pd.DataFrame, metric: str = SELECTION_METRIC) -> dict:
    """For each loss of the loss comparison (``table``: :data:`LOSSES_FILE`, one row per
    configuration, indexed or columned by ``model``), the configuration with the best ``metric``
    (a validation column): ``{"XE": "GRU4Rec-XE-S512-a0.5", ...}``. Ties: the first in the file."""
    t = table.reset_index() if "model" not in table.columns else table
    require_columns(t, ["model", "loss", metric], name="table")
    if not metric.startswith("valid_"):
        raise ValueError(f"metric: expected a validation column (valid_...), got {metric!r}; "
                         "configurations are chosen on validation only")
    return {str(loss): str(g.loc[g[metric].idxmax(), "model"]) for loss, g in t.groupby("loss", sort=False)}


def entry_configuration(name: str, epochs: int = LOSS_EPOCHS) -> str:
    """The configuration of :func:`loss_entries` that trains like the leaderboard entry ``name``
    (same network, batches, loss and optimiser; only the epoch cap differs)."""
    from ..bench import REGISTRY, _canonical

    if name not in REGISTRY:
        raise ValueError(f"name: {name!r} is not a registered leaderboard entry")
    entry = REGISTRY[name]

    def key(e):
        fit_ = {k: v for k, v in (e.fit or {}).items() if k != "epochs"}
        return _canonical({"params": e.params, "fit": fit_, "train_data": e.train_data, "factory": e.factory})

    found = [e.name for e in loss_entries(epochs) if key(e) == key(entry)]
    if not found:
        raise ValueError(f"name: entry {name!r} matches none of the loss comparison's configurations")
    return found[0]


def run_loss_comparison(path=None, seed: int = 0, *, epochs: int = LOSS_EPOCHS, threads: int = 1,
                        progress: bool = False) -> pd.DataFrame:
    """Train every configuration of :func:`loss_entries` once (``seed``) as the leaderboard does
    (:func:`recbook.bench.train_entry`: early stopping on validation Recall@20) and write one row
    per configuration to ``path`` (default: the repository's ``book/results/gru4rec_losses.csv``):
    ``model``, ``loss``, ``n_negatives``, ``alpha``, ``seed``, ``epochs``, ``best_epoch``,
    ``cpu_s_per_epoch``, validation (best epoch) and test Recall@20 / MRR@20, ``settings`` (the
    entry's description) and ``fingerprint`` (:func:`recbook.bench.fingerprint`). About ten minutes
    with one thread::

        python -c "from recbook.chapters import gru4rec; gru4rec.run_loss_comparison()"
    """
    from pathlib import Path

    from ..bench import load_protocol

    path = Path(path) if path is not None else BOOK_RESULTS / LOSSES_FILE
    data = load_protocol("sequence")
    rows = []
    for entry in loss_entries(epochs):
        rows.append(_loss_row(entry, data, seed, threads=threads, progress=progress))
    out = pd.DataFrame(rows)
    from ..bench import write_table

    write_table(out, path)  # whole or not at all, locked, keeping the mode
    return out


def _loss_row(entry, data, seed: int, *, threads: int = 1, progress: bool = False) -> dict:
    """One row of :func:`run_loss_comparison`."""
    from ..bench import PROTOCOLS, fingerprint, train_entry
    from ..train import num_threads, seed_everything

    protocol = PROTOCOLS["sequence"]
    with num_threads(threads):
        seed_everything(int(seed))
        model = entry.build(data)
        res = train_entry(entry, model, data, int(seed), threads=threads, progress=progress)
        test = protocol.evaluate(model, data, "test")
    h = res.history
    best = h.loc[res.best_epoch]
    row = {"model": entry.name, "loss": entry.name.split("-")[1],
           "n_negatives": entry.train_data.settings["n_negatives"],
           "alpha": entry.train_data.settings["alpha"], "seed": int(seed), "epochs": len(h),
           "best_epoch": int(res.best_epoch), "cpu_s_per_epoch": float(h["cpu_seconds"].mean()),
           "valid_recall@20": float(best["valid_recall@20"]), "valid_mrr@20": float(best["valid_mrr@20"]),
           "test_recall@20": float(test["recall@20"]), "test_mrr@20": float(test["mrr@20"]),
           "settings": entry.description, "fingerprint": fingerprint(entry)}
    if progress:
        print(row)
    return row


def next_item_builder(model, ml, k: int = 10):
    """A kernel-only control (``ipywidgets``): type a title into a searchable box, add it to the
    sequence, and see the model's top-``k`` next movies, recomputed by ``model.score_next`` after
    every change. Returns the ``VBox``; its ``.sequence`` (a list of item codes) is the sequence
    built so far. The website cannot run it (no kernel), and a page that displays a widget loads
    the widget manager: the chapter only names it for readers running the notebook and shows
    :func:`next_item_chart`, which computes in the browser."""
    import ipywidgets as w

    k = require_positive_int(k, name="k")
    cat = movie_titles(ml)
    labels = [f"{t} [{i}]" for t, i in zip(cat["title"], cat["item_id"])]
    code_of = dict(zip(labels, cat["code"]))
    search = w.Combobox(options=labels, placeholder="type a title", ensure_option=True,
                        description="movie", layout=w.Layout(width="420px"))
    add, undo, clear = w.Button(description="add"), w.Button(description="remove last"), w.Button(description="clear")
    out = w.HTML()
    box = w.VBox([w.HBox([search, add, undo, clear]), out])
    box.sequence = []

    def render():
        if not box.sequence:
            out.value = "<i>add a movie to start a sequence</i>"
            return
        entry = next_item_payload(model, ml, {"your sequence": box.sequence}, k)["your sequence"]
        out.value = _payload_html("your sequence", entry)

    def on_add(_):
        if search.value in code_of:
            box.sequence.append(int(code_of[search.value]))
            search.value = ""
            render()

    def on_undo(_):
        if box.sequence:
            box.sequence.pop()
            render()

    def on_clear(_):
        box.sequence.clear()
        render()

    add.on_click(on_add)
    undo.on_click(on_undo)
    clear.on_click(on_clear)
    box.search, box.add, box.undo, box.clear, box.output = search, add, undo, clear, out
    render()
    return box


# --------------------------------------------------------------------------------------------
# The leaderboard's sequence rows
# --------------------------------------------------------------------------------------------

SEQUENCE_MODELS = ("Pop-seq", "ItemKNN-last", "GRU4Rec-XE", "GRU4Rec-BPRmax")
SEQUENCE_METRICS = ("recall@20", "mrr@20", "recall@20_excl", "mrr@20_excl", "seen@20")


def sequence_table(results: pd.DataFrame, models: Sequence[str] = SEQUENCE_MODELS,
                   metrics: Sequence[str] = SEQUENCE_METRICS) -> pd.DataFrame:
    """The leaderboard's sequence rows as "mean ± sd over seeds" strings, one row per model (in
    ``models``' order) and one column per test metric ("–" where a model's rows lack it), plus
    CPU seconds per epoch."""
    cols = [f"test_{m}" for m in metrics]
    require_columns(results, ["model", "protocol", "seed", *cols, "cpu_s_per_epoch"], name="results")
    seq = results[(results["protocol"] == "sequence") & results["model"].isin(list(models))]
    missing = sorted(set(models) - set(seq["model"]))
    if missing:
        raise ValueError(f"results: no sequence rows of {missing}")
    g = seq.groupby("model")
    mean, sd = g[cols].mean().reindex(list(models)), g[cols].std(ddof=0).reindex(list(models))
    digits = {m: 1 if m.startswith("seen@") else 3 for m in metrics}
    table = pd.DataFrame({m: ["–" if np.isnan(a) else f"{a:.{digits[m]}f} ± {b:.{digits[m]}f}"
                              for a, b in zip(mean[f"test_{m}"], sd[f"test_{m}"])]
                          for m in metrics}, index=pd.Index(list(models), name="model"))
    cpu = g["cpu_s_per_epoch"].mean().reindex(list(models))
    table["CPU s / epoch"] = ["–" if np.isnan(v) else f"{v:.1f}" for v in cpu]
    return table


def sequence_chart(results: pd.DataFrame, models: Sequence[str] = SEQUENCE_MODELS,
                   metrics: Sequence[str] = ("recall@10", "recall@20", "mrr@10", "mrr@20", "ndcg@10",
                                             "recall@20_excl", "mrr@20_excl")):
    """Pick a metric: the mean over seeds of each model (bar, with its value) and each seed (dot),
    computed in the browser from the leaderboard's rows. Its checks require the cross-entropy
    GRU4Rec's mean for two metrics, computed here from the same four-decimal rows."""
    import altair as alt

    from .. import widgets

    cols = [f"test_{m}" for m in metrics]
    require_columns(results, ["model", "protocol", "seed", *cols], name="results")
    seq = results[(results["protocol"] == "sequence") & results["model"].isin(list(models))]
    fields = {m: m.replace("@", "_at_") for m in metrics}
    rows = seq[["model", "seed", *cols]].rename(columns={f"test_{m}": f for m, f in fields.items()})
    # long form: one row per model, seed and metric, without the metrics a model's rows lack
    ship = rows.melt(["model", "seed"], var_name="metric", value_name="value").dropna(subset=["value"])
    rows_data = widgets.CsvData(ship, name="sequence_rows", decimals=4)
    metric = widgets.dropdown("metric", list(fields.values()), value=fields.get("recall@20", list(fields.values())[0]),
                              labels=list(fields), label="metric")
    base = (alt.Chart(rows_data.ref)
            .transform_filter("datum.metric == metric")
            .transform_calculate(value="toNumber(datum.value)"))
    y = alt.Y("model:N", sort=list(models), title=None)
    bars = base.mark_bar(opacity=0.6).encode(y=y, x=alt.X("mean(value):Q", title="test metric (mean over seeds)"))
    dots = base.mark_circle(color="black", size=25).encode(y=y, x="value:Q")
    labels = (base.transform_aggregate(mean="mean(value)", groupby=["model"])
              .transform_calculate(label="format(datum.mean, '.3f')")
              .mark_text(align="left", dx=4).encode(y=y, x="mean:Q", text="label:N"))
    checked = [fields[m] for m in ("recall@20", "mrr@10", "recall@20_excl") if m in fields]
    xe = rows[rows["model"] == "GRU4Rec-XE"]
    checks = [{"set": {"metric": f}, "texts": [f"{xe[f].round(4).mean():.3f}"]} for f in checked] if len(xe) else []
    return widgets.browser_chart((bars + dots + labels).properties(width=420, height=160),
                                 params=[metric], data=[rows_data], checks=checks)


# --------------------------------------------------------------------------------------------
# Architecture diagram
# --------------------------------------------------------------------------------------------

def plot_gru4rec_architecture(n_steps: int = 3, *, hidden: int = 100, tied: bool = True,
                              ax: Axes | None = None) -> Axes:
    """GRU4Rec unrolled over ``n_steps`` items of one session: each item's vector (a row of the
    item table when ``tied``) enters the GRU, whose state ``h_t`` carries on to the next step and
    scores every item, ``r_t = W h_t + b``, against the next item of the session."""
    from functools import partial

    from ..plots import diagram_arrow, diagram_axes, diagram_box

    n_steps = require_positive_int(n_steps, name="n_steps")
    if not 2 <= n_steps <= 4:
        raise ValueError(f"n_steps: expected 2 to 4 steps to draw, got {n_steps}")
    hidden = require_positive_int(hidden, name="hidden")
    ax = diagram_axes(ax, (7.2, 4.3), (0, 100), (0, 60))
    box, arrow = partial(diagram_box, ax), partial(diagram_arrow, ax, head=10)

    x0, width = 22.0, 76.0 / n_steps
    sub = str.maketrans("0123456789", "₀₁₂₃₄₅₆₇₈₉")
    lookup = "row of W" if tied else "input embedding"
    ax.text(10, 56, "one session", ha="center", fontsize=10, fontweight="bold")
    box(2, 25, 15, 5, "h₀ = 0", "#EAEAF2", 9)
    prev = (17.6, 27.5)
    for t in range(n_steps):
        cx = x0 + width * (t + 0.5)
        w = min(15.0, width - 6)
        i_t, i_next, h_t, r_t = (f"{a}{b}".translate(sub) for a, b in
                                 (("i", t + 1), ("i", t + 2), ("h", t + 1), ("r", t + 1)))
        box(cx - w / 2, 4, w, 5, f"item {i_t}", "#EAEAF2", 9)
        arrow(cx, 9.6, cx, 14.4)
        box(cx - w / 2, 15, w, 5, lookup, "#FBE3CF", 9)
        arrow(cx, 20.6, cx, 24.4)
        box(cx - w / 2, 25, w, 5, f"GRU ({hidden})", "#DCE6F2", 9, "bold")
        arrow(prev[0], prev[1], cx - w / 2 - 0.6, 27.5)
        ax.text(cx + w / 2 + 1.0, 31.2, h_t, fontsize=9, color="0.3")
        arrow(cx, 30.6, cx, 35.4)
        box(cx - w / 2, 36, w, 5, f"{r_t} = W {h_t} + b", "#D5EDE4", 9)
        arrow(cx, 41.6, cx, 45.4)
        box(cx - w / 2, 46, w, 5, f"target {i_next}", "#EAEAF2", 9)
        prev = (cx + w / 2 + 0.6, 27.5)
    ax.text(10, 38.5, "scores: one\nper item of\nthe table W", ha="center", va="center", fontsize=9, color="0.3")
    ax.text(10, 17.5, "tied: the input\nis the item's\noutput vector" if tied else "separate input\nembedding",
            ha="center", va="center", fontsize=9, color="0.3")
    ax.text(60, 56.5, "loss at every step: the target's score against sampled negatives",
            ha="center", va="center", fontsize=9, color="0.3")
    return ax

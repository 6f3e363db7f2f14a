"""Helpers of the Wide & Deep chapter: cross-weight tables against pandas groupbys, parts that add
up, the listing's problems reproduced with numbers, and input validation. (The DeepFM chapter's
helpers are tested in test_chapter_deepfm.py.)"""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from recbook.chapters import widedeep as chapter
from recbook.data import CTRData, ctr_crosses, ctr_protocol, load_movielens100k
from recbook.models import DeepFM, LogisticRegression, WideDeep

SMALL_FIT = dict(epochs=2, batch_size=512, lr=1e-2, patience=1, metric="auc")


@pytest.fixture(scope="module")
def data():
    return ctr_protocol(load_movielens100k(progress=False))


@pytest.fixture(scope="module")
def small(data):
    """The protocol's first 6,000 / next 1,500 / 1,500 rows: fast to train on."""
    frames = {"train": data.frames["train"].iloc[:6000], "valid": data.frames["valid"].iloc[:1500],
              "test": data.frames["test"].iloc[:1500]}
    return CTRData(data.schema, data.train.subset(slice(0, 6000)), data.valid.subset(slice(0, 1500)),
                   data.test.subset(slice(0, 1500)), frames)


@pytest.fixture(scope="module")
def trained_like(data):
    """A Wide & Deep with random weights of order 1 (as after training) on the full protocol."""
    torch.manual_seed(0)
    model = WideDeep(data.schema, ctr_crosses(data), dim=4, hidden=(8,))
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.5)
    return model


# --------------------------------------------------------------------------------------------
# Cross weights
# --------------------------------------------------------------------------------------------

def test_cross_weight_table_counts_match_a_groupby(data, trained_like):
    table = chapter.cross_weight_table(trained_like, data.train)
    crosses = trained_like.cross.crosses
    assert len(table) == sum(len(c.pairs) for c in crosses.crosses)  # no <pad>/<unk> rows
    by_label = dict(zip(crosses.labels(), trained_like.cross.weight.tolist()))
    np.testing.assert_allclose(table["weight"], [by_label[p] for p in table["pair"]])
    train = data.frames["train"]
    for c in crosses.crosses:
        rows = train[[c.a, c.b, "label"]].explode(c.b)
        g = rows.groupby([c.a, c.b])["label"].agg(["size", "mean"])
        g.index = [f"{c.a}={a} × {c.b}={b}" for a, b in g.index]
        sub = table[table["cross"] == c.name].set_index("pair")
        assert sorted(sub.index) == sorted(g.index)
        np.testing.assert_array_equal(sub.loc[g.index, "train rows"], g["size"])
        np.testing.assert_allclose(sub.loc[g.index, "positive rate"], g["mean"], rtol=1e-6)


def test_top_cross_weights_are_the_extremes(data, trained_like):
    top = chapter.top_cross_weights(trained_like, data.train, n=5, cross="occupation × genres", min_rows=20)
    assert len(top) == 10 and list(top["sign"]) == ["+"] * 5 + ["-"] * 5
    assert top["weight"].is_monotonic_decreasing
    assert (top["train rows"] >= 20).all() and top["pair"].str.startswith("occupation=").all()
    full = chapter.cross_weight_table(trained_like, data.train)
    full = full[(full["cross"] == "occupation × genres") & (full["train rows"] >= 20)]
    assert top["weight"].iloc[0] == full["weight"].max() and top["weight"].iloc[-1] == full["weight"].min()
    with pytest.raises(ValueError, match="cross: 'zip1 × genres' is not among"):
        chapter.top_cross_weights(trained_like, cross="zip1 × genres")
    with pytest.raises(ValueError, match="train: needed to filter by min_rows"):
        chapter.top_cross_weights(trained_like, min_rows=5)
    with pytest.raises(ValueError, match="model: has no cross features"):
        chapter.cross_weight_table(WideDeep(data.schema, None))
    with pytest.raises(ValueError, match="model: expected a recbook.models.WideDeep"):
        chapter.cross_weight_table(DeepFM(data.schema))


def test_unseen_pair_groups_match_a_brute_force_count(data, trained_like):
    table = chapter.unseen_pair_auc(trained_like, data.test)
    assert table["rows"].sum() == len(data.test)
    train, test = data.frames["train"], data.frames["test"]
    unseen = np.zeros(len(test), dtype=bool)
    for c in trained_like.cross.crosses:
        known = set(map(tuple, train[[c.a, c.b]].explode(c.b).drop_duplicates().to_numpy()))
        unseen |= [any((a, b) not in known for b in (bs if c.multi else (bs,)))
                   for a, bs in zip(test[c.a], test[c.b])]
    assert table.loc["some pair unseen", "rows"] == unseen.sum() > 0
    assert set(table.columns) == {"rows", "AUC, whole model", "AUC, wide part", "AUC, deep part"}


# --------------------------------------------------------------------------------------------
# Parts, joint training, optimiser split
# --------------------------------------------------------------------------------------------

def test_model_part_trains_only_its_part(small):
    from recbook.train import fit

    torch.manual_seed(0)
    model = WideDeep(small.schema, ctr_crosses(small), dim=4, hidden=(8,))
    deep0 = [p.detach().clone() for p in model.deep_parameters()]
    wide0 = [p.detach().clone() for p in model.wide_parameters()]
    fit(chapter.ModelPart(model, "wide"), small.train, epochs=1, progress=False)
    assert all(torch.equal(p, q) for p, q in zip(model.deep_parameters(), deep0))
    assert not all(torch.equal(p, q) for p, q in zip(model.wide_parameters(), wide0))
    with pytest.raises(ValueError, match="part: expected 'wide' or 'deep'"):
        chapter.ModelPart(model, "cross")


def test_joint_vs_ensemble_rows(small):
    table = chapter.joint_vs_ensemble(small, fit_kwargs=SMALL_FIT, dim=4, hidden=(16,))
    assert list(table.index) == ["joint", "wide alone", "deep alone", "ensemble (sum of logits)",
                                 "ensemble (stacked on validation)"]
    aucs = table[["valid AUC", "test AUC"]].to_numpy(dtype=float)
    assert np.isfinite(aucs).all() and (aucs > 0.55).all() and (aucs < 0.9).all()
    # Stacking fits the two logits on validation by maximum likelihood: it cannot do worse on
    # validation logloss than either part alone, so its AUC there stays close to the better part.
    assert table.loc["ensemble (stacked on validation)", "valid AUC"] > table.loc[
        ["wide alone", "deep alone"], "valid AUC"].min()


def test_wide_sparsity_counts_exact_zeros(small):
    model = WideDeep(small.schema, ctr_crosses(small), dim=4, hidden=(8,))
    with torch.no_grad():
        model.linear.weights.table.weight.fill_(1.0)
        model.cross.weight.fill_(1.0)
        model.cross.weight[::4] = 0.0
    sp = chapter.wide_sparsity(model)
    assert sp["feature weights"] == 0.0
    assert sp["cross weights"] == pytest.approx(np.ceil(model.cross.weight.numel() / 4) / model.cross.weight.numel())
    # With the training rows, only values and pairs that occur there count.
    with torch.no_grad():
        model.cross.weight.fill_(0.0)
        rows = chapter._cross_rows_used(model, dict(small.train))[1]
        model.cross.weight[rows] = 1.0
    sp = chapter.wide_sparsity(model, small.train)
    assert sp["cross weights"] == 0.0
    # Without them, the <pad> and <unk> rows of each cross count too (the vocabulary is the
    # training pairs, so every other row occurs in training).
    n = model.cross.weight.numel()
    assert chapter.wide_sparsity(model)["cross weights"] == pytest.approx(2 * len(model.cross.crosses) / n)


def test_optimizer_split_makes_exact_zeros(small):
    table = chapter.optimizer_split(small, fit_kwargs=SMALL_FIT, ftrl=dict(alpha=0.1, l1=2.0, deep_lr=0.05),
                                    dim=4, hidden=(16,))
    assert list(table.index) == ["Adam", "FTRL (wide) + AdaGrad (deep)"]
    adam, ftrl = table.loc["Adam"], table.loc["FTRL (wide) + AdaGrad (deep)"]
    assert adam["zero cross weights"] < 0.01  # Adam moves every weight it touches off zero
    assert ftrl["zero cross weights"] > 0.5  # L1 keeps most pairs at exactly zero
    assert 0.55 < ftrl["test AUC"] < 0.9


# --------------------------------------------------------------------------------------------
# The source listings
# --------------------------------------------------------------------------------------------


def test_one_hot_and_the_listing_wide_part_is_lr(data):
    batch = {k: v[:100] for k, v in data.train.items()}
    dense = chapter.one_hot(batch, data.schema)
    assert dense.shape == (100, data.schema.total_size)
    torch.testing.assert_close(dense.sum(1), torch.full((100,), 8.0))  # 7 ones + genres' k * 1/k
    lr = LogisticRegression(data.schema)
    with torch.no_grad():
        lr.linear.weights.table.weight.normal_()
    torch.testing.assert_close(dense @ lr.linear.weights.table.weight[:, 0] + lr.linear.bias, lr(batch))
    out = chapter.listing_wide_is_lr(data, batch_size=256)
    assert out["max |difference|"] < 1e-5 and out["dense input"] == (256, data.schema.total_size)
    assert out["nonzero share"] < 0.01 and 8 <= out["lookup rows"] < 14


def test_with_and_without_crosses_trains_both(small):
    table = chapter.with_and_without_crosses(small, fit_kwargs=SMALL_FIT, dim=4, hidden=(16,))
    assert list(table.index) == ["LR + MLP (no crosses)", "Wide & Deep (crosses)"]
    assert table["test AUC"].between(0.55, 0.9).all() and (table["epochs"] >= 1).all()
    # Different models: the cross weights change the predictions.
    assert table["test AUC"].iloc[0] != table["test AUC"].iloc[1]

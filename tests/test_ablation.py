"""The FM/DeepFM ablation: recipes, initialisations, the loss, the variants and the paired interval."""
import math
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from recbook import ablation
from recbook.bench import CTR_FIT, fingerprint
from recbook.data.features import PAD, UNK
from recbook.models import DeepFM, FactorizationMachine


@pytest.fixture
def data(small_schema, random_batch):
    batch = random_batch(small_schema, n=64)
    return SimpleNamespace(schema=small_schema, train={"label": batch["label"]}), batch


def test_recbook_recipe_is_the_models_default(data):
    """Recipe = recbook's settings -> bit for bit the model the constructors build by default (the
    leaderboard's entries before they adopted Xavier's initialisation)."""
    d, batch = data
    for name, cls, params in (("FM", FactorizationMachine, {"dim": 16}),
                              ("DeepFM", DeepFM, {"base_rate": float(d.train["label"].mean())})):
        torch.manual_seed(3)
        ref = cls(d.schema, **params)
        torch.manual_seed(3)
        mine = ablation.build(d, name)
        assert type(mine) is cls
        for (k, a), (_, b) in zip(ref.state_dict().items(), mine.state_dict().items()):
            assert torch.equal(a, b), k


def test_check_recipe_names_the_setting():
    with pytest.raises(ValueError, match="embed_init"):
        ablation.check_recipe("FM", {"embed_init": "normal-1"})
    with pytest.raises(ValueError, match="mlp_init"):
        ablation.check_recipe("FM", {"mlp_init": "uniform"})  # FM has no MLP
    with pytest.raises(ValueError, match="l2"):
        ablation.check_recipe("DeepFM", {"l2": -1.0})
    with pytest.raises(ValueError, match="model"):
        ablation.check_recipe("DIN", {})


def test_xavier_is_per_block_and_reserved_rows_follow_the_recipe(data):
    d, _ = data
    torch.manual_seed(0)
    m = ablation.build(d, "FM", embed_init="xavier", linear_init="xavier", unknown_rows="zero")
    w = m.embedding.table.weight.detach()
    offsets = torch.as_tensor(d.schema.offsets)
    assert (w[offsets + PAD] == 0).all() and (w[offsets + UNK] == 0).all()
    # genres (6 values + 2 reserved) have their own block: std sqrt(2 / (8 + 16)) = 0.29, far above
    # the single fields' block (30 + 50 + 2 rows + 6 reserved): sqrt(2 / (88 + 16)) = 0.14.
    g = d.schema.offsets[-1]
    assert w[g + 2:].std() > 1.5 * w[offsets[0] + 2: g].std()
    torch.manual_seed(0)
    m = ablation.build(d, "FM", unknown_rows="init")
    w = m.embedding.table.weight.detach()
    assert (w[offsets + UNK].abs() > 0).all() and (w[offsets + PAD] == 0).all()


def test_deepctr_mlp_init_is_tiny(data):
    d, _ = data
    torch.manual_seed(0)
    m = ablation.build(d, "DeepFM", mlp_init="normal-0.0001")
    hidden = [l for l in m.mlp if isinstance(l, torch.nn.Linear)][:-1]
    assert all(float(l.weight.detach().std()) < 2e-4 for l in hidden)
    out = [l for l in m.mlp if isinstance(l, torch.nn.Linear)][-1]
    assert float(out.weight.detach().abs().max()) > 1e-2  # the output layer keeps PyTorch's default


def test_genre_linear_sum_adds_the_members_weights(data):
    d, batch = data
    torch.manual_seed(0)
    mean = ablation.build(d, "FM", linear_init="xavier")
    torch.manual_seed(0)
    summed = ablation.build(d, "FM", linear_init="xavier", genre_linear="sum")
    with torch.no_grad():
        a, b = mean.linear(batch), summed.linear(batch)
        k = (batch["genres"] != PAD).sum(1).float()
        w = mean.linear.weights
        genre = w.pool("genres", batch["genres"]).squeeze(-1)  # the mean of the members' weights
        assert torch.allclose(b - a, genre * (k - 1), atol=1e-6)
        assert not torch.allclose(a, b)


def test_recipe_loss_sum_and_l2(data):
    d, batch = data
    torch.manual_seed(0)
    m = ablation.build(d, "FM", loss="sum", l2=1e-3)
    with torch.no_grad():
        bce = F.binary_cross_entropy_with_logits(m(batch), batch["label"], reduction="sum")
        l2 = 1e-3 * (m.embedding.table.weight.square().sum() + m.linear.weights.table.weight.square().sum())
        assert torch.allclose(ablation.recipe_loss(m, batch), bce + l2)
    m.recipe = dict(m.recipe, loss="mean", l2=0.0)
    with torch.no_grad():
        assert torch.allclose(ablation.recipe_loss(m, batch), bce / len(batch["label"]))


def test_entries_carry_the_recipe_in_their_fingerprint():
    a = ablation.entry("x", "FM", {})
    b = ablation.entry("x", "FM", {"l2": 1e-5, "loss": "sum"})
    c = ablation.entry("x", "FM", {"patience": 4})
    assert a.fit == dict(CTR_FIT) and b.fit["loss_fn"] is ablation.recipe_loss and c.fit["patience"] == 4
    prints = {fingerprint(e, checksum="-") for e in (a, b, c)}
    assert len(prints) == 3


def test_variants_move_every_library_setting_alone_and_together():
    v = ablation.variants("FM")
    assert v[0]["variant"] == "recbook" and v[0]["recipe"] == {}
    for (model, library), changes in ablation.LIBRARY_SETTINGS.items():
        if model != "FM":
            continue
        mine = [x for x in v if x["library"] == library]
        singles = {x["setting"]: x["recipe"] for x in mine if x["setting"] != "all"}
        assert singles == {k: {k: val} for k, val in changes.items()}
        assert [x["recipe"] for x in mine if x["setting"] == "all"] == [changes]
    for entry in v:
        ablation.check_recipe("FM", entry["recipe"])


def test_paired_interval():
    mean, lo, hi = ablation.paired_interval([1.0, 2.0, 3.0])
    assert mean == 2.0 and math.isclose(hi - mean, 4.303 / math.sqrt(3), rel_tol=1e-4)   # t(0.975, 2)
    assert math.isclose(mean - lo, hi - mean)
    assert all(math.isnan(v) for v in ablation.paired_interval([0.5])[1:])
    with pytest.raises(ValueError, match="diffs"):
        ablation.paired_interval([])


def test_summarize_pairs_by_seed():
    rows = pd.DataFrame({
        "side": ["recbook"] * 4, "variant": ["recbook", "recbook", "x", "x"], "setting": ["", "", "l2", "l2"],
        "value": ["", "", "1e-05", "1e-05"], "seed": [0, 1, 1, 0],
        "valid_auc": [0.70, 0.60, 0.62, 0.71], "test_auc": [0.5, 0.5, 0.5, 0.5], "epochs": [1, 1, 1, 1]})
    s = ablation.summarize(rows, {"recbook": "recbook"}).set_index("variant")
    assert math.isclose(s.loc["x", "d_valid_auc"], 0.015)  # (0.01 + 0.02) / 2, paired by seed
    assert s.loc["x", "d_test_auc"] == 0.0 and math.isnan(s.loc["recbook", "d_valid_auc"])


@pytest.mark.parametrize("name,cls", [("FM", FactorizationMachine), ("DeepFM", DeepFM)])
def test_models_xavier_option_is_the_ablations_recipe(data, name, cls):
    """``init_std="xavier"`` builds exactly the ablation's ``embed_init="xavier"`` model, so the
    ablation's rows are the evidence for the models' option."""
    d, batch = data
    torch.manual_seed(5)
    mine = ablation.build(d, name, embed_init="xavier")
    torch.manual_seed(5)
    extra = {"base_rate": float(d.train["label"].mean())} if name == "DeepFM" else {"dim": 16}
    model = cls(d.schema, init_std="xavier", **extra)
    for (k, a), (_, b) in zip(mine.state_dict().items(), model.state_dict().items()):
        assert torch.equal(a, b), k
    w = model.embedding.table.weight.detach()
    offsets = torch.as_tensor(d.schema.offsets)
    assert (w[offsets + PAD] == 0).all() and (w[offsets + UNK] == 0).all()
    with pytest.raises(ValueError, match="init_std"):
        cls(d.schema, init_std="glorot")


def test_collect_library_runs_scores_with_recbooks_metric(tmp_path, monkeypatch):
    """Library runs (the library's recipe and a variant whose value holds a dot) are read from
    their records and scored against the protocol's labels with recbook's AUC."""
    import json

    from recbook import bench
    from recbook.metrics import auc

    n = 40
    rng = np.random.default_rng(0)
    labels = {s: torch.tensor(rng.integers(0, 2, n).astype(np.float32)) for s in ("valid", "test")}
    labels["valid"][:2] = torch.tensor([0.0, 1.0])
    labels["test"][:2] = torch.tensor([0.0, 1.0])
    fake = SimpleNamespace(valid={"label": labels["valid"]}, test={"label": labels["test"]})
    monkeypatch.setattr(bench, "load_protocol", lambda name: fake)
    folder = tmp_path / "DeepCTR-Torch"
    folder.mkdir()
    noisy = rng.uniform(0.01, 0.99, n)
    for name, preds in (("FM__ctr__seed0", labels["valid"].numpy() * 0.8 + 0.1),
                        ("FM@embed_init:normal-0.01__ctr__seed0", noisy)):
        (folder / f"{name}.json").write_text(json.dumps({
            "library": "DeepCTR-Torch", "status": "ok", "seed": 0, "epochs": 3, "best_epoch": 2,
            "cpu_s_per_epoch": 1.0, "settings": {"n_parameters": 10}}))
        np.savez(folder / f"{name}.npz", valid=preds, test=preds)
    rows = ablation.collect_library_runs(tmp_path, "FM").set_index("variant")
    assert list(rows.index) == ["library", "library+recbook:embed_init"]
    assert rows.loc["library", "valid_auc"] == 1.0
    assert rows.loc["library+recbook:embed_init", "setting"] == "embed_init"
    assert rows.loc["library+recbook:embed_init", "value"] == "normal-0.01"
    assert math.isclose(rows.loc["library+recbook:embed_init", "test_auc"], auc(labels["test"].numpy(), noisy))


def test_leaderboard_entries_are_the_adopted_recipes(data):
    """recbook.bench's FM, FM-unk and DeepFM build bit for bit the ablation's recipe with what was
    adopted (ADOPTED: the Xavier initialisation), so the ablation's rows are the evidence for them."""
    from recbook import bench

    d, _ = data
    for name, model in (("FM", "FM"), ("FM-unk", "FM"), ("DeepFM", "DeepFM")):
        entry = bench.REGISTRY[name]
        assert entry.params["init_std"] == "xavier", name
        torch.manual_seed(7)
        built = entry.build(d)
        torch.manual_seed(7)
        mine = ablation.build(d, model, **ablation.ADOPTED[model])
        for (k, a), (_, b) in zip(built.state_dict().items(), mine.state_dict().items()):
            assert torch.equal(a, b), (name, k)
    assert set(ablation.ADOPTED) == set(ablation.RECBOOK)
    for model, recipe in ablation.ADOPTED.items():
        assert ablation.check_recipe(model, recipe) != ablation.RECBOOK[model]

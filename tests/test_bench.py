from types import SimpleNamespace

import pandas as pd
import pytest

from recbook import bench
from recbook.models import FactorizationMachine, LogisticRegression
from recbook.chapters.synthetic import planted_interactions


@pytest.fixture
def tiny_registry(monkeypatch):
    """A registry of two models on a small planted-interaction data set (no MovieLens needed)."""
    planted = planted_interactions(n_fields=4, field_size=6, n_samples=3000, seed=0)
    train, test = planted.split(0.2)
    data = SimpleNamespace(schema=planted.schema, train=train, valid=test, test=test)
    monkeypatch.setattr(bench, "REGISTRY", {})
    monkeypatch.setattr(bench, "PROTOCOLS", {"planted": lambda: data})
    fit_kwargs = dict(batch_size=256, lr=0.01, epochs=4, patience=2)
    bench.register(bench.Entry("LR", "planted", lambda d: LogisticRegression(d.schema), fit_kwargs))
    bench.register(bench.Entry("FM", "planted", lambda d: FactorizationMachine(d.schema, dim=4), fit_kwargs))
    return data


def test_rows_per_model_and_seed_with_costs_and_versions(tiny_registry):
    res = bench.run(seeds=(0, 1), progress=False)
    assert list(zip(res["model"], res["seed"])) == [("LR", 0), ("LR", 1), ("FM", 0), ("FM", 1)]
    for col in ("test_auc", "test_logloss", "epochs", "wall_s_per_epoch", "cpu_s_per_epoch", "threads", "torch"):
        assert col in res.columns
    assert (res["cpu_s_per_epoch"] > 0).all() and (res["epochs"] >= 1).all()
    fm, lr = res[res.model == "FM"], res[res.model == "LR"]
    assert fm["test_auc"].mean() > lr["test_auc"].mean() + 0.1  # planted pairs: only FM can see them


def test_same_seed_same_metrics(tiny_registry):
    a = bench.run(["FM"], seeds=(3,), progress=False)
    b = bench.run(["FM"], seeds=(3,), progress=False)
    assert a["test_auc"].iloc[0] == b["test_auc"].iloc[0]
    assert a["test_logloss"].iloc[0] == b["test_logloss"].iloc[0]


def test_quick_caps_epochs(tiny_registry):
    res = bench.run(["LR"], seeds=(0,), quick=True, progress=False)
    assert res["epochs"].iloc[0] <= bench.QUICK_EPOCHS and bool(res["quick"].iloc[0])


def test_summary_is_mean_and_population_std():
    res = pd.DataFrame({"model": ["A", "A", "B"], "protocol": ["p"] * 3, "test_auc": [0.6, 0.8, 0.5],
                        "wall_s_per_epoch": [1.0, 3.0, 2.0], "cpu_s_per_epoch": [1, 1, 1], "epochs": [2, 4, 3]})
    md = bench.summarize(res)
    assert "| A | p | 2 | 0.7000 ± 0.1000 | 2.00 ± 1.00 |" in md
    assert "| B | p | 1 | 0.5000 ± 0.0000 |" in md


def test_main_writes_csv_and_markdown(tiny_registry, tmp_path, capsys):
    assert bench.main(["--models", "LR", "--seeds", "0", "--out", str(tmp_path), "--no-progress"]) == 0
    csv = pd.read_csv(tmp_path / "bench.csv")
    assert len(csv) == 1 and csv["model"].iloc[0] == "LR"
    assert (tmp_path / "bench.md").read_text().startswith("| model |")
    assert not list(tmp_path.glob("*.tmp"))


@pytest.mark.parametrize("argv, message", [
    (["--models", "nope"], "models"), (["--seeds", "a,b"], "--seeds"), (["--threads", "0"], "--threads"),
])
def test_bad_arguments_are_reported(tiny_registry, argv, message, capsys):
    with pytest.raises(SystemExit) as e:
        bench.main(argv + ["--no-progress"])
    assert e.value.code == 2 and message in capsys.readouterr().err


def test_unknown_protocol_and_duplicate_names(tiny_registry):
    with pytest.raises(ValueError, match="protocol"):
        bench.load_protocol("nope")
    with pytest.raises(ValueError, match="already registered"):
        bench.register(bench.Entry("LR", "planted", lambda d: None))

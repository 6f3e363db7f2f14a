"""The leaderboard: protocol adapters, entries and registry, fingerprints, results files."""
import warnings
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch

from recbook import bench
from recbook.chapters.synthetic import planted_interactions
from recbook.models import FactorizationMachine, LogisticRegression
from recbook.train import evaluate_ctr

FIT = dict(batch_size=256, lr=0.01, epochs=4, patience=2)


@pytest.fixture
def planted_protocol(monkeypatch):
    """A CTR-like protocol on planted interactions with separate validation and test rows (no
    MovieLens needed), and an empty registry so only the test's entries exist."""
    planted = planted_interactions(n_fields=4, field_size=6, n_samples=3000, seed=0)
    train, valid, test = planted.split3(test_fraction=0.2, valid_fraction=0.2)
    data = SimpleNamespace(schema=planted.schema, train=train, valid=valid, test=test)
    protocols = dict(bench.PROTOCOLS)
    protocols["planted"] = bench.Protocol(
        "planted", lambda: data, lambda m, d, split: evaluate_ctr(m, getattr(d, split)), metric="auc",
        train_data=lambda d: d.train, settings={"n_samples": 3000}, checksum=lambda: "planted-0")
    monkeypatch.setattr(bench, "PROTOCOLS", protocols)
    monkeypatch.setattr(bench, "REGISTRY", {})
    return data


@pytest.fixture
def two_models(planted_protocol):
    bench.register(bench.Entry("LR", "planted", LogisticRegression.from_data, {}, FIT))
    bench.register(bench.Entry("FM", "planted", FactorizationMachine.from_data, {"dim": 4}, FIT))
    return planted_protocol


def test_rows_per_model_and_seed_with_costs_fingerprint_and_versions(two_models):
    res = bench.run(seeds=(0, 1), progress=False)
    assert list(zip(res["model"], res["seed"])) == [("LR", 0), ("LR", 1), ("FM", 0), ("FM", 1)]
    for col in ("test_auc", "test_logloss", "valid_auc", "epochs", "wall_s_per_epoch", "cpu_s_per_epoch",
                "total_s", "peak_rss_mb", "threads", "torch", "fingerprint", "recbook"):
        assert col in res.columns, col
    assert (res["epochs"] >= 1).all() and (res["total_s"] >= res["train_s_total"]).all()
    assert (res["peak_rss_mb"] > 10).all()     # a Python process with torch loaded holds > 10 MB
    fm, lr = res[res.model == "FM"], res[res.model == "LR"]
    assert fm["test_auc"].mean() > lr["test_auc"].mean() + 0.1  # planted pairs: only FM can see them
    assert res.groupby("model")["fingerprint"].nunique().eq(1).all()
    assert fm["fingerprint"].iloc[0] != lr["fingerprint"].iloc[0]


def test_training_stops_on_validation_not_test(two_models, monkeypatch):
    seen = []
    real = bench.PROTOCOLS["planted"].evaluate

    def spy(model, data, split):
        seen.append(split)
        return real(model, data, split)

    monkeypatch.setitem(bench.PROTOCOLS, "planted",
                        bench.Protocol("planted", bench.PROTOCOLS["planted"].load, spy, metric="auc",
                                       train_data=lambda d: d.train, checksum=lambda: "x"))
    res = bench.run(["FM"], seeds=(0,), progress=False)
    assert seen[-1] == "test" and set(seen[:-1]) == {"valid"} and len(seen) == res["epochs"].iloc[0] + 1
    assert res["valid_auc"].iloc[0] != res["test_auc"].iloc[0]


def test_same_seed_same_metrics(two_models):
    a = bench.run(["FM"], seeds=(3,), progress=False)
    b = bench.run(["FM"], seeds=(3,), progress=False)
    assert a["test_auc"].iloc[0] == b["test_auc"].iloc[0]
    assert a["test_logloss"].iloc[0] == b["test_logloss"].iloc[0]


def test_quick_caps_epochs(two_models):
    res = bench.run(["LR"], seeds=(0,), quick=True, progress=False)
    assert res["epochs"].iloc[0] <= bench.QUICK_EPOCHS and bool(res["quick"].iloc[0])


def test_an_entry_without_training_and_a_ranking_protocol(planted_protocol, monkeypatch):
    """A sequence-style protocol plugs in through its adapter: a model that scores every item for
    every user, evaluated with the ranking metrics, and an entry that needs no training."""
    from recbook.metrics import ranking_report

    n_users, n_items = 40, 12
    rng = np.random.default_rng(0)
    targets = rng.integers(2, n_items, size=n_users)
    data = SimpleNamespace(n_items=n_items, targets=lambda split: targets, __len__=None)

    class Seqs(SimpleNamespace):
        def __len__(self):
            return n_users

    data = Seqs(n_items=n_items, targets=lambda split: targets)

    class Oracle:
        """Scores the target highest: every metric must be 1."""

        def score_items(self, d, split):
            s = np.zeros((n_users, n_items))
            s[np.arange(n_users), d.targets(split)] = 1.0
            return s

    def evaluate(model, d, split):
        return ranking_report(bench._scores(model, d, split), d.targets(split), (1, 5))

    monkeypatch.setitem(bench.PROTOCOLS, "toyseq", bench.Protocol("toyseq", lambda: data, evaluate,
                                                                  metric="recall@5", checksum=lambda: "toy"))
    bench.register(bench.Entry("Oracle", "toyseq", lambda d: Oracle(), fit=None))
    res = bench.run(["Oracle"], seeds=(0,), progress=False)
    assert res["test_recall@1"].iloc[0] == 1.0 and res["valid_recall@5"].iloc[0] == 1.0
    assert res["epochs"].iloc[0] == 0

    class Wrong:
        def score_items(self, d, split):
            return np.zeros((n_users, n_items - 1))

    bench.register(bench.Entry("Wrong", "toyseq", lambda d: Wrong(), fit=None))
    with pytest.raises(ValueError, match=r"score_items: returned shape \(40, 11\); expected \(40, 12\)"):
        bench.run(["Wrong"], seeds=(0,), progress=False)


# --------------------------------------------------------------------------------------------
# Registry
# --------------------------------------------------------------------------------------------

def test_builtins_are_present_and_stay_when_another_model_registers(monkeypatch):
    monkeypatch.setattr(bench, "REGISTRY", {})
    bench._register_builtin()
    assert {"LR", "FM"} <= set(bench.REGISTRY)
    bench.register(bench.Entry("FM8", "ctr", FactorizationMachine.from_data, {"dim": 8}, dict(bench.CTR_FIT)))
    assert {"LR", "FM", "FM8"} <= set(bench.REGISTRY)


def test_registering_is_idempotent_and_a_changed_entry_replaces_with_a_warning(planted_protocol):
    e = bench.Entry("FM", "planted", FactorizationMachine.from_data, {"dim": 4}, FIT)
    bench.register(e)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        bench.register(bench.Entry("FM", "planted", FactorizationMachine.from_data, {"dim": 4}, dict(FIT)))
    with pytest.warns(UserWarning, match=r"replacing the registered model 'FM'.*'dim': 4.*'dim': 8"):
        bench.register(bench.Entry("FM", "planted", FactorizationMachine.from_data, {"dim": 8}, FIT))
    assert bench.REGISTRY["FM"].params == {"dim": 8}


@pytest.mark.parametrize("kwargs, message", [
    (dict(name="", protocol="ctr"), "name"),
    (dict(name="a,b", protocol="ctr"), "name"),
    (dict(name="X", protocol="nope"), "protocol"),
    (dict(name="X", protocol="ctr", factory=3), "factory"),
    (dict(name="X", protocol="ctr", params=[1]), "params"),
])
def test_entries_are_checked(kwargs, message):
    args = {"factory": LogisticRegression.from_data, **kwargs}
    with pytest.raises(ValueError, match=message):
        bench.Entry(**args)


def test_fingerprint_changes_with_every_setting(planted_protocol):
    base = bench.Entry("FM", "planted", FactorizationMachine.from_data, {"dim": 4}, FIT)
    same = bench.Entry("FM", "planted", FactorizationMachine.from_data, {"dim": 4}, dict(FIT))
    assert bench.fingerprint(base) == bench.fingerprint(same)
    variants = [
        bench.Entry("FM", "planted", FactorizationMachine.from_data, {"dim": 8}, FIT),
        bench.Entry("FM", "planted", FactorizationMachine.from_data, {"dim": 4}, {**FIT, "lr": 0.02}),
        bench.Entry("FM", "planted", LogisticRegression.from_data, {}, FIT),
    ]
    prints = {bench.fingerprint(v) for v in variants}
    assert len(prints) == 3 and bench.fingerprint(base) not in prints
    assert bench.fingerprint(base, "other-data") != bench.fingerprint(base)


def test_data_checksum_sees_one_changed_rating(make_ml):
    ml = make_ml()
    before = bench.data_checksum(ml)
    ml.ratings.loc[7, "rating"] = 6 - ml.ratings.loc[7, "rating"] if ml.ratings.loc[7, "rating"] != 3 else 4
    assert bench.data_checksum(ml) != before


# --------------------------------------------------------------------------------------------
# Results files
# --------------------------------------------------------------------------------------------

def test_summary_is_mean_and_population_std_per_protocol():
    res = pd.DataFrame({"model": ["A", "A", "B", "P"], "protocol": ["p", "p", "p", "q"],
                        "test_auc": [0.6, 0.8, 0.5, np.nan], "test_recall@10": [np.nan, np.nan, np.nan, 0.25],
                        "wall_s_per_epoch": [1.0, 3.0, 2.0, 1.0], "cpu_s_per_epoch": [1, 1, 1, 1],
                        "epochs": [2, 4, 3, 0]})
    md = bench.summarize(res)
    assert "| A | p | 2 | 0.7000 ± 0.1000 | 2.00 ± 1.00 |" in md
    assert "| B | p | 1 | 0.5000 ± 0.0000 |" in md
    assert "### q" in md and "| P | q | 1 | 0.2500 ± 0.0000 |" in md and "recall@10 | wall" in md


def test_main_writes_csv_and_markdown(two_models, tmp_path):
    assert bench.main(["--models", "LR", "--seeds", "0", "--out", str(tmp_path), "--no-progress"]) == 0
    csv = pd.read_csv(tmp_path / "bench.csv")
    assert len(csv) == 1 and csv["model"].iloc[0] == "LR"
    assert (tmp_path / "bench.md").read_text().startswith("### planted")


def test_unknown_protocol(two_models):
    with pytest.raises(ValueError, match="protocol"):
        bench.load_protocol("nope")


def test_ctr_training_rows_leave_the_histories_out():
    from recbook.data import TensorData

    data = SimpleNamespace(train=TensorData(x=torch.zeros(3, 2, dtype=torch.long), hist_item=torch.zeros(3, 4),
                                            hist_mask=torch.zeros(3, 4, dtype=torch.bool)))
    assert sorted(bench.ctr_rows(data)) == ["x"]
    assert sorted(bench.ctr_rows_with_history(data)) == ["hist_item", "hist_mask", "x"]


def test_seed_comparison_pairs_the_seeds():
    results = pd.DataFrame({
        "model": ["A", "A", "A", "B", "B", "B", "B"], "protocol": ["ctr"] * 6 + ["other"],
        "seed": [0, 1, 2, 0, 1, 3, 0], "test_auc": [0.70, 0.71, 0.72, 0.72, 0.70, 0.9, 0.1]})
    out = bench.seed_comparison(results, "A", "B", metrics=["test_auc"])
    assert out.index.tolist() == [0, 1]                        # seeds both ran under "ctr"
    np.testing.assert_allclose(out["test_auc B − A"], [0.02, -0.01])
    with pytest.raises(ValueError, match="C"):
        bench.seed_comparison(results, "A", "C", metrics=["test_auc"])
    with pytest.raises(ValueError, match="valid_auc"):
        bench.seed_comparison(results, "A", "B", metrics=["valid_auc"])


def test_read_results_reads_the_book_s_leaderboard_file(tmp_path, monkeypatch):
    (tmp_path / "results").mkdir()
    pd.DataFrame({"model": ["X"], "seed": [0]}).to_csv(tmp_path / "results" / "mine.csv", index=False)
    monkeypatch.chdir(tmp_path)
    assert bench.read_results("mine.csv").to_dict("list") == {"model": ["X"], "seed": [0]}
    committed = bench.read_results("bench.csv")   # found in the repository's book/results/
    assert {"model", "protocol", "seed", "test_auc"} <= set(committed.columns)
    for bad in ("../x.csv", "bench.txt", 3):
        with pytest.raises(ValueError, match="name"):
            bench.read_results(bad)


def test_fingerprint_is_the_same_when_bench_runs_as_main(monkeypatch):
    """``python -m recbook.bench`` runs the module as ``__main__``: functions defined in it (such as
    ``ctr_rows_with_history``) must still be named ``recbook.bench.*`` in the fingerprint, or rows
    written by the command would not match the settings the tests read."""
    import sys
    import types

    from recbook import bench

    entry = bench.REGISTRY["DIN"]
    expected = bench.fingerprint(entry)
    fake_main = types.ModuleType("__main__")
    fake_main.__spec__ = types.SimpleNamespace(name="recbook.bench")
    monkeypatch.setitem(sys.modules, "__main__", fake_main)
    as_main = bench.Entry(entry.name, entry.protocol, entry.factory, entry.params, entry.fit,
                          train_data=types.FunctionType(bench.ctr_rows_with_history.__code__,
                                                        {"__name__": "__main__"}, "ctr_rows_with_history"),
                          description=entry.description)
    as_main.train_data.__qualname__ = "ctr_rows_with_history"
    assert as_main.train_data.__module__ == "__main__"
    assert bench.fingerprint(as_main) == expected


def test_jobs_run_in_worker_processes_and_give_the_same_rows():
    """Two worker processes give the rows one process gives, times aside (every run seeds itself)."""
    one = bench.run(["LR"], seeds=(0, 1), quick=True, progress=False, jobs=1)
    two = bench.run(["LR"], seeds=(0, 1), quick=True, progress=False, jobs=2)
    cols = ["model", "seed", "test_auc", "test_logloss", "test_gauc", "valid_auc", "epochs", "fingerprint"]
    pd.testing.assert_frame_equal(one[cols], two[cols])


def test_jobs_are_checked_and_run_time_entries_stay_in_one_process(two_models):
    with pytest.raises(ValueError, match="jobs: expected a positive integer"):
        bench.run(["LR"], seeds=(0,), progress=False, jobs=0)
    with pytest.raises(ValueError, match="registered at run time"):
        bench.run(["LR"], seeds=(0,), progress=False, jobs=2)

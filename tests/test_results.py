"""The committed leaderboard (book/results/bench.csv) cannot drift from the code.

* Every committed row carries the fingerprint of what produced it (the entry's factory, parameters
  and fit settings, the protocol's settings, the data checksum, recbook's version). A row whose
  fingerprint differs from what the current code would write fails here: re-run
  ``python -m recbook.bench --models NAME`` after changing a model's settings.
* Every registered model has its three seeds in the file, and every row belongs to a registered
  model.
* Seed 0 of the fastest models (LR and FM) is trained again at its full budget and must give the
  committed test metrics within TOLERANCE. On the machine that wrote the file the numbers are
  identical (same seed, same code); the tolerance covers floating-point differences between CPUs,
  which can move early stopping by an epoch.
"""
from pathlib import Path

import pandas as pd
import pytest

from recbook import bench

RESULTS = Path(__file__).resolve().parents[1] / "book" / "results" / "bench.csv"
SEEDS = {0, 1, 2}
TOLERANCE = {"test_auc": 0.002, "test_logloss": 0.002, "test_gauc": 0.003}


@pytest.fixture(scope="module")
def committed() -> pd.DataFrame:
    return pd.read_csv(RESULTS)


def test_every_row_belongs_to_a_registered_model_and_matches_its_fingerprint(committed):
    assert "fingerprint" in committed.columns, "the results file has no fingerprints; re-run make bench"
    stale = []
    for (model, protocol), rows in committed.groupby(["model", "protocol"], sort=False):
        entry = bench.REGISTRY.get(model)
        assert entry is not None, f"{model}: has results but is not registered in recbook.bench"
        assert entry.protocol == protocol, f"{model}: results on {protocol!r}, registered on {entry.protocol!r}"
        expected = bench.fingerprint(entry)
        stale += [f"{model} seed {s}" for s, fp in zip(rows["seed"], rows["fingerprint"]) if fp != expected]
    assert not stale, ("committed rows no longer match the code's settings (re-run "
                       f"`python -m recbook.bench --models ...`): {stale}")


def test_every_registered_model_has_three_seeds(committed):
    missing = {name: sorted(SEEDS - set(committed.loc[committed["model"] == name, "seed"]))
               for name in bench.REGISTRY}
    missing = {k: v for k, v in missing.items() if v}
    assert not missing, f"registered models without committed results for these seeds: {missing}"
    assert not committed.duplicated(bench.KEY).any()
    assert not committed["quick"].astype(bool).any(), "quick (smoke) runs must not be committed"


@pytest.fixture(scope="module")
def ctr_data():
    return bench.load_protocol("ctr")


@pytest.mark.parametrize("model", ["LR", "FM"])
def test_seed_0_reproduces_the_committed_metrics(committed, ctr_data, model):
    row = committed[(committed["model"] == model) & (committed["seed"] == 0)].iloc[0]
    again = bench.run_one(bench.REGISTRY[model], ctr_data, 0, threads=1, quick=False, progress=False)
    assert again["fingerprint"] == row["fingerprint"]
    for metric, tol in TOLERANCE.items():
        assert abs(again[metric] - row[metric]) <= tol, (model, metric, again[metric], row[metric])

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

import numpy as np
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


# --------------------------------------------------------------------------------------------
# The library comparison (book/results/libraries.csv, written by benchmarks/libraries/collect.py)
# --------------------------------------------------------------------------------------------

LIBRARIES = RESULTS.parent / "libraries.csv"


@pytest.fixture(scope="module")
def collect():
    import importlib.util

    path = RESULTS.parents[2] / "benchmarks" / "libraries" / "collect.py"
    spec = importlib.util.spec_from_file_location("libraries_collect", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_committed_library_table_shows_every_drop_with_its_reason(collect):
    """A model a library script drops (a broken library model) is one row with status
    ``dropped``, the script's reason and no metric, in the CSV and in the markdown summary."""
    drops = collect.declared_drops()
    assert ("torch-rechub", "DSSM", "retrieval") in set(map(tuple, drops[["library", "model", "protocol"]].to_numpy()))
    table = pd.read_csv(LIBRARIES)
    summary = (RESULTS.parent / "libraries.md").read_text(encoding="utf-8")
    metrics = [c for c in table.columns if c.startswith(("test_", "valid_"))]
    for d in drops.itertuples(index=False):
        mine = table[(table["library"] == d.library) & (table["model"] == d.model) & (table["protocol"] == d.protocol)]
        assert len(mine) == 1, f"{d.library} {d.model}: {len(mine)} rows; re-run benchmarks/libraries/collect.py"
        row = mine.iloc[0]
        assert row["status"] == "dropped" and row["notes"] == d.notes
        assert row[metrics].isna().all(), f"{d.library} {d.model}: a dropped model keeps no metric"
        assert d.notes in summary


def test_apply_drops_replaces_the_broken_rows_once(collect):
    table = pd.DataFrame({
        "library": ["L", "L", "L", "M"], "library_version": ["1.0"] * 3 + ["2.0"],
        "model": ["X", "X", "Y", "X"], "protocol": ["retrieval", "retrieval", "ctr", "retrieval"],
        "seed": [1, 2, 0, 0], "status": ["ok"] * 4, "test_auc": [0.6, 0.7, 0.8, 0.9],
        "settings": ["{}"] * 4, "notes": [""] * 4})
    drops = pd.DataFrame([{"library": "L", "model": "X", "protocol": "retrieval", "notes": "dropped: broken"},
                          {"library": "N", "model": "Z", "protocol": "ctr", "notes": "dropped: not collected"}])
    out = collect.apply_drops(table, drops)
    x = out[(out["library"] == "L") & (out["model"] == "X")]
    assert len(x) == 1 and x["status"].iloc[0] == "dropped" and x["notes"].iloc[0] == "dropped: broken"
    assert x["seed"].iloc[0] == 1 and x["library_version"].iloc[0] == "1.0" and np.isnan(x["test_auc"].iloc[0])
    assert len(out) == 3 and set(out["library"]) == {"L", "M"}          # other rows kept, N never collected
    assert out[out["library"] == "M"]["test_auc"].iloc[0] == 0.9 and list(out.columns) == list(table.columns)
    assert collect.apply_drops(out, drops).equals(out)                   # collecting again changes nothing


def test_declared_drops_read_the_scripts_without_importing_them(collect, tmp_path):
    (tmp_path / "lib_bench.py").write_text(
        'import not_installed_library\nLIBRARY = "Lib"\nPROTOCOL = {"A": "sequence"}\n'
        'DROPPED = {"A": ("dropped: " "why"), "B": "dropped: other"}\n')
    (tmp_path / "plain_bench.py").write_text('LIBRARY = "Plain"\n')
    d = collect.declared_drops(tmp_path).set_index("model")
    assert list(d.index) == ["A", "B"] and d.loc["A", "protocol"] == "sequence" and d.loc["B", "protocol"] == "ctr"
    assert d.loc["A", "notes"] == "dropped: why" and set(d["library"]) == {"Lib"}

"""Fixtures shared by the unit tests: a small schema, random batches for it, tiny MovieLens-shaped
data sets, and the real MovieLens-100K (cached by ``make data`` before the tests run).

The factories are fixtures that return functions, so a test asks for the one it needs and calls it
with its own sizes and seed:

    def test_something(make_ml, random_batch, small_schema):
        ml = make_ml(n_users=6, seed=1)
        batch = random_batch(small_schema, n=8)
"""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch

from recbook.data import GENRES, Field, Schema


def _small_schema() -> Schema:
    # Given out of order on purpose: Schema puts single-valued fields first.
    return Schema((
        Field("user_id", tuple(range(30)), role="user"),
        Field("genres", tuple("ABCDEF"), multi=True, role="item", max_len=3),
        Field("item_id", tuple(range(50)), role="item"),
        Field("gender", ("F", "M"), role="user"),
    ))


@pytest.fixture
def small_schema() -> Schema:
    """A CTR-like schema: user_id (30 values), item_id (50) and gender (2) in the columns of ``x``
    in that order, and the multi-valued genres (6 values, at most 3 per row), with roles."""
    return _small_schema()


def _random_batch(schema: Schema, n: int = 32, seed: int = 0, *, labels: bool = True,
                  reserved: bool = True) -> dict:
    """Valid indices for every field of ``schema``: ``x`` ``[n, S]`` and one ``[n, max_len]``
    matrix per multi-valued field with 0..max_len members per row, right-padded (row 0 has none).
    ``reserved`` lets single-valued codes be 1 (unknown); otherwise they start at 2."""
    g = torch.Generator().manual_seed(seed)
    low = 1 if reserved else 2
    x = torch.stack([torch.randint(low, f.size, (n,), generator=g) for f in schema.single], dim=1)
    batch = {"x": x}
    for f in schema.multi:
        width = f.max_len
        idx = torch.randint(2, f.size, (n, width), generator=g)
        k = torch.randint(0, width + 1, (n,), generator=g)
        k[0] = 0  # at least one row with no members at all
        batch[f.name] = torch.where(torch.arange(width) < k[:, None], idx, 0)
    if labels:
        batch["label"] = torch.randint(0, 2, (n,), generator=g).float()
    return batch


@pytest.fixture
def random_batch():
    """``random_batch(schema, n=32, seed=0, labels=True, reserved=True) -> dict of tensors``."""
    return _random_batch


def _make_ml(n_users: int = 20, n_items: int = 20, n_ratings: int = 300, seed: int = 0,
             seconds: int = 60) -> SimpleNamespace:
    """A tiny MovieLens-shaped data set (``ratings``, ``users``, ``items`` with the loader's columns
    and dtypes) from a seeded generator. Timestamps take only ``seconds`` distinct values, so many
    ratings share a second: the tie rule matters. Item 1 has no release year."""
    rng = np.random.default_rng(seed)
    pairs = rng.choice(n_users * n_items, size=n_ratings, replace=False)
    ratings = pd.DataFrame({
        "user_id": (pairs // n_items + 1).astype(np.int64),
        "item_id": (pairs % n_items + 1).astype(np.int64),
        "rating": rng.integers(1, 6, n_ratings).astype(np.int64),
        "timestamp": pd.to_datetime(rng.integers(0, seconds, n_ratings) * 1000, unit="s").astype("datetime64[s]"),
    })
    users = pd.DataFrame({
        "user_id": np.arange(1, n_users + 1, dtype=np.int64),
        "age": rng.integers(10, 70, n_users).astype(np.int64),
        "gender": pd.Categorical(rng.choice(["F", "M"], n_users), categories=["F", "M"]),
        "occupation": pd.Categorical(rng.choice(["artist", "writer", "other"], n_users)),
        "zip_code": pd.array(rng.choice(["12345", "T8H1N", "90210"], n_users), dtype="string"),
    })
    items = pd.DataFrame({"item_id": np.arange(1, n_items + 1, dtype=np.int64),
                          "title": pd.array([f"Movie {i}" for i in range(1, n_items + 1)], dtype="string"),
                          "release_year": pd.array([None] + list(rng.integers(1930, 1999, n_items - 1)),
                                                   dtype="Int64")})
    flags = rng.random((n_items, len(GENRES))) < 0.2
    flags[:, 0] |= ~flags.any(axis=1)  # every movie has a genre, as in ML-100K
    for j, g in enumerate(GENRES):
        items[g] = flags[:, j]
    return SimpleNamespace(ratings=ratings, users=users, items=items)


@pytest.fixture
def make_ml():
    """``make_ml(n_users=20, n_items=20, n_ratings=300, seed=0, seconds=60) -> ml``."""
    return _make_ml


@pytest.fixture(scope="session")
def movielens():
    """The real MovieLens-100K, from the cache (``make data``); skips when it cannot be loaded."""
    from recbook.data import DataUnavailableError, load_movielens100k

    try:
        return load_movielens100k(progress=False, sources=("cache",))
    except DataUnavailableError as err:  # pragma: no cover - only without `make data`
        pytest.skip(f"MovieLens-100K is not cached ({err}); run `make data`")


@pytest.fixture
def planted_leaderboard(monkeypatch):
    """A factory: ``planted_leaderboard(n_samples, epochs)`` puts LR and FM on planted interactions
    under a protocol of their own (``"planted"``, no MovieLens needed) as the only leaderboard
    entries, and returns the data (``schema``, ``train``, ``valid``, ``test``)."""
    from recbook import bench
    from recbook.chapters.synthetic import planted_interactions
    from recbook.models import FactorizationMachine, LogisticRegression
    from recbook.train import evaluate_ctr

    def make(n_samples: int, epochs: int):
        planted = planted_interactions(n_fields=4, field_size=6, n_samples=n_samples, seed=0)
        train, valid, test = planted.split3(test_fraction=0.2, valid_fraction=0.2)
        data = SimpleNamespace(schema=planted.schema, train=train, valid=valid, test=test)
        protocols = dict(bench.PROTOCOLS)
        protocols["planted"] = bench.Protocol(
            "planted", lambda: data, lambda m, d, split: evaluate_ctr(m, getattr(d, split)), metric="auc",
            train_data=lambda d: d.train, checksum=lambda: "planted-0")
        monkeypatch.setattr(bench, "PROTOCOLS", protocols)
        monkeypatch.setattr(bench, "REGISTRY", {})
        fit_kwargs = dict(batch_size=256, lr=0.01, epochs=epochs, patience=2)
        bench.register(bench.Entry("LR", "planted", LogisticRegression.from_data, {}, fit_kwargs))
        bench.register(bench.Entry("FM", "planted", FactorizationMachine.from_data, {"dim": 4}, fit_kwargs))
        return data

    return make

"""Bad input and faults: every case of the hostile-user review that went wrong, one test each.

One section per group; each section lists its cases. ``[guard]`` marks a case that already held
before the fix and is kept so that it stays so; every other case failed before the fix.

A. ``fit`` fails fast (recbook/train.py)                                            15 cases
   A1  lr=1e10 with Adam: FloatingPointError at epoch 1, batch 2, naming the lr
   A2  lr=1e10 with SGD: the same
   A3  a NaN loss in a later epoch: raised at that epoch and batch, before the step
   A4  a NaN loss in the very first batch: raised, saying no update happened yet
   A5  "exploding" is exactly |loss| > 1000 x max(|first loss|, 1): 999 passes, 1001 raises,
       a loss starting near 0 may grow to 999; divergence_factor=None keeps only NaN/inf
   A6  divergence_factor that is not a number above 1: ValueError naming it
   A7  int64 labels: ValueError naming train['label'] and the dtype, before any forward
   A8  labels in {0, 5}: ValueError naming the range, before any forward
   A9  NaN labels: ValueError, before any forward
   A10 no 'label' in train with the default loss: ValueError naming train
   A11 a sampler (not a mapping) with int64 labels: ValueError on its first batch
   A12 validation data without labels: ValueError naming valid, before training
   A13 validation labels other than 0/1: ValueError naming valid['label'], before training
   A14 non-finite validation outputs: FloatingPointError naming the epoch (the check that
       could not be reached)
   A15 [guard] a custom loss_fn on data without labels (sequence models) keeps working

B. Offline and unwritable environments (recbook/data/movielens.py)                  12 cases
   B1  cache_dir below a regular file: downloads into a temporary folder, returns the data
       with a RuntimeWarning, leaves no temporary folder behind
   B2  read-only cache folder, official source: the same
   B3  read-only cache folder, recbole source: the same
   B4  read-only cache folder holding a hand-placed ml-100k.zip: read without the network
   B5  stale .tmp-* files and folders are swept on a call served by the cache
   B6  a folder with an old date but a file written just now (a live download) is kept
   B7  stale fallback folders in the system's temporary directory are swept too
   B8  a pip download child dies when its parent is killed (SIGKILL; Linux)
   B9  [guard] Ctrl-C during pip download kills pip and removes the temporary folder
   B10 the "no source works" error ends with the remedy (folder, file names, checksums),
       and following it works offline
   B11 pip is given a per-connection timeout and one retry; the whole download is capped at
       60 s and reported as a timeout
   B12 while pip runs, a progress line is printed every WAIT_REPORT_S seconds

C. The notebooks' setup cell (recbook/notebook_setup.py, book/*.ipynb)               3 cases
   C1  pip failing (exit status 1): one error, not a CalledProcessError traceback, whose
       message ends with the remedy (`pip install -e .`, and the pip command for Colab);
       checked on the template and on every notebook's first cell
   C2  pip that cannot start (OSError): the same
   C3  under IPython, the failure shows as that one message, without a traceback

D. Never lose results (recbook/bench.py)                                             5 cases
   D1  a subset run (--models LR --seeds 0) replaced the committed results with its one row:
       rows now merge by (model, protocol, seed); --replace asks for the old behaviour
   D2  a write failing after the CSV was replaced left the two files disagreeing: both go to
       temporary names first, a failed rename puts the first file back, the new rows are
       saved to a fallback file named in the error
   D3  --models with an empty list ran everything; repeated seeds faked "3 seeds ± 0.0000";
       a huge or negative seed failed after the data load: all refused before any training
   D4  an --out that is a file: refused before any training
   D5  a model that fails mid-run (say, diverges) lost the rows of the models run before it:
       each model's rows are written as soon as its seeds are done

E. Protocols and features refuse what they cannot handle (recbook/data)             12 cases
   E1  ctr_frame: ratings outside 1-5 made every label 0 or 1
   E2  ctr_frame: duplicated users or items in the side tables multiplied the rows
   E3  ctr_frame: ids of different dtypes across tables gave "196 not in users"
   E4  ctr_frame: negative ages gave "80000 missing value(s)"
   E5  leave_last_out: string ids crashed with a TypeError
   E6  leave_last_out: a duplicated (user, item, timestamp) row made validation equal test
   E7  Field.encode: values of another kind than the vocabulary all became unknown silently
   E8  Field.encode: when every one of 20 or more values is unknown, a warning (a wrong
       vocabulary or column); a single cold-start value stays silent
   E9  Field.decode(-1) returned a value, decode(99) crashed inside numpy
   E10 Field.encode_multi(max_len=0) was ignored; a bare string was split into characters
   E11 SequenceData.padded(0) was ignored, padded(-1) crashed inside numpy
   E12 TensorData.subset([]) crashed inside torch; float indices, out-of-range rows

Total: 47 cases, 45 that failed before the fix and 2 guards.
"""
from __future__ import annotations

import errno
import hashlib
import http.server
import importlib.util
import io
import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import warnings
import zipfile
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

import recbook
from recbook import bench
from recbook.data import Field, TensorData, ctr_frame, leave_last_out
from recbook.data import movielens as ml
from recbook.notebook_setup import setup_cell_source
from recbook.train import fit, seed_everything
from processes import alive as _alive, wait_for as _wait_for

ROOT = Path(__file__).resolve().parents[1]
# The loader's own pip runner, before the `loader` fixture replaces it with a refusal.
REAL_PIP_DOWNLOAD = ml._download_recbole_wheel


# =============================================================================================
# A. fit fails fast
# =============================================================================================

class Logistic(nn.Module):
    """Logistic regression on ``batch['f']``; counts its forward calls."""

    def __init__(self, d: int = 4):
        super().__init__()
        self.lin = nn.Linear(d, 1)
        self.calls = 0

    def forward(self, batch):
        self.calls += 1
        return self.lin(batch["f"]).squeeze(-1)


def ctr_data(n: int = 400, d: int = 4, seed: int = 0, **override) -> TensorData:
    g = torch.Generator().manual_seed(seed)
    f = torch.randn(n, d, generator=g)
    label = (f.sum(1) > 0).float()
    fields = {"f": f, "label": label, "user": torch.randint(0, 10, (n,), generator=g)}
    fields.update(override)
    return TensorData({k: v for k, v in fields.items() if v is not None})


def scripted_loss(values):
    """A loss_fn whose value at call i is ``values[i]`` (with a gradient through the model)."""
    calls = iter(values)

    def loss_fn(model, batch):
        return model(batch).sum() * 0.0 + next(calls)

    return loss_fn


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])  # A1, A2
def test_A1_A2_diverging_run_raises_naming_epoch_batch_and_lr(optimizer):
    seed_everything(0)
    with pytest.raises(FloatingPointError) as err:
        fit(Logistic(), ctr_data(), ctr_data(seed=1), lr=1e10, optimizer=optimizer,
            batch_size=100, epochs=3, progress=False)
    message = str(err.value)
    # Batch 1 is scored before any step; the first step (lr 1e10) blows up batch 2.
    assert "epoch 1, batch 2 of 4" in message and "lr=1e+10" in message, message


def test_A3_nan_loss_raises_at_its_batch_before_the_step():
    model = Logistic()
    before_bad = {}
    def loss_fn(m, batch):  # 4 batches per epoch; call 6 is epoch 2, batch 2
        loss_fn.i += 1
        value = float("nan") if loss_fn.i == 6 else 1.0
        if math.isnan(value):
            before_bad.update({k: v.clone() for k, v in m.state_dict().items()})
        return nn.functional.binary_cross_entropy_with_logits(m(batch), batch["label"]) * value
    loss_fn.i = 0

    with pytest.raises(FloatingPointError, match=r"epoch 2, batch 2 of 4: the loss is nan \(lr=0\.01\)"):
        fit(model, ctr_data(), None, loss_fn=loss_fn, lr=0.01, batch_size=100, epochs=3,
            progress=False)
    for k, v in model.state_dict().items():  # the NaN never reached the weights
        assert torch.isfinite(v).all() and torch.equal(v, before_bad[k]), k


def test_A4_nan_loss_in_the_first_batch_says_no_update_happened():
    model = Logistic()
    with torch.no_grad():
        model.lin.bias.fill_(float("nan"))
    with pytest.raises(FloatingPointError, match=r"nan at epoch 1, batch 1, before any update"):
        fit(model, ctr_data(), None, lr=0.01, batch_size=100, progress=False)


@pytest.mark.parametrize("values, factor, raises", [
    ([1.0, 999.0, 1.0, 1.0], 1000.0, False),       # at most 1000 x the first loss
    ([1.0, 1001.0, 1.0, 1.0], 1000.0, True),       # just above
    ([0.001, 999.0, 1.0, 1.0], 1000.0, False),     # the floor: a loss starting near 0
    ([-2.0, 1999.0, 1.0, 1.0], 1000.0, False),     # |first loss| (a loss may be negative)
    ([-2.0, -2001.0, 1.0, 1.0], 1000.0, True),
    ([1.0, 1e30, 1.0, 1.0], None, False),          # check turned off ...
    ([1.0, float("inf"), 1.0, 1.0], None, True),   # ... but not for inf
])
def test_A5_exploding_means_a_thousand_times_the_first_loss(values, factor, raises):
    kwargs = {} if factor == 1000.0 else {"divergence_factor": factor}  # 1000 is the default

    def run():
        return fit(Logistic(), ctr_data(), None, loss_fn=scripted_loss(values), batch_size=100,
                   epochs=1, progress=False, **kwargs)

    if raises:
        with pytest.raises(FloatingPointError, match="epoch 1, batch 2 of 4"):
            run()
    else:
        assert len(run().history) == 1


@pytest.mark.parametrize("factor", [0, 1, -5, float("nan"), float("inf"), "big", True])
def test_A6_bad_divergence_factor_is_named(factor):
    with pytest.raises(ValueError, match="^divergence_factor: "):
        fit(Logistic(), ctr_data(), None, progress=False, divergence_factor=factor)


@pytest.mark.parametrize("labels, expected", [  # A7, A8, A9
    (torch.tensor([0, 1] * 200), r"train\['label'\]: expected float labels .* got dtype int64"),
    (torch.tensor([0.0, 5.0] * 200), r"train\['label'\]: expected labels in \[0, 1\] .* from 0 to 5"),
    (torch.tensor([0.0, float("nan")] * 200), r"train\['label'\]: contains 200 NaN"),
], ids=["A7-int64", "A8-zero-five", "A9-nan"])
def test_A7_A8_A9_labels_are_checked_before_any_computation(labels, expected):
    model = Logistic()
    with pytest.raises(ValueError, match=expected):
        fit(model, ctr_data(label=labels), None, progress=False)
    assert model.calls == 0


def test_A10_train_without_labels_needs_a_loss_fn():
    model = Logistic()
    with pytest.raises(ValueError, match=r"^train: has no 'label' field .* Pass loss_fn="):
        fit(model, ctr_data(label=None), None, progress=False)
    assert model.calls == 0


class Sampler:
    """Not a mapping: only yields batches (like GRU4Rec's session-parallel iterator)."""

    def __init__(self, data):
        self.data = data

    def batches(self, batch_size, *, shuffle=False, generator=None):
        return self.data.batches(batch_size, shuffle=shuffle, generator=generator)


def test_A11_a_sampler_has_its_first_batch_labels_checked():
    model = Logistic()
    with pytest.raises(ValueError, match=r"train\['label'\]: expected float labels"):
        fit(model, Sampler(ctr_data(label=torch.tensor([0, 1] * 200))), None, progress=False)
    assert model.calls == 0


def test_A12_validation_without_labels_is_refused_before_training():
    model = Logistic()
    with pytest.raises(ValueError, match=r"^valid: has no 'label' field .*evaluate="):
        fit(model, ctr_data(), ctr_data(seed=1, label=None), progress=False)
    assert model.calls == 0


def test_A13_validation_labels_must_be_zero_or_one():
    model = Logistic()
    with pytest.raises(ValueError, match=r"^valid\['label'\]: expected only 0 and 1 .*\[2\.0\]"):
        fit(model, ctr_data(), ctr_data(seed=1, label=torch.tensor([0.0, 2.0] * 200)),
            progress=False)
    assert model.calls == 0


def test_A14_non_finite_validation_outputs_name_the_epoch():
    valid = ctr_data(seed=1)
    f = valid["f"].clone()
    f[3, 0] = float("inf")  # only validation sees it; training stays finite
    valid = ctr_data(seed=1, f=f)
    with pytest.raises(FloatingPointError,
                       match=r"validation after epoch 1 failed \(lr=0\.01\): .*not finite for 1 of "
                             r"400 rows \(the first is row 3"):
        fit(Logistic(), ctr_data(), valid, lr=0.01, progress=False)


def test_A15_guard_custom_loss_without_labels_keeps_working():
    # A next-item model trained with a softmax loss on data that has no 'label' field.
    g = torch.Generator().manual_seed(0)
    prev = torch.randint(0, 20, (500,), generator=g)
    data = TensorData(prev=prev, next=(prev + 1) % 20)
    model = nn.Sequential(nn.Embedding(20, 8), nn.Linear(8, 20))

    def loss_fn(m, batch):
        return nn.functional.cross_entropy(m(batch["prev"]), batch["next"])

    def evaluate(m, d):
        with torch.no_grad():
            return {"acc": float((m(d["prev"]).argmax(1) == d["next"]).float().mean())}

    res = fit(model, data, data, loss_fn=loss_fn, evaluate=evaluate, metric="acc", lr=0.05,
              batch_size=100, epochs=10, progress=False)
    assert res.best_score == 1.0  # a bijection the model can learn exactly


# =============================================================================================
# B. Offline and unwritable environments
# =============================================================================================
# A two-user, two-item MovieLens in both formats (tests/test_movielens.py has the full one).

USERS = [(1, 24, "M", "technician", "85711"), (2, 53, "F", "other", "01002")]
ITEMS = [(1, "Toy Story (1995)", "Toy Story", "1995", "Animation"),
         (2, "GoldenEye (1995)", "GoldenEye", "1995", "Action")]
RATINGS = [(2, 1, 3, 881250949), (1, 2, 5, 891717742)]


def make_zip(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for name, body in files.items():
            zf.writestr(name, body)
    return buffer.getvalue()


def official_zip() -> bytes:
    def flags(genre):
        return "|".join("1" if g == genre else "0" for g in ml.GENRES)

    return make_zip({
        "ml-100k/u.data": "".join(f"{u}\t{i}\t{r}\t{t}\n" for u, i, r, t in RATINGS).encode(),
        "ml-100k/u.user": "".join(f"{u}|{a}|{g}|{o}|{z}\n" for u, a, g, o, z in USERS).encode(),
        "ml-100k/u.item": "".join(f"{i}|{t}|01-Jan-1995||http://x/{i}|{flags(genre)}\n"
                                  for i, t, _, _, genre in ITEMS).encode("latin-1"),
    })


def recbole_wheel() -> bytes:
    base = "recbole/dataset_example/ml-100k/ml-100k"
    return make_zip({
        f"{base}.inter": ("user_id:token\titem_id:token\trating:float\ttimestamp:float\n" + "".join(
            f"{u}\t{i}\t{float(r)}\t{float(t)}\n" for u, i, r, t in RATINGS)).encode(),
        f"{base}.user": ("user_id:token\tage:token\tgender:token\toccupation:token\tzip_code:token\n"
                         + "".join(f"{u}\t{a}\t{g}\t{o}\t{z}\n" for u, a, g, o, z in USERS)).encode(),
        f"{base}.item": ("item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq\n"
                         + "".join(f"{i}\t{t}\t{y}\t{genre}\n" for i, _, t, y, genre in ITEMS)).encode(),
    })


def check_tiny(data) -> None:
    assert data.ratings[["user_id", "item_id", "rating"]].values.tolist() == [
        list(r[:3]) for r in RATINGS]
    assert data.items["title"].tolist() == ["Toy Story", "GoldenEye"]


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.server.requests.append(self.path)
        body = self.server.body
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def loader(monkeypatch, tmp_path):
    """No network, no real pip, no real cache, and a private system temporary directory.

    Returns a namespace: ``url`` serves the tiny official zip from 127.0.0.1 (its md5 is made
    the expected one); ``use_wheel()`` makes the recbole source 'download' the tiny wheel;
    ``systmp`` is what ``tempfile.gettempdir()`` returns meanwhile.
    """
    body = official_zip()
    monkeypatch.setattr(ml, "OFFICIAL_URL", "http://127.0.0.1:9/ml-100k.zip")
    monkeypatch.setattr(ml, "OFFICIAL_MD5", hashlib.md5(body).hexdigest())
    monkeypatch.setenv("RECBOOK_DATA", str(tmp_path / "default-cache"))
    systmp = tmp_path / "systmp"
    systmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(systmp))

    def no_pip(dest, *, timeout):
        raise AssertionError("a unit test tried to run pip")

    monkeypatch.setattr(ml, "_download_recbole_wheel", no_pip)

    def use_wheel():
        wheel = recbole_wheel()
        monkeypatch.setattr(ml, "RECBOLE_SHA256", hashlib.sha256(wheel).hexdigest())

        def download(dest, *, timeout):
            path = dest / "recbole-1.2.1-py3-none-any.whl"
            path.write_bytes(wheel)
            return path

        monkeypatch.setattr(ml, "_download_recbole_wheel", download)

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.body, httpd.requests = body, []
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    ns = type("Loader", (), {})()
    ns.url = f"http://127.0.0.1:{httpd.server_address[1]}/ml-100k.zip"
    ns.zip, ns.requests, ns.use_wheel, ns.systmp = body, httpd.requests, use_wheel, systmp
    try:
        yield ns
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


@pytest.fixture
def read_only(monkeypatch):
    """``read_only(folder)`` makes ``folder`` read-only until the test ends. chmod does not bind
    a superuser, so then every temporary file or folder the loader would create under it is
    refused instead, as on a read-only file system."""
    folders = []

    def make(folder: Path) -> None:
        folder.chmod(0o555)
        folders.append(folder)
        if os.access(folder, os.W_OK):
            _refuse_temporaries_under(folder, monkeypatch)

    yield make
    for folder in folders:
        folder.chmod(0o755)


def _refuse_temporaries_under(folder: Path, monkeypatch) -> None:
    real_mkstemp, real_mkdtemp = tempfile.mkstemp, tempfile.mkdtemp

    def refused(where) -> bool:
        return where is not None and Path(where).resolve().is_relative_to(folder.resolve())

    def mkstemp(*args, dir=None, **kwargs):
        if refused(dir):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(dir))
        return real_mkstemp(*args, dir=dir, **kwargs)

    def mkdtemp(*args, dir=None, **kwargs):
        if refused(dir):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(dir))
        return real_mkdtemp(*args, dir=dir, **kwargs)

    monkeypatch.setattr(tempfile, "mkstemp", mkstemp)
    monkeypatch.setattr(tempfile, "mkdtemp", mkdtemp)


def tree(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*"))


def load_warned(*args, **kwargs):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        data = ml.load_movielens100k(*args, progress=False, **kwargs)
    runtime = [w for w in caught if issubclass(w.category, RuntimeWarning)]
    return data, runtime


def test_B1_cache_dir_below_a_file_downloads_uncached_with_a_warning(loader, tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the cache folder should be")
    data, caught = load_warned(blocker / "cache", sources=("official",), official_url=loader.url)
    assert data.source == "official"
    check_tiny(data)
    assert len(caught) == 1
    message = str(caught[0].message)
    assert str(blocker / "cache" / "ml-100k") in message and "not cached" in message
    assert "RECBOOK_DATA" in message
    assert caught[0].filename == __file__  # the warning points at the caller
    assert tree(loader.systmp) == []       # the temporary download folder is gone


@pytest.mark.parametrize("source", ["official", "recbole"])  # B2, B3
def test_B2_B3_read_only_cache_downloads_uncached_with_a_warning(loader, tmp_path, read_only,
                                                                 source):
    cache = tmp_path / "cache"
    (cache / "ml-100k").mkdir(parents=True)
    (cache / "ml-100k" / "README").write_text("someone else's folder")
    read_only(cache / "ml-100k")
    loader.use_wheel()
    data, caught = load_warned(cache, sources=(source,), official_url=loader.url)
    assert data.source == source
    check_tiny(data)
    assert len(caught) == 1 and "cannot be written" in str(caught[0].message)
    assert tree(cache) == ["ml-100k", "ml-100k/README"]  # nothing written
    assert tree(loader.systmp) == []


def test_B4_read_only_cache_with_a_hand_placed_zip_loads_offline(loader, tmp_path, read_only):
    entry = tmp_path / "cache" / "ml-100k"
    entry.mkdir(parents=True)
    (entry / "ml-100k.zip").write_bytes(loader.zip)
    read_only(entry)
    data, caught = load_warned(entry.parent, sources=("cache",))
    assert data.source == "cache"
    check_tiny(data)
    assert loader.requests == []
    assert len(caught) == 1 and "parsed again on every call" in str(caught[0].message)
    assert tree(entry) == ["ml-100k.zip"]
    assert tree(loader.systmp) == []


def age(path: Path, seconds: float) -> None:
    past = time.time() - seconds
    for p in [*path.rglob("*"), path] if path.is_dir() else [path]:
        os.utime(p, (past, past), follow_symlinks=False)


def test_B5_stale_temporaries_go_on_every_call(loader, tmp_path):
    loader.use_wheel()
    ml.load_movielens100k(tmp_path, progress=False, sources=("recbole",))  # a complete cache
    entry = tmp_path / "ml-100k"
    stale_dir = entry / ".tmp-recbole-dead"
    stale_dir.mkdir()
    (stale_dir / "recbole-1.2.1-py3-none-any.whl").write_bytes(b"x" * 1000)
    stale_file = entry / ".tmp-ml-100k.zip.dead.part"
    stale_file.write_bytes(b"x" * 1000)
    age(stale_dir, 2 * 3600)
    age(stale_file, 2 * 3600)
    fresh = entry / ".tmp-ml-100k.zip.live.part"
    fresh.write_bytes(b"being written")
    not_ours = entry / "notes.txt"
    not_ours.write_text("kept")
    age(not_ours, 2 * 3600)

    assert ml.load_movielens100k(tmp_path, progress=False, sources=("cache",)).source == "cache"
    assert not stale_dir.exists() and not stale_file.exists()
    assert fresh.exists() and not_ours.exists()


def test_B6_a_live_download_in_an_old_folder_is_kept(loader, tmp_path):
    entry = tmp_path / "ml-100k"
    live_dir = entry / ".tmp-recbole-live"  # created long ago, written to just now
    live_dir.mkdir(parents=True)
    (live_dir / "part").write_bytes(b"x")
    age(live_dir, 2 * 3600)
    os.utime(live_dir / "part")
    data = ml.load_movielens100k(tmp_path, progress=False, sources=("official",),
                                 official_url=loader.url)
    assert data.source == "official"
    assert (live_dir / "part").exists()


def test_B7_stale_fallback_folders_in_the_system_temp_are_swept(loader, tmp_path):
    old = loader.systmp / "recbook-ml-100k-dead"
    old.mkdir()
    (old / "ml-100k.zip.part").write_bytes(b"x" * 1000)
    age(old, 2 * 3600)
    live = loader.systmp / "recbook-ml-100k-live"
    live.mkdir()
    other = loader.systmp / "someone-else"
    other.mkdir()
    age(other, 2 * 3600)
    with pytest.raises(ml.DataUnavailableError):
        ml.load_movielens100k(tmp_path, progress=False, sources=("cache",))
    assert not old.exists() and live.exists() and other.exists()


FAKE_PIP = """\
import os, sys, time
open(os.environ["RECBOOK_TEST_PIDFILE"], "w").write(str(os.getpid()))
time.sleep(60)
"""

# The parent imports the loader alone: recbook.data's __init__ would import torch (seconds).
PARENT = """\
import sys, types
package = types.ModuleType("recbook.data")
package.__path__ = [sys.argv[2]]
sys.modules["recbook.data"] = package
from recbook.data import movielens as ml
ml.load_movielens100k(sys.argv[1], progress=False, sources=("recbole",))
"""




@pytest.fixture
def fake_pip_parent(tmp_path):
    """Start a Python process that loads MovieLens with the recbole source, where ``-m pip``
    finds a fake pip that writes its pid and sleeps. Yields (parent Popen, pid of 'pip', cache);
    kills both (by pid) afterwards."""
    fake = tmp_path / "fake-site" / "pip"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("")
    (fake / "__main__.py").write_text(FAKE_PIP)
    pidfile = tmp_path / "pip.pid"
    env = {**os.environ, "RECBOOK_TEST_PIDFILE": str(pidfile),
           "PYTHONPATH": os.pathsep.join([str(fake.parent), str(ROOT)])}
    cache = tmp_path / "cache"
    ml_package = Path(ml.__file__).parent
    parent = subprocess.Popen([sys.executable, "-c", PARENT, str(cache), str(ml_package)], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    pid = None
    try:
        assert _wait_for(lambda: pidfile.exists() and pidfile.read_text(), 60), (
            "the fake pip never started: " + (parent.stderr.read().decode()
                                             if parent.poll() is not None else "parent running"))
        pid = int(pidfile.read_text())
        yield parent, pid, cache
    finally:
        if parent.poll() is None:
            parent.kill()
        parent.wait(timeout=10)
        parent.stderr.close()
        if pid is not None and _alive(pid):
            os.kill(pid, signal.SIGKILL)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_B8_pip_child_dies_with_its_parent(fake_pip_parent):
    parent, pid, _ = fake_pip_parent
    assert _alive(pid)
    parent.kill()  # SIGKILL: no Python cleanup runs in the parent
    parent.wait(timeout=10)
    assert _wait_for(lambda: not _alive(pid), 5), "pip outlived its parent"


@pytest.mark.skipif(sys.platform == "win32", reason="SIGINT to one process")
def test_B9_guard_ctrl_c_kills_pip_and_removes_the_temporary_folder(fake_pip_parent):
    parent, pid, cache = fake_pip_parent
    os.kill(parent.pid, signal.SIGINT)
    parent.wait(timeout=10)
    assert b"KeyboardInterrupt" in parent.stderr.read()
    assert not _alive(pid)
    assert [p for p in tree(cache) if ".tmp-" in p and "probe" not in p] == []


def test_B10_no_source_error_ends_with_the_remedy_that_works(loader, tmp_path):
    with pytest.raises(ml.DataUnavailableError) as err:
        ml.load_movielens100k(tmp_path, progress=False, sources=("cache", "official"))
    lines = str(err.value).splitlines()
    entry = tmp_path / "ml-100k"
    assert lines[1].startswith("  - cache") and lines[2].startswith("  - official")
    remedy = "\n".join(lines[3:])
    assert f"{entry}{os.sep}" in remedy and "under exactly this name" in remedy
    assert lines[-2].split() == ["ml-100k.zip", "from", ml.OFFICIAL_URL, "(md5",
                                 f"{ml.OFFICIAL_MD5})"]
    assert lines[-1].split()[0] == "recbole-1.2.1-py3-none-any.whl"
    assert lines[-1].endswith(f"(sha256 {ml.RECBOLE_SHA256})")
    assert "pip download --no-deps recbole==1.2.1" in lines[-1]

    entry.mkdir(parents=True, exist_ok=True)
    (entry / "ml-100k.zip").write_bytes(loader.zip)  # do what it says, still offline
    data = ml.load_movielens100k(tmp_path, progress=False)
    assert data.source == "cache" and loader.requests == []
    check_tiny(data)


def test_B11_a_black_holed_index_costs_at_most_a_minute(loader, tmp_path, monkeypatch):
    seen = {}

    def hanging_pip(cmd, **kwargs):  # an index that never answers: pip hangs until killed
        seen.update(cmd=cmd, timeout=kwargs["timeout"])
        raise subprocess.TimeoutExpired(cmd, kwargs["timeout"])

    monkeypatch.setattr(ml, "_download_recbole_wheel", REAL_PIP_DOWNLOAD)
    monkeypatch.setattr(ml.subprocess, "run", hanging_pip)
    with pytest.raises(ml.DataUnavailableError, match=r"recbole wheel .*timed out after 60 s"):
        ml.load_movielens100k(tmp_path, progress=False, sources=("recbole",))
    assert seen["timeout"] <= 60
    assert "--timeout=10" in seen["cmd"] and "--retries=1" in seen["cmd"]
    assert tree(tmp_path / "ml-100k") == []


def test_B12_progress_is_printed_while_pip_runs(loader, tmp_path, monkeypatch, capsys):
    loader.use_wheel()
    fast = ml._download_recbole_wheel

    def slow(dest, *, timeout):
        time.sleep(0.5)
        return fast(dest, timeout=timeout)

    monkeypatch.setattr(ml, "_download_recbole_wheel", slow)
    monkeypatch.setattr(ml, "WAIT_REPORT_S", 0.1)
    ml.load_movielens100k(tmp_path, progress=True, sources=("recbole",))
    err = capsys.readouterr().err
    waiting = [line for line in err.splitlines() if "still waiting for pip download" in line]
    assert len(waiting) >= 2, err
    assert "gives up after 60 s" in waiting[0]


# =============================================================================================
# C. The notebooks' setup cell
# =============================================================================================

def _notebook_setup_cells() -> dict[str, str]:
    cells = {"template": setup_cell_source()}
    for path in sorted((ROOT / "book").glob("*.ipynb")):
        source = json.loads(path.read_text(encoding="utf-8"))["cells"][0]["source"]
        cells[path.name] = "".join(source) if isinstance(source, list) else source
    return cells


SETUP_CELLS = _notebook_setup_cells()


def _failing_pip(monkeypatch, error: BaseException) -> None:
    def check_call(args, *a, **k):
        raise error

    monkeypatch.setattr(subprocess, "check_call", check_call)
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a, **k: None if name == "recbook" else real_find_spec(name, *a, **k))


REMEDY_END = (f"`pip install -e .` in the repository folder and restart the kernel; on Colab or "
              f"Binder, check that the notebook has internet access, run "
              f"`!pip install 'recbook @ git+{recbook.REPOSITORY_URL}'` in a cell, "
              f"then run this cell again.")


@pytest.mark.parametrize("error, why", [  # C1, C2
    (subprocess.CalledProcessError(1, ["pip"]), "pip exited with status 1"),
    (FileNotFoundError(2, "No such file or directory"), "[Errno 2] No such file or directory"),
], ids=["C1-pip-fails", "C2-pip-cannot-start"])
@pytest.mark.parametrize("cell", list(SETUP_CELLS), ids=list(SETUP_CELLS))
def test_C1_C2_setup_cell_failure_is_one_message_ending_with_the_remedy(monkeypatch, cell,
                                                                        error, why):
    _failing_pip(monkeypatch, error)
    with pytest.raises(Exception) as err:
        exec(compile(SETUP_CELLS[cell], "<setup cell>", "exec"), {"__name__": "__setup_cell__"})
    exc = err.value
    assert not isinstance(exc, (subprocess.CalledProcessError, OSError)), type(exc)
    message = str(exc)
    assert message.startswith(f"could not install recbook ({why})")
    assert message.endswith(REMEDY_END)
    assert exc.__suppress_context__ and exc.__cause__ is None  # no "During handling ..." chain
    assert exc._render_traceback_() == [f"RecbookSetupError: {message}"]


def test_C3_setup_cell_failure_shows_without_traceback_in_ipython(monkeypatch, capsys):
    interactiveshell = pytest.importorskip("IPython.core.interactiveshell")
    _failing_pip(monkeypatch, subprocess.CalledProcessError(1, ["pip"]))
    shell = interactiveshell.InteractiveShell.instance()
    result = shell.run_cell(setup_cell_source(), store_history=False)
    shown = capsys.readouterr()
    text = shown.out + shown.err
    assert type(result.error_in_exec).__name__ == "RecbookSetupError"  # "Run all" stops here
    assert "Traceback" not in text and "CalledProcessError" not in text, text
    assert text.strip() == f"RecbookSetupError: {result.error_in_exec}"


# --------------------------------------------------------------------------------------------
# D. Never lose results
# --------------------------------------------------------------------------------------------

@pytest.fixture
def two_models(planted_leaderboard):
    """Two models on planted interactions, under a protocol of their own (no MovieLens needed)."""
    return planted_leaderboard(n_samples=3000, epochs=3)


def rows(models, seeds, value=0.7, protocol="ctr"):
    return pd.DataFrame([{"model": m, "protocol": protocol, "seed": s, "test_auc": value + s / 100,
                          "wall_s_per_epoch": 1.0, "cpu_s_per_epoch": 1.0, "epochs": 3}
                         for m in models for s in seeds])


def test_D1_a_subset_run_merges_into_the_results(tmp_path):
    bench.write(rows(["LR", "FM"], [0, 1, 2]), tmp_path)
    bench.write(rows(["LR"], [0], value=0.5), tmp_path)
    csv = pd.read_csv(tmp_path / "bench.csv")
    assert len(csv) == 6
    assert csv.loc[(csv.model == "LR") & (csv.seed == 0), "test_auc"].item() == 0.5
    assert csv.loc[(csv.model == "FM") & (csv.seed == 2), "test_auc"].item() == pytest.approx(0.72)
    md = (tmp_path / "bench.md").read_text()
    assert "| LR | ctr | 3 |" in md and "| FM | ctr | 3 |" in md
    bench.write(rows(["LR"], [0]), tmp_path, replace=True)
    assert len(pd.read_csv(tmp_path / "bench.csv")) == 1
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_D2_a_failed_write_keeps_both_old_files_and_saves_the_rows(tmp_path, monkeypatch):
    bench.write(rows(["LR"], [0, 1]), tmp_path)
    before = {p.name: p.read_text() for p in tmp_path.iterdir()}
    real = os.replace
    calls = []

    def fail_second(src, dst):
        calls.append(dst)
        if len(calls) == 2:
            raise OSError("disk full")
        return real(src, dst)

    monkeypatch.setattr(bench.os, "replace", fail_second)
    monkeypatch.setattr(bench.tempfile, "gettempdir", lambda: str(tmp_path / "fallback"))
    (tmp_path / "fallback").mkdir()
    with pytest.raises(OSError, match=r"disk full.*new rows are saved in .*recbook-bench-"):
        bench.write(rows(["FM"], [0]), tmp_path)
    # the csv was renamed into place first, then put back: both files are the old ones
    assert {p.name: p.read_text() for p in tmp_path.iterdir() if p.is_file()} == before
    saved = list((tmp_path / "fallback").glob("recbook-bench-*.csv"))
    assert len(saved) == 1 and pd.read_csv(saved[0])["model"].tolist() == ["FM"]


@pytest.mark.parametrize("argv, message", [
    (["--models", "nope"], "models"), (["--models", ","], "models: is empty"),
    (["--models", "LR,LR"], "twice"), (["--seeds", "a,b"], "--seeds"),
    (["--seeds", "0,0,1"], "repeats a seed"), (["--seeds", str(2**40)], "is not a seed"),
    (["--seeds", "-1"], "is not a seed"), (["--threads", "0"], "--threads"),
])
def test_D3_bad_arguments_are_reported_before_any_training(two_models, argv, message, capsys, monkeypatch):
    monkeypatch.setattr(bench, "run_one", lambda *a, **k: pytest.fail("trained despite bad arguments"))
    with pytest.raises(SystemExit) as e:
        bench.main(argv + ["--no-progress"])
    assert e.value.code == 2 and message in capsys.readouterr().err


def test_D4_an_out_path_that_is_a_file_is_refused_before_training(two_models, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(bench, "run_one", lambda *a, **k: pytest.fail("trained despite bad arguments"))
    target = tmp_path / "file.txt"
    target.write_text("x")
    with pytest.raises(SystemExit):
        bench.main(["--models", "LR", "--out", str(target), "--no-progress"])
    assert "out:" in capsys.readouterr().err


def test_D5_rows_of_finished_models_survive_a_later_failure(two_models, tmp_path, monkeypatch):
    real = bench.run_one

    def fail_on_fm(entry, *args, **kwargs):
        if entry.name == "FM":
            raise FloatingPointError("training diverged at epoch 1")
        return real(entry, *args, **kwargs)

    monkeypatch.setattr(bench, "run_one", fail_on_fm)
    with pytest.raises(FloatingPointError):
        bench.main(["--models", "LR,FM", "--seeds", "0,1", "--out", str(tmp_path), "--no-progress"])
    saved = pd.read_csv(tmp_path / "bench.csv")
    assert saved["model"].tolist() == ["LR", "LR"]


# --------------------------------------------------------------------------------------------
# E. Protocols and features refuse what they cannot handle
# --------------------------------------------------------------------------------------------

def with_(ml, **tables):
    return SimpleNamespace(**{"ratings": ml.ratings, "users": ml.users, "items": ml.items, **tables})


# ---------------------------------------------------------------- ctr_frame

@pytest.mark.parametrize("value", [0, 6, 10])
def test_E1_ratings_outside_one_to_five(make_ml, value):
    ml = make_ml()
    ratings = ml.ratings.copy()
    ratings.loc[3, "rating"] = value
    with pytest.raises(ValueError, match=rf"ratings.rating: {value} is outside 1-5"):
        ctr_frame(with_(ml, ratings=ratings))


def test_E2_duplicated_users_or_items_would_multiply_rows(make_ml):
    ml = make_ml()
    with pytest.raises(ValueError, match=r"users.user_id: 1 appears 2 times"):
        ctr_frame(with_(ml, users=pd.concat([ml.users, ml.users.iloc[:1]])))
    with pytest.raises(ValueError, match=r"items.item_id: 2 appears 2 times"):
        ctr_frame(with_(ml, items=pd.concat([ml.items, ml.items.iloc[1:2]])))


def test_E3_ids_of_different_kinds_across_tables(make_ml):
    ml = make_ml()
    users = ml.users.astype({"user_id": str})
    with pytest.raises(ValueError, match=r"users.user_id: has dtype \w+ but ratings.user_id has dtype int64"):
        ctr_frame(with_(ml, users=users))


def test_E4_negative_ages(make_ml):
    ml = make_ml()
    users = ml.users.copy()
    users.loc[2, "age"] = -4
    with pytest.raises(ValueError, match=r"users.age: -4 is not a valid age"):
        ctr_frame(with_(ml, users=users))


# ---------------------------------------------------------------- leave_last_out

def test_E5_leave_last_out_string_ids(make_ml):
    ratings = make_ml().ratings.astype({"item_id": str})
    with pytest.raises(ValueError, match=r"ratings.item_id: expected integer ids, got dtype \w+"):
        leave_last_out(ratings)


def test_E6_leave_last_out_duplicated_rating_rows(make_ml):
    ratings = make_ml().ratings
    twice = pd.concat([ratings, ratings.iloc[[5]]], ignore_index=True)
    with pytest.raises(ValueError, match=r"ratings: the row \(user_id=.*appears .*validation and test"):
        leave_last_out(twice)


# ---------------------------------------------------------------- Field

def test_E7_values_of_another_kind_than_the_vocabulary():
    users = Field("user_id", (196, 186, 22))
    with pytest.raises(ValueError, match=r"user_id: got strings .*'196'.* vocabulary holds numbers"):
        users.encode(pd.Series(["196", "22"]))
    genders = Field("gender", ("F", "M"))
    with pytest.raises(ValueError, match=r"gender: got numbers .* vocabulary holds strings"):
        genders.encode([0, 1])
    assert users.encode(np.array([196.0, 5.0])).tolist() == [2, 1]  # numbers of another dtype are fine


def test_E8_all_values_unknown_warns_but_a_few_do_not():
    f = Field("user_id", (1, 2, 3))
    with pytest.warns(UserWarning, match=r"user_id: all 25 value\(s\) are outside the vocabulary"):
        f.encode(np.arange(100, 125))
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        f.encode([100])   # one cold-start user is normal


@pytest.mark.parametrize("index", [-1, 5, 99])
def test_E9_decode_out_of_range(index):
    with pytest.raises(ValueError, match=rf"gender: index {index} is out of range; expected 0 <= index < 4"):
        Field("gender", ("F", "M")).decode(index)


def test_E10_encode_multi_refuses_zero_width_and_bare_strings():
    g = Field("genres", ("Drama", "Comedy"), multi=True)
    with pytest.raises(ValueError, match=r"max_len: expected a positive integer"):
        g.encode_multi([("Drama",)], max_len=0)
    with pytest.raises(ValueError, match=r"genres\[1\]: .*got the string 'Drama'"):
        g.encode_multi([("Comedy",), "Drama"])
    with pytest.raises(ValueError, match=r"genres: expected one collection of values per row, got the string"):
        g.encode_multi("Drama")
    with pytest.raises(ValueError, match=r"categories must be a sequence of values, got the string"):
        Field("genres", "Drama", multi=True)
    with pytest.raises(ValueError, match=r"max_len must be a positive integer"):
        Field("genres", ("a",), multi=True, max_len=0)


# ---------------------------------------------------------------- SequenceData, TensorData

@pytest.mark.parametrize("max_len", [0, -1, 2.5])
def test_E11_padded_needs_a_positive_length(make_ml, max_len):
    seq = leave_last_out(make_ml().ratings)
    with pytest.raises(ValueError, match=r"max_len: expected a positive integer"):
        seq.padded(max_len)


def test_E12_tensor_data_subset_refuses_empty_float_and_out_of_range():
    d = TensorData(x=torch.arange(10).reshape(5, 2))
    with pytest.raises(ValueError, match=r"index: selects no rows"):
        d.subset([])
    with pytest.raises(ValueError, match=r"index: the slice .* selects no rows"):
        d.subset(slice(3, 3))
    with pytest.raises(ValueError, match=r"index: expected integer row numbers or a boolean mask"):
        d.subset([0.5, 1.0])
    with pytest.raises(ValueError, match=r"index: row 7 is out of range for 5 rows"):
        d.subset([0, 7])
    with pytest.raises(ValueError, match=r"boolean mask of length 2; expected 5"):
        d.subset(torch.tensor([True, False]))
    assert d.subset([4, 0])["x"].tolist() == [[8, 9], [0, 1]]

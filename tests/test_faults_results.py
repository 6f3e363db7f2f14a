"""Faults around the leaderboard's results files and worker processes (recbook/bench.py).

F1  two runs writing one folder at once: 20 rounds of two real processes, no row lost
F2  a bench.csv cut off mid-line, or with a line of the wrong width: refused naming the file and
    the line, nothing written, the new rows saved to a named fallback file; the command line
    refuses it before any training
F3  a write keeps the mode of the files it replaces; a new file gets 0666 less the umask
F4  the worker processes of ``--jobs`` end when their parent is killed outright (SIGKILL),
    and so does the resource tracker
F5  an --out that cannot be written (below a file) is refused before any training
F6  a write that fails after training: one error line naming the fallback file that holds the
    rows, exit status 1, no traceback
F7  --jobs above the machine's CPUs is capped, with a message
F8  Ctrl-C: one line, exit status 130, no traceback
F9  the package's other results writers (the ANN benchmark, the chapters' sweeps) go through the
    same writer: whole files, the mode kept, under the folder's lock
"""
from __future__ import annotations

import multiprocessing
import os
import signal
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pandas as pd
import pytest

from recbook import bench
from processes import alive as _alive, wait_for as _wait_for

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
LINUX = sys.platform.startswith("linux")


def rows(models, seeds, value=0.7, protocol="ctr"):
    return pd.DataFrame([{"model": m, "protocol": protocol, "seed": s, "test_auc": value + s / 1000,
                          "wall_s_per_epoch": 1.0, "cpu_s_per_epoch": 1.0, "epochs": 3}
                         for m in models for s in seeds])


# --------------------------------------------------------------------------------------------
# F1: two writers at once
# --------------------------------------------------------------------------------------------

ROUNDS = 20


def _writer(name: str, folder: str, barrier, rounds: int) -> None:
    for r in range(rounds):
        barrier.wait(timeout=60)  # both processes write round r at the same moment
        bench.write(rows([name], [r]), Path(folder))


@pytest.mark.skipif(not LINUX, reason="fork start method")
def test_F1_two_processes_writing_one_folder_lose_no_row(tmp_path):
    ctx = multiprocessing.get_context("fork")  # the children start with recbook already imported
    barrier = ctx.Barrier(2)
    procs = [ctx.Process(target=_writer, args=(name, str(tmp_path), barrier, ROUNDS)) for name in ("A", "B")]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
    assert all(p.exitcode == 0 for p in procs), [p.exitcode for p in procs]
    saved = pd.read_csv(tmp_path / "bench.csv")
    got = set(zip(saved["model"], saved["seed"]))
    lost = {(m, r) for m in "AB" for r in range(ROUNDS)} - got
    assert not lost, f"{len(lost)} row(s) lost: {sorted(lost)[:5]}"
    assert len(saved) == 2 * ROUNDS
    md = (tmp_path / "bench.md").read_text()
    assert f"| A | ctr | {ROUNDS} |" in md and f"| B | ctr | {ROUNDS} |" in md
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


# --------------------------------------------------------------------------------------------
# F2: a damaged results file
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("damage, line", [
    (lambda text: text[:-5], 4),                                  # cut off inside the last row
    (lambda text: text.replace("\nLR,ctr,1,", "\nLR,ctr,", 1), 3),  # a row missing a field
    (lambda text: text[:text.index("\n", text.index("\n") + 1) + 1] + "FM,ctr,0\n"
     + text[text.index("\n", text.index("\n") + 1) + 1:], 3),    # a short row inside
])
def test_F2_a_damaged_results_file_is_refused_naming_the_line(tmp_path, monkeypatch, damage, line):
    bench.write(rows(["LR"], [0, 1, 2]), tmp_path)
    csv = tmp_path / "bench.csv"
    csv.write_text(damage(csv.read_text()))
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    (tmp_path / "fallback").mkdir()
    monkeypatch.setattr(bench.tempfile, "gettempdir", lambda: str(tmp_path / "fallback"))
    with pytest.raises(ValueError, match=rf"bench.csv, line {line}: .*Nothing was written.*saved in .*recbook-bench-"):
        bench.write(rows(["FM"], [0]), tmp_path)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()} == before
    saved = list((tmp_path / "fallback").glob("recbook-bench-*.csv"))
    assert len(saved) == 1 and pd.read_csv(saved[0])["model"].tolist() == ["FM"]


def test_F2_the_command_line_refuses_a_damaged_file_before_training(tmp_path, monkeypatch, capsys):
    bench.write(rows(["LR"], [0, 1]), tmp_path)
    csv = tmp_path / "bench.csv"
    csv.write_text(csv.read_text()[:-3])
    monkeypatch.setattr(bench, "run_one", lambda *a, **k: pytest.fail("trained despite a damaged results file"))
    with pytest.raises(SystemExit) as e:
        bench.main(["--models", "LR", "--seeds", "0", "--out", str(tmp_path), "--no-progress"])
    assert e.value.code == 2 and "bench.csv, line 3: is cut off" in capsys.readouterr().err


# --------------------------------------------------------------------------------------------
# F3: file modes
# --------------------------------------------------------------------------------------------

def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o664])
def test_F3_a_write_keeps_the_mode_of_the_files_it_replaces(tmp_path, mode):
    bench.write(rows(["LR"], [0]), tmp_path)
    for name in ("bench.csv", "bench.md"):
        os.chmod(tmp_path / name, mode)
    bench.write(rows(["FM"], [0]), tmp_path)
    assert _mode(tmp_path / "bench.csv") == mode and _mode(tmp_path / "bench.md") == mode


def test_F3_new_files_get_the_usual_mode(tmp_path):
    old = os.umask(0o022)
    try:
        bench.write(rows(["LR"], [0]), tmp_path / "new")
    finally:
        os.umask(old)
    assert _mode(tmp_path / "new" / "bench.csv") == 0o644
    assert _mode(tmp_path / "new" / "bench.md") == 0o644


# --------------------------------------------------------------------------------------------
# F4: workers end with their parent
# --------------------------------------------------------------------------------------------

def _children(pid: int) -> list[int]:
    """Processes whose parent is ``pid`` (and that are not zombies)."""
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == pid and fields[0] not in ("Z", "X"):
            out.append(int(entry.name))
    return out




POOL_PARENT = textwrap.dedent("""\
    import sys, time
    from recbook import bench
    pool = bench._worker_pool(2)
    futures = [pool.submit(time.sleep, 120) for _ in range(2)]
    print("ready", flush=True)
    time.sleep(120)
""")


@pytest.mark.skipif(not LINUX, reason="/proc and PR_SET_PDEATHSIG are Linux's")
def test_F4_workers_and_the_resource_tracker_end_when_the_parent_is_killed():
    parent = subprocess.Popen([sys.executable, "-c", POOL_PARENT], env=ENV, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    children = []
    try:
        assert parent.stdout.readline().strip() == "ready", parent.stderr.read() if parent.poll() else ""
        # two workers and the resource tracker; the workers must have run their initializer
        assert _wait_for(lambda: len(_children(parent.pid)) >= 3, 60), _children(parent.pid)
        children = _children(parent.pid)
        time.sleep(3)  # let the workers finish starting (imports) before the kill
        parent.kill()  # SIGKILL: nothing runs in the parent
        parent.wait(timeout=10)
        assert _wait_for(lambda: not any(_alive(c) for c in children), 60), (
            f"still running 60 s after the parent was killed: {[c for c in children if _alive(c)]}")
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait(timeout=10)
        for c in children:
            if _alive(c):
                os.kill(c, signal.SIGKILL)
        parent.stdout.close()
        parent.stderr.close()


def test_F4_run_uses_the_pool_whose_workers_end_with_it(monkeypatch):
    """``run(jobs=2)`` goes through :func:`bench._worker_pool`, the pool F4 kills."""
    used = []

    def fake_pool(jobs):
        used.append(jobs)
        raise RuntimeError("stop here")

    monkeypatch.setattr(bench, "_worker_pool", fake_pool)
    monkeypatch.setattr(bench, "available_cpus", lambda: 2)
    with pytest.raises(RuntimeError, match="stop here"):
        bench.run(["LR", "FM"], [0, 1], jobs=2, progress=False)
    assert used == [2]


# --------------------------------------------------------------------------------------------
# F5, F6: an --out that cannot be written
# --------------------------------------------------------------------------------------------

@pytest.fixture
def two_models(planted_leaderboard):
    """Two models on planted interactions, under a protocol of their own (no MovieLens needed)."""
    return planted_leaderboard(n_samples=2000, epochs=2)


@pytest.mark.skipif(not os.path.exists("/dev/null"), reason="needs /dev/null")
def test_F5_an_out_below_a_file_is_refused_before_training(two_models, capsys, monkeypatch):
    monkeypatch.setattr(bench, "run_one", lambda *a, **k: pytest.fail("trained despite an unwritable --out"))
    with pytest.raises(SystemExit) as e:
        bench.main(["--models", "LR", "--seeds", "0", "--out", "/dev/null/results", "--no-progress"])
    assert e.value.code == 2 and "out: /dev/null is not a folder" in capsys.readouterr().err


def test_F5_the_check_creates_the_folder_and_leaves_no_probe(tmp_path):
    assert bench._check_out(tmp_path / "a" / "b") == tmp_path / "a" / "b"
    assert (tmp_path / "a" / "b").is_dir() and list((tmp_path / "a" / "b").iterdir()) == []


def test_F6_a_write_failing_after_training_saves_the_rows_and_says_where(two_models, tmp_path, monkeypatch,
                                                                         capsys):
    out = tmp_path / "out"
    real = bench.run_one

    def train_then_break_the_folder(entry, *args, **kwargs):
        row = real(entry, *args, **kwargs)
        if out.exists():
            out.rmdir()
        out.write_text("not a folder any more")
        return row

    monkeypatch.setattr(bench, "run_one", train_then_break_the_folder)
    (tmp_path / "fallback").mkdir()
    monkeypatch.setattr(bench.tempfile, "gettempdir", lambda: str(tmp_path / "fallback"))
    code = bench.main(["--models", "LR", "--seeds", "0", "--out", str(out), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" not in err
    assert "error: writing" in err and "new rows are saved in" in err, err
    saved = list((tmp_path / "fallback").glob("recbook-bench-*.csv"))
    assert len(saved) == 1 and str(saved[0]) in err
    assert pd.read_csv(saved[0])[["model", "seed"]].values.tolist() == [["LR", 0]]


# --------------------------------------------------------------------------------------------
# F7, F8: --jobs and Ctrl-C
# --------------------------------------------------------------------------------------------

def test_F7_jobs_above_the_cpus_are_capped_with_a_message(two_models, tmp_path, monkeypatch, capsys):
    seen = {}

    def fake_run(models, seeds, **kwargs):
        seen.update(kwargs)
        return rows(models, seeds)

    monkeypatch.setattr(bench, "run", fake_run)
    monkeypatch.setattr(bench, "available_cpus", lambda: 2)
    assert bench.main(["--models", "LR", "--seeds", "0", "--jobs", "100", "--out", str(tmp_path),
                       "--no-progress"]) == 0
    assert seen["jobs"] == 2
    assert "jobs: 100 runs at once asked for, but this machine has 2 CPU(s)" in capsys.readouterr().err


def test_F7_run_caps_jobs_with_a_warning(monkeypatch):
    used = []

    def fake_pool(jobs):
        used.append(jobs)
        raise RuntimeError("stop here")

    monkeypatch.setattr(bench, "_worker_pool", fake_pool)
    monkeypatch.setattr(bench, "available_cpus", lambda: 2)
    with pytest.warns(UserWarning, match=r"jobs: 100 .* running 2 at once"), pytest.raises(RuntimeError):
        bench.run(["LR", "FM"], [0, 1, 2], jobs=100, progress=False)
    assert used == [2]


INTERRUPTED = textwrap.dedent("""\
    import sys, time
    from recbook import bench

    def slow_run(*args, **kwargs):
        print("ready", flush=True)
        time.sleep(60)

    bench.run = slow_run
    sys.exit(bench.main(["--models", "LR", "--seeds", "0", "--out", sys.argv[1], "--no-progress"]))
""")


@pytest.mark.skipif(sys.platform == "win32", reason="SIGINT to one process")
def test_F8_ctrl_c_ends_with_one_line(tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", INTERRUPTED, str(tmp_path)], env=ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert "interrupted; no rows were written" in err


# --------------------------------------------------------------------------------------------
# F9: the other results writers
# --------------------------------------------------------------------------------------------

def test_F9_other_results_writers_keep_the_mode_and_take_the_lock(tmp_path, monkeypatch):
    from recbook import ann_bench

    path = tmp_path / "ann_bench.csv"
    ann_bench.write(rows(["A"], [0]), path)
    os.chmod(path, 0o640)
    ann_bench.write(rows(["A"], [0, 1]), path)
    assert _mode(path) == 0o640 and len(pd.read_csv(path)) == 2
    locked = []
    real = bench.results_lock

    def spy(folder, **kwargs):
        locked.append(Path(folder))
        return real(folder, **kwargs)

    monkeypatch.setattr(bench, "results_lock", spy)
    bench.write_table(rows(["B"], [0]), tmp_path / "sweep.csv")
    assert locked == [tmp_path] and not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_F9_the_lock_waits_for_the_other_holder(tmp_path):
    import threading

    order, release = [], threading.Event()

    def second():
        with bench.results_lock(tmp_path):
            order.append("second")
            release.wait(10)

    with bench.results_lock(tmp_path):
        t = threading.Thread(target=second)
        t.start()
        time.sleep(0.3)
        order.append("first")
    assert _wait_for(lambda: order == ["first", "second"], 10), order
    with pytest.raises(TimeoutError, match="held the results lock"):
        with bench.results_lock(tmp_path, timeout=0.2):  # the thread holds it now
            pass
    release.set()
    t.join(timeout=10)
    with bench.results_lock(tmp_path, timeout=1):
        pass

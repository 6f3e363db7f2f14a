"""The MovieLens-100K loader: sources, checksums, safe extraction, the cache, both file formats.

Everything runs on a tiny synthetic MovieLens written in the test, served over HTTP from
127.0.0.1 or handed over as a fake wheel; no test reaches the internet. The one test on the real
data runs only when the real data is already in the default cache (``make data`` puts it there).
"""
from __future__ import annotations

import hashlib
import http.server
import io
import json
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path

import pandas as pd
import pytest

from recbook.data import movielens as ml

# Where the real data would be, read before any test redirects the default cache.
REAL_ENTRY = ml.default_cache_dir() / "ml-100k"
# The real pip runner, before the `offline` fixture replaces it (tests fake subprocess.run instead).
REAL_PIP_DOWNLOAD = ml._download_recbole_wheel

# --------------------------------------------------------------------------------------------
# A tiny MovieLens, in both formats
# --------------------------------------------------------------------------------------------

# user_id, age, gender, occupation, zip (unsorted on purpose: the loader sorts by user_id)
USERS = [(2, 53, "F", "other", "01002"), (1, 24, "M", "technician", "85711"),
         (3, 39, "M", "scientist", "T8H1N")]
# item_id, official title, release date, genres, recbole title, recbole year
ITEMS = [
    (1, "Toy Story (1995)", "01-Jan-1995", ["Animation", "Children's", "Comedy"], "Toy Story", "1995"),
    (2, "Taxi Driver (1976)", "16-Feb-1996", ["Drama", "Thriller"], "Taxi Driver", "1976"),
    (4, "unknown", "", ["unknown"], "unkonwn", "unkonwn"),  # the quirky row, as in the real files
    (3, "Misérables, Les (1995)", "01-Jan-1995", ["Drama", "Musical"], "Misérables, Les", "1995"),
    (5, "Land Before Time III: The Time of the Great Giving (1995) (V)", "01-Jan-1995",
     ["Animation", "Children's"], "Land Before Time III: The Time of the Great Giving (1995)", "V"),
    (6, "Shanghai Triad (Yao a yao yao dao waipo qiao) (1995)", "01-Jan-1995", ["Drama"],
     "Shanghai Triad (Yao a yao yao dao waipo qiao)", "1995"),
    (7, "Good Morning (1971)", "4-Feb-1971", ["unknown"], "Good Morning", "1971"),
]
# user, item, rating, unix seconds; kept in this order
RATINGS = [(3, 2, 3, 881250949), (1, 1, 5, 891717742), (2, 4, 1, 878887116),
           (1, 5, 4, 880000000), (2, 6, 2, 879000000), (3, 7, 4, 885000000)]

EXPECTED_TITLES = ["Toy Story", "Taxi Driver", "Misérables, Les", "unknown",
                   "Land Before Time III: The Time of the Great Giving (1995)",
                   "Shanghai Triad (Yao a yao yao dao waipo qiao)", "Good Morning"]
EXPECTED_YEARS = [1995, 1976, 1995, pd.NA, 1995, 1995, 1971]


def official_files() -> dict[str, bytes]:
    data = "".join(f"{u}\t{i}\t{r}\t{t}\n" for u, i, r, t in RATINGS)
    user = "".join(f"{u}|{a}|{g}|{o}|{z}\n" for u, a, g, o, z in USERS)
    item = "".join(
        f"{i}|{title}|{date}||http://example.org/{i}|"
        + "|".join("1" if g in genres else "0" for g in ml.GENRES) + "\n"
        for i, title, date, genres, _, _ in ITEMS
    )
    return {"ml-100k/u.data": data.encode(), "ml-100k/u.user": user.encode(),
            "ml-100k/u.item": item.encode("latin-1"), "ml-100k/README": b"synthetic\n"}


def make_zip(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, body in files.items():
            zf.writestr(zipfile.ZipInfo(name), body)  # ZipInfo keeps the name exactly as given
    return buffer.getvalue()


def recbole_wheel() -> bytes:
    inter = "user_id:token\titem_id:token\trating:float\ttimestamp:float\n" + "".join(
        f"{u}\t{i}\t{float(r)}\t{float(t)}\n" for u, i, r, t in RATINGS)
    user = "user_id:token\tage:token\tgender:token\toccupation:token\tzip_code:token\n" + "".join(
        f"{u}\t{a}\t{g}\t{o}\t{z}\n" for u, a, g, o, z in USERS)
    item = "item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq\n" + "".join(
        f"{i}\t{title}\t{year}\t{' '.join(genres)}\n" for i, _, _, genres, title, year in ITEMS)
    base = "recbole/dataset_example/ml-100k/ml-100k"
    return make_zip({"recbole/__init__.py": b"raise ImportError('never imported')\n",
                     f"{base}.inter": inter.encode(), f"{base}.user": user.encode(),
                     f"{base}.item": item.encode(), f"{base}.kg": b"head_id:token\n"})


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def files_under(path: Path) -> list[Path]:
    return sorted(p for p in path.rglob("*") if p.is_file())


# --------------------------------------------------------------------------------------------
# Fixtures
# --------------------------------------------------------------------------------------------

class _Handler(http.server.BaseHTTPRequestHandler):
    """Serves ``server.files[path] = (body, cut)``; ``cut`` sends only that many bytes while the
    Content-Length header still promises the whole body (a dropped connection)."""

    def do_GET(self):  # noqa: N802 - the http.server naming
        self.server.requests.append(self.path)
        if self.path not in self.server.files:
            self.send_error(404)
            return
        body, cut = self.server.files[self.path]
        self.send_response(200)
        self.send_header("Content-Type", "application/zip")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body if cut is None else body[:cut])
        self.close_connection = True

    def log_message(self, *args):  # keep the test output clean
        pass


@pytest.fixture
def server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.files, httpd.requests = {}, []
    httpd.url = f"http://127.0.0.1:{httpd.server_address[1]}/ml-100k.zip"
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield httpd
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


def serve(server, body: bytes, cut: int | None = None) -> None:
    server.files["/ml-100k.zip"] = (body, cut)


@pytest.fixture(autouse=True)
def offline(monkeypatch, tmp_path):
    """No test may reach the internet or the real cache: the default official URL points at a
    closed local port, pip is never run, and the default cache dir is a temporary one."""
    monkeypatch.setattr(ml, "OFFICIAL_URL", "http://127.0.0.1:9/ml-100k.zip")

    def no_pip(dest, *, timeout):
        raise AssertionError("a unit test tried to run pip")

    monkeypatch.setattr(ml, "_download_recbole_wheel", no_pip)
    monkeypatch.setenv("RECBOOK_DATA", str(tmp_path / "default-cache"))


@pytest.fixture
def good_zip(monkeypatch) -> bytes:
    body = make_zip(official_files())
    monkeypatch.setattr(ml, "OFFICIAL_MD5", md5(body))
    return body


@pytest.fixture
def fake_wheel(monkeypatch):
    """Make the recbole source 'download' the synthetic wheel; returns the list of calls."""
    body = recbole_wheel()
    calls = []

    def download(dest, *, timeout):
        calls.append(dest)
        path = dest / "recbole-1.2.1-py3-none-any.whl"
        path.write_bytes(body)
        return path

    monkeypatch.setattr(ml, "_download_recbole_wheel", download)
    monkeypatch.setattr(ml, "RECBOLE_SHA256", hashlib.sha256(body).hexdigest())
    return calls


def load(cache, *sources, **kw):
    return ml.load_movielens100k(cache, progress=False, sources=sources or None, **kw)


def check_synthetic(data: ml.MovieLens100K) -> None:
    r, u, i = data.ratings, data.users, data.items
    assert list(r.columns) == ["user_id", "item_id", "rating", "timestamp"]
    assert [str(t) for t in r.dtypes] == ["int64", "int64", "int64", "datetime64[s]"]
    assert r[["user_id", "item_id", "rating"]].values.tolist() == [list(x[:3]) for x in RATINGS]
    assert r["timestamp"].iloc[0] == pd.Timestamp("1997-12-04 15:55:49")
    assert r["timestamp"].dt.tz is None

    assert list(u.columns) == ["user_id", "age", "gender", "occupation", "zip_code"]
    assert u["user_id"].tolist() == [1, 2, 3]
    assert u["age"].dtype == "int64" and u["age"].tolist() == [24, 53, 39]
    assert isinstance(u["gender"].dtype, pd.CategoricalDtype)
    assert list(u["gender"].cat.categories) == ["F", "M"]
    assert isinstance(u["occupation"].dtype, pd.CategoricalDtype)
    assert u["zip_code"].dtype == "string"
    assert u["zip_code"].tolist() == ["85711", "01002", "T8H1N"]  # leading zero kept

    assert list(i.columns) == ["item_id", "title", "release_year", *ml.GENRES]
    assert i["item_id"].tolist() == [1, 2, 3, 4, 5, 6, 7]
    assert i["title"].dtype == "string"
    assert i["title"].tolist() == EXPECTED_TITLES
    assert i["release_year"].dtype == "Int64"
    assert i["release_year"].tolist() == EXPECTED_YEARS
    assert all(i[g].dtype == bool for g in ml.GENRES)
    flags = i.set_index("item_id")[list(ml.GENRES)]
    for item_id, _, _, genres, _, _ in ITEMS:
        assert sorted(flags.columns[flags.loc[item_id]]) == sorted(genres), item_id


# --------------------------------------------------------------------------------------------
# The official zip over HTTP
# --------------------------------------------------------------------------------------------

def test_good_zip_loads_then_second_call_uses_the_cache(server, good_zip, tmp_path):
    serve(server, good_zip)
    data = ml.load_movielens100k(tmp_path, official_url=server.url)  # with the progress bar
    assert data.source == "official"
    check_synthetic(data)
    assert server.requests == ["/ml-100k.zip"]

    again = load(tmp_path, official_url=server.url)
    assert again.source == "cache"
    assert server.requests == ["/ml-100k.zip"]  # no second download
    for name in ("ratings", "users", "items"):
        pd.testing.assert_frame_equal(getattr(again, name), getattr(data, name))
    # The cache holds the verified raw zip, the tables and the manifest; no temporary files.
    entry = tmp_path / "ml-100k"
    assert sorted(p.name for p in entry.iterdir()) == [
        "items.pkl", "manifest.json", "ml-100k.zip", "ratings.pkl", "users.pkl"]
    assert (entry / "ml-100k.zip").read_bytes() == good_zip
    assert json.loads((entry / "manifest.json").read_text())["origin"] == "official"


def test_wrong_checksum_is_refused_and_nothing_is_cached(server, good_zip, tmp_path):
    other = make_zip({**official_files(), "ml-100k/README": b"not the original\n"})
    serve(server, other)
    with pytest.raises(ml.DataUnavailableError) as err:
        load(tmp_path, "official", official_url=server.url)
    message = str(err.value)
    assert f"official zip {server.url}" in message
    assert "md5 mismatch" in message and md5(good_zip) in message and md5(other) in message
    assert files_under(tmp_path) == []


@pytest.mark.parametrize("damage", ["short body", "truncated file", "truncated file, md5 matches"])
def test_truncated_download_fails_then_the_next_call_recovers(server, good_zip, tmp_path,
                                                              monkeypatch, damage):
    half = len(good_zip) // 2
    if damage == "short body":  # Content-Length promises the whole zip, the connection drops
        serve(server, good_zip, cut=half)
        expected = "truncated download"
    elif damage == "truncated file":  # a complete response of a cut-off file
        serve(server, good_zip[:half])
        expected = "md5 mismatch"
    else:  # even a cut-off file that matches the expected checksum fails as a zip
        serve(server, good_zip[:half])
        monkeypatch.setattr(ml, "OFFICIAL_MD5", md5(good_zip[:half]))
        expected = "not a valid zip"
    with pytest.raises(ml.DataUnavailableError, match=expected):
        load(tmp_path, official_url=server.url)
    assert files_under(tmp_path) == []

    monkeypatch.setattr(ml, "OFFICIAL_MD5", md5(good_zip))
    serve(server, good_zip)
    data = load(tmp_path, official_url=server.url)
    assert data.source == "official"
    check_synthetic(data)
    assert load(tmp_path, "cache").source == "cache"


@pytest.mark.parametrize("evil", ["../evil", "ml-100k/../../evil", "/tmp/evil-absolute",
                                  "..\\evil", "C:/evil"])
def test_zip_member_escaping_the_target_is_refused_before_extracting(server, tmp_path,
                                                                     monkeypatch, evil):
    body = make_zip({**official_files(), evil: b"pwned\n"})
    assert evil in zipfile.ZipFile(io.BytesIO(body)).namelist()
    monkeypatch.setattr(ml, "OFFICIAL_MD5", md5(body))  # the checksum passes; extraction must not
    serve(server, body)
    with pytest.raises(ml.DataUnavailableError) as err:
        load(tmp_path / "cache", official_url=server.url)
    assert repr(evil) in str(err.value) and "outside" in str(err.value)
    assert files_under(tmp_path) == []  # not even the legitimate members were extracted
    assert not Path("/tmp/evil-absolute").exists()


def test_safe_extract_raises_value_error_naming_the_member(tmp_path):
    with zipfile.ZipFile(io.BytesIO(make_zip({"ok.txt": b"1", "../evil": b"2"}))) as zf:
        with pytest.raises(ValueError, match=r"'\.\./evil'"):
            ml._safe_extract(zf, ["ok.txt"], tmp_path / "target")
    assert files_under(tmp_path) == []


def test_every_source_failing_names_every_source(server, tmp_path, monkeypatch):
    def bad_wheel(dest, *, timeout):
        (dest / "recbole-1.2.1-py3-none-any.whl").write_bytes(b"not the wheel")
        return dest / "recbole-1.2.1-py3-none-any.whl"

    monkeypatch.setattr(ml, "_download_recbole_wheel", bad_wheel)
    with pytest.raises(ml.DataUnavailableError) as err:  # nothing served: 404
        load(tmp_path, official_url=server.url)
    assert isinstance(err.value, RuntimeError)
    lines = [line for line in str(err.value).splitlines()[1:] if line.startswith("  - ")]
    assert len(lines) == 3  # one line per source (the offline remedy follows them)
    assert f"cache {tmp_path / 'ml-100k'}" in lines[0] and "manifest.json missing" in lines[0]
    assert f"official zip {server.url}" in lines[1] and "404" in lines[1]
    assert "recbole wheel recbole==1.2.1" in lines[2] and "sha256 mismatch" in lines[2]
    assert files_under(tmp_path) == []


def test_unreachable_host_is_reported(tmp_path):
    with pytest.raises(ml.DataUnavailableError, match=r"official zip http://127\.0\.0\.1:9/.*URLError"):
        load(tmp_path, "official")  # the default URL, pointed at a closed port by `offline`


# --------------------------------------------------------------------------------------------
# The recbole wheel
# --------------------------------------------------------------------------------------------

def test_recbole_wheel_is_parsed_with_its_quirks(fake_wheel, tmp_path):
    data = load(tmp_path, "cache", "recbole")
    assert data.source == "recbole"
    assert len(fake_wheel) == 1
    check_synthetic(data)  # 'unkonwn' -> 'unknown' / missing year; 'V' -> the year in the title
    assert (tmp_path / "ml-100k" / "recbole-1.2.1-py3-none-any.whl").read_bytes() == recbole_wheel()
    assert load(tmp_path, "cache", "recbole").source == "cache"
    assert len(fake_wheel) == 1


def test_recbole_and_official_give_identical_tables(fake_wheel, server, good_zip, tmp_path):
    serve(server, good_zip)
    official = load(tmp_path / "a", "official", official_url=server.url)
    recbole = load(tmp_path / "b", "recbole")
    for name in ("ratings", "users", "items"):
        pd.testing.assert_frame_equal(getattr(official, name), getattr(recbole, name))


def test_recbole_sha256_mismatch_is_refused_and_nothing_is_cached(fake_wheel, tmp_path, monkeypatch):
    monkeypatch.setattr(ml, "RECBOLE_SHA256", "0" * 64)
    with pytest.raises(ml.DataUnavailableError, match=r"recbole wheel .*sha256 mismatch.*expected 0{64}"):
        load(tmp_path, "recbole")
    assert files_under(tmp_path) == []


def test_pip_download_command(monkeypatch, tmp_path):
    seen = []

    def fake_run(cmd, **kw):
        seen.append((cmd, kw))
        Path(cmd[cmd.index("-d") + 1], "recbole-1.2.1-py3-none-any.whl").write_bytes(b"x")
        return subprocess.CompletedProcess(cmd, 0, "", "")

    monkeypatch.setattr(ml.subprocess, "run", fake_run)
    path = REAL_PIP_DOWNLOAD(tmp_path, timeout=5)
    assert path == tmp_path / "recbole-1.2.1-py3-none-any.whl"
    cmd, kw = seen[0]
    assert cmd[:4] == [sys.executable, "-m", "pip", "download"]
    assert {"--no-deps", "--only-binary=:all:", ml.RECBOLE_WHEEL} <= set(cmd)
    assert "install" not in cmd
    assert kw["timeout"] == 5


@pytest.mark.parametrize("outcome", ["error", "timeout", "no wheel"])
def test_pip_download_failures_are_explained(monkeypatch, tmp_path, outcome):
    def fake_run(cmd, **kw):
        if outcome == "timeout":
            raise subprocess.TimeoutExpired(cmd, kw["timeout"])
        code = 1 if outcome == "error" else 0
        return subprocess.CompletedProcess(cmd, code, "", "ERROR: No matching distribution found")

    monkeypatch.setattr(ml.subprocess, "run", fake_run)
    expected = {"error": "exited with 1: ERROR: No matching distribution",
                "timeout": "timed out after 5 s", "no wheel": "left 0 wheel"}[outcome]
    with pytest.raises(ml._SourceFailed, match=expected):
        REAL_PIP_DOWNLOAD(tmp_path, timeout=5)


# --------------------------------------------------------------------------------------------
# The cache
# --------------------------------------------------------------------------------------------

def test_cache_without_manifest_is_not_trusted(server, good_zip, tmp_path):
    serve(server, good_zip)
    load(tmp_path, official_url=server.url)
    entry = tmp_path / "ml-100k"
    (entry / "manifest.json").unlink()
    (entry / "ml-100k.zip").unlink()
    with pytest.raises(ml.DataUnavailableError, match="manifest.json missing"):
        load(tmp_path, "cache")


def test_damaged_cache_table_is_rebuilt_from_the_kept_raw_file(server, good_zip, tmp_path):
    serve(server, good_zip)
    load(tmp_path, official_url=server.url)
    entry = tmp_path / "ml-100k"
    (entry / "ratings.pkl").write_bytes(b"garbage")
    data = load(tmp_path, "cache")  # no network: the verified zip is still there
    assert data.source == "cache"
    check_synthetic(data)
    assert server.requests == ["/ml-100k.zip"]
    assert ml._read_tables(entry)["ratings"].equals(data.ratings)  # rewritten, trusted again


def test_damaged_cache_without_raw_file_falls_through_to_the_network(server, good_zip, tmp_path):
    serve(server, good_zip)
    load(tmp_path, official_url=server.url)
    entry = tmp_path / "ml-100k"
    (entry / "items.pkl").write_bytes(b"garbage")
    (entry / "ml-100k.zip").write_bytes(b"damaged too")
    data = load(tmp_path, official_url=server.url)
    assert data.source == "official"
    assert len(server.requests) == 2
    assert load(tmp_path, "cache").source == "cache"


# --------------------------------------------------------------------------------------------
# Arguments, defaults, the command line
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs, name", [
    ({"cache_dir": 123}, "cache_dir"),
    ({"cache_dir": ""}, "cache_dir"),
    ({"sources": ("cache", "ftp")}, "sources"),
    ({"sources": "cache"}, "sources"),
    ({"sources": ()}, "sources"),
    ({"sources": ("cache", "cache")}, "sources"),
    ({"progress": "yes"}, "progress"),
    ({"official_url": "ftp://example.org/ml-100k.zip"}, "official_url"),
])
def test_invalid_arguments_name_the_parameter(kwargs, name):
    with pytest.raises(ValueError, match=f"^{name}: "):
        ml.load_movielens100k(**kwargs)


def test_default_cache_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("RECBOOK_DATA", str(tmp_path / "data"))
    assert ml.default_cache_dir() == tmp_path / "data"
    monkeypatch.delenv("RECBOOK_DATA")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert ml.default_cache_dir() == tmp_path / "xdg" / "recbook"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert ml.default_cache_dir() == tmp_path / "home" / ".cache" / "recbook"


def test_default_cache_dir_is_used(fake_wheel, tmp_path):
    assert load(None, "recbole").source == "recbole"
    assert (tmp_path / "default-cache" / "ml-100k" / "manifest.json").is_file()


def test_genres_are_the_official_list():
    assert ml.GENRES == (
        "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime",
        "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance",
        "Sci-Fi", "Thriller", "War", "Western")


def test_command_line(fake_wheel, tmp_path, capsys):
    from recbook.data.__main__ import main

    assert main(["--cache-dir", str(tmp_path), "--source", "cache", "--no-progress"]) == 1
    assert "manifest.json missing" in capsys.readouterr().err
    assert main(["--cache-dir", str(tmp_path), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert str(tmp_path / "ml-100k") in out and "recbole" in out
    assert "ratings:       6 rows" in out and "items:         7 rows" in out


def test_module_runs_and_fails_with_nonzero_status(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "recbook.data", "--cache-dir", str(tmp_path),
                           "--source", "cache"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    assert "could not load MovieLens-100K" in proc.stderr


# --------------------------------------------------------------------------------------------
# The real data, when it is already cached
# --------------------------------------------------------------------------------------------

@pytest.mark.skipif(not (REAL_ENTRY / "manifest.json").is_file(),
                    reason="MovieLens-100K is not in the default cache (run `python -m recbook.data`)")
def test_real_data_from_the_default_cache():
    start = time.perf_counter()
    data = ml.load_movielens100k(REAL_ENTRY.parent, progress=False, sources=("cache",))
    seconds = time.perf_counter() - start
    assert seconds < 2.0
    r, u, i = data.ratings, data.users, data.items
    assert (len(r), len(u), len(i)) == (100_000, 943, 1682)
    assert r["rating"].between(1, 5).all() and set(r["rating"]) == {1, 2, 3, 4, 5}
    assert r.iloc[0][["user_id", "item_id", "rating"]].tolist() == [196, 242, 3]
    assert r["timestamp"].iloc[0] == pd.Timestamp(881250949, unit="s")
    assert u["user_id"].tolist() == list(range(1, 944))
    assert i["item_id"].tolist() == list(range(1, 1683))
    assert u.loc[u["user_id"] == 74, "zip_code"].item() == "T8H1N"
    items = i.set_index("item_id")
    assert items.loc[1, "title"] == "Toy Story" and items.loc[1, "release_year"] == 1995
    assert items.loc[267, "title"] == "unknown" and pd.isna(items.loc[267, "release_year"])
    assert items.loc[267, "unknown"]
    assert items.loc[1412, "release_year"] == 1995
    assert i[list(ml.GENRES)].any(axis=1).all()

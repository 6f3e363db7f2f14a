"""MovieLens-100K: download once, verify, parse, cache; then load from the cache in milliseconds.

>>> data = load_movielens100k()                      # doctest: +SKIP
>>> data.ratings.shape, data.users.shape, data.items.shape   # doctest: +SKIP
((100000, 4), (943, 5), (1682, 22))

Sources, tried in order until one works (``sources=`` picks a subset or another order):

``"cache"``
    ``<cache_dir>/ml-100k/``: three pickled DataFrames plus ``manifest.json``, which is written
    last and lists the SHA-256 of every table, so a half-written entry is never trusted. The raw
    file that was verified at download time is kept beside them; if the tables cannot be read
    (say, after a pandas upgrade) they are parsed again from that file, without the network.
``"official"``
    The GroupLens zip at :data:`OFFICIAL_URL`, checked against :data:`OFFICIAL_MD5`.
``"recbole"``
    The copy shipped inside the ``recbole==1.2.1`` wheel, fetched with ``pip download`` (the one
    package index every notebook host can reach) and checked against :data:`RECBOLE_SHA256`.
    Only the three data files are read out of the wheel; recbole is never installed or imported.

Whichever source is used, the three tables have the same columns, dtypes and values:

``ratings``  user_id int64, item_id int64, rating int64 (1-5), timestamp datetime64[s] (UTC-naive);
             the rows in the original ``u.data`` order.
``users``    user_id int64, age int64, gender category (F, M), occupation category,
             zip_code string (not a number: some are Canadian, like ``T8H1N``, others start with 0);
             sorted by user_id.
``items``    item_id int64, title string (without the trailing year), release_year Int64 (missing
             when unknown), then one bool column per name in :data:`GENRES`; sorted by item_id.

``release_year`` is the year in the title, e.g. 1976 for "Taxi Driver (1976)". The official file
also has a "release date" column, but for many films it is a later (re-)release or video date
(Taxi Driver: 16-Feb-1996), and the recbole copy only has the title year; the date is used only
when the title has no year. That keeps the two sources identical.

The cache tables are pickles: pickle can run code when loaded, so only point ``cache_dir`` at a
directory you trust (your own cache is fine).

When things go wrong:

* A cache directory that cannot be written (read-only, or not a directory) does not stop a
  download: the file goes to a temporary directory, and the data is returned uncached with a
  ``RuntimeWarning``.
* Offline, put ``ml-100k.zip`` (the official zip) or ``recbole-1.2.1-py3-none-any.whl`` in
  ``<cache_dir>/ml-100k/``: the ``"cache"`` source checks its checksum and reads it. The error
  raised when no source works says exactly where and which checksum.
* Temporary files left by a process killed mid-download (names starting with ``.tmp-``) are
  removed by the next call once they are an hour old; a ``pip download`` child dies with its
  parent (on Linux) and is killed when the call is interrupted.
* A host or package index that does not answer costs at most :data:`HTTP_TIMEOUT_S` per
  connection, and ``pip download`` at most :data:`PIP_TIMEOUT_S`, with a line of progress every
  :data:`WAIT_REPORT_S` seconds while it runs.
"""
from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
import warnings
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath

import pandas as pd

from .._checks import require_columns, require_no_nan

__all__ = [
    "GENRES", "OFFICIAL_MD5", "OFFICIAL_URL", "RECBOLE_SHA256", "RECBOLE_WHEEL", "SOURCES",
    "DataUnavailableError", "MovieLens100K", "default_cache_dir", "load_movielens100k",
]

GENRES = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary",
    "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi",
    "Thriller", "War", "Western",
)
"""The 19 genre names of ``u.genre``, in the official order (also the order of the columns)."""

OFFICIAL_URL = "https://files.grouplens.org/datasets/movielens/ml-100k.zip"
OFFICIAL_MD5 = "0e33842e24a9c977be4e0107933c0723"
RECBOLE_WHEEL = "recbole==1.2.1"
RECBOLE_SHA256 = "9c9948202011f37eb0a7c6768129313f00d6403ad221ec940d5e2d5d5f33a407"

SOURCES = ("cache", "official", "recbole")
"""Every source name that ``sources=`` accepts; also the default order."""

HTTP_TIMEOUT_S = 10.0   # connect and per-read timeout; a dead host fails fast and we fall back
# pip gets 10 s per connection attempt and one retry, so an index that never answers fails in
# about 25 s; the whole `pip download` (start-up, index page, a ~2 MB wheel) is cut off at 60 s.
PIP_SOCKET_TIMEOUT_S = 10
PIP_RETRIES = 1
PIP_TIMEOUT_S = 60.0
WAIT_REPORT_S = 10.0    # while pip runs, say every so often that we are still waiting
STALE_TEMP_S = 3600.0   # a temporary file or folder untouched this long belongs to a dead process

_ENTRY = "ml-100k"                       # sub-directory of the cache dir holding this data set
_MANIFEST = "manifest.json"
_CACHE_FORMAT = 1                        # bump when the tables or the manifest change shape
_TABLES = ("ratings", "users", "items")
_RAW_OFFICIAL = "ml-100k.zip"
_RAW_RECBOLE = "recbole-1.2.1-py3-none-any.whl"
_TMP_PREFIX = ".tmp-"                    # every temporary file or folder we create starts so
_FALLBACK_PREFIX = "recbook-ml-100k-"    # work folders in the system's temporary directory
_OFFICIAL_MEMBERS = ("ml-100k/u.data", "ml-100k/u.user", "ml-100k/u.item")
_RECBOLE_DIR = "recbole/dataset_example/ml-100k/"
_RECBOLE_MEMBERS = tuple(_RECBOLE_DIR + f"ml-100k.{ext}" for ext in ("inter", "user", "item"))

_ITEM_COLUMNS = ["item_id", "title", "release_year", *GENRES]
_USER_COLUMNS = ["user_id", "age", "gender", "occupation", "zip_code"]
_RATING_COLUMNS = ["user_id", "item_id", "rating", "timestamp"]


class DataUnavailableError(RuntimeError):
    """No source could provide MovieLens-100K; the message lists each source and why it failed."""


class _SourceFailed(Exception):
    """One source could not deliver; the message is the reason shown to the user."""


@dataclass(frozen=True, eq=False, repr=False)
class MovieLens100K:
    """The three MovieLens-100K tables (see the module docstring for columns and dtypes).

    ``source`` names where this call got them: ``"cache"``, ``"official"`` or ``"recbole"``.
    """

    ratings: pd.DataFrame
    users: pd.DataFrame
    items: pd.DataFrame
    source: str

    def __repr__(self) -> str:  # the default would print three whole DataFrames
        return (f"MovieLens100K(ratings={len(self.ratings):,} rows, users={len(self.users):,} rows, "
                f"items={len(self.items):,} rows, source={self.source!r})")


# --------------------------------------------------------------------------------------------
# Public entry points
# --------------------------------------------------------------------------------------------

def default_cache_dir() -> Path:
    """``$RECBOOK_DATA`` if set, else ``$XDG_CACHE_HOME/recbook``, else ``~/.cache/recbook``."""
    explicit = os.environ.get("RECBOOK_DATA")
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    # The XDG spec says a relative value is invalid and must be ignored.
    if xdg and Path(xdg).is_absolute():
        return Path(xdg) / "recbook"
    return Path.home() / ".cache" / "recbook"


def load_movielens100k(
    cache_dir: str | os.PathLike | None = None,
    *,
    progress: bool = True,
    sources: Sequence[str] | None = None,
    official_url: str | None = None,
) -> MovieLens100K:
    """Load MovieLens-100K, downloading and caching it on first use.

    Parameters
    ----------
    cache_dir:
        Directory for the cache (the data goes in its ``ml-100k/`` sub-directory); default
        :func:`default_cache_dir`.
    progress:
        Show a progress bar while downloading (and a note when falling back to recbole).
    sources:
        Source names to try, in order; default :data:`SOURCES`, i.e.
        ``("cache", "official", "recbole")``. ``("official",)`` forces a fresh download.
    official_url:
        Where to get the official zip; default :data:`OFFICIAL_URL`. It must still match
        :data:`OFFICIAL_MD5` (``http``, ``https`` and ``file`` URLs work).

    Raises
    ------
    ValueError
        An argument is invalid (the message names it).
    DataUnavailableError
        (a ``RuntimeError``) every source failed; the message says why, source by source.
    """
    root = _check_cache_dir(cache_dir)
    if not isinstance(progress, bool):
        raise ValueError(f"progress: expected True or False, got {progress!r}")
    order = _check_sources(sources)
    url = OFFICIAL_URL if official_url is None else _check_url(official_url)

    entry = root / _ENTRY
    # Every call, whatever the source: what a killed process left behind goes once it is old.
    _sweep_stale_temps(entry)
    _sweep_stale_temps(Path(tempfile.gettempdir()), prefix=_FALLBACK_PREFIX)
    # Each source returns the tables and, when it could not cache them, a note saying why.
    fetchers: dict[str, tuple[str, Callable[[], tuple[dict[str, pd.DataFrame], str | None]]]] = {
        "cache": (f"cache {entry}", lambda: _from_cache(entry)),
        "official": (f"official zip {url}", lambda: _from_official(entry, url, progress=progress)),
        "recbole": (f"recbole wheel {RECBOLE_WHEEL}", lambda: _from_recbole(entry, progress=progress)),
    }
    failures = []
    for name in order:
        label, fetch = fetchers[name]
        try:
            frames, uncached = fetch()
        except Exception as exc:  # noqa: BLE001 - any failure of one source means: try the next
            reason = str(exc) if isinstance(exc, _SourceFailed) else f"{type(exc).__name__}: {exc}"
            failures.append(f"{label}: {reason}")
            if progress and name != "cache" and name != order[-1]:
                print(f"MovieLens-100K: {label} failed ({reason}); trying the next source",
                      file=sys.stderr)
            continue
        if uncached:
            warnings.warn(uncached, RuntimeWarning, stacklevel=2)
        return MovieLens100K(**frames, source=name)
    raise DataUnavailableError(
        "could not load MovieLens-100K from any source:\n"
        + "\n".join(f"  - {f}" for f in failures) + "\n" + _offline_remedy(entry)
    )


def _offline_remedy(entry: Path) -> str:
    """The end of the error when no source works: how to bring the data in by hand."""
    folder = f"{entry}{os.sep}"
    return (
        "Offline? Download one of these two files on a machine with internet access, copy it\n"
        f"into {folder} under exactly this name, and load again (the 'cache' source checks it):\n"
        f"    {_RAW_OFFICIAL} from {OFFICIAL_URL} (md5 {OFFICIAL_MD5})\n"
        f"    {_RAW_RECBOLE} from `pip download --no-deps {RECBOLE_WHEEL}` "
        f"(sha256 {RECBOLE_SHA256})"
    )


# --------------------------------------------------------------------------------------------
# Argument checks (ValueError naming the parameter, as in recbook._checks)
# --------------------------------------------------------------------------------------------

def _check_cache_dir(cache_dir) -> Path:
    if cache_dir is None:
        return default_cache_dir()
    if isinstance(cache_dir, bytes) or not isinstance(cache_dir, (str, os.PathLike)):
        raise ValueError(
            f"cache_dir: expected a path (str or os.PathLike) or None, got {type(cache_dir).__name__}"
        )
    if not os.fspath(cache_dir):
        raise ValueError("cache_dir: expected a non-empty path, got ''")
    return Path(cache_dir).expanduser()


def _check_sources(sources) -> tuple[str, ...]:
    if sources is None:
        return SOURCES
    if isinstance(sources, (str, bytes)) or not isinstance(sources, Sequence):
        raise ValueError(
            f"sources: expected a sequence of source names from {SOURCES}, got {sources!r}"
        )
    unknown = [s for s in sources if s not in SOURCES]
    if unknown:
        raise ValueError(f"sources: unknown source(s) {unknown}; expected names from {SOURCES}")
    if not sources:
        raise ValueError(f"sources: expected at least one source name from {SOURCES}, got none")
    if len(set(sources)) != len(sources):
        raise ValueError(f"sources: each source may appear once, got {list(sources)}")
    return tuple(sources)


def _check_url(url) -> str:
    if not isinstance(url, str) or urllib.parse.urlsplit(url).scheme not in ("http", "https", "file"):
        raise ValueError(f"official_url: expected an http(s):// or file:// URL string, got {url!r}")
    return url


# --------------------------------------------------------------------------------------------
# Source 1: the cache
# --------------------------------------------------------------------------------------------

def _from_cache(entry: Path) -> tuple[dict[str, pd.DataFrame], str | None]:
    """The tables of a complete cache entry, else a re-parse of a verified raw file kept there
    (or put there by hand, on a machine without internet access)."""
    try:
        return _read_tables(entry), None
    except _SourceFailed as exc:
        why = str(exc)
    # The tables are missing or unreadable; a raw file we verified earlier is as good as the
    # network (its checksum is checked again here, so a damaged file is not trusted).
    kept = ((_RAW_OFFICIAL, "official", _ingest_official_zip),
            (_RAW_RECBOLE, "recbole", _ingest_recbole_wheel))
    for raw, origin, ingest in kept:
        path = entry / raw
        if path.is_file():
            try:
                with _workspace(entry) as (work, unwritable):
                    frames = ingest(path, work)
            except Exception as exc:  # noqa: BLE001 - report it and try the network instead
                why += f"; kept {raw} unusable ({type(exc).__name__}: {exc})"
                continue
            if unwritable:
                return frames, (f"MovieLens-100K: read {path}, but the cache directory cannot be "
                                f"written ({unwritable}), so the tables are parsed again on every "
                                "call")
            _store(entry, frames, origin=origin, raw=None)
            return frames, None
    raise _SourceFailed(why)


def _read_tables(entry: Path) -> dict[str, pd.DataFrame]:
    manifest_path = entry / _MANIFEST
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise _SourceFailed(f"no complete cache entry ({_MANIFEST} missing)") from None
    except (OSError, ValueError) as exc:
        raise _SourceFailed(f"unreadable {_MANIFEST} ({type(exc).__name__}: {exc})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != _CACHE_FORMAT:
        raise _SourceFailed(f"{_MANIFEST} has format {manifest.get('format')!r} "
                            f"(expected {_CACHE_FORMAT})" if isinstance(manifest, dict)
                            else f"{_MANIFEST} is not a JSON object")
    frames = {}
    for name in _TABLES:
        try:
            spec = manifest["tables"][name]
            blob = (entry / spec["file"]).read_bytes()
            if hashlib.sha256(blob).hexdigest() != spec["sha256"]:
                raise ValueError(f"sha256 differs from {_MANIFEST}")
            frame = pd.read_pickle(io.BytesIO(blob))
            if not isinstance(frame, pd.DataFrame) or len(frame) != spec["rows"]:
                raise ValueError(f"expected a DataFrame of {spec['rows']} rows")
        except Exception as exc:  # noqa: BLE001 - missing key, missing file, bad pickle, ...
            raise _SourceFailed(f"{name} table unusable ({type(exc).__name__}: {exc})") from None
        frames[name] = frame
    return frames


def _write_tables(entry: Path, frames: dict[str, pd.DataFrame], *, origin: str,
                  raw: tuple[Path, str] | None) -> None:
    """Write the tables (and move ``raw=(temp_path, final_name)`` in), then the manifest, last.

    Each file goes to a temporary name in the same directory, is fsynced, then renamed over the
    final name, so a reader sees either the old file or the new one, never a partial one; and
    the manifest, which a reader checks first, only appears once everything it lists is in place.
    """
    entry.mkdir(parents=True, exist_ok=True)
    # Withdraw the old manifest first: while we replace files, the entry must not look complete.
    with contextlib.suppress(FileNotFoundError):
        (entry / _MANIFEST).unlink()
    tables = {}
    for name in _TABLES:
        buffer = io.BytesIO()
        frames[name].to_pickle(buffer, compression=None, protocol=5)
        data = buffer.getvalue()
        file = f"{name}.pkl"
        _atomic_write(entry / file, data)
        tables[name] = {"file": file, "sha256": hashlib.sha256(data).hexdigest(),
                        "rows": len(frames[name])}
    if raw is not None:
        tmp, final = raw
        _fsync_file(tmp)
        os.replace(tmp, entry / final)
    manifest = {
        "format": _CACHE_FORMAT,
        "origin": origin,
        "written": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "pandas": pd.__version__,
        "tables": tables,
    }
    _atomic_write(entry / _MANIFEST, json.dumps(manifest, indent=2).encode("utf-8"))
    _fsync_dir(entry)


def _store(entry: Path, frames: dict[str, pd.DataFrame], *, origin: str,
           raw: tuple[Path, str] | None) -> None:
    """:func:`_write_tables`, but a cache that cannot be written (disk full, read-only home) only
    costs a warning: the data in hand is good, and the next call simply fetches it again."""
    try:
        _write_tables(entry, frames, origin=origin, raw=raw)
    except OSError as exc:
        warnings.warn(f"MovieLens-100K: could not write the cache in {entry} ({exc}); "
                      "the data will be fetched again next time", RuntimeWarning, stacklevel=4)


def _read_manifest(cache_dir: str | os.PathLike | None = None) -> dict | None:
    """The manifest of the cache entry (for ``python -m recbook.data``), or None."""
    entry = _check_cache_dir(cache_dir) / _ENTRY
    try:
        return json.loads((entry / _MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _atomic_write(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f"{_TMP_PREFIX}{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes it private; a cache may be shared (RECBOOK_DATA)
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def _fsync_dir(path: Path) -> None:
    # Makes the renames themselves durable; not possible (nor needed) on Windows.
    with contextlib.suppress(OSError, AttributeError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _sweep_stale_temps(folder: Path, older_than_s: float | None = None, *,
                       prefix: str = _TMP_PREFIX) -> None:
    """Remove temporary files and folders left by a process that was killed mid-download.

    Only those untouched for ``older_than_s`` (default :data:`STALE_TEMP_S`): "touched" is the
    newest modification time of the entry and of everything inside it, so the files of a
    download still running in another process (it writes every few seconds, and gives up after
    at most :data:`PIP_TIMEOUT_S`) are never taken. Errors are ignored: a folder that cannot be
    read or written simply keeps its leftovers.
    """
    limit = STALE_TEMP_S if older_than_s is None else older_than_s
    now = time.time()
    with contextlib.suppress(OSError):
        for p in folder.glob(f"{prefix}*"):
            with contextlib.suppress(OSError):
                if now - _last_touched(p) > limit:
                    shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()


def _last_touched(path: Path) -> float:
    newest = path.lstat().st_mtime
    if path.is_dir() and not path.is_symlink():
        for root, dirs, files in os.walk(path):
            for name in dirs + files:
                with contextlib.suppress(OSError):
                    newest = max(newest, os.lstat(os.path.join(root, name)).st_mtime)
    return newest


def _unwritable(entry: Path) -> str | None:
    """Why temporary files cannot be created in ``entry`` (creating it if needed), or None."""
    try:
        entry.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=entry, prefix=f"{_TMP_PREFIX}probe-")
    except OSError as exc:
        return f"{type(exc).__name__}: {exc.strerror or exc}"
    os.close(fd)
    with contextlib.suppress(OSError):
        os.unlink(probe)
    return None


@contextlib.contextmanager
def _workspace(entry: Path):
    """Where a source may put its temporary files: yields ``(folder, unwritable)``.

    ``folder`` is ``entry`` itself when it can be written (and the result is then cached there);
    otherwise a new folder in the system's temporary directory, removed afterwards, and
    ``unwritable`` says why ``entry`` could not be used.
    """
    unwritable = _unwritable(entry)
    if unwritable is None:
        yield entry, None
        return
    try:
        work = Path(tempfile.mkdtemp(prefix=_FALLBACK_PREFIX))
    except OSError as exc:
        raise _SourceFailed(f"the cache directory {entry} cannot be written ({unwritable}), "
                            f"nor a temporary directory ({exc})") from None
    try:
        yield work, unwritable
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _uncached_note(entry: Path, unwritable: str) -> str:
    return (f"MovieLens-100K: the cache directory {entry} cannot be written ({unwritable}); the "
            "data was downloaded into a temporary directory and is not cached, so the next call "
            "downloads it again. Point RECBOOK_DATA (or cache_dir=) at a writable directory to "
            "keep it")


@contextlib.contextmanager
def _still_waiting(what: str, limit_s: float, *, enabled: bool):
    """Print a line to stderr every :data:`WAIT_REPORT_S` seconds until the block ends."""
    if not enabled:
        yield
        return
    done = threading.Event()
    start = time.monotonic()

    def report():
        while not done.wait(WAIT_REPORT_S):
            print(f"MovieLens-100K: still waiting for {what} ({time.monotonic() - start:.0f} s; "
                  f"it gives up after {limit_s:.0f} s)", file=sys.stderr, flush=True)

    thread = threading.Thread(target=report, name="recbook-wait-report", daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()


# --------------------------------------------------------------------------------------------
# Source 2: the official zip
# --------------------------------------------------------------------------------------------

def _from_official(entry: Path, url: str, *, progress: bool
                   ) -> tuple[dict[str, pd.DataFrame], str | None]:
    with _workspace(entry) as (work, unwritable):
        fd, tmp = tempfile.mkstemp(dir=work, prefix=f"{_TMP_PREFIX}{_RAW_OFFICIAL}.",
                                   suffix=".part")
        os.close(fd)
        try:
            _download(url, Path(tmp), progress=progress)
            frames = _ingest_official_zip(Path(tmp), work)
            if unwritable:
                return frames, _uncached_note(entry, unwritable)
            _store(entry, frames, origin="official", raw=(Path(tmp), _RAW_OFFICIAL))
            return frames, None
        finally:  # a failed or partial download never stays behind
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)


def _download(url: str, dest: Path, *, progress: bool) -> None:
    """Stream ``url`` into ``dest`` with a progress bar; fail on a short body."""
    from tqdm.auto import tqdm

    request = urllib.request.Request(url, headers={"User-Agent": "recbook (MovieLens-100K loader)"})
    with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT_S) as response, open(dest, "wb") as out:
        length = response.headers.get("Content-Length")
        expected = int(length) if length and length.isdigit() else None
        received = 0
        with tqdm(total=expected, unit="B", unit_scale=True, unit_divisor=1024,
                  desc="ml-100k.zip", disable=not progress, leave=False) as bar:
            while chunk := response.read(1 << 16):
                out.write(chunk)
                received += len(chunk)
                bar.update(len(chunk))
    # http.client returns a short body without raising when the connection drops early.
    if expected is not None and received != expected:
        raise _SourceFailed(f"truncated download: got {received:,} of {expected:,} bytes")


def _ingest_official_zip(path: Path, entry: Path) -> dict[str, pd.DataFrame]:
    """Verify the zip's MD5, extract the three files safely, parse them."""
    digest = _file_digest(path, "md5")
    if digest != OFFICIAL_MD5:
        raise _SourceFailed(f"md5 mismatch: expected {OFFICIAL_MD5}, got {digest} "
                            f"({path.stat().st_size:,} bytes); the file is damaged or not the original")
    tmpdir = Path(tempfile.mkdtemp(dir=entry, prefix=f"{_TMP_PREFIX}extract-"))
    try:
        try:
            with zipfile.ZipFile(path) as zf:
                _safe_extract(zf, _OFFICIAL_MEMBERS, tmpdir)
        except zipfile.BadZipFile as exc:
            raise _SourceFailed(f"not a valid zip ({exc})") from None
        data, user, item = (tmpdir / m for m in _OFFICIAL_MEMBERS)
        return _parse_official(data, user, item)
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)


def _safe_extract(zf: zipfile.ZipFile, members: Sequence[str], target: Path) -> None:
    """Extract ``members`` into ``target`` after checking that NO member of the archive could land
    outside ``target`` (``../x``, ``/abs``, ``C:\\x``): one such member makes the archive suspect,
    so it is refused as a whole, before anything is written."""
    root = target.resolve()
    for name in zf.namelist():
        windows = PureWindowsPath(name)  # splits on both / and \ and knows drive letters
        escapes = (
            PurePosixPath(name).is_absolute() or windows.is_absolute() or bool(windows.drive)
            or ".." in windows.parts
            or not (root / name).resolve().is_relative_to(root)
        )
        if escapes:
            raise ValueError(f"zip member {name!r} would be extracted outside {root}; "
                             "refusing the whole archive")
    names = set(zf.namelist())
    missing = [m for m in members if m not in names]
    if missing:
        raise _SourceFailed(f"zip lacks {missing}")
    for m in members:
        zf.extract(m, root)


def _parse_official(data, user, item) -> dict[str, pd.DataFrame]:
    """Parse ``u.data``, ``u.user``, ``u.item`` (paths or binary buffers) into the final tables."""
    plain = dict(header=None, quoting=csv.QUOTE_NONE, keep_default_na=False, engine="c")
    ratings = pd.read_csv(data, sep="\t", names=_RATING_COLUMNS, dtype="int64", **plain)
    users = pd.read_csv(user, sep="|", names=_USER_COLUMNS, dtype={"user_id": "int64", "age": "int64"},
                        **plain)
    raw = pd.read_csv(
        item, sep="|", encoding="latin-1", **plain,
        names=["item_id", "title", "release_date", "video_release_date", "imdb_url", *GENRES],
        dtype={"item_id": "int64", **{g: "int64" for g in GENRES}},
    )
    # Titles end in " (YYYY)"; one video title ends in " (YYYY) (V)". The recbole copy cut the
    # last parenthesis off every title, so do the same (only when it is, or follows, a year).
    parts = raw["title"].str.extract(r"^(?P<head>.*?)\s*\((?P<tail>[^()]*)\)\s*$")
    has_year = parts["tail"].str.fullmatch(r"\d{4}", na=False)
    after_year = parts["head"].str.contains(r"\(\d{4}\)$", na=False)
    strip = has_year | after_year
    title = raw["title"].where(~strip, parts["head"])
    year = pd.to_numeric(parts["tail"].where(has_year), errors="coerce")
    date_year = pd.to_numeric(raw["release_date"].str.extract(r"(\d{4})\s*$")[0], errors="coerce")
    year = year.fillna(_year_in_title(title)).fillna(date_year)
    items = pd.DataFrame({"item_id": raw["item_id"], "title": title, "release_year": year})
    flags = raw[list(GENRES)]
    if not flags.isin([0, 1]).all().all():
        raise ValueError("items: genre flags must be 0 or 1")
    items = pd.concat([items, flags.astype(bool)], axis=1)
    return _finish(ratings, users, items)


# --------------------------------------------------------------------------------------------
# Source 3: the copy inside the recbole wheel
# --------------------------------------------------------------------------------------------

def _from_recbole(entry: Path, *, progress: bool) -> tuple[dict[str, pd.DataFrame], str | None]:
    with _workspace(entry) as (work, unwritable):
        tmpdir = Path(tempfile.mkdtemp(dir=work, prefix=f"{_TMP_PREFIX}recbole-"))
        try:
            if progress:
                print(f"MovieLens-100K: fetching the {RECBOLE_WHEEL} wheel with pip "
                      f"(at most {PIP_TIMEOUT_S:.0f} s)", file=sys.stderr)
            with _still_waiting(f"pip download {RECBOLE_WHEEL}", PIP_TIMEOUT_S, enabled=progress):
                wheel = _download_recbole_wheel(tmpdir, timeout=PIP_TIMEOUT_S)
            frames = _ingest_recbole_wheel(wheel, work)
            if unwritable:
                return frames, _uncached_note(entry, unwritable)
            _store(entry, frames, origin="recbole", raw=(wheel, _RAW_RECBOLE))
            return frames, None
        finally:
            shutil.rmtree(tmpdir, ignore_errors=True)


def _die_with_parent_hook():
    """A ``preexec_fn`` that makes the child die when its parent does (Linux), else None.

    ``subprocess.run`` already kills the child when the call raises (a timeout, Ctrl-C); this
    covers the parent being killed outright (``kill -9``, an out-of-memory kill, a kernel
    restart in Jupyter), which would otherwise leave ``pip`` running on its own.
    """
    if not sys.platform.startswith("linux"):
        return None
    import ctypes
    import signal

    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    parent = os.getpid()
    pr_set_pdeathsig = 1

    def hook():  # runs in the child between fork and exec: keep it minimal
        prctl(pr_set_pdeathsig, int(signal.SIGKILL), 0, 0, 0)
        if os.getppid() != parent:  # the parent died before the line above took effect
            os._exit(1)

    return hook


def _download_recbole_wheel(dest: Path, *, timeout: float) -> Path:
    """``pip download`` the wheel (no dependencies, no build) into ``dest``; return its path."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
           "--no-input", "--disable-pip-version-check", "--progress-bar=off",
           f"--timeout={PIP_SOCKET_TIMEOUT_S}", f"--retries={PIP_RETRIES}",
           "-d", str(dest), RECBOLE_WHEEL]
    try:
        # run() kills pip if this call is interrupted or times out; the hook if we are killed.
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL, preexec_fn=_die_with_parent_hook())
    except subprocess.TimeoutExpired:
        raise _SourceFailed(f"pip download timed out after {timeout:.0f} s") from None
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        raise _SourceFailed(f"pip download exited with {proc.returncode}: " + " | ".join(tail))
    wheels = sorted(dest.glob("*.whl"))
    if len(wheels) != 1:
        raise _SourceFailed(f"pip download left {len(wheels)} wheel(s) in {dest}, expected 1")
    return wheels[0]


def _ingest_recbole_wheel(path: Path, entry: Path | None = None) -> dict[str, pd.DataFrame]:
    """Verify the wheel's SHA-256, then parse the three data files read straight from it."""
    digest = _file_digest(path, "sha256")
    if digest != RECBOLE_SHA256:
        raise _SourceFailed(f"sha256 mismatch for {path.name}: expected {RECBOLE_SHA256}, got {digest}")
    try:
        with zipfile.ZipFile(path) as zf:
            names = set(zf.namelist())
            missing = [m for m in _RECBOLE_MEMBERS if m not in names]
            if missing:
                raise _SourceFailed(f"wheel lacks {missing}")
            inter, user, item = (io.BytesIO(zf.read(m)) for m in _RECBOLE_MEMBERS)
    except zipfile.BadZipFile as exc:
        raise _SourceFailed(f"not a valid wheel ({exc})") from None
    return _parse_recbole(inter, user, item)


def _parse_recbole(inter, user, item) -> dict[str, pd.DataFrame]:
    """Parse RecBole's atomic files (tab-separated, header ``name:type``) into the final tables."""
    plain = dict(sep="\t", header=0, quoting=csv.QUOTE_NONE, keep_default_na=False, engine="c",
                 encoding="utf-8")
    ratings = _strip_types(pd.read_csv(inter, dtype="float64", **plain))
    users = _strip_types(pd.read_csv(user, dtype=str, **plain))
    raw = _strip_types(pd.read_csv(item, dtype=str, **plain))
    require_columns(ratings, _RATING_COLUMNS, name="ml-100k.inter")
    require_columns(users, _USER_COLUMNS, name="ml-100k.user")
    require_columns(raw, ["item_id", "movie_title", "release_year", "class"], name="ml-100k.item")

    # Rating and timestamp are stored as floats; they are whole numbers in the data.
    ratings = ratings[_RATING_COLUMNS]
    fractional = (ratings != ratings.round()).any()
    if fractional.any():
        raise ValueError(f"ml-100k.inter: column(s) {list(fractional[fractional].index)} "
                         "hold non-integer values; expected whole numbers")
    ratings = ratings.astype("int64")
    users = users.astype({"user_id": "int64", "age": "int64"})

    # Quirks of this copy: item 267 has title and year "unkonwn"; item 1412 has year "V" (its
    # title still ends in "(1995)"). A year that is not a number falls back to the title's year.
    title = raw["movie_title"].mask(raw["movie_title"] == "unkonwn", "unknown")
    year = pd.to_numeric(raw["release_year"], errors="coerce").fillna(_year_in_title(title))
    items = pd.DataFrame({"item_id": raw["item_id"].astype("int64"), "title": title,
                          "release_year": year})
    flags = raw["class"].str.get_dummies(sep=" ")
    unknown = sorted(set(flags.columns) - set(GENRES))
    if unknown:
        raise ValueError(f"ml-100k.item: unknown genre(s) {unknown}; expected names from GENRES")
    flags = flags.reindex(columns=list(GENRES), fill_value=0).astype(bool)
    items = pd.concat([items, flags], axis=1)
    return _finish(ratings, users, items)


def _strip_types(frame: pd.DataFrame) -> pd.DataFrame:
    """``user_id:token`` -> ``user_id``."""
    return frame.rename(columns=lambda c: str(c).split(":", 1)[0])


# --------------------------------------------------------------------------------------------
# Shared by both parsers: the one place that fixes columns, dtypes and order, and checks values
# --------------------------------------------------------------------------------------------

def _year_in_title(title: pd.Series) -> pd.Series:
    return pd.to_numeric(title.str.extract(r"\((\d{4})\)\s*$")[0], errors="coerce")


def _finish(ratings: pd.DataFrame, users: pd.DataFrame, items: pd.DataFrame) -> dict[str, pd.DataFrame]:
    ratings = pd.DataFrame({
        "user_id": ratings["user_id"].astype("int64"),
        "item_id": ratings["item_id"].astype("int64"),
        "rating": ratings["rating"].astype("int64"),
        # Unix seconds -> naive UTC datetimes, at second resolution whatever the pandas version.
        "timestamp": pd.to_datetime(ratings["timestamp"].astype("int64"), unit="s")
                       .astype("datetime64[s]"),
    }).reset_index(drop=True)
    users = pd.DataFrame({
        "user_id": users["user_id"].astype("int64"),
        "age": users["age"].astype("int64"),
        "gender": pd.Categorical(users["gender"], categories=["F", "M"]),
        "occupation": users["occupation"].astype(str).astype("category"),
        "zip_code": users["zip_code"].astype("string"),
    }).sort_values("user_id", kind="stable").reset_index(drop=True)
    items = items[_ITEM_COLUMNS].astype(
        {"item_id": "int64", "title": "string", "release_year": "Int64", **{g: bool for g in GENRES}}
    ).sort_values("item_id", kind="stable").reset_index(drop=True)
    _validate(ratings, users, items)
    return {"ratings": ratings, "users": users, "items": items}


def _validate(ratings: pd.DataFrame, users: pd.DataFrame, items: pd.DataFrame) -> None:
    """Cheap sanity checks, so that a parse which 'worked' on a wrong file still fails loudly."""
    require_no_nan(ratings, _RATING_COLUMNS, name="ratings")
    require_no_nan(users, _USER_COLUMNS, name="users")  # gender outside F/M shows up as NaN here
    require_no_nan(items, ["item_id", "title"], name="items")
    for frame, key, name in ((users, "user_id", "users"), (items, "item_id", "items")):
        if frame[key].duplicated().any():
            dup = frame.loc[frame[key].duplicated(), key].iloc[0]
            raise ValueError(f"{name}: {key} {dup} appears more than once; expected unique ids")
    bad = ~ratings["rating"].between(1, 5)
    if bad.any():
        raise ValueError(f"ratings: rating {ratings['rating'][bad].iloc[0]} is out of range; "
                         "expected ratings in [1, 5]")
    for key, table, name in (("user_id", users, "users"), ("item_id", items, "items")):
        orphan = ~ratings[key].isin(table[key])
        if orphan.any():
            raise ValueError(f"ratings: {key} {ratings[key][orphan].iloc[0]} is not in {name}")


def _file_digest(path: Path, algorithm: str) -> str:
    h = hashlib.new(algorithm, usedforsecurity=False)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()

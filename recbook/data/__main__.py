"""``python -m recbook.data``: fetch MovieLens-100K into the cache (once) and report what is there.

Exit status 0 when the data loaded, 1 when no source could provide it, 2 on bad arguments.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from .movielens import SOURCES, DataUnavailableError, _read_manifest, default_cache_dir, load_movielens100k


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m recbook.data",
        description="Download MovieLens-100K into the recbook cache (if it is not there yet), "
                    "then print the cache path and the row counts.",
    )
    parser.add_argument("--cache-dir", default=None,
                        help=f"cache directory (default: {default_cache_dir()}; "
                             "set RECBOOK_DATA to change the default)")
    parser.add_argument("--source", action="append", choices=SOURCES, dest="sources",
                        help="a source to try; repeat to give several, in order "
                             f"(default: {' '.join(SOURCES)})")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)

    start = time.perf_counter()
    try:
        data = load_movielens100k(args.cache_dir, progress=not args.no_progress, sources=args.sources)
    except (DataUnavailableError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    seconds = time.perf_counter() - start

    cache_dir = default_cache_dir() if args.cache_dir is None else Path(args.cache_dir).expanduser()
    manifest = _read_manifest(cache_dir) or {}
    origin = manifest.get("origin", "not cached")
    print(f"MovieLens-100K loaded from {data.source} in {seconds:.2f} s")
    print(f"cache:   {cache_dir / 'ml-100k'} (data originally from: {origin})")
    print(f"ratings: {len(data.ratings):>7,} rows")
    print(f"users:   {len(data.users):>7,} rows")
    print(f"items:   {len(data.items):>7,} rows")
    return 0


if __name__ == "__main__":
    sys.exit(main())

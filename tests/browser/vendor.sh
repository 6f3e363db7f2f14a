#!/usr/bin/env bash
# Fetch the JavaScript that the built book loads from CDNs (MathJax 3, require.js, the Jupyter
# widgets HTML manager, and vega, vega-lite and vega-embed for the charts) from the npm registry,
# for the offline browser test.
#
#   tests/browser/vendor.sh [DEST]      (default DEST: _build/vendor)
#
# DEST/static/recbook-vendor/ is added to html_static_path by tests/browser/build.py, so the files
# end up in _build/html/_static/recbook-vendor/. Nothing here is committed (_build/ is ignored).
# Running it again is a no-op once the files are there.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
DEST="${1:-$ROOT/_build/vendor}"
PYTHON="${PYTHON:-$ROOT/.venv/bin/python}"
# Major versions only: the book's widgets are ipywidgets 8 (html-manager 1.x), MathJax 3.
PACKAGES=(mathjax@3 requirejs@2 @jupyter-widgets/html-manager@1)
# The chart scripts, exactly the versions the site loads (one list: _ext/recbook_site.py).
# PYTHON may be relative to the repository root (run.sh passes .venv/bin/python): run it from there.
read -r -a VEGA < <(cd "$ROOT" && PYTHONPATH="$ROOT/_ext" "$PYTHON" -c \
    'import recbook_site as s; print(" ".join(f"{k}@{v}" for k, v in s.vega_packages().items()))')
if ((${#VEGA[@]} == 0)); then
    echo "vendor.sh: could not read the chart scripts' versions from _ext/recbook_site.py with $PYTHON" >&2
    exit 1
fi
PACKAGES+=("${VEGA[@]}")

OUT="$DEST/static/recbook-vendor"
if [[ -f "$OUT/VERSIONS" ]] && [[ "$(tail -n +4 "$OUT/VERSIONS" | tr '\n' ' ')" == "${VEGA[*]} " ]]; then
    echo "vendor.sh: already vendored in $OUT ($(tr '\n' ' ' < "$OUT/VERSIONS"))"
    exit 0
fi

if ! command -v npm >/dev/null 2>&1; then
    echo "vendor.sh: npm is not installed; it is needed to fetch ${PACKAGES[*]} from the npm registry." >&2
    echo "vendor.sh: install it (Debian: apt-get install -y npm) and run this script again." >&2
    exit 1
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm pack --silent --pack-destination "$work" "${PACKAGES[@]}" > tarballs.txt)

unpack() {  # unpack TARBALL-GLOB DIR: npm tarballs hold a single package/ folder
    local tarball
    tarball="$(ls "$work"/$1)"
    mkdir -p "$work/$2"
    tar -xzf "$tarball" -C "$work/$2" --strip-components=1
}
unpack 'mathjax-*.tgz' mathjax
unpack 'requirejs-*.tgz' requirejs
unpack 'jupyter-widgets-html-manager-*.tgz' html-manager
for spec in "${VEGA[@]}"; do
    unpack "${spec%@*}-${spec#*@}.tgz" "${spec%@*}"
done

rm -rf "$OUT.tmp"
mkdir -p "$OUT.tmp"
cp -r "$work/mathjax/es5" "$OUT.tmp/mathjax"
cp "$work/requirejs/require.js" "$OUT.tmp/require.js"
# npm/ mimics the CDN's layout: build.py points data-jupyter-widgets-cdn at it (where the manager
# would look for any other widget module). The manager's fonts sit next to it. No source maps.
manager="$OUT.tmp/npm/@jupyter-widgets/html-manager/dist"
mkdir -p "$manager"
find "$work/html-manager/dist" -maxdepth 1 -type f ! -name '*.map' -exec cp {} "$manager/" \;
# Charts: npm/NAME@VERSION/build/*.min.js, the CDN's layout (recbook_vega_base points there).
for spec in "${VEGA[@]}"; do
    mkdir -p "$OUT.tmp/npm/$spec/build"
    cp "$work/${spec%@*}/build/${spec%@*}.min.js" "$OUT.tmp/npm/$spec/build/"
done
for pkg in mathjax requirejs html-manager "${VEGA[@]%@*}"; do
    node -e 'const p = require(process.argv[1]); console.log(p.name + "@" + p.version)' \
        "$work/$pkg/package.json" >> "$OUT.tmp/VERSIONS"
done
rm -rf "$OUT"
mv "$OUT.tmp" "$OUT"
echo "vendor.sh: vendored $(tr '\n' ' ' < "$OUT/VERSIONS")in $OUT"

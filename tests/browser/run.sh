#!/usr/bin/env bash
# The website's browser test, end to end, without internet access beyond the package registries:
#   1. install Chromium, chromedriver, npm and a CJK font from Debian if missing (needs root),
#      and Selenium;
#   2. vendor MathJax, require.js and the widget manager from npm   (tests/browser/vendor.sh);
#   3. build the book into _build/html with those files in _static/  (tests/browser/build.py);
#   4. open every page in headless Chromium                          (tests/browser/test_pages.py).
#
#   bash tests/browser/run.sh                  # everything
#   SKIP_BUILD=1 bash tests/browser/run.sh     # reuse _build/html from build.py
#   bash tests/browser/run.sh -k demo          # extra arguments go to pytest
#   bash tests/browser/run.sh --system-packages   # step 1 alone (.ci/run: the font for make book)
#
# Screenshots of each chapter's first screen land in _build/screenshots/, and every chart before
# and after its controls moved in _build/screenshots/controls/. Each chart's response time per
# control change and the width of every chart and figure at a phone's 390 px land in
# _build/browser/chart-times.{json,csv} and phone-widths.{json,csv}, and are printed at the end.
set -euo pipefail
cd "$(dirname "$0")/../.."

SYSTEM_ONLY=
if [[ "${1:-}" == "--system-packages" ]]; then SYSTEM_ONLY=1; shift; fi

PYTHON="${PYTHON:-.venv/bin/python}"
if [[ -z "$SYSTEM_ONLY" && ! -x "$PYTHON" ]]; then
    echo "run.sh: $PYTHON not found; create the environment first (make venv) or set PYTHON" >&2
    exit 1
fi

missing=()
command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 \
    || missing+=(chromium)
command -v chromedriver >/dev/null 2>&1 || missing+=(chromium-driver)
command -v npm >/dev/null 2>&1 || missing+=(npm)
# The glossary shows Chinese terms and the Chinese edition's figures are drawn with a CJK font
# (make book); WenQuanYi Micro Hei has every glyph they use, U+2212 MINUS SIGN included (Zen Hei
# lacks it).
[[ -n "$(fc-list 'WenQuanYi Micro Hei' 2>/dev/null)" ]] || missing+=(fonts-wqy-microhei)
if ((${#missing[@]})); then
    if [[ "$(id -u)" != 0 ]]; then
        echo "run.sh: missing ${missing[*]}; install them with: sudo apt-get install -y ${missing[*]}" >&2
        exit 1
    fi
    echo "run.sh: installing ${missing[*]} from Debian"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
[[ -n "$SYSTEM_ONLY" ]] && exit 0
"$PYTHON" -c "import selenium" 2>/dev/null || "$PYTHON" -m pip install -q selenium

PYTHON="$PYTHON" bash tests/browser/vendor.sh
if [[ -z "${SKIP_BUILD:-}" ]]; then
    "$PYTHON" tests/browser/build.py
fi

# Only this test's own screenshots: other folders under _build/screenshots/ are kept.
rm -rf _build/screenshots/*.png _build/screenshots/controls
rm -f _build/browser/chart-times.* _build/browser/phone-widths.*  # this run's measurements only
RECBOOK_BROWSER_TEST=1 "$PYTHON" -m pytest tests/browser -p no:cacheprovider "$@"

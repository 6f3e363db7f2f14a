#!/usr/bin/env bash
# The comparison with established libraries (`make bench-libraries`): one virtual environment per
# library, the book's split exported once, each library's script, then every run scored with
# recbook's metrics into book/results/libraries.csv. See benchmarks/libraries/README.md.
#
# `run.sh --speed` (`make bench-speed`) is the timing run instead: recbook's entries and every
# library model with a recbook counterpart, seed 0, two epochs each, one process after another in
# this one invocation, collected into book/results/speed.csv|md (the full runs stay untouched).
# The models with an MLP run twice: with the library's defaults and with the book's architecture
# (`--arch book`: embedding 16, MLP 256-128, the same fields; DIN: activation unit 36, MLP 200-80).
# No library's Wide & Deep has cross-product features, so recbook's WideDeep-nocross (the same
# wide part: one weight per feature value) is timed too: the equal-architecture counterpart.
#
# `run.sh --ablation` runs the FM/DeepFM ablation's library side: each library's FM (and
# DeepFM) with its own recipe and with each of recbook's settings moved in (`--variant`), seeds
# 0,1,2, into _build/libraries/ablation/runs; then `python -m recbook.ablation --library-runs`
# scores them into book/results/fm_ablation.csv and deepfm_ablation.csv.
#
# Environment:
#   RECBOOK_PYTHON   recbook's interpreter (default .venv/bin/python)
#   BASE_PYTHON      interpreter that creates the library environments (default python3.11)
#   LIBRARIES        which to run (default "deepctr rechub recbole gru4rec")
#   LIBRARY_ARGS     extra arguments for every library script, e.g. "--seeds 0 --max-epochs 2"
#   GRU4REC_OFFICIAL_DIR  a local copy of the GRU4Rec authors' code (else it is cloned)
#   RECBOOK_LIBRARIES_BUILD  working folder: data, environments, runs (default _build/libraries)
#   LIBRARIES_OUT    folder of libraries.csv and libraries.md (default book/results)
set -euo pipefail
SPEED=0
ABLATION=0
case "${1:-}" in
    --speed) SPEED=1 ;;
    --ablation) ABLATION=1 ;;
    "") ;;
    *) echo "usage: run.sh [--speed | --ablation]" >&2; exit 2 ;;
esac
cd "$(dirname "$0")/../.."
HERE=benchmarks/libraries
RECBOOK_PYTHON=${RECBOOK_PYTHON:-.venv/bin/python}
BASE_PYTHON=${BASE_PYTHON:-python3.11}
LIBRARIES=${LIBRARIES:-deepctr rechub recbole gru4rec}
LIBRARY_ARGS=${LIBRARY_ARGS:-}
BUILD=${RECBOOK_LIBRARIES_BUILD:-_build/libraries}
export RECBOOK_LIBRARIES_BUILD=$(mkdir -p "$BUILD" && cd "$BUILD" && pwd)
GRU4REC_REPO=https://github.com/hidasib/GRU4Rec_PyTorch_Official
GRU4REC_COMMIT=d1fc31105577665d2f105de1c8d9a38d223a9a22

# One environment per library: torch first (the local CPU wheel; a bare `torch` resolves to a
# CUDA build), then the pinned requirements. A stamp records what was installed.
venv() {
    local lib=$1 env="$BUILD/venv-$1" req="$HERE/requirements-$1.txt"
    if [ ! -f "$env/.installed" ] || ! cmp -s "$req" "$env/.installed"; then
        echo "== creating $env"
        [ -x "$env/bin/python" ] || "$BASE_PYTHON" -m venv "$env"
        "$env/bin/python" -m pip install -q torch==2.13.0
        "$env/bin/python" -m pip install -q -r "$req"
        cp "$req" "$env/.installed"
    fi
}

gru4rec_source() {
    if [ -n "${GRU4REC_OFFICIAL_DIR:-}" ]; then return 0; fi
    local dir="$BUILD/GRU4Rec_PyTorch_Official"
    if [ ! -f "$dir/gru4rec_pytorch.py" ]; then
        echo "== cloning the GRU4Rec authors' code at $GRU4REC_COMMIT"
        if ! { git clone -q "$GRU4REC_REPO" "$dir" && git -C "$dir" checkout -q "$GRU4REC_COMMIT"; }; then
            rm -rf "$dir"
            echo "!! could not clone $GRU4REC_REPO (no access to GitHub?)." >&2
            echo "!! Set GRU4REC_OFFICIAL_DIR to a local copy of commit $GRU4REC_COMMIT to run it." >&2
            return 1
        fi
    fi
    export GRU4REC_OFFICIAL_DIR=$dir
}

if [ "$SPEED" = 1 ]; then
    RUN_ID=$(date -u +%Y-%m-%dT%H:%M:%SZ)
    export RECBOOK_LIBRARIES_RUNS="$RECBOOK_LIBRARIES_BUILD/speed/runs"
    rm -rf "$RECBOOK_LIBRARIES_BUILD/speed"
    LIBRARY_ARGS="--seeds 0 --max-epochs 2 $LIBRARY_ARGS"
fi

if [ "$ABLATION" = 1 ]; then
    export RECBOOK_LIBRARIES_RUNS="$RECBOOK_LIBRARIES_BUILD/ablation/runs"
    echo "== exporting the book's protocols"
    "$RECBOOK_PYTHON" "$HERE/export.py" --out "$BUILD/data"
    status=0
    ablate() {  # library script model variants...
        local lib=$1 script=$2 model=$3; shift 3
        venv "$lib"
        "$BUILD/venv-$lib/bin/python" "$HERE/$script" --models "$model" --seeds 0,1,2 || status=1
        for v in "$@"; do
            "$BUILD/venv-$lib/bin/python" "$HERE/$script" --models "$model" --seeds 0,1,2 --variant "$v" || status=1
        done
    }
    ablate deepctr deepctr_torch_bench.py FM embed_init:normal-0.01 linear_init:zero unknown_rows:zero l2:0 loss:mean all
    ablate deepctr deepctr_torch_bench.py DeepFM embed_init:normal-0.01 linear_init:zero mlp_init:uniform \
        unknown_rows:zero bias:base-rate l2:0 loss:mean all
    ablate recbole recbole_bench.py FM embed_init:normal-0.01 linear_init:zero unknown_rows:zero patience:3 \
        genre_linear:mean all
    echo "== the recbook side and the table"
    "$RECBOOK_PYTHON" -m recbook.ablation --models FM,DeepFM --seeds 0,1,2 \
        --library-runs "$RECBOOK_LIBRARIES_RUNS" --out "${LIBRARIES_OUT:-book/results}"
    exit $status
fi

# The models a library runs: all of its script's models, or in the timing run those with a
# recbook counterpart.
speed_models() {
    case $1 in
        deepctr) echo "--models LR,FM,WDL,DeepFM,DIN" ;;
        rechub)  echo "--models WDL,DeepFM,DIN,GRU4Rec,DSSM" ;;
        recbole) echo "--models FM,WDL,DIN,GRU4Rec" ;;
        gru4rec) echo "--models GRU4Rec" ;;
    esac
}

# The models whose library defaults differ from the book's architecture (an MLP), timed again with
# the book's (`--arch book`).
book_arch_models() {
    case $1 in
        deepctr) echo "--models WDL,DeepFM,DIN" ;;
        rechub)  echo "--models WDL,DeepFM,DIN" ;;
        recbole) echo "--models WDL,DIN" ;;
    esac
}

echo "== exporting the book's protocols"
"$RECBOOK_PYTHON" "$HERE/export.py" --out "$BUILD/data"

status=0
if [ "$SPEED" = 1 ]; then
    echo "== recbook (timing run $RUN_ID)"
    "$RECBOOK_PYTHON" -m recbook.bench --quick --seeds 0 --jobs 1 --no-progress \
        --models LR,FM,WideDeep,WideDeep-nocross,DeepFM,DIN,GRU4Rec-XE,TwoTower --out "$RECBOOK_LIBRARIES_BUILD/speed/recbook"
fi
for lib in $LIBRARIES; do
    case $lib in
        deepctr) script=deepctr_torch_bench.py ;;
        rechub)  script=torch_rechub_bench.py ;;
        recbole) script=recbole_bench.py ;;
        gru4rec) script=gru4rec_official_bench.py
                 gru4rec_source || { status=1; continue; } ;;
        *) echo "unknown library '$lib'; expected deepctr, rechub, recbole or gru4rec" >&2; exit 2 ;;
    esac
    venv "$lib"
    echo "== $lib"
    models=""
    if [ "$SPEED" = 1 ]; then models=$(speed_models "$lib"); fi
    # shellcheck disable=SC2086
    "$BUILD/venv-$lib/bin/python" "$HERE/$script" $models $LIBRARY_ARGS || status=1
    if [ "$SPEED" = 1 ]; then  # the same models again with the book's architecture
        book=$(book_arch_models "$lib")
        if [ -n "$book" ]; then
            # shellcheck disable=SC2086
            "$BUILD/venv-$lib/bin/python" "$HERE/$script" $book --arch book $LIBRARY_ARGS || status=1
        fi
    fi
done

if [ "$SPEED" = 1 ]; then
    echo "== collecting the timing run"
    "$RECBOOK_PYTHON" "$HERE/speed.py" --run "$RUN_ID" --recbook "$RECBOOK_LIBRARIES_BUILD/speed/recbook/bench.csv" \
        --out "${LIBRARIES_OUT:-book/results}"
    exit $status
fi

echo "== scoring every run with recbook's metrics"
"$RECBOOK_PYTHON" "$HERE/collect.py" --out "${LIBRARIES_OUT:-book/results}"
exit $status

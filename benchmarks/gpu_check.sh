#!/usr/bin/env bash
# GPU check of lmms-holitom, one script for one lease of a CUDA machine (budget: under 8 minutes).
#
#   1. environment report (python, torch, transformers, GPU)                       -> $OUT/env.txt
#   2. the CUDA tests (tests/test_ops_cuda.py: fp32/bf16 parity of compress_video
#      and merge_inner with the CPU; tests/test_model_cuda.py: the model on CUDA)
#      and the bench's own tests (tests/test_bench.py, tiny shape on the CPU)       -> $OUT/tests.log
#   3. `holitom bench` on the LLaVA-OneVision-7B shape (random weights, bf16, 32
#      frames): dense / HoliTom w/o M / HoliTom / VisionZip / FastV at 10 % and
#      25 %, TTFT, decoding speed, memory, merge overhead, probe study            -> $OUT/bench_<shape>.{txt,json,png}
#   4. the bench table and the targets, printed last                             -> $OUT/summary.txt
#
# Needs only torch + transformers + numpy (pytest, psutil and matplotlib when present); no network, no
# lmms-eval, no install: the repository is put on PYTHONPATH. If the image's transformers is older than
# the one the project is developed on, carry a wheel in .whl/ (see the README of the device tool):
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#       --platform manylinux_2_28_x86_64 -d .whl transformers==5.24.0
# and the script installs every .whl/*.whl into /tmp/site (no index, no deps) before anything else.
#
# Knobs (environment): DEVICE (cuda), SHAPE (7b), FRAMES (32), REPEATS (3), WARMUP (1), NEW_TOKENS (32),
# PYTHON (python3), OUT (out/gpu_check), BENCH_TIMEOUT (420 s), TEST_TIMEOUT (150 s), EXTRA_BENCH_ARGS,
# TESTS (the test files above).
# On a CPU-only machine: DEVICE=cpu SHAPE=tiny bash benchmarks/gpu_check.sh   (a dry run of the script)
set -uo pipefail
cd "$(dirname "$0")/.."

DEVICE=${DEVICE:-cuda}
SHAPE=${SHAPE:-7b}
FRAMES=${FRAMES:-32}
REPEATS=${REPEATS:-3}
WARMUP=${WARMUP:-1}
NEW_TOKENS=${NEW_TOKENS:-32}
PYTHON=${PYTHON:-python3}
OUT=${OUT:-out/gpu_check}
BENCH_TIMEOUT=${BENCH_TIMEOUT:-420}
TEST_TIMEOUT=${TEST_TIMEOUT:-150}
EXTRA_BENCH_ARGS=${EXTRA_BENCH_ARGS:-}
TESTS=${TESTS:-tests/test_ops_cuda.py tests/test_model_cuda.py tests/test_bench.py}

mkdir -p "$OUT"
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
export PYTHONUNBUFFERED=1 MPLBACKEND=Agg
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export LMMS_HOLITOM_CACHE="${LMMS_HOLITOM_CACHE:-/tmp/lmms-holitom-cache}"
START=$(date +%s)
STATUS=0
tag=$(printf '%s' "$SHAPE" | tr -c 'A-Za-z0-9._-' '_')

elapsed() { echo $(( $(date +%s) - START )); }
step() { echo; echo "=== [$(elapsed) s] $*"; }

# ------------------------------------------------------------------------------------ 0. carried wheels
if compgen -G ".whl/*.whl" >/dev/null; then
    step "installing carried wheels from .whl/ into /tmp/site"
    if "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl; then
        export PYTHONPATH="/tmp/site:$PYTHONPATH"
    else
        echo "WARNING: installing .whl/*.whl failed; going on with the image's packages"
    fi
fi

# ------------------------------------------------------------------------------------ 1. environment
step "environment"
{
    echo "date: $(date -u +%FT%TZ)  device=$DEVICE shape=$SHAPE frames=$FRAMES repeats=$REPEATS warmup=$WARMUP"
    "$PYTHON" - <<'EOF'
import platform, sys
import torch, transformers
print("python", sys.version.split()[0], platform.machine())
print("torch", torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available())
print("transformers", transformers.__version__, "from", transformers.__file__)
for name in ("numpy", "pytest", "psutil", "matplotlib", "lmms_eval"):
    try:
        mod = __import__(name)
        print(name, getattr(mod, "__version__", "?"))
    except Exception as err:  # noqa: BLE001
        print(name, "MISSING", type(err).__name__)
if torch.cuda.is_available():
    p = torch.cuda.get_device_properties(0)
    print("gpu", p.name, f"{p.total_memory / 2**30:.0f} GiB", p.multi_processor_count, "SMs")
EOF
    command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.used,memory.total,clocks.sm,temperature.gpu --format=csv
} 2>&1 | tee "$OUT/env.txt"

if ! "$PYTHON" -c "import lmms_holitom.bench, lmms_holitom.ops; from lmms_holitom.hf.models import HoliTomLlavaOnevisionForConditionalGeneration" 2>>"$OUT/env.txt"; then
    echo "FATAL: lmms_holitom (bench / ops / models) does not import here; the traceback is in $OUT/env.txt"
    echo "(an ImportError from transformers means the image's transformers is older than the project's 5.24:"
    echo " carry its wheel in .whl/, see the header of this script)"
    tail -n 20 "$OUT/env.txt"
    exit 2
fi

# ------------------------------------------------------------------------------------ 2. tests
tests=()
for t in $TESTS; do [ -f "$t" ] && tests+=("$t"); done
step "tests: ${tests[*]}"
if [ ${#tests[@]} -eq 0 ]; then
    echo "no test files found" | tee "$OUT/tests.log"
elif "$PYTHON" -c "import pytest" 2>/dev/null; then
    timeout "$TEST_TIMEOUT" "$PYTHON" -m pytest -q -p no:cacheprovider -rs "${tests[@]}" 2>&1 | tee "$OUT/tests.log"
    rc=${PIPESTATUS[0]}
    [ "$rc" -ne 0 ] && { echo "tests FAILED (exit $rc)"; STATUS=1; }
    if [ "$DEVICE" != "cpu" ] && grep -q "SKIPPED.*needs a CUDA device" "$OUT/tests.log"; then
        echo "WARNING: the CUDA tests were skipped although DEVICE=$DEVICE"; STATUS=1
    fi
else
    echo "pytest is not installed here: tests skipped" | tee "$OUT/tests.log"
fi

# ------------------------------------------------------------------------------------ 3. bench
step "bench: shape $SHAPE, $FRAMES frames, $DEVICE"
# shellcheck disable=SC2086
timeout "$BENCH_TIMEOUT" "$PYTHON" -m lmms_holitom.cli bench \
    --shape "$SHAPE" --device "$DEVICE" --frames "$FRAMES" \
    --methods dense,holitom_wo_m,holitom,visionzip,fastv --retain-ratios 0.10,0.25 \
    --warmup "$WARMUP" --repeats "$REPEATS" --new-tokens "$NEW_TOKENS" --probe-chunks 4,16 \
    --json "$OUT/bench_$tag.json" --plot "$OUT/bench_$tag.png" $EXTRA_BENCH_ARGS \
    2>&1 | tee "$OUT/bench_$tag.txt"
rc=${PIPESTATUS[0]}
[ "$rc" -ne 0 ] && { echo "bench FAILED (exit $rc; 124 = timed out after $BENCH_TIMEOUT s)"; STATUS=1; }

# ------------------------------------------------------------------------------------ 4. summary
step "summary"
{
    echo "gpu_check: device=$DEVICE shape=$SHAPE frames=$FRAMES, $(elapsed) s in all, status $STATUS"
    grep -E "passed|failed|error" "$OUT/tests.log" | tail -n 1
    if [ -f "$OUT/bench_$tag.json" ]; then
        "$PYTHON" -c "import json, sys; from lmms_holitom.bench import format_table; print(format_table(json.load(open(sys.argv[1]))))" "$OUT/bench_$tag.json"
    else
        echo "no bench result"
    fi
} 2>&1 | tee "$OUT/summary.txt"
exit $STATUS

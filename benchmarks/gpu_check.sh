#!/usr/bin/env bash
# The one prepared GPU run of issue 5 (Triton kernels): compiled tests, then the benchmark, in ~8 minutes.
#
# Run from the repository root on the lent GPU machine (torch 2.11 / triton 3.6 there, no registry), with the
# peer wheels and array-api-compat in .whl (../shared/tools/peer-wheels, plus
# `pip download --no-deps --only-binary=:all: -d .whl array-api-compat`) carried along:
#
#   run(command="GIT_COMMIT=<short hash> bash benchmarks/gpu_check.sh", carry=[".whl"], timeout_s=560)
#
# Everything it writes goes to $OUT: nvidia-smi.txt, tests.log, bench.log, results.json, table.md and
# BENCHMARKS.md (the docs file with the GPU section filled in: copy it back into docs/ on the main machine,
# since the device machine's working tree is discarded).  The benchmark table is printed last.
set -u
OUT=${OUT:-/tmp/gpu_check_out}
mkdir -p "$OUT"
PY=${PY:-python3}
export PYTHONPATH="$PWD/src"
if ls .whl/*.whl >/dev/null 2>&1; then
  $PY -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl >"$OUT/pip.log" 2>&1 \
    && export PYTHONPATH="$PWD/src:/tmp/site" || echo "wheel install failed (see pip.log): peers will be skipped"
else
  echo "no .whl folder: Liger-Kernel and Cut Cross-Entropy will be skipped"
fi
unset TRITON_INTERPRET
nvidia-smi --query-gpu=name,memory.total,clocks.sm,clocks.mem,power.limit --format=csv >"$OUT/nvidia-smi.txt" 2>&1
$PY -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__, torch.cuda.get_device_name())" \
  | tee "$OUT/versions.txt"

# 1. the interpreter tests, compiled on the GPU (several workers: most of the time is Triton compiling)
XDIST=""
$PY -c "import xdist" 2>/dev/null && XDIST="-n 6"
start=$(date +%s)
timeout 220 $PY -m pytest -q -p no:cacheprovider $XDIST tests/triton >"$OUT/tests.log" 2>&1
echo "tests: rc=$? in $(( $(date +%s) - start )) s: $(tail -1 "$OUT/tests.log")"

# 2. the benchmark (writes docs/BENCHMARKS.md here; copied to $OUT)
start=$(date +%s)
timeout 300 $PY benchmarks/gpu.py --out "$OUT" >"$OUT/bench.log" 2>&1
rc=$?
cp docs/BENCHMARKS.md "$OUT/BENCHMARKS.md" 2>/dev/null
echo "benchmark: rc=$rc in $(( $(date +%s) - start )) s"
grep -E "^(FAILED|ERROR)" "$OUT/tests.log" | head -20
echo
if [ -f "$OUT/table.md" ]; then cat "$OUT/table.md"; else tail -40 "$OUT/bench.log"; fi

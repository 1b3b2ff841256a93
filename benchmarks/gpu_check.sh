#!/usr/bin/env bash
# The one prepared GPU run of the Triton kernels (issue 11): compiled tests, the benchmark, the Hugging Face
# step, in under 8 minutes, with the short target table printed last.
#
# Run from the repository root on the lent GPU machine (torch 2.11 / triton 3.6 there, no registry), with the
# peer wheels and array-api-compat in .whl (../shared/tools/peer-wheels, plus
# `pip download --no-deps --only-binary=:all: -d .whl array-api-compat`) carried along:
#
#   run(command="GIT_COMMIT=<short hash> bash benchmarks/gpu_check.sh", carry=[".whl"], timeout_s=540)
#
# Everything goes to $OUT: nvidia-smi.txt, versions.txt, tests.log, bench.log, rows.jsonl (every row as it is
# measured), results.json, table.md, summary.md (each target next to its figure), hf.log.  docs/BENCHMARKS.md is
# not touched here: copy the figures into its GPU section by hand, naming the card, commit and versions.
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

# 1. the interpreter tests, compiled on the GPU.  -p no:benchmark: pytest-benchmark is installed there and warns
#    under xdist, which filterwarnings = error turns into an INTERNALERROR.
XDIST=""
$PY -c "import xdist" 2>/dev/null && XDIST="-n 8"
start=$(date +%s)
timeout 110 $PY -m pytest -q -p no:cacheprovider -p no:benchmark $XDIST tests/triton >"$OUT/tests.log" 2>&1
echo "tests: rc=$? in $(( $(date +%s) - start )) s: $(tail -1 "$OUT/tests.log")"

# 2. the benchmark (peers, sweeps, chunk sizes)
start=$(date +%s)
timeout 240 $PY benchmarks/gpu.py --out "$OUT" --no-docs --jobs lse,softmax,ce,lce,sweep,chunks >"$OUT/bench.log" 2>&1
echo "benchmark: rc=$? in $(( $(date +%s) - start )) s"

# 3. the Hugging Face training step (benchmarks/hf.py, its own peers)
start=$(date +%s)
if [ -f benchmarks/hf.py ]; then
  timeout 100 $PY benchmarks/hf.py --device cuda --no-write --timeout 45 >"$OUT/hf.log" 2>&1
  echo "hf step: rc=$? in $(( $(date +%s) - start )) s"
else
  echo "hf step skipped: benchmarks/hf.py is not in this tree"
fi

grep -E "^(FAILED|ERROR)" "$OUT/tests.log" | head -20
echo
tail -25 "$OUT/hf.log" 2>/dev/null
echo
if [ -f "$OUT/summary.md" ]; then cat "$OUT/summary.md"; else tail -30 "$OUT/bench.log"; fi

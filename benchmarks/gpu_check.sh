#!/usr/bin/env bash
# The GPU check, one command on a machine with an NVIDIA GPU, torch (CUDA build), CuPy and nvcc;
# it downloads nothing (the machine may be offline). Under 8 minutes on one H200:
#   1. environment (driver, GPU, versions), 2. install snnir in place without dependencies,
#   3. the GPU tests (fused CUDA vs the torch reference, gradients, per-neuron parameters, autocast,
#      compile(backend="cupy")) and the nvcc kernel checks, 4. benchmarks/bench_gpu.py.
# Usage: bash benchmarks/gpu_check.sh [OUT_DIR]   (default: $OUT, else benchmarks/out)
# Exit status: that of the tests, else of the benchmark.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT_DIR="${1:-${OUT:-benchmarks/out}}"
PY="${PYTHON:-python}"
mkdir -p "$OUT_DIR"
export SNNIR_CACHE_DIR="${SNNIR_CACHE_DIR:-$OUT_DIR/cache}"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"  # the checkout works even if the install below cannot

echo "== environment ($(date -u +%FT%TZ))"
uname -a
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.memory --format=csv || echo "nvidia-smi: unavailable"
command -v nvcc >/dev/null && nvcc --version | tail -2 || echo "nvcc: not found"
timeout 60 "$PY" - <<'PY'
import json, sys, torch
print("python", sys.version.split()[0], "| torch", torch.__version__, "cuda", torch.version.cuda,
      "| available", torch.cuda.is_available())
try:
    import cupy
    print("cupy", cupy.__version__)
except Exception as e:
    print("cupy: unavailable:", e)
PY

echo "== install snnir (no network)"
timeout 180 "$PY" -m pip install --no-deps --no-build-isolation -q -e . \
    || echo "install failed (no setuptools or wheel here?): running from the checkout (snnir/_checkout.py)"
timeout 60 "$PY" -c "from snnir.backends.cupy.runtime import describe; import json; print(json.dumps(describe(), indent=1))"

echo "== GPU tests and kernel compile checks"
tests_rc=0
if timeout 30 "$PY" -c "import pytest" 2>/dev/null; then
    # --noconftest: the suite's conftest imports hypothesis, which a bare GPU machine may lack
    timeout 300 "$PY" -m pytest -q -rs --noconftest -p no:cacheprovider tests/test_cupy_gpu.py \
        tests/test_cupy_kernels.py 2>&1 | tee "$OUT_DIR/gpu_tests.log" || tests_rc=$?
else
    echo "pytest is not installed: tests skipped"; tests_rc=1
fi

echo "== benchmark"
bench_rc=0
timeout 270 "$PY" benchmarks/bench_gpu.py "$OUT_DIR/bench_gpu.json" 2>&1 | tee "$OUT_DIR/bench_gpu.log" || bench_rc=$?
echo "== done: tests rc=$tests_rc, benchmark rc=$bench_rc; results in $OUT_DIR"
if [ "$tests_rc" -ne 0 ]; then exit "$tests_rc"; fi
exit "$bench_rc"

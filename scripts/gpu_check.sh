#!/usr/bin/env bash
# One prepared GPU run: the GPU kernels against the reference for real on the device
# (tests/ops/test_gpu_kernels.py, the gpu_sim tests, here without the simulator), the GPU
# tests (cross-backend agreement with numpy) and the GPU benchmark, everything written
# into the results folder given as the argument.
#   bash scripts/gpu_check.sh RESULTS_DIR
# Needs cupy, numba-cuda, numpy, scipy and pytest; installs nothing. Without numba-cuda
# the kernel tests skip (reported in kernels.txt) and cupy runs the array-API references.
set -uo pipefail
out="${1:?usage: gpu_check.sh RESULTS_DIR}"
mkdir -p "$out"
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
nvidia-smi > "$out/nvidia-smi.txt" 2>&1
python3 -c "import cupy, numpy, scipy; print('cupy', cupy.__version__, 'numpy', numpy.__version__, 'scipy', scipy.__version__)" \
    | tee "$out/versions.txt"
python3 -c "import numba_cuda; print('numba-cuda', numba_cuda.__version__)" 2>&1 | tee -a "$out/versions.txt"
# the GPU kernels on the device: never the simulator here
env -u NUMBA_ENABLE_CUDASIM timeout 300 python3 -m pytest tests/ops/test_gpu_kernels.py -m gpu_sim -q -rs -p no:cacheprovider -n 0 \
    2>&1 | tee "$out/kernels.txt"
kernels=${PIPESTATUS[0]}
timeout 300 python3 -m pytest tests/test_gpu.py tests/test_backend.py -q -x -p no:cacheprovider 2>&1 | tee "$out/tests.txt"
tests=${PIPESTATUS[0]}
# the torch bridge on CUDA tensors (skips cleanly where the image has no torch)
timeout 120 python3 -m pytest tests/test_torch_bridge.py -m gpu -q -p no:cacheprovider -n 0 2>&1 | tee "$out/torch.txt"
torch_rc=${PIPESTATUS[0]}
[ "$torch_rc" -eq 5 ] && torch_rc=0  # no test collected: torch absent
timeout 240 python3 scripts/bench_gpu.py 2>&1 | tee "$out/bench.txt"
bench=${PIPESTATUS[0]}
echo "kernel tests exit $kernels, tests exit $tests, torch bridge exit $torch_rc, benchmark exit $bench" \
    | tee "$out/summary.txt"
[ "$kernels" -eq 0 ] && [ "$tests" -eq 0 ] && [ "$torch_rc" -eq 0 ] && [ "$bench" -eq 0 ]

#!/usr/bin/env bash
# One prepared GPU run: the GPU tests (cross-backend agreement with numpy) and the GPU
# benchmark, everything written into the results folder given as the argument.
#   bash scripts/gpu_check.sh RESULTS_DIR
# Needs cupy, numpy, scipy and pytest (the device image has them); installs nothing.
set -uo pipefail
out="${1:?usage: gpu_check.sh RESULTS_DIR}"
mkdir -p "$out"
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
nvidia-smi > "$out/nvidia-smi.txt" 2>&1
python3 -c "import cupy, numpy, scipy; print('cupy', cupy.__version__, 'numpy', numpy.__version__, 'scipy', scipy.__version__)" \
    | tee "$out/versions.txt"
timeout 300 python3 -m pytest tests/test_gpu.py tests/test_backend.py -q -x -p no:cacheprovider 2>&1 | tee "$out/tests.txt"
tests=${PIPESTATUS[0]}
# the torch bridge on CUDA tensors (skips cleanly where the image has no torch)
timeout 120 python3 -m pytest tests/test_torch_bridge.py -m gpu -q -p no:cacheprovider -n 0 2>&1 | tee "$out/torch.txt"
torch_rc=${PIPESTATUS[0]}
[ "$torch_rc" -eq 5 ] && torch_rc=0  # no test collected: torch absent
timeout 240 python3 scripts/bench_gpu.py 2>&1 | tee "$out/bench.txt"
bench=${PIPESTATUS[0]}
echo "tests exit $tests, torch bridge exit $torch_rc, benchmark exit $bench" | tee "$out/summary.txt"
[ "$tests" -eq 0 ] && [ "$torch_rc" -eq 0 ] && [ "$bench" -eq 0 ]

#!/usr/bin/env bash
# The GPU check in one command, from a copy of the repository on a GPU machine:
#     bash benchmarks/gpu_check.sh OUT_DIR [gpu_check.py options, e.g. --md-minutes 1]
# With a .whl/ folder (benchmarks/gpu_wheels.sh) the wheels are installed into /tmp/site first, for
# machines without network that already have torch; otherwise the current Python environment is used
# (pip install -e ".[test]" and OpenMM's CUDA platform, e.g. pip install openmm-cuda-12).
# PYTHON=path/to/python picks the interpreter (default python3).
set -uo pipefail
cd "$(dirname "$0")/.."
out="${1:?usage: bash benchmarks/gpu_check.sh OUT_DIR [options]}"
shift
python="${PYTHON:-python3}"
if [ -d .whl ] && ls .whl/*.whl >/dev/null 2>&1; then
    "$python" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
    export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH=".${PYTHONPATH:+:$PYTHONPATH}"
# OpenMM's CUDA platform finds the CUDA runtime, NVRTC and cuFFT of the nvidia-* packages torch brought
nvlibs=$("$python" -c "import pathlib, nvidia; print(':'.join(sorted({str(p) for d in nvidia.__path__ for p in pathlib.Path(d).glob('**/lib')})))" 2>/dev/null)
export LD_LIBRARY_PATH="${nvlibs}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export PYTHONUNBUFFERED=1
"$python" benchmarks/gpu_check.py --out "$out" "$@"

#!/usr/bin/env bash
# Fetch, on a machine with a package index, the wheels that gpu_check.sh installs on a GPU machine
# without network (Python 3.12, x86-64, CUDA 13 driver): OpenMM with its CUDA platform, mdtraj,
# pdbfixer (built from its source release) and openmmtools (for its offline protein structures).
# Usage, from the repository root:  bash benchmarks/gpu_wheels.sh [OPENMM_VERSION]
# Writes .whl/ (git-ignored through .git/info/exclude); about 41 MB.
set -euo pipefail
cd "$(dirname "$0")/.."
version="${1:-8.4.0b0}"
mkdir -p .whl
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
platforms=(--platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64)
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp "${platforms[@]}" \
    -d .whl "openmm==$version" "openmm-cuda-13==$version" mdtraj openmmtools
python3 -m pip download -q --no-deps --no-binary=:all: -d .whl/src pdbfixer
python3 -m pip wheel -q --no-deps -w .whl .whl/src/pdbfixer-*
rm -rf .whl/src
ls -la .whl

#!/usr/bin/env bash
# Create .venv in the repository and install openhpo with its test tools.
#
# torch is installed first, on its own, so that the project's torch range is already satisfied and pip never
# pulls a multi-GB CUDA build by accident. OPENHPO_TORCH chooses the torch requirement (default: the CPU-capable
# torch==2.13.0; e.g. OPENHPO_TORCH="torch==2.13.0" or a CUDA build's wheel for GPU machines).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet "${OPENHPO_TORCH:-torch==2.13.0}"
.venv/bin/python -m pip install --quiet -e ".[test]"
echo "openhpo installed in $(pwd)/.venv"

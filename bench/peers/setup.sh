#!/usr/bin/env bash
# Install the Python peers of `strata bench` into a venv (default bench-out/venv).
set -euo pipefail
VENV=${1:-bench-out/venv}
python3 -m venv "$VENV"
"$VENV/bin/pip" install --quiet --upgrade pip
"$VENV/bin/pip" install --quiet numpy hnswlib
"$VENV/bin/python" -c 'from importlib.metadata import version as v; print("peers ready: hnswlib", v("hnswlib"), "numpy", v("numpy"))'

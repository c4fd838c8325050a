#!/usr/bin/env bash
# Install the Python peers of `strata bench` into a venv (default bench-out/venv).
set -euo pipefail
VENV=${1:-bench-out/venv}
python3 -m venv "$VENV"
"$VENV/bin/pip" install --quiet --upgrade pip
"$VENV/bin/pip" install --quiet numpy hnswlib
# diskannpy (the build and disk-search peer) pins an older numpy; optional, the scripts skip it
# when it does not import.
"$VENV/bin/pip" install --quiet diskannpy || echo "diskannpy did not install: its comparisons are skipped"
"$VENV/bin/python" -c 'from importlib.metadata import version as v; print("peers ready: hnswlib", v("hnswlib"), "numpy", v("numpy"))'

#!/usr/bin/env bash
# Install the Python peers of `strata bench` into venvs:
#   VENV (default bench-out/venv): numpy 2, hnswlib, faiss-cpu, usearch, lancedb;
#   VENV-diskann: diskannpy, which pins numpy 1.25 (faiss-cpu needs numpy 2), so it lives apart.
# Optional peers that fail to install are reported and skipped by the scripts that use them.
set -euo pipefail
VENV=${1:-bench-out/venv}
python3 -m venv "$VENV"
"$VENV/bin/pip" install --quiet --upgrade pip
"$VENV/bin/pip" install --quiet "numpy>=2" hnswlib
"$VENV/bin/pip" install --quiet faiss-cpu usearch lancedb || echo "faiss-cpu/usearch/lancedb did not install: their comparisons are skipped"
python3 -m venv "$VENV-diskann"
"$VENV-diskann/bin/pip" install --quiet diskannpy || echo "diskannpy did not install: its comparisons are skipped"
"$VENV/bin/python" -c 'from importlib.metadata import version as v; print("peers ready: hnswlib", v("hnswlib"), "numpy", v("numpy"))'

#!/usr/bin/env bash
# The offline-build figure in one run: `strata build` vs hnswlib (M=16, ef_construction=200) vs
# diskannpy (R=48, L=64, same threads and memory budget) on the same .fvecs files, one after the
# other; recall@10 of each result against the ground truth. Needs a release build of `strata`
# and the venvs of bench/peers/setup.sh (diskannpy, in VENV-diskann, is optional: skipped when
# it does not import).
#   bash bench/peers/build_compare.sh DATA_DIR [OUT_DIR]   # DATA_DIR has base/query.fvecs, gt.ivecs
set -euo pipefail
DATA=${1:?usage: build_compare.sh DATA_DIR [OUT_DIR]}
OUT=${2:-bench-out/build-compare}
PY=${PYTHON:-bench-out/venv/bin/python}
STRATA=${STRATA:-target/release/strata}
THREADS=${THREADS:-2}
mkdir -p "$OUT"
echo "== machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores, threads $THREADS, $(date -u +%FT%TZ)"

rm -rf "$OUT/strata-db"
"$STRATA" build --out "$OUT/strata-db" --vectors "$DATA/base.fvecs" --metric l2 \
  --threads "$THREADS" --json > "$OUT/strata-build.json" 2> "$OUT/strata-build.err"
"$STRATA" query "$OUT/strata-db" --vectors "$DATA/query.fvecs" --k 10 --json > "$OUT/strata-query.jsonl"
"$PY" - "$OUT" "$DATA" <<'PYEOF'
import json, sys
import numpy as np
out, data = sys.argv[1], sys.argv[2]
raw = np.fromfile(f"{data}/gt.ivecs", dtype=np.int32)
gt = raw.reshape(-1, int(raw[0]) + 1)[:, 1:11]
hits = n = 0
for line in open(f"{out}/strata-query.jsonl"):
    q = json.loads(line)
    got = {int(h["key"]) for h in q["hits"]}
    hits += len(got & set(gt[q["query"]].tolist()))
    n += 10
b = json.load(open(f"{out}/strata-build.json"))
print(json.dumps({"system": "strata", "phase": "build", "seconds": b["seconds"],
                  "peak_rss_bytes": b["peak_rss_bytes"], "segments": b["segments"],
                  "index_bytes": b["bytes"], "recall_default_list": hits / n}))
PYEOF

"$PY" bench/peers/hnswlib_knn.py --base "$DATA/base.fvecs" --query "$DATA/query.fvecs" \
  --gt "$DATA/gt.ivecs" --threads "$THREADS" --efs 32,64,128

DISKANN_PY=${DISKANN_PYTHON:-${PY%/bin/python}-diskann/bin/python}
if "$DISKANN_PY" -c 'import diskannpy' 2>/dev/null; then
  "$DISKANN_PY" bench/peers/diskann_build.py --base "$DATA/base.fvecs" --query "$DATA/query.fvecs" \
    --gt "$DATA/gt.ivecs" --out "$OUT/diskann" --threads "$THREADS" 2> "$OUT/diskann.log" | grep '^{'
else
  echo '{"system": "diskannpy", "skipped": "does not import in this venv"}'
fi

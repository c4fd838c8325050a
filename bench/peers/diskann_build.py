#!/usr/bin/env python3
"""diskannpy peer for the offline-build figure (`strata build` vs DiskANN): builds a static disk
index over the same base file with the same graph degree, build list size, thread count and
memory budget as `strata build`, then answers the same queries from the disk index and prints one
JSON object for the build and one per search list size. Runs in the venv bench/peers/setup.sh makes for it
(bench-out/venv-diskann: diskannpy pins numpy 1.25)."""
import argparse
import json
import os
import resource
import shutil
import time

import diskannpy
import numpy as np
from vecs import dir_bytes, peer_version, read_vecs


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--base", required=True)
    ap.add_argument("--query", required=True)
    ap.add_argument("--gt", required=True)
    ap.add_argument("--out", required=True, help="index directory (replaced)")
    ap.add_argument("--metric", choices=["l2", "cosine", "mips"], default="l2")
    ap.add_argument("--R", type=int, default=48, help="graph degree (strata: 48)")
    ap.add_argument("--L", type=int, default=64, help="build list size (strata: 64)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--build-memory-gib", type=float, default=4.0)
    ap.add_argument("--search-memory-fraction", type=float, default=0.15,
                    help="PQ + cache budget as a fraction of the raw vectors")
    ap.add_argument("--ls", default="16,32,64,128")
    ap.add_argument("--k", type=int, default=10)
    a = ap.parse_args()

    base = read_vecs(a.base, np.float32)
    queries = read_vecs(a.query, np.float32)
    gt = read_vecs(a.gt, np.int32)[:, : a.k]
    n, dim = base.shape
    raw_gib = base.nbytes / 2**30
    shutil.rmtree(a.out, ignore_errors=True)
    os.makedirs(a.out)

    t0 = time.perf_counter()
    diskannpy.build_disk_index(
        data=base, distance_metric=a.metric, index_directory=a.out, complexity=a.L,
        graph_degree=a.R, search_memory_maximum=raw_gib * a.search_memory_fraction,
        build_memory_maximum=a.build_memory_gib, num_threads=a.threads)
    build_s = time.perf_counter() - t0
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"system": "diskannpy", "phase": "build", "seconds": build_s,
                      "threads": a.threads, "R": a.R, "L": a.L, "n": n, "dim": dim,
                      "build_memory_gib": a.build_memory_gib,
                      "peak_rss_bytes": peak_kib * 1024, "index_bytes": dir_bytes(a.out),
                      "version": peer_version("diskannpy")}), flush=True)

    # Two search contexts: with one, loading hangs (DiskANN issues #461/#462); the searches below
    # still run on one thread.
    index = diskannpy.StaticDiskIndex(index_directory=a.out, num_threads=2, num_nodes_to_cache=0,
                                      distance_metric=a.metric, vector_dtype=np.float32,
                                      dimensions=dim)
    for ls in [int(x) for x in a.ls.split(",") if x]:
        ls = max(ls, a.k)
        index.batch_search(queries[: min(50, len(queries))], a.k, ls, 1, 4)  # warm-up
        t0 = time.perf_counter()
        res = index.batch_search(queries, a.k, ls, 1, 4)
        secs = time.perf_counter() - t0
        labels = res.identifiers if hasattr(res, "identifiers") else res[0]
        hits = sum(len(set(labels[i].tolist()) & set(gt[i].tolist())) for i in range(len(queries)))
        print(json.dumps({"system": "diskannpy", "phase": "search", "L": ls,
                          "recall": hits / (len(queries) * a.k), "qps": len(queries) / secs}),
              flush=True)


if __name__ == "__main__":
    main()

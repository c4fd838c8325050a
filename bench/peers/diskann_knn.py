#!/usr/bin/env python3
"""diskannpy peer for the cold curve of `strata bench knn --peer-systems diskann`: a static disk
index over the same base file with Strata's graph parameters (R, build L), build threads and
search-memory budget (a fraction of the raw vectors: DiskANN spends it on PQ bytes, Strata on
PQ codes plus cached nodes), then, per search list size L, the page cache dropped (root) and
all queries answered on one thread with beam width `--beam` — recall@k, QPS and what the block
device read during the searches (`/sys/dev/block/MAJ:MIN/stat`, the same counter Strata's curve
reads), so both systems' I/O per query is measured the same way, below any cache or readahead.

Runs in the venv bench/peers/setup.sh makes for diskannpy (bench-out/venv-diskann). Prints one
JSON object for the build (or the reused index) and one per L."""
import argparse
import json
import os
import resource
import shutil
import subprocess
import time

import diskannpy
import numpy as np
from vecs import dir_bytes, peer_version, read_vecs


def device_read_bytes(path):
    """Bytes the block device holding `path` has read since boot (sectors × 512)."""
    st = os.stat(path)
    with open(f"/sys/dev/block/{os.major(st.st_dev)}:{os.minor(st.st_dev)}/stat") as f:
        return int(f.read().split()[2]) * 512


def drop_caches():
    subprocess.run(["sync"], check=False)
    try:
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")
        return True
    except OSError:
        return False


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--base", required=True)
    ap.add_argument("--query", required=True)
    ap.add_argument("--gt", required=True)
    ap.add_argument("--space", choices=["l2", "cosine", "ip"], default="l2")
    ap.add_argument("--index", required=True, help="index directory (built unless --reuse finds it)")
    ap.add_argument("--reuse", action="store_true", help="reuse an index built earlier in --index")
    ap.add_argument("--R", type=int, default=48)
    ap.add_argument("--L", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--build-memory-gib", type=float, default=4.0)
    ap.add_argument("--search-memory-fraction", type=float, default=0.15)
    ap.add_argument("--beam", type=int, default=4)
    ap.add_argument("--efs", default="10,16,24,32,48,64,96,128", help="search list sizes L")
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--cold-queries", type=int, default=0,
                    help="also a per-query cold curve: the first N queries, caches dropped "
                         "before each (mode cold1)")
    a = ap.parse_args()
    metric = {"l2": "l2", "cosine": "cosine", "ip": "mips"}[a.space]

    queries = read_vecs(a.query, np.float32)
    gt = read_vecs(a.gt, np.int32)[:, : a.k]
    done = os.path.join(a.index, "built.json")
    if a.reuse and os.path.exists(done):
        with open(done) as f:
            build = json.load(f)
        build["reused"] = True
    else:
        base = read_vecs(a.base, np.float32)
        shutil.rmtree(a.index, ignore_errors=True)
        os.makedirs(a.index)
        t0 = time.perf_counter()
        diskannpy.build_disk_index(
            data=base, distance_metric=metric, index_directory=a.index, complexity=a.L,
            graph_degree=a.R, search_memory_maximum=base.nbytes / 2**30 * a.search_memory_fraction,
            build_memory_maximum=a.build_memory_gib, num_threads=a.threads)
        build = {"system": "diskann", "phase": "build", "seconds": time.perf_counter() - t0,
                 "threads": a.threads, "R": a.R, "L": a.L,
                 "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
                 "index_bytes": dir_bytes(a.index), "version": peer_version("diskannpy")}
        del base
        with open(done, "w") as f:
            json.dump(build, f)
    print(json.dumps(build), flush=True)

    dim = queries.shape[1]
    # Two search contexts: with one, loading hangs (DiskANN issues #461/#462); the searches
    # below still run on one thread. No node cache: the budget went to PQ bytes at build.
    index = diskannpy.StaticDiskIndex(index_directory=a.index, num_threads=2, num_nodes_to_cache=0,
                                      distance_metric=metric, vector_dtype=np.float32,
                                      dimensions=dim)
    for ls in [int(x) for x in a.efs.split(",") if x]:
        ls = max(ls, a.k)
        dropped = drop_caches()
        before = device_read_bytes(a.index)
        t0 = time.perf_counter()
        res = index.batch_search(queries, a.k, ls, 1, a.beam)
        secs = time.perf_counter() - t0
        read = device_read_bytes(a.index) - before
        labels = res.identifiers if hasattr(res, "identifiers") else res[0]
        hits = sum(len(set(labels[i].tolist()) & set(gt[i].tolist())) for i in range(len(queries)))
        print(json.dumps({"system": "diskann", "phase": "search", "mode": "cold", "ef": ls,
                          "recall": hits / (len(queries) * a.k), "qps": len(queries) / secs,
                          "disk_kib_per_query": read / 1024 / len(queries),
                          "caches_dropped": dropped}), flush=True)
    # Every query from a cold page cache: what one query costs on its own.
    nq = min(a.cold_queries, len(queries))
    for ls in [int(x) for x in a.efs.split(",") if x] if nq else []:
        ls = max(ls, a.k)
        hits = read = 0
        secs = 0.0
        for i in range(nq):
            drop_caches()
            before = device_read_bytes(a.index)
            t0 = time.perf_counter()
            res = index.search(queries[i], a.k, ls, a.beam)
            secs += time.perf_counter() - t0
            read += device_read_bytes(a.index) - before
            labels = res.identifiers if hasattr(res, "identifiers") else res[0]
            hits += len(set(np.asarray(labels).tolist()) & set(gt[i].tolist()))
        print(json.dumps({"system": "diskann", "phase": "search", "mode": "cold1", "ef": ls,
                          "recall": hits / (nq * a.k), "qps": nq / secs,
                          "disk_kib_per_query": read / 1024 / nq}), flush=True)


if __name__ == "__main__":
    main()

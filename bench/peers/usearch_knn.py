#!/usr/bin/env python3
"""usearch peer for `strata bench knn`: an HNSW index (connectivity 16, expansion_add 200, f32
vectors, no quantization) over the same base file, the same queries answered one at a time on
one thread, one JSON object per expansion_search setting (recall@k, QPS) plus one for the
build — the same protocol as hnswlib_knn.py. Needs the venv made by bench/peers/setup.sh."""
import json
import resource
import time

import numpy as np
from usearch.index import Index
from vecs import knn_peer_inputs, peer_version


def main():
    a, base, queries, gt = knn_peer_inputs()
    n, dim = base.shape

    metric = {"l2": "l2sq", "cosine": "cos", "ip": "ip"}[a.space]
    index = Index(ndim=dim, metric=metric, dtype="f32", connectivity=a.M,
                  expansion_add=a.efc)
    t0 = time.perf_counter()
    index.add(np.arange(n, dtype=np.uint64), base, threads=a.threads)
    build_s = time.perf_counter() - t0
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"system": "usearch", "phase": "build", "seconds": build_s,
                      "threads": a.threads, "M": a.M, "ef_construction": a.efc,
                      "peak_rss_bytes": peak_kib * 1024, "version": peer_version("usearch")}),
          flush=True)

    for ef in [int(x) for x in a.efs.split(",") if x]:
        index.expansion_search = max(ef, a.k)
        index.search(queries[: min(50, len(queries))], a.k, threads=1)  # warm-up
        t0 = time.perf_counter()
        m = index.search(queries, a.k, threads=1)
        secs = time.perf_counter() - t0
        labels = np.asarray(m.keys)
        hits = sum(len(set(labels[i].tolist()) & set(gt[i].tolist())) for i in range(len(queries)))
        print(json.dumps({"system": "usearch", "phase": "search", "ef": ef,
                          "recall": hits / (len(queries) * a.k), "qps": len(queries) / secs}),
              flush=True)


if __name__ == "__main__":
    main()

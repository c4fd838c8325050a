#!/usr/bin/env python3
"""hnswlib peer for `strata bench knn`: builds an HNSW index over the same base file, answers the
same queries, and prints one JSON object per search setting (recall@k, QPS) plus one for the
build. Run by `strata bench knn --peers`; needs the venv made by bench/peers/setup.sh."""
import json
import resource
import time

import hnswlib
import numpy as np
from vecs import knn_peer_inputs, peer_version


def main():
    a, base, queries, gt = knn_peer_inputs()
    n, dim = base.shape

    index = hnswlib.Index(space=a.space, dim=dim)
    index.init_index(max_elements=n, ef_construction=a.efc, M=a.M, random_seed=100)
    index.set_num_threads(a.threads)
    t0 = time.perf_counter()
    index.add_items(base, np.arange(n))
    build_s = time.perf_counter() - t0
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"system": "hnswlib", "phase": "build", "seconds": build_s,
                      "threads": a.threads, "M": a.M, "ef_construction": a.efc,
                      "peak_rss_bytes": peak_kib * 1024, "version": peer_version("hnswlib")}),
          flush=True)

    index.set_num_threads(1)
    for ef in [int(x) for x in a.efs.split(",") if x]:
        index.set_ef(max(ef, a.k))
        index.knn_query(queries[: min(50, len(queries))], k=a.k)  # warm-up
        t0 = time.perf_counter()
        labels, _ = index.knn_query(queries, k=a.k)
        secs = time.perf_counter() - t0
        hits = sum(len(set(labels[i]) & set(gt[i])) for i in range(len(queries)))
        print(json.dumps({"system": "hnswlib", "phase": "search", "ef": ef,
                          "recall": hits / (len(queries) * a.k), "qps": len(queries) / secs}),
              flush=True)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Filtered k-NN peers for `strata bench filtered --peers`: hnswlib with a filter callable and
faiss HNSW with an `IDSelectorBitmap`, each built once over the same base file (M=16,
ef_construction=200) and searched, per selectivity bucket, with the bucket's allowed ids over a
sweep of ef. Prints one JSON object per (system, bucket, ef): recall@k against the bucket's
ground truth, QPS on one thread. LanceDB (prefilter: flat, and IVF_PQ over a sweep of nprobes)
when installed. (usearch's Python API has no filtered search, so it is not a peer here.)
Each sweep goes from the cheapest setting up and stops once recall reaches 0.99 or one setting
takes longer than --seconds-max (a larger parameter is only slower)."""
import argparse
import json
import sys
import time

import numpy as np
from vecs import read_vecs


def recall(labels, gt, k):
    hits = sum(len(set(l[:k]) & set(g[:k])) for l, g in zip(labels, gt))
    return hits / max(1, sum(min(k, len(g)) for g in gt))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--base", required=True)
    ap.add_argument("--query", required=True)
    ap.add_argument("--buckets", required=True, help="JSON: [{tag, ids, gt}]")
    ap.add_argument("--space", choices=["cosine", "l2"], default="cosine")
    ap.add_argument("--efs", default="16,32,64,128,256,512")
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--seconds-max", type=float, default=20.0,
                    help="stop raising a system's parameter once a setting takes this long")
    a = ap.parse_args()
    base = read_vecs(a.base)
    queries = read_vecs(a.query)
    buckets = json.load(open(a.buckets))
    n, dim = base.shape
    efs = [int(x) for x in a.efs.split(",") if x]

    systems = {}
    try:
        import hnswlib
        h = hnswlib.Index(space=a.space, dim=dim)
        h.init_index(max_elements=n, ef_construction=200, M=16, random_seed=100)
        h.add_items(base, np.arange(n))
        systems["hnswlib"] = h
    except ImportError:
        print(json.dumps({"system": "hnswlib", "skipped": "not installed"}), flush=True)
    try:
        import faiss
        faiss.omp_set_num_threads(1)
        metric = faiss.METRIC_INNER_PRODUCT if a.space == "cosine" else faiss.METRIC_L2
        f = faiss.IndexHNSWFlat(dim, 16, metric)
        f.hnsw.efConstruction = 200
        f.add(base)  # the real vectors are unit length: inner product = cosine
        systems["faiss-hnsw"] = f
    except ImportError:
        print(json.dumps({"system": "faiss", "skipped": "not installed"}), flush=True)

    lance = None
    try:
        import tempfile

        import lancedb
        import pyarrow as pa
        cols = {"id": pa.array(np.arange(n, dtype=np.int64)),
                "vector": pa.FixedSizeListArray.from_arrays(pa.array(base.ravel()), dim)}
        for j, b in enumerate(buckets):
            mask = np.zeros(n, dtype=bool)
            mask[np.asarray(b["ids"], dtype=np.int64)] = True
            cols[f"b{j}"] = pa.array(mask)
        ldir = tempfile.mkdtemp(prefix="lance-")
        tbl = lancedb.connect(ldir).create_table("t", pa.table(cols), mode="overwrite")
        # IVF_PQ as LanceDB recommends: ~sqrt(n) partitions, dim/4 sub-vectors (as Strata's PQ).
        tbl.create_index(metric=a.space, vector_column_name="vector",
                         num_partitions=max(16, int(np.sqrt(n))), num_sub_vectors=dim // 4)
        lance = tbl
    except ImportError:
        print(json.dumps({"system": "lancedb", "skipped": "not installed"}), flush=True)

    def done(recall, secs):
        return recall >= 0.99 or secs > a.seconds_max

    for j, b in enumerate(buckets):
        print(f"peers: bucket {j + 1}/{len(buckets)} {b['tag']} ({len(b['ids'])} ids)",
              file=sys.stderr, flush=True)
        if lance is not None:
            # Prefiltered search: the filter is applied before the vector search (exact over
            # the matches with `flat`, IVF_PQ probes + refine otherwise).
            settings = [("flat", None)] + [(f"nprobes={p}", p) for p in (10, 20, 50, 100)]
            for label, nprobes in settings:
                t0 = time.perf_counter()
                labels = []
                for q in queries:
                    s = lance.search(q, vector_column_name="vector").metric(a.space)
                    s = s.where(f"b{j}", prefilter=True).select(["id", "_distance"]).limit(a.k)
                    if nprobes is None:
                        s = s.bypass_vector_index()
                    else:
                        s = s.nprobes(nprobes).refine_factor(5)
                    labels.append(s.to_arrow().column("id").to_pylist())
                secs = time.perf_counter() - t0
                r = recall(labels, b["gt"], a.k)
                print(json.dumps({"system": "lancedb-prefilter", "tag": b["tag"], "ef": nprobes or 0,
                                  "setting": label, "recall": r,
                                  "qps": len(queries) / secs}), flush=True)
                if nprobes is not None and done(r, secs):
                    break
        allowed = np.zeros(n, dtype=bool)
        allowed[np.asarray(b["ids"], dtype=np.int64)] = True
        gt = b["gt"]
        for name, index in systems.items():
            for ef in efs:
                labels = []
                if name == "hnswlib":
                    index.set_ef(max(ef, a.k))
                    t0 = time.perf_counter()
                    for q in queries:
                        try:
                            l, _ = index.knn_query(q, k=a.k, num_threads=1,
                                                   filter=lambda i: bool(allowed[i]))
                            labels.append(list(l[0]))
                        except RuntimeError:  # fewer than k allowed points found at this ef
                            labels.append([])
                    secs = time.perf_counter() - t0
                else:
                    import faiss
                    bitmap = np.packbits(allowed, bitorder="little")
                    sel = faiss.IDSelectorBitmap(n, faiss.swig_ptr(bitmap))
                    params = faiss.SearchParametersHNSW(sel=sel, efSearch=max(ef, a.k))
                    t0 = time.perf_counter()
                    _, idx = index.search(queries, a.k, params=params)
                    secs = time.perf_counter() - t0
                    labels = [[int(x) for x in row if x >= 0] for row in idx]
                r = recall(labels, gt, a.k)
                print(json.dumps({"system": name, "tag": b["tag"], "ef": ef,
                                  "recall": r, "qps": len(queries) / secs}), flush=True)
                if done(r, secs):
                    break


if __name__ == "__main__":
    main()

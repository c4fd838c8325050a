#!/usr/bin/env python3
"""Filtered k-NN peers for `strata bench filtered --peers`: hnswlib with a filter callable,
faiss HNSW (M=16, ef_construction=200) and faiss IVF-Flat (4 sqrt(n) lists) with an
`IDSelectorBitmap`, built once over the same base file and searched, per selectivity bucket,
with the bucket's allowed ids over a sweep of ef (nprobe for IVF); LanceDB with prefilter (flat
and IVF_PQ over nprobes) and postfilter (IVF_PQ). Prints one JSON object per (system, bucket,
setting): recall@k against the bucket's ground truth, QPS on one thread. `--systems` picks a
subset. (usearch's Python API has no filtered search, so it is not a filtered peer here.)
Each sweep goes from the cheapest setting up and stops once recall reaches 0.99 or one setting
takes longer than --seconds-max (a larger parameter is only slower); a setting that runs out
of time mid-way is measured on the queries it answered (`partial`)."""
import argparse
import json
import sys
import time

import numpy as np
from vecs import read_vecs


IVF_PROBES = [1, 2, 4, 8, 16, 32, 64, 128, 256]


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
    ap.add_argument("--systems",
                    default="hnswlib,faiss-hnsw,faiss-ivf,lancedb-prefilter,lancedb-postfilter",
                    help="comma-separated subset of the peers to run")
    ap.add_argument("--seconds-max", type=float, default=20.0,
                    help="stop raising a system's parameter once a setting takes this long")
    a = ap.parse_args()
    base = read_vecs(a.base)
    queries = read_vecs(a.query)
    buckets = json.load(open(a.buckets))
    n, dim = base.shape
    efs = [int(x) for x in a.efs.split(",") if x]
    wanted = set(a.systems.split(","))

    systems = {}
    try:
        if "hnswlib" not in wanted:
            raise ImportError
        import hnswlib
        h = hnswlib.Index(space=a.space, dim=dim)
        h.init_index(max_elements=n, ef_construction=200, M=16, random_seed=100)
        h.add_items(base, np.arange(n))
        systems["hnswlib"] = h
    except ImportError:
        print(json.dumps({"system": "hnswlib", "skipped": "not installed"}), flush=True)
    try:
        import faiss
        metric = faiss.METRIC_INNER_PRODUCT if a.space == "cosine" else faiss.METRIC_L2
        if "faiss-hnsw" in wanted:
            f = faiss.IndexHNSWFlat(dim, 16, metric)
            f.hnsw.efConstruction = 200
            f.add(base)  # the real vectors are unit length: inner product = cosine
            systems["faiss-hnsw"] = f
        if "faiss-ivf" in wanted:
            # IVF-Flat with ~4 sqrt(n) lists (faiss's guideline), trained on up to 100k rows;
            # the sweep is over nprobe.
            nlist = max(16, int(4 * np.sqrt(n)))
            ivf = faiss.IndexIVFFlat(faiss.IndexFlat(dim, metric), dim, nlist, metric)
            train = base[np.random.default_rng(7).choice(n, min(n, 100_000), replace=False)]
            ivf.train(train)
            ivf.add(base)
            systems["faiss-ivf"] = ivf
        faiss.omp_set_num_threads(1)
    except ImportError:
        print(json.dumps({"system": "faiss", "skipped": "not installed"}), flush=True)

    lance = None
    try:
        if not wanted & {"lancedb-prefilter", "lancedb-postfilter"}:
            raise ImportError
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

    def run(one):
        """Answer the queries in order with `one(q) -> ids`, stopping early once the setting has
        taken --seconds-max (a slow setting is then measured on a prefix of the queries:
        QPS over those, recall against their ground truth; reported as `partial`)."""
        labels = []
        t0 = time.perf_counter()
        for q in queries:
            labels.append(one(q))
            if time.perf_counter() - t0 > a.seconds_max:
                break
        return labels, time.perf_counter() - t0

    def report(system, b, ef, labels, secs, **extra):
        r = recall(labels, b["gt"][: len(labels)], a.k)
        print(json.dumps({"system": system, "tag": b["tag"], "ef": ef, "recall": r,
                          "qps": len(labels) / secs, "queries": len(labels),
                          "partial": len(labels) < len(queries), **extra}), flush=True)
        return r

    for j, b in enumerate(buckets):
        print(f"peers: bucket {j + 1}/{len(buckets)} {b['tag']} ({len(b['ids'])} ids)",
              file=sys.stderr, flush=True)
        for mode in ("prefilter", "postfilter"):
            if lance is None or f"lancedb-{mode}" not in wanted:
                continue
            # Prefilter: the filter is applied before the vector search (exact over the matches
            # with `flat`, IVF_PQ probes + refine otherwise). Postfilter: the vector search
            # runs first and its results are filtered (fewer than k when the filter is rare).
            settings = [(f"nprobes={p}", p) for p in (10, 20, 50, 100)]
            if mode == "prefilter":
                settings = [("flat", None)] + settings
            for label, nprobes in settings:
                def one(q):
                    s = lance.search(q, vector_column_name="vector").metric(a.space)
                    s = s.where(f"b{j}", prefilter=mode == "prefilter")
                    s = s.select(["id", "_distance"]).limit(a.k)
                    if nprobes is None:
                        s = s.bypass_vector_index()
                    else:
                        s = s.nprobes(nprobes).refine_factor(5)
                    return s.to_arrow().column("id").to_pylist()
                labels, secs = run(one)
                r = report(f"lancedb-{mode}", b, nprobes or 0, labels, secs, setting=label)
                if nprobes is not None and done(r, secs):
                    break
        allowed = np.zeros(n, dtype=bool)
        allowed[np.asarray(b["ids"], dtype=np.int64)] = True
        gt = b["gt"]
        for name, index in systems.items():
            # "ef" is nprobe for the IVF index.
            for ef in (IVF_PROBES if name == "faiss-ivf" else efs):
                if name == "faiss-ivf":
                    import faiss
                    nprobe = ef
                    bitmap = np.packbits(allowed, bitorder="little")
                    sel = faiss.IDSelectorBitmap(n, faiss.swig_ptr(bitmap))
                    params = faiss.SearchParametersIVF(sel=sel, nprobe=nprobe)

                    def one(q):
                        _, idx = index.search(q.reshape(1, -1), a.k, params=params)
                        return [int(x) for x in idx[0] if x >= 0]
                elif name == "hnswlib":
                    index.set_ef(max(ef, a.k))

                    def one(q):
                        try:
                            l, _ = index.knn_query(q, k=a.k, num_threads=1,
                                                   filter=lambda i: bool(allowed[i]))
                            return list(l[0])
                        except RuntimeError:  # fewer than k allowed points found at this ef
                            return []
                else:
                    import faiss
                    bitmap = np.packbits(allowed, bitorder="little")
                    sel = faiss.IDSelectorBitmap(n, faiss.swig_ptr(bitmap))
                    params = faiss.SearchParametersHNSW(sel=sel, efSearch=max(ef, a.k))

                    def one(q):
                        _, idx = index.search(q.reshape(1, -1), a.k, params=params)
                        return [int(x) for x in idx[0] if x >= 0]
                labels, secs = run(one)
                r = report(name, b, ef, labels, secs)
                if done(r, secs):
                    break


if __name__ == "__main__":
    main()

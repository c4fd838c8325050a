"""Helpers shared by the peer scripts: texmex vector files, package versions, index sizes."""
import os

import numpy as np


def read_vecs(path, dtype=np.float32):
    """Rows of a .fvecs (float32) or .ivecs (int32) file as a contiguous 2-D array."""
    raw = np.fromfile(path, dtype=np.int32)
    dim = int(raw[0])
    rows = raw.reshape(-1, dim + 1)[:, 1:]
    return np.ascontiguousarray(rows.view(dtype) if dtype != np.int32 else rows)


def dir_bytes(path):
    """Bytes of every file under `path` (an index directory's size on disk)."""
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(path) for f in fs)


def peer_version(package):
    try:
        from importlib.metadata import version
        return version(package)
    except Exception:  # noqa: BLE001 - a missing version is not worth failing a benchmark
        return "?"


def knn_peer_inputs():
    """The command line every k-NN peer script takes (the same base, queries and ground truth
    as `strata bench knn`, HNSW M / ef_construction, build threads, the ef sweep, k) and the
    arrays it names: (args, base, queries, gt[:, :k])."""
    import argparse
    ap = argparse.ArgumentParser()
    ap.add_argument("--base", required=True)
    ap.add_argument("--query", required=True)
    ap.add_argument("--gt", required=True)
    ap.add_argument("--space", choices=["l2", "cosine", "ip"], default="l2")
    ap.add_argument("--M", type=int, default=16)
    ap.add_argument("--efc", type=int, default=200)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--efs", default="10,16,32,64,128,256")
    ap.add_argument("--k", type=int, default=10)
    a = ap.parse_args()
    base = read_vecs(a.base, np.float32)
    queries = read_vecs(a.query, np.float32)
    gt = read_vecs(a.gt, np.int32)[:, : a.k]
    return a, base, queries, gt

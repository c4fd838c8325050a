"""Helpers shared by the peer scripts: texmex vector files and package versions."""
import numpy as np


def read_vecs(path, dtype=np.float32):
    """Rows of a .fvecs (float32) or .ivecs (int32) file as a contiguous 2-D array."""
    raw = np.fromfile(path, dtype=np.int32)
    dim = int(raw[0])
    rows = raw.reshape(-1, dim + 1)[:, 1:]
    return np.ascontiguousarray(rows.view(dtype) if dtype != np.int32 else rows)


def peer_version(package):
    try:
        from importlib.metadata import version
        return version(package)
    except Exception:  # noqa: BLE001 - a missing version is not worth failing a benchmark
        return "?"

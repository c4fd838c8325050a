"""Strata: an embedded, disk-native store for hybrid retrieval (a boolean filter over an
inverted index combined with approximate nearest-neighbour search, in one query planner).

    import numpy as np, strata

    with strata.create("/tmp/db", dim=4, metric="l2", attrs=["ts"]) as db:
        db.put_many([b"a", b"b"], vectors=np.eye(2, 4, dtype=np.float32),
                    terms=[["lang:en"], ["lang:de"]], attrs={"ts": [1, 2]})
        keys, dists = db.search(np.array([1, 0, 0, 0], np.float32), k=1, filter="lang:en")

Distances (and `radius`) follow one convention across the library, the CLI and Python:
squared Euclidean for l2, 1 - cos for cosine, -dot for ip (as faiss and hnswlib report).
`Db.scan(...)` reads documents lazily in key order.

A collection can be split into a shard set (`shard_of`, `read_shard_set`, ...; built and served
on Ray by `strata.distributed`, which needs `pip install ray`).
Errors are `StrataError` or one of its subclasses (`InvalidInputError`, `CorruptionError`,
`LockedError`, `NotFoundError`, `AlreadyExistsError`, `ReadOnlyError`, `TimeoutError`,
`ClosedError`).
"""

from ._strata import (  # noqa: F401
    AlreadyExistsError,
    ClosedError,
    CorruptionError,
    Db,
    InvalidInputError,
    LockedError,
    NotFoundError,
    ReadOnlyError,
    StrataError,
    TimeoutError,
    build,
    create,
    new_build_id,
    open,
    read_shard_set,
    shard_of,
    shards_of,
    verify_shard_set,
    write_shard_set,
)

__all__ = [
    "AlreadyExistsError", "ClosedError", "CorruptionError", "Db", "InvalidInputError",
    "LockedError", "NotFoundError", "ReadOnlyError", "StrataError", "TimeoutError",
    "build", "create", "open",
    "shard_of", "shards_of", "new_build_id", "read_shard_set", "write_shard_set", "verify_shard_set",
]

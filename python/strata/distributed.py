"""Shard sets on Ray: build a collection as N shards in parallel tasks, serve each shard from an
actor holding an embedded database, fan queries out and merge them exactly.

    import ray, strata.distributed as sd

    ray.init()
    sd.build({"vectors": x, "keys": keys, "terms": terms}, "/data/posts", shards=8, metric="cosine")
    with sd.ShardedDb("/data/posts") as db:
        keys, dists = db.search(q, k=10, filter="lang:en")

A key belongs to shard ``strata.shard_of(key, n)`` (a stable hash, ``docs/format.md``, "Shard set");
the set's ``SHARDS.json`` is written last, atomically, once every shard is built.

**Recall across shards.** The global top-k is the union over shards of each shard's part of it,
and each shard returns its own top-k (k' = k: a shard never holds more than k of the global
top-k), so an exact search per shard gives exactly the single-database answer (ties broken by
key, as the engine breaks them). With approximate shards, every global top-k item a shard misses
is one of the items of its own top-k it misses, so the expected number of global misses is at
most the sum over the N shards of theirs: at a per-shard recall target r, the expected recall is
at least 1 - N (1 - r). ``search`` therefore asks every shard for r = 1 - (1 - R) / N, which makes
the bound equal the target R the caller asked for (R = 1 stays exact). The bound is pessimistic
(a shard's misses fall mostly on its far ranks, rarely on its share of the global top-k):
``ShardedDb.calibrate(sample_queries)`` measures the set's recall at lower per-shard targets and
keeps the cheapest that reaches R with a margin (docs/scaling.md has both, measured).
"""

from __future__ import annotations

import os
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from . import _strata

try:  # Ray is an optional dependency: only this module needs it.
    import ray
    from ray.exceptions import GetTimeoutError, RayActorError, RayTaskError
except ImportError as e:  # pragma: no cover - exercised only without Ray
    raise ImportError("strata.distributed needs Ray: pip install 'ray>=2.9'") from e


class ShardError(_strata.StrataError):
    """One shard failed (its actor died, its task raised, or it timed out).

    ``shard`` is its index, ``path`` its directory, ``cause`` the underlying exception."""

    def __init__(self, shard: int, path: str, cause: BaseException):
        super().__init__(f"shard {shard} ({path}) failed: {type(cause).__name__}: {cause}")
        self.shard = shard
        self.path = path
        self.cause = cause


# ---------------------------------------------------------------------------------------------
# Inputs


def _read_vectors(path: str) -> np.ndarray:
    """A .npy (memory-mapped) or .fvecs (memory-mapped) file as an (n, dim) float32 array view."""
    if path.endswith(".npy"):
        return np.load(path, mmap_mode="r")
    if path.endswith(".fvecs"):
        raw = np.memmap(path, dtype=np.int32, mode="r")
        if raw.size == 0:
            return np.zeros((0, 0), np.float32)
        dim = int(raw[0])
        if dim <= 0 or raw.size % (dim + 1):
            raise _strata.InvalidInputError(f"{path}: not an .fvecs file (dimension {dim})")
        rows = raw.reshape(-1, dim + 1)
        if not np.all(rows[:, 0] == dim):
            raise _strata.InvalidInputError(f"{path}: rows of different dimensions")
        return rows[:, 1:].view(np.float32)
    raise _strata.InvalidInputError(f"{path}: expected a .npy or .fvecs file")


def _read_parquet(path: str) -> Dict[str, Any]:
    """A Parquet file as columns (needs pyarrow), by ``strata.arrow.columns``' conventions:
    ``vector`` (required), ``key``, ``terms``, ``value``, integer columns as attributes."""
    try:
        import pyarrow.parquet as pq

        from .arrow import columns
    except ImportError as e:
        raise _strata.InvalidInputError(f"{path}: reading Parquet needs pyarrow") from e
    cols = columns(pq.read_table(path))
    if "attrs" in cols:
        cols["attrs"] = {k: np.asarray(v, np.int64) for k, v in cols["attrs"].items()}
    return cols


def _columns(dataset: Union[str, os.PathLike, Dict[str, Any]]) -> Dict[str, Any]:
    """The dataset as columns: vectors (an array or a mapped file), keys, terms, attrs, values."""
    if isinstance(dataset, (str, os.PathLike)):
        path = os.fspath(dataset)
        dataset = _read_parquet(path) if path.endswith(".parquet") else {"vectors": path}
    if not isinstance(dataset, dict) or "vectors" not in dataset:
        raise _strata.InvalidInputError(
            "dataset is a .npy/.fvecs path or a dict with 'vectors' (and optional 'keys', "
            "'terms', 'attrs', 'values')"
        )
    cols = dict(dataset)
    if isinstance(cols["vectors"], (str, os.PathLike)):
        cols["vectors"] = _read_vectors(os.fspath(cols["vectors"]))
    n = len(cols["vectors"])
    if cols.get("keys") is None:
        cols["keys"] = [str(i) for i in range(n)]  # as strata.build's default
    for name in ("keys", "terms", "values"):
        if cols.get(name) is not None and len(cols[name]) != n:
            raise _strata.InvalidInputError(f"{name} has {len(cols[name])} rows, vectors {n}")
    for name, col in (cols.get("attrs") or {}).items():
        if len(col) != n:
            raise _strata.InvalidInputError(f"attrs[{name!r}] has {len(col)} rows, vectors {n}")
    return cols


def _take(col: Any, rows: np.ndarray) -> Any:
    if col is None:
        return None
    if isinstance(col, np.ndarray):
        return col[rows]
    return [col[i] for i in rows]


# ---------------------------------------------------------------------------------------------
# Build


@ray.remote
def _build_shard(dataset: Any, out: str, index: int, n: int, metric: str,
                 memory_budget: Optional[int], segment_docs_max: Optional[int]) -> Dict[str, Any]:
    cols = _columns(dataset)
    rows = np.flatnonzero(_strata.shards_of(list(cols["keys"]), n) == index)
    path = f"shard-{index:04d}"
    attrs = cols.get("attrs")
    report = _strata.build(
        os.path.join(out, path),
        np.ascontiguousarray(cols["vectors"][rows], dtype=np.float32),
        keys=_take(cols["keys"], rows),
        terms=_take(cols.get("terms"), rows),
        attrs=None if attrs is None else {k: [int(x) for x in _take(v, rows)] for k, v in attrs.items()},
        values=_take(cols.get("values"), rows),
        metric=metric,
        segment_docs_max=segment_docs_max,
        memory_budget=memory_budget,
    )
    return {"path": path, "documents": report["documents"], "build_id": _strata.new_build_id(path),
            "dim": int(cols["vectors"].shape[1]), "attrs": sorted(attrs or {})}


def build(dataset: Union[str, os.PathLike, Dict[str, Any]], out: Union[str, os.PathLike],
          shards: int, metric: str = "l2", memory_budget: Optional[int] = None,
          segment_docs_max: Optional[int] = None) -> Dict[str, Any]:
    """Build ``out`` as a shard set of ``shards`` databases, one Ray task per shard.

    ``dataset``: a ``.npy``/``.fvecs`` path (keys are row numbers), a ``.parquet`` path (columns
    ``vector``, optional ``key``, ``terms``, ``value``, integer columns as attributes; needs
    pyarrow; each task reads the file and keeps its rows), or a dict with ``vectors``
    (an (n, dim) array or such a path) and optional ``keys``, ``terms``, ``attrs`` ({name:
    ints}) and ``values`` columns. A path is memory-mapped by each task, which copies only its
    own rows; arrays are shared through Ray's object store. ``memory_budget`` (bytes) sizes
    each task's segments (as ``strata build --memory-budget``) and is reserved from Ray's
    ``memory`` resource, so tasks that do not fit wait. ``out`` must not exist; the set's file
    is written once every shard is built, and nothing is left behind on failure. Returns the
    set as ``strata.read_shard_set`` reads it.
    """
    out = os.fspath(out)
    if os.path.exists(out):
        raise _strata.AlreadyExistsError(f"{out} already exists")
    if not 1 <= shards <= 65536:
        raise _strata.InvalidInputError(f"shards {shards} outside 1..=65536")
    if isinstance(dataset, dict) and not isinstance(dataset.get("vectors"), (str, os.PathLike)):
        _columns(dataset)  # check the columns here, before any task runs
    if isinstance(dataset, (str, os.PathLike)) and not os.path.exists(dataset):
        raise _strata.NotFoundError(f"{os.fspath(dataset)}: no such file")
    ref = ray.put(dataset)
    os.makedirs(out)
    opts = {"memory": memory_budget} if memory_budget else {}
    tasks = [
        _build_shard.options(**opts).remote(ref, out, i, shards, metric, memory_budget,
                                            segment_docs_max)
        for i in range(shards)
    ]
    try:
        results = []
        for i, t in enumerate(tasks):
            try:
                results.append(ray.get(t))
            except (RayTaskError, RayActorError) as e:
                raise ShardError(i, os.path.join(out, f"shard-{i:04d}"), e) from e
    except BaseException:
        for t in tasks:
            ray.cancel(t, force=True)
        import shutil

        shutil.rmtree(out, ignore_errors=True)
        raise
    first = results[0]
    _strata.write_shard_set(out, first["dim"], metric, shards=results, attrs=first["attrs"])
    return _strata.read_shard_set(out)


# ---------------------------------------------------------------------------------------------
# Serving


@ray.remote
class ShardServer:
    """One shard's embedded database: read-only unless ``writable`` (then it takes the shard's
    lock, and puts and deletes routed to the shard go through it)."""

    def __init__(self, path: str, index: int, writable: bool = False):
        self.index = index
        self.db = _strata.open(path, read_only=not writable)

    def search(self, q: np.ndarray, k: int, filter: Optional[str], recall: float, exact: bool,
               radius: Optional[float]) -> Any:
        return self.db.search(q, k=k, filter=filter, recall=recall, exact=exact, radius=radius)

    def get(self, key: Union[bytes, str]) -> Optional[Dict[str, Any]]:
        return self.db.get(key)

    def put_many(self, keys: List[Any], vectors: Optional[np.ndarray], terms: Any, attrs: Any,
                 values: Any) -> int:
        self.db.put_many(keys, vectors=vectors, terms=terms, attrs=attrs, values=values)
        return len(keys)

    def delete(self, key: Union[bytes, str]) -> None:
        self.db.delete(key)

    def flush(self) -> None:
        self.db.flush()

    def ping(self) -> int:
        return self.index

    def count(self) -> int:
        """Live documents (a keys-only scan)."""
        return sum(1 for _ in self.db.scan(keys_only=True))

    def close(self) -> None:
        self.db.close()


def _merge(parts: Sequence[Tuple[List[bytes], np.ndarray]], k: int) -> Tuple[List[bytes], np.ndarray]:
    """The k nearest of the shards' answers, by (distance, key) as the engine orders them."""
    keys = [key for p in parts for key in p[0]]
    if not keys:
        return [], np.zeros(0, np.float32)
    dists = np.concatenate([np.asarray(p[1], np.float32) for p in parts])
    order = sorted(range(len(keys)), key=lambda i: (dists[i], keys[i]))[:k]
    return [keys[i] for i in order], dists[order]


def _cal_key(k: int, recall: float, filter: Any) -> Tuple[int, float, Optional[str]]:
    """What a calibrated per-shard target is kept under (a dict filter by its repr)."""
    return (k, recall, filter if isinstance(filter, (str, type(None))) else repr(filter))


class ShardedDb:
    """A shard set served by one ``ShardServer`` actor per shard (started here).

    ``search`` fans a query (or a 2-D batch) out to every shard and merges exactly; a shard
    that fails raises ``ShardError`` naming it, or, with ``partial=True``, the answer of the
    other shards comes back with the failed shards listed. With ``writable=True`` the actors
    hold the shards' write locks and ``put``/``put_many``/``delete`` go to the owning shard.
    """

    def __init__(self, path: Union[str, os.PathLike], writable: bool = False,
                 actor_options: Optional[Dict[str, Any]] = None):
        self.path = os.fspath(path)
        self.set = _strata.read_shard_set(self.path)
        self.n = self.set["n"]
        self.writable = writable
        self._calibrated: Dict[Tuple[int, float, Optional[str]], float] = {}
        opts = {"num_cpus": 0, "max_restarts": 0, **(actor_options or {})}
        self.dirs = [os.path.join(self.path, s["path"]) for s in self.set["shards"]]
        self.actors = [
            ShardServer.options(**opts).remote(d, i, writable) for i, d in enumerate(self.dirs)
        ]
        # Wait until every shard is open: an unopenable shard is an error naming it now.
        self._gather([a.ping.remote() for a in self.actors], partial=False, timeout=None)

    def _gather(self, refs: Sequence[Any], partial: bool, timeout: Optional[float]
                ) -> Tuple[List[Any], List[int]]:
        out, missing = [], []
        for i, r in enumerate(refs):
            try:
                out.append(ray.get(r, timeout=timeout))
            except (RayActorError, RayTaskError, GetTimeoutError) as e:
                if not partial:
                    for rest in refs[i + 1:]:
                        ray.cancel(rest)
                    raise ShardError(i, self.dirs[i], e) from e
                out.append(None)
                missing.append(i)
        return out, missing

    def shard_recall(self, recall: float, k: int = 10, filter: Optional[str] = None) -> float:
        """The per-shard recall target for a set-level ``recall``: the one ``calibrate``
        measured for (k, recall, filter), else the bound ``1 - (1 - recall) / N``."""
        if not 0.0 <= recall <= 1.0:
            raise _strata.InvalidInputError(f"recall {recall} is outside 0..=1")
        return self._calibrated.get(_cal_key(k, recall, filter), 1.0 - (1.0 - recall) / self.n)

    def calibrate(self, queries: Any, k: int = 10, recall: float = 0.95,
                  filter: Optional[str] = None, z: float = 1.645) -> Dict[str, Any]:
        """Measure, on sample ``queries`` (a 2-D array, e.g. a query log), the set's recall@k
        at per-shard targets from 0.5 up to the bound, against the exact fan-out, and keep the
        lowest whose recall minus ``z`` standard errors reaches ``recall`` (the bound if none
        does). Later searches with the same (k, recall, filter) use it. The bound assumes a
        shard's misses may all fall on its share of the global top-k; measured, they fall
        mostly on its far ranks, so the bound overshoots (docs/scaling.md)."""
        qs = np.ascontiguousarray(queries, dtype=np.float32)
        if qs.ndim != 2 or len(qs) < 2:
            raise _strata.InvalidInputError("calibrate needs a 2-D batch of at least 2 queries")
        bound = 1.0 - (1.0 - recall) / self.n
        truth = self.search(qs, k=k, filter=filter, exact=True)
        levels = []
        chosen = bound
        for c in sorted({0.5, 0.6, 0.7, 0.8, 0.85, 0.9, recall, bound}):
            if c > bound:
                continue
            got = self.search(qs, k=k, filter=filter, shard_recall=c)
            per = np.array([len(set(g[0]) & set(t[0])) / max(1, len(t[0]))
                            for g, t in zip(got, truth)])
            mean = float(per.mean())
            lower = mean - z * float(per.std(ddof=1)) / np.sqrt(len(per))
            levels.append({"shard_recall": c, "recall": mean, "lower": lower})
            if lower >= recall:
                chosen = c
                break
        self._calibrated[_cal_key(k, recall, filter)] = chosen
        return {"shard_recall": chosen, "bound": bound, "levels": levels}

    def search(self, q: Any, k: int = 10, filter: Optional[str] = None, recall: float = 0.95,
               exact: bool = False, radius: Optional[float] = None, partial: bool = False,
               timeout: Optional[float] = None, shard_recall: Optional[float] = None) -> Any:
        """As ``Db.search`` over the whole set. With ``partial=True`` the result is
        ``(answer, missing)``: the merged answer of the shards that answered and the indices
        of those that failed (or passed ``timeout`` seconds). ``shard_recall`` (expert)
        replaces the derived per-shard target, and with it the guarantee."""
        q = np.ascontiguousarray(q, dtype=np.float32)
        r = self.shard_recall(recall, k, filter) if shard_recall is None else shard_recall
        refs = [a.search.remote(q, k, filter, r, exact, radius) for a in self.actors]
        parts, missing = self._gather(refs, partial, timeout)
        ok = [p for p in parts if p is not None]
        if q.ndim == 1:
            answer = _merge(ok, k)
        else:
            answer = [_merge([p[row] for p in ok], k) for row in range(q.shape[0])]
        return (answer, missing) if partial else answer

    def _owner(self, key: Union[bytes, str]) -> int:
        return _strata.shard_of(key, self.n)

    def get(self, key: Union[bytes, str]) -> Optional[Dict[str, Any]]:
        i = self._owner(key)
        return self._one(i, self.actors[i].get.remote(key))

    def _one(self, i: int, ref: Any) -> Any:
        try:
            return ray.get(ref)
        except (RayActorError, RayTaskError) as e:
            raise ShardError(i, self.dirs[i], e) from e

    def put(self, key: Union[bytes, str], vector: Any = None, terms: Optional[Sequence[str]] = None,
            attrs: Optional[Dict[str, int]] = None, value: Any = None) -> None:
        """Write one document through its shard's writer (``writable=True``)."""
        vectors = None if vector is None else np.asarray([vector], np.float32)
        self.put_many([key], vectors=vectors, terms=None if terms is None else [list(terms)],
                      attrs=None if attrs is None else {a: [v] for a, v in attrs.items()},
                      values=None if value is None else [value])

    def put_many(self, keys: Sequence[Any], vectors: Any = None, terms: Any = None,
                 attrs: Optional[Dict[str, Sequence[int]]] = None, values: Any = None) -> None:
        """Write documents, each through its shard's writer. Atomic per shard (one batch
        each), not across shards."""
        owners = _strata.shards_of(list(keys), self.n)
        vectors = None if vectors is None else np.asarray(vectors, np.float32)
        refs = {}
        for i in np.unique(owners):
            rows = np.flatnonzero(owners == i)
            refs[int(i)] = self.actors[int(i)].put_many.remote(
                [keys[j] for j in rows], _take(vectors, rows), _take(terms, rows),
                None if attrs is None else {a: [int(attrs[a][j]) for j in rows] for a in attrs},
                _take(values, rows))
        for i, ref in refs.items():
            self._one(i, ref)

    def delete(self, key: Union[bytes, str]) -> None:
        i = self._owner(key)
        self._one(i, self.actors[i].delete.remote(key))

    def flush(self) -> None:
        self._gather([a.flush.remote() for a in self.actors], False, None)

    def count(self) -> int:
        """Live documents in the whole set."""
        return sum(self._gather([a.count.remote() for a in self.actors], False, None)[0])

    def close(self) -> None:
        """Close every shard's database and stop the actors."""
        for a in self.actors:
            try:
                ray.get(a.close.remote())
            except (RayActorError, RayTaskError):
                pass
            ray.kill(a)
        self.actors = []

    def __enter__(self) -> "ShardedDb":
        return self

    def __exit__(self, *exc: Any) -> bool:
        self.close()
        return False

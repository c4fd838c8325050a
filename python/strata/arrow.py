"""Arrow in and out (needs ``pyarrow``): tables as the columns ``put_many`` and ``build`` take,
and search results as tables.

    import pyarrow as pa, strata, strata.arrow as sa

    table = pa.table({"vector": pa.FixedSizeListArray.from_arrays(pa.array(x.ravel()), dim),
                      "key": keys, "terms": terms, "ts": ts})
    sa.build(path, table, metric="cosine")            # or: sa.put_table(db, table)
    hits = sa.to_arrow(*db.search(q, k=10))           # key: binary, distance: float32

Column conventions (each name can be changed): ``vector`` a fixed-size (or equal-length) list of
floats, required; ``key`` strings or bytes (default: row numbers); ``terms`` a list of strings;
``value`` strings or bytes; every other integer column is an attribute.
"""

from __future__ import annotations

import os
from typing import Any, Dict, List, Optional, Sequence, Union

import numpy as np

from . import _strata

try:
    import pyarrow as pa
except ImportError as e:  # pragma: no cover - only without pyarrow
    raise ImportError("strata.arrow needs pyarrow: pip install pyarrow") from e


def columns(table: "pa.Table", vector: str = "vector", key: Optional[str] = "key",
            terms: Optional[str] = "terms", value: Optional[str] = "value",
            attrs: Optional[Sequence[str]] = None) -> Dict[str, Any]:
    """The table as keyword arguments of ``Db.put_many`` / ``strata.build``: ``vectors`` as an
    (n, dim) float32 array (the list column's values without a copy when they are float32
    already), ``keys``, ``terms``, ``values``, ``attrs`` ({name: int64 array}: the named
    columns, or by default every other integer column)."""
    names = table.column_names
    if vector not in names:
        raise _strata.InvalidInputError(f"no {vector!r} column (columns: {names})")
    vec = table.column(vector).combine_chunks()
    if not (pa.types.is_fixed_size_list(vec.type) or pa.types.is_list(vec.type)
            or pa.types.is_large_list(vec.type)):
        raise _strata.InvalidInputError(f"column {vector!r} is {vec.type}, not a list of floats")
    if vec.null_count:
        raise _strata.InvalidInputError(f"column {vector!r} has {vec.null_count} null rows")
    n = len(vec)
    flat = vec.flatten().to_numpy(zero_copy_only=False)
    if flat.dtype != np.float32:
        flat = flat.astype(np.float32)
    if n and flat.size % n:
        raise _strata.InvalidInputError(f"column {vector!r} has rows of different lengths")
    dim = flat.size // n if n else 0
    if n and not pa.types.is_fixed_size_list(vec.type):
        lengths = vec.value_lengths().to_numpy(zero_copy_only=False)
        if not np.all(lengths == dim):
            raise _strata.InvalidInputError(f"column {vector!r} has rows of different lengths")
    out: Dict[str, Any] = {"vectors": flat.reshape(n, dim)}
    used = {vector}
    for arg, col in (("keys", key), ("terms", terms), ("values", value)):
        if col is not None and col in names:
            out[arg] = table.column(col).to_pylist()
            used.add(col)
    if attrs is None:
        attrs = [c for c in names if c not in used and pa.types.is_integer(table.schema.field(c).type)]
    if attrs:
        out["attrs"] = {a: table.column(a).to_numpy(zero_copy_only=False).astype(np.int64).tolist()
                        for a in attrs}
    return out


def put_table(db: "_strata.Db", table: "pa.Table", **names: Any) -> int:
    """Write every row of ``table`` as one atomic batch (``Db.put_many``); returns the row
    count. ``names`` renames the columns (see ``columns``)."""
    cols = columns(table, **names)
    if "keys" not in cols:
        raise _strata.InvalidInputError("put_table needs a key column")
    db.put_many(cols.pop("keys"), **cols)
    return len(table)


def build(path: Union[str, os.PathLike], table: "pa.Table", metric: str = "l2",
          **options: Any) -> Dict[str, Any]:
    """``strata.build`` from a table (keys default to row numbers); ``options`` are ``build``'s
    (``memory_budget``, ``progress``, ...) and the column names of ``columns``."""
    names = {k: options.pop(k) for k in ("vector", "key", "terms", "value", "attrs")
             if k in options}
    return _strata.build(path, metric=metric, **columns(table, **names), **options)


def to_arrow(keys: List[bytes], distances: np.ndarray) -> "pa.Table":
    """A search result as a table: ``key`` (binary), ``distance`` (float32)."""
    return pa.table({"key": pa.array(keys, pa.binary()),
                     "distance": pa.array(np.asarray(distances, np.float32))})

"""Type stubs of the compiled module `strata._strata` (see `src/lib.rs`)."""

from os import PathLike
from types import TracebackType
from typing import Any, Callable, Iterator, Dict, List, Mapping, Optional, Sequence, Tuple, Type, Union

import numpy as np
import numpy.typing as npt

Key = Union[bytes, str]

class StrataError(Exception): ...
class InvalidInputError(StrataError): ...
class CorruptionError(StrataError): ...
class LockedError(StrataError): ...
class NotFoundError(StrataError): ...
class AlreadyExistsError(StrataError): ...
class ReadOnlyError(StrataError): ...
class TimeoutError(StrataError): ...
class ClosedError(StrataError): ...

class ScanIter(Iterator[Any]):
    """Dicts in key order (or keys as bytes with keys_only=True), read lazily."""

    def __iter__(self) -> "ScanIter": ...
    def __next__(self) -> Any: ...

class Db:
    @property
    def read_only(self) -> bool: ...
    def put(
        self,
        key: Key,
        vector: Optional[npt.ArrayLike] = None,
        terms: Optional[Sequence[str]] = None,
        attrs: Optional[Mapping[str, int]] = None,
        value: Optional[Key] = None,
    ) -> None: ...
    def put_many(
        self,
        keys: Sequence[Key],
        vectors: Optional[npt.ArrayLike] = None,
        terms: Optional[Sequence[Sequence[str]]] = None,
        attrs: Optional[Mapping[str, Sequence[int]]] = None,
        values: Optional[Sequence[Key]] = None,
    ) -> None: ...
    def delete(self, key: Key) -> None: ...
    def get(self, key: Key) -> Optional[Dict[str, Any]]: ...
    def scan(
        self,
        prefix: Optional[Key] = None,
        start: Optional[Key] = None,
        end: Optional[Key] = None,
        reverse: bool = False,
        keys_only: bool = False,
    ) -> "ScanIter": ...
    def search(
        self,
        q: npt.ArrayLike,
        k: int = 10,
        filter: Optional[str] = None,
        recall: float = 0.95,
        exact: bool = False,
        radius: Optional[float] = None,
    ) -> Union[
        Tuple[List[bytes], np.ndarray], List[Tuple[List[bytes], np.ndarray]]
    ]: ...
    def flush(self) -> None: ...
    def compact(self) -> bool: ...
    def verify(self) -> None: ...
    def schema(self) -> Dict[str, Any]: ...
    def close(self) -> None: ...
    def __enter__(self) -> "Db": ...
    def __exit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> bool: ...

def create(
    path: Union[str, PathLike[str]],
    dim: int,
    metric: str = "l2",
    attrs: Optional[Sequence[str]] = None,
) -> Db: ...
def open(path: Union[str, PathLike[str]], read_only: bool = False) -> Db: ...
def build(
    path: Union[str, PathLike[str]],
    vectors: npt.ArrayLike,
    keys: Optional[Sequence[Key]] = None,
    terms: Optional[Sequence[Sequence[str]]] = None,
    attrs: Optional[Mapping[str, Sequence[int]]] = None,
    values: Optional[Sequence[Key]] = None,
    metric: str = "l2",
    segment_docs_max: Optional[int] = None,
    progress: Optional[Callable[[str, int, int], Any]] = None,
) -> Dict[str, Any]: ...

//! `strata._strata`: the Python face of the engine (the package `strata` re-exports it).
//!
//! A thin layer: every call converts its Python arguments into the engine's types, releases
//! the GIL while the engine works, and maps the engine's error kinds onto Python exceptions
//! (`StrataError` and its subclasses). Vectors come in as NumPy arrays (converted by NumPy only
//! when not already C-contiguous float32, then copied once into the engine's documents or
//! queries) and results go out as NumPy arrays.

/// mimalloc for the extension's own (Rust) allocations, as in the `strata` binary: writers
/// allocate each document and the engine's flusher thread frees it, which the system malloc
/// serialises on its arena locks (`docs/benchmarks.md`, "Store puts"). Python's objects keep
/// Python's allocator; memory crosses the boundary only as NumPy arrays that own a Rust `Vec`,
/// which Rust frees with the allocator that made it.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::collections::BTreeMap;
use std::sync::Arc;

use numpy::{PyArray1, PyReadonlyArray1, PyReadonlyArray2, PyUntypedArrayMethods};
use pyo3::create_exception;
use pyo3::exceptions::PyException;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList};
use slot::Slot;

create_exception!(
    strata,
    StrataError,
    PyException,
    "Any error of the Strata engine."
);
create_exception!(
    strata,
    InvalidInputError,
    StrataError,
    "Bad input: a key, vector, term, attribute, filter or parameter the engine refuses."
);
create_exception!(
    strata,
    CorruptionError,
    StrataError,
    "A file of the database failed its checks (checksum, format, or a missing file)."
);
create_exception!(
    strata,
    LockedError,
    StrataError,
    "The database is open in another handle or process."
);
create_exception!(
    strata,
    NotFoundError,
    StrataError,
    "No database at the path (create one with strata.create)."
);
create_exception!(
    strata,
    AlreadyExistsError,
    StrataError,
    "strata.create on a path that already holds a database."
);
create_exception!(
    strata,
    ReadOnlyError,
    StrataError,
    "A write on a database opened with read_only=True."
);
create_exception!(
    strata,
    TimeoutError,
    StrataError,
    "A query ran past its timeout."
);
create_exception!(strata, ClosedError, StrataError, "The database was closed.");

/// The engine's error as the Python exception of its kind (`strata::Error::kind`; a shard's
/// error as the kind of what went wrong in the shard, its message naming the shard).
fn to_py(e: strata::Error) -> PyErr {
    use strata::ErrorKind as K;
    let msg = e.to_string();
    match e.kind() {
        K::InvalidInput => InvalidInputError::new_err(msg),
        K::Corruption => CorruptionError::new_err(msg),
        K::Locked => LockedError::new_err(msg),
        K::NotFound => NotFoundError::new_err(msg),
        K::AlreadyExists => AlreadyExistsError::new_err(msg),
        K::ReadOnly => ReadOnlyError::new_err(msg),
        K::Timeout => TimeoutError::new_err(msg),
        _ => StrataError::new_err(msg),
    }
}

/// A key given as `bytes` or `str` (UTF-8).
fn key_of(key: &Bound<'_, PyAny>) -> PyResult<Vec<u8>> {
    bytes_of(key, "a key")
}

/// `what` (a key or a value) given as `bytes` or `str` (UTF-8).
fn bytes_of(v: &Bound<'_, PyAny>, what: &str) -> PyResult<Vec<u8>> {
    if let Ok(b) = v.downcast::<PyBytes>() {
        return Ok(b.as_bytes().to_vec());
    }
    if let Ok(s) = v.extract::<String>() {
        return Ok(s.into_bytes());
    }
    Err(InvalidInputError::new_err(format!(
        "{what} is bytes or str"
    )))
}

/// A vector given as anything NumPy turns into a 1-D float32 array.
fn vector_of(py: Python<'_>, v: &Bound<'_, PyAny>) -> PyResult<Vec<f32>> {
    row_of(&as_f32(py, v)?)
}

/// The elements of an array already converted by [`as_f32`], which must be 1-D.
fn row_of(arr: &Bound<'_, PyAny>) -> PyResult<Vec<f32>> {
    let arr: PyReadonlyArray1<'_, f32> = arr
        .extract()
        .map_err(|_| InvalidInputError::new_err("a vector is one-dimensional".to_string()))?;
    Ok(arr.as_array().iter().copied().collect())
}

/// `numpy.ascontiguousarray(v, dtype=float32)`: in place when it already is one.
fn as_f32<'py>(py: Python<'py>, v: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
    let np = py.import("numpy")?;
    let kw = PyDict::new(py);
    kw.set_item("dtype", np.getattr("float32")?)?;
    np.call_method("ascontiguousarray", (v,), Some(&kw))
}

/// A document as a dict: key, value, vector (NumPy float32 or None), terms, attrs.
fn doc_dict<'py>(py: Python<'py>, d: &strata::Document) -> PyResult<Bound<'py, PyDict>> {
    let out = PyDict::new(py);
    out.set_item("key", PyBytes::new(py, &d.key))?;
    out.set_item("value", PyBytes::new(py, &d.value))?;
    match &d.vector {
        Some(v) => out.set_item("vector", PyArray1::from_slice(py, v))?,
        None => out.set_item("vector", py.None())?,
    }
    out.set_item("terms", PyList::new(py, &d.terms)?)?;
    let attrs = PyDict::new(py);
    for (k, v) in &d.attrs {
        attrs.set_item(k, v)?;
    }
    out.set_item("attrs", attrs)?;
    Ok(out)
}

/// An open database. Use `strata.create` / `strata.open`; as a context manager it closes on
/// exit. Every method releases the GIL while the engine works.
#[pyclass(module = "strata._strata")]
struct Db {
    inner: Slot,
}

mod slot {
    //! The handle's slot: `None` once closed (a `Mutex<Option<Arc<Db>>>` from std — a call
    //! clones the `Arc` out and releases the lock before the engine runs).
    use std::sync::{Arc, Mutex};

    pub struct Slot(Mutex<Option<Arc<strata::Db>>>);

    impl Slot {
        pub fn new(db: strata::Db) -> Slot {
            Slot(Mutex::new(Some(Arc::new(db))))
        }

        pub fn get(&self) -> Option<Arc<strata::Db>> {
            match self.0.lock() {
                Ok(g) => g.clone(),
                Err(p) => p.into_inner().clone(),
            }
        }

        pub fn take(&self) -> Option<Arc<strata::Db>> {
            match self.0.lock() {
                Ok(mut g) => g.take(),
                Err(p) => p.into_inner().take(),
            }
        }
    }
}

impl Db {
    fn db(&self) -> PyResult<Arc<strata::Db>> {
        self.inner
            .get()
            .ok_or_else(|| ClosedError::new_err("the database is closed".to_string()))
    }
}

/// Documents from columns: `keys` (n), `vectors` an (n, dim) array or None, `terms` n lists,
/// `attrs` {name: n integers}, `values` n bytes/str; every column's length is checked.
fn documents(
    py: Python<'_>,
    keys: &[Bound<'_, PyAny>],
    vectors: Option<&Bound<'_, PyAny>>,
    terms: Option<Vec<Vec<String>>>,
    attrs: Option<BTreeMap<String, Vec<i64>>>,
    values: Option<Vec<Bound<'_, PyAny>>>,
) -> PyResult<Vec<strata::Document>> {
    let n = keys.len();
    let count = |what: &str, len: usize| -> PyResult<()> {
        if len == n {
            Ok(())
        } else {
            Err(InvalidInputError::new_err(format!(
                "{what} has {len} entries for {n} keys"
            )))
        }
    };
    let vecs = match vectors {
        Some(v) if !v.is_none() => {
            let arr = as_f32(py, v)?;
            let arr: PyReadonlyArray2<'_, f32> = arr.extract().map_err(|_| {
                InvalidInputError::new_err("vectors is a two-dimensional array".to_string())
            })?;
            count("vectors", arr.shape().first().copied().unwrap_or(0))?;
            Some(
                arr.as_array()
                    .rows()
                    .into_iter()
                    .map(|r| r.iter().copied().collect::<Vec<f32>>())
                    .collect::<Vec<_>>(),
            )
        }
        _ => None,
    };
    if let Some(t) = &terms {
        count("terms", t.len())?;
    }
    if let Some(a) = &attrs {
        for (name, col) in a {
            count(&format!("attrs[{name:?}]"), col.len())?;
        }
    }
    if let Some(v) = &values {
        count("values", v.len())?;
    }
    // Columns are moved into the documents row by row (lengths checked above).
    let mut vecs = vecs.map(Vec::into_iter);
    let mut terms = terms.map(Vec::into_iter);
    let mut docs = Vec::with_capacity(n);
    for (i, key) in keys.iter().enumerate() {
        let value = match values.as_ref().and_then(|v| v.get(i)) {
            Some(v) => bytes_of(v, "a value")?,
            None => Vec::new(),
        };
        docs.push(strata::Document {
            key: key_of(key)?,
            value,
            vector: vecs.as_mut().and_then(Iterator::next),
            terms: terms.as_mut().and_then(Iterator::next).unwrap_or_default(),
            attrs: attrs
                .as_ref()
                .map(|a| {
                    a.iter()
                        .filter_map(|(name, col)| Some((name.clone(), *col.get(i)?)))
                        .collect()
                })
                .unwrap_or_default(),
        });
    }
    Ok(docs)
}

#[pymethods]
impl Db {
    /// Store `key` (bytes or str) with an optional vector, terms, integer attributes and value;
    /// replaces what was stored under the key.
    #[pyo3(signature = (key, vector=None, terms=None, attrs=None, value=None))]
    fn put(
        &self,
        py: Python<'_>,
        key: &Bound<'_, PyAny>,
        vector: Option<&Bound<'_, PyAny>>,
        terms: Option<Vec<String>>,
        attrs: Option<BTreeMap<String, i64>>,
        value: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        let value = match value {
            None => Vec::new(),
            Some(v) if v.is_none() => Vec::new(),
            Some(v) => bytes_of(v, "a value")?,
        };
        let doc = strata::Document {
            key: key_of(key)?,
            value,
            vector: match vector {
                Some(v) if !v.is_none() => Some(vector_of(py, v)?),
                _ => None,
            },
            terms: terms.unwrap_or_default(),
            attrs: attrs.unwrap_or_default(),
        };
        let db = self.db()?;
        py.allow_threads(|| db.put(doc)).map_err(to_py)
    }

    /// Store many documents in one atomic batch: `keys` (n), `vectors` an (n, dim) array (or
    /// None), `terms` a list of n lists, `attrs` {name: n integers}, `values` n bytes.
    #[pyo3(signature = (keys, vectors=None, terms=None, attrs=None, values=None))]
    fn put_many(
        &self,
        py: Python<'_>,
        keys: Vec<Bound<'_, PyAny>>,
        vectors: Option<&Bound<'_, PyAny>>,
        terms: Option<Vec<Vec<String>>>,
        attrs: Option<BTreeMap<String, Vec<i64>>>,
        values: Option<Vec<Bound<'_, PyAny>>>,
    ) -> PyResult<()> {
        let docs = documents(py, &keys, vectors, terms, attrs, values)?;
        let mut batch = strata::WriteBatch::new();
        for doc in docs {
            batch.put(doc);
        }
        let db = self.db()?;
        py.allow_threads(|| db.write(batch)).map_err(to_py)
    }

    /// Delete `key` (deleting an absent key is not an error).
    fn delete(&self, py: Python<'_>, key: &Bound<'_, PyAny>) -> PyResult<()> {
        let key = key_of(key)?;
        let db = self.db()?;
        py.allow_threads(|| db.delete(&key)).map_err(to_py)
    }

    /// The document stored under `key` as a dict (key, value, vector, terms, attrs), or None.
    fn get<'py>(
        &self,
        py: Python<'py>,
        key: &Bound<'py, PyAny>,
    ) -> PyResult<Option<Bound<'py, PyDict>>> {
        let key = key_of(key)?;
        let db = self.db()?;
        match py.allow_threads(|| db.get(&key)).map_err(to_py)? {
            Some(d) => Ok(Some(doc_dict(py, &d)?)),
            None => Ok(None),
        }
    }

    /// A lazy iterator over the documents in key order: those whose key starts with `prefix`,
    /// or lies in `[start, end)` (either end open when None); `reverse=True` reads from the last
    /// key, `keys_only=True` yields keys (bytes) instead of dicts without decoding documents.
    /// The iterator reads the snapshot taken when it was made: writes after that are not seen.
    #[pyo3(signature = (prefix=None, start=None, end=None, reverse=false, keys_only=false))]
    fn scan(
        &self,
        prefix: Option<&Bound<'_, PyAny>>,
        start: Option<&Bound<'_, PyAny>>,
        end: Option<&Bound<'_, PyAny>>,
        reverse: bool,
        keys_only: bool,
    ) -> PyResult<ScanIter> {
        use std::ops::Bound as B;
        let db = self.db()?;
        let mut scan = match (prefix, start, end) {
            (Some(p), None, None) => db.prefix(&key_of(p)?),
            (Some(_), _, _) => {
                return Err(InvalidInputError::new_err(
                    "give prefix= or start=/end=, not both",
                ))
            }
            (None, s, e) => {
                let lo = s.map(key_of).transpose()?.map_or(B::Unbounded, B::Included);
                let hi = e.map(key_of).transpose()?.map_or(B::Unbounded, B::Excluded);
                db.range((lo, hi))
            }
        };
        if reverse {
            scan = scan.reverse();
        }
        let inner = if keys_only {
            Walk::Keys(scan.keys())
        } else {
            Walk::Docs(scan)
        };
        Ok(ScanIter {
            inner: std::sync::Mutex::new(Some(inner)),
        })
    }

    /// The `k` nearest documents to `q` that match `filter` (an S-expression such as
    /// `(and lang:en (not spam))`, or the JSON form as a string or dict:
    /// `{"and": [{"term": "lang:en"}, {"not": {"term": "spam"}}]}`), at the asked `recall` (the planner's promise). `q` 1-D:
    /// returns (keys: list of bytes, distances: float32 array). `q` 2-D (a batch): a list of
    /// such pairs, one per row, run in parallel on the engine's threads over one snapshot.
    /// `exact=True` scores every match; `radius` keeps only hits within that distance;
    /// `explain=True` adds a third element: the query's plan per segment (list of dicts). Distances are squared L2, `1 - cos` or `-dot` by the metric.
    #[pyo3(signature = (q, k=10, filter=None, recall=0.95, exact=false, radius=None,
                        explain=false))]
    #[allow(
        clippy::too_many_arguments,
        reason = "the Python keyword arguments of search, one parameter each"
    )]
    fn search<'py>(
        &self,
        py: Python<'py>,
        q: &Bound<'py, PyAny>,
        k: usize,
        filter: Option<&Bound<'py, PyAny>>,
        recall: f64,
        exact: bool,
        radius: Option<f32>,
        explain: bool,
    ) -> PyResult<PyObject> {
        let arr = as_f32(py, q)?;
        let ndim: usize = arr.getattr("ndim")?.extract()?;
        let rows: Vec<Vec<f32>> = match ndim {
            1 => vec![row_of(&arr)?],
            2 => {
                let a: PyReadonlyArray2<'_, f32> = arr.extract()?;
                a.as_array()
                    .rows()
                    .into_iter()
                    .map(|r| r.iter().copied().collect())
                    .collect()
            }
            d => {
                return Err(InvalidInputError::new_err(format!(
                    "a query is a 1-D vector or a 2-D batch, not {d}-D"
                )))
            }
        };
        // The filter is parsed once for the whole batch.
        // A filter is an S-expression or JSON string, or a dict of the JSON form.
        let filter = match filter {
            None => None,
            Some(f) => {
                let text: String = if f.is_instance_of::<PyDict>() {
                    py.import("json")?.call_method1("dumps", (f,))?.extract()?
                } else {
                    f.extract().map_err(|_| {
                        InvalidInputError::new_err("filter is a string or a dict (its JSON form)")
                    })?
                };
                Some(strata::Filter::parse(&text).map_err(to_py)?)
            }
        };
        let mut queries = Vec::with_capacity(rows.len());
        for v in rows {
            let mut query = strata::Query::knn(v, k).with_recall(recall);
            if let Some(f) = &filter {
                query = query.with_filter(f.clone());
            }
            if exact {
                query = query.exact();
            }
            query.radius = radius;
            queries.push(query);
        }
        let db = self.db()?;
        // A batch runs on the engine's threads (rayon), one query per task, over one snapshot.
        let results = py
            .allow_threads(|| {
                use rayon::prelude::*;
                let snap = db.snapshot();
                queries
                    .par_iter()
                    .map(|q| snap.search_with_stats(q))
                    .collect::<strata::Result<Vec<_>>>()
            })
            .map_err(to_py)?;
        let mut pairs = Vec::with_capacity(results.len());
        for (hits, stats) in &results {
            let keys = PyList::new(py, hits.iter().map(|h| PyBytes::new(py, &h.key)))?;
            // Every hit of a k-NN query carries its distance (only boolean queries have none).
            let dist = hits
                .iter()
                .map(|h| {
                    h.distance.ok_or_else(|| {
                        StrataError::new_err("a k-NN hit without a distance".to_string())
                    })
                })
                .collect::<PyResult<Vec<f32>>>()?;
            let pair = if explain {
                (keys, PyArray1::from_vec(py, dist), explain_list(py, stats)?)
                    .into_pyobject(py)?
                    .into_any()
            } else {
                (keys, PyArray1::from_vec(py, dist))
                    .into_pyobject(py)?
                    .into_any()
            };
            pairs.push(pair);
        }
        if ndim == 1 {
            match pairs.into_iter().next() {
                Some(p) => Ok(p.unbind()),
                None => Err(StrataError::new_err("no result for the query".to_string())),
            }
        } else {
            Ok(PyList::new(py, pairs)?.into_any().unbind())
        }
    }

    /// Write the memtable out as a segment (with its index when large enough).
    fn flush(&self, py: Python<'_>) -> PyResult<()> {
        let db = self.db()?;
        py.allow_threads(|| db.flush()).map_err(to_py)
    }

    /// Merge segments; True when a compaction ran.
    fn compact(&self, py: Python<'_>) -> PyResult<bool> {
        let db = self.db()?;
        py.allow_threads(|| db.compact()).map_err(to_py)
    }

    /// Check every checksum of every file; raises CorruptionError on damage.
    fn verify(&self, py: Python<'_>) -> PyResult<()> {
        let db = self.db()?;
        py.allow_threads(|| db.verify()).map_err(to_py)
    }

    /// The schema: {"dim": int, "metric": "l2" | "cosine" | "ip", "attrs": [names]}.
    fn schema<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let db = self.db()?;
        let s = db.schema();
        let out = PyDict::new(py);
        out.set_item("dim", s.dim)?;
        out.set_item("metric", strata::Metric::name(s.metric))?;
        out.set_item("attrs", PyList::new(py, &s.attrs)?)?;
        Ok(out)
    }

    /// Whether the handle was opened read-only.
    #[getter]
    fn read_only(&self) -> PyResult<bool> {
        Ok(self.db()?.is_read_only())
    }

    /// Close the handle (flushes nothing that the log does not already hold: acknowledged
    /// writes are durable). Later calls raise ClosedError; closing twice is allowed.
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        if let Some(db) = self.inner.take() {
            // The last handle drops the engine, which joins its background threads.
            py.allow_threads(move || drop(db));
        }
        Ok(())
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    #[pyo3(signature = (*_args))]
    fn __exit__(&self, py: Python<'_>, _args: &Bound<'_, pyo3::types::PyTuple>) -> PyResult<bool> {
        self.close(py)?;
        Ok(false)
    }
}

/// Create an empty database at `path` for vectors of `dim` with `metric` ("l2", "cosine",
/// "ip") and the integer attributes `attrs`.
#[pyfunction]
#[pyo3(signature = (path, dim, metric="l2", attrs=None))]
fn create(
    py: Python<'_>,
    path: std::path::PathBuf,
    dim: u32,
    metric: &str,
    attrs: Option<Vec<String>>,
) -> PyResult<Db> {
    let schema = strata::Schema {
        dim,
        metric: strata::Metric::parse(metric).map_err(to_py)?,
        attrs: attrs.unwrap_or_default(),
    };
    let db = py
        .allow_threads(|| strata::Db::create(&path, schema))
        .map_err(to_py)?;
    Ok(Db {
        inner: Slot::new(db),
    })
}

/// Open the database at `path`; `read_only=True` changes nothing on disk and refuses writes.
#[pyfunction]
#[pyo3(signature = (path, read_only=false))]
fn open(py: Python<'_>, path: std::path::PathBuf, read_only: bool) -> PyResult<Db> {
    let db = py
        .allow_threads(|| {
            let options = strata::Options::default();
            if read_only {
                strata::Db::open_read_only(&path, options)
            } else {
                strata::Db::open(&path, options)
            }
        })
        .map_err(to_py)?;
    Ok(Db {
        inner: Slot::new(db),
    })
}

/// Build a database at `path` (must not exist, or be empty) from columns, offline: segments
/// with their postings, codes, graph and calibration written directly (no log), as `strata
/// build` does. `vectors` is an (n, dim) array (dim and `metric` make the schema, the names of
/// `attrs` its attributes); `keys` default to the row numbers as decimal strings. `progress`,
/// if given, is called as `progress(kind, done, total)` with kind "segment" (segments started
/// of all) or "graph" (insertions done in the current segment of its documents). Returns the
/// build's report: documents, segments, bytes, phases [(name, seconds)].
#[pyfunction]
#[pyo3(signature = (path, vectors, keys=None, terms=None, attrs=None, values=None, metric="l2",
                    segment_docs_max=None, progress=None, memory_budget=None))]
#[allow(
    clippy::too_many_arguments,
    reason = "the Python signature: one argument per column and option"
)]
fn build<'py>(
    py: Python<'py>,
    path: std::path::PathBuf,
    vectors: &Bound<'py, PyAny>,
    keys: Option<Vec<Bound<'py, PyAny>>>,
    terms: Option<Vec<Vec<String>>>,
    attrs: Option<BTreeMap<String, Vec<i64>>>,
    values: Option<Vec<Bound<'py, PyAny>>>,
    metric: &str,
    segment_docs_max: Option<usize>,
    progress: Option<PyObject>,
    memory_budget: Option<u64>,
) -> PyResult<Bound<'py, PyDict>> {
    let arr = as_f32(py, vectors)?;
    let shape: Vec<usize> = arr.getattr("shape")?.extract()?;
    let [n, dim] = shape[..] else {
        return Err(InvalidInputError::new_err(format!(
            "vectors is a two-dimensional array, not {}-D",
            shape.len()
        )));
    };
    let dim = u32::try_from(dim)
        .map_err(|_| InvalidInputError::new_err(format!("dimension {dim} is too large")))?;
    let keys = match keys {
        Some(k) => k,
        None => (0..n)
            .map(|i| Ok(i.to_string().into_pyobject(py)?.into_any()))
            .collect::<PyResult<Vec<_>>>()?,
    };
    let schema = strata::Schema {
        dim,
        metric: strata::Metric::parse(metric).map_err(to_py)?,
        attrs: attrs
            .as_ref()
            .map(|a| a.keys().cloned().collect())
            .unwrap_or_default(),
    };
    let docs = documents(py, &keys, Some(&arr), terms, attrs, values)?;
    let mut opts = strata::build::BuildOptions::default();
    match (segment_docs_max, memory_budget) {
        (Some(_), Some(_)) => {
            return Err(InvalidInputError::new_err(
                "give segment_docs_max or memory_budget, not both",
            ))
        }
        (Some(m), None) => opts.segment_docs_max = m,
        (None, Some(b)) => {
            opts.segment_docs_max =
                strata::build::segment_docs_for_budget(n, dim as usize, &opts.ann, b).0;
        }
        (None, None) => {}
    }
    // The callback runs with the GIL re-taken; its first exception is raised after the build.
    let failed: std::sync::Mutex<Option<PyErr>> = std::sync::Mutex::new(None);
    let segment_docs = std::sync::atomic::AtomicUsize::new(0);
    let report = py
        .allow_threads(|| {
            let call = |kind: &str, done: u64, total: u64| {
                let Some(cb) = &progress else {
                    return;
                };
                Python::with_gil(|py| {
                    if let Err(e) = cb.call1(py, (kind, done, total)) {
                        if let Ok(mut f) = failed.lock() {
                            f.get_or_insert(e);
                        }
                    }
                });
            };
            let on_event = |e: strata::build::BuildEvent| match e {
                strata::build::BuildEvent::Segment { index, count, docs } => {
                    segment_docs.store(docs, std::sync::atomic::Ordering::Relaxed);
                    call("segment", index as u64 + 1, count as u64);
                }
                strata::build::BuildEvent::GraphProgress(done) => {
                    let total = segment_docs.load(std::sync::atomic::Ordering::Relaxed);
                    call("graph", done, total as u64);
                }
            };
            strata::build::build_database(&path, schema, docs, &opts, &on_event)
        })
        .map_err(to_py)?;
    if let Some(e) = failed.into_inner().ok().flatten() {
        return Err(e);
    }
    let out = PyDict::new(py);
    out.set_item("documents", report.documents)?;
    out.set_item("segments", report.segments)?;
    out.set_item("bytes", report.bytes)?;
    out.set_item("phases", PyList::new(py, report.phases)?)?;
    Ok(out)
}

/// What a query did on each segment (`explain=True`), as dicts.
fn explain_list<'py>(py: Python<'py>, st: &strata::QueryStats) -> PyResult<Bound<'py, PyList>> {
    let out = PyList::empty(py);
    for e in &st.explain {
        let d = PyDict::new(py);
        d.set_item("segment", e.segment)?;
        d.set_item("plan", format!("{:?}", e.plan))?;
        d.set_item("documents", e.documents)?;
        d.set_item("matches", e.matches)?;
        d.set_item("estimate", e.estimate.map(|x| (x.min, x.expected, x.max)))?;
        d.set_item("list", e.list)?;
        d.set_item("nodes_visited", e.nodes_visited)?;
        d.set_item("sectors_read", e.sectors_read)?;
        d.set_item("lists_probed", e.lists_probed)?;
        d.set_item("members_scanned", e.members_scanned)?;
        d.set_item("micros", e.micros)?;
        d.set_item("predicted_recall", e.predicted_recall)?;
        out.append(d)?;
    }
    Ok(out)
}

/// The shard (0..n) that owns `key` in a shard set of `n` (the set file's stable hash).
#[pyfunction]
fn shard_of(key: &Bound<'_, PyAny>, n: u32) -> PyResult<u32> {
    strata::shards::shard_of(&key_of(key)?, n).map_err(to_py)
}

/// `shard_of` of every key, as a uint32 array.
#[pyfunction]
fn shards_of<'py>(
    py: Python<'py>,
    keys: Vec<Bound<'py, PyAny>>,
    n: u32,
) -> PyResult<Bound<'py, PyArray1<u32>>> {
    let out = keys
        .iter()
        .map(|k| strata::shards::shard_of(&key_of(k)?, n).map_err(to_py))
        .collect::<PyResult<Vec<u32>>>()?;
    Ok(PyArray1::from_vec(py, out))
}

/// A fresh build id (16 hex digits) for a shard.
#[pyfunction]
#[pyo3(signature = (salt=""))]
fn new_build_id(salt: &str) -> String {
    strata::shards::Shard::new_build_id(salt)
}

/// Read and check `path/SHARDS.json`: {"n", "hash", "schema": {"dim", "metric", "attrs"},
/// "shards": [{"path", "build_id", "documents"}]} (shard paths relative to `path`).
#[pyfunction]
fn read_shard_set<'py>(py: Python<'py>, path: std::path::PathBuf) -> PyResult<Bound<'py, PyDict>> {
    let set = py
        .allow_threads(|| strata::shards::ShardSet::read(&path))
        .map_err(to_py)?;
    let out = PyDict::new(py);
    out.set_item("n", set.n())?;
    out.set_item("hash", strata::shards::SHARD_HASH)?;
    let schema = PyDict::new(py);
    schema.set_item("dim", set.schema.dim)?;
    schema.set_item("metric", set.schema.metric.name())?;
    schema.set_item("attrs", set.schema.attrs.clone())?;
    out.set_item("schema", schema)?;
    let shards = PyList::empty(py);
    for s in &set.shards {
        let d = PyDict::new(py);
        d.set_item("path", &s.path)?;
        d.set_item("build_id", &s.build_id)?;
        d.set_item("documents", s.documents)?;
        shards.append(d)?;
    }
    out.set_item("shards", shards)?;
    Ok(out)
}

/// Write `path/SHARDS.json` atomically (after every shard is complete): `shards` lists
/// {"path", "documents", "build_id" (optional: a fresh one)} in shard order.
#[pyfunction]
#[pyo3(signature = (path, dim, metric, shards, attrs=None))]
fn write_shard_set(
    py: Python<'_>,
    path: std::path::PathBuf,
    dim: u32,
    metric: &str,
    shards: Vec<BTreeMap<String, Bound<'_, PyAny>>>,
    attrs: Option<Vec<String>>,
) -> PyResult<()> {
    let mut list = Vec::with_capacity(shards.len());
    for (i, s) in shards.iter().enumerate() {
        let get = |k: &str| {
            s.get(k)
                .ok_or_else(|| InvalidInputError::new_err(format!("shard {i}: no {k:?}")))
        };
        let shard_path: String = get("path")?.extract()?;
        let build_id = match s.get("build_id") {
            Some(b) => b.extract()?,
            None => strata::shards::Shard::new_build_id(&shard_path),
        };
        list.push(strata::shards::Shard {
            documents: get("documents")?.extract()?,
            build_id,
            path: shard_path,
        });
    }
    let set = strata::shards::ShardSet {
        schema: strata::Schema {
            dim,
            metric: strata::Metric::parse(metric).map_err(to_py)?,
            attrs: attrs.unwrap_or_default(),
        },
        shards: list,
    };
    py.allow_threads(|| set.write(&path)).map_err(to_py)
}

/// Check the shard set at `path`: its file, then every shard read-only (checksums, schema,
/// every key in its shard). Returns the documents per shard; raises naming a failing shard.
#[pyfunction]
fn verify_shard_set(py: Python<'_>, path: std::path::PathBuf) -> PyResult<Vec<u64>> {
    py.allow_threads(|| {
        let set = strata::shards::ShardSet::read(&path)?;
        set.verify(&path).map(|r| r.documents)
    })
    .map_err(to_py)
}

/// A lazy scan over a snapshot (`Db.scan`); yields dicts, or keys with `keys_only=True`.
#[pyclass(module = "strata._strata")]
struct ScanIter {
    /// `None` once exhausted or failed. (A mutex: a Python object may be shared by threads.)
    inner: std::sync::Mutex<Option<Walk>>,
}

enum Walk {
    Docs(strata::Scan),
    Keys(strata::Keys),
}

enum Step {
    Doc(Arc<strata::Document>),
    Key(Vec<u8>),
}

#[pymethods]
impl ScanIter {
    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__(&self, py: Python<'_>) -> PyResult<Option<PyObject>> {
        let mut guard = self
            .inner
            .lock()
            .map_err(|_| StrataError::new_err("a scan failed in another thread".to_string()))?;
        let Some(walk) = guard.as_mut() else {
            return Ok(None);
        };
        let step = py.allow_threads(|| match walk {
            Walk::Docs(s) => s.next().map(|r| r.map(Step::Doc)),
            Walk::Keys(k) => k.next().map(|r| r.map(Step::Key)),
        });
        match step {
            None => {
                *guard = None;
                Ok(None)
            }
            Some(Err(e)) => {
                *guard = None;
                Err(to_py(e))
            }
            Some(Ok(Step::Doc(d))) => Ok(Some(doc_dict(py, &d)?.into_any().unbind())),
            Some(Ok(Step::Key(k))) => Ok(Some(PyBytes::new(py, &k).into_any().unbind())),
        }
    }
}

#[pymodule]
fn _strata(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add_class::<Db>()?;
    m.add_class::<ScanIter>()?;
    m.add_function(wrap_pyfunction!(create, m)?)?;
    m.add_function(wrap_pyfunction!(open, m)?)?;
    m.add_function(wrap_pyfunction!(build, m)?)?;
    m.add_function(wrap_pyfunction!(shard_of, m)?)?;
    m.add_function(wrap_pyfunction!(shards_of, m)?)?;
    m.add_function(wrap_pyfunction!(new_build_id, m)?)?;
    m.add_function(wrap_pyfunction!(read_shard_set, m)?)?;
    m.add_function(wrap_pyfunction!(write_shard_set, m)?)?;
    m.add_function(wrap_pyfunction!(verify_shard_set, m)?)?;
    for (name, ty) in [
        ("StrataError", py.get_type::<StrataError>()),
        ("InvalidInputError", py.get_type::<InvalidInputError>()),
        ("CorruptionError", py.get_type::<CorruptionError>()),
        ("LockedError", py.get_type::<LockedError>()),
        ("NotFoundError", py.get_type::<NotFoundError>()),
        ("AlreadyExistsError", py.get_type::<AlreadyExistsError>()),
        ("ReadOnlyError", py.get_type::<ReadOnlyError>()),
        ("TimeoutError", py.get_type::<TimeoutError>()),
        ("ClosedError", py.get_type::<ClosedError>()),
    ] {
        m.add(name, ty)?;
    }
    Ok(())
}

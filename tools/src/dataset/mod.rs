//! Dataset files ANN users already have: `.fvecs` / `.bvecs` / `.ivecs` (texmex layout) and
//! `.npy` (NumPy v1–v3, 2-D, little-endian f32/f64/f16 or u8, C or Fortran order; header by
//! `npyz`), memory-mapped and read row by
//! row; tag files (one line of space-separated terms per vector); and the real-data set of
//! `../shared/data` as a named dataset. Used by `strata bench` and, later, `strata build`.

mod map;
mod npy;
pub mod social;
pub mod synth;
mod vecs;

use std::path::{Path, PathBuf};

#[cfg(test)]
pub use npy::write_npy_f32;
pub use vecs::{read_ivecs, write_fvecs, write_ivecs};

/// Errors reading a dataset file, with the path and, where it helps, the row.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// The OS failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// File.
        path: PathBuf,
        /// OS error.
        #[source]
        source: std::io::Error,
    },
    /// The bytes are not a valid file of the expected format.
    #[error("{}: {reason}", path.display())]
    Format {
        /// File.
        path: PathBuf,
        /// What is wrong (with the row or byte offset).
        reason: String,
    },
}

pub(crate) fn format_err(path: &Path, reason: impl Into<String>) -> DataError {
    DataError::Format {
        path: path.to_owned(),
        reason: reason.into(),
    }
}

/// Element type of a vector file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Elem {
    /// 32-bit float.
    F32,
    /// Unsigned byte (converted to f32 on read).
    U8,
    /// 64-bit float (`.npy`; converted to f32 on read).
    F64,
    /// 16-bit float (`.npy`; converted to f32 on read).
    F16,
}

impl Elem {
    /// One little-endian component (`b.len() == self.width()`) as f32.
    fn decode(self, b: &[u8]) -> f32 {
        match self {
            Elem::F32 => f32::from_le_bytes(b.try_into().unwrap_or([0; 4])),
            Elem::F64 => f64::from_le_bytes(b.try_into().unwrap_or([0; 8])) as f32,
            Elem::F16 => half::f16::from_le_bytes(b.try_into().unwrap_or([0; 2])).to_f32(),
            Elem::U8 => b.first().map_or(0.0, |&x| f32::from(x)),
        }
    }

    /// Bytes per component.
    pub fn width(self) -> usize {
        match self {
            Elem::F64 => 8,
            Elem::F32 => 4,
            Elem::F16 => 2,
            Elem::U8 => 1,
        }
    }
}

/// A memory-mapped file of `len()` vectors of `dim()` components.
#[derive(Debug)]
pub struct VectorFile {
    path: PathBuf,
    bytes: map::Mapped,
    /// Offset of row 0's first component, bytes from one row's first component to the next
    /// row's, and from one component of a row to the next (the width in C order; a column's
    /// length in a Fortran-order `.npy`).
    first_at: usize,
    stride: usize,
    step: usize,
    elem: Elem,
    n: usize,
    dim: usize,
}

impl VectorFile {
    /// Open by extension: `.fvecs`, `.bvecs` or `.npy`. Every row header is checked up front.
    pub fn open(path: &Path) -> Result<VectorFile, DataError> {
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .unwrap_or_default();
        let bytes = map::Mapped::open(path)?;
        match ext {
            "fvecs" => vecs::open(path, bytes, Elem::F32),
            "bvecs" => vecs::open(path, bytes, Elem::U8),
            "npy" => npy::open(path, bytes),
            other => Err(format_err(
                path,
                format!("unknown vector file extension {other:?} (expected fvecs, bvecs or npy)"),
            )),
        }
    }

    /// Number of vectors.
    pub fn len(&self) -> usize {
        self.n
    }

    /// Whether there are no vectors.
    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    /// Components per vector.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Vector `i` into `out` (replacing its contents).
    /// Drop rows `..i` from the resident set (see `Mapped::release_below`).
    pub fn release_rows_below(&self, i: usize) {
        self.bytes
            .release_below(self.first_at + i.min(self.n) * self.stride);
    }

    pub fn read(&self, i: usize, out: &mut Vec<f32>) -> Result<(), DataError> {
        if i >= self.n {
            return Err(format_err(
                &self.path,
                format!("row {i} out of range (len {})", self.n),
            ));
        }
        let width = self.elem.width();
        let at = self.first_at + i * self.stride;
        out.clear();
        if self.step == width {
            // Contiguous row (fvecs, bvecs, C-order npy).
            let row = self
                .bytes
                .get(at..at + self.dim * width)
                .ok_or_else(|| format_err(&self.path, format!("row {i} runs past the end")))?;
            out.extend(row.chunks_exact(width).map(|c| self.elem.decode(c)));
        } else {
            // Strided (Fortran-order npy): one component per column; `open` checked that
            // every component lies inside the file.
            for j in 0..self.dim {
                let c = at + j * self.step;
                let b = self
                    .bytes
                    .get(c..c + width)
                    .ok_or_else(|| format_err(&self.path, format!("row {i} runs past the end")))?;
                out.push(self.elem.decode(b));
            }
        }
        Ok(())
    }

    /// Every vector, loaded (query files, small sets).
    pub fn read_all(&self) -> Result<Vec<Vec<f32>>, DataError> {
        (0..self.n)
            .map(|i| {
                let mut v = Vec::with_capacity(self.dim);
                self.read(i, &mut v).map(|()| v)
            })
            .collect()
    }
}

/// Tags: line `i` holds the space-separated terms of vector `i`.
pub fn read_tags(path: &Path) -> Result<Vec<Vec<String>>, DataError> {
    let text = std::fs::read_to_string(path).map_err(|source| DataError::Io {
        path: path.to_owned(),
        source,
    })?;
    text.lines()
        .enumerate()
        .map(|(ln, line)| {
            line.split_ascii_whitespace()
                .map(|t| {
                    strata::validate_term(t)
                        .map(|()| t.to_owned())
                        .map_err(|e| format_err(path, format!("line {}: {e}", ln + 1)))
                })
                .collect()
        })
        .collect()
}

/// The real-data development set (`../shared/data`: 384-d unit-length sentence embeddings of
/// Reuters-21578 and OHSUMED with their category tags). Read at run time, never committed.
#[derive(Debug)]
pub struct RealData {
    /// Base vectors.
    pub base: VectorFile,
    /// Tags of each base vector.
    pub base_tags: Vec<Vec<String>>,
    /// Query vectors.
    pub queries: VectorFile,
    /// Tags of each query.
    pub query_tags: Vec<Vec<String>>,
}

impl RealData {
    /// Load from `dir` (default `../shared/data` relative to the working directory).
    pub fn open(dir: &Path) -> Result<RealData, DataError> {
        let base = VectorFile::open(&dir.join("base.fvecs"))?;
        let base_tags = read_tags(&dir.join("base.tags.txt"))?;
        let queries = VectorFile::open(&dir.join("query.fvecs"))?;
        let query_tags = read_tags(&dir.join("query.tags.txt"))?;
        if base_tags.len() != base.len() || query_tags.len() != queries.len() {
            return Err(format_err(
                dir,
                "tag files and vector files differ in length",
            ));
        }
        Ok(RealData {
            base,
            base_tags,
            queries,
            query_tags,
        })
    }
}

#[cfg(test)]
mod tests;

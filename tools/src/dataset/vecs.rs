//! texmex `.fvecs` / `.bvecs` / `.ivecs`: each row is an i32 dimension then the components.

use std::path::Path;

use super::{format_err, map::Mapped, DataError, Elem, VectorFile};

fn dim_at(b: &[u8], at: usize) -> Option<i32> {
    Some(i32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

pub(crate) fn open(path: &Path, bytes: Mapped, elem: Elem) -> Result<VectorFile, DataError> {
    let width = elem.width();
    let (n, dim) = match dim_at(&bytes, 0) {
        None if bytes.is_empty() => (0, 0),
        None => return Err(format_err(path, "shorter than one row header")),
        Some(d) if d <= 0 || d > 1 << 16 => {
            return Err(format_err(
                path,
                format!("row 0: dimension {d} out of range"),
            ))
        }
        Some(d) => {
            let dim = d as usize;
            let stride = 4 + dim * width;
            if !bytes.len().is_multiple_of(stride) {
                return Err(format_err(
                    path,
                    format!(
                        "{} bytes is not a whole number of {stride}-byte rows",
                        bytes.len()
                    ),
                ));
            }
            (bytes.len() / stride, dim)
        }
    };
    let stride = 4 + dim * width;
    for i in 0..n {
        if dim_at(&bytes, i * stride) != Some(dim as i32) {
            return Err(format_err(
                path,
                format!("row {i}: dimension differs from row 0 ({dim})"),
            ));
        }
    }
    Ok(VectorFile {
        path: path.to_owned(),
        bytes,
        first_at: 4,
        stride,
        step: width,
        elem,
        n,
        dim,
    })
}

/// Write rows in the texmex layout: i32 length, then each element's 4 little-endian bytes.
fn write_rows<T: Copy>(path: &Path, rows: &[Vec<T>], le: fn(T) -> [u8; 4]) -> std::io::Result<()> {
    use std::io::Write;
    let mut w = std::io::BufWriter::new(std::fs::File::create(path)?);
    for r in rows {
        w.write_all(&(r.len() as i32).to_le_bytes())?;
        for x in r {
            w.write_all(&le(*x))?;
        }
    }
    w.flush()
}

/// Write vectors as `.fvecs`.
pub fn write_fvecs(path: &Path, rows: &[Vec<f32>]) -> std::io::Result<()> {
    write_rows(path, rows, f32::to_le_bytes)
}

/// Write id lists (ground truth) as `.ivecs`.
pub fn write_ivecs(path: &Path, rows: &[Vec<u32>]) -> std::io::Result<()> {
    write_rows(path, rows, u32::to_le_bytes)
}

/// Read `.ivecs` (rows may differ in length, as ground-truth files sometimes do).
pub fn read_ivecs(path: &Path) -> Result<Vec<Vec<u32>>, DataError> {
    let b = std::fs::read(path).map_err(|source| DataError::Io {
        path: path.to_owned(),
        source,
    })?;
    let mut rows = Vec::new();
    let mut at = 0;
    while at < b.len() {
        let d = dim_at(&b, at).filter(|d| *d >= 0).ok_or_else(|| {
            format_err(path, format!("row {}: bad header at byte {at}", rows.len()))
        })? as usize;
        let body = b
            .get(at + 4..at + 4 + d * 4)
            .ok_or_else(|| format_err(path, format!("row {} runs past the end", rows.len())))?;
        rows.push(
            body.chunks_exact(4)
                .map(|c| u32::from_le_bytes(c.try_into().unwrap_or([0; 4])))
                .collect(),
        );
        at += 4 + d * 4;
    }
    Ok(rows)
}

//! `.npy` (NumPy format versions 1–3), header parsed by the `npyz` crate; the data stays
//! memory-mapped and rows are read in place. Supported: 2-D arrays of little-endian float32,
//! float64 or float16 (converted to f32 on read) or uint8, in C or Fortran order.

use std::path::Path;

use super::{format_err, map::Mapped, DataError, Elem, VectorFile};

pub(crate) fn open(path: &Path, bytes: Mapped) -> Result<VectorFile, DataError> {
    let err = |r: String| format_err(path, r);
    let mut rest: &[u8] = &bytes;
    let header = npyz::NpyHeader::from_reader(&mut rest)
        .map_err(|e| err(format!("not a readable .npy file: {e}")))?;
    let first_at = bytes.len() - rest.len();
    // `descr` is the header's Python literal, quoted: '<f4'.
    let descr = header.dtype().descr();
    let descr = descr.trim_matches('\'');
    let elem = match descr {
        "<f4" => Elem::F32,
        "<f8" => Elem::F64,
        "<f2" => Elem::F16,
        "|u1" | "<u1" => Elem::U8,
        other => {
            return Err(err(format!(
                "dtype {other} not supported (float32, float64, float16 or uint8, little-endian)"
            )))
        }
    };
    let [n, dim] = header.shape()[..] else {
        return Err(err(format!("shape {:?} is not 2-D", header.shape())));
    };
    let (n, dim) = (
        usize::try_from(n).map_err(|_| err(format!("{n} rows is too many")))?,
        usize::try_from(dim).map_err(|_| err(format!("dimension {dim} is too large")))?,
    );
    let width = elem.width();
    let need = n
        .checked_mul(dim)
        .and_then(|x| x.checked_mul(width))
        .and_then(|x| x.checked_add(first_at));
    if need != Some(bytes.len()) {
        return Err(err(format!(
            "{} bytes, but shape ({n}, {dim}) of {descr} needs {need:?}",
            bytes.len()
        )));
    }
    // C order: a row is contiguous. Fortran order: component j of row i is at (j·n + i).
    let (stride, step) = match header.order() {
        npyz::Order::C => (dim * width, width),
        npyz::Order::Fortran => (width, n * width),
    };
    Ok(VectorFile {
        path: path.to_owned(),
        bytes,
        first_at,
        stride,
        step,
        elem,
        n,
        dim,
    })
}

/// Write a 2-D float32 `.npy` (version 1).
#[cfg(test)]
pub fn write_npy_f32(path: &Path, rows: &[Vec<f32>]) -> std::io::Result<()> {
    let dim = rows.first().map_or(0, Vec::len);
    let mut header = format!(
        "{{'descr': '<f4', 'fortran_order': False, 'shape': ({}, {dim}), }}",
        rows.len()
    );
    // Pad so the data starts on a 64-byte boundary; the header ends with a newline.
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    use std::io::Write;
    let mut w = std::io::BufWriter::new(std::fs::File::create(path)?);
    w.write_all(b"\x93NUMPY")?;
    w.write_all(&[1, 0])?;
    w.write_all(&(header.len() as u16).to_le_bytes())?;
    w.write_all(header.as_bytes())?;
    for r in rows {
        for x in r {
            w.write_all(&x.to_le_bytes())?;
        }
    }
    w.flush()
}

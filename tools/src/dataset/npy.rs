//! `.npy` (NumPy format versions 1–3): a magic string, a header length, an ASCII dict with
//! `descr`, `fortran_order` and `shape`, then the raw array. Supported: 2-D, C order, `<f4`
//! or `|u1`. Hand-parsed: the header is one small Python-literal dict.

use std::path::Path;

use super::{format_err, map::Mapped, DataError, Elem, VectorFile};

const MAGIC: &[u8] = b"\x93NUMPY";

/// The value after `'key':` in the header dict, up to the next `,` at depth 0 (or `}`).
fn field<'a>(header: &'a str, key: &str) -> Option<&'a str> {
    let start = header.find(&format!("'{key}'"))? + key.len() + 2;
    let rest = header
        .get(start..)?
        .trim_start()
        .strip_prefix(':')?
        .trim_start();
    let mut depth = 0i32;
    for (i, c) in rest.char_indices() {
        match c {
            '(' | '[' => depth += 1,
            ')' | ']' => depth -= 1,
            ',' | '}' if depth == 0 => return rest.get(..i).map(str::trim),
            _ => {}
        }
    }
    None
}

pub(crate) fn open(path: &Path, bytes: Mapped) -> Result<VectorFile, DataError> {
    let err = |r: String| format_err(path, r);
    if bytes.get(..6) != Some(MAGIC) {
        return Err(err("not an .npy file (bad magic)".into()));
    }
    let major = bytes.get(6).copied().unwrap_or(0);
    let (hlen, hstart) = match major {
        1 => (
            u16::from_le_bytes(
                bytes
                    .get(8..10)
                    .and_then(|s| s.try_into().ok())
                    .unwrap_or([0; 2]),
            ) as usize,
            10,
        ),
        2 | 3 => (
            u32::from_le_bytes(
                bytes
                    .get(8..12)
                    .and_then(|s| s.try_into().ok())
                    .unwrap_or([0; 4]),
            ) as usize,
            12,
        ),
        v => return Err(err(format!("unsupported .npy version {v}"))),
    };
    let header = bytes
        .get(hstart..hstart + hlen)
        .and_then(|h| std::str::from_utf8(h).ok())
        .ok_or_else(|| err("header truncated or not text".into()))?;
    let descr = field(header, "descr").ok_or_else(|| err("header has no descr".into()))?;
    let elem = match descr.trim_matches(|c| c == '\'' || c == '"') {
        "<f4" => Elem::F32,
        "|u1" | "<u1" | "u1" => Elem::U8,
        other => {
            return Err(err(format!(
                "dtype {other} not supported (use float32 or uint8)"
            )))
        }
    };
    if field(header, "fortran_order") != Some("False") {
        return Err(err("only C-order arrays are supported".into()));
    }
    let shape = field(header, "shape").ok_or_else(|| err("header has no shape".into()))?;
    let dims: Vec<usize> = shape
        .trim_matches(|c| c == '(' || c == ')')
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().map_err(|_| err(format!("bad shape {shape}"))))
        .collect::<Result<_, _>>()?;
    let [n, dim] = dims[..] else {
        return Err(err(format!("shape {shape} is not 2-D")));
    };
    let width = match elem {
        Elem::F32 => 4,
        Elem::U8 => 1,
    };
    let first_at = hstart + hlen;
    let need = n
        .checked_mul(dim)
        .and_then(|x| x.checked_mul(width))
        .and_then(|x| x.checked_add(first_at));
    if need != Some(bytes.len()) {
        return Err(err(format!(
            "{} bytes, but shape {shape} needs {need:?}",
            bytes.len()
        )));
    }
    Ok(VectorFile {
        path: path.to_owned(),
        bytes,
        first_at,
        stride: dim * width,
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
    w.write_all(MAGIC)?;
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

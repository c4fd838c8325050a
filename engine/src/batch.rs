//! Write batches and their encoding as one WAL record (`docs/format.md`, "WAL payload: write
//! batch"). A batch is applied all or nothing: it is one record, so a crash keeps all of it or
//! none of it.

use std::collections::BTreeMap;

use strata_io::le::Cursor;
use strata_io::DecodeError;

use crate::doc::validate_key;
use crate::limits::BATCH_OPS_MAX;
use crate::{Document, Error, Result, Schema};

/// Version byte of the batch encoding.
pub(crate) const BATCH_FORMAT_VERSION: u8 = 1;
const OP_PUT: u8 = 1;
const OP_DELETE: u8 = 2;

/// One operation of a batch.
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    /// Insert or replace a document.
    Put(Document),
    /// Remove the document with this key (no error if absent).
    Delete(Vec<u8>),
}

impl Op {
    /// The key the operation touches.
    pub fn key(&self) -> &[u8] {
        match self {
            Op::Put(d) => &d.key,
            Op::Delete(k) => k,
        }
    }
}

/// Operations applied atomically by `Db::write`. Later operations on the same key win.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WriteBatch {
    pub(crate) ops: Vec<Op>,
}

impl WriteBatch {
    /// An empty batch.
    pub fn new() -> WriteBatch {
        WriteBatch::default()
    }
    /// Add a put.
    pub fn put(&mut self, doc: Document) -> &mut Self {
        self.ops.push(Op::Put(doc));
        self
    }
    /// Add a delete.
    pub fn delete(&mut self, key: impl Into<Vec<u8>>) -> &mut Self {
        self.ops.push(Op::Delete(key.into()));
        self
    }
    /// Number of operations.
    pub fn len(&self) -> usize {
        self.ops.len()
    }
    /// Whether the batch is empty.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }
    /// The operations in order.
    pub fn ops(&self) -> &[Op] {
        &self.ops
    }

    /// Validate every operation and normalise documents; the first violation fails the batch.
    pub(crate) fn validate(self, schema: &Schema) -> Result<Vec<Op>> {
        if self.ops.len() > BATCH_OPS_MAX {
            return Err(Error::invalid(format!(
                "batch of {} operations exceeds {BATCH_OPS_MAX}",
                self.ops.len()
            )));
        }
        self.ops
            .into_iter()
            .enumerate()
            .map(|(i, op)| match op {
                Op::Put(d) => d
                    .validate(schema)
                    .map(Op::Put)
                    .map_err(|e| Error::invalid(format!("operation {i}: {e}"))),
                Op::Delete(k) => validate_key(&k)
                    .map(|()| Op::Delete(k))
                    .map_err(|e| Error::invalid(format!("operation {i}: {e}"))),
            })
            .collect()
    }
}

/// Encode validated operations.
/// Encode validated operations; more than `bytes_max` encoded bytes is an error.
pub(crate) fn encode(ops: &[Op], schema: &Schema, bytes_max: usize) -> Result<Vec<u8>> {
    // Sized up front (one allocation, no regrowth: reallocs were ~1/5 of a one-document put);
    // capped, as a batch past `bytes_max` fails below anyway.
    let size = 5 + ops
        .iter()
        .map(|op| {
            1 + match op {
                Op::Delete(k) => 4 + k.len(),
                Op::Put(d) => encoded_doc_bytes(d, true),
            }
        })
        .sum::<usize>();
    let mut out = Vec::with_capacity(size.min(bytes_max.saturating_add(1)));
    out.push(BATCH_FORMAT_VERSION);
    out.extend_from_slice(&(ops.len() as u32).to_le_bytes());
    for op in ops {
        match op {
            Op::Delete(k) => {
                out.push(OP_DELETE);
                put_bytes(&mut out, k);
            }
            Op::Put(d) => {
                out.push(OP_PUT);
                encode_doc(&mut out, d, schema)?;
            }
        }
        if out.len() > bytes_max {
            return Err(Error::invalid(format!(
                "encoded batch exceeds batch_bytes_max ({bytes_max} bytes)"
            )));
        }
    }
    Ok(out)
}

/// Bytes [`encode_doc_with`] appends for `d`.
pub(crate) fn encoded_doc_bytes(d: &Document, vector_inline: bool) -> usize {
    let vector = match &d.vector {
        Some(v) if vector_inline => 4 * v.len(),
        _ => 0,
    };
    8 + d.key.len()
        + d.value.len()
        + 1
        + vector
        + 4
        + d.terms.iter().map(|t| 2 + t.len()).sum::<usize>()
        + 2
        + 10 * d.attrs.len()
}

/// Append one document: key, value (u32 length + bytes each), vector flag u8 (+ dim f32),
/// term count u32 + (u16 length + bytes) each, attr count u16 + (u16 schema index, i64) each.
pub(crate) fn encode_doc(out: &mut Vec<u8>, d: &Document, schema: &Schema) -> Result<()> {
    encode_doc_with(out, d, schema, true)
}

/// Vector flag of a document whose vector is stored elsewhere (a segment's vectors section).
const VECTOR_EXTERNAL: u8 = 2;

/// [`encode_doc`]; with `vector_inline` false a vector is only flagged (segment format v2: the
/// vectors section holds it, so the compressed document blocks stay small).
pub(crate) fn encode_doc_with(
    out: &mut Vec<u8>,
    d: &Document,
    schema: &Schema,
    vector_inline: bool,
) -> Result<()> {
    put_bytes(out, &d.key);
    put_bytes(out, &d.value);
    match &d.vector {
        None => out.push(0),
        Some(_) if !vector_inline => out.push(VECTOR_EXTERNAL),
        Some(v) => {
            out.push(1);
            put_f32s(out, v);
        }
    }
    out.extend_from_slice(&(d.terms.len() as u32).to_le_bytes());
    for t in &d.terms {
        out.extend_from_slice(&(t.len() as u16).to_le_bytes());
        out.extend_from_slice(t.as_bytes());
    }
    out.extend_from_slice(&(d.attrs.len() as u16).to_le_bytes());
    for (name, v) in &d.attrs {
        let idx = schema.attr_index(name).ok_or_else(|| {
            Error::invalid(format!(
                "undeclared attribute {}",
                crate::limits::quote(name)
            ))
        })?;
        out.extend_from_slice(&(idx as u16).to_le_bytes());
        out.extend_from_slice(&v.to_le_bytes());
    }
    Ok(())
}

/// The document encoding of `docs/format.md` as a standalone value (what a segment block and a
/// WAL batch store per document); benchmarks give peers the same bytes.
pub fn encode_document(d: &Document, schema: &Schema) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    encode_doc(&mut out, d, schema)?;
    Ok(out)
}

/// Inverse of [`encode_document`]; the result is validated against `schema`.
pub fn decode_document(b: &[u8], schema: &Schema) -> Result<Document> {
    decode_doc(b, schema).map_err(|e| Error::InvalidInput(e.to_string()))
}

/// Decode one document written by [`encode_doc`] (the whole of `b`), re-validated.
pub(crate) fn decode_doc(b: &[u8], schema: &Schema) -> std::result::Result<Document, DecodeError> {
    match decode_doc_ext(b, schema, false)? {
        (d, false) => Ok(d),
        (_, true) => Err(DecodeError::Invalid(format!(
            "bad vector flag {VECTOR_EXTERNAL}"
        ))),
    }
}

/// [`decode_doc`] that also accepts an externally stored vector (segment format v2): returns
/// the document without it and whether the caller must supply it.
pub(crate) fn decode_doc_ext(
    b: &[u8],
    schema: &Schema,
    allow_external: bool,
) -> std::result::Result<(Document, bool), DecodeError> {
    let mut c = Cursor::new(b);
    let d = read_doc_ext(&mut c, schema, allow_external)?;
    if c.position() != b.len() {
        return Err(DecodeError::Invalid(format!(
            "{} trailing bytes after a document",
            b.len() - c.position()
        )));
    }
    Ok(d)
}

fn read_doc(c: &mut Cursor<'_>, schema: &Schema) -> std::result::Result<Document, DecodeError> {
    match read_doc_ext(c, schema, false)? {
        (d, false) => Ok(d),
        (_, true) => Err(DecodeError::Invalid(format!(
            "bad vector flag {VECTOR_EXTERNAL}"
        ))),
    }
}

fn read_doc_ext(
    c: &mut Cursor<'_>,
    schema: &Schema,
    allow_external: bool,
) -> std::result::Result<(Document, bool), DecodeError> {
    let key = c.len_prefixed()?.to_vec();
    let value = c.len_prefixed()?.to_vec();
    let mut external = false;
    let vector = match c.u8()? {
        0 => None,
        VECTOR_EXTERNAL if allow_external => {
            external = true;
            None
        }
        1 => {
            let raw = c.take(schema.dim as usize * 4)?;
            Some(
                raw.chunks_exact(4)
                    .map(|x| f32::from_le_bytes(x.try_into().unwrap_or([0; 4])))
                    .collect(),
            )
        }
        f => return Err(DecodeError::Invalid(format!("bad vector flag {f}"))),
    };
    let nterms = c.u32()? as usize;
    let mut terms = Vec::with_capacity(nterms.min(1024));
    for _ in 0..nterms {
        let n = c.u16()? as usize;
        let t = std::str::from_utf8(c.take(n)?)
            .map_err(|_| DecodeError::invalid("term is not UTF-8"))?;
        terms.push(t.to_owned());
    }
    let nattrs = c.u16()? as usize;
    let mut attrs = BTreeMap::new();
    for _ in 0..nattrs {
        let idx = c.u16()? as usize;
        let name = schema
            .attrs
            .get(idx)
            .ok_or_else(|| DecodeError::Invalid(format!("attribute index {idx} not in schema")))?;
        attrs.insert(name.clone(), c.i64()?);
    }
    let doc = Document {
        key,
        value,
        vector,
        terms,
        attrs,
    };
    doc.validate(schema)
        .map(|d| (d, external))
        .map_err(|e| DecodeError::Invalid(e.to_string()))
}

/// Append `v` as little-endian f32s (sized once, then written in place: the per-element
/// `extend_from_slice` did not vectorise).
pub(crate) fn put_f32s(out: &mut Vec<u8>, v: &[f32]) {
    let start = out.len();
    out.resize(start + 4 * v.len(), 0);
    if let Some(dst) = out.get_mut(start..) {
        for (c, x) in dst.chunks_exact_mut(4).zip(v) {
            c.copy_from_slice(&x.to_le_bytes());
        }
    }
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&(b.len() as u32).to_le_bytes());
    out.extend_from_slice(b);
}

/// Decode a batch record; every length is checked against the bytes present before use, and
/// the decoded documents are re-validated against the schema.
pub(crate) fn decode(b: &[u8], schema: &Schema) -> std::result::Result<Vec<Op>, DecodeError> {
    let mut c = Cursor::new(b);
    let version = c.u8()?;
    if version != BATCH_FORMAT_VERSION {
        return Err(DecodeError::Invalid(format!(
            "unsupported batch format version {version}"
        )));
    }
    let count = c.u32()? as usize;
    if count > BATCH_OPS_MAX {
        return Err(DecodeError::Invalid(format!(
            "batch claims {count} operations, at most {BATCH_OPS_MAX}"
        )));
    }
    let mut ops = Vec::with_capacity(count.min(b.len()));
    for i in 0..count {
        let op = match c.u8()? {
            OP_DELETE => Op::Delete(c.len_prefixed()?.to_vec()),
            OP_PUT => Op::Put(
                read_doc(&mut c, schema)
                    .map_err(|e| DecodeError::Invalid(format!("operation {i}: {e}")))?,
            ),
            t => {
                return Err(DecodeError::Invalid(format!(
                    "operation {i}: unknown operation tag {t}"
                )))
            }
        };
        if let Op::Delete(k) = &op {
            validate_key(k).map_err(|e| DecodeError::Invalid(format!("operation {i}: {e}")))?;
        }
        ops.push(op);
    }
    if c.position() != b.len() {
        return Err(DecodeError::Invalid(format!(
            "{} trailing bytes after the last operation",
            b.len() - c.position()
        )));
    }
    Ok(ops)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Metric;

    #[test]
    fn round_trip_and_truncation_is_an_error() {
        let schema = Schema::new(3, Metric::Cosine)
            .with_attr("ts")
            .with_attr("likes");
        let mut b = WriteBatch::new();
        b.put(
            Document::new("a", "va")
                .with_vector(vec![1.0, -2.5, 0.0])
                .with_term("lang:en")
                .with_attr("likes", -7),
        )
        .delete("b")
        .put(Document::new("c", ""));
        let ops = b.validate(&schema).unwrap();
        let enc = encode(&ops, &schema, crate::limits::BATCH_BYTES_MAX).unwrap();
        assert_eq!(enc.capacity(), enc.len(), "sized exactly");
        for op in &ops {
            if let Op::Put(d) = op {
                let mut one = Vec::new();
                encode_doc(&mut one, d, &schema).unwrap();
                assert_eq!(one.len(), encoded_doc_bytes(d, true));
                one.clear();
                encode_doc_with(&mut one, d, &schema, false).unwrap();
                assert_eq!(one.len(), encoded_doc_bytes(d, false));
            }
        }
        assert_eq!(decode(&enc, &schema).unwrap(), ops);
        for cut in 0..enc.len() {
            assert!(decode(&enc[..cut], &schema).is_err(), "cut at {cut}");
        }
        let mut longer = enc.clone();
        longer.push(0);
        assert!(decode(&longer, &schema).is_err());
    }
}

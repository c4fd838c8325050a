//! JSONL document lines of the command-line contract:
//! `{"key": "doc-17", "terms": ["lang:en"], "attrs": {"ts": 1700000000}, "value": "text",
//!   "vector": [0.1, ...]}` — every field optional except where a command needs it.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;
use strata::Document;

/// One parsed line.
#[derive(Debug, Clone, Default)]
pub struct DocLine {
    pub key: Option<String>,
    pub terms: Vec<String>,
    pub attrs: BTreeMap<String, i64>,
    pub value: Vec<u8>,
    pub vector: Option<Vec<f32>>,
}

impl DocLine {
    /// The document, with `key` used when the line has none.
    pub fn into_document(self, key: String, vector: Option<Vec<f32>>) -> Document {
        let mut d = Document::new(self.key.unwrap_or(key), self.value);
        d.vector = vector.or(self.vector);
        d.terms = self.terms;
        for (k, v) in self.attrs {
            d.attrs.insert(k, v);
        }
        d
    }
}

fn bad(path: &Path, line: usize, what: impl std::fmt::Display) -> String {
    format!("{}: line {line}: {what}", path.display())
}

/// Parse one line (`line` is 1-based, for messages).
pub fn parse_line(path: &Path, line: usize, text: &str) -> Result<DocLine, String> {
    let v: Value = serde_json::from_str::<Strict>(text)
        .map_err(|e| bad(path, line, e))?
        .0;
    let obj = v
        .as_object()
        .ok_or_else(|| bad(path, line, "expected a JSON object"))?;
    let mut d = DocLine::default();
    for (k, val) in obj {
        match k.as_str() {
            "key" => {
                d.key = Some(match val {
                    Value::String(s) => s.clone(),
                    Value::Number(n) => n.to_string(),
                    _ => return Err(bad(path, line, "\"key\" must be a string")),
                })
            }
            "terms" => {
                let arr = val
                    .as_array()
                    .ok_or_else(|| bad(path, line, "\"terms\" must be an array of strings"))?;
                for t in arr {
                    let t = t
                        .as_str()
                        .ok_or_else(|| bad(path, line, "\"terms\" must be an array of strings"))?;
                    d.terms.push(t.to_owned());
                }
            }
            "attrs" => {
                let o = val
                    .as_object()
                    .ok_or_else(|| bad(path, line, "\"attrs\" must be an object"))?;
                for (name, x) in o {
                    let x = x.as_i64().ok_or_else(|| {
                        bad(
                            path,
                            line,
                            format!(
                                "attribute {} must be an integer",
                                strata::limits::quote(name)
                            ),
                        )
                    })?;
                    d.attrs.insert(name.clone(), x);
                }
            }
            "value" => {
                d.value = match val {
                    Value::String(s) => s.clone().into_bytes(),
                    Value::Null => Vec::new(),
                    other => other.to_string().into_bytes(),
                }
            }
            "vector" => {
                let arr = val
                    .as_array()
                    .ok_or_else(|| bad(path, line, "\"vector\" must be an array of numbers"))?;
                let mut v = Vec::with_capacity(arr.len());
                for x in arr {
                    let x = x
                        .as_f64()
                        .ok_or_else(|| bad(path, line, "\"vector\" must be an array of numbers"))?;
                    v.push(x as f32);
                }
                d.vector = Some(v);
            }
            other => {
                return Err(bad(
                    path,
                    line,
                    format!("unknown field {}", strata::limits::quote(other)),
                ))
            }
        }
    }
    Ok(d)
}

/// A JSON value whose objects, at every depth, must not repeat a field: serde_json keeps the
/// last of duplicate fields, which would silently drop data (`{"key": "a", "key": "b"}`).
struct Strict(Value);

impl<'de> serde::Deserialize<'de> for Strict {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(StrictVisitor).map(Strict)
    }
}

struct StrictVisitor;

impl<'de> serde::de::Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::new();
        while let Some(Strict(v)) = seq.next_element()? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = serde_json::Map::new();
        while let Some(k) = map.next_key::<String>()? {
            let Strict(v) = map.next_value()?;
            if out.contains_key(&k) {
                return Err(serde::de::Error::custom(format!(
                    "duplicate field {}",
                    strata::limits::quote(&k)
                )));
            }
            out.insert(k, v);
        }
        Ok(Value::Object(out))
    }
}

/// Every line of a JSONL file (empty lines are errors: line i describes vector i).
pub fn read_jsonl(path: &Path) -> Result<Vec<DocLine>, String> {
    jsonl(path)?.collect()
}

/// The lines of a JSONL file parsed one at a time, as a stream (the file is never held
/// whole in memory); line numbers in errors are 1-based.
pub fn jsonl(path: &Path) -> Result<impl Iterator<Item = Result<DocLine, String>> + '_, String> {
    use std::io::BufRead;
    let f = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(std::io::BufReader::with_capacity(1 << 20, f)
        .lines()
        .enumerate()
        .map(move |(i, l)| {
            let l = l.map_err(|e| format!("{}: line {}: {e}", path.display(), i + 1))?;
            parse_line(path, i + 1, &l)
        }))
}

static NOT_UTF8_WARNED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Bytes (a key or value) as text: lowercase hex with `hex`, else UTF-8 — bytes that are not
/// UTF-8 are replaced (U+FFFD) and a warning says to use `--hex`, once per process.
pub fn bytes_text(b: &[u8], hex: bool) -> String {
    if hex {
        return hex::encode(b);
    }
    match std::str::from_utf8(b) {
        Ok(s) => s.to_owned(),
        Err(_) => {
            if !NOT_UTF8_WARNED.swap(true, std::sync::atomic::Ordering::Relaxed) {
                eprintln!(
                    "strata: warning: a key or value is not UTF-8 and is shown with \
                     replacement characters; use --hex to see its bytes"
                );
            }
            String::from_utf8_lossy(b).into_owned()
        }
    }
}

/// A key given on the command line: hex digits with `hex`, else its UTF-8 bytes.
pub fn key_arg(s: &str, hex: bool) -> Result<Vec<u8>, String> {
    if hex {
        hex::decode(s.trim()).map_err(|e| format!("key {s:?} is not hex: {e}"))
    } else {
        Ok(s.as_bytes().to_vec())
    }
}

/// A document as one JSONL line (`dump`, `get`); keys and values as hex with `hex`.
pub fn to_json(d: &Document, hex: bool) -> Value {
    let mut o = serde_json::Map::new();
    o.insert("key".into(), Value::String(bytes_text(&d.key, hex)));
    o.insert(
        "terms".into(),
        Value::Array(d.terms.iter().map(|t| Value::String(t.clone())).collect()),
    );
    o.insert(
        "attrs".into(),
        Value::Object(
            d.attrs
                .iter()
                .map(|(k, v)| (k.clone(), Value::from(*v)))
                .collect(),
        ),
    );
    o.insert("value".into(), Value::String(bytes_text(&d.value, hex)));
    if let Some(v) = &d.vector {
        o.insert(
            "vector".into(),
            Value::Array(v.iter().map(|x| Value::from(f64::from(*x))).collect()),
        );
    }
    Value::Object(o)
}

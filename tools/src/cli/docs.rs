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
    let v: Value = serde_json::from_str(text).map_err(|e| bad(path, line, e))?;
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
                        bad(path, line, format!("attribute {name:?} must be an integer"))
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
            other => return Err(bad(path, line, format!("unknown field {other:?}"))),
        }
    }
    Ok(d)
}

/// Every line of a JSONL file (empty lines are errors: line i describes vector i).
pub fn read_jsonl(path: &Path) -> Result<Vec<DocLine>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    text.lines()
        .enumerate()
        .map(|(i, l)| parse_line(path, i + 1, l))
        .collect()
}

/// A document as one JSONL line (`dump`).
pub fn to_json(d: &Document) -> Value {
    let mut o = serde_json::Map::new();
    o.insert(
        "key".into(),
        Value::String(String::from_utf8_lossy(&d.key).into_owned()),
    );
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
    o.insert(
        "value".into(),
        Value::String(String::from_utf8_lossy(&d.value).into_owned()),
    );
    if let Some(v) = &d.vector {
        o.insert(
            "vector".into(),
            Value::Array(v.iter().map(|x| Value::from(f64::from(*x))).collect()),
        );
    }
    Value::Object(o)
}

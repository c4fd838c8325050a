//! Documents and their validation against a schema.

use std::collections::BTreeMap;

use crate::limits::{KEY_BYTES_MAX, TERMS_PER_DOC_MAX, TERM_BYTES_MAX, VALUE_BYTES_MAX};
use crate::{Error, Result, Schema};

/// A document: unique key, opaque value, optional vector, terms and numeric attributes.
/// `put` replaces the whole document stored under its key.
#[derive(Debug, Clone, PartialEq, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Document {
    /// Unique key, 1..=4096 bytes.
    pub key: Vec<u8>,
    /// Opaque payload, at most 4 MiB.
    pub value: Vec<u8>,
    /// Optional vector of the schema's dimension, finite components.
    pub vector: Option<Vec<f32>>,
    /// Terms such as `lang:en`, `author:42`, `friend-of:7` (1..=256 bytes, no whitespace or
    /// parentheses; at most 1024). Stored sorted and deduplicated.
    pub terms: Vec<String>,
    /// Values of declared attributes.
    pub attrs: BTreeMap<String, i64>,
}

impl Document {
    /// A document with a key and value only.
    pub fn new(key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) -> Document {
        Document {
            key: key.into(),
            value: value.into(),
            ..Document::default()
        }
    }

    /// Set the vector.
    pub fn with_vector(mut self, v: Vec<f32>) -> Document {
        self.vector = Some(v);
        self
    }

    /// Add a term.
    pub fn with_term(mut self, t: impl Into<String>) -> Document {
        self.terms.push(t.into());
        self
    }

    /// Set an attribute.
    pub fn with_attr(mut self, name: impl Into<String>, v: i64) -> Document {
        self.attrs.insert(name.into(), v);
        self
    }

    /// Whether the document carries `term`. (A linear scan, so it is right for documents not
    /// yet normalised by `validate`; documents carry few terms.)
    pub fn has_term(&self, term: &str) -> bool {
        self.terms.iter().any(|t| t == term)
    }

    /// Validate against `schema` and normalise (sort and deduplicate terms).
    pub fn validate(mut self, schema: &Schema) -> Result<Document> {
        validate_key(&self.key)?;
        if self.value.len() > VALUE_BYTES_MAX {
            return Err(Error::invalid(format!(
                "value of {} bytes exceeds {VALUE_BYTES_MAX}",
                self.value.len()
            )));
        }
        if let Some(v) = &self.vector {
            if v.len() != schema.dim as usize {
                return Err(Error::invalid(format!(
                    "vector has dimension {}, schema says {}",
                    v.len(),
                    schema.dim
                )));
            }
            crate::limits::check_vector("vector", v)?;
        }
        if self.terms.len() > TERMS_PER_DOC_MAX {
            return Err(Error::invalid(format!(
                "{} terms, at most {TERMS_PER_DOC_MAX}",
                self.terms.len()
            )));
        }
        for t in &self.terms {
            validate_term(t)?;
        }
        self.terms.sort_unstable();
        self.terms.dedup();
        for name in self.attrs.keys() {
            if schema.attr_index(name).is_none() {
                return Err(Error::invalid(format!(
                    "attribute {} is not declared in the schema",
                    crate::limits::quote(name)
                )));
            }
        }
        Ok(self)
    }

    /// Approximate memory footprint in bytes (for memtable accounting).
    pub(crate) fn mem_bytes(&self) -> usize {
        96 + self.key.len()
            + self.value.len()
            + self.vector.as_ref().map_or(0, |v| v.len() * 4)
            + self.terms.iter().map(|t| t.len() + 24).sum::<usize>()
            + self.attrs.keys().map(|k| k.len() + 40).sum::<usize>()
    }
}

/// Check a key's bounds.
pub fn validate_key(key: &[u8]) -> Result<()> {
    if key.is_empty() || key.len() > KEY_BYTES_MAX {
        return Err(Error::invalid(format!(
            "key of {} bytes outside 1..={KEY_BYTES_MAX}",
            key.len()
        )));
    }
    Ok(())
}

/// Check a term: 1..=256 bytes, no whitespace, no parentheses, no control characters.
pub fn validate_term(t: &str) -> Result<()> {
    if t.is_empty() || t.len() > TERM_BYTES_MAX {
        return Err(Error::invalid(format!(
            "term {} of {} bytes outside 1..={TERM_BYTES_MAX}",
            crate::limits::quote(t),
            t.len()
        )));
    }
    if t.chars()
        .any(|c| c.is_whitespace() || c.is_control() || c == '(' || c == ')')
    {
        return Err(Error::invalid(format!(
            "term {} contains whitespace, a control character or a parenthesis",
            crate::limits::quote(t)
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Metric;

    fn schema() -> Schema {
        Schema::new(2, Metric::L2).with_attr("ts")
    }

    #[test]
    fn bad_documents_are_typed_errors() {
        let s = schema();
        let bad = [
            Document::new("", "v"),
            Document::new(vec![b'k'; KEY_BYTES_MAX + 1], "v"),
            Document::new("k", vec![0u8; VALUE_BYTES_MAX + 1]),
            Document::new("k", "v").with_vector(vec![1.0]),
            Document::new("k", "v").with_vector(vec![1.0, f32::NAN]),
            Document::new("k", "v").with_vector(vec![f32::INFINITY, 0.0]),
            Document::new("k", "v").with_term(""),
            Document::new("k", "v").with_term("has space"),
            Document::new("k", "v").with_term("paren("),
            Document::new("k", "v").with_attr("unknown", 1),
        ];
        for d in bad {
            let dbg = format!("{d:?}");
            assert!(
                matches!(d.validate(&s), Err(Error::InvalidInput(_))),
                "{dbg:.80}"
            );
        }
    }

    #[test]
    fn terms_are_sorted_and_deduplicated() {
        let d = Document::new("k", "v")
            .with_term("b")
            .with_term("a")
            .with_term("b")
            .validate(&schema())
            .unwrap();
        assert_eq!(d.terms, vec!["a", "b"]);
        assert!(d.has_term("a") && !d.has_term("c"));
    }
}

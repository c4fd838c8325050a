//! The schema a database is created with: vector dimension, metric and numeric attributes.
//! It never changes after `Db::create`; it is stored in the `SCHEMA` file (`docs/format.md`).

use crate::limits::{ATTRS_MAX, ATTR_NAME_BYTES_MAX, DIM_MAX};
use crate::{Error, Result};

/// How vector distance is measured. Smaller distance = closer for every metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum Metric {
    /// Euclidean distance, reported (and given as a radius) squared: `Σ (a-b)²`.
    L2,
    /// Negated inner product `-Σ a·b` (so smaller is closer).
    InnerProduct,
    /// Cosine distance `1 - a·b / (|a||b|)`; a zero vector has distance 1 to everything.
    Cosine,
}

impl Metric {
    pub(crate) fn code(self) -> u8 {
        match self {
            Metric::L2 => 1,
            Metric::InnerProduct => 2,
            Metric::Cosine => 3,
        }
    }

    pub(crate) fn from_code(c: u8) -> Option<Metric> {
        match c {
            1 => Some(Metric::L2),
            2 => Some(Metric::InnerProduct),
            3 => Some(Metric::Cosine),
            _ => None,
        }
    }

    /// The metric's name as [`Metric::parse`] reads it: `l2`, `ip` or `cosine`.
    pub fn name(self) -> &'static str {
        match self {
            Metric::L2 => "l2",
            Metric::InnerProduct => "ip",
            Metric::Cosine => "cosine",
        }
    }

    /// Parse `l2`, `ip`/`inner_product`, `cosine`.
    pub fn parse(s: &str) -> Result<Metric> {
        match s.to_ascii_lowercase().as_str() {
            "l2" | "euclidean" => Ok(Metric::L2),
            "ip" | "inner_product" | "dot" => Ok(Metric::InnerProduct),
            "cosine" | "cos" => Ok(Metric::Cosine),
            other => Err(Error::invalid(format!(
                "unknown metric {other:?} (expected l2, ip or cosine)"
            ))),
        }
    }
}

/// Vector dimension, metric and the declared numeric attributes of a database.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Schema {
    /// Dimension of every vector (1..=4096).
    pub dim: u32,
    /// Distance metric.
    pub metric: Metric,
    /// Names of the i64 attributes documents may carry (e.g. `ts`, `likes`).
    pub attrs: Vec<String>,
}

impl Schema {
    /// A schema with no attributes.
    pub fn new(dim: u32, metric: Metric) -> Schema {
        Schema {
            dim,
            metric,
            attrs: Vec::new(),
        }
    }

    /// Add a declared attribute.
    pub fn with_attr(mut self, name: &str) -> Schema {
        self.attrs.push(name.to_owned());
        self
    }

    /// Check bounds: dimension, attribute count, names (non-empty ASCII identifiers, unique).
    pub fn validate(&self) -> Result<()> {
        if self.dim == 0 || self.dim > DIM_MAX {
            return Err(Error::invalid(format!(
                "dimension {} outside 1..={DIM_MAX}",
                self.dim
            )));
        }
        if self.attrs.len() > ATTRS_MAX {
            return Err(Error::invalid(format!(
                "{} attributes declared, at most {ATTRS_MAX}",
                self.attrs.len()
            )));
        }
        for (i, a) in self.attrs.iter().enumerate() {
            let ok = !a.is_empty()
                && a.len() <= ATTR_NAME_BYTES_MAX
                && a.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.');
            if !ok {
                return Err(Error::invalid(format!(
                    "attribute name {a:?} must be 1..={ATTR_NAME_BYTES_MAX} bytes of [A-Za-z0-9_.-]"
                )));
            }
            if self.attrs.get(..i).is_some_and(|prev| prev.contains(a)) {
                return Err(Error::invalid(format!("attribute {a:?} declared twice")));
            }
        }
        Ok(())
    }

    /// Index of a declared attribute.
    pub fn attr_index(&self, name: &str) -> Option<usize> {
        self.attrs.iter().position(|a| a == name)
    }
}

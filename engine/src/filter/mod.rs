//! Boolean filters over terms and attribute ranges.
//!
//! Syntax (S-expressions, as in Unicorn): a bare term (`lang:en`, `spam`), `(and F…)`,
//! `(or F…)`, `(not F)`, `(range ATTR LO HI)` with both bounds inclusive, and
//! `(apply PREFIX ATTR F)` — the Unicorn social-graph operator: the documents matching `F`
//! give their values of attribute `ATTR`, and the filter becomes the OR of the terms
//! `PREFIX:<value>` (`(apply author uid friend-of:42)` = posts whose `author:` term names a
//! user carrying `friend-of:42`). Example:
//! `(and lang:en (or author:7 author:9) (not spam) (range ts 1700000000 1700600000))`.
//! [`Filter`]'s constructors build the same expressions without parsing; `Display` prints the
//! canonical text, which parses back to an equal filter.

pub(crate) mod docs;
mod json;
mod parse;

use std::fmt;

use crate::doc::validate_term;
use crate::{Document, Error, Result, Schema};

pub use parse::parse;

/// A filter expression.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Filter {
    /// Documents carrying this term.
    Term(String),
    /// Documents matching every sub-filter.
    And(Vec<Filter>),
    /// Documents matching at least one sub-filter.
    Or(Vec<Filter>),
    /// Documents not matching the sub-filter.
    Not(Box<Filter>),
    /// Documents whose attribute `attr` lies in `lo..=hi` (documents without it do not match).
    Range {
        /// A declared attribute.
        attr: String,
        /// Inclusive lower bound.
        lo: i64,
        /// Inclusive upper bound.
        hi: i64,
    },
    /// The OR of the terms `prefix:<v>` for every value `v` of attribute `attr` among the
    /// documents matching `expr`. Resolved against a snapshot before evaluation
    /// ([`crate::Snapshot::search`] does it); unresolved, it matches nothing.
    Apply {
        /// Term prefix (the part before `:`).
        prefix: String,
        /// A declared attribute whose values name the terms.
        attr: String,
        /// The documents whose values are collected.
        expr: Box<Filter>,
    },
}

impl Filter {
    /// A term filter.
    pub fn term(t: impl Into<String>) -> Filter {
        Filter::Term(t.into())
    }
    /// Conjunction.
    pub fn and(fs: impl IntoIterator<Item = Filter>) -> Filter {
        Filter::And(fs.into_iter().collect())
    }
    /// Disjunction.
    pub fn or(fs: impl IntoIterator<Item = Filter>) -> Filter {
        Filter::Or(fs.into_iter().collect())
    }
    /// Negation.
    #[allow(
        clippy::should_implement_trait,
        reason = "reads like the filter syntax"
    )]
    pub fn not(f: Filter) -> Filter {
        Filter::Not(Box::new(f))
    }
    /// Inclusive attribute range.
    pub fn range(attr: impl Into<String>, lo: i64, hi: i64) -> Filter {
        Filter::Range {
            attr: attr.into(),
            lo,
            hi,
        }
    }

    /// The social-graph operator: `(apply prefix attr expr)`.
    pub fn apply(prefix: impl Into<String>, attr: impl Into<String>, expr: Filter) -> Filter {
        Filter::Apply {
            prefix: prefix.into(),
            attr: attr.into(),
            expr: Box::new(expr),
        }
    }

    /// Whether the expression contains an `apply` (and so needs resolving).
    pub fn has_apply(&self) -> bool {
        match self {
            Filter::Apply { .. } => true,
            Filter::And(fs) | Filter::Or(fs) => fs.iter().any(Filter::has_apply),
            Filter::Not(f) => f.has_apply(),
            Filter::Term(_) | Filter::Range { .. } => false,
        }
    }

    /// Parse a filter: the S-expression syntax (`(and lang:en (not spam) (range ts 0 *))`), or
    /// its JSON form when the text starts with `{` (see [`Filter::to_json`]).
    pub fn parse(text: &str) -> Result<Filter> {
        parse(text)
    }

    /// The JSON form: `{"term": "lang:en"}`, `{"and": [..]}`, `{"or": [..]}`, `{"not": ..}`,
    /// `{"range": {"ts": [lo, hi]}}` (inclusive; `null` for an open end) and `{"apply":
    /// {"prefix": "friend-of", "attr": "uid", "filter": ..}}`. [`Filter::parse`] reads it.
    ///
    /// ```
    /// use strata::Filter;
    /// let f = Filter::parse(r#"{"and": [{"term": "lang:en"}, {"not": {"term": "spam"}},
    ///                                  {"range": {"ts": [1700000000, null]}}]}"#)?;
    /// assert_eq!(f, Filter::parse("(and lang:en (not spam) (range ts 1700000000 *))")?);
    /// assert_eq!(Filter::parse(&f.to_json())?, f);
    /// # Ok::<(), strata::Error>(())
    /// ```
    pub fn to_json(&self) -> String {
        json::to_value(self).to_string()
    }

    /// Check terms, attribute names against the schema, bounds and arity.
    pub fn validate(&self, schema: &Schema) -> Result<()> {
        match self {
            Filter::Term(t) => validate_term(t),
            Filter::And(fs) | Filter::Or(fs) => {
                if fs.is_empty() {
                    return Err(Error::invalid("and/or need at least one sub-filter"));
                }
                fs.iter().try_for_each(|f| f.validate(schema))
            }
            Filter::Not(f) => f.validate(schema),
            Filter::Range { attr, lo, hi } => {
                if schema.attr_index(attr).is_none() {
                    return Err(Error::invalid(format!(
                        "range over undeclared attribute {attr:?}"
                    )));
                }
                if lo > hi {
                    return Err(Error::invalid(format!(
                        "range {attr} has LO {lo} > HI {hi}"
                    )));
                }
                Ok(())
            }
            Filter::Apply { prefix, attr, expr } => {
                if prefix.is_empty() || prefix.contains(':') {
                    return Err(Error::invalid(format!(
                        "apply prefix {prefix:?} must be non-empty and without ':'"
                    )));
                }
                validate_term(&format!("{prefix}:{}", i64::MIN))?;
                if schema.attr_index(attr).is_none() {
                    return Err(Error::invalid(format!(
                        "apply over undeclared attribute {attr:?}"
                    )));
                }
                expr.validate(schema)
            }
        }
    }

    /// Whether `doc` matches.
    pub fn matches(&self, doc: &Document) -> bool {
        match self {
            Filter::Term(t) => doc.has_term(t),
            Filter::And(fs) => fs.iter().all(|f| f.matches(doc)),
            Filter::Or(fs) => fs.iter().any(|f| f.matches(doc)),
            Filter::Not(f) => !f.matches(doc),
            Filter::Range { attr, lo, hi } => {
                doc.attrs.get(attr).is_some_and(|v| (*lo..=*hi).contains(v))
            }
            Filter::Apply { .. } => false,
        }
    }
}

impl fmt::Display for Filter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let list = |f: &mut fmt::Formatter<'_>, op: &str, fs: &[Filter]| {
            write!(f, "({op}")?;
            for x in fs {
                write!(f, " {x}")?;
            }
            write!(f, ")")
        };
        match self {
            Filter::Term(t) => write!(f, "{t}"),
            Filter::And(fs) => list(f, "and", fs),
            Filter::Or(fs) => list(f, "or", fs),
            Filter::Not(x) => write!(f, "(not {x})"),
            Filter::Range { attr, lo, hi } => {
                let end = |v: i64, open: i64| {
                    if v == open {
                        "*".to_owned()
                    } else {
                        v.to_string()
                    }
                };
                write!(
                    f,
                    "(range {attr} {} {})",
                    end(*lo, i64::MIN),
                    end(*hi, i64::MAX)
                )
            }
            Filter::Apply { prefix, attr, expr } => write!(f, "(apply {prefix} {attr} {expr})"),
        }
    }
}

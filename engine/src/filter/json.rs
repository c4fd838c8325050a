//! The JSON form of filters (Qdrant's habit, next to the S-expressions): parsed with
//! `serde_json` into a value, then into the same typed [`Filter`]. Every node is an object with
//! exactly one key; errors name the node by its JSON path (`$.and[1].range`).

use serde_json::{json, Map, Value};

use super::Filter;
use crate::limits::{FILTER_BYTES_MAX, FILTER_DEPTH_MAX};
use crate::{Error, Result};

/// Parse the JSON form (the caller has seen a leading `{`).
pub(super) fn parse(text: &str) -> Result<Filter> {
    if text.len() > FILTER_BYTES_MAX {
        return Err(Error::invalid(format!(
            "filter of {} bytes exceeds {FILTER_BYTES_MAX}",
            text.len()
        )));
    }
    // serde_json's own recursion limit (128) bounds the parse; ours bounds the filter.
    let v: Value = serde_json::from_str(text).map_err(|e| Error::FilterSyntax {
        position: byte_offset(text, e.line(), e.column()),
        expected: "a JSON filter".into(),
        found: e.to_string(),
    })?;
    node(&v, "$", 0)
}

/// The byte offset of a 1-based line and column (serde_json's error position).
fn byte_offset(text: &str, line: usize, column: usize) -> usize {
    let start: usize = text
        .split_inclusive('\n')
        .take(line.saturating_sub(1))
        .map(str::len)
        .sum();
    (start + column.saturating_sub(1)).min(text.len())
}

fn bad(path: &str, expected: &str, found: &Value) -> Error {
    let mut f = found.to_string();
    if f.len() > 60 {
        let cut = (0..=60).rev().find(|&i| f.is_char_boundary(i)).unwrap_or(0);
        f.truncate(cut);
        f.push('…');
    }
    Error::invalid(format!(
        "JSON filter at {path}: expected {expected}, found {f}"
    ))
}

fn node(v: &Value, path: &str, depth: usize) -> Result<Filter> {
    if depth >= FILTER_DEPTH_MAX {
        return Err(Error::invalid(format!(
            "JSON filter at {path}: nesting deeper than {FILTER_DEPTH_MAX}"
        )));
    }
    const FORMS: &str = "an object with one key: term, and, or, not, range or apply";
    let (op, arg) = match v.as_object().map(|o| (o.len(), o.iter().next())) {
        Some((1, Some((k, a)))) => (k.as_str(), a),
        _ => return Err(bad(path, FORMS, v)),
    };
    let here = format!("{path}.{op}");
    match op {
        "term" => match arg.as_str() {
            Some(t) => Ok(Filter::Term(t.to_owned())),
            None => Err(bad(&here, "a term string", arg)),
        },
        "and" | "or" => {
            let list = arg
                .as_array()
                .filter(|l| !l.is_empty())
                .ok_or_else(|| bad(&here, "a non-empty list of filters", arg))?;
            let subs = list
                .iter()
                .enumerate()
                .map(|(i, s)| node(s, &format!("{here}[{i}]"), depth + 1))
                .collect::<Result<Vec<_>>>()?;
            Ok(if op == "and" {
                Filter::And(subs)
            } else {
                Filter::Or(subs)
            })
        }
        "not" => Ok(Filter::Not(Box::new(node(arg, &here, depth + 1)?))),
        "range" => {
            let (attr, bounds) = match arg.as_object().map(|o| (o.len(), o.iter().next())) {
                Some((1, Some((a, b)))) => (a, b),
                _ => return Err(bad(&here, "{\"ATTR\": [LO, HI]}", arg)),
            };
            let here = format!("{here}.{attr}");
            let pair = bounds
                .as_array()
                .filter(|p| p.len() == 2)
                .ok_or_else(|| bad(&here, "[LO, HI] (integers or null)", bounds))?;
            let end = |i: usize, open: i64| match pair.get(i) {
                Some(Value::Null) => Ok(open),
                Some(x) => x
                    .as_i64()
                    .ok_or_else(|| bad(&format!("{here}[{i}]"), "a 64-bit integer or null", x)),
                None => Err(bad(&here, "[LO, HI]", bounds)),
            };
            let (lo, hi) = (end(0, i64::MIN)?, end(1, i64::MAX)?);
            if lo > hi {
                return Err(bad(&here, "LO <= HI", bounds));
            }
            Ok(Filter::Range {
                attr: attr.clone(),
                lo,
                hi,
            })
        }
        "apply" => {
            let o = arg
                .as_object()
                .filter(|o| o.len() == 3)
                .ok_or_else(|| bad(&here, "{\"prefix\", \"attr\", \"filter\"}", arg))?;
            let text = |k: &str| {
                o.get(k)
                    .and_then(Value::as_str)
                    .map(str::to_owned)
                    .ok_or_else(|| bad(&format!("{here}.{k}"), "a string", arg))
            };
            let expr = o
                .get("filter")
                .ok_or_else(|| bad(&here, "a \"filter\"", arg))?;
            Ok(Filter::Apply {
                prefix: text("prefix")?,
                attr: text("attr")?,
                expr: Box::new(node(expr, &format!("{here}.filter"), depth + 1)?),
            })
        }
        _ => Err(bad(path, FORMS, v)),
    }
}

/// The JSON form of a filter.
pub(super) fn to_value(f: &Filter) -> Value {
    match f {
        Filter::Term(t) => json!({ "term": t }),
        Filter::And(fs) => json!({ "and": fs.iter().map(to_value).collect::<Vec<_>>() }),
        Filter::Or(fs) => json!({ "or": fs.iter().map(to_value).collect::<Vec<_>>() }),
        Filter::Not(f) => json!({ "not": to_value(f) }),
        Filter::Range { attr, lo, hi } => {
            let end = |v: i64, open: i64| if v == open { Value::Null } else { json!(v) };
            let mut m = Map::new();
            m.insert(
                attr.clone(),
                Value::Array(vec![end(*lo, i64::MIN), end(*hi, i64::MAX)]),
            );
            json!({ "range": m })
        }
        Filter::Apply { prefix, attr, expr } => json!({
            "apply": { "prefix": prefix, "attr": attr, "filter": to_value(expr) }
        }),
    }
}

/// With the `serde` feature a filter (de)serializes as its JSON form (`Filter::to_json`), in
/// any serde format; deserializing checks it as `Filter::parse` does.
#[cfg(feature = "serde")]
impl serde::Serialize for Filter {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        serde::Serialize::serialize(&to_value(self), s)
    }
}

#[cfg(feature = "serde")]
impl<'de> serde::Deserialize<'de> for Filter {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Filter, D::Error> {
        let v = <Value as serde::Deserialize>::deserialize(d)?;
        node(&v, "$", 0).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::super::parse::parse as parse_any;
    use super::*;
    use proptest::prelude::*;

    fn arb_filter() -> impl Strategy<Value = Filter> {
        let leaf = prop_oneof![
            "[a-z]{1,4}:[a-z0-9]{1,3}".prop_map(Filter::Term),
            (any::<i64>(), any::<i64>(), any::<bool>(), any::<bool>()).prop_map(
                |(a, b, open_lo, open_hi)| {
                    let (lo, hi) = (a.min(b), a.max(b));
                    Filter::range(
                        "ts",
                        if open_lo { i64::MIN } else { lo },
                        if open_hi { i64::MAX } else { hi },
                    )
                }
            ),
        ];
        leaf.prop_recursive(4, 24, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 1..4).prop_map(Filter::And),
                prop::collection::vec(inner.clone(), 1..4).prop_map(Filter::Or),
                inner.clone().prop_map(|f| Filter::Not(Box::new(f))),
                inner.prop_map(|f| Filter::apply("friend-of", "uid", f)),
            ]
        })
    }

    proptest! {
        /// JSON and S-expression forms are two spellings of one filter.
        #[test]
        fn both_forms_round_trip_to_the_same_filter(f in arb_filter()) {
            prop_assert_eq!(parse_any(&f.to_json()).unwrap(), f.clone());
            prop_assert_eq!(parse_any(&f.to_string()).unwrap(), f);
        }
    }

    #[test]
    fn errors_name_the_node_and_bad_json_has_a_position() {
        let err = |t: &str| parse_any(t).unwrap_err().to_string();
        assert!(
            err(r#"{"and": [{"term": "a"}, {"range": {"ts": [5, 1]}}]}"#)
                .contains("$.and[1].range.ts")
        );
        assert!(err(r#"{"and": []}"#).contains("non-empty list"));
        assert!(err(r#"{"term": "a", "not": {"term": "b"}}"#).contains("one key"));
        assert!(err(r#"{"range": {"ts": [1.5, 2]}}"#).contains("$.range.ts[0]"));
        assert!(err(r#"{"xor": []}"#).contains("one key: term"));
        let e = parse_any("{\"and\": [\n  {\"term\": }]}").unwrap_err();
        assert!(
            matches!(e, Error::FilterSyntax { position, .. } if position == 21),
            "{e}"
        );
        // Depth is bounded, not a stack overflow.
        let deep = format!(
            "{}{{\"term\": \"a\"}}{}",
            "{\"not\": ".repeat(100),
            "}".repeat(100)
        );
        assert!(parse_any(&deep).is_err());
    }
}

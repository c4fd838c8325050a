//! Hand-written recursive-descent parser for the filter S-expressions: the grammar is five
//! forms, and errors must carry a byte position and what was expected (no parser crate gives
//! better messages for this little).

use super::Filter;
use crate::limits::{FILTER_BYTES_MAX, FILTER_DEPTH_MAX};
use crate::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tok<'a> {
    Open,
    Close,
    Atom(&'a str),
    End,
}

struct Lexer<'a> {
    text: &'a str,
    pos: usize,
}

impl<'a> Lexer<'a> {
    fn skip_ws(&mut self) {
        let rest = self.text.get(self.pos..).unwrap_or_default();
        self.pos += rest.len() - rest.trim_start().len();
    }

    /// The next token and its start offset, without consuming it.
    fn peek(&mut self) -> (Tok<'a>, usize) {
        self.skip_ws();
        let rest = self.text.get(self.pos..).unwrap_or_default();
        let tok = match rest.chars().next() {
            None => Tok::End,
            Some('(') => Tok::Open,
            Some(')') => Tok::Close,
            Some(_) => {
                let end = rest
                    .find(|c: char| c.is_whitespace() || c == '(' || c == ')')
                    .unwrap_or(rest.len());
                Tok::Atom(rest.get(..end).unwrap_or_default())
            }
        };
        (tok, self.pos)
    }

    fn bump(&mut self) -> (Tok<'a>, usize) {
        let (tok, at) = self.peek();
        self.pos += match tok {
            Tok::Open | Tok::Close => 1,
            Tok::Atom(a) => a.len(),
            Tok::End => 0,
        };
        (tok, at)
    }
}

fn describe(t: Tok<'_>) -> String {
    match t {
        Tok::Open => "'('".into(),
        Tok::Close => "')'".into(),
        Tok::Atom(a) => crate::limits::quote(a),
        Tok::End => "end of input".into(),
    }
}

fn syntax(position: usize, expected: &str, found: Tok<'_>) -> Error {
    Error::FilterSyntax {
        position,
        expected: expected.to_owned(),
        found: describe(found),
    }
}

/// Parse a whole filter.
pub fn parse(text: &str) -> Result<Filter> {
    if text.len() > FILTER_BYTES_MAX {
        return Err(Error::invalid(format!(
            "filter of {} bytes exceeds {FILTER_BYTES_MAX}",
            text.len()
        )));
    }
    if text.trim_start().starts_with('{') {
        return super::json::parse(text);
    }
    let mut lx = Lexer { text, pos: 0 };
    let f = expr(&mut lx, 0)?;
    match lx.peek() {
        (Tok::End, _) => Ok(f),
        (t, at) => Err(syntax(at, "end of input", t)),
    }
}

fn expr(lx: &mut Lexer<'_>, depth: usize) -> Result<Filter> {
    if depth >= FILTER_DEPTH_MAX {
        let (t, at) = lx.peek();
        return Err(syntax(
            at,
            &format!("nesting at most {FILTER_DEPTH_MAX} deep"),
            t,
        ));
    }
    match lx.bump() {
        (Tok::Atom(a), _) => Ok(Filter::Term(a.to_owned())),
        (Tok::Open, _) => form(lx, depth),
        (t, at) => Err(syntax(at, "a term or '('", t)),
    }
}

fn form(lx: &mut Lexer<'_>, depth: usize) -> Result<Filter> {
    let (op, at) = lx.bump();
    let f = match op {
        Tok::Atom("and") => Filter::And(list(lx, depth)?),
        Tok::Atom("or") => Filter::Or(list(lx, depth)?),
        Tok::Atom("not") => Filter::Not(Box::new(expr(lx, depth + 1)?)),
        Tok::Atom("range") => {
            let attr = match lx.bump() {
                (Tok::Atom(a), _) => a.to_owned(),
                (t, at) => return Err(syntax(at, "an attribute name", t)),
            };
            let lo = int(lx, i64::MIN)?;
            let (hi_at, hi) = (lx.peek().1, int(lx, i64::MAX)?);
            if lo > hi {
                return Err(Error::FilterSyntax {
                    position: hi_at,
                    expected: format!("HI >= LO ({lo})"),
                    found: hi.to_string(),
                });
            }
            Filter::Range { attr, lo, hi }
        }
        Tok::Atom("apply") => {
            let prefix = match lx.bump() {
                (Tok::Atom(a), _) => a.to_owned(),
                (t, at) => return Err(syntax(at, "a term prefix", t)),
            };
            let attr = match lx.bump() {
                (Tok::Atom(a), _) => a.to_owned(),
                (t, at) => return Err(syntax(at, "an attribute name", t)),
            };
            Filter::Apply {
                prefix,
                attr,
                expr: Box::new(expr(lx, depth + 1)?),
            }
        }
        t => return Err(syntax(at, "one of and, or, not, range, apply", t)),
    };
    match lx.bump() {
        (Tok::Close, _) => Ok(f),
        (t, at) => Err(syntax(at, "')'", t)),
    }
}

fn list(lx: &mut Lexer<'_>, depth: usize) -> Result<Vec<Filter>> {
    let mut out = Vec::new();
    loop {
        match lx.peek() {
            (Tok::Close, at) | (Tok::End, at) if out.is_empty() => {
                return Err(syntax(at, "at least one sub-expression", lx.peek().0));
            }
            (Tok::Close, _) | (Tok::End, _) => return Ok(out),
            _ => out.push(expr(lx, depth + 1)?),
        }
    }
}

/// A range bound: a 64-bit integer, or `*` for an open end (`open`: i64::MIN or MAX).
fn int(lx: &mut Lexer<'_>, open: i64) -> Result<i64> {
    match lx.bump() {
        (Tok::Atom("*"), _) => Ok(open),
        (Tok::Atom(a), at) => a
            .parse::<i64>()
            .map_err(|_| syntax(at, "a 64-bit integer or *", Tok::Atom(a))),
        (t, at) => Err(syntax(at, "a 64-bit integer or *", t)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_the_design_card_example() {
        let f = parse(
            "(and lang:en (or author:7 author:9) (not spam) (range ts 1700000000 1700600000))",
        )
        .unwrap();
        let want = Filter::and([
            Filter::term("lang:en"),
            Filter::or([Filter::term("author:7"), Filter::term("author:9")]),
            Filter::not(Filter::term("spam")),
            Filter::range("ts", 1_700_000_000, 1_700_600_000),
        ]);
        assert_eq!(f, want);
        assert_eq!(parse(&want.to_string()).unwrap(), want);
    }

    fn err(text: &str) -> (usize, String) {
        match parse(text) {
            Err(Error::FilterSyntax {
                position, expected, ..
            }) => (position, expected),
            other => panic!("{text:?}: expected a syntax error, got {other:?}"),
        }
    }

    #[test]
    fn errors_say_where_and_what() {
        assert_eq!(err(""), (0, "a term or '('".into()));
        assert_eq!(
            err("(xor a b)"),
            (1, "one of and, or, not, range, apply".into())
        );
        assert_eq!(err("(and)"), (4, "at least one sub-expression".into()));
        assert_eq!(err("(not a b)"), (7, "')'".into()));
        assert_eq!(err("(range ts 1 x)"), (12, "a 64-bit integer or *".into()));
        assert_eq!(
            parse("(range ts * 5)").unwrap(),
            Filter::range("ts", i64::MIN, 5)
        );
        assert_eq!(
            parse("(range ts 5 *)").unwrap(),
            Filter::range("ts", 5, i64::MAX)
        );
        assert_eq!(err("(range ts 5 1)").0, 12);
        assert_eq!(err("a b"), (2, "end of input".into()));
        assert_eq!(err(")"), (0, "a term or '('".into()));
        assert_eq!(err("(and a"), (6, "')'".into()));
        let deep = "(not ".repeat(100) + "a" + &")".repeat(100);
        assert!(err(&deep).1.contains("nesting"));
    }

    fn arb_filter() -> impl Strategy<Value = Filter> {
        let leaf = prop_oneof![
            "[a-z]{1,3}(:[0-9]{1,2})?".prop_map(Filter::Term),
            (-5i64..5, 0i64..5).prop_map(|(lo, w)| Filter::range("ts", lo, lo + w)),
        ];
        leaf.prop_recursive(4, 24, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 1..4).prop_map(Filter::And),
                prop::collection::vec(inner.clone(), 1..4).prop_map(Filter::Or),
                inner.prop_map(Filter::not),
            ]
        })
    }

    proptest! {
        #[test]
        fn display_round_trips(f in arb_filter()) {
            prop_assert_eq!(parse(&f.to_string()).unwrap(), f);
        }

        #[test]
        fn arbitrary_text_never_panics(s in "[()a-z: 0-9-]{0,40}") {
            let _ = parse(&s);
        }
    }
}

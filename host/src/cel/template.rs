//! `${...}` templates in strings: a standalone expression (the whole string) yields any type; a
//! string with text around expressions concatenates strings.

use std::fmt;

/// One piece of a templated string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Segment {
    /// Literal text.
    Text(String),
    /// The CEL source inside one `${...}`.
    Expr(String),
}

/// A string with `${...}` expressions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Template {
    /// Text and expressions in order.
    pub(crate) segments: Vec<Segment>,
}

/// Why a string's `${...}` could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Error {
    /// `${` without its closing `}`.
    #[error("unterminated expression: no closing '}}' for the '${{' at byte {at}")]
    Unterminated {
        /// Byte offset of the `${`.
        at: usize,
    },
    /// `${}`.
    #[error("empty expression '${{}}' at byte {at}")]
    Empty {
        /// Byte offset of the `${`.
        at: usize,
    },
}

impl Template {
    /// Splits `s` into text and expressions. Braces and string literals inside an expression
    /// are respected, so `${ {'a': '}'}['a'] }` is one expression; a literal `${` is written as
    /// `${"${"}`.
    ///
    /// # Errors
    /// An unterminated or empty expression.
    pub(crate) fn parse(s: &str) -> Result<Self, Error> {
        let bytes = s.as_bytes();
        let mut segments = Vec::new();
        let mut text = String::new();
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] == b'$' && bytes.get(i + 1) == Some(&b'{') {
                let start = i;
                let end = find_close(bytes, i + 2).ok_or(Error::Unterminated { at: start })?;
                let expr = s[i + 2..end].trim();
                if expr.is_empty() {
                    return Err(Error::Empty { at: start });
                }
                if !text.is_empty() {
                    segments.push(Segment::Text(std::mem::take(&mut text)));
                }
                segments.push(Segment::Expr(expr.to_string()));
                i = end + 1;
            } else {
                let ch = s[i..].chars().next().expect("in bounds");
                text.push(ch);
                i += ch.len_utf8();
            }
        }
        if !text.is_empty() {
            segments.push(Segment::Text(text));
        }
        Ok(Self { segments })
    }

    #[cfg(test)]
    /// Whether the string holds any expression.
    pub(crate) fn has_expressions(&self) -> bool {
        self.segments.iter().any(|s| matches!(s, Segment::Expr(_)))
    }

    /// The expression, when the whole string is exactly one `${...}`.
    pub(crate) fn standalone(&self) -> Option<&str> {
        match self.segments.as_slice() {
            [Segment::Expr(e)] => Some(e),
            _ => None,
        }
    }
}

impl fmt::Display for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for s in &self.segments {
            match s {
                Segment::Text(t) => f.write_str(t)?,
                Segment::Expr(e) => write!(f, "${{{e}}}")?,
            }
        }
        Ok(())
    }
}

/// The index of the `}` closing an expression that starts at `from`.
fn find_close(bytes: &[u8], from: usize) -> Option<usize> {
    let mut depth = 0usize;
    let mut quote: Option<u8> = None;
    let mut i = from;
    while i < bytes.len() {
        let b = bytes[i];
        match quote {
            Some(q) => {
                if b == b'\\' {
                    i += 1;
                } else if b == q {
                    quote = None;
                }
            }
            None => match b {
                b'\'' | b'"' => quote = Some(b),
                b'{' => depth += 1,
                b'}' if depth == 0 => return Some(i),
                b'}' => depth -= 1,
                _ => {}
            },
        }
        i += 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segments(s: &str) -> Vec<Segment> {
        Template::parse(s).unwrap().segments
    }

    #[test]
    fn a_whole_string_expression_is_standalone() {
        let t = Template::parse("${schema.spec.replicas}").unwrap();
        assert_eq!(t.standalone(), Some("schema.spec.replicas"));
        assert_eq!(Template::parse("  ${x}").unwrap().standalone(), None);
    }

    #[test]
    fn text_and_expressions_interleave() {
        assert_eq!(
            segments("app-${schema.metadata.name}-${x}"),
            [
                Segment::Text("app-".into()),
                Segment::Expr("schema.metadata.name".into()),
                Segment::Text("-".into()),
                Segment::Expr("x".into())
            ]
        );
    }

    #[test]
    fn braces_and_quotes_inside_an_expression_are_kept() {
        assert_eq!(
            segments("${ {'a': '}'}['a'] }"),
            [Segment::Expr("{'a': '}'}['a']".into())]
        );
        assert_eq!(segments(r#"${"${VAR}"}"#), [Segment::Expr(r#""${VAR}""#.into())]);
    }

    #[test]
    fn plain_strings_have_no_expressions() {
        let t = Template::parse("just $text {with} braces").unwrap();
        assert!(!t.has_expressions());
    }

    #[test]
    fn an_unterminated_expression_is_an_error() {
        assert_eq!(
            Template::parse("a ${b").unwrap_err(),
            Error::Unterminated { at: 2 }
        );
        assert_eq!(Template::parse("${ }").unwrap_err(), Error::Empty { at: 0 });
    }
}

//! The JSONPath dialect of kubectl and printer columns: `.a.b`, `['a.b']`, `[0]`, `[*]`,
//! `..name` and filters `[?(@.type=="Ready")]` (`==`, `!=`, and bare existence).

use serde_json::Value;

/// A parse failure, with the expression.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid JSONPath {expr:?}: {reason}")]
pub struct Error {
    /// The expression.
    pub expr: String,
    /// What is wrong.
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq)]
enum Step {
    Field(String),
    Index(i64),
    All,
    Recursive(String),
    Filter {
        path: Vec<String>,
        op: Option<(bool, Value)>,
    },
}

/// A compiled path.
#[derive(Debug, Clone, PartialEq)]
pub struct JsonPath(Vec<Step>);

fn err(expr: &str, reason: impl Into<String>) -> Error {
    Error {
        expr: expr.to_string(),
        reason: reason.into(),
    }
}

fn parse_literal(s: &str) -> Value {
    let s = s.trim();
    if let Some(inner) = s.strip_prefix('"').and_then(|r| r.strip_suffix('"')) {
        return Value::String(inner.to_string());
    }
    if let Some(inner) = s.strip_prefix('\'').and_then(|r| r.strip_suffix('\'')) {
        return Value::String(inner.to_string());
    }
    serde_json::from_str(s).unwrap_or_else(|_| Value::String(s.to_string()))
}

impl JsonPath {
    /// Parses `expr`; surrounding `{}` are accepted, as kubectl writes them.
    ///
    /// # Errors
    /// An unterminated bracket or an unsupported filter.
    pub fn parse(expr: &str) -> Result<Self, Error> {
        let mut s = expr.trim();
        if let Some(inner) = s.strip_prefix('{').and_then(|r| r.strip_suffix('}')) {
            s = inner.trim();
        }
        let s = s.strip_prefix('$').unwrap_or(s);
        let chars: Vec<char> = s.chars().collect();
        let mut steps = Vec::new();
        let mut i = 0;
        let ident = |i: &mut usize| {
            let start = *i;
            while *i < chars.len() && chars[*i] != '.' && chars[*i] != '[' {
                *i += 1;
            }
            chars[start..*i].iter().collect::<String>()
        };
        while i < chars.len() {
            match chars[i] {
                '.' if chars.get(i + 1) == Some(&'.') => {
                    i += 2;
                    steps.push(Step::Recursive(ident(&mut i)));
                }
                '.' => {
                    i += 1;
                    let name = ident(&mut i);
                    if name == "*" {
                        steps.push(Step::All);
                    } else if !name.is_empty() {
                        steps.push(Step::Field(name));
                    }
                }
                '[' => {
                    let close = (i..chars.len()).find(|&j| chars[j] == ']' && !in_quotes(&chars[i..j]));
                    let Some(close) = close else {
                        return Err(err(expr, "unterminated ["));
                    };
                    let inner: String = chars[i + 1..close].iter().collect();
                    let inner = inner.trim();
                    i = close + 1;
                    if inner == "*" {
                        steps.push(Step::All);
                    } else if let Some(f) = inner.strip_prefix("?(").and_then(|r| r.strip_suffix(')')) {
                        steps.push(parse_filter(expr, f)?);
                    } else if let Ok(n) = inner.parse::<i64>() {
                        steps.push(Step::Index(n));
                    } else {
                        let name = parse_literal(inner);
                        steps.push(Step::Field(name.as_str().unwrap_or(inner).to_string()));
                    }
                }
                _ => steps.push(Step::Field(ident(&mut i))),
            }
        }
        Ok(Self(steps))
    }

    /// Every value the path selects in `root`, in document order.
    pub fn find<'v>(&self, root: &'v Value) -> Vec<&'v Value> {
        let mut current = vec![root];
        for step in &self.0 {
            let mut next = Vec::new();
            for v in current {
                match step {
                    Step::Field(name) => next.extend(v.get(name)),
                    Step::Index(n) => {
                        if let Some(items) = v.as_array() {
                            let idx = if *n < 0 { items.len() as i64 + n } else { *n };
                            next.extend(usize::try_from(idx).ok().and_then(|i| items.get(i)));
                        }
                    }
                    Step::All => match v {
                        Value::Array(items) => next.extend(items.iter()),
                        Value::Object(map) => next.extend(map.values()),
                        _ => {}
                    },
                    Step::Recursive(name) => collect_recursive(v, name, &mut next),
                    Step::Filter { path, op } => {
                        if let Some(items) = v.as_array() {
                            next.extend(items.iter().filter(|item| {
                                let mut cur = Some(*item);
                                for p in path {
                                    cur = cur.and_then(|c| c.get(p));
                                }
                                match (cur, op) {
                                    (None, _) => false,
                                    (Some(_), None) => true,
                                    (Some(found), Some((eq, want))) => loosely_equal(found, want) == *eq,
                                }
                            }));
                        }
                    }
                }
            }
            current = next;
        }
        current
    }
}

fn in_quotes(chars: &[char]) -> bool {
    let mut quote = None;
    for c in chars {
        match (quote, c) {
            (None, '"' | '\'') => quote = Some(*c),
            (Some(q), c) if q == *c => quote = None,
            _ => {}
        }
    }
    quote.is_some()
}

fn loosely_equal(found: &Value, want: &Value) -> bool {
    match (found, want) {
        (Value::String(a), Value::String(b)) => a == b,
        (Value::Number(a), Value::Number(b)) => a.as_f64() == b.as_f64(),
        (a, Value::String(b)) => serde_json::to_string(a).is_ok_and(|t| t == *b),
        (a, b) => a == b,
    }
}

fn collect_recursive<'v>(v: &'v Value, name: &str, out: &mut Vec<&'v Value>) {
    match v {
        Value::Object(map) => {
            if let Some(found) = map.get(name) {
                out.push(found);
            }
            for child in map.values() {
                collect_recursive(child, name, out);
            }
        }
        Value::Array(items) => {
            for i in items {
                collect_recursive(i, name, out);
            }
        }
        _ => {}
    }
}

fn parse_filter(expr: &str, f: &str) -> Result<Step, Error> {
    let (lhs, op) = if let Some((l, r)) = f.split_once("==") {
        (l, Some((true, parse_literal(r))))
    } else if let Some((l, r)) = f.split_once("!=") {
        (l, Some((false, parse_literal(r))))
    } else {
        (f, None)
    };
    let lhs = lhs.trim();
    let Some(rest) = lhs.strip_prefix('@') else {
        return Err(err(expr, "a filter must start with @"));
    };
    let path = rest
        .split('.')
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect();
    Ok(Step::Filter { path, op })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_filter_selects_the_ready_condition() {
        let obj = json!({"status": {"conditions": [
            {"type": "Synced", "status": "True"}, {"type": "Ready", "status": "False"}]}});
        let p = JsonPath::parse(r#".status.conditions[?(@.type=="Ready")].status"#).unwrap();
        assert_eq!(p.find(&obj), vec![&json!("False")]);
    }

    #[test]
    fn brackets_indices_wildcards_and_recursion_work() {
        let obj = json!({"metadata": {"labels": {"app.kubernetes.io/name": "x"}},
            "spec": {"ports": [{"port": 80}, {"port": 443}]}});
        assert_eq!(
            JsonPath::parse(".metadata.labels['app.kubernetes.io/name']")
                .unwrap()
                .find(&obj),
            vec![&json!("x")]
        );
        assert_eq!(
            JsonPath::parse("{.spec.ports[1].port}").unwrap().find(&obj),
            vec![&json!(443)]
        );
        assert_eq!(
            JsonPath::parse(".spec.ports[*].port").unwrap().find(&obj).len(),
            2
        );
        assert_eq!(JsonPath::parse("..port").unwrap().find(&obj).len(), 2);
        assert_eq!(
            JsonPath::parse(".spec.ports[-1].port").unwrap().find(&obj),
            vec![&json!(443)]
        );
        assert!(JsonPath::parse(".spec.missing").unwrap().find(&obj).is_empty());
        assert!(JsonPath::parse(".a[0").is_err());
    }
}

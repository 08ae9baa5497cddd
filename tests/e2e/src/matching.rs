//! Chainsaw's assertion rules: an expected document matches a live object when every key it
//! has matches (extra live keys are fine); arrays match element by element and must have the
//! same length; a key written `(expr)` is a JMESPath expression evaluated on the live value at
//! that level whose result must match the expected value; a value written `(expr)` is
//! evaluated and compared; `null` matches an absent key. Numbers compare by value (`3` = `3.0`)
//! but never equal strings (`3` ≠ `"3"`).

use std::collections::BTreeMap;

use serde_json::Value;

/// Variables usable in expressions as `$name` (e.g. `$namespace`).
pub type Bindings = BTreeMap<String, String>;

/// The first difference found.
#[derive(Debug, Clone, PartialEq)]
pub struct Mismatch {
    /// Where: `spec.replicas`, `status.(conditions[?type == 'Ready'])[0].status`.
    pub path: String,
    /// What the scenario expects there.
    pub expected: Value,
    /// What the live object has there (`None`: absent).
    pub actual: Option<Value>,
    /// An explanation when it is not a plain value difference.
    pub note: String,
}

impl std::fmt::Display for Mismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let actual = match &self.actual {
            Some(v) => v.to_string(),
            None => "(absent)".into(),
        };
        write!(
            f,
            "{}: expected {}, got {}",
            if self.path.is_empty() {
                "(root)"
            } else {
                &self.path
            },
            self.expected,
            actual
        )?;
        if !self.note.is_empty() {
            write!(f, " ({})", self.note)?;
        }
        Ok(())
    }
}

/// A JMESPath expression: `(expr)` → `expr`.
pub fn expression(s: &str) -> Option<&str> {
    s.strip_prefix('(').and_then(|r| r.strip_suffix(')'))
}

/// Evaluates a JMESPath expression on `data`, `$name` bindings substituted as literals.
///
/// # Errors
/// The expression does not compile or fails.
pub fn evaluate(expr: &str, data: &Value, bindings: &Bindings) -> Result<Value, String> {
    let mut text = expr.to_string();
    // Longest names first, so `$namespaceX` is not cut by `$namespace`.
    let mut names: Vec<&String> = bindings.keys().collect();
    names.sort_by_key(|n| std::cmp::Reverse(n.len()));
    for name in names {
        let literal = format!("'{}'", bindings[name].replace('\'', "\\'"));
        text = text.replace(&format!("${name}"), &literal);
    }
    let compiled = jmespath::compile(&text).map_err(|e| format!("invalid expression {expr:?}: {e}"))?;
    let result = compiled
        .search(data.clone())
        .map_err(|e| format!("evaluating {expr:?}: {e}"))?;
    serde_json::to_value(&*result).map_err(|e| format!("evaluating {expr:?}: {e}"))
}

fn scalar_equal(expected: &Value, actual: &Value) -> bool {
    match (expected, actual) {
        (Value::Number(a), Value::Number(b)) => a.as_f64() == b.as_f64(),
        (a, b) => a == b,
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// Checks `actual` against `expected`.
///
/// # Errors
/// The first [`Mismatch`], depth first in document order.
pub fn check(expected: &Value, actual: &Value, bindings: &Bindings) -> Result<(), Mismatch> {
    at(expected, Some(actual), "", bindings)
}

fn at(expected: &Value, actual: Option<&Value>, path: &str, bindings: &Bindings) -> Result<(), Mismatch> {
    let mismatch = |note: &str| Mismatch {
        path: path.to_string(),
        expected: expected.clone(),
        actual: actual.cloned(),
        note: note.to_string(),
    };
    match expected {
        Value::Null => match actual {
            None | Some(Value::Null) => Ok(()),
            Some(_) => Err(mismatch("")),
        },
        Value::Object(map) => {
            let Some(actual) = actual else {
                return Err(mismatch(""));
            };
            if !actual.is_object() && !map.keys().all(|k| expression(k).is_some()) {
                return Err(mismatch("not an object"));
            }
            for (key, want) in map {
                if let Some(expr) = expression(key) {
                    let result = evaluate(expr, actual, bindings).map_err(|e| Mismatch {
                        path: join(path, key),
                        expected: want.clone(),
                        actual: None,
                        note: e,
                    })?;
                    at(want, Some(&result), &join(path, key), bindings)?;
                } else {
                    at(want, actual.get(key), &join(path, key), bindings)?;
                }
            }
            Ok(())
        }
        Value::Array(items) => {
            let Some(list) = actual.and_then(Value::as_array) else {
                return Err(mismatch("not a list"));
            };
            if list.len() != items.len() {
                return Err(mismatch(&format!(
                    "expected {} items, found {}",
                    items.len(),
                    list.len()
                )));
            }
            for (i, (want, have)) in items.iter().zip(list).enumerate() {
                at(want, Some(have), &format!("{path}[{i}]"), bindings)?;
            }
            Ok(())
        }
        Value::String(s) if expression(s).is_some() => {
            let expr = expression(s).expect("checked");
            let Some(actual) = actual else {
                return Err(mismatch(""));
            };
            let result = evaluate(expr, actual, bindings).map_err(|e| mismatch(&e))?;
            if scalar_equal(&result, actual) {
                Ok(())
            } else {
                Err(Mismatch {
                    expected: result,
                    ..mismatch(&format!("from {s}"))
                })
            }
        }
        scalar => match actual {
            Some(a) if scalar_equal(scalar, a) => Ok(()),
            _ => Err(mismatch("")),
        },
    }
}

/// Replaces every string value `(expr)` of a resource to apply by its value (keys are left
/// alone).
///
/// # Errors
/// An expression that fails.
pub fn template(doc: &mut Value, bindings: &Bindings) -> Result<(), String> {
    match doc {
        Value::String(s) => {
            if let Some(expr) = expression(s) {
                *doc = evaluate(expr, &Value::Null, bindings)?;
            }
        }
        Value::Array(items) => {
            for i in items {
                template(i, bindings)?;
            }
        }
        Value::Object(map) => {
            for v in map.values_mut() {
                template(v, bindings)?;
            }
        }
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ok(expected: Value, actual: Value) -> bool {
        check(&expected, &actual, &Bindings::new()).is_ok()
    }

    #[test]
    fn maps_match_partially_and_nested() {
        let live =
            json!({"metadata": {"name": "a", "labels": {"x": "1", "y": "2"}}, "spec": {"replicas": 3}});
        assert!(ok(json!({"metadata": {"labels": {"x": "1"}}}), live.clone()));
        let m = check(
            &json!({"metadata": {"labels": {"x": "2"}}}),
            &live,
            &Bindings::new(),
        )
        .unwrap_err();
        assert_eq!(m.path, "metadata.labels.x");
        assert_eq!(
            (m.expected.clone(), m.actual.clone()),
            (json!("2"), Some(json!("1")))
        );
        assert_eq!(m.to_string(), "metadata.labels.x: expected \"2\", got \"1\"");
    }

    #[test]
    fn arrays_match_element_by_element_with_equal_length() {
        let live = json!({"items": [{"a": 1, "b": 2}, {"a": 3}]});
        assert!(ok(json!({"items": [{"a": 1}, {"a": 3}]}), live.clone()));
        let short = check(&json!({"items": [{"a": 1}]}), &live, &Bindings::new()).unwrap_err();
        assert_eq!(short.note, "expected 1 items, found 2");
        let second = check(&json!({"items": [{"a": 1}, {"a": 4}]}), &live, &Bindings::new()).unwrap_err();
        assert_eq!(second.path, "items[1].a");
    }

    #[test]
    fn jmespath_keys_with_filters_select_the_live_value() {
        let live = json!({"status": {"conditions": [
            {"type": "Progressing", "status": "True"}, {"type": "Ready", "status": "False"}]}});
        let want = json!({"status": {"(conditions[?type == 'Ready'])": [{"status": "True"}]}});
        let m = check(&want, &live, &Bindings::new()).unwrap_err();
        assert_eq!(m.path, "status.(conditions[?type == 'Ready'])[0].status");
        assert_eq!(m.actual, Some(json!("False")));
        assert!(ok(json!({"status": {"(length(conditions))": 2}}), live));
    }

    #[test]
    fn numbers_are_not_strings_but_ints_equal_floats() {
        assert!(ok(json!({"n": 3}), json!({"n": 3.0})));
        assert!(!ok(json!({"n": "3"}), json!({"n": 3})));
        assert!(!ok(json!({"n": 3}), json!({"n": "3"})));
    }

    #[test]
    fn null_matches_absent_but_a_value_does_not() {
        assert!(ok(json!({"gone": null}), json!({})));
        assert!(ok(json!({"gone": null}), json!({"gone": null})));
        assert!(!ok(json!({"gone": null}), json!({"gone": 1})));
        let absent = check(&json!({"here": 1}), &json!({}), &Bindings::new()).unwrap_err();
        assert_eq!(absent.to_string(), "here: expected 1, got (absent)");
    }

    #[test]
    fn bindings_feed_expressions_and_templates() {
        let b: Bindings = [("namespace".to_string(), "chainsaw-x".to_string())].into();
        assert!(
            check(
                &json!({"metadata": {"namespace": "($namespace)"}}),
                &json!({"metadata": {"namespace": "chainsaw-x"}}),
                &b
            )
            .is_ok()
        );
        assert!(
            check(
                &json!({"metadata": {"namespace": "($namespace)"}}),
                &json!({"metadata": {"namespace": "other"}}),
                &b
            )
            .is_err()
        );
        let mut doc = json!({"data": {"ns": "($namespace)", "plain": "(not closed"}});
        template(&mut doc, &b).unwrap();
        assert_eq!(doc, json!({"data": {"ns": "chainsaw-x", "plain": "(not closed"}}));
    }
}

//! Custom status conditions, as kro has them: `spec.schema.status.conditions` lists `${...}`
//! expressions that build conditions with `runtime.newCondition({type, status, reason,
//! message})` (or lists of them), checked at admission the way kro checks them.
//!
//! kro's `runtime.newCondition` takes a map literal whose keys are bare identifiers; its parser
//! macro turns them into string keys. Here the same rewrite happens on the expression's text
//! before it is compiled or type-checked, so both CEL libraries see an ordinary map literal.

use std::collections::BTreeSet;

use serde_json::Value;

use crate::cel::{self, Program, template::Template};

use super::model::Error;

/// The keys a condition has.
const KEYS: [&str; 4] = ["type", "status", "reason", "message"];
/// The statuses a condition may have.
pub(crate) const STATUSES: [&str; 3] = ["True", "False", "Unknown"];
/// kro's built-in instance conditions, the only ones `runtime.condition(schema, …)` may read.
const BUILT_IN: [&str; 4] = ["InstanceManaged", "GraphResolved", "ResourcesReady", "Ready"];

const NEW_CONDITION: &str = "runtime.newCondition";

/// What a `runtime.newCondition` literal says, where it says it with a string literal.
#[derive(Debug, Default)]
struct Literal {
    type_: Option<String>,
    status: Option<String>,
}

/// Compiles `spec.schema.status.conditions`: each entry one standalone expression returning a
/// condition or a list of them.
///
/// # Errors
/// `status.conditions` that is not a list of `${...}` strings; a `runtime.newCondition` map
/// with a quoted, unknown or repeated key, without `type` or `status`, or with a literal
/// status other than True, False or Unknown or an empty literal type; two entries declaring the
/// same literal type; `runtime.condition(schema, 'X')` for an `X` that is not one of kro's
/// built-in conditions; an expression that builds no condition; a compile error.
pub(super) fn build_conditions(value: &Value, omit_gate: bool) -> Result<Vec<Program>, Error> {
    let invalid = |m: String| Error::Status(format!("status.conditions: {m}"));
    let Value::Array(entries) = value else {
        return Err(invalid(
            "must be a list of ${...} expressions that return conditions (runtime.newCondition)".into(),
        ));
    };
    let mut declared: BTreeSet<String> = BTreeSet::new();
    let mut sources = Vec::new();
    for (i, entry) in entries.iter().enumerate() {
        let at = |m: String| Error::Status(format!("status.conditions[{i}]: {m}"));
        let Some(text) = entry.as_str() else {
            return Err(at("must be a ${...} expression".into()));
        };
        let template = Template::parse(text).map_err(|e| at(e.to_string()))?;
        let Some(src) = template.standalone() else {
            return Err(at(format!("{text:?} must be a single ${{...}} expression")));
        };
        let (rewritten, literals) = rewrite(src).map_err(at)?;
        if literals.is_empty() {
            return Err(at(format!(
                "expression {src:?} must return a condition built with runtime.newCondition, or a list of them"
            )));
        }
        for literal in &literals {
            if let Some(status) = &literal.status
                && !STATUSES.contains(&status.as_str())
            {
                return Err(at(format!(
                    "runtime.newCondition: status must be one of True, False, Unknown (got {status:?}) in expression {src:?}"
                )));
            }
            match literal.type_.as_deref() {
                Some("") => {
                    return Err(at(format!(
                        "runtime.newCondition: type must not be empty in expression {src:?}"
                    )));
                }
                Some(t) if !declared.insert(t.to_string()) => {
                    return Err(invalid(format!(
                        "condition type {t:?} is declared by more than one conditions entry"
                    )));
                }
                _ => {}
            }
        }
        sources.push((i, src.to_string(), rewritten));
    }
    let mut programs = Vec::new();
    for (i, src, rewritten) in sources {
        let at = |m: String| Error::Status(format!("status.conditions[{i}]: {m}"));
        for looked_up in schema_lookups(&rewritten) {
            if BUILT_IN.contains(&looked_up.as_str()) {
                continue;
            }
            return Err(at(if declared.contains(&looked_up) {
                format!(
                    "runtime.condition(schema, {looked_up:?}): custom conditions cannot reference each other in expression {src:?}"
                )
            } else {
                format!(
                    "runtime.condition(schema, {looked_up:?}): unknown condition type; only kro's built-in types (InstanceManaged, GraphResolved, ResourcesReady, Ready) can be read from schema in expression {src:?}"
                )
            }));
        }
        let program = cel::engine()
            .compile_with(&rewritten, cel::Omit::refused(omit_gate))
            .map_err(|e| at(format!("expression {src:?}: {e}")))?;
        programs.push(program);
    }
    Ok(programs)
}

/// Skips a string literal starting at `i` (at its quote); the index after it.
fn skip_string(b: &[u8], i: usize) -> usize {
    let quote = b[i];
    let triple = b.len() >= i + 3 && b[i + 1] == quote && b[i + 2] == quote;
    let mut j = if triple { i + 3 } else { i + 1 };
    while j < b.len() {
        if b[j] == b'\\' {
            j += 2;
            continue;
        }
        if triple {
            if b.len() >= j + 3 && b[j] == quote && b[j + 1] == quote && b[j + 2] == quote {
                return j + 3;
            }
        } else if b[j] == quote {
            return j + 1;
        }
        j += 1;
    }
    b.len()
}

fn skip_space(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && b[i].is_ascii_whitespace() {
        i += 1;
    }
    i
}

fn ident_end(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
        i += 1;
    }
    i
}

/// A plain string literal (`'x'` or `"x"`, no escapes) spanning `b[start..end]`, if it is one.
fn plain_string(src: &str, start: usize, end: usize) -> Option<String> {
    let s = src.get(start..end)?.trim();
    let quote = s.chars().next()?;
    if (quote == '\'' || quote == '"') && s.len() >= 2 && s.ends_with(quote) {
        let inner = &s[1..s.len() - 1];
        if !inner.contains(['\\', quote]) {
            return Some(inner.to_string());
        }
    }
    None
}

/// Rewrites the bare identifier keys of every `runtime.newCondition({...})` map into string
/// keys, checking them as kro's macro does; what each call's literal `type` and `status` are.
fn rewrite(src: &str) -> Result<(String, Vec<Literal>), String> {
    let b = src.as_bytes();
    let mut out = String::with_capacity(src.len() + 16);
    let mut literals = Vec::new();
    let mut i = 0;
    let mut copied = 0;
    while i < b.len() {
        match b[i] {
            b'\'' | b'"' => {
                i = skip_string(b, i);
                continue;
            }
            _ if b[i..].starts_with(NEW_CONDITION.as_bytes())
                && (i == 0
                    || !(b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_' || b[i - 1] == b'.')) =>
            {
                let open = skip_space(b, i + NEW_CONDITION.len());
                if b.get(open) != Some(&b'(') {
                    i += NEW_CONDITION.len();
                    continue;
                }
                let brace = skip_space(b, open + 1);
                if b.get(brace) != Some(&b'{') {
                    return Err("runtime.newCondition: argument must be a map literal".into());
                }
                // The map's entries: at depth 1, a key starts after `{` or `,`.
                let mut literal = Literal::default();
                let mut seen: Vec<&str> = Vec::new();
                let mut j = brace + 1;
                let mut depth = 1usize;
                let mut expect_key = true;
                let mut value_start: Option<(&str, usize)> = None;
                while j < b.len() && depth > 0 {
                    if expect_key && depth == 1 {
                        let k = skip_space(b, j);
                        if b.get(k) == Some(&b'}') {
                            j = k;
                            expect_key = false;
                            continue;
                        }
                        if matches!(b.get(k), Some(b'\'' | b'"')) {
                            return Err("runtime.newCondition: keys must be bare identifiers (type, status, reason, message); quoted or computed keys are not allowed".into());
                        }
                        let end = ident_end(b, k);
                        let colon = skip_space(b, end);
                        let name = &src[k..end];
                        if name.is_empty() || b.get(colon) != Some(&b':') {
                            return Err("runtime.newCondition: keys must be bare identifiers (type, status, reason, message); quoted or computed keys are not allowed".into());
                        }
                        let Some(key) = KEYS.iter().find(|key| **key == name) else {
                            return Err(format!(
                                "runtime.newCondition: unknown key {name:?} (allowed: type, status, reason, message)"
                            ));
                        };
                        if seen.contains(key) {
                            return Err(format!("runtime.newCondition: duplicate key {name:?}"));
                        }
                        seen.push(key);
                        out.push_str(&src[copied..k]);
                        out.push('\'');
                        out.push_str(name);
                        out.push('\'');
                        copied = end;
                        j = colon + 1;
                        value_start = Some((key, j));
                        expect_key = false;
                        continue;
                    }
                    match b[j] {
                        b'\'' | b'"' => {
                            j = skip_string(b, j);
                            continue;
                        }
                        b'(' | b'[' | b'{' => depth += 1,
                        b')' | b']' | b'}' => {
                            depth -= 1;
                            if depth == 0
                                && let Some((key, start)) = value_start.take()
                            {
                                record(&mut literal, key, plain_string(src, start, j));
                            }
                        }
                        b',' if depth == 1 => {
                            if let Some((key, start)) = value_start.take() {
                                record(&mut literal, key, plain_string(src, start, j));
                            }
                            expect_key = true;
                        }
                        _ => {}
                    }
                    j += 1;
                }
                for required in ["type", "status"] {
                    if !seen.contains(&required) {
                        return Err(format!("runtime.newCondition: '{required}' is required"));
                    }
                }
                literals.push(literal);
                i = j;
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    out.push_str(&src[copied..]);
    Ok((out, literals))
}

fn record(literal: &mut Literal, key: &str, value: Option<String>) {
    match key {
        "type" => literal.type_ = value,
        "status" => literal.status = value,
        _ => {}
    }
}

/// The literal types `runtime.condition(schema, '…')` reads.
fn schema_lookups(src: &str) -> Vec<String> {
    let re = regex::Regex::new(r#"runtime\.condition\(\s*schema\s*,\s*(?:'([^'\\]*)'|"([^"\\]*)")\s*\)"#)
        .expect("a valid pattern");
    re.captures_iter(src)
        .filter_map(|c| c.get(1).or_else(|| c.get(2)).map(|m| m.as_str().to_string()))
        .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn err(entries: Value) -> String {
        build_conditions(&entries, false).unwrap_err().to_string()
    }

    #[test]
    fn bare_keys_become_string_keys_and_literals_are_read() {
        let (out, lits) =
            rewrite("runtime.newCondition({type: 'AppReady', status: x > 0 ? 'True' : 'False', reason: 'R', message: ''})")
                .unwrap();
        assert_eq!(
            out,
            "runtime.newCondition({'type': 'AppReady', 'status': x > 0 ? 'True' : 'False', 'reason': 'R', 'message': ''})"
        );
        assert_eq!(lits[0].type_.as_deref(), Some("AppReady"));
        assert_eq!(lits[0].status, None, "a computed status is not a literal");
    }

    #[test]
    fn every_new_condition_in_a_list_is_rewritten_and_strings_are_left_alone() {
        let src = "subnets.map(s, runtime.newCondition({type: 'Subnet-' + s.metadata.name, status: 'True', reason: 'runtime.newCondition({type: x})', message: ''}))";
        let (out, lits) = rewrite(src).unwrap();
        assert!(out.contains("{'type': 'Subnet-' + s.metadata.name, 'status': 'True', 'reason': 'runtime.newCondition({type: x})', 'message': ''}"), "{out}");
        assert_eq!(lits.len(), 1);
        assert_eq!(lits[0].status.as_deref(), Some("True"));
        assert_eq!(lits[0].type_, None);
    }

    #[test]
    fn conditions_are_refused_as_kro_refuses_them() {
        let one = |body: &str| json!([format!("${{runtime.newCondition({body})}}")]);
        for (entries, want) in [
            (
                one("{'type': 'A', status: 'True'}"),
                "keys must be bare identifiers",
            ),
            (one("{type: 'A', state: 'True'}"), "unknown key \"state\""),
            (
                one("{type: 'A', type: 'B', status: 'True'}"),
                "duplicate key \"type\"",
            ),
            (one("{status: 'True'}"), "'type' is required"),
            (one("{type: 'A'}"), "'status' is required"),
            (
                one("{type: 'A', status: 'Yes'}"),
                "status must be one of True, False, Unknown (got \"Yes\")",
            ),
            (one("{type: '', status: 'True'}"), "type must not be empty"),
            (
                json!(["${schema.spec.name}"]),
                "must return a condition built with runtime.newCondition",
            ),
            (json!("${x}"), "must be a list"),
            (json!(["text"]), "must be a single ${...} expression"),
            (
                json!([
                    "${runtime.newCondition({type: 'A', status: 'True'})}",
                    "${runtime.newCondition({type: 'A', status: 'False'})}"
                ]),
                "condition type \"A\" is declared by more than one conditions entry",
            ),
            (
                json!([
                    "${runtime.newCondition({type: 'A', status: 'True'})}",
                    "${runtime.newCondition({type: 'B', status: runtime.condition(schema, 'A').status})}"
                ]),
                "custom conditions cannot reference each other",
            ),
            (
                json!([
                    "${runtime.newCondition({type: 'B', status: runtime.condition(schema, 'Nope').status})}"
                ]),
                "unknown condition type; only kro's built-in types",
            ),
        ] {
            let e = err(entries.clone());
            assert!(e.contains(want), "{entries}: {e}");
        }
    }

    #[test]
    fn built_in_conditions_of_the_instance_and_any_condition_of_a_resource_may_be_read() {
        let ok = json!([
            "${runtime.newCondition({type: 'Ready', status: runtime.condition(schema, 'ResourcesReady').status, reason: 'Composed', message: ''})}",
            "${runtime.newCondition({type: 'Deployed', status: runtime.condition(deployment, 'Available').status})}",
        ]);
        assert_eq!(build_conditions(&ok, false).unwrap().len(), 2);
    }
}

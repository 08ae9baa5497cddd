//! Structural OpenAPI schemas as the API server applies them to custom resources: pruning of
//! unknown fields, defaulting, and validation with Kubernetes' field errors. kroxide's offline
//! `render` and its test API server both use this module, so the two cannot disagree.

use std::collections::BTreeSet;

use serde_json::{Map, Value};

/// One field error, as in a 422 `Status`'s `details.causes`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cause {
    /// `FieldValueInvalid`, `FieldValueRequired`, `FieldValueNotSupported`, ...
    pub reason: &'static str,
    /// The message, e.g. `Invalid value: "x": spec.replicas in body must be of type integer: "string"`.
    pub message: String,
    /// The field path, e.g. `spec.replicas`.
    pub field: String,
}

impl std::fmt::Display for Cause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

fn json_type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// A value as Kubernetes prints it in a field error: strings quoted, others as JSON.
fn shown(v: &Value) -> String {
    match v {
        Value::Object(_) => "\"object\"".to_string(),
        Value::Array(_) => "\"array\"".to_string(),
        other => other.to_string(),
    }
}

fn preserves(schema: &Value) -> bool {
    schema.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true))
}

fn is_embedded(schema: &Value) -> bool {
    schema.get("x-kubernetes-embedded-resource") == Some(&Value::Bool(true))
}

/// Removes fields the schema does not define (unless it preserves unknown fields). At the
/// root, `apiVersion`, `kind` and `metadata` are kept. Returns the paths pruned.
pub fn prune(value: &mut Value, schema: &Value) -> Vec<String> {
    let mut pruned = Vec::new();
    prune_at(value, schema, "", true, &mut pruned);
    pruned
}

fn prune_at(value: &mut Value, schema: &Value, path: &str, root: bool, pruned: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            let props = schema.get("properties").and_then(Value::as_object);
            let additional = schema.get("additionalProperties");
            let keep_unknown = preserves(schema);
            let embedded = root || is_embedded(schema);
            let keys: Vec<String> = map.keys().cloned().collect();
            for key in keys {
                let child_path = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                if embedded && matches!(key.as_str(), "apiVersion" | "kind" | "metadata") {
                    continue;
                }
                let child_schema = props.and_then(|p| p.get(&key)).or(match additional {
                    Some(s @ Value::Object(_)) => Some(s),
                    _ => None,
                });
                match child_schema {
                    Some(s) => prune_at(
                        map.get_mut(&key).expect("key listed"),
                        s,
                        &child_path,
                        false,
                        pruned,
                    ),
                    None if keep_unknown || additional == Some(&Value::Bool(true)) => {}
                    None => {
                        map.remove(&key);
                        pruned.push(child_path);
                    }
                }
            }
        }
        Value::Array(items) => {
            if let Some(item_schema) = schema.get("items") {
                for (i, item) in items.iter_mut().enumerate() {
                    prune_at(item, item_schema, &format!("{path}[{i}]"), false, pruned);
                }
            }
        }
        _ => {}
    }
}

/// Applies `default`s: a missing property with a default gets it (then is defaulted itself,
/// so nested defaults under an object default materialise). `null` in a non-nullable field
/// is dropped first, as the API server does.
pub fn default(value: &mut Value, schema: &Value) {
    match value {
        Value::Object(map) => {
            if let Some(props) = schema.get("properties").and_then(Value::as_object) {
                for (key, prop) in props {
                    if map.get(key) == Some(&Value::Null) && prop.get("nullable") != Some(&Value::Bool(true))
                    {
                        map.remove(key);
                    }
                    if !map.contains_key(key)
                        && let Some(d) = prop.get("default")
                    {
                        map.insert(key.clone(), d.clone());
                    }
                    if let Some(child) = map.get_mut(key) {
                        default(child, prop);
                    }
                }
            }
            if let Some(additional @ Value::Object(_)) = schema.get("additionalProperties") {
                for child in map.values_mut() {
                    default(child, additional);
                }
            }
        }
        Value::Array(items) => {
            if let Some(item_schema) = schema.get("items") {
                for item in items {
                    default(item, item_schema);
                }
            }
        }
        _ => {}
    }
}

/// Evaluates `x-kubernetes-validations` rules other than the built-in `self == oldSelf`.
pub trait RuleEvaluator {
    /// Evaluates `rule` with `self` (and `oldSelf` on updates). `Ok(None)` when the rule cannot
    /// be evaluated here (it is then skipped).
    ///
    /// # Errors
    /// A message when evaluation fails.
    fn evaluate(&self, rule: &str, this: &Value, old: Option<&Value>) -> Result<Option<bool>, String>;
}

/// Evaluates only `self == oldSelf`; other rules are skipped.
#[derive(Debug, Default)]
pub struct BuiltinRules;

impl RuleEvaluator for BuiltinRules {
    fn evaluate(&self, _rule: &str, _this: &Value, _old: Option<&Value>) -> Result<Option<bool>, String> {
        Ok(None)
    }
}

/// Validates `value` (the new object) against `schema`; `old` is the stored object on updates,
/// for transition rules. Returns every violation found.
///
/// As the API server does, `x-kubernetes-validations` rules do not run on an object with a
/// missing, mistyped or unsupported value: one cause (at field `<nil>`) says so instead.
pub fn validate(value: &Value, old: Option<&Value>, schema: &Value, rules: &dyn RuleEvaluator) -> Vec<Cause> {
    let mut causes = Vec::new();
    check(value, old, schema, "", true, &Skipped, &mut causes);
    // A missing, mistyped or unsupported value blocks the rules; other errors do not.
    let blocking = causes.iter().any(|c| {
        matches!(
            c.reason,
            "FieldValueRequired" | "FieldValueTypeInvalid" | "FieldValueNotSupported"
        )
    });
    if blocking {
        if has_rules(schema) {
            causes.push(Cause {
                reason: "FieldValueInvalid",
                message: "Invalid value: null: some validation rules were not checked because the object was invalid; correct the existing errors to complete validation".into(),
                field: "<nil>".into(),
            });
        }
        return causes;
    }
    causes.clear();
    check(value, old, schema, "", true, rules, &mut causes);
    causes
}

/// Whether any `x-kubernetes-validations` rule is in `schema`.
fn has_rules(schema: &Value) -> bool {
    match schema {
        Value::Object(m) => m.contains_key("x-kubernetes-validations") || m.values().any(has_rules),
        Value::Array(a) => a.iter().any(has_rules),
        _ => false,
    }
}

/// Skips every rule: the schema pass.
struct Skipped;

impl RuleEvaluator for Skipped {
    fn evaluate(&self, _rule: &str, _this: &Value, _old: Option<&Value>) -> Result<Option<bool>, String> {
        Ok(None)
    }
}

/// A value of the wrong type, as the API server words it: the value shown is its JSON type.
fn wrong_type(causes: &mut Vec<Cause>, path: &str, value: &Value, expected: &str) {
    let at = if path.is_empty() { "<root>" } else { path };
    let actual = json_type_name(value);
    causes.push(Cause {
        reason: "FieldValueTypeInvalid",
        message: format!(
            "Invalid value: \"{actual}\": {at} in body must be of type {expected}: \"{actual}\""
        ),
        field: path.to_string(),
    });
}

fn invalid(causes: &mut Vec<Cause>, path: &str, value: &Value, detail: String) {
    causes.push(Cause {
        reason: "FieldValueInvalid",
        message: format!("Invalid value: {}: {detail}", shown(value)),
        field: path.to_string(),
    });
}

fn type_matches(ty: &str, v: &Value) -> bool {
    match ty {
        "string" => v.is_string(),
        "integer" => v.is_i64() || v.is_u64(),
        "number" => v.is_number(),
        "boolean" => v.is_boolean(),
        "object" => v.is_object(),
        "array" => v.is_array(),
        _ => true,
    }
}

fn as_f64(v: &Value) -> Option<f64> {
    v.as_f64()
}

#[allow(
    clippy::too_many_lines,
    reason = "one check per OpenAPI keyword, in the API server's order"
)]
fn check(
    value: &Value,
    old: Option<&Value>,
    schema: &Value,
    path: &str,
    root: bool,
    rules: &dyn RuleEvaluator,
    causes: &mut Vec<Cause>,
) {
    let at = if path.is_empty() { "<root>" } else { path };
    if value.is_null() {
        if schema.get("nullable") == Some(&Value::Bool(true)) {
            return;
        }
        if let Some(ty) = schema.get("type").and_then(Value::as_str) {
            wrong_type(causes, path, value, ty);
        }
        return;
    }
    let int_or_string = schema.get("x-kubernetes-int-or-string") == Some(&Value::Bool(true));
    if int_or_string {
        if !(value.is_string() || value.is_i64() || value.is_u64()) {
            wrong_type(causes, path, value, "integer or string");
            return;
        }
    } else if let Some(ty) = schema.get("type").and_then(Value::as_str)
        && !type_matches(ty, value)
    {
        wrong_type(causes, path, value, ty);
        return;
    }
    if let Some(Value::Array(allowed)) = schema.get("enum")
        && !allowed.contains(value)
    {
        let list: Vec<String> = allowed.iter().map(Value::to_string).collect();
        causes.push(Cause {
            reason: "FieldValueNotSupported",
            message: format!(
                "Unsupported value: {}: supported values: {}",
                shown(value),
                list.join(", ")
            ),
            field: path.to_string(),
        });
    }
    if let Some(n) = as_f64(value).filter(|_| value.is_number()) {
        if let Some(min) = schema.get("minimum").and_then(as_f64) {
            let exclusive = schema.get("exclusiveMinimum") == Some(&Value::Bool(true));
            if n < min || (exclusive && n == min) {
                let op = if exclusive {
                    "greater than"
                } else {
                    "greater than or equal to"
                };
                invalid(
                    causes,
                    path,
                    value,
                    format!("{at} in body should be {op} {}", schema["minimum"]),
                );
            }
        }
        if let Some(max) = schema.get("maximum").and_then(as_f64) {
            let exclusive = schema.get("exclusiveMaximum") == Some(&Value::Bool(true));
            if n > max || (exclusive && n == max) {
                let op = if exclusive {
                    "less than"
                } else {
                    "less than or equal to"
                };
                invalid(
                    causes,
                    path,
                    value,
                    format!("{at} in body should be {op} {}", schema["maximum"]),
                );
            }
        }
        if let Some(m) = schema.get("multipleOf").and_then(as_f64)
            && m != 0.0
            && (n / m).fract() != 0.0
        {
            invalid(
                causes,
                path,
                value,
                format!("{at} in body should be a multiple of {}", schema["multipleOf"]),
            );
        }
    }
    if let Value::String(s) = value {
        let len = s.chars().count() as u64;
        if let Some(min) = schema.get("minLength").and_then(Value::as_u64)
            && len < min
        {
            invalid(
                causes,
                path,
                value,
                format!("{at} in body should be at least {min} chars long"),
            );
        }
        if let Some(max) = schema.get("maxLength").and_then(Value::as_u64)
            && len > max
        {
            causes.push(Cause {
                reason: "FieldValueTooLong",
                message: format!("Too long: may not be more than {max} bytes"),
                field: path.to_string(),
            });
        }
        if let Some(pattern) = schema.get("pattern").and_then(Value::as_str) {
            match regex::Regex::new(pattern) {
                Ok(re) if !re.is_match(s) => invalid(
                    causes,
                    path,
                    value,
                    format!("{at} in body should match '{pattern}'"),
                ),
                Ok(_) => {}
                Err(e) => invalid(
                    causes,
                    path,
                    value,
                    format!("{at} pattern '{pattern}' is not a valid regular expression: {e}"),
                ),
            }
        }
    }
    if let Value::Array(items) = value {
        if let Some(min) = schema.get("minItems").and_then(Value::as_u64)
            && (items.len() as u64) < min
        {
            invalid(
                causes,
                path,
                value,
                format!("{at} in body should have at least {min} items"),
            );
        }
        if let Some(max) = schema.get("maxItems").and_then(Value::as_u64)
            && (items.len() as u64) > max
        {
            causes.push(Cause {
                reason: "FieldValueTooMany",
                message: format!("Too many: {}: must have at most {max} items", items.len()),
                field: path.to_string(),
            });
        }
        let set = schema.get("x-kubernetes-list-type").and_then(Value::as_str) == Some("set")
            || schema.get("uniqueItems") == Some(&Value::Bool(true));
        if set {
            for (i, item) in items.iter().enumerate() {
                if items[..i].contains(item) {
                    causes.push(Cause {
                        reason: "FieldValueDuplicate",
                        message: format!("Duplicate value: {}", shown(item)),
                        field: format!("{path}[{i}]"),
                    });
                }
            }
        }
        if schema.get("x-kubernetes-list-type").and_then(Value::as_str) == Some("map")
            && let Some(Value::Array(keys)) = schema.get("x-kubernetes-list-map-keys")
        {
            let mut seen = BTreeSet::new();
            for (i, item) in items.iter().enumerate() {
                let key: Vec<String> = keys
                    .iter()
                    .filter_map(Value::as_str)
                    .map(|k| item.get(k).map(Value::to_string).unwrap_or_default())
                    .collect();
                if !seen.insert(key.clone()) {
                    causes.push(Cause {
                        reason: "FieldValueDuplicate",
                        message: format!("Duplicate value: map[{}]", key.join(" ")),
                        field: format!("{path}[{i}]"),
                    });
                }
            }
        }
        if let Some(item_schema) = schema.get("items") {
            let old_items = old.and_then(Value::as_array);
            for (i, item) in items.iter().enumerate() {
                let old_item = old_items.and_then(|o| o.get(i));
                check(
                    item,
                    old_item,
                    item_schema,
                    &format!("{path}[{i}]"),
                    false,
                    rules,
                    causes,
                );
            }
        }
    }
    if let Value::Object(map) = value {
        let props = schema.get("properties").and_then(Value::as_object);
        if let Some(Value::Array(required)) = schema.get("required") {
            for key in required.iter().filter_map(Value::as_str) {
                if !map.contains_key(key) {
                    let field = if path.is_empty() {
                        key.to_string()
                    } else {
                        format!("{path}.{key}")
                    };
                    causes.push(Cause {
                        reason: "FieldValueRequired",
                        message: "Required value".to_string(),
                        field,
                    });
                }
            }
        }
        let embedded = root || is_embedded(schema);
        let old_map = old.and_then(Value::as_object);
        for (key, child) in map {
            if embedded && matches!(key.as_str(), "apiVersion" | "kind" | "metadata") {
                continue;
            }
            let child_path = if path.is_empty() {
                key.clone()
            } else {
                format!("{path}.{key}")
            };
            let child_schema = props
                .and_then(|p| p.get(key))
                .or(match schema.get("additionalProperties") {
                    Some(s @ Value::Object(_)) => Some(s),
                    _ => None,
                });
            if let Some(s) = child_schema {
                check(
                    child,
                    old_map.and_then(|o| o.get(key)),
                    s,
                    &child_path,
                    false,
                    rules,
                    causes,
                );
            }
        }
        check_min_max_properties(map, schema, path, value, causes);
    }
    if let Some(Value::Array(list)) = schema.get("x-kubernetes-validations") {
        for rule in list {
            let text = rule.get("rule").and_then(Value::as_str).unwrap_or_default();
            let message = rule.get("message").and_then(Value::as_str).map(str::to_string);
            let transition = text.contains("oldSelf");
            if transition && old.is_none() {
                continue;
            }
            let outcome = if text.replace(' ', "") == "self==oldSelf" {
                Ok(Some(old.is_none_or(|o| o == value)))
            } else {
                rules.evaluate(text, value, old)
            };
            match outcome {
                Ok(Some(true) | None) => {}
                // The API server shows a failed rule's message without the value.
                Ok(Some(false)) => causes.push(Cause {
                    reason: "FieldValueInvalid",
                    message: format!(
                        "Invalid value: {}",
                        message.unwrap_or_else(|| format!("failed rule: {text}"))
                    ),
                    field: path.to_string(),
                }),
                Err(e) => invalid(causes, path, value, format!("rule evaluation error: {e}")),
            }
        }
    }
}

fn check_min_max_properties(
    map: &Map<String, Value>,
    schema: &Value,
    path: &str,
    value: &Value,
    causes: &mut Vec<Cause>,
) {
    let at = if path.is_empty() { "<root>" } else { path };
    if let Some(min) = schema.get("minProperties").and_then(Value::as_u64)
        && (map.len() as u64) < min
    {
        invalid(
            causes,
            path,
            value,
            format!("{at} in body should have at least {min} properties"),
        );
    }
    if let Some(max) = schema.get("maxProperties").and_then(Value::as_u64)
        && (map.len() as u64) > max
    {
        invalid(
            causes,
            path,
            value,
            format!("{at} in body should have at most {max} properties"),
        );
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn schema() -> Value {
        json!({
            "type": "object",
            "properties": {
                "spec": {
                    "type": "object",
                    "required": ["name"],
                    "properties": {
                        "name": { "type": "string", "pattern": "^[a-z]+$", "maxLength": 5 },
                        "size": { "type": "string", "enum": ["small", "large"], "default": "small" },
                        "replicas": { "type": "integer", "minimum": 1, "maximum": 10, "default": 2,
                            "x-kubernetes-validations": [{ "rule": "self == oldSelf", "message": "field is immutable" }] },
                        "tags": { "type": "array", "items": { "type": "string" }, "x-kubernetes-list-type": "set", "maxItems": 3 },
                        "ingress": { "type": "object", "default": {}, "properties": { "enabled": { "type": "boolean", "default": false } } },
                        "extra": { "type": "object", "x-kubernetes-preserve-unknown-fields": true },
                        "labels": { "type": "object", "additionalProperties": { "type": "string" } }
                    }
                }
            }
        })
    }

    #[test]
    fn unknown_fields_are_pruned_except_where_preserved() {
        let mut v = json!({ "apiVersion": "x/v1", "kind": "K", "metadata": { "name": "a" },
            "spec": { "name": "a", "bogus": 1, "extra": { "anything": true }, "labels": { "x": "y" } }, "junk": 1 });
        let pruned = prune(&mut v, &schema());
        assert_eq!(pruned, ["junk", "spec.bogus"]);
        assert_eq!(v["spec"]["extra"]["anything"], true);
        assert_eq!(v["metadata"]["name"], "a");
    }

    #[test]
    fn defaults_apply_recursively_through_object_defaults() {
        let mut v = json!({ "spec": { "name": "a", "replicas": null } });
        default(&mut v, &schema());
        assert_eq!(v["spec"]["size"], "small");
        assert_eq!(
            v["spec"]["replicas"], 2,
            "null in a non-nullable field is replaced by the default"
        );
        assert_eq!(v["spec"]["ingress"], json!({ "enabled": false }));
    }

    #[test]
    fn violations_are_reported_with_kubernetes_wording() {
        let v =
            json!({ "spec": { "size": "huge", "replicas": 20, "tags": ["a", "a"], "labels": { "x": 1 } } });
        let causes: Vec<String> = validate(&v, None, &schema(), &BuiltinRules)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            causes,
            [
                "spec.name: Required value",
                "spec.labels.x: Invalid value: \"integer\": spec.labels.x in body must be of type string: \"integer\"",
                "spec.replicas: Invalid value: 20: spec.replicas in body should be less than or equal to 10",
                "spec.size: Unsupported value: \"huge\": supported values: \"small\", \"large\"",
                "spec.tags[1]: Duplicate value: \"a\"",
                "<nil>: Invalid value: null: some validation rules were not checked because the object was invalid; correct the existing errors to complete validation",
            ]
        );
        let v = json!({ "spec": { "name": "Abcdefg", "replicas": "3" } });
        let causes: Vec<String> = validate(&v, None, &schema(), &BuiltinRules)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            causes,
            [
                "spec.name: Too long: may not be more than 5 bytes",
                "spec.name: Invalid value: \"Abcdefg\": spec.name in body should match '^[a-z]+$'",
                "spec.replicas: Invalid value: \"string\": spec.replicas in body must be of type integer: \"string\"",
                "<nil>: Invalid value: null: some validation rules were not checked because the object was invalid; correct the existing errors to complete validation",
            ]
        );
    }

    #[test]
    fn immutability_is_checked_on_updates_only() {
        let old = json!({ "spec": { "name": "a", "replicas": 2 } });
        let new = json!({ "spec": { "name": "a", "replicas": 3 } });
        assert!(validate(&new, None, &schema(), &BuiltinRules).is_empty());
        let causes = validate(&new, Some(&old), &schema(), &BuiltinRules);
        assert_eq!(
            causes[0].to_string(),
            "spec.replicas: Invalid value: field is immutable"
        );
    }
}

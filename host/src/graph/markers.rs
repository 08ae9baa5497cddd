//! SimpleSchema markers (`| default=... minimum=... enum=...`): parsed from a field's text and
//! applied to its OpenAPI schema, with kro's wording for every malformed marker.

use serde_json::{Map, Value, json};

/// Why a SimpleSchema could not be read. The message names the field path and the marker.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("failed to parse field schema for {path}: {message}")]
pub struct Error {
    /// Dotted path of the field (`spec.ingress.port`, `types.Route.path`).
    pub(crate) path: String,
    /// What is wrong.
    pub(crate) message: String,
}

pub(super) fn err(path: &str, message: impl Into<String>) -> Error {
    Error {
        path: path.to_string(),
        message: message.into(),
    }
}

pub(super) fn add_required(parent: &mut Value, key: &str) {
    let list = parent
        .as_object_mut()
        .expect("parents are objects")
        .entry("required")
        .or_insert_with(|| json!([]));
    if let Value::Array(l) = list
        && !l.iter().any(|k| k == key)
    {
        l.push(json!(key));
    }
}

/// One `key=value` marker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Marker {
    pub(super) key: String,
    pub(super) value: String,
}

pub(super) const MARKERS: [&str; 16] = [
    "required",
    "default",
    "description",
    "enum",
    "minimum",
    "maximum",
    "pattern",
    "minLength",
    "maxLength",
    "uniqueItems",
    "minItems",
    "maxItems",
    "listType",
    "listMapKey",
    "immutable",
    "validation",
];

/// Splits `type | markers` and reads the markers: space separated `key=value`, values quoted
/// (`"..."` with `\"` and `\\` escapes) or JSON (`{...}`, `[...]`).
pub(super) fn parse_field(text: &str) -> Result<(String, Vec<Marker>), String> {
    let (ty, markers) = match text.split_once('|') {
        Some((t, m)) => (t.trim(), m),
        None => (text.trim(), ""),
    };
    if ty.is_empty() {
        return Err("empty type".to_string());
    }
    Ok((ty.to_string(), parse_markers(markers)?))
}

pub(super) fn parse_markers(text: &str) -> Result<Vec<Marker>, String> {
    let mut out = Vec::new();
    let mut key: Option<String> = None;
    let mut buf = String::new();
    let (mut in_quotes, mut escaped, mut brackets) = (false, false, 0i32);
    let mut finish = |key: &mut Option<String>, buf: &mut String| {
        if let Some(k) = key.take() {
            out.push(Marker {
                key: k,
                value: process_value(buf),
            });
        }
        buf.clear();
    };
    for c in text.chars() {
        match c {
            '=' if key.is_none() && !in_quotes && brackets == 0 => {
                let k = buf.trim().to_string();
                if k.is_empty() {
                    return Err("empty marker key".to_string());
                }
                if !MARKERS.contains(&k.as_str()) {
                    return Err(format!("invalid marker key '{k}': unknown marker type: {k}"));
                }
                key = Some(k);
                buf.clear();
            }
            '"' if !escaped => {
                in_quotes = !in_quotes;
                buf.push(c);
            }
            '\\' if in_quotes && !escaped => {
                escaped = true;
                buf.push(c);
            }
            '{' | '[' if !in_quotes => {
                brackets += 1;
                buf.push(c);
            }
            '}' | ']' if !in_quotes => {
                brackets -= 1;
                if brackets < 0 {
                    return Err("unmatched closing bracket/brace".to_string());
                }
                buf.push(c);
            }
            c if c.is_whitespace() && !in_quotes && brackets == 0 => {
                if key.is_some() {
                    finish(&mut key, &mut buf);
                } else if !buf.trim().is_empty() {
                    return Err(format!(
                        "marker '{}' has no value (expected key=value)",
                        buf.trim()
                    ));
                } else {
                    buf.clear();
                }
            }
            c => {
                if escaped && in_quotes {
                    escaped = false;
                }
                buf.push(c);
            }
        }
    }
    if in_quotes {
        return Err("unclosed quote".to_string());
    }
    if brackets > 0 {
        return Err("unclosed bracket/brace".to_string());
    }
    if key.is_none() && !buf.trim().is_empty() {
        return Err(format!(
            "marker '{}' has no value (expected key=value)",
            buf.trim()
        ));
    }
    finish(&mut key, &mut buf);
    Ok(out)
}

pub(super) fn process_value(v: &str) -> String {
    let v = v.trim();
    if v.len() >= 2 && v.starts_with('"') && v.ends_with('"') {
        let mut out = String::new();
        let mut escaped = false;
        for c in v[1..v.len() - 1].chars() {
            if escaped {
                if c != '"' && c != '\\' {
                    out.push('\\');
                }
                out.push(c);
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else {
                out.push(c);
            }
        }
        return out;
    }
    v.to_string()
}

pub(super) fn parse_bool(path: &str, marker: &str, v: &str) -> Result<bool, Error> {
    match v {
        "true" | "True" | "TRUE" | "1" | "t" | "T" => Ok(true),
        "false" | "False" | "FALSE" | "0" | "f" | "F" => Ok(false),
        _ => Err(err(
            path,
            format!("failed to parse {marker} marker value: invalid syntax: {v:?}"),
        )),
    }
}

/// A number as OpenAPI writes it: integral values as integers.
pub(super) fn number(path: &str, marker: &str, v: &str) -> Result<Value, Error> {
    let f: f64 = v.parse().map_err(|_| {
        err(
            path,
            format!("failed to parse {marker} value: {v:?} is not a number"),
        )
    })?;
    if f.fract() == 0.0 && f.abs() < 9.0e15 {
        Ok(json!(f as i64))
    } else {
        Ok(json!(f))
    }
}

pub(super) fn integer(path: &str, marker: &str, v: &str) -> Result<i64, Error> {
    v.parse().map_err(|_| {
        err(
            path,
            format!("failed to parse {marker} value: {v:?} is not an integer"),
        )
    })
}

pub(super) fn apply_markers(
    path: &str,
    key: &str,
    schema: &mut Value,
    markers: &[Marker],
    parent: &mut Value,
) -> Result<(), Error> {
    let ty = schema
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let mut list_type: Option<String> = None;
    let mut map_keys: Vec<String> = Vec::new();
    let mut validations: Vec<Value> = Vec::new();
    let m: &mut Map<String, Value> = schema.as_object_mut().expect("schemas are objects");
    for marker in markers {
        let v = marker.value.as_str();
        match marker.key.as_str() {
            "required" => {
                if parse_bool(path, "required", v)? {
                    add_required(parent, key);
                }
            }
            "default" => {
                let value = match ty.as_str() {
                    "string" => Value::String(v.to_string()),
                    "integer" => json!(integer(path, "default", v)?),
                    "number" => number(path, "default", v)?,
                    "boolean" => json!(parse_bool(path, "default", v)?),
                    _ => serde_json::from_str(v).map_err(|e| {
                        err(path, format!("failed to parse default value {v:?} as JSON: {e}"))
                    })?,
                };
                m.insert("default".to_string(), value);
            }
            "description" => {
                m.insert("description".to_string(), json!(v));
            }
            "minimum" => {
                m.insert("minimum".to_string(), number(path, "minimum", v)?);
            }
            "maximum" => {
                m.insert("maximum".to_string(), number(path, "maximum", v)?);
            }
            "enum" => {
                let mut values = Vec::new();
                for item in v.split(',') {
                    let item = item.trim();
                    if item.is_empty() {
                        return Err(err(path, "empty enum values are not allowed"));
                    }
                    values.push(match ty.as_str() {
                        "string" => json!(item),
                        "integer" => json!(integer(path, "enum", item)?),
                        other => {
                            return Err(err(path, format!("enum values only supported for string and integer types, got type: {other}")));
                        }
                    });
                }
                m.insert("enum".to_string(), Value::Array(values));
            }
            "pattern" => {
                if v.is_empty() {
                    return Err(err(path, "pattern marker value cannot be empty"));
                }
                if ty != "string" {
                    return Err(err(
                        path,
                        format!("pattern marker is only valid for string types, got type: {ty}"),
                    ));
                }
                regex::Regex::new(v).map_err(|e| err(path, format!("invalid pattern regex: {e}")))?;
                m.insert("pattern".to_string(), json!(v));
            }
            "minLength" | "maxLength" => {
                if ty != "string" {
                    return Err(err(
                        path,
                        format!(
                            "{} marker is only valid for string types, got type: {ty}",
                            marker.key
                        ),
                    ));
                }
                m.insert(marker.key.clone(), json!(integer(path, &marker.key, v)?));
            }
            "minItems" | "maxItems" => {
                if ty != "array" {
                    return Err(err(
                        path,
                        format!(
                            "{} marker is only valid for array types, got type: {ty}",
                            marker.key
                        ),
                    ));
                }
                m.insert(marker.key.clone(), json!(integer(path, &marker.key, v)?));
            }
            "uniqueItems" => {
                let unique = parse_bool(path, "uniqueItems", v)?;
                if ty != "array" {
                    return Err(err(
                        path,
                        format!("uniqueItems marker is only valid for array types, got type: {ty}"),
                    ));
                }
                if unique {
                    if list_type.as_deref().is_some_and(|t| t != "set") {
                        return Err(err(path, "uniqueItems=true requires listType=set"));
                    }
                    list_type = Some("set".to_string());
                }
            }
            "listType" => {
                if ty != "array" {
                    return Err(err(
                        path,
                        format!("listType marker is only valid for array types, got type: {ty}"),
                    ));
                }
                if !matches!(v, "atomic" | "set" | "map") {
                    return Err(err(
                        path,
                        format!("listType must be one of atomic, set, map, got {v:?}"),
                    ));
                }
                if list_type.as_deref().is_some_and(|t| t != v) {
                    return Err(err(
                        path,
                        format!("conflicting listType: {v} and {}", list_type.unwrap_or_default()),
                    ));
                }
                list_type = Some(v.to_string());
            }
            "listMapKey" => {
                if ty != "array" {
                    return Err(err(
                        path,
                        format!("listMapKey marker is only valid for array types, got type: {ty}"),
                    ));
                }
                map_keys.push(v.to_string());
            }
            "immutable" => {
                if parse_bool(path, "immutable", v)? {
                    validations.push(json!({ "rule": "self == oldSelf", "message": "field is immutable" }));
                }
            }
            "validation" => {
                if v.trim().is_empty() {
                    return Err(err(path, "validation marker value cannot be empty"));
                }
                validations.push(json!({ "rule": v, "message": "validation failed" }));
            }
            _ => unreachable!("markers are checked when parsed"),
        }
    }
    if !map_keys.is_empty() && list_type.as_deref() != Some("map") {
        return Err(err(path, "listMapKey requires listType=map"));
    }
    if list_type.as_deref() == Some("map") && map_keys.is_empty() {
        return Err(err(path, "listType=map requires at least one listMapKey"));
    }
    if let Some(t) = list_type {
        m.insert("x-kubernetes-list-type".to_string(), json!(t));
    }
    if !map_keys.is_empty() {
        m.insert("x-kubernetes-list-map-keys".to_string(), json!(map_keys));
    }
    if !validations.is_empty() {
        m.insert("x-kubernetes-validations".to_string(), Value::Array(validations));
    }
    Ok(())
}

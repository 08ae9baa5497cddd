//! SimpleSchema (`field: "type | marker=value ..."`) to OpenAPI v3, as kro reads it.

use std::collections::{BTreeMap, BTreeSet};

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

fn err(path: &str, message: impl Into<String>) -> Error {
    Error {
        path: path.to_string(),
        message: message.into(),
    }
}

/// One `key=value` marker.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Marker {
    key: String,
    value: String,
}

const MARKERS: [&str; 16] = [
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
fn parse_field(text: &str) -> Result<(String, Vec<Marker>), String> {
    let (ty, markers) = match text.split_once('|') {
        Some((t, m)) => (t.trim(), m),
        None => (text.trim(), ""),
    };
    if ty.is_empty() {
        return Err("empty type".to_string());
    }
    Ok((ty.to_string(), parse_markers(markers)?))
}

fn parse_markers(text: &str) -> Result<Vec<Marker>, String> {
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

fn process_value(v: &str) -> String {
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

fn parse_bool(path: &str, marker: &str, v: &str) -> Result<bool, Error> {
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
fn number(path: &str, marker: &str, v: &str) -> Result<Value, Error> {
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

fn integer(path: &str, marker: &str, v: &str) -> Result<i64, Error> {
    v.parse().map_err(|_| {
        err(
            path,
            format!("failed to parse {marker} value: {v:?} is not an integer"),
        )
    })
}

/// Builds OpenAPI schemas from SimpleSchema, resolving custom types.
#[derive(Debug, Default)]
pub(crate) struct Transformer {
    /// Custom types by name: their schema and whether they are required wherever used.
    types: BTreeMap<String, (Value, bool)>,
}

const ATOMIC: [&str; 4] = ["string", "integer", "boolean", "float"];

fn atomic_type(t: &str) -> Option<&'static str> {
    match t {
        "string" => Some("string"),
        "integer" => Some("integer"),
        "boolean" => Some("boolean"),
        "float" | "number" => Some("number"),
        _ => None,
    }
}

/// `[]T` → `T`.
fn slice_element(t: &str) -> Option<&str> {
    t.strip_prefix("[]")
}

/// `map[K]V` → (`K`, `V`), bracket-aware for nested maps.
fn map_types(t: &str) -> Option<(&str, &str)> {
    let rest = t.strip_prefix("map[")?;
    let close = rest.find(']')?;
    Some((&rest[..close], &rest[close + 1..]))
}

/// Custom type names a type expression refers to.
fn type_refs(t: &str, out: &mut BTreeSet<String>) {
    if let Some(e) = slice_element(t) {
        type_refs(e, out);
    } else if let Some((_, v)) = map_types(t) {
        type_refs(v, out);
    } else if !ATOMIC.contains(&t) && t != "object" && t != "number" {
        out.insert(t.to_string());
    }
}

fn collect_refs(v: &Value, out: &mut BTreeSet<String>) -> Result<(), String> {
    match v {
        Value::Object(m) => {
            for child in m.values() {
                collect_refs(child, out)?;
            }
            Ok(())
        }
        Value::String(s) => {
            let (t, _) = parse_field(s)?;
            type_refs(&t, out);
            Ok(())
        }
        other => Err(format!("invalid type in schema: {other}")),
    }
}

impl Transformer {
    /// Loads `spec.schema.types`, resolving references between them in dependency order.
    ///
    /// # Errors
    /// A malformed type, an unknown type, or a cycle (`cyclic dependency in type`).
    pub(crate) fn with_types(types: Option<&Value>) -> Result<Self, Error> {
        let mut this = Self::default();
        let Some(types) = types else { return Ok(this) };
        let Value::Object(types) = types else {
            return Err(err(
                "types",
                "must be a map of type names to SimpleSchema definitions",
            ));
        };
        let mut deps: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
        for (name, def) in types {
            let mut refs = BTreeSet::new();
            collect_refs(def, &mut refs).map_err(|m| err(&format!("types.{name}"), m))?;
            deps.insert(name, refs);
        }
        // Resolve in dependency order; what cannot be resolved is cyclic or unknown.
        let mut done: BTreeSet<String> = BTreeSet::new();
        while done.len() < types.len() {
            let ready: Vec<&str> = deps
                .iter()
                .filter(|(n, d)| {
                    !done.contains(**n) && d.iter().all(|r| done.contains(r) || !types.contains_key(r))
                })
                .map(|(n, _)| *n)
                .collect();
            if ready.is_empty() {
                let stuck: Vec<&str> = deps.keys().filter(|n| !done.contains(**n)).copied().collect();
                return Err(err(
                    "types",
                    format!("cyclic dependency in type: {}", stuck.join(", ")),
                ));
            }
            for name in ready {
                let path = format!("types.{name}");
                let (schema, required) = match &types[name] {
                    Value::String(s) => {
                        let mut parent = json!({ "type": "object", "properties": {} });
                        let schema = this.field(&path, name, s, &mut parent)?;
                        let required = parent["required"].as_array().is_some_and(|r| !r.is_empty());
                        (schema, required)
                    }
                    def => (this.object(&path, def, true)?, false),
                };
                this.types.insert(name.to_string(), (schema, required));
                done.insert(name.to_string());
            }
        }
        Ok(this)
    }

    /// The OpenAPI schema of a SimpleSchema object (`spec.schema.spec`).
    ///
    /// # Errors
    /// Any malformed field, unknown type or misused marker, naming its path.
    pub(crate) fn object(&self, path: &str, value: &Value, allow_default: bool) -> Result<Value, Error> {
        let Value::Object(fields) = value else {
            return Err(err(path, format!("unknown type in schema: {value}")));
        };
        let mut schema = json!({ "type": "object", "properties": {} });
        let mut child_default = false;
        for (key, v) in fields {
            let child_path = if path.is_empty() {
                key.clone()
            } else {
                format!("{path}.{key}")
            };
            let child = match v {
                Value::Object(_) => self.object(&child_path, v, allow_default)?,
                Value::String(s) => self.field(&child_path, key, s, &mut schema)?,
                other => {
                    return Err(err(
                        &child_path,
                        format!("unknown type in schema: key: {key}, value: {other}"),
                    ));
                }
            };
            child_default |= child.get("default").is_some();
            schema["properties"][key] = child;
        }
        let has_required = schema
            .get("required")
            .and_then(Value::as_array)
            .is_some_and(|r| !r.is_empty());
        // Nested defaults only materialise when the object itself defaults to {}.
        if allow_default && child_default && !has_required {
            schema["default"] = json!({});
        }
        if let Some(Value::Array(req)) = schema.get_mut("required") {
            req.sort_by(|a, b| a.as_str().cmp(&b.as_str()));
            req.dedup();
        }
        Ok(schema)
    }

    fn type_schema(&self, path: &str, ty: &str, parent: &mut Value, key: &str) -> Result<Value, Error> {
        if let Some(t) = atomic_type(ty) {
            return Ok(json!({ "type": t }));
        }
        if ty == "object" {
            return Ok(json!({ "type": "object", "x-kubernetes-preserve-unknown-fields": true }));
        }
        if let Some(elem) = slice_element(ty) {
            let mut dummy = json!({});
            return Ok(json!({ "type": "array", "items": self.type_schema(path, elem, &mut dummy, key)? }));
        }
        if ty.starts_with("map[") {
            let (k, v) = map_types(ty).ok_or_else(|| err(path, format!("failed to parse map type: {ty}")))?;
            if k != "string" {
                return Err(err(
                    path,
                    format!("unsupported key type for maps, only strings are supported key types: {k}"),
                ));
            }
            let mut dummy = json!({});
            return Ok(
                json!({ "type": "object", "additionalProperties": self.type_schema(path, v, &mut dummy, key)? }),
            );
        }
        match self.types.get(ty) {
            Some((schema, required)) => {
                if *required {
                    add_required(parent, key);
                }
                Ok(schema.clone())
            }
            None => Err(err(path, format!("unknown type: {ty}"))),
        }
    }

    fn field(&self, path: &str, key: &str, text: &str, parent: &mut Value) -> Result<Value, Error> {
        let (ty, markers) = parse_field(text).map_err(|m| err(path, m))?;
        let mut schema = self.type_schema(path, &ty, parent, key)?;
        apply_markers(path, key, &mut schema, &markers, parent)?;
        Ok(schema)
    }
}

fn add_required(parent: &mut Value, key: &str) {
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

fn apply_markers(
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

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(v: Value) -> Result<Value, Error> {
        Transformer::default().object("spec", &v, true)
    }

    #[test]
    fn atomic_types_map_to_openapi() {
        let s = spec(json!({ "a": "string", "b": "integer", "c": "boolean", "d": "float", "e": "object" }))
            .unwrap();
        let p = &s["properties"];
        assert_eq!(
            (p["a"]["type"].clone(), p["d"]["type"].clone()),
            (json!("string"), json!("number"))
        );
        assert_eq!(
            p["e"],
            json!({ "type": "object", "x-kubernetes-preserve-unknown-fields": true })
        );
    }

    #[test]
    fn collections_nest() {
        let s = spec(json!({ "a": "[]string", "b": "map[string]integer", "c": "[]map[string][]boolean" }))
            .unwrap();
        let p = &s["properties"];
        assert_eq!(p["a"], json!({ "type": "array", "items": { "type": "string" } }));
        assert_eq!(
            p["b"],
            json!({ "type": "object", "additionalProperties": { "type": "integer" } })
        );
        assert_eq!(
            p["c"]["items"]["additionalProperties"]["items"]["type"],
            "boolean"
        );
        let e = spec(json!({ "m": "map[integer]string" })).unwrap_err();
        assert_eq!(
            e.to_string(),
            "failed to parse field schema for spec.m: unsupported key type for maps, only strings are supported key types: integer"
        );
    }

    #[test]
    fn every_marker_lands_where_openapi_wants_it() {
        let s = spec(json!({
            "name": "string | required=true description=\"The name\" pattern=\"^[a-z]+$\" minLength=1 maxLength=63",
            "size": "string | enum=\"small, medium,large\" default=small",
            "replicas": "integer | default=3 minimum=1 maximum=10 immutable=true",
            "ratio": "float | default=0.5",
            "tags": "[]string | uniqueItems=true minItems=1 maxItems=5 default=[\"a\",\"b\"]",
            "ports": "[]object | listType=map listMapKey=name listMapKey=protocol",
            "check": "integer | validation=\"self % 2 == 0\"",
            "labels": "map[string]string | default={\"a\":\"b\"}"
        }))
        .unwrap();
        let p = &s["properties"];
        assert_eq!(s["required"], json!(["name"]));
        assert_eq!(p["name"]["description"], "The name");
        assert_eq!(p["name"]["pattern"], "^[a-z]+$");
        assert_eq!(
            (p["name"]["minLength"].clone(), p["name"]["maxLength"].clone()),
            (json!(1), json!(63))
        );
        assert_eq!(p["size"]["enum"], json!(["small", "medium", "large"]));
        assert_eq!(p["size"]["default"], "small");
        assert_eq!(
            (p["replicas"]["default"].clone(), p["replicas"]["minimum"].clone()),
            (json!(3), json!(1))
        );
        assert_eq!(
            p["replicas"]["x-kubernetes-validations"],
            json!([{ "rule": "self == oldSelf", "message": "field is immutable" }])
        );
        assert_eq!(p["ratio"]["default"], json!(0.5));
        assert_eq!(p["tags"]["x-kubernetes-list-type"], "set");
        assert_eq!(p["tags"]["default"], json!(["a", "b"]));
        assert_eq!(
            p["ports"]["x-kubernetes-list-map-keys"],
            json!(["name", "protocol"])
        );
        assert_eq!(
            p["check"]["x-kubernetes-validations"][0]["message"],
            "validation failed"
        );
        assert_eq!(p["labels"]["default"], json!({ "a": "b" }));
    }

    #[test]
    fn nested_defaults_give_the_object_an_empty_default() {
        let s = spec(json!({ "ingress": { "enabled": "boolean | default=false" }, "db": { "host": "string | required=true", "port": "integer | default=5432" } })).unwrap();
        assert_eq!(s["properties"]["ingress"]["default"], json!({}));
        assert!(
            s["properties"]["db"].get("default").is_none(),
            "an object with required fields gets no default"
        );
    }

    #[test]
    fn marker_errors_name_the_field_and_the_marker() {
        let cases = [
            (
                json!({ "a": "string | foo=bar" }),
                "spec.a: invalid marker key 'foo': unknown marker type: foo",
            ),
            (
                json!({ "a": "integer | minLength=1" }),
                "spec.a: minLength marker is only valid for string types, got type: integer",
            ),
            (
                json!({ "a": "boolean | enum=\"a,b\"" }),
                "spec.a: enum values only supported for string and integer types, got type: boolean",
            ),
            (
                json!({ "a": "string | enum=\"a,,b\"" }),
                "spec.a: empty enum values are not allowed",
            ),
            (
                json!({ "a": "integer | enum=\"1,x\"" }),
                "spec.a: failed to parse enum value: \"x\" is not an integer",
            ),
            (
                json!({ "a": "integer | default=abc" }),
                "spec.a: failed to parse default value: \"abc\" is not an integer",
            ),
            (
                json!({ "a": "string | pattern=\"[a-\"" }),
                "spec.a: invalid pattern regex",
            ),
            (
                json!({ "a": "[]string | listMapKey=name" }),
                "spec.a: listMapKey requires listType=map",
            ),
            (
                json!({ "a": "string | description=\"unclosed" }),
                "spec.a: unclosed quote",
            ),
            (json!({ "a": "Missing" }), "spec.a: unknown type: Missing"),
            (
                json!({ "n": { "deep": "string | required=maybe" } }),
                "spec.n.deep: failed to parse required marker value",
            ),
        ];
        for (input, want) in cases {
            let e = spec(input).unwrap_err().to_string();
            assert!(
                e.starts_with(&format!("failed to parse field schema for {want}")),
                "{e}\nwant: {want}"
            );
        }
    }

    #[test]
    fn custom_types_resolve_in_dependency_order_and_carry_required() {
        let t = Transformer::with_types(Some(&json!({
            "Route": { "path": "string | required=true", "backend": "Backend" },
            "Backend": { "service": "string", "port": "integer | default=80" },
            "Name": "string | required=true pattern=\"^[a-z]+$\""
        })))
        .unwrap();
        let s = t
            .object("spec", &json!({ "routes": "[]Route", "owner": "Name" }), true)
            .unwrap();
        assert_eq!(
            s["properties"]["routes"]["items"]["properties"]["backend"]["properties"]["port"]["default"],
            80
        );
        assert_eq!(s["required"], json!(["owner"]));
        assert_eq!(s["properties"]["owner"]["pattern"], "^[a-z]+$");
    }

    #[test]
    fn cyclic_types_are_refused() {
        let e =
            Transformer::with_types(Some(&json!({ "A": { "b": "B" }, "B": { "a": "[]A" } }))).unwrap_err();
        assert!(e.to_string().contains("cyclic dependency in type: A, B"), "{e}");
    }
}

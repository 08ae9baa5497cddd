//! SimpleSchema (`field: "type | marker=value ..."`) to OpenAPI v3, as kro reads it.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Value, json};

pub use super::markers::Error;
use super::markers::{add_required, apply_markers, err, parse_field};

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

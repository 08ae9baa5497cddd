//! Decoding of built-in kinds as the real server's JSON decoder does it, driven by the OpenAPI v3
//! schemas of the real kube-apiserver (`kroxide_schema::openapi`, written by `openapi/snapshot`):
//! a value of the wrong JSON type is a 400 with Go's wording (`json: cannot unmarshal string into
//! Go struct field DeploymentSpec.spec.replicas of type int32`), and unknown fields are refused
//! (`Strict`), dropped with a warning (`Warn`) or dropped silently (`Ignore`).

pub use kroxide_schema::openapi::{SNAPSHOT, Snapshot};

use std::{collections::HashMap, sync::LazyLock};

use serde_json::Value;

/// Why a body cannot be decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    /// A value of the wrong JSON type: Go's `json: cannot unmarshal …` text.
    WrongType(String),
    /// Unknown fields under `Strict`, as `unknown field "spec.x"` items.
    Unknown(Vec<String>),
}

/// Types whose Go values decode themselves from several JSON shapes.
const OPAQUE: &[&str] = &[
    "io.k8s.apimachinery.pkg.api.resource.Quantity",
    "io.k8s.apimachinery.pkg.util.intstr.IntOrString",
    "io.k8s.apimachinery.pkg.apis.meta.v1.Time",
    "io.k8s.apimachinery.pkg.apis.meta.v1.MicroTime",
    "io.k8s.apimachinery.pkg.apis.meta.v1.FieldsV1",
    "io.k8s.apimachinery.pkg.runtime.RawExtension",
    "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.JSON",
    "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.JSONSchemaPropsOrArray",
    "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.JSONSchemaPropsOrBool",
    "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.JSONSchemaPropsOrStringArray",
];

/// Go's name of the type a schema decodes into, as `encoding/json` prints it.
fn go_type(snapshot: &Snapshot, s: &Value) -> String {
    let (name, s) = snapshot.resolve(s);
    if let Some(name) = name {
        let mut parts = name.rsplit('.');
        let ty = parts.next().unwrap_or_default();
        let package = match name {
            n if n.ends_with(".Quantity") => "resource",
            n if n.ends_with(".IntOrString") => "intstr",
            n if n.ends_with(".RawExtension") => "runtime",
            _ => parts.next().unwrap_or_default(),
        };
        return format!("{package}.{ty}");
    }
    match s["type"].as_str() {
        Some("array") => format!("[]{}", go_type(snapshot, &s["items"])),
        Some("object") if s.get("additionalProperties").is_some() => {
            format!("map[string]{}", go_type(snapshot, &s["additionalProperties"]))
        }
        Some("integer") => match s["format"].as_str() {
            Some("int32") => "int32".into(),
            _ => "int64".into(),
        },
        Some("number") => "float64".into(),
        Some("boolean") => "bool".into(),
        Some("string") if s["format"] == "byte" => "[]uint8".into(),
        _ => "string".into(),
    }
}

fn json_kind(v: &Value) -> String {
    match v {
        Value::Bool(_) => "bool".into(),
        Value::Number(n) => format!("number {n}"),
        Value::String(_) => "string".into(),
        Value::Array(_) => "array".into(),
        Value::Object(_) => "object".into(),
        Value::Null => "null".into(),
    }
}

struct Walk<'a> {
    snapshot: &'a Snapshot,
    /// First type error, in document order.
    wrong: Option<String>,
    unknown: Vec<String>,
}

impl Walk<'_> {
    /// `strukt`/`field`: the innermost Go struct and the dotted field path (no indexes) that
    /// `value` belongs to; `shown`: the path with indexes, for unknown-field messages.
    fn value(&mut self, value: &mut Value, schema: &Value, strukt: &str, field: &str, shown: &str) {
        if value.is_null() || self.wrong.is_some() {
            return;
        }
        let (name, s) = self.snapshot.resolve(schema);
        if name.is_some_and(|n| OPAQUE.contains(&n))
            || s.get("x-kubernetes-preserve-unknown-fields").is_some()
            || s["format"] == "int-or-string"
        {
            return;
        }
        let fits = match (s["type"].as_str(), &*value) {
            (Some("object"), Value::Object(_)) | (Some("array"), Value::Array(_)) => true,
            (Some("string"), Value::String(_)) | (Some("boolean"), Value::Bool(_)) => true,
            (Some("number"), Value::Number(_)) => true,
            (Some("integer"), Value::Number(n)) => match s["format"].as_str() {
                Some("int32") => n.as_i64().is_some_and(|i| i32::try_from(i).is_ok()),
                _ => n.is_i64(),
            },
            (None, _) => true,
            _ => false,
        };
        if !fits {
            let at = if field.is_empty() {
                format!("Go value of type {}", go_type(self.snapshot, schema))
            } else {
                format!(
                    "Go struct field {strukt}.{field} of type {}",
                    go_type(self.snapshot, schema)
                )
            };
            // Go names the number only when it was meant for a number it does not fit.
            let shown = match (&*value, s["type"].as_str()) {
                (Value::Number(_), Some("integer" | "number")) => json_kind(value),
                (Value::Number(_), _) => "number".into(),
                _ => json_kind(value),
            };
            self.wrong = Some(format!("json: cannot unmarshal {shown} into {at}"));
            return;
        }
        if s["format"] == "byte"
            && let Value::String(text) = &*value
            && let Some(at) = base64_problem(text)
        {
            self.wrong = Some(format!("illegal base64 data at input byte {at}"));
            return;
        }
        match value {
            Value::Object(m) => {
                if let Some(props) = s["properties"].as_object() {
                    let inner = name.map_or(strukt, |n| n.rsplit('.').next().unwrap_or(n));
                    let keys: Vec<String> = m.keys().cloned().collect();
                    for k in keys {
                        let f = if field.is_empty() {
                            k.clone()
                        } else {
                            format!("{field}.{k}")
                        };
                        let sh = if shown.is_empty() {
                            k.clone()
                        } else {
                            format!("{shown}.{k}")
                        };
                        match props.get(&k) {
                            Some(p) => {
                                let v = m.get_mut(&k).expect("listed");
                                self.value(v, p, inner, &f, &sh);
                            }
                            None => {
                                m.remove(&k);
                                self.unknown.push(sh);
                            }
                        }
                    }
                } else if let Some(elem) = s.get("additionalProperties") {
                    for (k, v) in m.iter_mut() {
                        self.value(v, elem, strukt, field, &format!("{shown}[{k}]"));
                    }
                }
            }
            Value::Array(items) => {
                for (i, v) in items.iter_mut().enumerate() {
                    self.value(v, &s["items"], strukt, field, &format!("{shown}[{i}]"));
                }
            }
            _ => {}
        }
    }
}

/// Where Go's standard base64 decoder gives up on `text`, if it does.
fn base64_problem(text: &str) -> Option<usize> {
    let bytes = text.as_bytes();
    let data = bytes.iter().position(|&b| b == b'=').unwrap_or(bytes.len());
    let alphabet = |b: u8| b.is_ascii_alphanumeric() || b == b'+' || b == b'/';
    if let Some(i) = bytes[..data].iter().position(|&b| !alphabet(b)) {
        return Some(i);
    }
    let padding = &bytes[data..];
    if let Some(i) = padding.iter().position(|&b| b != b'=') {
        return Some(data + i);
    }
    // Without padding the length must be a multiple of four; padding fills the last quantum.
    if !bytes.len().is_multiple_of(4) || padding.len() > 2 || (!padding.is_empty() && data % 4 < 2) {
        return Some(if !bytes.len().is_multiple_of(4) {
            bytes.len() - bytes.len() % 4
        } else {
            data
        });
    }
    None
}

/// The properties with a `default` of each named schema of the snapshot, found once: filling
/// visits the fields an object has, not every property its schema declares.
static DEFAULTS: LazyLock<HashMap<&'static str, Vec<(&'static str, &'static Value)>>> = LazyLock::new(|| {
    SNAPSHOT
        .schemas
        .iter()
        .map(|(name, s)| {
            let props = s["properties"].as_object().into_iter().flatten();
            (name.as_str(), defaulted(props).collect())
        })
        .collect()
});

/// The properties (of a schema's `properties`) that have a `default`, with it.
fn defaulted<'a>(
    props: impl Iterator<Item = (&'a String, &'a Value)>,
) -> impl Iterator<Item = (&'a str, &'a Value)> {
    props.filter_map(|(k, p)| Some((k.as_str(), p.get("default")?)))
}

/// Fills every field the real server always writes: a property whose schema has a `default`
/// (the zero value of a Go field without `omitempty`, or a declared default) and is absent from
/// an object that is present, as the real server's JSON encoding of its Go types does
/// (`status: {}`, `status.loadBalancer: {}`, `replicas: 0`, `protocol: TCP`).
pub fn fill(object: &mut Value, root: &str) {
    let snapshot = &*SNAPSHOT;
    if let Some(schema) = snapshot.schemas.get(root) {
        fill_value(snapshot, object, schema);
    }
}

fn fill_value(snapshot: &Snapshot, value: &mut Value, schema: &Value) {
    let (name, s) = snapshot.resolve(schema);
    if name.is_some_and(|n| OPAQUE.contains(&n)) {
        return;
    }
    match value {
        Value::Object(m) => {
            if let Some(props) = s["properties"].as_object() {
                // Named schemas have theirs found once; inline ones are looked through here.
                let inline: Vec<(&str, &Value)>;
                let defaults = match name.and_then(|n| DEFAULTS.get(n)) {
                    Some(d) => d.as_slice(),
                    None => {
                        inline = defaulted(props.iter()).collect();
                        &inline
                    }
                };
                for (k, d) in defaults {
                    if !m.contains_key(*k) {
                        m.insert((*k).to_string(), (*d).clone());
                    }
                }
                for (k, v) in m.iter_mut() {
                    if let Some(p) = props.get(k) {
                        fill_value(snapshot, v, p);
                    }
                }
            } else if let Some(elem) = s.get("additionalProperties") {
                m.values_mut().for_each(|v| fill_value(snapshot, v, elem));
            }
        }
        Value::Array(items) => items
            .iter_mut()
            .for_each(|v| fill_value(snapshot, v, &s["items"])),
        _ => {}
    }
}

/// Whether the real server's Update entries record the field at `names` (field names, `[]`
/// for list items) of the built-in schema `root` as a member of its own when a write creates
/// it: maps, lists and pointer structs do; a Go struct that is not a pointer (OpenAPI `default:
/// {}`) always exists and does not.
pub fn created_as_member(root: &str, names: &[String]) -> bool {
    let snapshot = &*SNAPSHOT;
    let Some(mut schema) = snapshot.schemas.get(root) else {
        return true;
    };
    for n in names {
        let (_, s) = snapshot.resolve(schema);
        let next = if n == crate::shape::ITEMS {
            s.get("items")
        } else {
            s["properties"].get(n).or_else(|| s.get("additionalProperties"))
        };
        match next {
            Some(next) => schema = next,
            None => return true,
        }
    }
    let (_, s) = snapshot.resolve(schema);
    !(s.get("properties").is_some() && schema.get("default").is_some())
}

/// Fields given twice in a JSON body, as dotted paths (`data`, `metadata.labels.a`), in the
/// order met; empty for bodies that are not JSON.
pub fn duplicate_fields(body: &[u8]) -> Vec<String> {
    use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

    struct Seed<'a> {
        path: String,
        out: &'a mut Vec<String>,
    }
    impl<'de> DeserializeSeed<'de> for Seed<'_> {
        type Value = ();
        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
            d.deserialize_any(self)
        }
    }
    impl<'de> Visitor<'de> for Seed<'_> {
        type Value = ();
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("JSON")
        }
        fn visit_bool<E>(self, _: bool) -> Result<(), E> {
            Ok(())
        }
        fn visit_i64<E>(self, _: i64) -> Result<(), E> {
            Ok(())
        }
        fn visit_u64<E>(self, _: u64) -> Result<(), E> {
            Ok(())
        }
        fn visit_f64<E>(self, _: f64) -> Result<(), E> {
            Ok(())
        }
        fn visit_str<E>(self, _: &str) -> Result<(), E> {
            Ok(())
        }
        fn visit_unit<E>(self) -> Result<(), E> {
            Ok(())
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
            let mut i = 0;
            while seq
                .next_element_seed(Seed {
                    path: format!("{}[{i}]", self.path),
                    out: &mut *self.out,
                })?
                .is_some()
            {
                i += 1;
            }
            Ok(())
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
            let mut seen = std::collections::HashSet::new();
            while let Some(k) = map.next_key::<String>()? {
                let path = if self.path.is_empty() {
                    k.clone()
                } else {
                    format!("{}.{k}", self.path)
                };
                if !seen.insert(k) {
                    self.out.push(path.clone());
                }
                map.next_value_seed(Seed {
                    path,
                    out: &mut *self.out,
                })?;
            }
            Ok(())
        }
    }
    let mut out = Vec::new();
    let mut de = serde_json::Deserializer::from_slice(body);
    let _ = Seed {
        path: String::new(),
        out: &mut out,
    }
    .deserialize(&mut de);
    out
}

/// Decodes `object` (a built-in kind's body) against the schema named `root`: drops unknown
/// fields and returns them as `unknown field "…"` texts in document order.
///
/// # Errors
/// [`DecodeError::WrongType`] for the first value of the wrong type; [`DecodeError::Unknown`]
/// when `strict` and any field is unknown (nothing is dropped then).
pub fn decode(object: &mut Value, root: &str, strict: bool) -> Result<Vec<String>, DecodeError> {
    let snapshot = &*SNAPSHOT;
    let Some(schema) = snapshot.schemas.get(root) else {
        return Ok(Vec::new());
    };
    let strukt = root.rsplit('.').next().unwrap_or(root);
    let mut copy = strict.then(|| object.clone());
    let mut walk = Walk {
        snapshot,
        wrong: None,
        unknown: Vec::new(),
    };
    walk.value(copy.as_mut().unwrap_or(object), schema, strukt, "", "");
    if let Some(w) = walk.wrong {
        return Err(DecodeError::WrongType(w));
    }
    let unknown: Vec<String> = walk
        .unknown
        .iter()
        .map(|p| format!("unknown field \"{p}\""))
        .collect();
    if strict && !unknown.is_empty() {
        return Err(DecodeError::Unknown(unknown));
    }
    Ok(unknown)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn deployment_root() -> &'static str {
        SNAPSHOT
            .root("apps", "v1", "Deployment")
            .expect("the snapshot has Deployment")
    }

    #[test]
    fn a_string_where_an_int32_belongs_is_named_as_go_names_it() {
        let mut d = json!({"spec": {"replicas": "abc"}});
        assert_eq!(
            decode(&mut d, deployment_root(), false),
            Err(DecodeError::WrongType(
                "json: cannot unmarshal string into Go struct field DeploymentSpec.spec.replicas of type int32".into()
            ))
        );
    }

    #[test]
    fn unknown_fields_are_dropped_and_named_with_their_list_indexes() {
        let mut d = json!({"spec": {"replica": 2, "template": {"spec": {"containers": [{"name": "c", "imag": "x"}]}}}});
        let unknown = decode(&mut d, deployment_root(), false).unwrap();
        assert_eq!(
            unknown,
            [
                "unknown field \"spec.replica\"",
                "unknown field \"spec.template.spec.containers[0].imag\""
            ]
        );
        assert_eq!(
            d,
            json!({"spec": {"template": {"spec": {"containers": [{"name": "c"}]}}}})
        );
    }

    #[test]
    fn strict_decoding_keeps_the_object_and_refuses_unknown_fields() {
        let mut d = json!({"spec": {"replica": 2}});
        assert!(matches!(
            decode(&mut d, deployment_root(), true),
            Err(DecodeError::Unknown(_))
        ));
        assert_eq!(d, json!({"spec": {"replica": 2}}));
    }

    #[test]
    fn fields_given_twice_are_found_at_any_depth() {
        let body = br#"{"data":{"a":"1"},"metadata":{"labels":{"x":"1","x":"2"}},"data":{}}"#;
        assert_eq!(duplicate_fields(body), ["metadata.labels.x", "data"]);
        assert!(duplicate_fields(b"{\"a\": [1, {\"b\": 2}]}").is_empty());
    }

    #[test]
    fn base64_errors_name_the_byte_go_stops_at() {
        assert_eq!(base64_problem("YQ=="), None);
        assert_eq!(base64_problem("YmVl"), None);
        assert_eq!(base64_problem("not base64!"), Some(3));
    }

    #[test]
    fn filling_writes_the_fields_go_never_omits() {
        let root = SNAPSHOT.root("", "v1", "Service").unwrap();
        let mut svc = json!({"spec": {"ports": [{"port": 80}]}});
        fill(&mut svc, root);
        assert_eq!(svc["status"], json!({"loadBalancer": {}}));
        assert_eq!(svc["spec"]["ports"][0]["protocol"], "TCP");
    }

    #[test]
    fn quantities_and_int_or_strings_accept_either_shape() {
        let root = SNAPSHOT.root("", "v1", "Pod").unwrap();
        let mut p = json!({"spec": {"containers": [{"name": "c", "resources": {"limits": {"cpu": 1}},
            "ports": [{"containerPort": 80}], "readinessProbe": {"httpGet": {"port": "http"}}}]}});
        assert_eq!(decode(&mut p, root, true), Ok(vec![]));
    }
}

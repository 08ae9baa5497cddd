//! OpenAPI schemas as CEL types and back: the object types expressions read (one per schema
//! path, named after it: `deployment.status`), the type a template field needs, whether an
//! expression's type fits it, and the CRD schema a status field's type implies.
//!
//! As Kubernetes maps them: `integer` is `int`, `number` `double`, `boolean` `bool`, arrays are
//! lists, objects with `additionalProperties` maps from string, objects with `properties` object
//! types; `x-kubernetes-preserve-unknown-fields`, `x-kubernetes-int-or-string`, schemaless
//! objects and strings the runtime holds as text (`date-time`, `duration`, `byte`) are `dyn`.

use std::{
    any::Any,
    collections::HashMap,
    sync::{Arc, Mutex},
};

use cel_core::{
    MessageValue, ProtoRegistry, ProtoTypeResolver, ResolvedProtoType, StructFieldValue, Value as CelValue,
    types::CelType,
};
use kroxide_schema::openapi::SNAPSHOT;
use serde_json::{Map, Value, json};

use crate::cel::checker::{Type, display};

/// One step from a schema to a nested one.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Seg {
    Field(String),
    Items,
    Values,
}

/// The object types of one graph: each named after its path from a root (a variable such as
/// `schema` or a resource id), answered from the root's schema.
#[derive(Debug, Default)]
pub(crate) struct Registry {
    roots: HashMap<String, Arc<Value>>,
    paths: Mutex<HashMap<String, (String, Vec<Seg>)>>,
}

/// Follows `$ref` (and a one-element `allOf` holding one) into the snapshot's components.
pub(crate) fn resolve(s: &Value) -> &Value {
    SNAPSHOT.resolve(s).1
}

fn flag(s: &Value, key: &str) -> bool {
    s.get(key).and_then(Value::as_bool).unwrap_or(false)
}

fn type_of(s: &Value) -> Option<&str> {
    s.get("type").and_then(Value::as_str)
}

/// The schema of field `name` of an object schema, if it declares one.
fn field<'a>(s: &'a Value, name: &str) -> Option<&'a Value> {
    let s = resolve(s);
    if let Some(p) = s.pointer("/properties").and_then(|p| p.get(name)) {
        return Some(p);
    }
    match s.get("additionalProperties") {
        Some(Value::Object(_)) => s.get("additionalProperties"),
        _ => None,
    }
}

fn step<'a>(s: &'a Value, seg: &Seg) -> Option<&'a Value> {
    let s = resolve(s);
    match seg {
        Seg::Field(name) => field(s, name),
        Seg::Items => s.get("items"),
        Seg::Values => s.get("additionalProperties").filter(|a| a.is_object()),
    }
}

/// Whether nothing can be told about a schema's values.
fn is_open(s: &Value) -> bool {
    flag(s, "x-kubernetes-preserve-unknown-fields") || flag(s, "x-kubernetes-int-or-string")
}

impl Registry {
    /// Adds a root: the variable `name` has an object type answered by `schema`.
    pub(crate) fn add_root(&mut self, name: &str, schema: Arc<Value>) {
        self.roots.insert(name.to_string(), schema);
    }

    /// The type of the root `name` (as its schema says).
    pub(crate) fn root_type(&self, name: &str) -> Type {
        match self.roots.get(name) {
            Some(schema) => self.to_type(schema, name, Vec::new()),
            None => CelType::Dyn,
        }
    }

    /// The root and path an object type is named after.
    fn path_of(&self, message: &str) -> Option<(String, Vec<Seg>)> {
        self.paths
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(message)
            .cloned()
    }

    /// The schema at `segs` under the root `root`.
    fn walk(&self, root: &str, segs: &[Seg]) -> Option<&Value> {
        let mut s: &Value = self.roots.get(root)?;
        for seg in segs {
            s = step(s, seg)?;
        }
        Some(s)
    }

    fn schema_at(&self, message: &str) -> Option<&Value> {
        let (root, segs) = self.path_of(message)?;
        self.walk(&root, &segs)
    }

    /// The schema an object type stands for.
    pub(crate) fn schema_of(&self, ty: &Type) -> Option<&Value> {
        match ty {
            CelType::Message(name) => self.schema_at(name),
            _ => None,
        }
    }

    /// The fields an object type has, for suggestions.
    pub(crate) fn field_names(&self, message: &str) -> Vec<String> {
        self.schema_at(message)
            .and_then(|s| resolve(s).get("properties").and_then(Value::as_object))
            .map(|p| p.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// The CEL type of the values `schema` allows, naming object types after `root` and `segs`.
    fn to_type(&self, schema: &Value, root: &str, segs: Vec<Seg>) -> Type {
        let s = resolve(schema);
        if is_open(s) {
            return CelType::Dyn;
        }
        let with = |seg: Seg| {
            let mut next = segs.clone();
            next.push(seg);
            next
        };
        match type_of(s) {
            Some("integer") => CelType::Int,
            Some("number") => CelType::Double,
            Some("boolean") => CelType::Bool,
            Some("string") => match s.get("format").and_then(Value::as_str) {
                Some("date-time" | "date" | "duration" | "byte") => CelType::Dyn,
                _ => CelType::String,
            },
            Some("array") => match s.get("items") {
                Some(items) => CelType::list(self.to_type(items, root, with(Seg::Items))),
                None => CelType::list(CelType::Dyn),
            },
            Some("object") | None => {
                if s.get("properties")
                    .and_then(Value::as_object)
                    .is_some_and(|p| !p.is_empty())
                {
                    let name = message_name(root, &segs);
                    self.paths
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .insert(name.clone(), (root.to_string(), segs));
                    CelType::message(&name)
                } else if let Some(values) = s.get("additionalProperties").filter(|a| a.is_object()) {
                    CelType::map(CelType::String, self.to_type(values, root, with(Seg::Values)))
                } else if type_of(s) == Some("object") && s.get("additionalProperties").is_some() {
                    CelType::map(CelType::String, CelType::Dyn)
                } else {
                    CelType::Dyn
                }
            }
            Some(_) => CelType::Dyn,
        }
    }

    fn field_type(&self, message: &str, name: &str) -> Option<Type> {
        let (root, mut segs) = self.path_of(message)?;
        let f = field(self.walk(&root, &segs)?, name)?;
        segs.push(Seg::Field(name.to_string()));
        Some(self.to_type(f, &root, segs))
    }
}

fn message_name(root: &str, segs: &[Seg]) -> String {
    let mut name = root.to_string();
    for seg in segs {
        match seg {
            Seg::Field(f) => {
                name.push('.');
                name.push_str(f);
            }
            Seg::Items => name.push_str("[]"),
            Seg::Values => name.push_str("{}"),
        }
    }
    name
}

impl ProtoTypeResolver for Registry {
    fn get_field_type(&self, message: &str, field: &str) -> Option<CelType> {
        self.field_type(message, field)
    }

    fn has_message(&self, message: &str) -> bool {
        self.paths
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains_key(message)
    }

    fn is_extension(&self, _message: &str, _field: &str) -> bool {
        false
    }

    fn get_enum_value(&self, _enum_name: &str, _value_name: &str) -> Option<i32> {
        None
    }

    fn resolve_qualified(&self, _parts: &[&str], _container: &str) -> Option<ResolvedProtoType> {
        None
    }

    fn resolve_message_name(&self, _name: &str, _container: &str) -> Option<String> {
        None
    }

    fn message_field_names(&self, message: &str) -> Option<Vec<String>> {
        Some(self.field_names(message))
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// The registry only types expressions; `cel` evaluates them, so these are never called.
impl ProtoRegistry for Registry {
    fn construct_message(&self, type_name: &str, _: &[StructFieldValue], _: bool) -> CelValue {
        CelValue::error(format!("{type_name} cannot be constructed"))
    }

    fn message_field_access(&self, _: &dyn MessageValue, field: &str, _: bool, _: bool) -> CelValue {
        CelValue::error(format!("no field {field}"))
    }

    fn message_has_field(&self, _: &dyn MessageValue, _: &str) -> CelValue {
        CelValue::Bool(false)
    }

    fn get_extension_value(&self, _: &dyn MessageValue, _: &str, _: bool, _: bool) -> Option<CelValue> {
        None
    }

    fn has_extension(&self, _: &dyn MessageValue, _: &str) -> Option<bool> {
        None
    }
}

/// The schema of the field at `path` (object keys; `None` steps are list items) under `root`,
/// or `None` where the schema allows anything.
pub(crate) fn expected_at<'a>(root: &'a Value, path: &[Option<&str>]) -> Option<&'a Value> {
    let mut s = root;
    for step in path {
        if is_open(resolve(s)) {
            return None;
        }
        s = match step {
            Some(key) => field(s, key)?,
            None => resolve(s).get("items")?,
        };
    }
    let s = resolve(s);
    if is_open(s) || (type_of(s).is_none() && s.get("properties").is_none()) {
        None
    } else {
        Some(s)
    }
}

/// A schema's type as kro prints an expected type.
pub(crate) fn schema_display(s: &Value) -> String {
    let s = resolve(s);
    match type_of(s) {
        Some("integer") => "int".to_string(),
        Some("number") => "double".to_string(),
        Some("boolean") => "bool".to_string(),
        Some("string") => "string".to_string(),
        Some("array") => format!(
            "list({})",
            s.get("items")
                .map(schema_display)
                .unwrap_or_else(|| "dyn".to_string())
        ),
        _ if is_open(s) => "dyn".to_string(),
        _ => match s.get("additionalProperties").filter(|a| a.is_object()) {
            Some(v) if s.get("properties").is_none() => format!("map(string, {})", schema_display(v)),
            _ => "object".to_string(),
        },
    }
}

impl Registry {
    /// Whether a value of type `found` fits a field whose schema is `expected`; the reason when
    /// it does not. As kro's structural compatibility: maps and objects fit each other, an
    /// object fits when each of its fields does, lists and maps compare their elements.
    pub(crate) fn fits(&self, found: &Type, expected: &Value, depth: usize) -> Result<(), String> {
        let e = resolve(expected);
        if is_open(e) || depth > 8 {
            return Ok(());
        }
        let mismatch = || Err(String::new());
        match found {
            CelType::Dyn | CelType::Null | CelType::Error | CelType::TypeVar(_) | CelType::TypeParam(_) => {
                Ok(())
            }
            CelType::Optional(inner) | CelType::Wrapper(inner) => self.fits(inner, expected, depth),
            CelType::Int | CelType::UInt => match type_of(e) {
                Some("integer" | "number") | None => Ok(()),
                _ => mismatch(),
            },
            CelType::Double => match type_of(e) {
                Some("number") | None => Ok(()),
                _ => mismatch(),
            },
            CelType::Bool => match type_of(e) {
                Some("boolean") | None => Ok(()),
                _ => mismatch(),
            },
            CelType::String | CelType::Bytes | CelType::Timestamp | CelType::Duration => match type_of(e) {
                Some("string") | None => Ok(()),
                _ => mismatch(),
            },
            CelType::List(elem) => match type_of(e) {
                Some("array") => match e.get("items") {
                    Some(items) => self.fits(elem, items, depth + 1),
                    None => Ok(()),
                },
                None if e.get("properties").is_none() => Ok(()),
                _ => mismatch(),
            },
            CelType::Map(_, value) => match type_of(e) {
                Some("object") | None => match e.get("additionalProperties").filter(|a| a.is_object()) {
                    Some(values) if e.get("properties").is_none() => self.fits(value, values, depth + 1),
                    _ => Ok(()),
                },
                _ => mismatch(),
            },
            CelType::Message(owner) => {
                if !matches!(type_of(e), Some("object") | None) {
                    return mismatch();
                }
                let Some(props) = self
                    .schema_of(found)
                    .and_then(|s| resolve(s).get("properties"))
                    .and_then(Value::as_object)
                else {
                    return Ok(());
                };
                for name in props.keys() {
                    let Some(target) = field(e, name) else {
                        return Err(format!("field {name:?} does not exist in the expected type"));
                    };
                    if let Some(ty) = self.field_type(owner, name) {
                        self.fits(&ty, target, depth + 1).map_err(|m| {
                            if m.is_empty() {
                                format!("field {name:?} has type {}", display(&ty))
                            } else {
                                m
                            }
                        })?;
                    }
                }
                Ok(())
            }
            CelType::Abstract { .. } | CelType::Type(_) | CelType::Function { .. } | CelType::Enum(_) => {
                mismatch()
            }
        }
    }

    /// The CRD schema of a status field whose expression has type `ty`.
    pub(crate) fn status_schema(&self, ty: &Type) -> Value {
        match ty {
            CelType::Int | CelType::UInt => json!({ "type": "integer" }),
            CelType::Double => json!({ "type": "number" }),
            CelType::Bool => json!({ "type": "boolean" }),
            CelType::String => json!({ "type": "string" }),
            CelType::Bytes => json!({ "type": "string", "format": "byte" }),
            CelType::Timestamp => json!({ "type": "string", "format": "date-time" }),
            CelType::Duration => json!({ "type": "string" }),
            CelType::Optional(inner) => self.status_schema(inner),
            CelType::List(elem) => json!({ "type": "array", "items": self.status_schema(elem) }),
            CelType::Map(_, value) if !matches!(value.as_ref(), CelType::Dyn) => {
                json!({ "type": "object", "additionalProperties": self.status_schema(value) })
            }
            CelType::Message(_) => match self.schema_of(ty) {
                Some(s) => structural(s, 0),
                None => open(),
            },
            _ => open(),
        }
    }
}

fn open() -> Value {
    json!({ "x-kubernetes-preserve-unknown-fields": true })
}

/// A copy of a source schema fit for a status field of a CRD: references inlined, only the
/// structural keywords and descriptions kept (no defaults, requirements or validations, which
/// belong to the source object), depth bounded.
fn structural(s: &Value, depth: usize) -> Value {
    let s = resolve(s);
    if depth > 6 {
        return json!({ "type": "object", "x-kubernetes-preserve-unknown-fields": true });
    }
    let mut out = Map::new();
    for key in [
        "type",
        "format",
        "description",
        "x-kubernetes-int-or-string",
        "x-kubernetes-preserve-unknown-fields",
        "x-kubernetes-list-type",
        "x-kubernetes-list-map-keys",
        "x-kubernetes-map-type",
    ] {
        if let Some(v) = s.get(key) {
            out.insert(key.to_string(), v.clone());
        }
    }
    if let Some(props) = s.get("properties").and_then(Value::as_object) {
        let props: Map<String, Value> = props
            .iter()
            .map(|(k, v)| (k.clone(), structural(v, depth + 1)))
            .collect();
        out.insert("properties".to_string(), Value::Object(props));
        out.entry("type").or_insert_with(|| json!("object"));
    }
    if let Some(items) = s.get("items") {
        out.insert("items".to_string(), structural(items, depth + 1));
    }
    if let Some(values) = s.get("additionalProperties").filter(|a| a.is_object()) {
        out.insert("additionalProperties".to_string(), structural(values, depth + 1));
    }
    if !out.contains_key("type") && !out.contains_key("x-kubernetes-int-or-string") {
        out.insert("x-kubernetes-preserve-unknown-fields".to_string(), json!(true));
    }
    if let Some(keys) = out.get("x-kubernetes-list-map-keys").cloned() {
        // A map-list's keys must be required in a CRD; keep that one requirement.
        if let Some(items) = out.get_mut("items").and_then(Value::as_object_mut) {
            items.insert("required".to_string(), keys);
        }
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests;

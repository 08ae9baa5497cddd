//! Objects as the API server sends them: each JSON document decoded once, straight into the
//! tree the reconcilers read, with only the metadata kube's watch machinery needs beside it.

use crate::object::Pointer as _;
use std::{borrow::Cow, sync::Arc};

use kube::{
    api::{ApiResource, ObjectMeta},
    core::{DynamicResourceScope, Resource},
};
use serde::{Deserialize, Deserializer, de::Error as _};
use serde_json::Value;

/// An object of a kind known at run time, as one JSON tree.
///
/// kube's `DynamicObject` decodes a document through serde's buffered `flatten` (the whole
/// object twice) into typed metadata plus the rest, which the engine must then turn back into
/// JSON (a third copy). This holds the tree as decoded, shared, and copies out only the name,
/// namespace, uid and resourceVersion, which kube's watcher and store key objects by.
#[derive(Debug, Clone)]
pub(crate) struct Wire {
    meta: ObjectMeta,
    object: Arc<Value>,
}

impl Wire {
    /// Wraps a decoded object. Not checked further than being a JSON object.
    pub(crate) fn new(object: Value) -> Self {
        let field = |f: &str| object.at(f).and_then(Value::as_str).map(String::from);
        let meta = ObjectMeta {
            name: field("/metadata/name"),
            namespace: field("/metadata/namespace"),
            uid: field("/metadata/uid"),
            resource_version: field("/metadata/resourceVersion"),
            ..ObjectMeta::default()
        };
        Self {
            meta,
            object: Arc::new(object),
        }
    }

    /// The object, shared.
    pub(crate) fn object(&self) -> &Arc<Value> {
        &self.object
    }

    /// The object, owned (a copy only when it is shared).
    pub(crate) fn into_value(self) -> Value {
        Arc::unwrap_or_clone(self.object)
    }

    /// Edits the object in place (no copy while it is not shared): `apiVersion` and `kind`
    /// set as `resource` names them (list items of built-in kinds come without them), then
    /// `edit`.
    pub(crate) fn complete(&mut self, resource: &ApiResource, edit: impl FnOnce(&mut Value)) {
        let object = Arc::make_mut(&mut self.object);
        if let Some(m) = object.as_object_mut() {
            if m.get("apiVersion").and_then(Value::as_str) != Some(resource.api_version.as_str()) {
                m.insert("apiVersion".into(), Value::String(resource.api_version.clone()));
            }
            if m.get("kind").and_then(Value::as_str) != Some(resource.kind.as_str()) {
                m.insert("kind".into(), Value::String(resource.kind.clone()));
            }
        }
        edit(object);
    }
}

impl<'de> Deserialize<'de> for Wire {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let object = Value::deserialize(deserializer)?;
        if !object.is_object() {
            return Err(D::Error::custom(format!(
                "expected a Kubernetes object, got {}",
                crate::cel::json_type(&object)
            )));
        }
        Ok(Self::new(object))
    }
}

impl Resource for Wire {
    type DynamicType = ApiResource;
    type Scope = DynamicResourceScope;

    fn group(dt: &ApiResource) -> Cow<'_, str> {
        dt.group.as_str().into()
    }

    fn version(dt: &ApiResource) -> Cow<'_, str> {
        dt.version.as_str().into()
    }

    fn kind(dt: &ApiResource) -> Cow<'_, str> {
        dt.kind.as_str().into()
    }

    fn api_version(dt: &ApiResource) -> Cow<'_, str> {
        dt.api_version.as_str().into()
    }

    fn plural(dt: &ApiResource) -> Cow<'_, str> {
        dt.plural.as_str().into()
    }

    fn meta(&self) -> &ObjectMeta {
        &self.meta
    }

    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.meta
    }
}

/// The object as the engine reads it: JSON with `apiVersion` and `kind` set as `resource`
/// names them (list items of built-in kinds arrive without them).
pub(crate) fn to_value(mut object: Wire, resource: &ApiResource) -> Value {
    object.complete(resource, |_| {});
    object.into_value()
}

/// Drops `metadata.managedFields` entries `keep` refuses (all of them when it refuses all).
pub(crate) fn retain_managed_fields(object: &mut Value, keep: impl Fn(&Value) -> bool) {
    let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) else {
        return;
    };
    let Some(Value::Array(entries)) = meta.get_mut("managedFields") else {
        return;
    };
    entries.retain(|e| keep(e));
    if entries.is_empty() {
        meta.remove("managedFields");
    }
}

/// Whether a managedFields entry is our own apply's.
pub(crate) fn ours(entry: &Value) -> bool {
    entry.get("manager").and_then(Value::as_str) == Some(crate::metadata::APPLY_MANAGER)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn an_object_is_decoded_once_with_the_metadata_the_watcher_keys_by() {
        let w: Wire = serde_json::from_value(json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "a", "namespace": "n", "uid": "u", "resourceVersion": "7", "labels": {"x": "y"}},
            "data": {"k": "v"}}))
        .unwrap();
        assert_eq!(w.meta().name.as_deref(), Some("a"));
        assert_eq!(w.meta().namespace.as_deref(), Some("n"));
        assert_eq!(w.meta().uid.as_deref(), Some("u"));
        assert_eq!(w.meta().resource_version.as_deref(), Some("7"));
        assert_eq!(w.object()["data"]["k"], "v");
        assert_eq!(w.object()["metadata"]["labels"]["x"], "y");
    }

    #[test]
    fn a_document_that_is_not_an_object_is_refused_by_name() {
        let e = serde_json::from_value::<Wire>(json!(["a"])).unwrap_err();
        assert!(
            e.to_string().contains("expected a Kubernetes object, got list"),
            "{e}"
        );
    }

    #[test]
    fn completing_sets_the_kind_of_a_list_item_and_drops_other_managers_fields() {
        let mut w = Wire::new(json!({"metadata": {"name": "a", "managedFields": [
            {"manager": crate::metadata::APPLY_MANAGER}, {"manager": "kubectl"}]}}));
        let resource = ApiResource::erase::<k8s_openapi::api::core::v1::ConfigMap>(&());
        w.complete(&resource, |o| retain_managed_fields(o, ours));
        let o = w.into_value();
        assert_eq!(
            (o["apiVersion"].as_str(), o["kind"].as_str()),
            (Some("v1"), Some("ConfigMap"))
        );
        assert_eq!(o["metadata"]["managedFields"].as_array().map(Vec::len), Some(1));
        let mut all_gone = o;
        retain_managed_fields(&mut all_gone, |_| false);
        assert!(all_gone["metadata"].get("managedFields").is_none());
    }
}

//! What the pipeline reads of a cluster besides an instance's own children: whether a kind is
//! namespaced, and the external objects a graph references. The controller answers from its
//! caches; `kroxide render` and a plugin's blocking thread from an [`Offline`] snapshot.

use std::collections::HashMap;

use kroxide_schema::{kinds, selector::Selector};
use serde_json::Value;

use crate::object::str_at;

/// Reads of a cluster. Implementations never write.
pub trait Cluster {
    /// Whether objects of `kind` in `api_version` live in namespaces; `None` when the kind is
    /// not known (yet).
    fn namespaced(&self, api_version: &str, kind: &str) -> Option<bool>;
    /// The object `kind` `namespace/name`, if it exists.
    fn get(&self, api_version: &str, kind: &str, namespace: Option<&str>, name: &str) -> Option<Value>;
    /// The objects of `kind` in `namespace` (all namespaces when `None`) matching `selector`
    /// (a Kubernetes label selector: `matchLabels`, `matchExpressions`), in a stable order.
    fn list(&self, api_version: &str, kind: &str, namespace: Option<&str>, selector: &Value) -> Vec<Value>;
}

/// A cluster held in memory: built-in kinds, custom kinds registered by `(apiVersion, kind)`,
/// and a list of objects. Empty by default: built-in kinds only, no objects.
#[derive(Debug, Clone, Default)]
pub struct Offline {
    custom: HashMap<(String, String), bool>,
    objects: Vec<Value>,
}

impl Offline {
    /// Registers a custom kind.
    pub fn insert_kind(&mut self, api_version: &str, kind: &str, namespaced: bool) {
        self.custom
            .insert((api_version.to_string(), kind.to_string()), namespaced);
    }

    /// Adds objects that `get` and `list` answer with.
    pub fn insert_objects(&mut self, objects: impl IntoIterator<Item = Value>) {
        self.objects.extend(objects);
    }
}

impl Cluster for Offline {
    fn namespaced(&self, api_version: &str, kind: &str) -> Option<bool> {
        self.custom
            .get(&(api_version.to_string(), kind.to_string()))
            .copied()
            .or_else(|| kinds::builtin(api_version, kind).map(|k| k.namespaced))
    }

    /// An object without a namespace matches any namespace asked for, so a file need not
    /// repeat it.
    fn get(&self, api_version: &str, kind: &str, namespace: Option<&str>, name: &str) -> Option<Value> {
        self.objects
            .iter()
            .find(|d| {
                str_at(d, "/apiVersion") == api_version
                    && str_at(d, "/kind") == kind
                    && str_at(d, "/metadata/name") == name
                    && (namespace.is_none()
                        || str_at(d, "/metadata/namespace").is_empty()
                        || Some(str_at(d, "/metadata/namespace")) == namespace)
            })
            .cloned()
    }

    fn list(&self, api_version: &str, kind: &str, namespace: Option<&str>, selector: &Value) -> Vec<Value> {
        let Ok(sel) = Selector::from_structured(selector) else {
            return Vec::new();
        };
        self.objects
            .iter()
            .filter(|d| {
                str_at(d, "/apiVersion") == api_version
                    && str_at(d, "/kind") == kind
                    && namespace.is_none_or(|n| str_at(d, "/metadata/namespace") == n)
                    && sel.matches_object(d)
            })
            .cloned()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn an_offline_cluster_knows_built_in_and_registered_kinds_only() {
        let mut c = Offline::default();
        assert_eq!(c.namespaced("v1", "ConfigMap"), Some(true));
        assert_eq!(c.namespaced("v1", "Namespace"), Some(false));
        assert_eq!(c.namespaced("example.com/v1", "Widget"), None);
        c.insert_kind("example.com/v1", "Widget", false);
        assert_eq!(c.namespaced("example.com/v1", "Widget"), Some(false));
    }

    #[test]
    fn an_offline_cluster_finds_objects_by_identity_and_by_selector() {
        let mut c = Offline::default();
        c.insert_objects([
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a", "labels": {"team": "x"}}}),
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "b", "namespace": "other"}}),
        ]);
        assert!(
            c.get("v1", "ConfigMap", Some("prod"), "a").is_some(),
            "no namespace matches any"
        );
        assert!(c.get("v1", "ConfigMap", Some("prod"), "b").is_none());
        let selected = c.list("v1", "ConfigMap", None, &json!({"matchLabels": {"team": "x"}}));
        assert_eq!(selected.len(), 1);
    }
}

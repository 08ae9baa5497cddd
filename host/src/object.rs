//! The object layer: typed reads of a Kubernetes object held as JSON (name, namespace, labels,
//! annotations, finalizers, deletion, resourceVersion, group-kind) and [`ObjectId`], the identity
//! of an object across versions.

use std::{fmt, hash::Hash};

use serde_json::Value;

/// Reads of an object's identity and metadata. Every accessor answers `None` (or empty, or
/// `false`) for a field that is absent or not of its type; none panics.
pub(crate) trait Object {
    /// `apiVersion`.
    fn api_version(&self) -> &str;
    /// `kind`.
    fn kind(&self) -> &str;
    /// `metadata.name`.
    fn name(&self) -> &str;
    /// `metadata.namespace`, `None` when absent or empty.
    fn namespace(&self) -> Option<&str>;
    /// `metadata.uid`.
    fn uid(&self) -> Option<&str>;
    /// `metadata.resourceVersion` as a number (the API server's are decimal).
    fn resource_version(&self) -> Option<u64>;
    /// A label.
    fn label(&self, key: &str) -> Option<&str>;
    /// An annotation.
    fn annotation(&self, key: &str) -> Option<&str>;
    /// Whether `metadata.finalizers` holds `finalizer`.
    fn has_finalizer(&self, finalizer: &str) -> bool;
    /// Whether `metadata.deletionTimestamp` is set.
    fn deleting(&self) -> bool;
}

/// JSON pointer look-ups without allocating: serde_json's `Value::pointer` unescapes every
/// segment into a new `String` (two per segment), which on the reconcile path (every name,
/// label and identity read) was thousands of allocations per instance.
pub(crate) trait Pointer {
    /// The value at `pointer` (`/metadata/name`, `/spec/ports/0`), as `Value::pointer` finds
    /// it; `None` when absent.
    fn at(&self, pointer: &str) -> Option<&Value>;
}

impl Pointer for Value {
    fn at(&self, pointer: &str) -> Option<&Value> {
        if pointer.contains('~') {
            // Escaped segments (`~1`, `~0`): serde_json's own reading.
            return self.pointer(pointer);
        }
        if pointer.is_empty() {
            return Some(self);
        }
        let rest = pointer.strip_prefix('/')?;
        rest.split('/').try_fold(self, |target, token| match target {
            Value::Object(map) => map.get(token),
            Value::Array(list) => index(token).and_then(|i| list.get(i)),
            _ => None,
        })
    }
}

/// A list index as JSON pointers write it: decimal, no sign, no leading zero.
fn index(token: &str) -> Option<usize> {
    if token.starts_with('+') || (token.starts_with('0') && token.len() > 1) {
        return None;
    }
    token.parse().ok()
}

fn text<'a>(v: &'a Value, pointer: &str) -> Option<&'a str> {
    v.at(pointer).and_then(Value::as_str)
}

impl Object for Value {
    fn api_version(&self) -> &str {
        text(self, "/apiVersion").unwrap_or_default()
    }

    fn kind(&self) -> &str {
        text(self, "/kind").unwrap_or_default()
    }

    fn name(&self) -> &str {
        text(self, "/metadata/name").unwrap_or_default()
    }

    fn namespace(&self) -> Option<&str> {
        text(self, "/metadata/namespace").filter(|n| !n.is_empty())
    }

    fn uid(&self) -> Option<&str> {
        text(self, "/metadata/uid")
    }

    fn resource_version(&self) -> Option<u64> {
        text(self, "/metadata/resourceVersion").and_then(|r| r.parse().ok())
    }

    fn label(&self, key: &str) -> Option<&str> {
        self.at("/metadata/labels")
            .and_then(|l| l.get(key))
            .and_then(Value::as_str)
    }

    fn annotation(&self, key: &str) -> Option<&str> {
        self.at("/metadata/annotations")
            .and_then(|a| a.get(key))
            .and_then(Value::as_str)
    }

    fn has_finalizer(&self, finalizer: &str) -> bool {
        self.at("/metadata/finalizers")
            .and_then(Value::as_array)
            .is_some_and(|f| f.iter().any(|x| x == finalizer))
    }

    fn deleting(&self) -> bool {
        self.at("/metadata/deletionTimestamp")
            .is_some_and(|t| !t.is_null())
    }
}

/// The string at `pointer` in `v`; empty when absent or not a string.
pub(crate) fn str_at<'a>(v: &'a Value, pointer: &str) -> &'a str {
    text(v, pointer).unwrap_or_default()
}

/// The group of an `apiVersion`: `apps` for `apps/v1`, empty for `v1`.
pub(crate) fn group_of(api_version: &str) -> &str {
    api_version.rsplit_once('/').map(|(g, _)| g).unwrap_or_default()
}

/// `Kind.group` (`Deployment.apps`), or `Kind` for the core group, as ApplySets list kinds.
pub(crate) fn group_kind(api_version: &str, kind: &str) -> String {
    match group_of(api_version) {
        "" => kind.to_string(),
        group => format!("{kind}.{group}"),
    }
}

/// The identity of an object across versions: group, kind, namespace and name. Shown as
/// `Kind namespace/name` (or `Kind name` when cluster-scoped).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct ObjectId {
    /// API group, empty for the core group.
    pub(crate) group: String,
    /// Kind.
    pub(crate) kind: String,
    /// Namespace, empty when cluster-scoped.
    pub(crate) namespace: String,
    /// Name.
    pub(crate) name: String,
}

/// Feeds a JSON value to `h` without copying or printing it, each kind of value tagged so
/// that different trees hash apart (object keys in their sorted order).
pub(crate) fn hash_json(v: &Value, h: &mut impl std::hash::Hasher) {
    match v {
        Value::Null => 0u8.hash(h),
        Value::Bool(b) => (1u8, b).hash(h),
        Value::Number(n) => {
            2u8.hash(h);
            match (n.as_i64(), n.as_u64()) {
                (Some(i), _) => (0u8, i).hash(h),
                (None, Some(u)) => (1u8, u).hash(h),
                _ => (2u8, n.as_f64().unwrap_or_default().to_bits()).hash(h),
            }
        }
        Value::String(s) => (3u8, s).hash(h),
        Value::Array(items) => {
            (4u8, items.len()).hash(h);
            for item in items {
                hash_json(item, h);
            }
        }
        Value::Object(map) => {
            (5u8, map.len()).hash(h);
            for (k, v) in map {
                k.hash(h);
                hash_json(v, h);
            }
        }
    }
}

impl ObjectId {
    /// The identity of `v`.
    pub(crate) fn of(v: &Value) -> Self {
        Self::new(v.api_version(), v.kind(), v.namespace(), v.name())
    }

    /// The identity of an object of `api_version` and `kind` named `name` (in `namespace`).
    pub(crate) fn new(api_version: &str, kind: &str, namespace: Option<&str>, name: &str) -> Self {
        Self {
            group: group_of(api_version).to_string(),
            kind: kind.to_string(),
            namespace: namespace.unwrap_or_default().to_string(),
            name: name.to_string(),
        }
    }
}

impl fmt::Display for ObjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.namespace.is_empty() {
            write!(f, "{} {}", self.kind, self.name)
        } else {
            write!(f, "{} {}/{}", self.kind, self.namespace, self.name)
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_pointer_look_up_finds_what_serde_json_finds() {
        let v = json!({"metadata": {"name": "a", "labels": {"x/y": "1", "t~": "2"}},
            "spec": {"ports": [{"port": 80}, {"port": 81}]}, "": {"": 3}});
        for p in [
            "",
            "/",
            "//",
            "/metadata/name",
            "/metadata/missing",
            "/spec/ports/1/port",
            "/spec/ports/01",
            "/spec/ports/+1",
            "/spec/ports/2",
            "/spec/ports/x",
            "/metadata/labels/x~1y",
            "/metadata/labels/t~0",
            "metadata",
            "/metadata/name/deeper",
        ] {
            assert_eq!(v.at(p), v.pointer(p), "{p:?}");
        }
    }

    #[test]
    fn accessors_read_metadata_and_answer_nothing_for_what_is_missing() {
        let v = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {
            "name": "web", "namespace": "shop", "resourceVersion": "42", "labels": {"a": "1"},
            "finalizers": ["kro.run/finalizer"], "deletionTimestamp": "2026-12-01T00:00:00Z"}});
        assert_eq!(
            (v.name(), v.namespace(), v.resource_version()),
            ("web", Some("shop"), Some(42))
        );
        assert_eq!(v.label("a"), Some("1"));
        assert!(v.has_finalizer("kro.run/finalizer") && v.deleting());
        let empty = json!({});
        assert_eq!(
            (empty.name(), empty.namespace(), empty.annotation("x")),
            ("", None, None)
        );
        assert!(!empty.deleting() && !empty.has_finalizer("x"));
    }

    #[test]
    fn an_object_id_shows_kind_namespace_and_name() {
        let ns =
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a", "namespace": "n"}});
        let cluster = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": "r"}});
        assert_eq!(ObjectId::of(&ns).to_string(), "ConfigMap n/a");
        assert_eq!(ObjectId::of(&cluster).to_string(), "ClusterRole r");
        assert_eq!(ObjectId::of(&cluster).group, "rbac.authorization.k8s.io");
        assert_eq!(group_kind("apps/v1", "Deployment"), "Deployment.apps");
        assert_eq!(group_kind("v1", "Service"), "Service");
    }
}

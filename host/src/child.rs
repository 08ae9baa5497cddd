//! Children of an instance as every stage sees them: keys, readiness, desired objects.

use std::fmt;

use serde_json::{Map, Value};

/// Names one child of an instance: the graph node `id` and, for an item of a `forEach`
/// collection, its `index`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ChildKey {
    /// The graph node id (`^[a-z][a-zA-Z0-9]*$`).
    pub id: String,
    /// `None` for a plain node, `Some(i)` for item `i` of a collection.
    pub index: Option<u32>,
}

impl ChildKey {
    /// The key of a plain node.
    pub fn new(id: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            index: None,
        }
    }

    /// The key of item `index` of a collection node.
    pub(crate) fn item(id: impl Into<String>, index: u32) -> Self {
        Self {
            id: id.into(),
            index: Some(index),
        }
    }
}

impl fmt::Display for ChildKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.index {
            Some(i) => write!(f, "{}[{i}]", self.id),
            None => f.write_str(&self.id),
        }
    }
}

/// Checks a node id against kro's rule `^[a-z][a-zA-Z0-9]*$` (the plugin contract's rule too).
pub use kroxide_contract::is_valid_id;

/// Whether a child, or an instance's resources as a whole, are ready.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub enum Readiness {
    /// Nobody said; the host's own rule applies.
    #[default]
    Unknown,
    /// Ready.
    Ready,
    /// Not ready yet.
    NotReady,
}

/// A child the instance should have: a partial object (only the fields its author owns).
#[derive(Debug, Clone, PartialEq)]
pub struct DesiredChild {
    /// Which node (and item).
    pub key: ChildKey,
    /// The object; always a JSON object with `apiVersion`, `kind` and `metadata.name`.
    pub object: Map<String, Value>,
    /// What the author says of its readiness.
    pub ready: Readiness,
}

impl DesiredChild {
    /// `apiVersion` of the object.
    pub(crate) fn api_version(&self) -> &str {
        self.object
            .get("apiVersion")
            .and_then(Value::as_str)
            .unwrap_or_default()
    }

    /// `kind` of the object.
    pub(crate) fn kind(&self) -> &str {
        self.object
            .get("kind")
            .and_then(Value::as_str)
            .unwrap_or_default()
    }

    /// `metadata.name` of the object.
    pub(crate) fn name(&self) -> &str {
        self.object
            .get("metadata")
            .and_then(|m| m.get("name"))
            .and_then(Value::as_str)
            .unwrap_or_default()
    }

    /// `metadata.namespace` of the object, if set.
    pub(crate) fn namespace(&self) -> Option<&str> {
        self.object
            .get("metadata")
            .and_then(|m| m.get("namespace"))
            .and_then(Value::as_str)
    }

    /// The object's identity (what [`crate::object::ObjectId::of`] gives for it), without a copy.
    pub(crate) fn id(&self) -> crate::object::ObjectId {
        crate::object::ObjectId::new(self.api_version(), self.kind(), self.namespace(), self.name())
    }
}

/// A live child as the cluster reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct ObservedChild {
    /// Which node (and item).
    pub key: ChildKey,
    /// The full live object, shared with the cache it was read from.
    pub object: std::sync::Arc<Value>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_order_plain_nodes_before_their_items() {
        let mut keys = [
            ChildKey::item("a", 1),
            ChildKey::new("b"),
            ChildKey::new("a"),
            ChildKey::item("a", 0),
        ];
        keys.sort();
        let printed: Vec<String> = keys.iter().map(ToString::to_string).collect();
        assert_eq!(printed, ["a", "a[0]", "a[1]", "b"]);
    }

    #[test]
    fn ids_follow_kros_rule() {
        assert!(is_valid_id("webApp2"));
        assert!(!is_valid_id("web-app"));
        assert!(!is_valid_id("Web"));
    }
}

//! The names of work items: an instance of a graph's kind, and how a child names its owner.

use crate::object::Pointer as _;
use serde_json::Value;

use super::{informers::WatchKey, queue};
use crate::metadata;
use crate::object::Object;

/// Names one instance.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct InstanceKey {
    /// apiVersion of the graph's kind.
    pub(crate) api_version: String,
    /// Kind.
    pub(crate) kind: String,
    /// Namespace (`None` for cluster-scoped kinds).
    pub(crate) namespace: Option<String>,
    /// Name.
    pub(crate) name: String,
}

impl queue::Key for InstanceKey {
    /// Instances of one graph (kind) share the workers fairly with other graphs'.
    type Group = (String, String);
    fn group(&self) -> Self::Group {
        (self.api_version.clone(), self.kind.clone())
    }
}

impl std::fmt::Display for InstanceKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.namespace {
            Some(ns) => write!(f, "{} {ns}/{}", self.kind, self.name),
            None => write!(f, "{} {}", self.kind, self.name),
        }
    }
}

/// The instance a child belongs to, from kro's labels.
pub(crate) fn owner_of(child: &Value) -> Option<InstanceKey> {
    let group = child.label(metadata::INSTANCE_GROUP)?;
    let version = child.label(metadata::INSTANCE_VERSION)?;
    Some(InstanceKey {
        api_version: if group.is_empty() {
            version.to_string()
        } else {
            format!("{group}/{version}")
        },
        kind: child.label(metadata::INSTANCE_KIND)?.to_string(),
        namespace: child.label(metadata::INSTANCE_NAMESPACE).map(String::from),
        name: child.label(metadata::INSTANCE_NAME)?.to_string(),
    })
}

pub(crate) fn instance_key(key: &WatchKey, v: &Value) -> InstanceKey {
    let s = |p: &str| v.at(p).and_then(Value::as_str).map(String::from);
    InstanceKey {
        api_version: key.api_version.clone(),
        kind: key.kind.clone(),
        namespace: s("/metadata/namespace"),
        name: s("/metadata/name").unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_child_routes_to_its_instance_by_labels() {
        let child = json!({"metadata": {"labels": {
            "kro.run/instance-group": "kro.run", "kro.run/instance-version": "v1alpha1",
            "kro.run/instance-kind": "WebApp", "kro.run/instance-namespace": "shop", "kro.run/instance-name": "web"}}});
        let key = owner_of(&child).unwrap();
        assert_eq!(key.to_string(), "WebApp shop/web");
        assert_eq!(key.api_version, "kro.run/v1alpha1");
        assert!(owner_of(&json!({"metadata": {}})).is_none());
    }
}

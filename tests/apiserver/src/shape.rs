//! How lists and maps of an object merge: which lists are keyed (and by what), which are sets,
//! which are atomic. Custom resources take it from their schema's `x-kubernetes-list-type`,
//! built-in kinds from a table of their patch merge keys. Server-side apply and strategic merge
//! patch both ask here.

use serde_json::Value;

/// How a list merges.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListType {
    /// Replaced as a whole.
    Atomic,
    /// A set of scalars.
    Set,
    /// Items identified by these key fields.
    Map(Vec<String>),
}

/// A path step into a list's items.
pub const ITEMS: &str = "[]";

/// The merge semantics of one resource type.
#[derive(Debug, Clone, Copy)]
pub enum Shape<'a> {
    /// A built-in kind, by Kind.
    Builtin(&'a str),
    /// A custom resource with this OpenAPI v3 schema (or none: everything atomic lists).
    Schema(Option<&'a Value>),
}

/// A key field's default when an item leaves it out (so `{containerPort: 80}` and
/// `{containerPort: 80, protocol: TCP}` are the same item).
pub fn key_default(field: &str) -> Option<Value> {
    (field == "protocol").then(|| Value::String("TCP".into()))
}

fn metadata_list(path: &[&str]) -> Option<ListType> {
    match path {
        ["metadata", "ownerReferences"] => Some(ListType::Map(vec!["uid".into()])),
        ["metadata", "finalizers"] => Some(ListType::Set),
        ["metadata", ..] => Some(ListType::Atomic),
        _ => None,
    }
}

fn is_container_list(name: &str) -> bool {
    matches!(name, "containers" | "initContainers" | "ephemeralContainers")
}

fn builtin_list(kind: &str, path: &[&str]) -> ListType {
    let keys = |k: &[&str]| ListType::Map(k.iter().map(|s| s.to_string()).collect());
    let Some(last) = path.last() else {
        return ListType::Atomic;
    };
    match *last {
        "containers"
        | "initContainers"
        | "ephemeralContainers"
        | "volumes"
        | "env"
        | "imagePullSecrets"
        | "resourceClaims"
        | "schedulingGates" => keys(&["name"]),
        "volumeMounts" => keys(&["mountPath"]),
        "volumeDevices" => keys(&["devicePath"]),
        "hostAliases" => keys(&["ip"]),
        "topologySpreadConstraints" => keys(&["topologyKey", "whenUnsatisfiable"]),
        "conditions" => keys(&["type"]),
        "ports" => {
            let parent = path.len().checked_sub(3).map(|i| path[i]);
            if parent.is_some_and(is_container_list) {
                keys(&["containerPort", "protocol"])
            } else if kind == "Service" && path == ["spec", "ports"] {
                keys(&["port", "protocol"])
            } else {
                ListType::Atomic
            }
        }
        _ => ListType::Atomic,
    }
}

fn schema_at<'v>(root: &'v Value, path: &[&str]) -> Option<&'v Value> {
    let mut s = root;
    for step in path {
        s = if *step == ITEMS {
            s.get("items")?
        } else {
            match s.get("properties").and_then(|p| p.get(*step)) {
                Some(child) => child,
                None => match s.get("additionalProperties") {
                    Some(child @ Value::Object(_)) => child,
                    _ => return None,
                },
            }
        };
    }
    Some(s)
}

/// How a strategic merge patch merges a list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Strategy {
    /// The patch's list replaces the original.
    Replace,
    /// Items are merged by this key.
    MergeKey(String),
    /// Scalars are unioned.
    MergePrimitives,
}

impl Shape<'_> {
    /// The list semantics at `path` (field names from the root; [`ITEMS`] for list items).
    pub fn list_type(&self, path: &[&str]) -> ListType {
        let clean: Vec<&str> = path.to_vec();
        if let Some(t) = metadata_list(&clean) {
            return t;
        }
        match self {
            Shape::Builtin(kind) => builtin_list(kind, &clean),
            Shape::Schema(None) => ListType::Atomic,
            Shape::Schema(Some(schema)) => {
                let Some(s) = schema_at(schema, &clean) else {
                    return ListType::Atomic;
                };
                match s.get("x-kubernetes-list-type").and_then(Value::as_str) {
                    Some("set") => ListType::Set,
                    Some("map") => ListType::Map(
                        s.get("x-kubernetes-list-map-keys")
                            .and_then(Value::as_array)
                            .map(|keys| keys.iter().filter_map(|k| k.as_str().map(String::from)).collect())
                            .unwrap_or_default(),
                    ),
                    _ => ListType::Atomic,
                }
            }
        }
    }

    /// Whether the map or struct at `path` is replaced as a whole rather than merged by key.
    pub fn atomic_map(&self, path: &[&str]) -> bool {
        match self {
            Shape::Builtin(_) => path.last() == Some(&"selector") && path.first() != Some(&"metadata"),
            Shape::Schema(None) => false,
            Shape::Schema(Some(schema)) => {
                path.first() != Some(&"metadata")
                    && schema_at(schema, path).is_some_and(|s| {
                        matches!(
                            s.get("x-kubernetes-map-type").and_then(Value::as_str),
                            Some("atomic")
                        )
                    })
            }
        }
    }

    /// The strategic-merge-patch strategy of the list at `path` (built-in kinds only; a
    /// custom resource never gets a strategic merge patch).
    pub fn strategy(&self, path: &[&str]) -> Strategy {
        if path == ["metadata", "finalizers"] {
            return Strategy::MergePrimitives;
        }
        match self.list_type(path) {
            ListType::Map(keys) => {
                // Strategic merge uses a single patchMergeKey.
                let key = match path.last() {
                    Some(&"ports") if keys.first().map(String::as_str) == Some("containerPort") => {
                        "containerPort"
                    }
                    Some(&"ports") => "port",
                    _ => keys.first().map(String::as_str).unwrap_or("name"),
                };
                Strategy::MergeKey(key.to_string())
            }
            ListType::Set => Strategy::MergePrimitives,
            ListType::Atomic => Strategy::Replace,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn container_and_service_ports_have_different_keys() {
        let deploy = Shape::Builtin("Deployment");
        let path = ["spec", "template", "spec", "containers", ITEMS, "ports"];
        assert_eq!(
            deploy.list_type(&path),
            ListType::Map(vec!["containerPort".into(), "protocol".into()])
        );
        let svc = Shape::Builtin("Service");
        assert_eq!(
            svc.list_type(&["spec", "ports"]),
            ListType::Map(vec!["port".into(), "protocol".into()])
        );
        assert_eq!(
            svc.strategy(&["spec", "ports"]),
            Strategy::MergeKey("port".into())
        );
        assert_eq!(
            deploy.list_type(&["spec", "template", "spec", "tolerations"]),
            ListType::Atomic
        );
    }

    #[test]
    fn metadata_lists_are_the_same_for_every_kind() {
        let cr = Shape::Schema(None);
        assert_eq!(
            cr.list_type(&["metadata", "ownerReferences"]),
            ListType::Map(vec!["uid".into()])
        );
        assert_eq!(cr.list_type(&["metadata", "finalizers"]), ListType::Set);
    }

    #[test]
    fn custom_resources_follow_their_schema_markers() {
        let schema = json!({"type": "object", "properties": {"spec": {"type": "object", "properties": {
            "hosts": {"type": "array", "x-kubernetes-list-type": "set", "items": {"type": "string"}},
            "rules": {"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"],
                      "items": {"type": "object"}},
            "args": {"type": "array", "items": {"type": "string"}},
            "sel": {"type": "object", "x-kubernetes-map-type": "atomic"}}}}});
        let s = Shape::Schema(Some(&schema));
        assert_eq!(s.list_type(&["spec", "hosts"]), ListType::Set);
        assert_eq!(
            s.list_type(&["spec", "rules"]),
            ListType::Map(vec!["name".into()])
        );
        assert_eq!(s.list_type(&["spec", "args"]), ListType::Atomic);
        assert!(s.atomic_map(&["spec", "sel"]));
        assert!(!s.atomic_map(&["spec"]));
    }
}

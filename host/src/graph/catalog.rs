//! Where the schemas of the kinds a graph names come from: built-in kinds from the OpenAPI
//! snapshot of the real kube-apiserver (`kroxide_schema::openapi`), custom kinds from their
//! CustomResourceDefinitions (the cluster's when the controller admits a graph, `--crd` files
//! offline, another graph's generated CRD).

use std::{
    collections::{BTreeSet, HashMap, HashSet},
    sync::Arc,
};

use kroxide_schema::openapi::SNAPSHOT;
use serde_json::{Value, json};

/// The component schema of object metadata, which every kind shares.
pub(crate) const OBJECT_META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta";

/// What to do with a custom kind no CRD was given for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CustomKinds {
    /// Leave expressions that read or fill it unchecked (`dyn`): offline, without `--crd`.
    #[default]
    Unchecked,
    /// Refuse the graph: the controller has asked the cluster and the kind is not served.
    Refused,
}

/// The schemas kinds have, by `apiVersion` and `kind`.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    crds: HashMap<(String, String), Arc<Value>>,
    unchecked: HashSet<(String, String)>,
    custom: CustomKinds,
}

/// What the catalog knows of one kind.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum KindSchema {
    /// Its root schema (component `$ref`s resolve against the snapshot).
    Known(Arc<Value>),
    /// Served, but its schema is not known here: expressions on it are not checked.
    Unchecked,
    /// Not served: the graph is refused. `near` is the closest kind of the same group-version.
    Unknown {
        /// A kind of the same group-version with a similar name, if any.
        near: Option<String>,
    },
}

/// Each version a CustomResourceDefinition defines: its `apiVersion`, the kind, and the
/// version's entry (schema, served, ...).
pub(crate) fn crd_versions(crd: &Value) -> impl Iterator<Item = (String, &str, &Value)> {
    let s = |p: &str| crd.pointer(p).and_then(Value::as_str).unwrap_or_default();
    let (group, kind) = (s("/spec/group"), s("/spec/names/kind"));
    crd.pointer("/spec/versions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(move |version| {
            let name = version.get("name").and_then(Value::as_str).unwrap_or_default();
            (format!("{group}/{name}"), kind, version)
        })
}

fn split(api_version: &str) -> (&str, &str) {
    api_version.rsplit_once('/').unwrap_or(("", api_version))
}

impl Catalog {
    /// Built-in kinds only; custom kinds are handled as `custom` says.
    pub fn new(custom: CustomKinds) -> Self {
        Self {
            custom,
            ..Self::default()
        }
    }

    /// Adds every served version of a CustomResourceDefinition (its `openAPIV3Schema`).
    /// A CRD without a schema makes its kind served but unchecked.
    pub fn add_crd(&mut self, crd: &Value) {
        for (api_version, kind, version) in crd_versions(crd) {
            let key = (api_version, kind.to_string());
            match version.pointer("/schema/openAPIV3Schema") {
                Some(schema) => {
                    self.crds.insert(key, Arc::new(object_root(schema.clone())));
                }
                None => {
                    self.unchecked.insert(key);
                }
            }
        }
    }

    /// Marks a kind as served but without a schema known here (an aggregated API).
    pub fn add_unchecked(&mut self, api_version: &str, kind: &str) {
        self.unchecked.insert((api_version.to_string(), kind.to_string()));
    }

    /// What is known of `kind` in `api_version`.
    pub(crate) fn lookup(&self, api_version: &str, kind: &str) -> KindSchema {
        let key = (api_version.to_string(), kind.to_string());
        if let Some(schema) = self.crds.get(&key) {
            return KindSchema::Known(schema.clone());
        }
        if self.unchecked.contains(&key) {
            return KindSchema::Unchecked;
        }
        let (group, version) = split(api_version);
        if let Some(name) = SNAPSHOT.root(group, version, kind)
            && let Some(schema) = SNAPSHOT.schemas.get(name)
        {
            return KindSchema::Known(Arc::new(schema.clone()));
        }
        let builtin_kinds = builtin_kinds(group, version);
        if !builtin_kinds.is_empty() {
            // A group-version of Kubernetes itself: every kind it serves is known.
            return KindSchema::Unknown {
                near: nearest(kind, builtin_kinds.iter().map(String::as_str)),
            };
        }
        match self.custom {
            CustomKinds::Unchecked => KindSchema::Unchecked,
            CustomKinds::Refused => KindSchema::Unknown { near: None },
        }
    }
}

/// The kinds the snapshot has for one group-version.
fn builtin_kinds(group: &str, version: &str) -> BTreeSet<String> {
    SNAPSHOT
        .schemas
        .values()
        .flat_map(|s| {
            s["x-kubernetes-group-version-kind"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .filter(|gvk| gvk["group"] == group && gvk["version"] == version)
        .filter_map(|gvk| gvk["kind"].as_str().map(str::to_string))
        .collect()
}

/// A root object schema with `apiVersion`, `kind` and `metadata` as every object has them
/// (CRD schemas often leave them out or declare `metadata` as a bare object).
pub(crate) fn object_root(mut schema: Value) -> Value {
    if !schema.is_object() {
        schema = json!({ "type": "object" });
    }
    let props = schema
        .as_object_mut()
        .expect("an object")
        .entry("properties")
        .or_insert_with(|| json!({}));
    if let Some(props) = props.as_object_mut() {
        props.insert("apiVersion".to_string(), json!({ "type": "string" }));
        props.insert("kind".to_string(), json!({ "type": "string" }));
        props.insert(
            "metadata".to_string(),
            json!({ "$ref": format!("#/components/schemas/{OBJECT_META}") }),
        );
    }
    schema
}

/// Edit distance between two names (insertions, deletions, substitutions).
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = if ca == *cb {
                prev
            } else {
                1 + prev.min(row[j]).min(cur)
            };
            prev = cur;
        }
    }
    row[b.len()]
}

/// The candidate closest to `name`, when it is close enough to be a likely misspelling.
pub(crate) fn nearest<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<String> {
    let limit = (name.chars().count() / 3).max(2);
    candidates
        .into_iter()
        .map(|c| (distance(&name.to_lowercase(), &c.to_lowercase()), c))
        .filter(|(d, _)| *d <= limit)
        .min()
        .map(|(_, c)| c.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_builtin_kind_is_known_and_a_misspelled_one_is_unknown_with_the_nearest_kind() {
        let catalog = Catalog::new(CustomKinds::Unchecked);
        assert!(matches!(
            catalog.lookup("apps/v1", "Deployment"),
            KindSchema::Known(_)
        ));
        assert_eq!(
            catalog.lookup("networking.k8s.io/v1", "Ingres"),
            KindSchema::Unknown {
                near: Some("Ingress".to_string())
            }
        );
    }

    #[test]
    fn a_custom_kind_without_a_crd_is_unchecked_offline_and_refused_by_the_controller() {
        assert_eq!(
            Catalog::new(CustomKinds::Unchecked).lookup("example.com/v1", "Widget"),
            KindSchema::Unchecked
        );
        assert_eq!(
            Catalog::new(CustomKinds::Refused).lookup("example.com/v1", "Widget"),
            KindSchema::Unknown { near: None }
        );
    }

    #[test]
    fn a_crd_gives_its_kind_a_schema_with_object_metadata() {
        let mut catalog = Catalog::new(CustomKinds::Refused);
        catalog.add_crd(&json!({
            "spec": {"group": "example.com", "names": {"kind": "Widget"}, "versions": [
                {"name": "v1", "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                    "spec": {"type": "object", "properties": {"size": {"type": "integer"}}}}}}}]}
        }));
        let KindSchema::Known(schema) = catalog.lookup("example.com/v1", "Widget") else {
            panic!("known")
        };
        assert_eq!(
            schema["properties"]["spec"]["properties"]["size"]["type"],
            "integer"
        );
        assert!(
            schema["properties"]["metadata"]["$ref"]
                .as_str()
                .unwrap()
                .ends_with("ObjectMeta")
        );
    }

    #[test]
    fn nearest_names_the_closest_candidate_only_when_it_is_close() {
        assert_eq!(
            nearest(
                "availableReplica",
                ["replicas", "availableReplicas", "readyReplicas"]
            ),
            Some("availableReplicas".to_string())
        );
        assert_eq!(nearest("zzz", ["replicas", "conditions"]), None);
    }
}

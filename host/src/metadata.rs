//! The labels and annotations kroxide puts on instances and children, exactly as kro names them,
//! and the propagation of an instance's own labels to its children.

use crate::object::Pointer as _;
use std::collections::BTreeMap;

use base64::Engine as _;
use serde_json::{Map, Value};
use sha2::{Digest as _, Sha256};

/// `kro.run/owned: "true"` on everything kroxide manages.
pub(crate) const OWNED: &str = "kro.run/owned";
/// Version of the controller that wrote the object.
pub(crate) const KRO_VERSION: &str = "kro.run/kro-version";
/// UID of the owning instance.
pub(crate) const INSTANCE_ID: &str = "kro.run/instance-id";
/// Name of the owning instance.
pub(crate) const INSTANCE_NAME: &str = "kro.run/instance-name";
/// Namespace of the owning instance (namespaced instances only).
pub(crate) const INSTANCE_NAMESPACE: &str = "kro.run/instance-namespace";
/// API group of the owning instance.
pub(crate) const INSTANCE_GROUP: &str = "kro.run/instance-group";
/// API version of the owning instance.
pub(crate) const INSTANCE_VERSION: &str = "kro.run/instance-version";
/// Kind of the owning instance.
pub(crate) const INSTANCE_KIND: &str = "kro.run/instance-kind";
/// Graph node id of a child.
pub(crate) const NODE_ID: &str = "kro.run/node-id";
/// Index of a collection item.
pub(crate) const COLLECTION_INDEX: &str = "kro.run/collection-index";
/// Size of the collection an item belongs to.
pub(crate) const COLLECTION_SIZE: &str = "kro.run/collection-size";
/// `app.kubernetes.io/managed-by`, set to `kro` as kro does.
pub(crate) const MANAGED_BY: &str = "app.kubernetes.io/managed-by";
/// The ApplySet a child belongs to.
pub(crate) const APPLYSET_PART_OF: &str = "applyset.kubernetes.io/part-of";
/// The ApplySet id of an instance.
pub(crate) const APPLYSET_ID: &str = "applyset.kubernetes.io/id";
/// Deletion wave of a child (its position in topological order).
pub(crate) const APPLY_ORDER: &str = "internal.kro.run/apply-order";
/// RGD name on an instance.
pub(crate) const RGD_NAME: &str = "kro.run/resource-graph-definition-name";
/// RGD uid on an instance.
pub(crate) const RGD_ID: &str = "kro.run/resource-graph-definition-id";
/// Annotation on an RGD choosing which children get the instance's labels: `false` (none),
/// `namespace` (the default: namespaced children in the instance's own namespace) or `all`.
pub(crate) const PROPAGATE_LABELS: &str = "kroxide.dev/propagate-labels";
/// Annotation on an existing object handing it over to the instance whose child has its name:
/// without it, an object that is not in the instance's ApplySet is never taken over.
pub(crate) const ADOPT: &str = "kroxide.dev/adopt";

/// Value of [`KRO_VERSION`] written by this build.
pub(crate) const CONTROLLER_VERSION: &str = concat!("kroxide-v", env!("CARGO_PKG_VERSION"));
/// Finalizer on graphs and instances, as kro names it.
pub(crate) const FINALIZER: &str = "kro.run/finalizer";
/// Annotation allowing schema changes that may invalidate existing instances.
pub(crate) const ALLOW_BREAKING: &str = "kro.run/allow-breaking-changes";
/// Annotation with the hash of the CRD kroxide last applied.
pub(crate) const CRD_HASH: &str = "kroxide.dev/crd-hash";
/// Annotation suspending an instance's reconciliation (`suspended`; `disabled` is accepted too).
pub(crate) const RECONCILE: &str = "kro.run/reconcile";
/// ApplySet parent annotation: the tool that manages the set.
pub(crate) const APPLYSET_TOOLING: &str = "applyset.kubernetes.io/tooling";
/// ApplySet parent annotation: the group-kinds of its members.
pub(crate) const APPLYSET_CONTAINS: &str = "applyset.kubernetes.io/contains-group-kinds";
/// ApplySet parent annotation: namespaces of members beyond the parent's.
pub(crate) const APPLYSET_NAMESPACES: &str = "applyset.kubernetes.io/additional-namespaces";
/// ApplySet parent annotation kro checks the other two against before it trusts them:
/// see [`inventory_hash`].
pub(crate) const APPLYSET_INVENTORY_HASH: &str = "internal.kro.run/applyset-inventory-hash";
/// Value of [`APPLYSET_TOOLING`]. kro accepts an ApplySet parent only when its tooling name is
/// `kro`, so kroxide writes `kro/` and keeps its own name in the version part: kro can then take
/// an instance back (docs/migration.md, "Going back to kro").
pub(crate) const APPLYSET_TOOLING_VALUE: &str = concat!("kro/kroxide-v", env!("CARGO_PKG_VERSION"));

/// Field manager of children (server-side apply, forced), as kro names it.
pub(crate) const APPLY_MANAGER: &str = "kro.run/applyset";
/// Field manager of graph-level writes (CRD, finalizer, status).
pub(crate) const RGD_MANAGER: &str = "kro.run/rgd-controller";
/// Field manager of an instance's labels and finalizer.
pub(crate) const LABELLER_MANAGER: &str = "kro.run/labeller";
/// Field manager of an instance's ApplySet parent annotations.
pub(crate) const PARENT_MANAGER: &str = "kro.run/applyset-parent";
/// Field manager of an instance's status.
pub(crate) const STATUS_MANAGER: &str = "kro.run/status";

/// The time offline renders write, so golden files stay stable.
pub(crate) const OFFLINE_TIME: &str = "1970-01-01T00:00:00Z";
/// The uid used for instances rendered offline, so golden files stay stable.
pub(crate) const OFFLINE_UID: &str = "00000000-0000-0000-0000-000000000000";

/// Label prefixes and keys that never propagate from an instance to its children: they are
/// kroxide's own, or tools use them to claim objects.
const NOT_PROPAGATED_PREFIXES: [&str; 6] = [
    "kro.run/",
    "internal.kro.run/",
    "kroxide.dev/",
    "applyset.kubernetes.io/",
    "helm.sh/",
    "argocd.argoproj.io/",
];
const NOT_PROPAGATED_KEYS: [&str; 2] = ["app.kubernetes.io/instance", "app.kubernetes.io/managed-by"];

/// Who owns a child: the instance's identity as labels record it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceIdentity {
    /// API group of the instance's kind.
    pub(crate) group: String,
    /// Version of the instance's kind.
    pub(crate) version: String,
    /// Kind.
    pub(crate) kind: String,
    /// Name.
    pub(crate) name: String,
    /// Namespace (`None` when cluster-scoped).
    pub(crate) namespace: Option<String>,
    /// UID.
    pub(crate) uid: String,
    /// The instance's own labels.
    pub(crate) labels: BTreeMap<String, String>,
    /// The ApplySet id, computed once.
    applyset: String,
}

impl InstanceIdentity {
    /// Reads the identity from an instance object.
    pub fn from_object(instance: &Value) -> Self {
        let s = |p: &str| {
            instance
                .at(p)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        };
        let api_version = s("/apiVersion");
        let (group, version) = api_version.rsplit_once('/').unwrap_or(("", &api_version));
        let namespace = s("/metadata/namespace");
        let labels = instance
            .at("/metadata/labels")
            .and_then(Value::as_object)
            .map(|m| {
                m.iter()
                    .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                    .collect()
            })
            .unwrap_or_default();
        let name = s("/metadata/name");
        let kind = s("/kind");
        let namespace = (!namespace.is_empty()).then_some(namespace);
        let applyset = applyset_id(&name, namespace.as_deref(), &kind, group);
        Self {
            group: group.to_string(),
            version: version.to_string(),
            kind,
            name,
            namespace,
            uid: s("/metadata/uid"),
            labels,
            applyset,
        }
    }

    /// The instance's ApplySet id, as KEP-3659 defines it:
    /// `applyset-<base64url(sha256(<name>.<namespace>.<kind>.<group>))>-v1`.
    pub fn applyset_id(&self) -> &str {
        &self.applyset
    }

    /// The labels kroxide puts on every child of this instance from node `node_id`.
    pub(crate) fn child_labels(
        &self,
        node_id: &str,
        collection: Option<(u32, u32)>,
    ) -> BTreeMap<String, String> {
        let mut labels = BTreeMap::from([
            (OWNED.to_string(), "true".to_string()),
            (KRO_VERSION.to_string(), CONTROLLER_VERSION.to_string()),
            (INSTANCE_ID.to_string(), self.uid.clone()),
            (INSTANCE_NAME.to_string(), self.name.clone()),
            (INSTANCE_GROUP.to_string(), self.group.clone()),
            (INSTANCE_VERSION.to_string(), self.version.clone()),
            (INSTANCE_KIND.to_string(), self.kind.clone()),
            (MANAGED_BY.to_string(), "kro".to_string()),
            (NODE_ID.to_string(), node_id.to_string()),
            (APPLYSET_PART_OF.to_string(), self.applyset.clone()),
        ]);
        if let Some(ns) = &self.namespace {
            labels.insert(INSTANCE_NAMESPACE.to_string(), ns.clone());
        }
        if let Some((index, size)) = collection {
            labels.insert(COLLECTION_INDEX.to_string(), index.to_string());
            labels.insert(COLLECTION_SIZE.to_string(), size.to_string());
        }
        labels
    }

    /// The instance's labels that propagate to children.
    pub(crate) fn propagated_labels(&self) -> BTreeMap<String, String> {
        self.labels
            .iter()
            .filter(|(k, _)| propagates(k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }
}

/// Whether an instance label with this key propagates to children. Never kroxide's own keys,
/// the keys tools claim objects by, or keys in Kubernetes' reserved domains (`kubernetes.io`,
/// `k8s.io` and their subdomains, such as `pod-security.kubernetes.io`, which would let a
/// namespace user set policy), except the recommended `app.kubernetes.io/` labels.
pub(crate) fn propagates(key: &str) -> bool {
    if NOT_PROPAGATED_PREFIXES.iter().any(|p| key.starts_with(p)) || NOT_PROPAGATED_KEYS.contains(&key) {
        return false;
    }
    let Some((domain, _)) = key.split_once('/') else {
        return true;
    };
    let reserved = ["kubernetes.io", "k8s.io"]
        .iter()
        .any(|r| domain == *r || domain.ends_with(&format!(".{r}")));
    !reserved || domain == "app.kubernetes.io"
}

/// Which children get the instance's labels (RGD annotation [`PROPAGATE_LABELS`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Propagation {
    /// None.
    Off,
    /// Namespaced children in the instance's own namespace: a namespace user cannot set labels
    /// on cluster-scoped objects or in other namespaces.
    #[default]
    SameNamespace,
    /// Every child.
    All,
}

impl Propagation {
    /// From the annotation's value (`None`: absent).
    ///
    /// # Errors
    /// An unknown value, as the message to show.
    pub(crate) fn parse(value: Option<&str>) -> Result<Self, String> {
        match value {
            None | Some("true" | "namespace") => Ok(Self::SameNamespace),
            Some("false") => Ok(Self::Off),
            Some("all") => Ok(Self::All),
            Some(other) => Err(format!(
                "metadata.annotations[{PROPAGATE_LABELS}]: {other:?} is not one of false, namespace, all"
            )),
        }
    }

    /// Whether a child (namespaced or not, in `namespace`) of an instance in
    /// `instance_namespace` gets the labels.
    pub(crate) fn reaches(
        self,
        namespaced: bool,
        namespace: Option<&str>,
        instance_namespace: Option<&str>,
    ) -> bool {
        match self {
            Self::Off => false,
            Self::All => true,
            Self::SameNamespace => namespaced && namespace.is_some() && namespace == instance_namespace,
        }
    }
}

/// The [`APPLYSET_INVENTORY_HASH`] of a parent whose ApplySet `id` lists `kinds` (`Kind` or
/// `Kind.group`) and `namespaces`, as kro computes it:
/// `sha256:<base64url(sha256(id NUL kinds NUL namespaces))>`, each list sorted and joined by
/// commas.
pub(crate) fn inventory_hash<'a>(
    id: &str,
    kinds: impl IntoIterator<Item = &'a str>,
    namespaces: impl IntoIterator<Item = &'a str>,
) -> String {
    let sorted = |items: Vec<&str>| {
        let mut items = items;
        items.sort_unstable();
        items.join(",")
    };
    let payload = [
        id.to_string(),
        sorted(kinds.into_iter().collect()),
        sorted(namespaces.into_iter().collect()),
    ]
    .join("\0");
    let digest = Sha256::digest(payload.as_bytes());
    format!(
        "sha256:{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest)
    )
}

/// The ApplySet id of an instance, as KEP-3659 defines it:
/// `applyset-<base64url(sha256(<name>.<namespace>.<kind>.<group>))>-v1`.
pub(crate) fn applyset_id(name: &str, namespace: Option<&str>, kind: &str, group: &str) -> String {
    let key = format!("{name}.{}.{kind}.{group}", namespace.unwrap_or(""));
    format!(
        "applyset-{}-v1",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(key.as_bytes()))
    )
}

/// How to stamp one child.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Stamp<'a> {
    /// The owner.
    pub(crate) instance: &'a InstanceIdentity,
    /// The node id.
    pub(crate) node_id: &'a str,
    /// `(index, size)` for a collection item.
    pub(crate) collection: Option<(u32, u32)>,
    /// Deletion wave (position of the node in topological order).
    pub(crate) apply_order: usize,
    /// Copy the instance's labels onto the child.
    pub(crate) propagate_labels: bool,
}

/// Writes kroxide's labels and annotations into `object`. Precedence: kroxide's labels over the
/// template's over the instance's propagated ones.
pub(crate) fn stamp(object: &mut Map<String, Value>, stamp: &Stamp<'_>) {
    let metadata = object
        .entry("metadata")
        .or_insert_with(|| Value::Object(Map::new()));
    let Value::Object(metadata) = metadata else { return };
    let mut labels: Map<String, Value> = Map::new();
    if stamp.propagate_labels {
        for (k, v) in stamp.instance.propagated_labels() {
            labels.insert(k, Value::String(v));
        }
    }
    if let Some(Value::Object(own)) = metadata.get("labels") {
        for (k, v) in own {
            labels.insert(k.clone(), v.clone());
        }
    }
    for (k, v) in stamp.instance.child_labels(stamp.node_id, stamp.collection) {
        labels.insert(k, Value::String(v));
    }
    metadata.insert("labels".to_string(), Value::Object(labels));
    let annotations = metadata
        .entry("annotations")
        .or_insert_with(|| Value::Object(Map::new()));
    if let Value::Object(annotations) = annotations {
        annotations.insert(
            APPLY_ORDER.to_string(),
            Value::String(stamp.apply_order.to_string()),
        );
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn identity() -> InstanceIdentity {
        InstanceIdentity::from_object(&json!({
            "apiVersion": "kro.run/v1alpha1", "kind": "WebApp",
            "metadata": { "name": "shop", "namespace": "prod", "uid": "u-1",
                "labels": { "team": "payments", "kro.run/owned": "true", "app.kubernetes.io/instance": "x",
                            "helm.sh/chart": "c", "tier": "web" } }
        }))
    }

    #[test]
    fn the_applyset_id_follows_kep_3659() {
        // sha256("shop.prod.WebApp.kro.run"), base64url without padding.
        let identity = identity();
        let id = identity.applyset_id();
        assert!(id.starts_with("applyset-") && id.ends_with("-v1"), "{id}");
        assert_eq!(id.len(), "applyset-".len() + 43 + "-v1".len());
    }

    #[test]
    fn labels_in_kubernetes_reserved_domains_never_propagate() {
        for key in [
            "pod-security.kubernetes.io/warn",
            "pod-security.kubernetes.io/enforce",
            "kubernetes.io/metadata.name",
            "node-role.kubernetes.io/control-plane",
            "k8s.io/x",
            "sub.k8s.io/y",
        ] {
            assert!(!propagates(key), "{key}");
        }
        for key in [
            "team",
            "app.kubernetes.io/name",
            "example.com/tier",
            "notkubernetes.io/a",
        ] {
            assert!(propagates(key), "{key}");
        }
    }

    #[test]
    fn by_default_labels_reach_only_namespaced_children_in_the_instance_namespace() {
        let p = Propagation::parse(None).unwrap();
        assert!(p.reaches(true, Some("shop"), Some("shop")));
        assert!(!p.reaches(false, None, Some("shop")), "cluster-scoped");
        assert!(!p.reaches(true, Some("other"), Some("shop")), "another namespace");
        assert!(
            Propagation::parse(Some("all"))
                .unwrap()
                .reaches(false, None, Some("shop"))
        );
        assert!(
            !Propagation::parse(Some("false"))
                .unwrap()
                .reaches(true, Some("shop"), Some("shop"))
        );
        assert!(
            Propagation::parse(Some("yes"))
                .unwrap_err()
                .contains("kroxide.dev/propagate-labels")
        );
    }

    #[test]
    fn only_the_users_own_labels_propagate() {
        let labels = identity().propagated_labels();
        assert_eq!(labels.keys().collect::<Vec<_>>(), ["team", "tier"]);
    }

    #[test]
    fn kro_labels_win_over_template_labels_which_win_over_instance_labels() {
        let mut object =
            json!({ "metadata": { "name": "x", "labels": { "tier": "db", "kro.run/node-id": "fake" } } });
        let id = identity();
        let s = Stamp {
            instance: &id,
            node_id: "database",
            collection: Some((0, 2)),
            apply_order: 3,
            propagate_labels: true,
        };
        stamp(object.as_object_mut().unwrap(), &s);
        let labels = &object["metadata"]["labels"];
        assert_eq!(labels["tier"], "db");
        assert_eq!(labels["team"], "payments");
        assert_eq!(labels["kro.run/node-id"], "database");
        assert_eq!(labels["kro.run/collection-size"], "2");
        assert_eq!(labels["kro.run/instance-namespace"], "prod");
        assert_eq!(
            object["metadata"]["annotations"]["internal.kro.run/apply-order"],
            "3"
        );
    }

    #[test]
    fn propagation_can_be_turned_off() {
        let mut object = json!({ "metadata": { "name": "x" } });
        let id = identity();
        let s = Stamp {
            instance: &id,
            node_id: "a",
            collection: None,
            apply_order: 0,
            propagate_labels: false,
        };
        stamp(object.as_object_mut().unwrap(), &s);
        assert!(object["metadata"]["labels"].get("team").is_none());
    }
}

//! The resource types the server serves: the built-in kinds, plus one entry per served version
//! of every established CustomResourceDefinition.

use std::{collections::HashMap, sync::Arc};

use kroxide_schema::kinds::{BUILTIN_KINDS, BuiltinKind};
use serde_json::Value;

/// Where the `/scale` subresource reads and writes replicas.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScalePaths {
    /// JSON path of the desired replicas, e.g. `.spec.replicas`.
    pub spec_replicas: String,
    /// JSON path of the observed replicas, e.g. `.status.replicas`.
    pub status_replicas: String,
    /// JSON path of the label selector string, if any.
    pub label_selector: Option<String>,
}

/// An `additionalPrinterColumns` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrinterColumn {
    /// Column header.
    pub name: String,
    /// `string`, `integer`, `number`, `boolean` or `date`.
    pub type_: String,
    /// Optional format.
    pub format: String,
    /// Description.
    pub description: String,
    /// 0 shows always, higher only with `-o wide`.
    pub priority: i64,
    /// kubectl JSONPath, e.g. `.status.conditions[?(@.type=="Ready")].status`.
    pub json_path: String,
}

/// One served group/version/resource.
#[derive(Debug, Clone)]
pub struct ResourceType {
    /// API group (`""` for core).
    pub group: String,
    /// Version.
    pub version: String,
    /// Kind.
    pub kind: String,
    /// List kind.
    pub list_kind: String,
    /// Plural resource name.
    pub plural: String,
    /// Singular resource name.
    pub singular: String,
    /// Namespaced or cluster-scoped.
    pub namespaced: bool,
    /// Short names.
    pub short_names: Vec<String>,
    /// Categories.
    pub categories: Vec<String>,
    /// Has `/status`.
    pub status: bool,
    /// `/scale`, if served.
    pub scale: Option<ScalePaths>,
    /// The OpenAPI v3 schema of a custom resource version.
    pub schema: Option<Arc<Value>>,
    /// Printer columns of a custom resource version (`None` for built-ins).
    pub columns: Option<Vec<PrinterColumn>>,
    /// The CRD that defines it, for custom resources.
    pub crd: Option<String>,
    /// The CRD's storage version (custom resources only).
    pub storage_version: Option<String>,
    /// Whether the server maintains `metadata.generation` for this kind.
    pub generation: bool,
    /// Listed in discovery (a CRD's resources are served once its names are accepted and
    /// discoverable once it is established).
    pub discoverable: bool,
}

impl ResourceType {
    /// `group/version` or `v1`.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// The key objects of this resource are stored under, shared by every version.
    pub fn storage_key(&self) -> String {
        // events.k8s.io Events are core Events in another form: one store for both.
        if crate::events::is_events_group(self) {
            return "/events".into();
        }
        format!("{}/{}", self.group, self.plural)
    }

    /// Whether this is a custom resource.
    pub fn is_custom(&self) -> bool {
        self.crd.is_some()
    }

    /// The verbs discovery lists (custom resources in the order the real server lists them).
    pub fn verbs(&self) -> &'static [&'static str] {
        if self.is_custom() {
            return &[
                "delete",
                "deletecollection",
                "get",
                "list",
                "patch",
                "create",
                "update",
                "watch",
            ];
        }
        if self.group == "authorization.k8s.io" {
            return &["create"];
        }
        kroxide_schema::kinds::verbs(&self.kind)
    }

    /// Discovery's `storageVersionHash`: the first 8 bytes of the SHA-256 of the storage
    /// `group/version/kind`, base64 (a client's cue that stored objects changed version).
    pub fn storage_version_hash(&self) -> String {
        use base64::Engine as _;
        use sha2::Digest as _;
        let gvk = if crate::events::is_events_group(self) {
            "/v1/Event".to_string()
        } else {
            let version = self.storage_version.as_deref().unwrap_or(&self.version);
            format!("{}/{version}/{}", self.group, self.kind)
        };
        let digest = sha2::Sha256::digest(gvk.as_bytes());
        base64::engine::general_purpose::STANDARD.encode(&digest[..8])
    }

    fn from_builtin(k: &BuiltinKind) -> Self {
        let scale = k.scale.then(|| ScalePaths {
            spec_replicas: ".spec.replicas".into(),
            status_replicas: ".status.replicas".into(),
            label_selector: Some(".status.selector".into()),
        });
        Self {
            group: k.group.into(),
            version: k.version.into(),
            kind: k.kind.into(),
            list_kind: format!("{}List", k.kind),
            plural: k.plural.into(),
            singular: k.singular(),
            namespaced: k.namespaced,
            short_names: k.short_names.iter().map(|s| s.to_string()).collect(),
            categories: k.categories.iter().map(|s| s.to_string()).collect(),
            status: k.status,
            scale,
            schema: None,
            columns: None,
            crd: None,
            storage_version: None,
            generation: matches!(
                k.kind,
                "Deployment"
                    | "StatefulSet"
                    | "DaemonSet"
                    | "ReplicaSet"
                    | "Job"
                    | "CronJob"
                    | "Ingress"
                    | "IngressClass"
                    | "NetworkPolicy"
                    | "Pod"
                    | "PodDisruptionBudget"
                    | "CustomResourceDefinition"
            ),
            discoverable: true,
        }
    }
}

/// Every served resource type, indexed by group, version and plural.
#[derive(Debug, Clone)]
pub struct Registry {
    types: Vec<Arc<ResourceType>>,
    index: HashMap<(String, String, String), usize>,
}

impl Default for Registry {
    fn default() -> Self {
        Self::builtin()
    }
}

impl Registry {
    /// The built-in kinds only.
    pub fn builtin() -> Self {
        let mut r = Self {
            types: Vec::new(),
            index: HashMap::new(),
        };
        for k in BUILTIN_KINDS {
            r.insert(ResourceType::from_builtin(k));
        }
        r
    }

    fn insert(&mut self, t: ResourceType) {
        let key = (t.group.clone(), t.version.clone(), t.plural.clone());
        match self.index.get(&key) {
            Some(&i) => self.types[i] = Arc::new(t),
            None => {
                self.index.insert(key, self.types.len());
                self.types.push(Arc::new(t));
            }
        }
    }

    /// Replaces every type defined by `crd` with `types`.
    pub fn set_crd_types(&mut self, crd: &str, types: Vec<ResourceType>) {
        self.remove_crd(crd);
        for t in types {
            self.insert(t);
        }
    }

    /// Removes every type defined by `crd`.
    pub fn remove_crd(&mut self, crd: &str) {
        self.types.retain(|t| t.crd.as_deref() != Some(crd));
        self.index = self
            .types
            .iter()
            .enumerate()
            .map(|(i, t)| ((t.group.clone(), t.version.clone(), t.plural.clone()), i))
            .collect();
    }

    /// The type served at `group/version/plural`.
    pub fn get(&self, group: &str, version: &str, plural: &str) -> Option<Arc<ResourceType>> {
        self.index
            .get(&(group.to_string(), version.to_string(), plural.to_string()))
            .map(|&i| self.types[i].clone())
    }

    /// The type for `apiVersion` + `kind`.
    pub fn by_kind(&self, api_version: &str, kind: &str) -> Option<Arc<ResourceType>> {
        let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
        self.types
            .iter()
            .find(|t| t.group == group && t.version == version && t.kind == kind)
            .cloned()
    }

    /// Every type sharing a storage key (every served version of one resource).
    pub fn versions_of(&self, storage_key: &str) -> Vec<Arc<ResourceType>> {
        self.types
            .iter()
            .filter(|t| t.storage_key() == storage_key)
            .cloned()
            .collect()
    }

    /// All types, in registration order.
    pub fn all(&self) -> &[Arc<ResourceType>] {
        &self.types
    }

    /// Discoverable group names with their versions, core first, in registration order;
    /// versions sorted by Kubernetes version priority.
    pub fn groups(&self) -> Vec<(String, Vec<String>)> {
        let mut out: Vec<(String, Vec<String>)> = Vec::new();
        for t in self.types.iter().filter(|t| t.discoverable) {
            match out.iter_mut().find(|(g, _)| *g == t.group) {
                Some((_, versions)) => {
                    if !versions.contains(&t.version) {
                        versions.push(t.version.clone());
                    }
                }
                None => out.push((t.group.clone(), vec![t.version.clone()])),
            }
        }
        for (_, versions) in &mut out {
            versions.sort_by_key(|v| std::cmp::Reverse(version_priority(v)));
        }
        out
    }

    /// Discoverable types of one group/version.
    pub fn resources(&self, group: &str, version: &str) -> Vec<Arc<ResourceType>> {
        self.types
            .iter()
            .filter(|t| t.discoverable && t.group == group && t.version == version)
            .cloned()
            .collect()
    }
}

/// Kubernetes' version ordering: GA before beta before alpha, then higher numbers first; other
/// strings last. Larger means preferred.
pub fn version_priority(v: &str) -> (u8, u64, u64) {
    let Some(rest) = v.strip_prefix('v') else {
        return (0, 0, 0);
    };
    let digits: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
    let Ok(major) = digits.parse::<u64>() else {
        return (0, 0, 0);
    };
    let tail = &rest[digits.len()..];
    if tail.is_empty() {
        return (3, major, 0);
    }
    for (prefix, rank) in [("beta", 2), ("alpha", 1)] {
        if let Some(n) = tail.strip_prefix(prefix)
            && let Ok(minor) = n.parse::<u64>()
        {
            return (rank, major, minor);
        }
    }
    (0, 0, 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_sort_ga_then_beta_then_alpha() {
        let mut v = vec!["v1alpha1", "v2", "v1beta2", "v1", "foo", "v1beta1"];
        v.sort_by_key(|x| std::cmp::Reverse(version_priority(x)));
        assert_eq!(v, ["v2", "v1", "v1beta2", "v1beta1", "v1alpha1", "foo"]);
    }

    #[test]
    fn builtins_are_indexed_by_group_version_and_plural() {
        let r = Registry::builtin();
        let d = r.get("apps", "v1", "deployments").unwrap();
        assert!(d.namespaced && d.scale.is_some() && d.generation);
        assert_eq!(r.by_kind("v1", "ConfigMap").unwrap().plural, "configmaps");
        assert_eq!(r.groups()[0].0, "");
    }
}

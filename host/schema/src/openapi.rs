//! The OpenAPI v3 component schemas of the built-in kinds, as the real kube-apiserver publishes
//! them (`openapi/kubernetes.json`, written by `tests/apiserver/openapi/snapshot` from the control
//! plane of `scripts/cluster`): the test server serves and decodes built-in kinds with them, and
//! kroxide type-checks expressions that read or fill built-in kinds against them.

use std::{collections::HashMap, sync::LazyLock};

use serde_json::Value;

/// The snapshot: the Kubernetes version it came from and every component schema by name.
#[derive(Debug)]
pub struct Snapshot {
    /// `gitVersion` of the server the schemas came from, e.g. `v1.36.3`.
    pub kubernetes_version: String,
    /// Component schemas by name (`io.k8s.api.apps.v1.Deployment`). A hash map: the test
    /// server looks names up on every write of a built-in kind, and they share long prefixes.
    pub schemas: HashMap<String, Value>,
    roots: HashMap<(String, String, String), String>,
}

/// The committed snapshot, parsed on first use.
pub static SNAPSHOT: LazyLock<Snapshot> = LazyLock::new(|| {
    let v: Value = serde_json::from_str(include_str!("../openapi/kubernetes.json"))
        .expect("the committed snapshot is JSON");
    let kubernetes_version = v["kubernetesVersion"].as_str().unwrap_or_default().to_string();
    let schemas = v["schemas"].as_object().cloned().unwrap_or_default();
    let mut roots = HashMap::new();
    for (name, s) in &schemas {
        for gvk in s["x-kubernetes-group-version-kind"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let part = |k: &str| gvk[k].as_str().unwrap_or_default().to_string();
            roots.insert((part("group"), part("version"), part("kind")), name.clone());
        }
    }
    Snapshot {
        kubernetes_version,
        schemas: schemas.into_iter().collect(),
        roots,
    }
});

impl Snapshot {
    /// The name of the schema of a built-in kind.
    pub fn root(&self, group: &str, version: &str, kind: &str) -> Option<&str> {
        self.roots
            .get(&(group.to_string(), version.to_string(), kind.to_string()))
            .map(String::as_str)
    }

    /// Follows `$ref` and a one-element `allOf` wrapper to the named schema, if any.
    pub fn resolve<'a>(&'a self, s: &'a Value) -> (Option<&'a str>, &'a Value) {
        let reference = s["$ref"]
            .as_str()
            .or_else(|| s["allOf"].get(0).and_then(|a| a["$ref"].as_str()));
        match reference.and_then(|r| r.strip_prefix("#/components/schemas/")) {
            Some(name) => match self.schemas.get(name) {
                Some(target) => (Some(name), target),
                None => (None, s),
            },
            None => (None, s),
        }
    }

    /// Every schema name `root` refers to, itself included.
    pub fn closure(&self, root: &str) -> Vec<String> {
        let mut seen = std::collections::BTreeSet::new();
        let mut todo = vec![root.to_string()];
        while let Some(n) = todo.pop() {
            if !seen.insert(n.clone()) {
                continue;
            }
            if let Some(s) = self.schemas.get(&n) {
                refs(s, &mut todo);
            }
        }
        seen.into_iter().collect()
    }
}

fn refs(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            if let Some(r) = m
                .get("$ref")
                .and_then(Value::as_str)
                .and_then(|r| r.strip_prefix("#/components/schemas/"))
            {
                out.push(r.to_string());
            }
            m.values().for_each(|x| refs(x, out));
        }
        Value::Array(a) => a.iter().for_each(|x| refs(x, out)),
        _ => {}
    }
}

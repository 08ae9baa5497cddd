//! `/openapi/v3`: an index of group-versions and, per group-version, the paths with the
//! `fieldValidation` parameter that tells kubectl to leave validation to the server, plus the
//! schemas of its kinds: built-in kinds' from the real server's snapshot (`openapi/kubernetes.json`)
//! with every schema they refer to, custom resources' from their CRDs (so `kubectl explain`
//! works for both).

use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use crate::{
    decode,
    registry::{Registry, ResourceType},
};

fn gv_path(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

fn parameter(name: &str) -> Value {
    json!({"name": name, "in": "query", "schema": {"type": "string", "uniqueItems": true}})
}

fn gvk(t: &ResourceType) -> Value {
    json!({"group": t.group, "version": t.version, "kind": t.kind})
}

fn schema_name(t: &ResourceType) -> String {
    let reversed: Vec<&str> = t.group.split('.').rev().collect();
    format!("{}.{}.{}", reversed.join("."), t.version, t.kind)
}

/// The per-group-version document.
pub fn document(registry: &Registry, group: &str, version: &str) -> Option<Value> {
    let types = registry.resources(group, version);
    if types.is_empty() {
        return None;
    }
    let mut paths = Map::new();
    let mut schemas = Map::new();
    for t in &types {
        let base = if t.namespaced {
            format!(
                "/{}/namespaces/{{namespace}}/{}",
                gv_path(group, version),
                t.plural
            )
        } else {
            format!("/{}/{}", gv_path(group, version), t.plural)
        };
        let op = |action: &str| {
            json!({
                "x-kubernetes-action": action,
                "x-kubernetes-group-version-kind": gvk(t),
                "parameters": [parameter("dryRun"), parameter("fieldManager"), parameter("fieldValidation")],
                "responses": {"200": {"description": "OK"}},
            })
        };
        paths.insert(
            base.clone(),
            json!({"post": op("post"), "get": {"x-kubernetes-action": "list",
            "x-kubernetes-group-version-kind": gvk(t), "responses": {"200": {"description": "OK"}}}}),
        );
        let mut object_path = json!({"put": op("put"), "patch": op("patch")});
        object_path["patch"]["parameters"]
            .as_array_mut()
            .expect("array")
            .push(parameter("force"));
        paths.insert(format!("{base}/{{name}}"), object_path);
        if !t.is_custom()
            && let Some(root) = decode::SNAPSHOT.root(&t.group, &t.version, &t.kind)
        {
            for name in decode::SNAPSHOT.closure(root) {
                if let Some(s) = decode::SNAPSHOT.schemas.get(&name) {
                    schemas.insert(name, s.clone());
                }
            }
        }
        if let Some(schema) = &t.schema {
            let mut s = (**schema).clone();
            if let Some(m) = s.as_object_mut() {
                m.insert("x-kubernetes-group-version-kind".into(), json!([gvk(t)]));
            }
            schemas.insert(schema_name(t), s);
        }
    }
    Some(json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": "v1.32.0"},
        "paths": paths,
        "components": {"schemas": schemas},
    }))
}

/// The index: every served group-version with a URL that changes when its document does.
pub fn index(registry: &Registry) -> Value {
    let mut paths = Map::new();
    for (group, versions) in registry.groups() {
        for version in versions {
            // Built-in schemas never change while the server runs: the hash covers what can
            // (the served kinds and the custom resources' schemas), not the whole document.
            let mut digest = Sha256::new();
            for t in registry.resources(&group, &version) {
                digest.update(t.plural.as_bytes());
                if let Some(s) = &t.schema {
                    digest.update(s.to_string().as_bytes());
                }
            }
            let hash = digest.finalize();
            let hex: String = hash.iter().take(16).map(|b| format!("{b:02X}")).collect();
            let p = gv_path(&group, &version);
            paths.insert(
                p.clone(),
                json!({"serverRelativeURL": format!("/openapi/v3/{p}?hash={hex}")}),
            );
        }
    }
    json!({"paths": paths})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_patch_operation_advertises_field_validation_and_built_in_kinds_carry_their_schemas() {
        let r = Registry::builtin();
        let doc = document(&r, "apps", "v1").unwrap();
        let patch = &doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["patch"];
        assert_eq!(patch["x-kubernetes-group-version-kind"]["kind"], "Deployment");
        assert!(
            patch["parameters"]
                .as_array()
                .unwrap()
                .iter()
                .any(|p| p["name"] == "fieldValidation")
        );
        let deployment = &doc["components"]["schemas"]["io.k8s.api.apps.v1.Deployment"];
        assert_eq!(
            deployment["x-kubernetes-group-version-kind"][0]["kind"],
            "Deployment"
        );
        assert!(doc["components"]["schemas"]["io.k8s.api.core.v1.PodSpec"].is_object());
        let idx = index(&r);
        assert!(
            idx["paths"]["api/v1"]["serverRelativeURL"]
                .as_str()
                .unwrap()
                .starts_with("/openapi/v3/api/v1?hash=")
        );
    }
}

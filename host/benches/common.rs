//! Fixtures shared by the benchmarks: the example plugins and a realistic webapp instance.
#![allow(dead_code)]

use kroxide::child::{ChildKey, ObservedChild};
use serde_json::{Value, json};

pub fn plugin_bytes(name: &str) -> Vec<u8> {
    std::fs::read(format!("{}/{name}.wasm", env!("KROXIDE_PLUGIN_DIR")))
        .expect("example plugins are built by build.rs")
}

/// The same component with a different digest: a custom section appended at the end.
pub fn variant(wasm: &[u8], n: u32) -> Vec<u8> {
    let name = b"kroxide-bench";
    let payload = n.to_le_bytes();
    let mut out = wasm.to_vec();
    out.push(0); // custom section id
    out.push((1 + name.len() + payload.len()) as u8);
    out.push(name.len() as u8);
    out.extend_from_slice(name);
    out.extend_from_slice(&payload);
    out
}

/// A realistic instance (~2 KB): labels, annotations, a managedFields entry and a full spec.
pub fn instance() -> Value {
    let env: serde_json::Map<String, Value> = (0..12)
        .map(|i| {
            (
                format!("SETTING_{i:02}"),
                json!(format!("value-{i}-with-some-length")),
            )
        })
        .collect();
    json!({
        "apiVersion": "kro.run/v1alpha1", "kind": "WebApp",
        "metadata": {
            "name": "storefront", "namespace": "shop", "uid": "7f1c2a3e-1111-4c1d-9a0b-5e6f7a8b9c0d",
            "generation": 4, "resourceVersion": "918273", "creationTimestamp": "2026-11-01T10:00:00Z",
            "labels": { "team": "payments", "tier": "web", "cost-center": "cc-1234", "kro.run/owned": "true" },
            "annotations": { "example.com/owner": "payments-team@example.com", "example.com/runbook": "https://runbooks.example.com/storefront" },
            "finalizers": ["kro.run/finalizer"],
            "managedFields": [{ "manager": "kubectl-client-side-apply", "operation": "Update", "apiVersion": "kro.run/v1alpha1",
                "time": "2026-11-01T10:00:00Z", "fieldsType": "FieldsV1",
                "fieldsV1": { "f:spec": { "f:image": {}, "f:replicas": {}, "f:env": {}, "f:ingress": { "f:enabled": {}, "f:host": {} } } } }]
        },
        "spec": {
            "image": "registry.example.com/shop/storefront:3.14.2", "port": 8080, "replicas": 3, "env": env,
            "service": { "enabled": true }, "ingress": { "enabled": true, "host": "shop.example.com", "path": "/" }
        },
        "status": { "state": "ACTIVE", "availableReplicas": 3 }
    })
}

/// Live children as a cluster reports them (Deployment, Service, Ingress), ~1 KB each.
pub fn observed() -> Vec<ObservedChild> {
    let meta = |kind: &str| {
        json!({ "name": "storefront", "namespace": "shop", "uid": format!("uid-{kind}"),
        "resourceVersion": "918300", "generation": 2, "labels": { "kro.run/owned": "true", "kro.run/node-id": kind.to_lowercase() } })
    };
    vec![
        ObservedChild {
            key: ChildKey::new("deployment"),
            object: json!({
            "apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta("Deployment"),
            "spec": { "replicas": 3, "selector": { "matchLabels": { "app.kubernetes.io/name": "storefront" } },
                "template": { "metadata": { "labels": { "app.kubernetes.io/name": "storefront" } },
                    "spec": { "containers": [{ "name": "web", "image": "registry.example.com/shop/storefront:3.14.2",
                        "imagePullPolicy": "IfNotPresent", "terminationMessagePath": "/dev/termination-log",
                        "ports": [{ "containerPort": 8080, "name": "http", "protocol": "TCP" }] }] } } },
            "status": { "replicas": 3, "readyReplicas": 3, "availableReplicas": 3, "updatedReplicas": 3, "observedGeneration": 2,
                "conditions": [
                    { "type": "Available", "status": "True", "reason": "MinimumReplicasAvailable", "message": "Deployment has minimum availability." },
                    { "type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable", "message": "ReplicaSet has successfully progressed." }] } })
            .into(),
        },
        ObservedChild {
            key: ChildKey::new("service"),
            object: json!({
            "apiVersion": "v1", "kind": "Service", "metadata": meta("Service"),
            "spec": { "clusterIP": "10.96.12.34", "ports": [{ "name": "http", "port": 8080, "protocol": "TCP", "targetPort": "http" }],
                "selector": { "app.kubernetes.io/name": "storefront" }, "type": "ClusterIP" } })
            .into(),
        },
        ObservedChild {
            key: ChildKey::new("ingress"),
            object: json!({
            "apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": meta("Ingress"),
            "spec": { "rules": [{ "host": "shop.example.com", "http": { "paths": [{ "path": "/", "pathType": "Prefix",
                "backend": { "service": { "name": "storefront", "port": { "name": "http" } } } }] } }] },
            "status": { "loadBalancer": { "ingress": [{ "ip": "192.0.2.10" }] } } })
            .into(),
        },
    ]
}

/// Resident set size of this process, in bytes (Linux).
pub fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

//! Every CRD kroxide generates is accepted by the API server (the embedded one and the real
//! control plane), and instances are defaulted and validated there exactly as `kroxide render`
//! does offline.

mod support;

use std::{path::PathBuf, time::Duration};

use k8s_openapi::{
    api::core::v1::Namespace, apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
};
use kroxide::{
    commands::render::{load_graph, offline_catalog},
    graph::crd::rgd_crd,
    yaml,
};
use kroxide_schema::structural;
use kube::{
    Api, Client,
    api::{DynamicObject, GroupVersionKind, PostParams},
    discovery::oneshot,
    runtime::{conditions, wait::await_condition},
};
use serde_json::{Value, json};
use support::{Env, Server, repo};

fn graphs() -> Vec<PathBuf> {
    let mut out = Vec::new();
    for dir in ["examples", "plugins"] {
        let mut stack = vec![repo().join(dir)];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).unwrap().flatten() {
                let p = e.path();
                if p.is_dir() && !p.ends_with("target") {
                    stack.push(p);
                } else if p.file_name().is_some_and(|n| n == "rgd.yaml") {
                    out.push(p);
                }
            }
        }
    }
    out.sort();
    out
}

async fn install(client: &Client, crd: Value) -> String {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let name = crd["metadata"]["name"].as_str().unwrap().to_string();
    let typed: CustomResourceDefinition = serde_json::from_value(crd).unwrap();
    crds.create(&PostParams::default(), &typed)
        .await
        .unwrap_or_else(|e| panic!("{name} rejected: {e}"));
    let est = await_condition(crds, &name, conditions::is_crd_established());
    tokio::time::timeout(Duration::from_secs(10), est)
        .await
        .unwrap()
        .unwrap();
    name
}

async fn api_for(
    client: &Client,
    api_version: &str,
    kind: &str,
    namespace: Option<&str>,
) -> Api<DynamicObject> {
    let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
    let (ar, caps) = oneshot::pinned_kind(client, &GroupVersionKind::gvk(group, version, kind))
        .await
        .unwrap();
    match (caps.scope, namespace) {
        (kube::discovery::Scope::Namespaced, Some(ns)) => Api::namespaced_with(client.clone(), ns, &ar),
        _ => Api::all_with(client.clone(), &ar),
    }
}

async fn generated_crds_are_accepted_and_instances_defaulted_as_offline(server: Server) {
    let env = Env::start_on(server, "kroxide-crds", Duration::from_millis(500), false).await;
    let client = env.client.clone();

    // kroxide's own RGD CRD, then every shipped RGD as an object of it.
    install(&client, rgd_crd()).await;
    let rgds = api_for(&client, "kro.run/v1alpha1", "ResourceGraphDefinition", None).await;
    let files = graphs();
    assert!(files.len() >= 5, "{files:?}");
    for file in &files {
        let doc = yaml::read_documents(file).unwrap().remove(0);
        let obj: DynamicObject = serde_json::from_value(doc).unwrap();
        rgds.create(&PostParams::default(), &obj)
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    }

    let namespaces: Api<Namespace> = Api::all(client.clone());
    for file in &files {
        let (_, graph) = load_graph(file, &offline_catalog(&[]), Default::default()).unwrap();
        let crd = graph.crd().clone();
        install(&client, crd.clone()).await;
        let instance_file = file.with_file_name("instance.yaml");
        if !instance_file.exists() {
            continue;
        }
        let instance = yaml::read_documents(&instance_file).unwrap().remove(0);
        let ns = instance
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .map(String::from);
        if let Some(ns) = &ns
            && namespaces.get_opt(ns).await.unwrap().is_none()
        {
            let n: Namespace = serde_json::from_value(json!({"metadata": {"name": ns}})).unwrap();
            namespaces.create(&PostParams::default(), &n).await.unwrap();
        }
        let api_version = instance["apiVersion"].as_str().unwrap();
        let kind = instance["kind"].as_str().unwrap();
        let api = api_for(&client, api_version, kind, ns.as_deref()).await;
        let created = api
            .create(
                &PostParams::default(),
                &serde_json::from_value(instance.clone()).unwrap(),
            )
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", instance_file.display()));
        // The server defaults exactly as the shared schema code does offline.
        let schema = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"];
        let mut offline = instance.clone();
        structural::prune(&mut offline, schema);
        structural::default(&mut offline, schema);
        assert_eq!(
            created.data["spec"],
            offline["spec"],
            "{}",
            instance_file.display()
        );
    }

    // A violation is refused with the field named.
    let api = api_for(
        &client,
        "examples.kroxide.dev/v1alpha1",
        "WebService",
        Some("shop"),
    )
    .await;
    let bad: DynamicObject = serde_json::from_value(json!({"apiVersion": "examples.kroxide.dev/v1alpha1",
        "kind": "WebService", "metadata": {"name": "too-big", "namespace": "shop"}, "spec": {"replicas": 50}}))
    .unwrap();
    let err = api.create(&PostParams::default(), &bad).await.unwrap_err();
    let kube::Error::Api(e) = err else {
        panic!("{err:?}")
    };
    assert_eq!(e.code, 422);
    assert_eq!(e.details.unwrap().causes[0].field, "spec.replicas");
    env.shutdown().await;
}

on_both_servers!(generated_crds_are_accepted_and_instances_defaulted_as_offline);

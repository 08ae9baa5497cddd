//! API semantics a controller depends on, checked through kube-rs: server-side apply ownership,
//! no-op writes, CRD lifecycle, garbage collection in every propagation mode, faults.

mod common;

use std::time::Duration;

use common::{client, eventually, server};
use futures::StreamExt;
use k8s_openapi::{
    api::core::v1::{ConfigMap, Namespace},
    apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
};
use kroxide_apiserver::Fault;
use kube::{
    Api, ResourceExt,
    api::{
        DeleteParams, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams, PropagationPolicy,
        WatchEvent, WatchParams,
    },
    discovery::oneshot,
    runtime::{
        conditions,
        wait::{Condition, await_condition},
    },
};
use serde_json::{Value, json};

fn cm(name: &str, data: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": data})
}

#[tokio::test]
async fn apply_tracks_ownership_per_manager_and_removes_dropped_fields() {
    let s = server().await;
    let api: Api<ConfigMap> = Api::default_namespaced(client(&s));
    let pp = |m: &str| PatchParams::apply(m);
    api.patch(
        "c",
        &pp("alice"),
        &Patch::Apply(cm("c", json!({"a": "1", "b": "2"}))),
    )
    .await
    .unwrap();
    api.patch("c", &pp("bob"), &Patch::Apply(cm("c", json!({"c": "3"}))))
        .await
        .unwrap();
    // alice drops b: it goes; bob's c stays.
    let after = api
        .patch("c", &pp("alice"), &Patch::Apply(cm("c", json!({"a": "1"}))))
        .await
        .unwrap();
    let data = after.data.clone().unwrap();
    assert_eq!(data.keys().collect::<Vec<_>>(), ["a", "c"]);
    let owners: Vec<(String, String)> = after
        .metadata
        .managed_fields
        .unwrap()
        .into_iter()
        .map(|m| (m.manager.unwrap(), m.operation.unwrap()))
        .collect();
    assert_eq!(
        owners,
        [
            ("alice".to_string(), "Apply".to_string()),
            ("bob".to_string(), "Apply".to_string())
        ]
    );
    s.shutdown().await;
}

#[tokio::test]
async fn a_no_op_apply_bumps_nothing_and_emits_no_event() {
    let s = server().await;
    let api: Api<ConfigMap> = Api::default_namespaced(client(&s));
    let pp = PatchParams::apply("same").force();
    let first = api
        .patch("n", &pp, &Patch::Apply(cm("n", json!({"a": "1"}))))
        .await
        .unwrap();
    let rv = first.resource_version().unwrap();
    let mut events = api.watch(&WatchParams::default(), &rv).await.unwrap().boxed();
    let second = api
        .patch("n", &pp, &Patch::Apply(cm("n", json!({"a": "1"}))))
        .await
        .unwrap();
    assert_eq!(second.resource_version().unwrap(), rv);
    assert_eq!(s.resource_version().to_string(), rv, "no write reached the store");
    // The next event the watch sees is a real change, not the no-op.
    api.patch("n", &pp, &Patch::Apply(cm("n", json!({"a": "2"}))))
        .await
        .unwrap();
    let next = tokio::time::timeout(Duration::from_secs(5), events.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let WatchEvent::Modified(obj) = next else {
        panic!("{next:?}")
    };
    assert_eq!(obj.data.unwrap()["a"], "2");
    s.shutdown().await;
}

fn crd() -> CustomResourceDefinition {
    serde_json::from_value(json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "gadgets.example.com"},
        "spec": {"group": "example.com", "scope": "Namespaced",
            "names": {"plural": "gadgets", "kind": "Gadget"},
            "versions": [{"name": "v1", "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                    "spec": {"type": "object", "properties": {
                        "mode": {"type": "string", "default": "auto"},
                        "count": {"type": "integer", "maximum": 5}}}}}}}]}}))
    .unwrap()
}

#[tokio::test]
async fn a_crd_is_served_once_established_and_takes_its_objects_when_deleted() {
    let s = server().await;
    s.set_establish_delay(Duration::from_millis(300));
    let c = client(&s);
    let crds: Api<CustomResourceDefinition> = Api::all(c.clone());
    let created = crds.create(&PostParams::default(), &crd()).await.unwrap();
    assert!(!conditions::is_crd_established().matches_object(Some(&created)));
    let est = await_condition(
        crds.clone(),
        "gadgets.example.com",
        conditions::is_crd_established(),
    );
    let crd = tokio::time::timeout(Duration::from_secs(5), est)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let conds = crd.status.unwrap().conditions.unwrap();
    let established = conds.iter().find(|c| c.type_ == "Established").unwrap();
    assert_eq!(established.reason.as_deref(), Some("InitialNamesAccepted"));
    assert_eq!(
        established.message.as_deref(),
        Some("the initial names have been accepted")
    );
    // As on the real server, the cleanup finalizer comes with the deletion, not the creation.
    assert_eq!(crd.metadata.finalizers, None);

    let (ar, _) = oneshot::pinned_kind(&c, &GroupVersionKind::gvk("example.com", "v1", "Gadget"))
        .await
        .unwrap();
    let api: Api<DynamicObject> = Api::namespaced_with(c.clone(), "default", &ar);
    let g: DynamicObject = serde_json::from_value(json!({"apiVersion": "example.com/v1", "kind": "Gadget",
        "metadata": {"name": "g1"}, "spec": {"count": 2}}))
    .unwrap();
    let g = api.create(&PostParams::default(), &g).await.unwrap();
    assert_eq!(g.data["spec"]["mode"], "auto", "defaulted");
    let too_many: DynamicObject =
        serde_json::from_value(json!({"apiVersion": "example.com/v1", "kind": "Gadget",
        "metadata": {"name": "g2"}, "spec": {"count": 9}}))
        .unwrap();
    let err = api.create(&PostParams::default(), &too_many).await.unwrap_err();
    let kube::Error::Api(e) = err else { panic!() };
    assert_eq!(e.code, 422);
    assert_eq!(e.details.unwrap().causes[0].field, "spec.count");

    crds.delete("gadgets.example.com", &DeleteParams::default())
        .await
        .unwrap();
    let gone = eventually(Duration::from_secs(10), async || {
        crds.get_opt("gadgets.example.com")
            .await
            .unwrap()
            .is_none()
            .then_some(())
    })
    .await;
    assert!(gone.is_some(), "the CRD went once its objects were deleted");
    assert!(s.names("example.com/v1", "Gadget", None).is_empty());
    let after = oneshot::pinned_kind(&c, &GroupVersionKind::gvk("example.com", "v1", "Gadget")).await;
    assert!(after.is_err(), "no longer discoverable");
    s.shutdown().await;
}

async fn owner_and_dependent(api: &Api<ConfigMap>, block: bool) {
    let owner = api
        .create(
            &PostParams::default(),
            &serde_json::from_value(cm("owner", json!({}))).unwrap(),
        )
        .await
        .unwrap();
    let mut dep = cm("dependent", json!({}));
    dep["metadata"]["ownerReferences"] = json!([{"apiVersion": "v1", "kind": "ConfigMap", "name": "owner",
        "uid": owner.uid().unwrap(), "blockOwnerDeletion": block}]);
    let mut dep_f = dep.clone();
    dep_f["metadata"]["name"] = json!("held");
    dep_f["metadata"]["finalizers"] = json!(["example.com/hold"]);
    api.create(&PostParams::default(), &serde_json::from_value(dep).unwrap())
        .await
        .unwrap();
    api.create(&PostParams::default(), &serde_json::from_value(dep_f).unwrap())
        .await
        .unwrap();
}

async fn gone(api: &Api<ConfigMap>, name: &str) -> bool {
    eventually(Duration::from_secs(10), async || {
        api.get_opt(name).await.unwrap().is_none().then_some(())
    })
    .await
    .is_some()
}

#[tokio::test]
async fn background_deletion_collects_dependents_after_the_owner() {
    let s = server().await;
    let api: Api<ConfigMap> = Api::default_namespaced(client(&s));
    owner_and_dependent(&api, false).await;
    api.delete("owner", &DeleteParams::background()).await.unwrap();
    assert!(
        api.get_opt("owner").await.unwrap().is_none(),
        "the owner goes at once"
    );
    assert!(gone(&api, "dependent").await);
    let held = api.get("held").await.unwrap();
    assert!(
        held.metadata.deletion_timestamp.is_some(),
        "a dependent's own finalizer is honoured"
    );
    s.shutdown().await;
}

#[tokio::test]
async fn foreground_deletion_waits_for_blocking_dependents() {
    let s = server().await;
    let api: Api<ConfigMap> = Api::default_namespaced(client(&s));
    owner_and_dependent(&api, true).await;
    api.delete("owner", &DeleteParams::foreground()).await.unwrap();
    assert!(gone(&api, "dependent").await);
    let owner = api.get("owner").await.unwrap();
    assert!(
        owner.finalizers().contains(&"foregroundDeletion".to_string()),
        "held by the blocking dependent"
    );
    api.patch(
        "held",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .unwrap();
    assert!(
        gone(&api, "owner").await,
        "released once no blocking dependent remains"
    );
    s.shutdown().await;
}

#[tokio::test]
async fn orphan_deletion_keeps_dependents_and_strips_the_reference() {
    let s = server().await;
    let api: Api<ConfigMap> = Api::default_namespaced(client(&s));
    owner_and_dependent(&api, false).await;
    let dp = DeleteParams {
        propagation_policy: Some(PropagationPolicy::Orphan),
        ..DeleteParams::default()
    };
    api.delete("owner", &dp).await.unwrap();
    assert!(gone(&api, "owner").await);
    let dep = api.get("dependent").await.unwrap();
    assert!(dep.metadata.owner_references.is_none());
    s.shutdown().await;
}

#[tokio::test]
async fn namespaces_delete_their_contents_then_themselves() {
    let s = server().await;
    let c = client(&s);
    let nss: Api<Namespace> = Api::all(c.clone());
    nss.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": "shop"}})).unwrap(),
    )
    .await
    .unwrap();
    let api: Api<ConfigMap> = Api::namespaced(c.clone(), "shop");
    let mut held = cm("x", json!({}));
    held["metadata"]["finalizers"] = json!(["example.com/hold"]);
    api.create(&PostParams::default(), &serde_json::from_value(held).unwrap())
        .await
        .unwrap();
    api.create(
        &PostParams::default(),
        &serde_json::from_value(cm("y", json!({}))).unwrap(),
    )
    .await
    .unwrap();
    nss.delete("shop", &DeleteParams::default()).await.unwrap();
    assert!(gone(&api, "y").await, "contents are deleted");
    assert_eq!(
        nss.get("shop").await.unwrap().status.unwrap().phase.as_deref(),
        Some("Terminating")
    );
    let err = api
        .create(
            &PostParams::default(),
            &serde_json::from_value(cm("z", json!({}))).unwrap(),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, kube::Error::Api(ref e) if e.code == 403 && e.message.contains("being terminated")),
        "{err:?}"
    );
    api.patch(
        "x",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .unwrap();
    let done = eventually(Duration::from_secs(10), async || {
        nss.get_opt("shop").await.unwrap().is_none().then_some(())
    })
    .await;
    assert!(done.is_some(), "the namespace goes once it is empty");
    let protected = nss.delete("default", &DeleteParams::default()).await.unwrap_err();
    assert!(matches!(protected, kube::Error::Api(ref e) if e.code == 403));
    s.shutdown().await;
}

#[tokio::test]
async fn programmed_faults_fail_requests_and_are_counted() {
    let s = server().await;
    let api: Api<ConfigMap> = Api::default_namespaced(client(&s));
    s.faults().add(Fault::new("create", "configmaps", 500).times(1));
    let err = api
        .create(
            &PostParams::default(),
            &serde_json::from_value(cm("f", json!({}))).unwrap(),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, kube::Error::Api(ref e) if e.code == 500 && e.reason == "InternalError"),
        "{err:?}"
    );
    // kube-rs retries a 429 after its Retry-After; the retry succeeds.
    s.faults()
        .add(Fault::new("create", "configmaps", 429).retry_after(1).times(1));
    api.create(
        &PostParams::default(),
        &serde_json::from_value(cm("f", json!({}))).unwrap(),
    )
    .await
    .unwrap();
    let codes: Vec<u16> = s
        .counters()
        .snapshot()
        .iter()
        .filter(|r| r.verb == "create" && r.resource == "configmaps")
        .map(|r| r.code)
        .collect();
    assert_eq!(codes, [500, 429, 201]);
    s.faults().add(Fault::new("get", "configmaps", 404));
    assert!(api.get("f").await.is_err());
    s.faults().clear();
    api.get("f").await.unwrap();
    let writes = s.counters().table(|r| r.is_write());
    assert!(
        writes.contains("create") && writes.contains("configmaps"),
        "{writes}"
    );
    s.shutdown().await;
}

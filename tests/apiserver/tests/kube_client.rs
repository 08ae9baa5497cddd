//! kube-rs 5 against the test API server and the real control plane: everything kroxide's
//! controller relies on.

mod common;

use std::{sync::Arc, time::Duration};

use common::{Server, Target, client, eventually, server};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::{
    api::{
        apps::v1::Deployment,
        coordination::v1::Lease,
        core::v1::{ConfigMap, Secret},
        events::v1::Event as K8sEvent,
    },
    apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
};
use kube::{
    Api, Client, Discovery, Resource, ResourceExt,
    api::{
        DeleteParams, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams, PostParams,
        WatchEvent, WatchParams,
    },
    discovery::oneshot,
    runtime::{
        Controller, WatchStreamExt, conditions,
        controller::Action,
        events::{Event, EventType, Recorder, Reporter},
        finalizer::{Event as FinalizerEvent, finalizer},
        wait::await_condition,
        watcher,
    },
};
use serde_json::{Value, json};

fn widget_crd() -> CustomResourceDefinition {
    serde_json::from_value(json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.example.com"},
        "spec": {"group": "example.com", "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget", "shortNames": ["wd"]},
            "versions": [{"name": "v1", "served": true, "storage": true, "subresources": {"status": {}},
                "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                    "spec": {"type": "object", "required": ["size"], "properties": {
                        "size": {"type": "integer", "minimum": 1},
                        "color": {"type": "string", "default": "blue", "enum": ["blue", "red"]}}},
                    "status": {"type": "object", "properties": {"ready": {"type": "boolean"}}}}}}}]}
    }))
    .unwrap()
}

async fn install_widgets(client: &Client) -> kube::core::ApiResource {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    crds.create(&PostParams::default(), &widget_crd()).await.unwrap();
    let established = await_condition(crds, "widgets.example.com", conditions::is_crd_established());
    tokio::time::timeout(Duration::from_secs(10), established)
        .await
        .unwrap()
        .unwrap();
    // A real kube-apiserver serves the new group's discovery a moment after Established (its
    // discovery is eventually consistent): poll for it, with a deadline.
    let gvk = GroupVersionKind::gvk("example.com", "v1", "Widget");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        match oneshot::pinned_kind(client, &gvk).await {
            Ok((ar, _)) => return ar,
            Err(e) if tokio::time::Instant::now() < deadline => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("Widget is not discoverable 10 s after Established: {e}"),
        }
    }
}

fn cm(name: &str, data: Value) -> ConfigMap {
    serde_json::from_value(
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": data}),
    )
    .unwrap()
}

async fn typed_crud_round_trips_and_a_stale_replace_conflicts(server: Server) {
    let s = Target::start(server).await;
    let api: Api<ConfigMap> = Api::default_namespaced(s.client().await);
    let created = api
        .create(&PostParams::default(), &cm("one", json!({"a": "1"})))
        .await
        .unwrap();
    assert!(created.metadata.uid.is_some() && created.metadata.resource_version.is_some());
    let mut got = api.get("one").await.unwrap();
    assert_eq!(got.data.as_ref().unwrap()["a"], "1");
    // A real control plane also puts its kube-root-ca.crt ConfigMap in every namespace.
    let listed: Vec<String> = api
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .iter()
        .map(|c| c.name_any())
        .filter(|n| n != "kube-root-ca.crt")
        .collect();
    assert_eq!(listed, ["one"]);
    got.data.as_mut().unwrap().insert("b".into(), "2".into());
    let replaced = api.replace("one", &PostParams::default(), &got).await.unwrap();
    assert_ne!(replaced.metadata.resource_version, got.metadata.resource_version);
    let stale = api
        .replace("one", &PostParams::default(), &got)
        .await
        .unwrap_err();
    assert!(
        matches!(stale, kube::Error::Api(ref e) if e.code == 409),
        "{stale:?}"
    );
    let patched = api
        .patch(
            "one",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"c": "3"}})),
        )
        .await
        .unwrap();
    assert_eq!(patched.data.unwrap().len(), 3);
    api.delete("one", &DeleteParams::default()).await.unwrap();
    let missing = api.get("one").await.unwrap_err();
    assert!(matches!(missing, kube::Error::Api(ref e) if e.code == 404 && e.reason == "NotFound"));
    let deploys: Api<Deployment> = Api::default_namespaced(s.client().await);
    let d: Deployment = serde_json::from_value(json!({"metadata": {"name": "web"}, "spec": {
        "selector": {"matchLabels": {"app": "web"}},
        "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "image": "nginx:1.27"}]}}}}))
    .unwrap();
    let d = deploys.create(&PostParams::default(), &d).await.unwrap();
    assert_eq!(d.spec.unwrap().replicas, Some(1), "defaulted by the server");
    s.shutdown().await;
}

async fn dynamic_objects_of_a_new_crd_are_defaulted_and_validated(server: Server) {
    let s = Target::start(server).await;
    let c = s.client().await;
    let ar = install_widgets(&c).await;
    let api: Api<DynamicObject> = Api::namespaced_with(c.clone(), "default", &ar);
    let w: DynamicObject = serde_json::from_value(json!({"apiVersion": "example.com/v1", "kind": "Widget",
        "metadata": {"name": "w1"}, "spec": {"size": 2}}))
    .unwrap();
    let created = api.create(&PostParams::default(), &w).await.unwrap();
    assert_eq!(created.data["spec"]["color"], "blue");
    let bad: DynamicObject = serde_json::from_value(json!({"apiVersion": "example.com/v1", "kind": "Widget",
        "metadata": {"name": "w2"}, "spec": {"size": 0, "color": "green"}}))
    .unwrap();
    let err = api.create(&PostParams::default(), &bad).await.unwrap_err();
    let kube::Error::Api(e) = err else {
        panic!("{err:?}")
    };
    assert_eq!(e.code, 422);
    assert!(
        e.message.contains("spec.size") && e.message.contains("spec.color"),
        "{}",
        e.message
    );
    s.shutdown().await;
}

async fn discovery_lists_builtins_and_custom_resources(server: Server) {
    let s = Target::start(server).await;
    let c = s.client().await;
    install_widgets(&c).await;
    let discovery = Discovery::new(c.clone()).run().await.unwrap();
    let (ar, caps) = discovery
        .resolve_gvk(&GroupVersionKind::gvk("example.com", "v1", "Widget"))
        .unwrap();
    assert_eq!(ar.plural, "widgets");
    assert!(
        caps.subresources
            .iter()
            .any(|(sub, _)| sub.plural == "widgets/status" || sub.plural == "status")
    );
    assert!(
        discovery
            .resolve_gvk(&GroupVersionKind::gvk("apps", "v1", "Deployment"))
            .is_some()
    );
    let (lease, _) = oneshot::pinned_kind(&c, &GroupVersionKind::gvk("coordination.k8s.io", "v1", "Lease"))
        .await
        .unwrap();
    assert_eq!(lease.plural, "leases");
    s.shutdown().await;
}

/// Embedded server only: it compacts its history and drops watches on demand.
#[tokio::test]
async fn watches_deliver_bookmarks_and_a_compacted_history_forces_a_relist() {
    let s = server().await;
    let c = client(&s);
    let api: Api<ConfigMap> = Api::default_namespaced(c.clone());
    api.create(&PostParams::default(), &cm("before", json!({})))
        .await
        .unwrap();

    // A raw watch with bookmarks sees one within the bookmark interval.
    let mut raw = api.watch(&WatchParams::default(), "0").await.unwrap().boxed();
    let bookmark = tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(e) = raw.next().await {
            if let Ok(WatchEvent::Bookmark(b)) = e {
                return b.metadata.resource_version;
            }
        }
        String::new()
    })
    .await
    .unwrap();
    assert!(!bookmark.is_empty());

    // The watcher relists after the server forgets history and drops its watch.
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let stream = watcher(api.clone(), watcher::Config::default());
    let task = tokio::spawn(async move {
        let mut stream = stream.boxed();
        while let Some(e) = stream.next().await {
            let tag = match e {
                Ok(watcher::Event::Init) => "init".to_string(),
                Ok(watcher::Event::InitDone) => "init-done".to_string(),
                Ok(watcher::Event::Apply(o) | watcher::Event::InitApply(o)) => {
                    format!("apply:{}", o.name_any())
                }
                Ok(watcher::Event::Delete(o)) => format!("delete:{}", o.name_any()),
                Err(e) => format!("error:{e}"),
            };
            if tx.send(tag).is_err() {
                break;
            }
        }
    });
    let mut seen = Vec::new();
    let mut wait_for = async |want: &str, seen: &mut Vec<String>| {
        tokio::time::timeout(Duration::from_secs(10), async {
            while let Some(t) = rx.recv().await {
                seen.push(t.clone());
                if t == want {
                    return;
                }
            }
        })
        .await
        .unwrap_or_else(|_| panic!("no {want} in {seen:?}"));
    };
    wait_for("init-done", &mut seen).await;
    api.create(&PostParams::default(), &cm("live", json!({})))
        .await
        .unwrap();
    wait_for("apply:live", &mut seen).await;
    s.compact();
    s.drop_watches();
    api.create(&PostParams::default(), &cm("after", json!({})))
        .await
        .unwrap();
    wait_for("apply:after", &mut seen).await;
    assert_eq!(
        seen.iter().filter(|t| *t == "init").count(),
        2,
        "relisted once: {seen:?}"
    );
    let watches = s
        .counters()
        .snapshot()
        .into_iter()
        .filter(|r| r.verb == "watch" && r.code == 200)
        .count();
    assert!(watches >= 2);
    task.abort();
    s.shutdown().await;
}

async fn a_controller_reconciles_again_when_an_owned_object_changes(server: Server) {
    let s = Target::start(server).await;
    let c = s.client().await;
    let cms: Api<ConfigMap> = Api::default_namespaced(c.clone());
    let secrets: Api<Secret> = Api::default_namespaced(c.clone());
    let count = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    struct Ctx {
        secrets: Api<Secret>,
        count: Arc<std::sync::atomic::AtomicUsize>,
    }
    async fn reconcile(cm: Arc<ConfigMap>, ctx: Arc<Ctx>) -> Result<Action, kube::Error> {
        ctx.count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let owner = cm.controller_owner_ref(&()).unwrap();
        let secret = json!({"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": format!("{}-secret", cm.name_any()), "ownerReferences": [owner]},
            "stringData": {"k": "v"}});
        ctx.secrets
            .patch(
                &format!("{}-secret", cm.name_any()),
                &PatchParams::apply("test-controller").force(),
                &Patch::Apply(&secret),
            )
            .await?;
        Ok(Action::await_change())
    }
    let ctx = Arc::new(Ctx {
        secrets: secrets.clone(),
        count: count.clone(),
    });
    // Only the test's ConfigMap: every namespace also holds kube-root-ca.crt, whose reconciles
    // would otherwise interleave with the ones this test counts.
    let controller = Controller::new(
        cms.clone(),
        watcher::Config::default().labels("kroxide-test=owner"),
    )
    .owns(secrets.clone(), watcher::Config::default())
    .run(
        reconcile,
        |_, _: &kube::Error, _| Action::requeue(Duration::from_secs(1)),
        ctx,
    )
    .for_each(|_| async {});
    let task = tokio::spawn(controller);
    let mut owner = cm("app", json!({}));
    owner.metadata.labels = Some([("kroxide-test".to_string(), "owner".to_string())].into());
    cms.create(&PostParams::default(), &owner).await.unwrap();
    let made = eventually(Duration::from_secs(30), async || {
        secrets.get_opt("app-secret").await.ok().flatten()
    })
    .await;
    assert!(made.is_some(), "the owned secret was created");
    let before = count.load(std::sync::atomic::Ordering::SeqCst);
    secrets
        .delete("app-secret", &DeleteParams::default())
        .await
        .unwrap();
    let again = eventually(Duration::from_secs(30), async || {
        secrets.get_opt("app-secret").await.ok().flatten()
    })
    .await;
    assert!(
        again.is_some(),
        "recreated after the owned object was deleted (reconciles: {} before, {} now; secrets: {:?})",
        before,
        count.load(std::sync::atomic::Ordering::SeqCst),
        secrets.list(&ListParams::default()).await.map(|l| l
            .items
            .iter()
            .map(|s| s.name_any())
            .collect::<Vec<_>>())
    );
    assert!(count.load(std::sync::atomic::Ordering::SeqCst) > before);
    // Deleting the owner collects the secret (background propagation).
    cms.delete("app", &DeleteParams::default()).await.unwrap();
    task.abort();
    let gone = eventually(Duration::from_secs(30), async || {
        secrets
            .get_opt("app-secret")
            .await
            .ok()
            .and_then(|o| o.is_none().then_some(()))
    })
    .await;
    assert!(gone.is_some(), "garbage collected");
    s.shutdown().await;
}

async fn the_finalizer_helper_adds_and_removes_its_finalizer(server: Server) {
    let s = Target::start(server).await;
    let api: Api<ConfigMap> = Api::default_namespaced(s.client().await);
    api.create(&PostParams::default(), &cm("guarded", json!({})))
        .await
        .unwrap();
    let cleaned = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let run = |cleaned: Arc<std::sync::atomic::AtomicBool>| {
        let api = api.clone();
        async move {
            let obj = Arc::new(api.get("guarded").await.unwrap());
            finalizer(&api, "example.com/cleanup", obj, |event| async move {
                if let FinalizerEvent::Cleanup(_) = event {
                    cleaned.store(true, std::sync::atomic::Ordering::SeqCst);
                }
                Ok::<_, kube::Error>(Action::await_change())
            })
            .await
        }
    };
    run(cleaned.clone()).await.unwrap();
    let with = api.get("guarded").await.unwrap();
    assert_eq!(
        with.metadata.finalizers,
        Some(vec!["example.com/cleanup".to_string()])
    );
    api.delete("guarded", &DeleteParams::default()).await.unwrap();
    assert!(
        api.get("guarded")
            .await
            .unwrap()
            .metadata
            .deletion_timestamp
            .is_some(),
        "held by the finalizer"
    );
    run(cleaned.clone()).await.unwrap();
    assert!(cleaned.load(std::sync::atomic::Ordering::SeqCst));
    assert!(api.get_opt("guarded").await.unwrap().is_none());
    // The helper's JSON patch `test` fails (422) when the finalizers moved underneath it.
    let err = api
        .patch(
            "gone",
            &PatchParams::default(),
            &Patch::Json::<()>(
                serde_json::from_value(json!([
            {"op": "test", "path": "/metadata/finalizers", "value": null}]))
                .unwrap(),
            ),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, kube::Error::Api(ref e) if e.code == 404));
    api.create(&PostParams::default(), &cm("tested", json!({})))
        .await
        .unwrap();
    let failed = api
        .patch(
            "tested",
            &PatchParams::default(),
            &Patch::Json::<()>(
                serde_json::from_value(json!([
            {"op": "test", "path": "/data", "value": {"x": "y"}}]))
                .unwrap(),
            ),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(failed, kube::Error::Api(ref e) if e.code == 422),
        "{failed:?}"
    );
    s.shutdown().await;
}

async fn server_side_apply_conflicts_and_force(server: Server) {
    let s = Target::start(server).await;
    let api: Api<ConfigMap> = Api::default_namespaced(s.client().await);
    let body = |v: &str| json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "shared"}, "data": {"k": v}});
    api.patch("shared", &PatchParams::apply("alice"), &Patch::Apply(body("a")))
        .await
        .unwrap();
    let err = api
        .patch("shared", &PatchParams::apply("bob"), &Patch::Apply(body("b")))
        .await
        .unwrap_err();
    let kube::Error::Api(e) = err else {
        panic!("{err:?}")
    };
    assert_eq!((e.code, e.reason.as_str()), (409, "Conflict"));
    assert_eq!(
        e.message,
        "Apply failed with 1 conflict: conflict with \"alice\": .data.k"
    );
    let forced = api
        .patch(
            "shared",
            &PatchParams::apply("bob").force(),
            &Patch::Apply(body("b")),
        )
        .await
        .unwrap();
    assert_eq!(forced.data.unwrap()["k"], "b");
    let managers: Vec<String> = forced
        .metadata
        .managed_fields
        .unwrap()
        .into_iter()
        .filter_map(|m| m.manager)
        .collect();
    assert_eq!(managers, ["bob"]);
    s.shutdown().await;
}

async fn status_patches_do_not_bump_generation_but_spec_changes_do(server: Server) {
    let s = Target::start(server).await;
    let c = s.client().await;
    let ar = install_widgets(&c).await;
    let api: Api<DynamicObject> = Api::namespaced_with(c, "default", &ar);
    let w = json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "g"}, "spec": {"size": 1}});
    let created = api
        .patch("g", &PatchParams::apply("t"), &Patch::Apply(&w))
        .await
        .unwrap();
    assert_eq!(created.metadata.generation, Some(1));
    let st = api
        .patch_status(
            "g",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"ready": true}})),
        )
        .await
        .unwrap();
    assert_eq!(
        (st.metadata.generation, st.data["status"]["ready"].clone()),
        (Some(1), json!(true))
    );
    // Status sent to the main endpoint is ignored.
    let ignored = api
        .patch(
            "g",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"ready": false}})),
        )
        .await
        .unwrap();
    assert_eq!(ignored.data["status"]["ready"], true);
    let changed = api
        .patch(
            "g",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"size": 2}})),
        )
        .await
        .unwrap();
    assert_eq!(changed.metadata.generation, Some(2));
    let labelled = api
        .patch(
            "g",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"a": "b"}}})),
        )
        .await
        .unwrap();
    assert_eq!(
        labelled.metadata.generation,
        Some(2),
        "metadata does not bump generation"
    );
    s.shutdown().await;
}

async fn the_event_recorder_creates_and_then_patches_a_series(server: Server) {
    let s = Target::start(server).await;
    let c = s.client().await;
    let api: Api<ConfigMap> = Api::default_namespaced(c.clone());
    let obj = api
        .create(&PostParams::default(), &cm("noisy", json!({})))
        .await
        .unwrap();
    let recorder = Recorder::new(
        c.clone(),
        Reporter {
            controller: "kroxide-test".into(),
            instance: None,
        },
    );
    let ev = Event {
        type_: EventType::Normal,
        reason: "Synced".into(),
        note: Some("all good".into()),
        action: "Reconcile".into(),
        secondary: None,
    };
    let reference = obj.object_ref(&());
    recorder.publish(&ev, &reference).await.unwrap();
    recorder.publish(&ev, &reference).await.unwrap();
    let events: Api<K8sEvent> = Api::default_namespaced(c);
    // Only this recorder's: a real cluster has Events of its own (its node's, for one).
    let list: Vec<K8sEvent> = events
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|e| e.reporting_controller.as_deref() == Some("kroxide-test"))
        .collect();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].series.as_ref().map(|s| s.count), Some(2));
    assert_eq!(list[0].reason.as_deref(), Some("Synced"));
    s.shutdown().await;
}

async fn leases_can_be_taken_and_renewed(server: Server) {
    let s = Target::start(server).await;
    let api: Api<Lease> = Api::namespaced(s.client().await, "kube-system");
    let lease: Lease = serde_json::from_value(json!({"metadata": {"name": "kroxide"}, "spec": {
        "holderIdentity": "a", "leaseDurationSeconds": 15, "acquireTime": "2026-01-01T00:00:00.000000Z",
        "renewTime": "2026-01-01T00:00:00.000000Z"}}))
    .unwrap();
    let created = api.create(&PostParams::default(), &lease).await.unwrap();
    let mut renewed = created.clone();
    renewed.spec.as_mut().unwrap().renew_time =
        serde_json::from_value(json!("2026-01-01T00:00:05.000000Z")).unwrap();
    let renewed = api
        .replace("kroxide", &PostParams::default(), &renewed)
        .await
        .unwrap();
    assert_ne!(
        renewed.metadata.resource_version,
        created.metadata.resource_version
    );
    // A competing replace with the old resourceVersion loses.
    let err = api
        .replace("kroxide", &PostParams::default(), &created)
        .await
        .unwrap_err();
    assert!(matches!(err, kube::Error::Api(ref e) if e.code == 409));
    s.shutdown().await;
}

async fn streaming_lists_end_their_initial_events_with_a_bookmark(server: Server) {
    let s = Target::start(server).await;
    let api: Api<ConfigMap> = Api::default_namespaced(s.client().await);
    for i in 0..3 {
        api.create(&PostParams::default(), &cm(&format!("c{i}"), json!({})))
            .await
            .unwrap();
    }
    let mut stream = watcher(api.clone(), watcher::Config::default().streaming_lists())
        .default_backoff()
        .boxed();
    let mut applied = 0;
    let done = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(e) = stream.try_next().await.unwrap() {
            match e {
                watcher::Event::InitApply(o) if o.name_any() != "kube-root-ca.crt" => applied += 1,
                watcher::Event::InitDone => return true,
                _ => {}
            }
        }
        false
    })
    .await
    .unwrap();
    assert!(done);
    assert_eq!(applied, 3);
    if let Target::Embedded(e) = &s {
        let asked = e.counters().snapshot().into_iter().any(|r| r.verb == "watch");
        assert!(asked, "the initial list came from a watch");
    }
    s.shutdown().await;
}

on_both_servers!(
    typed_crud_round_trips_and_a_stale_replace_conflicts,
    dynamic_objects_of_a_new_crd_are_defaulted_and_validated,
    discovery_lists_builtins_and_custom_resources,
    a_controller_reconciles_again_when_an_owned_object_changes,
    the_finalizer_helper_adds_and_removes_its_finalizer,
    server_side_apply_conflicts_and_force,
    status_patches_do_not_bump_generation_but_spec_changes_do,
    the_event_recorder_creates_and_then_patches_a_series,
    leases_can_be_taken_and_renewed,
    streaming_lists_end_their_initial_events_with_a_bookmark,
);

//! The controller in-process, on the embedded API server and on the real control plane: request
//! budgets (counted by the embedded server, or read from kube-apiserver's audit log, by user
//! agent), zero writes in steady state even when the live objects hold server defaults, adoption
//! of kro-made state, a controller killed mid-reconcile, graph deletion while instances exist,
//! and breaking schema changes.

mod support;

use std::time::Duration;

use k8s_openapi::api::core::v1::ConfigMap;
use kroxide::controller::{self, Running};
use kube::{
    Api,
    api::{DeleteParams, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams},
    discovery::oneshot,
};
use serde_json::{Value, json};
use support::{Backend, Env, Server, controller_writes, eventually, rgd_api};

async fn start(env: &Env, extra: &[&str]) -> Running {
    let mut args = vec!["--metrics-bind-address=0", "--health-probe-bind-address=0"];
    args.extend_from_slice(extra);
    let config = env.controller_config(&args);
    let metrics = std::sync::Arc::default();
    let client = controller::client(&config, &metrics).await.unwrap();
    let (ctx, notices) = controller::context(config, client, metrics).await.unwrap();
    controller::start(ctx, notices).await
}

async fn apply_rgd(env: &Env, rgd: Value) {
    let name = rgd["metadata"]["name"].as_str().unwrap().to_string();
    let api = rgd_api(&env.client);
    api.patch(&name, &PatchParams::apply("test").force(), &Patch::Apply(&rgd))
        .await
        .unwrap();
}

async fn rgd_state(env: &Env, name: &str) -> Option<Value> {
    rgd_api(&env.client)
        .get_opt(name)
        .await
        .ok()
        .flatten()
        .map(|o| o.data["status"].clone())
}

async fn wait_active(env: &Env, name: &str) {
    eventually(
        &format!("graph {name} Active"),
        Duration::from_secs(20),
        async || {
            rgd_state(env, name)
                .await
                .filter(|s| s["state"] == "Active")
                .map(|_| ())
        },
    )
    .await;
}

async fn instances(env: &Env, group: &str, kind: &str, ns: &str) -> Api<DynamicObject> {
    let (ar, _) = oneshot::pinned_kind(&env.client, &GroupVersionKind::gvk(group, "v1alpha1", kind))
        .await
        .unwrap();
    Api::namespaced_with(env.client.clone(), ns, &ar)
}

/// Creates an instance of `kind` (group test.kroxide.dev) named `name` in `apps`, with an empty spec.
async fn create_instance(api: &Api<DynamicObject>, kind: &str, name: &str) {
    let inst: DynamicObject = serde_json::from_value(json!({"apiVersion": "test.kroxide.dev/v1alpha1",
        "kind": kind, "metadata": {"name": name, "namespace": "apps"}, "spec": {}}))
    .unwrap();
    api.create(&PostParams::default(), &inst).await.unwrap();
}

async fn wait_state(api: &Api<DynamicObject>, name: &str, state: &str) -> DynamicObject {
    eventually(&format!("{name} {state}"), Duration::from_secs(20), async || {
        api.get_opt(name)
            .await
            .ok()
            .flatten()
            .filter(|o| o.data["status"]["state"] == state)
    })
    .await
}

fn writes(env: &Env) -> Vec<support::Request> {
    controller_writes(env)
}

fn write_table(env: &Env) -> String {
    kroxide_cluster::table(&controller_writes(env))
}

fn three_configmaps() -> Value {
    let cm = |id: &str, data: Value| {
        json!({"id": id, "template": {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": format!("${{schema.metadata.name}}-{id}")}, "data": data}})
    };
    json!({"apiVersion": "kro.run/v1alpha1", "kind": "ResourceGraphDefinition",
    "metadata": {"name": "budgets.test.kroxide.dev"},
    "spec": {"schema": {"apiVersion": "v1alpha1", "kind": "Budget", "group": "test.kroxide.dev",
            "spec": {"value": "string | default=v"}},
        "resources": [
            cm("one", json!({"value": "${schema.spec.value}"})),
            cm("two", json!({"from": "${one.metadata.name}"})),
            cm("three", json!({"from": "${two.metadata.name}"})),
        ]}})
}

async fn an_instance_of_three_configmaps_costs_at_most_k_plus_2_writes_then_none(server: Server) {
    let env = Env::start_on(server, "kroxide-controller", Duration::from_millis(200), true).await;
    let running = start(&env, &["--dynamic-controller-default-resync-period=1"]).await;
    apply_rgd(&env, three_configmaps()).await;
    wait_active(&env, "budgets.test.kroxide.dev").await;
    // Let the graph settle, then count from here.
    env.settle().await;
    env.reset_requests();
    let api = instances(&env, "test.kroxide.dev", "Budget", "apps").await;
    let inst: DynamicObject = serde_json::from_value(
        json!({"apiVersion": "test.kroxide.dev/v1alpha1", "kind": "Budget",
        "metadata": {"name": "b1", "namespace": "apps"}, "spec": {}}),
    )
    .unwrap();
    api.create(&PostParams::default(), &inst).await.unwrap();
    wait_state(&api, "b1", "ACTIVE").await;
    env.settle().await;
    let to_active = writes(&env);
    println!("writes until ACTIVE:\n{}", write_table(&env));
    assert!(
        to_active.len() <= 3 + 2,
        "{} writes:\n{}",
        to_active.len(),
        write_table(&env)
    );

    // Steady state: 10 resync periods and 100 unrelated events, zero writes.
    env.reset_requests();
    let cms: Api<ConfigMap> = Api::namespaced(env.client.clone(), "apps");
    for i in 0..50 {
        let unrelated = json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": format!("noise-{i}"), "labels": {"kro.run/owned": "true"}}});
        cms.create(
            &PostParams::default(),
            &serde_json::from_value(unrelated).unwrap(),
        )
        .await
        .unwrap();
        let note = json!({"metadata": {"annotations": {"example.com/touched": i.to_string()}}});
        cms.patch("b1-one", &PatchParams::apply("someone-else"), &Patch::Apply(&json!({
            "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "b1-one", "annotations": note["metadata"]["annotations"]}})))
            .await
            .unwrap();
    }
    tokio::time::sleep(Duration::from_secs(10)).await;
    let steady = writes(&env);
    println!(
        "writes in steady state (10 s of 1 s resyncs, 100 unrelated events):\n{}",
        write_table(&env)
    );
    assert!(steady.is_empty(), "{}", write_table(&env));
    let reconciles = env
        .requests()
        .iter()
        .filter(|r| r.user_agent.starts_with("kroxide/"))
        .count();
    assert!(reconciles < 50, "reads stay small too: {reconciles}");
    running.stop(Duration::from_secs(5)).await;
    env.shutdown().await;
}

/// A controller restarted over instances that did not change writes nothing: with no record
/// of its earlier applies, it reads from the live children (defaulted by the server, labelled by
/// others) that each intent is in place. A child changed while it was down is still put back.
async fn a_restarted_controller_writes_nothing_over_unchanged_instances(server: Server) {
    let env = Env::start_on(server, "kroxide-controller", Duration::from_millis(100), true).await;
    // As the chart installs it: the graph's revision is found again, not issued anew.
    support::install_graph_revision_crd(&env.client).await;
    let first = start(&env, &[]).await;
    apply_rgd(
        &env,
        json!({"apiVersion": "kro.run/v1alpha1", "kind": "ResourceGraphDefinition",
            "metadata": {"name": "restarts.test.kroxide.dev"},
            "spec": {"schema": {"apiVersion": "v1alpha1", "kind": "Restart", "group": "test.kroxide.dev",
                    "spec": {"image": "string | default=nginx:1.27"},
                    "status": {"replicas": "${deployment.status.?availableReplicas.orValue(0)}"}},
                "resources": [
                    {"id": "config", "template": {"apiVersion": "v1", "kind": "ConfigMap",
                        "metadata": {"name": "${schema.metadata.name}"}, "data": {"image": "${schema.spec.image}"}}},
                    {"id": "deployment", "template": {"apiVersion": "apps/v1", "kind": "Deployment",
                        "metadata": {"name": "${schema.metadata.name}"},
                        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "${schema.metadata.name}"}},
                            "template": {"metadata": {"labels": {"app": "${schema.metadata.name}"},
                                "annotations": {"config": "${config.metadata.name}"}},
                                "spec": {"containers": [{"name": "c", "image": "${schema.spec.image}",
                                    "ports": [{"containerPort": 80}]}]}}}}},
                    {"id": "service", "template": {"apiVersion": "v1", "kind": "Service",
                        "metadata": {"name": "${schema.metadata.name}"},
                        "spec": {"selector": {"app": "${schema.metadata.name}"}, "ports": [{"port": 80}]}}}]}}),
    )
    .await;
    wait_active(&env, "restarts.test.kroxide.dev").await;
    let api = instances(&env, "test.kroxide.dev", "Restart", "apps").await;
    for i in 0..5 {
        create_instance(&api, "Restart", &format!("r{i}")).await;
    }
    for i in 0..5 {
        wait_state(&api, &format!("r{i}"), "ACTIVE").await;
    }
    env.settle().await;
    first.stop(Duration::from_secs(5)).await;
    // Behind the stopped controller's back: one child's value changed.
    let cms: Api<ConfigMap> = Api::namespaced(env.client.clone(), "apps");
    cms.patch(
        "r4",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"image": "changed"}})),
    )
    .await
    .unwrap();
    env.settle().await;
    env.reset_requests();
    let second = start(&env, &[]).await;
    // Every child of every instance looked at again (and remembered).
    eventually("15 children remembered", Duration::from_secs(30), async || {
        (second.footprint().applied_children == 15).then_some(())
    })
    .await;
    eventually(
        "the changed child put back",
        Duration::from_secs(30),
        async || {
            let cm = cms.get("r4").await.ok()?;
            (cm.data?.get("image")? == "nginx:1.27").then_some(())
        },
    )
    .await;
    env.settle().await;
    let written = writes(&env);
    println!("writes of the restarted controller:\n{}", write_table(&env));
    assert_eq!(written.len(), 1, "only the changed child:\n{}", write_table(&env));
    second.stop(Duration::from_secs(5)).await;
    env.shutdown().await;
}

async fn live_objects_holding_server_defaults_cause_no_writes(server: Server) {
    let env = Env::start_on(server, "kroxide-controller", Duration::from_millis(100), true).await;
    let running = start(&env, &["--dynamic-controller-default-resync-period=1"]).await;
    apply_rgd(
        &env,
        json!({"apiVersion": "kro.run/v1alpha1", "kind": "ResourceGraphDefinition",
            "metadata": {"name": "defaults.test.kroxide.dev"},
            "spec": {"schema": {"apiVersion": "v1alpha1", "kind": "Defaulted", "group": "test.kroxide.dev",
                    "spec": {"cpu": "string | default=1000m"}},
                "resources": [{"id": "deployment",
                    "readyWhen": ["${deployment.status.?availableReplicas.orValue(0) == 1}"],
                    "template": {"apiVersion": "apps/v1", "kind": "Deployment",
                        "metadata": {"name": "${schema.metadata.name}"},
                        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "${schema.metadata.name}"}},
                            "template": {"metadata": {"labels": {"app": "${schema.metadata.name}"}},
                                "spec": {"containers": [{"name": "c", "image": "nginx:1.27",
                                    "ports": [{"containerPort": 80}],
                                    "resources": {"requests": {"cpu": "${schema.spec.cpu}", "memory": "1024Mi"}}}]}}}}},
                    {"id": "service", "template": {"apiVersion": "v1", "kind": "Service",
                        "metadata": {"name": "${schema.metadata.name}"},
                        "spec": {"selector": {"app": "${schema.metadata.name}"}, "ports": [{"port": 80}]}}}]}}),
    )
    .await;
    wait_active(&env, "defaults.test.kroxide.dev").await;
    let api = instances(&env, "test.kroxide.dev", "Defaulted", "apps").await;
    let inst: DynamicObject = serde_json::from_value(
        json!({"apiVersion": "test.kroxide.dev/v1alpha1", "kind": "Defaulted",
        "metadata": {"name": "d1", "namespace": "apps"}, "spec": {}}),
    )
    .unwrap();
    api.create(&PostParams::default(), &inst).await.unwrap();
    wait_state(&api, "d1", "ACTIVE").await;
    // The server defaulted and canonicalised what we applied.
    let live = env.get("apps/v1", "Deployment", "apps", "d1").await.unwrap();
    let c = &live["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(c["resources"]["requests"], json!({"cpu": "1", "memory": "1Gi"}));
    assert_eq!(c["imagePullPolicy"], "IfNotPresent");
    assert_eq!(
        env.get("v1", "Service", "apps", "d1").await.unwrap()["spec"]["ports"][0]["targetPort"],
        80
    );
    env.settle().await;
    env.reset_requests();
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert!(writes(&env).is_empty(), "{}", write_table(&env));
    running.stop(Duration::from_secs(5)).await;
    env.shutdown().await;
}

async fn state_made_by_kro_is_adopted_without_creates_or_deletes(server: Server) {
    let env = Env::start_on(server, "kroxide-controller", Duration::from_millis(100), true).await;
    // First a graph and its CRD, served by a controller that then goes away (as kro would have).
    let first = start(&env, &[]).await;
    apply_rgd(&env, three_configmaps()).await;
    wait_active(&env, "budgets.test.kroxide.dev").await;
    first.stop(Duration::from_secs(5)).await;
    let rgd = rgd_api(&env.client)
        .get("budgets.test.kroxide.dev")
        .await
        .unwrap();
    let rgd_uid = rgd.metadata.uid.clone().unwrap();
    // The instance and children exactly as kro writes them.
    let api = instances(&env, "test.kroxide.dev", "Budget", "apps").await;
    let inst: DynamicObject = serde_json::from_value(
        json!({"apiVersion": "test.kroxide.dev/v1alpha1", "kind": "Budget",
        "metadata": {"name": "old", "namespace": "apps"}, "spec": {"value": "v"}}),
    )
    .unwrap();
    let inst = api.create(&PostParams::default(), &inst).await.unwrap();
    let uid = inst.metadata.uid.clone().unwrap();
    let identity = kroxide::metadata::InstanceIdentity::from_object(&serde_json::to_value(&inst).unwrap());
    let applyset = identity.applyset_id().to_string();
    api.patch("old", &PatchParams::apply("kro.run/labeller").force(), &Patch::Apply(&json!({
        "apiVersion": "test.kroxide.dev/v1alpha1", "kind": "Budget",
        "metadata": {"name": "old", "namespace": "apps", "finalizers": ["kro.run/finalizer"], "labels": {
            "kro.run/owned": "true", "kro.run/kro-version": "v0.4.1", "kro.run/resource-graph-definition-id": rgd_uid,
            "kro.run/resource-graph-definition-name": "budgets.test.kroxide.dev", "applyset.kubernetes.io/id": applyset}}})))
        .await
        .unwrap();
    api.patch("old", &PatchParams::apply("kro.run/applyset-parent").force(), &Patch::Apply(&json!({
        "apiVersion": "test.kroxide.dev/v1alpha1", "kind": "Budget",
        "metadata": {"name": "old", "namespace": "apps", "annotations": {
            "applyset.kubernetes.io/tooling": "kro/v0.4.1", "applyset.kubernetes.io/contains-group-kinds": "ConfigMap"}}})))
        .await
        .unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(env.client.clone(), "apps");
    for (order, (id, data)) in [
        ("one", json!({"value": "v"})),
        ("two", json!({"from": "old-one"})),
        ("three", json!({"from": "old-two"})),
    ]
    .into_iter()
    .enumerate()
    {
        let child = json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": format!("old-{id}"), "namespace": "apps",
                "labels": {"kro.run/owned": "true", "kro.run/kro-version": "v0.4.1", "kro.run/instance-id": uid,
                    "kro.run/instance-name": "old", "kro.run/instance-namespace": "apps",
                    "kro.run/instance-group": "test.kroxide.dev", "kro.run/instance-version": "v1alpha1",
                    "kro.run/instance-kind": "Budget", "app.kubernetes.io/managed-by": "kro", "kro.run/node-id": id,
                    "applyset.kubernetes.io/part-of": applyset},
                "annotations": {"internal.kro.run/apply-order": order.to_string()}},
            "data": data});
        cms.patch(
            &format!("old-{id}"),
            &PatchParams::apply("kro.run/applyset").force(),
            &Patch::Apply(&child),
        )
        .await
        .unwrap();
    }
    env.reset_requests();
    let second = start(&env, &[]).await;
    wait_state(&api, "old", "ACTIVE").await;
    env.settle().await;
    println!("writes while adopting:\n{}", write_table(&env));
    let churn: Vec<_> = writes(&env)
        .into_iter()
        .filter(|r| r.verb == "create" || r.verb == "delete" || r.code == 201)
        .collect();
    assert!(churn.is_empty(), "adoption created or deleted: {churn:?}");
    assert_eq!(env.names("v1", "ConfigMap", Some("apps")).await.len(), 3);
    second.stop(Duration::from_secs(5)).await;
    env.shutdown().await;
}

async fn a_controller_killed_mid_reconcile_is_replaced_without_duplicates_or_orphans(server: Server) {
    let _ = tracing_subscriber::fmt()
        .with_env_filter("kroxide=debug")
        .try_init();
    let env = Env::start_on(server, "kroxide-controller", Duration::from_millis(1500), true).await;
    let first = start(&env, &[]).await;
    apply_rgd(
        &env,
        json!({"apiVersion": "kro.run/v1alpha1", "kind": "ResourceGraphDefinition",
            "metadata": {"name": "chains.test.kroxide.dev"},
            "spec": {"schema": {"apiVersion": "v1alpha1", "kind": "Chain", "group": "test.kroxide.dev", "spec": {"n": "integer | default=1"}},
                "resources": [
                    {"id": "deployment", "readyWhen": ["${deployment.status.?availableReplicas.orValue(0) == 1}"],
                     "template": {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "${schema.metadata.name}"},
                        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "${schema.metadata.name}"}},
                            "template": {"metadata": {"labels": {"app": "${schema.metadata.name}"}},
                                "spec": {"containers": [{"name": "c", "image": "nginx:1.27"}]}}}}},
                    {"id": "after", "template": {"apiVersion": "v1", "kind": "ConfigMap",
                        "metadata": {"name": "${schema.metadata.name}-after"}, "data": {"r": "${string(deployment.spec.replicas)}"}}}]}}),
    )
    .await;
    wait_active(&env, "chains.test.kroxide.dev").await;
    let api = instances(&env, "test.kroxide.dev", "Chain", "apps").await;
    env.hold_workloads().await;
    for i in 0..3 {
        let inst: DynamicObject =
            serde_json::from_value(json!({"apiVersion": "test.kroxide.dev/v1alpha1", "kind": "Chain",
            "metadata": {"name": format!("c{i}"), "namespace": "apps"}, "spec": {}}))
            .unwrap();
        api.create(&PostParams::default(), &inst).await.unwrap();
    }
    // Mid-flight: Deployments exist, their dependents wait for readiness.
    eventually("deployments created", Duration::from_secs(10), async || {
        (env.names("apps/v1", "Deployment", Some("apps")).await.len() == 3).then_some(())
    })
    .await;
    assert!(env.names("v1", "ConfigMap", Some("apps")).await.is_empty());
    // Killed: no grace at all.
    first.stop(Duration::ZERO).await;
    let second = start(&env, &[]).await;
    env.release_workloads().await;
    for i in 0..3 {
        wait_state(&api, &format!("c{i}"), "ACTIVE").await;
    }
    let deployments = env.names("apps/v1", "Deployment", Some("apps")).await;
    let configmaps = env.names("v1", "ConfigMap", Some("apps")).await;
    assert_eq!(deployments, ["c0", "c1", "c2"]);
    assert_eq!(configmaps, ["c0-after", "c1-after", "c2-after"]);
    for name in deployments {
        let d = env.get("apps/v1", "Deployment", "apps", &name).await.unwrap();
        assert_eq!(
            d["metadata"]["labels"]["kro.run/instance-name"], name,
            "no orphan: every child has its instance"
        );
    }
    second.stop(Duration::from_secs(5)).await;
    env.shutdown().await;
}

async fn a_graph_deleted_with_instances_keeps_serving_them_until_they_go(server: Server) {
    let env = Env::start_on(server, "kroxide-controller", Duration::from_millis(100), true).await;
    let running = start(&env, &[]).await;
    apply_rgd(&env, three_configmaps()).await;
    wait_active(&env, "budgets.test.kroxide.dev").await;
    let api = instances(&env, "test.kroxide.dev", "Budget", "apps").await;
    let inst: DynamicObject = serde_json::from_value(
        json!({"apiVersion": "test.kroxide.dev/v1alpha1", "kind": "Budget",
        "metadata": {"name": "keep", "namespace": "apps"}, "spec": {}}),
    )
    .unwrap();
    api.create(&PostParams::default(), &inst).await.unwrap();
    wait_state(&api, "keep", "ACTIVE").await;
    rgd_api(&env.client)
        .delete("budgets.test.kroxide.dev", &DeleteParams::default())
        .await
        .unwrap();
    let status = eventually(
        "instances-remaining condition",
        Duration::from_secs(10),
        async || {
            rgd_state(&env, "budgets.test.kroxide.dev").await.filter(|s| {
                s["conditions"]
                    .as_array()
                    .is_some_and(|c| c.iter().any(|c| c["reason"] == "InstancesRemaining"))
            })
        },
    )
    .await;
    let cond = status["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "InstancesDeleted")
        .unwrap()
        .clone();
    assert_eq!(
        cond["message"],
        "1 instance of Budget still exists; the graph keeps serving them until they are deleted"
    );
    // Still served: a change reaches the children.
    api.patch(
        "keep",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"value": "changed"}})),
    )
    .await
    .unwrap();
    eventually("child updated", Duration::from_secs(10), async || {
        env.get("v1", "ConfigMap", "apps", "keep-one")
            .await
            .filter(|c| c["data"]["value"] == "changed")
            .map(|_| ())
    })
    .await;
    api.delete("keep", &DeleteParams::default()).await.unwrap();
    eventually("graph gone", Duration::from_secs(15), async || {
        rgd_api(&env.client)
            .get_opt("budgets.test.kroxide.dev")
            .await
            .unwrap()
            .is_none()
            .then_some(())
    })
    .await;
    assert!(
        env.names("v1", "ConfigMap", Some("apps")).await.is_empty(),
        "children deleted with the instance"
    );
    assert!(
        env.get(
            "apiextensions.k8s.io/v1",
            "CustomResourceDefinition",
            "",
            "budgets.test.kroxide.dev"
        )
        .await
        .is_some(),
        "the CRD stays without --allow-crd-deletion"
    );
    running.stop(Duration::from_secs(5)).await;
    env.shutdown().await;
}

async fn breaking_schema_changes_are_refused_unless_allowed(server: Server) {
    let env = Env::start_on(server, "kroxide-controller", Duration::from_millis(100), true).await;
    let running = start(&env, &[]).await;
    apply_rgd(&env, three_configmaps()).await;
    wait_active(&env, "budgets.test.kroxide.dev").await;
    let mut changed = three_configmaps();
    changed["spec"]["schema"]["spec"] = json!({"value": "integer | default=1"});
    changed["spec"]["resources"][0]["template"]["data"]["value"] = json!("${string(schema.spec.value)}");
    apply_rgd(&env, changed.clone()).await;
    let status = eventually("refused", Duration::from_secs(10), async || {
        rgd_state(&env, "budgets.test.kroxide.dev")
            .await
            .filter(|s| s["state"] == "Inactive")
    })
    .await;
    let kind = status["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "KindReady")
        .unwrap()
        .clone();
    assert_eq!(kind["reason"], "BreakingChanges");
    assert!(
        kind["message"]
            .as_str()
            .unwrap()
            .contains("TYPE_CHANGED at spec.value"),
        "{kind}"
    );
    changed["metadata"]["annotations"] = json!({"kro.run/allow-breaking-changes": "true"});
    apply_rgd(&env, changed).await;
    wait_active(&env, "budgets.test.kroxide.dev").await;
    running.stop(Duration::from_secs(5)).await;
    env.shutdown().await;
}

/// Regression: a graph deleted while instances remain, then a controller restart. The new
/// controller had no revision of the graph, counted its instances from that absent cache as 0
/// and removed the finalizer: the graph went, its instances kept their finalizer for ever and
/// their children stayed.
async fn a_graph_deleted_while_the_controller_is_down_still_finalizes_its_instances(server: Server) {
    let env = Env::start_on(server, "kroxide-controller", Duration::from_millis(100), true).await;
    let first = start(&env, &[]).await;
    apply_rgd(&env, three_configmaps()).await;
    wait_active(&env, "budgets.test.kroxide.dev").await;
    let api = instances(&env, "test.kroxide.dev", "Budget", "apps").await;
    create_instance(&api, "Budget", "left").await;
    wait_state(&api, "left", "ACTIVE").await;
    first.stop(Duration::from_secs(5)).await;
    rgd_api(&env.client)
        .delete("budgets.test.kroxide.dev", &DeleteParams::default())
        .await
        .unwrap();
    let second = start(&env, &[]).await;
    eventually("InstancesRemaining", Duration::from_secs(20), async || {
        rgd_state(&env, "budgets.test.kroxide.dev").await.filter(|s| {
            s["conditions"]
                .as_array()
                .is_some_and(|c| c.iter().any(|c| c["reason"] == "InstancesRemaining"))
        })
    })
    .await;
    // Still served: deleting the instance deletes its children and lets it go, then the graph.
    api.delete("left", &DeleteParams::default()).await.unwrap();
    eventually("instance finalized", Duration::from_secs(20), async || {
        api.get_opt("left").await.unwrap().is_none().then_some(())
    })
    .await;
    assert!(env.names("v1", "ConfigMap", Some("apps")).await.is_empty());
    eventually("graph gone", Duration::from_secs(20), async || {
        rgd_api(&env.client)
            .get_opt("budgets.test.kroxide.dev")
            .await
            .unwrap()
            .is_none()
            .then_some(())
    })
    .await;
    second.stop(Duration::from_secs(5)).await;
    env.shutdown().await;
}

/// Regression: an instance whose child has the name of an object it did not make (`kubectl
/// create cm precious`) merged into it, rewrote its labels, and deleted it with itself.
async fn an_object_the_instance_did_not_make_is_never_taken_over(server: Server) {
    let env = Env::start_on(server, "kroxide-controller", Duration::from_millis(100), true).await;
    let running = start(&env, &[]).await;
    let cms: Api<ConfigMap> = Api::namespaced(env.client.clone(), "apps");
    cms.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": "precious"}, "data": {"keep": "me"}})).unwrap(),
    )
    .await
    .unwrap();
    apply_rgd(&env, one_configmap("takers.test.kroxide.dev", "Taker")).await;
    wait_active(&env, "takers.test.kroxide.dev").await;
    let api = instances(&env, "test.kroxide.dev", "Taker", "apps").await;
    create_instance(&api, "Taker", "precious").await;
    let refused = eventually("ResourceNotOwned", Duration::from_secs(20), async || {
        let o = api.get("precious").await.ok()?;
        o.data["status"]["conditions"]
            .as_array()?
            .iter()
            .find(|c| c["type"] == "ResourcesReady" && c["reason"] == "ResourceNotOwned")
            .cloned()
    })
    .await;
    assert_eq!(refused["status"], "False");
    assert!(
        refused["message"]
            .as_str()
            .unwrap()
            .contains("ConfigMap apps/precious already exists and is not part of this instance's ApplySet"),
        "{refused}"
    );
    let untouched = cms.get("precious").await.unwrap();
    assert_eq!(
        untouched.data.unwrap().into_iter().collect::<Vec<_>>(),
        [("keep".to_string(), "me".to_string())]
    );
    assert!(
        untouched.metadata.labels.unwrap_or_default().is_empty(),
        "labels untouched"
    );
    // Deleting the instance leaves it alone.
    api.delete("precious", &DeleteParams::default()).await.unwrap();
    eventually("instance gone", Duration::from_secs(20), async || {
        api.get_opt("precious").await.unwrap().is_none().then_some(())
    })
    .await;
    assert!(
        cms.get_opt("precious").await.unwrap().is_some(),
        "not deleted with the instance"
    );
    // Handed over explicitly, it is taken.
    cms.patch(
        "precious",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"annotations": {"kroxide.dev/adopt": "true"}}})),
    )
    .await
    .unwrap();
    create_instance(&api, "Taker", "precious").await;
    wait_state(&api, "precious", "ACTIVE").await;
    let adopted = cms.get("precious").await.unwrap();
    assert_eq!(adopted.data.unwrap()["value"], "v");
    running.stop(Duration::from_secs(5)).await;
    env.shutdown().await;
}

/// Regression: a template reading an optional instance field the instance does not set left the
/// instance IN_PROGRESS for ever with GraphResolved=True. Waiting cannot help (only the
/// instance's author can set it), so it is reported, naming the field and the expression.
async fn a_missing_optional_field_is_reported_with_the_field_and_expression(server: Server) {
    let env = Env::start_on(server, "kroxide-controller", Duration::from_millis(100), true).await;
    let running = start(&env, &[]).await;
    apply_rgd(
        &env,
        json!({"apiVersion": "kro.run/v1alpha1", "kind": "ResourceGraphDefinition",
            "metadata": {"name": "optionals.test.kroxide.dev"},
            "spec": {"schema": {"apiVersion": "v1alpha1", "kind": "Optional", "group": "test.kroxide.dev",
                    "spec": {"note": "string"}},
                "resources": [{"id": "cm", "template": {"apiVersion": "v1", "kind": "ConfigMap",
                    "metadata": {"name": "${schema.metadata.name}"}, "data": {"note": "${schema.spec.note}"}}}]}}),
    )
    .await;
    wait_active(&env, "optionals.test.kroxide.dev").await;
    let api = instances(&env, "test.kroxide.dev", "Optional", "apps").await;
    create_instance(&api, "Optional", "o").await;
    let o = wait_state(&api, "o", "ERROR").await;
    let resolved = o.data["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "GraphResolved")
        .unwrap()
        .clone();
    assert_eq!(resolved["status"], "False", "{resolved}");
    assert_eq!(resolved["reason"], "ResolutionFailed", "{resolved}");
    let message = resolved["message"].as_str().unwrap();
    assert!(
        message.contains("resource cm: field data.note: expression \"schema.spec.note\" is unresolved"),
        "{message}"
    );
    // Setting it resolves the instance.
    api.patch(
        "o",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"note": "hello"}})),
    )
    .await
    .unwrap();
    wait_state(&api, "o", "ACTIVE").await;
    running.stop(Duration::from_secs(5)).await;
    env.shutdown().await;
}

/// Regression (starvation): 24 instances whose plugin calls ran into a 2 s deadline delayed an
/// unrelated instance's update by 15–25 s, for minutes. Graphs now take turns for workers and
/// one graph never holds them all.
async fn a_slow_plugin_graph_does_not_starve_other_graphs(server: Server) {
    let env = Env::start_on(server, "kroxide-controller", Duration::from_millis(100), true).await;
    let running = start(&env, &[]).await;
    let wasm = std::fs::read(format!("{}/hostile.wasm", env!("KROXIDE_PLUGIN_DIR"))).unwrap();
    use base64::Engine as _;
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "slow", "namespace": "kroxide-system"},
        "binaryData": {"plugin.wasm": base64::engine::general_purpose::STANDARD.encode(&wasm)}});
    Api::<ConfigMap>::namespaced(env.client.clone(), "kroxide-system")
        .create(&PostParams::default(), &serde_json::from_value(cm).unwrap())
        .await
        .unwrap();
    apply_rgd(
        &env,
        json!({"apiVersion": "kro.run/v1alpha1", "kind": "ResourceGraphDefinition",
            "metadata": {"name": "slowpokes.test.kroxide.dev"},
            "spec": {"schema": {"apiVersion": "v1alpha1", "kind": "Slowpoke", "group": "test.kroxide.dev", "spec": {}},
                "plugin": {"configMapRef": {"name": "slow"}, "timeoutMs": 2000, "config": {"mode": "loop"}}}}),
    )
    .await;
    apply_rgd(&env, one_configmap("quicks.test.kroxide.dev", "Quick")).await;
    wait_active(&env, "slowpokes.test.kroxide.dev").await;
    wait_active(&env, "quicks.test.kroxide.dev").await;
    let quick = instances(&env, "test.kroxide.dev", "Quick", "apps").await;
    let q: DynamicObject = serde_json::from_value(json!({"apiVersion": "test.kroxide.dev/v1alpha1",
        "kind": "Quick", "metadata": {"name": "q", "namespace": "apps"}, "spec": {"value": "before"}}))
    .unwrap();
    quick.create(&PostParams::default(), &q).await.unwrap();
    wait_state(&quick, "q", "ACTIVE").await;
    let slow = instances(&env, "test.kroxide.dev", "Slowpoke", "apps").await;
    for i in 0..24 {
        let o: DynamicObject = serde_json::from_value(json!({"apiVersion": "test.kroxide.dev/v1alpha1",
            "kind": "Slowpoke", "metadata": {"name": format!("s{i:02}"), "namespace": "apps"}, "spec": {}}))
        .unwrap();
        slow.create(&PostParams::default(), &o).await.unwrap();
    }
    // While the slow graph's calls hold workers, the quick instance changes.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let cms: Api<ConfigMap> = Api::namespaced(env.client.clone(), "apps");
    let mut waits = Vec::new();
    for round in 0..3 {
        let value = format!("after-{round}");
        let changed = std::time::Instant::now();
        quick
            .patch(
                "q",
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"value": value}})),
            )
            .await
            .unwrap();
        eventually(
            "the quick instance's child updated",
            Duration::from_secs(60),
            async || {
                let cm = cms.get_opt("q").await.ok()??;
                (cm.data?.get("value")? == &value).then_some(())
            },
        )
        .await;
        waits.push(changed.elapsed());
    }
    println!("an unrelated update reached its child after {waits:?} while 24 plugin calls timed out");
    let worst = waits.iter().max().unwrap();
    assert!(*worst < Duration::from_secs(6), "took {worst:?}");
    running.stop(Duration::ZERO).await;
    env.shutdown().await;
}

/// Regression: the finalizer deleted only the children in the controller's cache, and let the
/// instance go. A child whose create response was lost while its watch was down is in the
/// cluster and nowhere else (the seeded fault test once left such a Deployment behind). Here the
/// cache cannot see the child because it lacks `kro.run/owned`, which the children's watch
/// selects on; it is a member of the instance's ApplySet all the same, and must go with it.
async fn a_member_the_cache_never_saw_is_deleted_with_its_instance(server: Server) {
    let env = Env::start_on(server, "kroxide-controller", Duration::from_millis(100), true).await;
    let running = start(&env, &[]).await;
    apply_rgd(&env, one_configmap("unseen.test.kroxide.dev", "Unseen")).await;
    wait_active(&env, "unseen.test.kroxide.dev").await;
    let api = instances(&env, "test.kroxide.dev", "Unseen", "apps").await;
    let inst: DynamicObject = serde_json::from_value(json!({"apiVersion": "test.kroxide.dev/v1alpha1",
        "kind": "Unseen", "metadata": {"name": "u1", "namespace": "apps"}, "spec": {}}))
    .unwrap();
    api.create(&PostParams::default(), &inst).await.unwrap();
    wait_state(&api, "u1", "ACTIVE").await;
    let live = api.get("u1").await.unwrap();
    let set = live.metadata.labels.as_ref().unwrap()["applyset.kubernetes.io/id"].clone();
    let cms: Api<ConfigMap> = Api::namespaced(env.client.clone(), "apps");
    let unseen: ConfigMap = serde_json::from_value(json!({"metadata": {"name": "u1-unseen",
        "labels": {"applyset.kubernetes.io/part-of": set}}}))
    .unwrap();
    cms.create(&PostParams::default(), &unseen).await.unwrap();
    api.delete("u1", &DeleteParams::default()).await.unwrap();
    eventually("instance gone", Duration::from_secs(30), async || {
        api.get_opt("u1").await.unwrap().is_none().then_some(())
    })
    .await;
    assert!(
        cms.get_opt("u1-unseen")
            .await
            .unwrap()
            .is_none_or(|c| c.metadata.deletion_timestamp.is_some()),
        "the member the cache never saw outlived its instance"
    );
    assert!(
        cms.get_opt("u1").await.unwrap().is_none(),
        "the child it knew is gone too"
    );
    running.stop(Duration::from_secs(5)).await;
    env.shutdown().await;
}

/// A graph naming a custom kind is checked against that kind's CRD in the cluster: refused
/// while the kind is not served (and looked at again, so it recovers without an edit), then
/// refused for a string put into the CRD's integer field, then admitted once fixed.
async fn a_custom_kind_is_type_checked_against_its_crd_once_the_cluster_serves_it(server: Server) {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    let env = Env::start_on(server, "kroxide-controller", Duration::from_millis(100), true).await;
    let running = start(&env, &[]).await;
    let name = "gadgetusers.test.kroxide.dev";
    let graph = |size: &str| {
        json!({"apiVersion": "kro.run/v1alpha1", "kind": "ResourceGraphDefinition", "metadata": {"name": name},
        "spec": {"schema": {"apiVersion": "v1alpha1", "kind": "GadgetUser", "group": "test.kroxide.dev",
                "spec": {"label": "string | default=big", "size": "integer | default=3"}},
            "resources": [{"id": "gadget", "template": {"apiVersion": "tools.kroxide.dev/v1", "kind": "Gadget",
                "metadata": {"name": "${schema.metadata.name}"}, "spec": {"size": size}}}]}})
    };
    let accepted = |want: &'static str| {
        let env = &env;
        async move {
            eventually(
                &format!("GraphAccepted {want}"),
                Duration::from_secs(30),
                async || {
                    let status = rgd_state(env, name).await?;
                    let c = status["conditions"]
                        .as_array()?
                        .iter()
                        .find(|c| c["type"] == "GraphAccepted")?
                        .clone();
                    c["message"]
                        .as_str()
                        .is_some_and(|m| m.contains(want))
                        .then_some(c)
                },
            )
            .await
        }
    };
    apply_rgd(&env, graph("${schema.spec.label}")).await;
    let refused = accepted("schema not found").await;
    assert_eq!(refused["reason"], "InvalidResourceGraph");
    let crd: CustomResourceDefinition = serde_json::from_value(json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "gadgets.tools.kroxide.dev"},
        "spec": {"group": "tools.kroxide.dev", "scope": "Namespaced",
            "names": {"plural": "gadgets", "singular": "gadget", "kind": "Gadget", "listKind": "GadgetList"},
            "versions": [{"name": "v1", "served": true, "storage": true, "schema": {"openAPIV3Schema": {
                "type": "object", "properties": {"spec": {"type": "object", "properties": {"size": {"type": "integer"}}}}}}}]}}))
    .unwrap();
    Api::<CustomResourceDefinition>::all(env.client.clone())
        .create(&PostParams::default(), &crd)
        .await
        .unwrap();
    let mismatch = accepted("type mismatch").await;
    assert_eq!(
        mismatch["message"],
        "type mismatch in resource \"gadget\" at path \"spec.size\": expression \"schema.spec.label\" returns type \"string\" but expected \"int\""
    );
    apply_rgd(&env, graph("${schema.spec.size}")).await;
    wait_active(&env, name).await;
    running.stop(Duration::from_secs(5)).await;
    env.shutdown().await;
}

/// The CRD the controller applies for the web-service example is the one `kroxide generate crd`
/// prints, status fields typed from their expressions.
async fn the_crd_the_controller_applies_is_the_one_generate_crd_prints(server: Server) {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    let env = Env::start_on(server, "kroxide-controller", Duration::from_millis(100), true).await;
    let running = start(&env, &[]).await;
    let file = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/web-service/rgd.yaml");
    let rgd = kroxide::yaml::read_documents(&file).unwrap().remove(0);
    apply_rgd(&env, rgd).await;
    wait_active(&env, "webservices.examples.kroxide.dev").await;
    let generated =
        kroxide::yaml::parse_documents(&kroxide::commands::generate::crd(Some(&file)).unwrap(), &file)
            .unwrap()
            .remove(0);
    let live = Api::<CustomResourceDefinition>::all(env.client.clone())
        .get("webservices.examples.kroxide.dev")
        .await
        .unwrap();
    let live = serde_json::to_value(live).unwrap();
    // Through the same type, so numbers print alike (the API's minimum is a float).
    let generated =
        serde_json::to_value(serde_json::from_value::<CustomResourceDefinition>(generated).unwrap()).unwrap();
    let schema = |crd: &Value| {
        crd.pointer("/spec/versions/0/schema/openAPIV3Schema")
            .cloned()
            .unwrap()
    };
    assert_eq!(schema(&live), schema(&generated));
    assert_eq!(live["spec"]["names"], generated["spec"]["names"]);
    assert_eq!(
        schema(&live)["properties"]["status"]["properties"]["availableReplicas"],
        json!({"type": "integer"})
    );
    running.stop(Duration::from_secs(5)).await;
    env.shutdown().await;
}

/// Regression: a controller killed with a create in flight, whose request landed after the next
/// controller had finalized the instance, left that child behind for good (found by the crash
/// test: `Deployment w0112`). Children of an instance the server no longer has are collected.
async fn children_left_after_their_instance_was_finalized_are_collected(server: Server) {
    let env = Env::start_on(server, "kroxide-controller", Duration::from_millis(100), true).await;
    let running = start(&env, &[]).await;
    apply_rgd(&env, three_configmaps()).await;
    wait_active(&env, "budgets.test.kroxide.dev").await;
    let api = instances(&env, "test.kroxide.dev", "Budget", "apps").await;
    create_instance(&api, "Budget", "late").await;
    wait_state(&api, "late", "ACTIVE").await;
    running.stop(Duration::from_secs(5)).await;
    // The instance goes while no controller runs, its finalizer taken off: its children stay,
    // as a child created after a finalizer's last look would.
    api.patch(
        "late",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .unwrap();
    api.delete("late", &DeleteParams::default()).await.unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(env.client.clone(), "apps");
    assert!(cms.get_opt("late-one").await.unwrap().is_some());
    let running = start(&env, &[]).await;
    eventually(
        "the orphaned children deleted",
        Duration::from_secs(20),
        async || {
            let mut left = 0;
            for name in ["late-one", "late-two", "late-three"] {
                if cms
                    .get_opt(name)
                    .await
                    .ok()?
                    .is_some_and(|c| c.metadata.deletion_timestamp.is_none())
                {
                    left += 1;
                }
            }
            (left == 0).then_some(())
        },
    )
    .await;
    running.stop(Duration::from_secs(5)).await;
    env.shutdown().await;
}

/// Regression: the event recorder folds Events of one reason and action into a series that
/// keeps its first note, so an instance's later state changes were counted under the note of
/// its first (`(new) -> IN_PROGRESS`) and never told.
async fn each_state_change_of_an_instance_is_an_event_with_its_own_note(server: Server) {
    use k8s_openapi::api::events::v1::Event;
    let env = Env::start_on(server, "kroxide-controller", Duration::from_millis(100), true).await;
    let running = start(&env, &[]).await;
    let rgd = json!({"apiVersion": "kro.run/v1alpha1", "kind": "ResourceGraphDefinition",
        "metadata": {"name": "gated.test.kroxide.dev"},
        "spec": {"schema": {"apiVersion": "v1alpha1", "kind": "Gated", "group": "test.kroxide.dev", "spec": {}},
            "resources": [
                {"id": "gate", "externalRef": {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "gate"}}},
                {"id": "copy", "template": {"apiVersion": "v1", "kind": "ConfigMap",
                    "metadata": {"name": "${schema.metadata.name}-copy"}, "data": {"v": "${gate.data.v}"}}}]}});
    apply_rgd(&env, rgd).await;
    wait_active(&env, "gated.test.kroxide.dev").await;
    let api = instances(&env, "test.kroxide.dev", "Gated", "apps").await;
    create_instance(&api, "Gated", "g1").await;
    wait_state(&api, "g1", "IN_PROGRESS").await;
    let cms: Api<ConfigMap> = Api::namespaced(env.client.clone(), "apps");
    cms.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "gate"}, "data": {"v": "open"}}))
        .unwrap(),
    )
    .await
    .unwrap();
    wait_state(&api, "g1", "ACTIVE").await;
    let events: Api<Event> = Api::namespaced(env.client.clone(), "apps");
    let notes = eventually("both transitions recorded", Duration::from_secs(10), async || {
        let notes: Vec<String> = events
            .list(&Default::default())
            .await
            .ok()?
            .items
            .into_iter()
            .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("g1"))
            .filter(|e| e.reason.as_deref() == Some("StateChanged"))
            .filter_map(|e| e.note)
            .collect();
        notes
            .iter()
            .any(|n| n.starts_with("IN_PROGRESS -> ACTIVE"))
            .then_some(notes)
    })
    .await;
    assert!(
        notes.iter().any(|n| n.starts_with("(new) -> IN_PROGRESS")),
        "{notes:?}"
    );
    running.stop(Duration::from_secs(5)).await;
    env.shutdown().await;
}

/// A terminating child holds the others back, as in kro: a dependent that becomes desired while
/// the object it reads is being deleted is not made from that object; once the object is gone,
/// both are made anew.
async fn a_terminating_dependency_holds_its_dependents_back(server: Server) {
    let env = Env::start_on(server, "kroxide-controller", Duration::from_millis(300), true).await;
    let running = start(&env, &[]).await;
    apply_rgd(
        &env,
        json!({"apiVersion": "kro.run/v1alpha1", "kind": "ResourceGraphDefinition",
            "metadata": {"name": "holds.test.kroxide.dev"},
            "spec": {"schema": {"apiVersion": "v1alpha1", "kind": "Hold", "group": "test.kroxide.dev",
                    "spec": {"more": "boolean | default=false"}},
                "resources": [
                    {"id": "first", "template": {"apiVersion": "v1", "kind": "ConfigMap",
                        "metadata": {"name": "${schema.metadata.name}-first"}, "data": {"v": "1"}}},
                    {"id": "second", "includeWhen": ["${schema.spec.more}"],
                     "template": {"apiVersion": "v1", "kind": "ConfigMap",
                        "metadata": {"name": "${schema.metadata.name}-second"}, "data": {"from": "${first.metadata.uid}"}}}]}}),
    )
    .await;
    wait_active(&env, "holds.test.kroxide.dev").await;
    let api = instances(&env, "test.kroxide.dev", "Hold", "apps").await;
    create_instance(&api, "Hold", "h").await;
    wait_state(&api, "h", "ACTIVE").await;
    let cms: Api<ConfigMap> = Api::namespaced(env.client.clone(), "apps");
    let merge = |v: Value| Patch::Merge(v);
    cms.patch(
        "h-first",
        &PatchParams::default(),
        &merge(json!({"metadata": {"finalizers": ["test.kroxide.dev/hold"]}})),
    )
    .await
    .unwrap();
    let old_uid = cms.get("h-first").await.unwrap().metadata.uid.unwrap();
    cms.delete("h-first", &DeleteParams::default()).await.unwrap();
    let resources_ready = |o: &DynamicObject| {
        o.data["status"]["conditions"]
            .as_array()
            .and_then(|cs| cs.iter().find(|c| c["type"] == "ResourcesReady").cloned())
            .unwrap_or_default()
    };
    // The dependent becomes desired while the object it reads is terminating.
    api.patch(
        "h",
        &PatchParams::default(),
        &merge(json!({"spec": {"more": true}})),
    )
    .await
    .unwrap();
    let held = eventually(
        "the instance to report the terminating child",
        Duration::from_secs(20),
        async || {
            let o = api.get("h").await.ok()?;
            let c = resources_ready(&o);
            (c["reason"] == "ResourceDeleting" && c["observedGeneration"] == 2).then_some(c)
        },
    )
    .await;
    assert_eq!(
        held["message"],
        "resource \"apps/h-first\" for node \"first\" is currently being deleted; waiting for deletion to complete before continuing reconciliation"
    );
    assert!(
        cms.get_opt("h-second").await.unwrap().is_none(),
        "a dependent was made from a terminating object"
    );
    cms.patch(
        "h-first",
        &PatchParams::default(),
        &merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .unwrap();
    wait_state(&api, "h", "ACTIVE").await;
    let first = cms.get("h-first").await.unwrap();
    let second = cms.get("h-second").await.unwrap();
    assert_ne!(first.metadata.uid.as_deref(), Some(old_uid.as_str()), "made anew");
    assert_eq!(second.data.unwrap()["from"], first.metadata.uid.unwrap());
    running.stop(Duration::from_secs(5)).await;
    env.shutdown().await;
}

/// The graph's CRD is the graph's: one edited by hand (a property removed, another added) is
/// put back as the graph has it, and one deleted by hand is made anew, the graph Active again.
async fn a_crd_edited_or_deleted_by_hand_is_restored_from_the_graph(server: Server) {
    let env = Env::start_on(server, "kroxide-controller", Duration::from_millis(300), true).await;
    let running = start(&env, &[]).await;
    apply_rgd(&env, three_configmaps()).await;
    wait_active(&env, "budgets.test.kroxide.dev").await;
    let crds: Api<
        k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
    > = Api::all(env.client.clone());
    let name = "budgets.test.kroxide.dev";
    let spec_properties = |crd: &k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition| {
        let v = serde_json::to_value(crd).unwrap();
        let props = v.pointer("/spec/versions/0/schema/openAPIV3Schema/properties/spec/properties").cloned();
        props
            .and_then(|p| p.as_object().map(|m| m.keys().cloned().collect::<Vec<_>>()))
            .unwrap_or_default()
    };
    assert_eq!(spec_properties(&crds.get(name).await.unwrap()), ["value"]);
    let path = "/spec/versions/0/schema/openAPIV3Schema/properties/spec/properties";
    let edit = json!([
        {"op": "remove", "path": format!("{path}/value")},
        {"op": "add", "path": format!("{path}/extra"), "value": {"type": "string"}}]);
    crds.patch(
        name,
        &PatchParams::default(),
        &Patch::<Value>::Json(serde_json::from_value(edit).unwrap()),
    )
    .await
    .unwrap();
    eventually(
        "the CRD edited by hand to be restored",
        Duration::from_secs(20),
        async || {
            let crd = crds.get(name).await.ok()?;
            (spec_properties(&crd) == ["value"]).then_some(())
        },
    )
    .await;
    crds.delete(name, &DeleteParams::default()).await.unwrap();
    eventually(
        "the CRD deleted by hand to be made anew",
        Duration::from_secs(30),
        async || {
            let crd = crds.get_opt(name).await.ok()??;
            (crd.metadata.deletion_timestamp.is_none() && spec_properties(&crd) == ["value"]).then_some(())
        },
    )
    .await;
    wait_active(&env, name).await;
    let api = instances(&env, "test.kroxide.dev", "Budget", "apps").await;
    create_instance(&api, "Budget", "again").await;
    wait_state(&api, "again", "ACTIVE").await;
    running.stop(Duration::from_secs(5)).await;
    env.shutdown().await;
}

/// A graph refused because another graph's CRD has its kind becomes Active by itself once that
/// CRD is gone (the other graph deleted, with CRD deletion allowed): nothing else re-queues it.
async fn a_graph_refused_for_another_graphs_crd_recovers_when_that_crd_goes(server: Server) {
    let env = Env::start_on(server, "kroxide-controller", Duration::from_millis(300), true).await;
    let running = start(&env, &["--allow-crd-deletion"]).await;
    apply_rgd(&env, three_configmaps()).await;
    wait_active(&env, "budgets.test.kroxide.dev").await;
    let mut second = three_configmaps();
    second["metadata"]["name"] = json!("budgets-two.test.kroxide.dev");
    apply_rgd(&env, second).await;
    let refused = eventually(
        "the second graph to be refused",
        Duration::from_secs(20),
        async || {
            let s = rgd_state(&env, "budgets-two.test.kroxide.dev").await?;
            let c = s["conditions"]
                .as_array()?
                .iter()
                .find(|c| c["type"] == "KindReady")?
                .clone();
            (c["status"] == "False").then_some(c)
        },
    )
    .await;
    assert!(
        refused["message"]
            .as_str()
            .unwrap()
            .contains("belongs to ResourceGraphDefinition budgets.test.kroxide.dev"),
        "{refused}"
    );
    rgd_api(&env.client)
        .delete("budgets.test.kroxide.dev", &DeleteParams::default())
        .await
        .unwrap();
    wait_active(&env, "budgets-two.test.kroxide.dev").await;
    running.stop(Duration::from_secs(5)).await;
    env.shutdown().await;
}

/// GraphRevisions are kept up to `--rgd-max-graph-revisions`, the oldest deleted first; the
/// numbering goes on from the newest, also after a restart; a graph deleted and made again
/// under the same name takes over the revisions left and numbers on.
async fn graph_revisions_are_retained_up_to_the_limit_and_numbered_on(server: Server) {
    let env = Env::start_on(server, "kroxide-controller", Duration::from_millis(300), true).await;
    support::install_graph_revision_crd(&env.client).await;
    let grs = Api::<DynamicObject>::all_with(
        env.client.clone(),
        &kube::api::ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("internal.kro.run", "v1alpha1", "GraphRevision"),
            "graphrevisions",
        ),
    );
    let names = async || {
        let mut names: Vec<String> = grs
            .list(&Default::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .filter_map(|g| g.metadata.name)
            .collect();
        names.sort();
        names
    };
    let running = start(&env, &["--rgd-max-graph-revisions=2"]).await;
    let mut rgd = three_configmaps();
    for value in ["a", "b", "c"] {
        rgd["spec"]["schema"]["spec"]["value"] = json!(format!("string | default={value}"));
        apply_rgd(&env, rgd.clone()).await;
        let want = format!("budgets.test.kroxide.dev-r0000{}", value.as_bytes()[0] - b'a' + 1);
        eventually(&format!("{want} recorded"), Duration::from_secs(20), async || {
            names().await.contains(&want).then_some(())
        })
        .await;
    }
    eventually("the oldest to be deleted", Duration::from_secs(20), async || {
        (names().await
            == [
                "budgets.test.kroxide.dev-r00002",
                "budgets.test.kroxide.dev-r00003",
            ])
        .then_some(())
    })
    .await;
    // A restart numbers on from the revisions there are.
    running.stop(Duration::from_secs(5)).await;
    let running = start(&env, &["--rgd-max-graph-revisions=2"]).await;
    rgd["spec"]["schema"]["spec"]["value"] = json!("string | default=d");
    apply_rgd(&env, rgd.clone()).await;
    eventually("r00004 after a restart", Duration::from_secs(20), async || {
        (names().await
            == [
                "budgets.test.kroxide.dev-r00003",
                "budgets.test.kroxide.dev-r00004",
            ])
        .then_some(())
    })
    .await;
    // The revision object is created before the graph's status reports it: wait for the status.
    eventually(
        "lastIssuedRevision 4 in status",
        Duration::from_secs(20),
        async || {
            let state = rgd_state(&env, "budgets.test.kroxide.dev").await?;
            (state["lastIssuedRevision"] == 4).then_some(())
        },
    )
    .await;
    running.stop(Duration::from_secs(5)).await;
    env.shutdown().await;
}

on_both_servers!(
    graph_revisions_are_retained_up_to_the_limit_and_numbered_on,
    a_graph_refused_for_another_graphs_crd_recovers_when_that_crd_goes,
    a_crd_edited_or_deleted_by_hand_is_restored_from_the_graph,
    a_terminating_dependency_holds_its_dependents_back,
    each_state_change_of_an_instance_is_an_event_with_its_own_note,
    children_left_after_their_instance_was_finalized_are_collected,
    a_custom_kind_is_type_checked_against_its_crd_once_the_cluster_serves_it,
    the_crd_the_controller_applies_is_the_one_generate_crd_prints,
    a_member_the_cache_never_saw_is_deleted_with_its_instance,
    a_slow_plugin_graph_does_not_starve_other_graphs,
    memory_of_deleted_instances_is_released,
    a_missing_optional_field_is_reported_with_the_field_and_expression,
    an_object_the_instance_did_not_make_is_never_taken_over,
    a_graph_deleted_while_the_controller_is_down_still_finalizes_its_instances,
    an_instance_of_three_configmaps_costs_at_most_k_plus_2_writes_then_none,
    live_objects_holding_server_defaults_cause_no_writes,
    a_restarted_controller_writes_nothing_over_unchanged_instances,
    state_made_by_kro_is_adopted_without_creates_or_deletes,
    a_controller_killed_mid_reconcile_is_replaced_without_duplicates_or_orphans,
    a_graph_deleted_with_instances_keeps_serving_them_until_they_go,
    breaking_schema_changes_are_refused_unless_allowed,
);

/// Going back to kro (docs/migration.md): kro's own controller (v0.9.4, built by
/// scripts/cluster from kro's Go module) takes over instances kroxide made, each with a child in
/// a second namespace. One is deleted while no controller runs: kro, starting, trusts only the
/// ApplySet parent kroxide wrote to find its children (it refuses a parent it does not
/// recognise), and deletes them in kroxide's apply-order waves, dependents first. The other is
/// taken over with no child created or deleted, then deleted under kro.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_kroxide_made_are_taken_back_and_deleted_by_kro() {
    let env = Env::start_on(
        Server::Real,
        "kroxide-controller",
        Duration::from_millis(1500),
        true,
    )
    .await;
    let Backend::Real(cluster) = &env.backend else {
        unreachable!()
    };
    let (kro_bin, kro_crds) = (cluster.bin_dir().join("kro"), cluster.bin_dir().join("kro-crds"));
    let mut rgd = three_configmaps();
    rgd["spec"]["resources"]
        .as_array_mut()
        .unwrap()
        .push(json!({"id": "elsewhere",
        "template": {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "${schema.metadata.name}-elsewhere", "namespace": "kroxide-system"},
            "data": {"from": "${three.metadata.name}"}}}));
    let kroxide = start(&env, &[]).await;
    apply_rgd(&env, rgd).await;
    wait_active(&env, "budgets.test.kroxide.dev").await;
    let api = instances(&env, "test.kroxide.dev", "Budget", "apps").await;
    for name in ["back", "gone"] {
        create_instance(&api, "Budget", name).await;
    }
    for name in ["back", "gone"] {
        let made = wait_state(&api, name, "ACTIVE").await;
        let annotations = serde_json::to_value(&made.metadata.annotations).unwrap();
        assert_eq!(
            annotations["applyset.kubernetes.io/additional-namespaces"],
            "kroxide-system"
        );
    }
    kroxide.stop(Duration::from_secs(5)).await;
    api.delete("gone", &DeleteParams::default()).await.unwrap();

    // The steps of "Going back to kro": kro's CRDs over kroxide's, then kro's controller.
    env.ok(
        env.kubectl(),
        &[
            "apply",
            "--server-side",
            "--force-conflicts",
            "-f",
            kro_crds.to_str().unwrap(),
        ],
        None,
    );
    env.reset_requests();
    let kro = Kro::start(&kro_bin, &env);
    let cms: Api<ConfigMap> = Api::all(env.client.clone());
    let children = |instance: &'static str| {
        let cms = cms.clone();
        async move {
            let selector = format!("kro.run/instance-name={instance}");
            cms.list(&kube::api::ListParams::default().labels(&selector))
                .await
                .unwrap()
                .items
        }
    };
    eventually(
        "kro to delete the instance deleted while no controller ran",
        Duration::from_secs(60),
        async || {
            (api.get_opt("gone").await.unwrap().is_none() && children("gone").await.is_empty()).then_some(())
        },
    )
    .await;
    let deleted = |instance: &str| -> Vec<String> {
        env.requests()
            .into_iter()
            .filter(|r| r.user_agent.starts_with("kro/") && r.verb == "delete" && r.resource == "configmaps")
            .filter(|r| r.name.starts_with(&format!("{instance}-")))
            .map(|r| r.name)
            .collect()
    };
    let waves = deleted("gone");
    assert_eq!(
        waves,
        ["gone-elsewhere", "gone-three", "gone-two", "gone-one"],
        "kro deletes the highest apply order first, one wave at a time"
    );

    // kro has taken over once its labeller and its apply have stamped its version everywhere.
    let version = |labels: &Option<std::collections::BTreeMap<String, String>>| {
        labels
            .as_ref()
            .and_then(|l| l.get("kro.run/kro-version").cloned())
    };
    eventually(
        "kro to take an instance and its children over",
        Duration::from_secs(60),
        async || {
            let inst = api.get("back").await.ok()?;
            let all = children("back").await;
            let taken = version(&inst.metadata.labels)?.starts_with("v0.")
                && all.len() == 4
                && all
                    .iter()
                    .all(|c| version(&c.metadata.labels).is_some_and(|v| v.starts_with("v0.")));
            (taken && inst.data["status"]["state"] == "ACTIVE").then_some(())
        },
    )
    .await;
    let churn: Vec<_> = env
        .requests()
        .into_iter()
        .filter(|r| r.user_agent.starts_with("kro/") && r.is_write() && r.resource == "configmaps")
        .filter(|r| {
            r.name.starts_with("back-") && (r.verb == "create" || r.verb == "delete" || r.code == 201)
        })
        .collect();
    assert!(
        churn.is_empty(),
        "kro created or deleted children while taking over: {churn:?}"
    );
    api.delete("back", &DeleteParams::default()).await.unwrap();
    eventually(
        "kro to delete the instance it took over",
        Duration::from_secs(60),
        async || {
            (api.get_opt("back").await.unwrap().is_none() && children("back").await.is_empty()).then_some(())
        },
    )
    .await;
    drop(kro);
    env.shutdown().await;
}

/// kro's controller as a process, logging to `kro.log` in the test's scratch directory; killed
/// when dropped, and its log printed when the test is failing.
struct Kro {
    process: std::process::Child,
    log: std::path::PathBuf,
}

impl Kro {
    fn start(bin: &std::path::Path, env: &Env) -> Self {
        let log = env.scratch.path().join("kro.log");
        let file = std::fs::File::create(&log).unwrap();
        let process = std::process::Command::new(bin)
            .args([
                &format!("--kubeconfig={}", env.kubeconfig.display()),
                "--metrics-bind-address=0",
                "--health-probe-bind-address=0",
            ])
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .unwrap();
        Self { process, log }
    }
}

impl Drop for Kro {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
        if std::thread::panicking() {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            eprintln!("last lines of kro's log:");
            for line in tail.into_iter().rev() {
                eprintln!("{line}");
            }
        }
    }
}

/// A graph of one ConfigMap per instance.
fn one_configmap(name: &str, kind: &str) -> Value {
    json!({"apiVersion": "kro.run/v1alpha1", "kind": "ResourceGraphDefinition",
    "metadata": {"name": name},
    "spec": {"schema": {"apiVersion": "v1alpha1", "kind": kind, "group": "test.kroxide.dev",
            "spec": {"value": "string | default=v"}},
        "resources": [{"id": "cm", "template": {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "${schema.metadata.name}"}, "data": {"value": "${schema.spec.value}"}}}]}})
}

/// Regression (restart): a restarted controller resolved an instance against the children it
/// read before their watch had listed them, and its status stage reused that pass: an unchanged
/// ACTIVE instance was written IN_PROGRESS ("waiting for cm to be created"), then ACTIVE again.
/// Seen as 6 status writes over 5 instances on the real control plane in CI.
///
/// Embedded server only: it holds the restarted controller's list of ConfigMaps.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_controller_resolves_children_only_once_their_watch_has_listed_them() {
    let env = Env::start("kroxide-controller", Duration::from_millis(100), true).await;
    support::install_graph_revision_crd(&env.client).await;
    let first = start(&env, &[]).await;
    apply_rgd(&env, one_configmap("relisted.test.kroxide.dev", "Relisted")).await;
    wait_active(&env, "relisted.test.kroxide.dev").await;
    let api = instances(&env, "test.kroxide.dev", "Relisted", "apps").await;
    create_instance(&api, "Relisted", "r").await;
    wait_state(&api, "r", "ACTIVE").await;
    env.settle().await;
    first.stop(Duration::from_secs(5)).await;
    env.embedded().faults().add(kroxide_apiserver::Fault::delay(
        "list",
        "configmaps",
        Duration::from_millis(800),
    ));
    env.reset_requests();
    let second = start(&env, &[]).await;
    eventually("the child remembered", Duration::from_secs(30), async || {
        (second.footprint().applied_children == 1).then_some(())
    })
    .await;
    env.settle().await;
    let written = writes(&env);
    assert!(
        written.is_empty(),
        "nothing changed, nothing written:\n{}",
        write_table(&env)
    );
    env.embedded().faults().clear();
    second.stop(Duration::from_secs(5)).await;
    env.shutdown().await;
}

/// Regression (start-up race): instances the watch lists before its initial list completes
/// were reconciled against an empty cache, taken for deleted and never looked at again.
///
/// Embedded server only: it delays each page of the instance list (600 instances are two pages
/// of 500), which the real control plane cannot be made to do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_listed_while_the_cache_fills_are_all_reconciled_after_a_restart() {
    let env = Env::start("kroxide-controller", Duration::from_millis(100), true).await;
    let first = start(&env, &[]).await;
    apply_rgd(&env, one_configmap("listed.test.kroxide.dev", "Listed")).await;
    wait_active(&env, "listed.test.kroxide.dev").await;
    first.stop(Duration::from_secs(5)).await;
    let api = instances(&env, "test.kroxide.dev", "Listed", "apps").await;
    for i in 0..600 {
        let inst: DynamicObject = serde_json::from_value(json!({"apiVersion": "test.kroxide.dev/v1alpha1",
            "kind": "Listed", "metadata": {"name": format!("l{i:03}"), "namespace": "apps"}, "spec": {}}))
        .unwrap();
        api.create(&PostParams::default(), &inst).await.unwrap();
    }
    env.embedded().faults().add(kroxide_apiserver::Fault::delay(
        "list",
        "listeds",
        Duration::from_millis(1500),
    ));
    let second = start(&env, &[]).await;
    let active = async || {
        api.list(&Default::default())
            .await
            .unwrap()
            .items
            .iter()
            .filter(|o| o.data["status"]["state"] == "ACTIVE")
            .count()
    };
    let counted = eventually("600 instances ACTIVE", Duration::from_secs(60), async || {
        let n = active().await;
        (n == 600).then_some(n)
    })
    .await;
    assert_eq!(counted, 600);
    second.stop(Duration::from_secs(5)).await;
    env.shutdown().await;
}

/// Regression (found by the fault suite): an instance deleted after the controller read it and
/// before its finalizer landed was brought back by that write (a server-side apply creates what
/// it does not find), without a spec, with our finalizer: it stayed for ever in ERROR and a
/// second delete hung on the finalizer.
///
/// Embedded server only: it holds the controller's write until the instance is deleted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_deleted_before_its_finalizer_lands_is_not_brought_back() {
    let env = Env::start("kroxide-controller", Duration::from_millis(100), true).await;
    let running = start(&env, &[]).await;
    apply_rgd(&env, one_configmap("early.test.kroxide.dev", "Early")).await;
    wait_active(&env, "early.test.kroxide.dev").await;
    let server = env.embedded();
    server
        .faults()
        .add(kroxide_apiserver::Fault::delay("patch", "earlies", Duration::from_millis(1500)).times(1));
    let api = instances(&env, "test.kroxide.dev", "Early", "apps").await;
    create_instance(&api, "Early", "early").await;
    // The controller's first write to the instance has arrived and is held ...
    eventually(
        "the controller's write held",
        Duration::from_secs(10),
        async || (server.faults().pending() == 0).then_some(()),
    )
    .await;
    // ... when the instance, without a finalizer yet, is deleted at once.
    api.delete("early", &DeleteParams::default()).await.unwrap();
    assert!(api.get_opt("early").await.unwrap().is_none());
    let answered =
        eventually("the held write answered", Duration::from_secs(10), async || {
            server.counters().snapshot().into_iter().find(|r| {
                r.verb == "patch" && r.resource == "earlies" && r.user_agent.starts_with("kroxide/")
            })
        })
        .await;
    assert_eq!(
        answered.code, 404,
        "the write must not create the instance: {answered:?}"
    );
    assert!(
        api.get_opt("early").await.unwrap().is_none(),
        "the instance came back"
    );
    assert!(
        env.names("v1", "ConfigMap", Some("apps")).await.is_empty(),
        "a child was made"
    );
    running.stop(Duration::from_secs(5)).await;
    env.shutdown().await;
}

/// Regression (found by the fault suite): when the write of the instance's finalizer failed,
/// the reconcile went on and made the children; the instance, deleted then, went at once
/// (no finalizer) and left its children behind. Now nothing is made until the finalizer is on.
///
/// Embedded server only: it fails the controller's writes to the instance on demand.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_child_is_made_while_the_instance_lacks_its_finalizer() {
    let env = Env::start("kroxide-controller", Duration::from_millis(100), true).await;
    let running = start(&env, &[]).await;
    apply_rgd(&env, one_configmap("unmanaged.test.kroxide.dev", "Unmanaged")).await;
    wait_active(&env, "unmanaged.test.kroxide.dev").await;
    let server = env.embedded();
    // The first write to the instance (its labels and finalizer) fails; later ones go through.
    server
        .faults()
        .add(kroxide_apiserver::Fault::new("patch", "unmanageds", 500).times(1));
    server.counters().reset();
    let api = instances(&env, "test.kroxide.dev", "Unmanaged", "apps").await;
    create_instance(&api, "Unmanaged", "u").await;
    let done = wait_state(&api, "u", "ACTIVE").await;
    assert_eq!(
        done.metadata.finalizers.as_deref(),
        Some(&["kro.run/finalizer".to_string()][..])
    );
    let log = server.counters().snapshot();
    let ours = |r: &&kroxide_apiserver::Request| r.user_agent.starts_with("kroxide/") && r.verb == "patch";
    let finalized = log
        .iter()
        .position(|r| {
            ours(&r) && r.resource == "unmanageds" && r.field_manager == "kro.run/labeller" && r.code < 300
        })
        .expect("the finalizer was written");
    let child = log
        .iter()
        .position(|r| ours(&r) && r.resource == "configmaps")
        .expect("the child was applied");
    assert!(
        child > finalized,
        "the child was applied (request {child}) before the finalizer was on (request {finalized})"
    );
    running.stop(Duration::from_secs(5)).await;
    env.shutdown().await;
}

/// Regression (found by the fault suite): once an instance was finalized, reconciles reading a
/// watch cache that had not caught up with its deletion made its children again (and could
/// create the instance anew): they were left behind for good.
///
/// Embedded server only: it keeps the instance watch down while the children watch runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_finalized_instance_gets_no_children_again_from_a_lagging_cache() {
    let env = Env::start("kroxide-controller", Duration::from_millis(100), true).await;
    let running = start(&env, &[]).await;
    let mut rgd = one_configmap("lagging.test.kroxide.dev", "Lagging");
    rgd["spec"]["schema"]["status"] = json!({"extra": "${cm.data.?extra.orValue('')}"});
    apply_rgd(&env, rgd).await;
    wait_active(&env, "lagging.test.kroxide.dev").await;
    let api = instances(&env, "test.kroxide.dev", "Lagging", "apps").await;
    create_instance(&api, "Lagging", "lag").await;
    wait_state(&api, "lag", "ACTIVE").await;
    // The instance watch goes down and stays down; the children watch comes back.
    let server = env.embedded();
    server
        .faults()
        .add(kroxide_apiserver::Fault::new("watch", "laggings", 503));
    server.drop_watches();
    api.delete("lag", &DeleteParams::default()).await.unwrap();
    // Edits of the child make the controller write the instance's status; the answers show it
    // the deletion its cache has not seen; it finalizes; the deletion of the child brings it
    // back to an instance that, in its cache, is not deleting.
    let cms: Api<ConfigMap> = Api::namespaced(env.client.clone(), "apps");
    let mut edit = 0;
    eventually("the instance finalized", Duration::from_secs(30), async || {
        edit += 1;
        let patch = json!({"data": {"extra": format!("e{edit}")}});
        let _ = cms
            .patch("lag", &PatchParams::default(), &Patch::Merge(&patch))
            .await;
        api.get_opt("lag").await.unwrap().is_none().then_some(())
    })
    .await;
    eventually("no child left", Duration::from_secs(10), async || {
        env.names("v1", "ConfigMap", Some("apps"))
            .await
            .is_empty()
            .then_some(())
    })
    .await;
    // And it stays so once the instance watch is back and reports the deletion.
    server.faults().clear();
    eventually("the instance watch back", Duration::from_secs(30), async || {
        server
            .counters()
            .snapshot()
            .into_iter()
            .rev()
            .find(|r| r.verb == "watch" && r.resource == "laggings" && r.code == 200)
    })
    .await;
    let requests = server.counters().snapshot().len();
    eventually("the controller idle", Duration::from_secs(10), async || {
        let n = server.counters().snapshot().len();
        (n == requests).then_some(())
    })
    .await;
    assert!(
        env.names("v1", "ConfigMap", Some("apps")).await.is_empty(),
        "a child was made again"
    );
    assert!(
        api.get_opt("lag").await.unwrap().is_none(),
        "the instance came back"
    );
    running.stop(Duration::from_secs(5)).await;
    env.shutdown().await;
}

/// Regression (watch gap): children deleted while the children watch was down, its resume
/// answered with 410 Gone, were never recreated: the relist did not drop them from the cache,
/// and the instance kept reporting ACTIVE.
///
/// Embedded server only: it cuts watches, fails their resumption and compacts its history on
/// demand.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn children_deleted_during_a_watch_gap_are_recreated_after_the_relist() {
    let env = Env::start("kroxide-controller", Duration::from_millis(100), true).await;
    let running = start(&env, &[]).await;
    apply_rgd(&env, three_configmaps()).await;
    wait_active(&env, "budgets.test.kroxide.dev").await;
    let api = instances(&env, "test.kroxide.dev", "Budget", "apps").await;
    create_instance(&api, "Budget", "gap").await;
    wait_state(&api, "gap", "ACTIVE").await;
    let server = env.embedded();
    // The children watch goes down and cannot come back for now.
    server
        .faults()
        .add(kroxide_apiserver::Fault::new("watch", "configmaps", 503));
    server.drop_watches();
    let cms: Api<ConfigMap> = Api::namespaced(env.client.clone(), "apps");
    for name in ["gap-one", "gap-two", "gap-three"] {
        cms.delete(name, &DeleteParams::default()).await.unwrap();
    }
    // The history the watch would resume from is gone: its resumption gets 410 and relists.
    server.compact();
    server.faults().clear();
    eventually("children recreated", Duration::from_secs(30), async || {
        (env.names("v1", "ConfigMap", Some("apps")).await == ["gap-one", "gap-three", "gap-two"])
            .then_some(())
    })
    .await;
    wait_state(&api, "gap", "ACTIVE").await;
    running.stop(Duration::from_secs(5)).await;
    env.shutdown().await;
}

/// Regression: a CRD that is slow to become Established (one that never does, at worst) held
/// the single graph worker for 30 s at a time, so unrelated graphs waited.
///
/// Embedded server only: it delays establishment on demand.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crd_slow_to_be_established_does_not_hold_up_other_graphs() {
    let env = Env::start("kroxide-controller", Duration::from_millis(100), true).await;
    let running = start(&env, &[]).await;
    env.embedded().set_establish_delay(Duration::from_secs(120));
    apply_rgd(&env, one_configmap("slows.test.kroxide.dev", "Slow")).await;
    let waiting = eventually("KindReady=False", Duration::from_secs(10), async || {
        rgd_state(&env, "slows.test.kroxide.dev").await.and_then(|s| {
            s["conditions"]
                .as_array()?
                .iter()
                .find(|c| c["type"] == "KindReady" && c["status"] == "False")
                .cloned()
        })
    })
    .await;
    assert_eq!(waiting["reason"], "Pending", "{waiting}");
    assert!(
        waiting["message"]
            .as_str()
            .unwrap()
            .starts_with("waiting for CustomResourceDefinition slows.test.kroxide.dev to be established"),
        "{waiting}"
    );
    env.embedded().set_establish_delay(Duration::ZERO);
    let started = std::time::Instant::now();
    apply_rgd(&env, one_configmap("quicks.test.kroxide.dev", "Quick")).await;
    wait_active(&env, "quicks.test.kroxide.dev").await;
    let took = started.elapsed();
    println!("an unrelated graph became Active {took:?} after it was applied");
    assert!(took < Duration::from_secs(10), "took {took:?}");
    running.stop(Duration::from_secs(5)).await;
    env.shutdown().await;
}

/// Regression: the controller's memory of applied children grew with every child ever applied
/// (RSS 255 → 260 → 261 MiB over three cycles of 1,000 instances). Whatever it remembers of an
/// instance goes with the instance.
async fn memory_of_deleted_instances_is_released(server: Server) {
    let env = Env::start_on(server, "kroxide-controller", Duration::from_millis(100), true).await;
    let running = start(&env, &[]).await;
    apply_rgd(&env, three_configmaps()).await;
    wait_active(&env, "budgets.test.kroxide.dev").await;
    let api = instances(&env, "test.kroxide.dev", "Budget", "apps").await;
    let mut after_cycles = Vec::new();
    for cycle in 0..2 {
        for i in 0..20 {
            let inst: DynamicObject =
                serde_json::from_value(json!({"apiVersion": "test.kroxide.dev/v1alpha1",
                "kind": "Budget", "metadata": {"name": format!("m{i}"), "namespace": "apps"}, "spec": {}}))
                .unwrap();
            api.create(&PostParams::default(), &inst).await.unwrap();
        }
        for i in 0..20 {
            wait_state(&api, &format!("m{i}"), "ACTIVE").await;
        }
        let f = running.footprint();
        assert_eq!(
            (f.applied_instances, f.applied_children),
            (20, 60),
            "cycle {cycle}: what 20 live instances need"
        );
        for i in 0..20 {
            api.delete(&format!("m{i}"), &DeleteParams::default())
                .await
                .unwrap();
        }
        eventually("instances gone", Duration::from_secs(30), async || {
            api.list(&Default::default())
                .await
                .unwrap()
                .items
                .is_empty()
                .then_some(())
        })
        .await;
        let footprint = eventually("memory released", Duration::from_secs(10), async || {
            let f = running.footprint();
            (f.applied_instances == 0
                && f.applied_children == 0
                && f.instance_states == 0
                && f.cached_children == 0)
                .then_some(f)
        })
        .await;
        after_cycles.push(footprint);
    }
    println!("memory after each create/delete cycle: {after_cycles:?}");
    running.stop(Duration::from_secs(5)).await;
    env.shutdown().await;
}

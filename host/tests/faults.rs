//! Faults and crashes lose nothing: a seeded workload of instances of a 3-child graph (creates,
//! spec updates, deletes, children deleted or edited behind the controller's back) runs while a
//! proxy injects API faults, or while the controller is killed and restarted; once the faults
//! stop, every invariant must hold: each live instance ACTIVE at its generation with exactly its
//! children at their current values, no orphaned child, no stuck finalizer, no unmanaged object
//! touched.
//!
//! Knobs (defaults are the short run CI does): `KROXIDE_FAULT_SEED` (1), `KROXIDE_FAULT_INSTANCES`
//! (100), `KROXIDE_FAULT_SECONDS` (30, the faulty phase), `KROXIDE_CRASH_RESTARTS` (20). The long
//! run is documented in docs/operations.md.

mod support;

use std::{
    collections::{BTreeMap, BTreeSet},
    path::Path,
    time::{Duration, Instant},
};

use kube::{
    Api,
    api::{ApiResource, DeleteParams, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams},
};
use serde_json::{Value, json};
use support::{
    Env, Server,
    chainsaw::ControllerProcess,
    faults::{FaultProxy, Plan, Rng},
    rgd_api,
};

const NS: &str = "apps";

/// The runs take turns: each loads both cores, and convergence times are only comparable alone.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
const UNMANAGED: usize = 10;

fn knob(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn graph() -> Value {
    json!({"apiVersion": "kro.run/v1alpha1", "kind": "ResourceGraphDefinition",
        "metadata": {"name": "workloads.faults.kroxide.dev"},
        "spec": {"schema": {"apiVersion": "v1alpha1", "kind": "Workload", "group": "faults.kroxide.dev",
                "spec": {"value": "string", "image": "string | default=nginx:1.27"}},
            "resources": [
                {"id": "config", "template": {"apiVersion": "v1", "kind": "ConfigMap",
                    "metadata": {"name": "${schema.metadata.name}"}, "data": {"value": "${schema.spec.value}"}}},
                {"id": "deployment", "template": {"apiVersion": "apps/v1", "kind": "Deployment",
                    "metadata": {"name": "${schema.metadata.name}"},
                    "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "${schema.metadata.name}"}},
                        "template": {"metadata": {"labels": {"app": "${schema.metadata.name}"},
                            "annotations": {"config": "${config.metadata.name}"}},
                            "spec": {"containers": [{"name": "c", "image": "${schema.spec.image}"}]}}}},
                 "readyWhen": ["${deployment.status.?availableReplicas.orValue(0) == 1}"]},
                {"id": "service", "template": {"apiVersion": "v1", "kind": "Service",
                    "metadata": {"name": "${schema.metadata.name}"},
                    "spec": {"selector": {"app": "${schema.metadata.name}"}, "ports": [{"port": 80}]}}}]}})
}

/// What the test did, and so what must be true once the faults stop.
#[derive(Debug, Default)]
struct Model {
    /// Live instances: name → (value, image).
    live: BTreeMap<String, (String, String)>,
    /// Instances deleted by the test.
    deleted: BTreeSet<String>,
    /// Unmanaged ConfigMaps and the resourceVersion they must keep.
    unmanaged: BTreeMap<String, String>,
    /// An instance whose ConfigMap's name is taken by an unmanaged one: it must say so, and
    /// leave that ConfigMap alone.
    colliding: Option<String>,
    next: u64,
    ops: BTreeMap<&'static str, u64>,
}

/// The APIs the workload and the checks use, straight to the server (never through faults).
struct Apis {
    instances: Api<DynamicObject>,
    configmaps: Api<DynamicObject>,
    deployments: Api<DynamicObject>,
    services: Api<DynamicObject>,
}

impl Apis {
    fn new(env: &Env) -> Self {
        let ns = |g: &str, v: &str, k: &str, plural: &str| {
            Api::namespaced_with(
                env.client.clone(),
                NS,
                &ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(g, v, k), plural),
            )
        };
        Self {
            instances: ns("faults.kroxide.dev", "v1alpha1", "Workload", "workloads"),
            configmaps: ns("", "v1", "ConfigMap", "configmaps"),
            deployments: ns("apps", "v1", "Deployment", "deployments"),
            services: ns("", "v1", "Service", "services"),
        }
    }
}

/// One random step of the workload: mostly creates until `target` instances exist, then a mix
/// of updates, deletes and interference with children.
async fn step(apis: &Apis, model: &mut Model, rng: &mut Rng, target: usize) {
    let pick = |rng: &mut Rng, model: &Model| {
        let i = rng.below(model.live.len() as u64) as usize;
        model.live.keys().nth(i).cloned()
    };
    let roll = rng.below(100);
    let op = if model.live.len() < target && (roll < 60 || model.live.len() < target / 2) {
        "create"
    } else if roll < 75 {
        "update value"
    } else if roll < 80 {
        "update image"
    } else if roll < 88 {
        "delete instance"
    } else if roll < 95 {
        "delete a child"
    } else {
        "edit a child"
    };
    let done = match op {
        "create" => {
            let name = format!("w{:04}", model.next);
            model.next += 1;
            let value = format!("v{}", rng.below(1_000_000));
            let obj: DynamicObject = serde_json::from_value(json!({
                "apiVersion": "faults.kroxide.dev/v1alpha1", "kind": "Workload",
                "metadata": {"name": name, "namespace": NS}, "spec": {"value": value}}))
            .unwrap();
            apis.instances.create(&PostParams::default(), &obj).await.unwrap();
            model.live.insert(name, (value, "nginx:1.27".into()));
            true
        }
        "update value" | "update image" => match pick(rng, model) {
            Some(name) => {
                let entry = model.live.get_mut(&name).unwrap();
                let patch = if op == "update value" {
                    entry.0 = format!("v{}", rng.below(1_000_000));
                    json!({"spec": {"value": entry.0}})
                } else {
                    entry.1 = format!("nginx:1.{}", 20 + rng.below(10));
                    json!({"spec": {"image": entry.1}})
                };
                apis.instances
                    .patch(&name, &PatchParams::default(), &Patch::Merge(patch))
                    .await
                    .unwrap();
                true
            }
            None => false,
        },
        "delete instance" => match pick(rng, model) {
            Some(name) => {
                apis.instances
                    .delete(&name, &DeleteParams::default())
                    .await
                    .unwrap();
                model.live.remove(&name);
                model.deleted.insert(name);
                true
            }
            None => false,
        },
        "delete a child" => match pick(rng, model) {
            Some(name) => {
                let api = if rng.chance(0.5) {
                    &apis.configmaps
                } else {
                    &apis.services
                };
                // The controller may not have made it yet: deleting nothing is fine.
                api.delete(&name, &DeleteParams::default()).await.is_ok()
            }
            None => false,
        },
        _ => match pick(rng, model) {
            Some(name) => apis
                .configmaps
                .patch(
                    &name,
                    &PatchParams::default(),
                    &Patch::Merge(json!({"data": {"value": "tampered"}})),
                )
                .await
                .is_ok(),
            None => false,
        },
    };
    if done {
        *model.ops.entry(op).or_default() += 1;
    }
}

/// Invariant violations, by kind, with examples; empty when everything holds.
async fn violations(apis: &Apis, model: &Model) -> BTreeMap<&'static str, Vec<String>> {
    let mut out: BTreeMap<&'static str, Vec<String>> = BTreeMap::new();
    let by_name = |list: Vec<DynamicObject>| -> BTreeMap<String, DynamicObject> {
        list.into_iter()
            .map(|o| (o.metadata.name.clone().unwrap_or_default(), o))
            .collect()
    };
    let lp = Default::default();
    let (Ok(instances), Ok(cms), Ok(deps), Ok(svcs)) = (
        apis.instances.list(&lp).await,
        apis.configmaps.list(&lp).await,
        apis.deployments.list(&lp).await,
        apis.services.list(&lp).await,
    ) else {
        out.entry("list failed").or_default().push(String::new());
        return out;
    };
    let (instances, cms, deps, svcs) = (
        by_name(instances.items),
        by_name(cms.items),
        by_name(deps.items),
        by_name(svcs.items),
    );
    for (name, (value, image)) in &model.live {
        let Some(inst) = instances.get(name) else {
            out.entry("lost instance").or_default().push(name.clone());
            continue;
        };
        let generation = inst.metadata.generation.unwrap_or_default();
        let status = &inst.data["status"];
        let ready = status["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|c| c["type"] == "Ready");
        let current = ready.is_some_and(|c| c["status"] == "True" && c["observedGeneration"] == generation);
        if status["state"] != "ACTIVE" || !current {
            out.entry("not ACTIVE at its generation")
                .or_default()
                .push(format!(
                    "{name} (state {}, generation {generation}, Ready {})",
                    status["state"],
                    ready.map(Value::to_string).unwrap_or_default()
                ));
        }
        match cms.get(name) {
            Some(cm) if cm.data["data"]["value"] == value.as_str() => {}
            Some(cm) => out.entry("child with a stale value").or_default().push(format!(
                "ConfigMap {name}: {} not {value}",
                cm.data["data"]["value"]
            )),
            None => out
                .entry("lost child")
                .or_default()
                .push(format!("ConfigMap {name}")),
        }
        match deps.get(name) {
            Some(d) if d.data["spec"]["template"]["spec"]["containers"][0]["image"] == image.as_str() => {}
            Some(_) => out
                .entry("child with a stale value")
                .or_default()
                .push(format!("Deployment {name}: image not {image}")),
            None => out
                .entry("lost child")
                .or_default()
                .push(format!("Deployment {name}")),
        }
        if !svcs.contains_key(name) {
            out.entry("lost child")
                .or_default()
                .push(format!("Service {name}"));
        }
    }
    for name in &model.deleted {
        if let Some(inst) = instances.get(name) {
            out.entry("stuck finalizer").or_default().push(format!(
                "{name} (deletionTimestamp {:?}, finalizers {:?}, resourceVersion {:?}, state {})",
                inst.metadata.deletion_timestamp.as_ref().map(|t| t.0.to_string()),
                inst.metadata.finalizers,
                inst.metadata.resource_version,
                inst.data["status"]["state"]
            ));
        }
    }
    for name in instances.keys().filter(|n| {
        !model.live.contains_key(*n) && !model.deleted.contains(*n) && model.colliding.as_deref() != Some(n)
    }) {
        out.entry("unexpected instance").or_default().push(name.clone());
    }
    if let Some(name) = &model.colliding {
        let ready = instances.get(name).and_then(|i| {
            i.data["status"]["conditions"]
                .as_array()?
                .iter()
                .find(|c| c["type"] == "ResourcesReady")
                .cloned()
        });
        let refused = ready
            .as_ref()
            .is_some_and(|c| c["status"] == "False" && c["reason"] == "ResourceNotOwned");
        if !refused {
            out.entry("unmanaged object taken over")
                .or_default()
                .push(format!(
                    "{name}: ResourcesReady {}",
                    ready.map(|c| c.to_string()).unwrap_or_default()
                ));
        }
    }
    let expected = |n: &str| {
        model.live.contains_key(n)
            || model.unmanaged.contains_key(n)
            || model.colliding.as_deref() == Some(n)
            || n == "kube-root-ca.crt"
    };
    for (kind, list) in [("ConfigMap", &cms), ("Deployment", &deps), ("Service", &svcs)] {
        for name in list.keys().filter(|n| !expected(n) && *n != "kubernetes") {
            out.entry("orphaned child")
                .or_default()
                .push(format!("{kind} {name}"));
        }
    }
    for (name, rv) in &model.unmanaged {
        match cms.get(name) {
            Some(cm) if cm.metadata.resource_version.as_deref() == Some(rv) => {}
            Some(_) => out
                .entry("unmanaged object touched")
                .or_default()
                .push(name.clone()),
            None => out
                .entry("unmanaged object deleted")
                .or_default()
                .push(name.clone()),
        }
    }
    out
}

/// Polls the invariants until they all hold; returns how long that took. On a timeout the
/// controller logs in `logs` are kept in the temp dir for the post-mortem.
async fn converge(apis: &Apis, model: &Model, timeout: Duration, logs: &Path) -> Duration {
    let started = Instant::now();
    loop {
        let v = violations(apis, model).await;
        if v.is_empty() {
            return started.elapsed();
        }
        if started.elapsed() > timeout {
            let summary: Vec<String> = v
                .iter()
                .map(|(k, list)| format!("{k}: {} (e.g. {:?})", list.len(), &list[..list.len().min(5)]))
                .collect();
            let kept = std::env::temp_dir().join(format!("kroxide-faults-{}", std::process::id()));
            let _ = std::fs::create_dir_all(&kept);
            for entry in std::fs::read_dir(logs).into_iter().flatten().flatten() {
                if entry.path().extension().is_some_and(|e| e == "log") {
                    let _ = std::fs::copy(entry.path(), kept.join(entry.file_name()));
                }
            }
            panic!(
                "not converged after {timeout:?} (controller logs kept in {}):\n{}",
                kept.display(),
                summary.join("\n")
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The graph, Active, and the unmanaged ConfigMaps.
async fn prepare(env: &Env, apis: &Apis, model: &mut Model) {
    rgd_api(&env.client)
        .patch(
            "workloads.faults.kroxide.dev",
            &PatchParams::apply("faults-test"),
            &Patch::Apply(graph()),
        )
        .await
        .unwrap();
    support::eventually("the graph Active", Duration::from_secs(60), async || {
        let rgd = rgd_api(&env.client)
            .get("workloads.faults.kroxide.dev")
            .await
            .ok()?;
        (rgd.data["status"]["state"] == "Active").then_some(())
    })
    .await;
    support::eventually("the Workload kind served", Duration::from_secs(30), async || {
        apis.instances.list(&Default::default()).await.ok().map(|_| ())
    })
    .await;
    for i in 0..UNMANAGED {
        let name = format!("unmanaged-{i}");
        let cm: DynamicObject = serde_json::from_value(json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": NS, "labels": {"app": format!("w{i:04}")}},
            "data": {"value": "mine"}}))
        .unwrap();
        let made = apis.configmaps.create(&PostParams::default(), &cm).await.unwrap();
        model
            .unmanaged
            .insert(name, made.metadata.resource_version.unwrap());
    }
    // An unmanaged ConfigMap with the name a child of the instance `taken` would have.
    let cm: DynamicObject = serde_json::from_value(json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "taken", "namespace": NS}, "data": {"value": "mine"}}))
    .unwrap();
    let made = apis.configmaps.create(&PostParams::default(), &cm).await.unwrap();
    model
        .unmanaged
        .insert("taken".into(), made.metadata.resource_version.unwrap());
    let inst: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "faults.kroxide.dev/v1alpha1", "kind": "Workload",
        "metadata": {"name": "taken", "namespace": NS}, "spec": {"value": "theirs"}}))
    .unwrap();
    apis.instances
        .create(&PostParams::default(), &inst)
        .await
        .unwrap();
    model.colliding = Some("taken".into());
}

fn controller_args() -> Vec<String> {
    [
        "controller",
        "--namespace=kroxide-system",
        "--metrics-bind-address=0",
        "--health-probe-bind-address=0",
        "--dynamic-controller-rate-limiter-max-delay=5s",
        "--log-level=info,kroxide=debug",
    ]
    .map(String::from)
    .to_vec()
}

fn start_controller(env: &Env, kubeconfig: &Path, log: &str) -> ControllerProcess {
    ControllerProcess::start(
        Path::new(env!("CARGO_BIN_EXE_kroxide")),
        &controller_args(),
        kubeconfig,
        env.scratch.path().join(log),
    )
}

fn report(server: Server, what: &str, model: &Model, extra: &str, converged: Duration) {
    println!(
        "{what} on {server:?}: {} instances live, {} deleted; operations {:?}; {extra}; \
         converged {:.1} s after the faults stopped; violations: 0 lost, 0 orphaned, 0 stuck, \
         0 unmanaged objects touched or taken over ({} checked)",
        model.live.len(),
        model.deleted.len(),
        model.ops,
        converged.as_secs_f64(),
        model.unmanaged.len()
    );
}

async fn faults_between_the_controller_and_the_server_lose_nothing(server: Server) {
    let _turn = ONE_AT_A_TIME.lock().await;
    let seed = knob("KROXIDE_FAULT_SEED", 1);
    let target = knob("KROXIDE_FAULT_INSTANCES", 100) as usize;
    let seconds = knob("KROXIDE_FAULT_SECONDS", 30);
    let env = Env::start_on(server, "faults", Duration::from_millis(100), true).await;
    let apis = Apis::new(&env);
    let proxy = FaultProxy::start(env.client.clone(), Plan::default(), seed).await;
    proxy.set_faulty(false);
    let proxied = env.scratch.path().join("proxied-kubeconfig");
    proxy.write_kubeconfig(&proxied);
    let mut controller = start_controller(&env, &proxied, "controller.log");
    let mut model = Model::default();
    prepare(&env, &apis, &mut model).await;

    let mut rng = Rng::new(seed.wrapping_mul(31));
    proxy.set_faulty(true);
    let started = Instant::now();
    let faulty = Duration::from_secs(seconds);
    // One outage of 2-5 s in every 15 s window, at a seeded moment.
    let mut next_outage = started + rng.between(Duration::from_secs(3), Duration::from_secs(12));
    while started.elapsed() < faulty {
        if Instant::now() >= next_outage {
            proxy.set_outage(true);
            let length = rng.between(Duration::from_secs(2), Duration::from_secs(5));
            let until = Instant::now() + length;
            // Work goes on while the controller cannot reach the server.
            while Instant::now() < until {
                step(&apis, &mut model, &mut rng, target).await;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            proxy.set_outage(false);
            next_outage = Instant::now() + rng.between(Duration::from_secs(8), Duration::from_secs(15));
        }
        step(&apis, &mut model, &mut rng, target).await;
        tokio::time::sleep(Duration::from_millis(rng.below(60))).await;
    }
    proxy.set_faulty(false);
    let converged = converge(&apis, &model, Duration::from_secs(180), env.scratch.path()).await;
    assert!(
        controller.running(),
        "the controller exited:\n{}",
        controller.tail(40)
    );
    let faults = proxy.counts().snapshot();
    let injected: u64 = faults.values().sum();
    report(
        server,
        "fault run",
        &model,
        &format!(
            "seed {seed}, {seconds} s of faults: {injected} injected {faults:?} over {} forwarded requests",
            proxy.counts().forwarded()
        ),
        converged,
    );
    assert!(faults.get("outage").copied().unwrap_or_default() >= 1);
    for kind in ["error 500", "error 503", "error 429", "410 on watch resume"] {
        assert!(faults.contains_key(kind), "no {kind} was injected: {faults:?}");
    }
    drop(controller);
    env.shutdown().await;
}

async fn a_controller_killed_at_random_moments_loses_nothing(server: Server) {
    let _turn = ONE_AT_A_TIME.lock().await;
    let seed = knob("KROXIDE_FAULT_SEED", 1);
    let target = knob("KROXIDE_FAULT_INSTANCES", 100) as usize;
    let restarts = knob("KROXIDE_CRASH_RESTARTS", 20);
    let env = Env::start_on(server, "crashes", Duration::from_millis(100), true).await;
    let apis = Apis::new(&env);
    let mut controller = start_controller(&env, &env.kubeconfig, "controller-0.log");
    let mut model = Model::default();
    prepare(&env, &apis, &mut model).await;

    let mut rng = Rng::new(seed.wrapping_mul(17));
    let (mut kills, mut clean, mut while_down) = (0, 0, 0);
    let started = Instant::now();
    for round in 1..=restarts {
        // Work while it runs, for a seeded moment, then the crash.
        let until = Instant::now() + rng.between(Duration::from_millis(200), Duration::from_secs(3));
        while Instant::now() < until {
            step(&apis, &mut model, &mut rng, target).await;
            tokio::time::sleep(Duration::from_millis(rng.below(40))).await;
        }
        if rng.chance(0.25) {
            controller.terminate();
            clean += 1;
        } else {
            controller.kill();
            kills += 1;
        }
        // Sometimes the work goes on while no controller runs.
        if rng.chance(0.4) {
            while_down += 1;
            for _ in 0..rng.below(20) + 1 {
                step(&apis, &mut model, &mut rng, target).await;
            }
        }
        controller = start_controller(&env, &env.kubeconfig, &format!("controller-{round}.log"));
    }
    let worked = started.elapsed();
    let converged = converge(&apis, &model, Duration::from_secs(180), env.scratch.path()).await;
    assert!(
        controller.running(),
        "the controller exited:\n{}",
        controller.tail(40)
    );
    report(
        server,
        "crash run",
        &model,
        &format!(
            "seed {seed}, {restarts} restarts in {:.0} s: {kills} SIGKILL, {clean} SIGTERM, {while_down} with work while down",
            worked.as_secs_f64()
        ),
        converged,
    );
    drop(controller);
    env.shutdown().await;
}

/// Every watch is cut within a second and every resume answered 410 Gone, so the caches relist
/// again and again while instances change and children are deleted behind the controller's
/// back: nothing may be lost or left stale. (The race this once lost, a reconcile started by a
/// relisted instance reading the copy the cache held before the gap, is microseconds wide;
/// `router`'s unit tests pin it down.)
async fn caches_relisted_after_410_gone_serve_the_new_generation(server: Server) {
    let _turn = ONE_AT_A_TIME.lock().await;
    let seed = knob("KROXIDE_FAULT_SEED", 1);
    let env = Env::start_on(server, "relists", Duration::from_millis(100), true).await;
    let apis = Apis::new(&env);
    let plan = Plan {
        error_rate: 0.0,
        lost_response_rate: 0.0,
        latency_rate: 0.0,
        watch_life: (Duration::from_millis(300), Duration::from_millis(900)),
        gone_rate: 1.0,
        ..Plan::default()
    };
    // Faulty from the start: a watch's life is drawn when it opens.
    let proxy = FaultProxy::start(env.client.clone(), plan, seed).await;
    proxy.set_faulty(true);
    let proxied = env.scratch.path().join("proxied-kubeconfig");
    proxy.write_kubeconfig(&proxied);
    let mut controller = start_controller(&env, &proxied, "controller.log");
    let mut model = Model::default();
    prepare(&env, &apis, &mut model).await;
    let mut rng = Rng::new(seed.wrapping_mul(7));
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(15) {
        step(&apis, &mut model, &mut rng, 20).await;
        tokio::time::sleep(Duration::from_millis(rng.below(40))).await;
    }
    proxy.set_faulty(false);
    let converged = converge(&apis, &model, Duration::from_secs(90), env.scratch.path()).await;
    assert!(
        controller.running(),
        "the controller exited:\n{}",
        controller.tail(40)
    );
    let faults = proxy.counts().snapshot();
    let relists = faults.get("410 on watch resume").copied().unwrap_or_default();
    assert!(relists >= 10, "too few relists to tell: {faults:?}");
    report(
        server,
        "relist run",
        &model,
        &format!("seed {seed}, 15 s of cut watches: {relists} resumes answered 410 Gone"),
        converged,
    );
    drop(controller);
    env.shutdown().await;
}

on_both_servers!(
    faults_between_the_controller_and_the_server_lose_nothing,
    a_controller_killed_at_random_moments_loses_nothing,
    caches_relisted_after_410_gone_serve_the_new_generation
);

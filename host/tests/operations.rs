//! Running the controller as operators do, on the embedded API server and on the real control
//! plane: metrics and readiness endpoints, two replicas with leader election, and SIGTERM in
//! the middle of reconciles.

mod support;

use std::{
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use k8s_openapi::api::coordination::v1::Lease;
use kube::{
    Api,
    api::{DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams},
    discovery::oneshot,
};
use serde_json::{Value, json};
use support::{Env, Server, eventually, install_crd, rgd_api};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.ok()?;
    s.write_all(format!("GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").as_bytes())
        .await
        .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).await.ok()?;
    let code = out.split_whitespace().nth(1)?.parse().ok()?;
    let body = out
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Some((code, body))
}

fn graph() -> Value {
    json!({"apiVersion": "kro.run/v1alpha1", "kind": "ResourceGraphDefinition", "metadata": {"name": "ops.test.kroxide.dev"},
        "spec": {"schema": {"apiVersion": "v1alpha1", "kind": "Op", "group": "test.kroxide.dev", "spec": {"v": "string | default=x"}},
            "resources": [
                {"id": "a", "template": {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "${schema.metadata.name}-a"}, "data": {"v": "${schema.spec.v}"}}},
                {"id": "b", "template": {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "${schema.metadata.name}-b"}, "data": {"a": "${a.metadata.name}"}}}]}})
}

/// Applies the test graph and returns its instances' API, without waiting for the controller
/// to serve the kind.
async fn submit_graph(env: &Env) -> Api<DynamicObject> {
    rgd_api(&env.client)
        .patch(
            "ops.test.kroxide.dev",
            &PatchParams::apply("test"),
            &Patch::Apply(&graph()),
        )
        .await
        .unwrap();
    let ar = kube::api::ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("test.kroxide.dev", "v1alpha1", "Op"),
        "ops",
    );
    Api::namespaced_with(env.client.clone(), "apps", &ar)
}

/// Applies the test graph and waits until its kind is served.
async fn apply_graph(env: &Env) -> Api<DynamicObject> {
    let api = submit_graph(env).await;
    eventually("kind served", Duration::from_secs(20), async || {
        oneshot::pinned_kind(
            &env.client,
            &GroupVersionKind::gvk("test.kroxide.dev", "v1alpha1", "Op"),
        )
        .await
        .ok()
        .map(|_| ())
    })
    .await;
    api
}

async fn create(api: &Api<DynamicObject>, name: &str) {
    let o: DynamicObject =
        serde_json::from_value(json!({"apiVersion": "test.kroxide.dev/v1alpha1", "kind": "Op",
        "metadata": {"name": name, "namespace": "apps"}, "spec": {}}))
        .unwrap();
    api.create(&PostParams::default(), &o).await.unwrap();
}

async fn active(api: &Api<DynamicObject>, name: &str) {
    eventually(&format!("{name} ACTIVE"), Duration::from_secs(20), async || {
        api.get_opt(name)
            .await
            .ok()
            .flatten()
            .filter(|o| o.data["status"]["state"] == "ACTIVE")
            .map(|_| ())
    })
    .await;
}

/// The value of the sample `line` (`name{labels}`) in an exposition.
fn sample(text: &str, line: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(line)?.strip_prefix(' ')?.parse().ok())
}

async fn readiness_flips_after_sync_and_metrics_expose_every_family(server: Server) {
    let env = Env::start_on(server, "kroxide-ops", Duration::from_millis(100), false).await;
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let cfg = env.controller_config(&[
        &format!("--metrics-bind-address={addr}"),
        &format!("--health-probe-bind-address={addr}"),
    ]);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(kroxide::controller::run(cfg, async move {
        let _ = stopped.await;
    }));
    let (code, _) = eventually("health endpoint", Duration::from_secs(10), async || {
        http_get(port, "/healthz").await
    })
    .await;
    assert_eq!(code, 200);
    // No RGD CRD yet: the graph cache cannot sync.
    let (code, body) = http_get(port, "/readyz").await.unwrap();
    assert_eq!(code, 503, "{body}");
    install_crd(&env.client).await;
    eventually("ready", Duration::from_secs(15), async || {
        http_get(port, "/readyz").await.filter(|(c, _)| *c == 200)
    })
    .await;
    let api = apply_graph(&env).await;
    create(&api, "m1").await;
    active(&api, "m1").await;
    // The controller records Events through events.k8s.io; `kubectl describe` reads core
    // Events: both servers serve one resource under both groups.
    let kubectl = env.kubectl();
    let described = eventually(
        "the instance's events in describe",
        Duration::from_secs(10),
        async || {
            let out = env.ok(&kubectl, &["describe", "ops", "m1", "-n", "apps"], None);
            out.contains("StateChanged").then_some(out)
        },
    )
    .await;
    assert!(described.contains("Events:"), "{described}");
    // An instance in ERROR: its first child is an object of another ApplySet.
    let cms: Api<k8s_openapi::api::core::v1::ConfigMap> = Api::namespaced(env.client.clone(), "apps");
    cms.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": "bad-a",
            "labels": {"applyset.kubernetes.io/part-of": "applyset-someone-else-v1"}}}))
        .unwrap(),
    )
    .await
    .unwrap();
    create(&api, "bad").await;
    eventually("bad ERROR", Duration::from_secs(20), async || {
        api.get_opt("bad")
            .await
            .ok()
            .flatten()
            .filter(|o| o.data["status"]["state"] == "ERROR")
            .map(|_| ())
    })
    .await;
    // The instance's reconcile is counted when it returns, just after its status write made it
    // ACTIVE: scrape until the count is there.
    let instance_line = "kroxide_reconcile_total{kind=\"instance\",graph=\"ops.test.kroxide.dev\"}";
    let (code, text) = eventually(
        "instance reconcile counted",
        Duration::from_secs(10),
        async || {
            http_get(port, "/metrics")
                .await
                .filter(|(_, t)| t.contains(instance_line))
        },
    )
    .await;
    assert_eq!(code, 200);
    // Parse the exposition: every sample line is `name{labels} value`.
    let mut families = std::collections::BTreeSet::new();
    for line in text.lines().filter(|l| !l.starts_with('#') && !l.is_empty()) {
        let (name, value) = line.rsplit_once(' ').unwrap();
        value
            .parse::<f64>()
            .unwrap_or_else(|_| panic!("not a number in {line:?}"));
        families.insert(name.split('{').next().unwrap().to_string());
    }
    for family in [
        "kroxide_reconcile_total",
        "kroxide_reconcile_duration_seconds_bucket",
        "kroxide_queue_depth",
        "kroxide_apply_requests_total",
        "kroxide_watch_events_total",
        "kroxide_plugin_cache_bytes",
        "kroxide_leader",
    ] {
        assert!(families.contains(family), "{family} missing: {families:?}");
    }
    assert!(text.ends_with("# EOF\n"));
    // kro's families, under kro's names and labels, with the values this run implies.
    let gvr = "gvr=\"test.kroxide.dev/v1alpha1, Resource=ops\"";
    let (_, text) = eventually("kro's error counter", Duration::from_secs(10), async || {
        http_get(port, "/metrics").await.filter(|(_, t)| {
            sample(t, &format!("instance_reconcile_errors_total{{{gvr}}}")).is_some_and(|v| v >= 1.0)
        })
    })
    .await;
    let value = |line: &str| sample(&text, line).unwrap_or_else(|| panic!("{line} missing from\n{text}"));
    assert!(value(&format!("instance_reconcile_total{{{gvr}}}")) >= 2.0);
    assert!(value(&format!("instance_reconcile_duration_seconds_count{{{gvr}}}")) >= 2.0);
    let into_error = ["IN_PROGRESS", ""]
        .iter()
        .filter_map(|from| {
            sample(
                &text,
                &format!(
                    "instance_state_transitions_total{{{gvr},from_state=\"{from}\",to_state=\"ERROR\"}}"
                ),
            )
        })
        .sum::<f64>();
    assert!(into_error >= 1.0, "no transition into ERROR in\n{text}");
    assert!(value("rgd_graph_build_total{name=\"ops.test.kroxide.dev\"}") >= 1.0);
    assert!(value("dynamic_controller_queue_length") >= 0.0);
    // The families of controller-runtime and client-go that kro's process exports.
    let rgds = "controller=\"ResourceGraphDefinition\"";
    assert!(
        value(&format!(
            "controller_runtime_reconcile_total{{{rgds},result=\"success\"}}"
        )) >= 1.0
    );
    assert!(
        value(&format!(
            "controller_runtime_reconcile_time_seconds_count{{{rgds}}}"
        )) >= 1.0
    );
    assert!(value(&format!("controller_runtime_max_concurrent_reconciles{{{rgds}}}")) >= 1.0);
    assert_eq!(
        value(&format!("controller_runtime_reconcile_panics_total{{{rgds}}}")),
        0.0
    );
    let instances = "controller=\"dynamic-controller-queue\",name=\"dynamic-controller-queue\"";
    // Two instances, each added at least once, handed out and reconciled at least once.
    assert!(value(&format!("workqueue_adds_total{{{instances}}}")) >= 2.0);
    assert!(value(&format!("workqueue_queue_duration_seconds_count{{{instances}}}")) >= 2.0);
    assert!(value(&format!("workqueue_work_duration_seconds_count{{{instances}}}")) >= 2.0);
    assert!(
        value(&format!(
            "workqueue_depth{{{rgds},name=\"ResourceGraphDefinition\"}}"
        )) >= 0.0
    );
    // The instance in ERROR retried with backoff.
    assert!(value(&format!("workqueue_retries_total{{{instances}}}")) >= 1.0);
    let requests: Vec<(&str, f64)> = text
        .lines()
        .filter(|l| l.starts_with("rest_client_requests_total{"))
        .filter_map(|l| {
            l.rsplit_once(' ')
                .map(|(series, v)| (series, v.parse().unwrap_or(0.0)))
        })
        .collect();
    let answered = |code: &str, method: &str| {
        requests
            .iter()
            .filter(|(s, _)| {
                s.contains(&format!("code=\"{code}\"")) && s.contains(&format!("method=\"{method}\""))
            })
            .map(|(_, v)| v)
            .sum::<f64>()
    };
    // Lists and watches, child applies, the Events of both instances.
    assert!(answered("200", "GET") >= 1.0, "{requests:?}");
    assert!(answered("200", "PATCH") >= 1.0, "{requests:?}");
    assert!(answered("201", "POST") >= 1.0, "{requests:?}");
    stop.send(()).unwrap();
    task.await.unwrap().unwrap();
    env.shutdown().await;
}

fn writes_by(env: &Env, identity: &str) -> usize {
    env.requests()
        .iter()
        .filter(|r| {
            r.user_agent.contains(&format!("({identity})"))
                && r.is_write()
                && r.resource != "leases"
                && r.resource != "events"
        })
        .count()
}

async fn holder(env: &Env) -> Option<String> {
    let leases: Api<Lease> = Api::namespaced(env.client.clone(), "kroxide-system");
    leases
        .get_opt("kroxide-controller")
        .await
        .ok()
        .flatten()?
        .spec?
        .holder_identity
}

async fn only_the_leader_writes_and_a_standby_takes_over_after_the_lease_expires(server: Server) {
    let env = Env::start_on(server, "kroxide-ops", Duration::from_millis(100), true).await;
    let election = [
        "--leader-elect",
        "--leader-election-lease-duration=3s",
        "--leader-election-renew-deadline=2s",
        "--leader-election-retry-period=250ms",
        "--metrics-bind-address=0",
        "--health-probe-bind-address=0",
    ];
    let run = |identity: &str| {
        let mut args = election.to_vec();
        let id = format!("--identity={identity}");
        args.push(&id);
        let cfg = env.controller_config(&args);
        tokio::spawn(kroxide::controller::run(cfg, std::future::pending()))
    };
    let a = run("replica-a");
    eventually("replica-a leads", Duration::from_secs(10), async || {
        (holder(&env).await.as_deref() == Some("replica-a")).then_some(())
    })
    .await;
    let b = run("replica-b");
    let api = apply_graph(&env).await;
    create(&api, "first").await;
    active(&api, "first").await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(writes_by(&env, "replica-a") > 0);
    assert_eq!(writes_by(&env, "replica-b"), 0, "the standby wrote");
    // The leader dies without releasing the Lease.
    a.abort();
    let _ = a.await;
    let died = Instant::now();
    eventually("replica-b leads", Duration::from_secs(10), async || {
        (holder(&env).await.as_deref() == Some("replica-b")).then_some(())
    })
    .await;
    let took = died.elapsed();
    println!("the standby took over {took:?} after the leader died (lease 3 s, retry 250 ms)");
    assert!(
        took <= Duration::from_millis(3000 + 1000),
        "took over after {took:?} (lease 3 s)"
    );
    create(&api, "second").await;
    active(&api, "second").await;
    assert!(writes_by(&env, "replica-b") > 0, "the new leader reconciles");
    b.abort();
    env.shutdown().await;
}

async fn sigterm_during_reconciles_exits_cleanly_without_half_applied_instances(server: Server) {
    let env = Env::start_on(server, "kroxide-ops", Duration::from_millis(100), true).await;
    let api = submit_graph(&env).await;
    let log = env.scratch.path().join("controller.log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_kroxide"))
        .args([
            "controller",
            "--namespace=kroxide-system",
            "--metrics-bind-address=0",
            "--health-probe-bind-address=0",
        ])
        .arg(format!("--kubeconfig={}", env.kubeconfig.display()))
        .arg("--graceful-shutdown-timeout=20s")
        .stdout(Stdio::null())
        .stderr(Stdio::from(std::fs::File::create(&log).unwrap()))
        .spawn()
        .unwrap();
    eventually("graph served", Duration::from_secs(20), async || {
        env.get(
            "apiextensions.k8s.io/v1",
            "CustomResourceDefinition",
            "",
            "ops.test.kroxide.dev",
        )
        .await
        .and_then(|c| {
            c["status"]["conditions"]
                .as_array()?
                .iter()
                .any(|c| c["type"] == "Established" && c["status"] == "True")
                .then_some(())
        })
    })
    .await;
    for i in 0..30 {
        create(&api, &format!("t{i:02}")).await;
    }
    eventually("reconciles under way", Duration::from_secs(20), async || {
        (!env.names("v1", "ConfigMap", Some("apps")).await.is_empty()).then_some(())
    })
    .await;
    let sent = Instant::now();
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let code = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(sent.elapsed() < Duration::from_secs(25), "did not exit");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(code.success(), "exit {code:?}\n{text}");
    assert!(
        text.contains("shutting down: finishing in-flight reconciles"),
        "{text}"
    );
    // No half-applied instance: every child exists only inside its instance's recorded ApplySet.
    for name in env.names("v1", "ConfigMap", Some("apps")).await {
        let cm = env.get("v1", "ConfigMap", "apps", &name).await.unwrap();
        let owner = cm["metadata"]["labels"]["kro.run/instance-name"]
            .as_str()
            .unwrap()
            .to_string();
        let inst = env
            .get("test.kroxide.dev/v1alpha1", "Op", "apps", &owner)
            .await
            .unwrap();
        let kinds = inst["metadata"]["annotations"]["applyset.kubernetes.io/contains-group-kinds"]
            .as_str()
            .unwrap_or("");
        assert!(
            kinds.split(',').any(|k| k == "ConfigMap"),
            "{name} exists outside its instance's inventory"
        );
        assert_eq!(
            inst["metadata"]["labels"]["applyset.kubernetes.io/id"],
            cm["metadata"]["labels"]["applyset.kubernetes.io/part-of"]
        );
    }
    env.shutdown().await;
}

fn peak_rss_mib(pid: u32) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .map(|kib| kib >> 10)
}

/// Regression (out of memory by configuration): 8 instances of a plugin that fills its memory
/// (`memoryMiB: 256`) took the controller to 549 MiB, over the chart's 512Mi limit, because two
/// calls ran at once. Sized from `--memory-limit`, the worst case fits: the controller's peak
/// RSS stays under the limit it was given.
async fn plugin_memory_stays_within_the_memory_limit_in_the_worst_case(server: Server) {
    let env = Env::start_on(server, "kroxide-ops", Duration::from_millis(100), true).await;
    let wasm = std::fs::read(format!("{}/hostile.wasm", env!("KROXIDE_PLUGIN_DIR"))).unwrap();
    use base64::Engine as _;
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "bomb", "namespace": "kroxide-system"},
        "binaryData": {"plugin.wasm": base64::engine::general_purpose::STANDARD.encode(&wasm)}});
    Api::<k8s_openapi::api::core::v1::ConfigMap>::namespaced(env.client.clone(), "kroxide-system")
        .create(&PostParams::default(), &serde_json::from_value(cm).unwrap())
        .await
        .unwrap();
    let graph = json!({"apiVersion": "kro.run/v1alpha1", "kind": "ResourceGraphDefinition",
        "metadata": {"name": "bombs.test.kroxide.dev"},
        "spec": {"schema": {"apiVersion": "v1alpha1", "kind": "Bomb", "group": "test.kroxide.dev", "spec": {}},
            "plugin": {"configMapRef": {"name": "bomb"}, "memoryMiB": 256, "timeoutMs": 2000,
                "config": {"mode": "memory"}}}});
    rgd_api(&env.client)
        .patch(
            "bombs.test.kroxide.dev",
            &PatchParams::apply("test"),
            &Patch::Apply(&graph),
        )
        .await
        .unwrap();
    // The chart's limit.
    let limit_mib = 512;
    let log = env.scratch.path().join("controller.log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_kroxide"))
        .args([
            "controller",
            "--namespace=kroxide-system",
            "--metrics-bind-address=0",
            "--health-probe-bind-address=0",
        ])
        .arg(format!("--kubeconfig={}", env.kubeconfig.display()))
        .arg(format!("--memory-limit={limit_mib}Mi"))
        .arg("--plugin-max-memory-mib=256")
        .arg("--dynamic-controller-rate-limiter-max-delay=1s")
        .stdout(Stdio::null())
        .stderr(Stdio::from(std::fs::File::create(&log).unwrap()))
        .spawn()
        .unwrap();
    let ar = kube::api::ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("test.kroxide.dev", "v1alpha1", "Bomb"),
        "bombs",
    );
    let api: Api<DynamicObject> = Api::namespaced_with(env.client.clone(), "apps", &ar);
    eventually("kind served", Duration::from_secs(30), async || {
        oneshot::pinned_kind(
            &env.client,
            &GroupVersionKind::gvk("test.kroxide.dev", "v1alpha1", "Bomb"),
        )
        .await
        .ok()
        .map(|_| ())
    })
    .await;
    for i in 0..8 {
        let o: DynamicObject = serde_json::from_value(json!({"apiVersion": "test.kroxide.dev/v1alpha1",
            "kind": "Bomb", "metadata": {"name": format!("b{i}"), "namespace": "apps"}, "spec": {}}))
        .unwrap();
        api.create(&PostParams::default(), &o).await.unwrap();
    }
    // Every instance's plugin call hit its memory limit (several times, with retries).
    eventually("8 instances in ERROR", Duration::from_secs(60), async || {
        let errors = api
            .list(&Default::default())
            .await
            .ok()?
            .items
            .iter()
            .filter(|o| o.data["status"]["state"] == "ERROR")
            .count();
        (errors == 8).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let peak = peak_rss_mib(child.id()).unwrap();
    let _ = child.kill();
    let _ = child.wait();
    let text = std::fs::read_to_string(&log).unwrap();
    println!(
        "controller peak RSS with 8 memory-filling plugin instances: {peak} MiB (limit {limit_mib} MiB)"
    );
    assert!(text.contains("plugin_calls_at_once=1"), "{text}");
    assert!(
        peak < limit_mib,
        "peak RSS {peak} MiB over the {limit_mib} MiB limit"
    );
    env.shutdown().await;
}

on_both_servers!(
    plugin_memory_stays_within_the_memory_limit_in_the_worst_case,
    readiness_flips_after_sync_and_metrics_expose_every_family,
    only_the_leader_writes_and_a_standby_takes_over_after_the_lease_expires,
    sigterm_during_reconciles_exits_cleanly_without_half_applied_instances,
);

/// Secure metrics as the chart configures them, under real RBAC: HTTPS with the chart's
/// certificate; no token → 401, a token of a ServiceAccount without the metrics-reader role →
/// 403, with it → the metrics. The controller runs with the chart's ServiceAccount, so its own
/// TokenReview and SubjectAccessReview rights come from the chart too.
///
/// Real control plane only: the embedded server has no TokenReview or SubjectAccessReview.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secure_metrics_serve_only_callers_the_api_server_authorizes() {
    let env = Env::start_on(Server::Real, "kroxide-ops", Duration::from_millis(100), false).await;
    let helm = support::helm();
    let kubectl = env.kubectl();
    env.ok(
        &helm,
        &[
            "install",
            "kroxide",
            "charts/kroxide",
            "-n",
            "kroxide-system",
            "--set",
            "rbac.mode=aggregation",
        ],
        None,
    );
    let certs = env.scratch.path().join("metrics-tls");
    std::fs::create_dir_all(&certs).unwrap();
    for key in ["tls.crt", "tls.key"] {
        let b64 = env.ok(
            &kubectl,
            &[
                "get",
                "secret",
                "kroxide-metrics-tls",
                "-n",
                "kroxide-system",
                "-o",
                &format!("jsonpath={{.data.{}}}", key.replace('.', "\\.")),
            ],
            None,
        );
        use base64::Engine as _;
        let pem = base64::engine::general_purpose::STANDARD
            .decode(b64.trim())
            .unwrap();
        std::fs::write(certs.join(key), pem).unwrap();
    }
    let token = |sa: &str| {
        env.ok(&kubectl, &["create", "token", sa, "-n", "kroxide-system"], None)
            .trim()
            .to_string()
    };
    // The controller as the chart's ServiceAccount.
    let sa_kubeconfig = env.scratch.path().join("sa.kubeconfig");
    std::fs::copy(&env.kubeconfig, &sa_kubeconfig).unwrap();
    let as_sa = |args: &[&str]| {
        let out = Command::new(&kubectl)
            .arg(format!("--kubeconfig={}", sa_kubeconfig.display()))
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    };
    as_sa(&[
        "config",
        "set-credentials",
        "kroxide",
        &format!("--token={}", token("kroxide")),
    ]);
    as_sa(&["config", "set-context", "--current", "--user=kroxide"]);
    let port = free_port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_kroxide"))
        .args([
            "controller",
            "--namespace=kroxide-system",
            "--health-probe-bind-address=0",
            "--metrics-secure",
        ])
        .arg(format!("--metrics-bind-address=127.0.0.1:{port}"))
        .arg(format!("--metrics-cert-dir={}", certs.display()))
        .arg(format!("--kubeconfig={}", sa_kubeconfig.display()))
        .stdout(Stdio::null())
        .stderr(Stdio::from(
            std::fs::File::create(env.scratch.path().join("controller.log")).unwrap(),
        ))
        .spawn()
        .unwrap();
    // A scraper allowed to read metrics, and one that is not.
    for sa in ["scraper", "nosy"] {
        env.ok(
            &kubectl,
            &["create", "serviceaccount", sa, "-n", "kroxide-system"],
            None,
        );
    }
    env.ok(
        &kubectl,
        &[
            "create",
            "clusterrolebinding",
            "scraper-metrics",
            "--clusterrole=kroxide-metrics-reader",
            "--serviceaccount=kroxide-system:scraper",
        ],
        None,
    );
    let curl = |token: Option<&str>| {
        let mut cmd = Command::new("curl");
        cmd.args(["-sk", "-o", "-", "-w", "\n%{http_code}", "--max-time", "5"]);
        if let Some(t) = token {
            cmd.arg("-H").arg(format!("Authorization: Bearer {t}"));
        }
        let out = cmd
            .arg(format!("https://127.0.0.1:{port}/metrics"))
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, code) = text.rsplit_once('\n').unwrap_or(("", ""));
        (code.to_string(), body.to_string())
    };
    let (code, _) = eventually("the metrics endpoint", Duration::from_secs(20), async || {
        let r = curl(None);
        (r.0 != "000").then_some(r)
    })
    .await;
    assert_eq!(code, "401", "no token");
    let (code, body) = curl(Some(&token("nosy")));
    assert_eq!(code, "403", "a token without the role: {body}");
    let scraper = token("scraper");
    let (code, body) = eventually("the role to take effect", Duration::from_secs(20), async || {
        let r = curl(Some(&scraper));
        (r.0 == "200").then_some(r)
    })
    .await;
    assert_eq!(code, "200");
    assert!(
        body.contains("kroxide_reconcile_total") || body.contains("# EOF"),
        "{body}"
    );
    // Plain HTTP is not served there.
    let plain = Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "5"])
        .arg(format!("http://127.0.0.1:{port}/metrics"))
        .output()
        .unwrap();
    assert_ne!(String::from_utf8_lossy(&plain.stdout), "200");
    let _ = child.kill();
    let _ = child.wait();
    env.shutdown().await;
}

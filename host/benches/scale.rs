//! Scale: N instances (default 1000, `KROXIDE_SCALE_INSTANCES`) of a 3-resource graph, the
//! controller as its own process (release build), so its peak RSS is its own. The server is the
//! test API server in this process, or with `KROXIDE_SCALE_SERVER=real` the real control plane
//! of scripts/cluster (requests then come from its audit log). Reports the time until every
//! instance is ACTIVE, the requests the controller made, its CPU time and peak RSS, and (built
//! with `--features count-allocations`) its heap allocations per instance reconcile. Then,
//! with `KROXIDE_SCALE_IDLE_SECONDS` (default 0), the controller's requests and CPU while
//! nothing changes; with `KROXIDE_SCALE_CHANGES` (default 0), that many spec changes one at a
//! time, each timed until the child holds it (p50, p99); with `KROXIDE_SCALE_RESTART=1`, the
//! writes of a restarted controller over the unchanged instances. The last line, `SCALE key=value ...`, is what
//! `scripts/scale-curve` collects. Run with `cargo bench -p kroxide --bench scale`.
//! `KROXIDE_SCALE_WRAP` runs the controller under a profiler (see [`controller_command`]).

use std::{
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use k8s_openapi::{
    api::core::v1::Namespace, apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
};
use kroxide::graph::crd::rgd_crd;
use kroxide_apiserver::{ApiServer, Config};
use kube::{
    Api, Client,
    api::{DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams},
    discovery::oneshot,
};
use serde_json::json;

/// This process runs the in-process test server, the benchmark's bottleneck, whose work is
/// mostly building and dropping JSON trees: with glibc's allocator, malloc and free were 39 % of
/// its instructions (callgrind, 300 instances). The controller, its own process, keeps its own
/// allocator: its figures are what users run.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// CPU time (user + system) of process `pid` so far.
fn cpu(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command (which may hold spaces) closed by the last ')'.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the command.
    let hz = 100;
    Duration::from_millis((ticks(11) + ticks(12)) * 1000 / hz)
}

/// A sample of the controller's /metrics (0 when absent).
async fn scrape(port: u16, series: &str) -> f64 {
    let Ok(text) = reqwest_lite(port).await else {
        return 0.0;
    };
    text.lines()
        .filter_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse::<f64>().ok())
        .sum()
}

/// GET /metrics over a bare TCP connection (HTTP/1.0, the endpoint closes when done).
async fn reqwest_lite(port: u16) -> std::io::Result<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    s.write_all(b"GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .await?;
    let mut out = String::new();
    s.read_to_string(&mut out).await?;
    Ok(out)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(0)
}

/// The controller's command: its binary, or with `KROXIDE_SCALE_WRAP` (a profiler such as
/// `heaptrack -o /tmp/scale`) that command running it; CPU and RSS are then the wrapper's.
fn controller_command() -> Command {
    let bin = env!("CARGO_BIN_EXE_kroxide");
    match std::env::var("KROXIDE_SCALE_WRAP") {
        Ok(wrap) => match wrap.split_whitespace().collect::<Vec<_>>().split_first() {
            Some((program, args)) => {
                let mut cmd = Command::new(program);
                cmd.args(args).arg(bin);
                cmd
            }
            None => Command::new(bin),
        },
        Err(_) => Command::new(bin),
    }
}

/// A whole number from the environment, or `default` when unset or not a number.
fn env_number<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A duration in milliseconds.
fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// The controller's process, stopped when dropped: a benchmark that fails part way (a panic,
/// a deadline) leaves no controller running behind it.
struct Controller(std::process::Child);

impl Controller {
    fn id(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for Controller {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_controller(kubeconfig: &std::path::Path, metrics_port: u16) -> Controller {
    let child = controller_command()
        .args([
            "controller",
            "--namespace=default",
            "--health-probe-bind-address=0",
        ])
        .arg(format!("--metrics-bind-address=127.0.0.1:{metrics_port}"))
        .arg(format!("--kubeconfig={}", kubeconfig.display()))
        .arg("--dynamic-controller-concurrent-reconciles=4")
        .arg("--client-qps=100000")
        .arg("--client-burst=100000")
        .arg("--log-level=warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    Controller(child)
}

const INSTANCE_RECONCILES: &str =
    "kroxide_reconcile_total{kind=\"instance\",graph=\"scales.bench.kroxide.dev\"}";
const ALLOCATIONS: &str = "kroxide_heap_allocations_total";

fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 1)]
async fn main() {
    let n: usize = env_number("KROXIDE_SCALE_INSTANCES", 1000);
    let real = std::env::var("KROXIDE_SCALE_SERVER").is_ok_and(|v| v == "real");
    let dir = std::env::temp_dir().join(format!("kroxide-scale-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let kubeconfig = dir.join("kubeconfig");
    let server = if real {
        let cluster = kroxide_cluster::Cluster::start().unwrap();
        std::fs::copy(cluster.kubeconfig(), &kubeconfig).unwrap();
        Server::Real(cluster)
    } else {
        let s = ApiServer::start(Config {
            workload_delay: Duration::from_millis(200),
            ..Config::default()
        })
        .await
        .unwrap();
        std::fs::write(&kubeconfig, s.kubeconfig()).unwrap();
        Server::Embedded(s)
    };
    let client = Client::try_from(
        kube::Config::from_custom_kubeconfig(
            kube::config::Kubeconfig::read_from(&kubeconfig).unwrap(),
            &kube::config::KubeConfigOptions::default(),
        )
        .await
        .unwrap(),
    )
    .unwrap();
    let crds = Api::<CustomResourceDefinition>::all(client.clone());
    // Both CRDs the chart installs: with GraphRevisions a restarted controller finds its
    // revision again instead of issuing a new one.
    for crd in [rgd_crd(), kroxide::graph::crd::graph_revision_crd()] {
        crds.create(&PostParams::default(), &serde_json::from_value(crd).unwrap())
            .await
            .unwrap();
    }
    kube::runtime::wait::await_condition(
        crds,
        "resourcegraphdefinitions.kro.run",
        kube::runtime::conditions::is_crd_established(),
    )
    .await
    .unwrap();
    let nss: Api<Namespace> = Api::all(client.clone());
    nss.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": "scale"}})).unwrap(),
    )
    .await
    .unwrap();

    let port = free_port();
    let controller = start_controller(&kubeconfig, port);
    let pid = controller.id();

    let rgd = json!({"apiVersion": "kro.run/v1alpha1", "kind": "ResourceGraphDefinition", "metadata": {"name": "scales.bench.kroxide.dev"},
        "spec": {"schema": {"apiVersion": "v1alpha1", "kind": "Scale", "group": "bench.kroxide.dev",
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
                            "spec": {"containers": [{"name": "c", "image": "${schema.spec.image}"}]}}}}},
                {"id": "service", "template": {"apiVersion": "v1", "kind": "Service",
                    "metadata": {"name": "${schema.metadata.name}"},
                    "spec": {"selector": {"app": "${schema.metadata.name}"}, "ports": [{"port": 80}]}}}]}});
    let rgd_ar = kube::api::ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("kro.run", "v1alpha1", "ResourceGraphDefinition"),
        "resourcegraphdefinitions",
    );
    Api::<DynamicObject>::all_with(client.clone(), &rgd_ar)
        .patch(
            "scales.bench.kroxide.dev",
            &PatchParams::apply("bench"),
            &Patch::Apply(&rgd),
        )
        .await
        .unwrap();
    let ar = loop {
        if let Ok((ar, _)) = oneshot::pinned_kind(
            &client,
            &GroupVersionKind::gvk("bench.kroxide.dev", "v1alpha1", "Scale"),
        )
        .await
        {
            break ar;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    server.reset_requests();
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), "scale", &ar);
    let (cpu0, own_cpu0) = (cpu(pid), cpu(std::process::id()));
    let (reconciles0, allocations0) = (
        scrape(port, INSTANCE_RECONCILES).await,
        scrape(port, ALLOCATIONS).await,
    );
    let started = Instant::now();
    for i in 0..n {
        let inst: DynamicObject = serde_json::from_value(
            json!({"apiVersion": "bench.kroxide.dev/v1alpha1", "kind": "Scale",
            "metadata": {"name": format!("s{i:04}"), "namespace": "scale"}, "spec": {}}),
        )
        .unwrap();
        api.create(&PostParams::default(), &inst).await.unwrap();
    }
    let created = started.elapsed();
    let mut peak = 0;
    // Watched, not polled: a list of every instance each 200 ms costs the server and this client
    // more at 10,000 instances than the controller's whole work.
    let all_active = {
        use futures::StreamExt;
        use kube::runtime::{WatchStreamExt, watcher};
        let mut states = std::collections::HashMap::new();
        let mut active = 0usize;
        let mut events = watcher(api.clone(), watcher::Config::default())
            .default_backoff()
            .boxed();
        let mut tick = tokio::time::interval(Duration::from_millis(200));
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    peak = peak.max(peak_rss_kib(pid).unwrap_or(0));
                    assert!(
                        started.elapsed() < Duration::from_secs(900),
                        "only {active} of {n} ACTIVE after 15 min"
                    );
                }
                Some(event) = events.next() => {
                    let (watcher::Event::Apply(o) | watcher::Event::InitApply(o)) = event.unwrap() else {
                        continue;
                    };
                    let now = o.data["status"]["state"] == "ACTIVE";
                    let before = states.insert(o.metadata.name.clone().unwrap_or_default(), now);
                    match (before.unwrap_or(false), now) {
                        (false, true) => active += 1,
                        (true, false) => active -= 1,
                        _ => {}
                    }
                    if active == n {
                        break started.elapsed();
                    }
                }
            }
        }
    };
    let (controller_cpu, own_cpu) = (cpu(pid) - cpu0, cpu(std::process::id()) - own_cpu0);
    let reconciles = scrape(port, INSTANCE_RECONCILES).await - reconciles0;
    let allocations = scrape(port, ALLOCATIONS).await - allocations0;
    tokio::time::sleep(Duration::from_secs(2)).await;
    peak = peak.max(peak_rss_kib(pid).unwrap_or(0));
    let requests = server.requests();
    let ours: Vec<_> = requests.iter().filter(|r| r.ours()).collect();
    let writes = ours.iter().filter(|r| r.is_our_write()).count();
    let events = ours.iter().filter(|r| r.resource == "events").count();
    let watches = ours.iter().filter(|r| r.verb == "watch").count();
    // Idle: nothing changes; the controller should make no requests and burn little CPU.
    let idle_seconds: u64 = env_number("KROXIDE_SCALE_IDLE_SECONDS", 0);
    let idle = if idle_seconds > 0 {
        // Deployments that become available after every instance is ACTIVE still change the
        // instances' status (`replicas`): the graph reaching its state, not a steady one. Idle
        // starts once it has settled and the controller has been quiet for 1 s; the writes
        // until then are reported apart.
        settled(&api, n).await;
        server
            .quiet(Duration::from_secs(1), Duration::from_secs(60))
            .await;
        let late = server
            .requests()
            .iter()
            .filter(|r| r.is_our_write())
            .count()
            .saturating_sub(writes);
        server.reset_requests();
        let c = cpu(pid);
        tokio::time::sleep(Duration::from_secs(idle_seconds)).await;
        let idle_cpu = cpu(pid) - c;
        let requests = server.requests();
        let ours: Vec<&Request> = requests.iter().filter(|r| r.ours()).collect();
        let mut by_kind = std::collections::BTreeMap::<String, usize>::new();
        for r in &ours {
            *by_kind
                .entry(format!(
                    "{} {} {} {}",
                    r.verb, r.resource, r.field_manager, r.code
                ))
                .or_default() += 1;
        }
        if !by_kind.is_empty() {
            println!("idle requests: {by_kind:?}");
        }
        Some((idle_cpu, ours.len(), late))
    } else {
        None
    };
    // Spec changes, one at a time: an instance's `spec.image` patched, timed until its
    // ConfigMap (a child) holds the new value, as a watch on ConfigMaps reports it.
    let changes: usize = env_number("KROXIDE_SCALE_CHANGES", 0);
    let latencies = if changes > 0 {
        use futures::StreamExt;
        use k8s_openapi::api::core::v1::ConfigMap;
        use kube::runtime::watcher;
        let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "scale");
        let mut events = watcher(cms, watcher::Config::default()).boxed();
        // Past the initial list: from here every event is a change.
        while let Some(e) = events.next().await {
            if matches!(e.unwrap(), watcher::Event::InitDone) {
                break;
            }
        }
        let mut took = Vec::with_capacity(changes);
        for i in 0..changes {
            let name = format!("s{:04}", (i * 7919) % n);
            let image = format!("nginx:change-{i}");
            let t = Instant::now();
            api.patch(
                &name,
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"image": image}})),
            )
            .await
            .unwrap();
            loop {
                let e = tokio::time::timeout(Duration::from_secs(60), events.next())
                    .await
                    .unwrap_or_else(|_| panic!("{name}'s ConfigMap never held {image}"));
                if let Some(Ok(watcher::Event::Apply(cm))) = e
                    && cm.metadata.name.as_deref() == Some(name.as_str())
                    && cm.data.as_ref().and_then(|d| d.get("image")) == Some(&image)
                {
                    break;
                }
            }
            took.push(t.elapsed());
        }
        took.sort();
        let at = |q: f64| took[((took.len() as f64 * q).ceil() as usize).clamp(1, took.len()) - 1];
        Some((ms(at(0.5)), ms(at(0.99))))
    } else {
        None
    };
    if changes > 0 {
        // The last changes roll out (new ReplicaSets, Deployments available again, the
        // instances' status): the restart below must find them finished, or it counts their
        // writes as its own.
        settled(&api, n).await;
        server
            .quiet(Duration::from_secs(2), Duration::from_secs(120))
            .await;
    }
    drop(controller);
    // A restart over the unchanged instances: every instance is reconciled again, nothing written.
    let restart = if std::env::var("KROXIDE_SCALE_RESTART").is_ok_and(|v| v == "1") {
        server.reset_requests();
        let again = start_controller(&kubeconfig, port);
        let t = Instant::now();
        // Every instance reconciled once more (the count starts from zero in a new process).
        while scrape(port, INSTANCE_RECONCILES).await < n as f64 && t.elapsed() < Duration::from_secs(600) {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let took = t.elapsed();
        tokio::time::sleep(Duration::from_secs(2)).await;
        let writes = server.requests().iter().filter(|r| r.is_our_write()).count();
        drop(again);
        Some((took, writes))
    } else {
        None
    };
    println!(
        "server: {}",
        if real {
            "the real control plane (scripts/cluster: Kubernetes v1.36.3, KWOK)"
        } else {
            "tests/apiserver, in process"
        }
    );
    println!("| measurement | result |");
    println!("|---|---|");
    println!("| instances of a 3-resource graph (ConfigMap, Deployment, Service) | {n} |");
    println!(
        "| time to create them (client, sequential) | {:.1} s |",
        created.as_secs_f64()
    );
    println!(
        "| **time until every instance is ACTIVE** | **{:.1} s** ({:.0} instances/s) |",
        all_active.as_secs_f64(),
        n as f64 / all_active.as_secs_f64()
    );
    println!(
        "| controller requests | {} ({} writes, {} Events, {} watches) |",
        ours.len(),
        writes,
        events,
        watches
    );
    println!("| writes per instance | {:.2} |", writes as f64 / n as f64);
    println!(
        "| **controller peak RSS** | **{:.1} MiB** |",
        peak as f64 / 1024.0
    );
    println!(
        "| controller CPU per instance | {:.2} ms |",
        ms(controller_cpu) / n as f64
    );
    println!(
        "| {} CPU per instance | {:.2} ms |",
        if real {
            "benchmark client"
        } else {
            "test server and client"
        },
        ms(own_cpu) / n as f64
    );
    let per_reconcile = if allocations > 0.0 && reconciles > 0.0 {
        println!(
            "| heap allocations per instance reconcile | {:.0} ({reconciles:.0} reconciles) |",
            allocations / reconciles
        );
        allocations / reconciles
    } else {
        println!("| heap allocations | not counted (build with --features count-allocations) |");
        0.0
    };
    if let Some((c, r, late)) = idle {
        println!("| writes after every instance was ACTIVE, until the controller was quiet | {late} |");
        println!(
            "| idle {idle_seconds} s: controller requests, CPU | {r}, {:.2} s |",
            c.as_secs_f64()
        );
    }
    if let Some((p50, p99)) = latencies {
        println!(
            "| spec change to child ({changes} changes, one at a time): p50, p99 | {p50:.1} ms, {p99:.1} ms |"
        );
    }
    if let Some((took, w)) = restart {
        println!(
            "| restart: every instance reconciled again in, writes | {:.1} s, {w} |",
            took.as_secs_f64()
        );
    }
    let mut change_figures = latencies
        .map(|(p50, p99)| format!(" change_p50_ms={p50:.2} change_p99_ms={p99:.2}"))
        .unwrap_or_default();
    if let Some((c, r, late)) = idle {
        change_figures.push_str(&format!(
            " late_writes={late} idle_requests={r} idle_cpu_s={:.2}",
            c.as_secs_f64()
        ));
    }
    if let Some((took, w)) = restart {
        change_figures.push_str(&format!(
            " restart_s={:.2} restart_writes={w}",
            took.as_secs_f64()
        ));
    }
    println!(
        "SCALE server={} n={n} active_s={:.2} writes_per_instance={:.3} requests={} cpu_ms_per_instance={:.3} \
         server_cpu_ms_per_instance={:.3} rss_mib={:.1} allocs_per_reconcile={per_reconcile:.0} reconciles_per_instance={:.2}{change_figures}",
        if real { "real" } else { "embedded" },
        all_active.as_secs_f64(),
        writes as f64 / n as f64,
        ours.len(),
        ms(controller_cpu) / n as f64,
        ms(own_cpu) / n as f64,
        peak as f64 / 1024.0,
        reconciles / n as f64
    );
    server.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// Waits (at most 20 minutes) until all `n` instances report what the graph settles at: ACTIVE,
/// with the one replica of their Deployment available. On the real control plane this took more
/// than 5 minutes at 3,000 (kube-controller-manager runs with its default client rate limits).
async fn settled(api: &Api<DynamicObject>, n: usize) {
    let t = Instant::now();
    loop {
        let list = api.list(&Default::default()).await.unwrap();
        let done = list
            .items
            .iter()
            .filter(|o| o.data["status"]["state"] == "ACTIVE" && o.data["status"]["replicas"] == 1)
            .count();
        if done == n {
            return;
        }
        assert!(
            t.elapsed() < Duration::from_secs(1200),
            "only {done} of {n} instances settled after 20 min"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The server the benchmark runs against.
enum Server {
    Embedded(ApiServer),
    Real(kroxide_cluster::Cluster),
}

/// A request, as either server recorded it.
struct Request {
    verb: String,
    resource: String,
    user_agent: String,
    field_manager: String,
    code: u16,
}

impl Request {
    fn is_write(&self) -> bool {
        matches!(
            self.verb.as_str(),
            "create" | "update" | "patch" | "delete" | "deletecollection"
        )
    }

    /// Made by the controller.
    fn ours(&self) -> bool {
        self.user_agent.starts_with("kroxide/")
    }

    /// A write of the controller's, Events aside.
    fn is_our_write(&self) -> bool {
        self.ours() && self.is_write() && self.resource != "events"
    }
}

impl Server {
    fn reset_requests(&self) {
        match self {
            Server::Embedded(s) => s.counters().reset(),
            Server::Real(c) => {
                c.settle(Duration::from_millis(300), Duration::from_secs(10));
                c.reset_requests().unwrap();
            }
        }
    }

    /// Waits until the controller has made no request for `quiet` (at most `max`).
    async fn quiet(&self, quiet: Duration, max: Duration) {
        match self {
            Server::Embedded(_) => {
                let deadline = Instant::now() + max;
                let ours = || self.requests().iter().filter(|r| r.ours()).count();
                let (mut last, mut since) = (ours(), Instant::now());
                while Instant::now() < deadline && since.elapsed() < quiet {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    let now = ours();
                    if now != last {
                        (last, since) = (now, Instant::now());
                    }
                }
            }
            Server::Real(c) => c.settle(quiet, max),
        }
    }

    fn requests(&self) -> Vec<Request> {
        match self {
            Server::Embedded(s) => s
                .counters()
                .snapshot()
                .into_iter()
                .map(|r| Request {
                    verb: r.verb,
                    resource: r.resource,
                    user_agent: r.user_agent,
                    field_manager: r.field_manager,
                    code: r.code,
                })
                .collect(),
            Server::Real(c) => {
                c.settle(Duration::from_millis(500), Duration::from_secs(10));
                c.requests()
                    .unwrap()
                    .into_iter()
                    .map(|r| Request {
                        resource: r.resource_path(),
                        verb: r.verb,
                        user_agent: r.user_agent,
                        field_manager: r.field_manager,
                        code: r.code,
                    })
                    .collect()
            }
        }
    }

    async fn shutdown(self) {
        match self {
            Server::Embedded(s) => s.shutdown().await,
            Server::Real(c) => c.stop().unwrap(),
        }
    }
}

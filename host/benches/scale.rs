//! Scale: N instances (default 1000, `KROXIDE_SCALE_INSTANCES`) of a 3-resource graph, the
//! controller as its own process (release build), so its peak RSS is its own. The server is the
//! test API server in this process, or with `KROXIDE_SCALE_SERVER=real` the real control plane
//! of scripts/cluster (requests then come from its audit log). Reports the time until every
//! instance is ACTIVE, the requests the controller made, and its peak RSS. Run with
//! `cargo bench -p kroxide --bench scale`.

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

fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 1)]
async fn main() {
    let n: usize = std::env::var("KROXIDE_SCALE_INSTANCES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
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
    crds.create(
        &PostParams::default(),
        &serde_json::from_value(rgd_crd()).unwrap(),
    )
    .await
    .unwrap();
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

    let mut controller = Command::new(env!("CARGO_BIN_EXE_kroxide"))
        .args([
            "controller",
            "--namespace=default",
            "--metrics-bind-address=0",
            "--health-probe-bind-address=0",
        ])
        .arg(format!("--kubeconfig={}", kubeconfig.display()))
        .arg("--dynamic-controller-concurrent-reconciles=4")
        .arg("--client-qps=100000")
        .arg("--client-burst=100000")
        .arg("--log-level=warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
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
    let all_active = loop {
        peak = peak.max(peak_rss_kib(pid).unwrap_or(0));
        let active = api
            .list(&Default::default())
            .await
            .unwrap()
            .items
            .iter()
            .filter(|o| o.data["status"]["state"] == "ACTIVE")
            .count();
        if active == n {
            break started.elapsed();
        }
        assert!(
            started.elapsed() < Duration::from_secs(900),
            "only {active} of {n} ACTIVE after 15 min"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    tokio::time::sleep(Duration::from_secs(2)).await;
    peak = peak.max(peak_rss_kib(pid).unwrap_or(0));
    let requests = server.requests();
    let ours: Vec<_> = requests
        .iter()
        .filter(|r| r.user_agent.starts_with("kroxide/"))
        .collect();
    let writes = ours
        .iter()
        .filter(|r| r.is_write() && r.resource != "events")
        .count();
    let events = ours.iter().filter(|r| r.resource == "events").count();
    let watches = ours.iter().filter(|r| r.verb == "watch").count();
    let _ = controller.kill();
    let _ = controller.wait();
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
    server.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
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
}

impl Request {
    fn is_write(&self) -> bool {
        matches!(
            self.verb.as_str(),
            "create" | "update" | "patch" | "delete" | "deletecollection"
        )
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
                })
                .collect(),
            Server::Real(c) => {
                c.settle(Duration::from_millis(500), Duration::from_secs(10));
                c.requests()
                    .unwrap()
                    .into_iter()
                    .map(|r| Request {
                        verb: r.verb,
                        resource: r.resource,
                        user_agent: r.user_agent,
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

//! Shared by the integration tests: the repository root, scratch directories, polling with a
//! deadline, the real helm, and a test API server prepared for the controller.

// Each test crate compiles this module and uses a part of it.
#![allow(dead_code)]

pub mod chainsaw;
pub mod faults;

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use clap::Parser;
use k8s_openapi::{
    api::core::v1::Namespace, apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
};
use kroxide::{
    cli::{Cli, Command as Sub},
    config::ControllerConfig,
    graph::crd::rgd_crd,
};
use kroxide_apiserver::{ApiServer, Config};
use kube::{
    Api, Client,
    api::{DynamicObject, GroupVersionKind, PostParams},
};
use serde_json::{Value, json};

/// The repository root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// A fresh directory under the system temp dir, removed on drop.
#[derive(Debug)]
pub struct Scratch(PathBuf);

impl Scratch {
    /// Creates `<tmp>/<prefix>-<pid>-<nanos>`.
    pub fn new(prefix: &str) -> Self {
        let n = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let dir = std::env::temp_dir().join(format!("{prefix}-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Polls `check` every 25 ms until it returns `Some`; panics naming `what` after `timeout`.
pub async fn eventually<T>(what: &str, timeout: Duration, mut check: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Polls `check` every 100 ms until it returns `Some`; panics naming `what` after `timeout`.
pub fn eventually_blocking<T>(what: &str, timeout: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The helm binary, fetched once by `scripts/fetch-helm`.
pub fn helm() -> String {
    let out = Command::new(repo().join("scripts/fetch-helm"))
        .output()
        .expect("scripts/fetch-helm runs");
    assert!(
        out.status.success(),
        "fetching helm: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// The server a test runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Server {
    /// tests/apiserver, in process: starts in milliseconds, simulates workloads after a delay.
    Embedded,
    /// The real control plane of scripts/cluster: Kubernetes' own components and a KWOK node.
    Real,
}

/// What serves the test: the in-process API server or the real control plane.
pub enum Backend {
    Embedded(ApiServer),
    Real(kroxide_cluster::Cluster),
}

/// A server with the namespaces `kroxide-system` and `apps`, a client, and a kubeconfig file
/// for controller processes.
pub struct Env {
    pub backend: Backend,
    pub client: Client,
    pub kubeconfig: PathBuf,
    pub scratch: Scratch,
}

/// A request as the server recorded it (the embedded server's request log or kube-apiserver's
/// audit log).
pub type Request = kroxide_cluster::Request;

impl Env {
    /// Starts the embedded server (simulated workloads become available after
    /// `workload_delay`) and, with `with_crd`, installs the ResourceGraphDefinition CRD.
    pub async fn start(prefix: &str, workload_delay: Duration, with_crd: bool) -> Self {
        Self::start_on(Server::Embedded, prefix, workload_delay, with_crd).await
    }

    /// Starts `server`; `workload_delay` applies to the embedded one (on the real one KWOK
    /// makes Pods ready at once and the real controllers make Deployments available).
    pub async fn start_on(server: Server, prefix: &str, workload_delay: Duration, with_crd: bool) -> Self {
        let scratch = Scratch::new(prefix);
        let kubeconfig = scratch.path().join("kubeconfig");
        let backend = match server {
            Server::Embedded => {
                let server = ApiServer::start(Config {
                    workload_delay,
                    ..Config::default()
                })
                .await
                .unwrap();
                std::fs::write(&kubeconfig, server.kubeconfig()).unwrap();
                Backend::Embedded(server)
            }
            Server::Real => {
                let cluster = tokio::task::spawn_blocking(kroxide_cluster::Cluster::start)
                    .await
                    .unwrap()
                    .unwrap();
                std::fs::copy(cluster.kubeconfig(), &kubeconfig).unwrap();
                Backend::Real(cluster)
            }
        };
        let client = client_for(&kubeconfig).await;
        if with_crd {
            install_crd(&client).await;
        }
        let nss: Api<Namespace> = Api::all(client.clone());
        for ns in ["kroxide-system", "apps"] {
            nss.create(
                &PostParams::default(),
                &serde_json::from_value(json!({"metadata": {"name": ns}})).unwrap(),
            )
            .await
            .unwrap();
        }
        Self {
            backend,
            client,
            kubeconfig,
            scratch,
        }
    }

    /// Which server this is.
    pub fn server(&self) -> Server {
        match self.backend {
            Backend::Embedded(_) => Server::Embedded,
            Backend::Real(_) => Server::Real,
        }
    }

    /// The embedded server; panics on the real control plane.
    pub fn embedded(&self) -> &ApiServer {
        match &self.backend {
            Backend::Embedded(s) => s,
            Backend::Real(_) => panic!("this test step needs the embedded API server"),
        }
    }

    /// `kroxide controller --kubeconfig=… --namespace=kroxide-system <extra>`, validated.
    pub fn controller_config(&self, extra: &[&str]) -> ControllerConfig {
        let mut argv = vec![
            "kroxide".to_string(),
            "controller".into(),
            format!("--kubeconfig={}", self.kubeconfig.display()),
            "--namespace=kroxide-system".into(),
        ];
        argv.extend(extra.iter().map(|s| s.to_string()));
        let Sub::Controller(args) = Cli::try_parse_from(argv).unwrap().command else {
            unreachable!()
        };
        ControllerConfig::from_args(&args).unwrap()
    }

    /// The kubectl for this server: the machine's (a dispatcher that runs the client matching
    /// the embedded server's 1.32), or the real control plane's own release.
    pub fn kubectl(&self) -> PathBuf {
        match &self.backend {
            Backend::Embedded(_) => PathBuf::from("kubectl"),
            Backend::Real(c) => c.kubectl(),
        }
    }

    /// `program` with this server's kubeconfig, a HOME of its own, in the repository root.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new(program);
        cmd.env("HOME", self.scratch.path())
            .env("KUBECONFIG", &self.kubeconfig)
            .current_dir(repo());
        cmd
    }

    /// Runs `program args` (with `stdin`), panicking with its output when it fails; its stdout.
    pub fn ok(&self, program: impl AsRef<std::ffi::OsStr>, args: &[&str], stdin: Option<&str>) -> String {
        use std::io::Write;
        let program = program.as_ref().to_owned();
        let mut child = self
            .command(&program)
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let input = stdin.unwrap_or("").to_string();
        let mut pipe = child.stdin.take().unwrap();
        std::thread::spawn(move || {
            let _ = pipe.write_all(input.as_bytes());
        });
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{} {} failed:\n{}{}",
            program.to_string_lossy(),
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Forgets the requests recorded so far.
    pub fn reset_requests(&self) {
        match &self.backend {
            Backend::Embedded(s) => s.counters().reset(),
            Backend::Real(c) => {
                // Requests still in flight are logged when they complete: let them land first.
                c.settle(Duration::from_millis(300), Duration::from_secs(5));
                c.reset_requests().unwrap();
            }
        }
    }

    /// Waits until the API server has logged no request for 300 ms (at most 10 s): the
    /// controller has finished reacting to what happened. Replaces settle sleeps.
    pub async fn settle(&self) {
        let quiet = Duration::from_millis(300);
        match &self.backend {
            Backend::Embedded(s) => {
                let deadline = std::time::Instant::now() + Duration::from_secs(10);
                let mut last = s.counters().snapshot().len();
                let mut since = std::time::Instant::now();
                while std::time::Instant::now() < deadline {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    let now = s.counters().snapshot().len();
                    if now != last {
                        (last, since) = (now, std::time::Instant::now());
                    } else if since.elapsed() >= quiet {
                        return;
                    }
                }
            }
            // Reading the audit log blocks: let this worker's other tasks move meanwhile.
            Backend::Real(c) => tokio::task::block_in_place(|| c.settle(quiet, Duration::from_secs(10))),
        }
    }

    /// Every request since the start or the last [`Env::reset_requests`].
    pub fn requests(&self) -> Vec<Request> {
        match &self.backend {
            Backend::Embedded(s) => s
                .counters()
                .snapshot()
                .into_iter()
                .map(|r| Request {
                    verb: r.verb,
                    group: r.group,
                    resource: r.resource,
                    subresource: r.subresource,
                    namespace: r.namespace,
                    name: r.name,
                    field_manager: r.field_manager,
                    user: String::new(),
                    user_agent: r.user_agent,
                    code: r.code,
                })
                .collect(),
            Backend::Real(c) => {
                c.settle(Duration::from_millis(300), Duration::from_secs(5));
                c.requests().unwrap()
            }
        }
    }

    /// The object, as the server has it.
    pub async fn get(&self, api_version: &str, kind: &str, ns: &str, name: &str) -> Option<Value> {
        let api = self.api(api_version, kind, ns).await?;
        api.get_opt(name)
            .await
            .unwrap()
            .map(|o| serde_json::to_value(o).unwrap())
    }

    /// Names of the objects of a kind (in `ns`, or all), sorted; the `kube-root-ca.crt`
    /// ConfigMap a real control plane puts in every namespace is left out.
    pub async fn names(&self, api_version: &str, kind: &str, ns: Option<&str>) -> Vec<String> {
        let Some(api) = self.api(api_version, kind, ns.unwrap_or_default()).await else {
            return Vec::new();
        };
        let mut names: Vec<String> = api
            .list(&Default::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .filter_map(|o| o.metadata.name)
            .filter(|n| !(kind == "ConfigMap" && n == "kube-root-ca.crt"))
            .collect();
        names.sort();
        names
    }

    async fn api(&self, api_version: &str, kind: &str, ns: &str) -> Option<Api<DynamicObject>> {
        let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
        let (ar, caps) =
            kube::discovery::oneshot::pinned_kind(&self.client, &GroupVersionKind::gvk(group, version, kind))
                .await
                .ok()?;
        Some(
            if caps.scope == kube::discovery::Scope::Cluster || ns.is_empty() {
                Api::all_with(self.client.clone(), &ar)
            } else {
                Api::namespaced_with(self.client.clone(), ns, &ar)
            },
        )
    }

    /// Keeps new Pods from becoming ready until [`Env::release_workloads`]: on the real control
    /// plane the KWOK node is cordoned, so Pods stay Pending; on the embedded server the
    /// workload delay given to [`Env::start_on`] does it.
    pub async fn hold_workloads(&self) {
        self.cordon(true).await;
    }

    /// Lets Pods be scheduled (and become ready) again.
    pub async fn release_workloads(&self) {
        self.cordon(false).await;
    }

    async fn cordon(&self, unschedulable: bool) {
        if self.server() == Server::Real {
            let nodes: Api<k8s_openapi::api::core::v1::Node> = Api::all(self.client.clone());
            nodes
                .patch(
                    "kwok-node-0",
                    &kube::api::PatchParams::default(),
                    &kube::api::Patch::Merge(json!({"spec": {"unschedulable": unschedulable}})),
                )
                .await
                .unwrap();
        }
    }

    /// Stops the server.
    pub async fn shutdown(self) {
        match self.backend {
            Backend::Embedded(s) => s.shutdown().await,
            Backend::Real(c) => tokio::task::spawn_blocking(move || c.stop().unwrap())
                .await
                .unwrap(),
        }
    }
}

/// A client for the cluster a kubeconfig file names.
pub async fn client_for(kubeconfig: &Path) -> Client {
    let config = kube::Config::from_custom_kubeconfig(
        kube::config::Kubeconfig::read_from(kubeconfig).unwrap(),
        &kube::config::KubeConfigOptions::default(),
    )
    .await
    .unwrap();
    Client::try_from(config).unwrap()
}

/// Writes the controller sent (its user agent), Events and Leases excluded.
pub fn controller_writes(env: &Env) -> Vec<Request> {
    env.requests()
        .into_iter()
        .filter(|r| r.user_agent.starts_with("kroxide/") && r.is_write())
        .filter(|r| r.resource != "events" && r.resource != "leases")
        .collect()
}

/// Runs the async test `$name(server)` once per server, as `$name::embedded_api_server` and
/// `$name::real_control_plane`.
#[macro_export]
macro_rules! on_both_servers {
    ($($name:ident),+ $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn embedded_api_server() {
                super::$name($crate::support::Server::Embedded).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn real_control_plane() {
                super::$name($crate::support::Server::Real).await
            }
        }
    )+};
}

/// Installs the ResourceGraphDefinition CRD and waits until it is Established (a real server
/// answers 404 for its resources until then).
pub async fn install_crd(client: &Client) {
    install_and_wait(client, rgd_crd()).await;
}

/// Installs the GraphRevision CRD (as the chart does) and waits until it is Established.
#[allow(dead_code, reason = "not every test binary records revisions")]
pub async fn install_graph_revision_crd(client: &Client) {
    install_and_wait(client, kroxide::graph::crd::graph_revision_crd()).await;
}

/// Creates `crd` and waits until it is Established (a real server answers 404 for its
/// resources until then).
async fn install_and_wait(client: &Client, crd: Value) {
    let name = crd["metadata"]["name"].as_str().unwrap().to_string();
    let crds = Api::<CustomResourceDefinition>::all(client.clone());
    crds.create(&PostParams::default(), &serde_json::from_value(crd).unwrap())
        .await
        .unwrap();
    let established = kube::runtime::wait::conditions::is_crd_established();
    tokio::time::timeout(
        Duration::from_secs(30),
        kube::runtime::wait::await_condition(crds, &name, established),
    )
    .await
    .unwrap_or_else(|_| panic!("{name} is Established within 30 s"))
    .unwrap();
}

/// ResourceGraphDefinitions, dynamically typed.
pub fn rgd_api(client: &Client) -> Api<DynamicObject> {
    let ar = kube::api::ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("kro.run", "v1alpha1", "ResourceGraphDefinition"),
        "resourcegraphdefinitions",
    );
    Api::all_with(client.clone(), &ar)
}

//! An in-memory Kubernetes API server for tests and the kroxide demo: discovery (legacy and
//! aggregated), OpenAPI v3 with the real server's schemas of built-in kinds, watches with
//! bookmarks and 410 relists, server-side apply with field ownership, strategic merge, CRDs
//! with structural schemas and CEL rules, Tables, finalizers and garbage collection, and
//! simulated workload status. How closely it answers as a real kube-apiserver does is measured
//! by the differential suite (`tests/differential.rs`, run against the real control plane of
//! `scripts/cluster`); the differences left and why are listed in this crate's README.md.
//!
//! State lives in memory and is lost when the server stops. It listens on 127.0.0.1 only and
//! accepts any credentials.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! let server = kroxide_apiserver::ApiServer::start(kroxide_apiserver::Config::default()).await?;
//! std::fs::write("/tmp/kubeconfig", server.kubeconfig())?;
//! println!("serving {}", server.url());
//! server.shutdown().await;
//! # Ok(()) }
//! ```

pub mod access;
pub mod admission;
pub mod columns;
pub mod controllers;
pub mod crd;
pub mod decode;
pub mod discovery;
pub mod error;
pub mod events;
pub mod fields;
pub mod handlers;
pub mod jsonpath;
pub mod managed;
pub mod observe;
pub mod openapi;
pub mod patch;
pub mod protobuf;
pub mod registry;
pub mod request;
pub mod rules;
pub mod server;
pub mod shape;
pub mod state;
pub mod store;
pub mod table;
pub mod watch;

use std::{net::SocketAddr, sync::Arc, time::Duration};

use serde_json::Value;
use tokio::{net::TcpListener, task::JoinHandle};

pub use observe::{Counters, Fault, Faults, Request};

/// How the server runs.
#[derive(Debug, Clone)]
pub struct Config {
    /// Address to listen on; must be loopback. Port 0 picks a free port.
    pub listen: SocketAddr,
    /// Give Deployments, StatefulSets, ReplicaSets, DaemonSets, Jobs, LoadBalancer Services,
    /// PVCs and Pods a realistic status, as their controllers would.
    pub simulate_workloads: bool,
    /// How long a simulated workload takes to become ready after each spec change.
    pub workload_delay: Duration,
    /// How long a new CRD takes to become Established (0: at once, in the same request).
    pub establish_delay: Duration,
    /// Change events kept for watches to resume from; older resourceVersions get 410 Gone.
    pub history: usize,
    /// Interval of watch bookmarks (for clients that ask for them).
    pub bookmark_interval: Duration,
    /// Watch timeout when the client sets no `timeoutSeconds`.
    pub watch_timeout: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            simulate_workloads: true,
            workload_delay: Duration::from_millis(500),
            establish_delay: Duration::ZERO,
            history: 200_000,
            bookmark_interval: Duration::from_secs(10),
            watch_timeout: Duration::from_secs(1800),
        }
    }
}

/// A running server. Dropping it without [`ApiServer::shutdown`] leaves its tasks running
/// until the runtime stops.
#[derive(Debug)]
pub struct ApiServer {
    shared: Arc<server::Shared>,
    addr: SocketAddr,
    tasks: Vec<JoinHandle<()>>,
}

impl ApiServer {
    /// Binds and starts serving.
    ///
    /// # Errors
    /// A non-loopback address, or the port cannot be bound.
    pub async fn start(config: Config) -> std::io::Result<Self> {
        let listen = server::check_listen(config.listen, false)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
        let listener = TcpListener::bind(listen).await?;
        let addr = listener.local_addr()?;
        let shared = server::shared(&config, addr.to_string());
        shared.lock().establish_at_once = config.establish_delay.is_zero();
        let tasks = vec![
            tokio::spawn(server::serve(shared.clone(), listener)),
            tokio::spawn(controllers::collector(shared.clone())),
            tokio::spawn(controllers::simulator(shared.clone())),
        ];
        Ok(Self { shared, addr, tasks })
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// A kubeconfig for this server (context `kroxide`, namespace `default`).
    pub fn kubeconfig(&self) -> String {
        kubeconfig(&self.url())
    }

    /// Request records.
    pub fn counters(&self) -> &Counters {
        &self.shared.counters
    }

    /// Fault controls.
    pub fn faults(&self) -> &Faults {
        &self.shared.faults
    }

    /// Ends every open watch now (clients re-watch from their last resourceVersion).
    pub fn drop_watches(&self) {
        self.shared.watch_epoch.send_modify(|e| *e += 1);
    }

    /// Forgets the event history: a watch from any resourceVersion before now gets 410 Gone.
    pub fn compact(&self) {
        self.shared.lock().store.compact();
    }

    /// Turns workload simulation on or off.
    pub fn set_workload_simulation(&self, on: bool) {
        self.shared
            .knobs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .simulate_workloads = on;
    }

    /// Sets how long new CRDs take to become Established.
    pub fn set_establish_delay(&self, delay: Duration) {
        self.shared
            .knobs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .establish_delay = delay;
        self.shared.lock().establish_at_once = delay.is_zero();
    }

    /// The stored object, as a GET would return it (`namespace` is ignored for
    /// cluster-scoped kinds).
    pub fn get(&self, api_version: &str, kind: &str, namespace: &str, name: &str) -> Option<Value> {
        let state = self.shared.lock();
        let rt = state.registry.by_kind(api_version, kind)?;
        let ns = if rt.namespaced { namespace } else { "" };
        let obj = state.store.get(&rt.storage_key(), ns, name)?;
        Some(state.present(&rt, obj))
    }

    /// Names of stored objects of a kind (in `namespace`, or all when `None`).
    pub fn names(&self, api_version: &str, kind: &str, namespace: Option<&str>) -> Vec<String> {
        let state = self.shared.lock();
        let Some(rt) = state.registry.by_kind(api_version, kind) else {
            return Vec::new();
        };
        state
            .store
            .list(&rt.storage_key(), namespace)
            .filter_map(|o| {
                o.pointer("/metadata/name")
                    .and_then(Value::as_str)
                    .map(String::from)
            })
            .collect()
    }

    /// The current resourceVersion.
    pub fn resource_version(&self) -> u64 {
        self.shared.lock().store.rv()
    }

    /// Stops serving: watches end, connections close, background tasks stop.
    pub async fn shutdown(self) {
        self.shared.stopping.send_replace(true);
        for t in self.tasks {
            let _ = tokio::time::timeout(Duration::from_secs(5), t).await;
        }
    }
}

/// A kubeconfig pointing at `url` with a placeholder token.
pub fn kubeconfig(url: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: kroxide\n  cluster:\n    server: {url}\nusers:\n- name: kroxide\n  user:\n    token: kroxide-test\ncontexts:\n- name: kroxide\n  context:\n    cluster: kroxide\n    user: kroxide\n    namespace: default\ncurrent-context: kroxide\n"
    )
}

//! The shared context of every reconcile: client, caches, queues, revisions and memory.

use std::{
    collections::HashSet,
    sync::{Arc, Mutex},
};

use crate::object::Object;
use kube::{
    Api, Client,
    api::ApiResource,
    runtime::events::{Recorder, Reporter},
};
use serde_json::Value;
use tokio::sync::mpsc;

use super::{
    children::Children,
    client::Limiter,
    error::Error,
    informers::{Informers, Notice, WatchKey, rgd_watch},
    interest::Interest,
    key::InstanceKey,
    memory::Memory,
    queue::Queue,
    revisions::Graphs,
};
use crate::{config::ControllerConfig, plugin::PluginRuntime};

/// The graph controller's name in kro (its controller-runtime controller and work queue), which
/// labels those families here too.
pub(crate) const RGD_CONTROLLER: &str = "ResourceGraphDefinition";

/// The name of kro's instance work queue.
pub(crate) const INSTANCE_QUEUE: &str = "dynamic-controller-queue";

/// Everything reconciles share.
pub struct Context {
    /// API client.
    pub(crate) client: Client,
    /// Settings.
    pub(crate) config: ControllerConfig,
    /// Watches.
    pub(crate) informers: Informers,
    /// Plugin sandbox.
    pub(crate) runtime: Arc<PluginRuntime>,
    /// Live graph revisions.
    pub(crate) graphs: Graphs,
    /// Graph keys to reconcile.
    pub(crate) rgd_queue: Queue<String>,
    /// Instance keys to reconcile.
    pub(crate) instance_queue: Queue<InstanceKey>,
    /// Client-side rate limit.
    pub(crate) limiter: Limiter,
    /// Kubernetes Events.
    pub(crate) recorder: Recorder,
    /// Observed children.
    pub(crate) children: Children,
    /// Remembered writes.
    pub(crate) memory: Memory,
    /// Who watches what.
    pub(crate) interest: Interest,
    /// Numbers for /metrics.
    pub(crate) metrics: Arc<crate::metrics::Metrics>,
    /// Graphs reconciled at least once since start.
    pub(crate) graphs_seen: Mutex<HashSet<String>>,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Context {
    /// Remembers what a write to an object of `watch` returned (see [`Memory::saw`]), unless
    /// that watch's cache already holds it; hands it back shared.
    pub(crate) fn remember_write(&self, watch: &WatchKey, written: Value) -> Arc<Value> {
        let informer = self.informers.get(watch);
        self.memory.saw(written, |id| {
            let namespace = (!id.namespace.is_empty()).then_some(id.namespace.as_str());
            informer.as_ref()?.resource_version(namespace, &id.name)
        })
    }

    /// Ready: every cache has its initial list, and every graph has been reconciled once (so
    /// its plugin is loaded, or refused with a condition).
    pub(crate) fn ready(&self) -> bool {
        let Some(rgds) = self.informers.get(&rgd_watch()) else {
            return false;
        };
        if !rgds.synced() || !self.informers.all_synced() {
            return false;
        }
        let seen = self.graphs_seen.lock().unwrap_or_else(|e| e.into_inner());
        rgds.list().iter().all(|r| seen.contains(r.name()))
    }

    /// An API handle for `resource` (in `namespace` when namespaced), after waiting for the
    /// client's rate limit.
    pub(crate) async fn api(
        &self,
        resource: &ApiResource,
        namespaced: bool,
        namespace: Option<&str>,
    ) -> Api<super::wire::Wire> {
        self.limiter.acquire().await;
        match (namespaced, namespace) {
            (true, Some(ns)) => Api::namespaced_with(self.client.clone(), ns, resource),
            _ => Api::all_with(self.client.clone(), resource),
        }
    }
}

/// Builds the shared context (connects, creates the plugin runtime).
///
/// # Errors
/// No API connection, or the plugin runtime cannot start.
pub async fn context(
    config: ControllerConfig,
    client: Client,
    metrics: Arc<crate::metrics::Metrics>,
) -> Result<(Arc<Context>, mpsc::UnboundedReceiver<Notice>), Error> {
    let (tx, rx) = mpsc::unbounded_channel();
    let runtime = Arc::new(PluginRuntime::new(config.runtime.clone())?);
    let reporter = Reporter {
        controller: "kroxide".into(),
        instance: std::env::var("POD_NAME")
            .ok()
            .or_else(|| std::env::var("HOSTNAME").ok()),
    };
    let ctx = Arc::new(Context {
        recorder: Recorder::new(client.clone(), reporter),
        informers: Informers::new(client.clone(), tx),
        limiter: Limiter::new(config.client_qps, config.client_burst),
        rgd_queue: Queue::new(config.backoff).observed(metrics.workqueue(RGD_CONTROLLER)),
        // One graph holds at most all workers but one: a slow graph (plugin calls running into
        // their deadline) cannot starve the others.
        instance_queue: Queue::with_share(config.backoff, config.workers.saturating_sub(1).max(1))
            .observed(metrics.workqueue(INSTANCE_QUEUE)),
        graphs: Graphs::default(),
        children: Children::default(),
        memory: Memory::default(),
        interest: Interest::default(),
        metrics,
        graphs_seen: Mutex::new(HashSet::new()),
        runtime,
        client,
        config,
    });
    Ok((ctx, rx))
}

impl crate::probes::Health for Context {
    fn ready(&self) -> bool {
        Context::ready(self)
    }

    fn load(&self) -> (usize, usize, usize) {
        let (_, bytes) = self.runtime.cache_usage();
        (self.rgd_queue.len(), self.instance_queue.len(), bytes)
    }

    fn sample(&self) {
        self.rgd_queue.sample();
        self.instance_queue.sample();
    }
}

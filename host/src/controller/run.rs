//! Running the controller: start the watches, router and workers; the leader loop; the admin
//! server; graceful stop.

use std::{collections::BTreeSet, future::Future, sync::Arc, time::Duration};

use tokio::{sync::mpsc, task::JoinSet};

use super::{
    client::client,
    context::{Context, context},
    error::Error,
    informers::{Notice, crd_watch, rgd_watch},
    router::route,
    worker::{Graphs, Instances, work},
};
use crate::config::ControllerConfig;

/// A running controller.
pub struct Running {
    /// Shared state.
    pub(crate) ctx: Arc<Context>,
    tasks: JoinSet<()>,
    workers: JoinSet<()>,
}

impl std::fmt::Debug for Running {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Running").finish_non_exhaustive()
    }
}

/// Starts watching graphs and the workers.
pub async fn start(ctx: Arc<Context>, notices: mpsc::UnboundedReceiver<Notice>) -> Running {
    let mut tasks = JoinSet::new();
    tasks.spawn(route(ctx.clone(), notices));
    let watcher_ctx = ctx.clone();
    tasks.spawn(async move {
        // The RGD CRD may be installed after the controller starts.
        let mut warned = false;
        loop {
            match watcher_ctx.informers.ensure(&rgd_watch()).await {
                Ok(_) => {
                    if let Err(e) = watcher_ctx.informers.ensure(&crd_watch()).await {
                        tracing::info!(error = %e, "cannot watch CustomResourceDefinitions; graphs re-check theirs on a timer");
                    }
                    break;
                }
                Err(e) => {
                    if !warned {
                        tracing::warn!(error = %e, "ResourceGraphDefinition CRD not served yet; install it with `kroxide generate crd | kubectl apply -f -` or the Helm chart");
                        warned = true;
                    }
                    watcher_ctx.informers.kinds.forget(crate::rgd::API_VERSION, crate::rgd::KIND);
                    tokio::time::sleep(Duration::from_secs(2)).await;
                }
            }
        }
    });
    let mut workers = JoinSet::new();
    ctx.metrics
        .controller_started(super::context::RGD_CONTROLLER, ctx.config.rgd_workers);
    for _ in 0..ctx.config.rgd_workers {
        workers.spawn(work::<Graphs>(ctx.clone()));
    }
    for _ in 0..ctx.config.workers {
        workers.spawn(work::<Instances>(ctx.clone()));
    }
    Running { ctx, tasks, workers }
}

/// What a running controller holds in memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Footprint {
    /// Instances with remembered applies.
    pub applied_instances: usize,
    /// Children with remembered applies.
    pub applied_children: usize,
    /// Copies of objects our own writes returned.
    pub fresh_copies: usize,
    /// Instances with a remembered state.
    pub instance_states: usize,
    /// Children in the cache.
    pub cached_children: usize,
    /// Deletions remembered by the cache.
    pub tombstones: usize,
}

impl Running {
    /// What the controller holds in memory now; everything but the caches of live objects
    /// returns to zero when every instance is gone.
    pub fn footprint(&self) -> Footprint {
        let (applied_instances, applied_children, fresh_copies, instance_states) =
            self.ctx.memory.footprint();
        let (cached_children, tombstones) = self.ctx.children.len();
        Footprint {
            applied_instances,
            applied_children,
            fresh_copies,
            instance_states,
            cached_children,
            tombstones,
        }
    }

    /// Stops taking work, lets in-flight reconciles finish for up to `grace`, then stops
    /// everything. Returns whether every reconcile finished in time.
    pub async fn stop(mut self, grace: Duration) -> bool {
        self.ctx.rgd_queue.close();
        self.ctx.instance_queue.close();
        let drained =
            tokio::time::timeout(grace, async { while self.workers.join_next().await.is_some() {} })
                .await
                .is_ok();
        self.workers.abort_all();
        self.tasks.abort_all();
        drained
    }
}

/// Runs the controller until `shutdown` completes, then drains in-flight reconciles for up to
/// the configured grace period. Serves health and metrics on the configured addresses. With
/// leader election, reconciles only while this replica holds the Lease, and stops at once when
/// it cannot renew it.
///
/// # Errors
/// No API connection, the plugin runtime cannot start, or an endpoint address cannot be bound.
pub async fn run(config: ControllerConfig, shutdown: impl Future<Output = ()>) -> Result<(), Error> {
    let metrics = Arc::new(crate::metrics::Metrics::default());
    let client = client(&config, &metrics).await?;
    tracing::info!(
        memory_limit = config
            .memory_limit
            .map(|m| format!("{} MiB", m >> 20))
            .unwrap_or_else(|| "none".into()),
        plugin_calls_at_once = config.runtime.concurrency,
        plugin_call_max_memory_mib = config.runtime.max_memory >> 20,
        "plugin runtime sized"
    );
    let probes = Arc::new(crate::probes::Probes::new(metrics.clone()));
    let mut servers = JoinSet::new();
    let bind = |addr: std::net::SocketAddr| async move {
        crate::probes::bind(addr)
            .await
            .map_err(|e| Error::Connect(format!("cannot listen on {addr}: {e}")))
    };
    match &config.metrics_tls {
        None => {
            for addr in [config.health_addr, config.metrics_addr]
                .into_iter()
                .flatten()
                .collect::<BTreeSet<_>>()
            {
                let listener = bind(addr).await?;
                tracing::info!(%addr, "serving /healthz, /readyz and /metrics");
                servers.spawn(crate::probes::serve(
                    listener,
                    probes.clone(),
                    crate::probes::Serves::Everything,
                ));
            }
        }
        Some((cert, key)) => {
            if let Some(addr) = config.health_addr {
                let listener = bind(addr).await?;
                tracing::info!(%addr, "serving /healthz and /readyz");
                servers.spawn(crate::probes::serve(
                    listener,
                    probes.clone(),
                    crate::probes::Serves::Health,
                ));
            }
            if let Some(addr) = config.metrics_addr {
                let tls =
                    crate::probes::tls_acceptor(cert, key).map_err(|e| Error::Connect(e.to_string()))?;
                let listener = bind(addr).await?;
                tracing::info!(%addr, "serving /metrics over HTTPS to authorized callers");
                let auth = Arc::new(crate::probes::Authenticator::new(client.clone()));
                servers.spawn(crate::probes::serve_secure(listener, probes.clone(), tls, auth));
            }
        }
    }
    let grace = config.graceful_shutdown_timeout;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let (lead_tx, mut leading) = tokio::sync::watch::channel(config.leader_election.is_none());
    let mut election = JoinSet::new();
    if let Some(le) = &config.leader_election {
        probes.standby.store(true, std::sync::atomic::Ordering::Release);
        let settings = crate::leader::Settings {
            namespace: le.namespace.clone(),
            identity: config.identity.clone(),
            lease_duration: le.lease_duration,
            renew_deadline: le.renew_deadline,
            retry_period: le.retry_period,
        };
        election.spawn(crate::leader::campaign(
            client.clone(),
            settings,
            lead_tx,
            stop_rx.clone(),
        ));
    }
    tokio::pin!(shutdown);
    loop {
        // Wait to lead.
        while !*leading.borrow() {
            tokio::select! {
                _ = leading.changed() => {}
                _ = &mut shutdown => {
                    let _ = stop_tx.send(true);
                    while election.join_next().await.is_some() {}
                    return Ok(());
                }
            }
        }
        probes.standby.store(false, std::sync::atomic::Ordering::Release);
        let (ctx, notices) = context(config.clone(), client.clone(), metrics.clone()).await?;
        *probes.current.lock().unwrap_or_else(|e| e.into_inner()) = Some(ctx.clone());
        let running = start(ctx, notices).await;
        let lost = loop {
            tokio::select! {
                _ = leading.changed() => {
                    if !*leading.borrow() {
                        break true;
                    }
                }
                _ = &mut shutdown => break false,
            }
        };
        *probes.current.lock().unwrap_or_else(|e| e.into_inner()) = None;
        if lost {
            // Another replica may take over at any moment: stop writing now.
            running.stop(Duration::ZERO).await;
            probes.standby.store(true, std::sync::atomic::Ordering::Release);
            continue;
        }
        tracing::info!("shutting down: finishing in-flight reconciles");
        if !running.stop(grace).await {
            tracing::warn!("in-flight reconciles did not finish within the grace period");
        }
        let _ = stop_tx.send(true);
        while election.join_next().await.is_some() {}
        servers.abort_all();
        return Ok(());
    }
}

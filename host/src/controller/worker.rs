//! The workers: take a key from a queue, reconcile it, and decide from the outcome when to
//! look again. One loop serves both queues; a [`Reconciler`] says what differs.

use std::{fmt::Display, future::Future, sync::Arc, time::Duration};

use tracing::Instrument;

use super::{
    action::Action,
    context::Context,
    error::Error,
    informers::rgd_watch,
    instance,
    key::InstanceKey,
    queue::{Key, Queue},
    rgd,
};
use crate::metrics::Outcome;

/// One kind of work: its queue, its reconcile, and how its outcomes are counted and requeued.
pub(crate) trait Reconciler: Send + Sync + 'static {
    /// The queue's key.
    type Key: Key + Display + Send + Sync + 'static;
    /// The label of `/metrics` series: `rgd` or `instance`.
    const KIND: &'static str;
    /// The controller-runtime controller kro runs this work in, which labels the
    /// `controller_runtime_*` series (`None`: kro's own loop, which has none).
    const RUNTIME_CONTROLLER: Option<&'static str> = None;
    /// Its queue.
    fn queue(ctx: &Context) -> &Queue<Self::Key>;
    /// The span of one reconcile of `key`.
    fn span(key: &Self::Key) -> tracing::Span;
    /// The graph `key` belongs to, for `/metrics`.
    fn graph(ctx: &Context, key: &Self::Key) -> String;
    /// The resource of an instance key as kro's metrics label it (`None` for graphs).
    fn gvr(_ctx: &Context, _key: &Self::Key) -> Option<String> {
        None
    }
    /// Reconciles `key`.
    fn reconcile(ctx: &Arc<Context>, key: &Self::Key) -> impl Future<Output = Result<Action, Error>> + Send;
    /// Called after every reconcile, before the outcome is acted on.
    fn after(_ctx: &Context, _key: &Self::Key) {}
    /// The longest a key waits before it is looked at again after a success; `None` waits for
    /// a change.
    fn resync(_ctx: &Context) -> Option<Duration> {
        None
    }
}

/// Graphs.
#[derive(Debug)]
pub(crate) struct Graphs;

impl Reconciler for Graphs {
    type Key = String;
    const KIND: &'static str = "rgd";
    const RUNTIME_CONTROLLER: Option<&'static str> = Some(super::context::RGD_CONTROLLER);

    fn queue(ctx: &Context) -> &Queue<String> {
        &ctx.rgd_queue
    }

    fn span(name: &String) -> tracing::Span {
        tracing::info_span!("reconcile", graph = %name)
    }

    fn graph(_ctx: &Context, name: &String) -> String {
        name.clone()
    }

    fn reconcile(ctx: &Arc<Context>, name: &String) -> impl Future<Output = Result<Action, Error>> + Send {
        rgd::reconcile(ctx, name)
    }

    /// A graph that exists has been reconciled at least once: `/readyz` waits for that.
    fn after(ctx: &Context, name: &String) {
        let exists = ctx
            .informers
            .get(&rgd_watch())
            .is_some_and(|i| i.get(None, name).is_some());
        if exists {
            ctx.graphs_seen
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(name.clone());
        }
    }
}

/// Instances.
#[derive(Debug)]
pub(crate) struct Instances;

impl Reconciler for Instances {
    type Key = InstanceKey;
    const KIND: &'static str = "instance";

    fn queue(ctx: &Context) -> &Queue<InstanceKey> {
        &ctx.instance_queue
    }

    fn span(key: &InstanceKey) -> tracing::Span {
        tracing::info_span!("reconcile", kind = %key.kind, namespace = key.namespace.as_deref().unwrap_or(""), name = %key.name)
    }

    fn graph(ctx: &Context, key: &InstanceKey) -> String {
        ctx.graphs
            .for_kind(&key.api_version, &key.kind)
            .map(|r| r.rgd.clone())
            .unwrap_or_default()
    }

    fn gvr(ctx: &Context, key: &InstanceKey) -> Option<String> {
        ctx.graphs.for_kind(&key.api_version, &key.kind).map(|r| r.gvr())
    }

    fn reconcile(
        ctx: &Arc<Context>,
        key: &InstanceKey,
    ) -> impl Future<Output = Result<Action, Error>> + Send {
        instance::reconcile(ctx, key)
    }

    /// Instances are looked at again at least every `--resync`, so drift is reverted.
    fn resync(ctx: &Context) -> Option<Duration> {
        Some(ctx.config.resync)
    }
}

/// Takes keys from `R`'s queue until it closes. A success forgets the key's failures and
/// requeues it when the reconcile (or the resync) asks; an `Action::retry` or an error retries
/// with backoff.
pub(crate) async fn work<R: Reconciler>(ctx: Arc<Context>) {
    while let Some(key) = R::queue(&ctx).next().await {
        let span = R::span(&key);
        let started = std::time::Instant::now();
        if let Some(c) = R::RUNTIME_CONTROLLER {
            ctx.metrics.controller_busy(c, true);
        }
        let result = R::reconcile(&ctx, &key).instrument(span.clone()).await;
        R::after(&ctx, &key);
        let failed = result.as_ref().map_or(true, |a| a.backoff);
        if let Some(c) = R::RUNTIME_CONTROLLER {
            ctx.metrics.controller_busy(c, false);
            let outcome = match &result {
                Err(_) => Outcome::Error,
                Ok(a) if a.backoff => Outcome::Requeue,
                Ok(a) if a.requeue_after.is_some() => Outcome::RequeueAfter,
                Ok(_) => Outcome::Success,
            };
            ctx.metrics.controller_reconciled(c, outcome, started.elapsed());
        }
        ctx.metrics
            .observe_reconcile(R::KIND, &R::graph(&ctx, &key), started.elapsed(), failed);
        if let Some(gvr) = R::gvr(&ctx, &key) {
            ctx.metrics
                .observe_instance_reconcile(&gvr, started.elapsed(), failed);
        }
        let queue = R::queue(&ctx);
        queue.done(&key);
        match result {
            Ok(a) if a.backoff => {
                let delay = queue.retry(key);
                span.in_scope(|| tracing::debug!(retry_in = ?delay, "reconciled; not ready to go on"));
            }
            Ok(a) => {
                queue.forget(&key);
                let next = match (a.requeue_after, R::resync(&ctx)) {
                    (Some(d), Some(resync)) => Some(d.min(resync)),
                    (d, resync) => d.or(resync),
                };
                if let Some(next) = next {
                    span.in_scope(|| tracing::debug!(requeue_in = ?next, "reconciled"));
                    queue.add_after(key, next);
                }
            }
            Err(e) => {
                let delay = queue.retry(key);
                span.in_scope(|| tracing::info!(error = %e, retry_in = ?delay, "reconcile failed"));
            }
        }
    }
}

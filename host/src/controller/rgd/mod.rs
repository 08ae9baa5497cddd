//! Reconciling a ResourceGraphDefinition: validate the graph, load its plugin from a
//! ConfigMap, apply the generated CRD and wait until it is Established, then serve its instances
//! with a new revision when anything changed. Status and conditions as kro reports them.

mod crd;
mod delete;
mod plugin;
mod report;

use std::{sync::Arc, time::Duration};

use serde_json::Value;
use sha2::{Digest as _, Sha256};

use crate::controller::{
    action::{Action, NOT_SYNCED_RETRY},
    context::Context,
    error::Error,
    informers::{Lookup, Role, WatchKey, rgd_watch},
    revisions::Revision,
};
use crate::{
    graph::{self},
    metadata,
    object::Object,
    rgd::ResourceGraphDefinition,
};

use crd::{ensure_crd, watch_kinds};
use delete::{delete, finalizers, forget_graph, set_finalizers};
use plugin::load_plugin;
use report::{Reason, Refusal, Report, cond, unknown, write_status};

/// Reconciles one graph.
///
/// # Errors
/// API failures, retried with backoff.
pub(crate) async fn reconcile(ctx: &Arc<Context>, name: &str) -> Result<Action, Error> {
    let Some(informer) = ctx.informers.get(&rgd_watch()) else {
        return Ok(Action::after(Duration::from_secs(1)));
    };
    let cached = match informer.lookup(None, name) {
        Lookup::Found(v) => v,
        // At start-up the key can come before the list that holds it is complete.
        Lookup::NotSynced => return Ok(Action::after(NOT_SYNCED_RETRY)),
        Lookup::Absent => {
            if let Some(old) = ctx.graphs.remove(name) {
                ctx.informers.stop(&old.watch);
                tracing::info!(kind = %old.resource.kind, "graph gone; stopped serving its instances");
            }
            forget_graph(ctx, name);
            return Ok(Action::done());
        }
    };
    let raw = ctx.memory.freshest(cached);
    if raw.deleting() {
        // A graph deleted while this controller was down has no revision yet: serve it first
        // (if it compiles), so the instances that remain are still reconciled and finalized.
        if ctx.graphs.get(name).is_none()
            && let Err(e) = serve(ctx, name, raw.clone(), true).await
        {
            tracing::info!(error = %e, "cannot serve the graph being deleted");
        }
        return delete(ctx, name, &raw).await;
    }
    serve(ctx, name, raw, false).await
}

/// Compiles the graph, loads its plugin, applies its CRD and serves a new revision when
/// anything changed; reports the outcome in the RGD's status. `deleting`: the RGD is going
/// (no finalizer is added; the caller deletes once the instances are gone).
async fn serve(ctx: &Arc<Context>, name: &str, mut raw: Value, deleting: bool) -> Result<Action, Error> {
    let fins = finalizers(&raw);
    if !deleting && !fins.iter().any(|f| f == metadata::FINALIZER) {
        let mut next = fins.clone();
        next.push(metadata::FINALIZER.to_string());
        set_finalizers(ctx, name, &raw, next).await?;
        if let Some(i) = ctx.informers.get(&rgd_watch())
            && let Some(c) = i.get(None, name)
        {
            raw = ctx.memory.freshest(c);
        }
    }
    let rgd = match ResourceGraphDefinition::from_value(&raw, name) {
        Ok(r) => r,
        Err(e) => {
            write_status(
                ctx,
                name,
                &raw,
                &Report::refused(Refusal::new(Reason::InvalidResourceGraph, e.to_string())),
            )
            .await?;
            return Ok(Action::done());
        }
    };
    let graph = match graph::build(&rgd, ctx.config.graph_limits) {
        Ok(g) => Arc::new(g),
        Err(e) => {
            tracing::info!(error = %e, "graph refused");
            write_status(
                ctx,
                name,
                &raw,
                &Report::refused(Refusal::new(Reason::InvalidResourceGraph, e.to_string())),
            )
            .await?;
            return Ok(Action::done());
        }
    };
    let plugin = match &rgd.spec.plugin {
        None => None,
        Some(spec) => match load_plugin(ctx, name, spec).await {
            Ok(p) => Some(p),
            Err(refusal) => {
                tracing::info!(reason = refusal.reason.as_str(), message = %refusal.message, "plugin refused; the last good revision keeps serving");
                let mut report = Report::refused(refusal);
                report.graph = Some(graph.clone());
                write_status(ctx, name, &raw, &report).await?;
                return Ok(Action::done());
            }
        },
    };
    let mut report = Report::healthy(&graph.names.kind, Some(graph.clone()), None, "");
    if let Err(Refusal { reason, message }) = ensure_crd(ctx, &rgd, &graph, &raw).await {
        let pending = reason == Reason::Pending;
        report.kind = cond("KindReady", false, reason.as_str(), message);
        report.controller = unknown("ControllerReady", "Pending", "waiting for the kind");
        write_status(ctx, name, &raw, &report).await?;
        // The CRD watch brings the graph back when its CRD changes; the timer is a fallback.
        return Ok(if pending {
            Action::after(Duration::from_secs(5))
        } else {
            Action::after(Duration::from_secs(30))
        });
    }
    let api_version = graph.names.api_version();
    ctx.informers.kinds.forget(&api_version, &graph.names.kind);
    let watch = WatchKey::all(&api_version, &graph.names.kind, Role::Instances);
    let started = async {
        watch_kinds(ctx, &graph).await?;
        let informer = ctx
            .informers
            .ensure(&watch)
            .await
            .map_err(|e| Refusal::new(Reason::FailedToStart, e.to_string()))?;
        Ok::<_, Refusal>(informer)
    }
    .await;
    let informer = match started {
        Ok(i) => i,
        Err(Refusal { reason, message }) => {
            if reason == Reason::InvalidResourceGraph {
                report.accepted = cond("GraphAccepted", false, reason.as_str(), message);
            } else {
                report.controller = cond("ControllerReady", false, reason.as_str(), message);
            }
            write_status(ctx, name, &raw, &report).await?;
            return Ok(Action::after(Duration::from_secs(5)));
        }
    };
    let fingerprint = {
        let mut h = Sha256::new();
        h.update(raw.get("spec").map(Value::to_string).unwrap_or_default());
        h.update(
            raw.pointer("/metadata/labels")
                .map(Value::to_string)
                .unwrap_or_default(),
        );
        h.update(
            raw.pointer("/metadata/annotations")
                .map(Value::to_string)
                .unwrap_or_default(),
        );
        if let Some(p) = &plugin {
            h.update(p.plugin.digest().to_string());
        }
        format!("{:x}", h.finalize())
    };
    let current = ctx.graphs.get(name);
    let number = match &current {
        Some(c) if c.fingerprint == fingerprint => c.number,
        Some(c) => c.number + 1,
        None => {
            raw.pointer("/status/lastIssuedRevision")
                .and_then(Value::as_u64)
                .unwrap_or(0)
                + 1
        }
    };
    if current.as_ref().is_none_or(|c| c.fingerprint != fingerprint) {
        let revision = Arc::new(Revision {
            rgd: name.to_string(),
            rgd_uid: rgd.metadata.uid.clone(),
            number,
            graph: graph.clone(),
            plugin,
            resource: informer.resource.clone(),
            namespaced: informer.namespaced,
            watch: watch.clone(),
            fingerprint,
        });
        ctx.graphs.set(revision);
        tracing::info!(revision = number, kind = %graph.names.kind, "serving graph revision");
        if informer.synced() {
            for obj in informer.list() {
                ctx.instance_queue.add(super::key::InstanceKey {
                    api_version: api_version.clone(),
                    kind: graph.names.kind.clone(),
                    namespace: obj.namespace().map(String::from),
                    name: obj.name().to_string(),
                });
            }
        }
    }
    report.revision = Some(number);
    report.revisions.mark.message = format!("revision {number} compiled and active");
    write_status(ctx, name, &raw, &report).await?;
    Ok(Action::done())
}

//! Reconciling a ResourceGraphDefinition: validate the graph, load its plugin from a
//! ConfigMap, apply the generated CRD and wait until it is Established, then serve its instances
//! with a new revision when anything changed. Status and conditions as kro reports them.

mod crd;
mod delete;
mod graph_revisions;
mod plugin;
mod report;
mod serve;

use std::{sync::Arc, time::Duration};

use crate::controller::{
    action::{Action, NOT_SYNCED_RETRY},
    context::Context,
    error::Error,
    informers::{Lookup, rgd_watch},
};
use crate::object::Object;

use delete::{delete, forget_graph};
use serve::serve;

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

//! Reconciling one instance, one module per stage in the data flow's order:
//!
//! ```text
//! observe (the instance, its children) -> manage (kro's labels and finalizer)
//!   -> converge: passes of resolve -> transform -> apply, then prune
//!   -> report: status (CEL fields, plugin derive-status, kro's conditions) -> status patch
//! ```
//!
//! Deletion ([`finalize`]) removes the children in reverse topological waves, then the
//! finalizer.

mod converge;
mod finalize;
mod manage;
mod observe;
mod report;

use std::sync::Arc;

use super::{action::Action, context::Context, error::Error, key::InstanceKey};
use crate::{metadata::InstanceIdentity, object::Object, status::Mark};
use observe::Observed;

/// Reconciles the instance `key` names. Errors are API errors worth a retry with backoff;
/// failures the instance's status can report (a plugin error, an apply refused) are reported
/// there and retried the same way.
pub(crate) async fn reconcile(ctx: &Arc<Context>, key: &InstanceKey) -> Result<Action, Error> {
    let (rev, mut instance) = match observe::instance(ctx, key) {
        Observed::Live(rev, instance) => (rev, instance),
        Observed::Orphans(rev, members) => return finalize::collect_orphans(ctx, &rev, key, members).await,
        Observed::Done(action) => return Ok(action),
    };
    let identity = InstanceIdentity::from_object(&instance);
    if instance.deleting() {
        return finalize::finalize(ctx, &rev, key, &instance, &identity).await;
    }
    // No child is made for an instance without our finalizer: deleted then, it would leave
    // its children behind.
    let managed = match manage::ensure_managed(ctx, &rev, key, &mut instance, &identity).await {
        Ok(()) => Mark::managed(),
        Err(e) if e.is_conflict() => return Err(e),
        // Deleted before it had our finalizer: nothing was made for it.
        Err(e) if e.is_not_found() => {
            observe::forget(ctx, key);
            return Ok(Action::done());
        }
        Err(e) => {
            let unmanaged = Mark::management_failed(e.to_string());
            // Best effort: the server that refused the finalizer may refuse this too.
            let _ = report::without_passes(ctx, &rev, key, &instance, &identity, unmanaged, false).await;
            return Err(e);
        }
    };
    if observe::suspended(&instance) {
        report::without_passes(ctx, &rev, key, &instance, &identity, managed, true).await?;
        return Ok(Action::done());
    }
    let now = report::now();
    let mut converged = converge::converge(ctx, &rev, key, &mut instance, &identity).await?;
    converge::watch_externals(ctx, key, &converged.resolution).await;
    if converged.clean()
        && converge::prune_stale(ctx, &rev, key, &mut instance, &identity, &converged).await?
    {
        converged.current = false;
    }
    let report = report::status(ctx, &rev, &instance, &identity, &converged, managed, &now).await;
    report::publish_report(ctx, &rev, key, &instance, &converged, report).await
}

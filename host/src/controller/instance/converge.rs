//! The converge stage: passes of resolve (templates, `includeWhen`, `readyWhen`, `forEach`) →
//! transform (the plugin, namespaces, kro's labels) → apply, repeated while a pass applied
//! something and resources are still pending (a dependency just appeared), at most once per
//! node; then the interest in external objects, and the prune of what is no longer desired.

use std::sync::Arc;

use serde_json::Value;

use super::{
    manage::{Listed, ensure_parent, watch_children},
    observe::{Live, children},
};
use crate::controller::{
    apply::{self, ApplyError, Outcome},
    context::Context,
    error::Error,
    informers::{Role, WatchKey},
    key::InstanceKey,
    prune,
    revisions::Revision,
};
use crate::{
    child::{DesiredChild, ObservedChild},
    graph::runtime::{self, Resolution},
    metadata::InstanceIdentity,
    object::Object,
    status::{Failure, Reason},
    transform::{self, PluginStage},
};

/// What the passes left.
#[derive(Debug)]
pub(super) struct Converged {
    /// The desired set of the last pass that got that far.
    pub(super) output: Option<transform::Output>,
    /// The last pass's resolution.
    pub(super) resolution: Resolution,
    /// What stopped the passes early, if anything did.
    pub(super) failure: Option<Failure>,
    /// A desired child is terminating: nothing was applied, as kro holds every child (its
    /// dependents above all) until the old object is gone and can be made anew.
    pub(super) held: bool,
    /// The children the last pass resolved against.
    pub(super) observed: Vec<ObservedChild>,
    /// The last pass wrote nothing: its resolution still describes the instance (as of
    /// `instance_version`) and its children, and the status stage reuses it.
    pub(super) current: bool,
    /// The instance's resourceVersion the last pass resolved.
    pub(super) instance_version: Option<u64>,
}

impl Converged {
    /// Whether everything desired rendered and applied cleanly, so stale children may go.
    pub(super) fn clean(&self) -> bool {
        self.failure.is_none()
            && !self.held
            && self.resolution.first_error().is_none()
            && self.output.is_some()
    }
}

/// Resolve → transform → apply until nothing new becomes renderable. API errors writing the
/// instance's ApplySet parent annotations are returned; everything else is a [`Failure`] the
/// status reports.
pub(super) async fn converge(
    ctx: &Arc<Context>,
    rev: &Arc<Revision>,
    key: &InstanceKey,
    instance: &mut Value,
    identity: &InstanceIdentity,
) -> Result<Converged, Error> {
    let passes = rev.graph.nodes.len() + 1;
    let mut output = None;
    let mut held = false;
    let mut pass = 0;
    loop {
        pass += 1;
        let observed = children(ctx, identity);
        let instance_version = instance.resource_version();
        let mut resolution = runtime::resolve(&rev.graph, instance, &observed, &Live(ctx));
        let mut current = true;
        let failure = if resolution.first_error().is_some() {
            None
        } else {
            match transform(ctx, rev, instance, &observed, &mut resolution).await {
                Err(f) => Some(f),
                Ok(out) => match watch_children(ctx, &out.desired).await {
                    Err(e) => Some(Failure {
                        reason: Reason::KindNotReady,
                        message: e.to_string(),
                    }),
                    // The children were read before a watch of theirs had listed them (a
                    // restarted controller, a kind new to it): read and resolve them again, or
                    // the pass judges children that exist as missing.
                    Ok(Listed::Now) if pass < passes => continue,
                    Ok(_) if terminating(&observed, &out.desired) => {
                        held = true;
                        output = Some(out);
                        None
                    }
                    Ok(listed) => {
                        ensure_parent(ctx, rev, key, identity, instance, &out.desired, true).await?;
                        let applied = apply_all(ctx, identity, &observed, &out.desired).await;
                        // A pass that read the children before their watch listed them is not
                        // what the status may reuse.
                        current = matches!(applied, Ok(false)) && listed == Listed::Before;
                        let again =
                            matches!(applied, Ok(true)) && !resolution.pending.is_empty() && pass < passes;
                        output = Some(out);
                        if again {
                            continue;
                        }
                        applied.err()
                    }
                },
            }
        };
        return Ok(Converged {
            output,
            resolution,
            failure,
            held,
            observed,
            current,
            instance_version,
        });
    }
}

/// Whether the live object of a desired child is terminating.
fn terminating(observed: &[ObservedChild], desired: &[DesiredChild]) -> bool {
    observed
        .iter()
        .any(|o| o.object.deleting() && desired.iter().any(|d| d.key == o.key))
}

/// Applies every desired child; whether any write happened, or the first failure.
async fn apply_all(
    ctx: &Context,
    identity: &InstanceIdentity,
    observed: &[ObservedChild],
    desired: &[DesiredChild],
) -> Result<bool, Failure> {
    let mut applied = false;
    for child in desired {
        // Observed under its node's key, else by identity (a child another pass just made).
        let found = observed.iter().find(|o| o.key == child.key);
        let by_id = found.is_none().then(|| ctx.children.get(&child.id())).flatten();
        let live = found.map(|o| &*o.object).or(by_id.as_deref());
        match apply::apply(ctx, identity.applyset_id(), child, live).await {
            Ok(Outcome::Applied) => applied = true,
            Ok(Outcome::Unchanged) => {}
            Err(e) => {
                let reason = match e {
                    ApplyError::OtherApplySet { .. } => Reason::ApplySetConflict,
                    ApplyError::NotOurs { .. } => Reason::ResourceNotOwned,
                    ApplyError::Api { .. } => Reason::ApplyFailed,
                };
                return Err(Failure {
                    reason,
                    message: e.to_string(),
                });
            }
        }
    }
    Ok(applied)
}

/// Registers the instance's interest in the external objects it read, so their changes reach it.
pub(super) async fn watch_externals(ctx: &Context, key: &InstanceKey, resolution: &Resolution) {
    for t in &resolution.externals {
        let watch = WatchKey::all(&t.api_version, &t.kind, Role::External);
        if ctx.informers.ensure(&watch).await.is_ok() {
            ctx.interest
                .externals
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .entry((t.api_version.clone(), t.kind.clone()))
                .or_default()
                .insert(key.clone());
        }
    }
}

/// Deletes the ApplySet's members no longer desired (never those of pending resources), in
/// waves; once they are gone, the parent annotations shrink to what is left. Whether any
/// member was stale.
pub(super) async fn prune_stale(
    ctx: &Context,
    rev: &Revision,
    key: &InstanceKey,
    instance: &mut Value,
    identity: &InstanceIdentity,
    converged: &Converged,
) -> Result<bool, Error> {
    let Some(out) = &converged.output else {
        return Ok(false);
    };
    let members = ctx.children.members(identity.applyset_id());
    let stale: Vec<Arc<Value>> = prune::stale(&members, &out.desired, &converged.resolution.pending)
        .iter()
        .filter_map(|id| ctx.children.get(id))
        .collect();
    let pruned = !stale.is_empty();
    if !pruned || prune::delete_waves(ctx, stale).await? {
        ensure_parent(ctx, rev, key, identity, instance, &out.desired, false).await?;
    }
    Ok(pruned)
}

/// The desired set: templates, then the plugin's `transform` (on a blocking thread, with owned
/// inputs), namespaces and kro's labels. Kinds whose scope is not known yet are looked up by
/// discovery: a template's before the stage runs (so the rendered children are moved into it,
/// not copied; `resolution.rendered` is empty afterwards), a plugin's own when it names them,
/// and then the stage runs again.
async fn transform(
    ctx: &Context,
    rev: &Arc<Revision>,
    instance: &Value,
    observed: &[ObservedChild],
    resolution: &mut Resolution,
) -> Result<transform::Output, Failure> {
    if rev.plugin.is_none() {
        for d in &resolution.rendered {
            if crate::cluster::Cluster::namespaced(&Live(ctx), d.api_version(), d.kind()).is_none()
                && let Err(e) = ctx
                    .informers
                    .kinds
                    .resolve(&ctx.client, d.api_version(), d.kind())
                    .await
            {
                return Err(Failure {
                    reason: Reason::KindNotReady,
                    message: format!("resource {}: {e}", d.key),
                });
            }
        }
    }
    for _ in 0..4 {
        let orders = rev.graph.apply_orders();
        let result = match &rev.plugin {
            None => transform::desired(transform::Input {
                graph: &rev.rgd,
                revision: rev.number,
                instance,
                observed,
                rendered: std::mem::take(&mut resolution.rendered),
                pending: resolution.pending.clone(),
                apply_orders: &orders,
                plugin: None,
                cluster: &Live(ctx),
                propagate_labels: rev.graph.propagate_labels,
            }),
            Some(binding) => {
                // The plugin runs on a blocking thread with owned inputs.
                let (rev2, instance2, observed2) = (rev.clone(), instance.clone(), observed.to_vec());
                let (rendered, pending) = (resolution.rendered.clone(), resolution.pending.clone());
                let cluster = Live(ctx).snapshot(&rendered);
                let binding = binding.clone();
                let started = std::time::Instant::now();
                let out = ctx
                    .runtime
                    .run(move || {
                        Ok(transform::desired(transform::Input {
                            graph: &rev2.rgd,
                            revision: rev2.number,
                            instance: &instance2,
                            observed: &observed2,
                            rendered,
                            pending,
                            apply_orders: &orders,
                            plugin: Some(PluginStage {
                                plugin: &binding.plugin,
                                limits: binding.limits,
                                config: &binding.config,
                                allowed_kinds: &binding.allowed_kinds,
                            }),
                            cluster: &cluster,
                            propagate_labels: rev2.graph.propagate_labels,
                        }))
                    })
                    .await
                    .unwrap_or_else(|e| Err(transform::Error::Plugin(e)));
                let outcome = match &out {
                    Ok(_) => "ok",
                    Err(e) => e.reason(),
                };
                ctx.metrics.plugin_call("transform", started.elapsed(), outcome);
                out
            }
        };
        match result {
            Ok(o) => return Ok(o),
            // The template children were moved into the stage: no second try without them.
            Err(transform::Error::UnknownScope { key, kind, .. }) if rev.plugin.is_none() => {
                return Err(Failure {
                    reason: Reason::KindNotReady,
                    message: format!("resource {key}: the scope of kind {kind} is not known yet"),
                });
            }
            Err(transform::Error::UnknownScope {
                api_version,
                kind,
                key,
            }) => {
                if let Err(e) = ctx
                    .informers
                    .kinds
                    .resolve(&ctx.client, &api_version, &kind)
                    .await
                {
                    return Err(Failure {
                        reason: Reason::KindNotReady,
                        message: format!("resource {key}: {e}"),
                    });
                }
            }
            Err(e) => {
                return Err(Failure {
                    reason: Reason::Transform(e.reason()),
                    message: e.to_string(),
                });
            }
        }
    }
    Err(Failure {
        reason: Reason::KindNotReady,
        message: "could not learn the scope of every kind".into(),
    })
}

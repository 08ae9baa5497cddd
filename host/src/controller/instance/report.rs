//! The status stage and its writes: kro's status from what the reconcile found (CEL fields, the
//! plugin's `derive-status`, conditions, `state`), written only when it changed; an Event per
//! state transition and per plugin event.

use crate::object::Pointer as _;
use k8s_openapi::api::core::v1::ObjectReference;
use kube::{
    api::{Patch, PatchParams},
    runtime::events::{Event, EventType},
};
use serde_json::{Map, Value, json};

use super::super::action::Action;
use super::{
    converge::Converged,
    observe::{Live, children},
};
use crate::controller::{
    context::Context, error::Error, key::InstanceKey, revisions::Revision, wire::to_value,
};
use crate::{
    graph::runtime,
    metadata::{self, InstanceIdentity},
    object::Object,
    plugin::{CallInput, PluginEvent, StatusOutput},
    status::{self, Failure, Mark, Reason},
};

/// What the status stage decided.
#[derive(Debug)]
pub(super) struct Report {
    /// The status to write.
    status: Map<String, Value>,
    /// The plugin's `derive-status` output, if it ran.
    plugin: Option<StatusOutput>,
    /// The reconcile failed (a plugin error, an apply error, ...): retry with backoff.
    failed: bool,
}

/// The status of an instance from what the passes left and what exists now: its children
/// observed and resolved again when the passes wrote anything (else the last pass's
/// resolution, which still holds), the plugin's `derive-status` (unless a failure stopped the
/// reconcile), kro's conditions.
pub(super) async fn status(
    ctx: &Context,
    rev: &Revision,
    instance: &Value,
    identity: &InstanceIdentity,
    converged: &Converged,
    managed: Mark,
    now: &str,
) -> Report {
    // The last pass's resolution, unless something was written since (then the status reads
    // the children and instance as they are now).
    let again;
    let (resolution, observed) =
        if converged.current && converged.instance_version == instance.resource_version() {
            (&converged.resolution, &converged.observed)
        } else {
            let observed = children(ctx, identity);
            again = (
                runtime::resolve(&rev.graph, instance, &observed, &Live(ctx)),
                observed,
            );
            (&again.0, &again.1)
        };
    let mut failure = converged.failure.clone();
    let mut plugin = None;
    if failure.is_none()
        && let Some(binding) = &rev.plugin
    {
        let (b, inst, obs, graph, number) = (
            binding.clone(),
            instance.clone(),
            observed.clone(),
            rev.rgd.clone(),
            rev.number,
        );
        let started = std::time::Instant::now();
        let result = ctx
            .runtime
            .run(move || {
                b.plugin.derive_status(
                    &b.limits,
                    &CallInput {
                        graph: &graph,
                        revision: number,
                        config: &b.config,
                        instance: &inst,
                        observed: &obs,
                        rendered: &[],
                        pending: &[],
                    },
                )
            })
            .await;
        ctx.metrics.plugin_call(
            "derive-status",
            started.elapsed(),
            result.as_ref().map_or_else(|e| e.reason(), |_| "ok"),
        );
        match result {
            Ok(s) => plugin = Some(s),
            Err(e) => {
                failure = Some(Failure {
                    reason: Reason::DeriveStatus(e.reason()),
                    message: e.to_string(),
                })
            }
        }
    }
    let failed = failure.is_some();
    let desired = converged
        .output
        .as_ref()
        .map(|o| o.desired.as_slice())
        .unwrap_or_default();
    let status = status::derive(&status::Input {
        instance,
        resolution: Some(resolution),
        desired,
        observed,
        plugin: plugin.as_ref(),
        managed,
        failure,
        suspended: false,
        deleting: false,
        now,
        authored: &rev.graph.conditions,
    });
    if status.get("state").and_then(Value::as_str) == Some("ERROR") {
        let ready = status
            .get("conditions")
            .and_then(Value::as_array)
            .and_then(|c| c.last());
        let reason = ready.and_then(|r| r["reason"].as_str()).unwrap_or_default();
        ctx.metrics.failure("instance", &rev.rgd, reason);
    }
    Report {
        status,
        plugin,
        failed,
    }
}

/// The status of an instance the passes did not run for: one whose labels and finalizer could
/// not be written (`managed` says why), or a suspended one.
pub(super) async fn without_passes(
    ctx: &Context,
    rev: &Revision,
    key: &InstanceKey,
    instance: &Value,
    identity: &InstanceIdentity,
    managed: Mark,
    suspended: bool,
) -> Result<(), Error> {
    let status = status::derive(&status::Input {
        instance,
        resolution: None,
        desired: &[],
        observed: &children(ctx, identity),
        plugin: None,
        managed,
        failure: None,
        suspended,
        deleting: false,
        now: &now(),
        authored: &rev.graph.conditions,
    });
    report_transition(ctx, rev, key, instance, &status).await;
    write_status(ctx, rev, key, instance, status).await.map(|_| ())
}

/// Reports the transition and the plugin's events, and writes the status if it changed; then
/// what to do next: retry a failure with backoff, else look again when the plugin asks, or
/// (not yet ACTIVE) after `requeue_interval`.
pub(super) async fn publish_report(
    ctx: &Context,
    rev: &Revision,
    key: &InstanceKey,
    instance: &Value,
    converged: &Converged,
    report: Report,
) -> Result<Action, Error> {
    let active = report.status.get("state").and_then(Value::as_str) == Some("ACTIVE");
    report_transition(ctx, rev, key, instance, &report.status).await;
    if let Some(out) = &converged.output {
        plugin_events(ctx, rev, instance, &out.events).await;
    }
    if let Some(s) = &report.plugin {
        plugin_events(ctx, rev, instance, &s.events).await;
    }
    write_status(ctx, rev, key, instance, report.status).await?;
    let hint = converged.output.as_ref().and_then(|o| o.requeue_after);
    Ok(next(report.failed, active, ctx.config.requeue_interval, hint))
}

/// What to do after a reconcile: retry a failure with backoff; else look again when the plugin
/// asks, or (not ACTIVE yet) after `requeue_interval`; else wait for a change.
fn next(
    failed: bool,
    active: bool,
    requeue_interval: Option<std::time::Duration>,
    hint: Option<std::time::Duration>,
) -> Action {
    if failed {
        return Action::retry();
    }
    let requeue = match (active, requeue_interval, hint) {
        (_, _, Some(h)) => Some(h),
        (false, Some(i), None) => Some(i),
        _ => None,
    };
    Action {
        requeue_after: requeue,
        backoff: false,
    }
}

/// Now, as status timestamps are written.
pub(super) fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// Records an Event on the instance. The recorder folds Events of one reason and action into
/// a series keeping the first note, so callers whose note varies give each kind of note its own
/// action.
async fn publish(
    ctx: &Context,
    instance: &Value,
    rev: &Revision,
    type_: EventType,
    (reason, action): (&str, String),
    note: String,
) {
    // What `Resource::object_ref` gives, read off the instance without a copy of it.
    let reference = ObjectReference {
        api_version: Some(rev.resource.api_version.clone()),
        kind: Some(rev.resource.kind.clone()),
        name: Some(instance.name().to_string()),
        namespace: instance.namespace().map(String::from),
        uid: instance.uid().map(String::from),
        resource_version: instance
            .at("/metadata/resourceVersion")
            .and_then(Value::as_str)
            .map(String::from),
        field_path: None,
    };
    let event = Event {
        type_,
        reason: reason.to_string(),
        note: Some(note),
        action,
        secondary: None,
    };
    if let Err(e) = ctx.recorder.publish(&event, &reference).await {
        tracing::debug!(error = %e, "could not record an event");
    }
}

/// Writes `status` unless the instance already has it; returns the instance as written
/// (shared with the controller's memory of its writes).
pub(super) async fn write_status(
    ctx: &Context,
    rev: &Revision,
    key: &InstanceKey,
    instance: &Value,
    status: Map<String, Value>,
) -> Result<Option<std::sync::Arc<Value>>, Error> {
    let status = Value::Object(status);
    if instance.get("status") == Some(&status) {
        return Ok(None);
    }
    let mut meta = json!({"name": key.name});
    if let Some(ns) = &key.namespace {
        meta["namespace"] = json!(ns);
    }
    let body = json!({"apiVersion": key.api_version, "kind": key.kind, "metadata": meta, "status": status});
    let api = ctx
        .api(&rev.resource, rev.namespaced, key.namespace.as_deref())
        .await;
    let written = api
        .patch_status(
            &key.name,
            &PatchParams::apply(metadata::STATUS_MANAGER).force(),
            &Patch::Apply(&body),
        )
        .await
        .map_err(|source| Error::Api {
            action: "update status of",
            object: key.to_string(),
            source,
        })?;
    Ok(Some(
        ctx.remember_write(&rev.watch, to_value(written, &rev.resource)),
    ))
}

pub(super) async fn report_transition(
    ctx: &Context,
    rev: &Revision,
    key: &InstanceKey,
    instance: &Value,
    status: &Map<String, Value>,
) {
    let state = status
        .get("state")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let previous = ctx
        .memory
        .states
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(key.clone(), state.clone());
    let before = previous.or_else(|| {
        instance
            .at("/status/state")
            .and_then(Value::as_str)
            .map(String::from)
    });
    if before.as_deref() == Some(state.as_str()) {
        return;
    }
    let ready = status
        .get("conditions")
        .and_then(Value::as_array)
        .and_then(|c| c.iter().find(|c| c["type"] == "Ready"))
        .cloned()
        .unwrap_or(Value::Null);
    let reason = ready["reason"].as_str().unwrap_or_default();
    let message = ready["message"].as_str().unwrap_or_default();
    let note = format!(
        "{} -> {state}: {reason}{}",
        before.as_deref().unwrap_or("(new)"),
        if message.is_empty() {
            String::new()
        } else {
            format!(": {message}")
        }
    );
    let type_ = if state == "ERROR" {
        EventType::Warning
    } else {
        EventType::Normal
    };
    tracing::info!(from = before.as_deref().unwrap_or("(new)"), to = %state, %reason, "instance state changed");
    ctx.metrics
        .instance_transition(&rev.gvr(), before.as_deref().unwrap_or_default(), &state);
    // One series per transition, so each Event's note says the transition it counts.
    let action = format!("{}->{state}", before.as_deref().unwrap_or("(new)"));
    publish(ctx, instance, rev, type_, ("StateChanged", action), note).await;
}

pub(super) async fn plugin_events(ctx: &Context, rev: &Revision, instance: &Value, events: &[PluginEvent]) {
    for e in events {
        let note = match &e.target {
            Some(k) => format!("{k}: {}", e.message),
            None => e.message.clone(),
        };
        let t = if e.warning {
            EventType::Warning
        } else {
            EventType::Normal
        };
        publish(ctx, instance, rev, t, (&e.reason, "Reconcile".to_string()), note).await;
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_failed_reconcile_retries_with_backoff_whatever_else_is_asked() {
        let a = next(
            true,
            false,
            Some(Duration::from_secs(1)),
            Some(Duration::from_secs(9)),
        );
        assert_eq!(a, Action::retry());
    }

    #[test]
    fn the_plugins_requeue_hint_wins_even_when_active() {
        let hint = Some(Duration::from_secs(9));
        assert_eq!(
            next(false, true, None, hint),
            Action::after(Duration::from_secs(9))
        );
        assert_eq!(
            next(false, false, Some(Duration::from_secs(1)), hint),
            Action::after(Duration::from_secs(9))
        );
    }

    #[test]
    fn an_instance_not_active_yet_is_looked_at_again_after_the_requeue_interval_and_an_active_one_is_not() {
        let interval = Some(Duration::from_secs(3));
        assert_eq!(
            next(false, false, interval, None),
            Action::after(Duration::from_secs(3))
        );
        assert_eq!(next(false, true, interval, None), Action::done());
        assert_eq!(next(false, false, None, None), Action::done());
    }
}

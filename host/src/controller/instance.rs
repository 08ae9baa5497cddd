//! Reconciling one instance, in the data flow's order: labels and finalizer; then passes of
//! resolve → render (templates, plugin `transform`) → apply until no new resource becomes
//! renderable; prune; observe; derive status (CEL fields, plugin `derive-status`, kro's
//! conditions); a status write only when it changed. Deletion removes children in reverse
//! topological waves, then the finalizer.

use std::{collections::BTreeSet, sync::Arc, time::Duration};

use kroxide_schema::selector::Selector;
use kube::{
    Resource,
    api::{Patch, PatchParams},
    runtime::events::{Event, EventType},
};
use serde_json::{Map, Value, json};

use super::{
    action::{Action, NOT_SYNCED_RETRY},
    apply::{self, Outcome},
    children::{label, object_id},
    context::Context,
    error::Error,
    informers::{Lookup, Role, WatchKey, child_watch},
    key::InstanceKey,
    prune,
    revisions::Revision,
};
use crate::{
    child::{ChildKey, ObservedChild},
    cluster::{Cluster, Offline},
    derive::{self, Failure},
    graph::runtime::{self, Resolution},
    metadata::{self, InstanceIdentity},
    plugin::{CallInput, PluginEvent},
    render::{self, PluginStage},
    status::Mark,
};

fn deleting(v: &Value) -> bool {
    v.pointer("/metadata/deletionTimestamp")
        .is_some_and(|t| !t.is_null())
}

fn annotation<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.pointer("/metadata/annotations")
        .and_then(|a| a.get(key))
        .and_then(Value::as_str)
}

fn suspended(v: &Value) -> bool {
    annotation(v, metadata::RECONCILE)
        .is_some_and(|a| a.eq_ignore_ascii_case("suspended") || a.eq_ignore_ascii_case("disabled"))
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn group_kind(api_version: &str, kind: &str) -> String {
    match api_version.rsplit_once('/') {
        Some((group, _)) => format!("{kind}.{group}"),
        None => kind.to_string(),
    }
}

/// Reads external references from the watch caches.
/// The cluster as the controller's caches see it: kinds resolved by discovery so far (and the
/// built-in ones), external objects from their watches.
struct Live<'a>(&'a Context);

impl Cluster for Live<'_> {
    fn namespaced(&self, api_version: &str, kind: &str) -> Option<bool> {
        self.0
            .informers
            .kinds
            .cached(api_version, kind)
            .or_else(|| kroxide_schema::kinds::builtin(api_version, kind).map(|k| k.namespaced))
    }

    fn get(&self, api_version: &str, kind: &str, namespace: Option<&str>, name: &str) -> Option<Value> {
        self.0
            .informers
            .get(&WatchKey::all(api_version, kind, Role::External))?
            .get(namespace, name)
    }

    fn list(&self, api_version: &str, kind: &str, namespace: Option<&str>, selector: &Value) -> Vec<Value> {
        let Some(i) = self
            .0
            .informers
            .get(&WatchKey::all(api_version, kind, Role::External))
        else {
            return Vec::new();
        };
        let sel = Selector::from_structured(selector).unwrap_or_default();
        let mut out: Vec<Value> = i
            .list()
            .into_iter()
            .filter(|o| {
                namespace.is_none_or(|n| o.pointer("/metadata/namespace").and_then(Value::as_str) == Some(n))
            })
            .filter(|o| sel.matches_object(o))
            .collect();
        out.sort_by_key(object_id);
        out
    }
}

impl Live<'_> {
    /// The kinds known now, as an owned snapshot for a plugin's blocking thread.
    fn snapshot(&self, rendered: &[crate::child::DesiredChild]) -> Offline {
        let mut out = Offline::default();
        for d in rendered {
            if let Some(n) = self.namespaced(d.api_version(), d.kind()) {
                out.insert_kind(d.api_version(), d.kind(), n);
            }
        }
        for (av, kind, n) in self.0.informers.kinds.all() {
            out.insert_kind(&av, &kind, n);
        }
        out
    }
}

/// The live children of an instance, keyed by node.
fn observe(ctx: &Context, identity: &InstanceIdentity) -> Vec<ObservedChild> {
    let mut out: Vec<ObservedChild> = ctx
        .children
        .of(identity.applyset_id())
        .into_iter()
        .filter_map(|o| {
            let id = label(&o, metadata::NODE_ID)?.to_string();
            let index = label(&o, metadata::COLLECTION_INDEX).and_then(|i| i.parse().ok());
            Some(ObservedChild {
                key: ChildKey { id, index },
                object: (*o).clone(),
            })
        })
        .collect();
    out.sort_by(|a, b| a.key.cmp(&b.key));
    out
}

async fn ensure_managed(
    ctx: &Context,
    rev: &Revision,
    key: &InstanceKey,
    instance: &mut Value,
    identity: &InstanceIdentity,
) -> Result<(), Error> {
    let want = [
        (metadata::OWNED, "true"),
        (metadata::KRO_VERSION, metadata::CONTROLLER_VERSION),
        (metadata::RGD_ID, rev.rgd_uid.as_str()),
        (metadata::RGD_NAME, rev.rgd.as_str()),
        (metadata::APPLYSET_ID, identity.applyset_id()),
    ];
    let has_finalizer = instance
        .pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .is_some_and(|f| f.iter().any(|x| x == metadata::FINALIZER));
    if has_finalizer && want.iter().all(|(k, v)| label(instance, k) == Some(*v)) {
        return Ok(());
    }
    let labels: Map<String, Value> = want.iter().map(|(k, v)| (k.to_string(), json!(v))).collect();
    let mut finalizers: Vec<Value> = instance
        .pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if !has_finalizer {
        finalizers.push(json!(metadata::FINALIZER));
    }
    // A merge patch at the resourceVersion we read, never an apply: an apply creates what it
    // does not find, and would bring back an instance deleted before it had our finalizer.
    // Someone else's write in between is a conflict, retried.
    let patch = json!({
        "labels": labels,
        "finalizers": finalizers,
        "resourceVersion": instance.pointer("/metadata/resourceVersion").cloned().unwrap_or(Value::Null)});
    patch_instance(
        ctx,
        rev,
        key,
        instance,
        metadata::LABELLER_MANAGER,
        "label",
        patch,
    )
    .await
}

/// Merges `metadata` (annotations) into the instance as `manager`, and keeps the answer as
/// the freshest copy. A merge patch, never an apply: an apply creates what it does not find,
/// and the instance may have gone since the (lagging) cache was read.
async fn patch_instance(
    ctx: &Context,
    rev: &Revision,
    key: &InstanceKey,
    instance: &mut Value,
    manager: &str,
    action: &'static str,
    metadata: Value,
) -> Result<(), Error> {
    let api = ctx
        .api(&rev.resource, rev.namespaced, key.namespace.as_deref())
        .await;
    let params = PatchParams {
        field_manager: Some(manager.to_string()),
        ..PatchParams::default()
    };
    let written = api
        .patch(&key.name, &params, &Patch::Merge(&json!({"metadata": metadata})))
        .await
        .map_err(|source| Error::Api {
            action,
            object: key.to_string(),
            source,
        })?;
    *instance = super::informers::to_value(&written, &rev.resource);
    ctx.memory.saw(instance.clone());
    Ok(())
}

/// Keeps the ApplySet parent annotations: the group-kinds and extra namespaces of children.
/// With `grow`, kinds are only added (before applying, so a crash leaks nothing); otherwise the
/// annotations are set exactly (after a clean prune).
async fn ensure_parent(
    ctx: &Context,
    rev: &Revision,
    key: &InstanceKey,
    instance: &mut Value,
    desired: &[crate::child::DesiredChild],
    grow: bool,
) -> Result<(), Error> {
    // Every kind the graph's templates name, so the set does not change as resources become
    // renderable one by one.
    let mut kinds: BTreeSet<String> = desired
        .iter()
        .map(|d| group_kind(d.api_version(), d.kind()))
        .collect();
    for node in &rev.graph.nodes {
        if matches!(node.kind, crate::graph::NodeKind::Template) {
            let s = |p: &str| node.object.pointer(p).and_then(Value::as_str).unwrap_or_default();
            if !s("/apiVersion").contains("${") && !s("/kind").contains("${") {
                kinds.insert(group_kind(s("/apiVersion"), s("/kind")));
            }
        }
    }
    let mut namespaces: BTreeSet<String> = desired
        .iter()
        .filter_map(|d| d.namespace())
        .filter(|n| Some(*n) != key.namespace.as_deref())
        .map(String::from)
        .collect();
    let current_kinds: BTreeSet<String> = annotation(instance, metadata::APPLYSET_CONTAINS)
        .map(|s| s.split(',').filter(|x| !x.is_empty()).map(String::from).collect())
        .unwrap_or_default();
    let current_namespaces: BTreeSet<String> = annotation(instance, metadata::APPLYSET_NAMESPACES)
        .map(|s| s.split(',').filter(|x| !x.is_empty()).map(String::from).collect())
        .unwrap_or_default();
    if grow {
        kinds.extend(current_kinds.iter().cloned());
        namespaces.extend(current_namespaces.iter().cloned());
    }
    let tooling = concat!("kroxide/v", env!("CARGO_PKG_VERSION"));
    if kinds == current_kinds
        && namespaces == current_namespaces
        && annotation(instance, metadata::APPLYSET_TOOLING) == Some(tooling)
    {
        return Ok(());
    }
    let mut annotations = json!({(metadata::APPLYSET_TOOLING): tooling, (metadata::APPLYSET_CONTAINS): kinds.into_iter().collect::<Vec<_>>().join(",")});
    // A merge patch: `null` removes the annotation when no namespace is left.
    annotations[metadata::APPLYSET_NAMESPACES] = if namespaces.is_empty() {
        Value::Null
    } else {
        json!(namespaces.into_iter().collect::<Vec<_>>().join(","))
    };
    patch_instance(
        ctx,
        rev,
        key,
        instance,
        metadata::PARENT_MANAGER,
        "annotate",
        json!({"annotations": annotations}),
    )
    .await
}

async fn watch_children(ctx: &Context, desired: &[crate::child::DesiredChild]) -> Result<(), Error> {
    let kinds: BTreeSet<(String, String)> = desired
        .iter()
        .map(|d| (d.api_version().to_string(), d.kind().to_string()))
        .collect();
    for (api_version, kind) in kinds {
        let informer = ctx.informers.ensure(&child_watch(&api_version, &kind)).await?;
        informer.wait_synced(Duration::from_secs(10)).await;
    }
    Ok(())
}

/// Renders the desired set (templates, then the plugin on a blocking thread), learning the
/// scope of kinds it has not met yet.
async fn render_desired(
    ctx: &Context,
    rev: &Arc<Revision>,
    instance: &Value,
    observed: &[ObservedChild],
    resolution: &Resolution,
) -> Result<render::Output, Failure> {
    for _ in 0..4 {
        let order = rev.graph.topological_order();
        let result = match &rev.plugin {
            None => render::desired(render::Input {
                graph: &rev.rgd,
                revision: rev.number,
                instance,
                observed,
                rendered: resolution.rendered.clone(),
                pending: resolution.pending.clone(),
                node_order: &order,
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
                        Ok(render::desired(render::Input {
                            graph: &rev2.rgd,
                            revision: rev2.number,
                            instance: &instance2,
                            observed: &observed2,
                            rendered,
                            pending,
                            node_order: &order,
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
                    .unwrap_or_else(|e| Err(render::Error::Plugin(e)));
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
            Err(render::Error::UnknownScope {
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
                        reason: "NotReady".into(),
                        message: format!("resource {key}: {e}"),
                    });
                }
            }
            Err(e) => {
                return Err(Failure {
                    reason: e.reason().to_string(),
                    message: e.to_string(),
                });
            }
        }
    }
    Err(Failure {
        reason: "NotReady".into(),
        message: "could not learn the scope of every kind".into(),
    })
}

async fn publish(
    ctx: &Context,
    instance: &Value,
    rev: &Revision,
    type_: EventType,
    reason: &str,
    note: String,
) {
    let reference = match serde_json::from_value::<kube::api::DynamicObject>(instance.clone()) {
        Ok(o) => o.object_ref(&rev.resource),
        Err(_) => return,
    };
    let event = Event {
        type_,
        reason: reason.to_string(),
        note: Some(note),
        action: "Reconcile".into(),
        secondary: None,
    };
    if let Err(e) = ctx.recorder.publish(&event, &reference).await {
        tracing::debug!(error = %e, "could not record an event");
    }
}

/// Writes `status` unless the instance already has it; returns the instance as written.
async fn write_status(
    ctx: &Context,
    rev: &Revision,
    key: &InstanceKey,
    instance: &Value,
    status: Map<String, Value>,
) -> Result<Option<Value>, Error> {
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
    let written = super::informers::to_value(&written, &rev.resource);
    ctx.memory.saw(written.clone());
    Ok(Some(written))
}

async fn report_transition(
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
            .pointer("/status/state")
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
    publish(ctx, instance, rev, type_, "StateChanged", note).await;
}

async fn plugin_events(ctx: &Context, rev: &Revision, instance: &Value, events: &[PluginEvent]) {
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
        publish(ctx, instance, rev, t, &e.reason, note).await;
    }
}

/// Reconciles one instance.
///
/// # Errors
/// API failures that are worth a retry with backoff.
pub(crate) async fn reconcile(ctx: &Arc<Context>, key: &InstanceKey) -> Result<Action, Error> {
    let Some(rev) = ctx.graphs.for_kind(&key.api_version, &key.kind) else {
        return Ok(Action::done());
    };
    let Some(informer) = ctx.informers.get(&rev.watch) else {
        return Ok(Action::done());
    };
    let cached = match informer.lookup(key.namespace.as_deref(), &key.name) {
        Lookup::Found(v) => v,
        // At start-up the key can come before the list that holds it is complete.
        Lookup::NotSynced => return Ok(Action::after(NOT_SYNCED_RETRY)),
        Lookup::Absent => {
            forget(ctx, key);
            ctx.memory.forget_finalized(key);
            return Ok(Action::done());
        }
    };
    let uid = cached
        .pointer("/metadata/uid")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    if ctx.memory.was_finalized(key, &uid) {
        // Finalized; the cache has not caught up with the deletion yet.
        return Ok(Action::done());
    }
    let mut instance = ctx.memory.freshest(cached);
    let identity = InstanceIdentity::from_object(&instance);
    if deleting(&instance) {
        return finalize(ctx, &rev, key, &instance, &identity).await;
    }
    // No child is made for an instance without our finalizer: deleted then, it would leave
    // its children behind.
    let managed = match ensure_managed(ctx, &rev, key, &mut instance, &identity).await {
        Ok(()) => Mark::managed(),
        Err(e) if e.is_conflict() => return Err(e),
        // Deleted before it had our finalizer: nothing was made for it.
        Err(Error::Api {
            source: kube::Error::Api(ref s),
            ..
        }) if s.code == 404 => {
            forget(ctx, key);
            return Ok(Action::done());
        }
        Err(e) => {
            let status = derive::status(&derive::Input {
                instance: &instance,
                resolution: None,
                desired: &[],
                observed: &observe(ctx, &identity),
                plugin: None,
                managed: Mark::management_failed(e.to_string()),
                failure: None,
                suspended: false,
                deleting: false,
                now: &now(),
            });
            report_transition(ctx, &rev, key, &instance, &status).await;
            // Best effort: the server that refused the finalizer may refuse this too.
            let _ = write_status(ctx, &rev, key, &instance, status).await;
            return Err(e);
        }
    };
    let now = now();
    if suspended(&instance) {
        let status = derive::status(&derive::Input {
            instance: &instance,
            resolution: None,
            desired: &[],
            observed: &observe(ctx, &identity),
            plugin: None,
            managed,
            failure: None,
            suspended: true,
            deleting: false,
            now: &now,
        });
        report_transition(ctx, &rev, key, &instance, &status).await;
        write_status(ctx, &rev, key, &instance, status).await?;
        return Ok(Action::done());
    }

    let mut failure: Option<Failure> = None;
    let mut output: Option<render::Output> = None;
    let mut resolution;
    let passes = rev.graph.nodes.len() + 1;
    let mut pass = 0;
    loop {
        pass += 1;
        let observed = observe(ctx, &identity);
        resolution = runtime::resolve(&rev.graph, &instance, &observed, &Live(ctx));
        if resolution.first_error().is_some() {
            break;
        }
        let out = match render_desired(ctx, &rev, &instance, &observed, &resolution).await {
            Ok(o) => o,
            Err(f) => {
                failure = Some(f);
                break;
            }
        };
        if let Err(e) = watch_children(ctx, &out.desired).await {
            failure = Some(Failure {
                reason: "NotReady".into(),
                message: e.to_string(),
            });
            break;
        }
        ensure_parent(ctx, &rev, key, &mut instance, &out.desired, true).await?;
        let mut applied = false;
        for child in &out.desired {
            let live = observed
                .iter()
                .find(|o| o.key == child.key)
                .map(|o| o.object.clone())
                .or_else(|| {
                    ctx.children
                        .get(&object_id(&Value::Object(child.object.clone())))
                        .map(|v| (*v).clone())
                });
            match apply::apply(ctx, identity.applyset_id(), child, live.as_ref()).await {
                Ok(Outcome::Applied(_)) => applied = true,
                Ok(Outcome::Unchanged) => {}
                Err(e) => {
                    let reason = match e {
                        apply::ApplyError::OtherApplySet { .. } => "ApplySetConflict",
                        apply::ApplyError::NotOurs { .. } => "ResourceNotOwned",
                        apply::ApplyError::Api { .. } => "ApplyFailed",
                    };
                    failure = Some(Failure {
                        reason: reason.into(),
                        message: e.to_string(),
                    });
                    break;
                }
            }
        }
        output = Some(out);
        if failure.is_some() || !applied || resolution.pending.is_empty() || pass >= passes {
            break;
        }
    }
    // Register interest in external objects, so their changes reach this instance.
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
    // Prune what is no longer desired, once everything desired applied cleanly.
    if failure.is_none()
        && resolution.first_error().is_none()
        && let Some(out) = &output
    {
        let members = ctx.children.of(identity.applyset_id());
        let stale = prune::stale(&members, &out.desired, &resolution.pending);
        let pruned = stale.is_empty() || prune::delete_waves(ctx, stale).await?;
        if pruned {
            ensure_parent(ctx, &rev, key, &mut instance, &out.desired, false).await?;
        }
    }
    // Observe and derive status from what exists now.
    let observed = observe(ctx, &identity);
    let resolution = runtime::resolve(&rev.graph, &instance, &observed, &Live(ctx));
    let desired = output.as_ref().map(|o| o.desired.clone()).unwrap_or_default();
    let mut plugin_status = None;
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
            Ok(s) => plugin_status = Some(s),
            Err(e) => {
                failure = Some(Failure {
                    reason: e.reason().to_string(),
                    message: e.to_string(),
                })
            }
        }
    }
    let failed = failure.is_some();
    let status = derive::status(&derive::Input {
        instance: &instance,
        resolution: Some(&resolution),
        desired: &desired,
        observed: &observed,
        plugin: plugin_status.as_ref(),
        managed,
        failure,
        suspended: false,
        deleting: false,
        now: &now,
    });
    let active = status.get("state").and_then(Value::as_str) == Some("ACTIVE");
    report_transition(ctx, &rev, key, &instance, &status).await;
    if let Some(out) = &output {
        plugin_events(ctx, &rev, &instance, &out.events).await;
    }
    if let Some(s) = &plugin_status {
        plugin_events(ctx, &rev, &instance, &s.events).await;
    }
    write_status(ctx, &rev, key, &instance, status).await?;
    if failed {
        return Ok(Action::retry());
    }
    let hint = output.as_ref().and_then(|o| o.requeue_after);
    let requeue = match (active, ctx.config.requeue_interval, hint) {
        (_, _, Some(h)) => Some(h),
        (false, Some(i), None) => Some(i),
        _ => None,
    };
    Ok(Action {
        requeue_after: requeue,
        backoff: false,
    })
}

fn forget(ctx: &Context, key: &InstanceKey) {
    ctx.memory.forget_instance(key);
    for readers in ctx
        .interest
        .externals
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .values_mut()
    {
        readers.remove(key);
    }
}

/// Watches every kind the instance's ApplySet says it holds, so no child is missed.
async fn watch_inventory(ctx: &Context, rev: &Revision, instance: &Value) {
    let mut kinds: BTreeSet<(String, String)> = BTreeSet::new();
    for node in &rev.graph.nodes {
        if matches!(node.kind, crate::graph::NodeKind::Template) {
            let s = |p: &str| {
                node.object
                    .pointer(p)
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string()
            };
            kinds.insert((s("/apiVersion"), s("/kind")));
        }
    }
    for gk in annotation(instance, metadata::APPLYSET_CONTAINS)
        .unwrap_or_default()
        .split(',')
        .filter(|s| !s.is_empty())
    {
        let (kind, group) = gk.split_once('.').unwrap_or((gk, ""));
        if kinds
            .iter()
            .any(|(av, k)| k == kind && av.rsplit_once('/').map_or("", |(g, _)| g) == group)
        {
            continue;
        }
        let resolved = if group.is_empty() {
            ctx.informers.kinds.resolve(&ctx.client, "v1", kind).await
        } else {
            ctx.informers
                .kinds
                .resolve_group_kind(&ctx.client, group, kind)
                .await
        };
        if let Ok((r, _)) = resolved {
            kinds.insert((r.api_version, kind.to_string()));
        }
    }
    for (av, kind) in kinds {
        if av.contains("${") {
            continue;
        }
        if let Ok(i) = ctx.informers.ensure(&child_watch(&av, &kind)).await {
            i.wait_synced(Duration::from_secs(10)).await;
        }
    }
}

async fn finalize(
    ctx: &Arc<Context>,
    rev: &Arc<Revision>,
    key: &InstanceKey,
    instance: &Value,
    identity: &InstanceIdentity,
) -> Result<Action, Error> {
    let now = now();
    let observed = observe(ctx, identity);
    let status = derive::status(&derive::Input {
        instance,
        resolution: None,
        desired: &[],
        observed: &observed,
        plugin: None,
        managed: Mark::managed(),
        failure: None,
        suspended: false,
        deleting: true,
        now: &now,
    });
    report_transition(ctx, rev, key, instance, &status).await;
    let has_finalizer = instance
        .pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .is_some_and(|f| f.iter().any(|x| x == metadata::FINALIZER));
    if !has_finalizer {
        return Ok(Action::done());
    }
    let instance = write_status(ctx, rev, key, instance, status)
        .await?
        .unwrap_or_else(|| instance.clone());
    watch_inventory(ctx, rev, &instance).await;
    let members = ctx.children.of(identity.applyset_id());
    if !prune::delete_waves(ctx, members).await? {
        return Ok(Action::after(Duration::from_secs(5)));
    }
    let rest: Vec<Value> = instance
        .pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .map(|f| f.iter().filter(|x| *x != metadata::FINALIZER).cloned().collect())
        .unwrap_or_default();
    let patch = json!({
        "finalizers": if rest.is_empty() { Value::Null } else { Value::Array(rest) },
        "resourceVersion": instance.pointer("/metadata/resourceVersion").cloned().unwrap_or(Value::Null)});
    let mut written = instance.clone();
    match patch_instance(
        ctx,
        rev,
        key,
        &mut written,
        metadata::LABELLER_MANAGER,
        "remove the finalizer of",
        patch,
    )
    .await
    {
        Ok(()) => {}
        // Already gone: a previous pass removed the finalizer.
        Err(Error::Api {
            source: kube::Error::Api(e),
            ..
        }) if e.code == 404 => {}
        Err(e) => return Err(e),
    }
    tracing::info!("children deleted; finalizer removed");
    forget(ctx, key);
    if let Some(uid) = instance.pointer("/metadata/uid").and_then(Value::as_str) {
        ctx.memory.mark_finalized(key, uid);
    }
    Ok(Action::done())
}

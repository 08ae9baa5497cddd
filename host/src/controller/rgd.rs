//! Reconciling a ResourceGraphDefinition: validate the graph, load its plugin from a
//! ConfigMap, apply the generated CRD and wait until it is Established, then serve its instances
//! with a new revision when anything changed. Status and conditions as kro reports them.

use std::{sync::Arc, time::Duration};

use base64::Engine as _;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::{
    Api,
    api::{ApiResource, DeleteParams, Patch, PatchParams},
    runtime::{
        conditions,
        wait::{Condition, await_condition},
    },
};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

use super::{
    action::{Action, NOT_SYNCED_RETRY},
    context::Context,
    error::Error,
    informers::{Lookup, Role, WatchKey, child_watch, rgd_watch},
    revisions::{PluginBinding, Revision},
};
use crate::{
    graph::{self, Graph, NodeKind, compat},
    metadata,
    plugin::Digest,
    rgd::{PluginSpec, ResourceGraphDefinition},
};

/// A condition kroxide sets on a graph.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Cond {
    type_: &'static str,
    status: &'static str,
    reason: String,
    message: String,
}

fn cond(type_: &'static str, ok: bool, reason: &str, message: impl Into<String>) -> Cond {
    Cond {
        type_,
        status: if ok { "True" } else { "False" },
        reason: reason.to_string(),
        message: message.into(),
    }
}

/// How far a graph got.
#[derive(Debug, Clone)]
struct Report {
    accepted: Cond,
    kind: Cond,
    controller: Cond,
    revisions: Cond,
    extra: Option<Cond>,
    graph: Option<Arc<Graph>>,
    revision: Option<u64>,
}

impl Report {
    /// Everything True: the graph is accepted, its kind ready and served.
    fn healthy(
        kind: &str,
        graph: Option<Arc<Graph>>,
        revision: Option<u64>,
        revisions_message: &str,
    ) -> Self {
        Self {
            accepted: cond(
                "GraphAccepted",
                true,
                "Valid",
                "resource graph and schema are valid",
            ),
            kind: cond(
                "KindReady",
                true,
                "Ready",
                format!("kind {kind} has been accepted and is ready"),
            ),
            controller: cond("ControllerReady", true, "Running", "controller is running"),
            revisions: cond("GraphRevisionsResolved", true, "Resolved", revisions_message),
            extra: None,
            graph,
            revision,
        }
    }

    fn failed_graph(reason: &str, message: String) -> Self {
        let waiting = |t: &'static str, r: &str| Cond {
            type_: t,
            status: "Unknown",
            reason: r.to_string(),
            message: "waiting for the graph to be accepted".into(),
        };
        Self {
            accepted: cond("GraphAccepted", false, reason, message),
            kind: waiting("KindReady", "Pending"),
            controller: waiting("ControllerReady", "Pending"),
            revisions: waiting("GraphRevisionsResolved", "WaitingForGraphRevisionCompilation"),
            extra: None,
            graph: None,
            revision: None,
        }
    }
}

fn s<'a>(v: &'a Value, p: &str) -> &'a str {
    v.pointer(p).and_then(Value::as_str).unwrap_or_default()
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn status_of(rgd: &Value, report: &Report) -> Value {
    let generation = rgd
        .pointer("/metadata/generation")
        .and_then(Value::as_i64)
        .unwrap_or(1);
    let previous = rgd
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let now = now();
    let render = |c: &Cond| {
        let since = previous
            .iter()
            .find(|p| p["type"] == c.type_ && p["status"] == c.status)
            .and_then(|p| p.get("lastTransitionTime").cloned())
            .unwrap_or_else(|| json!(now));
        json!({"type": c.type_, "status": c.status, "reason": c.reason, "message": c.message,
            "lastTransitionTime": since, "observedGeneration": generation})
    };
    let mut deps = vec![
        &report.accepted,
        &report.kind,
        &report.controller,
        &report.revisions,
    ];
    if let Some(e) = &report.extra {
        deps.push(e);
    }
    let active = [&report.accepted, &report.kind, &report.controller]
        .iter()
        .all(|c| c.status == "True");
    let unhealthy = deps
        .iter()
        .find(|c| c.status == "False")
        .or_else(|| deps.iter().find(|c| c.status == "Unknown"));
    let ready = match unhealthy {
        None => cond("Ready", true, "Ready", ""),
        Some(c) => Cond {
            type_: "Ready",
            ..(*c).clone()
        },
    };
    let mut conditions: Vec<Value> = deps.iter().map(|c| render(c)).collect();
    conditions.push(render(&ready));
    let mut status = json!({
        "state": if active { "Active" } else { "Inactive" },
        "conditions": conditions,
    });
    // Keep what the last good graph reported while the new one is refused.
    let graph_fields = report
        .graph
        .as_ref()
        .map(|g| (json!(g.topological_order()), g.resources_status()));
    let (order, resources) = graph_fields.unwrap_or_else(|| {
        (
            rgd.pointer("/status/topologicalOrder")
                .cloned()
                .unwrap_or(Value::Null),
            rgd.pointer("/status/resources").cloned().unwrap_or(Value::Null),
        )
    });
    if !order.is_null() {
        status["topologicalOrder"] = order;
    }
    if resources.as_array().is_some_and(|r| !r.is_empty()) {
        status["resources"] = resources;
    }
    if let Some(n) = report
        .revision
        .or_else(|| rgd.pointer("/status/lastIssuedRevision").and_then(Value::as_u64))
    {
        status["lastIssuedRevision"] = json!(n);
    }
    status
}

async fn write_status(ctx: &Context, name: &str, rgd: &Value, report: &Report) -> Result<(), Error> {
    let status = status_of(rgd, report);
    if rgd.get("status") == Some(&status) {
        return Ok(());
    }
    let resource = ApiResource::from_gvk_with_plural(
        &kube::api::GroupVersionKind::gvk("kro.run", "v1alpha1", crate::rgd::KIND),
        "resourcegraphdefinitions",
    );
    let api = ctx.api(&resource, false, None).await;
    let body = json!({"apiVersion": crate::rgd::API_VERSION, "kind": crate::rgd::KIND, "metadata": {"name": name}, "status": status});
    let written = api
        .patch_status(
            name,
            &PatchParams::apply(metadata::RGD_MANAGER).force(),
            &Patch::Apply(&body),
        )
        .await
        .map_err(|source| Error::Api {
            action: "update status of",
            object: format!("ResourceGraphDefinition {name}"),
            source,
        })?;
    ctx.memory.saw(super::informers::to_value(&written, &resource));
    Ok(())
}

fn rgd_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &kube::api::GroupVersionKind::gvk("kro.run", "v1alpha1", crate::rgd::KIND),
        "resourcegraphdefinitions",
    )
}

async fn set_finalizers(
    ctx: &Context,
    name: &str,
    rgd: &Value,
    finalizers: Vec<String>,
) -> Result<(), Error> {
    let api = ctx.api(&rgd_resource(), false, None).await;
    let value = if finalizers.is_empty() {
        Value::Null
    } else {
        json!(finalizers)
    };
    let patch =
        json!({"metadata": {"finalizers": value, "resourceVersion": s(rgd, "/metadata/resourceVersion")}});
    let params = PatchParams {
        field_manager: Some(metadata::RGD_MANAGER.to_string()),
        ..PatchParams::default()
    };
    let written = api
        .patch(name, &params, &Patch::Merge(&patch))
        .await
        .map_err(|source| Error::Api {
            action: "update finalizers of",
            object: format!("ResourceGraphDefinition {name}"),
            source,
        })?;
    ctx.memory
        .saw(super::informers::to_value(&written, &rgd_resource()));
    Ok(())
}

fn finalizers(v: &Value) -> Vec<String> {
    v.pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(|f| f.as_str().map(String::from)).collect())
        .unwrap_or_default()
}

/// Loads the graph's plugin; a failure is (reason, message).
async fn load_plugin(ctx: &Context, rgd: &str, spec: &PluginSpec) -> Result<PluginBinding, (String, String)> {
    let r = &spec.config_map_ref;
    let ns = r
        .namespace
        .clone()
        .unwrap_or_else(|| ctx.config.namespace.clone());
    let shown = format!("ConfigMap {ns}/{}", r.name);
    if !ctx.config.plugin_namespaces.contains(&ns) {
        return Err((
            "PluginNamespaceNotAllowed".into(),
            format!(
                "spec.plugin.configMapRef: {shown}: namespace {ns:?} is not a plugin namespace of this controller ({}); \
                 move the ConfigMap or add the namespace to --plugin-namespaces",
                ctx.config.plugin_namespaces.join(", ")
            ),
        ));
    }
    ctx.interest
        .plugins
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .entry((ns.clone(), r.name.clone()))
        .or_default()
        .insert(rgd.to_string());
    let watch = WatchKey {
        namespace: Some(ns.clone()),
        fields: Some(format!("metadata.name={}", r.name)),
        ..WatchKey::all("v1", "ConfigMap", Role::PluginSource)
    };
    let informer = ctx
        .informers
        .ensure(&watch)
        .await
        .map_err(|e| ("PluginNotFound".to_string(), e.to_string()))?;
    if !informer.wait_synced(Duration::from_secs(10)).await {
        return Err((
            "PluginNotFound".into(),
            format!("{shown}: the watch did not sync"),
        ));
    }
    let Some(cm) = informer.get(Some(&ns), &r.name) else {
        return Err((
            "PluginNotFound".into(),
            format!("spec.plugin.configMapRef: {shown} not found"),
        ));
    };
    let key = r.key();
    let bytes = if let Some(b64) = cm
        .pointer("/binaryData")
        .and_then(|d| d.get(key))
        .and_then(Value::as_str)
    {
        base64::engine::general_purpose::STANDARD
            .decode(b64)
            .map_err(|e| {
                (
                    "PluginInvalid".to_string(),
                    format!("{shown}: binaryData[{key}] is not base64: {e}"),
                )
            })?
    } else if let Some(text) = cm
        .pointer("/data")
        .and_then(|d| d.get(key))
        .and_then(Value::as_str)
    {
        text.as_bytes().to_vec()
    } else {
        return Err((
            "PluginKeyMissing".into(),
            format!("spec.plugin.configMapRef.key: {shown} has no key {key:?} in binaryData or data"),
        ));
    };
    let pin = match &spec.sha256 {
        Some(p) => Some(
            Digest::parse(p)
                .map_err(crate::plugin::Error::from)
                .map_err(|e| (e.reason().to_string(), format!("spec.plugin.sha256: {e}")))?,
        ),
        None => None,
    };
    let runtime = ctx.runtime.clone();
    let started = std::time::Instant::now();
    let plugin = ctx
        .runtime
        .run(move || runtime.load(&bytes, pin.as_ref()))
        .await
        .map_err(|e| (e.reason().to_string(), format!("{shown}: {e}")))?;
    ctx.metrics.plugin_compiled(started.elapsed());
    let limits = ctx
        .runtime
        .limits(spec.timeout_ms, spec.memory_mib)
        .map_err(|e| (e.reason().to_string(), format!("spec.plugin: {e}")))?;
    let config = spec.config_value();
    let (p, c) = (plugin.clone(), config.clone());
    ctx.runtime
        .run(move || p.validate_config(&limits, &c))
        .await
        .map_err(|e| (e.reason().to_string(), format!("spec.plugin.config: {e}")))?;
    Ok(PluginBinding {
        plugin,
        config,
        limits,
        allowed_kinds: spec.allowed_kinds.clone(),
    })
}

fn hash_of(v: &Value) -> String {
    let digest = Sha256::digest(v.to_string().as_bytes());
    digest.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

/// Applies the generated CRD and waits until it is Established. A failure is (reason, message).
async fn ensure_crd(
    ctx: &Context,
    rgd: &ResourceGraphDefinition,
    graph: &Graph,
    raw: &Value,
) -> Result<(), (String, String)> {
    let mut crd = graph.crd.clone();
    let name = s(&crd, "/metadata/name").to_string();
    let labels = json!({
        metadata::OWNED: "true",
        metadata::KRO_VERSION: metadata::CONTROLLER_VERSION,
        metadata::RGD_ID: rgd.metadata.uid,
        metadata::RGD_NAME: rgd.name(),
    });
    for (k, v) in labels.as_object().expect("object") {
        crd["metadata"]["labels"][k] = v.clone();
    }
    let hash = hash_of(&crd);
    crd["metadata"]["annotations"][metadata::CRD_HASH] = json!(hash);
    let failed = |message: String| ("Failed".to_string(), message);
    let crds: Api<CustomResourceDefinition> = {
        ctx.limiter.acquire().await;
        Api::all(ctx.client.clone())
    };
    let live = crds
        .get_opt(&name)
        .await
        .map_err(|e| failed(format!("reading CustomResourceDefinition {name}: {e}")))?;
    if let Some(live) = &live {
        let live_labels = live.metadata.labels.clone().unwrap_or_default();
        if live_labels.get(metadata::OWNED).map(String::as_str) != Some("true") {
            return Err(failed(format!(
                "CustomResourceDefinition {name} already exists and is not owned by kro (label {}=true); remove it or choose another kind",
                metadata::OWNED
            )));
        }
        if let Some(other) = live_labels.get(metadata::RGD_NAME)
            && other != rgd.name()
        {
            // When that graph lets go of it (its CRD deleted), the CRD watch brings this one back.
            ctx.interest
                .crds
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .entry(name.clone())
                .or_default()
                .insert(rgd.name().to_string());
            return Err(failed(format!(
                "CustomResourceDefinition {name} belongs to ResourceGraphDefinition {other}"
            )));
        }
        let unchanged = live
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(metadata::CRD_HASH))
            == Some(&hash);
        let established = conditions::is_crd_established().matches_object(Some(live));
        if unchanged && established {
            return Ok(());
        }
        if !unchanged {
            let old = serde_json::to_value(live).unwrap_or(Value::Null);
            let old_spec = old
                .pointer("/spec/versions")
                .and_then(Value::as_array)
                .and_then(|v| v.iter().find(|v| v["storage"] == json!(true)))
                .and_then(|v| v.pointer("/schema/openAPIV3Schema/properties/spec"))
                .cloned()
                .unwrap_or(Value::Null);
            let changes = compat::breaking_changes(&old_spec, &graph.spec_schema);
            let allowed = raw
                .pointer(&format!(
                    "/metadata/annotations/{}",
                    metadata::ALLOW_BREAKING.replace('/', "~1")
                ))
                .and_then(Value::as_str)
                == Some("true");
            if !changes.is_empty() && !allowed {
                let list: Vec<String> = changes.iter().map(ToString::to_string).collect();
                return Err((
                    "BreakingChanges".into(),
                    format!(
                        "schema change refused: {}; annotate the ResourceGraphDefinition with {}: \"true\" to apply it anyway",
                        list.join(", "),
                        metadata::ALLOW_BREAKING
                    ),
                ));
            }
        }
    }
    if live.as_ref().is_none_or(|l| {
        l.metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(metadata::CRD_HASH))
            != Some(&hash)
    }) {
        ctx.limiter.acquire().await;
        let typed: CustomResourceDefinition = serde_json::from_value(crd)
            .map_err(|e| failed(format!("generated CRD {name} is not valid: {e}")))?;
        crds.patch(
            &name,
            &PatchParams::apply(metadata::RGD_MANAGER).force(),
            &Patch::Apply(&typed),
        )
        .await
        .map_err(|e| failed(format!("applying CustomResourceDefinition {name}: {e}")))?;
    }
    // A new CRD is Established within a moment; one that is not (it may never be) must not
    // hold this worker: report it and come back when the CRD watch sees it change.
    let established = await_condition(crds.clone(), &name, conditions::is_crd_established());
    match tokio::time::timeout(ESTABLISH_WAIT, established).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(failed(format!(
            "waiting for CustomResourceDefinition {name}: {e}"
        ))),
        Err(_) => {
            let why = crds
                .get_opt(&name)
                .await
                .ok()
                .flatten()
                .and_then(|c| c.status)
                .and_then(|s| s.conditions)
                .unwrap_or_default()
                .into_iter()
                .filter(|c| c.status != "True")
                .map(|c| format!("{}: {}", c.type_, c.message.unwrap_or_default()))
                .collect::<Vec<_>>()
                .join("; ");
            tracing::info!(crd = %name, conditions = %why, "CustomResourceDefinition not established yet");
            Err((
                "Pending".into(),
                if why.is_empty() {
                    format!("waiting for CustomResourceDefinition {name} to be established")
                } else {
                    format!("waiting for CustomResourceDefinition {name} to be established: {why}")
                },
            ))
        }
    }
}

/// How long a reconcile waits for a CRD it just applied to become Established before it
/// reports it and moves on.
const ESTABLISH_WAIT: Duration = Duration::from_secs(1);

/// Watches the kinds a graph reads and writes, so reconciles find them in cache.
async fn watch_kinds(ctx: &Context, graph: &Graph) -> Result<(), (String, String)> {
    for node in &graph.nodes {
        let api_version = s(&node.object, "/apiVersion");
        let kind = s(&node.object, "/kind");
        if api_version.contains("${") || kind.contains("${") {
            continue;
        }
        let key = match node.kind {
            NodeKind::External { .. } => WatchKey::all(api_version, kind, Role::External),
            NodeKind::Template => child_watch(api_version, kind),
        };
        ctx.informers.ensure(&key).await.map_err(|e| {
            (
                "InvalidResourceGraph".to_string(),
                format!("failed to get schema for resource {}: {e}", node.id),
            )
        })?;
    }
    Ok(())
}

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
    let deleting = raw
        .pointer("/metadata/deletionTimestamp")
        .is_some_and(|t| !t.is_null());
    if deleting {
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

/// Forgets what the controller remembers about a graph that is gone.
fn forget_graph(ctx: &Context, name: &str) {
    ctx.graphs_seen
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .remove(name);
    for users in ctx
        .interest
        .plugins
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .values_mut()
    {
        users.remove(name);
    }
    ctx.interest
        .plugins
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .retain(|_, users| !users.is_empty());
    ctx.interest
        .crds
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .retain(|_, waiting| {
            waiting.remove(name);
            !waiting.is_empty()
        });
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
                &Report::failed_graph("InvalidResourceGraph", e.to_string()),
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
                &Report::failed_graph("InvalidResourceGraph", e.to_string()),
            )
            .await?;
            return Ok(Action::done());
        }
    };
    let plugin = match &rgd.spec.plugin {
        None => None,
        Some(spec) => match load_plugin(ctx, name, spec).await {
            Ok(p) => Some(p),
            Err((reason, message)) => {
                tracing::info!(%reason, %message, "plugin refused; the last good revision keeps serving");
                let mut report = Report::failed_graph(&reason, message);
                report.graph = Some(graph.clone());
                write_status(ctx, name, &raw, &report).await?;
                return Ok(Action::done());
            }
        },
    };
    let mut report = Report::healthy(&graph.names.kind, Some(graph.clone()), None, "");
    if let Err((reason, message)) = ensure_crd(ctx, &rgd, &graph, &raw).await {
        let pending = reason == "Pending";
        report.kind = cond("KindReady", false, &reason, message);
        report.controller = Cond {
            type_: "ControllerReady",
            status: "Unknown",
            reason: "Pending".into(),
            message: "waiting for the kind".into(),
        };
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
            .map_err(|e| ("FailedToStart".to_string(), e.to_string()))?;
        Ok::<_, (String, String)>(informer)
    }
    .await;
    let informer = match started {
        Ok(i) => i,
        Err((reason, message)) => {
            if reason == "InvalidResourceGraph" {
                report.accepted = cond("GraphAccepted", false, &reason, message);
            } else {
                report.controller = cond("ControllerReady", false, &reason, message);
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
                    namespace: obj
                        .pointer("/metadata/namespace")
                        .and_then(Value::as_str)
                        .map(String::from),
                    name: s(&obj, "/metadata/name").to_string(),
                });
            }
        }
    }
    report.revision = Some(number);
    report.revisions.message = format!("revision {number} compiled and active");
    write_status(ctx, name, &raw, &report).await?;
    Ok(Action::done())
}

/// The instances of a graph's kind that exist, counted from the API (never from a cache,
/// which may not have been started or synced): the served revision's kind, else the kind the
/// RGD's schema names if this graph owns its CRD. `None` when there is no such kind (no CRD
/// of this graph, so no instance).
async fn count_instances(
    ctx: &Context,
    name: &str,
    raw: &Value,
    revision: Option<&Revision>,
) -> Result<Option<(String, usize)>, Error> {
    let resource = match revision {
        Some(r) => r.resource.clone(),
        None => {
            let Ok(rgd) = ResourceGraphDefinition::from_value(raw, name) else {
                return Ok(None);
            };
            let names = crate::graph::crd::KindNames::of(&rgd);
            let crds: Api<CustomResourceDefinition> = Api::all(ctx.client.clone());
            ctx.limiter.acquire().await;
            let owned = crds
                .get_opt(&names.crd_name())
                .await
                .ok()
                .flatten()
                .and_then(|c| c.metadata.labels)
                .is_some_and(|l| l.get(metadata::RGD_NAME).map(String::as_str) == Some(name));
            if !owned {
                return Ok(None);
            }
            match ctx
                .informers
                .kinds
                .resolve(&ctx.client, &names.api_version(), &names.kind)
                .await
            {
                Ok((resource, _)) => resource,
                Err(_) => return Ok(None),
            }
        }
    };
    let api = ctx.api(&resource, false, None).await;
    match api.list_metadata(&kube::api::ListParams::default()).await {
        Ok(list) => Ok(Some((resource.kind.clone(), list.items.len()))),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(None),
        Err(source) => Err(Error::Api {
            action: "list",
            object: format!("{} instances", resource.kind),
            source,
        }),
    }
}

async fn delete(ctx: &Arc<Context>, name: &str, raw: &Value) -> Result<Action, Error> {
    let revision = ctx.graphs.get(name);
    let (kind, remaining) = count_instances(ctx, name, raw, revision.as_deref())
        .await?
        .unwrap_or_default();
    if remaining > 0 {
        let mut report = Report::healthy(
            &kind,
            revision.as_ref().map(|r| r.graph.clone()),
            revision.as_ref().map(|r| r.number),
            "the graph is being deleted",
        );
        report.extra = Some(cond(
            "InstancesDeleted",
            false,
            "InstancesRemaining",
            format!(
                "{remaining} instance{} of {kind} still exist{}; the graph keeps serving them until they are deleted",
                if remaining == 1 { "" } else { "s" },
                if remaining == 1 { "s" } else { "" }
            ),
        ));
        write_status(ctx, name, raw, &report).await?;
        return Ok(Action::after(Duration::from_secs(2)));
    }
    if let Some(old) = ctx.graphs.remove(name) {
        ctx.informers.stop(&old.watch);
        if ctx.config.allow_crd_deletion {
            let crd_name = s(&old.graph.crd, "/metadata/name").to_string();
            let crds: Api<CustomResourceDefinition> = Api::all(ctx.client.clone());
            if let Ok(Some(crd)) = crds.get_opt(&crd_name).await
                && crd
                    .metadata
                    .labels
                    .as_ref()
                    .and_then(|l| l.get(metadata::RGD_NAME))
                    .map(String::as_str)
                    == Some(name)
            {
                ctx.limiter.acquire().await;
                crds.delete(&crd_name, &DeleteParams::default())
                    .await
                    .map_err(|source| Error::Api {
                        action: "delete",
                        object: format!("CustomResourceDefinition {crd_name}"),
                        source,
                    })?;
                tracing::info!(crd = %crd_name, "deleted the graph's CRD (--allow-crd-deletion)");
            }
        }
    }
    let fins: Vec<String> = finalizers(raw)
        .into_iter()
        .filter(|f| f != metadata::FINALIZER)
        .collect();
    if fins.len() != finalizers(raw).len() {
        set_finalizers(ctx, name, raw, fins).await?;
    }
    Ok(Action::done())
}

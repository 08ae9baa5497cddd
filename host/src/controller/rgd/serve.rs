//! Serving a graph, stage by stage: kro's finalizer, admission (the RGD parsed and built into a
//! graph), the plugin, the kind (its CRD applied and Established), the watches, then a new
//! revision when anything changed. A stage that refuses says why on the graph's conditions; the
//! last good revision keeps serving meanwhile.

use std::{sync::Arc, time::Duration};

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Api;
use serde_json::Value;
use sha2::{Digest as _, Sha256};

use super::{
    crd::{ensure_crd, watch_kinds},
    delete::{finalizers, set_finalizers},
    graph_revisions,
    plugin::load_plugin,
    report::{Reason, Refusal, Report, cond, unknown, write_status},
};
use crate::{
    controller::{
        action::Action,
        context::Context,
        error::Error,
        informers::{Informer, Role, WatchKey, rgd_watch},
        key::{InstanceKey, owner_of},
        revisions::{PluginBinding, Revision},
    },
    graph::{self, Catalog, CustomKinds, Graph, catalog::KindSchema},
    metadata,
    object::Object,
    rgd::ResourceGraphDefinition,
};

/// Serves the graph `name` (being deleted when `deleting`: no finalizer is added then).
pub(super) async fn serve(
    ctx: &Arc<Context>,
    name: &str,
    raw: Value,
    deleting: bool,
) -> Result<Action, Error> {
    let raw = ensure_finalizer(ctx, name, raw, deleting).await?;
    let (rgd, graph) = match admit(ctx, name, &raw).await {
        Ok(admitted) => admitted,
        Err(refusal) => {
            let retry = refusal.retry;
            refused(ctx, name, &raw, Report::refused(refusal)).await?;
            // A kind not served yet may be by the next look (another graph's CRD, a CRD
            // applied after the graph).
            return Ok(if retry {
                Action::after(Duration::from_secs(10))
            } else {
                Action::done()
            });
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
                return refused(ctx, name, &raw, report).await;
            }
        },
    };
    let mut report = Report::healthy(&graph.names.kind, Some(graph.clone()), None, "");
    if let Err(refusal) = ensure_crd(ctx, &rgd, &graph, &raw).await {
        return kind_not_ready(ctx, name, &raw, report, refusal).await;
    }
    let (informer, watch) = match start_watches(ctx, &graph).await {
        Ok(started) => started,
        Err(Refusal { reason, message, .. }) => {
            if reason == Reason::InvalidResourceGraph {
                report.accepted = cond("GraphAccepted", false, reason.as_str(), message);
            } else {
                report.controller = cond("ControllerReady", false, reason.as_str(), message);
            }
            write_status(ctx, name, &raw, &report).await?;
            return Ok(Action::after(Duration::from_secs(5)));
        }
    };
    let digest = plugin.as_ref().map(|p| p.plugin.digest().to_string());
    let hash = graph_revisions::spec_hash(&raw, digest.as_deref());
    let recorded =
        graph_revisions::record(ctx, &raw, &rgd, &graph, &hash, ctx.config.max_graph_revisions).await;
    let issued = match recorded {
        Ok(n) => n,
        Err(Refusal { reason, message, .. }) => {
            // The revision still serves; the record of it failed.
            report.revisions = cond("GraphRevisionsResolved", false, reason.as_str(), message);
            None
        }
    };
    let number = issue_revision(ctx, name, &raw, &rgd, &graph, plugin, &informer, watch, issued);
    report.revision = Some(number);
    if report.revisions.mark.status == "True" {
        report.revisions.mark.message = format!("revision {number} compiled and active");
    }
    write_status(ctx, name, &raw, &report).await?;
    Ok(Action::done())
}

/// Adds kro's finalizer (unless the graph is being deleted) and returns the freshest copy.
async fn ensure_finalizer(ctx: &Context, name: &str, mut raw: Value, deleting: bool) -> Result<Value, Error> {
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
    Ok(raw)
}

/// The RGD parsed, built into a graph and type-checked against the schemas of the kinds it
/// names, or why it is refused (`InvalidResourceGraph`).
async fn admit(
    ctx: &Context,
    name: &str,
    raw: &Value,
) -> Result<(ResourceGraphDefinition, Arc<Graph>), Refusal> {
    let invalid = |e: String| Refusal::new(Reason::InvalidResourceGraph, e);
    let rgd = ResourceGraphDefinition::from_value(raw, name).map_err(|e| invalid(e.to_string()))?;
    let catalog = catalog(ctx, &rgd).await?;
    let started = std::time::Instant::now();
    let built = graph::build(&rgd, ctx.config.graph_limits, &catalog);
    ctx.metrics.graph_build(name, started.elapsed(), built.is_ok());
    let graph = built.map_err(|e| {
        tracing::info!(error = %e, "graph refused");
        let retry = matches!(e, graph::Error::KindNotFound { .. });
        let refusal = invalid(e.to_string());
        if retry { refusal.retrying() } else { refusal }
    })?;
    Ok((rgd, Arc::new(graph)))
}

/// The schemas of the kinds `rgd` names: built-in kinds from the snapshot; any other kind from
/// the cluster (discovery, then its CustomResourceDefinition; served without one, it is left
/// unchecked). A kind the cluster does not serve stays unknown, so admission refuses the graph.
async fn catalog(ctx: &Context, rgd: &ResourceGraphDefinition) -> Result<Catalog, Refusal> {
    let mut catalog = Catalog::new(CustomKinds::Refused);
    let crds: Api<CustomResourceDefinition> = Api::all(ctx.client.clone());
    for r in &rgd.spec.resources {
        let Some(object) = r.template.as_ref().or(r.external_ref.as_ref()) else {
            continue;
        };
        let Some((api_version, kind)) = graph::static_kind(object) else {
            continue;
        };
        if api_version.is_empty() || kind.is_empty() {
            continue;
        }
        if matches!(catalog.lookup(api_version, kind), KindSchema::Known(_)) {
            continue;
        }
        let Ok((resource, _)) = ctx.informers.kinds.resolve(&ctx.client, api_version, kind).await else {
            continue;
        };
        let crd_name = format!("{}.{}", resource.plural, resource.group);
        ctx.limiter.acquire().await;
        match crds.get_opt(&crd_name).await {
            Ok(Some(crd)) => catalog.add_crd(&serde_json::to_value(crd).unwrap_or(Value::Null)),
            Ok(None) => catalog.add_unchecked(api_version, kind),
            Err(e) => {
                return Err(Refusal::new(
                    Reason::Pending,
                    format!(
                        "reading CustomResourceDefinition {crd_name} for resource {}: {e}",
                        r.id
                    ),
                ));
            }
        }
    }
    Ok(catalog)
}

/// Reports a refusal and waits for the graph (or its plugin) to change.
/// Reports a refused graph. While a previous revision keeps serving, only `GraphAccepted` says
/// so, as in kro: the kind, the controller and the serving revision are still ready.
async fn refused(ctx: &Context, name: &str, raw: &Value, mut report: Report) -> Result<Action, Error> {
    if let Some(serving) = ctx.graphs.get(name) {
        let healthy = Report::healthy(
            &serving.graph.names.kind,
            None,
            Some(serving.number),
            &format!("revision {} compiled and active", serving.number),
        );
        report.kind = healthy.kind;
        report.controller = healthy.controller;
        report.revisions = healthy.revisions;
        report.revision = healthy.revision;
    }
    write_status(ctx, name, raw, &report).await?;
    Ok(Action::done())
}

/// The kind is not ready: `KindReady=False` and the controller waits for it. The CRD watch
/// brings the graph back when its CRD changes; the timer is a fallback.
async fn kind_not_ready(
    ctx: &Context,
    name: &str,
    raw: &Value,
    mut report: Report,
    Refusal { reason, message, .. }: Refusal,
) -> Result<Action, Error> {
    report.kind = cond("KindReady", false, reason.as_str(), message);
    report.controller = unknown("ControllerReady", "Pending", "waiting for the kind");
    write_status(ctx, name, raw, &report).await?;
    Ok(Action::after(if reason == Reason::Pending {
        Duration::from_secs(5)
    } else {
        Duration::from_secs(30)
    }))
}

/// Watches the kinds the graph reads and writes, then its instances.
async fn start_watches(ctx: &Context, graph: &Graph) -> Result<(Arc<Informer>, WatchKey), Refusal> {
    let api_version = graph.names.api_version();
    ctx.informers.kinds.forget(&api_version, &graph.names.kind);
    let watch = WatchKey::all(&api_version, &graph.names.kind, Role::Instances);
    watch_kinds(ctx, graph).await?;
    let informer = ctx
        .informers
        .ensure(&watch)
        .await
        .map_err(|e| Refusal::new(Reason::FailedToStart, e.to_string()))?;
    Ok((informer, watch))
}

/// Serves a new revision when the spec, labels, annotations or plugin changed (and requeues
/// every instance onto it); returns the number of the revision serving.
#[allow(clippy::too_many_arguments, reason = "the stage's inputs, named")]
fn issue_revision(
    ctx: &Context,
    name: &str,
    raw: &Value,
    rgd: &ResourceGraphDefinition,
    graph: &Arc<Graph>,
    plugin: Option<PluginBinding>,
    informer: &Informer,
    watch: WatchKey,
    issued: Option<u64>,
) -> u64 {
    let fingerprint = {
        let mut h = Sha256::new();
        for part in [
            raw.get("spec"),
            raw.pointer("/metadata/labels"),
            raw.pointer("/metadata/annotations"),
        ] {
            h.update(part.map(Value::to_string).unwrap_or_default());
        }
        if let Some(p) = &plugin {
            h.update(p.plugin.digest().to_string());
        }
        format!("{:x}", h.finalize())
    };
    let current = ctx.graphs.get(name);
    // The GraphRevision's number when one records it; else counted here.
    let number = match (&current, issued) {
        (Some(c), Some(n)) if c.fingerprint == fingerprint && c.number == n => return n,
        (Some(c), None) if c.fingerprint == fingerprint => return c.number,
        (_, Some(n)) => n,
        (Some(c), None) => c.number + 1,
        (None, None) => {
            raw.pointer("/status/lastIssuedRevision")
                .and_then(Value::as_u64)
                .unwrap_or(0)
                + 1
        }
    };
    let api_version = graph.names.api_version();
    ctx.graphs.set(Arc::new(Revision {
        rgd: name.to_string(),
        rgd_uid: rgd.metadata.uid.clone(),
        number,
        graph: graph.clone(),
        plugin,
        resource: informer.resource.clone(),
        namespaced: informer.namespaced,
        watch,
        fingerprint,
    }));
    tracing::info!(revision = number, kind = %graph.names.kind, "serving graph revision");
    if informer.synced() {
        for obj in informer.list() {
            ctx.instance_queue.add(InstanceKey {
                api_version: api_version.clone(),
                kind: graph.names.kind.clone(),
                namespace: obj.namespace().map(String::from),
                name: obj.name().to_string(),
            });
        }
    }
    // Instances the watch does not list but children name: gone, their children left over
    // (the instance's reconcile collects them). Their events came before this revision did.
    for child in ctx.children.all() {
        if let Some(owner) = owner_of(&child)
            && owner.api_version == api_version
            && owner.kind == graph.names.kind
        {
            ctx.instance_queue.add(owner);
        }
    }
    number
}

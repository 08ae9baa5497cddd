//! The graph's kind: the generated CRD applied (breaking changes refused unless allowed) and
//! Established, and the kinds the graph reads and writes watched.

use std::time::Duration;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::{
    Api,
    api::{Patch, PatchParams},
    runtime::{
        conditions,
        wait::{Condition, await_condition},
    },
};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

use crate::controller::{
    context::Context,
    informers::{Role, WatchKey, child_watch},
};
use crate::{
    graph::{Graph, NodeKind, compat},
    metadata,
    object::str_at,
    rgd::ResourceGraphDefinition,
};

use super::report::{Reason, Refusal};

pub(super) fn hash_of(v: &Value) -> String {
    let digest = Sha256::digest(v.to_string().as_bytes());
    digest.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

/// Applies the generated CRD and waits until it is Established. A failure is (reason, message).
pub(super) async fn ensure_crd(
    ctx: &Context,
    rgd: &ResourceGraphDefinition,
    graph: &Graph,
    raw: &Value,
) -> Result<(), Refusal> {
    let mut crd = graph.crd.clone();
    let name = str_at(&crd, "/metadata/name").to_string();
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
    let failed = |message: String| Refusal::new(Reason::Failed, message);
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
        if live.metadata.deletion_timestamp.is_some() {
            // Deleted by hand: the CRD watch brings the graph back once it is gone, to make it anew.
            return Err(Refusal::new(
                Reason::Pending,
                format!("CustomResourceDefinition {name} is being deleted; it is made anew once it is gone"),
            ));
        }
        let established = conditions::is_crd_established().matches_object(Some(live));
        let generation = live.metadata.generation.unwrap_or_default();
        let edited = {
            let mut generations = ctx
                .interest
                .crd_generations
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            *generations.entry(name.clone()).or_insert(generation) != generation
        };
        if unchanged && edited {
            // Someone else changed the spec kroxide applied: put the graph's back, whole (an
            // apply would keep fields the other writer now owns).
            return restore(ctx, &crds, live, crd).await;
        }
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
                return Err(Refusal::new(
                    Reason::BreakingChanges,
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
        let written = crds
            .patch(
                &name,
                &PatchParams::apply(metadata::RGD_MANAGER).force(),
                &Patch::Apply(&typed),
            )
            .await
            .map_err(|e| failed(format!("applying CustomResourceDefinition {name}: {e}")))?;
        remember(ctx, &written);
    }
    established(&crds, &name).await
}

/// Notes the generation of a CRD kroxide has just written.
fn remember(ctx: &Context, written: &CustomResourceDefinition) {
    ctx.interest
        .crd_generations
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(
            written.metadata.name.clone().unwrap_or_default(),
            written.metadata.generation.unwrap_or_default(),
        );
}

/// Replaces the spec of a CRD edited by hand with the graph's (`desired`), keeping the live
/// object's metadata and status, at the resourceVersion read (a conflict retries the graph).
async fn restore(
    ctx: &Context,
    crds: &Api<CustomResourceDefinition>,
    live: &CustomResourceDefinition,
    desired: Value,
) -> Result<(), Refusal> {
    let name = live.metadata.name.clone().unwrap_or_default();
    let failed = |message: String| Refusal::new(Reason::Failed, message);
    let desired: CustomResourceDefinition = serde_json::from_value(desired)
        .map_err(|e| failed(format!("generated CRD {name} is not valid: {e}")))?;
    let mut restored = live.clone();
    restored.spec = desired.spec;
    tracing::info!(crd = %name, "CustomResourceDefinition was changed by hand; restoring the graph's");
    ctx.limiter.acquire().await;
    let written = crds
        .replace(&name, &Default::default(), &restored)
        .await
        .map_err(|e| failed(format!("restoring CustomResourceDefinition {name}: {e}")))?;
    remember(ctx, &written);
    established(crds, &name).await
}

/// Waits (briefly) until the CRD is Established.
async fn established(crds: &Api<CustomResourceDefinition>, name: &str) -> Result<(), Refusal> {
    let failed = |message: String| Refusal::new(Reason::Failed, message);
    // A new CRD is Established within a moment; one that is not (it may never be) must not
    // hold this worker: report it and come back when the CRD watch sees it change.
    let established = await_condition(crds.clone(), name, conditions::is_crd_established());
    match tokio::time::timeout(ESTABLISH_WAIT, established).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(failed(format!(
            "waiting for CustomResourceDefinition {name}: {e}"
        ))),
        Err(_) => {
            let why = crds
                .get_opt(name)
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
            Err(Refusal::new(
                Reason::Pending,
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
pub(super) const ESTABLISH_WAIT: Duration = Duration::from_secs(1);

/// Watches the kinds a graph reads and writes, so reconciles find them in cache.
pub(super) async fn watch_kinds(ctx: &Context, graph: &Graph) -> Result<(), Refusal> {
    for node in &graph.nodes {
        let Some((api_version, kind)) = node.static_kind() else {
            continue;
        };
        let key = match node.kind {
            NodeKind::External { .. } => WatchKey::all(api_version, kind, Role::External),
            NodeKind::Template => child_watch(api_version, kind),
        };
        ctx.informers.ensure(&key).await.map_err(|e| {
            Refusal::new(
                Reason::InvalidResourceGraph,
                format!("failed to get schema for resource {}: {e}", node.id),
            )
        })?;
    }
    Ok(())
}

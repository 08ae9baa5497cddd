//! The instance's own metadata: kro's labels and finalizer before any child is made, and the
//! ApplySet parent annotations (member kinds and namespaces) kept in step with the children.

use std::{collections::BTreeSet, time::Duration};

use kube::api::{Patch, PatchParams};
use serde_json::{Map, Value, json};

use crate::controller::{
    context::Context,
    error::Error,
    informers::{child_watch, to_value},
    key::InstanceKey,
    revisions::Revision,
};
use crate::{
    child::DesiredChild,
    graph::NodeKind,
    metadata::{self, InstanceIdentity},
    object::{Object, group_kind},
};

pub(super) async fn ensure_managed(
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
    let has_finalizer = instance.has_finalizer(metadata::FINALIZER);
    if has_finalizer && want.iter().all(|(k, v)| instance.label(k) == Some(*v)) {
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
pub(super) async fn patch_instance(
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
    *instance = to_value(&written, &rev.resource);
    ctx.memory.saw(instance.clone());
    Ok(())
}

/// Keeps the ApplySet parent annotations: the group-kinds and extra namespaces of children.
/// With `grow`, kinds are only added (before applying, so a crash leaks nothing); otherwise the
/// annotations are set exactly (after a clean prune).
pub(super) async fn ensure_parent(
    ctx: &Context,
    rev: &Revision,
    key: &InstanceKey,
    instance: &mut Value,
    desired: &[DesiredChild],
    grow: bool,
) -> Result<(), Error> {
    // Every kind the graph's templates name, so the set does not change as resources become
    // renderable one by one.
    let mut kinds: BTreeSet<String> = desired
        .iter()
        .map(|d| group_kind(d.api_version(), d.kind()))
        .collect();
    for node in &rev.graph.nodes {
        if matches!(node.kind, NodeKind::Template) {
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
    let current_kinds: BTreeSet<String> = instance
        .annotation(metadata::APPLYSET_CONTAINS)
        .map(|s| s.split(',').filter(|x| !x.is_empty()).map(String::from).collect())
        .unwrap_or_default();
    let current_namespaces: BTreeSet<String> = instance
        .annotation(metadata::APPLYSET_NAMESPACES)
        .map(|s| s.split(',').filter(|x| !x.is_empty()).map(String::from).collect())
        .unwrap_or_default();
    if grow {
        kinds.extend(current_kinds.iter().cloned());
        namespaces.extend(current_namespaces.iter().cloned());
    }
    let tooling = concat!("kroxide/v", env!("CARGO_PKG_VERSION"));
    if kinds == current_kinds
        && namespaces == current_namespaces
        && instance.annotation(metadata::APPLYSET_TOOLING) == Some(tooling)
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

pub(super) async fn watch_children(ctx: &Context, desired: &[DesiredChild]) -> Result<(), Error> {
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

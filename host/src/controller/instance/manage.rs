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
    graph::Graph,
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

/// Keeps the instance's ApplySet parent annotations in step with its children: the member
/// kinds (every kind the graph's templates name, so the set does not change as resources become
/// renderable one by one) and the namespaces beyond the instance's. While children are being
/// applied (`grow`) the sets only grow; after a prune they shrink to what is desired.
pub(super) async fn ensure_parent(
    ctx: &Context,
    rev: &Revision,
    key: &InstanceKey,
    instance: &mut Value,
    desired: &[DesiredChild],
    grow: bool,
) -> Result<(), Error> {
    let Some(annotations) = parent_annotations(&rev.graph, key.namespace.as_deref(), instance, desired, grow)
    else {
        return Ok(());
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

/// The ApplySet parent annotations to merge into `instance`, or `None` when they are current.
fn parent_annotations(
    graph: &Graph,
    namespace: Option<&str>,
    instance: &Value,
    desired: &[DesiredChild],
    grow: bool,
) -> Option<Value> {
    let mut kinds: BTreeSet<String> = desired
        .iter()
        .map(|d| group_kind(d.api_version(), d.kind()))
        .collect();
    let templates = graph.nodes.iter().filter(|n| !n.is_external());
    kinds.extend(
        templates
            .filter_map(|n| n.static_kind())
            .map(|(av, kind)| group_kind(av, kind)),
    );
    let mut namespaces: BTreeSet<String> = desired
        .iter()
        .filter_map(|d| d.namespace())
        .filter(|n| Some(*n) != namespace)
        .map(String::from)
        .collect();
    let listed = |key: &str| -> BTreeSet<String> {
        instance
            .annotation(key)
            .map(|s| s.split(',').filter(|x| !x.is_empty()).map(String::from).collect())
            .unwrap_or_default()
    };
    let (current_kinds, current_namespaces) = (
        listed(metadata::APPLYSET_CONTAINS),
        listed(metadata::APPLYSET_NAMESPACES),
    );
    if grow {
        kinds.extend(current_kinds.iter().cloned());
        namespaces.extend(current_namespaces.iter().cloned());
    }
    let tooling = concat!("kroxide/v", env!("CARGO_PKG_VERSION"));
    if kinds == current_kinds
        && namespaces == current_namespaces
        && instance.annotation(metadata::APPLYSET_TOOLING) == Some(tooling)
    {
        return None;
    }
    let mut annotations = json!({(metadata::APPLYSET_TOOLING): tooling, (metadata::APPLYSET_CONTAINS): kinds.into_iter().collect::<Vec<_>>().join(",")});
    // A merge patch: `null` removes the annotation when no namespace is left.
    annotations[metadata::APPLYSET_NAMESPACES] = if namespaces.is_empty() {
        Value::Null
    } else {
        json!(namespaces.into_iter().collect::<Vec<_>>().join(","))
    };
    Some(annotations)
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

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::{
        child::{ChildKey, Readiness},
        graph::{self, Limits},
        rgd::ResourceGraphDefinition,
    };

    fn graph() -> Graph {
        let rgd = ResourceGraphDefinition::from_value(
            &json!({"apiVersion": "kro.run/v1alpha1", "kind": "ResourceGraphDefinition",
                "metadata": {"name": "apps.kro.run", "uid": "u"},
                "spec": {"schema": {"apiVersion": "v1alpha1", "kind": "App", "spec": {}},
                    "resources": [
                        {"id": "config", "template": {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}}},
                        {"id": "deployment", "template": {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"}}}]}}),
            "test",
        )
        .unwrap();
        graph::build(&rgd, Limits::default(), &graph::Catalog::default()).unwrap()
    }

    fn child(api_version: &str, kind: &str, namespace: &str) -> DesiredChild {
        let object = json!({"apiVersion": api_version, "kind": kind, "metadata": {"name": "x", "namespace": namespace}});
        DesiredChild {
            key: ChildKey::new("config"),
            object: object.as_object().unwrap().clone(),
            ready: Readiness::Unknown,
        }
    }

    #[test]
    fn the_parent_lists_every_kind_the_templates_name_before_any_child_exists() {
        let a = parent_annotations(&graph(), Some("shop"), &json!({}), &[], true).unwrap();
        assert_eq!(a[metadata::APPLYSET_CONTAINS], "ConfigMap,Deployment.apps");
        assert_eq!(a[metadata::APPLYSET_NAMESPACES], Value::Null);
    }

    #[test]
    fn current_parent_annotations_need_no_write() {
        let first = parent_annotations(&graph(), Some("shop"), &json!({}), &[], true).unwrap();
        let instance = json!({"metadata": {"annotations": first}});
        assert_eq!(
            parent_annotations(&graph(), Some("shop"), &instance, &[], true),
            None
        );
    }

    #[test]
    fn namespaces_grow_while_applying_and_shrink_after_a_prune() {
        let other = [child("v1", "ConfigMap", "other")];
        let grown = parent_annotations(&graph(), Some("shop"), &json!({}), &other, true).unwrap();
        assert_eq!(grown[metadata::APPLYSET_NAMESPACES], "other");
        let instance = json!({"metadata": {"annotations": grown}});
        assert_eq!(
            parent_annotations(&graph(), Some("shop"), &instance, &[], true),
            None,
            "while applying, a namespace no child has yet stays listed"
        );
        let shrunk = parent_annotations(&graph(), Some("shop"), &instance, &[], false).unwrap();
        assert_eq!(
            shrunk[metadata::APPLYSET_NAMESPACES],
            Value::Null,
            "null removes it"
        );
    }
}

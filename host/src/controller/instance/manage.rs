//! The instance's own metadata: kro's labels and finalizer before any child is made, and the
//! ApplySet parent annotations (member kinds and namespaces) kept in step with the children;
//! both in one write when the graph names its kinds and namespaces up front.

use crate::object::Pointer as _;
use std::{collections::BTreeSet, time::Duration};

use kube::api::{Patch, PatchParams};
use serde_json::{Map, Value, json};

use crate::controller::{
    context::Context, error::Error, informers::child_watch, key::InstanceKey, revisions::Revision,
    wire::to_value,
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
    // The parent annotations as far as the graph tells them before anything is rendered (the
    // kinds its templates name): written now, the first apply usually finds them current.
    let parent = Parent {
        id: identity.applyset_id(),
        namespace: key.namespace.as_deref(),
    };
    let annotations = parent_annotations(&rev.graph, parent, instance, &[], true);
    let labels: Map<String, Value> = want.iter().map(|(k, v)| (k.to_string(), json!(v))).collect();
    let mut finalizers: Vec<Value> = instance
        .at("/metadata/finalizers")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if !has_finalizer {
        finalizers.push(json!(metadata::FINALIZER));
    }
    // A merge patch at the resourceVersion we read, never an apply: an apply creates what it
    // does not find, and would bring back an instance deleted before it had our finalizer.
    // Someone else's write in between is a conflict, retried.
    let mut patch = json!({
        "labels": labels,
        "finalizers": finalizers,
        "resourceVersion": instance.at("/metadata/resourceVersion").cloned().unwrap_or(Value::Null)});
    if let Some(a) = annotations {
        patch["annotations"] = a;
    }
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
    *instance = to_value(written, &rev.resource);
    ctx.remember_write(&rev.watch, instance.clone());
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
    identity: &InstanceIdentity,
    instance: &mut Value,
    desired: &[DesiredChild],
    grow: bool,
) -> Result<(), Error> {
    let parent = Parent {
        id: identity.applyset_id(),
        namespace: key.namespace.as_deref(),
    };
    let Some(annotations) = parent_annotations(&rev.graph, parent, instance, desired, grow) else {
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

/// The ApplySet parent an instance is: its ApplySet id and namespace.
#[derive(Debug, Clone, Copy)]
struct Parent<'a> {
    id: &'a str,
    namespace: Option<&'a str>,
}

/// The ApplySet parent annotations to merge into `instance`, or `None` when they are current.
///
/// They pass kro's own check of a parent's inventory, so kro can take the instance back: the
/// tooling is `kro/…`, both lists are always written (an empty `additional-namespaces` too, and
/// never the parent's own namespace), and the inventory hash matches them.
fn parent_annotations(
    graph: &Graph,
    parent: Parent<'_>,
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
        .filter(|n| Some(*n) != parent.namespace)
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
    let hash = metadata::inventory_hash(
        parent.id,
        kinds.iter().map(String::as_str),
        namespaces.iter().map(String::as_str),
    );
    let join = |set: BTreeSet<String>| set.into_iter().collect::<Vec<_>>().join(",");
    let want = [
        (
            metadata::APPLYSET_TOOLING,
            metadata::APPLYSET_TOOLING_VALUE.to_string(),
        ),
        (metadata::APPLYSET_CONTAINS, join(kinds)),
        (metadata::APPLYSET_NAMESPACES, join(namespaces)),
        (metadata::APPLYSET_INVENTORY_HASH, hash),
    ];
    if want
        .iter()
        .all(|(k, v)| instance.annotation(k) == Some(v.as_str()))
    {
        return None;
    }
    Some(
        want.into_iter()
            .map(|(k, v)| (k.to_string(), Value::String(v)))
            .collect(),
    )
}

/// Whether the watches of an instance's children had listed them before it asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Listed {
    /// Every watch had taken in its list: children read before the call are complete.
    Before,
    /// A watch was started or still listing, and has listed now (or its wait timed out):
    /// children read before the call may lack some that exist.
    Now,
}

/// Starts the watch of each kind `desired` names (labelled as kro's children) and waits until
/// each has listed, at most 10 s per watch.
///
/// # Errors
/// A kind discovery does not serve, or a watch that cannot be started.
pub(super) async fn watch_children(ctx: &Context, desired: &[DesiredChild]) -> Result<Listed, Error> {
    let kinds: BTreeSet<(String, String)> = desired
        .iter()
        .map(|d| (d.api_version().to_string(), d.kind().to_string()))
        .collect();
    let mut listed = Listed::Before;
    for (api_version, kind) in kinds {
        let informer = ctx.informers.ensure(&child_watch(&api_version, &kind)).await?;
        if !informer.synced() {
            listed = Listed::Now;
            informer.wait_synced(Duration::from_secs(10)).await;
        }
    }
    Ok(listed)
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

    const SHOP: Parent<'static> = Parent {
        id: "applyset-abc-v1",
        namespace: Some("shop"),
    };

    /// kro's check of a parent before it trusts the inventory (its `ValidateParentInventory`):
    /// a `kro/` tooling, both lists present, and the hash (when written) matching them.
    fn kro_accepts(annotations: &Value) -> Result<(), String> {
        let get = |k: &str| {
            annotations[k]
                .as_str()
                .ok_or(format!("missing required {k} annotation"))
        };
        if !get(metadata::APPLYSET_TOOLING)?.starts_with("kro/") {
            return Err("tooling is not owned by kro".into());
        }
        let kinds = get(metadata::APPLYSET_CONTAINS)?;
        let namespaces = get(metadata::APPLYSET_NAMESPACES)?;
        let hash = metadata::inventory_hash(
            SHOP.id,
            kinds.split(',').filter(|x| !x.is_empty()),
            namespaces.split(',').filter(|x| !x.is_empty()),
        );
        match annotations[metadata::APPLYSET_INVENTORY_HASH].as_str() {
            Some(h) if h != hash => Err(format!("inventory hash {h}, want {hash}")),
            _ => Ok(()),
        }
    }

    #[test]
    fn the_parent_lists_every_kind_the_templates_name_before_any_child_exists() {
        let a = parent_annotations(&graph(), SHOP, &json!({}), &[], true).unwrap();
        assert_eq!(a[metadata::APPLYSET_CONTAINS], "ConfigMap,Deployment.apps");
        assert_eq!(
            a[metadata::APPLYSET_NAMESPACES],
            "",
            "written even when empty, as kro does"
        );
        kro_accepts(&a).unwrap();
    }

    #[test]
    fn the_parent_annotations_pass_kros_inventory_check_with_the_hash_kro_computes() {
        let other = [
            child("v1", "ConfigMap", "other"),
            child("v1", "ConfigMap", "shop"),
        ];
        let a = parent_annotations(&graph(), SHOP, &json!({}), &other, true).unwrap();
        assert_eq!(
            a[metadata::APPLYSET_TOOLING],
            concat!("kro/kroxide-v", env!("CARGO_PKG_VERSION"))
        );
        assert_eq!(
            a[metadata::APPLYSET_NAMESPACES],
            "other",
            "never the parent's own namespace"
        );
        // sha256 of "applyset-abc-v1\0ConfigMap,Deployment.apps\0other", base64url, computed
        // outside Rust (python3 hashlib).
        assert_eq!(
            a[metadata::APPLYSET_INVENTORY_HASH],
            "sha256:4bXOhjw32UBtu9sR2ZacwbiD2ai7YBVN4gleFzfB2E4"
        );
        kro_accepts(&a).unwrap();
        let empty = parent_annotations(&graph(), SHOP, &json!({}), &[], true).unwrap();
        assert_eq!(
            empty[metadata::APPLYSET_INVENTORY_HASH],
            "sha256:mqeda7DYTseeGJjy87RkYrKXS9CRmxp9zjFRqIKNhYs"
        );
    }

    #[test]
    fn a_parent_written_by_an_older_kroxide_is_rewritten_for_kro() {
        let old = json!({"metadata": {"annotations": {
            (metadata::APPLYSET_TOOLING): "kroxide/v0.1.0",
            (metadata::APPLYSET_CONTAINS): "ConfigMap,Deployment.apps"}}});
        let a = parent_annotations(&graph(), SHOP, &old, &[], true).expect("a write");
        kro_accepts(&a).unwrap();
    }

    #[test]
    fn current_parent_annotations_need_no_write() {
        let first = parent_annotations(&graph(), SHOP, &json!({}), &[], true).unwrap();
        let instance = json!({"metadata": {"annotations": first}});
        assert_eq!(parent_annotations(&graph(), SHOP, &instance, &[], true), None);
    }

    #[test]
    fn namespaces_grow_while_applying_and_shrink_after_a_prune() {
        let other = [child("v1", "ConfigMap", "other")];
        let grown = parent_annotations(&graph(), SHOP, &json!({}), &other, true).unwrap();
        assert_eq!(grown[metadata::APPLYSET_NAMESPACES], "other");
        let instance = json!({"metadata": {"annotations": grown}});
        assert_eq!(
            parent_annotations(&graph(), SHOP, &instance, &[], true),
            None,
            "while applying, a namespace no child has yet stays listed"
        );
        let shrunk = parent_annotations(&graph(), SHOP, &instance, &[], false).unwrap();
        assert_eq!(shrunk[metadata::APPLYSET_NAMESPACES], "");
        kro_accepts(&shrunk).unwrap();
    }
}

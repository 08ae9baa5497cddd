//! The prune stage: members of an instance's ApplySet that are no longer desired are deleted,
//! dependents first (highest `internal.kro.run/apply-order` first, unknown order last), one
//! wave at a time: a wave must be gone before the next starts. Children of nodes still pending
//! are never pruned. The same waves delete every child when the instance itself is deleted.

use std::{collections::BTreeMap, sync::Arc};

use kube::api::DeleteParams;
use serde_json::Value;

use super::{children::Member, context::Context, error::Error, wire::to_value};
use crate::{
    child::DesiredChild,
    metadata,
    object::{Object, ObjectId},
};

/// Members of the ApplySet that the desired set no longer holds, except children of pending
/// nodes (whose template could not be rendered this time).
pub(crate) fn stale(
    members: &[Member],
    desired: &[DesiredChild],
    pending: &[(String, String)],
) -> Vec<ObjectId> {
    let wanted: Vec<ObjectId> = desired.iter().map(DesiredChild::id).collect();
    members
        .iter()
        .filter(|m| !wanted.contains(&m.id))
        .filter(|m| {
            !m.node
                .as_ref()
                .is_some_and(|id| pending.iter().any(|(p, _)| p == id))
        })
        .map(|m| m.id.clone())
        .collect()
}

/// Groups objects into deletion waves, first wave first: highest apply order first, objects
/// without a valid order last.
pub(crate) fn waves(objects: Vec<Arc<Value>>) -> Vec<Vec<Arc<Value>>> {
    let mut by_order: BTreeMap<std::cmp::Reverse<i64>, Vec<Arc<Value>>> = BTreeMap::new();
    for o in objects {
        let order = o
            .annotation(metadata::APPLY_ORDER)
            .and_then(|s| s.parse::<i64>().ok())
            .unwrap_or(-1);
        by_order.entry(std::cmp::Reverse(order)).or_default().push(o);
    }
    by_order.into_values().collect()
}

fn shown(o: &Value) -> String {
    ObjectId::of(o).to_string()
}

/// Deletes `objects` wave by wave. Returns `true` when every object is gone, `false` when a
/// wave is still terminating (its objects have finalizers): the next watch event continues.
///
/// # Errors
/// A delete the API refuses (other than 404).
pub(crate) async fn delete_waves(ctx: &Context, objects: Vec<Arc<Value>>) -> Result<bool, Error> {
    for wave in waves(objects) {
        let mut waiting = false;
        for o in wave {
            if o.deleting() {
                waiting = true;
                continue;
            }
            let (api_version, kind) = (o.api_version(), o.kind());
            let (resource, namespaced) = ctx
                .informers
                .kinds
                .resolve(&ctx.client, api_version, kind)
                .await?;
            let (ns, name) = (o.namespace(), o.name());
            let api = ctx.api(&resource, namespaced, ns).await;
            match api.delete(name, &DeleteParams::background()).await {
                Ok(answer) => match answer.left() {
                    // The object itself: still there, held by finalizers.
                    Some(still) => {
                        let v = to_value(still, &resource);
                        waiting |= v.deleting();
                        ctx.children.upsert(&v);
                    }
                    // A Status: deleted.
                    None => {
                        ctx.children.remove(&o);
                        ctx.memory.forget_child(&o);
                    }
                },
                Err(kube::Error::Api(e)) if e.code == 404 => {
                    ctx.children.remove(&o);
                    ctx.memory.forget_child(&o);
                }
                Err(source) => {
                    return Err(Error::Api {
                        action: "delete",
                        object: shown(&o),
                        source,
                    });
                }
            }
            tracing::debug!(object = %shown(&o), "deleted");
        }
        if waiting {
            return Ok(false);
        }
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::child::{ChildKey, Readiness};
    use serde_json::json;

    fn object(name: &str, node: &str, order: Option<&str>) -> Arc<Value> {
        let mut v = json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": "n", "labels": {"kro.run/node-id": node}, "annotations": {}}});
        if let Some(o) = order {
            v["metadata"]["annotations"]["internal.kro.run/apply-order"] = json!(o);
        }
        Arc::new(v)
    }

    fn member(name: &str, node: &str) -> Member {
        Member {
            id: ObjectId::new("v1", "ConfigMap", Some("n"), name),
            node: Some(node.to_string()),
        }
    }

    fn desired(name: &str) -> DesiredChild {
        DesiredChild {
            key: ChildKey::new("x"),
            object:
                json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": "n"}})
                    .as_object()
                    .unwrap()
                    .clone(),
            ready: Readiness::Unknown,
        }
    }

    #[test]
    fn only_undesired_members_of_settled_nodes_are_stale() {
        let members = [member("keep", "a"), member("gone", "b"), member("wait", "c")];
        let pending = [("c".to_string(), "waiting".to_string())];
        let s = stale(&members, &[desired("keep")], &pending);
        assert_eq!(s, [member("gone", "b").id]);
    }

    #[test]
    fn waves_delete_dependents_first_and_unknown_order_last() {
        let w = waves(vec![
            object("a", "a", Some("0")),
            object("x", "x", None),
            object("c", "c", Some("2")),
            object("b", "b", Some("2")),
        ]);
        let names: Vec<Vec<&str>> = w
            .iter()
            .map(|wave| {
                wave.iter()
                    .map(|o| o["metadata"]["name"].as_str().unwrap())
                    .collect()
            })
            .collect();
        assert_eq!(names, [vec!["c", "b"], vec!["a"], vec!["x"]]);
    }
}

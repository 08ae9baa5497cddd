//! Deletion: every child removed in reverse topological waves (watching every kind the ApplySet
//! lists, so none is missed after a restart; then asking the server for members the cache has
//! not seen), then the finalizer.

use crate::object::Pointer as _;
use std::{collections::BTreeSet, sync::Arc, time::Duration};

use kube::api::ListParams;
use serde_json::{Value, json};

use super::{
    manage::patch_instance,
    observe::{children, forget},
    report::{now, report_transition, write_status},
};
use crate::controller::{
    action::Action, children::trim, context::Context, error::Error, informers::child_watch, key::InstanceKey,
    prune, revisions::Revision, wire::to_value,
};
use crate::{
    metadata::{self, InstanceIdentity},
    object::{Object, ObjectId},
    status::{self, Mark},
};

/// Every kind the instance's children may have (the graph's template kinds and what the ApplySet
/// parent lists, which a previous revision may have used), watched and synced.
async fn watch_inventory(ctx: &Context, rev: &Revision, instance: &Value) -> Vec<(String, String)> {
    let mut kinds: BTreeSet<(String, String)> = rev
        .graph
        .nodes
        .iter()
        .filter(|n| !n.is_external())
        .filter_map(|n| n.static_kind())
        .map(|(av, kind)| (av.to_string(), kind.to_string()))
        .collect();
    for gk in instance
        .annotation(metadata::APPLYSET_CONTAINS)
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
    for (av, kind) in &kinds {
        if let Ok(i) = ctx.informers.ensure(&child_watch(av, kind)).await {
            i.wait_synced(Duration::from_secs(10)).await;
        }
    }
    kinds.into_iter().collect()
}

/// Members of the ApplySet the server has and the cache does not know: a child whose create
/// response was lost while its watch was down is in the cluster and nowhere else. Read with a
/// live list per kind, never from the cache, before the finalizer lets the instance go.
async fn unseen_members(
    ctx: &Context,
    identity: &InstanceIdentity,
    kinds: &[(String, String)],
) -> Result<Vec<Value>, Error> {
    let selector = format!("{}={}", metadata::APPLYSET_PART_OF, identity.applyset_id());
    let mut out = Vec::new();
    for (api_version, kind) in kinds {
        let (resource, namespaced) = ctx
            .informers
            .kinds
            .resolve(&ctx.client, api_version, kind)
            .await?;
        let api = ctx.api(&resource, namespaced, None).await;
        let listed = api
            .list(&ListParams::default().labels(&selector))
            .await
            .map_err(|source| Error::Api {
                action: "list",
                object: format!("{kind} of ApplySet {}", identity.applyset_id()),
                source,
            })?;
        for item in listed.items {
            let v = to_value(item, &resource);
            if ctx.children.get(&ObjectId::of(&v)).is_none() {
                out.push(v);
            }
        }
    }
    Ok(out)
}

pub(super) async fn finalize(
    ctx: &Arc<Context>,
    rev: &Arc<Revision>,
    key: &InstanceKey,
    instance: &Value,
    identity: &InstanceIdentity,
) -> Result<Action, Error> {
    let now = now();
    let observed = children(ctx, identity);
    let status = status::derive(&status::Input {
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
        authored: &rev.graph.conditions,
    });
    report_transition(ctx, rev, key, instance, &status).await;
    if !instance.has_finalizer(metadata::FINALIZER) {
        return Ok(Action::done());
    }
    let written = write_status(ctx, rev, key, instance, status).await?;
    let instance: &Value = written.as_deref().unwrap_or(instance);
    let kinds = watch_inventory(ctx, rev, instance).await;
    let members = ctx.children.of(identity.applyset_id());
    if !prune::delete_waves(ctx, members).await? {
        return Ok(Action::after(Duration::from_secs(5)));
    }
    let unseen = unseen_members(ctx, identity, &kinds).await?;
    if !unseen.is_empty() {
        tracing::info!(
            children = unseen.len(),
            "children the cache had not seen found; deleting them first"
        );
        for child in unseen {
            ctx.children.upsert(&trim(child));
        }
        return Ok(Action::after(Duration::from_millis(200)));
    }
    let rest: Vec<Value> = instance
        .at("/metadata/finalizers")
        .and_then(Value::as_array)
        .map(|f| f.iter().filter(|x| *x != metadata::FINALIZER).cloned().collect())
        .unwrap_or_default();
    let patch = json!({
        "finalizers": if rest.is_empty() { Value::Null } else { Value::Array(rest) },
        "resourceVersion": instance.at("/metadata/resourceVersion").cloned().unwrap_or(Value::Null)});
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
    if let Some(uid) = instance.uid() {
        ctx.memory.mark_finalized(key, uid);
    }
    Ok(Action::done())
}

/// Children of an instance the cache no longer has: once the server confirms the instance is
/// gone, they are deleted (dependents first), as its finalizer would have; while the server
/// still has it, the cache is behind and the instance's own reconcile will come.
pub(super) async fn collect_orphans(
    ctx: &Arc<Context>,
    rev: &Arc<Revision>,
    key: &InstanceKey,
    members: Vec<Arc<Value>>,
) -> Result<Action, Error> {
    let api = ctx
        .api(&rev.resource, rev.namespaced, key.namespace.as_deref())
        .await;
    let live = api.get_opt(&key.name).await.map_err(|source| Error::Api {
        action: "get",
        object: format!("{} {}", key.kind, key.name),
        source,
    })?;
    if live.is_some() {
        return Ok(Action::after(crate::controller::action::NOT_SYNCED_RETRY));
    }
    tracing::info!(
        children = members.len(),
        "children of a deleted instance found (made after it was finalized); deleting them"
    );
    prune::delete_waves(ctx, members).await?;
    Ok(Action::after(Duration::from_secs(1)))
}

//! The router: turns watch notices into work, graphs and instances whose inputs changed.

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
};

use serde_json::Value;
use tokio::sync::mpsc;

use super::{
    children::trim,
    context::Context,
    informers::{Change, Notice, Role, WatchKey},
    key::{InstanceKey, instance_key, owner_of},
};
use crate::metadata;
use crate::object::{Object, ObjectId};

fn fingerprint(v: &Value) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    for p in [
        "/metadata/generation",
        "/metadata/labels",
        "/metadata/annotations",
        "/metadata/deletionTimestamp",
        "/metadata/finalizers",
    ] {
        v.pointer(p).map(Value::to_string).hash(&mut h);
    }
    h.finish()
}

/// Turns watch notices into work: graphs and instances whose inputs changed.
pub(crate) async fn route(ctx: Arc<Context>, mut notices: mpsc::UnboundedReceiver<Notice>) {
    // Children watches being (re)listed: what each list has shown so far.
    let mut relists: HashMap<WatchKey, HashSet<ObjectId>> = HashMap::new();
    while let Some(Notice { key, change }) = notices.recv().await {
        ctx.metrics.watch_event(key.role_name());
        let (object, deleted) = match change {
            Change::Applied(v) => (v, false),
            Change::Listed(v) => {
                if let Some(seen) = relists.get_mut(&key) {
                    seen.insert(ObjectId::of(&v));
                }
                (v, false)
            }
            Change::Deleted(v) => (v, true),
            Change::Relisting => {
                if key.role == Role::Children {
                    relists.insert(key, HashSet::new());
                }
                continue;
            }
            Change::Synced => {
                // Children that vanished while the watch was down: gone, and their instances
                // must hear of it (a relist after 410 Gone reports no deletions).
                if let Some(seen) = relists.remove(&key) {
                    for gone in ctx.children.retain_listed(&key, &seen) {
                        if let Some(owner) = owner_of(&gone) {
                            ctx.instance_queue.add(owner);
                        }
                    }
                }
                continue;
            }
        };
        // Only changes to what a reconcile reads count: status updates of graphs and instances
        // (ours included) do not.
        let changed = |role: Role| {
            let id = ObjectId::of(&object);
            let mut prints = ctx
                .interest
                .fingerprints
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            if deleted {
                prints.remove(&(role, id));
                return true;
            }
            let f = fingerprint(&object);
            prints.insert((role, id), f) != Some(f)
        };
        match key.role {
            Role::Rgds => {
                if changed(Role::Rgds) && !object.name().is_empty() {
                    ctx.rgd_queue.add(object.name().to_string());
                }
            }
            Role::Instances => {
                if changed(Role::Instances) {
                    ctx.instance_queue.add(instance_key(&key, &object));
                }
            }
            Role::Children => {
                if deleted {
                    ctx.children.remove(&object);
                } else {
                    ctx.children.upsert(trim(object.clone()));
                }
                if let Some(owner) = owner_of(&object) {
                    ctx.instance_queue.add(owner);
                }
            }
            Role::External => {
                let readers: Vec<InstanceKey> = ctx
                    .interest
                    .externals
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .get(&(key.api_version.clone(), key.kind.clone()))
                    .map(|s| s.iter().cloned().collect())
                    .unwrap_or_default();
                for r in readers {
                    ctx.instance_queue.add(r);
                }
            }
            Role::Crds => {
                // Its owner (label), and graphs refused because another graph held its name.
                if let Some(owner) = object.label(metadata::RGD_NAME) {
                    ctx.rgd_queue.add(owner.to_string());
                }
                let name = object.name();
                let waiting: Vec<String> = ctx
                    .interest
                    .crds
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .get(name)
                    .map(|s| s.iter().cloned().collect())
                    .unwrap_or_default();
                for rgd in waiting {
                    ctx.rgd_queue.add(rgd);
                }
            }
            Role::PluginSource => {
                let s = |p: &str| {
                    object
                        .pointer(p)
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_string()
                };
                let users: Vec<String> = ctx
                    .interest
                    .plugins
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .get(&(s("/metadata/namespace"), s("/metadata/name")))
                    .map(|s| s.iter().cloned().collect())
                    .unwrap_or_default();
                for u in users {
                    ctx.rgd_queue.add(u);
                }
            }
        }
    }
}

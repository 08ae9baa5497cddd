//! The router: turns watch notices into work, graphs and instances whose inputs changed.

use crate::object::Pointer as _;
use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
};

use serde_json::Value;
use tokio::sync::mpsc;

use super::{
    context::Context,
    informers::{Change, Notice, Role, WatchKey},
    key::{InstanceKey, instance_key, owner_of},
};
use crate::metadata;
use crate::object::{Object, ObjectId};

fn fingerprint(v: &Value) -> u64 {
    use std::hash::Hasher;
    let mut h = std::collections::hash_map::DefaultHasher::new();
    let meta = v.get("metadata");
    for field in [
        "generation",
        "labels",
        "annotations",
        "deletionTimestamp",
        "finalizers",
    ] {
        crate::object::hash_json(meta.and_then(|m| m.get(field)).unwrap_or(&Value::Null), &mut h);
    }
    h.finish()
}

/// Work a notice makes.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Work {
    /// Reconcile a graph.
    Graph(String),
    /// Reconcile an instance.
    Instance(InstanceKey),
}

/// Watches being (re)listed.
///
/// A cached watch replaces its store only once its list is complete: until then the store still
/// holds what it held before the gap. A reconcile started by a listed object would read that
/// older copy (a stale generation after a 410 Gone) and nothing would start another, since the
/// object is not listed twice. So the work of a list is held back until the list is synced.
#[derive(Debug, Default)]
struct Relists {
    /// Children watches (kept in our own index, updated as objects are listed): what each list
    /// has shown so far, to drop what vanished during the gap.
    children: HashMap<WatchKey, HashSet<ObjectId>>,
    /// Cached watches: the work their listed objects made, in order, without repeats.
    held: HashMap<WatchKey, Vec<Work>>,
}

impl Relists {
    /// A (re)list of `key` begins.
    fn begin(&mut self, key: WatchKey) {
        if key.role == Role::Children {
            self.children.insert(key, HashSet::new());
        } else if key.role.cached() {
            self.held.entry(key).or_default();
        }
    }

    /// Remembers that a children list showed `id`.
    fn listed(&mut self, key: &WatchKey, id: ObjectId) {
        if let Some(seen) = self.children.get_mut(key) {
            seen.insert(id);
        }
    }

    /// `work` for a notice of `key`: handed back when it may start now, held when `key`'s store
    /// is being relisted.
    fn admit(&mut self, key: &WatchKey, work: Work) -> Option<Work> {
        match self.held.get_mut(key) {
            Some(held) => {
                if !held.contains(&work) {
                    held.push(work);
                }
                None
            }
            None => Some(work),
        }
    }

    /// The list of `key` is complete: the work it held, and (for children) what it showed.
    fn synced(&mut self, key: &WatchKey) -> (Vec<Work>, Option<HashSet<ObjectId>>) {
        (
            self.held.remove(key).unwrap_or_default(),
            self.children.remove(key),
        )
    }
}

fn start(ctx: &Context, work: Work) {
    match work {
        Work::Graph(name) => ctx.rgd_queue.add(name),
        Work::Instance(key) => ctx.instance_queue.add(key),
    }
}

/// Turns watch notices into work: graphs and instances whose inputs changed.
pub(crate) async fn route(ctx: Arc<Context>, mut notices: mpsc::UnboundedReceiver<Notice>) {
    let mut relists = Relists::default();
    while let Some(Notice { key, change }) = notices.recv().await {
        ctx.metrics.watch_event(key.role_name());
        let (object, deleted) = match change {
            Change::Applied(v) => (v, false),
            Change::Listed(v) => {
                relists.listed(&key, ObjectId::of(&v));
                (v, false)
            }
            Change::Deleted(v) => (v, true),
            Change::Relisting => {
                relists.begin(key);
                continue;
            }
            Change::Synced(flag) => {
                let (held, seen) = relists.synced(&key);
                // Children that vanished while the watch was down: gone, and their instances
                // must hear of it (a relist after 410 Gone reports no deletions).
                if let Some(seen) = seen {
                    for gone in ctx.children.retain_listed(&key, &seen) {
                        if let Some(owner) = owner_of(&gone) {
                            ctx.instance_queue.add(owner);
                        }
                    }
                }
                // Every listed object is indexed now: reconciles waiting for this watch may
                // read it (before, a child of the list could look missing and be applied).
                flag.set();
                for work in held {
                    start(&ctx, work);
                }
                continue;
            }
        };
        let mut work = Vec::new();
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
                ctx.memory.caught_up(&object);
                if changed(Role::Rgds) && !object.name().is_empty() {
                    work.push(Work::Graph(object.name().to_string()));
                }
            }
            Role::Instances => {
                ctx.memory.caught_up(&object);
                if changed(Role::Instances) {
                    work.push(Work::Instance(instance_key(&key, &object)));
                }
            }
            Role::Children => {
                if let Some(owner) = owner_of(&object) {
                    work.push(Work::Instance(owner));
                }
                if deleted {
                    ctx.children.remove(&object);
                } else {
                    ctx.children.upsert(&object);
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
                work.extend(readers.into_iter().map(Work::Instance));
            }
            Role::Crds => {
                // Its owner (label), and graphs refused because another graph held its name.
                if let Some(owner) = object.label(metadata::RGD_NAME) {
                    work.push(Work::Graph(owner.to_string()));
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
                work.extend(waiting.into_iter().map(Work::Graph));
            }
            Role::PluginSource => {
                let s = |p: &str| {
                    object
                        .at(p)
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
                work.extend(users.into_iter().map(Work::Graph));
            }
        }
        for w in work {
            if let Some(w) = relists.admit(&key, w) {
                start(&ctx, w);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn instance(name: &str) -> Work {
        Work::Instance(InstanceKey {
            api_version: "kro.run/v1alpha1".into(),
            kind: "WebApp".into(),
            namespace: Some("shop".into()),
            name: name.into(),
        })
    }

    #[test]
    fn a_relisted_instance_is_reconciled_only_once_the_store_holds_the_listed_copy() {
        use kube::{
            api::{ApiResource, DynamicObject, GroupVersionKind},
            runtime::{reflector, watcher::Event},
        };
        let resource = ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("kro.run", "v1alpha1", "WebApp"),
            "webapps",
        );
        let at = |generation: i64| -> DynamicObject {
            serde_json::from_value(
                serde_json::json!({"apiVersion": "kro.run/v1alpha1", "kind": "WebApp",
                "metadata": {"namespace": "shop", "name": "a", "generation": generation}}),
            )
            .unwrap()
        };
        let mut writer = reflector::store::Writer::new(resource.clone());
        let store = writer.as_reader();
        let cached_generation = || {
            let key = reflector::ObjectRef::<DynamicObject>::new_with("a", resource.clone()).within("shop");
            store.get(&key).and_then(|o| o.metadata.generation)
        };
        writer.apply_watcher_event(&Event::Apply(at(1)));
        let instances = WatchKey::all("kro.run/v1alpha1", "WebApp", Role::Instances);
        let mut relists = Relists::default();
        // The watch was down while the instance changed; the relist after 410 Gone lists
        // generation 2, but the store keeps generation 1 until the list is complete.
        writer.apply_watcher_event(&Event::Init);
        relists.begin(instances.clone());
        writer.apply_watcher_event(&Event::InitApply(at(2)));
        assert_eq!(cached_generation(), Some(1));
        assert_eq!(
            relists.admit(&instances, instance("a")),
            None,
            "a reconcile now reads generation 1"
        );
        writer.apply_watcher_event(&Event::InitDone);
        let (held, _) = relists.synced(&instances);
        assert_eq!(held, vec![instance("a")]);
        assert_eq!(cached_generation(), Some(2));
    }

    #[test]
    fn work_from_a_relisted_cache_waits_until_the_store_holds_the_whole_list() {
        let mut relists = Relists::default();
        let instances = WatchKey::all("kro.run/v1alpha1", "WebApp", Role::Instances);
        assert_eq!(relists.admit(&instances, instance("a")), Some(instance("a")));
        relists.begin(instances.clone());
        assert_eq!(relists.admit(&instances, instance("a")), None);
        assert_eq!(relists.admit(&instances, instance("b")), None);
        assert_eq!(relists.admit(&instances, instance("a")), None);
        let (held, seen) = relists.synced(&instances);
        assert_eq!(held, vec![instance("a"), instance("b")]);
        assert!(seen.is_none());
        assert_eq!(relists.admit(&instances, instance("a")), Some(instance("a")));
    }

    #[test]
    fn children_and_crds_start_their_work_while_being_relisted() {
        let mut relists = Relists::default();
        let children = WatchKey::all("v1", "ConfigMap", Role::Children);
        let crds = WatchKey::all("apiextensions.k8s.io/v1", "CustomResourceDefinition", Role::Crds);
        relists.begin(children.clone());
        relists.begin(crds.clone());
        assert_eq!(relists.admit(&children, instance("a")), Some(instance("a")));
        assert_eq!(
            relists.admit(&crds, Work::Graph("g".into())),
            Some(Work::Graph("g".into()))
        );
        let id = ObjectId::of(&serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"namespace": "shop", "name": "a"}}));
        relists.listed(&children, id.clone());
        let (held, seen) = relists.synced(&children);
        assert!(held.is_empty());
        assert_eq!(seen, Some(HashSet::from([id])));
    }
}

//! The observe stage: the instance from the cache (or the copy our last write returned), its
//! live children keyed by node, and the cluster as the caches see it.

use kroxide_schema::selector::Selector;
use serde_json::Value;

use crate::controller::{
    action::{Action, NOT_SYNCED_RETRY},
    context::Context,
    informers::{Lookup, Role, WatchKey},
    key::InstanceKey,
    revisions::Revision,
};
use crate::{
    child::{ChildKey, DesiredChild, ObservedChild},
    cluster::{Cluster, Offline},
    metadata::{self, InstanceIdentity},
    object::{Object, ObjectId},
};

/// What the cache holds for a key.
pub(super) enum Observed {
    /// The instance, served by `Revision`.
    Live(std::sync::Arc<Revision>, Value),
    /// The instance is gone from the cache, yet children of its ApplySet are there: made by a
    /// request that landed after the instance was finalized (a controller killed with it in
    /// flight), they belong to nobody unless collected.
    Orphans(std::sync::Arc<Revision>, Vec<std::sync::Arc<Value>>),
    /// Nothing to do now; look again per the action.
    Done(Action),
}

/// The instance `key` names, as fresh as the controller knows it. An instance that is gone is
/// forgotten; one finalized already (the cache has not caught up) is left alone.
pub(super) fn instance(ctx: &Context, key: &InstanceKey) -> Observed {
    let Some(rev) = ctx.graphs.for_kind(&key.api_version, &key.kind) else {
        return Observed::Done(Action::done());
    };
    let Some(informer) = ctx.informers.get(&rev.watch) else {
        return Observed::Done(Action::done());
    };
    let cached = match informer.lookup(key.namespace.as_deref(), &key.name) {
        Lookup::Found(v) => v,
        // At start-up the key can come before the list that holds it is complete.
        Lookup::NotSynced => return Observed::Done(Action::after(NOT_SYNCED_RETRY)),
        Lookup::Absent => {
            let group = key.api_version.rsplit_once('/').map_or("", |(g, _)| g);
            let applyset = metadata::applyset_id(&key.name, key.namespace.as_deref(), &key.kind, group);
            let members = ctx.children.of(&applyset);
            if !members.is_empty() {
                return Observed::Orphans(rev, members);
            }
            forget(ctx, key);
            ctx.memory.forget_finalized(key);
            return Observed::Done(Action::done());
        }
    };
    if ctx.memory.was_finalized(key, cached.uid().unwrap_or_default()) {
        return Observed::Done(Action::done());
    }
    Observed::Live(rev, ctx.memory.freshest(cached))
}

/// Whether the instance asks not to be reconciled (`kro.run/reconcile: suspended`; `disabled`
/// is accepted too).
pub(super) fn suspended(instance: &Value) -> bool {
    instance
        .annotation(metadata::RECONCILE)
        .is_some_and(|a| a.eq_ignore_ascii_case("suspended") || a.eq_ignore_ascii_case("disabled"))
}

/// Forgets what the controller remembers of an instance that is gone.
pub(super) fn forget(ctx: &Context, key: &InstanceKey) {
    ctx.memory.forget_instance(key);
    for readers in ctx
        .interest
        .externals
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .values_mut()
    {
        readers.remove(key);
    }
}

/// The live children of an instance, keyed by node.
pub(super) fn children(ctx: &Context, identity: &InstanceIdentity) -> Vec<ObservedChild> {
    let mut out: Vec<ObservedChild> = ctx
        .children
        .of(identity.applyset_id())
        .into_iter()
        .filter_map(|o| {
            let id = o.label(metadata::NODE_ID)?.to_string();
            let index = o.label(metadata::COLLECTION_INDEX).and_then(|i| i.parse().ok());
            Some(ObservedChild {
                key: ChildKey { id, index },
                object: o,
            })
        })
        .collect();
    out.sort_by(|a, b| a.key.cmp(&b.key));
    out
}

/// Reads external references from the watch caches.
/// The cluster as the controller's caches see it: kinds resolved by discovery so far (and the
/// built-in ones), external objects from their watches.
pub(super) struct Live<'a>(pub(super) &'a Context);

impl Cluster for Live<'_> {
    fn namespaced(&self, api_version: &str, kind: &str) -> Option<bool> {
        self.0
            .informers
            .kinds
            .cached(api_version, kind)
            .or_else(|| kroxide_schema::kinds::builtin(api_version, kind).map(|k| k.namespaced))
    }

    fn get(&self, api_version: &str, kind: &str, namespace: Option<&str>, name: &str) -> Option<Value> {
        self.0
            .informers
            .get(&WatchKey::all(api_version, kind, Role::External))?
            .get(namespace, name)
    }

    fn list(&self, api_version: &str, kind: &str, namespace: Option<&str>, selector: &Value) -> Vec<Value> {
        let Some(i) = self
            .0
            .informers
            .get(&WatchKey::all(api_version, kind, Role::External))
        else {
            return Vec::new();
        };
        let sel = Selector::from_structured(selector).unwrap_or_default();
        let mut out: Vec<Value> = i
            .list()
            .into_iter()
            .filter(|o| namespace.is_none_or(|n| o.namespace() == Some(n)))
            .filter(|o| sel.matches_object(o))
            .collect();
        out.sort_by_key(ObjectId::of);
        out
    }
}

impl Live<'_> {
    /// The kinds known now, as an owned snapshot for a plugin's blocking thread.
    pub(super) fn snapshot(&self, rendered: &[DesiredChild]) -> Offline {
        let mut out = Offline::default();
        for d in rendered {
            if let Some(n) = self.namespaced(d.api_version(), d.kind()) {
                out.insert_kind(d.api_version(), d.kind(), n);
            }
        }
        for (av, kind, n) in self.0.informers.kinds.all() {
            out.insert_kind(&av, &kind, n);
        }
        out
    }
}

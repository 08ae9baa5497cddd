//! What the controller remembers between reconciles: applied intents, the copies its own writes
//! returned, last reported states and finalized instances.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use serde_json::Value;

use super::{children::part_of, key::InstanceKey};
use crate::{
    metadata,
    object::{Object, ObjectId, group_of},
};

/// What the controller remembers between reconciles.
#[derive(Debug, Default)]
pub(crate) struct Memory {
    /// Per instance (its ApplySet) and child: the hash of the intent last applied, the object's
    /// uid, and the fields our apply owned afterwards. A child whose intent and owned fields are
    /// unchanged is not applied again. An instance's entry goes with the instance, a child's
    /// with the child.
    pub(crate) applied: Mutex<HashMap<String, HashMap<ObjectId, Applied>>>,
    /// Per graph and instance: the object as our last write returned it. The watch cache may
    /// lag behind our own writes; reconciles read whichever copy is newer, so they never
    /// repeat a write because they have not seen it yet.
    pub(crate) fresh: Mutex<HashMap<ObjectId, Arc<Value>>>,
    /// Per instance: the state last reported, for transition events.
    pub(crate) states: Mutex<HashMap<InstanceKey, String>>,
    /// Instances whose finalizer we removed (their uid, and when), until the watch reports
    /// them gone: a reconcile reading a cache that lags behind must not make their children
    /// again, nor the instance.
    pub(crate) finalized: Mutex<HashMap<InstanceKey, (String, std::time::Instant)>>,
}

/// How long a finalized instance is remembered if its watch never reports it gone.
const FINALIZED_TTL: Duration = Duration::from_secs(300);

impl Memory {
    /// Drops the copy of `cached`'s object our last write returned once the cache holds that
    /// version or a newer one (called for each watch event of graphs and instances).
    pub(crate) fn caught_up(&self, cached: &Value) {
        let mut fresh = self.fresh.lock().unwrap_or_else(|e| e.into_inner());
        if fresh.is_empty() {
            return;
        }
        let id = ObjectId::of(cached);
        if fresh
            .get(&id)
            .is_some_and(|mine| mine.resource_version() <= cached.resource_version())
        {
            fresh.remove(&id);
        }
    }

    /// `cached`, or the copy our last write returned when that one is newer.
    pub(crate) fn freshest(&self, cached: Value) -> Value {
        let id = ObjectId::of(&cached);
        let mut fresh = self.fresh.lock().unwrap_or_else(|e| e.into_inner());
        match fresh.get(&id) {
            Some(mine) if mine.resource_version() > cached.resource_version() => Value::clone(mine),
            Some(_) => {
                // The cache caught up: our copy is no longer needed.
                fresh.remove(&id);
                cached
            }
            None => cached,
        }
    }

    /// Remembers what a write returned (without its managedFields, which no reconcile reads),
    /// and hands it back shared. `cached_version` reads the resourceVersion the watch cache
    /// holds for the object now: when that is already this version or newer, the watch event
    /// came before the write's answer and nothing is remembered (a copy kept then would outlive
    /// every event that could drop it: one copy of every instance, held for good). The cache is
    /// read under the memory's lock, and the watch updates its cache before the router calls
    /// [`Memory::caught_up`], so a copy remembered here is always dropped by one of the two.
    pub(crate) fn saw(
        &self,
        mut written: Value,
        cached_version: impl FnOnce(&ObjectId) -> Option<u64>,
    ) -> Arc<Value> {
        super::wire::retain_managed_fields(&mut written, |_| false);
        let id = ObjectId::of(&written);
        let written = Arc::new(written);
        let mut fresh = self.fresh.lock().unwrap_or_else(|e| e.into_inner());
        if cached_version(&id).is_some_and(|cached| Some(cached) >= written.resource_version()) {
            fresh.remove(&id);
        } else {
            fresh.insert(id, written.clone());
        }
        written
    }

    /// What the controller remembers of `applyset`'s child `id`.
    pub(crate) fn applied(&self, applyset: &str, id: &ObjectId) -> Option<Applied> {
        self.applied
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(applyset)?
            .get(id)
            .cloned()
    }

    /// Remembers an apply of `applyset`'s child `id`.
    pub(crate) fn record_applied(&self, applyset: &str, id: ObjectId, applied: Applied) {
        self.applied
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(applyset.to_string())
            .or_default()
            .insert(id, applied);
    }

    /// Forgets a deleted child (by its ApplySet label).
    pub(crate) fn forget_child(&self, child: &Value) {
        let Some(set) = part_of(child) else { return };
        let mut applied = self.applied.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(members) = applied.get_mut(&set) {
            members.remove(&ObjectId::of(child));
            if members.is_empty() {
                applied.remove(&set);
            }
        }
    }

    /// Forgets everything about an instance that is gone.
    pub(crate) fn forget_instance(&self, key: &InstanceKey) {
        let group = group_of(&key.api_version);
        let set = metadata::applyset_id(&key.name, key.namespace.as_deref(), &key.kind, group);
        self.applied
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&set);
        let id = ObjectId {
            group: group.to_string(),
            kind: key.kind.clone(),
            namespace: key.namespace.clone().unwrap_or_default(),
            name: key.name.clone(),
        };
        self.fresh.lock().unwrap_or_else(|e| e.into_inner()).remove(&id);
        self.states.lock().unwrap_or_else(|e| e.into_inner()).remove(key);
    }

    /// Remembers that the instance `key` with `uid` was finalized (our finalizer removed).
    pub(crate) fn mark_finalized(&self, key: &InstanceKey, uid: &str) {
        let now = std::time::Instant::now();
        let mut marks = self.finalized.lock().unwrap_or_else(|e| e.into_inner());
        marks.retain(|_, (_, at)| now.duration_since(*at) < FINALIZED_TTL);
        marks.insert(key.clone(), (uid.to_string(), now));
    }

    /// Whether this incarnation (`uid`) of `key` was finalized already.
    pub(crate) fn was_finalized(&self, key: &InstanceKey, uid: &str) -> bool {
        self.finalized
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(key)
            .is_some_and(|(u, at)| u == uid && at.elapsed() < FINALIZED_TTL)
    }

    /// Forgets a finalized instance once the watch reports it gone.
    pub(crate) fn forget_finalized(&self, key: &InstanceKey) {
        self.finalized
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key);
    }

    /// How many entries each part holds: (applied instances, applied children, fresh copies,
    /// instance states). For tests and `/metrics`.
    pub(crate) fn footprint(&self) -> (usize, usize, usize, usize) {
        let applied = self.applied.lock().unwrap_or_else(|e| e.into_inner());
        (
            applied.len(),
            applied.values().map(HashMap::len).sum(),
            self.fresh.lock().unwrap_or_else(|e| e.into_inner()).len(),
            self.states.lock().unwrap_or_else(|e| e.into_inner()).len(),
        )
    }
}

/// One remembered apply.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Applied {
    /// Hash of the applied intent.
    pub(crate) hash: u64,
    /// uid of the object it produced.
    pub(crate) uid: String,
    /// Hash of the `fieldsV1` of our apply entry afterwards ([`fields_hash`]).
    pub(crate) fields: u64,
}

/// The hash [`Applied::fields`] keeps of a `fieldsV1` tree (0 when there is none).
pub(crate) fn fields_hash(fields: Option<&Value>) -> u64 {
    use std::hash::Hasher;
    fields.map_or(0, |f| {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        crate::object::hash_json(f, &mut h);
        h.finish()
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn instance(rv: &str) -> Value {
        json!({"apiVersion": "kro.run/v1alpha1", "kind": "WebApp",
            "metadata": {"name": "a", "namespace": "shop", "resourceVersion": rv}})
    }

    #[test]
    fn a_write_the_watch_delivered_before_its_answer_is_not_remembered() {
        let memory = Memory::default();
        // The watch cache already holds version 7 when the answer (7) arrives.
        memory.saw(instance("7"), |_| Some(7));
        assert!(memory.fresh.lock().unwrap().is_empty());
        // The cache is behind (6): the copy is kept until the watch catches up.
        memory.saw(instance("8"), |_| Some(6));
        assert_eq!(memory.freshest(instance("6"))["metadata"]["resourceVersion"], "8");
        memory.caught_up(&instance("8"));
        assert!(memory.fresh.lock().unwrap().is_empty());
    }
}

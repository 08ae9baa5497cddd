//! Object storage: every object by resource, namespace and name; one global resourceVersion
//! counter (as etcd's revision); a bounded log of change events for watches to replay from;
//! a broadcast of new events to open watches; and the indexes the built-in controllers read
//! (objects by uid, dependents by owner, objects being deleted), so their work per change does
//! not grow with the number of objects.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap, VecDeque},
    sync::{Arc, OnceLock},
};

use bytes::Bytes;
use serde_json::Value;
use tokio::sync::broadcast;

/// What happened to an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    /// Created.
    Added,
    /// Changed.
    Modified,
    /// Removed.
    Deleted,
}

impl EventType {
    /// The watch event `type`.
    pub fn as_str(&self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

/// One change.
#[derive(Debug)]
pub struct Event {
    /// The resourceVersion of the change.
    pub rv: u64,
    /// Storage key of the resource (`group/plural`).
    pub key: Arc<str>,
    /// Namespace (`""` for cluster-scoped objects).
    pub namespace: String,
    /// What happened.
    pub kind: EventType,
    /// The object after the change (for a deletion: its last state, at the deletion's RV).
    pub object: Arc<Value>,
    /// The object before the change.
    pub previous: Option<Arc<Value>>,
    encoded: OnceLock<Bytes>,
    presented: OnceLock<(String, Bytes)>,
}

impl Event {
    /// The object as JSON text, serialised once for every watch that sends it unchanged.
    pub fn encoded(&self) -> &Bytes {
        self.encoded
            .get_or_init(|| Bytes::from(serde_json::to_vec(&*self.object).unwrap_or_default()))
    }

    /// The object as served through `api_version` (`present` gives that form: a custom
    /// resource with that version's read-time defaults), as JSON text made once for every
    /// watch of that version that sends it; other versions get theirs made each time.
    pub fn presented(&self, api_version: &str, present: impl FnOnce(&Value) -> Value) -> Bytes {
        if let Some((version, text)) = self.presented.get()
            && version == api_version
        {
            return text.clone();
        }
        let text = Bytes::from(serde_json::to_vec(&present(&self.object)).unwrap_or_default());
        let _ = self.presented.set((api_version.to_string(), text.clone()));
        text
    }
}

/// Objects of one resource: (namespace, name) → object.
pub type Objects = BTreeMap<(String, String), Arc<Value>>;

/// A resourceVersion older than the kept history.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expired {
    /// The oldest resourceVersion a watch may still start from.
    pub oldest: u64,
}

/// Where an object lives: storage key, namespace (`""` when cluster-scoped), name.
pub type Location = (Arc<str>, String, String);

/// The store.
#[derive(Debug)]
pub struct Store {
    rv: u64,
    objects: HashMap<Arc<str>, Objects>,
    uids: HashMap<String, Location>,
    /// Per owner uid: the objects whose ownerReferences name it (whether it exists or not).
    dependents: HashMap<String, BTreeSet<Location>>,
    /// Objects with a deletionTimestamp, held by finalizers.
    deleting: BTreeSet<Location>,
    /// Objects garbage collection must look at: written with new owner references, or one of
    /// whose owners went away.
    orphan_candidates: BTreeSet<Location>,
    /// Per storage key: the resourceVersion of its last change.
    changed: HashMap<Arc<str>, u64>,
    log: VecDeque<Arc<Event>>,
    history: usize,
    compacted: u64,
    tx: broadcast::Sender<Arc<Event>>,
}

/// The `metadata.uid` of an object.
pub fn uid_of(object: &Value) -> Option<&str> {
    object.pointer("/metadata/uid").and_then(Value::as_str)
}

/// The uids an object's ownerReferences name.
fn owner_uids(object: &Value) -> BTreeSet<&str> {
    object
        .pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|r| r.get("uid").and_then(Value::as_str))
        .collect()
}

impl Store {
    /// An empty store keeping `history` events for watches.
    pub fn new(history: usize) -> Self {
        let (tx, _) = broadcast::channel(16_384);
        Self {
            rv: 1,
            objects: HashMap::new(),
            uids: HashMap::new(),
            dependents: HashMap::new(),
            deleting: BTreeSet::new(),
            orphan_candidates: BTreeSet::new(),
            changed: HashMap::new(),
            log: VecDeque::new(),
            history: history.max(1),
            compacted: 0,
            tx,
        }
    }

    /// The current resourceVersion.
    pub fn rv(&self) -> u64 {
        self.rv
    }

    /// One object.
    pub fn get(&self, key: &str, namespace: &str, name: &str) -> Option<&Arc<Value>> {
        self.objects
            .get(key)?
            .get(&(namespace.to_string(), name.to_string()))
    }

    /// Objects of a resource, in one namespace or all, sorted by namespace and name.
    pub fn list<'a>(
        &'a self,
        key: &str,
        namespace: Option<&'a str>,
    ) -> impl Iterator<Item = &'a Arc<Value>> + 'a {
        let objects = self.objects.get(key);
        let all = objects
            .filter(|_| namespace.is_none())
            .into_iter()
            .flat_map(|objs| objs.values());
        // One namespace: the range of its keys, not a scan of every namespace's.
        let one = namespace.zip(objects).into_iter().flat_map(|(ns, objs)| {
            objs.range((ns.to_string(), String::new())..)
                .take_while(move |((n, _), _)| n == ns)
                .map(|(_, v)| v)
        });
        all.chain(one)
    }

    /// The objects whose ownerReferences name `uid`.
    pub fn dependents(&self, uid: &str) -> impl Iterator<Item = &Location> {
        self.dependents.get(uid).into_iter().flatten()
    }

    /// The objects being deleted and held by finalizers, in key order.
    pub fn deleting(&self) -> Vec<Location> {
        self.deleting.iter().cloned().collect()
    }

    /// The objects whose owners changed or went away since the last call (each once).
    pub fn take_orphan_candidates(&mut self) -> Vec<Location> {
        std::mem::take(&mut self.orphan_candidates).into_iter().collect()
    }

    /// The resourceVersion of the last change to an object of `key` (0: none yet).
    pub fn changed_at(&self, key: &str) -> u64 {
        self.changed.get(key).copied().unwrap_or(0)
    }

    /// Keeps the indexes of the object at `at` in step with a change from `previous` to `next`.
    fn index(&mut self, at: &Location, previous: Option<&Value>, next: Option<&Value>) {
        let before = previous.map(owner_uids).unwrap_or_default();
        let after = next.map(owner_uids).unwrap_or_default();
        for uid in before.difference(&after) {
            if let Some(deps) = self.dependents.get_mut(*uid) {
                deps.remove(at);
                if deps.is_empty() {
                    self.dependents.remove(*uid);
                }
            }
        }
        for uid in after.difference(&before) {
            self.dependents
                .entry((*uid).to_string())
                .or_default()
                .insert(at.clone());
        }
        if next.is_some() && after.difference(&before).next().is_some() {
            self.orphan_candidates.insert(at.clone());
        }
        if next.is_none() {
            self.orphan_candidates.remove(at);
        }
        if next.is_some_and(|o| o.pointer("/metadata/deletionTimestamp").is_some()) {
            self.deleting.insert(at.clone());
        } else {
            self.deleting.remove(at);
        }
        // A removed owner: its dependents must be looked at.
        if next.is_none()
            && let Some(uid) = previous.and_then(uid_of)
            && let Some(deps) = self.dependents.get(uid)
        {
            self.orphan_candidates.extend(deps.iter().cloned());
        }
    }

    /// Every storage key that holds objects.
    pub fn keys(&self) -> Vec<Arc<str>> {
        self.objects
            .iter()
            .filter(|(_, o)| !o.is_empty())
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// Where the object with this uid lives.
    pub fn locate(&self, uid: &str) -> Option<&(Arc<str>, String, String)> {
        self.uids.get(uid)
    }

    fn intern(&mut self, key: &str) -> Arc<str> {
        match self.objects.get_key_value(key) {
            Some((k, _)) => k.clone(),
            None => {
                let k: Arc<str> = Arc::from(key);
                self.objects.insert(k.clone(), BTreeMap::new());
                k
            }
        }
    }

    fn record(&mut self, event: Event) -> Arc<Event> {
        self.changed.insert(event.key.clone(), event.rv);
        let event = Arc::new(event);
        self.log.push_back(event.clone());
        while self.log.len() > self.history {
            if let Some(old) = self.log.pop_front() {
                self.compacted = old.rv;
            }
        }
        // No receivers is fine: nobody is watching.
        let _ = self.tx.send(event.clone());
        event
    }

    /// Stores `object` (creating or replacing), stamping a new resourceVersion into it.
    pub fn put(&mut self, key: &str, namespace: &str, name: &str, mut object: Value) -> Arc<Value> {
        self.rv += 1;
        let rv = self.rv;
        if let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.insert("resourceVersion".into(), Value::String(rv.to_string()));
        }
        let object = Arc::new(object);
        let k = self.intern(key);
        let previous = self
            .objects
            .get_mut(&k)
            .expect("interned")
            .insert((namespace.to_string(), name.to_string()), object.clone());
        let at: Location = (k.clone(), namespace.to_string(), name.to_string());
        if let Some(uid) = uid_of(&object) {
            self.uids.insert(uid.to_string(), at.clone());
        }
        self.index(&at, previous.as_deref(), Some(&object));
        let kind = if previous.is_some() {
            EventType::Modified
        } else {
            EventType::Added
        };
        self.record(Event {
            rv,
            key: k,
            namespace: namespace.to_string(),
            kind,
            object: object.clone(),
            previous,
            encoded: OnceLock::new(),
            presented: OnceLock::new(),
        });
        object
    }

    /// Removes an object; the DELETED event carries its last state at a new resourceVersion.
    pub fn remove(&mut self, key: &str, namespace: &str, name: &str) -> Option<Arc<Value>> {
        self.remove_as(key, namespace, name, None)
    }

    /// Removes an object whose last write is `last` (the write that removed its last
    /// finalizer): one DELETED event carrying that state, as the real server sends it.
    pub fn remove_written(
        &mut self,
        key: &str,
        namespace: &str,
        name: &str,
        last: Value,
    ) -> Option<Arc<Value>> {
        self.remove_as(key, namespace, name, Some(last))
    }

    fn remove_as(
        &mut self,
        key: &str,
        namespace: &str,
        name: &str,
        written: Option<Value>,
    ) -> Option<Arc<Value>> {
        let k = self.intern(key);
        let previous = self
            .objects
            .get_mut(&k)?
            .remove(&(namespace.to_string(), name.to_string()))?;
        if let Some(uid) = uid_of(&previous) {
            self.uids.remove(uid);
        }
        let at: Location = (k.clone(), namespace.to_string(), name.to_string());
        self.index(&at, Some(&previous), None);
        self.rv += 1;
        let rv = self.rv;
        let mut last = written.unwrap_or_else(|| (*previous).clone());
        if let Some(meta) = last.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.insert("resourceVersion".into(), Value::String(rv.to_string()));
        }
        let last = Arc::new(last);
        self.record(Event {
            rv,
            key: k,
            namespace: namespace.to_string(),
            kind: EventType::Deleted,
            object: last.clone(),
            previous: Some(previous),
            encoded: OnceLock::new(),
            presented: OnceLock::new(),
        });
        Some(last)
    }

    /// A receiver of every event recorded from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Event>> {
        self.tx.subscribe()
    }

    /// The oldest resourceVersion whose events are still kept.
    pub fn compacted(&self) -> u64 {
        self.compacted
    }

    /// Events after `rv`, oldest first.
    ///
    /// # Errors
    /// [`Expired`] when events after `rv` are no longer kept.
    pub fn since(&self, rv: u64) -> Result<Vec<Arc<Event>>, Expired> {
        if rv < self.compacted {
            return Err(Expired {
                oldest: self.compacted,
            });
        }
        let start = self.log.partition_point(|e| e.rv <= rv);
        Ok(self.log.range(start..).cloned().collect())
    }

    /// Forgets the event history, so a watch from any earlier resourceVersion gets 410 Gone.
    pub fn compact(&mut self) {
        self.log.clear();
        // A revision of its own, so that even a client at the head must relist.
        self.rv += 1;
        self.compacted = self.rv;
    }

    /// Number of objects stored.
    pub fn len(&self) -> usize {
        self.objects.values().map(BTreeMap::len).sum()
    }

    /// Whether nothing is stored.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_write_gets_a_new_resource_version_and_an_event() {
        let mut s = Store::new(10);
        let a = s.put(
            "/configmaps",
            "default",
            "a",
            json!({"metadata": {"name": "a", "uid": "u1"}}),
        );
        assert_eq!(a["metadata"]["resourceVersion"], "2");
        s.put(
            "/configmaps",
            "default",
            "a",
            json!({"metadata": {"name": "a", "uid": "u1"}, "data": {}}),
        );
        let gone = s.remove("/configmaps", "default", "a").unwrap();
        assert_eq!(gone["metadata"]["resourceVersion"], "4");
        let kinds: Vec<_> = s.since(1).unwrap().iter().map(|e| e.kind).collect();
        assert_eq!(kinds, [EventType::Added, EventType::Modified, EventType::Deleted]);
        assert_eq!(s.since(3).unwrap().len(), 1);
        assert!(s.locate("u1").is_none());
    }

    #[test]
    fn owners_index_their_dependents_and_a_removed_owner_makes_them_candidates() {
        let mut s = Store::new(10);
        let owned = |uid: &str| json!({"metadata": {"ownerReferences": [{"uid": uid}]}});
        s.put("/configmaps", "a", "owner", json!({"metadata": {"uid": "u1"}}));
        s.put("/configmaps", "a", "dep", owned("u1"));
        s.put("/configmaps", "b", "other", owned("u2"));
        let at = |ns: &str, n: &str| (Arc::from("/configmaps"), ns.to_string(), n.to_string());
        assert_eq!(s.dependents("u1").cloned().collect::<Vec<_>>(), [at("a", "dep")]);
        // New references are looked at once.
        assert_eq!(s.take_orphan_candidates(), [at("a", "dep"), at("b", "other")]);
        assert!(s.take_orphan_candidates().is_empty());
        s.put("/configmaps", "a", "dep", owned("u1"));
        assert!(s.take_orphan_candidates().is_empty(), "unchanged references");
        s.remove("/configmaps", "a", "owner");
        assert_eq!(s.take_orphan_candidates(), [at("a", "dep")]);
        s.put(
            "/configmaps",
            "a",
            "dep",
            json!({"metadata": {"deletionTimestamp": "now"}}),
        );
        assert!(s.dependents("u1").next().is_none());
        assert_eq!(s.deleting(), [at("a", "dep")]);
        s.remove("/configmaps", "a", "dep");
        assert!(s.deleting().is_empty());
    }

    #[test]
    fn a_list_of_one_namespace_holds_exactly_its_objects() {
        let mut s = Store::new(10);
        for (ns, name) in [("a", "x"), ("ab", "y"), ("b", "z"), ("", "c")] {
            s.put("/configmaps", ns, name, json!({"metadata": {"name": name}}));
        }
        let names = |ns: Option<&str>| -> Vec<String> {
            s.list("/configmaps", ns)
                .map(|o| o["metadata"]["name"].as_str().unwrap().to_string())
                .collect()
        };
        assert_eq!(names(Some("a")), ["x"]);
        assert_eq!(names(Some("b")), ["z"]);
        assert!(names(Some("c")).is_empty());
        assert_eq!(names(None), ["c", "x", "y", "z"]);
        assert_eq!(s.changed_at("/configmaps"), s.rv());
    }

    #[test]
    fn history_beyond_its_bound_or_compacted_is_expired() {
        let mut s = Store::new(2);
        for i in 0..4 {
            s.put(
                "/configmaps",
                "default",
                &format!("c{i}"),
                json!({"metadata": {}}),
            );
        }
        assert!(s.since(1).is_err());
        assert_eq!(s.since(3).unwrap().len(), 2);
        s.compact();
        assert!(s.since(3).is_err());
        assert!(
            s.since(s.rv() - 1).is_err(),
            "even the head before compaction is expired"
        );
        assert!(s.since(s.rv()).unwrap().is_empty());
    }
}

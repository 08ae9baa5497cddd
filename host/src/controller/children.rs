//! The children cache: every child kroxide owns as last seen, indexed by ApplySet, with
//! tombstones so a late write response never brings back a deleted child. Children are kept
//! as JSON text (a tenth of the memory of the parsed tree) and parsed when a reconcile reads
//! them.

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex},
    time::Duration,
};

use serde_json::Value;

use super::{informers::WatchKey, wire};
pub(crate) use crate::object::ObjectId;
use crate::{metadata, object::Object};

/// Every child kroxide owns, as last seen (by watch or by an apply's response), indexed by
/// ApplySet: the observe stage reads from here.
///
/// A write's response can arrive after the watch already reported the object deleted (an
/// empty Namespace is finalized at once, for example). So the cache remembers, for
/// [`TOMBSTONE_TTL`], the resourceVersion each child was deleted at, and refuses a copy that
/// is not newer: a deleted child is never brought back by a late response.
#[derive(Debug, Default)]
pub(crate) struct Children {
    objects: Mutex<Index>,
}

/// How long a deleted child's resourceVersion is remembered. Responses arrive within the
/// request timeout; this outlasts it.
const TOMBSTONE_TTL: Duration = Duration::from_secs(300);

/// Objects by identity, identities by ApplySet, and recently deleted identities.
#[derive(Debug, Default)]
struct Index {
    objects: HashMap<ObjectId, Stored>,
    sets: HashMap<String, HashSet<ObjectId>>,
    /// Deleted at which resourceVersion, and when we learnt it.
    tombstones: HashMap<ObjectId, (u64, std::time::Instant)>,
}

pub(crate) fn part_of(v: &Value) -> Option<String> {
    v.label(metadata::APPLYSET_PART_OF).map(String::from)
}

/// One cached child: what the index reads itself, and the object as JSON text.
#[derive(Debug)]
struct Stored {
    rv: Option<u64>,
    uid: Option<String>,
    set: Option<String>,
    /// Its `kro.run/node-id` label.
    node: Option<String>,
    text: Arc<[u8]>,
}

/// A member of an ApplySet as the index knows it, without parsing the object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Member {
    /// Its identity.
    pub(crate) id: ObjectId,
    /// Its `kro.run/node-id` label: the graph node it was made for.
    pub(crate) node: Option<String>,
}

impl Stored {
    fn of(v: &Value) -> Self {
        Self {
            rv: v.resource_version(),
            uid: v.uid().map(String::from),
            set: part_of(v),
            node: v.label(metadata::NODE_ID).map(String::from),
            // Writing a JSON tree to memory cannot fail.
            text: serde_json::to_vec(v).unwrap_or_default().into(),
        }
    }

    /// The object, parsed from the text it was stored as.
    fn value(&self) -> Arc<Value> {
        parse(&self.text)
    }
}

fn parse(text: &[u8]) -> Arc<Value> {
    // The text is what `Stored::of` wrote: it parses.
    Arc::new(serde_json::from_slice(text).unwrap_or(Value::Null))
}

impl Children {
    /// Records a live child unless a newer copy is known, or it was deleted at a
    /// resourceVersion at least as new.
    pub(crate) fn upsert(&self, v: &Value) {
        let id = ObjectId::of(v);
        let rv = v.resource_version();
        let mut guard = self.objects.lock().unwrap_or_else(|e| e.into_inner());
        let index = &mut *guard;
        if let Some(old) = index.objects.get(&id)
            && let (Some(a), Some(b)) = (old.rv, rv)
            && a > b
        {
            return;
        }
        if let Some((gone, _)) = index.tombstones.get(&id) {
            if rv.is_none_or(|b| b <= *gone) {
                return;
            }
            // Created again since.
            index.tombstones.remove(&id);
        }
        let stored = Stored::of(v);
        if let Some(old) = index.objects.get(&id)
            && let Some(set) = &old.set
            && stored.set.as_ref() != Some(set)
            && let Some(members) = index.sets.get_mut(set)
        {
            members.remove(&id);
        }
        if let Some(set) = &stored.set {
            index.sets.entry(set.clone()).or_default().insert(id.clone());
        }
        index.objects.insert(id, stored);
    }

    /// Forgets a deleted child; `v` is its last state (a watch's DELETED object carries the
    /// resourceVersion of the deletion). A deletion of an earlier incarnation (another uid, or
    /// older than the cached copy: the child was made again since, by us, while the watch was
    /// behind) leaves the cached copy alone.
    pub(crate) fn remove(&self, v: &Value) {
        let id = ObjectId::of(v);
        let now = std::time::Instant::now();
        let mut guard = self.objects.lock().unwrap_or_else(|e| e.into_inner());
        let index = &mut *guard;
        let newer = index.objects.get(&id).is_some_and(|old| {
            let other_uid = matches!((old.uid.as_deref(), v.uid()), (Some(a), Some(b)) if a != b);
            let later = matches!((old.rv, v.resource_version()), (Some(a), Some(b)) if a > b);
            other_uid || later
        });
        let removed = if newer { None } else { index.objects.remove(&id) };
        if let Some(old) = &removed
            && let Some(set) = &old.set
            && let Some(members) = index.sets.get_mut(set)
        {
            members.remove(&id);
            if members.is_empty() {
                index.sets.remove(set);
            }
        }
        let gone = [v.resource_version(), removed.as_ref().and_then(|o| o.rv)]
            .into_iter()
            .flatten()
            .max();
        index
            .tombstones
            .retain(|_, (_, at)| now.duration_since(*at) < TOMBSTONE_TTL);
        if let Some(gone) = gone
            && !newer
        {
            let entry = index.tombstones.entry(id).or_insert((gone, now));
            *entry = (entry.0.max(gone), now);
        }
    }

    /// After a (re)list of the children of `watch`'s kind: forgets every child of that kind
    /// the list did not show, and returns them. A relist has no deletions in it, so this is the
    /// only way the cache learns of children deleted while its watch was down.
    pub(crate) fn retain_listed(&self, watch: &WatchKey, listed: &HashSet<ObjectId>) -> Vec<Arc<Value>> {
        let group = watch
            .api_version
            .rsplit_once('/')
            .map(|(g, _)| g)
            .unwrap_or_default();
        let mut guard = self.objects.lock().unwrap_or_else(|e| e.into_inner());
        let index = &mut *guard;
        let vanished: Vec<ObjectId> = index
            .objects
            .keys()
            .filter(|id| id.group == group && id.kind == watch.kind && !listed.contains(*id))
            .cloned()
            .collect();
        let mut gone = Vec::new();
        for id in vanished {
            if let Some(old) = index.objects.remove(&id) {
                if let Some(set) = &old.set
                    && let Some(members) = index.sets.get_mut(set)
                {
                    members.remove(&id);
                    if members.is_empty() {
                        index.sets.remove(set);
                    }
                }
                gone.push(old.value());
            }
        }
        gone
    }

    /// Every child in the cache.
    pub(crate) fn all(&self) -> Vec<Arc<Value>> {
        let guard = self.objects.lock().unwrap_or_else(|e| e.into_inner());
        guard.objects.values().map(Stored::value).collect()
    }

    /// The members of an ApplySet.
    pub(crate) fn of(&self, applyset: &str) -> Vec<Arc<Value>> {
        // Parsed outside the lock: reconciles read their children at once.
        let texts: Vec<Arc<[u8]>> = {
            let guard = self.objects.lock().unwrap_or_else(|e| e.into_inner());
            guard
                .sets
                .get(applyset)
                .map(|ids| {
                    ids.iter()
                        .filter_map(|id| guard.objects.get(id).map(|o| o.text.clone()))
                        .collect()
                })
                .unwrap_or_default()
        };
        texts.iter().map(|t| parse(t)).collect()
    }

    /// The members of an ApplySet, by identity and node, without reading the objects.
    pub(crate) fn members(&self, applyset: &str) -> Vec<Member> {
        let guard = self.objects.lock().unwrap_or_else(|e| e.into_inner());
        guard
            .sets
            .get(applyset)
            .map(|ids| {
                ids.iter()
                    .filter_map(|id| {
                        guard.objects.get(id).map(|o| Member {
                            id: id.clone(),
                            node: o.node.clone(),
                        })
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// How many children are cached, and how many deletions are remembered.
    pub(crate) fn len(&self) -> (usize, usize) {
        let guard = self.objects.lock().unwrap_or_else(|e| e.into_inner());
        (guard.objects.len(), guard.tombstones.len())
    }

    /// A child by identity.
    pub(crate) fn get(&self, id: &ObjectId) -> Option<Arc<Value>> {
        self.objects
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .objects
            .get(id)
            .map(Stored::value)
    }
}

/// Drops what no stage reads from a cached child: other managers' field ownership.
pub(crate) fn trim(mut child: Value) -> Value {
    wire::retain_managed_fields(&mut child, wire::ours);
    child
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use serde_json::json;

    use super::*;
    use crate::controller::informers::child_watch;

    fn namespace(rv: &str, terminating: bool) -> Value {
        let mut v = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {
            "name": "tenant", "resourceVersion": rv,
            "labels": {"applyset.kubernetes.io/part-of": "applyset-x"}}});
        if terminating {
            v["metadata"]["deletionTimestamp"] = json!("2026-11-25T00:00:00Z");
        }
        v
    }

    #[test]
    fn a_late_delete_response_does_not_bring_back_a_child_the_watch_saw_deleted() {
        let children = Children::default();
        children.upsert(&namespace("10", false));
        // The watch reports the namespace gone (finalized at once) ...
        children.remove(&namespace("12", true));
        // ... before our DELETE's answer, still Terminating, is handled.
        children.upsert(&namespace("11", true));
        assert!(children.of("applyset-x").is_empty());
        assert!(children.get(&ObjectId::of(&namespace("11", true))).is_none());
    }

    #[test]
    fn a_relist_forgets_children_deleted_while_the_watch_was_down() {
        let children = Children::default();
        let cm = |name: &str| {
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": "n",
                "resourceVersion": "3", "labels": {"applyset.kubernetes.io/part-of": "applyset-x"}}})
        };
        children.upsert(&cm("kept"));
        children.upsert(&cm("deleted-in-the-gap"));
        children.upsert(&namespace("4", false));
        let listed: HashSet<ObjectId> = [ObjectId::of(&cm("kept"))].into();
        let gone = children.retain_listed(&child_watch("v1", "ConfigMap"), &listed);
        assert_eq!(gone.len(), 1);
        assert_eq!(gone[0]["metadata"]["name"], "deleted-in-the-gap");
        let names: BTreeSet<String> = children
            .of("applyset-x")
            .iter()
            .map(|c| c["metadata"]["name"].as_str().unwrap().to_string())
            .collect();
        // Other kinds are not touched by a ConfigMap relist.
        assert_eq!(names, ["kept".to_string(), "tenant".to_string()].into());
    }

    #[test]
    fn a_late_deletion_of_an_earlier_incarnation_keeps_the_child_made_again_since() {
        // Deleted behind our back while the watch was down; our apply made it again (uid b,
        // resourceVersion 12); then the watch catches up with the old deletion and the new ADDED.
        let cm = |uid: &str, rv: &str| {
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "n",
                "uid": uid, "resourceVersion": rv, "labels": {"applyset.kubernetes.io/part-of": "applyset-x"}}})
        };
        let children = Children::default();
        children.upsert(&cm("a", "10"));
        children.upsert(&cm("b", "12"));
        children.remove(&cm("a", "11"));
        assert_eq!(children.of("applyset-x").len(), 1, "the new incarnation stays");
        children.upsert(&cm("b", "12"));
        let kept = children.get(&ObjectId::of(&cm("b", "12"))).unwrap();
        assert_eq!(kept["metadata"]["uid"], "b");
        // Its own deletion still removes it.
        children.remove(&cm("b", "13"));
        assert!(children.of("applyset-x").is_empty());
    }

    #[test]
    fn a_child_created_again_after_its_deletion_is_recorded() {
        let children = Children::default();
        children.upsert(&namespace("10", false));
        children.remove(&namespace("12", true));
        children.upsert(&namespace("15", false));
        assert_eq!(children.of("applyset-x").len(), 1);
    }

    #[test]
    fn an_older_copy_never_replaces_a_newer_one() {
        let children = Children::default();
        children.upsert(&namespace("10", true));
        children.upsert(&namespace("9", false));
        let kept = children.get(&ObjectId::of(&namespace("10", true))).unwrap();
        assert_eq!(kept["metadata"]["resourceVersion"], "10");
    }

    #[test]
    fn the_children_index_keeps_the_newest_and_follows_applysets() {
        let c = Children::default();
        let obj = |rv: &str, set: &str| {
            json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "a", "namespace": "n", "resourceVersion": rv, "labels": {"applyset.kubernetes.io/part-of": set}}})
        };
        c.upsert(&obj("5", "s1"));
        c.upsert(&obj("4", "s1"));
        assert_eq!(
            c.of("s1")[0]["metadata"]["resourceVersion"],
            "5",
            "an older copy does not win"
        );
        c.upsert(&obj("6", "s2"));
        assert!(c.of("s1").is_empty());
        assert_eq!(c.of("s2").len(), 1);
        c.remove(&obj("7", "s2"));
        assert!(c.of("s2").is_empty());
    }
}

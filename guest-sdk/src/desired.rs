//! The desired set `transform` returns, and the status `derive-status` returns.

use std::time::Duration;

use serde::Serialize;
use serde_json::{Map, Value};

use crate::{
    error::{Error, Result},
    types::{Condition, Event, Key, Readiness},
};

/// One desired child: a partial object (only the fields the plugin owns) and its readiness.
#[derive(Debug, Clone, PartialEq)]
pub struct DesiredChild {
    /// The partial object.
    pub object: Value,
    /// What the plugin says of the child's readiness.
    pub ready: Readiness,
}

impl DesiredChild {
    /// Sets the child's readiness (default [`Readiness::Unknown`]: the host decides).
    pub fn ready(&mut self, ready: impl Into<Readiness>) -> &mut Self {
        self.ready = ready.into();
        self
    }
}

/// A template node the host could not render yet. Its live children are kept even though the
/// plugin cannot return them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingNode {
    /// The node id.
    pub id: String,
    /// Why it is pending.
    pub reason: String,
}

/// The full desired set of an instance's children.
///
/// `transform` receives it holding what the graph's templates rendered (possibly nothing) and
/// leaves in it exactly the children the instance should have: keep, change, drop or add. A
/// child that exists in the cluster, is not in the set and is not pending is deleted.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Desired {
    /// Sorted by key (binary-search inserts keep the guest small: no sort, no extra map type).
    children: Vec<(Key, DesiredChild)>,
    pending: Vec<PendingNode>,
    events: Vec<Event>,
    requeue_after: Option<Duration>,
}

impl Desired {
    /// A set holding `rendered` children and naming `pending` nodes.
    pub fn new(rendered: impl IntoIterator<Item = (Key, DesiredChild)>, pending: Vec<PendingNode>) -> Self {
        let mut desired = Self {
            pending,
            ..Self::default()
        };
        for (key, child) in rendered {
            let slot = desired.slot(key);
            *slot = child;
        }
        desired
    }

    fn find(&self, key: &Key) -> Option<usize> {
        self.children.binary_search_by(|(k, _)| k.cmp(key)).ok()
    }

    fn slot(&mut self, key: Key) -> &mut DesiredChild {
        let at = match self.children.binary_search_by(|(k, _)| k.cmp(&key)) {
            Ok(at) => at,
            Err(at) => {
                self.children.insert(
                    at,
                    (
                        key,
                        DesiredChild {
                            object: Value::Null,
                            ready: Readiness::Unknown,
                        },
                    ),
                );
                at
            }
        };
        &mut self.children[at].1
    }

    /// Sets the child of plain node `id`, replacing any previous object.
    pub fn put(&mut self, id: &str, object: Value) -> &mut DesiredChild {
        self.put_key(Key::new(id), object)
    }

    /// Sets item `index` of collection node `id`.
    pub fn put_item(&mut self, id: &str, index: u32, object: Value) -> &mut DesiredChild {
        self.put_key(Key::item(id, index), object)
    }

    /// Sets the child of plain node `id` from any serializable value (e.g. a `k8s-openapi`
    /// struct).
    ///
    /// # Errors
    /// [`Error::Internal`] if the value does not serialize to JSON.
    pub fn put_as<T: Serialize>(&mut self, id: &str, object: &T) -> Result<&mut DesiredChild> {
        let value = serde_json::to_value(object)
            .map_err(|e| Error::internal(format!("desired {id}: cannot serialize: {e}")))?;
        Ok(self.put(id, value))
    }

    fn put_key(&mut self, key: Key, object: Value) -> &mut DesiredChild {
        let child = self.slot(key);
        child.object = object;
        child
    }

    /// The object of plain node `id`.
    pub fn get(&self, id: &str) -> Option<&Value> {
        self.child(&Key::new(id)).map(|c| &c.object)
    }

    /// The object of plain node `id`, to change in place (e.g. a rendered template).
    pub fn get_mut(&mut self, id: &str) -> Option<&mut Value> {
        let at = self.find(&Key::new(id))?;
        Some(&mut self.children[at].1.object)
    }

    /// The child (object and readiness) under `key`.
    pub fn child(&self, key: &Key) -> Option<&DesiredChild> {
        self.find(key).map(|at| &self.children[at].1)
    }

    /// Removes the child of plain node `id`: it will be pruned.
    pub fn remove(&mut self, id: &str) -> Option<Value> {
        let at = self.find(&Key::new(id))?;
        Some(self.children.remove(at).1.object)
    }

    /// Removes every child of node `id` (plain or collection items).
    pub fn remove_all(&mut self, id: &str) {
        self.children.retain(|(k, _)| k.id != id);
    }

    /// Whether plain node `id` is in the set.
    pub fn contains(&self, id: &str) -> bool {
        self.find(&Key::new(id)).is_some()
    }

    /// Every child in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&Key, &DesiredChild)> {
        self.children.iter().map(|(k, c)| (k, c))
    }

    /// The template nodes that could not be rendered yet.
    pub fn pending(&self) -> &[PendingNode] {
        &self.pending
    }

    /// Whether template node `id` is pending.
    pub fn is_pending(&self, id: &str) -> bool {
        self.pending.iter().any(|p| p.id == id)
    }

    /// Records a Kubernetes Event on the instance.
    pub fn event(&mut self, event: Event) -> &mut Self {
        self.events.push(event);
        self
    }

    /// Asks the host to call again after `after` even if nothing changes (at most ~49 days).
    pub fn requeue_after(&mut self, after: Duration) -> &mut Self {
        self.requeue_after = Some(after);
        self
    }

    pub(crate) fn into_parts(self) -> (Vec<(Key, DesiredChild)>, Vec<Event>, Option<Duration>) {
        (self.children, self.events, self.requeue_after)
    }
}

/// The instance status `derive-status` returns.
///
/// `fields` are deep-merged by the host over the fields the graph's CEL status expressions
/// produced; `state` and `conditions` are the host's and may not be set here.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Status {
    fields: Map<String, Value>,
    conditions: Vec<Condition>,
    ready: Readiness,
    events: Vec<Event>,
}

impl Status {
    /// Sets top-level status field `name`.
    pub fn set(&mut self, name: &str, value: impl Into<Value>) -> &mut Self {
        self.fields.insert(name.to_string(), value.into());
        self
    }

    /// Sets top-level status field `name` from any serializable value.
    ///
    /// # Errors
    /// [`Error::Internal`] if the value does not serialize to JSON.
    pub fn set_as<T: Serialize>(&mut self, name: &str, value: &T) -> Result<&mut Self> {
        let value = serde_json::to_value(value)
            .map_err(|e| Error::internal(format!("status.{name}: cannot serialize: {e}")))?;
        Ok(self.set(name, value))
    }

    /// A field set so far.
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.fields.get(name)
    }

    /// Adds a condition, replacing one of the same type.
    pub fn condition(&mut self, condition: Condition) -> &mut Self {
        self.conditions.retain(|c| c.type_ != condition.type_);
        self.conditions.push(condition);
        self
    }

    /// Says whether the instance's resources are ready as a whole (feeds `ResourcesReady`).
    pub fn ready(&mut self, ready: impl Into<Readiness>) -> &mut Self {
        self.ready = ready.into();
        self
    }

    /// Records a Kubernetes Event on the instance.
    pub fn event(&mut self, event: Event) -> &mut Self {
        self.events.push(event);
        self
    }

    pub(crate) fn into_parts(self) -> (Map<String, Value>, Vec<Condition>, Readiness, Vec<Event>) {
        (self.fields, self.conditions, self.ready, self.events)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn put_replaces_and_keeps_readiness_settable() {
        let mut d = Desired::default();
        d.put("cm", json!({"a": 1}));
        d.put("cm", json!({"a": 2})).ready(true);
        assert_eq!(d.get("cm"), Some(&json!({"a": 2})));
        assert_eq!(d.child(&Key::new("cm")).map(|c| c.ready), Some(Readiness::Ready));
    }

    #[test]
    fn remove_all_drops_every_collection_item() {
        let mut d = Desired::default();
        d.put_item("svc", 0, json!({}));
        d.put_item("svc", 1, json!({}));
        d.put("other", json!({}));
        d.remove_all("svc");
        assert_eq!(
            d.iter().map(|(k, _)| k.to_string()).collect::<Vec<_>>(),
            ["other"]
        );
    }

    #[test]
    fn a_condition_replaces_one_of_the_same_type() {
        let mut s = Status::default();
        s.condition(Condition::new("Available", false))
            .condition(Condition::new("Available", true));
        let (_, conditions, _, _) = s.into_parts();
        assert_eq!(conditions.len(), 1);
    }
}

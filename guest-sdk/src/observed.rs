//! The children that exist now, as the cluster reports them.

use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::{
    error::{Error, Result, decode},
    types::Key,
};

/// One live child: the full object, status included.
#[derive(Debug, Clone, PartialEq)]
pub struct Child {
    key: Key,
    object: Value,
}

impl Child {
    /// A child with its key.
    pub fn new(key: Key, object: Value) -> Self {
        Self { key, object }
    }

    /// Which node (and item) the child belongs to.
    pub fn key(&self) -> &Key {
        &self.key
    }

    /// The live object.
    pub fn object(&self) -> &Value {
        &self.object
    }

    /// A value by JSON pointer, e.g. `/status/availableReplicas`.
    pub fn get(&self, pointer: &str) -> Option<&Value> {
        self.object.pointer(pointer)
    }

    /// `metadata.name`, or `""`.
    pub fn name(&self) -> &str {
        self.get("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default()
    }

    /// The object decoded into your type (e.g. a `k8s-openapi` struct).
    ///
    /// # Errors
    /// [`Error::InvalidInput`] naming the child and the field that does not fit.
    pub fn to<T: DeserializeOwned>(&self) -> Result<T> {
        decode(&self.object, &format!("observed {}", self.key)).map_err(Error::InvalidInput)
    }
}

/// Every child that exists now, looked up by node id.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Observed {
    children: Vec<Child>,
}

impl Observed {
    /// A set of children; they are kept sorted by key (a later duplicate key replaces an
    /// earlier one).
    pub fn new(children: Vec<Child>) -> Self {
        let mut sorted: Vec<Child> = Vec::with_capacity(children.len());
        for child in children {
            match sorted.binary_search_by(|c| c.key.cmp(&child.key)) {
                Ok(at) => sorted[at] = child,
                Err(at) => sorted.insert(at, child),
            }
        }
        Self { children: sorted }
    }

    /// The child of plain node `id`, if it exists.
    pub fn get(&self, id: &str) -> Option<&Child> {
        self.children
            .iter()
            .find(|c| c.key.id == id && c.key.index.is_none())
    }

    /// Item `index` of collection node `id`, if it exists.
    pub fn item(&self, id: &str, index: u32) -> Option<&Child> {
        self.children
            .iter()
            .find(|c| c.key.id == id && c.key.index == Some(index))
    }

    /// Every child of node `id` (the plain child, or every item of a collection), by index.
    pub fn items<'a>(&'a self, id: &'a str) -> impl Iterator<Item = &'a Child> + 'a {
        self.children.iter().filter(move |c| c.key.id == id)
    }

    /// The child of plain node `id` decoded into your type, `None` when it does not exist.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] naming the field that does not fit.
    pub fn get_as<T: DeserializeOwned>(&self, id: &str) -> Result<Option<T>> {
        self.get(id).map(Child::to).transpose()
    }

    /// A field of plain node `id` by JSON pointer, e.g. `field("deployment",
    /// "/status/availableReplicas")`.
    pub fn field(&self, id: &str, pointer: &str) -> Option<&Value> {
        self.get(id)?.get(pointer)
    }

    /// Every child, sorted by key.
    pub fn iter(&self) -> impl Iterator<Item = &Child> {
        self.children.iter()
    }

    /// How many children exist.
    pub fn len(&self) -> usize {
        self.children.len()
    }

    /// Whether no child exists.
    pub fn is_empty(&self) -> bool {
        self.children.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn lookups_tell_plain_nodes_from_collection_items() {
        let obs = Observed::new(vec![
            Child::new(Key::item("svc", 1), json!({"metadata": {"name": "b"}})),
            Child::new(
                Key::new("deployment"),
                json!({"status": {"availableReplicas": 2}}),
            ),
            Child::new(Key::item("svc", 0), json!({"metadata": {"name": "a"}})),
        ]);
        assert_eq!(
            obs.field("deployment", "/status/availableReplicas"),
            Some(&json!(2))
        );
        assert!(obs.get("svc").is_none());
        assert_eq!(obs.items("svc").map(Child::name).collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(obs.item("svc", 1).map(Child::name), Some("b"));
    }
}

//! Field sets, as `metadata.managedFields[].fieldsV1` records them: which paths of an object a
//! field manager owns. Paths use the FieldsV1 elements `f:<field>`, `k:<key json>` (an item of
//! a keyed list), `v:<value json>` (an item of a set) and `i:<index>`.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value};

use crate::shape::{ITEMS, ListType, Shape, key_default};

/// One path, as FieldsV1 elements.
pub type Path = Vec<String>;

/// Which part of an object a write touches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Everything but `status` (when the resource has a status subresource, `status_apart`).
    Main {
        /// The resource has a `/status` subresource, so `status` is not part of the main scope.
        status_apart: bool,
    },
    /// Only `status`.
    Status,
}

impl Scope {
    /// Whether a top-level key is part of this scope.
    pub fn includes(&self, key: &str) -> bool {
        match (self, key) {
            (_, "apiVersion" | "kind") => false,
            (Scope::Status, k) => k == "status",
            (Scope::Main { status_apart: true }, "status") => false,
            _ => true,
        }
    }
}

const TRACKED_METADATA: [&str; 4] = ["labels", "annotations", "finalizers", "ownerReferences"];

/// A set of owned paths.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldSet(pub BTreeSet<Path>);

/// Compact JSON with sorted keys, as FieldsV1 keys and values are written.
fn canonical(v: &Value) -> String {
    match v {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            let inner: Vec<String> = keys
                .iter()
                .map(|k| format!("{}:{}", Value::String((*k).clone()), canonical(&map[*k])))
                .collect();
            format!("{{{}}}", inner.join(","))
        }
        Value::Array(items) => format!("[{}]", items.iter().map(canonical).collect::<Vec<_>>().join(",")),
        other => other.to_string(),
    }
}

/// The `k:` element of a keyed-list item, missing key fields taking their defaults.
pub fn key_element(item: &Value, keys: &[String]) -> String {
    let mut map = Map::new();
    for k in keys {
        if let Some(v) = item.get(k).cloned().or_else(|| key_default(k)) {
            map.insert(k.clone(), v);
        }
    }
    format!("k:{}", canonical(&Value::Object(map)))
}

/// The `v:` element of a set item.
pub fn value_element(item: &Value) -> String {
    format!("v:{}", canonical(item))
}

/// Leaf values of an object: every owned path with the value there (`None` for the item node
/// of a keyed list, which has children of its own).
pub type Leaves<'v> = BTreeMap<Path, Option<&'v Value>>;

/// Every path of `object` within `scope`, with its value.
pub fn leaves<'v>(object: &'v Value, shape: &Shape<'_>, scope: Scope) -> Leaves<'v> {
    let mut out = BTreeMap::new();
    let Some(map) = object.as_object() else { return out };
    for (key, value) in map {
        if !scope.includes(key) {
            continue;
        }
        let mut path = vec![format!("f:{key}")];
        let mut names = vec![key.as_str()];
        if key == "metadata" {
            let Some(meta) = value.as_object() else { continue };
            for tracked in TRACKED_METADATA {
                if let Some(v) = meta.get(tracked) {
                    path.push(format!("f:{tracked}"));
                    names.push(tracked);
                    walk(v, shape, &mut names, &mut path, &mut out);
                    path.pop();
                    names.pop();
                }
            }
            continue;
        }
        walk(value, shape, &mut names, &mut path, &mut out);
    }
    out
}

/// Every map and list of `object` within `scope` that has members (field names along its
/// path, and the path), for the `.` member an Update entry gets for what it created.
pub fn nodes(object: &Value, shape: &Shape<'_>, scope: Scope) -> Vec<(Path, Vec<String>)> {
    let mut out = Vec::new();
    let Some(map) = object.as_object() else { return out };
    for (key, value) in map {
        if !scope.includes(key) {
            continue;
        }
        let mut path = vec![format!("f:{key}")];
        let mut names = vec![key.as_str()];
        if key == "metadata" {
            let Some(meta) = value.as_object() else { continue };
            for tracked in TRACKED_METADATA {
                if let Some(v) = meta.get(tracked) {
                    path.push(format!("f:{tracked}"));
                    names.push(tracked);
                    walk_nodes(v, shape, &mut names, &mut path, &mut out);
                    path.pop();
                    names.pop();
                }
            }
            continue;
        }
        walk_nodes(value, shape, &mut names, &mut path, &mut out);
    }
    out
}

fn walk_nodes<'v>(
    value: &'v Value,
    shape: &Shape<'_>,
    names: &mut Vec<&'v str>,
    path: &mut Path,
    out: &mut Vec<(Path, Vec<String>)>,
) {
    let record = |out: &mut Vec<(Path, Vec<String>)>, path: &Path, names: &[&str]| {
        out.push((path.clone(), names.iter().map(|n| n.to_string()).collect()));
    };
    match value {
        Value::Object(map) if !map.is_empty() && !shape.atomic_map(names) => {
            record(out, path, names);
            for (k, v) in map {
                names.push(k);
                path.push(format!("f:{k}"));
                walk_nodes(v, shape, names, path, out);
                path.pop();
                names.pop();
            }
        }
        Value::Array(items) if !items.is_empty() => match shape.list_type(names) {
            ListType::Atomic => {}
            ListType::Set => record(out, path, names),
            ListType::Map(keys) => {
                record(out, path, names);
                for item in items {
                    let Value::Object(fields) = item else { continue };
                    path.push(key_element(item, &keys));
                    names.push(ITEMS);
                    for (k, v) in fields {
                        names.push(k);
                        path.push(format!("f:{k}"));
                        walk_nodes(v, shape, names, path, out);
                        path.pop();
                        names.pop();
                    }
                    names.pop();
                    path.pop();
                }
            }
        },
        _ => {}
    }
}

fn walk<'v>(
    value: &'v Value,
    shape: &Shape<'_>,
    names: &mut Vec<&'v str>,
    path: &mut Path,
    out: &mut Leaves<'v>,
) {
    match value {
        Value::Object(map) if !map.is_empty() && !shape.atomic_map(names) => {
            for (k, v) in map {
                names.push(k);
                path.push(format!("f:{k}"));
                walk(v, shape, names, path, out);
                path.pop();
                names.pop();
            }
        }
        Value::Array(items) if !items.is_empty() => match shape.list_type(names) {
            ListType::Atomic => {
                out.insert(path.clone(), Some(value));
            }
            ListType::Set => {
                for item in items {
                    path.push(value_element(item));
                    out.insert(path.clone(), Some(item));
                    path.pop();
                }
            }
            ListType::Map(keys) => {
                for item in items {
                    path.push(key_element(item, &keys));
                    match item {
                        Value::Object(fields) if !fields.is_empty() => {
                            out.insert(path.clone(), None);
                            names.push(ITEMS);
                            for (k, v) in fields {
                                names.push(k);
                                path.push(format!("f:{k}"));
                                walk(v, shape, names, path, out);
                                path.pop();
                                names.pop();
                            }
                            names.pop();
                        }
                        other => {
                            out.insert(path.clone(), Some(other));
                        }
                    }
                    path.pop();
                }
            }
        },
        _ => {
            out.insert(path.clone(), Some(value));
        }
    }
}

impl FieldSet {
    /// The set of every path of `object` within `scope`.
    pub fn of(object: &Value, shape: &Shape<'_>, scope: Scope) -> Self {
        Self(leaves(object, shape, scope).into_keys().collect())
    }

    /// Paths whose value differs between `old` and `new` or that only `new` has
    /// (`changed`), and paths only `old` has (`removed`).
    pub fn diff(old: &Value, new: &Value, shape: &Shape<'_>, scope: Scope) -> (Self, Self) {
        let a = leaves(old, shape, scope);
        let b = leaves(new, shape, scope);
        let changed = b
            .iter()
            .filter(|(p, v)| a.get(*p) != Some(*v))
            .map(|(p, _)| p.clone())
            .collect();
        let removed = a.keys().filter(|p| !b.contains_key(*p)).cloned().collect();
        (Self(changed), Self(removed))
    }

    /// Parses a FieldsV1 object.
    pub fn from_fields_v1(v: &Value) -> Self {
        let mut set = BTreeSet::new();
        fn go(v: &Value, path: &mut Path, set: &mut BTreeSet<Path>) {
            let Some(map) = v.as_object() else { return };
            for (k, child) in map {
                if k == "." {
                    if !path.is_empty() {
                        set.insert(path.clone());
                    }
                    continue;
                }
                path.push(k.clone());
                if child.as_object().is_none_or(|m| m.is_empty()) {
                    set.insert(path.clone());
                } else {
                    go(child, path, set);
                }
                path.pop();
            }
        }
        go(v, &mut Vec::new(), &mut set);
        Self(set)
    }

    /// The FieldsV1 object: nested maps of elements; a path that is owned and also has owned
    /// children carries a `"."` entry.
    pub fn to_fields_v1(&self) -> Value {
        let mut root = Map::new();
        for path in &self.0 {
            let mut node = &mut root;
            for elem in path {
                node = node
                    .entry(elem.clone())
                    .or_insert_with(|| Value::Object(Map::new()))
                    .as_object_mut()
                    .expect("trie nodes are objects");
            }
        }
        for path in &self.0 {
            let mut node = &mut root;
            for elem in path {
                node = node[elem].as_object_mut().expect("trie nodes are objects");
            }
            if !node.is_empty() && !node.contains_key(".") {
                node.insert(".".into(), Value::Object(Map::new()));
            }
        }
        Value::Object(root)
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether `path` is owned.
    pub fn contains(&self, path: &Path) -> bool {
        self.0.contains(path)
    }

    /// Whether `path` or anything below it is owned.
    pub fn owns_within(&self, path: &Path) -> bool {
        self.0
            .range(path.clone()..)
            .next()
            .is_some_and(|p| p.starts_with(path))
    }

    /// Adds every path of `other`.
    pub fn extend(&mut self, other: &FieldSet) {
        self.0.extend(other.0.iter().cloned());
    }

    /// Removes every path of `other`; returns whether it held any of them.
    pub fn remove_all(&mut self, other: &FieldSet) -> bool {
        let mut removed = false;
        for p in &other.0 {
            removed |= self.0.remove(p);
        }
        removed
    }

    /// Paths of `self` that `other` also has.
    pub fn intersection(&self, other: &FieldSet) -> FieldSet {
        FieldSet(self.0.intersection(&other.0).cloned().collect())
    }
}

/// A path as server-side apply prints it in conflicts: `.spec.containers[name="app"].image`.
pub fn display(path: &Path) -> String {
    let mut out = String::new();
    for elem in path {
        if let Some(f) = elem.strip_prefix("f:") {
            out.push('.');
            out.push_str(f);
        } else if let Some(k) = elem.strip_prefix("k:") {
            let parts: Vec<String> = serde_json::from_str::<Map<String, Value>>(k)
                .map(|m| m.iter().map(|(k, v)| format!("{k}={v}")).collect())
                .unwrap_or_default();
            out.push_str(&format!("[{}]", parts.join(",")));
        } else if let Some(v) = elem.strip_prefix("v:") {
            out.push_str(&format!("[={v}]"));
        } else if let Some(i) = elem.strip_prefix("i:") {
            out.push_str(&format!("[{i}]"));
        }
    }
    out
}

fn find_item(items: &[Value], elem: &str, keys: &ListType) -> Option<usize> {
    if let Some(v) = elem.strip_prefix("v:") {
        let wanted: Value = serde_json::from_str(v).ok()?;
        return items.iter().position(|i| *i == wanted);
    }
    if let Some(i) = elem.strip_prefix("i:") {
        return i.parse().ok().filter(|i| *i < items.len());
    }
    let ListType::Map(keys) = keys else { return None };
    items.iter().position(|i| key_element(i, keys) == elem)
}

/// The value at `path`, if present.
pub fn value_at<'v>(object: &'v Value, path: &Path, shape: &Shape<'_>) -> Option<&'v Value> {
    let mut names: Vec<&str> = Vec::new();
    let mut cur = object;
    for elem in path {
        if let Some(f) = elem.strip_prefix("f:") {
            cur = cur.get(f)?;
            names.push(f);
        } else {
            let items = cur.as_array()?;
            let i = find_item(items, elem, &shape.list_type(&names))?;
            cur = &items[i];
            names.push(ITEMS);
        }
    }
    Some(cur)
}

/// Removes the value at `path`. Returns whether something was removed.
pub fn remove_at(object: &mut Value, path: &Path, shape: &Shape<'_>) -> bool {
    let Some((last, parents)) = path.split_last() else {
        return false;
    };
    let mut names: Vec<String> = Vec::new();
    let mut cur = object;
    for elem in parents {
        if let Some(f) = elem.strip_prefix("f:") {
            let Some(next) = cur.get_mut(f) else { return false };
            cur = next;
            names.push(f.to_string());
        } else {
            let list_type = shape.list_type(&names.iter().map(String::as_str).collect::<Vec<_>>());
            let Some(items) = cur.as_array_mut() else {
                return false;
            };
            let Some(i) = find_item(items, elem, &list_type) else {
                return false;
            };
            cur = &mut items[i];
            names.push(ITEMS.to_string());
        }
    }
    if let Some(f) = last.strip_prefix("f:") {
        cur.as_object_mut().and_then(|m| m.remove(f)).is_some()
    } else {
        let list_type = shape.list_type(&names.iter().map(String::as_str).collect::<Vec<_>>());
        let Some(items) = cur.as_array_mut() else {
            return false;
        };
        match find_item(items, last, &list_type) {
            Some(i) => {
                items.remove(i);
                true
            }
            None => false,
        }
    }
}

/// Merges an applied configuration into the live object: maps merge key by key, keyed lists
/// item by item (live order, new items appended), sets by union, everything else is replaced.
pub fn merge_applied(live: &Value, applied: &Value, shape: &Shape<'_>) -> Value {
    let mut names = Vec::new();
    merge_at(live, applied, shape, &mut names)
}

fn merge_at<'v>(live: &'v Value, applied: &'v Value, shape: &Shape<'_>, names: &mut Vec<&'v str>) -> Value {
    match (live, applied) {
        (Value::Object(l), Value::Object(a)) if !shape.atomic_map(names) => {
            let mut out = l.clone();
            for (k, av) in a {
                names.push(k);
                let merged = match l.get(k) {
                    Some(lv) => merge_at(lv, av, shape, names),
                    None => av.clone(),
                };
                names.pop();
                out.insert(k.clone(), merged);
            }
            Value::Object(out)
        }
        (Value::Array(l), Value::Array(a)) => match shape.list_type(names) {
            ListType::Atomic => applied.clone(),
            ListType::Set => {
                let mut out = l.clone();
                for item in a {
                    if !out.contains(item) {
                        out.push(item.clone());
                    }
                }
                Value::Array(out)
            }
            ListType::Map(keys) => {
                let mut out: Vec<Value> = l.clone();
                names.push(ITEMS);
                for item in a {
                    let key = key_element(item, &keys);
                    match out.iter().position(|o| key_element(o, &keys) == key) {
                        Some(i) => {
                            let merged = merge_at(&l[i], item, shape, names);
                            out[i] = merged;
                        }
                        None => out.push(item.clone()),
                    }
                }
                names.pop();
                Value::Array(out)
            }
        },
        _ => applied.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn deploy() -> Value {
        json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "d", "labels": {"app": "d"}, "uid": "u"},
            "spec": {"replicas": 2, "template": {"spec": {"containers": [
                {"name": "app", "image": "nginx", "ports": [{"containerPort": 80}], "args": ["a", "b"]}]}}}})
    }

    #[test]
    fn field_sets_key_list_items_and_keep_lists_without_keys_atomic() {
        let set = FieldSet::of(
            &deploy(),
            &Shape::Builtin("Deployment"),
            Scope::Main { status_apart: true },
        );
        let v1 = set.to_fields_v1();
        let item = &v1["f:spec"]["f:template"]["f:spec"]["f:containers"]["k:{\"name\":\"app\"}"];
        assert_eq!(item["."], json!({}));
        assert_eq!(item["f:args"], json!({}));
        assert_eq!(
            item["f:ports"]["k:{\"containerPort\":80,\"protocol\":\"TCP\"}"]["f:containerPort"],
            json!({})
        );
        assert_eq!(v1["f:metadata"], json!({"f:labels": {"f:app": {}}}));
        assert!(v1.get("f:apiVersion").is_none());
        assert_eq!(FieldSet::from_fields_v1(&v1), set);
    }

    #[test]
    fn a_diff_reports_changed_and_removed_leaves() {
        let old = deploy();
        let mut new = deploy();
        new["spec"]["replicas"] = json!(3);
        new["metadata"]["labels"] = json!({"tier": "web"});
        let (changed, removed) = FieldSet::diff(
            &old,
            &new,
            &Shape::Builtin("Deployment"),
            Scope::Main { status_apart: true },
        );
        let shown: Vec<String> = changed.0.iter().map(display).collect();
        assert_eq!(shown, [".metadata.labels.tier", ".spec.replicas"]);
        assert_eq!(
            removed.0.iter().map(display).collect::<Vec<_>>(),
            [".metadata.labels.app"]
        );
    }

    #[test]
    fn keyed_items_are_found_for_reading_and_removal() {
        let shape = Shape::Builtin("Deployment");
        let mut d = deploy();
        let path: Path = [
            "f:spec",
            "f:template",
            "f:spec",
            "f:containers",
            "k:{\"name\":\"app\"}",
            "f:image",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        assert_eq!(value_at(&d, &path, &shape), Some(&json!("nginx")));
        assert_eq!(
            display(&path),
            ".spec.template.spec.containers[name=\"app\"].image"
        );
        assert!(remove_at(&mut d, &path, &shape));
        assert!(
            d["spec"]["template"]["spec"]["containers"][0]
                .get("image")
                .is_none()
        );
    }

    #[test]
    fn applying_merges_keyed_lists_and_replaces_atomic_ones() {
        let shape = Shape::Builtin("Deployment");
        let applied = json!({"spec": {"template": {"spec": {"containers": [
            {"name": "app", "args": ["c"]}, {"name": "side", "image": "busybox"}]}}}});
        let merged = merge_applied(&deploy(), &applied, &shape);
        let containers = merged["spec"]["template"]["spec"]["containers"]
            .as_array()
            .unwrap();
        assert_eq!(containers.len(), 2);
        assert_eq!(containers[0]["image"], "nginx");
        assert_eq!(containers[0]["args"], json!(["c"]));
        assert_eq!(merged["spec"]["replicas"], 2);
    }

    #[test]
    fn owns_within_sees_descendants() {
        let set = FieldSet::of(
            &deploy(),
            &Shape::Builtin("Deployment"),
            Scope::Main { status_apart: true },
        );
        assert!(set.owns_within(&vec!["f:spec".to_string()]));
        assert!(!set.owns_within(&vec!["f:status".to_string()]));
    }
}

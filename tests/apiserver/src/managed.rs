//! Field ownership (`metadata.managedFields`) and server-side apply: merging an applied
//! configuration, removing fields a manager stopped applying, conflicts with other managers,
//! and ownership moving to whoever changes a field with an ordinary update.

use serde_json::{Value, json};

use crate::{
    fields::{self, FieldSet, Path, Scope},
    shape::Shape,
};

/// One `managedFields` entry.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Field manager name.
    pub manager: String,
    /// `Apply` or `Update`.
    pub operation: String,
    /// apiVersion the manager wrote with.
    pub api_version: String,
    /// RFC 3339 time of the last write of this manager that changed the object (`""`: none,
    /// as for a manager whose first apply changed nothing).
    pub time: String,
    /// `""` for the main resource, else e.g. `status`.
    pub subresource: String,
    /// Owned fields.
    pub set: FieldSet,
    /// The entry as [`read`] found it, while nothing of it has changed since: [`write`] puts
    /// it back as it was instead of encoding it again. Every change this module makes to an
    /// entry (`upsert`, [`Entry::remove_all`]) clears it.
    raw: Option<Value>,
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        (
            &self.manager,
            &self.operation,
            &self.api_version,
            &self.time,
            &self.subresource,
            &self.set,
        ) == (
            &other.manager,
            &other.operation,
            &other.api_version,
            &other.time,
            &other.subresource,
            &other.set,
        )
    }
}

impl Entry {
    /// Gives up every path of `paths` it owns.
    fn remove_all(&mut self, paths: &FieldSet) {
        if self.set.remove_all(paths) {
            self.raw = None;
        }
    }

    fn same_manager(&self, manager: &str, operation: &str, subresource: &str) -> bool {
        self.manager == manager && self.operation == operation && self.subresource == subresource
    }

    /// How conflicts name this manager: `"kubectl"`, `"kube-controller-manager" using apps/v1`.
    pub fn shown(&self) -> String {
        let mut s = format!("\"{}\"", self.manager);
        if !self.subresource.is_empty() {
            s.push_str(&format!(" with subresource \"{}\"", self.subresource));
        }
        if self.operation == "Update" {
            s.push_str(&format!(" using {}", self.api_version));
        }
        s
    }
}

/// Reads `metadata.managedFields`.
pub fn read(object: &Value) -> Vec<Entry> {
    let Some(entries) = object
        .pointer("/metadata/managedFields")
        .and_then(Value::as_array)
    else {
        return Vec::new();
    };
    entries
        .iter()
        .filter_map(|e| {
            Some(Entry {
                manager: e.get("manager")?.as_str()?.to_string(),
                operation: e
                    .get("operation")
                    .and_then(Value::as_str)
                    .unwrap_or("Update")
                    .to_string(),
                api_version: e
                    .get("apiVersion")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string(),
                time: e
                    .get("time")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string(),
                subresource: e
                    .get("subresource")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string(),
                set: e
                    .get("fieldsV1")
                    .map(FieldSet::from_fields_v1)
                    .unwrap_or_default(),
                raw: Some(e.clone()),
            })
        })
        .collect()
}

/// Writes `entries` (those with an empty set are dropped) to `metadata.managedFields`.
///
/// In the real server's order: Apply entries before Update entries, then by time (entries
/// without one first), then by manager.
pub fn write(object: &mut Value, entries: &[Entry]) {
    let mut sorted: Vec<&Entry> = entries.iter().filter(|e| !e.set.is_empty()).collect();
    sorted.sort_by(|a, b| {
        a.operation
            .cmp(&b.operation)
            .then_with(|| a.time.cmp(&b.time))
            .then_with(|| a.manager.cmp(&b.manager))
    });
    let list: Vec<Value> = sorted
        .into_iter()
        .map(|e| {
            if let Some(raw) = &e.raw {
                return raw.clone();
            }
            let mut v = json!({
                "manager": e.manager,
                "operation": e.operation,
                "apiVersion": e.api_version,
                "fieldsType": "FieldsV1",
                "fieldsV1": e.set.to_fields_v1(),
            });
            if !e.time.is_empty() {
                v["time"] = json!(e.time);
            }
            if !e.subresource.is_empty() {
                v["subresource"] = json!(e.subresource);
            }
            v
        })
        .collect();
    if let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        if list.is_empty() {
            meta.remove("managedFields");
        } else {
            meta.insert("managedFields".into(), Value::Array(list));
        }
    }
}

/// Who is writing, and to which part of the object.
#[derive(Debug, Clone, Copy)]
pub struct Writer<'a> {
    /// Field manager.
    pub manager: &'a str,
    /// apiVersion of the request.
    pub api_version: &'a str,
    /// `""` or `status` / `scale`.
    pub subresource: &'a str,
    /// The part of the object this write may change.
    pub scope: Scope,
    /// Merge semantics of the type.
    pub shape: Shape<'a>,
    /// Current time, RFC 3339.
    pub now: &'a str,
}

fn upsert(entries: &mut Vec<Entry>, w: &Writer<'_>, operation: &str, set: FieldSet, touched: bool) {
    match entries
        .iter_mut()
        .find(|e| e.same_manager(w.manager, operation, w.subresource))
    {
        Some(e) => {
            if touched {
                e.time = w.now.to_string();
            }
            if touched || e.set != set || e.api_version != w.api_version {
                e.raw = None;
            }
            e.set = set;
            e.api_version = w.api_version.to_string();
        }
        None if !set.is_empty() => entries.push(Entry {
            manager: w.manager.to_string(),
            operation: operation.to_string(),
            api_version: w.api_version.to_string(),
            time: if touched { w.now.to_string() } else { String::new() },
            subresource: w.subresource.to_string(),
            set,
            raw: None,
        }),
        None => {}
    }
    entries.retain(|e| !e.set.is_empty());
}

/// Records an ordinary write (create, update, patch): the writer takes every field it changed,
/// from every other manager; removed fields leave every set.
pub fn track_update(entries: &mut Vec<Entry>, old: Option<&Value>, new: &Value, w: &Writer<'_>) {
    let (mut changed, mut removed) = match old {
        Some(old) => FieldSet::diff(old, new, &w.shape, w.scope),
        None => (FieldSet::of(new, &w.shape, w.scope), FieldSet::default()),
    };
    // Maps and lists the write created are the writer's own members (`.`); those it removed
    // leave every set.
    let before: std::collections::BTreeSet<Path> = old
        .map(|o| member_nodes(o, w).into_iter().collect())
        .unwrap_or_default();
    let after: std::collections::BTreeSet<Path> = member_nodes(new, w).into_iter().collect();
    changed.extend(&FieldSet(after.difference(&before).cloned().collect()));
    removed.extend(&FieldSet(before.difference(&after).cloned().collect()));
    if changed.is_empty() && removed.is_empty() {
        return;
    }
    for e in entries.iter_mut() {
        if !e.same_manager(w.manager, "Update", w.subresource) {
            e.remove_all(&changed);
        }
        e.remove_all(&removed);
    }
    let mut own = entries
        .iter()
        .find(|e| e.same_manager(w.manager, "Update", w.subresource))
        .map(|e| e.set.clone())
        .unwrap_or_default();
    own.extend(&changed);
    own.remove_all(&removed);
    upsert(entries, w, "Update", own, !changed.is_empty());
}

/// `object` without what every write changes (resourceVersion, managedFields).
fn without_bookkeeping(object: &Value) -> Value {
    let mut o = object.clone();
    if let Some(m) = o.get_mut("metadata").and_then(Value::as_object_mut) {
        m.remove("resourceVersion");
        m.remove("managedFields");
    }
    o
}

/// The maps and lists of `object` an Update entry records as members when it creates them.
fn member_nodes(object: &Value, w: &Writer<'_>) -> Vec<Path> {
    let root = match w.shape {
        Shape::Builtin(kind) => kroxide_schema::kinds::BUILTIN_KINDS
            .iter()
            .find(|k| k.kind == kind)
            .and_then(|k| crate::decode::SNAPSHOT.root(k.group, k.version, kind)),
        Shape::Schema(_) => None,
    };
    let meta = crate::decode::SNAPSHOT.root("", "v1", "ConfigMap");
    fields::nodes(object, &w.shape, w.scope)
        .into_iter()
        .filter(|(_, names)| match (root, names.first().map(String::as_str)) {
            (Some(root), _) => crate::decode::created_as_member(root, names),
            // Custom resources: metadata is typed (ObjectMeta), the rest is unstructured.
            (None, Some("metadata")) => meta.is_none_or(|m| crate::decode::created_as_member(m, names)),
            (None, _) => true,
        })
        .map(|(p, _)| p)
        .collect()
}

/// A failed apply: the conflicting fields, with who owns them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflicts(pub Vec<(String, String)>);

/// Server-side apply of `applied` (already limited to the writer's scope) onto `live` (an
/// empty object when creating). `normalize` applies defaults so that comparisons see what
/// will be stored. Returns the new object; `entries` is updated.
///
/// # Errors
/// [`Conflicts`] when, without `force`, the apply would change a field another manager owns.
pub fn apply(
    entries: &mut Vec<Entry>,
    live: &Value,
    applied: &Value,
    force: bool,
    w: &Writer<'_>,
    normalize: impl FnOnce(&mut Value),
) -> Result<Value, Conflicts> {
    let mut merged = fields::merge_applied(live, applied, &w.shape);
    let new_set = FieldSet::of(applied, &w.shape, w.scope);
    let previous = entries
        .iter()
        .find(|e| e.same_manager(w.manager, "Apply", w.subresource))
        .map(|e| e.set.clone())
        .unwrap_or_default();
    let others: Vec<&Entry> = entries
        .iter()
        .filter(|e| !e.same_manager(w.manager, "Apply", w.subresource))
        .collect();
    // Fields this manager stopped applying go, unless someone else still owns them. Shallow
    // paths first: a list item goes whole (it is found by its key fields, so those must not be
    // removed before it); an item another manager still has a field in stays, with its key.
    let mut dropped: Vec<&Path> = previous.0.iter().filter(|p| !new_set.owns_within(p)).collect();
    dropped.sort_by_key(|p| p.len());
    let mut removed: Vec<&Path> = Vec::new();
    for p in dropped {
        if removed.iter().any(|r| p.starts_with(r)) || others.iter().any(|e| e.set.owns_within(p)) {
            continue;
        }
        let key_of_kept_item = match p.as_slice() {
            [.., item, field] => {
                item.starts_with("k:")
                    && field
                        .strip_prefix("f:")
                        .is_some_and(|f| item.contains(&format!("\"{f}\":")))
            }
            _ => false,
        };
        if key_of_kept_item {
            continue;
        }
        fields::remove_at(&mut merged, p, &w.shape);
        removed.push(p);
    }
    normalize(&mut merged);
    let (changed, _removed) = FieldSet::diff(live, &merged, &w.shape, w.scope);
    let mut conflicts = Vec::new();
    for e in &others {
        for p in e.set.intersection(&changed).0 {
            conflicts.push((e.shown(), fields::display(&p)));
        }
    }
    if !conflicts.is_empty() && !force {
        return Err(Conflicts(conflicts));
    }
    for e in entries.iter_mut() {
        if !e.same_manager(w.manager, "Apply", w.subresource) {
            e.remove_all(&changed);
        }
    }
    // Its time moves only when the apply changed the object.
    let changed_object = without_bookkeeping(&merged) != without_bookkeeping(live);
    upsert(entries, w, "Apply", new_set, changed_object);
    Ok(merged)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn writer<'a>(manager: &'a str) -> Writer<'a> {
        Writer {
            manager,
            api_version: "v1",
            subresource: "",
            scope: Scope::Main { status_apart: false },
            shape: Shape::Builtin("ConfigMap"),
            now: "2026-11-25T00:00:00Z",
        }
    }

    fn cm(data: Value) -> Value {
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": data})
    }

    /// Applies ConfigMap `data` as `manager`, with no normalisation.
    fn apply_cm(
        entries: &mut Vec<Entry>,
        live: &Value,
        data: Value,
        force: bool,
        manager: &str,
    ) -> Result<Value, Conflicts> {
        apply(entries, live, &cm(data), force, &writer(manager), |_| {})
    }

    #[test]
    fn entries_a_write_leaves_alone_are_written_back_as_read_and_changed_ones_anew() {
        let mut entries = Vec::new();
        let mut live = apply_cm(&mut entries, &cm(json!({})), json!({"a": "1"}), false, "alice").unwrap();
        live = apply_cm(&mut entries, &live, json!({"b": "2"}), false, "bob").unwrap();
        write(&mut live, &entries);
        // What was stored, with a mark on alice's entry that only a copy of the stored text keeps.
        live["metadata"]["managedFields"][0]["marked"] = json!(true);
        let mut entries = read(&live);
        let updated = apply_cm(&mut entries, &live, json!({"b": "3"}), false, "bob").unwrap();
        let mut stored = updated.clone();
        write(&mut stored, &entries);
        let fields = stored["metadata"]["managedFields"].as_array().unwrap();
        assert_eq!(fields.len(), 2);
        assert_eq!(fields[0]["manager"], "alice");
        assert_eq!(
            fields[0]["marked"], true,
            "alice's entry did not change: written back as read"
        );
        assert_eq!(fields[1]["manager"], "bob");
        assert_eq!(fields[1]["time"], "2026-11-25T00:00:00Z");
        assert!(fields[1].get("marked").is_none());
        // Taking a field from alice changes her entry: it is encoded again, without the field.
        let mut entries = read(&stored);
        apply_cm(&mut entries, &updated, json!({"a": "9", "b": "3"}), true, "bob").unwrap();
        let mut again = updated.clone();
        write(&mut again, &entries);
        let fields = again["metadata"]["managedFields"].as_array().unwrap();
        assert_eq!(fields.len(), 1, "alice owns nothing any more: {fields:?}");
        assert_eq!(fields[0]["manager"], "bob");
    }

    #[test]
    fn a_manager_that_stops_applying_a_field_removes_it() {
        let mut entries = Vec::new();
        let live = json!({});
        let first = apply_cm(&mut entries, &live, json!({"a": "1", "b": "2"}), false, "alice").unwrap();
        let second = apply_cm(&mut entries, &first, json!({"a": "1"}), false, "alice").unwrap();
        assert_eq!(second["data"], json!({"a": "1"}));
    }

    #[test]
    fn a_list_item_whose_key_changes_is_replaced_not_left_behind() {
        let mut entries = Vec::new();
        let w = Writer {
            api_version: "apps/v1",
            shape: Shape::Builtin("Deployment"),
            ..writer("alice")
        };
        let deploy = |port: u16, name: &str| {
            json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"},
                "spec": {"template": {"spec": {"containers": [{"name": "c", "image": "i",
                    "ports": [{"containerPort": port, "name": name}]}]}}}})
        };
        // The server defaults `protocol`, a key field nobody applied.
        let default_protocol = |o: &mut Value| {
            for p in o["spec"]["template"]["spec"]["containers"][0]["ports"]
                .as_array_mut()
                .into_iter()
                .flatten()
            {
                p["protocol"] = json!("TCP");
            }
        };
        let v1 = apply(
            &mut entries,
            &json!({}),
            &deploy(80, "http"),
            false,
            &w,
            default_protocol,
        )
        .unwrap();
        let v2 = apply(
            &mut entries,
            &v1,
            &deploy(443, "https"),
            false,
            &w,
            default_protocol,
        )
        .unwrap();
        assert_eq!(
            v2["spec"]["template"]["spec"]["containers"][0]["ports"],
            json!([{"containerPort": 443, "name": "https", "protocol": "TCP"}])
        );
    }

    #[test]
    fn an_update_that_creates_a_map_owns_it_as_a_member() {
        let mut entries = Vec::new();
        let created = cm(json!({"a": "1"}));
        track_update(&mut entries, None, &created, &writer("creator"));
        let mut editor = writer("editor");
        editor.now = "2026-11-25T00:00:01Z";
        track_update(
            &mut entries,
            Some(&created),
            &cm(json!({"a": "1", "b": "2"})),
            &editor,
        );
        let mut o = cm(json!({}));
        write(&mut o, &entries);
        let fields = &o["metadata"]["managedFields"];
        assert_eq!(fields[0]["manager"], "creator");
        assert_eq!(fields[0]["fieldsV1"], json!({"f:data": {".": {}, "f:a": {}}}));
        assert_eq!(fields[1]["fieldsV1"], json!({"f:data": {"f:b": {}}}));
    }

    #[test]
    fn an_apply_that_changes_nothing_records_no_time_and_is_listed_first() {
        let mut entries = Vec::new();
        let v1 = apply_cm(&mut entries, &json!({}), json!({"a": "1"}), false, "alice").unwrap();
        apply_cm(&mut entries, &v1, json!({"a": "1"}), false, "bob").unwrap();
        let mut o = cm(json!({}));
        write(&mut o, &entries);
        let fields = &o["metadata"]["managedFields"];
        assert_eq!(fields[0]["manager"], "bob");
        assert!(fields[0].get("time").is_none());
        assert_eq!(fields[1]["manager"], "alice");
    }

    #[test]
    fn a_shared_field_survives_one_owner_dropping_it() {
        let mut entries = Vec::new();
        let v1 = apply_cm(&mut entries, &json!({}), json!({"a": "1"}), false, "alice").unwrap();
        let v2 = apply_cm(&mut entries, &v1, json!({"a": "1"}), false, "bob").unwrap();
        assert_eq!(entries.len(), 2, "same value: shared ownership, no conflict");
        let v3 = apply_cm(&mut entries, &v2, json!({}), false, "alice").unwrap();
        assert_eq!(v3["data"], json!({"a": "1"}), "bob still owns it");
    }

    #[test]
    fn changing_anothers_field_conflicts_unless_forced() {
        let mut entries = Vec::new();
        let v1 = apply_cm(&mut entries, &json!({}), json!({"a": "1"}), false, "alice").unwrap();
        let err = apply_cm(&mut entries, &v1, json!({"a": "2"}), false, "bob").unwrap_err();
        assert_eq!(err.0, vec![("\"alice\"".to_string(), ".data.a".to_string())]);
        let v2 = apply_cm(&mut entries, &v1, json!({"a": "2"}), true, "bob").unwrap();
        assert_eq!(v2["data"]["a"], "2");
        assert_eq!(entries.len(), 1, "alice lost her only field: {entries:?}");
        assert_eq!(entries[0].manager, "bob");
    }

    #[test]
    fn an_update_takes_the_fields_it_changes() {
        let mut entries = Vec::new();
        let v1 = apply_cm(
            &mut entries,
            &json!({}),
            json!({"a": "1", "b": "1"}),
            false,
            "alice",
        )
        .unwrap();
        let mut v2 = v1.clone();
        v2["data"]["a"] = json!("edited");
        track_update(&mut entries, Some(&v1), &v2, &writer("kubectl-edit"));
        let edit = entries.iter().find(|e| e.manager == "kubectl-edit").unwrap();
        assert_eq!(edit.operation, "Update");
        assert!(edit.set.contains(&vec!["f:data".into(), "f:a".into()]));
        let err = apply_cm(&mut entries, &v2, json!({"a": "1", "b": "1"}), false, "alice").unwrap_err();
        assert_eq!(err.0[0].0, "\"kubectl-edit\" using v1");
    }

    #[test]
    fn re_applying_the_same_intent_changes_nothing() {
        let mut entries = Vec::new();
        let v1 = apply_cm(&mut entries, &json!({}), json!({"a": "1"}), false, "alice").unwrap();
        let before = entries.clone();
        let later = Writer {
            now: "2030-01-01T00:00:00Z",
            ..writer("alice")
        };
        let v2 = apply(&mut entries, &v1, &cm(json!({"a": "1"})), false, &later, |_| {}).unwrap();
        assert_eq!(v1, v2);
        assert_eq!(entries, before, "time is not touched when nothing changed");
    }
}

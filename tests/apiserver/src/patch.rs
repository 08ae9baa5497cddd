//! PATCH bodies other than server-side apply: JSON merge patch (RFC 7386), JSON patch
//! (RFC 6902, `test` included) and Kubernetes' strategic merge patch for built-in kinds, with
//! its directives (`$patch`, `$setElementOrder`, `$deleteFromPrimitiveList`, `$retainKeys`).

use serde_json::{Map, Value};

use crate::shape::{ITEMS, Shape, Strategy};

/// A patch that could not be applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatchError {
    /// The body is not a valid patch of its type.
    #[error("{0}")]
    Malformed(String),
    /// A JSON patch operation failed (a `test` that did not hold, a missing path).
    #[error("{0}")]
    Failed(String),
}

/// Applies an RFC 7386 merge patch.
///
/// # Errors
/// A patch that is not a JSON object.
pub fn merge(target: &mut Value, patch: &Value) -> Result<(), PatchError> {
    if !patch.is_object() {
        return Err(PatchError::Malformed(
            "a merge patch must be a JSON object".into(),
        ));
    }
    json_patch::merge(target, patch);
    Ok(())
}

/// Applies an RFC 6902 JSON patch.
///
/// # Errors
/// A malformed patch, or an operation that fails (including a `test` whose value differs).
pub fn json(target: &mut Value, patch: &Value) -> Result<(), PatchError> {
    let Some(ops) = patch.as_array() else {
        return Err(PatchError::Malformed(
            "a JSON patch must be a list of operations".into(),
        ));
    };
    let mut doc = target.clone();
    for op in ops {
        // As the API server does, a `test` for null passes when the path is absent.
        if op.get("op").and_then(Value::as_str) == Some("test")
            && op.get("value") == Some(&Value::Null)
            && let Some(path) = op.get("path").and_then(Value::as_str)
        {
            match doc.pointer(path) {
                None | Some(Value::Null) => continue,
                Some(found) => {
                    return Err(PatchError::Failed(format!(
                        "testing value {path} failed: test failed: expected null, found {found}"
                    )));
                }
            }
        }
        let one: json_patch::Patch = serde_json::from_value(Value::Array(vec![op.clone()]))
            .map_err(|e| PatchError::Malformed(e.to_string()))?;
        json_patch::patch(&mut doc, &one).map_err(|e| PatchError::Failed(e.to_string()))?;
    }
    *target = doc;
    Ok(())
}

/// Applies a strategic merge patch to a built-in kind.
///
/// # Errors
/// A patch that is not an object, or directives used wrongly.
pub fn strategic(target: &mut Value, patch: &Value, shape: &Shape<'_>) -> Result<(), PatchError> {
    if !patch.is_object() {
        return Err(PatchError::Malformed(
            "a strategic merge patch must be a JSON object".into(),
        ));
    }
    let mut names = Vec::new();
    strategic_map(target, patch, shape, &mut names)
}

fn strategic_map<'p>(
    target: &mut Value,
    patch: &'p Value,
    shape: &Shape<'_>,
    names: &mut Vec<&'p str>,
) -> Result<(), PatchError> {
    let Some(p) = patch.as_object() else {
        *target = patch.clone();
        return Ok(());
    };
    match p.get("$patch").and_then(Value::as_str) {
        Some("replace") => {
            let mut clean = p.clone();
            clean.remove("$patch");
            *target = Value::Object(clean);
            return Ok(());
        }
        Some("delete") => {
            *target = Value::Null;
            return Ok(());
        }
        Some(other) if other != "merge" => {
            return Err(PatchError::Malformed(format!("unknown patch type: {other}")));
        }
        _ => {}
    }
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let t = target.as_object_mut().expect("made an object");
    if let Some(retain) = p.get("$retainKeys").and_then(Value::as_array) {
        let keep: Vec<&str> = retain.iter().filter_map(Value::as_str).collect();
        t.retain(|k, _| keep.contains(&k.as_str()));
    }
    for (key, pv) in p {
        if key.starts_with('$') {
            if let Some(field) = key.strip_prefix("$deleteFromPrimitiveList/")
                && let (Some(list), Some(remove)) =
                    (t.get_mut(field).and_then(Value::as_array_mut), pv.as_array())
            {
                list.retain(|v| !remove.contains(v));
            }
            continue;
        }
        if pv.is_null() {
            t.remove(key);
            continue;
        }
        names.push(key);
        match (t.get_mut(key), pv) {
            (Some(tv @ Value::Object(_)), Value::Object(_)) => {
                strategic_map(tv, pv, shape, names)?;
                if tv.is_null() {
                    t.remove(key);
                }
            }
            (Some(tv @ Value::Array(_)), Value::Array(items)) => {
                strategic_list(tv, items, shape, names)?;
            }
            (None, Value::Object(_)) => {
                let mut fresh = Value::Object(Map::new());
                strategic_map(&mut fresh, pv, shape, names)?;
                if !fresh.is_null() {
                    t.insert(key.clone(), fresh);
                }
            }
            (None, Value::Array(items)) => {
                let mut fresh = Value::Array(Vec::new());
                strategic_list(&mut fresh, items, shape, names)?;
                t.insert(key.clone(), fresh);
            }
            _ => {
                t.insert(key.clone(), pv.clone());
            }
        }
        names.pop();
    }
    // `$setElementOrder/<list>` orders the merged list like the patch author's list.
    for (key, order) in p {
        let Some(field) = key.strip_prefix("$setElementOrder/") else {
            continue;
        };
        let (Some(list), Some(order)) = (t.get_mut(field).and_then(Value::as_array_mut), order.as_array())
        else {
            continue;
        };
        let mut list_names = names.clone();
        list_names.push(field);
        let merge_key = match shape.strategy(&list_names) {
            Strategy::MergeKey(k) => Some(k),
            _ => None,
        };
        let position = |item: &Value| {
            order.iter().position(|o| match &merge_key {
                Some(k) => o.get(k) == item.get(k),
                None => o == item,
            })
        };
        let mut indexed: Vec<(usize, Value)> = list.drain(..).enumerate().collect();
        indexed.sort_by_key(|(i, item)| (position(item).unwrap_or(usize::MAX), *i));
        list.extend(indexed.into_iter().map(|(_, v)| v));
    }
    Ok(())
}

fn strategic_list<'p>(
    target: &mut Value,
    patch: &'p [Value],
    shape: &Shape<'_>,
    names: &mut Vec<&'p str>,
) -> Result<(), PatchError> {
    let list = target.as_array_mut().expect("caller passes a list");
    match shape.strategy(names) {
        Strategy::Replace => {
            *list = patch
                .iter()
                .filter(|i| i.get("$patch").is_none())
                .cloned()
                .collect();
        }
        Strategy::MergePrimitives => {
            for item in patch {
                if !list.contains(item) {
                    list.push(item.clone());
                }
            }
        }
        Strategy::MergeKey(key) => {
            if patch
                .iter()
                .any(|i| i.get("$patch").and_then(Value::as_str) == Some("replace"))
            {
                *list = patch
                    .iter()
                    .filter(|i| i.get("$patch").is_none())
                    .cloned()
                    .collect();
                return Ok(());
            }
            names.push(ITEMS);
            for item in patch {
                let Some(k) = item.get(&key) else {
                    names.pop();
                    return Err(PatchError::Malformed(format!(
                        "map: {item} does not contain declared merge key: {key}"
                    )));
                };
                let at = list.iter().position(|l| l.get(&key) == Some(k));
                if item.get("$patch").and_then(Value::as_str) == Some("delete") {
                    if let Some(i) = at {
                        list.remove(i);
                    }
                    continue;
                }
                match at {
                    Some(i) => strategic_map(&mut list[i], item, shape, names)?,
                    None => {
                        let mut fresh = Value::Object(Map::new());
                        strategic_map(&mut fresh, item, shape, names)?;
                        list.push(fresh);
                    }
                }
            }
            names.pop();
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn deploy() -> Value {
        json!({"spec": {"replicas": 1, "template": {"spec": {"containers": [
            {"name": "a", "image": "x:1", "args": ["1", "2"]},
            {"name": "b", "image": "y:1"}]}}},
            "metadata": {"finalizers": ["f1"], "labels": {"k": "v", "gone": "x"}}})
    }

    #[test]
    fn containers_merge_by_name_and_args_are_replaced() {
        let mut d = deploy();
        let patch = json!({"spec": {"template": {"spec": {
            "$setElementOrder/containers": [{"name": "b"}, {"name": "a"}],
            "containers": [{"name": "a", "image": "x:2", "args": ["3"]}]}}},
            "metadata": {"labels": {"gone": null}, "finalizers": ["f2"]}});
        strategic(&mut d, &patch, &Shape::Builtin("Deployment")).unwrap();
        let c = &d["spec"]["template"]["spec"]["containers"];
        assert_eq!(c[0]["name"], "b");
        assert_eq!(c[1], json!({"name": "a", "image": "x:2", "args": ["3"]}));
        assert_eq!(d["metadata"]["labels"], json!({"k": "v"}));
        assert_eq!(d["metadata"]["finalizers"], json!(["f1", "f2"]));
    }

    #[test]
    fn directives_delete_items_and_primitives() {
        let mut d = deploy();
        let patch = json!({"spec": {"template": {"spec": {"containers": [{"name": "b", "$patch": "delete"}]}}},
            "metadata": {"$deleteFromPrimitiveList/finalizers": ["f1"]}});
        strategic(&mut d, &patch, &Shape::Builtin("Deployment")).unwrap();
        assert_eq!(
            d["spec"]["template"]["spec"]["containers"]
                .as_array()
                .unwrap()
                .len(),
            1
        );
        assert_eq!(d["metadata"]["finalizers"], json!([]));
    }

    #[test]
    fn a_failed_json_patch_test_fails_the_patch() {
        let mut d = deploy();
        let p = json!([{"op": "test", "path": "/metadata/finalizers", "value": null},
                       {"op": "add", "path": "/metadata/finalizers", "value": ["x"]}]);
        assert!(matches!(json(&mut d, &p), Err(PatchError::Failed(_))));
        assert_eq!(d["metadata"]["finalizers"], json!(["f1"]), "nothing applied");
        let mut bare = json!({"metadata": {}});
        json(&mut bare, &p).unwrap();
        assert_eq!(
            bare["metadata"]["finalizers"],
            json!(["x"]),
            "null tests an absent path"
        );
    }

    #[test]
    fn merge_patch_removes_nulls() {
        let mut d = deploy();
        merge(&mut d, &json!({"metadata": {"labels": {"k": null}}})).unwrap();
        assert_eq!(d["metadata"]["labels"], json!({"gone": "x"}));
        assert!(merge(&mut d, &json!([1])).is_err());
    }
}

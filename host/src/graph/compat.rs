//! Breaking changes between two versions of an instance schema, as kro detects them before it
//! updates a CRD: a change that could make stored instances invalid is refused unless the RGD
//! is annotated `kro.run/allow-breaking-changes: "true"`.

use serde_json::Value;

/// One breaking change, with the schema path it is at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Change {
    /// `PROPERTY_REMOVED`, `TYPE_CHANGED`, `REQUIRED_ADDED`, `ENUM_RESTRICTED`,
    /// `PATTERN_CHANGED`, `PATTERN_ADDED`, `REQUIRED_DEFAULT_REMOVED`, `MINIMUM_TIGHTENED`, ...
    pub(crate) kind: &'static str,
    /// Dotted path, e.g. `spec.replicas`.
    pub(crate) path: String,
}

impl std::fmt::Display for Change {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} at {}", self.kind, self.path)
    }
}

fn num(s: &Value, key: &str) -> Option<f64> {
    s.get(key).and_then(Value::as_f64)
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

fn required(s: &Value) -> Vec<&str> {
    s.get("required")
        .and_then(Value::as_array)
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

fn walk(old: &Value, new: &Value, path: &str, out: &mut Vec<Change>) {
    let push = |out: &mut Vec<Change>, kind: &'static str| {
        out.push(Change {
            kind,
            path: path.to_string(),
        })
    };
    if old.get("type") != new.get("type") && old.get("type").is_some() {
        push(out, "TYPE_CHANGED");
        return;
    }
    if let (Some(o), Some(n)) = (
        old.get("enum").and_then(Value::as_array),
        new.get("enum").and_then(Value::as_array),
    ) {
        if o.iter().any(|v| !n.contains(v)) {
            push(out, "ENUM_RESTRICTED");
        }
    } else if old.get("enum").is_none() && new.get("enum").is_some() {
        push(out, "ENUM_RESTRICTED");
    }
    match (old.get("pattern"), new.get("pattern")) {
        (Some(a), Some(b)) if a != b => push(out, "PATTERN_CHANGED"),
        (None, Some(_)) => push(out, "PATTERN_ADDED"),
        _ => {}
    }
    for (key, kind, tighter) in [
        ("minimum", "MINIMUM_TIGHTENED", true),
        ("maximum", "MAXIMUM_TIGHTENED", false),
        ("minLength", "MIN_LENGTH_TIGHTENED", true),
        ("maxLength", "MAX_LENGTH_TIGHTENED", false),
        ("minItems", "MIN_ITEMS_TIGHTENED", true),
        ("maxItems", "MAX_ITEMS_TIGHTENED", false),
    ] {
        match (num(old, key), num(new, key)) {
            (Some(a), Some(b)) if (tighter && b > a) || (!tighter && b < a) => push(out, kind),
            (None, Some(_)) => push(out, kind),
            _ => {}
        }
    }
    let old_required = required(old);
    let new_props = new.get("properties").and_then(Value::as_object);
    for r in required(new) {
        if !old_required.contains(&r) {
            out.push(Change {
                kind: "REQUIRED_ADDED",
                path: join(path, r),
            });
        }
    }
    if let (Some(op), Some(np)) = (old.get("properties").and_then(Value::as_object), new_props) {
        for (k, ov) in op {
            match np.get(k) {
                None => out.push(Change {
                    kind: "PROPERTY_REMOVED",
                    path: join(path, k),
                }),
                Some(nv) => {
                    if old_required.contains(&k.as_str())
                        && ov.get("default").is_some()
                        && nv.get("default").is_none()
                    {
                        out.push(Change {
                            kind: "REQUIRED_DEFAULT_REMOVED",
                            path: join(path, k),
                        });
                    }
                    walk(ov, nv, &join(path, k), out);
                }
            }
        }
    }
    if let (Some(oi), Some(ni)) = (old.get("items"), new.get("items")) {
        walk(oi, ni, &format!("{path}[]"), out);
    }
    if let (Some(oa @ Value::Object(_)), Some(na @ Value::Object(_))) =
        (old.get("additionalProperties"), new.get("additionalProperties"))
    {
        walk(oa, na, &format!("{path}[*]"), out);
    }
}

/// The breaking changes from `old` to `new` (OpenAPI v3 schemas of the instance's `spec`).
/// Status is not checked: it is the controller's to write.
pub(crate) fn breaking_changes(old: &Value, new: &Value) -> Vec<Change> {
    let mut out = Vec::new();
    walk(old, new, "spec", &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema() -> Value {
        json!({"type": "object", "required": ["image"], "properties": {
            "image": {"type": "string", "default": "nginx"},
            "replicas": {"type": "integer", "minimum": 1, "maximum": 10},
            "tier": {"type": "string", "enum": ["web", "db"]},
            "tags": {"type": "array", "items": {"type": "string", "maxLength": 20}}}})
    }

    #[test]
    fn compatible_changes_are_not_breaking() {
        let mut new = schema();
        new["properties"]["extra"] = json!({"type": "string"});
        new["properties"]["replicas"]["maximum"] = json!(20);
        new["properties"]["tier"]["enum"] = json!(["web", "db", "cache"]);
        assert!(breaking_changes(&schema(), &new).is_empty());
    }

    #[test]
    fn every_kind_of_breaking_change_is_found_with_its_path() {
        let mut new = schema();
        new["properties"].as_object_mut().unwrap().remove("tier");
        new["properties"]["replicas"]["type"] = json!("string");
        new["properties"]["image"]
            .as_object_mut()
            .unwrap()
            .remove("default");
        new["properties"]["tags"]["items"]["maxLength"] = json!(5);
        new["required"] = json!(["image", "tags"]);
        let found: Vec<String> = breaking_changes(&schema(), &new)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            found,
            [
                "REQUIRED_ADDED at spec.tags",
                "REQUIRED_DEFAULT_REMOVED at spec.image",
                "TYPE_CHANGED at spec.replicas",
                "MAX_LENGTH_TIGHTENED at spec.tags[]",
                "PROPERTY_REMOVED at spec.tier",
            ]
        );
    }
}

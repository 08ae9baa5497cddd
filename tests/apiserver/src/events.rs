//! One Event resource served under two groups, as the real server does: objects are stored as
//! core `v1` Events and converted to and from `events.k8s.io/v1` (the field renames of the real
//! server's conversion), so `kubectl describe` (core Events) shows what a controller recorded
//! with kube-rs (`events.k8s.io`).

use serde_json::{Map, Value, json};

use crate::registry::ResourceType;

/// Whether `rt` is `events.k8s.io/v1` events.
pub fn is_events_group(rt: &ResourceType) -> bool {
    rt.group == "events.k8s.io" && rt.plural == "events" && !rt.is_custom()
}

/// `events.k8s.io` field ↔ core field.
const RENAMES: &[(&str, &str)] = &[
    ("regarding", "involvedObject"),
    ("note", "message"),
    ("reportingController", "reportingComponent"),
    ("deprecatedSource", "source"),
    ("deprecatedFirstTimestamp", "firstTimestamp"),
    ("deprecatedLastTimestamp", "lastTimestamp"),
    ("deprecatedCount", "count"),
];

/// Fields both forms share under one name.
const SHARED: &[&str] = &[
    "metadata",
    "reason",
    "type",
    "action",
    "eventTime",
    "series",
    "related",
    "reportingInstance",
];

fn convert(object: &Value, api_version: &str, to_core: bool) -> Value {
    let Some(m) = object.as_object() else {
        return object.clone();
    };
    let mut out = Map::new();
    out.insert("apiVersion".into(), json!(api_version));
    out.insert("kind".into(), json!("Event"));
    for f in SHARED {
        if let Some(v) = m.get(*f).filter(|v| *v != "") {
            out.insert((*f).into(), v.clone());
        }
    }
    for (events, core) in RENAMES {
        let (from, to) = if to_core { (events, core) } else { (core, events) };
        // Both forms omit empty strings.
        if let Some(v) = m.get(*from).filter(|v| *v != "") {
            out.insert((*to).into(), v.clone());
        }
    }
    Value::Object(out)
}

/// An `events.k8s.io/v1` Event as the core `v1` Event it is stored as.
pub fn to_core(object: &Value) -> Value {
    convert(object, "v1", true)
}

/// A stored core Event as `events.k8s.io/v1` shows it (its time fields without omitempty
/// answer `null`, as the real server's encoding does).
pub fn to_events_group(object: &Value) -> Value {
    let mut out = convert(object, "events.k8s.io/v1", false);
    if let Some(m) = out.as_object_mut() {
        m.entry("eventTime").or_insert(Value::Null);
    }
    out
}

/// The core time fields the real server always writes (`null` when unset).
pub fn fill_core(object: &mut Value) {
    if let Some(m) = object.as_object_mut() {
        for f in ["eventTime", "firstTimestamp", "lastTimestamp"] {
            m.entry(f).or_insert(Value::Null);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_events_group_event_round_trips_through_the_core_form() {
        let e = json!({"apiVersion": "events.k8s.io/v1", "kind": "Event", "metadata": {"name": "e"},
            "regarding": {"kind": "ConfigMap", "name": "c"}, "note": "n", "reason": "R", "type": "Normal",
            "reportingController": "ctl", "reportingInstance": "i", "action": "A", "eventTime": "t",
            "series": {"count": 2, "lastObservedTime": "t2"}});
        let core = to_core(&e);
        assert_eq!(core["involvedObject"]["name"], "c");
        assert_eq!(core["message"], "n");
        assert_eq!(core["reportingComponent"], "ctl");
        assert_eq!(to_events_group(&core), e);
    }
}

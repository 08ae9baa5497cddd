//! Checks what a plugin returned against the contract and turns it into host types. A failure
//! names the field at fault (`desired[deployment].metadata.name`) and says what is wrong.

use std::{collections::HashSet, time::Duration};

use kroxide_contract::{HOST_CONDITIONS, HOST_STATUS_FIELDS};
use serde_json::{Map, Value};

use super::{bindings, settings::RuntimeConfig};
use crate::child::{ChildKey, DesiredChild, Readiness, is_valid_id};

/// A Kubernetes Event a plugin asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginEvent {
    /// `Normal` or `Warning`.
    pub warning: bool,
    /// UpperCamelCase reason.
    pub reason: String,
    /// Message.
    pub message: String,
    /// The child it is about.
    pub target: Option<ChildKey>,
}

/// A condition a plugin added.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginCondition {
    /// Condition type.
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    pub status: &'static str,
    /// Reason.
    pub reason: String,
    /// Message.
    pub message: String,
}

/// What `transform` returned, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct TransformOutput {
    /// The desired set, sorted by key.
    pub desired: Vec<DesiredChild>,
    /// Events to record.
    pub events: Vec<PluginEvent>,
    /// Requeue hint.
    pub requeue_after: Option<Duration>,
}

/// What `derive-status` returned, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct StatusOutput {
    /// Status fields to deep-merge over the CEL-derived ones.
    pub status: Map<String, Value>,
    /// Conditions to add.
    pub conditions: Vec<PluginCondition>,
    /// Readiness of the instance's resources.
    pub ready: Readiness,
    /// Events to record.
    pub events: Vec<PluginEvent>,
}

type Fault = (String, String);

fn fault(field: impl Into<String>, reason: impl Into<String>) -> Fault {
    (field.into(), reason.into())
}

fn readiness(r: bindings::Readiness) -> Readiness {
    match r {
        bindings::Readiness::Unknown => Readiness::Unknown,
        bindings::Readiness::Ready => Readiness::Ready,
        bindings::Readiness::NotReady => Readiness::NotReady,
    }
}

fn key(k: bindings::ChildKey) -> ChildKey {
    ChildKey {
        id: k.id,
        index: k.index,
    }
}

/// UpperCamelCase with letters and digits, as Kubernetes expects of reasons.
fn is_reason(text: &str) -> bool {
    let mut chars = text.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic())
        && text.len() <= 1024
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | ',' | ':'))
}

fn events(list: Vec<bindings::Event>, field: &str) -> Result<Vec<PluginEvent>, Fault> {
    list.into_iter()
        .enumerate()
        .map(|(i, e)| {
            if !is_reason(&e.reason) {
                return Err(fault(
                    format!("{field}[{i}].reason"),
                    format!("{:?} is not an UpperCamelCase reason", e.reason),
                ));
            }
            Ok(PluginEvent {
                warning: matches!(e.severity, bindings::Severity::Warning),
                reason: e.reason,
                message: e.message.chars().take(1024).collect(),
                target: e.target.map(key),
            })
        })
        .collect()
}

fn non_empty_str<'a>(object: &'a Map<String, Value>, path: &[&str]) -> Option<&'a str> {
    let mut value = object.get(path[0])?;
    for segment in &path[1..] {
        value = value.get(segment)?;
    }
    value.as_str().filter(|s| !s.is_empty())
}

/// Checks a `transform` output.
pub(crate) fn transform(
    out: bindings::TransformOutput,
    config: &RuntimeConfig,
) -> Result<TransformOutput, Fault> {
    if out.desired.len() > config.max_objects {
        return Err(fault(
            "desired",
            format!(
                "{} objects, over the limit of {}",
                out.desired.len(),
                config.max_objects
            ),
        ));
    }
    let total: usize = out.desired.iter().map(|d| d.object.len()).sum();
    if total > config.max_output_bytes {
        return Err(fault(
            "desired",
            format!(
                "{total} bytes of JSON, over the limit of {}",
                config.max_output_bytes
            ),
        ));
    }
    let mut seen = HashSet::new();
    let mut desired = Vec::with_capacity(out.desired.len());
    for d in out.desired {
        let key = key(d.key);
        let at = format!("desired[{key}]");
        if !is_valid_id(&key.id) {
            return Err(fault(at, "id must match ^[a-z][a-zA-Z0-9]*$"));
        }
        if !seen.insert(key.clone()) {
            return Err(fault(at, "appears more than once"));
        }
        let object = match serde_json::from_str::<Value>(&d.object) {
            Ok(Value::Object(map)) => map,
            Ok(_) => return Err(fault(at, "must be a JSON object")),
            Err(e) => return Err(fault(at, format!("not valid JSON: {e}"))),
        };
        for (path, name) in [
            (&["apiVersion"][..], "apiVersion"),
            (&["kind"][..], "kind"),
            (&["metadata", "name"][..], "metadata.name"),
        ] {
            if non_empty_str(&object, path).is_none() {
                return Err(fault(
                    format!("{at}.{name}"),
                    "is required and must be a non-empty string",
                ));
            }
        }
        if object.contains_key("status") {
            return Err(fault(
                format!("{at}.status"),
                "plugins never write status through transform",
            ));
        }
        if let Some(ns) = object.get("metadata").and_then(|m| m.get("namespace"))
            && !ns.is_string()
        {
            return Err(fault(format!("{at}.metadata.namespace"), "must be a string"));
        }
        desired.push(DesiredChild {
            key,
            object,
            ready: readiness(d.ready),
        });
    }
    desired.sort_by(|a, b| a.key.cmp(&b.key));
    Ok(TransformOutput {
        desired,
        events: events(out.events, "events")?,
        requeue_after: out
            .requeue_after_ms
            .map(|ms| Duration::from_millis(u64::from(ms))),
    })
}

/// Checks a `derive-status` output.
pub(crate) fn status(out: bindings::StatusOutput, config: &RuntimeConfig) -> Result<StatusOutput, Fault> {
    if out.status.len() > config.max_output_bytes {
        return Err(fault(
            "status",
            format!(
                "{} bytes, over the limit of {}",
                out.status.len(),
                config.max_output_bytes
            ),
        ));
    }
    let status = match serde_json::from_str::<Value>(&out.status) {
        Ok(Value::Object(map)) => map,
        Ok(Value::Null) => Map::new(),
        Ok(_) => return Err(fault("status", "must be a JSON object")),
        Err(e) => return Err(fault("status", format!("not valid JSON: {e}"))),
    };
    for reserved in HOST_STATUS_FIELDS {
        if status.contains_key(reserved) {
            return Err(fault(format!("status.{reserved}"), "belongs to the host"));
        }
    }
    let mut types = HashSet::new();
    let mut conditions = Vec::with_capacity(out.conditions.len());
    for (i, c) in out.conditions.into_iter().enumerate() {
        let at = format!("conditions[{i}]");
        if HOST_CONDITIONS.contains(&c.type_.as_str()) {
            return Err(fault(
                format!("{at}.type"),
                format!("{:?} belongs to the host; report readiness instead", c.type_),
            ));
        }
        if !is_reason(&c.type_) {
            return Err(fault(
                format!("{at}.type"),
                format!("{:?} is not an UpperCamelCase type", c.type_),
            ));
        }
        if !types.insert(c.type_.clone()) {
            return Err(fault(
                format!("{at}.type"),
                format!("{:?} appears more than once", c.type_),
            ));
        }
        if !is_reason(&c.reason) {
            return Err(fault(
                format!("{at}.reason"),
                format!("{:?} is not an UpperCamelCase reason", c.reason),
            ));
        }
        conditions.push(PluginCondition {
            type_: c.type_,
            status: match c.status {
                bindings::ConditionStatus::True => "True",
                bindings::ConditionStatus::False => "False",
                bindings::ConditionStatus::Unknown => "Unknown",
            },
            reason: c.reason,
            message: c.message.chars().take(32 * 1024).collect(),
        });
    }
    Ok(StatusOutput {
        status,
        conditions,
        ready: readiness(out.ready),
        events: events(out.events, "events")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn desired(id: &str, object: &str) -> bindings::Desired {
        bindings::Desired {
            key: bindings::ChildKey {
                id: id.to_string(),
                index: None,
            },
            object: object.to_string(),
            ready: bindings::Readiness::Unknown,
        }
    }

    fn check(list: Vec<bindings::Desired>) -> Result<TransformOutput, Fault> {
        transform(
            bindings::TransformOutput {
                desired: list,
                events: vec![],
                requeue_after_ms: None,
            },
            &RuntimeConfig::default(),
        )
    }

    const CM: &str = r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"a"}}"#;

    #[test]
    fn a_good_set_comes_back_sorted() {
        let out = check(vec![desired("b", CM), desired("a", CM)]).unwrap();
        assert_eq!(
            out.desired.iter().map(|d| d.key.id.as_str()).collect::<Vec<_>>(),
            ["a", "b"]
        );
    }

    #[test]
    fn each_contract_breach_names_its_field() {
        let cases = [
            (vec![desired("Bad", CM)], "desired[Bad]", "id must match"),
            (
                vec![desired("a", CM), desired("a", CM)],
                "desired[a]",
                "appears more than once",
            ),
            (vec![desired("a", "{nope")], "desired[a]", "not valid JSON"),
            (vec![desired("a", "[1]")], "desired[a]", "must be a JSON object"),
            (
                vec![desired(
                    "a",
                    r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{}}"#,
                )],
                "desired[a].metadata.name",
                "is required",
            ),
            (
                vec![desired(
                    "a",
                    r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"x"},"status":{}}"#,
                )],
                "desired[a].status",
                "never write status",
            ),
        ];
        for (list, field, reason) in cases {
            let (f, r) = check(list).unwrap_err();
            assert_eq!(f, field);
            assert!(r.contains(reason), "{r}");
        }
    }

    #[test]
    fn too_many_objects_are_refused_before_parsing() {
        let list = (0..2001).map(|_| desired("a", CM)).collect();
        let (field, reason) = check(list).unwrap_err();
        assert_eq!(
            (field.as_str(), reason.as_str()),
            ("desired", "2001 objects, over the limit of 2000")
        );
    }

    #[test]
    fn status_may_not_claim_host_fields_or_conditions() {
        let out = |text: &str, conditions: Vec<bindings::Condition>| {
            status(
                bindings::StatusOutput {
                    status: text.to_string(),
                    conditions,
                    ready: bindings::Readiness::Ready,
                    events: vec![],
                },
                &RuntimeConfig::default(),
            )
        };
        assert_eq!(
            out(r#"{"state":"ACTIVE"}"#, vec![]).unwrap_err().0,
            "status.state"
        );
        let ready = bindings::Condition {
            type_: "Ready".to_string(),
            status: bindings::ConditionStatus::True,
            reason: "X".to_string(),
            message: String::new(),
        };
        assert_eq!(out("{}", vec![ready]).unwrap_err().0, "conditions[0].type");
        assert_eq!(out("{}", vec![]).unwrap().ready, Readiness::Ready);
    }
}

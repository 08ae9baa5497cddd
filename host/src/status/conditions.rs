//! The condition model: one condition [`Mark`] (status, reason, message) and its rendering, for
//! graphs and instances alike; an instance's `status.state` and `status.conditions`, computed
//! exactly as kro does: `Ready` follows `InstanceManaged`, `GraphResolved` and `ResourcesReady`;
//! a plugin's conditions are added by type. Pure functions: the caller supplies the clock.

use serde_json::{Map, Value, json};

use crate::plugin::PluginCondition;

/// `Ready`, the root condition.
pub(crate) const READY: &str = "Ready";
/// Finalizer and labels are in place.
pub(crate) const INSTANCE_MANAGED: &str = "InstanceManaged";
/// The graph rendered for this instance.
pub(crate) const GRAPH_RESOLVED: &str = "GraphResolved";
/// Every resource exists and is ready.
pub(crate) const RESOURCES_READY: &str = "ResourcesReady";

/// The instance's `status.state`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub(crate) enum InstanceState {
    /// Resources are being created or are not ready yet.
    InProgress,
    /// Every resource is ready.
    Active,
    /// The instance is being deleted.
    Deleting,
    /// Reconciliation failed.
    Error,
}

impl InstanceState {
    /// The string kro writes.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::InProgress => "IN_PROGRESS",
            Self::Active => "ACTIVE",
            Self::Deleting => "DELETING",
            Self::Error => "ERROR",
        }
    }
}

/// One condition's status, reason and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Mark {
    /// `True`, `False` or `Unknown`.
    pub(crate) status: &'static str,
    /// Reason.
    pub(crate) reason: String,
    /// Message.
    pub(crate) message: String,
}

impl Mark {
    /// A condition `status` (`True`, `False` or `Unknown`) with `reason` and `message`.
    pub(crate) fn new(status: &'static str, reason: &str, message: impl Into<String>) -> Self {
        Self {
            status,
            reason: reason.to_string(),
            message: message.into(),
        }
    }

    /// `InstanceManaged=True`.
    pub(crate) fn managed() -> Self {
        Self::new(
            "True",
            "Managed",
            "instance is properly managed with finalizers and labels",
        )
    }

    /// `InstanceManaged=False`.
    pub(crate) fn management_failed(message: impl Into<String>) -> Self {
        Self::new("False", "ManagementFailed", message)
    }

    /// `GraphResolved=True`.
    pub(crate) fn resolved() -> Self {
        Self::new(
            "True",
            "Resolved",
            "runtime graph created and all resources resolved",
        )
    }

    /// `GraphResolved=False`.
    pub(crate) fn resolution_failed(message: impl Into<String>) -> Self {
        Self::new("False", "ResolutionFailed", message)
    }

    /// `ResourcesReady=True`.
    pub(crate) fn all_ready() -> Self {
        Self::new("True", "AllResourcesReady", "all resources are created and ready")
    }

    /// `ResourcesReady=False` with `reason` (`NotReady`, `ResourceDeleting`,
    /// `ReconciliationSuspended`, or a plugin failure reason such as `PluginTimeout`).
    pub(crate) fn not_ready(reason: &str, message: impl Into<String>) -> Self {
        Self::new("False", reason, message)
    }

    /// `ResourcesReady=Unknown` while the instance is being deleted.
    pub(crate) fn under_deletion(message: impl Into<String>) -> Self {
        Self::new("Unknown", "UnderDeletion", message)
    }
}

/// What the reconcile found, condition by condition.
#[derive(Debug, Clone)]
pub(crate) struct Outcome<'a> {
    /// `InstanceManaged`.
    pub(crate) managed: Mark,
    /// `GraphResolved`.
    pub(crate) resolved: Mark,
    /// `ResourcesReady`.
    pub(crate) resources: Mark,
    /// Conditions a plugin added (their types never collide with the host's).
    pub(crate) plugin: &'a [PluginCondition],
    /// `metadata.generation` of the instance.
    pub(crate) generation: i64,
    /// The conditions as last written, to keep `lastTransitionTime` when a status is unchanged.
    pub(crate) previous: &'a [Value],
    /// Now, RFC 3339.
    pub(crate) now: &'a str,
    /// The reconcile failed (state `ERROR` unless `Ready`).
    pub(crate) failed: bool,
    /// The instance is being deleted.
    pub(crate) deleting: bool,
}

/// The condition `type_` as written in a status: `lastTransitionTime` kept from `previous` while
/// the status is unchanged, `observedGeneration` set.
pub(crate) fn condition(type_: &str, mark: &Mark, generation: i64, previous: &[Value], now: &str) -> Value {
    let before = previous
        .iter()
        .find(|c| c.get("type").and_then(Value::as_str) == Some(type_));
    let since = match before {
        Some(b) if b.get("status").and_then(Value::as_str) == Some(mark.status) => {
            b.get("lastTransitionTime").cloned().unwrap_or_else(|| json!(now))
        }
        _ => json!(now),
    };
    json!({
        "type": type_,
        "status": mark.status,
        "reason": mark.reason,
        "message": mark.message,
        "lastTransitionTime": since,
        "observedGeneration": generation,
    })
}

/// The conditions (dependents, plugin conditions by type, then `Ready`) and the state.
pub(crate) fn conditions(outcome: &Outcome<'_>) -> (Vec<Value>, InstanceState) {
    let g = outcome.generation;
    let dependents = [
        (INSTANCE_MANAGED, &outcome.managed),
        (GRAPH_RESOLVED, &outcome.resolved),
        (RESOURCES_READY, &outcome.resources),
    ];
    let mut list: Vec<Value> = dependents
        .iter()
        .map(|(t, m)| condition(t, m, g, outcome.previous, outcome.now))
        .collect();
    let mut plugin: Vec<&PluginCondition> = outcome.plugin.iter().collect();
    plugin.sort_by(|a, b| a.type_.cmp(&b.type_));
    for c in plugin {
        let mark = Mark {
            status: c.status,
            reason: c.reason.clone(),
            message: c.message.clone(),
        };
        list.push(condition(&c.type_, &mark, g, outcome.previous, outcome.now));
    }
    let ready = ready(dependents.iter().map(|(_, m)| *m));
    list.push(condition(READY, &ready, g, outcome.previous, outcome.now));
    let state = if outcome.deleting {
        InstanceState::Deleting
    } else if ready.status == "True" {
        InstanceState::Active
    } else if outcome.failed {
        InstanceState::Error
    } else {
        InstanceState::InProgress
    };
    (list, state)
}

/// `Ready` over its dependents, for graphs and instances alike: True when every dependent is;
/// otherwise the first False dependent, then the first Unknown one, gives its status, reason
/// and message.
pub(crate) fn ready<'a>(dependents: impl Iterator<Item = &'a Mark> + Clone) -> Mark {
    let unhealthy = dependents
        .clone()
        .find(|m| m.status == "False")
        .or_else(|| dependents.clone().find(|m| m.status == "Unknown"));
    match unhealthy {
        None => Mark::new("True", READY, ""),
        Some(m) => m.clone(),
    }
}

/// Deep-merges `overlay` into `base`: objects merge key by key, anything else replaces.
pub(crate) fn deep_merge(base: &mut Map<String, Value>, overlay: Map<String, Value>) {
    for (key, value) in overlay {
        match (base.get_mut(&key), value) {
            (Some(Value::Object(b)), Value::Object(o)) => deep_merge(b, o),
            (_, v) => {
                base.insert(key, v);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome<'a>(resources: Mark, previous: &'a [Value], now: &'a str) -> Outcome<'a> {
        Outcome {
            managed: Mark::managed(),
            resolved: Mark::resolved(),
            resources,
            plugin: &[],
            generation: 2,
            previous,
            now,
            failed: false,
            deleting: false,
        }
    }

    #[test]
    fn all_true_dependents_make_the_instance_active_and_ready() {
        let (list, state) = conditions(&outcome(Mark::all_ready(), &[], "t1"));
        assert_eq!(state, InstanceState::Active);
        let types: Vec<&str> = list.iter().map(|c| c["type"].as_str().unwrap()).collect();
        assert_eq!(
            types,
            ["InstanceManaged", "GraphResolved", "ResourcesReady", "Ready"]
        );
        assert_eq!(list[3]["reason"], "Ready");
        assert_eq!(list[3]["observedGeneration"], 2);
    }

    #[test]
    fn ready_copies_the_reason_of_the_failing_dependent() {
        let (list, state) = conditions(&outcome(
            Mark::not_ready("NotReady", "waiting for deployment"),
            &[],
            "t1",
        ));
        assert_eq!(state, InstanceState::InProgress);
        assert_eq!(list[3]["status"], "False");
        assert_eq!(list[3]["reason"], "NotReady");
        assert_eq!(list[3]["message"], "waiting for deployment");
    }

    #[test]
    fn a_failed_reconcile_is_an_error_state() {
        let mut o = outcome(
            Mark::not_ready("PluginTimeout", "plugin ran past its deadline"),
            &[],
            "t1",
        );
        o.failed = true;
        assert_eq!(conditions(&o).1, InstanceState::Error);
    }

    #[test]
    fn an_unchanged_status_keeps_its_transition_time() {
        let (first, _) = conditions(&outcome(Mark::all_ready(), &[], "t1"));
        let (second, _) = conditions(&outcome(Mark::all_ready(), &first, "t2"));
        assert_eq!(second[2]["lastTransitionTime"], "t1");
        let (third, _) = conditions(&outcome(Mark::not_ready("NotReady", "x"), &second, "t3"));
        assert_eq!(third[2]["lastTransitionTime"], "t3");
    }

    #[test]
    fn deep_merge_merges_objects_and_replaces_the_rest() {
        let mut base = json!({ "a": { "x": 1, "y": 2 }, "b": [1] })
            .as_object()
            .unwrap()
            .clone();
        deep_merge(
            &mut base,
            json!({ "a": { "y": 3 }, "b": [2] }).as_object().unwrap().clone(),
        );
        assert_eq!(Value::Object(base), json!({ "a": { "x": 1, "y": 3 }, "b": [2] }));
    }
}

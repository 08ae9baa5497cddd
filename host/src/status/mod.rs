//! The status stage: an instance's `status` from what the reconcile found: CEL status fields
//! with the plugin's `derive-status` output deep-merged over them, kro's conditions and
//! `status.state`. Shared by `kroxide render --include-status` and the controller, so the
//! offline preview and the cluster agree. The condition model, shared with graphs, is
//! [`conditions`].

mod conditions;

pub(crate) use conditions::{Mark, READY, condition, ready};

use crate::object::Pointer as _;
use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use conditions::InstanceState;

use crate::{
    cel::{self, Program},
    child::{DesiredChild, ObservedChild, Readiness},
    graph::runtime::Resolution,
    object::Object,
    plugin::StatusOutput,
    status::conditions::Outcome,
};

/// The step of an instance's reconcile that failed, with the condition reason kro reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reason {
    /// A child's kind could not be watched, or its scope learnt (`NotReady`).
    KindNotReady,
    /// A child is a member of another instance's ApplySet (`ApplySetConflict`).
    ApplySetConflict,
    /// An object with the child's identity exists and is not the instance's (`ResourceNotOwned`).
    ResourceNotOwned,
    /// The API refused a child's apply (`ApplyFailed`).
    ApplyFailed,
    /// The transform stage failed with its own reason (the plugin's `PluginTimeout`,
    /// `PluginTrap`, ..., or a refused child).
    Transform(&'static str),
    /// The plugin's `derive-status` failed with its reason.
    DeriveStatus(&'static str),
}

impl Reason {
    /// The condition reason.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::KindNotReady => "NotReady",
            Self::ApplySetConflict => "ApplySetConflict",
            Self::ResourceNotOwned => "ResourceNotOwned",
            Self::ApplyFailed => "ApplyFailed",
            Self::Transform(reason) | Self::DeriveStatus(reason) => reason,
        }
    }
}

/// A reconcile that could not finish, as `ResourcesReady` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Failure {
    /// The step that failed and its condition reason.
    pub(crate) reason: Reason,
    /// What went wrong, naming the object or field.
    pub(crate) message: String,
}

/// What the status stage works from.
#[derive(Debug, Clone)]
pub(crate) struct Input<'a> {
    /// The instance as read.
    pub(crate) instance: &'a Value,
    /// The graph resolution of this reconcile (`None` when it could not run).
    pub(crate) resolution: Option<&'a Resolution>,
    /// The desired children.
    pub(crate) desired: &'a [DesiredChild],
    /// The live children.
    pub(crate) observed: &'a [ObservedChild],
    /// The plugin's `derive-status` output.
    pub(crate) plugin: Option<&'a StatusOutput>,
    /// `InstanceManaged`.
    pub(crate) managed: Mark,
    /// A failure that stopped the reconcile (plugin error, apply error, render error).
    pub(crate) failure: Option<Failure>,
    /// The instance is suspended (`kro.run/reconcile: suspended`).
    pub(crate) suspended: bool,
    /// The instance is being deleted.
    pub(crate) deleting: bool,
    /// Now, RFC 3339.
    pub(crate) now: &'a str,
    /// The graph's own conditions (`status.conditions` of its schema): when there are any,
    /// they alone are written to `status.conditions`.
    pub(crate) authored: &'a [Program],
}

fn resources_mark(input: &Input<'_>) -> (Mark, bool) {
    if input.deleting {
        return (Mark::under_deletion("instance is being deleted"), false);
    }
    if input.suspended {
        return (
            Mark::not_ready(
                "ReconciliationSuspended",
                "reconciliation is suspended by the kro.run/reconcile annotation",
            ),
            false,
        );
    }
    if let Some(f) = &input.failure {
        return (Mark::not_ready(f.reason.as_str(), f.message.clone()), true);
    }
    let terminating = input
        .observed
        .iter()
        .filter(|o| o.object.deleting())
        .find(|o| input.desired.iter().any(|d| d.key == o.key));
    if let Some(o) = terminating {
        let object = match o.object.namespace() {
            Some(ns) => format!("{ns}/{}", o.object.name()),
            None => o.object.name().to_string(),
        };
        // kro's words: nothing is applied until the object is gone.
        let message = format!(
            "resource {object:?} for node {:?} is currently being deleted; waiting for deletion to complete before continuing reconciliation",
            o.key.id
        );
        return (Mark::not_ready("ResourceDeleting", message), false);
    }
    if input.plugin.map(|p| p.ready) == Some(Readiness::NotReady) {
        return (
            Mark::not_ready("NotReady", "plugin reports the resources are not ready"),
            false,
        );
    }
    let missing: Vec<String> = input
        .desired
        .iter()
        .filter(|d| !input.observed.iter().any(|o| o.key == d.key))
        .map(|d| d.key.to_string())
        .collect();
    if !missing.is_empty() {
        return (
            Mark::not_ready(
                "NotReady",
                format!(
                    "awaiting resource readiness: {}",
                    missing
                        .iter()
                        .map(|m| format!("waiting for node {m:?}: not created yet"))
                        .collect::<Vec<_>>()
                        .join("; ")
                ),
            ),
            false,
        );
    }
    match input.resolution.and_then(Resolution::waiting_message) {
        Some(waiting) => (Mark::not_ready("NotReady", waiting), false),
        None => (Mark::all_ready(), false),
    }
}

/// The status to write. `previous` conditions keep their transition times when unchanged.
pub(crate) fn derive(input: &Input<'_>) -> Map<String, Value> {
    let previous: Vec<Value> = input
        .instance
        .at("/status/conditions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let generation = input
        .instance
        .at("/metadata/generation")
        .and_then(Value::as_i64)
        .unwrap_or(1);
    // A resource that cannot render, else a status field whose expression fails for a reason
    // other than missing data: the graph did not resolve for this instance.
    let resolved = match input.resolution.and_then(Resolution::first_error) {
        Some((id, message)) => Mark::resolution_failed(format!("resource {id}: {message}")),
        None => match input.resolution.and_then(|r| r.status_errors.first()) {
            Some(message) => Mark::resolution_failed(message.clone()),
            None => Mark::resolved(),
        },
    };
    let resolution_failed = resolved.status == "False";
    let (resources, failed) = resources_mark(input);
    let outcome = Outcome {
        managed: input.managed.clone(),
        resolved,
        resources,
        plugin: input.plugin.map(|p| p.conditions.as_slice()).unwrap_or_default(),
        generation,
        previous: &previous,
        now: input.now,
        failed: failed || resolution_failed,
        deleting: input.deleting,
    };
    let (mut conditions, mut state) = conditions::conditions(&outcome);
    if !input.authored.is_empty() {
        conditions = authored(input, &conditions, generation, &previous, &mut state);
    }
    let mut fields: Map<String, Value> = input.resolution.map(|r| r.status.clone()).unwrap_or_default();
    if let Some(p) = input.plugin {
        conditions::deep_merge(&mut fields, p.status.clone());
    }
    // Without a fresh resolution, keep the fields last written rather than dropping them.
    if input.resolution.is_none()
        && let Some(Value::Object(old)) = input.instance.get("status")
    {
        for (k, v) in old {
            if k != "state" && k != "conditions" {
                fields.entry(k.clone()).or_insert_with(|| v.clone());
            }
        }
    }
    fields.insert("state".to_string(), json!(state.as_str()));
    fields.insert("conditions".to_string(), Value::Array(conditions));
    fields
}

/// Whether `v` is a condition as `runtime.newCondition` builds it.
fn is_condition(v: &Value) -> bool {
    v.get("type")
        .and_then(Value::as_str)
        .is_some_and(|t| !t.is_empty())
        && v.get("status")
            .and_then(Value::as_str)
            .is_some_and(|s| crate::graph::CONDITION_STATUSES.contains(&s))
}

/// The author's conditions, as kro writes them: evaluated with `schema` holding kro's own
/// conditions (`built_in`, readable through `runtime.condition(schema, …)`), stamped with
/// `lastTransitionTime` (kept while the status holds) and `observedGeneration`. An expression
/// waiting for data is skipped; one that fails, returns no condition, or a type produced twice
/// (both dropped) makes the state `ERROR`. Either way the conditions last written for the
/// types that produced nothing stay as they were. Without an evaluation this time (suspended,
/// not managed, being deleted) the last written stay, with kro's `ResourcesReady` over them
/// while the instance is deleted.
fn authored(
    input: &Input<'_>,
    built_in: &[Value],
    generation: i64,
    previous: &[Value],
    state: &mut InstanceState,
) -> Vec<Value> {
    let keep_previous = |mut written: Vec<Value>| {
        for p in previous {
            if !written.iter().any(|w| w["type"] == p["type"]) {
                written.push(p.clone());
            }
        }
        written
    };
    let Some(resolution) = input.resolution.filter(|r| !r.bindings.is_empty()) else {
        let overlay = if input.deleting {
            built_in
                .iter()
                .filter(|c| c["type"] == conditions::RESOURCES_READY)
                .cloned()
                .collect()
        } else {
            Vec::new()
        };
        return keep_previous(overlay);
    };
    let mut scope = cel::Scope::new();
    for (name, value) in &resolution.bindings {
        scope.set(name, value.clone());
    }
    let mut schema = resolution
        .bindings
        .iter()
        .find(|(name, _)| name == "schema")
        .map(|(_, v)| Value::clone(v))
        .unwrap_or_else(|| json!({}));
    let kro: Vec<Value> = built_in
        .iter()
        .map(|c| json!({"type": c["type"], "status": c["status"], "reason": c["reason"], "message": c["message"]}))
        .collect();
    schema["status"] = json!({ "conditions": kro });
    scope.set("schema", schema);
    let mut produced: Vec<Value> = Vec::new();
    let mut incomplete = false;
    let mut failed = false;
    for program in input.authored {
        match program.eval(&scope) {
            Err(e) if e.is_pending() => incomplete = true,
            Err(e) => {
                tracing::info!(expression = program.source(), error = %e, "a condition expression failed");
                failed = true;
            }
            Ok(Value::Array(items)) if items.iter().all(is_condition) => produced.extend(items),
            Ok(v) if is_condition(&v) => produced.push(v),
            Ok(_) => failed = true,
        }
    }
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for c in &produced {
        *counts
            .entry(c["type"].as_str().unwrap_or_default().to_string())
            .or_default() += 1;
    }
    if counts.values().any(|n| *n > 1) {
        failed = true;
        produced.retain(|c| counts.get(c["type"].as_str().unwrap_or_default()) == Some(&1));
    }
    let written: Vec<Value> = produced
        .iter()
        .map(|c| {
            let status = crate::graph::CONDITION_STATUSES
                .into_iter()
                .find(|s| c["status"] == *s)
                .unwrap_or("Unknown");
            let text = |k: &str| c[k].as_str().unwrap_or_default().to_string();
            let mark = Mark {
                status,
                reason: text("reason"),
                message: text("message"),
            };
            conditions::condition(&text("type"), &mark, generation, previous, input.now)
        })
        .collect();
    if failed {
        *state = InstanceState::Error;
    }
    if incomplete || failed {
        keep_previous(written)
    } else {
        written
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::child::ChildKey;

    fn instance() -> Value {
        json!({"metadata": {"name": "i", "generation": 3}, "status": {"url": "old"}})
    }

    fn input<'a>(
        instance: &'a Value,
        desired: &'a [DesiredChild],
        observed: &'a [ObservedChild],
    ) -> Input<'a> {
        Input {
            instance,
            resolution: None,
            desired,
            observed,
            plugin: None,
            managed: Mark::managed(),
            failure: None,
            suspended: false,
            deleting: false,
            now: "2026-01-01T00:00:00Z",
            authored: &[],
        }
    }

    fn child(id: &str) -> DesiredChild {
        DesiredChild {
            key: ChildKey::new(id),
            object: Map::new(),
            ready: Readiness::Unknown,
        }
    }

    #[test]
    fn a_missing_child_keeps_the_instance_in_progress() {
        let i = instance();
        let desired = [child("a")];
        let s = derive(&input(&i, &desired, &[]));
        assert_eq!(s["state"], "IN_PROGRESS");
        assert_eq!(
            s["conditions"][2]["message"],
            "awaiting resource readiness: waiting for node \"a\": not created yet"
        );
        assert_eq!(
            s["url"], "old",
            "fields survive a reconcile that could not resolve"
        );
    }

    /// Regression: `Resolution::status_errors` was written and never read, so a status field
    /// whose expression failed (not for missing data) vanished from the status silently.
    #[test]
    fn an_error_in_a_status_expression_is_reported_not_dropped() {
        let i = instance();
        let resolution = Resolution {
            status_errors: vec![
                "field status.url: expression \"schema.spec.port + 'x'\": no such overload".into(),
            ],
            ..Resolution::default()
        };
        let mut inp = input(&i, &[], &[]);
        inp.resolution = Some(&resolution);
        let s = derive(&inp);
        let resolved = &s["conditions"][1];
        assert_eq!(resolved["type"], "GraphResolved");
        assert_eq!(
            (resolved["status"].as_str(), resolved["reason"].as_str()),
            (Some("False"), Some("ResolutionFailed"))
        );
        assert!(
            resolved["message"].as_str().unwrap().contains("status.url"),
            "{resolved}"
        );
        assert_eq!(s["state"], "ERROR");
    }

    #[test]
    fn each_failed_step_reports_kros_reason() {
        let reasons = [
            Reason::KindNotReady,
            Reason::ApplySetConflict,
            Reason::ResourceNotOwned,
            Reason::ApplyFailed,
            Reason::Transform("PluginTrap"),
            Reason::DeriveStatus("PluginTimeout"),
        ]
        .map(Reason::as_str);
        assert_eq!(
            reasons,
            [
                "NotReady",
                "ApplySetConflict",
                "ResourceNotOwned",
                "ApplyFailed",
                "PluginTrap",
                "PluginTimeout"
            ]
        );
    }

    #[test]
    fn a_plugin_failure_is_an_error_naming_its_reason() {
        let i = instance();
        let mut inp = input(&i, &[], &[]);
        inp.failure = Some(Failure {
            reason: Reason::DeriveStatus("PluginTimeout"),
            message: "plugin ran past its 100ms deadline".into(),
        });
        let s = derive(&inp);
        assert_eq!(s["state"], "ERROR");
        assert_eq!(s["conditions"][3]["reason"], "PluginTimeout");
        assert_eq!(s["conditions"][3]["observedGeneration"], 3);
    }

    #[test]
    fn suspension_and_deletion_have_their_own_reasons() {
        let i = instance();
        let mut inp = input(&i, &[], &[]);
        inp.suspended = true;
        assert_eq!(derive(&inp)["conditions"][2]["reason"], "ReconciliationSuspended");
        inp.suspended = false;
        inp.deleting = true;
        let s = derive(&inp);
        assert_eq!(
            (s["state"].clone(), s["conditions"][2]["status"].clone()),
            (json!("DELETING"), json!("Unknown"))
        );
    }

    fn authored(sources: &[&str]) -> Vec<Program> {
        sources
            .iter()
            .map(|s| crate::cel::engine().compile(s).unwrap())
            .collect()
    }

    fn with_bindings(resolution: &mut Resolution, schema: Value) {
        resolution.bindings = vec![("schema".to_string(), schema.into())];
    }

    #[test]
    fn the_authors_conditions_alone_are_written_and_read_kros_through_runtime_condition() {
        let i = instance();
        let programs = authored(&[
            "runtime.newCondition({'type': 'Mine', 'status': runtime.condition(schema, 'InstanceManaged').status, 'reason': 'Copied', 'message': ''})",
        ]);
        let mut resolution = Resolution::default();
        with_bindings(&mut resolution, json!({"metadata": {"name": "i"}}));
        let mut inp = input(&i, &[], &[]);
        inp.resolution = Some(&resolution);
        inp.authored = &programs;
        let s = derive(&inp);
        let conditions = s["conditions"].as_array().unwrap();
        assert_eq!(conditions.len(), 1, "{conditions:?}");
        assert_eq!(
            (
                conditions[0]["type"].as_str(),
                conditions[0]["status"].as_str(),
                conditions[0]["observedGeneration"].as_i64()
            ),
            (Some("Mine"), Some("True"), Some(3))
        );
        assert_eq!(s["state"], "ACTIVE", "the state stays kro's");
    }

    #[test]
    fn a_degraded_evaluation_is_an_error_that_keeps_the_conditions_it_could_not_produce() {
        let i = json!({"metadata": {"name": "i", "generation": 3}, "status": {"conditions": [
            {"type": "Old", "status": "True", "reason": "", "message": "", "lastTransitionTime": "2025-01-01T00:00:00Z", "observedGeneration": 2},
            {"type": "Twice", "status": "True", "reason": "", "message": "", "lastTransitionTime": "2025-01-01T00:00:00Z", "observedGeneration": 2}]}});
        let programs = authored(&[
            "[runtime.newCondition({'type': 'Twice', 'status': 'True'}), runtime.newCondition({'type': 'Twice', 'status': 'False'})]",
            "runtime.newCondition({'type': 'Fresh', 'status': 'False'})",
            "runtime.newCondition({'type': 'Old', 'status': schema.spec.missing})",
        ]);
        let mut resolution = Resolution::default();
        with_bindings(&mut resolution, json!({"metadata": {"name": "i"}, "spec": {}}));
        let mut inp = input(&i, &[], &[]);
        inp.resolution = Some(&resolution);
        inp.authored = &programs;
        let s = derive(&inp);
        let types: Vec<&str> = s["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["type"].as_str().unwrap())
            .collect();
        assert_eq!(
            types,
            ["Fresh", "Old", "Twice"],
            "duplicates dropped, the previous ones kept"
        );
        assert_eq!(s["conditions"][1]["lastTransitionTime"], "2025-01-01T00:00:00Z");
        assert_eq!(s["state"], "ERROR");
    }

    #[test]
    fn waiting_is_told_in_kros_words_unresolved_data_first() {
        use crate::graph::runtime::NodeState;
        let i = instance();
        let mut resolution = Resolution {
            states: vec![
                ("config".into(), NodeState::NotReady("readyWhen is false".into())),
                (
                    "report".into(),
                    NodeState::Pending("waiting for config to be ready".into()),
                ),
            ],
            ..Resolution::default()
        };
        let message = |r: &Resolution| {
            let mut inp = input(&i, &[], &[]);
            inp.resolution = Some(r);
            derive(&inp)["conditions"][2]["message"].clone()
        };
        assert_eq!(
            message(&resolution),
            "waiting for unresolved resource \"report\": waiting for config to be ready"
        );
        resolution.states.pop();
        resolution
            .states
            .push(("db".into(), NodeState::NotReady("not created yet".into())));
        assert_eq!(
            message(&resolution),
            "awaiting resource readiness: waiting for node \"config\": readyWhen is false; waiting for node \"db\": not created yet"
        );
    }

    #[test]
    fn a_terminating_child_is_reported() {
        let i = instance();
        let desired = [child("a")];
        let observed = [ObservedChild {
            key: ChildKey::new("a"),
            object: json!({"metadata": {"name": "cm", "namespace": "apps", "deletionTimestamp": "t"}}).into(),
        }];
        let s = derive(&input(&i, &desired, &observed));
        assert_eq!(s["conditions"][2]["reason"], "ResourceDeleting");
        assert_eq!(
            s["conditions"][2]["message"],
            "resource \"apps/cm\" for node \"a\" is currently being deleted; waiting for deletion to complete before continuing reconciliation"
        );
    }
}

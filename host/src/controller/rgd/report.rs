//! The graph's status: kro's conditions (`GraphAccepted`, `KindReady`, `ControllerReady`,
//! `GraphRevisionsResolved`, then `Ready`), `state`, and what the last good graph reported;
//! and the typed reasons a stage refuses with.

use std::sync::Arc;

use kube::api::{Patch, PatchParams};
use serde_json::{Value, json};

use crate::controller::{context::Context, error::Error};
use crate::{
    graph::Graph,
    metadata,
    status::{self, Mark},
};

/// Why a graph is not (fully) served: the reason its conditions report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Reason {
    /// The RGD or its graph is invalid (kro's reason).
    InvalidResourceGraph,
    /// A schema change would break existing instances and is not allowed.
    BreakingChanges,
    /// The kind is not established yet.
    Pending,
    /// The CRD could not be read, generated or applied.
    Failed,
    /// The watch of instances could not start.
    FailedToStart,
    /// The plugin's ConfigMap is in a namespace the controller does not read plugins from.
    PluginNamespaceNotAllowed,
    /// The plugin's ConfigMap does not exist (or its watch did not sync).
    PluginNotFound,
    /// The ConfigMap's plugin bytes are not valid base64.
    PluginInvalid,
    /// The ConfigMap has no such key.
    PluginKeyMissing,
    /// The plugin runtime refused the plugin, with its own reason (`PluginDigestMismatch`,
    /// `PluginConfigInvalid`, ...).
    Plugin(&'static str),
}

impl Reason {
    /// The condition reason.
    pub(super) fn as_str(self) -> &'static str {
        match self {
            Self::InvalidResourceGraph => "InvalidResourceGraph",
            Self::BreakingChanges => "BreakingChanges",
            Self::Pending => "Pending",
            Self::Failed => "Failed",
            Self::FailedToStart => "FailedToStart",
            Self::PluginNamespaceNotAllowed => "PluginNamespaceNotAllowed",
            Self::PluginNotFound => "PluginNotFound",
            Self::PluginInvalid => "PluginInvalid",
            Self::PluginKeyMissing => "PluginKeyMissing",
            Self::Plugin(reason) => reason,
        }
    }
}

/// A stage's refusal: its reason, and a message naming the object and field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Refusal {
    /// Why.
    pub(super) reason: Reason,
    /// What, naming the object and the field.
    pub(super) message: String,
    /// Whether to look again later without a change to the graph (what it waits for, such as
    /// a kind not served yet, may appear by itself).
    pub(super) retry: bool,
}

impl Refusal {
    pub(super) fn new(reason: Reason, message: impl Into<String>) -> Self {
        Self {
            reason,
            message: message.into(),
            retry: false,
        }
    }

    /// This refusal, to be looked at again later.
    pub(super) fn retrying(self) -> Self {
        Self { retry: true, ..self }
    }
}

/// A condition kroxide sets on a graph: its type and its [`Mark`], the condition model instances
/// share.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Cond {
    pub(super) type_: &'static str,
    pub(super) mark: Mark,
}

/// `type_` True (`ok`) or False, with `reason` and `message`.
pub(super) fn cond(type_: &'static str, ok: bool, reason: &str, message: impl Into<String>) -> Cond {
    Cond {
        type_,
        mark: Mark::new(if ok { "True" } else { "False" }, reason, message),
    }
}

/// `type_` Unknown, with `reason` and `message`.
pub(super) fn unknown(type_: &'static str, reason: &str, message: impl Into<String>) -> Cond {
    Cond {
        type_,
        mark: Mark::new("Unknown", reason, message),
    }
}

/// How far a graph got.
#[derive(Debug, Clone)]
pub(super) struct Report {
    pub(super) accepted: Cond,
    pub(super) kind: Cond,
    pub(super) controller: Cond,
    pub(super) revisions: Cond,
    pub(super) extra: Option<Cond>,
    pub(super) graph: Option<Arc<Graph>>,
    pub(super) revision: Option<u64>,
}

impl Report {
    /// Everything True: the graph is accepted, its kind ready and served.
    pub(super) fn healthy(
        kind: &str,
        graph: Option<Arc<Graph>>,
        revision: Option<u64>,
        revisions_message: &str,
    ) -> Self {
        Self {
            accepted: cond(
                "GraphAccepted",
                true,
                "Valid",
                "resource graph and schema are valid",
            ),
            kind: cond(
                "KindReady",
                true,
                "Ready",
                format!("kind {kind} has been accepted and is ready"),
            ),
            controller: cond("ControllerReady", true, "Running", "controller is running"),
            revisions: cond("GraphRevisionsResolved", true, "Resolved", revisions_message),
            extra: None,
            graph,
            revision,
        }
    }

    /// The graph was refused: `GraphAccepted=False`, the rest waits for it.
    pub(super) fn refused(refusal: Refusal) -> Self {
        let waiting = "waiting for the graph to be accepted";
        Self {
            accepted: cond("GraphAccepted", false, refusal.reason.as_str(), refusal.message),
            kind: unknown("KindReady", "Pending", waiting),
            controller: unknown("ControllerReady", "Pending", waiting),
            revisions: unknown(
                "GraphRevisionsResolved",
                "WaitingForGraphRevisionCompilation",
                waiting,
            ),
            extra: None,
            graph: None,
            revision: None,
        }
    }
}

pub(super) fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

pub(super) fn status_of(rgd: &Value, report: &Report) -> Value {
    let generation = rgd
        .pointer("/metadata/generation")
        .and_then(Value::as_i64)
        .unwrap_or(1);
    let previous = rgd
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let now = now();
    let render = |c: &Cond| status::condition(c.type_, &c.mark, generation, &previous, &now);
    let mut deps = vec![
        &report.accepted,
        &report.kind,
        &report.controller,
        &report.revisions,
    ];
    if let Some(e) = &report.extra {
        deps.push(e);
    }
    let active = [&report.accepted, &report.kind, &report.controller]
        .iter()
        .all(|c| c.mark.status == "True");
    let ready = Cond {
        type_: status::READY,
        mark: status::ready(deps.iter().map(|c| &c.mark)),
    };
    let mut conditions: Vec<Value> = deps.iter().map(|c| render(c)).collect();
    conditions.push(render(&ready));
    let mut status = json!({
        "state": if active { "Active" } else { "Inactive" },
        "conditions": conditions,
    });
    // Keep what the last good graph reported while the new one is refused.
    let graph_fields = report
        .graph
        .as_ref()
        .map(|g| (json!(g.topological_order()), g.resources_status()));
    let (order, resources) = graph_fields.unwrap_or_else(|| {
        (
            rgd.pointer("/status/topologicalOrder")
                .cloned()
                .unwrap_or(Value::Null),
            rgd.pointer("/status/resources").cloned().unwrap_or(Value::Null),
        )
    });
    if !order.is_null() {
        status["topologicalOrder"] = order;
    }
    if resources.as_array().is_some_and(|r| !r.is_empty()) {
        status["resources"] = resources;
    }
    if let Some(n) = report
        .revision
        .or_else(|| rgd.pointer("/status/lastIssuedRevision").and_then(Value::as_u64))
    {
        status["lastIssuedRevision"] = json!(n);
    }
    status
}

pub(super) async fn write_status(
    ctx: &Context,
    name: &str,
    rgd: &Value,
    report: &Report,
) -> Result<(), Error> {
    let status = status_of(rgd, report);
    if status["state"] == "Inactive" {
        let reason = status["conditions"]
            .as_array()
            .and_then(|c| c.last())
            .map(|r| &r["reason"]);
        ctx.metrics
            .failure("rgd", name, reason.and_then(Value::as_str).unwrap_or_default());
    }
    if rgd.get("status") == Some(&status) {
        return Ok(());
    }
    let resource = crate::rgd::api_resource();
    let api = ctx.api(&resource, false, None).await;
    let body = json!({"apiVersion": crate::rgd::API_VERSION, "kind": crate::rgd::KIND, "metadata": {"name": name}, "status": status});
    let written = api
        .patch_status(
            name,
            &PatchParams::apply(metadata::RGD_MANAGER).force(),
            &Patch::Apply(&body),
        )
        .await
        .map_err(|source| Error::Api {
            action: "update status of",
            object: format!("ResourceGraphDefinition {name}"),
            source,
        })?;
    ctx.remember_write(
        &crate::controller::informers::rgd_watch(),
        crate::controller::wire::to_value(written, &resource),
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn condition<'a>(status: &'a Value, type_: &str) -> &'a Value {
        status["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["type"] == type_)
            .unwrap_or_else(|| panic!("no {type_} in {status}"))
    }

    #[test]
    fn a_served_graph_is_active_and_ready() {
        let status = status_of(
            &json!({"metadata": {"generation": 3}}),
            &Report::healthy("App", None, Some(2), "revision 2 compiled and active"),
        );
        assert_eq!(status["state"], "Active");
        assert_eq!(condition(&status, "Ready")["status"], "True");
        assert_eq!(condition(&status, "Ready")["observedGeneration"], 3);
        assert_eq!(status["lastIssuedRevision"], 2);
    }

    #[test]
    fn a_refused_graph_is_inactive_and_ready_gives_the_refusal() {
        let refusal = Refusal::new(Reason::InvalidResourceGraph, "resource x: unknown field");
        let status = status_of(&json!({}), &Report::refused(refusal));
        assert_eq!(status["state"], "Inactive");
        let accepted = condition(&status, "GraphAccepted");
        assert_eq!(
            (accepted["status"].as_str(), accepted["reason"].as_str()),
            (Some("False"), Some("InvalidResourceGraph"))
        );
        assert_eq!(condition(&status, "KindReady")["status"], "Unknown");
        let ready = condition(&status, "Ready");
        assert_eq!(
            (ready["status"].as_str(), ready["message"].as_str()),
            (Some("False"), Some("resource x: unknown field"))
        );
    }

    #[test]
    fn a_refused_update_keeps_what_the_last_good_graph_reported_and_unchanged_conditions_keep_their_time() {
        let before = json!({"status": {
            "topologicalOrder": ["config", "deployment"],
            "lastIssuedRevision": 4,
            "conditions": [{"type": "KindReady", "status": "Unknown", "lastTransitionTime": "2026-01-01T00:00:00Z"}]}});
        let status = status_of(
            &before,
            &Report::refused(Refusal::new(Reason::BreakingChanges, "no")),
        );
        assert_eq!(status["topologicalOrder"], json!(["config", "deployment"]));
        assert_eq!(status["lastIssuedRevision"], 4);
        assert_eq!(
            condition(&status, "KindReady")["lastTransitionTime"],
            "2026-01-01T00:00:00Z"
        );
        assert_ne!(
            condition(&status, "GraphAccepted")["lastTransitionTime"],
            "2026-01-01T00:00:00Z"
        );
    }
}

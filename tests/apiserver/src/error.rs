//! API errors as the Kubernetes API server reports them: a `Status` object with a reason, an
//! HTTP code, and details naming the object and, for invalid objects, each field.

use serde_json::{Value, json};

/// One field-level cause of an `Invalid` or `Conflict` error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cause {
    /// `FieldValueInvalid`, `FieldValueRequired`, `FieldManagerConflict`, ...
    pub reason: String,
    /// Human-readable message for this field.
    pub message: String,
    /// Field path, e.g. `spec.replicas` (or `.spec.replicas` for apply conflicts, as upstream).
    pub field: String,
}

/// An error reply. `Display` is the `Status` message.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    /// HTTP status code (also `Status.code`).
    pub code: u16,
    /// `Status.reason`: `NotFound`, `AlreadyExists`, `Conflict`, `Invalid`, `BadRequest`, ...
    pub reason: &'static str,
    /// `Status.message`.
    pub message: String,
    /// `Status.details`.
    pub details: Box<Details>,
}

/// `Status.details`.
#[derive(Debug, Clone, Default)]
pub struct Details {
    /// `details.name`.
    pub name: Option<String>,
    /// `details.group`.
    pub group: Option<String>,
    /// `details.kind` (the resource for NotFound/Conflict, the Kind for Invalid, as upstream).
    pub kind: Option<String>,
    /// `details.causes`.
    pub causes: Vec<Cause>,
    /// Seconds for a `Retry-After` header (429 and 503 replies).
    pub retry_after: Option<u64>,
    /// Sent as `details: {}` when nothing else is (the real server's route errors).
    pub empty: bool,
    /// Answered as the plain-text `404 page not found` of the real server's mux (paths under
    /// no served group-version), not as a `Status`.
    pub plain: bool,
}

/// `resource.group` as Kubernetes names a group-resource in messages (`deployments.apps`,
/// `configmaps`).
pub fn qualified(resource: &str, group: &str) -> String {
    if group.is_empty() {
        resource.to_string()
    } else {
        format!("{resource}.{group}")
    }
}

impl ApiError {
    fn new(code: u16, reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            reason,
            message: message.into(),
            details: Box::default(),
        }
    }

    /// The same error naming the object in its details.
    pub fn naming(self, group: &str, kind: &str, name: &str) -> Self {
        self.with_object(group, kind, name)
    }

    fn with_object(mut self, group: &str, kind: &str, name: &str) -> Self {
        self.details.group = Some(group.to_string());
        self.details.kind = Some(kind.to_string());
        self.details.name = Some(name.to_string());
        self
    }

    /// 404 `deployments.apps "x" not found`.
    pub fn not_found(group: &str, resource: &str, name: &str) -> Self {
        Self::new(
            404,
            "NotFound",
            format!("{} \"{name}\" not found", qualified(resource, group)),
        )
        .with_object(group, resource, name)
    }

    /// 404 for a path that names no resource type.
    pub fn no_route() -> Self {
        let mut e = Self::new(
            404,
            "NotFound",
            "the server could not find the requested resource",
        );
        e.details.empty = true;
        e
    }

    /// The real server's `404 page not found` for a path under no served group-version.
    pub fn page_not_found() -> Self {
        let mut e = Self::new(404, "NotFound", "404 page not found");
        e.details.plain = true;
        e
    }

    /// 405 for a method a resource does not take.
    pub fn method_not_supported() -> Self {
        let mut e = Self::new(
            405,
            "MethodNotAllowed",
            "the server does not allow this method on the requested resource",
        );
        e.details.empty = true;
        e
    }

    /// 422 with no causes: a JSON patch that cannot be applied.
    pub fn rejected_patch() -> Self {
        let mut e = Self::new(
            422,
            "Invalid",
            "the server rejected our request due to an error in our request",
        );
        e.details.empty = true;
        e
    }

    /// 415 for a patch in a content type no patch has.
    pub fn unsupported_patch_type() -> Self {
        let mut e = Self::new(415, "UnsupportedMediaType", "415: Unsupported Media Type");
        e.details.empty = true;
        e
    }

    /// 422 for an invalid option of a request (`CreateOptions`, `PatchOptions`, …).
    pub fn invalid_option(options: &str, field: &str, reason: &str, message: String) -> Self {
        Self::invalid(
            "meta.k8s.io",
            options,
            "",
            vec![Cause {
                reason: reason.into(),
                message,
                field: field.into(),
            }],
        )
    }

    /// 409 `deployments.apps "x" already exists`.
    pub fn already_exists(group: &str, resource: &str, name: &str) -> Self {
        Self::new(
            409,
            "AlreadyExists",
            format!("{} \"{name}\" already exists", qualified(resource, group)),
        )
        .with_object(group, resource, name)
    }

    /// 409 Conflict on a stale resourceVersion or failed precondition.
    pub fn conflict(group: &str, resource: &str, name: &str, detail: &str) -> Self {
        Self::new(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {} \"{name}\": {detail}",
                qualified(resource, group)
            ),
        )
        .with_object(group, resource, name)
    }

    /// The standard stale-write conflict.
    pub fn modified(group: &str, resource: &str, name: &str) -> Self {
        Self::conflict(
            group,
            resource,
            name,
            "the object has been modified; please apply your changes to the latest version and try again",
        )
    }

    /// 409 from server-side apply, one cause per conflicting field. `conflicts` holds
    /// (manager as shown, e.g. `"kubectl" using apps/v1`, field path such as `.spec.replicas`);
    /// the message follows upstream's wording for one and for several conflicts.
    pub fn apply_conflicts(conflicts: Vec<(String, String)>) -> Self {
        let message = if let [(manager, field)] = conflicts.as_slice() {
            format!("Apply failed with 1 conflict: conflict with {manager}: {field}")
        } else {
            let mut by_manager: std::collections::BTreeMap<&str, Vec<&str>> = Default::default();
            for (manager, field) in &conflicts {
                by_manager.entry(manager).or_default().push(field);
            }
            let mut lines = Vec::new();
            for (manager, fields) in by_manager {
                lines.push(format!("conflicts with {manager}:"));
                lines.extend(fields.iter().map(|f| format!("- {f}")));
            }
            format!(
                "Apply failed with {} conflicts: {}",
                conflicts.len(),
                lines.join("\n")
            )
        };
        // The real server's apply conflicts name only the fields, not the object.
        let mut e = Self::new(409, "Conflict", message);
        e.details.causes = conflicts
            .into_iter()
            .map(|(manager, field)| Cause {
                reason: "FieldManagerConflict".into(),
                message: format!("conflict with {manager}"),
                field,
            })
            .collect();
        e
    }

    /// 422 `Deployment.apps "x" is invalid: spec.replicas: ...`, one cause per field.
    pub fn invalid(group: &str, kind: &str, name: &str, causes: Vec<Cause>) -> Self {
        let shown: Vec<String> = causes
            .iter()
            .map(|c| format!("{}: {}", c.field, c.message))
            .collect();
        let list = if shown.len() == 1 {
            shown[0].clone()
        } else {
            format!("[{}]", shown.join(", "))
        };
        let mut e = Self::new(
            422,
            "Invalid",
            format!("{} \"{name}\" is invalid: {list}", qualified(kind, group)),
        )
        .with_object(group, kind, name);
        e.details.causes = causes;
        e
    }

    /// 400.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "BadRequest", message)
    }

    /// 403.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(403, "Forbidden", message)
    }

    /// 405.
    pub fn method_not_allowed(message: impl Into<String>) -> Self {
        Self::new(405, "MethodNotAllowed", message)
    }

    /// 406.
    pub fn not_acceptable(message: impl Into<String>) -> Self {
        Self::new(406, "NotAcceptable", message)
    }

    /// 415.
    pub fn unsupported_media_type(message: impl Into<String>) -> Self {
        Self::new(415, "UnsupportedMediaType", message)
    }

    /// 410 Expired: too old resource version.
    pub fn expired(message: impl Into<String>) -> Self {
        Self::new(410, "Expired", message)
    }

    /// 500.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(500, "InternalError", message)
    }

    /// 500 without a reason, as the real server answers an apply it cannot type.
    pub fn untyped_apply(message: impl Into<String>) -> Self {
        Self::new(500, "", message)
    }

    /// An injected error with the reason Kubernetes uses for `code`.
    pub fn injected(code: u16, retry_after: Option<u64>) -> Self {
        let (reason, message) = match code {
            429 => (
                "TooManyRequests",
                "the server has received too many requests and has asked us to try again later",
            ),
            409 => (
                "Conflict",
                "injected conflict: the object has been modified; please apply your changes to the latest version and try again",
            ),
            503 => (
                "ServiceUnavailable",
                "the server is currently unable to handle the request",
            ),
            404 => ("NotFound", "the server could not find the requested resource"),
            _ => (
                "InternalError",
                "an error on the server (\"injected fault\") has prevented the request from succeeding",
            ),
        };
        let mut e = Self::new(code, reason, message);
        e.details.retry_after = retry_after;
        e
    }

    /// The `Status` object.
    pub fn to_status(&self) -> Value {
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        let mut details = serde_json::Map::new();
        // Every field of the real Status is omitempty.
        if self.reason.is_empty() {
            status.as_object_mut().expect("an object").remove("reason");
        }
        if let Some(name) = self.details.name.as_ref().filter(|n| !n.is_empty()) {
            details.insert("name".into(), json!(name));
        }
        if let Some(group) = &self.details.group
            && !group.is_empty()
        {
            details.insert("group".into(), json!(group));
        }
        if let Some(kind) = self.details.kind.as_ref().filter(|k| !k.is_empty()) {
            details.insert("kind".into(), json!(kind));
        }
        if !self.details.causes.is_empty() {
            details.insert(
                "causes".into(),
                self.details
                    .causes
                    .iter()
                    .map(|c| json!({"reason": c.reason, "message": c.message, "field": c.field}))
                    .collect(),
            );
        }
        if let Some(s) = self.details.retry_after {
            details.insert("retryAfterSeconds".into(), json!(s));
        }
        if !details.is_empty() || self.details.empty {
            status["details"] = Value::Object(details);
        }
        status
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_found_names_the_group_resource_and_object() {
        let s = ApiError::not_found("apps", "deployments", "web").to_status();
        assert_eq!(s["message"], "deployments.apps \"web\" not found");
        assert_eq!(
            s["details"],
            json!({"name": "web", "group": "apps", "kind": "deployments"})
        );
        assert_eq!(s["code"], 404);
    }

    #[test]
    fn invalid_lists_every_cause_in_brackets_when_there_are_several() {
        let causes = vec![
            Cause {
                reason: "FieldValueRequired".into(),
                message: "Required value".into(),
                field: "spec.a".into(),
            },
            Cause {
                reason: "FieldValueInvalid".into(),
                message: "Invalid value: 1".into(),
                field: "spec.b".into(),
            },
        ];
        let e = ApiError::invalid("example.com", "Widget", "w", causes);
        assert_eq!(
            e.message,
            "Widget.example.com \"w\" is invalid: [spec.a: Required value, spec.b: Invalid value: 1]"
        );
        assert_eq!(e.to_status()["details"]["causes"][1]["field"], "spec.b");
    }

    #[test]
    fn apply_conflicts_are_counted_and_listed() {
        let e = ApiError::apply_conflicts(vec![("\"alice\"".into(), ".data.k".into())]);
        assert_eq!(
            e.message,
            "Apply failed with 1 conflict: conflict with \"alice\": .data.k"
        );
        let two = vec![
            ("\"a\"".into(), ".data.x".into()),
            ("\"a\"".into(), ".data.y".into()),
        ];
        let e2 = ApiError::apply_conflicts(two);
        assert_eq!(
            e2.message,
            "Apply failed with 2 conflicts: conflicts with \"a\":\n- .data.x\n- .data.y"
        );
        assert_eq!(e.code, 409);
        assert_eq!(
            e.to_status()["details"]["causes"][0]["reason"],
            "FieldManagerConflict"
        );
    }
}

//! `authorization.k8s.io` reviews, answered and never stored: this server accepts any
//! credentials and lets every caller do everything, so every access review is allowed (what
//! `kubectl auth can-i` asks), with the real server's validation of the review itself.

use serde_json::{Value, json};

use crate::error::{ApiError, Cause};

/// Answers a review of `kind` posted as `body`.
///
/// # Errors
/// 422 for a `SelfSubjectAccessReview` that names neither or both of resource and
/// non-resource attributes, as the real server refuses it.
pub fn answer(kind: &str, mut body: Value) -> Result<Value, ApiError> {
    let status = match kind {
        "SelfSubjectAccessReview" => {
            let spec = body.get("spec").cloned().unwrap_or(Value::Null);
            let resource = spec.get("resourceAttributes").is_some_and(|v| !v.is_null());
            let non_resource = spec.get("nonResourceAttributes").is_some_and(|v| !v.is_null());
            if resource == non_resource {
                return Err(ApiError::invalid(
                    "authorization.k8s.io",
                    "",
                    "",
                    vec![Cause {
                        reason: "FieldValueInvalid".into(),
                        message: "Invalid value: null: exactly one of nonResourceAttributes or resourceAttributes must be specified".into(),
                        field: "spec.resourceAttributes".into(),
                    }],
                ));
            }
            json!({"allowed": true})
        }
        _ => json!({
            "resourceRules": [{"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]}],
            "nonResourceRules": [{"verbs": ["*"], "nonResourceURLs": ["*"]}],
            "incomplete": false,
        }),
    };
    if let Some(m) = body.as_object_mut() {
        m.insert("apiVersion".into(), json!("authorization.k8s.io/v1"));
        m.insert("kind".into(), json!(kind));
        m.insert("metadata".into(), json!({}));
        m.insert("status".into(), status);
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_access_review_with_attributes_is_allowed() {
        let r = answer(
            "SelfSubjectAccessReview",
            json!({"spec": {"resourceAttributes": {"verb": "create", "resource": "deployments"}}}),
        )
        .unwrap();
        assert_eq!(r["status"]["allowed"], true);
        assert!(answer("SelfSubjectAccessReview", json!({"spec": {}})).is_err());
    }
}

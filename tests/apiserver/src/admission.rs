//! Validation of built-in kinds and of every object's metadata, with the real server's field
//! paths and wording: names, labels, workload selectors and templates, Job restart policies,
//! Service ports, and the fields that are immutable once set.

use std::sync::LazyLock;

use regex::Regex;
use serde_json::Value;

use crate::error::Cause;

static SUBDOMAIN: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$").expect("valid")
});
static LABEL: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$").expect("valid"));
static QUALIFIED: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$").expect("valid"));
static LABEL_VALUE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$").expect("valid"));

fn cause(reason: &str, field: &str, message: String) -> Cause {
    Cause {
        reason: reason.into(),
        message,
        field: field.into(),
    }
}

fn invalid(field: &str, value: &Value, detail: &str) -> Cause {
    let shown = match value {
        Value::String(s) => format!("{s:?}"),
        other => other.to_string(),
    };
    cause(
        "FieldValueInvalid",
        field,
        format!("Invalid value: {shown}: {detail}"),
    )
}

fn required(field: &str, detail: &str) -> Cause {
    let message = if detail.is_empty() {
        "Required value".to_string()
    } else {
        format!("Required value: {detail}")
    };
    cause("FieldValueRequired", field, message)
}

/// Kinds whose names must be DNS labels rather than subdomains.
fn label_named(kind: &str) -> bool {
    matches!(kind, "Namespace" | "Service")
}

/// Checks an object name.
pub fn name(kind: &str, name: &str) -> Option<Cause> {
    let v = Value::String(name.to_string());
    if label_named(kind) {
        if name.len() > 63 {
            return Some(invalid("metadata.name", &v, "must be no more than 63 characters"));
        }
        if !LABEL.is_match(name) {
            return Some(invalid(
                "metadata.name",
                &v,
                "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')",
            ));
        }
    } else {
        if name.len() > 253 {
            return Some(invalid(
                "metadata.name",
                &v,
                "must be no more than 253 characters",
            ));
        }
        if !SUBDOMAIN.is_match(name) {
            return Some(invalid(
                "metadata.name",
                &v,
                "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')",
            ));
        }
    }
    None
}

fn qualified_name(field: &str, key: &str, out: &mut Vec<Cause>) {
    let v = Value::String(key.to_string());
    let (prefix, name) = match key.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    if let Some(p) = prefix
        && (p.is_empty() || p.len() > 253 || !SUBDOMAIN.is_match(p))
    {
        out.push(invalid(field, &v, "prefix part a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"));
    }
    if name.is_empty() || name.len() > 63 || !QUALIFIED.is_match(name) {
        out.push(invalid(field, &v, "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]') and must be no more than 63 characters"));
    }
}

/// Checks labels and annotation keys.
pub fn metadata(object: &Value, out: &mut Vec<Cause>) {
    if let Some(labels) = object.pointer("/metadata/labels").and_then(Value::as_object) {
        for (k, v) in labels {
            qualified_name("metadata.labels", k, out);
            match v.as_str() {
                Some(s) if s.len() <= 63 && LABEL_VALUE.is_match(s) => {}
                _ => out.push(invalid(
                    "metadata.labels",
                    v,
                    "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')",
                )),
            }
        }
    }
    if let Some(ann) = object.pointer("/metadata/annotations").and_then(Value::as_object) {
        let mut total = 0;
        for (k, v) in ann {
            qualified_name("metadata.annotations", k, out);
            total += k.len() + v.as_str().map_or(0, str::len);
        }
        if total > 256 * 1024 {
            out.push(cause(
                "FieldValueTooLong",
                "metadata.annotations",
                format!("Too long: may not be more than 262144 bytes (was {total})"),
            ));
        }
    }
}

fn selector_matches(selector: &Value, labels: &Value) -> bool {
    match kroxide_schema::selector::Selector::from_structured(selector) {
        Ok(s) => {
            let map = labels
                .as_object()
                .map(|m| {
                    m.iter()
                        .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                        .collect()
                })
                .unwrap_or_default();
            !s.0.is_empty() && s.matches(&map)
        }
        Err(_) => false,
    }
}

fn containers(spec: &Value, base: &str, out: &mut Vec<Cause>) {
    match spec.get("containers").and_then(Value::as_array) {
        Some(list) if !list.is_empty() => {
            for (i, c) in list.iter().enumerate() {
                if c.get("name").and_then(Value::as_str).is_none_or(str::is_empty) {
                    out.push(required(&format!("{base}.containers[{i}].name"), ""));
                }
                if c.get("image").and_then(Value::as_str).is_none_or(str::is_empty) {
                    out.push(required(&format!("{base}.containers[{i}].image"), ""));
                }
            }
        }
        _ => out.push(required(&format!("{base}.containers"), "")),
    }
}

fn immutable(field: &str, old: Option<&Value>, new: Option<&Value>, out: &mut Vec<Cause>) {
    if old != new {
        out.push(invalid(field, new.unwrap_or(&Value::Null), "field is immutable"));
    }
}

/// Validates a built-in object on create (`old` = None) or update.
pub fn builtin(kind: &str, object: &Value, old: Option<&Value>) -> Vec<Cause> {
    let mut out = Vec::new();
    metadata(object, &mut out);
    let spec = object.get("spec").cloned().unwrap_or(Value::Null);
    match kind {
        "Deployment" | "ReplicaSet" | "StatefulSet" | "DaemonSet" => {
            if let Some(r) = spec.get("replicas").and_then(Value::as_i64)
                && r < 0
            {
                out.push(invalid(
                    "spec.replicas",
                    &spec["replicas"],
                    "must be greater than or equal to 0",
                ));
            }
            match spec.get("selector") {
                None | Some(Value::Null) => out.push(required("spec.selector", "")),
                Some(sel) => {
                    let labels = spec
                        .pointer("/template/metadata/labels")
                        .cloned()
                        .unwrap_or(Value::Null);
                    if !selector_matches(sel, &labels) {
                        out.push(invalid(
                            "spec.template.metadata.labels",
                            &labels,
                            "`selector` does not match template `labels`",
                        ));
                    }
                }
            }
            containers(
                spec.pointer("/template/spec").unwrap_or(&Value::Null),
                "spec.template.spec",
                &mut out,
            );
            if let Some(old) = old {
                immutable(
                    "spec.selector",
                    old.pointer("/spec/selector"),
                    spec.get("selector"),
                    &mut out,
                );
            }
        }
        "Job" => {
            let tspec = spec.pointer("/template/spec").cloned().unwrap_or(Value::Null);
            containers(&tspec, "spec.template.spec", &mut out);
            match tspec.get("restartPolicy").and_then(Value::as_str) {
                Some("OnFailure" | "Never") => {}
                None => out.push(required(
                    "spec.template.spec.restartPolicy",
                    "valid values: \"OnFailure\", \"Never\"",
                )),
                Some(other) => out.push(cause(
                    "FieldValueNotSupported",
                    "spec.template.spec.restartPolicy",
                    format!("Unsupported value: {other:?}: supported values: \"OnFailure\", \"Never\""),
                )),
            }
            if let Some(old) = old {
                immutable(
                    "spec.template",
                    old.pointer("/spec/template"),
                    spec.get("template"),
                    &mut out,
                );
                immutable(
                    "spec.selector",
                    old.pointer("/spec/selector"),
                    spec.get("selector"),
                    &mut out,
                );
            }
        }
        "Pod" => containers(&spec, "spec", &mut out),
        "Service" => {
            let ty = spec.get("type").and_then(Value::as_str).unwrap_or("ClusterIP");
            let headless = spec.get("clusterIP").and_then(Value::as_str) == Some("None");
            match spec.get("ports").and_then(Value::as_array) {
                Some(ports) if !ports.is_empty() => {
                    for (i, p) in ports.iter().enumerate() {
                        match p.get("port").and_then(Value::as_i64) {
                            Some(n) if (1..=65535).contains(&n) => {}
                            Some(_) => out.push(invalid(
                                &format!("spec.ports[{i}].port"),
                                &p["port"],
                                "must be between 1 and 65535, inclusive",
                            )),
                            None => out.push(required(&format!("spec.ports[{i}].port"), "")),
                        }
                    }
                }
                _ if ty == "ExternalName" || headless => {}
                _ => out.push(required("spec.ports", "")),
            }
            if let Some(old) = old
                && old.pointer("/spec/clusterIP").is_some()
                && spec.get("clusterIP").is_some()
            {
                immutable(
                    "spec.clusterIP",
                    old.pointer("/spec/clusterIP"),
                    spec.get("clusterIP"),
                    &mut out,
                );
            }
        }
        "ConfigMap" | "Secret" => {
            for field in ["data", "binaryData", "stringData"] {
                for k in object
                    .get(field)
                    .and_then(Value::as_object)
                    .into_iter()
                    .flat_map(|m| m.keys())
                {
                    let ok = !k.is_empty()
                        && k.len() <= 253
                        && k.chars().all(|c| c.is_ascii_alphanumeric() || "-._".contains(c));
                    if !ok {
                        out.push(invalid(
                            &format!("{field}[{k}]"),
                            &Value::String(k.clone()),
                            "a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')",
                        ));
                    }
                }
            }
            if let Some(old) = old
                && old.get("immutable") == Some(&Value::Bool(true))
            {
                for field in ["data", "binaryData"] {
                    if old.get(field) != object.get(field) {
                        out.push(cause(
                            "FieldValueForbidden",
                            field,
                            "Forbidden: field is immutable when `immutable` is set".into(),
                        ));
                    }
                }
            }
        }
        _ => {}
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn names_are_subdomains_or_labels_by_kind() {
        assert!(name("ConfigMap", "a.b-c").is_none());
        assert!(name("Service", "a.b").is_some());
        let c = name("ConfigMap", "Bad_Name").unwrap();
        assert_eq!(c.field, "metadata.name");
        assert!(
            c.message
                .starts_with("Invalid value: \"Bad_Name\": a lowercase RFC 1123 subdomain")
        );
    }

    #[test]
    fn a_deployment_whose_selector_misses_its_template_is_invalid() {
        let d = json!({"metadata": {"name": "d"}, "spec": {"selector": {"matchLabels": {"app": "x"}},
            "template": {"metadata": {"labels": {"app": "y"}}, "spec": {"containers": [{"name": "c"}]}}}});
        let fields: Vec<String> = builtin("Deployment", &d, None)
            .into_iter()
            .map(|c| c.field)
            .collect();
        assert_eq!(
            fields,
            [
                "spec.template.metadata.labels",
                "spec.template.spec.containers[0].image"
            ]
        );
    }

    #[test]
    fn jobs_need_on_failure_or_never() {
        let j = json!({"metadata": {"name": "j"}, "spec": {"template": {"spec": {"restartPolicy": "Always",
            "containers": [{"name": "c", "image": "x"}]}}}});
        let c = builtin("Job", &j, None);
        assert_eq!(
            c[0].message,
            "Unsupported value: \"Always\": supported values: \"OnFailure\", \"Never\""
        );
    }

    #[test]
    fn bad_label_values_are_rejected() {
        let o = json!({"metadata": {"labels": {"ok": "v", "bad": "-x-"}}});
        let mut out = Vec::new();
        metadata(&o, &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].field, "metadata.labels");
    }
}

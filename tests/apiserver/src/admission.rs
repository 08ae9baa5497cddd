//! Validation of built-in kinds and of every object's metadata, with the real server's field
//! paths and wording: names, labels, workload selectors and templates, Job restart policies,
//! Service ports, and the fields that are immutable once set.

use std::sync::LazyLock;

use regex::Regex;
use serde_json::{Value, json};

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
    matches!(kind, "Namespace" | "Service" | "StatefulSet")
}

/// Kinds whose names are only URL path segments (RBAC: `system:controller:x` is valid).
fn path_segment_named(kind: &str) -> bool {
    matches!(
        kind,
        "Role" | "ClusterRole" | "RoleBinding" | "ClusterRoleBinding"
    )
}

const SUBDOMAIN_MESSAGE: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
const LABEL_MESSAGE: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";
const QUALIFIED_MESSAGE: &str = "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')";

/// Why `name` is not a DNS label, in the real server's words (`must not contain dots` for a
/// subdomain that is not a label).
fn label_problem(name: &str) -> Option<&'static str> {
    if name.len() > 63 {
        Some("must be no more than 63 characters")
    } else if LABEL.is_match(name) {
        None
    } else if name.contains('.') && SUBDOMAIN.is_match(name) {
        Some("must not contain dots")
    } else {
        Some(LABEL_MESSAGE)
    }
}

/// Checks an object name.
pub fn name(kind: &str, name: &str) -> Option<Cause> {
    let v = Value::String(name.to_string());
    let problem = if path_segment_named(kind) {
        match name {
            "." => Some("may not be '.'"),
            ".." => Some("may not be '..'"),
            n if n.contains('/') => Some("may not contain '/'"),
            n if n.contains('%') => Some("may not contain '%'"),
            _ => None,
        }
    } else if label_named(kind) {
        label_problem(name)
    } else if name.len() > 253 {
        Some("must be no more than 253 characters")
    } else if !SUBDOMAIN.is_match(name) {
        Some(SUBDOMAIN_MESSAGE)
    } else {
        None
    };
    problem.map(|p| invalid("metadata.name", &v, p))
}

/// The warning the real server gives for a name that is a subdomain but not a DNS label, for
/// kinds whose names end up in Pod names or hostnames.
pub fn name_warning(kind: &str, name: &str) -> Option<String> {
    let used = match kind {
        "Deployment" | "ReplicaSet" | "Job" => "Pod names and hostnames",
        "Pod" => "the Pod's hostname",
        _ => return None,
    };
    let problem = label_problem(name)?;
    Some(format!(
        "metadata.name: this is used in {used}, which can result in surprising behavior; a DNS label is recommended: [{problem}]"
    ))
}

/// Checks a generateName prefix as the real server does: as a name with its trailing dash.
pub fn generate_name(kind: &str, prefix: &str) -> Option<Cause> {
    let trimmed = prefix.strip_suffix('-').unwrap_or(prefix);
    let mut c = name(kind, trimmed)?;
    c.field = "metadata.generateName".into();
    c.message = c
        .message
        .replacen(&format!("{trimmed:?}"), &format!("{prefix:?}"), 1);
    Some(c)
}

fn qualified_name(field: &str, key: &str, out: &mut Vec<Cause>) {
    let v = Value::String(key.to_string());
    let parts: Vec<&str> = key.split('/').collect();
    let name = match parts.as_slice() {
        [name] => *name,
        [prefix, name] => {
            if prefix.is_empty() {
                out.push(invalid(field, &v, "prefix part must be non-empty"));
            } else if prefix.len() > 253 {
                out.push(invalid(
                    field,
                    &v,
                    "prefix part must be no more than 253 characters",
                ));
            } else if !SUBDOMAIN.is_match(prefix) {
                out.push(invalid(field, &v, &format!("prefix part {SUBDOMAIN_MESSAGE}")));
            }
            name
        }
        _ => {
            out.push(invalid(
                field,
                &v,
                &format!("a valid label key {QUALIFIED_MESSAGE} with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"),
            ));
            return;
        }
    };
    if name.is_empty() {
        out.push(invalid(field, &v, "name part must be non-empty"));
    } else if name.len() > 63 {
        out.push(invalid(field, &v, "name part must be no more than 63 bytes"));
    }
    if !QUALIFIED.is_match(name) {
        out.push(invalid(field, &v, &format!("name part {QUALIFIED_MESSAGE}")));
    }
}

/// Built-in kinds' finalizers must be standard names or qualified with a domain (custom
/// resources and CRDs only need qualified names).
fn standard_finalizers(object: &Value, out: &mut Vec<Cause>) {
    let list = object.pointer("/metadata/finalizers").and_then(Value::as_array);
    for (i, f) in list.into_iter().flatten().enumerate() {
        standard_finalizer(
            &format!("metadata.finalizers[{i}]"),
            f.as_str().unwrap_or_default(),
            out,
        );
    }
}

fn standard_finalizer(field: &str, f: &str, out: &mut Vec<Cause>) {
    if !matches!(f, "kubernetes" | "orphan" | "foregroundDeletion") && !f.contains('/') {
        out.push(invalid(
            field,
            &Value::String(f.to_string()),
            "name is neither a standard finalizer name nor is it fully qualified",
        ));
    }
}

/// Why a label selector's key or value is refused, as the real server says it
/// (`values[0][app]: Invalid value: "-b-": a valid label …`), if it is.
pub fn selector_problem(key: &str, values: &[String]) -> Option<String> {
    let mut causes = Vec::new();
    qualified_name("<nil>", key, &mut causes);
    if let Some(c) = causes.first() {
        return Some(format!("{}: {}", c.field, c.message));
    }
    values.iter().enumerate().find_map(|(i, v)| {
        let problem = if v.len() > 63 {
            "must be no more than 63 bytes"
        } else if LABEL_VALUE.is_match(v) {
            return None;
        } else {
            LABEL_VALUE_MESSAGE
        };
        Some(format!("values[{i}][{key}]: Invalid value: {v:?}: {problem}"))
    })
}

const LABEL_VALUE_MESSAGE: &str = "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')";

/// Checks labels and annotation keys.
pub fn metadata(object: &Value, out: &mut Vec<Cause>) {
    if let Some(labels) = object.pointer("/metadata/labels").and_then(Value::as_object) {
        for (k, v) in labels {
            qualified_name("metadata.labels", k, out);
            match v.as_str() {
                Some(s) if s.len() > 63 => out.push(invalid("metadata.labels", v, "must be no more than 63 bytes")),
                Some(s) if LABEL_VALUE.is_match(s) => {}
                _ => out.push(invalid(
                    "metadata.labels",
                    v,
                    "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')",
                )),
            }
        }
    }
    if let Some(list) = object.pointer("/metadata/finalizers").and_then(Value::as_array) {
        for (i, f) in list.iter().enumerate() {
            qualified_name(
                &format!("metadata.finalizers[{i}]"),
                f.as_str().unwrap_or_default(),
                out,
            );
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
    if kind != "CustomResourceDefinition" {
        standard_finalizers(object, &mut out);
    }
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
            let labels = spec
                .pointer("/template/metadata/labels")
                .cloned()
                .unwrap_or(Value::Null);
            let selector = spec.get("selector").filter(|s| !s.is_null());
            if selector.is_none() {
                out.push(required("spec.selector", ""));
            }
            match selector {
                // Without a selector the template's labels cannot match it either.
                None => out.push(invalid(
                    "spec.template.metadata.labels",
                    &labels,
                    "`selector` does not match template `labels`",
                )),
                Some(sel) => {
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
                // The real server words every other value (Always too) as a missing one.
                _ => out.push(required(
                    "spec.template.spec.restartPolicy",
                    "valid values: \"OnFailure\", \"Never\"",
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
                        if let Some(n) = p.get("targetPort").and_then(Value::as_i64)
                            && !(1..=65535).contains(&n)
                        {
                            out.push(invalid(
                                &format!("spec.ports[{i}].targetPort"),
                                &p["targetPort"],
                                "must be between 1 and 65535, inclusive",
                            ));
                        }
                    }
                }
                _ if ty == "ExternalName" || headless => {}
                _ => out.push(required("spec.ports", "")),
            }
            // The real server moves a changed clusterIP into clusterIPs and refuses that.
            if let Some(old) = old
                && let Some(was) = old.pointer("/spec/clusterIP")
                && let Some(now) = spec.get("clusterIP")
                && was != now
            {
                out.push(invalid(
                    "spec.clusterIPs[0]",
                    &json!([now]),
                    "may not change once set",
                ));
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
            let size: usize = ["data", "binaryData"]
                .iter()
                .filter_map(|f| object.get(*f).and_then(Value::as_object))
                .flat_map(|m| m.iter())
                .map(|(k, v)| k.len() + v.as_str().map_or(0, str::len))
                .sum();
            if kind == "ConfigMap" && size > 1024 * 1024 {
                out.push(cause(
                    "FieldValueTooLong",
                    "[]",
                    "Too long: may not be more than 1048576 bytes".into(),
                ));
            }
            if kind == "Secret" {
                secret(object, old, &mut out);
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
        "RoleBinding" | "ClusterRoleBinding" => {
            if let Some(old) = old
                && old.get("roleRef") != object.get("roleRef")
            {
                let r = object.get("roleRef").cloned().unwrap_or(Value::Null);
                // Go prints the struct with its field names.
                let shown = format!(
                    "{{\"APIGroup\":{},\"Kind\":{},\"Name\":{}}}",
                    r.get("apiGroup").cloned().unwrap_or(Value::String(String::new())),
                    r.get("kind").cloned().unwrap_or(Value::String(String::new())),
                    r.get("name").cloned().unwrap_or(Value::String(String::new())),
                );
                out.push(cause(
                    "FieldValueInvalid",
                    "roleRef",
                    format!("Invalid value: {shown}: cannot change roleRef"),
                ));
            }
        }
        _ => {}
    }
    out
}

/// A Secret's type is immutable, and typed Secrets need their keys.
fn secret(object: &Value, old: Option<&Value>, out: &mut Vec<Cause>) {
    let ty = object.get("type").and_then(Value::as_str).unwrap_or("Opaque");
    if let Some(old) = old
        && old.get("type") != object.get("type")
    {
        out.push(invalid("type", &Value::String(ty.into()), "field is immutable"));
    }
    let required_keys: &[&str] = match ty {
        "kubernetes.io/tls" => &["tls.crt", "tls.key"],
        "kubernetes.io/dockerconfigjson" => &[".dockerconfigjson"],
        "kubernetes.io/dockercfg" => &[".dockercfg"],
        "kubernetes.io/ssh-auth" => &["ssh-privatekey"],
        _ => &[],
    };
    let data = object.get("data").and_then(Value::as_object);
    for k in required_keys {
        if data.is_none_or(|d| !d.contains_key(*k)) {
            out.push(required(&format!("data[{k}]"), ""));
        }
    }
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
            "Required value: valid values: \"OnFailure\", \"Never\""
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

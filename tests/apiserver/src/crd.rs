//! CustomResourceDefinitions: defaulting and validation on write (structural schemas, names,
//! exactly one storage version), the resource types a CRD serves, and its status conditions
//! (`NamesAccepted`, `Established`, `Terminating`) with upstream's reasons and messages.

use std::sync::Arc;

use serde_json::{Value, json};

use crate::{
    error::Cause,
    registry::{PrinterColumn, ResourceType, ScalePaths},
};

/// The finalizer the server puts on every CRD so that its objects are deleted first.
pub const CLEANUP_FINALIZER: &str = "customresourcecleanup.apiextensions.k8s.io";

fn s<'a>(v: &'a Value, ptr: &str) -> &'a str {
    v.pointer(ptr).and_then(Value::as_str).unwrap_or_default()
}

/// Fills `names.singular`, `names.listKind` and `conversion`.
pub fn default(crd: &mut Value) {
    let kind = s(crd, "/spec/names/kind").to_string();
    if let Some(names) = crd.pointer_mut("/spec/names").and_then(Value::as_object_mut) {
        if names
            .get("singular")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
        {
            names.insert("singular".into(), json!(kind.to_ascii_lowercase()));
        }
        if names
            .get("listKind")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
        {
            names.insert("listKind".into(), json!(format!("{kind}List")));
        }
    }
    if let Some(spec) = crd.get_mut("spec").and_then(Value::as_object_mut)
        && spec.get("conversion").is_none()
    {
        spec.insert("conversion".into(), json!({"strategy": "None"}));
    }
}

fn invalid(field: &str, value: &Value, detail: &str) -> Cause {
    let shown = match value {
        Value::String(s) => format!("{s:?}"),
        other => other.to_string(),
    };
    Cause {
        reason: "FieldValueInvalid".into(),
        message: format!("Invalid value: {shown}: {detail}"),
        field: field.into(),
    }
}

fn required(field: &str, detail: &str) -> Cause {
    Cause {
        reason: "FieldValueRequired".into(),
        message: if detail.is_empty() {
            "Required value".into()
        } else {
            format!("Required value: {detail}")
        },
        field: field.into(),
    }
}

/// Checks that a schema is structural: every specified field has a type (or is
/// int-or-string / preserves unknown fields), and the root is an object.
fn structural(schema: &Value, path: &str, root: bool, out: &mut Vec<Cause>) {
    let exempt = schema.get("x-kubernetes-int-or-string") == Some(&json!(true))
        || schema.get("x-kubernetes-preserve-unknown-fields") == Some(&json!(true));
    match schema.get("type").and_then(Value::as_str) {
        None | Some("") if root => {
            out.push(required(&format!("{path}.type"), "must not be empty at the root"))
        }
        None | Some("") if !exempt => out.push(required(
            &format!("{path}.type"),
            "must not be empty for specified object fields",
        )),
        Some(t) if root && t != "object" => out.push(invalid(
            &format!("{path}.type"),
            &json!(t),
            "must be object at the root",
        )),
        _ => {}
    }
    if let Some(props) = schema.get("properties").and_then(Value::as_object) {
        for (k, p) in props {
            structural(p, &format!("{path}.properties[{k}]"), false, out);
        }
    }
    if let Some(items) = schema.get("items") {
        if items.is_object() {
            structural(items, &format!("{path}.items"), false, out);
        }
    } else if schema.get("type").and_then(Value::as_str) == Some("array") {
        out.push(required(&format!("{path}.items"), "must be specified"));
    }
    if let Some(add @ Value::Object(_)) = schema.get("additionalProperties") {
        structural(add, &format!("{path}.additionalProperties"), false, out);
    }
}

/// Validates a CRD (after [`default`]); `old` on updates.
pub fn validate(crd: &Value, old: Option<&Value>) -> Vec<Cause> {
    let mut out = Vec::new();
    let group = s(crd, "/spec/group");
    let plural = s(crd, "/spec/names/plural");
    let kind = s(crd, "/spec/names/kind");
    let name = s(crd, "/metadata/name");
    if group.is_empty() {
        out.push(required("spec.group", ""));
    } else if !group.contains('.') {
        out.push(invalid(
            "spec.group",
            &json!(group),
            "should be a domain with at least one dot",
        ));
    }
    // Groups Kubernetes owns need an approval annotation naming the API review.
    let protected = group == "k8s.io"
        || group == "kubernetes.io"
        || group.ends_with(".k8s.io")
        || group.ends_with(".kubernetes.io");
    if protected
        && crd
            .pointer("/metadata/annotations/api-approved.kubernetes.io")
            .is_none()
    {
        out.push(required(
            "metadata.annotations[api-approved.kubernetes.io]",
            "protected groups must have approval annotation \"api-approved.kubernetes.io\", see https://github.com/kubernetes/enhancements/pull/1111",
        ));
    }
    if plural.is_empty() {
        out.push(required("spec.names.plural", ""));
    }
    if kind.is_empty() {
        out.push(required("spec.names.kind", ""));
    }
    if !plural.is_empty() && !group.is_empty() && name != format!("{plural}.{group}") {
        out.push(invalid(
            "metadata.name",
            &json!(name),
            "must be spec.names.plural+\".\"+spec.group",
        ));
    }
    match s(crd, "/spec/scope") {
        "Namespaced" | "Cluster" => {}
        "" => out.push(required("spec.scope", "")),
        other => out.push(Cause {
            reason: "FieldValueNotSupported".into(),
            message: format!("Unsupported value: {other:?}: supported values: \"Cluster\", \"Namespaced\""),
            field: "spec.scope".into(),
        }),
    }
    let versions = crd
        .pointer("/spec/versions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if versions.is_empty() {
        out.push(required(
            "spec.versions",
            "must have exactly one version marked as storage version",
        ));
    } else {
        let storage = versions
            .iter()
            .filter(|v| v.get("storage") == Some(&json!(true)))
            .count();
        if storage != 1 {
            // The real server shows its internal versions, Go field names and all.
            let shown: Vec<String> = versions
                .iter()
                .map(|v| {
                    format!(
                        "{{\"Name\":{},\"Served\":{},\"Storage\":{},\"Deprecated\":{},\"DeprecationWarning\":null,\"Schema\":null,\"Subresources\":null,\"AdditionalPrinterColumns\":null,\"SelectableFields\":null}}",
                        v["name"],
                        v.get("served").cloned().unwrap_or(json!(false)),
                        v.get("storage").cloned().unwrap_or(json!(false)),
                        v.get("deprecated").cloned().unwrap_or(json!(false)),
                    )
                })
                .collect();
            out.push(Cause {
                reason: "FieldValueInvalid".into(),
                message: format!(
                    "Invalid value: [{}]: must have exactly one version marked as storage version",
                    shown.join(",")
                ),
                field: "spec.versions".into(),
            });
            if storage == 0 && strings(crd, "/status/storedVersions").is_empty() {
                out.push(invalid(
                    "status.storedVersions",
                    &Value::Null,
                    "must have at least one stored version",
                ));
            }
        }
        if !versions.iter().any(|v| v.get("served") == Some(&json!(true))) {
            out.push(invalid(
                "spec.versions",
                &Value::Null,
                "must have at least one served version",
            ));
        }
        // One schema (and one column list) for every version is kept, and reported, at the top
        // of the internal type: `spec.validation`, `spec.additionalPrinterColumns`.
        let shared = |ptr: &str| {
            versions
                .iter()
                .all(|v| v.pointer(ptr) == versions[0].pointer(ptr))
        };
        let shared_schema = shared("/schema");
        let shared_columns = shared("/additionalPrinterColumns");
        for (i, v) in versions.iter().enumerate() {
            let base = format!("spec.versions[{i}]");
            if s(v, "/name").is_empty() {
                out.push(required(&format!("{base}.name"), ""));
            }
            if i == 0 || !shared_columns {
                let columns = if shared_columns {
                    "spec".to_string()
                } else {
                    base.clone()
                };
                for (j, c) in v
                    .get("additionalPrinterColumns")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .enumerate()
                {
                    let path = s(c, "/jsonPath");
                    if !path.starts_with('.') {
                        out.push(invalid(
                            &format!("{columns}.additionalPrinterColumns[{j}].JSONPath"),
                            &json!(path),
                            "must be a simple json path starting with .",
                        ));
                    }
                }
            }
            if shared_schema && i > 0 {
                continue;
            }
            let schema_base = if shared_schema {
                "spec.validation".to_string()
            } else {
                format!("{base}.schema")
            };
            match v.pointer("/schema/openAPIV3Schema") {
                Some(schema) => structural(schema, &format!("{schema_base}.openAPIV3Schema"), true, &mut out),
                None => out.push(required(
                    &format!("{base}.schema.openAPIV3Schema"),
                    "schemas are required",
                )),
            }
        }
    }
    if let Some(old) = old
        && s(old, "/spec/group") != group
    {
        out.push(invalid("spec.group", &json!(group), "field is immutable"));
    }
    out
}

fn columns(version: &Value) -> Option<Vec<PrinterColumn>> {
    let list = version.get("additionalPrinterColumns")?.as_array()?;
    Some(
        list.iter()
            .map(|c| PrinterColumn {
                name: s(c, "/name").into(),
                type_: s(c, "/type").into(),
                format: s(c, "/format").into(),
                description: s(c, "/description").into(),
                priority: c.get("priority").and_then(Value::as_i64).unwrap_or(0),
                json_path: s(c, "/jsonPath").into(),
            })
            .collect(),
    )
}

fn strings(v: &Value, ptr: &str) -> Vec<String> {
    v.pointer(ptr)
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(|x| x.as_str().map(String::from)).collect())
        .unwrap_or_default()
}

/// The resource types a CRD serves, one per served version.
pub fn types(crd: &Value, discoverable: bool) -> Vec<ResourceType> {
    let name = s(crd, "/metadata/name").to_string();
    let group = s(crd, "/spec/group").to_string();
    let kind = s(crd, "/spec/names/kind").to_string();
    let storage_version = crd
        .pointer("/spec/versions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .find(|v| v.get("storage") == Some(&json!(true)))
        .map(|v| s(v, "/name").to_string());
    let namespaced = s(crd, "/spec/scope") != "Cluster";
    crd.pointer("/spec/versions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|v| v.get("served") == Some(&json!(true)))
        .map(|v| ResourceType {
            group: group.clone(),
            version: s(v, "/name").into(),
            kind: kind.clone(),
            list_kind: match s(crd, "/spec/names/listKind") {
                "" => format!("{kind}List"),
                lk => lk.into(),
            },
            plural: s(crd, "/spec/names/plural").into(),
            singular: match s(crd, "/spec/names/singular") {
                "" => kind.to_ascii_lowercase(),
                sg => sg.into(),
            },
            namespaced,
            short_names: strings(crd, "/spec/names/shortNames"),
            categories: strings(crd, "/spec/names/categories"),
            status: v.pointer("/subresources/status").is_some(),
            scale: v.pointer("/subresources/scale").map(|sc| ScalePaths {
                spec_replicas: s(sc, "/specReplicasPath").into(),
                status_replicas: s(sc, "/statusReplicasPath").into(),
                label_selector: sc
                    .get("labelSelectorPath")
                    .and_then(Value::as_str)
                    .map(String::from),
            }),
            schema: v.pointer("/schema/openAPIV3Schema").cloned().map(Arc::new),
            columns: columns(v),
            crd: Some(name.clone()),
            storage_version: storage_version.clone(),
            generation: true,
            discoverable,
        })
        .collect()
}

fn condition(type_: &str, status: &str, reason: &str, message: &str, now: &str) -> Value {
    json!({"type": type_, "status": status, "lastTransitionTime": now, "reason": reason, "message": message})
}

/// Merges conditions, keeping `lastTransitionTime` of those whose status did not change.
fn set_conditions(old: &[Value], new: Vec<Value>) -> Vec<Value> {
    let mut out: Vec<Value> = old
        .iter()
        .filter(|o| !new.iter().any(|n| n["type"] == o["type"]))
        .cloned()
        .collect();
    for mut n in new {
        if let Some(o) = old.iter().find(|o| o["type"] == n["type"])
            && o["status"] == n["status"]
        {
            n["lastTransitionTime"] = o["lastTransitionTime"].clone();
        }
        out.push(n);
    }
    out
}

/// The names of `crd` another CRD of its group (`others`: their served types) already has, as
/// the real naming controller reports them: (reason, message) of the last conflict found in
/// its order — plural, singular, short names, kind, list kind.
pub fn name_conflict(crd: &Value, others: &[Arc<ResourceType>]) -> Option<(&'static str, String)> {
    let plural = s(crd, "/spec/names/plural");
    let singular = s(crd, "/spec/names/singular");
    let kind = s(crd, "/spec/names/kind");
    let list_kind = match s(crd, "/spec/names/listKind") {
        "" => format!("{kind}List"),
        l => l.to_string(),
    };
    let used = |f: &dyn Fn(&ResourceType) -> bool| others.iter().any(|t| f(t));
    let mut found = None;
    if used(&|t| t.plural == plural || t.singular == plural) {
        found = Some(("PluralConflict", format!("{plural:?} is already in use")));
    }
    if !singular.is_empty() && used(&|t| t.plural == singular || t.singular == singular) {
        found = Some(("SingularConflict", format!("{singular:?} is already in use")));
    }
    for short in strings(crd, "/spec/names/shortNames") {
        if used(&|t| t.short_names.contains(&short)) {
            found = Some(("ShortNamesConflict", format!("{short:?} is already in use")));
        }
    }
    if used(&|t| t.kind == kind) {
        found = Some(("KindConflict", format!("{kind:?} is already in use")));
    }
    if used(&|t| t.list_kind == list_kind) {
        found = Some(("ListKindConflict", format!("{list_kind:?} is already in use")));
    }
    found
}

/// The status a CRD should have: `conflict` is a names conflict (reason, message), if any.
pub fn status(
    crd: &Value,
    conflict: Option<&(&'static str, String)>,
    established: bool,
    terminating: bool,
    now: &str,
) -> Value {
    let old = crd.get("status").cloned().unwrap_or(json!({}));
    let old_conditions = old
        .get("conditions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let mut conditions = Vec::new();
    let mut status = json!({"conditions": []});
    match conflict {
        None => {
            conditions.push(condition(
                "NamesAccepted",
                "True",
                "NoConflicts",
                "no conflicts found",
                now,
            ));
            let names = crd.pointer("/spec/names").cloned().unwrap_or(json!({}));
            status["acceptedNames"] = names;
            if established {
                conditions.push(condition(
                    "Established",
                    "True",
                    "InitialNamesAccepted",
                    "the initial names have been accepted",
                    now,
                ));
            } else {
                conditions.push(condition(
                    "Established",
                    "False",
                    "Installing",
                    "the initial names have been accepted",
                    now,
                ));
            }
        }
        Some((reason, message)) if *reason == "ShortNamesConflict" => {
            conditions.push(condition("NamesAccepted", "False", reason, message, now));
            let mut names = crd.pointer("/spec/names").cloned().unwrap_or(json!({}));
            if let Some(n) = names.as_object_mut() {
                n.remove("shortNames");
            }
            status["acceptedNames"] = names;
            let (st, why, text) = if established {
                (
                    "True",
                    "InitialNamesAccepted",
                    "the initial names have been accepted",
                )
            } else {
                ("False", "Installing", "the initial names have been accepted")
            };
            conditions.push(condition("Established", st, why, text, now));
        }
        Some((reason, message)) => {
            conditions.push(condition("NamesAccepted", "False", reason, message, now));
            conditions.push(condition(
                "Established",
                "False",
                "NotAccepted",
                "not all names are accepted",
                now,
            ));
            status["acceptedNames"] = old
                .get("acceptedNames")
                .cloned()
                .unwrap_or(json!({"plural": "", "kind": ""}));
        }
    }
    if terminating {
        conditions.push(condition(
            "Terminating",
            "True",
            "InstanceDeletionInProgress",
            "CustomResource deletion is in progress",
            now,
        ));
    }
    status["conditions"] = Value::Array(set_conditions(&old_conditions, conditions));
    let mut stored = strings(&old, "/storedVersions");
    for v in crd
        .pointer("/spec/versions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if v.get("storage") == Some(&json!(true)) {
            let name = s(v, "/name").to_string();
            if !stored.contains(&name) {
                stored.push(name);
            }
        }
    }
    status["storedVersions"] = json!(stored);
    status
}

/// The status a CRD is created with, before its names are accepted: no conditions yet, its
/// storage version stored.
pub fn initial_status(crd: &mut Value) {
    let stored: Vec<Value> = crd
        .pointer("/spec/versions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|v| v.get("storage") == Some(&json!(true)))
        .map(|v| v["name"].clone())
        .collect();
    if let Some(m) = crd.as_object_mut() {
        let status = m.entry("status").or_insert_with(|| json!({}));
        if let Some(st) = status.as_object_mut() {
            st.insert("conditions".into(), Value::Null);
            st.insert("storedVersions".into(), Value::Array(stored));
        }
    }
}

/// Whether a CRD's `Established` condition is true.
pub fn is_established(crd: &Value) -> bool {
    crd.pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|cs| {
            cs.iter()
                .any(|c| c["type"] == "Established" && c["status"] == "True")
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn widget() -> Value {
        json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": "widgets.example.com"},
            "spec": {"group": "example.com", "scope": "Namespaced",
                "names": {"plural": "widgets", "kind": "Widget", "shortNames": ["wd"]},
                "versions": [{"name": "v1", "served": true, "storage": true,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": [{"name": "Size", "type": "integer", "jsonPath": ".spec.size"}],
                    "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                        "spec": {"type": "object", "properties": {"size": {"type": "integer"}}}}}}}]}})
    }

    #[test]
    fn a_valid_crd_gets_defaults_and_serves_its_version() {
        let mut c = widget();
        default(&mut c);
        assert!(validate(&c, None).is_empty(), "{:?}", validate(&c, None));
        assert_eq!(c["spec"]["names"]["listKind"], "WidgetList");
        let t = &types(&c, true)[0];
        assert_eq!(
            (t.plural.as_str(), t.singular.as_str(), t.status),
            ("widgets", "widget", true)
        );
        assert_eq!(t.columns.as_ref().unwrap()[0].json_path, ".spec.size");
    }

    #[test]
    fn a_crd_named_wrongly_or_without_a_typed_schema_is_rejected() {
        let mut c = widget();
        c["metadata"]["name"] = json!("widget.example.com");
        c["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["x"] =
            json!({});
        let fields: Vec<String> = validate(&c, None).into_iter().map(|c| c.field).collect();
        assert_eq!(
            fields,
            [
                "metadata.name",
                "spec.validation.openAPIV3Schema.properties[spec].properties[x].type"
            ]
        );
    }

    #[test]
    fn status_reports_accepted_names_and_establishment_as_upstream() {
        let c = widget();
        let st = status(&c, None, true, false, "2026-01-01T00:00:00Z");
        assert_eq!(st["conditions"][1]["reason"], "InitialNamesAccepted");
        assert_eq!(st["storedVersions"], json!(["v1"]));
        let mut c2 = c.clone();
        c2["status"] = st.clone();
        let again = status(&c2, None, true, false, "2030-01-01T00:00:00Z");
        assert_eq!(again, st, "transition times kept while nothing changes");
        assert!(is_established(&c2));
    }
}

//! Server-side printing: `meta.k8s.io/v1` Tables for `kubectl get`, with a CRD's
//! `additionalPrinterColumns` (or `Age` when it has none) and the columns the real server
//! prints for common built-in kinds.

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use crate::{
    columns,
    jsonpath::JsonPath,
    registry::{PrinterColumn, ResourceType},
};

/// `duration.HumanDuration`, as `kubectl get` prints ages: `45s`, `3m12s`, `5h`, `2d3h`, `3y`.
pub fn human_duration(seconds: i64) -> String {
    if seconds < -1 {
        return "<invalid>".into();
    }
    let s = seconds.max(0);
    let (m, h, d) = (s / 60, s / 3600, s / 86400);
    if s < 120 {
        format!("{s}s")
    } else if m < 10 {
        if s % 60 == 0 {
            format!("{m}m")
        } else {
            format!("{m}m{}s", s % 60)
        }
    } else if m < 180 {
        format!("{m}m")
    } else if h < 8 {
        if m % 60 == 0 {
            format!("{h}h")
        } else {
            format!("{h}h{}m", m % 60)
        }
    } else if h < 48 {
        format!("{h}h")
    } else if h < 192 {
        if h % 24 == 0 {
            format!("{d}d")
        } else {
            format!("{d}d{}h", h % 24)
        }
    } else if d < 365 * 2 {
        format!("{d}d")
    } else {
        let y = d / 365;
        if y < 8 && d % 365 != 0 {
            format!("{y}y{}d", d % 365)
        } else {
            format!("{y}y")
        }
    }
}

/// An age cell: the time since `timestamp`, as kubectl prints it.
pub fn age(timestamp: Option<&Value>, now: DateTime<Utc>) -> Value {
    match timestamp
        .and_then(Value::as_str)
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
    {
        Some(t) => json!(human_duration((now - t.with_timezone(&Utc)).num_seconds())),
        None => json!("<unknown>"),
    }
}

fn column(name: &str, ty: &str, format: &str, description: &str, priority: i64) -> Value {
    json!({"name": name, "type": ty, "format": format, "description": description, "priority": priority})
}

fn name_column() -> Value {
    column(
        "Name",
        "string",
        "name",
        "Name must be unique within a namespace. Is required when creating resources, although some resources may allow a client to request the generation of an appropriate name automatically. Name is primarily intended for creation idempotence and configuration definition. Cannot be updated. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names",
        0,
    )
}

fn age_column() -> Value {
    column(
        "Age",
        "date",
        "",
        "CreationTimestamp is a timestamp representing the server time when this object was created. It is not guaranteed to be set in happens-before order across separate operations. Clients may not set this value. It is represented in RFC3339 form and is in UTC.\n\nPopulated by the system. Read-only. Null for lists. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata",
        0,
    )
}

/// How much of each object a row carries (`includeObject`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Include {
    /// No object.
    None,
    /// `PartialObjectMetadata` (the default).
    Metadata,
    /// The whole object.
    Object,
}

impl Include {
    /// From the `includeObject` query parameter.
    pub fn from_param(p: Option<&str>) -> Self {
        match p {
            Some("None") => Include::None,
            Some("Object") => Include::Object,
            _ => Include::Metadata,
        }
    }
}

/// Builds tables for one resource type.
#[derive(Debug)]
pub struct Printer {
    definitions: Vec<Value>,
    columns: Columns,
    include: Include,
}

#[derive(Debug)]
enum Columns {
    Custom(Vec<(PrinterColumn, Option<JsonPath>)>),
    /// A built-in kind: every cell, Name and Age included, from [`columns::cell`].
    Builtin(String),
    Default,
}

/// `PartialObjectMetadata` of an object.
pub fn partial(object: &Value) -> Value {
    json!({
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": object.get("metadata").cloned().unwrap_or(json!({})),
    })
}

impl Printer {
    /// The printer for `rt`.
    pub fn new(rt: &ResourceType, include: Include) -> Self {
        let mut definitions = vec![name_column()];
        let builtin = (!rt.is_custom())
            .then(|| columns::definitions(&rt.group, &rt.plural))
            .flatten();
        let columns = match (&rt.columns, builtin) {
            (Some(custom), _) if !custom.is_empty() => {
                for c in custom {
                    // The real server describes an undocumented column by its path.
                    let description = if c.description.is_empty() {
                        format!(
                            "Custom resource definition column (in JSONPath format): {}",
                            c.json_path
                        )
                    } else {
                        c.description.clone()
                    };
                    definitions.push(column(&c.name, &c.type_, &c.format, &description, c.priority));
                }
                Columns::Custom(
                    custom
                        .iter()
                        .map(|c| (c.clone(), JsonPath::parse(&c.json_path).ok()))
                        .collect(),
                )
            }
            (None, Some(defs)) => {
                definitions = defs.to_vec();
                Columns::Builtin(rt.kind.clone())
            }
            _ => {
                definitions.push(age_column());
                Columns::Default
            }
        };
        Self {
            definitions,
            columns,
            include,
        }
    }

    /// One row.
    pub fn row(&self, object: &Value, now: DateTime<Utc>) -> Value {
        let name = object.pointer("/metadata/name").cloned().unwrap_or(json!(""));
        let created = object.pointer("/metadata/creationTimestamp");
        let mut cells = vec![name];
        match &self.columns {
            Columns::Custom(cols) => {
                for (c, path) in cols {
                    let found = path.as_ref().map(|p| p.find(object)).unwrap_or_default();
                    let cell = match found.as_slice() {
                        [] => Value::Null,
                        [one] if c.type_ == "date" => age(Some(one), now),
                        [one] => (*one).clone(),
                        many => json!(
                            many.iter()
                                .map(|v| v.as_str().map(String::from).unwrap_or_else(|| v.to_string()))
                                .collect::<Vec<_>>()
                                .join(",")
                        ),
                    };
                    cells.push(cell);
                }
            }
            Columns::Builtin(kind) => {
                cells = self
                    .definitions
                    .iter()
                    .map(|d| columns::cell(kind, d["name"].as_str().unwrap_or_default(), object, now))
                    .collect();
            }
            Columns::Default => cells.push(age(created, now)),
        }
        let mut row = json!({"cells": cells});
        match self.include {
            Include::None => {}
            Include::Metadata => row["object"] = partial(object),
            Include::Object => row["object"] = object.clone(),
        }
        row
    }

    /// A table of `objects` at list resourceVersion `rv`. `definitions` is false for watch
    /// events after the first, as upstream sends column definitions once.
    pub fn table<'a>(
        &self,
        objects: impl IntoIterator<Item = &'a Value>,
        rv: Option<&str>,
        definitions: bool,
        now: DateTime<Utc>,
    ) -> Value {
        let mut metadata = json!({});
        if let Some(rv) = rv {
            metadata["resourceVersion"] = json!(rv);
        }
        json!({
            "kind": "Table",
            "apiVersion": "meta.k8s.io/v1",
            "metadata": metadata,
            "columnDefinitions": if definitions { Value::Array(self.definitions.clone()) } else { json!([]) },
            "rows": objects.into_iter().map(|o| self.row(o, now)).collect::<Vec<_>>(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::Registry;

    #[test]
    fn ages_read_as_kubectl_prints_them() {
        assert_eq!(human_duration(45), "45s");
        assert_eq!(human_duration(119), "119s");
        assert_eq!(human_duration(192), "3m12s");
        assert_eq!(human_duration(600), "10m");
        assert_eq!(human_duration(5 * 3600), "5h");
        assert_eq!(human_duration(5 * 3600 + 600), "5h10m");
        assert_eq!(human_duration(51 * 3600), "2d3h");
        assert_eq!(human_duration(400 * 86400), "400d");
        assert_eq!(human_duration(3 * 365 * 86400), "3y");
    }

    #[test]
    fn custom_columns_follow_json_paths_and_dates_become_ages() {
        let mut rt = (*Registry::builtin().get("", "v1", "configmaps").unwrap()).clone();
        rt.columns = Some(vec![
            PrinterColumn {
                name: "Ready".into(),
                type_: "string".into(),
                format: String::new(),
                description: String::new(),
                priority: 0,
                json_path: r#".status.conditions[?(@.type=="Ready")].status"#.into(),
            },
            PrinterColumn {
                name: "Since".into(),
                type_: "date".into(),
                format: String::new(),
                description: String::new(),
                priority: 1,
                json_path: ".status.since".into(),
            },
        ]);
        let p = Printer::new(&rt, Include::Metadata);
        let now = Utc::now();
        let obj = json!({"metadata": {"name": "w"}, "status": {"conditions": [{"type": "Ready", "status": "True"}],
            "since": (now - chrono::Duration::seconds(30)).to_rfc3339()}});
        let t = p.table([&obj], Some("7"), true, now);
        assert_eq!(t["rows"][0]["cells"], json!(["w", "True", "30s"]));
        assert_eq!(t["columnDefinitions"][2]["priority"], 1);
        assert_eq!(t["rows"][0]["object"]["kind"], "PartialObjectMetadata");
    }

    #[test]
    fn deployments_print_ready_over_desired() {
        let rt = Registry::builtin().get("apps", "v1", "deployments").unwrap();
        let p = Printer::new(&rt, Include::None);
        let d = json!({"metadata": {"name": "web"}, "spec": {"replicas": 3}, "status": {"readyReplicas": 2, "updatedReplicas": 3, "availableReplicas": 2}});
        let row = p.row(&d, Utc::now());
        assert_eq!(row["cells"][1], "2/3");
        assert!(row.get("object").is_none());
    }
}

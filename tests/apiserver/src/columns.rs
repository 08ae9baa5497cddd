//! The Table columns of built-in kinds: their definitions as the real server publishes them
//! (`openapi/tables.json`, written by `openapi/snapshot`) and each cell as its printers fill it.

use std::{collections::HashMap, sync::LazyLock};

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

static TABLES: LazyLock<HashMap<String, Vec<Value>>> = LazyLock::new(|| {
    let v: Value =
        serde_json::from_str(include_str!("../openapi/tables.json")).expect("the committed tables are JSON");
    v["columns"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, c)| (k.clone(), c.as_array().cloned().unwrap_or_default()))
                .collect()
        })
        .unwrap_or_default()
});

/// The column definitions of a built-in resource (`apps`, `deployments`), if known.
pub fn definitions(group: &str, plural: &str) -> Option<&'static [Value]> {
    TABLES.get(&format!("{group}/{plural}")).map(Vec::as_slice)
}

fn s<'a>(o: &'a Value, ptr: &str) -> Option<&'a str> {
    o.pointer(ptr).and_then(Value::as_str).filter(|s| !s.is_empty())
}

fn int(o: &Value, ptr: &str) -> i64 {
    o.pointer(ptr).and_then(Value::as_i64).unwrap_or(0)
}

fn none_if_empty(v: String) -> Value {
    json!(if v.is_empty() { "<none>".to_string() } else { v })
}

/// `a=b,c=d` of a label map.
fn labels(o: Option<&Value>) -> String {
    o.and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default()
}

/// A label selector as `kubectl` prints it.
fn selector(o: Option<&Value>) -> String {
    let Some(sel) = o else { return String::new() };
    let mut parts = vec![labels(sel.get("matchLabels"))]
        .into_iter()
        .filter(|p| !p.is_empty())
        .collect::<Vec<_>>();
    for e in sel
        .get("matchExpressions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let key = e["key"].as_str().unwrap_or_default();
        let values: Vec<&str> = e["values"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        parts.push(match e["operator"].as_str().unwrap_or_default() {
            "In" => format!("{key} in ({})", values.join(",")),
            "NotIn" => format!("{key} notin ({})", values.join(",")),
            "Exists" => key.to_string(),
            _ => format!("!{key}"),
        });
    }
    parts.join(",")
}

fn containers(o: &Value, spec: &str, field: &str) -> Value {
    let list: Vec<&str> = o
        .pointer(&format!("{spec}/containers"))
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|c| c[field].as_str())
        .collect();
    none_if_empty(list.join(","))
}

fn pod_ready(o: &Value) -> String {
    let total = o
        .pointer("/spec/containers")
        .and_then(Value::as_array)
        .map_or(0, Vec::len);
    let ready = o
        .pointer("/status/containerStatuses")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|c| c["ready"] == true)
        .count();
    format!("{ready}/{total}")
}

fn pod_status(o: &Value) -> String {
    if o.pointer("/metadata/deletionTimestamp")
        .is_some_and(|d| !d.is_null())
    {
        return "Terminating".into();
    }
    s(o, "/status/reason")
        .or_else(|| s(o, "/status/phase"))
        .unwrap_or("Pending")
        .to_string()
}

fn ports(o: &Value) -> String {
    let list = o.pointer("/spec/ports").and_then(Value::as_array);
    let shown: Vec<String> = list
        .into_iter()
        .flatten()
        .map(|p| {
            let proto = p["protocol"].as_str().unwrap_or("TCP");
            match p.get("nodePort") {
                Some(n) if !n.is_null() => format!("{}:{n}/{proto}", p["port"]),
                _ => format!("{}/{proto}", p["port"]),
            }
        })
        .collect();
    shown.join(",")
}

fn external_ip(o: &Value) -> Value {
    let ty = s(o, "/spec/type").unwrap_or("ClusterIP");
    let ingress: Vec<String> = o
        .pointer("/status/loadBalancer/ingress")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|i| {
            i["ip"]
                .as_str()
                .or_else(|| i["hostname"].as_str())
                .map(String::from)
        })
        .collect();
    match (ty, ingress.is_empty()) {
        ("LoadBalancer", true) => json!("<pending>"),
        ("ExternalName", _) => json!(s(o, "/spec/externalName").unwrap_or("<none>")),
        (_, true) => json!("<none>"),
        _ => json!(ingress.join(",")),
    }
}

fn job_status(o: &Value) -> &'static str {
    let has = |t: &str| {
        o.pointer("/status/conditions")
            .and_then(Value::as_array)
            .is_some_and(|cs| cs.iter().any(|c| c["type"] == t && c["status"] == "True"))
    };
    if has("Complete") {
        "Complete"
    } else if has("Failed") {
        "Failed"
    } else if o.pointer("/spec/suspend") == Some(&json!(true)) {
        "Suspended"
    } else {
        "Running"
    }
}

/// The cell of `column` for a built-in object of `kind`, as the real server's printer fills it;
/// `now` for ages.
pub fn cell(kind: &str, column: &str, o: &Value, now: DateTime<Utc>) -> Value {
    let age = |ptr: &str| crate::table::age(o.pointer(ptr), now);
    match (kind, column) {
        (_, "Name") => o.pointer("/metadata/name").cloned().unwrap_or(json!("")),
        (_, "Age") => age("/metadata/creationTimestamp"),
        (_, "Created At") => o
            .pointer("/metadata/creationTimestamp")
            .cloned()
            .unwrap_or(Value::Null),
        ("Pod", "Ready") => json!(pod_ready(o)),
        ("Pod", "Status") => json!(pod_status(o)),
        ("Pod", "Restarts") => {
            let n: i64 = o
                .pointer("/status/containerStatuses")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .map(|c| c["restartCount"].as_i64().unwrap_or(0))
                .sum();
            json!(n.to_string())
        }
        ("Pod", "IP") => json!(s(o, "/status/podIP").unwrap_or("<none>")),
        ("Pod", "Node") => json!(s(o, "/spec/nodeName").unwrap_or("<none>")),
        ("Pod", "Nominated Node") => json!(s(o, "/status/nominatedNodeName").unwrap_or("<none>")),
        ("Pod", "Readiness Gates") => json!("<none>"),
        ("Deployment" | "StatefulSet", "Ready") => json!(format!(
            "{}/{}",
            int(o, "/status/readyReplicas"),
            o.pointer("/spec/replicas").and_then(Value::as_i64).unwrap_or(1)
        )),
        ("Deployment" | "DaemonSet", "Up-to-date") => {
            json!(int(o, "/status/updatedReplicas").max(int(o, "/status/updatedNumberScheduled")))
        }
        ("Deployment", "Available") => json!(int(o, "/status/availableReplicas")),
        ("DaemonSet", "Desired") => json!(int(o, "/status/desiredNumberScheduled")),
        ("DaemonSet", "Current") => json!(int(o, "/status/currentNumberScheduled")),
        ("DaemonSet", "Ready") => json!(int(o, "/status/numberReady")),
        ("DaemonSet", "Available") => json!(int(o, "/status/numberAvailable")),
        ("DaemonSet", "Node Selector") => {
            none_if_empty(labels(o.pointer("/spec/template/spec/nodeSelector")))
        }
        ("ReplicaSet", "Desired") => json!(o.pointer("/spec/replicas").and_then(Value::as_i64).unwrap_or(1)),
        ("ReplicaSet", "Current") => json!(int(o, "/status/replicas")),
        ("ReplicaSet", "Ready") => json!(int(o, "/status/readyReplicas")),
        ("CronJob", "Containers") => containers(o, "/spec/jobTemplate/spec/template/spec", "name"),
        ("CronJob", "Images") => containers(o, "/spec/jobTemplate/spec/template/spec", "image"),
        ("CronJob", "Selector") => none_if_empty(selector(o.pointer("/spec/jobTemplate/spec/selector"))),
        (_, "Containers") => containers(o, "/spec/template/spec", "name"),
        (_, "Images") => containers(o, "/spec/template/spec", "image"),
        ("Service", "Selector") => none_if_empty(labels(o.pointer("/spec/selector"))),
        ("NetworkPolicy", "Pod-Selector") => none_if_empty(selector(o.pointer("/spec/podSelector"))),
        (_, "Selector") => none_if_empty(selector(o.pointer("/spec/selector"))),
        ("Job", "Status") => json!(job_status(o)),
        ("Job", "Completions") => json!(format!(
            "{}/{}",
            int(o, "/status/succeeded"),
            o.pointer("/spec/completions")
                .and_then(Value::as_i64)
                .unwrap_or(1)
        )),
        ("Job", "Duration") => match (
            o.pointer("/status/startTime"),
            o.pointer("/status/completionTime"),
        ) {
            (Some(start), end) if !start.is_null() => {
                let parse = |v: &Value| v.as_str().and_then(|t| DateTime::parse_from_rfc3339(t).ok());
                let end = end.and_then(parse).map_or(now, |e| e.with_timezone(&Utc));
                match parse(start) {
                    Some(st) => json!(crate::table::human_duration(
                        (end - st.with_timezone(&Utc)).num_seconds()
                    )),
                    None => json!(""),
                }
            }
            _ => json!(""),
        },
        ("CronJob", "Schedule") => json!(s(o, "/spec/schedule").unwrap_or_default()),
        ("CronJob", "Timezone") => json!(s(o, "/spec/timeZone").unwrap_or("<none>")),
        ("CronJob", "Suspend") => json!(
            o.pointer("/spec/suspend")
                .and_then(Value::as_bool)
                .unwrap_or(false)
        ),
        ("CronJob", "Active") => json!(
            o.pointer("/status/active")
                .and_then(Value::as_array)
                .map_or(0, Vec::len)
        ),
        ("CronJob", "Last Schedule") => match o.pointer("/status/lastScheduleTime") {
            Some(t) if !t.is_null() => age("/status/lastScheduleTime"),
            _ => json!("<none>"),
        },
        ("Service", "Type") => json!(s(o, "/spec/type").unwrap_or("ClusterIP")),
        ("Service", "Cluster-IP") => json!(s(o, "/spec/clusterIP").unwrap_or("<none>")),
        ("Service", "External-IP") => external_ip(o),
        ("Service", "Port(s)") => none_if_empty(ports(o)),
        ("ConfigMap", "Data") => json!(
            ["data", "binaryData"]
                .iter()
                .map(|k| o.get(*k).and_then(Value::as_object).map_or(0, |m| m.len()))
                .sum::<usize>()
        ),
        ("Secret", "Type") => json!(s(o, "/type").unwrap_or("Opaque")),
        ("Secret", "Data") => json!(o.get("data").and_then(Value::as_object).map_or(0, |m| m.len())),
        ("Namespace" | "PersistentVolumeClaim" | "PersistentVolume", "Status") => {
            json!(s(o, "/status/phase").unwrap_or(if kind == "Namespace" { "Active" } else { "Pending" }))
        }
        ("PersistentVolumeClaim", "Volume") => json!(s(o, "/spec/volumeName").unwrap_or_default()),
        ("PersistentVolumeClaim", "Capacity") => json!(s(o, "/status/capacity/storage").unwrap_or_default()),
        ("PersistentVolumeClaim", "Access Modes") => json!(""),
        ("PersistentVolumeClaim", "StorageClass") => {
            json!(s(o, "/spec/storageClassName").unwrap_or("<unset>"))
        }
        ("PersistentVolumeClaim", "VolumeAttributesClass") => {
            json!(s(o, "/spec/volumeAttributesClassName").unwrap_or("<unset>"))
        }
        ("PersistentVolumeClaim", "VolumeMode") => json!(s(o, "/spec/volumeMode").unwrap_or("Filesystem")),
        ("Event", "Last Seen") => match o.get("lastTimestamp").filter(|t| !t.is_null()) {
            Some(_) => age("/lastTimestamp"),
            None => age("/eventTime"),
        },
        ("Event", "First Seen") => match o.get("firstTimestamp").filter(|t| !t.is_null()) {
            Some(_) => age("/firstTimestamp"),
            None => age("/eventTime"),
        },
        ("Event", "Type") => json!(s(o, "/type").unwrap_or_default()),
        ("Event", "Reason") => json!(s(o, "/reason").unwrap_or_default()),
        ("Event", "Object") => json!(format!(
            "{}/{}",
            s(o, "/involvedObject/kind")
                .unwrap_or_default()
                .to_ascii_lowercase(),
            s(o, "/involvedObject/name").unwrap_or_default()
        )),
        ("Event", "Subobject") => json!(s(o, "/involvedObject/fieldPath").unwrap_or_default()),
        ("Event", "Source") => json!(
            s(o, "/source/component")
                .or_else(|| s(o, "/reportingComponent"))
                .unwrap_or_default()
        ),
        ("Event", "Message") => json!(s(o, "/message").unwrap_or_default()),
        ("Event", "Count") => json!(o.get("count").and_then(Value::as_i64).unwrap_or(1).to_string()),
        ("Lease", "Holder") => json!(s(o, "/spec/holderIdentity").unwrap_or_default()),
        ("Ingress", "Class") => json!(s(o, "/spec/ingressClassName").unwrap_or("<none>")),
        ("Ingress", "Hosts") => {
            let hosts: Vec<&str> = o
                .pointer("/spec/rules")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|r| r["host"].as_str())
                .collect();
            json!(if hosts.is_empty() {
                "*".to_string()
            } else {
                hosts.join(",")
            })
        }
        ("Ingress", "Address") => json!(""),
        ("Ingress", "Ports") => json!(if o.pointer("/spec/tls").is_some() {
            "80, 443"
        } else {
            "80"
        }),
        ("HorizontalPodAutoscaler", "Reference") => json!(format!(
            "{}/{}",
            s(o, "/spec/scaleTargetRef/kind").unwrap_or_default(),
            s(o, "/spec/scaleTargetRef/name").unwrap_or_default()
        )),
        ("HorizontalPodAutoscaler", "Targets") => json!("<unknown>"),
        ("HorizontalPodAutoscaler", "MinPods") => json!(
            o.pointer("/spec/minReplicas")
                .and_then(Value::as_i64)
                .unwrap_or(1)
                .to_string()
        ),
        ("HorizontalPodAutoscaler", "MaxPods") => json!(int(o, "/spec/maxReplicas").to_string()),
        ("HorizontalPodAutoscaler", "Replicas") => json!(int(o, "/status/currentReplicas").to_string()),
        ("PodDisruptionBudget", "Min Available") => {
            json!(
                o.pointer("/spec/minAvailable")
                    .map_or("N/A".into(), |v| v.as_str().map_or(v.to_string(), String::from))
            )
        }
        ("PodDisruptionBudget", "Max Unavailable") => {
            json!(
                o.pointer("/spec/maxUnavailable")
                    .map_or("N/A".into(), |v| v.as_str().map_or(v.to_string(), String::from))
            )
        }
        ("PodDisruptionBudget", "Allowed Disruptions") => json!(int(o, "/status/disruptionsAllowed")),
        ("RoleBinding" | "ClusterRoleBinding", "Role") => json!(format!(
            "{}/{}",
            s(o, "/roleRef/kind").unwrap_or_default(),
            s(o, "/roleRef/name").unwrap_or_default()
        )),
        ("RoleBinding" | "ClusterRoleBinding", "Users" | "Groups" | "ServiceAccounts") => {
            let want = match column {
                "Users" => "User",
                "Groups" => "Group",
                _ => "ServiceAccount",
            };
            let names: Vec<String> = o
                .get("subjects")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter(|x| x["kind"] == want)
                .map(|x| match (want, x["namespace"].as_str()) {
                    ("ServiceAccount", Some(ns)) => {
                        format!("{ns}/{}", x["name"].as_str().unwrap_or_default())
                    }
                    _ => x["name"].as_str().unwrap_or_default().to_string(),
                })
                .collect();
            json!(names.join(", "))
        }
        _ => json!("<none>"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pod_row_reads_ready_status_and_restarts() {
        let pod = json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c"}, {"name": "d"}]},
            "status": {"phase": "Running", "containerStatuses": [{"ready": true, "restartCount": 2}, {"ready": false, "restartCount": 1}]}});
        let now = Utc::now();
        let cells: Vec<Value> = ["Ready", "Status", "Restarts", "IP"]
            .iter()
            .map(|c| cell("Pod", c, &pod, now))
            .collect();
        assert_eq!(
            cells,
            [json!("1/2"), json!("Running"), json!("3"), json!("<none>")]
        );
        let defs = definitions("", "pods").expect("the snapshot has pods");
        assert_eq!(defs[1]["name"], "Ready");
    }
}

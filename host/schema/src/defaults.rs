//! Built-in defaulting as the real API server applies it on every write: pod template fields,
//! workload strategies, Service ports and cluster IPs, and quantities in canonical form. The
//! test API server applies them so a client reads back what a real cluster returns, and
//! `kroxide render` applies them to the children it simulates as applied.

use crate::quantity::Quantity;
use serde_json::{Map, Value, json};

/// Server-assigned values that need state: cluster IPs and node ports.
#[derive(Debug, Clone)]
pub struct Allocator {
    next_ip: u32,
    next_node_port: u16,
}

impl Default for Allocator {
    fn default() -> Self {
        Self {
            next_ip: 1,
            next_node_port: 30000,
        }
    }
}

impl Allocator {
    /// The next free address in 10.96.0.0/12.
    pub fn cluster_ip(&mut self) -> String {
        let n = self.next_ip;
        self.next_ip += 1;
        format!("10.96.{}.{}", (n >> 8) & 0xff, n & 0xff)
    }

    /// The next node port in 30000-32767.
    pub fn node_port(&mut self) -> u16 {
        let p = self.next_node_port;
        self.next_node_port = if p >= 32767 { 30000 } else { p + 1 };
        p
    }
}

fn set_default(map: &mut Map<String, Value>, key: &str, value: Value) {
    if map.get(key).is_none_or(Value::is_null) {
        map.insert(key.to_string(), value);
    }
}

/// The objects in the list at `key`; none when it is absent or not a list.
fn items<'a>(map: &'a mut Map<String, Value>, key: &str) -> impl Iterator<Item = &'a mut Map<String, Value>> {
    map.get_mut(key)
        .and_then(Value::as_array_mut)
        .into_iter()
        .flatten()
        .filter_map(Value::as_object_mut)
}

fn obj<'a>(v: &'a mut Value, key: &str) -> Option<&'a mut Map<String, Value>> {
    v.get_mut(key).and_then(Value::as_object_mut)
}

/// Applies the defaults of `kind` to `object` in place. Idempotent.
pub fn apply(kind: &str, object: &mut Value, alloc: &mut Allocator) {
    match kind {
        "Pod" => {
            if let Some(spec) = obj(object, "spec") {
                set_default(spec, "enableServiceLinks", json!(true));
                // The Priority admission plugin's answer without PriorityClasses.
                set_default(spec, "priority", json!(0));
                set_default(spec, "preemptionPolicy", json!("PreemptLowerPriority"));
                pod_spec(spec, true);
            }
        }
        "Deployment" => {
            if let Some(spec) = obj(object, "spec") {
                set_default(spec, "replicas", json!(1));
                set_default(spec, "revisionHistoryLimit", json!(10));
                set_default(spec, "progressDeadlineSeconds", json!(600));
                let strategy = spec.entry("strategy").or_insert_with(|| json!({}));
                if let Some(s) = strategy.as_object_mut() {
                    set_default(s, "type", json!("RollingUpdate"));
                    if s.get("type") == Some(&json!("RollingUpdate")) {
                        let ru = s.entry("rollingUpdate").or_insert_with(|| json!({}));
                        if let Some(ru) = ru.as_object_mut() {
                            set_default(ru, "maxUnavailable", json!("25%"));
                            set_default(ru, "maxSurge", json!("25%"));
                        }
                    }
                }
                template(spec, true);
            }
        }
        "StatefulSet" => {
            if let Some(spec) = obj(object, "spec") {
                set_default(spec, "replicas", json!(1));
                set_default(spec, "podManagementPolicy", json!("OrderedReady"));
                set_default(spec, "revisionHistoryLimit", json!(10));
                set_default(
                    spec,
                    "updateStrategy",
                    json!({"type": "RollingUpdate", "rollingUpdate": {"partition": 0}}),
                );
                set_default(
                    spec,
                    "persistentVolumeClaimRetentionPolicy",
                    json!({"whenDeleted": "Retain", "whenScaled": "Retain"}),
                );
                for c in items(spec, "volumeClaimTemplates") {
                    set_default(c, "apiVersion", json!("v1"));
                    set_default(c, "kind", json!("PersistentVolumeClaim"));
                    if let Some(s) = c.get_mut("spec").and_then(Value::as_object_mut) {
                        set_default(s, "volumeMode", json!("Filesystem"));
                    }
                    set_default(c, "status", json!({"phase": "Pending"}));
                }
                template(spec, true);
            }
        }
        "DaemonSet" => {
            if let Some(spec) = obj(object, "spec") {
                set_default(spec, "revisionHistoryLimit", json!(10));
                set_default(
                    spec,
                    "updateStrategy",
                    json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}}),
                );
                template(spec, true);
            }
        }
        "ReplicaSet" => {
            if let Some(spec) = obj(object, "spec") {
                set_default(spec, "replicas", json!(1));
                template(spec, true);
            }
        }
        "Job" => {
            if let Some(spec) = obj(object, "spec") {
                job_spec(spec);
            }
        }
        "CronJob" => {
            if let Some(spec) = obj(object, "spec") {
                set_default(spec, "concurrencyPolicy", json!("Allow"));
                set_default(spec, "suspend", json!(false));
                set_default(spec, "successfulJobsHistoryLimit", json!(3));
                set_default(spec, "failedJobsHistoryLimit", json!(1));
                // Only the Pod template inside is defaulted: Job defaults apply to Jobs.
                if let Some(js) = spec
                    .get_mut("jobTemplate")
                    .and_then(|t| t.get_mut("spec"))
                    .and_then(Value::as_object_mut)
                {
                    template(js, false);
                }
            }
        }
        "Service" => service(object, alloc),
        "Secret" => {
            if let Some(m) = object.as_object_mut() {
                if m.get("type") == Some(&json!("")) {
                    m.remove("type");
                }
                set_default(m, "type", json!("Opaque"));
                // stringData is write-only: merged into data, base64-encoded, and dropped.
                if let Some(Value::Object(plain)) = m.remove("stringData") {
                    use base64::Engine as _;
                    let data = m.entry("data").or_insert_with(|| json!({}));
                    if let Some(d) = data.as_object_mut() {
                        for (k, v) in plain {
                            let text = v.as_str().unwrap_or_default().to_string();
                            d.insert(k, json!(base64::engine::general_purpose::STANDARD.encode(text)));
                        }
                    }
                }
            }
        }
        "Namespace" => {
            let name = object.pointer("/metadata/name").cloned().unwrap_or(Value::Null);
            if let Some(m) = object.as_object_mut() {
                let spec = m.entry("spec").or_insert_with(|| json!({}));
                if let Some(s) = spec.as_object_mut() {
                    set_default(s, "finalizers", json!(["kubernetes"]));
                }
                let status = m.entry("status").or_insert_with(|| json!({}));
                if let Some(s) = status.as_object_mut() {
                    set_default(s, "phase", json!("Active"));
                }
            }
            if let Some(meta) = obj(object, "metadata") {
                let labels = meta.entry("labels").or_insert_with(|| json!({}));
                if let Some(l) = labels.as_object_mut() {
                    l.insert("kubernetes.io/metadata.name".into(), name);
                }
            }
        }
        "Role" | "ClusterRole" => {
            // `rules` has no omitempty: an object without rules says `rules: null`.
            if let Some(m) = object.as_object_mut() {
                m.entry("rules").or_insert(Value::Null);
            }
        }
        "RoleBinding" | "ClusterRoleBinding" => {
            if let Some(m) = object.as_object_mut() {
                for s in items(m, "subjects") {
                    if matches!(s.get("kind").and_then(Value::as_str), Some("User" | "Group")) {
                        set_default(s, "apiGroup", json!("rbac.authorization.k8s.io"));
                    }
                }
            }
        }
        "PersistentVolumeClaim" => {
            if let Some(spec) = obj(object, "spec") {
                set_default(spec, "volumeMode", json!("Filesystem"));
            }
            if let Some(m) = object.as_object_mut() {
                set_default(m, "status", json!({"phase": "Pending"}));
            }
        }
        "HorizontalPodAutoscaler" => {
            if let Some(m) = object.as_object_mut() {
                let status = m.entry("status").or_insert_with(|| json!({}));
                if let Some(st) = status.as_object_mut() {
                    st.entry("currentMetrics").or_insert(Value::Null);
                }
            }
            if let Some(spec) = obj(object, "spec") {
                set_default(spec, "minReplicas", json!(1));
                if spec
                    .get("metrics")
                    .and_then(Value::as_array)
                    .is_none_or(Vec::is_empty)
                {
                    spec.insert(
                        "metrics".into(),
                        json!([{"type": "Resource", "resource": {"name": "cpu",
                            "target": {"type": "Utilization", "averageUtilization": 80}}}]),
                    );
                }
            }
        }
        "NetworkPolicy" => {
            if let Some(spec) = obj(object, "spec") {
                if spec.get("policyTypes").is_none() {
                    let mut types = vec![json!("Ingress")];
                    if spec.get("egress").is_some() {
                        types.push(json!("Egress"));
                    }
                    spec.insert("policyTypes".into(), Value::Array(types));
                }
                for dir in ["ingress", "egress"] {
                    for rule in items(spec, dir) {
                        for p in items(rule, "ports") {
                            set_default(p, "protocol", json!("TCP"));
                        }
                    }
                }
            }
        }
        _ => {}
    }
    canonical_quantities(object);
}

/// What the real server's admission adds when an object is created (not on later writes):
/// protection finalizers on claims and volumes, a DaemonSet's template generation.
pub fn created(kind: &str, object: &mut Value) {
    match kind {
        "PersistentVolumeClaim" => finalizer(object, "kubernetes.io/pvc-protection"),
        "PersistentVolume" => finalizer(object, "kubernetes.io/pv-protection"),
        "DaemonSet" => {
            if let Some(meta) = obj(object, "metadata") {
                let ann = meta.entry("annotations").or_insert_with(|| json!({}));
                if let Some(a) = ann.as_object_mut() {
                    a.insert(DAEMONSET_TEMPLATE_GENERATION.into(), json!("1"));
                }
            }
        }
        _ => {}
    }
}

/// What the ServiceAccount, DefaultTolerationSeconds and Priority admission plugins add to a
/// Pod when it is created: its service account and the projected token volume mounted in
/// every container (named `volume`), the not-ready and unreachable tolerations, and the
/// initial status with its QoS class.
pub fn pod_admitted(pod: &mut Value, volume: &str) {
    let Some(spec) = obj(pod, "spec") else { return };
    set_default(spec, "serviceAccountName", json!("default"));
    let account = spec["serviceAccountName"].clone();
    spec.insert("serviceAccount".into(), account);
    if spec.get("automountServiceAccountToken") != Some(&json!(false)) {
        let volumes = spec.entry("volumes").or_insert_with(|| json!([]));
        if let Some(v) = volumes.as_array_mut() {
            v.push(json!({"name": volume, "projected": {"defaultMode": 420, "sources": [
                {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                {"configMap": {"items": [{"key": "ca.crt", "path": "ca.crt"}], "name": ROOT_CA_CONFIGMAP}},
                {"downwardAPI": {"items": [{"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}, "path": "namespace"}]}}]}}));
        }
        for list in ["initContainers", "containers"] {
            for c in items(spec, list) {
                let mounts = c.entry("volumeMounts").or_insert_with(|| json!([]));
                if let Some(m) = mounts.as_array_mut() {
                    m.push(json!({"mountPath": "/var/run/secrets/kubernetes.io/serviceaccount", "name": volume, "readOnly": true}));
                }
            }
        }
    }
    let tolerations = spec.entry("tolerations").or_insert_with(|| json!([]));
    if let Some(t) = tolerations.as_array_mut() {
        for key in ["node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable"] {
            if !t.iter().any(|x| x["key"] == key) {
                t.push(json!({"key": key, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}));
            }
        }
    }
    let qos = qos_class(spec);
    if let Some(m) = pod.as_object_mut() {
        let status = m.entry("status").or_insert_with(|| json!({}));
        if let Some(s) = status.as_object_mut() {
            set_default(s, "phase", json!("Pending"));
            set_default(s, "qosClass", json!(qos));
        }
    }
}

/// A Pod's QoS class: Guaranteed when every container's limits equal its requests for cpu and
/// memory, BestEffort when none sets any, Burstable otherwise.
fn qos_class(spec: &Map<String, Value>) -> &'static str {
    let containers: Vec<&Value> = spec
        .get("containers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .collect();
    let resources = |c: &Value, k: &str, r: &str| c.pointer(&format!("/resources/{k}/{r}")).cloned();
    let any = containers.iter().any(|c| {
        ["requests", "limits"].iter().any(|k| {
            c.pointer(&format!("/resources/{k}"))
                .and_then(Value::as_object)
                .is_some_and(|m| !m.is_empty())
        })
    });
    if !any {
        return "BestEffort";
    }
    let guaranteed = containers.iter().all(|c| {
        ["cpu", "memory"].iter().all(|r| {
            let limit = resources(c, "limits", r);
            limit.is_some() && resources(c, "requests", r).is_none_or(|q| Some(q) == limit)
        })
    });
    if guaranteed { "Guaranteed" } else { "Burstable" }
}

/// The ConfigMap the root CA publisher puts in every namespace.
pub const ROOT_CA_CONFIGMAP: &str = "kube-root-ca.crt";

/// What kube-controller-manager puts in every new namespace: the `default` ServiceAccount
/// and the root CA ConfigMap. This server speaks plain HTTP and has no CA: `ca.crt` holds a
/// placeholder that is not a certificate, which no client here reads.
pub fn namespace_contents() -> [(&'static str, Value); 2] {
    [
        (
            "/serviceaccounts",
            json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "default"}}),
        ),
        (
            "/configmaps",
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": ROOT_CA_CONFIGMAP,
                "annotations": {"kubernetes.io/description": "Contains a CA bundle that can be used to verify the kube-apiserver when using internal endpoints such as the internal service IP or kubernetes.default.svc. No other usage is guaranteed across distributions of Kubernetes clusters."}},
                "data": {"ca.crt": "tests/apiserver serves plain HTTP and has no certificate authority\n"}}),
        ),
    ]
}

/// The annotation a DaemonSet's template generation is kept in.
pub const DAEMONSET_TEMPLATE_GENERATION: &str = "deprecated.daemonset.template.generation";

/// Keeps a DaemonSet's template generation (a field of the internal type the real server
/// shows as an annotation) and counts a template change in it.
pub fn template_changed(kind: &str, old: &Value, object: &mut Value) {
    if kind != "DaemonSet" {
        return;
    }
    let changed = u64::from(old.pointer("/spec/template") != object.pointer("/spec/template"));
    let n: u64 = old
        .pointer("/metadata/annotations")
        .and_then(|a| a.get(DAEMONSET_TEMPLATE_GENERATION))
        .and_then(Value::as_str)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    if let Some(meta) = obj(object, "metadata") {
        let ann = meta.entry("annotations").or_insert_with(|| json!({}));
        if let Some(a) = ann.as_object_mut() {
            a.insert(
                DAEMONSET_TEMPLATE_GENERATION.into(),
                json!((n + changed).to_string()),
            );
        }
    }
}

/// Adds `f` to the object's finalizers (protection finalizers the real server's admission adds).
fn finalizer(object: &mut Value, f: &str) {
    if let Some(meta) = obj(object, "metadata") {
        let list = meta.entry("finalizers").or_insert_with(|| json!([]));
        if let Some(l) = list.as_array_mut()
            && !l.iter().any(|x| x == f)
        {
            l.push(json!(f));
        }
    }
}

fn job_spec(spec: &mut Map<String, Value>) {
    if spec.get("completions").is_none() && spec.get("parallelism").is_none() {
        spec.insert("completions".into(), json!(1));
    }
    set_default(spec, "parallelism", json!(1));
    set_default(spec, "backoffLimit", json!(6));
    set_default(spec, "completionMode", json!("NonIndexed"));
    set_default(spec, "suspend", json!(false));
    set_default(spec, "podReplacementPolicy", json!("TerminatingOrFailed"));
    // Jobs keep restartPolicy as written: validation requires OnFailure or Never.
    template(spec, false);
}

/// Job selector and labels derived from the Job's uid, set once at creation.
pub fn job_identity(object: &mut Value) {
    let uid = object.pointer("/metadata/uid").cloned().unwrap_or(Value::Null);
    let name = object.pointer("/metadata/name").cloned().unwrap_or(Value::Null);
    let Some(spec) = obj(object, "spec") else { return };
    if spec.get("manualSelector") == Some(&json!(true)) {
        return;
    }
    spec.insert("manualSelector".into(), json!(false));
    set_default(
        spec,
        "selector",
        json!({"matchLabels": {"batch.kubernetes.io/controller-uid": uid}}),
    );
    let labels = spec
        .entry("template")
        .or_insert_with(|| json!({}))
        .as_object_mut()
        .map(|t| t.entry("metadata").or_insert_with(|| json!({})))
        .and_then(Value::as_object_mut)
        .map(|m| m.entry("labels").or_insert_with(|| json!({})));
    if let Some(Value::Object(l)) = labels {
        for (k, v) in [
            ("batch.kubernetes.io/controller-uid", &uid),
            ("batch.kubernetes.io/job-name", &name),
            ("controller-uid", &uid),
            ("job-name", &name),
        ] {
            set_default(l, k, v.clone());
        }
    }
    // A Job without labels gets its Pod template's.
    let template_labels = object.pointer("/spec/template/metadata/labels").cloned();
    if let (Some(labels), Some(meta)) = (template_labels, obj(object, "metadata"))
        && meta
            .get("labels")
            .is_none_or(|l| l.as_object().is_none_or(Map::is_empty))
    {
        meta.insert("labels".into(), labels);
    }
}

fn template(spec: &mut Map<String, Value>, restart_always: bool) {
    let Some(t) = spec.get_mut("template").and_then(Value::as_object_mut) else {
        return;
    };
    t.entry("metadata").or_insert_with(|| json!({}));
    if let Some(ps) = t.get_mut("spec").and_then(Value::as_object_mut) {
        pod_spec(ps, restart_always);
    }
}

fn pod_spec(spec: &mut Map<String, Value>, restart_always: bool) {
    if restart_always {
        set_default(spec, "restartPolicy", json!("Always"));
    }
    set_default(spec, "terminationGracePeriodSeconds", json!(30));
    set_default(spec, "dnsPolicy", json!("ClusterFirst"));
    set_default(spec, "securityContext", json!({}));
    set_default(spec, "schedulerName", json!("default-scheduler"));
    for list in ["containers", "initContainers"] {
        for c in items(spec, list) {
            container(c);
        }
    }
    for v in items(spec, "volumes") {
        for source in ["configMap", "secret"] {
            if let Some(s) = v.get_mut(source).and_then(Value::as_object_mut) {
                set_default(s, "defaultMode", json!(420));
            }
        }
    }
}

fn image_pull_policy(image: &str) -> &'static str {
    if image.contains('@') {
        return "IfNotPresent";
    }
    let last = image.rsplit('/').next().unwrap_or(image);
    match last.rsplit_once(':') {
        Some((_, "latest")) | None => "Always",
        Some(_) => "IfNotPresent",
    }
}

fn container(c: &mut Map<String, Value>) {
    set_default(c, "terminationMessagePath", json!("/dev/termination-log"));
    set_default(c, "terminationMessagePolicy", json!("File"));
    let policy = c
        .get("image")
        .and_then(Value::as_str)
        .map(image_pull_policy)
        .unwrap_or("Always");
    set_default(c, "imagePullPolicy", json!(policy));
    set_default(c, "resources", json!({}));
    for p in items(c, "ports") {
        set_default(p, "protocol", json!("TCP"));
    }
    for e in items(c, "env") {
        if let Some(f) = e
            .get_mut("valueFrom")
            .and_then(|v| v.get_mut("fieldRef"))
            .and_then(Value::as_object_mut)
        {
            set_default(f, "apiVersion", json!("v1"));
        }
    }
    for probe in ["livenessProbe", "readinessProbe", "startupProbe"] {
        if let Some(p) = c.get_mut(probe).and_then(Value::as_object_mut) {
            set_default(p, "timeoutSeconds", json!(1));
            set_default(p, "periodSeconds", json!(10));
            set_default(p, "successThreshold", json!(1));
            set_default(p, "failureThreshold", json!(3));
            if let Some(h) = p.get_mut("httpGet").and_then(Value::as_object_mut) {
                set_default(h, "scheme", json!("HTTP"));
            }
        }
    }
}

fn service(object: &mut Value, alloc: &mut Allocator) {
    let Some(spec) = obj(object, "spec") else { return };
    set_default(spec, "type", json!("ClusterIP"));
    let ty = spec
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("ClusterIP")
        .to_string();
    if ty == "ExternalName" {
        return;
    }
    set_default(spec, "sessionAffinity", json!("None"));
    let node_ports = ty == "NodePort" || ty == "LoadBalancer";
    for p in items(spec, "ports") {
        set_default(p, "protocol", json!("TCP"));
        if let Some(port) = p.get("port").cloned() {
            set_default(p, "targetPort", port);
        }
        if node_ports && p.get("nodePort").is_none() {
            p.insert("nodePort".into(), json!(alloc.node_port()));
        }
    }
    if spec
        .get("clusterIP")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty)
    {
        let ip = alloc.cluster_ip();
        spec.insert("clusterIP".into(), json!(ip));
    }
    let ip = spec["clusterIP"].clone();
    set_default(spec, "clusterIPs", json!([ip]));
    // A headless Service without a selector asks for both families, as the real server
    // defaults it even on a single-stack cluster.
    let headless_unselected = spec["clusterIP"] == "None" && spec.get("selector").is_none_or(Value::is_null);
    if headless_unselected {
        set_default(spec, "ipFamilyPolicy", json!("RequireDualStack"));
        set_default(spec, "ipFamilies", json!(["IPv4", "IPv6"]));
    }
    set_default(spec, "ipFamilies", json!(["IPv4"]));
    set_default(spec, "ipFamilyPolicy", json!("SingleStack"));
    set_default(spec, "internalTrafficPolicy", json!("Cluster"));
    if node_ports {
        set_default(spec, "externalTrafficPolicy", json!("Cluster"));
    }
    if ty == "LoadBalancer" {
        set_default(spec, "allocateLoadBalancerNodePorts", json!(true));
    }
}

/// Rewrites quantities under `resources.requests|limits`, `hard`, `capacity` and `sizeLimit`
/// in canonical form (`1000m` → `"1"`, `0.5` → `"500m"`, `1024Mi` → `"1Gi"`). Values that do
/// not parse are left for validation to reject.
pub fn canonical_quantities(v: &mut Value) {
    match v {
        Value::Object(map) => {
            for (k, child) in map.iter_mut() {
                let q = matches!(
                    k.as_str(),
                    "requests" | "limits" | "hard" | "capacity" | "allocatable"
                );
                if k == "sizeLimit" {
                    canonical_one(child);
                } else if q {
                    if let Value::Object(m) = child {
                        for (_, qv) in m.iter_mut() {
                            canonical_one(qv);
                        }
                    }
                } else {
                    canonical_quantities(child);
                }
            }
        }
        Value::Array(items) => {
            for i in items {
                canonical_quantities(i);
            }
        }
        _ => {}
    }
}

fn canonical_one(v: &mut Value) {
    let text = match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => return,
    };
    if let Ok(q) = text.parse::<Quantity>() {
        *v = Value::String(q.canonical());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_deployment_gets_the_real_servers_defaults() {
        let mut d = json!({"spec": {"selector": {}, "template": {"spec": {"containers": [
            {"name": "app", "image": "nginx:1.27", "ports": [{"containerPort": 80}],
             "resources": {"requests": {"cpu": "1000m", "memory": "1024Mi"}, "limits": {"cpu": 0.5}}}]}}}});
        apply("Deployment", &mut d, &mut Allocator::default());
        let s = &d["spec"];
        assert_eq!(s["replicas"], 1);
        assert_eq!(
            s["strategy"],
            json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}})
        );
        assert_eq!(s["revisionHistoryLimit"], 10);
        assert_eq!(s["progressDeadlineSeconds"], 600);
        let c = &s["template"]["spec"]["containers"][0];
        assert_eq!(c["imagePullPolicy"], "IfNotPresent");
        assert_eq!(c["terminationMessagePath"], "/dev/termination-log");
        assert_eq!(c["ports"][0]["protocol"], "TCP");
        assert_eq!(c["resources"]["requests"], json!({"cpu": "1", "memory": "1Gi"}));
        assert_eq!(c["resources"]["limits"], json!({"cpu": "500m"}));
        assert_eq!(s["template"]["metadata"], json!({}));
        assert_eq!(s["template"]["spec"]["restartPolicy"], "Always");
        let again = d.clone();
        apply("Deployment", &mut d, &mut Allocator::default());
        assert_eq!(d, again, "defaulting is idempotent");
    }

    #[test]
    fn latest_or_untagged_images_are_always_pulled() {
        assert_eq!(image_pull_policy("nginx"), "Always");
        assert_eq!(image_pull_policy("nginx:latest"), "Always");
        assert_eq!(image_pull_policy("registry:5000/nginx"), "Always");
        assert_eq!(image_pull_policy("registry:5000/nginx:1.2"), "IfNotPresent");
        assert_eq!(image_pull_policy("nginx@sha256:abc"), "IfNotPresent");
    }

    #[test]
    fn a_service_gets_target_ports_and_a_cluster_ip() {
        let mut s = json!({"spec": {"type": "LoadBalancer", "ports": [{"port": 80}]}});
        apply("Service", &mut s, &mut Allocator::default());
        let p = &s["spec"]["ports"][0];
        assert_eq!(
            (
                p["protocol"].clone(),
                p["targetPort"].clone(),
                p["nodePort"].clone()
            ),
            (json!("TCP"), json!(80), json!(30000))
        );
        assert_eq!(s["spec"]["clusterIP"], "10.96.0.1");
        assert_eq!(s["spec"]["clusterIPs"], json!(["10.96.0.1"]));
        assert_eq!(s["spec"]["externalTrafficPolicy"], "Cluster");
    }
}

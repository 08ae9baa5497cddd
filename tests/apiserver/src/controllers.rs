//! The controllers a real control plane runs beside the API server, reduced to what clients
//! observe: garbage collection by ownerReference uid (Background, Foreground, Orphan), namespace
//! deletion, CRD cleanup and establishment, and simulated workload status (Deployments become
//! Available, Jobs complete, LoadBalancers get an address, PVCs bind). No containers run.

use std::{sync::Arc, time::Duration};

use chrono::Utc;
use serde_json::{Value, json};
use tokio::sync::broadcast::error::RecvError;

use crate::{
    crd,
    server::Shared,
    state::{DeleteOptions, Op, State, WriteOptions, timestamp},
    store::{EventType, uid_of},
};

const GC: &str = "generic-garbage-collector";
const NAMESPACE_CONTROLLER: &str = "namespace-controller";
const KCM: &str = "kube-controller-manager";

fn meta<'a>(v: &'a Value, f: &str) -> &'a str {
    v.pointer(&format!("/metadata/{f}"))
        .and_then(Value::as_str)
        .unwrap_or_default()
}

fn deleting(v: &Value) -> bool {
    v.pointer("/metadata/deletionTimestamp")
        .is_some_and(|t| !t.is_null())
}

fn has_finalizer(v: &Value, f: &str) -> bool {
    v.pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .is_some_and(|l| l.iter().any(|x| x == f))
}

fn owner_refs(v: &Value) -> Vec<Value> {
    v.pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

fn rt_of(state: &State, key: &str) -> Option<Arc<crate::registry::ResourceType>> {
    state.registry.versions_of(key).into_iter().next()
}

fn delete(state: &mut State, key: &str, object: &Value, policy: &str) {
    if let Some(rt) = rt_of(state, key) {
        let options = DeleteOptions {
            propagation: Some(policy.into()),
            ..DeleteOptions::default()
        };
        let _ = state.delete(
            &rt,
            meta(object, "namespace"),
            meta(object, "name"),
            &options,
            Utc::now(),
        );
    }
}

fn patch(state: &mut State, key: &str, object: &Value, manager: &str, patch: Value) {
    if let Some(rt) = rt_of(state, key) {
        let _ = state.write(
            &rt,
            meta(object, "namespace"),
            Some(meta(object, "name")),
            Op::Merge(patch),
            &WriteOptions::system(manager, None),
            Utc::now(),
        );
    }
}

fn without_finalizer(object: &Value, f: &str) -> Value {
    let rest: Vec<Value> = object
        .pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .map(|l| l.iter().filter(|x| *x != f).cloned().collect())
        .unwrap_or_default();
    if rest.is_empty() {
        json!({"metadata": {"finalizers": null}})
    } else {
        json!({"metadata": {"finalizers": rest}})
    }
}

/// The ClusterRole aggregation controller: a ClusterRole with an `aggregationRule` gets the
/// rules of every ClusterRole its selectors match, in name order, each rule once.
fn aggregate_cluster_roles(state: &mut State) {
    const KEY: &str = "rbac.authorization.k8s.io/clusterroles";
    let changed = state.store.changed_at(KEY);
    if changed <= state.aggregated_at {
        return;
    }
    state.aggregated_at = changed;
    let roles: Vec<Arc<Value>> = state.store.list(KEY, None).cloned().collect();
    for agg in &roles {
        let Some(selectors) = agg
            .pointer("/aggregationRule/clusterRoleSelectors")
            .and_then(Value::as_array)
        else {
            continue;
        };
        let selectors: Vec<kroxide_schema::selector::Selector> = selectors
            .iter()
            .filter_map(|s| kroxide_schema::selector::Selector::from_structured(s).ok())
            .collect();
        let mut sources: Vec<&Arc<Value>> = roles
            .iter()
            .filter(|r| meta(r, "name") != meta(agg, "name"))
            .filter(|r| selectors.iter().any(|s| !s.0.is_empty() && s.matches_object(r)))
            .collect();
        sources.sort_by(|a, b| meta(a, "name").cmp(meta(b, "name")));
        let mut rules: Vec<Value> = Vec::new();
        for r in sources {
            for rule in r.get("rules").and_then(Value::as_array).into_iter().flatten() {
                if !rules.contains(rule) {
                    rules.push(rule.clone());
                }
            }
        }
        let want = if rules.is_empty() {
            Value::Null
        } else {
            Value::Array(rules)
        };
        if agg.get("rules").unwrap_or(&Value::Null) != &want {
            patch(
                state,
                KEY,
                agg,
                "clusterrole-aggregation-controller",
                json!({"rules": want}),
            );
        }
    }
}

/// One pass of garbage collection, namespace deletion and CRD cleanup. Returns whether it
/// changed anything (callers repeat until it does not). Its work is what changed since the
/// last pass: objects whose owner references changed or whose owners went away, and the
/// objects being deleted; never a scan of everything.
pub fn collect(state: &mut State) -> bool {
    let before = state.store.rv();
    for (key, ns, name) in state.store.take_orphan_candidates() {
        let Some(o) = state.store.get(&key, &ns, &name).cloned() else {
            continue;
        };
        let refs = owner_refs(&o);
        if refs.is_empty() {
            continue;
        }
        // An owner is live when it exists, and (being namespaced) in the dependent's namespace.
        let alive: Vec<Value> = refs
            .iter()
            .filter(|r| {
                r.get("uid")
                    .and_then(Value::as_str)
                    .and_then(|u| state.store.locate(u))
                    .is_some_and(|(_, ons, _)| ons.is_empty() || *ons == ns)
            })
            .cloned()
            .collect();
        if alive.is_empty() {
            if !deleting(&o) {
                delete(state, &key, &o, "Background");
            }
        } else if alive.len() < refs.len() {
            patch(
                state,
                &key,
                &o,
                GC,
                json!({"metadata": {"ownerReferences": alive}}),
            );
        }
    }
    aggregate_cluster_roles(state);
    for (key, ns, name) in state.store.deleting() {
        // Earlier steps of this pass may have changed or removed it.
        let Some(o) = state.store.get(&key, &ns, &name).cloned() else {
            continue;
        };
        finalize(state, &key, &o);
    }
    state.store.rv() != before
}

/// The objects whose ownerReferences name `uid`, as they are now.
fn dependents_of(state: &State, uid: &str) -> Vec<(Arc<str>, Arc<Value>)> {
    state
        .store
        .dependents(uid)
        .filter_map(|(k, ns, n)| Some((k.clone(), state.store.get(k, ns, n)?.clone())))
        .collect()
}

/// The controllers that act on an object being deleted: volume protection, orphaning,
/// foreground deletion, the namespace controller and CRD cleanup.
fn finalize(state: &mut State, key: &Arc<str>, o: &Arc<Value>) {
    // The PVC and PV protection controllers: nothing runs Pods that mount volumes here, so a
    // deleted claim or volume is never in use and its protection finalizer goes at once.
    for f in ["kubernetes.io/pvc-protection", "kubernetes.io/pv-protection"] {
        if has_finalizer(o, f) {
            patch(state, key, o, GC, without_finalizer(o, f));
        }
    }
    let uid = uid_of(o).unwrap_or_default().to_string();
    let deps = dependents_of(state, &uid);
    if has_finalizer(o, "orphan") {
        for (dkey, d) in &deps {
            let keep: Vec<Value> = owner_refs(d)
                .into_iter()
                .filter(|r| r.get("uid").and_then(Value::as_str) != Some(&uid))
                .collect();
            let refs = if keep.is_empty() {
                Value::Null
            } else {
                Value::Array(keep)
            };
            patch(state, dkey, d, GC, json!({"metadata": {"ownerReferences": refs}}));
        }
        patch(state, key, o, GC, without_finalizer(o, "orphan"));
        return;
    }
    if has_finalizer(o, "foregroundDeletion") {
        // As the real garbage collector: a dependent goes in the foreground only when it has
        // dependents of its own.
        for (dkey, d) in deps.iter().filter(|(_, d)| !deleting(d)) {
            let has_own = uid_of(d).is_some_and(|u| state.store.dependents(u).next().is_some());
            delete(state, dkey, d, if has_own { "Foreground" } else { "Background" });
        }
        let blocking = deps.iter().any(|(dkey, d)| {
            state
                .store
                .get(dkey, meta(d, "namespace"), meta(d, "name"))
                .is_some()
                && owner_refs(d).iter().any(|r| {
                    r.get("uid").and_then(Value::as_str) == Some(&uid)
                        && r.get("blockOwnerDeletion") == Some(&json!(true))
                })
        });
        if !blocking {
            let current = state
                .store
                .get(key, meta(o, "namespace"), meta(o, "name"))
                .cloned();
            if let Some(cur) = current {
                patch(
                    state,
                    key,
                    &cur,
                    GC,
                    without_finalizer(&cur, "foregroundDeletion"),
                );
            }
        }
    }
    if &**key == "/namespaces" {
        let ns = meta(o, "name").to_string();
        let contents: Vec<(Arc<str>, Arc<Value>)> = state
            .store
            .keys()
            .into_iter()
            .flat_map(|k| {
                state
                    .store
                    .list(&k, Some(&ns))
                    .map(|c| (k.clone(), c.clone()))
                    .collect::<Vec<_>>()
            })
            .collect();
        for (ckey, c) in contents.iter().filter(|(_, c)| !deleting(c)) {
            delete(state, ckey, c, "Background");
        }
        let remaining = state
            .store
            .keys()
            .iter()
            .any(|k| state.store.list(k, Some(&ns)).next().is_some());
        let current = state.store.get(key, "", &ns).cloned();
        if !remaining
            && let Some(current) = current
            && current
                .pointer("/spec/finalizers")
                .and_then(Value::as_array)
                .is_some_and(|f| !f.is_empty())
            && let Some(rt) = rt_of(state, "/namespaces")
        {
            let mut next = (*current).clone();
            next["spec"]["finalizers"] = json!([]);
            let _ = state.write(
                &rt,
                "",
                Some(&ns),
                Op::Update(next),
                &WriteOptions::system(NAMESPACE_CONTROLLER, Some("finalize")),
                Utc::now(),
            );
        }
    }
    if &**key == "apiextensions.k8s.io/customresourcedefinitions" && has_finalizer(o, crd::CLEANUP_FINALIZER)
    {
        let name = meta(o, "name").to_string();
        let instances_key = state
            .registry
            .all()
            .iter()
            .find(|t| t.crd.as_deref() == Some(&name))
            .map(|t| t.storage_key());
        let instances: Vec<Arc<Value>> = match &instances_key {
            Some(k) => state.store.list(k, None).cloned().collect(),
            None => Vec::new(),
        };
        if let Some(k) = &instances_key {
            for c in instances.iter().filter(|c| !deleting(c)) {
                delete(state, k, c, "Background");
            }
        }
        let remaining = instances_key
            .as_deref()
            .is_some_and(|k| state.store.list(k, None).next().is_some());
        if !remaining {
            patch(
                state,
                key,
                o,
                "apiextensions-apiserver",
                without_finalizer(o, crd::CLEANUP_FINALIZER),
            );
        }
    }
}

/// Runs [`collect`] whenever something changed, until shutdown.
pub async fn collector(shared: Arc<Shared>) {
    let mut stopping = shared.stopping.subscribe();
    loop {
        tokio::select! {
            _ = shared.kick.notified() => {}
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = stopping.changed() => return,
        }
        for _ in 0..16 {
            let changed = collect(&mut shared.lock());
            if !changed {
                break;
            }
        }
    }
}

fn int(v: &Value, ptr: &str, default: i64) -> i64 {
    v.pointer(ptr).and_then(Value::as_i64).unwrap_or(default)
}

fn short_hash(uid: &str, generation: i64) -> String {
    let mut h: u64 = 1469598103934665603;
    for b in uid.bytes().chain(generation.to_le_bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(1099511628211);
    }
    const CHARS: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    (0..10)
        .map(|i| CHARS[((h >> (i * 6)) % CHARS.len() as u64) as usize] as char)
        .collect()
}

fn condition(t: &str, status: &str, reason: &str, message: &str, now: &str) -> Value {
    json!({"type": t, "status": status, "lastUpdateTime": now, "lastTransitionTime": now, "reason": reason, "message": message})
}

/// The status a simulated workload reports once it has caught up with its spec.
fn ready_status(kind: &str, o: &Value, now: &str) -> Option<Value> {
    let generation = int(o, "/metadata/generation", 1);
    let replicas = int(o, "/spec/replicas", 1);
    let name = meta(o, "name");
    let rs = format!("{name}-{}", template_hash(o));
    let some = |n: i64| if n > 0 { json!(n) } else { Value::Null };
    let mut status = match kind {
        "Deployment" => json!({
        "observedGeneration": generation, "replicas": some(replicas), "updatedReplicas": some(replicas),
        "readyReplicas": some(replicas), "availableReplicas": some(replicas),
        "conditions": [
            condition("Available", "True", "MinimumReplicasAvailable", "Deployment has minimum availability.", now),
            condition("Progressing", "True", "NewReplicaSetAvailable", &format!("ReplicaSet \"{rs}\" has successfully progressed."), now),
        ]}),
        "StatefulSet" => json!({
            "observedGeneration": generation, "replicas": replicas, "readyReplicas": some(replicas),
            "currentReplicas": some(replicas), "updatedReplicas": some(replicas), "availableReplicas": replicas,
            "currentRevision": rs, "updateRevision": rs, "collisionCount": 0}),
        "ReplicaSet" => json!({
            "observedGeneration": generation, "replicas": replicas, "fullyLabeledReplicas": some(replicas),
            "readyReplicas": some(replicas), "availableReplicas": some(replicas)}),
        "DaemonSet" => json!({
            "observedGeneration": generation, "currentNumberScheduled": 1, "desiredNumberScheduled": 1,
            "numberAvailable": 1, "numberMisscheduled": 0, "numberReady": 1, "updatedNumberScheduled": 1}),
        "Job" => {
            if o.pointer("/spec/suspend") == Some(&json!(true)) {
                return None;
            }
            let completions = int(o, "/spec/completions", 1);
            let start = o.pointer("/status/startTime").cloned().unwrap_or(json!(now));
            json!({"startTime": start, "completionTime": now, "succeeded": completions, "ready": 0, "terminating": 0,
                "uncountedTerminatedPods": {},
                "conditions": [
                    {"type": "SuccessCriteriaMet", "status": "True", "lastProbeTime": now, "lastTransitionTime": now,
                     "reason": "CompletionsReached", "message": "Reached expected number of succeeded pods"},
                    {"type": "Complete", "status": "True", "lastProbeTime": now, "lastTransitionTime": now,
                     "reason": "CompletionsReached", "message": "Reached expected number of succeeded pods"}]})
        }
        "Service" => {
            if o.pointer("/spec/type").and_then(Value::as_str) != Some("LoadBalancer") {
                return None;
            }
            let n = short_hash(meta(o, "uid"), 0).bytes().map(u32::from).sum::<u32>() % 200 + 10;
            json!({"loadBalancer": {"ingress": [{"ip": format!("172.18.255.{n}"), "ipMode": "VIP"}]}})
        }
        "PersistentVolumeClaim" => json!({
            "phase": "Bound",
            "accessModes": o.pointer("/spec/accessModes").cloned().unwrap_or(json!(["ReadWriteOnce"])),
            "capacity": {"storage": o.pointer("/spec/resources/requests/storage").cloned().unwrap_or(json!("1Gi"))}}),
        "Pod" => json!({"phase": "Running", "startTime": now, "podIP": "10.244.0.10",
            "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": now},
                           {"type": "ContainersReady", "status": "True", "lastTransitionTime": now}]}),
        _ => return None,
    };
    // Keep transition times of conditions whose status did not change.
    if let (Some(new), Some(old)) = (
        status.get_mut("conditions").and_then(Value::as_array_mut),
        o.pointer("/status/conditions").and_then(Value::as_array),
    ) {
        for c in new.iter_mut() {
            if let Some(prev) = old
                .iter()
                .find(|p| p["type"] == c["type"] && p["status"] == c["status"])
            {
                c["lastTransitionTime"] = prev["lastTransitionTime"].clone();
            }
        }
    }
    if let Some(m) = status.as_object_mut() {
        m.retain(|_, v| !v.is_null());
    }
    Some(status)
}

/// Whether a workload's status lags its spec, so the simulator should act.
fn needs_status(kind: &str, o: &Value) -> bool {
    if deleting(o) {
        return false;
    }
    match kind {
        "Deployment" | "StatefulSet" | "ReplicaSet" | "DaemonSet" => {
            o.pointer("/status/observedGeneration").and_then(Value::as_i64)
                != o.pointer("/metadata/generation").and_then(Value::as_i64)
        }
        "Job" => {
            o.pointer("/status/completionTime").is_none() && o.pointer("/spec/suspend") != Some(&json!(true))
        }
        "Service" => {
            o.pointer("/spec/type").and_then(Value::as_str) == Some("LoadBalancer")
                && o.pointer("/status/loadBalancer/ingress").is_none()
        }
        "PersistentVolumeClaim" => o.pointer("/status/phase").and_then(Value::as_str) != Some("Bound"),
        "Pod" => o.pointer("/status/phase").and_then(Value::as_str) != Some("Running"),
        _ => false,
    }
}

fn kind_of(key: &str) -> Option<&'static str> {
    Some(match key {
        "apps/deployments" => "Deployment",
        "apps/statefulsets" => "StatefulSet",
        "apps/replicasets" => "ReplicaSet",
        "apps/daemonsets" => "DaemonSet",
        "batch/jobs" => "Job",
        "/services" => "Service",
        "/persistentvolumeclaims" => "PersistentVolumeClaim",
        "/pods" => "Pod",
        _ => return None,
    })
}

fn simulate_now(shared: &Shared, key: &str, ns: &str, name: &str, generation: i64) {
    let mut state = shared.lock();
    let Some(o) = state.store.get(key, ns, name).cloned() else {
        return;
    };
    let Some(kind) = kind_of(key) else { return };
    let workload = matches!(kind, "Deployment" | "StatefulSet" | "ReplicaSet" | "DaemonSet");
    if int(&o, "/metadata/generation", 0) != generation
        || deleting(&o)
        || (!workload && !needs_status(kind, &o))
    {
        return;
    }
    let now = timestamp(Utc::now());
    let Some(status) = ready_status(kind, &o, &now) else {
        return;
    };
    let Some(rt) = rt_of(&state, key) else { return };
    if kind == "PersistentVolumeClaim" && o.pointer("/spec/volumeName").is_none() {
        let volume = format!("pvc-{}", meta(&o, "uid"));
        let _ = state.write(
            &rt,
            ns,
            Some(name),
            Op::Merge(json!({"spec": {"volumeName": volume}})),
            &WriteOptions::system(KCM, None),
            Utc::now(),
        );
    }
    let _ = state.write(
        &rt,
        ns,
        Some(name),
        Op::Update(status_update(&o, status)),
        &WriteOptions::system(KCM, Some("status")),
        Utc::now(),
    );
}

/// The body of an update of `o`'s status subresource to `status`, without a resourceVersion
/// precondition (the simulator writes under the lock it read with): the status endpoint keeps
/// everything else of the stored object, so nothing else is sent (or copied).
fn status_update(o: &Value, status: Value) -> Value {
    let mut metadata = json!({"name": meta(o, "name")});
    let namespace = meta(o, "namespace");
    if !namespace.is_empty() {
        metadata["namespace"] = json!(namespace);
    }
    json!({"apiVersion": o["apiVersion"], "kind": o["kind"], "metadata": metadata, "status": status})
}

/// `pod-template-hash` of a Deployment's pod template.
fn template_hash(deploy: &Value) -> String {
    let template = deploy
        .pointer("/spec/template")
        .map(Value::to_string)
        .unwrap_or_default();
    short_hash(&template, 0)
}

/// The ReplicaSets a Deployment controller keeps: one for the current template with the
/// desired replicas, older ones scaled to zero. Helm's `--wait` reads them.
fn sync_replica_sets(state: &mut State, deploy: &Value) {
    let Some(rs_rt) = state.rt("apps", "v1", "replicasets") else {
        return;
    };
    let ns = meta(deploy, "namespace").to_string();
    let uid = meta(deploy, "uid").to_string();
    let hash = template_hash(deploy);
    let name = format!("{}-{hash}", meta(deploy, "name"));
    let replicas = int(deploy, "/spec/replicas", 1);
    let owned: Vec<Arc<Value>> = dependents_of(state, &uid)
        .into_iter()
        .filter(|(k, _)| &**k == "apps/replicasets")
        .map(|(_, rs)| rs)
        .collect();
    let revision = owned.len() as i64 + 1;
    let mut template = deploy.pointer("/spec/template").cloned().unwrap_or(json!({}));
    template["metadata"]["labels"]["pod-template-hash"] = json!(hash);
    let mut selector = deploy.pointer("/spec/selector").cloned().unwrap_or(json!({}));
    selector["matchLabels"]["pod-template-hash"] = json!(hash);
    let labels = template.pointer("/metadata/labels").cloned().unwrap_or(json!({}));
    let opts = WriteOptions::system(KCM, None);
    for rs in owned
        .iter()
        .filter(|rs| meta(rs, "name") != name && int(rs, "/spec/replicas", 0) != 0)
    {
        let _ = state.write(
            &rs_rt,
            &ns,
            Some(meta(rs, "name")),
            Op::Merge(json!({"spec": {"replicas": 0}})),
            &opts,
            Utc::now(),
        );
    }
    let existing = owned.iter().find(|rs| meta(rs, "name") == name);
    let annotations = json!({
        "deployment.kubernetes.io/desired-replicas": replicas.to_string(),
        "deployment.kubernetes.io/max-replicas": (replicas + (replicas + 3) / 4).to_string(),
        "deployment.kubernetes.io/revision": existing
            .and_then(|rs| rs.pointer("/metadata/annotations/deployment.kubernetes.io~1revision").cloned())
            .unwrap_or(json!(revision.to_string())),
    });
    let rs = json!({"apiVersion": "apps/v1", "kind": "ReplicaSet",
        "metadata": {"name": name, "namespace": ns, "labels": labels, "annotations": annotations,
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": meta(deploy, "name"),
                "uid": uid, "controller": true, "blockOwnerDeletion": true}]},
        "spec": {"replicas": replicas, "selector": selector, "template": template}});
    let op = if existing.is_some() {
        Op::Merge(
            json!({"metadata": {"annotations": rs["metadata"]["annotations"]}, "spec": {"replicas": replicas}}),
        )
    } else {
        Op::Create(rs.clone())
    };
    let _ = state.write(
        &rs_rt,
        &ns,
        existing.map(|_| name.as_str()),
        op,
        &opts,
        Utc::now(),
    );
    let rev = annotations["deployment.kubernetes.io/revision"].clone();
    if deploy.pointer("/metadata/annotations/deployment.kubernetes.io~1revision") != Some(&rev)
        && let Some(rt) = state.rt("apps", "v1", "deployments")
    {
        let patch = json!({"metadata": {"annotations": {"deployment.kubernetes.io/revision": rev}}});
        let _ = state.write(
            &rt,
            &ns,
            Some(meta(deploy, "name")),
            Op::Merge(patch),
            &opts,
            Utc::now(),
        );
    }
}

/// While a workload is rolling out: the new generation is observed, nothing is ready yet.
fn progressing(shared: &Shared, key: &str, o: &Value) {
    if key != "apps/deployments" {
        return;
    }
    let now = timestamp(Utc::now());
    let generation = int(o, "/metadata/generation", 1);
    let replicas = int(o, "/spec/replicas", 1);
    let mut status = o.get("status").cloned().unwrap_or(json!({}));
    status["observedGeneration"] = json!(generation);
    status["replicas"] = json!(replicas);
    status["unavailableReplicas"] = json!(replicas);
    let rs = format!("{}-{}", meta(o, "name"), template_hash(o));
    let mut conditions: Vec<Value> = status
        .get("conditions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    conditions.retain(|c| c["type"] != "Progressing");
    if !conditions.iter().any(|c| c["type"] == "Available") {
        conditions.push(condition(
            "Available",
            "False",
            "MinimumReplicasUnavailable",
            "Deployment does not have minimum availability.",
            &now,
        ));
    }
    conditions.push(condition(
        "Progressing",
        "True",
        "ReplicaSetUpdated",
        &format!("ReplicaSet \"{rs}\" is progressing."),
        &now,
    ));
    status["conditions"] = Value::Array(conditions);
    let mut state = shared.lock();
    sync_replica_sets(&mut state, o);
    if replicas == 0 {
        return;
    }
    let Some(rt) = rt_of(&state, key) else { return };
    let _ = state.write(
        &rt,
        meta(o, "namespace"),
        Some(meta(o, "name")),
        Op::Update(status_update(o, status)),
        &WriteOptions::system(KCM, Some("status")),
        Utc::now(),
    );
}

/// Simulates workload controllers and CRD establishment, until shutdown.
pub async fn simulator(shared: Arc<Shared>) {
    let mut events = shared.lock().store.subscribe();
    let mut stopping = shared.stopping.subscribe();
    loop {
        let e = tokio::select! {
            r = events.recv() => match r {
                Ok(e) => e,
                Err(RecvError::Lagged(_)) => continue,
                Err(RecvError::Closed) => return,
            },
            _ = stopping.changed() => return,
        };
        if e.kind == EventType::Deleted {
            continue;
        }
        let knobs = shared.knobs();
        if &*e.key == "apiextensions.k8s.io/customresourcedefinitions" {
            if !crd::is_established(&e.object) && !deleting(&e.object) {
                let shared = shared.clone();
                let name = meta(&e.object, "name").to_string();
                tokio::spawn(async move {
                    tokio::time::sleep(knobs.establish_delay).await;
                    shared.lock().establish_crd(&name);
                });
            }
            continue;
        }
        let Some(kind) = kind_of(&e.key) else { continue };
        if !knobs.simulate_workloads || !needs_status(kind, &e.object) {
            continue;
        }
        let generation = int(&e.object, "/metadata/generation", 0);
        let previous_gen = e.previous.as_ref().map(|p| int(p, "/metadata/generation", 0));
        // Act once per generation: on creation or when the spec changed.
        if e.kind == EventType::Modified && previous_gen == Some(generation) {
            continue;
        }
        progressing(&shared, &e.key, &e.object);
        let shared = shared.clone();
        let key = e.key.to_string();
        let ns = e.namespace.clone();
        let name = meta(&e.object, "name").to_string();
        tokio::spawn(async move {
            tokio::time::sleep(knobs.workload_delay).await;
            simulate_now(&shared, &key, &ns, &name, generation);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::FieldValidation;

    fn opts() -> WriteOptions {
        WriteOptions {
            manager: "t".into(),
            subresource: None,
            dry_run: false,
            validation: FieldValidation::Strict,
            trusted: false,
        }
    }

    fn cm(name: &str, owner: Option<(&str, bool)>) -> Value {
        let mut v = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}});
        if let Some((uid, block)) = owner {
            v["metadata"]["ownerReferences"] = json!([{"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": uid, "blockOwnerDeletion": block}]);
        }
        v
    }

    fn run(state: &mut State) {
        while collect(state) {}
    }

    fn setup(block: bool) -> (State, Arc<crate::registry::ResourceType>) {
        let mut s = State::new(1000);
        let rt = s.rt("", "v1", "configmaps").unwrap();
        let owner = s
            .write(
                &rt,
                "default",
                None,
                Op::Create(cm("owner", None)),
                &opts(),
                Utc::now(),
            )
            .unwrap();
        let uid = uid_of(&owner.object).unwrap().to_string();
        s.write(
            &rt,
            "default",
            None,
            Op::Create(cm("dep", Some((&uid, block)))),
            &opts(),
            Utc::now(),
        )
        .unwrap();
        (s, rt)
    }

    #[test]
    fn background_deletion_collects_dependents() {
        let (mut s, rt) = setup(false);
        s.delete(&rt, "default", "owner", &DeleteOptions::default(), Utc::now())
            .unwrap();
        run(&mut s);
        assert!(s.store.get("/configmaps", "default", "dep").is_none());
    }

    #[test]
    fn foreground_deletion_waits_for_blocking_dependents() {
        let (mut s, rt) = setup(true);
        let fg = DeleteOptions {
            propagation: Some("Foreground".into()),
            ..DeleteOptions::default()
        };
        s.delete(&rt, "default", "owner", &fg, Utc::now()).unwrap();
        assert!(
            s.store.get("/configmaps", "default", "owner").is_some(),
            "owner waits"
        );
        run(&mut s);
        assert!(s.store.get("/configmaps", "default", "dep").is_none());
        assert!(s.store.get("/configmaps", "default", "owner").is_none());
    }

    #[test]
    fn orphan_deletion_keeps_dependents_without_the_reference() {
        let (mut s, rt) = setup(false);
        let orphan = DeleteOptions {
            propagation: Some("Orphan".into()),
            ..DeleteOptions::default()
        };
        s.delete(&rt, "default", "owner", &orphan, Utc::now()).unwrap();
        run(&mut s);
        assert!(s.store.get("/configmaps", "default", "owner").is_none());
        let dep = s.store.get("/configmaps", "default", "dep").unwrap();
        assert!(dep.pointer("/metadata/ownerReferences").is_none());
    }

    #[test]
    fn a_deleted_namespace_takes_its_contents_with_it() {
        let mut s = State::new(1000);
        let ns_rt = s.rt("", "v1", "namespaces").unwrap();
        let rt = s.rt("", "v1", "configmaps").unwrap();
        s.write(
            &ns_rt,
            "",
            None,
            Op::Create(json!({"metadata": {"name": "shop"}})),
            &opts(),
            Utc::now(),
        )
        .unwrap();
        s.write(&rt, "shop", None, Op::Create(cm("a", None)), &opts(), Utc::now())
            .unwrap();
        s.delete(&ns_rt, "", "shop", &DeleteOptions::default(), Utc::now())
            .unwrap();
        assert_eq!(s.namespace("shop").unwrap()["status"]["phase"], "Terminating");
        run(&mut s);
        assert!(s.namespace("shop").is_none());
        assert!(s.store.get("/configmaps", "shop", "a").is_none());
    }

    #[test]
    fn a_deployment_reports_available_replicas() {
        let d = json!({"metadata": {"name": "web", "uid": "u", "generation": 2}, "spec": {"replicas": 3}});
        let st = ready_status("Deployment", &d, "2026-01-01T00:00:00Z").unwrap();
        assert_eq!(st["observedGeneration"], 2);
        assert_eq!(st["availableReplicas"], 3);
        assert_eq!(st["conditions"][0]["reason"], "MinimumReplicasAvailable");
        assert!(needs_status("Deployment", &d));
    }
}

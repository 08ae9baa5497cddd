//! The apply stage: server-side apply of each desired child with kro's field manager
//! (`kro.run/applyset`, forced), skipped when nothing needs it. A child needs no apply when the
//! intent we last applied is unchanged and the fields our apply owns are still ours — never by
//! comparing values with the live object, which the API server has defaulted and canonicalised.
//! A field someone else changed moves to their field manager, so our owned set shrinks and the
//! next reconcile applies again, reverting the drift.

use crate::object::Pointer as _;
use std::hash::{Hash, Hasher};

use kube::api::{Patch, PatchParams};
use serde_json::Value;

use super::{
    children::trim,
    context::Context,
    error::Error,
    memory::{Applied, fields_hash},
    wire::to_value,
};
use crate::{child::DesiredChild, metadata, object::Object};

/// A stable hash of what we ask for, taken over the tree itself (no copy, no text).
pub(crate) fn intent_hash(child: &DesiredChild) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    for (k, v) in &child.object {
        k.hash(&mut h);
        crate::object::hash_json(v, &mut h);
    }
    h.finish()
}

/// The `fieldsV1` our apply owns on `live`.
pub(crate) fn owned_fields(live: &Value) -> Option<&Value> {
    live.at("/metadata/managedFields")?
        .as_array()?
        .iter()
        .find_map(|e| {
            let ours = e.get("manager").and_then(Value::as_str) == Some(metadata::APPLY_MANAGER)
                && e.get("operation").and_then(Value::as_str) == Some("Apply")
                && e.get("subresource")
                    .is_none_or(|s| s.as_str().is_none_or(str::is_empty));
            if ours { e.get("fieldsV1") } else { None }
        })
}

/// Whether `child` can be left alone: same intent as last applied, same object, and our owned
/// fields exactly as our last apply left them.
pub(crate) fn unchanged(record: Option<&Applied>, hash: u64, live: Option<&Value>) -> bool {
    let (Some(record), Some(live)) = (record, live) else {
        return false;
    };
    let owned = owned_fields(live);
    record.hash == hash
        && live.uid() == Some(record.uid.as_str())
        && owned.is_some()
        && fields_hash(owned) == record.fields
        && !live.deleting()
}

/// Whether applying `intent` over `live` would change nothing, judged without a record of our
/// last apply (after a restart): our apply owns fields of `live`, every field it owns is still
/// in the intent (so none would be released), and every value of the intent is already there.
/// Conservative: a value the server canonicalised (`1000m` stored as `1`), a list others added
/// to, or a defaulted key of an associative list makes it answer `false`, and the child is
/// applied once (a no-op for the server) after which the record takes over.
pub(crate) fn settled(intent: &Value, live: &Value) -> bool {
    let Some(owned) = owned_fields(live) else {
        return false;
    };
    !live.deleting() && owned_within(owned, intent) && within(intent, live)
}

/// Whether every value `want` sets is the same in `live`.
fn within(want: &Value, live: &Value) -> bool {
    match (want, live) {
        (Value::Object(w), Value::Object(l)) => w.iter().all(|(k, v)| match l.get(k) {
            Some(lv) => within(v, lv),
            None => v.is_null(),
        }),
        (Value::Array(w), Value::Array(l)) => {
            w.len() == l.len() && w.iter().zip(l).all(|(a, b)| within(a, b))
        }
        (Value::Number(a), Value::Number(b)) => a.as_f64() == b.as_f64(),
        _ => want == live,
    }
}

/// Whether every field in `fields` (a `fieldsV1` tree) is set by `want`.
fn owned_within(fields: &Value, want: &Value) -> bool {
    let Some(entries) = fields.as_object() else {
        return true;
    };
    entries.iter().all(|(k, sub)| {
        if k == "." {
            true
        } else if let Some(name) = k.strip_prefix("f:") {
            want.get(name).is_some_and(|w| owned_within(sub, w))
        } else if let Some(key) = k.strip_prefix("k:") {
            // An element of an associative list, by its key fields; a key field the intent
            // leaves out was defaulted by the server.
            let Ok(Value::Object(key)) = serde_json::from_str::<Value>(key) else {
                return false;
            };
            want.as_array().into_iter().flatten().any(|item| {
                key.iter().any(|(f, v)| item.get(f) == Some(v))
                    && key.iter().all(|(f, v)| item.get(f).is_none_or(|x| x == v))
                    && owned_within(sub, item)
            })
        } else if let Some(value) = k.strip_prefix("v:") {
            serde_json::from_str::<Value>(value)
                .is_ok_and(|v| want.as_array().is_some_and(|items| items.contains(&v)))
        } else if let Some(index) = k.strip_prefix("i:") {
            index
                .parse::<usize>()
                .ok()
                .and_then(|i| want.as_array()?.get(i))
                .is_some_and(|item| owned_within(sub, item))
        } else {
            false
        }
    })
}

/// Whether an existing object may become this ApplySet's child: it is already in it (our
/// watch has not seen it yet), or its owner handed it over with [`metadata::ADOPT`].
pub(crate) fn may_take_over(existing: &Value, applyset: &str) -> bool {
    existing.label(metadata::APPLYSET_PART_OF) == Some(applyset)
        || existing.annotation(metadata::ADOPT) == Some("true")
}

/// What happened to one child.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Outcome {
    /// Nothing to do.
    Unchanged,
    /// Applied; the server's answer is in the children cache.
    Applied,
}

/// Why a child could not be applied.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ApplyError {
    /// The object belongs to another instance's ApplySet.
    #[error("resource {key}: {object} belongs to a different ApplySet ({other})")]
    OtherApplySet {
        /// The child.
        key: String,
        /// `Kind namespace/name`.
        object: String,
        /// The other ApplySet.
        other: String,
    },
    /// An object of that name exists, and it is not in the instance's ApplySet: it was not
    /// made for this instance, so it is not taken over.
    #[error(
        "resource {key}: {object} already exists and is not part of this instance's ApplySet; it is not taken \
         over (annotate it {adopt}=true to hand it to this instance)",
        adopt = metadata::ADOPT
    )]
    NotOurs {
        /// The child.
        key: String,
        /// `Kind namespace/name`.
        object: String,
    },
    /// The API refused or failed.
    #[error("resource {key}: {source}")]
    Api {
        /// The child.
        key: String,
        /// The request's error.
        #[source]
        source: Error,
    },
}

fn shown(child: &DesiredChild) -> String {
    match child.namespace() {
        Some(ns) => format!("{} {ns}/{}", child.kind(), child.name()),
        None => format!("{} {}", child.kind(), child.name()),
    }
}

/// Applies `child` unless unchanged. `live` is the observed object, if any.
///
/// # Errors
/// [`ApplyError`] naming the child.
pub(crate) async fn apply(
    ctx: &Context,
    applyset: &str,
    child: &DesiredChild,
    live: Option<&Value>,
) -> Result<Outcome, ApplyError> {
    let key = child.key.to_string();
    let id = child.id();
    let hash = intent_hash(child);
    if let Some(other) = live.and_then(|l| l.label(metadata::APPLYSET_PART_OF))
        && other != applyset
    {
        return Err(ApplyError::OtherApplySet {
            key,
            object: shown(child),
            other: other.to_string(),
        });
    }
    let record = ctx.memory.applied(applyset, &id);
    if unchanged(record.as_ref(), hash, live) {
        ctx.metrics.apply("unchanged");
        return Ok(Outcome::Unchanged);
    }
    // No record (the controller restarted): the live object may show the intent is in place.
    if record.is_none()
        && let Some(live) = live
        && settled(&Value::Object(child.object.clone()), live)
    {
        let entry = Applied {
            hash,
            uid: live.uid().unwrap_or_default().to_string(),
            fields: fields_hash(owned_fields(live)),
        };
        ctx.memory.record_applied(applyset, id, entry);
        ctx.metrics.apply("unchanged");
        return Ok(Outcome::Unchanged);
    }
    let (resource, namespaced) = ctx
        .informers
        .kinds
        .resolve(&ctx.client, child.api_version(), child.kind())
        .await
        .map_err(|source| ApplyError::Api {
            key: key.clone(),
            source,
        })?;
    let api = ctx.api(&resource, namespaced, child.namespace()).await;
    if live.is_none() {
        // Not among the children we watch (they carry kro.run/owned): new, or someone else's.
        match api.get_opt(child.name()).await {
            Ok(None) => {}
            Ok(Some(existing)) => {
                let existing = to_value(existing, &resource);
                if !may_take_over(&existing, applyset) {
                    return Err(ApplyError::NotOurs {
                        key,
                        object: shown(child),
                    });
                }
            }
            Err(source) => {
                return Err(ApplyError::Api {
                    key,
                    source: Error::Api {
                        action: "get",
                        object: shown(child),
                        source,
                    },
                });
            }
        }
    }
    let result = api
        .patch(
            child.name(),
            &PatchParams::apply(metadata::APPLY_MANAGER).force(),
            &Patch::Apply(&child.object),
        )
        .await;
    let applied = match result {
        Ok(o) => to_value(o, &resource),
        Err(source) => {
            ctx.metrics.apply("error");
            return Err(ApplyError::Api {
                key,
                source: Error::Api {
                    action: "apply",
                    object: shown(child),
                    source,
                },
            });
        }
    };
    ctx.metrics.apply("applied");
    let entry = Applied {
        hash,
        uid: applied.uid().unwrap_or_default().to_string(),
        fields: fields_hash(owned_fields(&applied)),
    };
    ctx.memory.record_applied(applyset, id, entry);
    ctx.children.upsert(&trim(applied));
    Ok(Outcome::Applied)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::child::{ChildKey, Readiness};
    use serde_json::json;

    fn child() -> DesiredChild {
        DesiredChild {
            key: ChildKey::new("cm"),
            object: json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}, "data": {"k": "v"}})
                .as_object()
                .unwrap()
                .clone(),
            ready: Readiness::Unknown,
        }
    }

    fn live(fields: Value) -> Value {
        json!({"metadata": {"uid": "u1", "managedFields": [
            {"manager": "kube-controller-manager", "operation": "Update", "fieldsV1": {"f:data": {}}},
            {"manager": metadata::APPLY_MANAGER, "operation": "Apply", "fieldsV1": fields}]}, "data": {"k": "v", "defaulted": "x"}})
    }

    #[test]
    fn after_a_restart_a_live_object_holding_the_intent_is_left_alone_and_any_difference_is_applied() {
        let intent = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web",
            "labels": {"app": "web"}}, "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]}});
        let ours = json!({"f:metadata": {"f:labels": {"f:app": {}}}, "f:spec": {"f:selector": {"f:app": {}},
            "f:ports": {"k:{\"port\":80,\"protocol\":\"TCP\"}": {".": {}, "f:port": {}}}}});
        let live = |fields: Value, port: u64, extra: Value| {
            json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "uid": "u1",
                "labels": {"app": "web", "other": "x"},
                "managedFields": [{"manager": metadata::APPLY_MANAGER, "operation": "Apply", "fieldsV1": fields}]},
                "spec": {"selector": {"app": "web"}, "clusterIP": "10.0.0.1", "extra": extra,
                    "ports": [{"port": port, "protocol": "TCP", "targetPort": 80}]}})
        };
        // Server defaults (protocol, targetPort, clusterIP) and others' labels do not count.
        assert!(settled(&intent, &live(ours.clone(), 80, json!(null))));
        // A value someone changed, a field we own that the intent no longer sets, no apply of
        // ours at all: apply.
        assert!(!settled(&intent, &live(ours.clone(), 81, json!(null))));
        let released = json!({"f:spec": {"f:extra": {}}, "f:metadata": {}});
        assert!(!settled(&intent, &live(released, 80, json!("kept"))));
        let mut theirs = live(ours, 80, json!(null));
        theirs["metadata"]["managedFields"][0]["manager"] = json!("kubectl");
        assert!(!settled(&intent, &theirs));
    }

    #[test]
    fn an_unchanged_intent_with_intact_ownership_needs_no_apply() {
        let c = child();
        let fields = json!({"f:data": {"f:k": {}}});
        let record = Applied {
            hash: intent_hash(&c),
            uid: "u1".into(),
            fields: fields_hash(Some(&fields)),
        };
        assert!(unchanged(
            Some(&record),
            intent_hash(&c),
            Some(&live(fields.clone()))
        ));
        // Someone took a field we owned: apply again.
        assert!(!unchanged(
            Some(&record),
            intent_hash(&c),
            Some(&live(json!({"f:data": {}})))
        ));
        // A changed intent, a recreated object, or no memory: apply.
        assert!(!unchanged(
            Some(&record),
            intent_hash(&c) + 1,
            Some(&live(fields.clone()))
        ));
        let other_uid = Applied {
            uid: "u2".into(),
            ..record.clone()
        };
        assert!(!unchanged(
            Some(&other_uid),
            intent_hash(&c),
            Some(&live(fields.clone()))
        ));
        assert!(!unchanged(None, intent_hash(&c), Some(&live(fields))));
    }

    #[test]
    fn only_an_object_of_this_applyset_or_handed_over_may_be_taken() {
        let obj = |labels: Value, annotations: Value| json!({"metadata": {"name": "precious", "labels": labels, "annotations": annotations}});
        assert!(!may_take_over(&obj(json!({}), json!({})), "applyset-a"));
        assert!(!may_take_over(
            &obj(json!({"applyset.kubernetes.io/part-of": "applyset-b"}), json!({})),
            "applyset-a"
        ));
        assert!(may_take_over(
            &obj(json!({"applyset.kubernetes.io/part-of": "applyset-a"}), json!({})),
            "applyset-a"
        ));
        assert!(may_take_over(
            &obj(json!({}), json!({"kroxide.dev/adopt": "true"})),
            "applyset-a"
        ));
        assert!(!may_take_over(
            &obj(json!({}), json!({"kroxide.dev/adopt": "yes"})),
            "applyset-a"
        ));
    }

    #[test]
    fn intent_hashes_are_stable_and_sensitive() {
        let a = child();
        let mut b = child();
        assert_eq!(intent_hash(&a), intent_hash(&b));
        b.object.insert("data".into(), json!({"k": "w"}));
        assert_ne!(intent_hash(&a), intent_hash(&b));
    }
}

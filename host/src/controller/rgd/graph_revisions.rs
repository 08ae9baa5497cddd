//! GraphRevision objects, as kro keeps them: one immutable `internal.kro.run/v1alpha1`
//! GraphRevision per accepted change of a graph's spec (or of its plugin), numbered from 1,
//! named `<graph>-r00001`, owned by the graph, the newest `--rgd-max-graph-revisions` kept.
//!
//! They are a record: the revision serving instances is compiled in memory, and a cluster
//! without the GraphRevision CRD runs without them.

use kube::{
    Api,
    api::{
        ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams,
        PostParams,
    },
};
use serde_json::{Value, json};

use crate::controller::context::Context;
use crate::{graph::Graph, metadata, rgd::ResourceGraphDefinition, status};

use super::report::{Reason, Refusal, now};

/// The label holding a revision's spec hash, as kro names it.
pub(super) const HASH_LABEL: &str = "kro.run/graph-revision-hash";

fn resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("internal.kro.run", "v1alpha1", "GraphRevision"),
        "graphrevisions",
    )
}

/// FNV-1a (64-bit) over `data`, in hex: the hash kro labels its revisions with.
fn fnv64a(data: &[u8]) -> String {
    crate::cel::functions::fnv64a(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The hash of what a revision serves: the graph's spec (keys sorted, kro's defaults filled in,
/// so a cosmetic change is no new revision) and the digest of its plugin, if any.
pub(super) fn spec_hash(raw: &Value, plugin_digest: Option<&str>) -> String {
    let mut spec = raw.get("spec").cloned().unwrap_or_else(|| json!({}));
    if let Some(schema) = spec.get_mut("schema").and_then(Value::as_object_mut) {
        schema.entry("group").or_insert_with(|| json!("kro.run"));
        schema.entry("scope").or_insert_with(|| json!("Namespaced"));
    }
    let mut data = spec.to_string().into_bytes();
    if let Some(d) = plugin_digest {
        data.push(0);
        data.extend_from_slice(d.as_bytes());
    }
    fnv64a(&data)
}

/// kro's name for revision `n` of graph `rgd`: `<rgd>-r00001`, truncated (with a hash of the
/// whole name) when longer than 253 characters.
pub(super) fn name(rgd: &str, n: u64) -> String {
    let suffix = format!("-r{n:05}");
    if rgd.len() + suffix.len() <= 253 {
        return format!("{rgd}{suffix}");
    }
    let mut h = 0x811c_9dc5_u32;
    for b in rgd.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    let suffix = format!("-r{n:05}-{h:08x}");
    let prefix = rgd[..253 - suffix.len()].trim_end_matches(['.', '-']);
    let prefix = if prefix.is_empty() { "gr" } else { prefix };
    format!("{prefix}{suffix}")
}

fn number_of(gr: &DynamicObject) -> u64 {
    gr.data
        .pointer("/spec/revision")
        .and_then(Value::as_u64)
        .unwrap_or(0)
}

/// Records the revision of `graph` (spec hash `hash`) as a GraphRevision and returns its
/// number: the newest one's when its hash is this one's, else a new one, one above both the
/// newest and the graph's `status.lastIssuedRevision`. Revisions left by a deleted graph of the
/// same name are taken over; the oldest beyond `keep` are deleted (never the one returned).
/// `Ok(None)` when the cluster does not serve GraphRevisions.
///
/// # Errors
/// The API refusing to list, create or write a revision.
pub(super) async fn record(
    ctx: &Context,
    raw: &Value,
    rgd: &ResourceGraphDefinition,
    graph: &Graph,
    hash: &str,
    keep: usize,
) -> Result<Option<u64>, Refusal> {
    let failed = |what: &str, e: kube::Error| Refusal::new(Reason::Failed, format!("{what}: {e}"));
    let api: Api<DynamicObject> = Api::all_with(ctx.client.clone(), &resource());
    let selector = format!("{}={}", metadata::RGD_NAME, rgd.name());
    ctx.limiter.acquire().await;
    let mut revisions = match api.list(&ListParams::default().labels(&selector)).await {
        Ok(list) => list.items,
        Err(kube::Error::Api(e)) if e.code == 404 => return Ok(None),
        Err(e) => return Err(failed("listing GraphRevisions", e)),
    };
    revisions.sort_by_key(number_of);
    let owner = json!([{
        "apiVersion": crate::rgd::API_VERSION, "kind": crate::rgd::KIND, "name": rgd.name(),
        "uid": rgd.metadata.uid, "controller": true, "blockOwnerDeletion": true,
    }]);
    for gr in &revisions {
        let owned = gr
            .metadata
            .owner_references
            .iter()
            .flatten()
            .any(|o| o.uid == rgd.metadata.uid);
        if !owned {
            ctx.limiter.acquire().await;
            api.patch(
                gr.metadata.name.as_deref().unwrap_or_default(),
                &PatchParams::default(),
                &Patch::Merge(&json!({"metadata": {"ownerReferences": owner}})),
            )
            .await
            .map_err(|e| failed("adopting a GraphRevision", e))?;
        }
    }
    let newest = revisions.last();
    let current = newest.filter(|gr| {
        gr.metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(HASH_LABEL))
            .map(String::as_str)
            == Some(hash)
    });
    let (number, written) = match current {
        Some(gr) => (
            number_of(gr),
            gr.data
                .get("status")
                .is_some_and(|s| s.get("conditions").is_some()),
        ),
        None => {
            let last_issued = raw
                .pointer("/status/lastIssuedRevision")
                .and_then(Value::as_u64)
                .unwrap_or(0);
            let n = newest.map_or(0, number_of).max(last_issued) + 1;
            let object = json!({
                "apiVersion": "internal.kro.run/v1alpha1", "kind": "GraphRevision",
                "metadata": {
                    "name": name(rgd.name(), n),
                    "labels": {
                        (metadata::RGD_NAME): rgd.name(), (HASH_LABEL): hash,
                        (metadata::OWNED): "true", (metadata::KRO_VERSION): metadata::CONTROLLER_VERSION,
                    },
                    "ownerReferences": owner,
                },
                "spec": {
                    "revision": n,
                    "snapshot": {
                        "name": rgd.name(),
                        "generation": raw.pointer("/metadata/generation").cloned().unwrap_or(json!(1)),
                        "spec": raw.get("spec").cloned().unwrap_or_else(|| json!({})),
                    },
                },
            });
            let object: DynamicObject = serde_json::from_value(object).expect("a GraphRevision is an object");
            ctx.limiter.acquire().await;
            api.create(&PostParams::default(), &object)
                .await
                .map_err(|e| failed("creating a GraphRevision", e))?;
            tracing::info!(revision = n, "GraphRevision issued");
            (n, false)
        }
    };
    if !written {
        let verified = status::Mark::new("True", "Verified", "graph revision compiled and verified");
        let ready = status::ready([&verified].into_iter());
        let now = now();
        let conditions = [("GraphVerified", &verified), (status::READY, &ready)]
            .map(|(t, m)| status::condition(t, m, 1, &[], &now));
        let body = json!({"status": {
            "conditions": conditions,
            "topologicalOrder": graph.topological_order(),
            "resources": graph.resources_status(),
        }});
        ctx.limiter.acquire().await;
        api.patch_status(
            &name(rgd.name(), number),
            &PatchParams::default(),
            &Patch::Merge(&body),
        )
        .await
        .map_err(|e| failed("writing a GraphRevision's status", e))?;
    }
    // Retention: the newest `keep` (and always the one serving).
    let mut numbers: Vec<u64> = revisions.iter().map(number_of).chain([number]).collect();
    numbers.sort_unstable();
    numbers.dedup();
    let excess = numbers.len().saturating_sub(keep.max(1));
    for n in numbers.into_iter().take(excess).filter(|n| *n != number) {
        ctx.limiter.acquire().await;
        match api.delete(&name(rgd.name(), n), &DeleteParams::default()).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => return Err(failed("deleting an old GraphRevision", e)),
        }
    }
    Ok(Some(number))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revisions_are_named_as_kro_names_them() {
        assert_eq!(name("webapps.kro.run", 1), "webapps.kro.run-r00001");
        assert_eq!(name("webapps.kro.run", 123_456), "webapps.kro.run-r123456");
        let long = format!("{}.x", "a".repeat(260));
        let n = name(&long, 7);
        assert_eq!(n.len(), 253, "{n}");
        assert!(n.contains("-r00007-"), "{n}");
    }

    #[test]
    fn the_hash_is_fnv64a_and_ignores_what_only_looks_different() {
        // FNV-1a 64 of the empty input is its offset basis.
        assert_eq!(fnv64a(b""), "cbf29ce484222325");
        assert_eq!(fnv64a(b"a"), "af63dc4c8601ec8c");
        let a = json!({"spec": {"schema": {"kind": "A", "apiVersion": "v1alpha1"}, "resources": []}});
        let b = json!({"spec": {"resources": [], "schema": {"apiVersion": "v1alpha1", "kind": "A", "group": "kro.run"}}});
        assert_eq!(
            spec_hash(&a, None),
            spec_hash(&b, None),
            "key order and kro's defaults"
        );
        assert_ne!(
            spec_hash(&a, None),
            spec_hash(&a, Some("sha256:1")),
            "a plugin is part of it"
        );
    }
}

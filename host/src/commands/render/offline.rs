//! The cluster simulated offline: children matched to `--observed` objects, or read as they
//! would be applied; and the resources that still need live data, as [`Pending`].

use kroxide_schema::{defaults, kinds};
use serde_json::{Value, json};

use crate::{
    child::{ChildKey, DesiredChild, ObservedChild},
    commands::error::Error,
    graph,
    metadata::{self, OFFLINE_TIME},
    object::Object,
};

use super::{
    load::Loaded,
    pass::{Pass, run},
};

/// A resource `render` left out: it needs data only a live object has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    /// The resource id.
    pub resource: String,
    /// Why it waits, as the instance's status would say it.
    pub reason: String,
    /// The resources it reads that no `--observed` document gives, each as
    /// `id (apiVersion Kind namespace/name)` where the name is known.
    pub needs: Vec<String>,
}

impl std::fmt::Display for Pending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "resource {} not rendered: {}", self.resource, self.reason)?;
        match self.needs.as_slice() {
            [] => Ok(()),
            needs => write!(
                f,
                "; pass the live object of {} in an --observed file to render it",
                needs.join(" and ")
            ),
        }
    }
}

/// Matches live objects to desired children: by kro's node labels, else by identity. Objects
/// that match no child are external objects, and are left out.
fn match_observed(docs: &[Value], desired: &[DesiredChild]) -> Vec<ObservedChild> {
    let mut out = Vec::new();
    for doc in docs {
        let key = match doc.label(metadata::NODE_ID) {
            Some(id) => Some(ChildKey {
                id: id.to_string(),
                index: doc.label(metadata::COLLECTION_INDEX).and_then(|i| i.parse().ok()),
            }),
            None => desired
                .iter()
                .find(|d| {
                    d.api_version() == doc.api_version()
                        && d.kind() == doc.kind()
                        && d.name() == doc.name()
                        && doc.namespace().is_none_or(|ns| d.namespace() == Some(ns))
                })
                .map(|d| d.key.clone()),
        };
        if let Some(key) = key {
            out.push(ObservedChild {
                key,
                object: doc.clone().into(),
            });
        }
    }
    out.sort_by(|a, b| a.key.cmp(&b.key));
    out
}

/// The children of the last pass: matched `--observed` documents where there is one, else
/// the desired object as it would be applied. Returns them and the keys simulated.
pub(super) fn settle(loaded: &Loaded) -> Result<(Vec<ObservedChild>, Vec<ObservedChild>), Error> {
    // Each pass may render children the previous one could not (a dependency became visible),
    // so observe again until nothing changes.
    let mut observed: Vec<ObservedChild> = Vec::new();
    let mut live = Vec::new();
    for _ in 0..=loaded.graph.nodes.len() + 1 {
        let pass = run(loaded, &observed)?;
        live = match_observed(&loaded.observed_docs, &pass.output.desired);
        let mut next = live.clone();
        for (n, child) in pass.output.desired.iter().enumerate() {
            if !live.iter().any(|o| o.key == child.key) {
                next.push(ObservedChild {
                    key: child.key.clone(),
                    object: as_applied(child, n).into(),
                });
            }
        }
        next.sort_by(|a, b| a.key.cmp(&b.key));
        if next == observed {
            break;
        }
        observed = next;
    }
    Ok((observed, live))
}

/// A desired child as the API server would store it on create: uid, resourceVersion,
/// generation and creation time filled, the defaults of a built-in kind applied, no status.
fn as_applied(child: &DesiredChild, n: usize) -> Value {
    let mut object = Value::Object(child.object.clone());
    if kinds::builtin(child.api_version(), child.kind()).is_some() {
        defaults::apply(child.kind(), &mut object, &mut defaults::Allocator::default());
        defaults::created(child.kind(), &mut object);
    }
    if let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.insert(
            "uid".into(),
            json!(format!("00000000-0000-0000-0000-{:012}", n + 1)),
        );
        meta.insert("resourceVersion".into(), json!("1"));
        meta.insert("generation".into(), json!(1));
        meta.insert("creationTimestamp".into(), json!(OFFLINE_TIME));
    }
    if let Some(map) = object.as_object_mut() {
        map.remove("status");
    }
    object
}

/// The resources left out, each with what it reads that no `--observed` document gives.
pub(super) fn pending(
    loaded: &Loaded,
    pass: &Pass,
    observed: &[ObservedChild],
    live: &[ObservedChild],
) -> Vec<Pending> {
    let described = |id: &str| {
        observed
            .iter()
            .find(|o| o.key.id == id)
            .map(|o| {
                let v = &o.object;
                let name = match v.namespace() {
                    Some(ns) => format!("{ns}/{}", v.name()),
                    None => v.name().to_string(),
                };
                format!("{id} ({} {} {name})", v.api_version(), v.kind())
            })
            .unwrap_or_else(|| id.to_string())
    };
    // An external reference whose kind an --observed object has is taken as given.
    let given = |node: &graph::Node| {
        let (av, kind) = (node.object.api_version(), node.object.kind());
        loaded
            .observed_docs
            .iter()
            .any(|d| d.api_version() == av && d.kind() == kind)
    };
    pass.resolution
        .pending
        .iter()
        .map(|(id, reason)| {
            let node = loaded.graph.node(id);
            let needs = node
                .map(|n| n.dependencies.iter().collect::<Vec<_>>())
                .unwrap_or_default()
                .into_iter()
                .filter(|d| !live.iter().any(|o| &o.key.id == *d))
                .filter(|d| !loaded.graph.node(d).is_some_and(|n| n.is_external() && given(n)))
                .map(|d| described(d))
                .collect();
            Pending {
                resource: id.clone(),
                reason: reason.clone(),
                needs,
            }
        })
        .collect()
}

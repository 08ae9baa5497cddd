//! The desired set of one instance: template children, then the plugin's `transform`, then
//! namespaces and kro's labels, exactly as the controller applies them.

use std::collections::{BTreeMap, HashMap};

use serde_json::Value;

use crate::{
    child::{DesiredChild, ObservedChild},
    cluster::Cluster,
    metadata::{self, InstanceIdentity},
    plugin::{self, CallInput, CallLimits, LoadedPlugin, PluginEvent},
};

/// The plugin half of a graph.
#[derive(Debug, Clone, Copy)]
pub struct PluginStage<'a> {
    /// The loaded plugin.
    pub plugin: &'a LoadedPlugin,
    /// Its call limits.
    pub limits: CallLimits,
    /// `spec.plugin.config`.
    pub config: &'a Value,
    /// Kinds it may add (`Kind` or `Kind.group`); any when empty.
    pub allowed_kinds: &'a [String],
}

/// Everything one render needs.
pub struct Input<'a> {
    /// RGD name.
    pub graph: &'a str,
    /// Graph revision.
    pub revision: u64,
    /// The instance.
    pub instance: &'a Value,
    /// Live children.
    pub observed: &'a [ObservedChild],
    /// What the templates rendered, unstamped.
    pub rendered: Vec<DesiredChild>,
    /// Template nodes not rendered yet, with the reason.
    pub pending: Vec<(String, String)>,
    /// The apply order of each template node ([`Graph::apply_orders`](crate::graph::Graph::apply_orders)).
    pub apply_orders: &'a BTreeMap<String, usize>,
    /// The plugin, if the graph has one.
    pub plugin: Option<PluginStage<'a>>,
    /// Kind scopes (and nothing else) are read from it.
    pub cluster: &'a dyn Cluster,
    /// Which children get the instance's labels.
    pub propagate_labels: metadata::Propagation,
}

impl std::fmt::Debug for Input<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Input")
            .field("graph", &self.graph)
            .field("revision", &self.revision)
            .field("rendered", &self.rendered.len())
            .field("pending", &self.pending)
            .field("plugin", &self.plugin.map(|p| p.plugin.digest()))
            .finish_non_exhaustive()
    }
}

/// The desired set, ready to apply.
#[derive(Debug, Clone, PartialEq)]
pub struct Output {
    /// Children sorted by key, namespaced and stamped.
    pub desired: Vec<DesiredChild>,
    /// Events the plugin asked for.
    pub events: Vec<PluginEvent>,
    /// The plugin's requeue hint.
    pub requeue_after: Option<std::time::Duration>,
}

/// Why a render failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The plugin failed.
    #[error(transparent)]
    Plugin(#[from] plugin::Error),
    /// The scope of a kind is unknown.
    #[error(
        "resource {key}: cannot tell whether {kind} ({api_version}) is namespaced; it is not a built-in kind and no \
         CustomResourceDefinition for it is known"
    )]
    UnknownScope {
        /// The child.
        key: String,
        /// Its apiVersion.
        api_version: String,
        /// Its kind.
        kind: String,
    },
    /// A cluster-scoped child names a namespace.
    #[error("resource {key}: {kind} is cluster-scoped and must not set metadata.namespace")]
    NamespaceOnClusterScoped {
        /// The child.
        key: String,
        /// Its kind.
        kind: String,
    },
    /// A namespaced child of a cluster-scoped instance has no namespace.
    #[error(
        "resource {key} is namespaced and must set metadata.namespace when the instance CRD is cluster-scoped"
    )]
    NamespaceRequired {
        /// The child.
        key: String,
    },
    /// Two children are the same object.
    #[error("resources {first} and {second} both render {object}")]
    Duplicate {
        /// One child.
        first: String,
        /// The other.
        second: String,
        /// The object both render.
        object: String,
    },
    /// A plugin added a kind the graph does not allow.
    #[error("plugin added resource {key} of kind {kind}, which spec.plugin.allowedKinds does not allow")]
    KindNotAllowed {
        /// The child.
        key: String,
        /// Its kind (with group).
        kind: String,
    },
}

impl Error {
    /// The condition reason.
    pub(crate) fn reason(&self) -> &'static str {
        match self {
            Self::Plugin(e) => e.reason(),
            Self::KindNotAllowed { .. } => "PluginInvalidOutput",
            _ => "NotReady",
        }
    }
}

fn group_kind(api_version: &str, kind: &str) -> String {
    match kroxide_schema::kinds::split_api_version(api_version).0 {
        "" => kind.to_string(),
        group => format!("{kind}.{group}"),
    }
}

/// Computes the desired set. Pure apart from the plugin call, which runs on this thread.
///
/// # Errors
/// A plugin failure, an unknown or misused scope, duplicate objects, or a disallowed kind.
pub fn desired(mut input: Input<'_>) -> Result<Output, Error> {
    let identity = InstanceIdentity::from_object(input.instance);
    // (node id, Kind.group) of every template child.
    let template_kinds: Vec<(String, String)> = input
        .rendered
        .iter()
        .map(|c| (c.key.id.clone(), group_kind(c.api_version(), c.kind())))
        .collect();
    let mut rendered = std::mem::take(&mut input.rendered);

    let (mut desired, events, requeue_after) = match input.plugin {
        None => (rendered, Vec::new(), None),
        Some(stage) => {
            // The plugin receives the template children as they will be applied.
            finish(&mut rendered, &identity, &input)?;
            let call = CallInput {
                graph: input.graph,
                revision: input.revision,
                config: stage.config,
                instance: input.instance,
                observed: input.observed,
                rendered: &rendered,
                pending: &input.pending,
            };
            let out = stage.plugin.transform(&stage.limits, &call)?;
            for child in &out.desired {
                let gk = group_kind(child.api_version(), child.kind());
                // Under a template's id only that template's kind: anything else is added.
                let from_template = template_kinds
                    .iter()
                    .any(|(id, k)| *id == child.key.id && *k == gk);
                let allowed = stage.allowed_kinds.is_empty()
                    || stage.allowed_kinds.iter().any(|a| *a == gk || *a == child.kind());
                if !from_template && !allowed {
                    return Err(Error::KindNotAllowed {
                        key: child.key.to_string(),
                        kind: gk,
                    });
                }
            }
            (out.desired, out.events, out.requeue_after)
        }
    };
    finish(&mut desired, &identity, &input)?;
    desired.sort_by(|a, b| a.key.cmp(&b.key));
    let mut seen: BTreeMap<(String, String, String), String> = BTreeMap::new();
    for child in &desired {
        let identity = (
            group_kind(child.api_version(), child.kind()),
            child.namespace().unwrap_or_default().to_string(),
            child.name().to_string(),
        );
        if let Some(first) = seen.insert(identity, child.key.to_string()) {
            let object = format!("{} {}", child.kind(), qualified_name(child));
            return Err(Error::Duplicate {
                first,
                second: child.key.to_string(),
                object,
            });
        }
    }
    Ok(Output {
        desired,
        events,
        requeue_after,
    })
}

fn qualified_name(child: &DesiredChild) -> String {
    match child.namespace() {
        Some(ns) => format!("{ns}/{}", child.name()),
        None => child.name().to_string(),
    }
}

/// Defaults namespaces and stamps kroxide's metadata on every child.
fn finish(
    children: &mut [DesiredChild],
    identity: &InstanceIdentity,
    input: &Input<'_>,
) -> Result<(), Error> {
    let mut sizes: HashMap<String, u32> = HashMap::new();
    for child in children.iter() {
        if child.key.index.is_some() {
            *sizes.entry(child.key.id.clone()).or_default() += 1;
        }
    }
    for child in children.iter_mut() {
        let key = child.key.to_string();
        let namespaced = input
            .cluster
            .namespaced(child.api_version(), child.kind())
            .ok_or_else(|| Error::UnknownScope {
                key: key.clone(),
                api_version: child.api_version().to_string(),
                kind: child.kind().to_string(),
            })?;
        let has_namespace = child.namespace().is_some_and(|ns| !ns.is_empty());
        if namespaced && !has_namespace {
            let Some(ns) = identity.namespace.clone() else {
                return Err(Error::NamespaceRequired { key });
            };
            if let Some(Value::Object(meta)) = child.object.get_mut("metadata") {
                meta.insert("namespace".to_string(), Value::String(ns));
            }
        } else if !namespaced && has_namespace {
            return Err(Error::NamespaceOnClusterScoped {
                key,
                kind: child.kind().to_string(),
            });
        }
        // Nodes a plugin adds come after every template node, so they are deleted first.
        let last = input.apply_orders.values().max().copied().unwrap_or(0);
        let apply_order = input.apply_orders.get(&child.key.id).copied().unwrap_or(last + 1);
        let collection = child
            .key
            .index
            .map(|i| (i, sizes.get(&child.key.id).copied().unwrap_or(0)));
        let propagate_labels =
            input
                .propagate_labels
                .reaches(namespaced, child.namespace(), identity.namespace.as_deref());
        let stamp = metadata::Stamp {
            instance: identity,
            node_id: &child.key.id,
            collection,
            apply_order,
            propagate_labels,
        };
        metadata::stamp(&mut child.object, &stamp);
    }
    Ok(())
}

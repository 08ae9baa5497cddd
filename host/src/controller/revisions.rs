//! Graph revisions: what one RGD compiles to (graph, plugin, instance kind), immutable, and
//! the table of revisions serving each graph.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use kube::api::ApiResource;
use serde_json::Value;

use super::informers::WatchKey;
use crate::{
    graph::Graph,
    plugin::{CallLimits, LoadedPlugin},
};

/// A graph's plugin, loaded and configured.
#[derive(Debug, Clone)]
pub(crate) struct PluginBinding {
    /// The compiled plugin.
    pub(crate) plugin: Arc<LoadedPlugin>,
    /// `spec.plugin.config`.
    pub(crate) config: Value,
    /// Call limits.
    pub(crate) limits: CallLimits,
    /// `spec.plugin.allowedKinds`.
    pub(crate) allowed_kinds: Vec<String>,
}

/// One revision of a graph: everything an instance reconcile needs, immutable. A changed RGD,
/// plugin or plugin config makes a new revision; in-flight reconciles finish on the old one.
#[derive(Debug)]
pub(crate) struct Revision {
    /// RGD name.
    pub(crate) rgd: String,
    /// RGD uid.
    pub(crate) rgd_uid: String,
    /// Revision number (1, 2, ...).
    pub(crate) number: u64,
    /// The compiled graph.
    pub(crate) graph: Arc<Graph>,
    /// The plugin, if the graph has one.
    pub(crate) plugin: Option<PluginBinding>,
    /// The instance kind's resource.
    pub(crate) resource: ApiResource,
    /// Whether instances are namespaced.
    pub(crate) namespaced: bool,
    /// The watch of instances.
    pub(crate) watch: WatchKey,
    /// Identity of this revision: RGD generation digest, plugin digest, config.
    pub(crate) fingerprint: String,
}

impl Revision {
    /// The instances' resource as kro's metrics label it: `group/version, Resource=plural`.
    pub(crate) fn gvr(&self) -> String {
        let r = &self.resource;
        format!("{}/{}, Resource={}", r.group, r.version, r.plural)
    }
}

/// The live revisions, by graph and by instance kind.
#[derive(Debug, Default)]
pub(crate) struct Graphs {
    by_rgd: Mutex<HashMap<String, Arc<Revision>>>,
}

impl Graphs {
    /// The revision serving `rgd`.
    pub(crate) fn get(&self, rgd: &str) -> Option<Arc<Revision>> {
        self.by_rgd
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(rgd)
            .cloned()
    }

    /// The revision serving instances of `kind` in `api_version`.
    pub(crate) fn for_kind(&self, api_version: &str, kind: &str) -> Option<Arc<Revision>> {
        self.by_rgd
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .find(|r| r.resource.api_version == api_version && r.resource.kind == kind)
            .cloned()
    }

    /// Serves `rgd` with `revision`.
    pub(crate) fn set(&self, revision: Arc<Revision>) {
        self.by_rgd
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(revision.rgd.clone(), revision);
    }

    /// Stops serving `rgd`.
    pub(crate) fn remove(&self, rgd: &str) -> Option<Arc<Revision>> {
        self.by_rgd.lock().unwrap_or_else(|e| e.into_inner()).remove(rgd)
    }
}

//! Reverse indexes from watched objects to the graphs and instances that read them, and the
//! fingerprints that tell a change a reconcile reads from one it does not.

use std::{
    collections::{HashMap, HashSet},
    sync::Mutex,
};

use super::{children::ObjectId, informers::Role, key::InstanceKey};

/// Reverse indexes from watched objects to who needs to hear of them.
#[derive(Debug, Default)]
pub(crate) struct Interest {
    /// (apiVersion, kind) of external objects → instances reading them.
    pub(crate) externals: Mutex<HashMap<(String, String), HashSet<InstanceKey>>>,
    /// (namespace, name) of plugin ConfigMaps → graphs using them.
    pub(crate) plugins: Mutex<HashMap<(String, String), HashSet<String>>>,
    /// CRD name → graphs refused because another graph owns it.
    pub(crate) crds: Mutex<HashMap<String, HashSet<String>>>,
    /// CRD name → its `metadata.generation` as kroxide last wrote it (or first saw it after a
    /// start): a CRD of ours at another generation was edited by someone else.
    pub(crate) crd_generations: Mutex<HashMap<String, i64>>,
    pub(crate) fingerprints: Mutex<HashMap<(Role, ObjectId), u64>>,
}

//! The controller: watches ResourceGraphDefinitions and serves one instance kind per graph.
//!
//! kube-rs's `Controller` fixes its root kind when it is built, and kroxide learns instance
//! kinds at run time (one per graph, added and removed as graphs come and go). So the
//! controller runs reflectors per kind ([`informers`]) that feed a router, which turns changes
//! into keys on two deduplicating work queues ([`queue`]): one for graphs ([`rgd`]), one for
//! instances ([`instance`]), each with its own workers.

pub mod informers;
pub mod instance;
pub mod queue;
pub mod rgd;

use std::{
    collections::{BTreeMap, BTreeSet, HashMap, HashSet},
    future::Future,
    sync::{Arc, Mutex},
    time::Duration,
};

use kube::{
    Api, Client,
    api::{ApiResource, DynamicObject},
    runtime::events::{Recorder, Reporter},
};
use serde_json::Value;
use tokio::{sync::mpsc, task::JoinSet};
use tracing::Instrument;

use crate::{
    config::ControllerConfig,
    graph::Graph,
    metadata,
    plugin::{CallLimits, LoadedPlugin, PluginRuntime},
};
use informers::{Change, Informers, Notice, Role, WatchKey};
use queue::Queue;

/// Why the controller could not do something.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No usable connection to the API server.
    #[error("cannot connect to the Kubernetes API: {0}")]
    Connect(String),
    /// A kind the server does not serve.
    #[error("{kind} ({api_version}) is not served by the API server: {message}")]
    UnknownKind {
        /// apiVersion.
        api_version: String,
        /// Kind.
        kind: String,
        /// What discovery said.
        message: String,
    },
    /// A request failed.
    #[error("{action} {object}: {}", describe(source))]
    Api {
        /// What was being done: `apply`, `delete`, `patch status of`, ...
        action: &'static str,
        /// The object, e.g. `Deployment shop/web`.
        object: String,
        /// The client's error.
        #[source]
        source: kube::Error,
    },
    /// The plugin runtime could not start.
    #[error(transparent)]
    Plugin(#[from] crate::plugin::Error),
}

/// A client error as one line: the API's message with its code and reason, or the transport
/// error.
pub fn describe(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) => format!("{} ({} {})", s.message, s.code, s.reason),
        other => other.to_string(),
    }
}

impl Error {
    /// Whether the API said the object changed underneath us (409) or is gone (404).
    pub fn is_conflict(&self) -> bool {
        matches!(self, Error::Api { source: kube::Error::Api(e), .. } if e.code == 409)
    }
}

/// Names one instance.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct InstanceKey {
    /// apiVersion of the graph's kind.
    pub api_version: String,
    /// Kind.
    pub kind: String,
    /// Namespace (`None` for cluster-scoped kinds).
    pub namespace: Option<String>,
    /// Name.
    pub name: String,
}

impl queue::Key for InstanceKey {
    /// Instances of one graph (kind) share the workers fairly with other graphs'.
    type Group = (String, String);
    fn group(&self) -> Self::Group {
        (self.api_version.clone(), self.kind.clone())
    }
}

impl std::fmt::Display for InstanceKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.namespace {
            Some(ns) => write!(f, "{} {ns}/{}", self.kind, self.name),
            None => write!(f, "{} {}", self.kind, self.name),
        }
    }
}

/// A graph's plugin, loaded and configured.
#[derive(Debug, Clone)]
pub struct PluginBinding {
    /// The compiled plugin.
    pub plugin: Arc<LoadedPlugin>,
    /// `spec.plugin.config`.
    pub config: Value,
    /// Call limits.
    pub limits: CallLimits,
    /// `spec.plugin.allowedKinds`.
    pub allowed_kinds: Vec<String>,
}

/// One revision of a graph: everything an instance reconcile needs, immutable. A changed RGD,
/// plugin or plugin config makes a new revision; in-flight reconciles finish on the old one.
#[derive(Debug)]
pub struct Revision {
    /// RGD name.
    pub rgd: String,
    /// RGD uid.
    pub rgd_uid: String,
    /// Revision number (1, 2, ...).
    pub number: u64,
    /// The compiled graph.
    pub graph: Arc<Graph>,
    /// The plugin, if the graph has one.
    pub plugin: Option<PluginBinding>,
    /// The instance kind's resource.
    pub resource: ApiResource,
    /// Whether instances are namespaced.
    pub namespaced: bool,
    /// The watch of instances.
    pub watch: WatchKey,
    /// Identity of this revision: RGD generation digest, plugin digest, config.
    pub fingerprint: String,
}

/// The live revisions, by graph and by instance kind.
#[derive(Debug, Default)]
pub struct Graphs {
    by_rgd: Mutex<HashMap<String, Arc<Revision>>>,
}

impl Graphs {
    /// The revision serving `rgd`.
    pub fn get(&self, rgd: &str) -> Option<Arc<Revision>> {
        self.by_rgd
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(rgd)
            .cloned()
    }

    /// The revision serving instances of `kind` in `api_version`.
    pub fn for_kind(&self, api_version: &str, kind: &str) -> Option<Arc<Revision>> {
        self.by_rgd
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .find(|r| r.resource.api_version == api_version && r.resource.kind == kind)
            .cloned()
    }

    /// Serves `rgd` with `revision`.
    pub fn set(&self, revision: Arc<Revision>) {
        self.by_rgd
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(revision.rgd.clone(), revision);
    }

    /// Stops serving `rgd`.
    pub fn remove(&self, rgd: &str) -> Option<Arc<Revision>> {
        self.by_rgd.lock().unwrap_or_else(|e| e.into_inner()).remove(rgd)
    }

    /// Every revision.
    pub fn all(&self) -> Vec<Arc<Revision>> {
        self.by_rgd
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect()
    }
}

/// Identity of an object across versions: (group, kind, namespace, name).
pub type ObjectId = (String, String, String, String);

/// The identity of a JSON object.
pub fn object_id(v: &Value) -> ObjectId {
    let s = |p: &str| {
        v.pointer(p)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    let api_version = s("/apiVersion");
    let group = api_version
        .rsplit_once('/')
        .map(|(g, _)| g.to_string())
        .unwrap_or_default();
    (group, s("/kind"), s("/metadata/namespace"), s("/metadata/name"))
}

fn resource_version(v: &Value) -> Option<u64> {
    v.pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
        .and_then(|r| r.parse().ok())
}

/// Every child kroxide owns, as last seen (by watch or by an apply's response), indexed by
/// ApplySet: the observe stage reads from here.
///
/// A write's response can arrive after the watch already reported the object deleted (an
/// empty Namespace is finalized at once, for example). So the cache remembers, for
/// [`TOMBSTONE_TTL`], the resourceVersion each child was deleted at, and refuses a copy that
/// is not newer: a deleted child is never brought back by a late response.
#[derive(Debug, Default)]
pub struct Children {
    objects: Mutex<Index>,
}

/// How long a deleted child's resourceVersion is remembered. Responses arrive within the
/// request timeout; this outlasts it.
const TOMBSTONE_TTL: Duration = Duration::from_secs(300);

/// Objects by identity, identities by ApplySet, and recently deleted identities.
#[derive(Debug, Default)]
struct Index {
    objects: HashMap<ObjectId, Arc<Value>>,
    sets: HashMap<String, HashSet<ObjectId>>,
    /// Deleted at which resourceVersion, and when we learnt it.
    tombstones: HashMap<ObjectId, (u64, std::time::Instant)>,
}

fn part_of(v: &Value) -> Option<String> {
    label(v, metadata::APPLYSET_PART_OF).map(String::from)
}

/// A label of an object.
pub fn label<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.pointer("/metadata/labels")
        .and_then(|l| l.get(key))
        .and_then(Value::as_str)
}

impl Children {
    /// Records a live child unless a newer copy is known, or it was deleted at a
    /// resourceVersion at least as new.
    pub fn upsert(&self, v: Value) {
        let id = object_id(&v);
        let rv = resource_version(&v);
        let mut guard = self.objects.lock().unwrap_or_else(|e| e.into_inner());
        let index = &mut *guard;
        if let Some(old) = index.objects.get(&id)
            && let (Some(a), Some(b)) = (resource_version(old), rv)
            && a > b
        {
            return;
        }
        if let Some((gone, _)) = index.tombstones.get(&id) {
            if rv.is_none_or(|b| b <= *gone) {
                return;
            }
            // Created again since.
            index.tombstones.remove(&id);
        }
        if let Some(old) = index.objects.get(&id)
            && let Some(set) = part_of(old)
            && part_of(&v).as_deref() != Some(set.as_str())
            && let Some(members) = index.sets.get_mut(&set)
        {
            members.remove(&id);
        }
        if let Some(set) = part_of(&v) {
            index.sets.entry(set).or_default().insert(id.clone());
        }
        index.objects.insert(id, Arc::new(v));
    }

    /// Forgets a deleted child; `v` is its last state (a watch's DELETED object carries the
    /// resourceVersion of the deletion). A deletion of an earlier incarnation (another uid, or
    /// older than the cached copy: the child was made again since, by us, while the watch was
    /// behind) leaves the cached copy alone.
    pub fn remove(&self, v: &Value) {
        let id = object_id(v);
        let now = std::time::Instant::now();
        let mut guard = self.objects.lock().unwrap_or_else(|e| e.into_inner());
        let index = &mut *guard;
        let uid = |o: &Value| {
            o.pointer("/metadata/uid")
                .and_then(Value::as_str)
                .map(str::to_owned)
        };
        let newer = index.objects.get(&id).is_some_and(|old| {
            let other_uid = matches!((uid(old), uid(v)), (Some(a), Some(b)) if a != b);
            let later = matches!((resource_version(old), resource_version(v)), (Some(a), Some(b)) if a > b);
            other_uid || later
        });
        let removed = if newer { None } else { index.objects.remove(&id) };
        if let Some(old) = &removed
            && let Some(set) = part_of(old)
            && let Some(members) = index.sets.get_mut(&set)
        {
            members.remove(&id);
            if members.is_empty() {
                index.sets.remove(&set);
            }
        }
        let gone = [resource_version(v), removed.as_deref().and_then(resource_version)]
            .into_iter()
            .flatten()
            .max();
        index
            .tombstones
            .retain(|_, (_, at)| now.duration_since(*at) < TOMBSTONE_TTL);
        if let Some(gone) = gone
            && !newer
        {
            let entry = index.tombstones.entry(id).or_insert((gone, now));
            *entry = (entry.0.max(gone), now);
        }
    }

    /// After a (re)list of the children of `watch`'s kind: forgets every child of that kind
    /// the list did not show, and returns them. A relist has no deletions in it, so this is the
    /// only way the cache learns of children deleted while its watch was down.
    pub fn retain_listed(&self, watch: &WatchKey, listed: &HashSet<ObjectId>) -> Vec<Arc<Value>> {
        let group = watch
            .api_version
            .rsplit_once('/')
            .map(|(g, _)| g)
            .unwrap_or_default();
        let mut guard = self.objects.lock().unwrap_or_else(|e| e.into_inner());
        let index = &mut *guard;
        let vanished: Vec<ObjectId> = index
            .objects
            .keys()
            .filter(|id| id.0 == group && id.1 == watch.kind && !listed.contains(*id))
            .cloned()
            .collect();
        let mut gone = Vec::new();
        for id in vanished {
            if let Some(old) = index.objects.remove(&id) {
                if let Some(set) = part_of(&old)
                    && let Some(members) = index.sets.get_mut(&set)
                {
                    members.remove(&id);
                    if members.is_empty() {
                        index.sets.remove(&set);
                    }
                }
                gone.push(old);
            }
        }
        gone
    }

    /// The members of an ApplySet.
    pub fn of(&self, applyset: &str) -> Vec<Arc<Value>> {
        let guard = self.objects.lock().unwrap_or_else(|e| e.into_inner());
        guard
            .sets
            .get(applyset)
            .map(|ids| {
                ids.iter()
                    .filter_map(|id| guard.objects.get(id).cloned())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// How many children are cached, and how many deletions are remembered.
    pub fn len(&self) -> (usize, usize) {
        let guard = self.objects.lock().unwrap_or_else(|e| e.into_inner());
        (guard.objects.len(), guard.tombstones.len())
    }

    /// A child by identity.
    pub fn get(&self, id: &ObjectId) -> Option<Arc<Value>> {
        self.objects
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .objects
            .get(id)
            .cloned()
    }
}

/// What the controller remembers between reconciles.
#[derive(Debug, Default)]
pub struct Memory {
    /// Per instance (its ApplySet) and child: the hash of the intent last applied, the object's
    /// uid, and the fields our apply owned afterwards. A child whose intent and owned fields are
    /// unchanged is not applied again. An instance's entry goes with the instance, a child's
    /// with the child.
    pub applied: Mutex<HashMap<String, HashMap<ObjectId, Applied>>>,
    /// Per graph and instance: the object as our last write returned it. The watch cache may
    /// lag behind our own writes; reconciles read whichever copy is newer, so they never
    /// repeat a write because they have not seen it yet.
    pub fresh: Mutex<HashMap<ObjectId, Value>>,
    /// Per instance: the state last reported, for transition events.
    pub states: Mutex<HashMap<InstanceKey, String>>,
    /// Instances whose finalizer we removed (their uid, and when), until the watch reports
    /// them gone: a reconcile reading a cache that lags behind must not make their children
    /// again, nor the instance.
    pub finalized: Mutex<HashMap<InstanceKey, (String, std::time::Instant)>>,
}

/// How long a finalized instance is remembered if its watch never reports it gone.
const FINALIZED_TTL: Duration = Duration::from_secs(300);

impl Memory {
    /// `cached`, or the copy our last write returned when that one is newer.
    pub fn freshest(&self, cached: Value) -> Value {
        let id = object_id(&cached);
        let mut fresh = self.fresh.lock().unwrap_or_else(|e| e.into_inner());
        match fresh.get(&id) {
            Some(mine) if resource_version(mine) > resource_version(&cached) => mine.clone(),
            Some(_) => {
                // The cache caught up: our copy is no longer needed.
                fresh.remove(&id);
                cached
            }
            None => cached,
        }
    }

    /// Remembers what a write returned.
    pub fn saw(&self, written: Value) {
        let id = object_id(&written);
        self.fresh
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id, written);
    }

    /// What the controller remembers of `applyset`'s child `id`.
    pub fn applied(&self, applyset: &str, id: &ObjectId) -> Option<Applied> {
        self.applied
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(applyset)?
            .get(id)
            .cloned()
    }

    /// Remembers an apply of `applyset`'s child `id`.
    pub fn record_applied(&self, applyset: &str, id: ObjectId, applied: Applied) {
        self.applied
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(applyset.to_string())
            .or_default()
            .insert(id, applied);
    }

    /// Forgets a deleted child (by its ApplySet label).
    pub fn forget_child(&self, child: &Value) {
        let Some(set) = part_of(child) else { return };
        let mut applied = self.applied.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(members) = applied.get_mut(&set) {
            members.remove(&object_id(child));
            if members.is_empty() {
                applied.remove(&set);
            }
        }
    }

    /// Forgets everything about an instance that is gone.
    pub fn forget_instance(&self, key: &InstanceKey) {
        let group = key
            .api_version
            .rsplit_once('/')
            .map(|(g, _)| g)
            .unwrap_or_default();
        let set = metadata::applyset_id(&key.name, key.namespace.as_deref(), &key.kind, group);
        self.applied
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&set);
        let id = (
            group.to_string(),
            key.kind.clone(),
            key.namespace.clone().unwrap_or_default(),
            key.name.clone(),
        );
        self.fresh.lock().unwrap_or_else(|e| e.into_inner()).remove(&id);
        self.states.lock().unwrap_or_else(|e| e.into_inner()).remove(key);
    }

    /// Remembers that the instance `key` with `uid` was finalized (our finalizer removed).
    pub fn mark_finalized(&self, key: &InstanceKey, uid: &str) {
        let now = std::time::Instant::now();
        let mut marks = self.finalized.lock().unwrap_or_else(|e| e.into_inner());
        marks.retain(|_, (_, at)| now.duration_since(*at) < FINALIZED_TTL);
        marks.insert(key.clone(), (uid.to_string(), now));
    }

    /// Whether this incarnation (`uid`) of `key` was finalized already.
    pub fn was_finalized(&self, key: &InstanceKey, uid: &str) -> bool {
        self.finalized
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(key)
            .is_some_and(|(u, at)| u == uid && at.elapsed() < FINALIZED_TTL)
    }

    /// Forgets a finalized instance once the watch reports it gone.
    pub fn forget_finalized(&self, key: &InstanceKey) {
        self.finalized
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key);
    }

    /// How many entries each part holds: (applied instances, applied children, fresh copies,
    /// instance states). For tests and `/metrics`.
    pub fn footprint(&self) -> (usize, usize, usize, usize) {
        let applied = self.applied.lock().unwrap_or_else(|e| e.into_inner());
        (
            applied.len(),
            applied.values().map(HashMap::len).sum(),
            self.fresh.lock().unwrap_or_else(|e| e.into_inner()).len(),
            self.states.lock().unwrap_or_else(|e| e.into_inner()).len(),
        )
    }

    /// Forgets an object.
    pub fn forget(&self, v: &Value) {
        self.fresh
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&object_id(v));
    }
}

/// One remembered apply.
#[derive(Debug, Clone, PartialEq)]
pub struct Applied {
    /// Hash of the applied intent.
    pub hash: u64,
    /// uid of the object it produced.
    pub uid: String,
    /// `fieldsV1` of our apply entry afterwards.
    pub fields: Value,
}

/// Reverse indexes from watched objects to who needs to hear of them.
#[derive(Debug, Default)]
pub struct Interest {
    /// (apiVersion, kind) of external objects → instances reading them.
    pub externals: Mutex<HashMap<(String, String), HashSet<InstanceKey>>>,
    /// (namespace, name) of plugin ConfigMaps → graphs using them.
    pub plugins: Mutex<HashMap<(String, String), HashSet<String>>>,
    /// CRD name → graphs refused because another graph owns it.
    pub crds: Mutex<HashMap<String, HashSet<String>>>,
    fingerprints: Mutex<HashMap<(Role, ObjectId), u64>>,
}

/// A token bucket: `rate` requests per second with bursts of `burst`.
#[derive(Debug)]
pub struct Limiter {
    state: tokio::sync::Mutex<(f64, tokio::time::Instant)>,
    rate: f64,
    burst: f64,
}

impl Limiter {
    /// A full bucket.
    pub fn new(rate: f64, burst: u32) -> Self {
        let burst = f64::from(burst.max(1));
        Self {
            state: tokio::sync::Mutex::new((burst, tokio::time::Instant::now())),
            rate,
            burst,
        }
    }

    /// Waits for a token.
    pub async fn acquire(&self) {
        loop {
            let wait = {
                let mut s = self.state.lock().await;
                let now = tokio::time::Instant::now();
                s.0 = (s.0 + now.duration_since(s.1).as_secs_f64() * self.rate).min(self.burst);
                s.1 = now;
                if s.0 >= 1.0 {
                    s.0 -= 1.0;
                    return;
                }
                Duration::from_secs_f64((1.0 - s.0) / self.rate)
            };
            tokio::time::sleep(wait).await;
        }
    }
}

/// Everything reconciles share.
pub struct Context {
    /// API client.
    pub client: Client,
    /// Settings.
    pub config: ControllerConfig,
    /// Watches.
    pub informers: Informers,
    /// Plugin sandbox.
    pub runtime: Arc<PluginRuntime>,
    /// Live graph revisions.
    pub graphs: Graphs,
    /// Graph keys to reconcile.
    pub rgd_queue: Queue<String>,
    /// Instance keys to reconcile.
    pub instance_queue: Queue<InstanceKey>,
    /// Client-side rate limit.
    pub limiter: Limiter,
    /// Kubernetes Events.
    pub recorder: Recorder,
    /// Observed children.
    pub children: Children,
    /// Remembered writes.
    pub memory: Memory,
    /// Who watches what.
    pub interest: Interest,
    /// Numbers for /metrics.
    pub metrics: Arc<crate::metrics::Metrics>,
    /// Graphs reconciled at least once since start.
    pub graphs_seen: Mutex<HashSet<String>>,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Context {
    /// Ready: every cache has its initial list, and every graph has been reconciled once (so
    /// its plugin is loaded, or refused with a condition).
    pub fn ready(&self) -> bool {
        let Some(rgds) = self.informers.get(&rgd_watch()) else {
            return false;
        };
        if !rgds.synced() || !self.informers.all_synced() {
            return false;
        }
        let seen = self.graphs_seen.lock().unwrap_or_else(|e| e.into_inner());
        rgds.list().iter().all(|r| {
            r.pointer("/metadata/name")
                .and_then(Value::as_str)
                .is_some_and(|n| seen.contains(n))
        })
    }

    /// An API handle for `resource` (in `namespace` when namespaced), after waiting for the
    /// client's rate limit.
    pub async fn api(
        &self,
        resource: &ApiResource,
        namespaced: bool,
        namespace: Option<&str>,
    ) -> Api<DynamicObject> {
        self.limiter.acquire().await;
        match (namespaced, namespace) {
            (true, Some(ns)) => Api::namespaced_with(self.client.clone(), ns, resource),
            _ => Api::all_with(self.client.clone(), resource),
        }
    }
}

/// The API client for `config`, identifying itself as kroxide.
///
/// # Errors
/// [`Error::Connect`] when no kubeconfig or in-cluster configuration works.
pub async fn client(config: &ControllerConfig) -> Result<Client, Error> {
    let mut kc = match &config.kubeconfig {
        Some(path) => {
            let file = kube::config::Kubeconfig::read_from(path)
                .map_err(|e| Error::Connect(format!("{}: {e}", path.display())))?;
            kube::Config::from_custom_kubeconfig(file, &kube::config::KubeConfigOptions::default())
                .await
                .map_err(|e| Error::Connect(format!("{}: {e}", path.display())))?
        }
        None => kube::Config::infer()
            .await
            .map_err(|e| Error::Connect(e.to_string()))?,
    };
    if let Ok(v) = config.user_agent.parse() {
        kc.headers.push((http::header::USER_AGENT, v));
    }
    Client::try_from(kc).map_err(|e| Error::Connect(e.to_string()))
}

fn fingerprint(v: &Value) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    for p in [
        "/metadata/generation",
        "/metadata/labels",
        "/metadata/annotations",
        "/metadata/deletionTimestamp",
        "/metadata/finalizers",
    ] {
        v.pointer(p).map(Value::to_string).hash(&mut h);
    }
    h.finish()
}

/// The instance a child belongs to, from kro's labels.
pub fn owner_of(child: &Value) -> Option<InstanceKey> {
    let group = label(child, metadata::INSTANCE_GROUP)?;
    let version = label(child, metadata::INSTANCE_VERSION)?;
    Some(InstanceKey {
        api_version: if group.is_empty() {
            version.to_string()
        } else {
            format!("{group}/{version}")
        },
        kind: label(child, metadata::INSTANCE_KIND)?.to_string(),
        namespace: label(child, metadata::INSTANCE_NAMESPACE).map(String::from),
        name: label(child, metadata::INSTANCE_NAME)?.to_string(),
    })
}

fn instance_key(key: &WatchKey, v: &Value) -> InstanceKey {
    let s = |p: &str| v.pointer(p).and_then(Value::as_str).map(String::from);
    InstanceKey {
        api_version: key.api_version.clone(),
        kind: key.kind.clone(),
        namespace: s("/metadata/namespace"),
        name: s("/metadata/name").unwrap_or_default(),
    }
}

/// Drops what no stage reads from a cached child: other managers' field ownership.
pub fn trim(mut child: Value) -> Value {
    if let Some(entries) = child
        .pointer_mut("/metadata/managedFields")
        .and_then(Value::as_array_mut)
    {
        entries.retain(|e| e.get("manager").and_then(Value::as_str) == Some(crate::apply::MANAGER));
    }
    child
}

/// How soon a key is looked at again when its cache has not received its initial list.
pub const NOT_SYNCED_RETRY: Duration = Duration::from_millis(200);

/// Turns watch notices into work: graphs and instances whose inputs changed.
async fn route(ctx: Arc<Context>, mut notices: mpsc::UnboundedReceiver<Notice>) {
    // Children watches being (re)listed: what each list has shown so far.
    let mut relists: HashMap<WatchKey, HashSet<ObjectId>> = HashMap::new();
    while let Some(Notice { key, change }) = notices.recv().await {
        ctx.metrics.watch_event(key.role_name());
        let (object, deleted) = match change {
            Change::Applied(v) => (v, false),
            Change::Listed(v) => {
                if let Some(seen) = relists.get_mut(&key) {
                    seen.insert(object_id(&v));
                }
                (v, false)
            }
            Change::Deleted(v) => (v, true),
            Change::Relisting => {
                if key.role == Role::Children {
                    relists.insert(key, HashSet::new());
                }
                continue;
            }
            Change::Synced => {
                // Children that vanished while the watch was down: gone, and their instances
                // must hear of it (a relist after 410 Gone reports no deletions).
                if let Some(seen) = relists.remove(&key) {
                    for gone in ctx.children.retain_listed(&key, &seen) {
                        if let Some(owner) = owner_of(&gone) {
                            ctx.instance_queue.add(owner);
                        }
                    }
                }
                continue;
            }
        };
        // Only changes to what a reconcile reads count: status updates of graphs and instances
        // (ours included) do not.
        let changed = |role: Role| {
            let id = object_id(&object);
            let mut prints = ctx
                .interest
                .fingerprints
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            if deleted {
                prints.remove(&(role, id));
                return true;
            }
            let f = fingerprint(&object);
            prints.insert((role, id), f) != Some(f)
        };
        match key.role {
            Role::Rgds => {
                if changed(Role::Rgds)
                    && let Some(name) = object.pointer("/metadata/name").and_then(Value::as_str)
                {
                    ctx.rgd_queue.add(name.to_string());
                }
            }
            Role::Instances => {
                if changed(Role::Instances) {
                    ctx.instance_queue.add(instance_key(&key, &object));
                }
            }
            Role::Children => {
                if deleted {
                    ctx.children.remove(&object);
                } else {
                    ctx.children.upsert(trim(object.clone()));
                }
                if let Some(owner) = owner_of(&object) {
                    ctx.instance_queue.add(owner);
                }
            }
            Role::External => {
                let readers: Vec<InstanceKey> = ctx
                    .interest
                    .externals
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .get(&(key.api_version.clone(), key.kind.clone()))
                    .map(|s| s.iter().cloned().collect())
                    .unwrap_or_default();
                for r in readers {
                    ctx.instance_queue.add(r);
                }
            }
            Role::Crds => {
                // Its owner (label), and graphs refused because another graph held its name.
                if let Some(owner) = label(&object, metadata::RGD_NAME) {
                    ctx.rgd_queue.add(owner.to_string());
                }
                let name = object
                    .pointer("/metadata/name")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                let waiting: Vec<String> = ctx
                    .interest
                    .crds
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .get(name)
                    .map(|s| s.iter().cloned().collect())
                    .unwrap_or_default();
                for rgd in waiting {
                    ctx.rgd_queue.add(rgd);
                }
            }
            Role::PluginSource => {
                let s = |p: &str| {
                    object
                        .pointer(p)
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_string()
                };
                let users: Vec<String> = ctx
                    .interest
                    .plugins
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .get(&(s("/metadata/namespace"), s("/metadata/name")))
                    .map(|s| s.iter().cloned().collect())
                    .unwrap_or_default();
                for u in users {
                    ctx.rgd_queue.add(u);
                }
            }
        }
    }
}

/// What a reconcile asks for next.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Action {
    /// Look again after this long.
    pub requeue_after: Option<Duration>,
    /// The reconcile failed in a way worth retrying with backoff.
    pub backoff: bool,
}

impl Action {
    /// Nothing more to do until something changes.
    pub fn done() -> Self {
        Self::default()
    }

    /// Look again after `d`.
    pub fn after(d: Duration) -> Self {
        Self {
            requeue_after: Some(d),
            backoff: false,
        }
    }

    /// Retry with backoff.
    pub fn retry() -> Self {
        Self {
            requeue_after: None,
            backoff: true,
        }
    }
}

async fn rgd_worker(ctx: Arc<Context>) {
    while let Some(name) = ctx.rgd_queue.next().await {
        let span = tracing::info_span!("reconcile", graph = %name);
        let started = std::time::Instant::now();
        let result = rgd::reconcile(&ctx, &name).instrument(span.clone()).await;
        let exists = ctx
            .informers
            .get(&rgd_watch())
            .is_some_and(|i| i.get(None, &name).is_some());
        if exists {
            ctx.graphs_seen
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(name.clone());
        }
        ctx.metrics
            .observe_reconcile("rgd", &name, started.elapsed(), result.is_err());
        ctx.rgd_queue.done(&name);
        match result {
            Ok(a) if a.backoff => {
                ctx.rgd_queue.retry(name);
            }
            Ok(a) => {
                ctx.rgd_queue.forget(&name);
                if let Some(d) = a.requeue_after {
                    ctx.rgd_queue.add_after(name, d);
                }
            }
            Err(e) => {
                let delay = ctx.rgd_queue.retry(name);
                span.in_scope(|| tracing::info!(error = %e, retry_in = ?delay, "graph reconcile failed"));
            }
        }
    }
}

async fn instance_worker(ctx: Arc<Context>) {
    while let Some(key) = ctx.instance_queue.next().await {
        let span = tracing::info_span!("reconcile", kind = %key.kind, namespace = key.namespace.as_deref().unwrap_or(""), name = %key.name);
        let started = std::time::Instant::now();
        let result = instance::reconcile(&ctx, &key).instrument(span.clone()).await;
        let graph = ctx
            .graphs
            .for_kind(&key.api_version, &key.kind)
            .map(|r| r.rgd.clone())
            .unwrap_or_default();
        ctx.metrics.observe_reconcile(
            "instance",
            &graph,
            started.elapsed(),
            result.is_err() || result.as_ref().is_ok_and(|a| a.backoff),
        );
        ctx.instance_queue.done(&key);
        match result {
            Ok(a) if a.backoff => {
                let delay = ctx.instance_queue.retry(key);
                span.in_scope(|| tracing::debug!(retry_in = ?delay, "reconciled; not ready to go on"));
            }
            Ok(a) => {
                ctx.instance_queue.forget(&key);
                let next = a
                    .requeue_after
                    .map_or(ctx.config.resync, |d| d.min(ctx.config.resync));
                span.in_scope(|| tracing::debug!(requeue_in = ?next, "reconciled"));
                ctx.instance_queue.add_after(key, next);
            }
            Err(e) => {
                let delay = ctx.instance_queue.retry(key);
                span.in_scope(|| tracing::info!(error = %e, retry_in = ?delay, "instance reconcile failed"));
            }
        }
    }
}

impl WatchKey {
    fn role_name(&self) -> &'static str {
        match self.role {
            Role::Rgds => "rgds",
            Role::Instances => "instances",
            Role::Children => "children",
            Role::External => "external",
            Role::PluginSource => "plugins",
            Role::Crds => "crds",
        }
    }
}

/// The watch of ResourceGraphDefinitions.
pub fn rgd_watch() -> WatchKey {
    WatchKey::all(crate::rgd::API_VERSION, crate::rgd::KIND, Role::Rgds)
}

/// The watch of the CRDs graphs own.
pub fn crd_watch() -> WatchKey {
    WatchKey {
        labels: Some(format!("{}=true", metadata::OWNED)),
        ..WatchKey::all("apiextensions.k8s.io/v1", "CustomResourceDefinition", Role::Crds)
    }
}

/// The watch of children of one kind.
pub fn child_watch(api_version: &str, kind: &str) -> WatchKey {
    WatchKey {
        labels: Some(format!("{}=true", metadata::OWNED)),
        ..WatchKey::all(api_version, kind, Role::Children)
    }
}

/// A running controller.
pub struct Running {
    /// Shared state.
    pub ctx: Arc<Context>,
    tasks: JoinSet<()>,
    workers: JoinSet<()>,
}

impl std::fmt::Debug for Running {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Running").finish_non_exhaustive()
    }
}

/// Builds the shared context (connects, creates the plugin runtime).
///
/// # Errors
/// No API connection, or the plugin runtime cannot start.
pub async fn context(
    config: ControllerConfig,
    client: Client,
    metrics: Arc<crate::metrics::Metrics>,
) -> Result<(Arc<Context>, mpsc::UnboundedReceiver<Notice>), Error> {
    let (tx, rx) = mpsc::unbounded_channel();
    let runtime = Arc::new(PluginRuntime::new(config.runtime.clone())?);
    let reporter = Reporter {
        controller: "kroxide".into(),
        instance: std::env::var("POD_NAME")
            .ok()
            .or_else(|| std::env::var("HOSTNAME").ok()),
    };
    let ctx = Arc::new(Context {
        recorder: Recorder::new(client.clone(), reporter),
        informers: Informers::new(client.clone(), tx),
        limiter: Limiter::new(config.client_qps, config.client_burst),
        rgd_queue: Queue::new(config.backoff),
        // One graph holds at most all workers but one: a slow graph (plugin calls running into
        // their deadline) cannot starve the others.
        instance_queue: Queue::with_share(config.backoff, config.workers.saturating_sub(1).max(1)),
        graphs: Graphs::default(),
        children: Children::default(),
        memory: Memory::default(),
        interest: Interest::default(),
        metrics,
        graphs_seen: Mutex::new(HashSet::new()),
        runtime,
        client,
        config,
    });
    Ok((ctx, rx))
}

/// Starts watching graphs and the workers.
pub async fn start(ctx: Arc<Context>, notices: mpsc::UnboundedReceiver<Notice>) -> Running {
    let mut tasks = JoinSet::new();
    tasks.spawn(route(ctx.clone(), notices));
    let watcher_ctx = ctx.clone();
    tasks.spawn(async move {
        // The RGD CRD may be installed after the controller starts.
        let mut warned = false;
        loop {
            match watcher_ctx.informers.ensure(&rgd_watch()).await {
                Ok(_) => {
                    if let Err(e) = watcher_ctx.informers.ensure(&crd_watch()).await {
                        tracing::info!(error = %e, "cannot watch CustomResourceDefinitions; graphs re-check theirs on a timer");
                    }
                    break;
                }
                Err(e) => {
                    if !warned {
                        tracing::warn!(error = %e, "ResourceGraphDefinition CRD not served yet; install it with `kroxide generate crd | kubectl apply -f -` or the Helm chart");
                        warned = true;
                    }
                    watcher_ctx.informers.kinds.forget(crate::rgd::API_VERSION, crate::rgd::KIND);
                    tokio::time::sleep(Duration::from_secs(2)).await;
                }
            }
        }
    });
    let mut workers = JoinSet::new();
    for _ in 0..ctx.config.rgd_workers {
        workers.spawn(rgd_worker(ctx.clone()));
    }
    for _ in 0..ctx.config.workers {
        workers.spawn(instance_worker(ctx.clone()));
    }
    Running { ctx, tasks, workers }
}

impl Running {
    /// Stops taking work, lets in-flight reconciles finish for up to `grace`, then stops
    /// everything. Returns whether every reconcile finished in time.
    pub async fn stop(mut self, grace: Duration) -> bool {
        self.ctx.rgd_queue.close();
        self.ctx.instance_queue.close();
        let drained =
            tokio::time::timeout(grace, async { while self.workers.join_next().await.is_some() {} })
                .await
                .is_ok();
        self.workers.abort_all();
        self.tasks.abort_all();
        drained
    }

    /// Whether the caches the controller has started have all synced.
    pub fn synced(&self) -> bool {
        self.ctx.informers.all_synced()
    }
}

/// Runs the controller until `shutdown` completes, then drains in-flight reconciles for up to
/// the configured grace period. Serves health and metrics on the configured addresses. With
/// leader election, reconciles only while this replica holds the Lease, and stops at once when
/// it cannot renew it.
///
/// # Errors
/// No API connection, the plugin runtime cannot start, or an endpoint address cannot be bound.
pub async fn run(config: ControllerConfig, shutdown: impl Future<Output = ()>) -> Result<(), Error> {
    let client = client(&config).await?;
    tracing::info!(
        memory_limit = config
            .memory_limit
            .map(|m| format!("{} MiB", m >> 20))
            .unwrap_or_else(|| "none".into()),
        plugin_calls_at_once = config.runtime.concurrency,
        plugin_call_max_memory_mib = config.runtime.max_memory >> 20,
        "plugin runtime sized"
    );
    let metrics = Arc::new(crate::metrics::Metrics::default());
    let probes = Arc::new(crate::probes::Probes::new(metrics.clone()));
    let mut servers = JoinSet::new();
    let bind = |addr: std::net::SocketAddr| async move {
        crate::probes::bind(addr)
            .await
            .map_err(|e| Error::Connect(format!("cannot listen on {addr}: {e}")))
    };
    match &config.metrics_tls {
        None => {
            for addr in [config.health_addr, config.metrics_addr]
                .into_iter()
                .flatten()
                .collect::<BTreeSet<_>>()
            {
                let listener = bind(addr).await?;
                tracing::info!(%addr, "serving /healthz, /readyz and /metrics");
                servers.spawn(crate::probes::serve(
                    listener,
                    probes.clone(),
                    crate::probes::Serves::Everything,
                ));
            }
        }
        Some((cert, key)) => {
            if let Some(addr) = config.health_addr {
                let listener = bind(addr).await?;
                tracing::info!(%addr, "serving /healthz and /readyz");
                servers.spawn(crate::probes::serve(
                    listener,
                    probes.clone(),
                    crate::probes::Serves::Health,
                ));
            }
            if let Some(addr) = config.metrics_addr {
                let tls =
                    crate::probes::tls_acceptor(cert, key).map_err(|e| Error::Connect(e.to_string()))?;
                let listener = bind(addr).await?;
                tracing::info!(%addr, "serving /metrics over HTTPS to authorized callers");
                let auth = Arc::new(crate::probes::Authenticator::new(client.clone()));
                servers.spawn(crate::probes::serve_secure(listener, probes.clone(), tls, auth));
            }
        }
    }
    let grace = config.graceful_shutdown_timeout;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let (lead_tx, mut leading) = tokio::sync::watch::channel(config.leader_election.is_none());
    let mut election = JoinSet::new();
    if let Some(le) = &config.leader_election {
        probes.standby.store(true, std::sync::atomic::Ordering::Release);
        let settings = crate::leader::Settings {
            namespace: le.namespace.clone(),
            identity: config.identity.clone(),
            lease_duration: le.lease_duration,
            renew_deadline: le.renew_deadline,
            retry_period: le.retry_period,
        };
        election.spawn(crate::leader::campaign(
            client.clone(),
            settings,
            lead_tx,
            stop_rx.clone(),
        ));
    }
    tokio::pin!(shutdown);
    loop {
        // Wait to lead.
        while !*leading.borrow() {
            tokio::select! {
                _ = leading.changed() => {}
                _ = &mut shutdown => {
                    let _ = stop_tx.send(true);
                    while election.join_next().await.is_some() {}
                    return Ok(());
                }
            }
        }
        probes.standby.store(false, std::sync::atomic::Ordering::Release);
        let (ctx, notices) = context(config.clone(), client.clone(), metrics.clone()).await?;
        *probes.current.lock().unwrap_or_else(|e| e.into_inner()) = Some(ctx.clone());
        let running = start(ctx, notices).await;
        let lost = loop {
            tokio::select! {
                _ = leading.changed() => {
                    if !*leading.borrow() {
                        break true;
                    }
                }
                _ = &mut shutdown => break false,
            }
        };
        *probes.current.lock().unwrap_or_else(|e| e.into_inner()) = None;
        if lost {
            // Another replica may take over at any moment: stop writing now.
            running.stop(Duration::ZERO).await;
            probes.standby.store(true, std::sync::atomic::Ordering::Release);
            continue;
        }
        tracing::info!("shutting down: finishing in-flight reconciles");
        if !running.stop(grace).await {
            tracing::warn!("in-flight reconciles did not finish within the grace period");
        }
        let _ = stop_tx.send(true);
        while election.join_next().await.is_some() {}
        servers.abort_all();
        return Ok(());
    }
}

/// Keeps a map sorted for deterministic annotations.
pub fn sorted_join<'a>(items: impl IntoIterator<Item = &'a str>) -> String {
    let set: BTreeMap<&str, ()> = items.into_iter().map(|i| (i, ())).collect();
    set.keys().copied().collect::<Vec<_>>().join(",")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn namespace(rv: &str, terminating: bool) -> Value {
        let mut v = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {
            "name": "tenant", "resourceVersion": rv,
            "labels": {"applyset.kubernetes.io/part-of": "applyset-x"}}});
        if terminating {
            v["metadata"]["deletionTimestamp"] = json!("2026-11-25T00:00:00Z");
        }
        v
    }

    #[test]
    fn a_late_delete_response_does_not_bring_back_a_child_the_watch_saw_deleted() {
        let children = Children::default();
        children.upsert(namespace("10", false));
        // The watch reports the namespace gone (finalized at once) ...
        children.remove(&namespace("12", true));
        // ... before our DELETE's answer, still Terminating, is handled.
        children.upsert(namespace("11", true));
        assert!(children.of("applyset-x").is_empty());
        assert!(children.get(&object_id(&namespace("11", true))).is_none());
    }

    #[test]
    fn a_relist_forgets_children_deleted_while_the_watch_was_down() {
        let children = Children::default();
        let cm = |name: &str| {
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": "n",
                "resourceVersion": "3", "labels": {"applyset.kubernetes.io/part-of": "applyset-x"}}})
        };
        children.upsert(cm("kept"));
        children.upsert(cm("deleted-in-the-gap"));
        children.upsert(namespace("4", false));
        let listed: HashSet<ObjectId> = [object_id(&cm("kept"))].into();
        let gone = children.retain_listed(&child_watch("v1", "ConfigMap"), &listed);
        assert_eq!(gone.len(), 1);
        assert_eq!(gone[0]["metadata"]["name"], "deleted-in-the-gap");
        let names: BTreeSet<String> = children
            .of("applyset-x")
            .iter()
            .map(|c| c["metadata"]["name"].as_str().unwrap().to_string())
            .collect();
        // Other kinds are not touched by a ConfigMap relist.
        assert_eq!(names, ["kept".to_string(), "tenant".to_string()].into());
    }

    #[test]
    fn a_late_deletion_of_an_earlier_incarnation_keeps_the_child_made_again_since() {
        // Deleted behind our back while the watch was down; our apply made it again (uid b,
        // resourceVersion 12); then the watch catches up with the old deletion and the new ADDED.
        let cm = |uid: &str, rv: &str| {
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "n",
                "uid": uid, "resourceVersion": rv, "labels": {"applyset.kubernetes.io/part-of": "applyset-x"}}})
        };
        let children = Children::default();
        children.upsert(cm("a", "10"));
        children.upsert(cm("b", "12"));
        children.remove(&cm("a", "11"));
        assert_eq!(children.of("applyset-x").len(), 1, "the new incarnation stays");
        children.upsert(cm("b", "12"));
        let kept = children.get(&object_id(&cm("b", "12"))).unwrap();
        assert_eq!(kept["metadata"]["uid"], "b");
        // Its own deletion still removes it.
        children.remove(&cm("b", "13"));
        assert!(children.of("applyset-x").is_empty());
    }

    #[test]
    fn a_child_created_again_after_its_deletion_is_recorded() {
        let children = Children::default();
        children.upsert(namespace("10", false));
        children.remove(&namespace("12", true));
        children.upsert(namespace("15", false));
        assert_eq!(children.of("applyset-x").len(), 1);
    }

    #[test]
    fn an_older_copy_never_replaces_a_newer_one() {
        let children = Children::default();
        children.upsert(namespace("10", true));
        children.upsert(namespace("9", false));
        let kept = children.get(&object_id(&namespace("10", true))).unwrap();
        assert_eq!(kept["metadata"]["resourceVersion"], "10");
    }

    #[test]
    fn a_child_routes_to_its_instance_by_labels() {
        let child = json!({"metadata": {"labels": {
            "kro.run/instance-group": "kro.run", "kro.run/instance-version": "v1alpha1",
            "kro.run/instance-kind": "WebApp", "kro.run/instance-namespace": "shop", "kro.run/instance-name": "web"}}});
        let key = owner_of(&child).unwrap();
        assert_eq!(key.to_string(), "WebApp shop/web");
        assert_eq!(key.api_version, "kro.run/v1alpha1");
        assert!(owner_of(&json!({"metadata": {}})).is_none());
    }

    #[test]
    fn the_children_index_keeps_the_newest_and_follows_applysets() {
        let c = Children::default();
        let obj = |rv: &str, set: &str| {
            json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "a", "namespace": "n", "resourceVersion": rv, "labels": {"applyset.kubernetes.io/part-of": set}}})
        };
        c.upsert(obj("5", "s1"));
        c.upsert(obj("4", "s1"));
        assert_eq!(
            c.of("s1")[0]["metadata"]["resourceVersion"],
            "5",
            "an older copy does not win"
        );
        c.upsert(obj("6", "s2"));
        assert!(c.of("s1").is_empty());
        assert_eq!(c.of("s2").len(), 1);
        c.remove(&obj("7", "s2"));
        assert!(c.of("s2").is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn the_limiter_allows_a_burst_then_the_rate() {
        let l = Limiter::new(10.0, 3);
        let start = tokio::time::Instant::now();
        for _ in 0..5 {
            l.acquire().await;
        }
        let took = start.elapsed();
        assert!(
            took >= Duration::from_millis(190) && took < Duration::from_millis(250),
            "{took:?}"
        );
    }
}

//! Watch caches started on demand: one reflector per (kind, selector, role), created the first
//! time a graph needs it (an instance kind, a child kind, an external reference, a plugin
//! ConfigMap), each reporting its changes to the router as [`Notice`]s.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use futures::StreamExt;
use kube::{
    Api, Client,
    api::{ApiResource, GroupVersionKind},
    discovery::{Scope, oneshot},
    runtime::{WatchStreamExt, reflector, watcher},
};
use serde_json::Value;
use tokio::{sync::mpsc, task::JoinHandle};

use super::{
    error::Error,
    wire::{self, Wire},
};
use crate::{metadata, object::Object};

/// What a watch is for, which decides how its events are routed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum Role {
    /// ResourceGraphDefinitions.
    Rgds,
    /// Instances of one graph's kind.
    Instances,
    /// Children of every instance of any graph (selected on `kro.run/owned=true`).
    Children,
    /// Objects graphs read by `externalRef`.
    External,
    /// A plugin's ConfigMap.
    PluginSource,
    /// The CRDs of graphs (selected on `kro.run/owned=true`): a CRD that becomes Established, or
    /// is deleted or changed, brings its graph back.
    Crds,
}

impl Role {
    /// Whether a watch of this role keeps a store that reconciles read (children are kept in the
    /// controller's own trimmed index, CRDs are only notices).
    pub(crate) fn cached(self) -> bool {
        !matches!(self, Role::Children | Role::Crds)
    }
}

/// Identifies one watch.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct WatchKey {
    /// apiVersion of the kind.
    pub(crate) api_version: String,
    /// Kind.
    pub(crate) kind: String,
    /// Only this namespace.
    pub(crate) namespace: Option<String>,
    /// Label selector.
    pub(crate) labels: Option<String>,
    /// Field selector.
    pub(crate) fields: Option<String>,
    /// Why it exists.
    pub(crate) role: Role,
}

impl WatchKey {
    /// A watch of every object of a kind.
    pub(crate) fn all(api_version: &str, kind: &str, role: Role) -> Self {
        Self {
            api_version: api_version.to_string(),
            kind: kind.to_string(),
            namespace: None,
            labels: None,
            fields: None,
            role,
        }
    }
}

/// A change seen by a watch.
///
/// A (re)list is reported as `Relisting`, one `Listed` per object, then `Synced`: objects that
/// vanished while the watch was down (a gap answered with 410 Gone) get no `Deleted`, so whoever
/// keeps its own index must drop what a relist did not list.
#[derive(Debug, Clone)]
pub(crate) enum Change {
    /// Created or updated.
    Applied(Arc<Value>),
    /// Deleted (its last state).
    Deleted(Arc<Value>),
    /// A (re)list begins.
    Relisting,
    /// An object of a (re)list.
    Listed(Arc<Value>),
    /// The (re)list is complete. The router sets the flag once it has taken in every listed
    /// object: children live in the router's own index, so a watch whose list has arrived but
    /// not been indexed must not count as synced (a reconcile would find its children missing).
    Synced(SyncedFlag),
}

/// Whether a watch's initial list has been taken in; set by whoever processes its `Synced`.
#[derive(Debug, Clone, Default)]
pub(crate) struct SyncedFlag(Arc<std::sync::atomic::AtomicBool>);

impl SyncedFlag {
    /// Marks the list taken in.
    pub(crate) fn set(&self) {
        self.0.store(true, std::sync::atomic::Ordering::Release);
    }

    fn get(&self) -> bool {
        self.0.load(std::sync::atomic::Ordering::Acquire)
    }
}

/// A change and the watch that saw it.
#[derive(Debug, Clone)]
pub struct Notice {
    /// The watch.
    pub(crate) key: WatchKey,
    /// What happened.
    pub(crate) change: Change,
}

/// One running watch with its cache.
#[derive(Debug)]
pub(crate) struct Informer {
    /// The resource watched.
    pub(crate) resource: ApiResource,
    /// Whether objects are namespaced.
    pub(crate) namespaced: bool,
    store: reflector::Store<Wire>,
    synced: SyncedFlag,
    task: JoinHandle<()>,
}

impl Drop for Informer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Informer {
    /// Every cached object.
    pub(crate) fn list(&self) -> Vec<Value> {
        self.store
            .state()
            .iter()
            .map(|o| Value::clone(o.object()))
            .collect()
    }

    fn store_key(&self, namespace: Option<&str>, name: &str) -> reflector::ObjectRef<Wire> {
        let key = reflector::ObjectRef::<Wire>::new_with(name, self.resource.clone());
        match namespace {
            Some(ns) if self.namespaced => key.within(ns),
            _ => key,
        }
    }

    /// One cached object.
    pub(crate) fn get(&self, namespace: Option<&str>, name: &str) -> Option<Value> {
        let key = self.store_key(namespace, name);
        self.store.get(&key).map(|o| Value::clone(o.object()))
    }

    /// The resourceVersion of a cached object, read without copying it.
    pub(crate) fn resource_version(&self, namespace: Option<&str>, name: &str) -> Option<u64> {
        self.store
            .get(&self.store_key(namespace, name))?
            .object()
            .resource_version()
    }

    /// One cached object, telling a missing object apart from a cache that has not received its
    /// initial list yet (when absence means nothing).
    pub(crate) fn lookup(&self, namespace: Option<&str>, name: &str) -> Lookup {
        match self.get(namespace, name) {
            Some(v) => Lookup::Found(v),
            None if self.synced() => Lookup::Absent,
            None => Lookup::NotSynced,
        }
    }

    /// Whether the initial list has been received and taken in by the router.
    pub(crate) fn synced(&self) -> bool {
        self.synced.get()
    }

    /// Waits until the initial list has been received and taken in, at most `timeout`.
    pub(crate) async fn wait_synced(&self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        while !self.synced() {
            if tokio::time::Instant::now() > deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        true
    }
}

/// What a cache knows of one object.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Lookup {
    /// The object, as last seen.
    Found(Value),
    /// Listed and watched: it does not exist.
    Absent,
    /// The initial list is still coming: it may exist.
    NotSynced,
}

/// Resolves kinds through discovery, remembering the answers.
#[derive(Debug, Default)]
pub(crate) struct Kinds {
    known: Mutex<HashMap<(String, String), (ApiResource, bool)>>,
}

impl Kinds {
    /// The resource and scope of `kind` in `api_version`.
    ///
    /// # Errors
    /// [`Error::UnknownKind`] when the server does not serve it.
    pub(crate) async fn resolve(
        &self,
        client: &Client,
        api_version: &str,
        kind: &str,
    ) -> Result<(ApiResource, bool), Error> {
        let key = (api_version.to_string(), kind.to_string());
        if let Some(hit) = self.known.lock().unwrap_or_else(|e| e.into_inner()).get(&key) {
            return Ok(hit.clone());
        }
        let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
        let gvk = GroupVersionKind::gvk(group, version, kind);
        let (resource, caps) = oneshot::pinned_kind(client, &gvk)
            .await
            .map_err(|e| Error::UnknownKind {
                api_version: api_version.to_string(),
                kind: kind.to_string(),
                message: e.to_string(),
            })?;
        let found = (resource, caps.scope == Scope::Namespaced);
        self.known
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key, found.clone());
        Ok(found)
    }

    /// Whether a kind already resolved is namespaced (no request).
    pub(crate) fn cached(&self, api_version: &str, kind: &str) -> Option<bool> {
        self.known
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&(api_version.to_string(), kind.to_string()))
            .map(|(_, namespaced)| *namespaced)
    }

    /// Resolves a kind known only by group (`Deployment.apps`), at the server's preferred
    /// version.
    ///
    /// # Errors
    /// [`Error::UnknownKind`] when the group does not serve the kind.
    pub(crate) async fn resolve_group_kind(
        &self,
        client: &Client,
        group: &str,
        kind: &str,
    ) -> Result<(ApiResource, bool), Error> {
        let unknown = |message: String| Error::UnknownKind {
            api_version: group.to_string(),
            kind: kind.to_string(),
            message,
        };
        let g = kube::discovery::oneshot::group(client, group)
            .await
            .map_err(|e| unknown(e.to_string()))?;
        let (resource, caps) = g
            .recommended_kind(kind)
            .ok_or_else(|| unknown(format!("group {group:?} has no kind {kind}")))?;
        let found = (resource.clone(), caps.scope == Scope::Namespaced);
        self.known
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert((resource.api_version.clone(), kind.to_string()), found.clone());
        Ok(found)
    }

    /// Every kind resolved so far: (apiVersion, kind, namespaced).
    pub(crate) fn all(&self) -> Vec<(String, String, bool)> {
        self.known
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|((av, k), (_, n))| (av.clone(), k.clone(), *n))
            .collect()
    }

    /// Forgets a kind (its CRD changed or went away).
    pub(crate) fn forget(&self, api_version: &str, kind: &str) {
        self.known
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&(api_version.to_string(), kind.to_string()));
    }
}

/// Every running watch.
pub(crate) struct Informers {
    client: Client,
    /// Kind resolution.
    pub(crate) kinds: Kinds,
    running: Mutex<HashMap<WatchKey, Arc<Informer>>>,
    notices: mpsc::UnboundedSender<Notice>,
    bookmarks_timeout: u32,
}

impl std::fmt::Debug for Informers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Informers")
            .field("running", &self.count())
            .finish_non_exhaustive()
    }
}

impl Informers {
    /// Watches report to `notices`.
    pub(crate) fn new(client: Client, notices: mpsc::UnboundedSender<Notice>) -> Self {
        Self {
            client,
            kinds: Kinds::default(),
            running: Mutex::new(HashMap::new()),
            notices,
            bookmarks_timeout: 290,
        }
    }

    /// The watch for `key`, started when it is not running yet.
    ///
    /// # Errors
    /// The kind is unknown to the server.
    pub(crate) async fn ensure(&self, key: &WatchKey) -> Result<Arc<Informer>, Error> {
        if let Some(i) = self.get(key) {
            return Ok(i);
        }
        let (resource, namespaced) = self
            .kinds
            .resolve(&self.client, &key.api_version, &key.kind)
            .await?;
        let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(i) = running.get(key) {
            return Ok(i.clone());
        }
        let api: Api<Wire> = match (&key.namespace, namespaced) {
            (Some(ns), true) => Api::namespaced_with(self.client.clone(), ns, &resource),
            _ => Api::all_with(self.client.clone(), &resource),
        };
        let mut config = watcher::Config::default().timeout(self.bookmarks_timeout);
        if let Some(l) = &key.labels {
            config = config.labels(l);
        }
        if let Some(f) = &key.fields {
            config = config.fields(f);
        }
        let writer = reflector::store::Writer::new(resource.clone());
        let store = writer.as_reader();
        let notices = self.notices.clone();
        let watch_key = key.clone();
        let ar = resource.clone();
        let synced = SyncedFlag::default();
        let mark = synced.clone();
        // Children are kept by the controller's own index (trimmed), not a second cache.
        let cache = key.role.cached();
        let role = key.role;
        let task = tokio::spawn(async move {
            // What no reconcile reads is dropped before it is cached or copied: managedFields of
            // instances and graphs, and of children all but our own apply's entry (the drift
            // check compares it).
            let events = watcher(api, config).default_backoff().modify(move |o| {
                o.complete(&ar, |v| match role {
                    Role::Instances | Role::Rgds => wire::retain_managed_fields(v, |_| false),
                    Role::Children => wire::retain_managed_fields(v, wire::ours),
                    Role::External | Role::PluginSource | Role::Crds => {}
                })
            });
            let mut stream = if cache {
                events.reflect(writer).boxed()
            } else {
                events.boxed()
            };
            while let Some(event) = stream.next().await {
                let change = match event {
                    Ok(watcher::Event::Apply(o)) => Change::Applied(o.object().clone()),
                    Ok(watcher::Event::InitApply(o)) => Change::Listed(o.object().clone()),
                    Ok(watcher::Event::Delete(o)) => Change::Deleted(o.object().clone()),
                    Ok(watcher::Event::InitDone) => Change::Synced(mark.clone()),
                    Ok(watcher::Event::Init) => Change::Relisting,
                    Err(e) => {
                        tracing::debug!(kind = %watch_key.kind, error = %e, "watch interrupted; retrying");
                        continue;
                    }
                };
                if notices
                    .send(Notice {
                        key: watch_key.clone(),
                        change,
                    })
                    .is_err()
                {
                    return;
                }
            }
        });
        let informer = Arc::new(Informer {
            resource,
            namespaced,
            store,
            synced,
            task,
        });
        running.insert(key.clone(), informer.clone());
        Ok(informer)
    }

    /// The watch for `key`, if running.
    pub(crate) fn get(&self, key: &WatchKey) -> Option<Arc<Informer>> {
        self.running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(key)
            .cloned()
    }

    /// Stops the watch for `key`.
    pub(crate) fn stop(&self, key: &WatchKey) {
        self.running.lock().unwrap_or_else(|e| e.into_inner()).remove(key);
    }

    /// Whether every running watch has its initial list.
    pub(crate) fn all_synced(&self) -> bool {
        self.running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .all(|i| i.synced())
    }

    /// Number of running watches.
    pub(crate) fn count(&self) -> usize {
        self.running.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

impl WatchKey {
    pub(crate) fn role_name(&self) -> &'static str {
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
pub(crate) fn rgd_watch() -> WatchKey {
    WatchKey::all(crate::rgd::API_VERSION, crate::rgd::KIND, Role::Rgds)
}

/// The watch of the CRDs graphs own.
pub(crate) fn crd_watch() -> WatchKey {
    WatchKey {
        labels: Some(format!("{}=true", metadata::OWNED)),
        ..WatchKey::all("apiextensions.k8s.io/v1", "CustomResourceDefinition", Role::Crds)
    }
}

/// The watch of children of one kind.
pub(crate) fn child_watch(api_version: &str, kind: &str) -> WatchKey {
    WatchKey {
        labels: Some(format!("{}=true", metadata::OWNED)),
        ..WatchKey::all(api_version, kind, Role::Children)
    }
}

#[cfg(test)]
mod tests {
    use kroxide_apiserver::{ApiServer, Config};
    use kube::api::{DynamicObject, PostParams};

    use super::*;

    #[tokio::test]
    async fn a_children_watch_counts_as_synced_only_once_its_list_is_taken_in() {
        let server = ApiServer::start(Config::default()).await.unwrap();
        let client = Client::try_from(kube::Config::new(server.url().parse().unwrap())).unwrap();
        let cm: DynamicObject = serde_json::from_value(serde_json::json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "child", "namespace": "default", "labels": {metadata::OWNED: "true"}}}))
        .unwrap();
        let resource = ApiResource::erase::<k8s_openapi::api::core::v1::ConfigMap>(&());
        Api::<DynamicObject>::namespaced_with(client.clone(), "default", &resource)
            .create(&PostParams::default(), &cm)
            .await
            .unwrap();
        let (tx, mut rx) = mpsc::unbounded_channel();
        let informers = Informers::new(client, tx);
        let informer = informers.ensure(&child_watch("v1", "ConfigMap")).await.unwrap();
        let mut listed = 0;
        let flag = loop {
            match rx.recv().await.unwrap().change {
                Change::Listed(_) => listed += 1,
                Change::Synced(flag) => break flag,
                _ => {}
            }
        };
        assert_eq!(listed, 1);
        // The list has arrived, but nothing has indexed it: a reconcile must keep waiting.
        assert!(!informer.synced());
        assert!(!informer.wait_synced(Duration::from_millis(50)).await);
        flag.set();
        assert!(informer.synced());
        drop(informer);
        drop(informers);
        server.shutdown().await;
    }
}

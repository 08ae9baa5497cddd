//! `kroxide render`: the desired children of one instance, exactly as the controller would
//! apply them, with no cluster; optionally the instance with its derived status.
//!
//! A resource that reads another one (`${deployment.metadata.name}`) reads it as it would be
//! applied: the desired object with the server's defaults of built-in kinds and an empty
//! status, unless an `--observed` file gives the live object. What still cannot be rendered
//! (it reads a status field, or waits for a readyWhen) is reported as [`Pending`].

use std::{
    path::{Path, PathBuf},
    sync::Arc,
};

use kroxide_schema::{defaults, kinds, structural};
use serde_json::{Value, json};

use super::error::Error;
use crate::{
    child::{ChildKey, DesiredChild, ObservedChild},
    cluster::Offline,
    derive,
    graph::{
        self, Graph, Limits,
        runtime::{self, Resolution},
    },
    metadata::{self, OFFLINE_UID},
    plugin::{CallInput, Digest, LoadedPlugin, PluginRuntime, RuntimeConfig, StatusOutput},
    render::{self, PluginStage},
    rgd::{ResourceGraphDefinition, Scope},
    status::Mark,
    yaml,
};

/// The fixed time offline renders write, so golden files stay stable.
pub(crate) const OFFLINE_TIME: &str = "1970-01-01T00:00:00Z";

/// Output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Format {
    /// A YAML stream, documents separated by `---`.
    #[default]
    Yaml,
    /// A JSON `v1/List`.
    Json,
}

/// What to render.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// The ResourceGraphDefinition.
    pub rgd: PathBuf,
    /// The instance.
    pub instance: PathBuf,
    /// The plugin's `.wasm` (raw or gzip), for graphs with `spec.plugin`.
    pub plugin: Option<PathBuf>,
    /// Live children and external objects to simulate (a file or a directory of YAML).
    pub observed: Option<PathBuf>,
    /// Plugin config replacing `spec.plugin.config` (YAML or JSON).
    pub config: Option<PathBuf>,
    /// CustomResourceDefinitions for custom child kinds.
    pub crds: Vec<PathBuf>,
    /// Also print the instance with its derived status.
    pub include_status: bool,
    /// Output format.
    pub format: Format,
    /// Run every plugin call several times and fail on any byte difference.
    pub check_determinism: bool,
}

/// What `render` produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    /// The documents, in the order the controller applies them.
    pub text: String,
    /// Resources left out because rendering them needs a live cluster.
    pub pending: Vec<Pending>,
}

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

/// How many times `--check-determinism` runs each call.
const DETERMINISM_RUNS: usize = 3;

struct Loaded {
    graph: Graph,
    instance: Value,
    observed_docs: Vec<Value>,
    plugin: Option<(Arc<LoadedPlugin>, Value)>,
    cluster: Offline,
    runtime: PluginRuntime,
}

fn one_document(path: &Path, what: &str) -> Result<Value, Error> {
    let mut docs = yaml::read_documents(path)?;
    match docs.len() {
        1 => Ok(docs.remove(0)),
        n => Err(Error::Input {
            path: path.to_path_buf(),
            message: format!("expected one {what}, found {n} documents"),
        }),
    }
}

/// Reads and builds an RGD file into a graph.
///
/// # Errors
/// The file is unreadable, not an RGD, or not a valid graph.
pub fn load_graph(path: &Path) -> Result<(ResourceGraphDefinition, Graph), Error> {
    let doc = one_document(path, "ResourceGraphDefinition")?;
    let rgd = ResourceGraphDefinition::from_value(&doc, &path.display().to_string())?;
    let graph = graph::build(&rgd, Limits::default()).map_err(|source| Error::Graph {
        path: path.to_path_buf(),
        source,
    })?;
    Ok((rgd, graph))
}

fn load(options: &Options) -> Result<Loaded, Error> {
    let (rgd, graph) = load_graph(&options.rgd)?;
    let mut instance = one_document(&options.instance, "instance")?;
    let (want_api, want_kind) = (graph.names.api_version(), graph.names.kind.clone());
    let s = |k: &str| {
        instance
            .get(k)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    if s("apiVersion") != want_api || s("kind") != want_kind {
        return Err(Error::Input {
            path: options.instance.clone(),
            message: format!(
                "apiVersion/kind is {}/{}, but the RGD {} defines {want_api}/{want_kind}",
                s("apiVersion"),
                s("kind"),
                rgd.name()
            ),
        });
    }
    offline_metadata(&mut instance, rgd.spec.schema.scope(), &options.instance)?;
    admit_instance(&mut instance, &graph, &options.instance)?;

    let mut cluster = Offline::default();
    for path in &options.crds {
        for crd in yaml::read_documents(path)? {
            register_crd(&mut cluster, &crd, path)?;
        }
    }
    // Instances of this graph's kind (chaining) are known too.
    cluster.insert_kind(
        &graph.names.api_version(),
        &graph.names.kind,
        graph.names.namespaced,
    );
    let runtime = PluginRuntime::new(RuntimeConfig::default())?;
    let plugin = match (&rgd.spec.plugin, &options.plugin) {
        (Some(spec), Some(path)) => {
            let bytes = std::fs::read(path).map_err(|source| Error::Read {
                path: path.clone(),
                source,
            })?;
            let pin = spec
                .sha256
                .as_deref()
                .map(Digest::parse)
                .transpose()
                .map_err(crate::plugin::Error::from)?;
            let plugin = runtime
                .load(&bytes, pin.as_ref())
                .map_err(|source| Error::Plugin {
                    path: path.clone(),
                    source,
                })?;
            let config = match &options.config {
                Some(path) => one_document(path, "plugin config")?,
                None => spec.config_value(),
            };
            let limits = runtime.limits(spec.timeout_ms, spec.memory_mib)?;
            plugin.validate_config(&limits, &config)?;
            Some((plugin, config))
        }
        (Some(spec), None) => {
            return Err(Error::PluginFileMissing {
                rgd: rgd.name().to_string(),
                config_map: spec.config_map_ref.name.clone(),
            });
        }
        (None, Some(_)) => {
            return Err(Error::NoPluginInRgd {
                rgd: rgd.name().to_string(),
            });
        }
        (None, None) => None,
    };
    let observed_docs = match &options.observed {
        Some(path) => yaml::read_path(path)?,
        None => Vec::new(),
    };
    cluster.insert_objects(observed_docs.iter().cloned());
    Ok(Loaded {
        graph,
        instance,
        observed_docs,
        plugin,
        cluster,
        runtime,
    })
}

/// Prunes, defaults and validates the instance with the generated CRD's schema, exactly as the
/// API server would on create (unknown fields are refused, as `kubectl apply` asks).
fn admit_instance(instance: &mut Value, graph: &Graph, path: &Path) -> Result<(), Error> {
    let schema = &graph.crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"];
    let mut pruned = instance.clone();
    let unknown = structural::prune(&mut pruned, schema);
    let unknown: Vec<String> = unknown.into_iter().filter(|p| !p.starts_with("status")).collect();
    if !unknown.is_empty() {
        return Err(Error::Input {
            path: path.to_path_buf(),
            message: format!(
                "unknown fields: {}",
                unknown
                    .iter()
                    .map(|p| format!(".{p}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        });
    }
    structural::default(&mut pruned, schema);
    let causes = structural::validate(&pruned, None, schema, &structural::BuiltinRules);
    if !causes.is_empty() {
        return Err(Error::Invalid {
            path: path.to_path_buf(),
            kind: graph.names.kind.clone(),
            name: pruned
                .pointer("/metadata/name")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
            causes: causes.iter().map(ToString::to_string).collect(),
        });
    }
    *instance = pruned;
    Ok(())
}

/// Fills what the API server would: uid, namespace, generation, creation time.
fn offline_metadata(instance: &mut Value, scope: Scope, path: &Path) -> Result<(), Error> {
    let Some(meta) = instance.get_mut("metadata").and_then(Value::as_object_mut) else {
        return Err(Error::Input {
            path: path.to_path_buf(),
            message: "metadata: Required value".to_string(),
        });
    };
    if meta.get("name").and_then(Value::as_str).is_none_or(str::is_empty) {
        return Err(Error::Input {
            path: path.to_path_buf(),
            message: "metadata.name: Required value".to_string(),
        });
    }
    meta.entry("uid").or_insert_with(|| json!(OFFLINE_UID));
    meta.entry("generation").or_insert_with(|| json!(1));
    meta.entry("creationTimestamp")
        .or_insert_with(|| json!(OFFLINE_TIME));
    match scope {
        Scope::Namespaced => {
            meta.entry("namespace").or_insert_with(|| json!("default"));
        }
        Scope::Cluster => {
            meta.remove("namespace");
        }
    }
    Ok(())
}

fn register_crd(cluster: &mut Offline, crd: &Value, path: &Path) -> Result<(), Error> {
    let s = |p: &str| crd.pointer(p).and_then(Value::as_str).unwrap_or_default();
    if s("/kind") != "CustomResourceDefinition" {
        return Err(Error::Input {
            path: path.to_path_buf(),
            message: format!("expected a CustomResourceDefinition, found {}", s("/kind")),
        });
    }
    let namespaced = s("/spec/scope") != "Cluster";
    for version in crd
        .pointer("/spec/versions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let v = version.get("name").and_then(Value::as_str).unwrap_or_default();
        cluster.insert_kind(
            &format!("{}/{v}", s("/spec/group")),
            s("/spec/names/kind"),
            namespaced,
        );
    }
    Ok(())
}

/// Matches live objects to desired children: by kro's node labels, else by identity. Objects
/// that match no child are external objects, and are left out.
fn match_observed(docs: &[Value], desired: &[DesiredChild]) -> Vec<ObservedChild> {
    let mut out = Vec::new();
    for doc in docs {
        let s = |p: &str| {
            doc.pointer(p)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        };
        let label = |k: &str| {
            doc.pointer(&format!("/metadata/labels/{}", k.replace('/', "~1")))
                .and_then(Value::as_str)
                .map(str::to_string)
        };
        let key = match label(metadata::NODE_ID) {
            Some(id) => Some(ChildKey {
                id,
                index: label(metadata::COLLECTION_INDEX).and_then(|i| i.parse().ok()),
            }),
            None => desired
                .iter()
                .find(|d| {
                    d.api_version() == s("/apiVersion")
                        && d.kind() == s("/kind")
                        && d.name() == s("/metadata/name")
                        && (s("/metadata/namespace").is_empty()
                            || d.namespace() == Some(&s("/metadata/namespace")))
                })
                .map(|d| d.key.clone()),
        };
        if let Some(key) = key {
            out.push(ObservedChild {
                key,
                object: doc.clone(),
            });
        }
    }
    out.sort_by(|a, b| a.key.cmp(&b.key));
    out
}

struct Pass {
    resolution: Resolution,
    output: render::Output,
}

fn run(loaded: &Loaded, observed: &[ObservedChild]) -> Result<Pass, Error> {
    let graph = &loaded.graph;
    let resolution = runtime::resolve(graph, &loaded.instance, observed, &loaded.cluster);
    if let Some((id, message)) = resolution.first_error() {
        return Err(Error::Resolve {
            resource: id.to_string(),
            message: message.to_string(),
        });
    }
    let limits = match &graph.plugin {
        Some(spec) => loaded.runtime.limits(spec.timeout_ms, spec.memory_mib)?,
        None => loaded.runtime.limits(None, None)?,
    };
    let allowed = graph
        .plugin
        .as_ref()
        .map(|p| p.allowed_kinds.as_slice())
        .unwrap_or_default();
    let order = graph.topological_order();
    let input = render::Input {
        graph: &graph.name,
        revision: 1,
        instance: &loaded.instance,
        observed,
        rendered: resolution.rendered.clone(),
        pending: resolution.pending.clone(),
        node_order: &order,
        plugin: loaded.plugin.as_ref().map(|(plugin, config)| PluginStage {
            plugin,
            limits,
            config,
            allowed_kinds: allowed,
        }),
        cluster: &loaded.cluster,
        propagate_labels: graph.propagate_labels,
    };
    let output = render::desired(input)?;
    Ok(Pass { resolution, output })
}

fn derive(loaded: &Loaded, pass: &Pass, observed: &[ObservedChild]) -> Result<Value, Error> {
    let plugin_status = match &loaded.plugin {
        Some((plugin, config)) => {
            let spec = loaded.graph.plugin.as_ref().expect("a loaded plugin has a spec");
            let limits = loaded.runtime.limits(spec.timeout_ms, spec.memory_mib)?;
            let input = CallInput {
                graph: &loaded.graph.name,
                revision: 1,
                config,
                instance: &loaded.instance,
                observed,
                rendered: &[],
                pending: &[],
            };
            Some(plugin.derive_status(&limits, &input)?)
        }
        None => None,
    };
    Ok(instance_with_status(
        &loaded.instance,
        pass,
        observed,
        plugin_status.as_ref(),
    ))
}

/// The instance with `status` as the controller would write it.
fn instance_with_status(
    instance: &Value,
    pass: &Pass,
    observed: &[ObservedChild],
    plugin: Option<&StatusOutput>,
) -> Value {
    let fields = derive::status(&derive::Input {
        instance,
        resolution: Some(&pass.resolution),
        desired: &pass.output.desired,
        observed,
        plugin,
        managed: Mark::managed(),
        failure: None,
        suspended: false,
        deleting: false,
        now: OFFLINE_TIME,
    });
    let mut out = instance.clone();
    out["status"] = Value::Object(fields);
    out
}

fn documents(
    loaded: &Loaded,
    observed: &[ObservedChild],
    live: &[ObservedChild],
    include_status: bool,
) -> Result<(Vec<Value>, Vec<Pending>), Error> {
    let pass = run(loaded, observed)?;
    // The order the controller applies them in: by the resource's place in the graph, then
    // by key (a collection's items in order, a plugin's own children after the templates).
    let order = loaded.graph.topological_order();
    let mut desired: Vec<&DesiredChild> = pass.output.desired.iter().collect();
    desired.sort_by_key(|d| {
        (
            order.iter().position(|id| *id == d.key.id).unwrap_or(order.len()),
            &d.key,
        )
    });
    let mut docs: Vec<Value> = desired.iter().map(|d| Value::Object(d.object.clone())).collect();
    if include_status {
        // The instance's status reports what exists: simulated children do not.
        docs.push(derive(loaded, &pass, live)?);
    }
    let pending = pending(loaded, &pass, observed, live);
    Ok((docs, pending))
}

/// The children of the last pass: matched `--observed` documents where there is one, else
/// the desired object as it would be applied. Returns them and the keys simulated.
fn settle(loaded: &Loaded) -> Result<(Vec<ObservedChild>, Vec<ObservedChild>), Error> {
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
                    object: as_applied(child, n),
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
fn pending(loaded: &Loaded, pass: &Pass, observed: &[ObservedChild], live: &[ObservedChild]) -> Vec<Pending> {
    let described = |id: &str| {
        observed
            .iter()
            .find(|o| o.key.id == id)
            .map(|o| {
                let s = |p: &str| o.object.pointer(p).and_then(Value::as_str).unwrap_or_default();
                let ns = s("/metadata/namespace");
                let name = if ns.is_empty() {
                    s("/metadata/name").to_string()
                } else {
                    format!("{ns}/{}", s("/metadata/name"))
                };
                format!("{id} ({} {} {name})", s("/apiVersion"), s("/kind"))
            })
            .unwrap_or_else(|| id.to_string())
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
                .filter(|d| {
                    !loaded
                        .graph
                        .node(d)
                        .is_some_and(|n| n.is_external() && external_given(loaded, n))
                })
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

/// Whether an `--observed` document gives the object an external reference reads.
fn external_given(loaded: &Loaded, node: &graph::Node) -> bool {
    let s = |p: &str| node.object.pointer(p).and_then(Value::as_str).unwrap_or_default();
    loaded.observed_docs.iter().any(|d| {
        let t = |p: &str| d.pointer(p).and_then(Value::as_str).unwrap_or_default();
        t("/apiVersion") == s("/apiVersion") && t("/kind") == s("/kind")
    })
}

/// Renders per the options: the text to print and the resources left out.
///
/// # Errors
/// Any input, graph, plugin or render error, naming the file and the field; with
/// `check_determinism`, [`Error::Nondeterministic`] on the first difference.
pub fn render(options: &Options) -> Result<Rendered, Error> {
    let loaded = load(options)?;
    let (observed, live) = settle(&loaded)?;
    let (docs, pending) = documents(&loaded, &observed, &live, options.include_status)?;
    if options.check_determinism {
        let reference = serialize(&docs, Format::Json);
        for run_no in 2..=DETERMINISM_RUNS {
            let text = serialize(
                &documents(&loaded, &observed, &live, options.include_status)?.0,
                Format::Json,
            );
            let differs = reference
                .bytes()
                .zip(text.bytes())
                .position(|(a, b)| a != b)
                .or_else(|| (reference.len() != text.len()).then_some(reference.len().min(text.len())));
            if let Some(at) = differs {
                let snippet = |s: &str| {
                    s.get(at.saturating_sub(40)..(at + 40).min(s.len()))
                        .unwrap_or_default()
                        .to_string()
                };
                return Err(Error::Nondeterministic {
                    run: run_no,
                    offset: at,
                    first: snippet(&reference),
                    later: snippet(&text),
                });
            }
        }
    }
    Ok(Rendered {
        text: serialize(&docs, options.format),
        pending,
    })
}

fn serialize(documents: &[Value], format: Format) -> String {
    match format {
        Format::Yaml => yaml::to_stream(documents),
        Format::Json => {
            let list = json!({ "apiVersion": "v1", "kind": "List", "items": documents });
            serde_json::to_string_pretty(&list).expect("JSON values serialize") + "\n"
        }
    }
}

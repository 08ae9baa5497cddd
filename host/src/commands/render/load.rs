//! What `render` reads: the options, the RGD built into a graph, the instance admitted as the API
//! server would (pruned, defaulted, validated), the plugin, CRDs and `--observed` objects.

use std::{
    path::{Path, PathBuf},
    sync::Arc,
};

use kroxide_schema::structural;
use serde_json::{Value, json};

use crate::{
    cluster::Offline,
    commands::error::Error,
    graph::{self, Catalog, CustomKinds, Graph, Limits},
    metadata::{OFFLINE_TIME, OFFLINE_UID},
    plugin::{Digest, LoadedPlugin, PluginRuntime, RuntimeConfig},
    rgd::{ResourceGraphDefinition, Scope},
    yaml,
};

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
    /// `omit()` allowed (the `CELOmitFunction` feature gate).
    pub omit: bool,
}

pub(super) struct Loaded {
    pub(super) graph: Graph,
    pub(super) instance: Value,
    pub(super) observed_docs: Vec<Value>,
    pub(super) plugin: Option<(Arc<LoadedPlugin>, Value)>,
    pub(super) cluster: Offline,
    pub(super) runtime: PluginRuntime,
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

/// Reads and builds an RGD file into a graph, type-checked against `catalog`.
///
/// # Errors
/// The file is unreadable, not an RGD, or not a valid graph.
pub fn load_graph(
    path: &Path,
    catalog: &Catalog,
    limits: Limits,
) -> Result<(ResourceGraphDefinition, Graph), Error> {
    let doc = one_document(path, "ResourceGraphDefinition")?;
    build_graph(&doc, path, catalog, limits)
}

/// Builds one RGD document read from `path`.
///
/// # Errors
/// Not an RGD, or not a valid graph.
pub fn build_graph(
    doc: &Value,
    path: &Path,
    catalog: &Catalog,
    limits: Limits,
) -> Result<(ResourceGraphDefinition, Graph), Error> {
    let rgd = ResourceGraphDefinition::from_value(doc, &path.display().to_string())?;
    let graph = graph::build(&rgd, limits, catalog).map_err(|source| Error::Graph {
        path: path.to_path_buf(),
        source,
    })?;
    Ok((rgd, graph))
}

/// Reads CustomResourceDefinition files: each CRD with the file it came from.
///
/// # Errors
/// A file is unreadable, or holds something else than CRDs.
pub fn read_crds(paths: &[PathBuf]) -> Result<Vec<(PathBuf, Value)>, Error> {
    let mut out = Vec::new();
    for path in paths {
        for crd in yaml::read_path(path)? {
            if crd.get("kind").and_then(Value::as_str) != Some("CustomResourceDefinition") {
                return Err(Error::Input {
                    path: path.clone(),
                    message: format!(
                        "expected a CustomResourceDefinition, found {}",
                        crd.get("kind")
                            .and_then(Value::as_str)
                            .unwrap_or("a document without kind")
                    ),
                });
            }
            out.push((path.clone(), crd));
        }
    }
    Ok(out)
}

/// The schemas offline commands check against: built-in kinds and the CRDs given.
pub fn offline_catalog(crds: &[(PathBuf, Value)]) -> Catalog {
    let mut catalog = Catalog::new(CustomKinds::Unchecked);
    for (_, crd) in crds {
        catalog.add_crd(crd);
    }
    catalog
}

pub(super) fn load(options: &Options) -> Result<Loaded, Error> {
    let crds = read_crds(&options.crds)?;
    let limits = Limits {
        omit: options.omit,
        ..Limits::default()
    };
    let (rgd, graph) = load_graph(&options.rgd, &offline_catalog(&crds), limits)?;
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
    for (_, crd) in &crds {
        register_crd(&mut cluster, crd);
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

fn register_crd(cluster: &mut Offline, crd: &Value) {
    let namespaced = crd.pointer("/spec/scope").and_then(Value::as_str) != Some("Cluster");
    for (api_version, kind, _) in crate::graph::catalog::crd_versions(crd) {
        cluster.insert_kind(&api_version, kind, namespaced);
    }
}

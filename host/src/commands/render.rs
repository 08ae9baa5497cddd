//! `kroxide render`: the desired children of one instance, exactly as the controller would
//! apply them, with no cluster; optionally the instance with its derived status.

use std::path::{Path, PathBuf};

use serde_json::{Map, Value, json};

use super::Error;
use crate::{
    child::{ChildKey, DesiredChild, ObservedChild, Readiness},
    metadata::{self, OFFLINE_UID},
    plugin::{CallInput, Digest, LoadedPlugin, PluginRuntime, RuntimeConfig, StatusOutput},
    render::{self, PluginStage, StaticScopes},
    rgd::{ResourceGraphDefinition, Scope},
    status::{self, Mark, Outcome},
    yaml,
};

/// The fixed time offline renders write, so golden files stay stable.
pub const OFFLINE_TIME: &str = "1970-01-01T00:00:00Z";

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
    /// Live children to simulate (a file or a directory of YAML).
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

/// How many times `--check-determinism` runs each call.
const DETERMINISM_RUNS: usize = 3;

struct Loaded {
    rgd: ResourceGraphDefinition,
    instance: Value,
    observed_docs: Vec<Value>,
    plugin: Option<(std::sync::Arc<LoadedPlugin>, Value)>,
    scopes: StaticScopes,
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

fn load(options: &Options) -> Result<Loaded, Error> {
    let rgd_doc = one_document(&options.rgd, "ResourceGraphDefinition")?;
    let rgd = ResourceGraphDefinition::from_value(&rgd_doc, &options.rgd.display().to_string())?;
    let mut instance = one_document(&options.instance, "instance")?;
    let schema = &rgd.spec.schema;
    let (want_api, want_kind) = (schema.instance_api_version(), schema.kind.clone());
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
    offline_metadata(&mut instance, schema.scope(), &options.instance)?;

    if !rgd.spec.resources.is_empty() {
        return Err(Error::TemplatesNotSupported {
            path: options.rgd.clone(),
        });
    }

    let mut scopes = StaticScopes::default();
    for path in &options.crds {
        for crd in yaml::read_documents(path)? {
            register_crd(&mut scopes, &crd, path)?;
        }
    }
    let runtime = PluginRuntime::new(RuntimeConfig::default())?;
    let plugin = match (&rgd.spec.plugin, &options.plugin) {
        (Some(spec), Some(path)) => {
            let bytes = std::fs::read(path).map_err(|source| Error::Read {
                path: path.clone(),
                source,
            })?;
            let pin = spec.sha256.as_deref().map(Digest::parse).transpose()?;
            let plugin = runtime.load(&bytes, pin.as_ref())?;
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
    Ok(Loaded {
        rgd,
        instance,
        observed_docs,
        plugin,
        scopes,
        runtime,
    })
}

/// Fills what the API server would: uid, namespace, generation, creation time.
fn offline_metadata(instance: &mut Value, scope: Scope, path: &Path) -> Result<(), Error> {
    let Some(meta) = instance.get_mut("metadata").and_then(Value::as_object_mut) else {
        return Err(Error::Input {
            path: path.to_path_buf(),
            message: "metadata: required".to_string(),
        });
    };
    if meta.get("name").and_then(Value::as_str).is_none_or(str::is_empty) {
        return Err(Error::Input {
            path: path.to_path_buf(),
            message: "metadata.name: required".to_string(),
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

fn register_crd(scopes: &mut StaticScopes, crd: &Value, path: &Path) -> Result<(), Error> {
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
        scopes.insert(
            &format!("{}/{v}", s("/spec/group")),
            s("/spec/names/kind"),
            namespaced,
        );
    }
    Ok(())
}

/// Matches live objects to desired children: by kro's node labels, else by identity.
fn match_observed(docs: &[Value], desired: &[DesiredChild]) -> Result<Vec<ObservedChild>, Error> {
    let mut out = Vec::new();
    for doc in docs {
        let s = |p: &str| {
            doc.pointer(p)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        };
        let by_label = doc
            .pointer(&format!(
                "/metadata/labels/{}",
                metadata::NODE_ID.replace('/', "~1")
            ))
            .and_then(Value::as_str);
        let key = match by_label {
            Some(id) => {
                let index = doc
                    .pointer(&format!(
                        "/metadata/labels/{}",
                        metadata::COLLECTION_INDEX.replace('/', "~1")
                    ))
                    .and_then(Value::as_str)
                    .and_then(|i| i.parse().ok());
                ChildKey {
                    id: id.to_string(),
                    index,
                }
            }
            None => desired
                .iter()
                .find(|d| {
                    d.api_version() == s("/apiVersion")
                        && d.kind() == s("/kind")
                        && d.name() == s("/metadata/name")
                        && (s("/metadata/namespace").is_empty()
                            || d.namespace() == Some(&s("/metadata/namespace")))
                })
                .map(|d| d.key.clone())
                .ok_or_else(|| Error::UnmatchedObserved {
                    object: format!(
                        "{} {}/{}",
                        s("/kind"),
                        s("/metadata/namespace"),
                        s("/metadata/name")
                    ),
                })?,
        };
        out.push(ObservedChild {
            key,
            object: doc.clone(),
        });
    }
    out.sort_by(|a, b| a.key.cmp(&b.key));
    Ok(out)
}

fn run(loaded: &Loaded, observed: &[ObservedChild]) -> Result<render::Output, Error> {
    let rgd = &loaded.rgd;
    let limits = match &rgd.spec.plugin {
        Some(spec) => loaded.runtime.limits(spec.timeout_ms, spec.memory_mib)?,
        None => loaded.runtime.limits(None, None)?,
    };
    let allowed = rgd
        .spec
        .plugin
        .as_ref()
        .map(|p| p.allowed_kinds.as_slice())
        .unwrap_or_default();
    let input = render::Input {
        graph: rgd.name(),
        revision: 1,
        instance: &loaded.instance,
        observed,
        rendered: Vec::new(),
        pending: Vec::new(),
        node_order: &[],
        plugin: loaded.plugin.as_ref().map(|(plugin, config)| PluginStage {
            plugin,
            limits,
            config,
            allowed_kinds: allowed,
        }),
        scopes: &loaded.scopes,
        propagate_labels: rgd
            .metadata
            .annotations
            .get(metadata::PROPAGATE_LABELS)
            .map(String::as_str)
            != Some("false"),
    };
    Ok(render::desired(input)?)
}

fn derive(loaded: &Loaded, desired: &[DesiredChild], observed: &[ObservedChild]) -> Result<Value, Error> {
    let plugin_status = match &loaded.plugin {
        Some((plugin, config)) => {
            let spec = loaded
                .rgd
                .spec
                .plugin
                .as_ref()
                .expect("a loaded plugin has a spec");
            let limits = loaded.runtime.limits(spec.timeout_ms, spec.memory_mib)?;
            let input = CallInput {
                graph: loaded.rgd.name(),
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
        desired,
        observed,
        plugin_status.as_ref(),
    ))
}

/// The instance with `status` as the controller would write it.
fn instance_with_status(
    instance: &Value,
    desired: &[DesiredChild],
    observed: &[ObservedChild],
    plugin: Option<&StatusOutput>,
) -> Value {
    let missing: Vec<String> = desired
        .iter()
        .filter(|d| !observed.iter().any(|o| o.key == d.key))
        .map(|d| d.key.to_string())
        .collect();
    let resources = match plugin.map(|p| p.ready) {
        Some(Readiness::Ready) if missing.is_empty() => Mark::all_ready(),
        Some(Readiness::NotReady) => {
            Mark::not_ready("NotReady", "plugin reports the resources are not ready")
        }
        _ if !missing.is_empty() => {
            Mark::not_ready("NotReady", format!("waiting for {} to exist", missing.join(", ")))
        }
        _ => Mark::all_ready(),
    };
    let generation = instance
        .pointer("/metadata/generation")
        .and_then(Value::as_i64)
        .unwrap_or(1);
    let outcome = Outcome {
        managed: Mark::managed(),
        resolved: Mark::resolved(),
        resources,
        plugin: plugin.map(|p| p.conditions.as_slice()).unwrap_or_default(),
        generation,
        previous: &[],
        now: OFFLINE_TIME,
        failed: false,
        deleting: false,
    };
    let (conditions, state) = status::conditions(&outcome);
    let mut fields = Map::new();
    if let Some(p) = plugin {
        status::deep_merge(&mut fields, p.status.clone());
    }
    fields.insert("state".to_string(), json!(state.as_str()));
    fields.insert("conditions".to_string(), Value::Array(conditions));
    let mut out = instance.clone();
    out["status"] = Value::Object(fields);
    out
}

/// Renders per the options and returns the text to print.
///
/// # Errors
/// Any input, plugin or render error, naming the file and the field; with
/// `check_determinism`, [`Error::Nondeterministic`] on the first difference.
pub fn render(options: &Options) -> Result<String, Error> {
    let loaded = load(options)?;
    let first = run(&loaded, &[])?;
    let observed = match_observed(&loaded.observed_docs, &first.desired)?;
    let mut output = if observed.is_empty() {
        first
    } else {
        run(&loaded, &observed)?
    };
    let mut documents: Vec<Value> = output
        .desired
        .iter()
        .map(|d| Value::Object(d.object.clone()))
        .collect();
    if options.include_status {
        documents.push(derive(&loaded, &output.desired, &observed)?);
    }
    if options.check_determinism {
        let reference = serialize(&documents, Format::Json);
        for run_no in 2..=DETERMINISM_RUNS {
            output = run(&loaded, &observed)?;
            let mut again: Vec<Value> = output
                .desired
                .iter()
                .map(|d| Value::Object(d.object.clone()))
                .collect();
            if options.include_status {
                again.push(derive(&loaded, &output.desired, &observed)?);
            }
            let text = serialize(&again, Format::Json);
            if let Some(at) = reference
                .bytes()
                .zip(text.bytes())
                .position(|(a, b)| a != b)
                .or_else(|| (reference.len() != text.len()).then_some(reference.len().min(text.len())))
            {
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
    Ok(serialize(&documents, options.format))
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

//! Why a command failed: one error per offline command input, naming the file and the field.

use std::path::PathBuf;

/// Why an offline command failed. Messages name the file and, where there is one, the field.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be read.
    #[error("{}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A YAML file could not be parsed.
    #[error(transparent)]
    Yaml(#[from] crate::yaml::Error),
    /// An RGD is not valid.
    #[error(transparent)]
    Rgd(#[from] crate::rgd::Error),
    /// An input file is not what the command needs.
    #[error("{}: {message}", path.display())]
    Input {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A plugin file could not be loaded.
    #[error("{}: {source}", path.display())]
    Plugin {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: crate::plugin::Error,
    },
    /// A plugin call or limit failed.
    #[error(transparent)]
    PluginCall(#[from] crate::plugin::Error),
    /// Rendering failed.
    #[error(transparent)]
    Render(#[from] crate::transform::Error),
    /// The RGD names a plugin but no file was given.
    #[error("RGD {rgd} loads its plugin from ConfigMap {config_map}; pass the .wasm file with --plugin")]
    PluginFileMissing {
        /// The RGD.
        rgd: String,
        /// The ConfigMap it names.
        config_map: String,
    },
    /// A plugin file was given but the RGD has no `spec.plugin`.
    #[error("--plugin was given but RGD {rgd} has no spec.plugin")]
    NoPluginInRgd {
        /// The RGD.
        rgd: String,
    },
    /// The RGD is not a valid graph.
    #[error("{}: {source}", path.display())]
    Graph {
        /// The RGD file.
        path: PathBuf,
        /// Why.
        #[source]
        source: crate::graph::Error,
    },
    /// The instance violates its schema (what the API server would answer with a 422).
    #[error("{}: {kind} {name:?} is invalid: {}", path.display(), causes.join(", "))]
    Invalid {
        /// The instance file.
        path: PathBuf,
        /// Its kind.
        kind: String,
        /// Its name.
        name: String,
        /// Each violation, `field: message`.
        causes: Vec<String>,
    },
    /// A resource could not be rendered for this instance.
    #[error("resource {resource}: {message}")]
    Resolve {
        /// The resource id.
        resource: String,
        /// Why.
        message: String,
    },
    /// A simulated live object matches no desired child.
    #[error(
        "observed object {object} matches no desired child; label it kro.run/node-id=<resource id> or make its \
         apiVersion, kind, namespace and name match one"
    )]
    UnmatchedObserved {
        /// The object.
        object: String,
    },
    /// The plugin gave different output for the same input.
    #[error(
        "output of run {run} differs from run 1 at byte {offset}:\n  run 1: …{first}…\n  run {run}: …{later}…"
    )]
    Nondeterministic {
        /// Which run differed.
        run: usize,
        /// Byte offset of the first difference.
        offset: usize,
        /// Run 1 around the difference.
        first: String,
        /// The later run around the difference.
        later: String,
    },
    /// A controller flag is invalid.
    #[error(transparent)]
    Config(#[from] crate::config::Error),
    /// The controller could not run.
    #[error(transparent)]
    Controller(#[from] crate::controller::Error),
    /// The demo failed.
    #[cfg(feature = "demo")]
    #[error(transparent)]
    Demo(#[from] DemoError),
    /// The async runtime could not start.
    #[error("cannot start the async runtime: {0}")]
    Runtime(#[source] std::io::Error),
    /// A packed plugin does not fit a ConfigMap.
    #[error("{}: {size} bytes even compressed; a ConfigMap holds at most 1 MiB (1048576 bytes)", path.display())]
    TooLargeForConfigMap {
        /// The file.
        path: PathBuf,
        /// Its stored size.
        size: usize,
    },
}

#[cfg(feature = "demo")]
/// Why the demo failed.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    /// The embedded API server did not start.
    #[error("cannot start the embedded API server: {0}")]
    Server(#[source] std::io::Error),
    /// A request to it failed.
    #[error("{what}: {message}")]
    Api {
        /// What was being done.
        what: String,
        /// The API's answer.
        message: String,
    },
    /// An example did not become ACTIVE in time.
    #[error("{what} did not become {want} within {seconds} s; last status: {status}")]
    Timeout {
        /// The object.
        what: String,
        /// The state waited for.
        want: &'static str,
        /// The wait.
        seconds: u64,
        /// Its status at the end.
        status: String,
    },
}

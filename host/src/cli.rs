//! The `kroxide` command line (clap derive). Turned into library calls by [`run`].

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::commands::{self, render::Format};

/// kro-compatible Kubernetes controller with sandboxed WebAssembly plugins.
#[derive(Debug, Parser)]
#[command(name = "kroxide", version, about, propagate_version = true)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print the children of an instance exactly as the controller would apply them (no cluster).
    Render(RenderArgs),
    /// Check ResourceGraphDefinition files offline (exit 1 if any is invalid).
    Validate {
        /// RGD files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Print generated artifacts.
    #[command(subcommand)]
    Generate(GenerateCommand),
    /// Package and inspect plugins.
    #[command(subcommand)]
    Plugin(PluginCommand),
    /// Run the controller against a cluster (until SIGINT/SIGTERM).
    Controller(Box<crate::config::ControllerArgs>),
    /// Everything in one process, no cluster: an in-memory API server, the controller, two
    /// example graphs and their instances; then serve until Ctrl-C.
    #[cfg(feature = "demo")]
    Demo {
        /// Exit after the examples are ACTIVE and printed (for CI).
        #[arg(long)]
        once: bool,
        /// Where to write the kubeconfig of the embedded API server.
        #[arg(long, default_value = "kroxide-demo.kubeconfig")]
        kubeconfig_out: PathBuf,
    },
}

/// `kroxide generate ...`.
#[derive(Debug, Subcommand)]
pub enum GenerateCommand {
    /// The ResourceGraphDefinition CRD, or with --rgd the CRD that RGD generates for its kind.
    Crd {
        /// An RGD file.
        #[arg(long)]
        rgd: Option<PathBuf>,
    },
}

/// `kroxide render`.
#[derive(Debug, clap::Args)]
pub struct RenderArgs {
    /// The ResourceGraphDefinition (YAML).
    #[arg(long)]
    pub rgd: PathBuf,
    /// The instance (YAML).
    #[arg(long)]
    pub instance: PathBuf,
    /// The plugin's .wasm (raw or gzip) for graphs with spec.plugin.
    #[arg(long)]
    pub plugin: Option<PathBuf>,
    /// Live children to simulate: a YAML file or a directory of them.
    #[arg(long)]
    pub observed: Option<PathBuf>,
    /// Plugin config (YAML or JSON) replacing spec.plugin.config.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// CustomResourceDefinition files for custom child kinds (repeatable).
    #[arg(long = "crd")]
    pub crds: Vec<PathBuf>,
    /// Also print the instance with its derived status.
    #[arg(long)]
    pub include_status: bool,
    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value_t = Format::Yaml)]
    pub output: Format,
    /// Run every plugin call several times and fail on any byte difference.
    #[arg(long)]
    pub check_determinism: bool,
}

/// `kroxide plugin ...`.
#[derive(Debug, Subcommand)]
pub enum PluginCommand {
    /// Print a ConfigMap holding the plugin (stdout) and the RGD `plugin:` snippet (stderr).
    Pack {
        /// The plugin's .wasm.
        file: PathBuf,
        /// ConfigMap name.
        #[arg(long)]
        name: String,
        /// ConfigMap namespace: where the controller reads plugins (its own namespace, or
        /// `--plugin-namespaces`). Without it, `kroxide-system`, where docs/operations.md
        /// installs the chart, and the note on stderr says so.
        #[arg(long)]
        namespace: Option<String>,
        /// Key in binaryData.
        #[arg(long, default_value = crate::rgd::DEFAULT_PLUGIN_KEY)]
        key: String,
    },
    /// Show a plugin's world, imports, exports, size, sha256, info() and compile time.
    Inspect {
        /// The plugin's .wasm.
        file: PathBuf,
    },
}

/// The namespace `kroxide plugin pack` writes a ConfigMap for when `--namespace` is not given:
/// the one docs/operations.md installs the chart (and so the controller) into.
pub const DEFAULT_PLUGIN_NAMESPACE: &str = "kroxide-system";

/// What a command printed and whether it succeeded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// Text for stdout.
    pub stdout: String,
    /// Text for stderr.
    pub stderr: String,
    /// Exit status 0 when true.
    pub success: bool,
}

impl Outcome {
    fn ok(stdout: String, stderr: String) -> Self {
        Self {
            stdout,
            stderr,
            success: true,
        }
    }
}

/// Runs a parsed command line.
///
/// # Errors
/// The command's error, naming the file and field at fault.
pub fn run(cli: Cli) -> Result<Outcome, commands::Error> {
    match cli.command {
        Command::Render(args) => {
            let options = commands::render::Options {
                rgd: args.rgd,
                instance: args.instance,
                plugin: args.plugin,
                observed: args.observed,
                config: args.config,
                crds: args.crds,
                include_status: args.include_status,
                format: args.output,
                check_determinism: args.check_determinism,
            };
            let out = commands::render::render(&options)?;
            let note = if options.check_determinism {
                "determinism: 3 runs, identical output\n".to_string()
            } else {
                String::new()
            };
            Ok(Outcome::ok(out, note))
        }
        Command::Validate { files } => {
            let (text, valid) = commands::validate::validate(&files);
            Ok(if valid {
                Outcome::ok(text, String::new())
            } else {
                Outcome {
                    stdout: String::new(),
                    stderr: text,
                    success: false,
                }
            })
        }
        Command::Generate(GenerateCommand::Crd { rgd }) => Ok(Outcome::ok(
            commands::generate::crd(rgd.as_deref())?,
            String::new(),
        )),
        Command::Plugin(PluginCommand::Pack {
            file,
            name,
            namespace,
            key,
        }) => {
            // A ConfigMap without a namespace lands in kubectl's current one, where the
            // controller never looks: name one, and say which when it was not given.
            let defaulted = namespace.is_none();
            let namespace = namespace.unwrap_or_else(|| DEFAULT_PLUGIN_NAMESPACE.to_string());
            let packed = commands::plugin::pack(&file, &name, Some(&namespace), Some(&key))?;
            let where_note = if defaulted {
                format!(
                    "# no --namespace: the ConfigMap is for {namespace}, where the chart installs the controller; pass --namespace if yours runs elsewhere\n"
                )
            } else {
                String::new()
            };
            let note = format!(
                "{where_note}# {} bytes stored{}; add to the RGD's spec:\n{}",
                packed.stored_size,
                if packed.compressed { " (gzip)" } else { "" },
                packed.rgd_snippet
            );
            Ok(Outcome::ok(packed.config_map, note))
        }
        #[cfg(feature = "demo")]
        Command::Demo { once, kubeconfig_out } => commands::demo::run(once, &kubeconfig_out),
        Command::Controller(args) => {
            commands::controller::run(&args)?;
            Ok(Outcome::ok(String::new(), String::new()))
        }
        Command::Plugin(PluginCommand::Inspect { file }) => Ok(Outcome::ok(
            crate::yaml::to_string(&commands::plugin::inspect(&file)?),
            String::new(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser as _;

    use super::*;

    fn pack(extra: &[&str]) -> Outcome {
        let wasm = concat!(env!("KROXIDE_PLUGIN_DIR"), "/webapp.wasm");
        let mut argv = vec!["kroxide", "plugin", "pack", wasm, "--name", "webapp"];
        argv.extend_from_slice(extra);
        run(Cli::try_parse_from(argv).unwrap()).unwrap()
    }

    #[test]
    fn a_plugin_packed_without_a_namespace_is_for_the_charts_namespace_and_says_so() {
        let out = pack(&[]);
        assert!(out.stdout.contains("namespace: kroxide-system"), "{}", out.stdout);
        assert!(out.stderr.contains("no --namespace"), "{}", out.stderr);
        let out = pack(&["--namespace", "plugins"]);
        assert!(out.stdout.contains("namespace: plugins"), "{}", out.stdout);
        assert!(!out.stderr.contains("no --namespace"), "{}", out.stderr);
    }
}

//! The `kroxide` command line (clap derive). Turned into library calls by [`run`].

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::commands::{self, EXIT_PENDING, Outcome, render::Format};

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
        /// Files, directories or `-` (stdin), as `kubectl apply -f` reads them; documents other
        /// than ResourceGraphDefinitions and CRDs are skipped.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Read directories' subdirectories too, as `kubectl apply -R`.
        #[arg(short = 'R', long)]
        recursive: bool,
        /// CustomResourceDefinitions of custom kinds the graphs use, to type-check against.
        #[arg(long = "crd")]
        crds: Vec<PathBuf>,
        /// Feature gates, as the controller's (`CELOmitFunction=true` allows `omit()`).
        #[arg(long, default_value = "")]
        feature_gates: String,
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
    /// Exit 0 even when resources are left out because they need live data (they are still
    /// listed on stderr).
    #[arg(long)]
    pub allow_pending: bool,
    /// Feature gates, as the controller's (`CELOmitFunction=true` allows `omit()`).
    #[arg(long, default_value = "")]
    pub feature_gates: String,
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
pub(crate) const DEFAULT_PLUGIN_NAMESPACE: &str = "kroxide-system";

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
                omit: crate::config::parse_feature_gates(&args.feature_gates)?,
            };
            let out = commands::render::render(&options)?;
            let mut note = String::new();
            if options.check_determinism {
                note.push_str("determinism: 3 runs, identical output\n");
            }
            for pending in &out.pending {
                note.push_str(&format!("pending: {pending}\n"));
            }
            let code = if out.pending.is_empty() || args.allow_pending {
                0
            } else {
                note.push_str(&format!(
                    "render: {} resource(s) left out (exit {EXIT_PENDING}; --allow-pending exits 0)\n",
                    out.pending.len()
                ));
                EXIT_PENDING
            };
            Ok(Outcome {
                stdout: out.text,
                stderr: note,
                code,
            })
        }
        Command::Validate {
            files,
            recursive,
            crds,
            feature_gates,
        } => {
            let limits = crate::graph::Limits {
                omit: crate::config::parse_feature_gates(&feature_gates)?,
                ..Default::default()
            };
            let report =
                commands::validate::validate(&files, recursive, &crds, limits, &mut std::io::stdin().lock())?;
            Ok(Outcome {
                stdout: report.stdout,
                stderr: report.stderr,
                code: if report.valid { 0 } else { 1 },
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

    fn render(extra: &[&str]) -> Outcome {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/render/reads-status");
        let (rgd, instance) = (format!("{dir}/rgd.yaml"), format!("{dir}/instance.yaml"));
        let mut argv = vec!["kroxide", "render", "--rgd", &rgd, "--instance", &instance];
        argv.extend_from_slice(extra);
        run(Cli::try_parse_from(argv).unwrap()).unwrap()
    }

    #[test]
    fn a_render_that_leaves_resources_out_lists_them_and_exits_2_unless_pending_is_allowed() {
        let out = render(&[]);
        assert_eq!(out.code, EXIT_PENDING);
        assert!(
            out.stderr.contains("pending: resource report not rendered"),
            "{}",
            out.stderr
        );
        assert!(out.stdout.contains("kind: Deployment"), "{}", out.stdout);
        let allowed = render(&["--allow-pending"]);
        assert_eq!(allowed.code, 0);
        assert_eq!(allowed.stdout, out.stdout);
        assert!(
            allowed.stderr.contains("pending: resource report"),
            "{}",
            allowed.stderr
        );
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

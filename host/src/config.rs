//! The controller's settings: command-line flags (named as kro names them where kro has the
//! flag, each with a `KROXIDE_*` environment fallback) checked once into a [`ControllerConfig`].

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use crate::{graph::Limits, plugin::RuntimeConfig};

/// Backoff of failing keys: `min_delay * 2^failures`, capped at `max_delay`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Backoff {
    /// First retry delay.
    pub(crate) min_delay: Duration,
    /// Largest retry delay.
    pub(crate) max_delay: Duration,
}

/// `kroxide controller` flags.
#[derive(Debug, Clone, clap::Args)]
pub struct ControllerArgs {
    /// kubeconfig to use (else KUBECONFIG, ~/.kube/config, or the in-cluster service account).
    #[arg(long, env = "KUBECONFIG")]
    pub(crate) kubeconfig: Option<PathBuf>,
    /// The controller's own namespace (default: the pod's, else the kubeconfig context's, else
    /// `default`).
    #[arg(long, env = "KROXIDE_NAMESPACE")]
    pub(crate) namespace: Option<String>,
    /// Namespaces plugin ConfigMaps may live in, comma-separated (default: the controller's own).
    #[arg(long, env = "KROXIDE_PLUGIN_NAMESPACES", value_delimiter = ',')]
    pub(crate) plugin_namespaces: Vec<String>,
    /// Instance reconciles run at once.
    #[arg(long, env = "KROXIDE_WORKERS", default_value_t = 4)]
    pub(crate) dynamic_controller_concurrent_reconciles: usize,
    /// ResourceGraphDefinition reconciles run at once.
    #[arg(long, env = "KROXIDE_RGD_WORKERS", default_value_t = 1)]
    pub(crate) resource_graph_definition_concurrent_reconciles: usize,
    /// Delay before an instance whose resources are not all ready is looked at again, even
    /// without a watch event (0 disables; readiness is normally noticed from watch events).
    #[arg(long, env = "KROXIDE_INSTANCE_REQUEUE_INTERVAL", default_value = "30s", value_parser = parse_duration)]
    pub(crate) instance_requeue_interval: Duration,
    /// Every instance is reconciled at least this often, in seconds.
    #[arg(long, env = "KROXIDE_RESYNC_PERIOD", default_value_t = 36000)]
    pub(crate) dynamic_controller_default_resync_period: u64,
    /// First retry delay of a failing reconcile.
    #[arg(long, env = "KROXIDE_RATE_LIMITER_MIN_DELAY", default_value = "200ms", value_parser = parse_duration)]
    pub(crate) dynamic_controller_rate_limiter_min_delay: Duration,
    /// Largest retry delay of a failing reconcile.
    #[arg(long, env = "KROXIDE_RATE_LIMITER_MAX_DELAY", default_value = "1000s", value_parser = parse_duration)]
    pub(crate) dynamic_controller_rate_limiter_max_delay: Duration,
    /// Requests per second to the API server (sustained).
    #[arg(long, env = "KROXIDE_CLIENT_QPS", default_value_t = 100.0)]
    pub(crate) client_qps: f64,
    /// Requests the client may burst above its rate.
    #[arg(long, env = "KROXIDE_CLIENT_BURST", default_value_t = 150)]
    pub(crate) client_burst: u32,
    /// Delete a graph's CRD when the graph is deleted (and no instance remains).
    #[arg(long, env = "KROXIDE_ALLOW_CRD_DELETION")]
    pub(crate) allow_crd_deletion: bool,
    /// Metrics address (`:8078` listens on every interface; `0` turns metrics off). Loopback
    /// by default: the Helm chart sets `:8078` inside its Pod.
    #[arg(long, env = "KROXIDE_METRICS_BIND_ADDRESS", default_value = "127.0.0.1:8078")]
    pub(crate) metrics_bind_address: String,
    /// Health probe address (`/healthz`, `/readyz`; `0` turns it off). Loopback by default: the
    /// Helm chart sets `:8079` inside its Pod.
    #[arg(
        long,
        env = "KROXIDE_HEALTH_PROBE_BIND_ADDRESS",
        default_value = "127.0.0.1:8079"
    )]
    pub(crate) health_probe_bind_address: String,
    /// Feature gates, as kro's and Kubernetes' (`CELOmitFunction=true,OtherGate=false`):
    /// `CELOmitFunction` lets template fields use `omit()`; `InstanceConditionEvents` and
    /// `InstanceConditionMetrics` are accepted and change nothing here (Events follow every
    /// transition already). An unknown gate is an error.
    #[arg(long, env = "KROXIDE_FEATURE_GATES", default_value = "")]
    pub(crate) feature_gates: String,
    /// GraphRevisions kept per graph, newest first (the one serving always).
    #[arg(long, env = "KROXIDE_RGD_MAX_GRAPH_REVISIONS", default_value_t = 5)]
    pub(crate) rgd_max_graph_revisions: usize,
    /// Most items one forEach collection may expand to.
    #[arg(long, env = "KROXIDE_RGD_MAX_COLLECTION_SIZE", default_value_t = 1000)]
    pub(crate) rgd_max_collection_size: usize,
    /// Most forEach dimensions of one resource.
    #[arg(long, env = "KROXIDE_RGD_MAX_COLLECTION_DIMENSION_SIZE", default_value_t = 10)]
    pub(crate) rgd_max_collection_dimension_size: usize,
    /// Highest deadline a graph may give its plugin calls.
    #[arg(long, env = "KROXIDE_PLUGIN_MAX_TIMEOUT", default_value = "2s", value_parser = parse_duration)]
    pub(crate) plugin_max_timeout: Duration,
    /// Highest memory limit a graph may give its plugin calls, in MiB.
    #[arg(long, env = "KROXIDE_PLUGIN_MAX_MEMORY_MIB", default_value_t = 256)]
    pub(crate) plugin_max_memory_mib: usize,
    /// Serve `/metrics` over HTTPS to callers that present a bearer token the API server
    /// authenticates (TokenReview) and authorizes for `get` on the `/metrics` path
    /// (SubjectAccessReview), as controller-runtime's secure metrics do. Needs
    /// `--metrics-cert-dir`. The Helm chart turns it on.
    #[arg(long, env = "KROXIDE_METRICS_SECURE")]
    pub(crate) metrics_secure: bool,
    /// Directory holding `tls.crt` and `tls.key` (PEM) for secure metrics.
    #[arg(long, env = "KROXIDE_METRICS_CERT_DIR")]
    pub(crate) metrics_cert_dir: Option<PathBuf>,
    /// Memory the controller may use (`512Mi`, `1Gi`, bytes), default: the container's cgroup
    /// limit, if any. Plugin calls at once and their memory are sized so that every call
    /// reaching its limit fits in half of it; the other half is for the caches.
    #[arg(long, env = "KROXIDE_MEMORY_LIMIT", value_parser = parse_quantity)]
    pub(crate) memory_limit: Option<u64>,
    /// Use a Lease so that only one replica reconciles.
    #[arg(long, env = "KROXIDE_LEADER_ELECT")]
    pub(crate) leader_elect: bool,
    /// Namespace of the leader Lease (default: the controller's own).
    #[arg(long, env = "KROXIDE_LEADER_ELECTION_NAMESPACE")]
    pub(crate) leader_election_namespace: Option<String>,
    /// How long a leader's Lease lasts without renewal.
    #[arg(long, env = "KROXIDE_LEADER_ELECTION_LEASE_DURATION", default_value = "15s", value_parser = parse_duration)]
    pub(crate) leader_election_lease_duration: Duration,
    /// How long the leader keeps trying to renew before it stops working.
    #[arg(long, env = "KROXIDE_LEADER_ELECTION_RENEW_DEADLINE", default_value = "10s", value_parser = parse_duration)]
    pub(crate) leader_election_renew_deadline: Duration,
    /// How often candidates try to take or renew the Lease.
    #[arg(long, env = "KROXIDE_LEADER_ELECTION_RETRY_PERIOD", default_value = "2s", value_parser = parse_duration)]
    pub(crate) leader_election_retry_period: Duration,
    /// This replica's identity in the leader Lease and its user agent (default: POD_NAME or
    /// HOSTNAME, with the process id).
    #[arg(long, env = "KROXIDE_IDENTITY")]
    pub(crate) identity: Option<String>,
    /// How long the first signal waits for in-flight reconciles before exiting.
    #[arg(long, env = "KROXIDE_GRACEFUL_SHUTDOWN_TIMEOUT", default_value = "60s", value_parser = parse_duration)]
    pub(crate) graceful_shutdown_timeout: Duration,
    /// Log filter (`info`, `kroxide=debug`, ...); RUST_LOG wins when set.
    #[arg(long, env = "KROXIDE_LOG_LEVEL", default_value = "info")]
    pub(crate) log_level: String,
    /// Log format.
    #[arg(long, env = "KROXIDE_LOG_FORMAT", value_enum, default_value_t = LogFormat::Console)]
    pub(crate) log_format: LogFormat,
    /// kro's flags, so kro's chart and command lines run unchanged.
    #[command(flatten)]
    pub(crate) kro: KroFlags,
}

/// kro's controller flags that kroxide has no flag of the same name for. The logging ones map
/// onto `--log-level` and `--log-format`; the others are accepted, change nothing, and are named
/// in a log line at start (docs/migration.md lists why each means nothing here).
#[derive(Debug, Clone, Default, clap::Args)]
#[command(next_help_heading = "kro's flags")]
pub(crate) struct KroFlags {
    /// kro's log verbosity: `debug`, `info`, `error`, `panic`, or a number (1 is debug, 2 and
    /// more trace). Wins over `--log-level`.
    #[arg(long)]
    pub(crate) zap_log_level: Option<String>,
    /// kro's log encoding: `console` or `json`. Wins over `--log-format`.
    #[arg(long)]
    pub(crate) zap_encoder: Option<String>,
    /// kro's development logging: with `true`, debug level unless a level is given.
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    pub(crate) zap_devel: Option<bool>,
    /// Accepted, ignored: kroxide logs no stack traces.
    #[arg(long)]
    pub(crate) zap_stacktrace_level: Option<String>,
    /// Accepted, ignored: kroxide logs RFC 3339 times.
    #[arg(long)]
    pub(crate) zap_time_encoding: Option<String>,
    /// Accepted, ignored: kroxide serves no pprof endpoint.
    #[arg(long)]
    pub(crate) pprof_bind_address: Option<String>,
    /// Accepted, ignored: kroxide's watches start with leadership.
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    pub(crate) enable_controller_warmup: Option<bool>,
    /// Accepted, ignored: a failing reconcile is retried with backoff up to
    /// `--dynamic-controller-rate-limiter-max-delay`, never dropped.
    #[arg(long)]
    pub(crate) dynamic_controller_default_queue_max_retries: Option<u64>,
    /// Accepted, ignored: retries are paced by the per-item backoff alone.
    #[arg(long)]
    pub(crate) dynamic_controller_rate_limiter_rate_limit: Option<u64>,
    /// Accepted, ignored: retries are paced by the per-item backoff alone.
    #[arg(long)]
    pub(crate) dynamic_controller_rate_limiter_burst_limit: Option<u64>,
    /// Accepted, ignored: GraphRevisions are written by the graph's own reconcile.
    #[arg(long)]
    pub(crate) graph_revision_concurrent_reconciles: Option<u64>,
    /// Accepted, ignored: a graph waiting for its CRD is looked at again on the CRD's watch
    /// events.
    #[arg(long)]
    pub(crate) rgd_progress_requeue_delay: Option<String>,
}

impl KroFlags {
    /// The kro flags given that change nothing here.
    pub(crate) fn ignored(&self) -> Vec<&'static str> {
        [
            ("zap-stacktrace-level", self.zap_stacktrace_level.is_some()),
            ("zap-time-encoding", self.zap_time_encoding.is_some()),
            ("pprof-bind-address", self.pprof_bind_address.is_some()),
            (
                "enable-controller-warmup",
                self.enable_controller_warmup.is_some(),
            ),
            (
                "dynamic-controller-default-queue-max-retries",
                self.dynamic_controller_default_queue_max_retries.is_some(),
            ),
            (
                "dynamic-controller-rate-limiter-rate-limit",
                self.dynamic_controller_rate_limiter_rate_limit.is_some(),
            ),
            (
                "dynamic-controller-rate-limiter-burst-limit",
                self.dynamic_controller_rate_limiter_burst_limit.is_some(),
            ),
            (
                "graph-revision-concurrent-reconciles",
                self.graph_revision_concurrent_reconciles.is_some(),
            ),
            (
                "rgd-progress-requeue-delay",
                self.rgd_progress_requeue_delay.is_some(),
            ),
        ]
        .into_iter()
        .filter_map(|(flag, given)| given.then_some(flag))
        .collect()
    }
}

/// The log filter and format: kro's `--zap-*` flags where given, else ours.
///
/// # Errors
/// A `--zap-log-level` or `--zap-encoder` value kro would refuse too.
pub(crate) fn logging(args: &ControllerArgs) -> Result<(String, LogFormat), Error> {
    let kro = &args.kro;
    let level = match kro.zap_log_level.as_deref() {
        Some("debug") => "debug".to_string(),
        Some("info") => "info".to_string(),
        Some("error" | "panic") => "error".to_string(),
        Some(n) => match n.parse::<u32>() {
            Ok(1) => "debug".to_string(),
            Ok(n) if n > 1 => "trace".to_string(),
            _ => {
                return Err(Error::Range {
                    flag: "zap-log-level",
                    message: format!("{n:?} is not debug, info, error, panic or a number above 0"),
                });
            }
        },
        None if kro.zap_devel == Some(true) && args.log_level == "info" => "debug".to_string(),
        None => args.log_level.clone(),
    };
    let format = match kro.zap_encoder.as_deref() {
        Some("json") => LogFormat::Json,
        Some("console") => LogFormat::Console,
        Some(other) => {
            return Err(Error::Range {
                flag: "zap-encoder",
                message: format!("{other:?} is not json or console"),
            });
        }
        None => args.log_format,
    };
    Ok((level, format))
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum LogFormat {
    /// Human-readable.
    Console,
    /// One JSON object per line.
    Json,
}

/// Parses `200ms`, `3s`, `5m`, `1h`, or plain seconds.
///
/// # Errors
/// Anything else.
pub(crate) fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (number, unit) = s.split_at(
        s.find(|c: char| !c.is_ascii_digit() && c != '.')
            .unwrap_or(s.len()),
    );
    let value: f64 = number
        .parse()
        .map_err(|_| format!("invalid duration {s:?}: expected e.g. 200ms, 3s, 5m"))?;
    let seconds = match unit {
        "" | "s" => value,
        "ms" => value / 1000.0,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        _ => return Err(format!("invalid duration {s:?}: unit must be ms, s, m or h")),
    };
    Ok(Duration::from_secs_f64(seconds))
}

/// Parses a memory size: bytes, or a Kubernetes quantity with a binary (`Ki`, `Mi`, `Gi`,
/// `Ti`) or decimal (`k`, `M`, `G`, `T`) suffix.
///
/// # Errors
/// Anything else.
pub(crate) fn parse_quantity(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let n: u64 = number
        .parse()
        .map_err(|_| format!("invalid memory size {s:?}: expected e.g. 512Mi, 1Gi or bytes"))?;
    let factor: u64 = match unit {
        "" => 1,
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        "Ti" => 1 << 40,
        "k" => 1_000,
        "M" => 1_000_000,
        "G" => 1_000_000_000,
        "T" => 1_000_000_000_000,
        _ => {
            return Err(format!(
                "invalid memory size {s:?}: unit must be Ki, Mi, Gi, Ti, k, M, G or T"
            ));
        }
    };
    n.checked_mul(factor)
        .ok_or_else(|| format!("invalid memory size {s:?}: too large"))
}

/// The memory limit of this process's cgroup (v2 `memory.max`, else v1
/// `memory.limit_in_bytes`), when there is one.
pub(crate) fn cgroup_memory_limit() -> Option<u64> {
    let read = |p: &str| std::fs::read_to_string(p).ok();
    let v2 = read("/sys/fs/cgroup/memory.max").and_then(|v| v.trim().parse::<u64>().ok());
    // cgroup v1 reports "no limit" as a huge number.
    let v1 = read("/sys/fs/cgroup/memory/memory.limit_in_bytes")
        .and_then(|v| v.trim().parse::<u64>().ok())
        .filter(|v| *v < (1 << 60));
    v2.or(v1)
}

/// How plugin calls are sized under a memory limit: half of it for plugin sandboxes, so
/// `concurrency × max_memory` fits; at least one call, whose memory is then capped at that
/// half.
pub(crate) fn size_plugins(limit: u64, cores: usize, max_memory: usize) -> (usize, usize) {
    let budget = usize::try_from(limit / 2).unwrap_or(usize::MAX);
    let max_memory = max_memory.min(budget.max(1 << 20));
    let concurrency = (budget / max_memory).clamp(1, cores.max(1));
    (concurrency, max_memory)
}

/// A setting that does not make sense.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A bind address that is neither `0`, `:port` nor `host:port`.
    #[error("--{flag}: {value:?} is not an address (use :PORT, HOST:PORT, or 0 to turn it off)")]
    Address {
        /// The flag.
        flag: &'static str,
        /// What was given.
        value: String,
    },
    /// A number out of range.
    #[error("--{flag}: {message}")]
    Range {
        /// The flag.
        flag: &'static str,
        /// What is wrong.
        message: String,
    },
    /// A feature gate that is unknown or not `Name=true|false`.
    #[error("--feature-gates: {0}")]
    FeatureGate(String),
}

/// The feature gates kroxide knows, as kro names them.
pub(crate) const FEATURE_GATES: [&str; 3] = [
    "CELOmitFunction",
    "InstanceConditionEvents",
    "InstanceConditionMetrics",
];

/// Parses `Name=true,Other=false`; returns whether `CELOmitFunction` is on.
///
/// # Errors
/// [`Error::FeatureGate`] naming the entry that is unknown or not a boolean.
pub(crate) fn parse_feature_gates(value: &str) -> Result<bool, Error> {
    let mut omit = false;
    for entry in value.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let (name, on) = entry
            .split_once('=')
            .ok_or_else(|| Error::FeatureGate(format!("{entry:?} is not Name=true or Name=false")))?;
        let on: bool = on
            .trim()
            .parse()
            .map_err(|_| Error::FeatureGate(format!("{entry:?}: the value must be true or false")))?;
        match name.trim() {
            "CELOmitFunction" => omit = on,
            known if FEATURE_GATES.contains(&known) => {}
            other => {
                return Err(Error::FeatureGate(format!(
                    "unknown feature gate {other:?} (known: {})",
                    FEATURE_GATES.join(", ")
                )));
            }
        }
    }
    Ok(omit)
}

/// Parses a bind address: `0` (off), `:8078` (every interface), `127.0.0.1:0`.
///
/// # Errors
/// [`Error::Address`].
pub(crate) fn parse_address(flag: &'static str, value: &str) -> Result<Option<SocketAddr>, Error> {
    let v = value.trim();
    if v == "0" || v.is_empty() {
        return Ok(None);
    }
    let full = if v.starts_with(':') {
        format!("0.0.0.0{v}")
    } else {
        v.to_string()
    };
    full.parse().map(Some).map_err(|_| Error::Address {
        flag,
        value: value.to_string(),
    })
}

/// Leader election settings.
#[derive(Debug, Clone)]
pub(crate) struct LeaderElection {
    /// Lease namespace.
    pub(crate) namespace: String,
    /// Lease duration.
    pub(crate) lease_duration: Duration,
    /// Renew deadline.
    pub(crate) renew_deadline: Duration,
    /// Retry period.
    pub(crate) retry_period: Duration,
}

/// The checked settings of one controller process.
#[derive(Debug, Clone)]
pub struct ControllerConfig {
    /// kubeconfig path, if given.
    pub(crate) kubeconfig: Option<PathBuf>,
    /// Own namespace.
    pub(crate) namespace: String,
    /// Namespaces plugin ConfigMaps may come from.
    pub(crate) plugin_namespaces: Vec<String>,
    /// Instance workers.
    pub(crate) workers: usize,
    /// RGD workers.
    pub(crate) rgd_workers: usize,
    /// Requeue of instances not ready yet (`None`: off).
    pub(crate) requeue_interval: Option<Duration>,
    /// Resync period.
    pub(crate) resync: Duration,
    /// Retry backoff.
    pub(crate) backoff: Backoff,
    /// Client rate.
    pub(crate) client_qps: f64,
    /// Client burst.
    pub(crate) client_burst: u32,
    /// `--allow-crd-deletion`.
    pub(crate) allow_crd_deletion: bool,
    /// `--rgd-max-graph-revisions`.
    pub(crate) max_graph_revisions: usize,
    /// Metrics address.
    pub(crate) metrics_addr: Option<SocketAddr>,
    /// Secure metrics: the certificate and key files.
    pub(crate) metrics_tls: Option<(PathBuf, PathBuf)>,
    /// Health address.
    pub(crate) health_addr: Option<SocketAddr>,
    /// Graph limits.
    pub(crate) graph_limits: Limits,
    /// Plugin runtime settings (sized by the memory limit).
    pub(crate) runtime: RuntimeConfig,
    /// The memory limit the runtime was sized for.
    pub(crate) memory_limit: Option<u64>,
    /// Leader election, when on.
    pub(crate) leader_election: Option<LeaderElection>,
    /// First-signal drain timeout.
    pub(crate) graceful_shutdown_timeout: Duration,
    /// User agent of every request: `kroxide/<version> (<identity>)`.
    pub(crate) user_agent: String,
    /// This replica's identity.
    pub(crate) identity: String,
}

/// The start of the user agent the controller sends (the API server counts requests by it).
pub(crate) const USER_AGENT: &str = concat!("kroxide/", env!("CARGO_PKG_VERSION"));

fn default_identity() -> String {
    let host = std::env::var("POD_NAME")
        .or_else(|_| std::env::var("HOSTNAME"))
        .unwrap_or_else(|_| "kroxide".into());
    format!("{host}_{}", std::process::id())
}

fn detect_namespace() -> String {
    if let Ok(ns) = std::fs::read_to_string("/var/run/secrets/kubernetes.io/serviceaccount/namespace") {
        let ns = ns.trim();
        if !ns.is_empty() {
            return ns.to_string();
        }
    }
    "default".to_string()
}

impl ControllerConfig {
    /// Checks `args`.
    ///
    /// # Errors
    /// A bad address or an out-of-range number, naming the flag.
    pub fn from_args(args: &ControllerArgs) -> Result<Self, Error> {
        let range = |flag: &'static str, ok: bool, message: &str| {
            if ok {
                Ok(())
            } else {
                Err(Error::Range {
                    flag,
                    message: message.to_string(),
                })
            }
        };
        range(
            "dynamic-controller-concurrent-reconciles",
            args.dynamic_controller_concurrent_reconciles >= 1,
            "must be at least 1",
        )?;
        range(
            "resource-graph-definition-concurrent-reconciles",
            args.resource_graph_definition_concurrent_reconciles >= 1,
            "must be at least 1",
        )?;
        range("client-qps", args.client_qps > 0.0, "must be positive")?;
        range("client-burst", args.client_burst >= 1, "must be at least 1")?;
        range(
            "plugin-max-memory-mib",
            (1..=4096).contains(&args.plugin_max_memory_mib),
            "must be between 1 and 4096",
        )?;
        range(
            "dynamic-controller-rate-limiter-max-delay",
            args.dynamic_controller_rate_limiter_max_delay >= args.dynamic_controller_rate_limiter_min_delay,
            "must not be below the min delay",
        )?;
        let namespace = args
            .namespace
            .clone()
            .filter(|n| !n.is_empty())
            .unwrap_or_else(detect_namespace);
        let identity = args
            .identity
            .clone()
            .filter(|i| !i.is_empty())
            .unwrap_or_else(default_identity);
        let plugin_namespaces: Vec<String> = args
            .plugin_namespaces
            .iter()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect();
        let metrics_addr = parse_address("metrics-bind-address", &args.metrics_bind_address)?;
        let health_addr = parse_address("health-probe-bind-address", &args.health_probe_bind_address)?;
        let metrics_tls = match (args.metrics_secure, &args.metrics_cert_dir) {
            (false, _) => None,
            (true, None) => {
                return Err(Error::Range {
                    flag: "metrics-secure",
                    message: "needs --metrics-cert-dir with tls.crt and tls.key".into(),
                });
            }
            (true, Some(dir)) => Some((dir.join("tls.crt"), dir.join("tls.key"))),
        };
        if metrics_tls.is_some() && metrics_addr.is_some() && metrics_addr == health_addr {
            return Err(Error::Range {
                flag: "metrics-bind-address",
                message: "secure metrics need an address of their own (health probes stay plain HTTP)".into(),
            });
        }
        let defaults = RuntimeConfig::default();
        let memory_limit = args.memory_limit.or_else(cgroup_memory_limit);
        let (concurrency, max_memory) = match memory_limit {
            Some(limit) => size_plugins(limit, defaults.concurrency, args.plugin_max_memory_mib << 20),
            None => (defaults.concurrency, args.plugin_max_memory_mib << 20),
        };
        let runtime = RuntimeConfig {
            max_timeout: args.plugin_max_timeout,
            max_memory,
            default_memory: (64usize << 20).min(max_memory),
            default_timeout: Duration::from_millis(100).min(args.plugin_max_timeout),
            concurrency,
            ..defaults
        };
        Ok(Self {
            kubeconfig: args.kubeconfig.clone(),
            plugin_namespaces: if plugin_namespaces.is_empty() {
                vec![namespace.clone()]
            } else {
                plugin_namespaces
            },
            leader_election: args.leader_elect.then(|| LeaderElection {
                namespace: args
                    .leader_election_namespace
                    .clone()
                    .unwrap_or_else(|| namespace.clone()),
                lease_duration: args.leader_election_lease_duration,
                renew_deadline: args.leader_election_renew_deadline,
                retry_period: args.leader_election_retry_period,
            }),
            namespace,
            workers: args.dynamic_controller_concurrent_reconciles,
            rgd_workers: args.resource_graph_definition_concurrent_reconciles,
            requeue_interval: (!args.instance_requeue_interval.is_zero())
                .then_some(args.instance_requeue_interval),
            resync: Duration::from_secs(args.dynamic_controller_default_resync_period.max(1)),
            backoff: Backoff {
                min_delay: args.dynamic_controller_rate_limiter_min_delay,
                max_delay: args.dynamic_controller_rate_limiter_max_delay,
            },
            client_qps: args.client_qps,
            client_burst: args.client_burst,
            allow_crd_deletion: args.allow_crd_deletion,
            max_graph_revisions: args.rgd_max_graph_revisions,
            metrics_addr,
            health_addr,
            metrics_tls,
            graph_limits: Limits {
                max_collection_size: args.rgd_max_collection_size,
                max_collection_dimensions: args.rgd_max_collection_dimension_size,
                omit: parse_feature_gates(&args.feature_gates)?,
            },
            runtime,
            memory_limit,
            graceful_shutdown_timeout: args.graceful_shutdown_timeout,
            user_agent: format!("{USER_AGENT} ({identity})"),
            identity,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Wrap {
        #[command(flatten)]
        args: ControllerArgs,
    }

    fn parse(extra: &[&str]) -> Result<ControllerConfig, Error> {
        let mut argv = vec!["kroxide"];
        argv.extend(extra);
        ControllerConfig::from_args(&Wrap::try_parse_from(argv).unwrap().args)
    }

    fn args(extra: &[&str]) -> ControllerArgs {
        let mut argv = vec!["kroxide"];
        argv.extend(extra);
        Wrap::try_parse_from(argv).unwrap().args
    }

    #[test]
    fn kros_logging_flags_map_onto_ours_as_its_chart_passes_them() {
        // kro's chart: separate values, and --zap-devel with an explicit value.
        let kro = args(&[
            "--zap-log-level",
            "debug",
            "--zap-encoder",
            "json",
            "--zap-devel=false",
        ]);
        assert_eq!(logging(&kro).unwrap(), ("debug".to_string(), LogFormat::Json));
        assert_eq!(logging(&args(&["--zap-log-level=2"])).unwrap().0, "trace");
        assert_eq!(logging(&args(&["--zap-log-level=panic"])).unwrap().0, "error");
        assert_eq!(logging(&args(&["--zap-devel"])).unwrap().0, "debug");
        assert_eq!(
            logging(&args(&["--log-level=kroxide=debug", "--log-format=json"])).unwrap(),
            ("kroxide=debug".to_string(), LogFormat::Json)
        );
        let err = logging(&args(&["--zap-log-level=loud"])).unwrap_err().to_string();
        assert!(err.contains("zap-log-level") && err.contains("loud"), "{err}");
        let err = logging(&args(&["--zap-encoder=xml"])).unwrap_err().to_string();
        assert!(err.contains("zap-encoder"), "{err}");
    }

    #[test]
    fn every_flag_of_kros_controller_is_accepted_and_those_that_change_nothing_are_named() {
        // Every flag `kro --help` (v0.9.4) lists, with a value of the kind kro takes.
        let kro = args(&[
            "--allow-crd-deletion",
            "--client-burst=150",
            "--client-qps=100",
            "--dynamic-controller-concurrent-reconciles=1",
            "--dynamic-controller-default-queue-max-retries=20",
            "--dynamic-controller-default-resync-period=36000",
            "--dynamic-controller-rate-limiter-burst-limit=100",
            "--dynamic-controller-rate-limiter-max-delay=1000s",
            "--dynamic-controller-rate-limiter-min-delay=200ms",
            "--dynamic-controller-rate-limiter-rate-limit=10",
            "--enable-controller-warmup=false",
            "--feature-gates=CELOmitFunction=true",
            "--graceful-shutdown-timeout=60s",
            "--graph-revision-concurrent-reconciles=1",
            "--health-probe-bind-address=:8079",
            "--instance-requeue-interval=3s",
            "--kubeconfig=/dev/null",
            "--leader-elect",
            "--leader-election-lease-duration=15s",
            "--leader-election-namespace=kro-system",
            "--leader-election-renew-deadline=10s",
            "--leader-election-retry-period=2s",
            "--metrics-bind-address=:8078",
            "--pprof-bind-address=:6060",
            "--resource-graph-definition-concurrent-reconciles=1",
            "--rgd-max-collection-dimension-size=10",
            "--rgd-max-collection-size=1000",
            "--rgd-max-graph-revisions=5",
            "--rgd-progress-requeue-delay=3s",
            "--zap-devel=false",
            "--zap-encoder=console",
            "--zap-log-level=info",
            "--zap-stacktrace-level=error",
            "--zap-time-encoding=epoch",
        ]);
        assert!(ControllerConfig::from_args(&kro).unwrap().graph_limits.omit);
        assert_eq!(
            kro.kro.ignored(),
            [
                "zap-stacktrace-level",
                "zap-time-encoding",
                "pprof-bind-address",
                "enable-controller-warmup",
                "dynamic-controller-default-queue-max-retries",
                "dynamic-controller-rate-limiter-rate-limit",
                "dynamic-controller-rate-limiter-burst-limit",
                "graph-revision-concurrent-reconciles",
                "rgd-progress-requeue-delay",
            ]
        );
        assert!(args(&[]).kro.ignored().is_empty());
    }

    #[test]
    fn the_omit_feature_gate_is_off_by_default_and_turned_on_as_kro_turns_it_on() {
        assert!(!parse(&[]).unwrap().graph_limits.omit);
        assert!(
            parse(&["--feature-gates=CELOmitFunction=true"])
                .unwrap()
                .graph_limits
                .omit
        );
        assert!(
            !parse(&["--feature-gates=CELOmitFunction=false,InstanceConditionEvents=true"])
                .unwrap()
                .graph_limits
                .omit
        );
        let unknown = parse(&["--feature-gates=OmitEverything=true"])
            .unwrap_err()
            .to_string();
        assert!(
            unknown.contains("unknown feature gate \"OmitEverything\" (known: CELOmitFunction"),
            "{unknown}"
        );
        let not_bool = parse(&["--feature-gates=CELOmitFunction=yes"])
            .unwrap_err()
            .to_string();
        assert_eq!(
            not_bool,
            "--feature-gates: \"CELOmitFunction=yes\": the value must be true or false"
        );
    }

    #[test]
    fn memory_sizes_take_kubernetes_quantities() {
        assert_eq!(parse_quantity("512Mi"), Ok(512 << 20));
        assert_eq!(parse_quantity("1Gi"), Ok(1 << 30));
        assert_eq!(parse_quantity("2G"), Ok(2_000_000_000));
        assert_eq!(parse_quantity("1048576"), Ok(1 << 20));
        assert!(parse_quantity("1.5Gi").is_err());
        assert!(parse_quantity("12MB").is_err());
    }

    #[test]
    fn plugin_calls_are_sized_so_the_worst_case_fits_half_the_limit() {
        // The chart's 512Mi: one call of up to 256 MiB at a time.
        assert_eq!(size_plugins(512 << 20, 2, 256 << 20), (1, 256 << 20));
        // Plenty of memory: one call per core.
        assert_eq!(size_plugins(8 << 30, 2, 256 << 20), (2, 256 << 20));
        // Too little for one call of the maximum: one call, capped at half the limit.
        assert_eq!(size_plugins(256 << 20, 4, 256 << 20), (1, 128 << 20));
        for (limit, cores, max) in [(300u64 << 20, 8, 256usize << 20), (1 << 30, 16, 64 << 20)] {
            let (n, m) = size_plugins(limit, cores, max);
            assert!(
                n as u64 * m as u64 <= limit / 2,
                "{limit} {cores} {max}: {n} x {m}"
            );
        }
    }

    #[test]
    fn a_memory_limit_sizes_the_plugin_runtime() {
        let c = parse(&["--memory-limit=512Mi", "--plugin-max-memory-mib=256"]).unwrap();
        assert_eq!(c.memory_limit, Some(512 << 20));
        assert_eq!(c.runtime.concurrency, 1);
        assert_eq!(c.runtime.max_memory, 256 << 20);
    }

    #[test]
    fn durations_take_units_or_plain_seconds() {
        assert_eq!(parse_duration("200ms"), Ok(Duration::from_millis(200)));
        assert_eq!(parse_duration("3"), Ok(Duration::from_secs(3)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert!(parse_duration("3 days").is_err());
    }

    #[test]
    fn defaults_follow_kro_and_plugin_namespaces_default_to_our_own() {
        let c = parse(&["--namespace", "kroxide-system"]).unwrap();
        assert_eq!(c.plugin_namespaces, ["kroxide-system"]);
        // Loopback unless told otherwise (regression: 0.0.0.0 with no authentication).
        assert_eq!(c.metrics_addr, Some("127.0.0.1:8078".parse().unwrap()));
        assert_eq!(c.health_addr, Some("127.0.0.1:8079".parse().unwrap()));
        assert_eq!(c.backoff.min_delay, Duration::from_millis(200));
        assert_eq!(c.graph_limits.max_collection_size, 1000);
        assert!(c.leader_election.is_none());
    }

    #[test]
    fn bad_flags_are_named() {
        let e = parse(&["--metrics-bind-address", "nowhere"]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "--metrics-bind-address: \"nowhere\" is not an address (use :PORT, HOST:PORT, or 0 to turn it off)"
        );
        let e = parse(&["--dynamic-controller-concurrent-reconciles", "0"]).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("--dynamic-controller-concurrent-reconciles")
        );
        assert_eq!(
            parse(&["--health-probe-bind-address", "0"]).unwrap().health_addr,
            None
        );
    }
}

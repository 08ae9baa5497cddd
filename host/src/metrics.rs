//! Prometheus metrics of the controller (OpenMetrics text, which Prometheus scrapes): reconciles
//! by graph, their errors and durations, queue depth, applies, plugin calls, traps, compile
//! time, cached plugin bytes, watch events and leadership, under `kroxide_`; and the families
//! kro's dashboards read, under kro's names and labels (`instance_reconcile_total{gvr}`, ...),
//! with the controller-runtime, client-go workqueue and REST client families kro's process has.

use std::{
    sync::{Mutex, atomic::AtomicU64},
    time::Duration,
};

use prometheus_client::{
    encoding::text::encode,
    metrics::{
        counter::Counter,
        family::Family,
        gauge::Gauge,
        histogram::{Histogram, exponential_buckets},
    },
    registry::Registry,
};

type Labels = Vec<(String, String)>;
type HistogramFamily = Family<Labels, Histogram, fn() -> Histogram>;
type Seconds = Gauge<f64, AtomicU64>;

fn latency() -> Histogram {
    // 100 µs .. ~52 s.
    Histogram::new(exponential_buckets(0.0001, 2.0, 20))
}

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The controller's metrics.
#[derive(Debug)]
pub struct Metrics {
    registry: Mutex<Registry>,
    reconciles: Family<Labels, Counter>,
    reconcile_errors: Family<Labels, Counter>,
    failures: Family<Labels, Counter>,
    reconcile_seconds: HistogramFamily,
    queue_depth: Family<Labels, Gauge>,
    applies: Family<Labels, Counter>,
    plugin_calls: Family<Labels, Counter>,
    plugin_call_seconds: HistogramFamily,
    plugin_traps: Family<Labels, Counter>,
    plugin_compile_seconds: Histogram,
    plugin_cache_bytes: Gauge,
    watch_events: Family<Labels, Counter>,
    leader: Gauge,
    allocations: Counter,
    kro: Kro,
    runtime: Runtime,
}

/// The families of the libraries kro is built on, under their names and labels:
/// controller-runtime's (for the graph controller, `controller="ResourceGraphDefinition"`),
/// client-go's workqueue (for both queues: `ResourceGraphDefinition` and kro's
/// `dynamic-controller-queue` for instances) and REST client.
#[derive(Debug)]
struct Runtime {
    reconciles: Family<Labels, Counter>,
    reconcile_errors: Family<Labels, Counter>,
    terminal_errors: Family<Labels, Counter>,
    panics: Family<Labels, Counter>,
    reconcile_seconds: HistogramFamily,
    max_concurrent: Family<Labels, Gauge>,
    active_workers: Family<Labels, Gauge>,
    queue_adds: Family<Labels, Counter>,
    queue_depth: Family<Labels, Gauge>,
    queue_seconds: HistogramFamily,
    work_seconds: HistogramFamily,
    queue_retries: Family<Labels, Counter>,
    longest_running: Family<Labels, Seconds>,
    unfinished: Family<Labels, Seconds>,
    rest_requests: Family<Labels, Counter>,
}

/// client-go's workqueue buckets: 10 ns to 1000 s, by tens.
fn queue_latency() -> Histogram {
    Histogram::new(exponential_buckets(1e-8, 10.0, 12))
}

impl Runtime {
    fn new(r: &mut Registry) -> Self {
        let k = Self {
            reconciles: Family::default(),
            reconcile_errors: Family::default(),
            terminal_errors: Family::default(),
            panics: Family::default(),
            reconcile_seconds: Family::new_with_constructor(latency as fn() -> Histogram),
            max_concurrent: Family::default(),
            active_workers: Family::default(),
            queue_adds: Family::default(),
            queue_depth: Family::default(),
            queue_seconds: Family::new_with_constructor(queue_latency as fn() -> Histogram),
            work_seconds: Family::new_with_constructor(queue_latency as fn() -> Histogram),
            queue_retries: Family::default(),
            longest_running: Family::default(),
            unfinished: Family::default(),
            rest_requests: Family::default(),
        };
        r.register(
            "controller_runtime_reconcile",
            "Total number of reconciliations per controller",
            k.reconciles.clone(),
        );
        r.register(
            "controller_runtime_reconcile_errors",
            "Total number of reconciliation errors per controller",
            k.reconcile_errors.clone(),
        );
        r.register(
            "controller_runtime_terminal_reconcile_errors",
            "Total number of terminal reconciliation errors per controller",
            k.terminal_errors.clone(),
        );
        r.register(
            "controller_runtime_reconcile_panics",
            "Total number of reconciliation panics per controller",
            k.panics.clone(),
        );
        r.register(
            "controller_runtime_reconcile_time_seconds",
            "Length of time per reconciliation per controller",
            k.reconcile_seconds.clone(),
        );
        r.register(
            "controller_runtime_max_concurrent_reconciles",
            "Maximum number of concurrent reconciles per controller",
            k.max_concurrent.clone(),
        );
        r.register(
            "controller_runtime_active_workers",
            "Number of currently used workers per controller",
            k.active_workers.clone(),
        );
        r.register(
            "workqueue_adds",
            "Total number of adds handled by workqueue",
            k.queue_adds.clone(),
        );
        r.register(
            "workqueue_depth",
            "Current depth of workqueue",
            k.queue_depth.clone(),
        );
        r.register(
            "workqueue_queue_duration_seconds",
            "How long in seconds an item stays in workqueue before being requested",
            k.queue_seconds.clone(),
        );
        r.register(
            "workqueue_work_duration_seconds",
            "How long in seconds processing an item from workqueue takes",
            k.work_seconds.clone(),
        );
        r.register(
            "workqueue_retries",
            "Total number of retries handled by workqueue",
            k.queue_retries.clone(),
        );
        r.register(
            "workqueue_longest_running_processor_seconds",
            "How many seconds has the longest running processor for workqueue been running",
            k.longest_running.clone(),
        );
        r.register(
            "workqueue_unfinished_work_seconds",
            "How many seconds of work has been done that is in progress and hasn't been observed by work_duration",
            k.unfinished.clone(),
        );
        r.register(
            "rest_client_requests",
            "Number of HTTP requests, partitioned by status code, method, and host",
            k.rest_requests.clone(),
        );
        k
    }
}

/// One work queue's series in client-go's workqueue families (`name` and `controller` both the
/// queue's name, as controller-runtime labels them). A default one counts into nothing.
#[derive(Debug, Clone)]
pub(crate) struct QueueMetrics {
    adds: Counter,
    retries: Counter,
    depth: Gauge,
    queue_seconds: Histogram,
    work_seconds: Histogram,
    longest_running: Seconds,
    unfinished: Seconds,
}

impl Default for QueueMetrics {
    fn default() -> Self {
        Self {
            adds: Counter::default(),
            retries: Counter::default(),
            depth: Gauge::default(),
            queue_seconds: queue_latency(),
            work_seconds: queue_latency(),
            longest_running: Seconds::default(),
            unfinished: Seconds::default(),
        }
    }
}

impl QueueMetrics {
    /// A key was added (it was not waiting already).
    pub(crate) fn added(&self) {
        self.adds.inc();
    }

    /// A key was re-added after a failure.
    pub(crate) fn retried(&self) {
        self.retries.inc();
    }

    /// A key was handed out after waiting `waited`.
    pub(crate) fn handed_out(&self, waited: Duration) {
        self.queue_seconds.observe(waited.as_secs_f64());
    }

    /// A key's reconcile took `took`.
    pub(crate) fn finished(&self, took: Duration) {
        self.work_seconds.observe(took.as_secs_f64());
    }

    /// The gauges: keys waiting, and the seconds of the reconciles running now (their sum and
    /// the longest).
    pub(crate) fn sample(&self, depth: usize, unfinished: f64, longest: f64) {
        self.depth.set(i64::try_from(depth).unwrap_or(i64::MAX));
        self.unfinished.set(unfinished);
        self.longest_running.set(longest);
    }
}

/// How a reconcile ended, in controller-runtime's `result` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Done; nothing asked to run again.
    Success,
    /// Failed.
    Error,
    /// Asked to run again with backoff.
    Requeue,
    /// Asked to run again after a delay.
    RequeueAfter,
}

impl Outcome {
    fn label(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::Error => "error",
            Self::Requeue => "requeue",
            Self::RequeueAfter => "requeue_after",
        }
    }
}

/// kro's families (`pkg/metrics` of kro v0.9.4), fed by the same events as ours.
#[derive(Debug)]
struct Kro {
    instance_reconciles: Family<Labels, Counter>,
    instance_errors: Family<Labels, Counter>,
    instance_seconds: HistogramFamily,
    instance_transitions: Family<Labels, Counter>,
    graph_builds: Family<Labels, Counter>,
    graph_build_errors: Family<Labels, Counter>,
    graph_build_seconds: HistogramFamily,
    queue_length: Gauge,
}

impl Kro {
    fn new(r: &mut Registry) -> Self {
        let k = Self {
            instance_reconciles: Family::default(),
            instance_errors: Family::default(),
            instance_seconds: Family::new_with_constructor(latency as fn() -> Histogram),
            instance_transitions: Family::default(),
            graph_builds: Family::default(),
            graph_build_errors: Family::default(),
            graph_build_seconds: Family::new_with_constructor(latency as fn() -> Histogram),
            queue_length: Gauge::default(),
        };
        r.register(
            "instance_reconcile",
            "Total number of instance reconciliations per GVR",
            k.instance_reconciles.clone(),
        );
        r.register(
            "instance_reconcile_errors",
            "Total number of instance reconciliation errors per GVR",
            k.instance_errors.clone(),
        );
        r.register(
            "instance_reconcile_duration_seconds",
            "Duration of instance reconciliation in seconds per GVR",
            k.instance_seconds.clone(),
        );
        r.register(
            "instance_state_transitions",
            "Total number of instance state transitions per GVR",
            k.instance_transitions.clone(),
        );
        r.register(
            "rgd_graph_build",
            "Total number of resource graph builds",
            k.graph_builds.clone(),
        );
        r.register(
            "rgd_graph_build_errors",
            "Total number of resource graph build errors",
            k.graph_build_errors.clone(),
        );
        r.register(
            "rgd_graph_build_duration_seconds",
            "Duration of resource graph builds in seconds",
            k.graph_build_seconds.clone(),
        );
        r.register(
            "dynamic_controller_queue_length",
            "Current length of the workqueue",
            k.queue_length.clone(),
        );
        k
    }
}

impl Default for Metrics {
    fn default() -> Self {
        let mut root = Registry::default();
        let kro = Kro::new(&mut root);
        let runtime = Runtime::new(&mut root);
        let m = Self {
            registry: Mutex::new(root),
            reconciles: Family::default(),
            reconcile_errors: Family::default(),
            failures: Family::default(),
            reconcile_seconds: Family::new_with_constructor(latency as fn() -> Histogram),
            queue_depth: Family::default(),
            applies: Family::default(),
            plugin_calls: Family::default(),
            plugin_call_seconds: Family::new_with_constructor(latency as fn() -> Histogram),
            plugin_traps: Family::default(),
            plugin_compile_seconds: Histogram::new(exponential_buckets(0.01, 2.0, 12)),
            plugin_cache_bytes: Gauge::default(),
            watch_events: Family::default(),
            leader: Gauge::default(),
            allocations: Counter::default(),
            kro,
            runtime,
        };
        {
            let mut root = m.registry.lock().unwrap_or_else(|e| e.into_inner());
            let r = root.sub_registry_with_prefix("kroxide");
            r.register(
                "reconcile",
                "Reconciles by kind (rgd, instance) and graph",
                m.reconciles.clone(),
            );
            r.register(
                "reconcile_errors",
                "Reconciles that failed, by kind and graph",
                m.reconcile_errors.clone(),
            );
            r.register(
                "reconcile_failures",
                "Reconciles that left a graph Inactive or an instance in ERROR, by kind, graph and condition reason",
                m.failures.clone(),
            );
            r.register(
                "reconcile_duration_seconds",
                "Reconcile duration by kind and graph",
                m.reconcile_seconds.clone(),
            );
            r.register(
                "queue_depth",
                "Keys waiting in the work queues",
                m.queue_depth.clone(),
            );
            r.register(
                "apply_requests",
                "Server-side applies of children by result (applied, unchanged, error)",
                m.applies.clone(),
            );
            r.register(
                "plugin_calls",
                "Plugin calls by export and outcome",
                m.plugin_calls.clone(),
            );
            r.register(
                "plugin_call_duration_seconds",
                "Plugin call latency by export",
                m.plugin_call_seconds.clone(),
            );
            r.register(
                "plugin_traps",
                "Plugin failures by reason (PluginTimeout, PluginMemoryLimit, ...)",
                m.plugin_traps.clone(),
            );
            r.register(
                "plugin_compile_duration_seconds",
                "Time to compile a plugin",
                m.plugin_compile_seconds.clone(),
            );
            r.register(
                "plugin_cache_bytes",
                "Compiled plugin code held in memory",
                m.plugin_cache_bytes.clone(),
            );
            r.register(
                "watch_events",
                "Watch events received by role",
                m.watch_events.clone(),
            );
            r.register(
                "leader",
                "1 while this replica holds the leader Lease (or runs without election)",
                m.leader.clone(),
            );
            if cfg!(feature = "count-allocations") {
                r.register(
                    "heap_allocations",
                    "Heap allocations since start (built with the count-allocations feature)",
                    m.allocations.clone(),
                );
            }
        }
        m
    }
}

impl Metrics {
    /// A watch event of `role`.
    pub(crate) fn watch_event(&self, role: &str) {
        self.watch_events.get_or_create(&labels(&[("role", role)])).inc();
    }

    /// A finished reconcile.
    pub(crate) fn observe_reconcile(&self, kind: &str, graph: &str, took: std::time::Duration, failed: bool) {
        let l = labels(&[("kind", kind), ("graph", graph)]);
        self.reconciles.get_or_create(&l).inc();
        if failed {
            self.reconcile_errors.get_or_create(&l).inc();
        }
        self.reconcile_seconds
            .get_or_create(&l)
            .observe(took.as_secs_f64());
    }

    /// The series of the work queue `name`.
    pub(crate) fn workqueue(&self, name: &str) -> QueueMetrics {
        let l = labels(&[("controller", name), ("name", name)]);
        let r = &self.runtime;
        QueueMetrics {
            adds: r.queue_adds.get_or_create(&l).clone(),
            retries: r.queue_retries.get_or_create(&l).clone(),
            depth: r.queue_depth.get_or_create(&l).clone(),
            queue_seconds: r.queue_seconds.get_or_create(&l).clone(),
            work_seconds: r.work_seconds.get_or_create(&l).clone(),
            longest_running: r.longest_running.get_or_create(&l).clone(),
            unfinished: r.unfinished.get_or_create(&l).clone(),
        }
    }

    /// Controller `name` (a controller-runtime one in kro) runs `workers` reconciles at once.
    pub(crate) fn controller_started(&self, name: &str, workers: usize) {
        let l = labels(&[("controller", name)]);
        let r = &self.runtime;
        r.max_concurrent
            .get_or_create(&l)
            .set(i64::try_from(workers).unwrap_or(i64::MAX));
        // Series that stay 0 here (no reconcile is terminal, a panic ends the process) exist
        // so dashboards and alerts find them.
        let _ = r.active_workers.get_or_create(&l);
        let _ = r.terminal_errors.get_or_create(&l);
        let _ = r.panics.get_or_create(&l);
        let _ = r.reconcile_errors.get_or_create(&l);
    }

    /// A reconcile of controller `name` begins (`true`) or ends (`false`).
    pub(crate) fn controller_busy(&self, name: &str, busy: bool) {
        let g = self
            .runtime
            .active_workers
            .get_or_create(&labels(&[("controller", name)]))
            .clone();
        if busy {
            g.inc();
        } else {
            g.dec();
        }
    }

    /// A finished reconcile of controller `name`.
    pub(crate) fn controller_reconciled(&self, name: &str, outcome: Outcome, took: Duration) {
        let l = labels(&[("controller", name)]);
        let r = &self.runtime;
        r.reconciles
            .get_or_create(&labels(&[("controller", name), ("result", outcome.label())]))
            .inc();
        if outcome == Outcome::Error {
            r.reconcile_errors.get_or_create(&l).inc();
        }
        r.reconcile_seconds.get_or_create(&l).observe(took.as_secs_f64());
    }

    /// An API request answered with `code` (`<error>` when no answer came).
    pub(crate) fn rest_request(&self, code: &str, method: &str, host: &str) {
        self.runtime
            .rest_requests
            .get_or_create(&labels(&[("code", code), ("host", host), ("method", method)]))
            .inc();
    }

    /// A finished reconcile of an instance of `gvr` (`group/version, Resource=plural`, as kro
    /// labels it), for kro's families.
    pub(crate) fn observe_instance_reconcile(&self, gvr: &str, took: std::time::Duration, failed: bool) {
        let l = labels(&[("gvr", gvr)]);
        self.kro.instance_reconciles.get_or_create(&l).inc();
        if failed {
            self.kro.instance_errors.get_or_create(&l).inc();
        }
        self.kro
            .instance_seconds
            .get_or_create(&l)
            .observe(took.as_secs_f64());
    }

    /// An instance of `gvr` went from state `from` (empty when new) to `to`.
    pub(crate) fn instance_transition(&self, gvr: &str, from: &str, to: &str) {
        self.kro
            .instance_transitions
            .get_or_create(&labels(&[("gvr", gvr), ("from_state", from), ("to_state", to)]))
            .inc();
    }

    /// Graph `name` was built (compiled and type-checked); `ok` unless it was refused.
    pub(crate) fn graph_build(&self, name: &str, took: std::time::Duration, ok: bool) {
        let l = labels(&[("name", name)]);
        self.kro.graph_builds.get_or_create(&l).inc();
        if !ok {
            self.kro.graph_build_errors.get_or_create(&l).inc();
        }
        self.kro
            .graph_build_seconds
            .get_or_create(&l)
            .observe(took.as_secs_f64());
    }

    /// A reconcile that left its object failed (a graph Inactive, an instance in ERROR), with the
    /// reason its `Ready` condition gives (`InvalidResourceGraph`, `PluginTimeout`, ...).
    pub(crate) fn failure(&self, kind: &str, graph: &str, reason: &str) {
        self.failures
            .get_or_create(&labels(&[("kind", kind), ("graph", graph), ("reason", reason)]))
            .inc();
    }

    /// An apply decision: `applied`, `unchanged` or `error`.
    pub(crate) fn apply(&self, result: &str) {
        self.applies.get_or_create(&labels(&[("result", result)])).inc();
    }

    /// A plugin call and its outcome (`ok` or a failure reason).
    pub(crate) fn plugin_call(&self, export: &str, took: std::time::Duration, outcome: &str) {
        self.plugin_calls
            .get_or_create(&labels(&[("export", export), ("outcome", outcome)]))
            .inc();
        self.plugin_call_seconds
            .get_or_create(&labels(&[("export", export)]))
            .observe(took.as_secs_f64());
        if outcome != "ok" {
            self.plugin_traps
                .get_or_create(&labels(&[("reason", outcome)]))
                .inc();
        }
    }

    /// A plugin compile.
    pub(crate) fn plugin_compiled(&self, took: std::time::Duration) {
        self.plugin_compile_seconds.observe(took.as_secs_f64());
    }

    /// Sets the gauges read at scrape time.
    pub(crate) fn set_gauges(
        &self,
        rgd_queue: usize,
        instance_queue: usize,
        cache_bytes: usize,
        leader: bool,
    ) {
        self.queue_depth
            .get_or_create(&labels(&[("queue", "rgd")]))
            .set(rgd_queue as i64);
        self.queue_depth
            .get_or_create(&labels(&[("queue", "instance")]))
            .set(instance_queue as i64);
        self.kro.queue_length.set((rgd_queue + instance_queue) as i64);
        self.plugin_cache_bytes.set(cache_bytes as i64);
        self.leader.set(i64::from(leader));
        let counted = crate::allocations::count();
        self.allocations
            .inc_by(counted.saturating_sub(self.allocations.get()));
    }

    /// The OpenMetrics text exposition.
    pub(crate) fn encode(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = encode(&mut out, &self.registry.lock().unwrap_or_else(|e| e.into_inner()));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_exposition_has_every_family() {
        let m = Metrics::default();
        m.observe_reconcile("instance", "web", std::time::Duration::from_millis(3), true);
        m.plugin_call("transform", std::time::Duration::from_millis(1), "PluginTimeout");
        m.set_gauges(1, 2, 1024, true);
        m.failure("instance", "web", "PluginTimeout");
        let text = m.encode();
        for family in [
            "kroxide_reconcile_total{kind=\"instance\",graph=\"web\"} 1",
            "kroxide_reconcile_errors_total{kind=\"instance\",graph=\"web\"} 1",
            "kroxide_reconcile_duration_seconds_bucket",
            "kroxide_reconcile_failures_total{kind=\"instance\",graph=\"web\",reason=\"PluginTimeout\"} 1",
            "kroxide_queue_depth{queue=\"instance\"} 2",
            "kroxide_plugin_traps_total{reason=\"PluginTimeout\"} 1",
            "kroxide_plugin_call_duration_seconds_count{export=\"transform\"} 1",
            "kroxide_plugin_cache_bytes 1024",
            "kroxide_leader 1",
            "# EOF",
        ] {
            assert!(text.contains(family), "{family} missing from\n{text}");
        }
    }

    #[test]
    fn kros_families_are_exported_under_kros_names_and_labels() {
        let m = Metrics::default();
        let gvr = "kro.run/v1alpha1, Resource=webapps";
        let ms = std::time::Duration::from_millis(3);
        m.observe_instance_reconcile(gvr, ms, false);
        m.observe_instance_reconcile(gvr, ms, true);
        m.instance_transition(gvr, "", "IN_PROGRESS");
        m.graph_build("webapps.kro.run", ms, false);
        m.set_gauges(1, 2, 0, true);
        let text = m.encode();
        for family in [
            "instance_reconcile_total{gvr=\"kro.run/v1alpha1, Resource=webapps\"} 2",
            "instance_reconcile_errors_total{gvr=\"kro.run/v1alpha1, Resource=webapps\"} 1",
            "instance_reconcile_duration_seconds_count{gvr=\"kro.run/v1alpha1, Resource=webapps\"} 2",
            "instance_state_transitions_total{gvr=\"kro.run/v1alpha1, Resource=webapps\",from_state=\"\",to_state=\"IN_PROGRESS\"} 1",
            "rgd_graph_build_total{name=\"webapps.kro.run\"} 1",
            "rgd_graph_build_errors_total{name=\"webapps.kro.run\"} 1",
            "rgd_graph_build_duration_seconds_count{name=\"webapps.kro.run\"} 1",
            "dynamic_controller_queue_length 3",
        ] {
            assert!(text.contains(family), "{family} missing from\n{text}");
        }
    }

    #[test]
    fn controller_runtime_workqueue_and_rest_client_families_carry_their_libraries_labels() {
        let m = Metrics::default();
        let ms = Duration::from_millis(3);
        m.controller_started("ResourceGraphDefinition", 2);
        m.controller_busy("ResourceGraphDefinition", true);
        m.controller_reconciled("ResourceGraphDefinition", Outcome::Success, ms);
        m.controller_reconciled("ResourceGraphDefinition", Outcome::Error, ms);
        let q = m.workqueue("dynamic-controller-queue");
        q.added();
        q.retried();
        q.handed_out(ms);
        q.finished(ms);
        q.sample(4, 1.5, 1.0);
        m.rest_request("201", "POST", "127.0.0.1:6443");
        let text = m.encode();
        for family in [
            "controller_runtime_reconcile_total{controller=\"ResourceGraphDefinition\",result=\"success\"} 1",
            "controller_runtime_reconcile_total{controller=\"ResourceGraphDefinition\",result=\"error\"} 1",
            "controller_runtime_reconcile_errors_total{controller=\"ResourceGraphDefinition\"} 1",
            "controller_runtime_terminal_reconcile_errors_total{controller=\"ResourceGraphDefinition\"} 0",
            "controller_runtime_reconcile_panics_total{controller=\"ResourceGraphDefinition\"} 0",
            "controller_runtime_reconcile_time_seconds_count{controller=\"ResourceGraphDefinition\"} 2",
            "controller_runtime_max_concurrent_reconciles{controller=\"ResourceGraphDefinition\"} 2",
            "controller_runtime_active_workers{controller=\"ResourceGraphDefinition\"} 1",
            "workqueue_adds_total{controller=\"dynamic-controller-queue\",name=\"dynamic-controller-queue\"} 1",
            "workqueue_retries_total{controller=\"dynamic-controller-queue\",name=\"dynamic-controller-queue\"} 1",
            "workqueue_depth{controller=\"dynamic-controller-queue\",name=\"dynamic-controller-queue\"} 4",
            "workqueue_queue_duration_seconds_count{controller=\"dynamic-controller-queue\",name=\"dynamic-controller-queue\"} 1",
            "workqueue_work_duration_seconds_count{controller=\"dynamic-controller-queue\",name=\"dynamic-controller-queue\"} 1",
            "workqueue_unfinished_work_seconds{controller=\"dynamic-controller-queue\",name=\"dynamic-controller-queue\"} 1.5",
            "workqueue_longest_running_processor_seconds{controller=\"dynamic-controller-queue\",name=\"dynamic-controller-queue\"} 1.0",
            "rest_client_requests_total{code=\"201\",host=\"127.0.0.1:6443\",method=\"POST\"} 1",
        ] {
            assert!(text.contains(family), "{family} missing from\n{text}");
        }
    }
}

//! Prometheus metrics of the controller (OpenMetrics text, which Prometheus scrapes): reconciles
//! by graph, their errors and durations, queue depth, applies, plugin calls, traps, compile
//! time, cached plugin bytes, watch events and leadership, under `kroxide_`; and the families
//! kro's dashboards read, under kro's names and labels (`instance_reconcile_total{gvr}`, ...).

use std::sync::Mutex;

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
    kro: Kro,
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
            kro,
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
}

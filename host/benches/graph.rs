//! Rendering one instance of a 3-resource graph (the web-service example: Deployment, Service,
//! Ingress; the expression count is printed) with templates, and the same resources from the webapp plugin.
//! Prints a Markdown table; run with `cargo bench --bench graph`.

use std::time::{Duration, Instant};

use kroxide::{
    child::{ChildKey, ObservedChild},
    cluster::Offline,
    graph::{self, Limits, runtime},
    plugin::{CallInput, PluginRuntime, RuntimeConfig},
    rgd::ResourceGraphDefinition,
    transform, yaml,
};
use serde_json::json;

mod common;

fn percentiles(mut samples: Vec<Duration>) -> (f64, f64) {
    samples.sort();
    let at = |p: f64| samples[((samples.len() - 1) as f64 * p).round() as usize].as_secs_f64() * 1e6;
    (at(0.5), at(0.99))
}

fn timed(n: usize, mut f: impl FnMut()) -> (f64, f64) {
    for _ in 0..n / 10 {
        f();
    }
    percentiles(
        (0..n)
            .map(|_| {
                let t = Instant::now();
                f();
                t.elapsed()
            })
            .collect(),
    )
}

fn main() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let doc = yaml::read_documents(&root.join("examples/web-service/rgd.yaml"))
        .unwrap()
        .remove(0);
    let rgd = ResourceGraphDefinition::from_value(&doc, "web-service").unwrap();
    let catalog = graph::Catalog::default();
    let expressions = graph::build(&rgd, Limits::default(), &catalog)
        .unwrap()
        .expression_count();
    let (build_p50, build_p99) = timed(200, || {
        graph::build(&rgd, Limits::default(), &catalog).unwrap();
    });
    let g = graph::build(&rgd, Limits::default(), &catalog).unwrap();
    let instance = json!({
        "apiVersion": "examples.kroxide.dev/v1alpha1", "kind": "WebService",
        "metadata": { "name": "storefront", "namespace": "shop", "uid": "7f1c2a3e-1111-4c1d-9a0b-5e6f7a8b9c0d", "generation": 4,
            "labels": { "team": "payments", "tier": "web" } },
        "spec": { "image": "nginx:1.27", "replicas": 3, "port": 8080, "env": { "LOG_LEVEL": "info", "REGION": "eu-west-1" },
            "ingress": { "enabled": true } }
    });
    let mut observed: Vec<ObservedChild> = common::observed();
    std::sync::Arc::make_mut(&mut observed[0].object)["spec"]["replicas"] = json!(3);
    observed
        .iter_mut()
        .for_each(|o| std::sync::Arc::make_mut(&mut o.object)["metadata"]["name"] = json!("storefront"));
    let cluster = Offline::default();
    let orders = g.apply_orders();
    let render_once = || {
        let r = runtime::resolve(&g, &instance, &observed, &cluster);
        let out = transform::desired(transform::Input {
            graph: g.name(),
            revision: 1,
            instance: &instance,
            observed: &observed,
            rendered: r.rendered,
            pending: r.pending,
            apply_orders: &orders,
            plugin: None,
            cluster: &cluster,
            propagate_labels: kroxide::metadata::Propagation::SameNamespace,
        })
        .unwrap();
        assert_eq!(out.desired.len(), 3);
    };
    let (tpl_p50, tpl_p99) = timed(5_000, render_once);

    let rt = PluginRuntime::new(RuntimeConfig::default()).unwrap();
    let plugin = rt.load(&common::plugin_bytes("webapp"), None).unwrap();
    let limits = rt.limits(None, None).unwrap();
    let config = json!({});
    let plugin_observed: Vec<ObservedChild> = observed
        .iter()
        .map(|o| ObservedChild {
            key: ChildKey::new(&o.key.id),
            object: o.object.clone(),
        })
        .collect();
    let (plug_p50, plug_p99) = timed(5_000, || {
        let input = CallInput {
            graph: "webapps",
            revision: 1,
            config: &config,
            instance: &instance,
            observed: &plugin_observed,
            rendered: &[],
            pending: &[],
        };
        let out = transform::desired(transform::Input {
            graph: "webapps",
            revision: 1,
            instance: &instance,
            observed: &plugin_observed,
            rendered: Vec::new(),
            pending: Vec::new(),
            apply_orders: &Default::default(),
            plugin: Some(transform::PluginStage {
                plugin: &plugin,
                limits,
                config: &config,
                allowed_kinds: &[],
            }),
            cluster: &cluster,
            propagate_labels: kroxide::metadata::Propagation::SameNamespace,
        })
        .unwrap();
        assert_eq!(out.desired.len(), 3);
        let _ = input;
    });
    println!("| measurement | p50 | p99 |\n|---|---|---|");
    println!(
        "| compile the graph (3 resources, {expressions} expressions, CRD included) | {build_p50:.1} µs | {build_p99:.1} µs |"
    );
    println!(
        "| render one instance from templates (resolve + namespaces + labels) | {tpl_p50:.1} µs | {tpl_p99:.1} µs |"
    );
    println!(
        "| render the same resources with the webapp plugin (fresh instance + labels) | {plug_p50:.1} µs | {plug_p99:.1} µs |"
    );
}

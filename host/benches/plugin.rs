//! Plugin runtime latencies: empty call, instantiate, fresh-instance webapp transform (with and
//! without epoch interruption, and the same logic natively), cold compile and cached load.

use std::{hint::black_box, time::Duration};

use criterion::{Criterion, criterion_group, criterion_main};
use kroxide::plugin::{CallInput, PluginRuntime, RuntimeConfig};
use serde_json::json;

mod common;

fn runtime(epochs: bool) -> PluginRuntime {
    PluginRuntime::new(RuntimeConfig {
        epoch_interruption: epochs,
        ..RuntimeConfig::default()
    })
    .unwrap()
}

fn benches(c: &mut Criterion) {
    let rt = runtime(true);
    let wasm = common::plugin_bytes("webapp");
    let plugin = rt.load(&wasm, None).unwrap();
    let limits = rt.limits(None, None).unwrap();
    let instance = common::instance();
    let observed = common::observed();
    let config = json!({ "containerName": "web" });
    let input = CallInput {
        graph: "webapps",
        revision: 3,
        config: &config,
        instance: &instance,
        observed: &observed,
        rendered: &[],
        pending: &[],
    };

    c.bench_function("empty call (warm instance, info)", |b| {
        b.iter_custom(|iters| plugin.time_warm_calls(&limits, iters as usize).unwrap())
    });
    c.bench_function("instantiate from InstancePre (fresh store)", |b| {
        b.iter(|| plugin.instantiate_only(&limits).unwrap())
    });
    c.bench_function("webapp transform, fresh instance", |b| {
        b.iter(|| black_box(plugin.transform(&limits, black_box(&input)).unwrap()))
    });
    c.bench_function("webapp derive-status, fresh instance", |b| {
        b.iter(|| black_box(plugin.derive_status(&limits, black_box(&input)).unwrap()))
    });

    let no_epochs = runtime(false);
    let plain = no_epochs.load(&wasm, None).unwrap();
    c.bench_function("webapp transform, fresh instance, no epoch interruption", |b| {
        b.iter(|| black_box(plain.transform(&limits, black_box(&input)).unwrap()))
    });

    let call = kroxide_plugin::testing::Call::new(instance.clone()).config(config.clone());
    let call = observed.iter().fold(call, |call, o| {
        call.observe(&o.key.id, serde_json::Value::clone(&o.object))
    });
    c.bench_function("webapp transform, native (same code, no wasm)", |b| {
        b.iter(|| black_box(call.transform::<webapp::WebApp>().unwrap()))
    });

    c.bench_function("cached load (digest + cache hit)", |b| {
        b.iter(|| black_box(rt.load(&wasm, None).unwrap()))
    });

    let mut group = c.benchmark_group("compile");
    group.sample_size(10).measurement_time(Duration::from_secs(10));
    let cold = PluginRuntime::new(RuntimeConfig {
        cache_max_plugins: 1,
        ..RuntimeConfig::default()
    })
    .unwrap();
    let mut n = 0;
    group.bench_function("cold compile of webapp.wasm (Cranelift)", |b| {
        b.iter(|| {
            n += 1;
            black_box(cold.load(&common::variant(&wasm, n), None).unwrap())
        })
    });
    group.finish();
}

criterion_group! {
    name = plugin;
    config = Criterion::default().warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(4));
    targets = benches
}
criterion_main!(plugin);

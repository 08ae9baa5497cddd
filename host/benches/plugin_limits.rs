//! What the sandbox's limits cost and how fast they act: the infinite loop's trap latency
//! against its deadline, host RSS after a memory bomb versus after a warm call, and RSS per
//! cached plugin. Prints a Markdown table; run with `cargo bench --bench plugin_limits`.

use std::time::{Duration, Instant};

use kroxide::plugin::{CallInput, Error, PluginRuntime, RuntimeConfig};
use serde_json::json;

mod common;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn main() {
    // Criterion-style flags (`--bench`) are ignored.
    let rt = PluginRuntime::new(RuntimeConfig::default()).unwrap();
    let hostile = rt.load(&common::plugin_bytes("hostile"), None).unwrap();
    let webapp = rt.load(&common::plugin_bytes("webapp"), None).unwrap();
    let instance = common::instance();
    let limits = rt.limits(Some(100), Some(64)).unwrap();
    let call = |config: &serde_json::Value| {
        let input = CallInput {
            graph: "g",
            revision: 1,
            config,
            instance: &instance,
            observed: &[],
            rendered: &[],
            pending: &[],
        };
        hostile.transform(&limits, &input)
    };

    println!("| measurement | value |\n|---|---|");
    println!("| instance allocator | {:?} |", rt.allocation());
    let config = json!({});
    let input = CallInput {
        graph: "g",
        revision: 1,
        config: &config,
        instance: &instance,
        observed: &[],
        rendered: &[],
        pending: &[],
    };
    let timed = |n: usize, f: &dyn Fn()| {
        let mut samples: Vec<Duration> = (0..n)
            .map(|_| {
                let started = Instant::now();
                f();
                started.elapsed()
            })
            .collect();
        samples.sort();
        samples
    };
    for _ in 0..200 {
        webapp.instantiate_only(&limits).unwrap();
    }
    let inst = timed(20_000, &|| webapp.instantiate_only(&limits).unwrap());
    println!(
        "| instantiate from InstancePre, fresh store: p50 / p99 (20,000 calls) | {:.1} / {:.1} µs |",
        percentile(&inst, 0.5).as_secs_f64() * 1e6,
        percentile(&inst, 0.99).as_secs_f64() * 1e6
    );
    let observed = common::observed();
    let realistic = CallInput {
        graph: "webapps",
        revision: 3,
        config: &config,
        instance: &instance,
        observed: &observed,
        rendered: &[],
        pending: &[],
    };
    let tf = timed(5_000, &|| {
        webapp.transform(&limits, &realistic).unwrap();
    });
    println!(
        "| webapp transform, fresh instance, realistic input: p50 / p99 (5,000 calls) | {:.1} / {:.1} µs |",
        percentile(&tf, 0.5).as_secs_f64() * 1e6,
        percentile(&tf, 0.99).as_secs_f64() * 1e6
    );

    let mut latencies = Vec::new();
    for _ in 0..20 {
        let started = Instant::now();
        let err = call(&json!({ "mode": "loop" })).unwrap_err();
        latencies.push(started.elapsed());
        assert!(matches!(err, Error::Timeout { .. }), "{err}");
    }
    latencies.sort();
    println!(
        "| infinite loop under a 100 ms deadline: trap latency min / p50 / max (20 runs) | {:.1} / {:.1} / {:.1} ms |",
        latencies[0].as_secs_f64() * 1e3,
        percentile(&latencies, 0.5).as_secs_f64() * 1e3,
        latencies[latencies.len() - 1].as_secs_f64() * 1e3
    );

    for _ in 0..50 {
        webapp.transform(&limits, &input).unwrap();
    }
    let warm = common::rss_bytes();
    let started = Instant::now();
    let err = call(&json!({ "mode": "memory" })).unwrap_err();
    let bomb_time = started.elapsed();
    assert!(matches!(err, Error::MemoryLimit { .. }), "{err}");
    let after_bomb = common::rss_bytes();
    webapp.transform(&limits, &input).unwrap();
    let after_next = common::rss_bytes();
    println!(
        "| host RSS after 50 warm webapp calls | {:.1} MiB |",
        warm as f64 / 1048576.0
    );
    println!(
        "| host RSS right after a 64 MiB memory bomb was trapped ({:.0} ms to trap) | {:.1} MiB |",
        bomb_time.as_secs_f64() * 1e3,
        after_bomb as f64 / 1048576.0
    );
    println!(
        "| host RSS after the next warm call | {:.1} MiB |",
        after_next as f64 / 1048576.0
    );

    let wasm = common::plugin_bytes("webapp");
    let cache = PluginRuntime::new(RuntimeConfig::default()).unwrap();
    let before = common::rss_bytes();
    let n = 40;
    for i in 0..n {
        cache.load(&common::variant(&wasm, i), None).unwrap();
    }
    let after = common::rss_bytes();
    let (count, bytes) = cache.cache_usage();
    println!(
        "| RSS per cached plugin ({n} copies of webapp.wasm, {} KB each) | {:.0} KiB ({:.1}x the wasm size; cache counts {count} plugins, {} KiB) |",
        wasm.len() / 1000,
        (after - before) as f64 / n as f64 / 1024.0,
        (after - before) as f64 / n as f64 / wasm.len() as f64,
        bytes / 1024 / count.max(1)
    );
    println!("| webapp.wasm size | {} bytes |", wasm.len());
}

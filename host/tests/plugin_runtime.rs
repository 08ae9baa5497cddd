//! The plugin runtime against real components: the example plugins, the hostile plugin (one
//! misbehaviour per config mode) and WAT fixtures for inputs that must be refused at load.
//! Time bounds here are deliberately loose; exact figures belong to the benchmarks.
#![cfg(feature = "demo")]

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use kroxide::{
    child::ObservedChild,
    plugin::{
        CallInput, CallLimits, Digest, Error, GuestErrorKind, LoadedPlugin, PluginRuntime, RuntimeConfig,
        source,
    },
};
use serde_json::{Value, json};

fn plugin_bytes(name: &str) -> Vec<u8> {
    let path = format!("{}/{name}.wasm", env!("KROXIDE_PLUGIN_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn runtime() -> PluginRuntime {
    PluginRuntime::new(RuntimeConfig::default()).unwrap()
}

fn limits() -> CallLimits {
    CallLimits {
        timeout: Duration::from_millis(100),
        memory: 64 << 20,
    }
}

fn instance() -> Value {
    json!({
        "apiVersion": "kro.run/v1alpha1", "kind": "WebApp",
        "metadata": { "name": "shop", "namespace": "prod", "uid": "0000" },
        "spec": { "image": "nginx:1.27", "replicas": 2 }
    })
}

fn transform(plugin: &LoadedPlugin, config: Value) -> Result<kroxide::plugin::TransformOutput, Error> {
    let instance = instance();
    let input = CallInput {
        graph: "g",
        revision: 1,
        config: &config,
        instance: &instance,
        observed: &[],
        rendered: &[],
        pending: &[],
    };
    plugin.transform(&limits(), &input)
}

fn hostile(rt: &PluginRuntime, mode: &str) -> Result<kroxide::plugin::TransformOutput, Error> {
    let plugin = rt.load(&plugin_bytes("hostile"), None).unwrap();
    transform(&plugin, json!({ "mode": mode }))
}

#[test]
fn webapp_loads_with_only_the_log_import_and_reports_its_info() {
    let rt = runtime();
    let plugin = rt.load(&plugin_bytes("webapp"), None).unwrap();
    assert_eq!(plugin.plugin_info().name, "webapp");
    for import in plugin.imports() {
        assert!(
            import.starts_with("kroxide:plugin/"),
            "unexpected import {import}"
        );
    }
    assert!(plugin.imports().iter().any(|i| i == "kroxide:plugin/log@0.1.0"));
    for export in ["info", "validate-config", "transform", "derive-status"] {
        assert!(plugin.exports().iter().any(|e| e == export), "missing {export}");
    }
}

#[test]
fn webapp_transform_and_derive_status_round_trip_through_the_sandbox() {
    let rt = runtime();
    let plugin = rt.load(&plugin_bytes("webapp"), None).unwrap();
    let out = transform(&plugin, json!({})).unwrap();
    let ids: Vec<String> = out.desired.iter().map(|d| d.key.to_string()).collect();
    assert_eq!(ids, ["deployment", "service"]);
    assert_eq!(out.desired[0].object["spec"]["replicas"], 2);

    let deployment = json!({ "apiVersion": "apps/v1", "kind": "Deployment", "metadata": { "name": "shop" },
        "status": { "availableReplicas": 2, "conditions": [{ "type": "Available", "status": "True" }] } });
    let observed = [ObservedChild {
        key: kroxide::child::ChildKey::new("deployment"),
        object: deployment.into(),
    }];
    let instance = instance();
    let config = json!({});
    let input = CallInput {
        graph: "g",
        revision: 1,
        config: &config,
        instance: &instance,
        observed: &observed,
        rendered: &[],
        pending: &[],
    };
    let status = plugin.derive_status(&limits(), &input).unwrap();
    assert_eq!(status.status["availableReplicas"], 2);
    assert_eq!(status.ready, kroxide::child::Readiness::Ready);
    assert_eq!(status.conditions[0].type_, "DeploymentAvailable");
}

#[test]
fn an_infinite_loop_is_stopped_at_the_deadline() {
    let rt = runtime();
    let started = Instant::now();
    let err = hostile(&rt, "loop").unwrap_err();
    let elapsed = started.elapsed();
    assert!(matches!(err, Error::Timeout { .. }), "{err}");
    assert_eq!(err.reason(), "PluginTimeout");
    assert!(elapsed < Duration::from_secs(1), "took {elapsed:?}");
}

#[test]
fn a_memory_bomb_hits_the_limit_and_the_runtime_keeps_serving() {
    let rt = runtime();
    let err = hostile(&rt, "memory").unwrap_err();
    assert!(
        matches!(err, Error::MemoryLimit { limit, .. } if limit == 64 << 20),
        "{err}"
    );
    assert_eq!(err.reason(), "PluginMemoryLimit");
    let out = hostile(&rt, "ok").unwrap();
    assert_eq!(out.desired.len(), 1);
}

#[test]
fn deep_recursion_traps_on_the_stack_limit() {
    let err = hostile(&runtime(), "recursion").unwrap_err();
    assert!(
        matches!(&err, Error::Trap { trap, .. } if trap.contains("stack")),
        "{err}"
    );
    assert_eq!(err.reason(), "PluginTrap");
}

#[test]
fn a_panic_is_reported_with_its_message() {
    let err = hostile(&runtime(), "panic").unwrap_err();
    let Error::Trap {
        last_log: Some(line), ..
    } = &err
    else {
        panic!("{err}")
    };
    assert!(line.contains("deliberate panic in the hostile plugin"), "{line}");
    assert!(err.to_string().contains("deliberate panic"), "{err}");
}

#[test]
fn broken_output_is_refused_naming_the_field() {
    let rt = runtime();
    let cases = [
        ("invalid-json", "desired[config]", "not valid JSON"),
        ("oversized", "desired", "bytes of JSON, over the limit"),
        ("too-many", "desired", "5000 objects, over the limit"),
        ("duplicate-ids", "desired[config]", "appears more than once"),
        (
            "status-in-desired",
            "desired[config].status",
            "never write status",
        ),
        ("bad-id", "desired[Bad-Id]", "id must match"),
        ("missing-name", "desired[config].metadata.name", "is required"),
    ];
    for (mode, want_field, want_reason) in cases {
        match hostile(&rt, mode) {
            Err(Error::InvalidOutput { field, reason, .. }) => {
                assert_eq!(field, want_field, "mode {mode}");
                assert!(reason.contains(want_reason), "mode {mode}: {reason}");
            }
            other => panic!("mode {mode}: {other:?}"),
        }
    }
}

#[test]
fn a_plugin_error_keeps_its_kind_and_message() {
    let err = hostile(&runtime(), "error").unwrap_err();
    assert!(
        matches!(&err, Error::Guest { kind: GuestErrorKind::Internal, message, .. } if message == "deliberate failure from the hostile plugin"),
        "{err}"
    );
}

#[test]
fn a_log_flood_is_capped_and_the_call_still_succeeds() {
    assert_eq!(hostile(&runtime(), "log-flood").unwrap().desired.len(), 1);
}

#[test]
fn the_guest_allocator_survives_churn() {
    assert_eq!(hostile(&runtime(), "churn").unwrap().desired.len(), 1);
}

#[test]
fn a_config_the_plugin_refuses_is_reported_as_config_invalid() {
    let rt = runtime();
    let plugin = rt.load(&plugin_bytes("hostile"), None).unwrap();
    let err = plugin
        .validate_config(&limits(), &json!({ "mode": "nonsense" }))
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Guest {
                kind: GuestErrorKind::InvalidConfig,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(err.reason(), "PluginConfigInvalid");
}

#[test]
fn a_wasi_component_is_refused_naming_the_import() {
    let wasm = wat::parse_str(
        r#"(component
            (import "wasi:cli/environment@0.2.0" (instance
                (export "get-environment" (func (result (list (tuple string string)))))))
        )"#,
    )
    .unwrap();
    let err = runtime().load(&wasm, None).unwrap_err();
    assert!(
        matches!(&err, Error::DisallowedImport { import, .. } if import == "wasi:cli/environment@0.2.0"),
        "{err}"
    );
    assert_eq!(err.reason(), "PluginInvalid");
}

#[test]
fn a_core_module_is_refused() {
    let wasm = wat::parse_str("(module (func (export \"transform\")))").unwrap();
    assert!(matches!(runtime().load(&wasm, None), Err(Error::CoreModule)));
}

#[test]
fn a_component_without_the_exports_is_refused() {
    let wasm = wat::parse_str("(component)").unwrap();
    let err = runtime().load(&wasm, None).unwrap_err();
    assert!(
        matches!(&err, Error::UnsupportedWorld { reason, .. } if reason.contains("missing exports: info")),
        "{err}"
    );
}

#[test]
fn a_wrong_pin_is_refused_and_the_right_one_accepted() {
    let rt = runtime();
    let bytes = plugin_bytes("webapp");
    let wrong = Digest::of(b"something else");
    let err = rt.load(&bytes, Some(&wrong)).unwrap_err();
    assert!(matches!(err, Error::DigestMismatch { .. }));
    assert_eq!(err.reason(), "PluginDigestMismatch");
    assert!(rt.load(&bytes, Some(&Digest::of(&bytes))).is_ok());
}

#[test]
fn gzip_bytes_load_as_the_same_plugin_and_compile_once() {
    let rt = runtime();
    let raw = plugin_bytes("webapp");
    let first = rt.load(&raw, None).unwrap();
    let second = rt.load(&source::gzip(&raw), Some(&Digest::of(&raw))).unwrap();
    assert!(Arc::ptr_eq(&first, &second));
    assert_eq!(rt.cache_usage().0, 1);
}

#[test]
fn graph_limits_cannot_exceed_the_controller_maxima() {
    let rt = runtime();
    assert_eq!(
        rt.limits(None, None).unwrap(),
        CallLimits {
            timeout: Duration::from_millis(100),
            memory: 64 << 20
        }
    );
    assert!(matches!(
        rt.limits(Some(60_000), None),
        Err(Error::LimitAboveMaximum {
            what: "timeoutMs",
            ..
        })
    ));
    assert!(matches!(
        rt.limits(None, Some(4096)),
        Err(Error::LimitAboveMaximum {
            what: "memoryMiB",
            ..
        })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_run_concurrently_on_blocking_threads_behind_the_semaphore() {
    let rt = Arc::new(runtime());
    let plugin = rt.load_async(plugin_bytes("webapp"), None).await.unwrap();
    let mut calls = tokio::task::JoinSet::new();
    for _ in 0..16 {
        let (rt, plugin) = (rt.clone(), plugin.clone());
        calls.spawn(async move { rt.run(move || transform(&plugin, json!({}))).await });
    }
    while let Some(result) = calls.join_next().await {
        assert_eq!(result.unwrap().unwrap().desired.len(), 2);
    }
}

/// Regression: a call whose caller was aborted (a controller stopped, or losing its Lease,
/// mid-call) kept running after the runtime was dropped: the epoch ticker went with the runtime,
/// so a looping plugin was never stopped and held a core for ever; its permit was freed at once,
/// so more calls than permits ran.
#[test]
fn a_call_outliving_its_caller_and_the_runtime_still_meets_its_deadline() {
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    tokio.block_on(async {
        let rt = Arc::new(runtime());
        let plugin = Arc::new(rt.load(&plugin_bytes("hostile"), None).unwrap());
        let caller = {
            let rt = rt.clone();
            tokio::spawn(async move {
                rt.run(move || {
                    let result = transform(&plugin, json!({ "mode": "loop" }));
                    let _ = done_tx.send(result.is_err());
                    Ok(())
                })
                .await
            })
        };
        tokio::time::sleep(Duration::from_millis(30)).await;
        caller.abort();
        drop(rt);
    });
    let stopped = done_rx.recv_timeout(Duration::from_secs(5));
    if stopped != Ok(true) {
        // Dropping a runtime waits for its blocking threads: one that never ends would hang
        // the test instead of failing it.
        std::mem::forget(tokio);
        panic!("the looping call did not end with its deadline error: {stopped:?}");
    }
    tokio.shutdown_timeout(Duration::from_secs(1));
}

//! A deliberately hostile plugin for the host runtime's tests. `spec.plugin.config.mode` picks
//! the misbehaviour; `ok` behaves. It implements the raw WIT bindings (not the SDK's `Plugin`
//! trait) so it can break the contract in ways the SDK would stop.

use kroxide_plugin::bindings::{
    self, ChildKey, Condition, ConditionStatus, Desired, Guest, Json, PluginError, PluginInfo, Readiness,
    StatusInput, StatusOutput, TransformInput, TransformOutput,
};

/// The modes, by config `mode`.
pub const MODES: &[&str] = &[
    "ok",
    "loop",
    "memory",
    "recursion",
    "panic",
    "invalid-json",
    "oversized",
    "too-many",
    "duplicate-ids",
    "status-in-desired",
    "bad-id",
    "missing-name",
    "log-flood",
    "error",
    "reserved-condition",
    "churn",
];

#[derive(Debug)]
pub struct Hostile;

fn mode(config: &str) -> String {
    serde_json::from_str::<serde_json::Value>(config)
        .ok()
        .and_then(|v| v.get("mode").and_then(|m| m.as_str()).map(str::to_string))
        .unwrap_or_else(|| "ok".to_string())
}

fn key(id: &str, index: Option<u32>) -> ChildKey {
    ChildKey {
        id: id.to_string(),
        index,
    }
}

fn config_map(name: &str) -> Json {
    format!(
        r#"{{"apiVersion":"v1","kind":"ConfigMap","metadata":{{"name":"{name}"}},"data":{{"ok":"yes"}}}}"#
    )
}

fn desired(id: &str, object: Json) -> Desired {
    Desired {
        key: key(id, None),
        object,
        ready: Readiness::Unknown,
    }
}

#[inline(never)]
fn recurse(depth: u64) -> u64 {
    // Called through a pointer LLVM cannot see through, so the recursion is not turned into a
    // loop; every frame lives on the wasm stack until the host's stack limit stops it.
    let next: fn(u64) -> u64 = std::hint::black_box(recurse);
    next(depth + 1).wrapping_add(depth)
}

/// Misbehaves as `mode` says, or returns `None` for modes that shape the output instead.
fn misbehave(mode: &str) -> Option<PluginError> {
    match mode {
        "loop" => {
            let mut n: u64 = 0;
            loop {
                n = std::hint::black_box(n.wrapping_add(1));
            }
        }
        "memory" => {
            let mut hoard: Vec<Vec<u8>> = Vec::new();
            loop {
                hoard.push(vec![1u8; 1 << 20]);
                std::hint::black_box(&hoard);
            }
        }
        "recursion" => {
            std::hint::black_box(recurse(0));
            None
        }
        "panic" => panic!("deliberate panic in the hostile plugin"),
        "log-flood" => {
            for i in 0..10_000 {
                bindings::kroxide::plugin::log::emit(bindings::Level::Info, &format!("flood line {i}"));
            }
            None
        }
        "churn" => {
            // Many allocations that grow and free: exercises the SDK's allocator.
            let mut total = 0usize;
            for i in 0..20_000 {
                let mut s = String::new();
                for j in 0..(i % 50) {
                    s.push_str(&j.to_string());
                }
                total += s.len();
            }
            (total != 802_000).then(|| PluginError::Internal(format!("churn computed {total}")))
        }
        "error" => Some(PluginError::Internal(
            "deliberate failure from the hostile plugin".to_string(),
        )),
        _ => None,
    }
}

impl Guest for Hostile {
    fn info() -> PluginInfo {
        kroxide_plugin::log::install_panic_hook();
        PluginInfo {
            name: "hostile".to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            description: "Misbehaves on purpose, for tests".to_string(),
        }
    }

    fn validate_config(config: Json) -> Result<(), PluginError> {
        let mode = mode(&config);
        if MODES.contains(&mode.as_str()) {
            Ok(())
        } else {
            Err(PluginError::InvalidConfig(format!(
                "mode: must be one of {}",
                MODES.join(", ")
            )))
        }
    }

    fn transform(input: TransformInput) -> Result<TransformOutput, PluginError> {
        kroxide_plugin::log::install_panic_hook();
        let mode = mode(&input.meta.config);
        if let Some(err) = misbehave(&mode) {
            return Err(err);
        }
        let desired = match mode.as_str() {
            "invalid-json" => vec![desired("config", "{not json".to_string())],
            "oversized" => {
                let big = "x".repeat(5 << 20);
                vec![desired(
                    "config",
                    format!(
                        r#"{{"apiVersion":"v1","kind":"ConfigMap","metadata":{{"name":"big"}},"data":{{"big":"{big}"}}}}"#
                    ),
                )]
            }
            "too-many" => (0..5000u32)
                .map(|i| Desired {
                    key: key("item", Some(i)),
                    object: config_map(&format!("item-{i}")),
                    ready: Readiness::Unknown,
                })
                .collect(),
            "duplicate-ids" => vec![
                desired("config", config_map("a")),
                desired("config", config_map("b")),
            ],
            "status-in-desired" => vec![desired(
                "config",
                r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"s"},"status":{"phase":"Up"}}"#
                    .to_string(),
            )],
            "bad-id" => vec![desired("Bad-Id", config_map("bad"))],
            "missing-name" => vec![desired(
                "config",
                r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{}}"#.to_string(),
            )],
            _ => vec![desired("config", config_map("hostile-ok"))],
        };
        Ok(TransformOutput {
            desired,
            events: Vec::new(),
            requeue_after_ms: None,
        })
    }

    fn derive_status(input: StatusInput) -> Result<StatusOutput, PluginError> {
        kroxide_plugin::log::install_panic_hook();
        let mode = mode(&input.meta.config);
        if let Some(err) = misbehave(&mode) {
            return Err(err);
        }
        let conditions = match mode.as_str() {
            "reserved-condition" => vec![Condition {
                type_: "Ready".to_string(),
                status: ConditionStatus::True,
                reason: "Hijacked".to_string(),
                message: String::new(),
            }],
            _ => Vec::new(),
        };
        let status = match mode.as_str() {
            "invalid-json" => "[1,".to_string(),
            _ => r#"{"mode":"ok"}"#.to_string(),
        };
        Ok(StatusOutput {
            status,
            conditions,
            ready: Readiness::Ready,
            events: Vec::new(),
        })
    }
}

bindings::__export_raw!(Hostile with_types_in kroxide_plugin::bindings);

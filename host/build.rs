//! Builds the example plugins (plugins/, a wasm32 workspace of its own) when the `demo` feature
//! is on, so the demo can embed them and tests and benchmarks can load them. Exposes the
//! directory of the built `.wasm` files as `KROXIDE_PLUGIN_DIR`.
//!
//! The nested cargo runs with its own target directory and a clean cargo environment (no
//! RUSTFLAGS, wrappers or CARGO_* settings of the host build leak into the wasm build), and
//! remaps source paths so the plugins' digests do not depend on where the checkout lives.

use std::{
    env,
    path::{Path, PathBuf},
    process::Command,
};

fn main() {
    println!("cargo::rerun-if-env-changed=CARGO_TARGET_DIR");
    if env::var_os("CARGO_FEATURE_DEMO").is_none() {
        return;
    }
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let root = manifest
        .parent()
        .expect("host/ sits in the workspace root")
        .to_path_buf();
    let target = env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    let target = if target.is_absolute() {
        target
    } else {
        root.join(target)
    };
    let plugin_target = target.join("wasm-plugins");

    for dir in ["plugins", "guest-sdk", "wit"] {
        watch(&root.join(dir));
    }

    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(root.join("plugins"))
        .args([
            "build",
            "--release",
            "--quiet",
            "--target",
            "wasm32-unknown-unknown",
            "--target-dir",
        ])
        .arg(&plugin_target);
    for (key, _) in env::vars_os() {
        let key = key.to_string_lossy().into_owned();
        let leaks = (key.starts_with("CARGO_") && key != "CARGO_HOME")
            || matches!(
                key.as_str(),
                "RUSTFLAGS"
                    | "RUSTC"
                    | "RUSTDOC"
                    | "RUSTC_WRAPPER"
                    | "RUSTC_WORKSPACE_WRAPPER"
                    | "RUSTC_LINKER"
                    | "TARGET"
                    | "HOST"
                    | "OUT_DIR"
                    | "OPT_LEVEL"
                    | "PROFILE"
                    | "DEBUG"
                    | "NUM_JOBS"
            );
        if leaks {
            cmd.env_remove(&key);
        }
    }
    // Same guest stack size as plugins/.cargo/config.toml (RUSTFLAGS replace config rustflags).
    let mut remaps = vec![
        "-Clink-arg=-zstack-size=262144".to_string(),
        format!("--remap-path-prefix={}=/kroxide", root.display()),
    ];
    if let Some(home) = cargo_home() {
        remaps.push(format!("--remap-path-prefix={}=/cargo", home.display()));
    }
    cmd.env("CARGO_ENCODED_RUSTFLAGS", remaps.join("\x1f"));

    let output = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run cargo to build the example plugins: {e}"));
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let hint =
            if stderr.contains("wasm32-unknown-unknown") && stderr.contains("target may not be installed") {
                "\nhint: run `rustup target add wasm32-unknown-unknown`"
            } else {
                ""
            };
        panic!("building the example plugins (plugins/) failed:\n{stderr}{hint}");
    }
    let out = plugin_target.join("wasm32-unknown-unknown").join("release");
    println!("cargo::rustc-env=KROXIDE_PLUGIN_DIR={}", out.display());
}

fn cargo_home() -> Option<PathBuf> {
    env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| env::var_os("HOME").map(|h| Path::new(&h).join(".cargo")))
}

/// Asks cargo to rerun this script when any source file under `dir` changes (build outputs
/// under `target/` are skipped so a manual build in plugins/ does not trigger a rerun).
fn watch(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name();
        if name == "target" || name.to_string_lossy().starts_with('.') && name != ".cargo" {
            continue;
        }
        if path.is_dir() {
            watch(&path);
        } else {
            println!("cargo::rerun-if-changed={}", path.display());
        }
    }
}

//! `kroxide render` of each example plugin matches its golden output, and is deterministic.
//! Set `KROXIDE_UPDATE_GOLDEN=1` to rewrite the golden files after an intended change.
#![cfg(feature = "demo")]

use std::path::{Path, PathBuf};

use kroxide::commands::render::{Format, Options, render};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn check(plugin: &str, wasm: &str, observed: bool) {
    let example = repo().join("plugins").join(plugin).join("example");
    let options = Options {
        rgd: example.join("rgd.yaml"),
        instance: example.join("instance.yaml"),
        plugin: Some(PathBuf::from(format!(
            "{}/{wasm}.wasm",
            env!("KROXIDE_PLUGIN_DIR")
        ))),
        observed: observed.then(|| example.join("observed")),
        include_status: true,
        check_determinism: true,
        format: Format::Yaml,
        ..Options::default()
    };
    let out = render(&options).unwrap_or_else(|e| panic!("{plugin}: {e}"));
    let golden = example.join("golden.yaml");
    if std::env::var_os("KROXIDE_UPDATE_GOLDEN").is_some() {
        std::fs::write(&golden, &out).unwrap();
    }
    let want = std::fs::read_to_string(&golden).unwrap_or_else(|e| panic!("{}: {e}", golden.display()));
    assert!(
        out == want,
        "{plugin}: render differs from {}:\n{out}",
        golden.display()
    );
}

#[test]
fn webapp_renders_its_golden_output() {
    check("webapp", "webapp", true);
}

#[test]
fn sized_service_renders_its_golden_output() {
    check("sized-service", "sized_service", false);
}

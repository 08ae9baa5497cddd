//! `kroxide render` of each example graph and plugin matches its golden output, and is
//! deterministic. Set `KROXIDE_UPDATE_GOLDEN=1` to rewrite the golden files after an intended
//! change.
#![cfg(feature = "demo")]

mod support;

use std::path::{Path, PathBuf};

use kroxide::commands::render::{Format, Options, render};
use support::repo;

fn options(dir: &Path) -> Options {
    Options {
        rgd: dir.join("rgd.yaml"),
        instance: dir.join("instance.yaml"),
        observed: dir.join("observed").is_dir().then(|| dir.join("observed")),
        include_status: true,
        check_determinism: true,
        format: Format::Yaml,
        ..Options::default()
    }
}

fn compare(name: &str, dir: &Path, options: &Options) {
    let rendered = render(options).unwrap_or_else(|e| panic!("{name}: {e}"));
    assert!(
        rendered.pending.is_empty(),
        "{name}: left out {:?}",
        rendered.pending
    );
    let out = rendered.text;
    let golden = dir.join("golden.yaml");
    if std::env::var_os("KROXIDE_UPDATE_GOLDEN").is_some() {
        std::fs::write(&golden, &out).unwrap();
    }
    let want = std::fs::read_to_string(&golden).unwrap_or_else(|e| panic!("{}: {e}", golden.display()));
    assert!(
        out == want,
        "{name}: render differs from {}:\n{out}",
        golden.display()
    );
}

fn plugin(name: &str, wasm: &str) {
    let dir = repo().join("plugins").join(name).join("example");
    let wasm = PathBuf::from(format!("{}/{wasm}.wasm", env!("KROXIDE_PLUGIN_DIR")));
    compare(
        name,
        &dir,
        &Options {
            plugin: Some(wasm),
            ..options(&dir)
        },
    );
}

fn example(name: &str) -> PathBuf {
    repo().join("examples").join(name)
}

#[test]
fn webapp_plugin_renders_its_golden_output() {
    plugin("webapp", "webapp");
}

#[test]
fn sized_service_plugin_renders_its_golden_output() {
    plugin("sized-service", "sized_service");
}

#[test]
fn web_service_example_renders_its_golden_output() {
    let dir = example("web-service");
    compare("web-service", &dir, &options(&dir));
}

#[test]
fn regional_config_example_renders_its_golden_output() {
    let dir = example("regional-config");
    compare("regional-config", &dir, &options(&dir));
}

#[test]
fn tenant_example_renders_its_golden_output_with_a_chained_kind() {
    let dir = example("tenant");
    // The chained WebService kind's scope comes from the CRD the web-service graph generates.
    let crd = kroxide::commands::generate::crd(Some(&example("web-service").join("rgd.yaml"))).unwrap();
    let crd_file = Path::new(env!("CARGO_TARGET_TMPDIR")).join("webservice-crd.yaml");
    std::fs::write(&crd_file, crd).unwrap();
    compare(
        "tenant",
        &dir,
        &Options {
            crds: vec![crd_file],
            ..options(&dir)
        },
    );
}

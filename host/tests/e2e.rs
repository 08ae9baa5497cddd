//! Every Chainsaw scenario under `tests/e2e/scenarios` (plain Kubernetes and kroxide), run with
//! the real kubectl against a fresh test API server and a `kroxide controller` process.

use std::path::{Path, PathBuf};

use kroxide_e2e::suite::{self, Controller, Options};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

#[test]
fn every_scenario_passes_against_the_controller() {
    let root = repo().join("tests/e2e/scenarios");
    let scenarios = suite::discover(&root);
    assert!(scenarios.len() >= 9, "{scenarios:?}");
    let options = Options {
        controller: Some(Controller {
            program: env!("CARGO_BIN_EXE_kroxide").into(),
            args: [
                "controller",
                "--namespace=kroxide-system",
                "--plugin-namespaces=kroxide-plugins",
                "--metrics-bind-address=0",
                "--health-probe-bind-address=0",
                "--dynamic-controller-rate-limiter-max-delay=5s",
                "--log-level=info,kroxide=debug",
            ]
            .map(String::from)
            .to_vec(),
        }),
        setup: vec![
            repo().join("charts/kroxide/crds/resourcegraphdefinitions.kro.run.yaml"),
            repo().join("tests/e2e/setup/namespaces.yaml"),
        ],
        script_env: vec![("PLUGIN_DIR".into(), env!("KROXIDE_PLUGIN_DIR").into())],
        ..Options::default()
    };
    let report = suite::run(&scenarios, &options);
    println!("{}", report.summary());
    assert!(report.failed.is_empty(), "{}", report.summary());
}

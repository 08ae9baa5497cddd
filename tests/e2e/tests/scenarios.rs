//! How a failing scenario is reported. Every scenario under `scenarios/` runs in the kroxide
//! crate's `e2e` test, against the controller.

use std::path::Path;

use kroxide_e2e::suite::{self, Options};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn a_wrong_assertion_names_the_path_and_both_values() {
    let report = suite::run(&[root().join("testdata/wrong-assertion")], &Options::default());
    assert!(report.passed.is_empty());
    let failure = &report.failed[0];
    let shown = failure.to_string();
    assert_eq!(failure.step, "step 1 (mismatch)");
    assert_eq!(failure.operation, "try[1] assert (inline resource)");
    assert!(
        shown.contains("data.answer: expected \"42\", got \"41\""),
        "{shown}"
    );
    assert!(
        shown.contains("$ kubectl get configmap"),
        "catch output is shown: {shown}"
    );
}

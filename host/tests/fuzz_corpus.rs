//! Replays the fuzz seeds (every graph in the repository, `scripts/fuzz seed`) and the
//! reproducers of fixed fuzz findings through the fuzz entry points on stable Rust: what the
//! fuzzers start from and what they once broke must not panic.

use std::{fs, path::Path};

fn inputs(target: &str) -> Vec<(String, String)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
    let mut out = Vec::new();
    for dir in ["seeds", "regressions"] {
        let Ok(entries) = fs::read_dir(root.join(dir).join(target)) else {
            continue;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            let bytes = fs::read(&path).unwrap();
            // libFuzzer's `&str` targets skip input that is not UTF-8; so does the replay.
            if let Ok(text) = String::from_utf8(bytes) {
                out.push((path.display().to_string(), text));
            }
        }
    }
    out
}

fn replay(target: &str, min: usize, entry: fn(&str)) {
    let inputs = inputs(target);
    assert!(
        inputs.len() >= min,
        "{target}: {} inputs, expected at least {min} (run scripts/fuzz seed)",
        inputs.len()
    );
    for (path, text) in inputs {
        let outcome = std::panic::catch_unwind(|| entry(&text));
        assert!(outcome.is_ok(), "{target} panicked on {path}");
    }
}

#[test]
fn every_graph_in_the_repository_passes_through_admission_without_a_panic() {
    replay("rgd_admission", 20, kroxide::fuzzing::rgd_admission);
}

#[test]
fn every_schema_in_the_repository_passes_through_simpleschema_without_a_panic() {
    replay("simple_schema", 10, kroxide::fuzzing::simple_schema);
}

#[test]
fn every_template_in_the_repository_compiles_and_evaluates_without_a_panic() {
    replay("template", 50, kroxide::fuzzing::template);
}

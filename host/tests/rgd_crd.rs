//! The chart's copy of the ResourceGraphDefinition CRD is exactly what `kroxide generate crd`
//! prints, and every RGD the repository ships is valid under that CRD's schema.

mod support;

use std::path::{Path, PathBuf};

use kroxide::{graph::crd::rgd_crd, yaml};
use kroxide_schema::structural;
use support::repo;

#[test]
fn the_charts_rgd_crd_is_current() {
    let path = repo().join("charts/kroxide/crds/resourcegraphdefinitions.kro.run.yaml");
    let generated = yaml::to_string(&rgd_crd());
    if std::env::var_os("KROXIDE_UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, &generated).unwrap();
    }
    let committed = std::fs::read_to_string(&path).unwrap();
    assert!(
        committed == generated,
        "{} is stale: run `cargo run -- generate crd > {}`",
        path.display(),
        path.display()
    );
}

#[test]
fn the_charts_graph_revision_crd_is_current() {
    let path = repo().join("charts/kroxide/crds/graphrevisions.internal.kro.run.yaml");
    let generated = yaml::to_string(&kroxide::graph::crd::graph_revision_crd());
    if std::env::var_os("KROXIDE_UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, &generated).unwrap();
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "{} is stale: rerun this test with KROXIDE_UPDATE_GOLDEN=1",
        path.display()
    );
}

#[test]
fn every_shipped_rgd_is_valid_under_the_rgd_crd() {
    let crd = rgd_crd();
    let schema = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"];
    let mut files = Vec::new();
    for dir in ["examples", "plugins"] {
        for entry in walk(&repo().join(dir)) {
            if entry.file_name().is_some_and(|n| n == "rgd.yaml") {
                files.push(entry);
            }
        }
    }
    assert!(files.len() >= 5, "found {files:?}");
    for file in files {
        for doc in yaml::read_documents(&file).unwrap() {
            let mut pruned = doc.clone();
            let unknown = structural::prune(&mut pruned, schema);
            assert!(
                unknown.is_empty(),
                "{}: fields the CRD would prune: {unknown:?}",
                file.display()
            );
            let causes = structural::validate(&pruned, None, schema, &structural::BuiltinRules);
            assert!(causes.is_empty(), "{}: {causes:?}", file.display());
        }
    }
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() && path.file_name().is_some_and(|n| n != "target") {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

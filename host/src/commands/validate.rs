//! `kroxide validate`: checks ResourceGraphDefinitions offline, as the controller admits them
//! (kro's messages, expressions type-checked against built-in kinds and the CRDs given).
//!
//! Inputs are read as `kubectl apply -f` reads them: files with several documents, directories
//! (their `.yaml`, `.yml` and `.json` files; with `-R` their subdirectories' too) and `-` for
//! stdin. CustomResourceDefinitions among the inputs, and the kinds of graphs validated earlier,
//! serve as schemas too.

use std::{
    io::Read,
    path::{Path, PathBuf},
};

use serde_json::Value;

use super::{
    error::Error,
    render::{build_graph, offline_catalog, read_crds},
};
use crate::{graph::Limits, yaml};

/// What validation found: the report for stdout, warnings and errors for stderr, and whether
/// every graph was valid.
#[derive(Debug, Default)]
pub(crate) struct Report {
    pub(crate) stdout: String,
    pub(crate) stderr: String,
    pub(crate) valid: bool,
}

/// Every document of every input, with the path it came from (`-` is `stdin`).
fn read_inputs(
    paths: &[PathBuf],
    recursive: bool,
    stdin: &mut dyn Read,
    stderr: &mut String,
) -> Result<Vec<(PathBuf, Value)>, Error> {
    let mut out = Vec::new();
    for path in paths {
        let files = if path.is_dir() {
            yaml::files_in(path, recursive)?
        } else {
            vec![path.clone()]
        };
        for file in files {
            let text = if file == Path::new("-") {
                let mut text = String::new();
                stdin.read_to_string(&mut text).map_err(|source| Error::Read {
                    path: file.clone(),
                    source,
                })?;
                text
            } else {
                std::fs::read_to_string(&file).map_err(|source| Error::Read {
                    path: file.clone(),
                    source,
                })?
            };
            let (docs, warning) = yaml::parse_documents_lenient(&text, &file)?;
            if let Some(w) = warning {
                stderr.push_str(&format!("warning: {w}\n"));
            }
            out.extend(docs.into_iter().map(|d| (file.clone(), d)));
        }
    }
    Ok(out)
}

/// Validates every ResourceGraphDefinition in `paths` (`-` reads `stdin`), with the schemas of
/// `crds` and of the CRDs among the inputs.
///
/// # Errors
/// An input or CRD file cannot be read or is not YAML.
pub(crate) fn validate(
    paths: &[PathBuf],
    recursive: bool,
    crds: &[PathBuf],
    limits: Limits,
    stdin: &mut dyn Read,
) -> Result<Report, Error> {
    let mut report = Report {
        valid: true,
        ..Report::default()
    };
    let mut crds = read_crds(crds)?;
    let inputs = read_inputs(paths, recursive, stdin, &mut report.stderr)?;
    crds.extend(
        inputs
            .iter()
            .filter(|(_, d)| d.get("kind").and_then(Value::as_str) == Some("CustomResourceDefinition"))
            .cloned(),
    );
    let mut catalog = offline_catalog(&crds);
    let mut graphs = 0;
    for (path, doc) in &inputs {
        let kind = doc.get("kind").and_then(Value::as_str).unwrap_or_default();
        if kind != "ResourceGraphDefinition" {
            continue;
        }
        graphs += 1;
        match build_graph(doc, path, &catalog, limits) {
            Ok((rgd, graph)) => {
                let plugin = if graph.plugin.is_some() { " + plugin" } else { "" };
                report.stdout.push_str(&format!(
                    "{}: {} is valid: kind {} ({}), {} resource(s){plugin}, order [{}]\n",
                    path.display(),
                    rgd.name(),
                    graph.names.kind,
                    graph.names.crd_name(),
                    graph.nodes.len(),
                    graph.topological_order().join(", ")
                ));
                // Graphs that build on this one see its kind.
                catalog.add_crd(graph.crd());
            }
            Err(e) => {
                report.valid = false;
                report.stderr.push_str(&format!("{e}\n"));
            }
        }
    }
    if graphs == 0 {
        report.valid = false;
        report.stderr.push_str(&format!(
            "no ResourceGraphDefinition found in {}\n",
            paths
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scenario(file: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../tests/e2e/scenarios/kroxide/type-errors")
            .join(file)
    }

    fn run(paths: &[PathBuf], recursive: bool, stdin: &str) -> Report {
        validate(paths, recursive, &[], Limits::default(), &mut stdin.as_bytes()).unwrap()
    }

    #[test]
    fn the_four_ill_typed_graphs_are_refused_with_kros_messages() {
        for (file, message) in [
            (
                "string-into-integer.yaml",
                "type mismatch in resource \"deployment\" at path \"spec.replicas\": expression \"schema.spec.name\" returns type \"string\" but expected \"int\"",
            ),
            (
                "misspelled-field.yaml",
                "undefined field 'availableReplica' on type 'deployment.status' (did you mean 'availableReplicas'?)",
            ),
            (
                "integer-ready-when.yaml",
                "resource \"deployment\" readyWhen \"deployment.spec.replicas\": must return bool, got \"int\"",
            ),
            (
                "unknown-kind.yaml",
                "cannot resolve group version kind \"networking.k8s.io/v1, Kind=Ingres\": schema not found (did you mean kind Ingress?)",
            ),
        ] {
            let report = run(&[scenario(file)], false, "");
            assert!(!report.valid, "{file}");
            assert!(report.stderr.contains(message), "{file}: {}", report.stderr);
        }
        assert!(run(&[scenario("typed-status.yaml")], false, "").valid);
    }

    #[test]
    fn every_example_graph_validates() {
        let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
        let report = run(&[examples], true, "");
        assert!(report.valid, "{}", report.stderr);
        assert_eq!(
            report.stdout.matches(" is valid: ").count(),
            3,
            "{}",
            report.stdout
        );
    }

    #[test]
    fn stdin_directories_and_multi_document_streams_are_read_as_kubectl_reads_them() {
        let dir = std::env::temp_dir().join(format!("kroxide-validate-inputs-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("nested")).unwrap();
        let good = std::fs::read_to_string(scenario("typed-status.yaml")).unwrap();
        let bad = std::fs::read_to_string(scenario("integer-ready-when.yaml")).unwrap();
        std::fs::write(dir.join("nested/graph.yaml"), &good).unwrap();
        std::fs::write(dir.join("notes.txt"), "not yaml: [").unwrap();
        let top_level = run(std::slice::from_ref(&dir), false, "");
        assert!(!top_level.valid && top_level.stderr.contains("no ResourceGraphDefinition found"));
        let recursive = run(std::slice::from_ref(&dir), true, "");
        assert!(recursive.valid, "{}", recursive.stderr);
        assert!(
            recursive
                .stdout
                .contains("nested/graph.yaml: e2etypedstatuses.e2e.kroxide.dev is valid")
        );
        let stream = format!("{good}---\n{bad}");
        let report = run(&[PathBuf::from("-")], false, &stream);
        assert!(!report.valid);
        assert!(
            report
                .stdout
                .starts_with("-: e2etypedstatuses.e2e.kroxide.dev is valid"),
            "{}",
            report.stdout
        );
        assert!(report.stderr.contains("must return bool"), "{}", report.stderr);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_repeated_key_is_a_warning_and_crds_among_the_inputs_are_schemas() {
        let graph = r#"
apiVersion: kro.run/v1alpha1
kind: ResourceGraphDefinition
metadata:
  name: gadgetusers.e2e.kroxide.dev
spec:
  schema:
    apiVersion: v1alpha1
    kind: GadgetUser
    spec:
      label: string | default=big
  resources:
    - id: gadget
      template:
        apiVersion: tools.kroxide.dev/v1
        kind: Gadget
        metadata:
          name: ${schema.metadata.name}
          name: ${schema.metadata.name}
        spec:
          size: ${schema.spec.label}
"#;
        let crd = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: gadgets.tools.kroxide.dev
spec:
  group: tools.kroxide.dev
  scope: Namespaced
  names: {plural: gadgets, singular: gadget, kind: Gadget, listKind: GadgetList}
  versions:
    - name: v1
      served: true
      storage: true
      schema:
        openAPIV3Schema:
          type: object
          properties:
            spec: {type: object, properties: {size: {type: integer}}}
"#;
        let alone = run(&[PathBuf::from("-")], false, graph);
        assert!(alone.valid, "an unchecked custom kind offline: {}", alone.stderr);
        assert!(
            alone.stderr.starts_with("warning: -: line 19 column 11: duplicate mapping key: name (the last value is used, as kubectl does)"),
            "{}",
            alone.stderr
        );
        let with_crd = run(&[PathBuf::from("-")], false, &format!("{crd}---{graph}"));
        assert!(!with_crd.valid);
        assert!(
            with_crd.stderr.contains("at path \"spec.size\": expression \"schema.spec.label\" returns type \"string\" but expected \"int\""),
            "{}",
            with_crd.stderr
        );
    }
}

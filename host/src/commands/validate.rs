//! `kroxide validate`: checks ResourceGraphDefinitions offline, as the controller admits them
//! (kro's messages, expressions type-checked against built-in kinds and the CRDs given).
//!
//! Inputs are read as `kubectl apply -f` reads them: files with several documents, directories
//! (their `.yaml`, `.yml` and `.json` files) and `-` for stdin. CustomResourceDefinitions among
//! the inputs, and the kinds of graphs validated earlier, serve as schemas too.

use std::{
    io::Read,
    path::{Path, PathBuf},
};

use serde_json::Value;

use super::{
    error::Error,
    render::{build_graph, offline_catalog, read_crds},
};
use crate::yaml;

/// What validation found: the report for stdout, warnings and errors for stderr, and whether
/// every graph was valid.
#[derive(Debug, Default)]
pub(crate) struct Report {
    pub(crate) stdout: String,
    pub(crate) stderr: String,
    pub(crate) valid: bool,
}

/// Every document of every input, with the path it came from (`-` is stdin).
fn read_inputs(paths: &[PathBuf], stderr: &mut String) -> Result<Vec<(PathBuf, Value)>, Error> {
    let mut out = Vec::new();
    for path in paths {
        let files: Vec<PathBuf> = if path.is_dir() {
            let mut files: Vec<PathBuf> = std::fs::read_dir(path)
                .map_err(|source| Error::Read {
                    path: path.clone(),
                    source,
                })?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    matches!(
                        p.extension().and_then(|e| e.to_str()),
                        Some("yaml" | "yml" | "json")
                    )
                })
                .collect();
            files.sort();
            files
        } else {
            vec![path.clone()]
        };
        for file in files {
            let text = if file == Path::new("-") {
                let mut text = String::new();
                std::io::stdin()
                    .read_to_string(&mut text)
                    .map_err(|source| Error::Read {
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

/// Validates every ResourceGraphDefinition in `paths`, with the schemas of `crds` and of the
/// CRDs among the inputs.
///
/// # Errors
/// An input or CRD file cannot be read or is not YAML.
pub(crate) fn validate(paths: &[PathBuf], crds: &[PathBuf]) -> Result<Report, Error> {
    let mut report = Report {
        valid: true,
        ..Report::default()
    };
    let mut crds = read_crds(crds)?;
    let inputs = read_inputs(paths, &mut report.stderr)?;
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
        match build_graph(doc, path, &catalog) {
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

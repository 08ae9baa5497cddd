//! `kroxide validate`: checks ResourceGraphDefinition files offline, with kro's messages.

use std::path::PathBuf;

use super::render::load_graph;

/// The outcome for each file, and whether all were valid.
pub(crate) fn validate(paths: &[PathBuf]) -> (String, bool) {
    let mut out = String::new();
    let mut all_valid = true;
    for path in paths {
        match load_graph(path) {
            Ok((rgd, graph)) => {
                let plugin = if graph.plugin.is_some() { " + plugin" } else { "" };
                out.push_str(&format!(
                    "{}: {} is valid: kind {} ({}), {} resource(s){plugin}, order [{}]\n",
                    path.display(),
                    rgd.name(),
                    graph.names.kind,
                    graph.names.crd_name(),
                    graph.nodes.len(),
                    graph.topological_order().join(", ")
                ));
            }
            Err(e) => {
                all_valid = false;
                out.push_str(&format!("{e}\n"));
            }
        }
    }
    (out, all_valid)
}

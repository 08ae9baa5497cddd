//! `kroxide render`: the desired children of one instance, exactly as the controller would
//! apply them, with no cluster; optionally the instance with its derived status.
//!
//! A resource that reads another one (`${deployment.metadata.name}`) reads it as it would be
//! applied: the desired object with the server's defaults of built-in kinds and an empty
//! status, unless an `--observed` file gives the live object. What still cannot be rendered
//! (it reads a status field, or waits for a readyWhen) is reported as [`Pending`].

use serde_json::{Value, json};

use crate::{
    child::{DesiredChild, ObservedChild},
    commands::error::Error,
    yaml,
};

mod load;
mod offline;
mod pass;

pub use load::{Format, Options, build_graph, load_graph, offline_catalog, read_crds};
use load::{Loaded, load};
pub use offline::Pending;
use offline::{pending, settle};
use pass::{derive, run};

/// What `render` produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    /// The documents, in the order the controller applies them.
    pub text: String,
    /// Resources left out because rendering them needs a live cluster.
    pub pending: Vec<Pending>,
}

/// How many times `--check-determinism` runs each call.
const DETERMINISM_RUNS: usize = 3;

fn documents(
    loaded: &Loaded,
    observed: &[ObservedChild],
    live: &[ObservedChild],
    include_status: bool,
) -> Result<(Vec<Value>, Vec<Pending>), Error> {
    let pass = run(loaded, observed)?;
    // The order the controller applies them in: by the resource's place in the graph, then
    // by key (a collection's items in order, a plugin's own children after the templates).
    let order = loaded.graph.topological_order();
    let mut desired: Vec<&DesiredChild> = pass.output.desired.iter().collect();
    desired.sort_by_key(|d| {
        (
            order.iter().position(|id| *id == d.key.id).unwrap_or(order.len()),
            &d.key,
        )
    });
    let mut docs: Vec<Value> = desired.iter().map(|d| Value::Object(d.object.clone())).collect();
    if include_status {
        // The instance's status reports what exists: simulated children do not.
        docs.push(derive(loaded, &pass, live)?);
    }
    let pending = pending(loaded, &pass, observed, live);
    Ok((docs, pending))
}

/// Renders per the options: the text to print and the resources left out.
///
/// # Errors
/// Any input, graph, plugin or render error, naming the file and the field; with
/// `check_determinism`, [`Error::Nondeterministic`] on the first difference.
pub fn render(options: &Options) -> Result<Rendered, Error> {
    let loaded = load(options)?;
    let (observed, live) = settle(&loaded)?;
    let (docs, pending) = documents(&loaded, &observed, &live, options.include_status)?;
    if options.check_determinism {
        let reference = serialize(&docs, Format::Json);
        for run_no in 2..=DETERMINISM_RUNS {
            let text = serialize(
                &documents(&loaded, &observed, &live, options.include_status)?.0,
                Format::Json,
            );
            let differs = reference
                .bytes()
                .zip(text.bytes())
                .position(|(a, b)| a != b)
                .or_else(|| (reference.len() != text.len()).then_some(reference.len().min(text.len())));
            if let Some(at) = differs {
                let snippet = |s: &str| {
                    s.get(at.saturating_sub(40)..(at + 40).min(s.len()))
                        .unwrap_or_default()
                        .to_string()
                };
                return Err(Error::Nondeterministic {
                    run: run_no,
                    offset: at,
                    first: snippet(&reference),
                    later: snippet(&text),
                });
            }
        }
    }
    Ok(Rendered {
        text: serialize(&docs, options.format),
        pending,
    })
}

fn serialize(documents: &[Value], format: Format) -> String {
    match format {
        Format::Yaml => yaml::to_stream(documents),
        Format::Json => {
            let list = json!({ "apiVersion": "v1", "kind": "List", "items": documents });
            serde_json::to_string_pretty(&list).expect("JSON values serialize") + "\n"
        }
    }
}

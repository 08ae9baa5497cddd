//! One pass of the instance pipeline offline, the stages the controller runs: resolve, then
//! transform, then (with `--include-status`) the status.

use serde_json::Value;

use crate::{
    child::ObservedChild,
    commands::error::Error,
    graph::runtime::{self, Resolution},
    metadata::OFFLINE_TIME,
    plugin::{CallInput, StatusOutput},
    status::{self, Mark},
    transform::{self, PluginStage},
};

use super::load::Loaded;

pub(super) struct Pass {
    pub(super) resolution: Resolution,
    pub(super) output: transform::Output,
}

pub(super) fn run(loaded: &Loaded, observed: &[ObservedChild]) -> Result<Pass, Error> {
    let graph = &loaded.graph;
    let resolution = runtime::resolve(graph, &loaded.instance, observed, &loaded.cluster);
    if let Some((id, message)) = resolution.first_error() {
        return Err(Error::Resolve {
            resource: id.to_string(),
            message: message.to_string(),
        });
    }
    let limits = match &graph.plugin {
        Some(spec) => loaded.runtime.limits(spec.timeout_ms, spec.memory_mib)?,
        None => loaded.runtime.limits(None, None)?,
    };
    let allowed = graph
        .plugin
        .as_ref()
        .map(|p| p.allowed_kinds.as_slice())
        .unwrap_or_default();
    let orders = graph.apply_orders();
    let input = transform::Input {
        graph: &graph.name,
        revision: 1,
        instance: &loaded.instance,
        observed,
        rendered: resolution.rendered.clone(),
        pending: resolution.pending.clone(),
        apply_orders: &orders,
        plugin: loaded.plugin.as_ref().map(|(plugin, config)| PluginStage {
            plugin,
            limits,
            config,
            allowed_kinds: allowed,
        }),
        cluster: &loaded.cluster,
        propagate_labels: graph.propagate_labels,
    };
    let output = transform::desired(input)?;
    Ok(Pass { resolution, output })
}

pub(super) fn derive(loaded: &Loaded, pass: &Pass, observed: &[ObservedChild]) -> Result<Value, Error> {
    let plugin_status = match &loaded.plugin {
        Some((plugin, config)) => {
            let spec = loaded.graph.plugin.as_ref().expect("a loaded plugin has a spec");
            let limits = loaded.runtime.limits(spec.timeout_ms, spec.memory_mib)?;
            let input = CallInput {
                graph: &loaded.graph.name,
                revision: 1,
                config,
                instance: &loaded.instance,
                observed,
                rendered: &[],
                pending: &[],
            };
            Some(plugin.derive_status(&limits, &input)?)
        }
        None => None,
    };
    Ok(instance_with_status(
        &loaded.instance,
        &loaded.graph.conditions,
        pass,
        observed,
        plugin_status.as_ref(),
    ))
}

/// The instance with `status` as the controller would write it.
fn instance_with_status(
    instance: &Value,
    authored: &[crate::cel::Program],
    pass: &Pass,
    observed: &[ObservedChild],
    plugin: Option<&StatusOutput>,
) -> Value {
    let fields = status::derive(&status::Input {
        instance,
        resolution: Some(&pass.resolution),
        desired: &pass.output.desired,
        observed,
        plugin,
        managed: Mark::managed(),
        failure: None,
        suspended: false,
        deleting: false,
        now: OFFLINE_TIME,
        authored,
    });
    let mut out = instance.clone();
    out["status"] = Value::Object(fields);
    out
}

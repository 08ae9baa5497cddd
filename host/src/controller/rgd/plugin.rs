//! Loading a graph's plugin from its ConfigMap: namespace allowed, watched, bytes decoded,
//! pinned digest checked, compiled, configuration validated.

use std::time::Duration;

use base64::Engine as _;
use serde_json::Value;

use crate::controller::{
    context::Context,
    informers::{Role, WatchKey},
    revisions::PluginBinding,
};
use crate::{plugin::Digest, rgd::PluginSpec};

use super::report::{Reason, Refusal};

/// Loads the graph's plugin; a failure is (reason, message).
pub(super) async fn load_plugin(
    ctx: &Context,
    rgd: &str,
    spec: &PluginSpec,
) -> Result<PluginBinding, Refusal> {
    let r = &spec.config_map_ref;
    let ns = r
        .namespace
        .clone()
        .unwrap_or_else(|| ctx.config.namespace.clone());
    let shown = format!("ConfigMap {ns}/{}", r.name);
    if !ctx.config.plugin_namespaces.contains(&ns) {
        return Err(Refusal::new(
            Reason::PluginNamespaceNotAllowed,
            format!(
                "spec.plugin.configMapRef: {shown}: namespace {ns:?} is not a plugin namespace of this controller ({}); \
                 move the ConfigMap or add the namespace to --plugin-namespaces",
                ctx.config.plugin_namespaces.join(", ")
            ),
        ));
    }
    ctx.interest
        .plugins
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .entry((ns.clone(), r.name.clone()))
        .or_default()
        .insert(rgd.to_string());
    let watch = WatchKey {
        namespace: Some(ns.clone()),
        fields: Some(format!("metadata.name={}", r.name)),
        ..WatchKey::all("v1", "ConfigMap", Role::PluginSource)
    };
    let informer = ctx
        .informers
        .ensure(&watch)
        .await
        .map_err(|e| Refusal::new(Reason::PluginNotFound, e.to_string()))?;
    if !informer.wait_synced(Duration::from_secs(10)).await {
        return Err(Refusal::new(
            Reason::PluginNotFound,
            format!("{shown}: the watch did not sync"),
        ));
    }
    let Some(cm) = informer.get(Some(&ns), &r.name) else {
        return Err(Refusal::new(
            Reason::PluginNotFound,
            format!("spec.plugin.configMapRef: {shown} not found"),
        ));
    };
    let key = r.key();
    let bytes = if let Some(b64) = cm
        .pointer("/binaryData")
        .and_then(|d| d.get(key))
        .and_then(Value::as_str)
    {
        base64::engine::general_purpose::STANDARD
            .decode(b64)
            .map_err(|e| {
                Refusal::new(
                    Reason::PluginInvalid,
                    format!("{shown}: binaryData[{key}] is not base64: {e}"),
                )
            })?
    } else if let Some(text) = cm
        .pointer("/data")
        .and_then(|d| d.get(key))
        .and_then(Value::as_str)
    {
        text.as_bytes().to_vec()
    } else {
        return Err(Refusal::new(
            Reason::PluginKeyMissing,
            format!("spec.plugin.configMapRef.key: {shown} has no key {key:?} in binaryData or data"),
        ));
    };
    let pin = match &spec.sha256 {
        Some(p) => Some(
            Digest::parse(p)
                .map_err(crate::plugin::Error::from)
                .map_err(|e| Refusal::new(Reason::Plugin(e.reason()), format!("spec.plugin.sha256: {e}")))?,
        ),
        None => None,
    };
    let runtime = ctx.runtime.clone();
    let started = std::time::Instant::now();
    let plugin = ctx
        .runtime
        .run(move || runtime.load(&bytes, pin.as_ref()))
        .await
        .map_err(|e| Refusal::new(Reason::Plugin(e.reason()), format!("{shown}: {e}")))?;
    ctx.metrics.plugin_compiled(started.elapsed());
    let limits = ctx
        .runtime
        .limits(spec.timeout_ms, spec.memory_mib)
        .map_err(|e| Refusal::new(Reason::Plugin(e.reason()), format!("spec.plugin: {e}")))?;
    let config = spec.config_value();
    let (p, c) = (plugin.clone(), config.clone());
    ctx.runtime
        .run(move || p.validate_config(&limits, &c))
        .await
        .map_err(|e| Refusal::new(Reason::Plugin(e.reason()), format!("spec.plugin.config: {e}")))?;
    Ok(PluginBinding {
        plugin,
        config,
        limits,
        allowed_kinds: spec.allowed_kinds.clone(),
    })
}

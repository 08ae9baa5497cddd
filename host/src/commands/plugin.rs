//! `kroxide plugin pack` and `kroxide plugin inspect`: ship a plugin as a ConfigMap, and show
//! what a `.wasm` file is.

use std::{path::Path, time::Instant};

use base64::Engine as _;
use serde_json::{Value, json};

use super::error::Error;
use crate::{
    plugin::{PluginRuntime, RuntimeConfig, WORLD_VERSION, source},
    rgd::DEFAULT_PLUGIN_KEY,
    yaml,
};

/// Label on every plugin ConfigMap.
pub(crate) const PLUGIN_LABEL: &str = "kroxide.dev/plugin";
/// Annotation with the sha256 of the decompressed `.wasm`.
pub(crate) const SHA256_ANNOTATION: &str = "kroxide.dev/sha256";

/// A packed plugin: the ConfigMap to apply and the RGD snippet that names it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Packed {
    /// The ConfigMap, as YAML.
    pub(crate) config_map: String,
    /// The `spec.plugin` snippet for the RGD, as YAML.
    pub(crate) rgd_snippet: String,
    /// Whether the bytes were stored gzip-compressed.
    pub(crate) compressed: bool,
    /// Bytes stored in the ConfigMap.
    pub(crate) stored_size: usize,
}

fn read(path: &Path) -> Result<Vec<u8>, Error> {
    std::fs::read(path).map_err(|source| Error::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// Packs `wasm` into a ConfigMap named `name`: gzip when smaller, label
/// `kroxide.dev/plugin: "true"`, annotation with the sha256; refuses anything that does not
/// load as a plugin or does not fit a ConfigMap.
///
/// # Errors
/// The file cannot be read, is not a loadable plugin, or is over 1 MiB once stored.
pub(crate) fn pack(
    path: &Path,
    name: &str,
    namespace: Option<&str>,
    key: Option<&str>,
) -> Result<Packed, Error> {
    let raw = read(path)?;
    let prepared = source::prepare(&raw).map_err(|e| Error::Plugin {
        path: path.to_path_buf(),
        source: e,
    })?;
    // Compiling here catches what the controller would refuse (imports, exports) before shipping.
    let runtime = PluginRuntime::new(RuntimeConfig {
        pooling: false,
        ..RuntimeConfig::default()
    })?;
    let plugin = runtime.load(&prepared.wasm, None).map_err(|e| Error::Plugin {
        path: path.to_path_buf(),
        source: e,
    })?;
    let gz = source::gzip(&prepared.wasm);
    let (stored, compressed) = if gz.len() < prepared.wasm.len() {
        (gz, true)
    } else {
        (prepared.wasm.clone(), false)
    };
    if stored.len() > source::MAX_STORED_BYTES {
        return Err(Error::TooLargeForConfigMap {
            path: path.to_path_buf(),
            size: stored.len(),
        });
    }
    let key = key.unwrap_or(DEFAULT_PLUGIN_KEY);
    let digest = prepared.digest.to_string();
    let mut metadata = json!({
        "name": name,
        "labels": { PLUGIN_LABEL: "true" },
        "annotations": {
            SHA256_ANNOTATION: digest,
            "kroxide.dev/plugin-name": plugin.plugin_info().name,
            "kroxide.dev/plugin-version": plugin.plugin_info().version,
        },
    });
    if let Some(ns) = namespace {
        metadata["namespace"] = json!(ns);
    }
    let config_map = json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": metadata,
        "binaryData": { key: base64::engine::general_purpose::STANDARD.encode(&stored) },
    });
    let mut reference = json!({ "name": name });
    if let Some(ns) = namespace {
        reference["namespace"] = json!(ns);
    }
    if key != DEFAULT_PLUGIN_KEY {
        reference["key"] = json!(key);
    }
    let snippet = json!({ "plugin": { "configMapRef": reference, "sha256": digest } });
    Ok(Packed {
        config_map: yaml::to_string(&config_map),
        rgd_snippet: yaml::to_string(&snippet),
        compressed,
        stored_size: stored.len(),
    })
}

/// Describes a plugin file: world version, imports and exports, sizes, digest, `info()`, and
/// how long it takes to compile.
///
/// # Errors
/// The file cannot be read or is not a loadable plugin.
pub(crate) fn inspect(path: &Path) -> Result<Value, Error> {
    let raw = read(path)?;
    let prepared = source::prepare(&raw).map_err(|e| Error::Plugin {
        path: path.to_path_buf(),
        source: e,
    })?;
    let runtime = PluginRuntime::new(RuntimeConfig {
        pooling: false,
        ..RuntimeConfig::default()
    })?;
    let started = Instant::now();
    let plugin = runtime.load(&raw, None).map_err(|e| Error::Plugin {
        path: path.to_path_buf(),
        source: e,
    })?;
    let load_time = started.elapsed();
    let info = plugin.plugin_info();
    Ok(json!({
        "file": path.display().to_string(),
        "world": format!("kroxide:plugin/graph-plugin@{WORLD_VERSION}"),
        "name": info.name,
        "version": info.version,
        "description": info.description,
        "sha256": prepared.digest.to_string(),
        "size": prepared.wasm.len(),
        "storedSize": prepared.stored_size,
        "gzipSize": source::gzip(&prepared.wasm).len(),
        "imports": plugin.imports(),
        "exports": plugin.exports(),
        "compileMillis": (plugin.compile_time().as_secs_f64() * 1000.0 * 10.0).round() / 10.0,
        "loadMillis": (load_time.as_secs_f64() * 1000.0 * 10.0).round() / 10.0,
        "compiledBytes": plugin.code_bytes(),
    }))
}

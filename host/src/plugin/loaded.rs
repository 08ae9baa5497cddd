//! A compiled, verified plugin and what it says of itself.

use std::time::Duration;

use wasmtime::Engine;

use super::{bindings::GraphPluginPre, digest::Digest, settings::RuntimeConfig, state::CallState};

/// A compiled, verified plugin, ready to be called. Immutable; a new version is a new value.
pub struct LoadedPlugin {
    pub(super) digest: Digest,
    pub(super) info: PluginInfo,
    pub(super) pre: GraphPluginPre<CallState>,
    pub(super) engine: Engine,
    pub(super) config: RuntimeConfig,
    pub(super) code_bytes: usize,
    pub(super) compile_time: Duration,
    pub(super) imports: Vec<String>,
    pub(super) exports: Vec<String>,
}

impl std::fmt::Debug for LoadedPlugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedPlugin")
            .field("digest", &self.digest)
            .field("info", &self.info)
            .finish()
    }
}

/// What a plugin says of itself.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PluginInfo {
    /// Its name.
    pub name: String,
    /// Its version.
    pub version: String,
    /// One line about it.
    pub description: String,
}

impl LoadedPlugin {
    /// The sha256 of the `.wasm` bytes.
    pub(crate) fn digest(&self) -> Digest {
        self.digest
    }

    /// What the plugin says of itself (from `info()` at load time).
    pub fn plugin_info(&self) -> &PluginInfo {
        &self.info
    }

    /// Bytes of compiled code plus the component, as the cache counts them.
    pub(crate) fn code_bytes(&self) -> usize {
        self.code_bytes
    }

    /// How long Cranelift took.
    pub(crate) fn compile_time(&self) -> Duration {
        self.compile_time
    }

    /// The component's import names.
    pub fn imports(&self) -> &[String] {
        &self.imports
    }

    /// The component's export names.
    pub fn exports(&self) -> &[String] {
        &self.exports
    }
}

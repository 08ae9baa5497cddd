//! Why loading or calling a plugin failed: a typed reason per failure, named after the export
//! and the limit involved.

use std::time::Duration;

use super::{
    contract::WORLD_VERSION,
    digest::{Digest, InvalidPin},
};

/// Which export a call went to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Export {
    /// `info`.
    Info,
    /// `validate-config`.
    ValidateConfig,
    /// `transform`.
    Transform,
    /// `derive-status`.
    DeriveStatus,
}

impl Export {
    /// The WIT name.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Info => "info",
            Self::ValidateConfig => "validate-config",
            Self::Transform => "transform",
            Self::DeriveStatus => "derive-status",
        }
    }
}

impl std::fmt::Display for Export {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// What a plugin itself reported as its failure (the WIT `plugin-error`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GuestErrorKind {
    /// `invalid-input`.
    InvalidInput,
    /// `invalid-config`.
    InvalidConfig,
    /// `internal`.
    Internal,
}

/// Everything that can go wrong loading or calling a plugin. Each variant maps to a condition
/// reason with [`Error::reason`].
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The bytes are larger than allowed.
    #[error("{what} is {size} bytes, over the limit of {limit} bytes")]
    TooLarge {
        /// Which size (stored or decompressed).
        what: &'static str,
        /// The size found.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// The bytes look like gzip but do not decompress.
    #[error("plugin is not valid gzip: {reason}")]
    Decompress {
        /// What the decoder said.
        reason: String,
    },
    /// A core module instead of a component.
    #[error(
        "plugin is a core WebAssembly module, not a component: build it for wasm32-unknown-unknown with \
         linker = \"wasm-component-ld\" (see docs/plugins.md)"
    )]
    CoreModule,
    /// Not WebAssembly at all.
    #[error("plugin is not a WebAssembly component: {reason}")]
    NotWasm {
        /// Why.
        reason: String,
    },
    /// The `sha256` pin is not a digest.
    #[error("sha256 pin {pin:?} is not 64 hex digits (optionally prefixed sha256:)")]
    InvalidPin {
        /// The pin as written.
        pin: String,
    },
    /// The bytes do not match the pin.
    #[error("plugin digest sha256:{actual} does not match the pinned sha256:{expected}")]
    DigestMismatch {
        /// The pinned digest.
        expected: Digest,
        /// The digest of the bytes.
        actual: Digest,
    },
    /// Cranelift refused the component.
    #[error("plugin sha256:{digest} does not compile: {reason}")]
    Compile {
        /// The plugin's digest.
        digest: Digest,
        /// What wasmtime said.
        reason: String,
    },
    /// The component imports something other than kroxide's `log`.
    #[error(
        "plugin sha256:{digest} imports {import:?}; plugins may import only kroxide:plugin/log (no WASI: build for \
         wasm32-unknown-unknown, not wasm32-wasip2)"
    )]
    DisallowedImport {
        /// The plugin's digest.
        digest: Digest,
        /// The import's name.
        import: String,
    },
    /// The exports do not match a supported world version.
    #[error(
        "plugin sha256:{digest} does not implement kroxide:plugin/graph-plugin@{WORLD_VERSION}: {reason}"
    )]
    UnsupportedWorld {
        /// The plugin's digest.
        digest: Digest,
        /// What is missing or mistyped.
        reason: String,
    },
    /// A per-graph limit is above the controller-wide maximum.
    #[error("{what} {requested} is above the controller's maximum of {maximum}")]
    LimitAboveMaximum {
        /// `timeoutMs` or `memoryMiB`.
        what: &'static str,
        /// What the graph asked for.
        requested: u64,
        /// The controller's maximum.
        maximum: u64,
    },
    /// The engine could not be created.
    #[error("cannot create the WebAssembly engine: {reason}")]
    Engine {
        /// What wasmtime said.
        reason: String,
    },
    /// The call ran past its deadline.
    #[error("plugin {plugin} {export} ran past its {}ms deadline", timeout.as_millis())]
    Timeout {
        /// Plugin name.
        plugin: String,
        /// The export called.
        export: Export,
        /// The deadline.
        timeout: Duration,
    },
    /// The call tried to grow memory past its limit.
    #[error("plugin {plugin} {export} exceeded its memory limit of {} MiB", limit >> 20)]
    MemoryLimit {
        /// Plugin name.
        plugin: String,
        /// The export called.
        export: Export,
        /// The limit in bytes.
        limit: usize,
    },
    /// The guest trapped (panic, stack overflow, out-of-bounds access, ...).
    #[error("plugin {plugin} {export} trapped: {trap}{}", last_log.as_ref().map(|l| format!(" (last log: {l})")).unwrap_or_default())]
    Trap {
        /// Plugin name.
        plugin: String,
        /// The export called.
        export: Export,
        /// The trap, e.g. "wasm trap: call stack exhausted".
        trap: String,
        /// The last line the guest logged: a panic's message, when the SDK's hook caught it.
        last_log: Option<String>,
    },
    /// The plugin returned its own error.
    #[error("plugin {plugin} {export} failed: {message}")]
    Guest {
        /// Plugin name.
        plugin: String,
        /// The export called.
        export: Export,
        /// What kind of error the plugin reported.
        kind: GuestErrorKind,
        /// Its message.
        message: String,
    },
    /// The plugin's output breaks the contract.
    #[error("plugin {plugin} {export} returned invalid output: {field}: {reason}")]
    InvalidOutput {
        /// Plugin name.
        plugin: String,
        /// The export called.
        export: Export,
        /// The field at fault, e.g. `desired[deployment].status`.
        field: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The runtime is shutting down or a blocking task failed.
    #[error("plugin call could not run: {reason}")]
    Unavailable {
        /// Why.
        reason: String,
    },
}

impl Error {
    /// The condition reason for this error, as kroxide reports it on RGDs and instances.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::DigestMismatch { .. } => "PluginDigestMismatch",
            Self::InvalidPin { .. } | Self::LimitAboveMaximum { .. } => "PluginConfigInvalid",
            Self::Guest {
                kind: GuestErrorKind::InvalidConfig,
                ..
            } => "PluginConfigInvalid",
            Self::TooLarge { .. }
            | Self::Decompress { .. }
            | Self::CoreModule
            | Self::NotWasm { .. }
            | Self::Compile { .. }
            | Self::DisallowedImport { .. }
            | Self::UnsupportedWorld { .. }
            | Self::Engine { .. } => "PluginInvalid",
            Self::Timeout { .. } => "PluginTimeout",
            Self::MemoryLimit { .. } => "PluginMemoryLimit",
            Self::Trap { .. } | Self::Unavailable { .. } => "PluginTrap",
            Self::Guest { .. } => "PluginError",
            Self::InvalidOutput { .. } => "PluginInvalidOutput",
        }
    }
}

impl From<InvalidPin> for Error {
    fn from(InvalidPin(pin): InvalidPin) -> Self {
        Self::InvalidPin { pin }
    }
}

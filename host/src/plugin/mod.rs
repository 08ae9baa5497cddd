//! Sandboxed WebAssembly plugins: load, verify, compile once per digest, and call with limits.
//!
//! ```text
//! bytes (raw or gzip) -> source::prepare (caps, digest, component check) -> pin check
//!   -> cache by digest -> Component::new (Cranelift) -> import/export check -> InstancePre
//!   -> info()                                          = LoadedPlugin
//! call: fresh Store (memory limit, epoch deadline, stack limit) -> instantiate -> export
//!   -> output checks (size, count, ids, JSON, contract)  = typed result or typed Error
//! ```
//!
//! Guarantees: the host never panics because of a plugin; precompiled code is never accepted
//! from outside (only `.wasm` components are compiled, in process); every call runs in a fresh
//! instance, so nothing a call leaves behind reaches the next one.

pub mod bindings;
mod call;
pub mod engine;
pub(crate) mod output;
pub mod source;

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

pub use call::{CallInput, CallLimits};
pub use output::{PluginCondition, PluginEvent, StatusOutput, TransformOutput};
pub use source::{Digest, WasmBytes};
use tokio::sync::Semaphore;
use tracing::Instrument;
use wasmtime::{
    Engine,
    component::{Component, Linker},
};

use self::{
    bindings::GraphPluginPre,
    call::CallState,
    engine::{Allocation, EpochTicker},
};

/// The version of the `kroxide:plugin` world this host speaks.
pub const WORLD_VERSION: &str = "0.1.0";

/// Imports a plugin may have: only ours.
const ALLOWED_IMPORTS: [&str; 2] = ["kroxide:plugin/log@0.1.0", "kroxide:plugin/types@0.1.0"];
/// Exports a plugin must have.
const REQUIRED_EXPORTS: [&str; 4] = ["info", "validate-config", "transform", "derive-status"];

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
    pub fn name(self) -> &'static str {
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

/// Limits and budgets of the runtime; per-graph settings may lower the call limits, never raise
/// them past the maxima.
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    /// Deadline of a call when the graph sets none.
    pub default_timeout: Duration,
    /// Highest deadline a graph may set.
    pub max_timeout: Duration,
    /// Memory limit of a call when the graph sets none, in bytes.
    pub default_memory: usize,
    /// Highest memory limit a graph may set, in bytes; also the pool's slot size.
    pub max_memory: usize,
    /// Calls running at once (blocking threads); also sizes the pool.
    pub concurrency: usize,
    /// Use the pooling allocator (falls back to on-demand if it cannot be created).
    pub pooling: bool,
    /// Compiled plugins kept at most.
    pub cache_max_plugins: usize,
    /// Bytes of compiled code kept at most.
    pub cache_max_bytes: usize,
    /// Largest total output of one call (JSON text), in bytes.
    pub max_output_bytes: usize,
    /// Most desired objects one `transform` may return.
    pub max_objects: usize,
    /// Log lines kept (and forwarded to tracing) per call.
    pub max_log_lines: usize,
    /// Log bytes kept per call.
    pub max_log_bytes: usize,
    /// Enforce deadlines with epoch interruption. Only benchmarks turn this off, to measure
    /// what it costs; without it a looping plugin is never stopped.
    pub epoch_interruption: bool,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        Self {
            default_timeout: Duration::from_millis(100),
            max_timeout: Duration::from_secs(2),
            default_memory: 64 << 20,
            max_memory: 256 << 20,
            concurrency: cores,
            pooling: true,
            cache_max_plugins: 256,
            cache_max_bytes: 256 << 20,
            max_output_bytes: 4 << 20,
            max_objects: 2000,
            max_log_lines: 200,
            max_log_bytes: 64 << 10,
            epoch_interruption: true,
        }
    }
}

/// Loads and runs plugins. Cheap to share (`Arc`); one per process.
pub struct PluginRuntime {
    engine: Engine,
    linker: Linker<CallState>,
    allocation: Allocation,
    config: RuntimeConfig,
    cache: Mutex<Cache>,
    permits: Arc<Semaphore>,
    /// Shared with every call in flight: a call outlives the runtime (its caller aborted, the
    /// controller stopped) only with its deadline still enforced.
    ticker: Arc<EpochTicker>,
}

impl std::fmt::Debug for PluginRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginRuntime")
            .field("allocation", &self.allocation)
            .field("config", &self.config)
            .finish()
    }
}

#[derive(Default)]
struct Cache {
    entries: HashMap<Digest, (Arc<LoadedPlugin>, u64)>,
    bytes: usize,
    clock: u64,
}

/// A compiled, verified plugin, ready to be called. Immutable; a new version is a new value.
pub struct LoadedPlugin {
    digest: Digest,
    info: PluginInfo,
    pre: GraphPluginPre<CallState>,
    engine: Engine,
    config: RuntimeConfig,
    wasm_size: usize,
    code_bytes: usize,
    compile_time: Duration,
    imports: Vec<String>,
    exports: Vec<String>,
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

impl PluginRuntime {
    /// Creates the engine, the linker and the epoch ticker.
    ///
    /// # Errors
    /// [`Error::Engine`] when wasmtime cannot create an engine.
    pub fn new(config: RuntimeConfig) -> Result<Self, Error> {
        let (engine, allocation) = engine::build(
            config.concurrency,
            config.max_memory as u64,
            config.pooling,
            config.epoch_interruption,
        )?;
        if let Allocation::OnDemand { reason } = &allocation
            && config.pooling
        {
            tracing::warn!(%reason, "plugin instances are allocated on demand");
        }
        let mut linker = Linker::new(&engine);
        bindings::GraphPlugin::add_to_linker::<CallState, wasmtime::component::HasSelf<CallState>>(
            &mut linker,
            |s| s,
        )
        .map_err(|e| Error::Engine {
            reason: format!("{e:#}"),
        })?;
        let ticker = EpochTicker::start(engine.clone());
        Ok(Self {
            engine,
            linker,
            allocation,
            permits: Arc::new(Semaphore::new(config.concurrency.max(1))),
            config,
            cache: Mutex::new(Cache::default()),
            ticker: Arc::new(ticker),
        })
    }

    /// The runtime's configuration.
    pub fn config(&self) -> &RuntimeConfig {
        &self.config
    }

    /// Which allocator the engine uses.
    pub fn allocation(&self) -> &Allocation {
        &self.allocation
    }

    /// The call limits for a graph's `timeoutMs` and `memoryMiB` (defaults when unset).
    ///
    /// # Errors
    /// [`Error::LimitAboveMaximum`] when a setting exceeds the controller-wide maximum.
    pub fn limits(&self, timeout_ms: Option<u64>, memory_mib: Option<u64>) -> Result<CallLimits, Error> {
        let timeout = match timeout_ms {
            Some(ms) if Duration::from_millis(ms) > self.config.max_timeout => {
                return Err(Error::LimitAboveMaximum {
                    what: "timeoutMs",
                    requested: ms,
                    maximum: self.config.max_timeout.as_millis() as u64,
                });
            }
            Some(ms) => Duration::from_millis(ms.max(1)),
            None => self.config.default_timeout,
        };
        let memory = match memory_mib {
            Some(mib) if (mib << 20) > self.config.max_memory as u64 => {
                return Err(Error::LimitAboveMaximum {
                    what: "memoryMiB",
                    requested: mib,
                    maximum: (self.config.max_memory >> 20) as u64,
                });
            }
            Some(mib) => usize::try_from(mib.max(1) << 20).unwrap_or(usize::MAX),
            None => self.config.default_memory,
        };
        Ok(CallLimits { timeout, memory })
    }

    /// Loads a plugin from stored bytes (raw `.wasm` or gzip), checking the pin when given.
    /// Compiles at most once per digest; later loads of the same bytes are cache hits.
    /// Blocking (compilation takes tens of milliseconds): use [`PluginRuntime::load_async`] on
    /// an async runtime.
    ///
    /// # Errors
    /// Any load error: size, gzip, not a component, digest mismatch, compile, imports, world.
    pub fn load(&self, stored: &[u8], pin: Option<&Digest>) -> Result<Arc<LoadedPlugin>, Error> {
        let prepared = source::prepare(stored)?;
        if let Some(expected) = pin
            && *expected != prepared.digest
        {
            return Err(Error::DigestMismatch {
                expected: *expected,
                actual: prepared.digest,
            });
        }
        if let Some(hit) = self.cached(&prepared.digest) {
            return Ok(hit);
        }
        let plugin = Arc::new(self.compile(&prepared)?);
        self.insert(plugin.clone());
        Ok(plugin)
    }

    /// [`PluginRuntime::load`] on a blocking thread.
    ///
    /// # Errors
    /// As [`PluginRuntime::load`], or [`Error::Unavailable`] if the blocking task fails.
    pub async fn load_async(
        self: &Arc<Self>,
        stored: Vec<u8>,
        pin: Option<Digest>,
    ) -> Result<Arc<LoadedPlugin>, Error> {
        let this = self.clone();
        let span = tracing::Span::current();
        tokio::task::spawn_blocking(move || span.in_scope(|| this.load(&stored, pin.as_ref())))
            .await
            .map_err(|e| Error::Unavailable {
                reason: e.to_string(),
            })?
    }

    /// Runs `f` (a plugin call) on a blocking thread once a permit is free, keeping the
    /// caller's tracing span.
    ///
    /// # Errors
    /// What `f` returns, or [`Error::Unavailable`] when the runtime is closing or the task fails.
    pub async fn run<R, F>(&self, f: F) -> Result<R, Error>
    where
        R: Send + 'static,
        F: FnOnce() -> Result<R, Error> + Send + 'static,
    {
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| Error::Unavailable {
                reason: "plugin runtime is shutting down".to_string(),
            })?;
        let span = tracing::Span::current();
        let ticker = self.ticker.clone();
        // The permit and the ticker go with the call, not with its caller: a caller aborted
        // mid-call (a stopped controller) frees neither until the call has ended, so calls at
        // once never exceed the permits, and a looping call still meets its deadline.
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let _ticker = ticker;
            span.in_scope(f)
        })
        .instrument(tracing::Span::current())
        .await
        .map_err(|e| Error::Unavailable {
            reason: e.to_string(),
        })?
    }

    /// How many compiled plugins are cached, and their code size in bytes.
    pub fn cache_usage(&self) -> (usize, usize) {
        let cache = self.cache.lock().expect("plugin cache lock");
        (cache.entries.len(), cache.bytes)
    }

    fn cached(&self, digest: &Digest) -> Option<Arc<LoadedPlugin>> {
        let mut cache = self.cache.lock().expect("plugin cache lock");
        cache.clock += 1;
        let now = cache.clock;
        cache.entries.get_mut(digest).map(|(plugin, used)| {
            *used = now;
            plugin.clone()
        })
    }

    fn insert(&self, plugin: Arc<LoadedPlugin>) {
        let mut cache = self.cache.lock().expect("plugin cache lock");
        cache.clock += 1;
        let now = cache.clock;
        let size = plugin.code_bytes;
        if let Some((old, _)) = cache.entries.insert(plugin.digest, (plugin, now)) {
            cache.bytes -= old.code_bytes;
        }
        cache.bytes += size;
        while cache.entries.len() > self.config.cache_max_plugins.max(1)
            || (cache.bytes > self.config.cache_max_bytes && cache.entries.len() > 1)
        {
            let Some(oldest) = cache
                .entries
                .iter()
                .min_by_key(|(_, (_, used))| *used)
                .map(|(d, _)| *d)
            else {
                break;
            };
            if let Some((evicted, _)) = cache.entries.remove(&oldest) {
                cache.bytes -= evicted.code_bytes;
                tracing::debug!(digest = %evicted.digest.short(), "evicted plugin from the cache");
            }
        }
    }

    fn compile(&self, prepared: &WasmBytes) -> Result<LoadedPlugin, Error> {
        let digest = prepared.digest;
        let started = Instant::now();
        let component = Component::new(&self.engine, &prepared.wasm).map_err(|e| Error::Compile {
            digest,
            reason: format!("{e:#}"),
        })?;
        let compile_time = started.elapsed();
        let ty = component.component_type();
        let imports: Vec<String> = ty
            .imports(&self.engine)
            .map(|(name, _)| name.to_string())
            .collect();
        if let Some(bad) = imports
            .iter()
            .find(|name| !ALLOWED_IMPORTS.contains(&name.as_str()))
        {
            return Err(Error::DisallowedImport {
                digest,
                import: bad.clone(),
            });
        }
        let exports: Vec<String> = ty
            .exports(&self.engine)
            .map(|(name, _)| name.to_string())
            .collect();
        let missing: Vec<&str> = REQUIRED_EXPORTS
            .iter()
            .copied()
            .filter(|e| !exports.iter().any(|x| x == e))
            .collect();
        if !missing.is_empty() {
            return Err(Error::UnsupportedWorld {
                digest,
                reason: format!("missing exports: {}", missing.join(", ")),
            });
        }
        let pre = self
            .linker
            .instantiate_pre(&component)
            .and_then(GraphPluginPre::new)
            .map_err(|e| Error::UnsupportedWorld {
                digest,
                reason: format!("{e:#}"),
            })?;
        let image = component.image_range();
        let code_bytes = (image.end as usize).saturating_sub(image.start as usize) + prepared.wasm.len();
        let mut plugin = LoadedPlugin {
            digest,
            info: PluginInfo {
                name: format!("sha256:{}", digest.short()),
                version: String::new(),
                description: String::new(),
            },
            pre,
            engine: self.engine.clone(),
            config: self.config.clone(),
            wasm_size: prepared.wasm.len(),
            code_bytes,
            compile_time,
            imports,
            exports,
        };
        let limits = CallLimits {
            timeout: self.config.default_timeout,
            memory: self.config.default_memory,
        };
        plugin.info = plugin.info(&limits)?;
        tracing::debug!(
            plugin = %plugin.info.name, digest = %digest.short(), compile_ms = compile_time.as_millis() as u64,
            "compiled plugin"
        );
        Ok(plugin)
    }
}

impl LoadedPlugin {
    /// The sha256 of the `.wasm` bytes.
    pub fn digest(&self) -> Digest {
        self.digest
    }

    /// What the plugin says of itself (from `info()` at load time).
    pub fn plugin_info(&self) -> &PluginInfo {
        &self.info
    }

    /// Size of the `.wasm` component in bytes.
    pub fn wasm_size(&self) -> usize {
        self.wasm_size
    }

    /// Bytes of compiled code plus the component, as the cache counts them.
    pub fn code_bytes(&self) -> usize {
        self.code_bytes
    }

    /// How long Cranelift took.
    pub fn compile_time(&self) -> Duration {
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

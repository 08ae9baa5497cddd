//! The plugin runtime: one engine and linker per process, a cache of compiled plugins by
//! digest, and the permits that bound calls running at once.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use tokio::sync::Semaphore;
use tracing::Instrument;
use wasmtime::{
    Engine,
    component::{Component, Linker},
};

use super::{
    bindings::{self, GraphPluginPre},
    call::CallLimits,
    contract::{ALLOWED_IMPORTS, REQUIRED_EXPORTS},
    digest::Digest,
    engine::{self, Allocation, EpochTicker},
    error::Error,
    loaded::{LoadedPlugin, PluginInfo},
    settings::RuntimeConfig,
    source::{self, WasmBytes},
    state::CallState,
};

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

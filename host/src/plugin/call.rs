//! One call into a plugin: a fresh `Store` with a memory limit and an epoch deadline, the `log`
//! import, and every failure mapped to a typed error.

use crate::object::Pointer as _;
use std::time::Duration;

use serde_json::Value;
use wasmtime::{Store, Trap};

use super::{
    bindings::{self, GraphPlugin},
    engine::deadline_ticks,
    error::{Error, Export, GuestErrorKind},
    loaded::{LoadedPlugin, PluginInfo},
    output::{self, StatusOutput, TransformOutput},
    settings::RuntimeConfig,
    state::CallState,
};
use crate::child::{ChildKey, DesiredChild, ObservedChild, Readiness};

/// The limits of one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallLimits {
    /// Wall-clock deadline (enforced in epoch ticks of 10 ms).
    pub timeout: Duration,
    /// Linear memory the guest may grow to, in bytes.
    pub memory: usize,
}

/// What a `transform` or `derive-status` call is about.
#[derive(Debug, Clone, Copy)]
pub struct CallInput<'a> {
    /// Name of the ResourceGraphDefinition.
    pub graph: &'a str,
    /// Revision of the graph.
    pub revision: u64,
    /// `spec.plugin.config` (`{}` when unset).
    pub config: &'a Value,
    /// The instance.
    pub instance: &'a Value,
    /// Live children.
    pub observed: &'a [ObservedChild],
    /// Children the templates rendered (transform only).
    pub rendered: &'a [DesiredChild],
    /// Template nodes not rendered yet, with the reason (transform only).
    pub pending: &'a [(String, String)],
}

impl LoadedPlugin {
    fn store(&self, limits: &CallLimits, config: &RuntimeConfig) -> Store<CallState> {
        let state = CallState {
            plugin: self.info.name.clone(),
            digest: self.digest.short(),
            memory_limit: limits.memory,
            memory_limit_hit: false,
            log_lines: 0,
            log_bytes: 0,
            log_dropped: 0,
            last_log: None,
            max_log_lines: config.max_log_lines,
            max_log_bytes: config.max_log_bytes,
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| s);
        if config.epoch_interruption {
            store.set_epoch_deadline(deadline_ticks(limits.timeout));
        }
        store
    }

    /// Instantiates a fresh instance and runs `f` on it, mapping traps to typed errors.
    fn with_instance<R>(
        &self,
        export: Export,
        limits: &CallLimits,
        f: impl FnOnce(&GraphPlugin, &mut Store<CallState>) -> wasmtime::Result<R>,
    ) -> Result<R, Error> {
        let mut store = self.store(limits, &self.config);
        let result = self
            .pre
            .instantiate(&mut store)
            .and_then(|instance| f(&instance, &mut store));
        let state = store.data();
        if state.log_dropped > 0 {
            tracing::debug!(plugin = %state.plugin, dropped = state.log_dropped, "plugin log lines over the per-call cap were dropped");
        }
        result.map_err(|e| classify(e, state, export, limits))
    }

    /// Creates a fresh store and instance and drops them: the fixed cost every call pays.
    ///
    /// # Errors
    /// Instantiation failed (e.g. the memory limit is below the guest's initial memory).
    #[cfg(feature = "bench")]
    pub fn instantiate_only(&self, limits: &CallLimits) -> Result<(), Error> {
        self.with_instance(Export::Info, limits, |_, _| Ok(()))
    }

    /// Calls `info` `times` times on one instance and returns the total time: the cost of a
    /// host-to-guest call without instantiation (the runtime itself always uses a fresh
    /// instance per call).
    ///
    /// # Errors
    /// A trap or limit error.
    #[cfg(feature = "bench")]
    pub fn time_warm_calls(&self, limits: &CallLimits, times: usize) -> Result<Duration, Error> {
        self.with_instance(Export::Info, limits, |p, s| {
            let started = std::time::Instant::now();
            for _ in 0..times {
                // Each call gets the full deadline, as a fresh instance would.
                s.set_epoch_deadline(deadline_ticks(limits.timeout));
                p.call_info(&mut *s)?;
            }
            Ok(started.elapsed())
        })
    }

    /// Calls `info`.
    ///
    /// # Errors
    /// A trap, timeout or memory-limit error.
    pub(crate) fn info(&self, limits: &CallLimits) -> Result<PluginInfo, Error> {
        let info = self.with_instance(Export::Info, limits, |p, s| p.call_info(s))?;
        Ok(PluginInfo {
            name: info.name,
            version: info.version,
            description: info.description,
        })
    }

    /// Calls `validate-config` with `config` (a JSON object; `{}` for none).
    ///
    /// # Errors
    /// [`Error::Guest`] when the plugin refuses the config, or a trap/limit error.
    pub fn validate_config(&self, limits: &CallLimits, config: &Value) -> Result<(), Error> {
        let text = config.to_string();
        let result = self.with_instance(Export::ValidateConfig, limits, |p, s| {
            p.call_validate_config(s, &text)
        })?;
        result.map_err(|e| self.guest_error(Export::ValidateConfig, e))
    }

    /// Calls `transform`.
    ///
    /// # Errors
    /// [`Error::Guest`], [`Error::InvalidOutput`], or a trap/limit error.
    pub fn transform(&self, limits: &CallLimits, input: &CallInput<'_>) -> Result<TransformOutput, Error> {
        let wit = bindings::TransformInput {
            meta: meta(input),
            instance: input.instance.to_string(),
            observed: observed(input.observed),
            rendered: input
                .rendered
                .iter()
                .map(|d| bindings::Desired {
                    key: key_to_wit(&d.key),
                    object: Value::Object(d.object.clone()).to_string(),
                    ready: readiness_to_wit(d.ready),
                })
                .collect(),
            pending: input
                .pending
                .iter()
                .map(|(id, reason)| bindings::Pending {
                    id: id.clone(),
                    reason: reason.clone(),
                })
                .collect(),
        };
        let result = self.with_instance(Export::Transform, limits, |p, s| p.call_transform(s, &wit))?;
        let out = result.map_err(|e| self.guest_error(Export::Transform, e))?;
        output::transform(out, &self.config).map_err(|(field, reason)| Error::InvalidOutput {
            plugin: self.info.name.clone(),
            export: Export::Transform,
            field,
            reason,
        })
    }

    /// Calls `derive-status`.
    ///
    /// # Errors
    /// [`Error::Guest`], [`Error::InvalidOutput`], or a trap/limit error.
    pub fn derive_status(&self, limits: &CallLimits, input: &CallInput<'_>) -> Result<StatusOutput, Error> {
        let wit = bindings::StatusInput {
            meta: meta(input),
            instance: input.instance.to_string(),
            observed: observed(input.observed),
        };
        let result =
            self.with_instance(Export::DeriveStatus, limits, |p, s| p.call_derive_status(s, &wit))?;
        let out = result.map_err(|e| self.guest_error(Export::DeriveStatus, e))?;
        output::status(out, &self.config).map_err(|(field, reason)| Error::InvalidOutput {
            plugin: self.info.name.clone(),
            export: Export::DeriveStatus,
            field,
            reason,
        })
    }

    fn guest_error(&self, export: Export, error: bindings::PluginError) -> Error {
        let (kind, message) = match error {
            bindings::PluginError::InvalidInput(m) => (GuestErrorKind::InvalidInput, m),
            bindings::PluginError::InvalidConfig(m) => (GuestErrorKind::InvalidConfig, m),
            bindings::PluginError::Internal(m) => (GuestErrorKind::Internal, m),
        };
        Error::Guest {
            plugin: self.info.name.clone(),
            export,
            kind,
            message: truncate(message, 4096),
        }
    }
}

fn truncate(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut cut = max;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push('…');
    }
    text
}

fn classify(error: wasmtime::Error, state: &CallState, export: Export, limits: &CallLimits) -> Error {
    let plugin = state.plugin.clone();
    if state.memory_limit_hit {
        return Error::MemoryLimit {
            plugin,
            export,
            limit: limits.memory,
        };
    }
    match error.downcast_ref::<Trap>() {
        Some(Trap::Interrupt) => Error::Timeout {
            plugin,
            export,
            timeout: limits.timeout,
        },
        Some(trap) => Error::Trap {
            plugin,
            export,
            trap: trap.to_string(),
            last_log: state.last_log.clone(),
        },
        None => Error::Trap {
            plugin,
            export,
            trap: format!("{error:#}"),
            last_log: state.last_log.clone(),
        },
    }
}

fn meta(input: &CallInput<'_>) -> bindings::RequestMeta {
    bindings::RequestMeta {
        graph: input.graph.to_string(),
        revision: input.revision,
        config: input.config.to_string(),
    }
}

pub(super) fn key_to_wit(key: &ChildKey) -> bindings::ChildKey {
    bindings::ChildKey {
        id: key.id.clone(),
        index: key.index,
    }
}

fn readiness_to_wit(ready: Readiness) -> bindings::Readiness {
    match ready {
        Readiness::Unknown => bindings::Readiness::Unknown,
        Readiness::Ready => bindings::Readiness::Ready,
        Readiness::NotReady => bindings::Readiness::NotReady,
    }
}

fn observed(children: &[ObservedChild]) -> Vec<bindings::Observed> {
    children
        .iter()
        .map(|c| {
            let s = |p: &str| {
                c.object
                    .at(p)
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string()
            };
            let namespace = s("/metadata/namespace");
            bindings::Observed {
                key: key_to_wit(&c.key),
                ref_: bindings::ObjectRef {
                    api_version: s("/apiVersion"),
                    kind: s("/kind"),
                    namespace: (!namespace.is_empty()).then_some(namespace),
                    name: s("/metadata/name"),
                },
                object: c.object.to_string(),
            }
        })
        .collect()
}

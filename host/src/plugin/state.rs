//! The state of one call's `Store`: its memory limit, and the `log` import's lines.

use wasmtime::ResourceLimiter;

use super::bindings::{self, Level};

/// The store data of one call.
pub(crate) struct CallState {
    pub(super) plugin: String,
    pub(super) digest: String,
    pub(super) memory_limit: usize,
    pub(super) memory_limit_hit: bool,
    pub(super) log_lines: usize,
    pub(super) log_bytes: usize,
    pub(super) log_dropped: usize,
    pub(super) last_log: Option<String>,
    pub(super) max_log_lines: usize,
    pub(super) max_log_bytes: usize,
}

impl ResourceLimiter for CallState {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.memory_limit {
            self.memory_limit_hit = true;
            wasmtime::bail!("memory limit of {} bytes reached", self.memory_limit);
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 100_000)
    }

    fn instances(&self) -> usize {
        32
    }

    fn tables(&self) -> usize {
        32
    }

    fn memories(&self) -> usize {
        8
    }
}

impl bindings::kroxide::plugin::log::Host for CallState {
    fn emit(&mut self, level: Level, message: String) {
        let line: String = message.chars().take(1024).collect();
        self.last_log = Some(line.clone());
        if self.log_lines >= self.max_log_lines || self.log_bytes + line.len() > self.max_log_bytes {
            self.log_dropped += 1;
            return;
        }
        self.log_lines += 1;
        self.log_bytes += line.len();
        let (plugin, digest) = (self.plugin.as_str(), self.digest.as_str());
        match level {
            Level::Trace => tracing::trace!(plugin, digest, "{line}"),
            Level::Debug => tracing::debug!(plugin, digest, "{line}"),
            Level::Info => tracing::info!(plugin, digest, "{line}"),
            // A plugin's warnings and errors are about one instance; the host decides what needs
            // a human (the instance's conditions say it), so they stay at info.
            Level::Warn | Level::Error => tracing::info!(plugin, digest, guest_level = ?level, "{line}"),
        }
    }
}

impl bindings::kroxide::plugin::types::Host for CallState {}

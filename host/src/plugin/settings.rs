//! The runtime's limits and budgets, and their defaults.

use std::time::Duration;

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

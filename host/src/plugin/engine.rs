//! The one wasmtime `Engine`: deterministic, interruptible, with an explicitly sized pool, and
//! the epoch ticker that enforces call deadlines.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::Duration,
};

use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use super::error::Error;

/// How often the epoch advances; deadlines are counted in these ticks.
pub(crate) const EPOCH_TICK: Duration = Duration::from_millis(10);
/// Stack available to guest code before it traps with a stack overflow.
pub(crate) const MAX_WASM_STACK: usize = 512 * 1024;

/// Which instance allocator the engine ended up with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Allocation {
    /// Pre-reserved slots: instantiation in a few microseconds.
    Pooling {
        /// Linear memories the pool holds.
        memories: u32,
        /// Virtual address space reserved for them, in bytes.
        reserved_bytes: u64,
    },
    /// Memory allocated per instance, because the pool could not be created.
    OnDemand {
        /// Why pooling was not used.
        reason: String,
    },
}

/// Builds the engine. With `pooling`, the pool holds `2 × concurrency` instances (at least 16)
/// whose memories may grow to `max_memory` bytes; if the pool cannot be created (e.g. too
/// little virtual address space), falls back to on-demand allocation and says why.
///
/// # Errors
/// [`Error::Engine`] when even the on-demand engine cannot be created.
pub(crate) fn build(
    concurrency: usize,
    max_memory: u64,
    pooling: bool,
    epochs: bool,
) -> Result<(Engine, Allocation), Error> {
    let mut config = base_config(epochs);
    if pooling {
        let instances = u32::try_from((concurrency * 2).max(16)).unwrap_or(u32::MAX);
        let mut pool = PoolingAllocationConfig::new();
        pool.total_component_instances(instances)
            .total_core_instances(instances.saturating_mul(4))
            .total_memories(instances.saturating_mul(2))
            .total_tables(instances.saturating_mul(4))
            .max_memory_size(usize::try_from(max_memory).unwrap_or(usize::MAX))
            .linear_memory_keep_resident(8 * 1024 * 1024)
            .table_keep_resident(64 * 1024);
        config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        let reserved_bytes =
            u64::from(instances.saturating_mul(2)).saturating_mul(MEMORY_RESERVATION + MEMORY_GUARD);
        match Engine::new(&config) {
            Ok(engine) => {
                let memories = instances.saturating_mul(2);
                return Ok((
                    engine,
                    Allocation::Pooling {
                        memories,
                        reserved_bytes,
                    },
                ));
            }
            Err(e) => {
                let reason = format!(
                    "pooling allocator unavailable ({e}); it needs {} GiB of virtual address space for {} memories",
                    reserved_bytes >> 30,
                    instances.saturating_mul(2)
                );
                let engine = Engine::new(&base_config(epochs)).map_err(|e| Error::Engine {
                    reason: format!("{e:#}"),
                })?;
                return Ok((engine, Allocation::OnDemand { reason }));
            }
        }
    }
    let engine = Engine::new(&config).map_err(|e| Error::Engine {
        reason: format!("{e:#}"),
    })?;
    Ok((
        engine,
        Allocation::OnDemand {
            reason: "pooling disabled".to_string(),
        },
    ))
}

/// Virtual address space reserved per linear memory: wasmtime's 64-bit defaults, set explicitly
/// so the pool's footprint is known (4 GiB lets bounds checks be elided; the guard catches
/// out-of-bounds offsets).
const MEMORY_RESERVATION: u64 = 4 << 30;
const MEMORY_GUARD: u64 = 32 << 20;

/// Threads stay off: wasmtime is built without the `threads` feature, so guests cannot use them.
fn base_config(epochs: bool) -> Config {
    let mut config = Config::new();
    config
        .wasm_component_model(true)
        .epoch_interruption(epochs)
        .max_wasm_stack(MAX_WASM_STACK)
        .memory_reservation(MEMORY_RESERVATION)
        .memory_guard_size(MEMORY_GUARD)
        .cranelift_nan_canonicalization(true)
        .relaxed_simd_deterministic(true)
        .parallel_compilation(true);
    config
}

/// Advances the engine's epoch every [`EPOCH_TICK`] on a plain thread (not a runtime task, so
/// a busy async runtime cannot starve it); stops when dropped.
#[derive(Debug)]
pub(crate) struct EpochTicker {
    stop: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<()>>,
}

impl EpochTicker {
    /// Starts ticking `engine`.
    pub(crate) fn start(engine: Engine) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = thread::Builder::new()
            .name("kroxide-epoch".to_string())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    thread::sleep(EPOCH_TICK);
                    engine.increment_epoch();
                }
            })
            .expect("spawning the epoch thread");
        Self {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Ticks a deadline of `timeout` spans: rounded up, plus one because the current tick may be
/// almost over.
pub(crate) fn deadline_ticks(timeout: Duration) -> u64 {
    let tick = EPOCH_TICK.as_nanos();
    u64::try_from(timeout.as_nanos().div_ceil(tick))
        .unwrap_or(u64::MAX)
        .max(1)
        + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_deadline_is_rounded_up_to_whole_ticks_plus_one() {
        assert_eq!(deadline_ticks(Duration::from_millis(100)), 11);
        assert_eq!(deadline_ticks(Duration::from_millis(101)), 12);
        assert_eq!(deadline_ticks(Duration::from_millis(1)), 2);
    }

    #[test]
    fn the_pooled_engine_builds_with_the_default_sizes() {
        let (_, allocation) = build(2, 64 << 20, true, true).unwrap();
        assert!(
            matches!(allocation, Allocation::Pooling { memories: 32, .. }),
            "{allocation:?}"
        );
    }
}

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
mod contract;
mod digest;
pub mod engine;
mod error;
mod loaded;
pub(crate) mod output;
mod runtime;
mod settings;
pub mod source;
mod state;

pub use call::{CallInput, CallLimits};
pub use contract::WORLD_VERSION;
pub use digest::{Digest, InvalidPin};
pub use error::{Error, Export, GuestErrorKind};
pub use loaded::{LoadedPlugin, PluginInfo};
pub use output::{PluginCondition, PluginEvent, StatusOutput, TransformOutput};
pub use runtime::PluginRuntime;
pub use settings::RuntimeConfig;
pub use source::WasmBytes;

//! kroxide: a kro-compatible Kubernetes controller whose graphs may delegate to sandboxed
//! WebAssembly plugins.
//!
//! Data flow of one instance reconcile, one module per stage:
//!
//! ```text
//! watch -> graph revision -> render (templates) -> plugin transform -> apply -> prune
//!       -> observe -> derive status -> status patch
//! ```
//!
//! Start with [`plugin::PluginRuntime`] for the sandbox.

pub mod child;
pub mod plugin;

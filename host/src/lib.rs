//! kroxide: a kro-compatible Kubernetes controller whose graphs may delegate to sandboxed
//! WebAssembly plugins.
//!
//! Data flow of one instance reconcile, one module per stage:
//!
//! ```text
//! watch -> graph revision -> render (templates, then plugin transform) -> apply -> prune
//!       -> observe -> derive status -> status patch
//! ```
//!
//! Start with [`render::desired`] for what an instance should have, and
//! [`plugin::PluginRuntime`] for the sandbox.

pub mod cel;
pub mod child;
pub mod cli;
pub mod cluster;
pub mod commands;
pub mod config;
pub mod controller;
pub mod derive;
pub mod fuzzing;
pub mod graph;
#[cfg(test)]
mod layers;
pub mod leader;
pub mod metadata;
pub mod metrics;
mod object;
pub mod plugin;
pub mod probes;
pub mod render;
pub mod rgd;
pub mod status;
pub mod yaml;

//! kroxide: a kro-compatible Kubernetes controller whose graphs may delegate to sandboxed
//! WebAssembly plugins.
//!
//! One instance reconcile, one module per stage (docs/architecture.md draws the whole picture):
//!
//! ```text
//! observe -> resolve (graph::runtime) -> transform (templates, plugin, labels) -> apply
//!   -> prune -> status (CEL fields, plugin derive-status, conditions) -> status patch
//! ```
//!
//! The controller ([`controller`]) and `kroxide render` ([`commands::render`]) run the same
//! stages; what they read of a cluster comes through [`cluster::Cluster`]. Start with
//! [`transform::desired`] for what an instance should have, and [`plugin::PluginRuntime`] for
//! the sandbox. Items are `pub(crate)` unless the binary, the tests, the benchmarks or the fuzz
//! targets need them.

pub mod allocations;
pub mod cel;
pub mod child;
pub mod cli;
pub mod cluster;
pub mod commands;
pub mod config;
pub mod controller;
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
pub mod rgd;
pub mod status;
pub mod transform;
pub mod yaml;

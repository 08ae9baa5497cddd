//! The graph revision: a ResourceGraphDefinition validated and compiled once (schema, CRD,
//! nodes in topological order with their expressions), ready to resolve instances.
//!
//! Everything that can be known without a cluster is checked here, with kro's wording: ids and
//! reserved words, templates, reserved labels, every expression (syntax, functions, variables,
//! `schema.*` paths), `forEach` identity, dependencies and cycles, status fields.

mod build;
mod conditions;
pub(crate) use conditions::STATUSES as CONDITION_STATUSES;
pub mod catalog;
pub(crate) mod compat;
pub mod crd;
pub mod dag;
mod expressions;
mod markers;
mod model;
pub(crate) mod pluralize;
mod reserved;
pub mod runtime;
pub mod simpleschema;
mod status;
mod typecheck;
pub(crate) mod types;

pub use build::build;
pub use catalog::{Catalog, CustomKinds};
pub use model::{Error, Graph, Limits};
pub(crate) use model::{Node, NodeKind, static_kind};

#[cfg(test)]
mod tests;
#[cfg(test)]
mod typecheck_tests;

//! An in-memory Kubernetes API server, faithful enough that kubectl and kube-rs cannot tell it
//! from a real one for everything kroxide does.

pub mod admission;
pub mod crd;
pub mod defaults;
pub mod error;
pub mod fields;
pub mod jsonpath;
pub mod managed;
pub mod patch;
pub mod registry;
pub mod request;
pub mod rules;
pub mod shape;
pub mod state;
pub mod store;
pub mod table;

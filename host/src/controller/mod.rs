//! The controller: watches ResourceGraphDefinitions and serves one instance kind per graph.
//!
//! kube-rs's `Controller` fixes its root kind when it is built, and kroxide learns instance
//! kinds at run time (one per graph, added and removed as graphs come and go). So the
//! controller runs reflectors per kind ([`informers`]) that feed a router, which turns changes
//! into keys on two deduplicating work queues ([`queue`]): one for graphs ([`rgd`]), one for
//! instances ([`instance`]), each with its own workers.

mod action;
mod apply;
mod children;
mod client;
mod context;
mod error;
pub(crate) mod informers;
pub(crate) mod instance;
mod interest;
mod key;
mod memory;
mod prune;
pub(crate) mod queue;
mod revisions;
pub(crate) mod rgd;
mod router;
mod run;
mod wire;
mod worker;

pub use client::client;
pub use context::{Context, context};
pub use error::{Error, describe};
pub use run::{Footprint, Running, run, start};

//! The subcommands of the `kroxide` binary as library functions: the offline ones return
//! text; `controller` runs until it is signalled.

pub(crate) mod controller;
#[cfg(feature = "demo")]
pub(crate) mod demo;
pub mod generate;
pub(crate) mod plugin;
pub mod render;
pub(crate) mod validate;

mod error;
mod outcome;

#[cfg(feature = "demo")]
pub use error::DemoError;
pub use error::Error;
pub use outcome::{EXIT_PENDING, Outcome};

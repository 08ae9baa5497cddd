//! Host bindings generated from `wit/plugin.wit`, and nothing else.
#![allow(missing_docs, missing_debug_implementations, clippy::all)]

wasmtime::component::bindgen!({
    path: "../wit",
    world: "graph-plugin",
});

pub use self::kroxide::plugin::{log::Level, types::*};

//! Bindings generated once from `wit/plugin.wit`; plugin authors use the SDK's types instead.
#![allow(unsafe_code, missing_docs, missing_debug_implementations, unreachable_pub)]
#![allow(clippy::all)]

wit_bindgen::generate!({
    path: "../wit",
    world: "graph-plugin",
    pub_export_macro: true,
    export_macro_name: "__export_raw",
    default_bindings_module: "kroxide_plugin::bindings",
});

pub use kroxide::plugin::log::Level;
pub use kroxide::plugin::types::*;

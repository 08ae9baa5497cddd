//! Guest SDK for kroxide graph plugins: write a plugin in Rust, test it natively, build it into
//! a sandboxed WebAssembly component.
//!
//! A plugin is a pure function pair. `transform` turns an instance of a graph's kind into the
//! children it should have; `derive_status` turns the children the cluster reports into the
//! instance's status. The kroxide host does every read and write; the plugin has no clock, no
//! randomness, no files and no network, and each call runs in a fresh sandbox with a deadline and
//! a memory limit.
//!
//! # A complete plugin
//!
//! This plugin gives every instance a ConfigMap whose data comes from the instance's spec, with
//! a prefix taken from the plugin's configuration, and reports how many keys it holds.
//!
//! ```
//! use std::collections::BTreeMap;
//!
//! use kroxide_plugin::{Condition, Context, Desired, Error, Plugin, Result, Status};
//! use serde::Deserialize;
//! use serde_json::json;
//!
//! /// The plugin's configuration: `spec.plugin.config` of the RGD.
//! #[derive(Deserialize, Default)]
//! #[serde(deny_unknown_fields, rename_all = "camelCase")]
//! struct Config {
//!     #[serde(default)]
//!     key_prefix: String,
//! }
//!
//! /// The instance's spec.
//! #[derive(Deserialize)]
//! struct Spec {
//!     settings: BTreeMap<String, String>,
//! }
//!
//! struct Settings;
//!
//! impl Plugin for Settings {
//!     type Config = Config;
//!     const NAME: &'static str = "settings";
//!     const VERSION: &'static str = "0.1.0";
//!     const DESCRIPTION: &'static str = "One ConfigMap of settings per instance";
//!
//!     fn validate_config(config: &Config) -> Result<()> {
//!         if config.key_prefix.contains('/') {
//!             return Err(Error::invalid_config("keyPrefix: must not contain '/'"));
//!         }
//!         Ok(())
//!     }
//!
//!     fn transform(cx: &Context<'_, Config>, desired: &mut Desired) -> Result<()> {
//!         let spec: Spec = cx.instance().spec()?;
//!         let data: BTreeMap<String, String> = spec
//!             .settings
//!             .into_iter()
//!             .map(|(k, v)| (format!("{}{k}", cx.config().key_prefix), v))
//!             .collect();
//!         kroxide_plugin::debug!("{} keys for {}", data.len(), cx.instance().name());
//!         desired.put(
//!             "settings",
//!             json!({
//!                 "apiVersion": "v1",
//!                 "kind": "ConfigMap",
//!                 "metadata": {"name": format!("{}-settings", cx.instance().name())},
//!                 "data": data,
//!             }),
//!         );
//!         Ok(())
//!     }
//!
//!     fn derive_status(cx: &Context<'_, Config>, status: &mut Status) -> Result<()> {
//!         let keys = cx
//!             .observed()
//!             .field("settings", "/data")
//!             .and_then(|d| d.as_object())
//!             .map_or(0, |d| d.len());
//!         let exists = cx.observed().get("settings").is_some();
//!         status
//!             .set("keys", keys)
//!             .condition(Condition::new("SettingsPublished", exists).reason("ConfigMapObserved"))
//!             .ready(exists);
//!         Ok(())
//!     }
//! }
//!
//! // In the plugin crate (built for wasm32-unknown-unknown) this one line exports it:
//! kroxide_plugin::export!(Settings);
//!
//! // And under `cargo test` the same code runs natively:
//! use kroxide_plugin::testing::Call;
//!
//! let instance = json!({
//!     "apiVersion": "kro.run/v1alpha1", "kind": "App",
//!     "metadata": {"name": "shop", "namespace": "default"},
//!     "spec": {"settings": {"color": "blue"}}
//! });
//! let call = Call::new(instance).config(json!({"keyPrefix": "app."}));
//! let out = call.transform::<Settings>().unwrap();
//! assert_eq!(out.get("settings").unwrap()["data"], json!({"app.color": "blue"}));
//!
//! let live = out.get("settings").unwrap().clone();
//! let status = call.observe("settings", live).derive_status::<Settings>().unwrap();
//! assert_eq!(status.status, json!({"keys": 1}));
//!
//! let bad = Call::new(json!({})).config(json!({"keyPrefix": "a/b"}));
//! assert_eq!(bad.validate_config::<Settings>(), Err(Error::invalid_config("keyPrefix: must not contain '/'")));
//! ```
//!
//! # Building
//!
//! A plugin crate is a `cdylib` built for `wasm32-unknown-unknown` and linked into a component by
//! `wasm-component-ld`, which rustup ships with the toolchain. Its `.cargo/config.toml`:
//!
//! ```toml
//! [build]
//! target = "wasm32-unknown-unknown"
//!
//! [target.wasm32-unknown-unknown]
//! linker = "wasm-component-ld"
//! rustflags = ["-C", "link-arg=-zstack-size=262144"]
//! ```
//!
//! Until the SDK is published, depend on it by path or git
//! (`kroxide-plugin = { git = "https://github.com/kroxide/kroxide" }`). `docs/plugins.md` in the
//! repository walks from an empty directory to a ConfigMap.
//!
//! # Determinism
//!
//! JSON objects are written with sorted keys and the desired set is sorted by key, so output is
//! byte-stable as long as the plugin itself does not depend on `HashMap` iteration order.
//! `kroxide render --check-determinism` checks it.

#[cfg(target_arch = "wasm32")]
mod alloc;
mod de;
mod desired;
mod error;
mod instance;
pub mod log;
mod observed;
mod plugin;
#[cfg(not(target_arch = "wasm32"))]
pub mod testing;
mod types;

#[doc(hidden)]
pub mod bindings;
#[doc(hidden)]
pub mod glue;

#[cfg(target_arch = "wasm32")]
#[global_allocator]
static ALLOCATOR: alloc::Bump = alloc::Bump::new();

pub use desired::{Desired, DesiredChild, PendingNode, Status};
pub use error::{Error, Result};
pub use instance::Instance;
pub use observed::{Child, Observed};
pub use plugin::{Context, Plugin};
pub use types::{Condition, ConditionStatus, Event, Key, Readiness, Severity, is_valid_id};

/// Exports a [`Plugin`] as the component's `graph-plugin` world: `kroxide_plugin::export!(MyPlugin);`
/// at the top level of the plugin crate.
#[macro_export]
macro_rules! export {
    ($plugin:ty) => {
        const _: () = {
            struct KroxideGuest;

            impl $crate::bindings::Guest for KroxideGuest {
                fn info() -> $crate::bindings::PluginInfo {
                    $crate::glue::info::<$plugin>()
                }
                fn validate_config(
                    config: $crate::bindings::Json,
                ) -> ::core::result::Result<(), $crate::bindings::PluginError> {
                    $crate::glue::validate_config::<$plugin>(config)
                }
                fn transform(
                    input: $crate::bindings::TransformInput,
                ) -> ::core::result::Result<$crate::bindings::TransformOutput, $crate::bindings::PluginError>
                {
                    $crate::glue::transform::<$plugin>(input)
                }
                fn derive_status(
                    input: $crate::bindings::StatusInput,
                ) -> ::core::result::Result<$crate::bindings::StatusOutput, $crate::bindings::PluginError>
                {
                    $crate::glue::derive_status::<$plugin>(input)
                }
            }

    $crate::bindings::__export_raw!(KroxideGuest with_types_in $crate::bindings);
        };
    };
}

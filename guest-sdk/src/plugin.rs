//! The trait a plugin implements, and the context each call receives.

use serde::de::DeserializeOwned;

use crate::{
    desired::{Desired, Status},
    error::Result,
    instance::Instance,
    observed::Observed,
};

/// A graph plugin. Implement it on a unit struct and export it with
/// [`export!`](crate::export): `kroxide_plugin::export!(MyPlugin);`.
///
/// Every function must be pure and deterministic: same input, same output, byte for byte. The
/// SDK serializes JSON with sorted keys and returns children sorted by key, so using
/// `serde_json` values and `BTreeMap`s is enough; avoid `HashMap` iteration order in output.
pub trait Plugin {
    /// The plugin's configuration, decoded from the RGD's `spec.plugin.config`. When the RGD
    /// sets none, `Default::default()` is used.
    type Config: DeserializeOwned + Default;

    /// The plugin's name, as `kroxide plugin inspect` and the RGD status show it.
    const NAME: &'static str;
    /// The plugin's version; `env!("CARGO_PKG_VERSION")` is a good choice.
    const VERSION: &'static str;
    /// One line saying what the plugin does.
    const DESCRIPTION: &'static str = "";

    /// Checks a configuration beyond what decoding already checks. Called when a graph naming
    /// the plugin is admitted and whenever its config changes.
    ///
    /// # Errors
    /// Return [`Error::InvalidConfig`](crate::Error::InvalidConfig) naming the field; the graph
    /// is then not served and reports `PluginConfigInvalid`.
    fn validate_config(config: &Self::Config) -> Result<()> {
        let _ = config;
        Ok(())
    }

    /// Turns the instance into its children. `desired` arrives holding what the graph's
    /// templates rendered; leave in it exactly the children the instance should have.
    ///
    /// # Errors
    /// Any error puts the instance in `ERROR` with the message; the host retries with backoff.
    fn transform(cx: &Context<'_, Self::Config>, desired: &mut Desired) -> Result<()>;

    /// Derives the instance's status from its live children. The default sets nothing and
    /// leaves readiness to the host.
    ///
    /// # Errors
    /// Any error puts the instance in `ERROR` with the message.
    fn derive_status(cx: &Context<'_, Self::Config>, status: &mut Status) -> Result<()> {
        let _ = (cx, status);
        Ok(())
    }
}

/// What a call is about: the graph, the configuration, the instance and its live children.
#[derive(Debug)]
pub struct Context<'a, C> {
    pub(crate) graph: &'a str,
    pub(crate) revision: u64,
    pub(crate) config: &'a C,
    pub(crate) instance: &'a Instance,
    pub(crate) observed: &'a Observed,
}

impl<'a, C> Context<'a, C> {
    /// The name of the ResourceGraphDefinition.
    pub fn graph(&self) -> &'a str {
        self.graph
    }

    /// The graph revision; it changes with the RGD spec, the plugin or its config.
    pub fn revision(&self) -> u64 {
        self.revision
    }

    /// The decoded configuration.
    pub fn config(&self) -> &'a C {
        self.config
    }

    /// The instance.
    pub fn instance(&self) -> &'a Instance {
        self.instance
    }

    /// The children that exist now.
    pub fn observed(&self) -> &'a Observed {
        self.observed
    }
}

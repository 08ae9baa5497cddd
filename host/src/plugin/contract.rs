//! The plugin contract: the `kroxide:plugin` world version this host speaks, the imports a
//! plugin may use and the exports it must have.

/// The version of the `kroxide:plugin` world this host speaks.
pub use kroxide_contract::WORLD_VERSION;

/// Imports a plugin may have: only ours.
pub(crate) const ALLOWED_IMPORTS: [&str; 2] = ["kroxide:plugin/log@0.1.0", "kroxide:plugin/types@0.1.0"];
/// Exports a plugin must have.
pub(crate) const REQUIRED_EXPORTS: [&str; 4] = ["info", "validate-config", "transform", "derive-status"];

//! The names the kroxide plugin contract reserves, shared by the host (which enforces them on
//! every plugin output) and the guest SDK (which refuses them before a plugin returns), so the
//! two cannot disagree. No dependencies; builds for the host and for `wasm32-unknown-unknown`.

#![no_std]

/// The version of the `kroxide:plugin` world (`wit/plugin.wit`) this contract describes.
pub const WORLD_VERSION: &str = "0.1.0";

/// Status fields only the host writes; a plugin's `derive-status` may not set them.
pub const HOST_STATUS_FIELDS: [&str; 2] = ["state", "conditions"];

/// Condition types only the host sets (kro's); a plugin's conditions may not use them.
pub const HOST_CONDITIONS: [&str; 4] = ["Ready", "InstanceManaged", "GraphResolved", "ResourcesReady"];

/// Whether `id` is a valid resource id: kro's rule `^[a-z][a-zA-Z0-9]*$`, for RGD resources
/// and a plugin's desired children alike.
pub fn is_valid_id(id: &str) -> bool {
    let mut chars = id.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase()) && chars.all(|c| c.is_ascii_alphanumeric())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_follow_kros_rule() {
        assert!(is_valid_id("webApp2"));
        assert!(!is_valid_id("web-app"));
        assert!(!is_valid_id("Web"));
        assert!(!is_valid_id(""));
    }
}

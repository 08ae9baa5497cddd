//! The error a plugin returns, and how it reaches the instance's conditions.

use std::fmt;

use crate::bindings;

/// Why a plugin call failed. The message ends up in the instance's `Ready` condition, so it
/// should name the field at fault, e.g. `spec.size: must be one of small, medium, large`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// The instance or an observed child is not what the plugin can work with.
    InvalidInput(String),
    /// The plugin's configuration (`spec.plugin.config` of the RGD) is not valid.
    InvalidConfig(String),
    /// Anything else.
    Internal(String),
}

/// The result of a plugin function.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// The instance or an observed child is not usable.
    pub fn invalid_input(message: impl Into<String>) -> Self {
        Self::InvalidInput(message.into())
    }

    /// The configuration is not valid.
    pub fn invalid_config(message: impl Into<String>) -> Self {
        Self::InvalidConfig(message.into())
    }

    /// Any other failure.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::Internal(message.into())
    }

    /// The message without its kind.
    pub fn message(&self) -> &str {
        match self {
            Self::InvalidInput(m) | Self::InvalidConfig(m) | Self::Internal(m) => m,
        }
    }

    pub(crate) fn into_wit(self) -> bindings::PluginError {
        match self {
            Self::InvalidInput(m) => bindings::PluginError::InvalidInput(m),
            Self::InvalidConfig(m) => bindings::PluginError::InvalidConfig(m),
            Self::Internal(m) => bindings::PluginError::Internal(m),
        }
    }

    #[cfg_attr(target_arch = "wasm32", allow(dead_code))]
    pub(crate) fn from_wit(error: bindings::PluginError) -> Self {
        match error {
            bindings::PluginError::InvalidInput(m) => Self::InvalidInput(m),
            bindings::PluginError::InvalidConfig(m) => Self::InvalidConfig(m),
            bindings::PluginError::Internal(m) => Self::Internal(m),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidInput(m) => write!(f, "invalid input: {m}"),
            Self::InvalidConfig(m) => write!(f, "invalid config: {m}"),
            Self::Internal(m) => write!(f, "{m}"),
        }
    }
}

impl std::error::Error for Error {}

/// Decodes JSON into `T`, naming the path of the first field that does not fit, prefixed with
/// `what` (e.g. `spec.replicas: invalid type: string "3", expected u32`).
pub(crate) fn decode<T: serde::de::DeserializeOwned>(
    value: &serde_json::Value,
    what: &str,
) -> std::result::Result<T, String> {
    crate::de::from_value(value).map_err(|e| format!("{}: {}", e.path(what), e.message()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)]
    struct Spec {
        replicas: u32,
    }

    #[test]
    fn decode_names_the_field_that_does_not_fit() {
        let err = decode::<Spec>(&serde_json::json!({"replicas": "3"}), "spec").unwrap_err();
        assert!(
            err.starts_with("spec.replicas: invalid type: string \"3\""),
            "{err}"
        );
    }

    #[test]
    fn decode_names_a_missing_field_at_the_top() {
        let err = decode::<Spec>(&serde_json::json!({}), "spec").unwrap_err();
        assert_eq!(err, "spec: missing field `replicas`");
    }
}

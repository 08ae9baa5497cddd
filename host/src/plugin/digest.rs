//! The sha256 digest that names a plugin, and pins written as text.

use std::fmt;

use sha2::{Digest as _, Sha256};

/// A `sha256` pin that is not a digest; [`super::Error::InvalidPin`] once in the runtime.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("sha256 pin {0:?} is not 64 hex digits (optionally prefixed sha256:)")]
pub struct InvalidPin(pub String);

/// The sha256 of a plugin's decompressed `.wasm` bytes.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest([u8; 32]);

impl Digest {
    /// The digest of `wasm`.
    pub fn of(wasm: &[u8]) -> Self {
        Self(Sha256::digest(wasm).into())
    }

    /// Parses a pin: 64 hex digits, optionally prefixed `sha256:`, any case.
    ///
    /// # Errors
    /// [`InvalidPin`] when the text is not such a digest.
    pub(crate) fn parse(pin: &str) -> Result<Self, InvalidPin> {
        let hex = pin.trim().strip_prefix("sha256:").unwrap_or(pin.trim());
        let invalid = || InvalidPin(pin.to_string());
        if hex.len() != 64 {
            return Err(invalid());
        }
        let mut out = [0u8; 32];
        for (i, byte) in out.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).map_err(|_| invalid())?;
        }
        Ok(Self(out))
    }

    /// The first 12 hex digits, for logs and names.
    pub(crate) fn short(&self) -> String {
        self.to_string()[..12].to_string()
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{self}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pin_parses_with_or_without_its_prefix_in_any_case() {
        let d = Digest::of(b"x");
        let hex = d.to_string();
        assert_eq!(Digest::parse(&hex).unwrap(), d);
        assert_eq!(
            Digest::parse(&format!("sha256:{}", hex.to_uppercase())).unwrap(),
            d
        );
        assert!(matches!(Digest::parse("sha256:abc"), Err(InvalidPin(_))));
    }
}

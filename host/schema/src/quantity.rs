//! Kubernetes resource quantities (`500m`, `1.5Gi`, `1e3`): parsing, exact arithmetic and the
//! canonical form the API server stores (`1000m` is stored as `"1"`, `1536Mi` stays, `1.5Gi`
//! becomes `"1536Mi"`).
//!
//! Values are kept exactly as an integer count of nano-units (10⁻⁹), like Kubernetes' own
//! `inf.Dec` at scale 9: anything finer is rounded up to the next nano-unit, as the API server
//! does.

use std::{cmp::Ordering, fmt, str::FromStr};

/// How a quantity prints: as written, Kubernetes keeps the family of the suffix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    /// `Ki`, `Mi`, ... (powers of 1024).
    BinarySi,
    /// `m`, `k`, `M`, ... or no suffix (powers of 1000).
    DecimalSi,
    /// `e3`, `E6`, ...
    DecimalExponent,
}

/// A quantity: an exact value and the format it prints in. Equality and order compare values
/// only (`1` equals `1000m`).
#[derive(Debug, Clone, Copy)]
pub struct Quantity {
    /// Value in nano-units.
    nanos: i128,
    format: Format,
}

/// Why a string is not a quantity.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// Not of the form `<number><suffix>`.
    #[error("quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'")]
    Syntax,
    /// Too large to represent.
    #[error("quantity is too large")]
    Overflow,
}

const NANO: i128 = 1_000_000_000;

fn pow10(exp: u32) -> Option<i128> {
    10i128.checked_pow(exp)
}

impl FromStr for Quantity {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        let s = s.trim();
        let split = s
            .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-'))
            .unwrap_or(s.len());
        let (number, suffix) = s.split_at(split);
        let (negative, digits) = match number.as_bytes().first() {
            Some(b'-') => (true, &number[1..]),
            Some(b'+') => (false, &number[1..]),
            _ => (false, number),
        };
        if digits.is_empty()
            || digits.contains(['+', '-'])
            || digits.matches('.').count() > 1
            || digits == "."
        {
            return Err(Error::Syntax);
        }
        let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
        // The number as an integer `mantissa` times 10^-scale.
        let mut mantissa: i128 = 0;
        for c in whole.chars().chain(fraction.chars()) {
            let d = i128::from(c.to_digit(10).ok_or(Error::Syntax)?);
            mantissa = mantissa
                .checked_mul(10)
                .and_then(|m| m.checked_add(d))
                .ok_or(Error::Overflow)?;
        }
        let scale = fraction.len() as i32;
        let (format, base2, base10): (Format, u32, i32) = match suffix {
            "" => (Format::DecimalSi, 0, 0),
            "n" => (Format::DecimalSi, 0, -9),
            "u" => (Format::DecimalSi, 0, -6),
            "m" => (Format::DecimalSi, 0, -3),
            "k" => (Format::DecimalSi, 0, 3),
            "M" => (Format::DecimalSi, 0, 6),
            "G" => (Format::DecimalSi, 0, 9),
            "T" => (Format::DecimalSi, 0, 12),
            "P" => (Format::DecimalSi, 0, 15),
            "E" => (Format::DecimalSi, 0, 18),
            "Ki" => (Format::BinarySi, 10, 0),
            "Mi" => (Format::BinarySi, 20, 0),
            "Gi" => (Format::BinarySi, 30, 0),
            "Ti" => (Format::BinarySi, 40, 0),
            "Pi" => (Format::BinarySi, 50, 0),
            "Ei" => (Format::BinarySi, 60, 0),
            other => {
                let rest = other.strip_prefix(['e', 'E']).ok_or(Error::Syntax)?;
                let exp: i32 = rest.parse().map_err(|_| Error::Syntax)?;
                if !(-30..=30).contains(&exp) {
                    return Err(Error::Overflow);
                }
                (Format::DecimalExponent, 0, exp)
            }
        };
        // nanos = mantissa * 2^base2 * 10^(base10 - scale + 9), rounded up (away from zero) when
        // the exponent is negative.
        let value = mantissa.checked_mul(1i128 << base2).ok_or(Error::Overflow)?;
        let exp = base10 - scale + 9;
        let nanos = if exp >= 0 {
            value
                .checked_mul(pow10(exp as u32).ok_or(Error::Overflow)?)
                .ok_or(Error::Overflow)?
        } else {
            let div = pow10((-exp) as u32).ok_or(Error::Overflow)?;
            value / div + i128::from(value % div != 0)
        };
        Ok(Self {
            nanos: if negative { -nanos } else { nanos },
            format,
        })
    }
}

impl Quantity {
    /// A quantity of `value` whole units, printed in decimal SI.
    pub fn from_int(value: i64) -> Self {
        Self {
            nanos: i128::from(value) * NANO,
            format: Format::DecimalSi,
        }
    }

    /// The format it prints in.
    pub fn format(&self) -> Format {
        self.format
    }

    /// The value in nano-units.
    pub fn nanos(&self) -> i128 {
        self.nanos
    }

    /// Whether the value is a whole number.
    pub fn is_integer(&self) -> bool {
        self.nanos % NANO == 0
    }

    /// The value as an `i64`, when it is a whole number that fits.
    pub fn as_i64(&self) -> Option<i64> {
        if self.is_integer() {
            i64::try_from(self.nanos / NANO).ok()
        } else {
            None
        }
    }

    /// The value as a float (may lose precision).
    pub fn as_f64(&self) -> f64 {
        self.nanos as f64 / NANO as f64
    }

    /// -1, 0 or 1.
    pub fn sign(&self) -> i64 {
        self.nanos.signum() as i64
    }

    /// The sum, in the format of `self`.
    ///
    /// # Errors
    /// [`Error::Overflow`].
    pub fn add(&self, other: &Self) -> Result<Self, Error> {
        Ok(Self {
            nanos: self.nanos.checked_add(other.nanos).ok_or(Error::Overflow)?,
            format: self.format,
        })
    }

    /// The difference, in the format of `self`.
    ///
    /// # Errors
    /// [`Error::Overflow`].
    pub fn sub(&self, other: &Self) -> Result<Self, Error> {
        Ok(Self {
            nanos: self.nanos.checked_sub(other.nanos).ok_or(Error::Overflow)?,
            format: self.format,
        })
    }

    /// The canonical string, as the API server stores it.
    pub fn canonical(&self) -> String {
        self.to_string()
    }
}

impl PartialEq for Quantity {
    fn eq(&self, other: &Self) -> bool {
        self.nanos == other.nanos
    }
}

impl Eq for Quantity {}

impl PartialOrd for Quantity {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Quantity {
    fn cmp(&self, other: &Self) -> Ordering {
        self.nanos.cmp(&other.nanos)
    }
}

/// The largest multiple-of-three exponent (≤ 18) at which `nanos` is a whole mantissa.
fn decimal_parts(nanos: i128) -> (i128, i32) {
    if nanos == 0 {
        return (0, 0);
    }
    let mut exp = -9;
    let mut mantissa = nanos;
    while exp < 18 && mantissa % 1000 == 0 {
        mantissa /= 1000;
        exp += 3;
    }
    (mantissa, exp)
}

impl fmt::Display for Quantity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.format == Format::BinarySi && self.is_integer() {
            let units = self.nanos / NANO;
            if units.abs() >= 1024 || units == 0 {
                let suffixes = ["", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"];
                let mut value = units;
                let mut i = 0;
                while i < 6 && value != 0 && value % 1024 == 0 {
                    value /= 1024;
                    i += 1;
                }
                return write!(f, "{value}{}", suffixes[i]);
            }
            return write!(f, "{units}");
        }
        let (mantissa, exp) = decimal_parts(self.nanos);
        if self.format == Format::DecimalExponent {
            return if exp == 0 {
                write!(f, "{mantissa}")
            } else {
                write!(f, "{mantissa}e{exp}")
            };
        }
        let suffix = match exp {
            -9 => "n",
            -6 => "u",
            -3 => "m",
            3 => "k",
            6 => "M",
            9 => "G",
            12 => "T",
            15 => "P",
            18 => "E",
            _ => "",
        };
        write!(f, "{mantissa}{suffix}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn canonical(s: &str) -> String {
        s.parse::<Quantity>().unwrap().canonical()
    }

    #[test]
    fn decimal_quantities_take_the_largest_whole_suffix() {
        assert_eq!(canonical("1000m"), "1");
        assert_eq!(canonical("0.5"), "500m");
        assert_eq!(canonical("1500m"), "1500m");
        assert_eq!(canonical("1000"), "1k");
        assert_eq!(canonical("2G"), "2G");
        assert_eq!(canonical("0"), "0");
        assert_eq!(canonical("100Mi"), "100Mi");
    }

    #[test]
    fn binary_quantities_stay_binary_when_whole() {
        assert_eq!(canonical("1.5Gi"), "1536Mi");
        assert_eq!(canonical("2048Mi"), "2Gi");
        assert_eq!(canonical("0.5Ki"), "512");
        assert_eq!(canonical("0.1Ki"), "102400m");
    }

    #[test]
    fn exponents_and_signs_parse() {
        assert_eq!(canonical("1e3"), "1e3");
        assert_eq!(canonical("-2"), "-2");
        assert_eq!(canonical("+5m"), "5m");
        assert_eq!(canonical("0.1n"), "1n");
    }

    #[test]
    fn comparisons_ignore_the_format() {
        let a: Quantity = "1Gi".parse().unwrap();
        let b: Quantity = "1000Mi".parse().unwrap();
        assert!(a > b);
        assert_eq!(
            "1".parse::<Quantity>().unwrap(),
            "1000m".parse::<Quantity>().unwrap()
        );
    }

    #[test]
    fn garbage_is_refused() {
        for bad in ["", "abc", "1.2.3", "1Zi", "--1", "1 Gi", "."] {
            assert!(bad.parse::<Quantity>().is_err(), "{bad}");
        }
    }
}

//! Phone numbers in E.164 form.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A phone number in E.164: `+`, a country code that does not start with 0, and at most 15
/// digits in all (ITU-T E.164). Normalising what people type ("(201) 555-0100") into this form is
/// the ingest worker's job; this type only accepts the result.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct E164(String);

/// Why a string is not an E.164 number.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "must be an E.164 number such as +12015550100 (a '+', then 8 to 15 digits, not starting with 0)"
)]
pub struct InvalidE164;

impl E164 {
    /// Parses a number already in E.164 form.
    pub fn parse(s: &str) -> Result<Self, InvalidE164> {
        let digits = s.strip_prefix('+').ok_or(InvalidE164)?;
        let valid = (8..=15).contains(&digits.len())
            && digits.bytes().all(|b| b.is_ascii_digit())
            && !digits.starts_with('0');
        if valid {
            Ok(Self(s.to_owned()))
        } else {
            Err(InvalidE164)
        }
    }

    /// The number as text, with its `+`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The last four digits: what logs and traces may show of a number.
    pub fn last_four(&self) -> &str {
        &self.0[self.0.len() - 4..]
    }
}

impl FromStr for E164 {
    type Err = InvalidE164;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl fmt::Display for E164 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for E164 {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for E164 {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn accepts_and_rejects() {
        assert!(E164::parse("+12015550100").is_ok());
        assert!(E164::parse("+442071838750").is_ok());
        for bad in [
            "12015550100",
            "+0201555",
            "+1201",
            "+1201555010012345",
            "+1 201 555 0100",
            "",
        ] {
            assert!(E164::parse(bad).is_err(), "{bad}");
        }
    }

    proptest! {
        #[test]
        fn round_trips_through_json(n in "\\+[1-9][0-9]{7,14}") {
            let e = E164::parse(&n).unwrap();
            let json = serde_json::to_string(&e).unwrap();
            prop_assert_eq!(serde_json::from_str::<E164>(&json).unwrap(), e);
        }
    }
}

//! Turning what people type ("(201) 555-0123", "+44 20 7183 8750", "00 33 1 42 68 53 00") into
//! E.164, with libphonenumber's rules (the `phonenumber` crate) and its metadata.
//!
//! Pure: no I/O, so every rule is tested without services (`tests` below, with proptest).

use std::str::FromStr;

use crate::domain::E164;
use phonenumber::country;

use super::reject::{Reason, Rejection};

/// Longer inputs are refused before parsing: no real number needs them, and the parser's
/// regular expressions should not be fed megabytes.
pub const MAX_RAW_LEN: usize = 64;

/// How strictly a parsed number is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NumberCheck {
    /// libphonenumber's `is_valid`: the number falls in a range its country has assigned
    /// (rejects fictional numbers such as +1 555 123 4567, whose area code 555 does not exist).
    Strict,
    /// Only the length must be possible for the country (accepts fictional numbers: handy for
    /// demos and load tests against the carrier simulator).
    Possible,
}

impl FromStr for NumberCheck {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "strict" => Ok(Self::Strict),
            "possible" => Ok(Self::Possible),
            _ => Err("expected `strict` or `possible`".to_owned()),
        }
    }
}

/// The region used for numbers written without a country code, parsed once per batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Region(Option<country::Id>);

impl Region {
    /// Parses an ISO 3166-1 alpha-2 code (`US`, `gb`); an unknown code yields a region under
    /// which only international (`+…`) numbers parse.
    pub fn parse(code: &str) -> Self {
        Self(country::Id::from_str(&code.trim().to_ascii_uppercase()).ok())
    }

    /// Whether the code named a region libphonenumber knows.
    pub fn is_known(&self) -> bool {
        self.0.is_some()
    }
}

/// Normalises one submitted number to E.164, or says why it cannot be dialed.
pub fn normalize(raw: &str, region: Region, check: NumberCheck) -> Result<E164, Rejection> {
    let text = raw.trim();
    if text.is_empty() {
        return Err(Rejection::new(
            Reason::MissingNumber,
            "no phone number given",
        ));
    }
    if text.len() > MAX_RAW_LEN {
        return Err(invalid(format!("longer than {MAX_RAW_LEN} characters")));
    }
    let international = text.starts_with('+') || text.starts_with("tel:+");
    if !international && !region.is_known() {
        return Err(invalid(
            "no country code (+…) and the batch's default region is not a known region",
        ));
    }
    let parsed = phonenumber::parse(region.0, text).map_err(|e| invalid(parse_detail(&e)))?;
    if parsed.extension().is_some() {
        return Err(invalid("has an extension, which cannot be dialed"));
    }
    let ok = match check {
        NumberCheck::Strict => phonenumber::is_valid(&parsed),
        NumberCheck::Possible => is_possible_length(&parsed),
    };
    if !ok {
        return Err(invalid(match check {
            NumberCheck::Strict => "not a valid number for its country",
            NumberCheck::Possible => "wrong length for its country",
        }));
    }
    let formatted = parsed.format().mode(phonenumber::Mode::E164).to_string();
    // The formatter's output is E.164 by construction; checking again keeps the type's promise
    // even if the metadata ever disagrees with the ITU's length limit.
    E164::parse(&formatted).map_err(|_| invalid("not representable in E.164"))
}

fn invalid(detail: impl Into<String>) -> Rejection {
    Rejection::new(Reason::InvalidNumber, detail)
}

fn parse_detail(e: &phonenumber::ParseError) -> String {
    use phonenumber::ParseError as P;
    match e {
        P::NoNumber => "not a phone number".to_owned(),
        P::InvalidCountryCode => "unknown country code".to_owned(),
        P::TooShortAfterIdd | P::TooShortNsn => "too short".to_owned(),
        P::TooLong => "too long".to_owned(),
        P::MalformedInteger(_) => "malformed digits".to_owned(),
    }
}

fn is_possible_length(number: &phonenumber::PhoneNumber) -> bool {
    let db = &phonenumber::metadata::DATABASE;
    // A number in an unassigned range has no region of its own; its country code's main
    // region still knows the lengths.
    let meta = number.metadata(db).or_else(|| {
        db.by_code(&number.code().value())
            .and_then(|all| all.into_iter().next())
    });
    let Some(meta) = meta else {
        return false;
    };
    let len = number.national().to_string().len();
    let Ok(len) = u16::try_from(len) else {
        return false;
    };
    let d = meta.descriptors();
    // The compiled metadata leaves the general lengths empty; the per-type ones carry them.
    let typed = [
        d.fixed_line(),
        d.mobile(),
        d.toll_free(),
        d.premium_rate(),
        d.shared_cost(),
        d.personal_number(),
        d.voip(),
        d.pager(),
        d.uan(),
    ];
    d.general().possible_length().contains(&len)
        || typed
            .into_iter()
            .flatten()
            .any(|desc| desc.possible_length().contains(&len))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn us(raw: &str) -> Result<String, Reason> {
        normalize(raw, Region::parse("US"), NumberCheck::Strict)
            .map(|n| n.as_str().to_owned())
            .map_err(|r| r.reason)
    }

    #[test]
    fn national_formats_take_the_default_region() {
        for raw in [
            "(201) 555-0123",
            "201-555-0123",
            "201.555.0123",
            "2015550123",
            "1 201 555 0123",
            "+1 201 555 0123",
            "+12015550123",
            "  +1 (201) 555-0123  ",
            "tel:+1-201-555-0123",
            "011 1 201 555 0123",
        ] {
            assert_eq!(us(raw).as_deref(), Ok("+12015550123"), "{raw}");
        }
    }

    #[test]
    fn international_numbers_ignore_the_default_region() {
        assert_eq!(us("+44 20 7183 8750").as_deref(), Ok("+442071838750"));
        assert_eq!(us("011 44 20 7183 8750").as_deref(), Ok("+442071838750"));
        let gb = normalize("020 7183 8750", Region::parse("gb"), NumberCheck::Strict).unwrap();
        assert_eq!(gb.as_str(), "+442071838750");
        let fr = normalize("01 42 68 53 00", Region::parse("FR"), NumberCheck::Strict).unwrap();
        assert_eq!(fr.as_str(), "+33142685300");
    }

    #[test]
    fn rejection_reasons() {
        assert_eq!(us(""), Err(Reason::MissingNumber));
        assert_eq!(us("   "), Err(Reason::MissingNumber));
        for bad in [
            "abc",
            "12",
            "+999 123 456 789",
            "555-0123",
            "+1 201 555 0123 4567 89",
            "+15551234567",
            "201 555 0123 ext. 12",
            &"9".repeat(200),
        ] {
            assert_eq!(us(bad), Err(Reason::InvalidNumber), "{bad}");
        }
    }

    #[test]
    fn possible_check_accepts_fictional_ranges() {
        let n = normalize("+15551234567", Region::parse("US"), NumberCheck::Possible).unwrap();
        assert_eq!(n.as_str(), "+15551234567");
        assert!(normalize("+1555123456", Region::parse("US"), NumberCheck::Possible).is_err());
    }

    #[test]
    fn unknown_region_still_takes_international_numbers() {
        let region = Region::parse("XX");
        assert!(!region.is_known());
        assert!(normalize("+12015550123", region, NumberCheck::Strict).is_ok());
        let err = normalize("2015550123", region, NumberCheck::Strict).unwrap_err();
        assert_eq!(err.reason, Reason::InvalidNumber);
    }

    proptest! {
        // Never panics, whatever arrives.
        #[test]
        fn never_panics(raw in "\\PC{0,80}", check in prop_oneof![Just(NumberCheck::Strict), Just(NumberCheck::Possible)]) {
            let _ = normalize(&raw, Region::parse("US"), check);
        }

        // Whatever it accepts is E.164, and normalising that again gives the same number.
        #[test]
        fn output_is_a_fixed_point(area in 201u32..990, line in 2_000_000u32..9_999_999, sep in "[ .-]?") {
            let raw = format!("({area}){sep}{:03}{sep}{:04}", line / 10_000, line % 10_000);
            if let Ok(n) = normalize(&raw, Region::parse("US"), NumberCheck::Strict) {
                prop_assert!(n.as_str().starts_with("+1"));
                let again = normalize(n.as_str(), Region::parse("FR"), NumberCheck::Strict).unwrap();
                prop_assert_eq!(again, n);
            }
        }

        // Every formatting of the same number normalises to the same E.164.
        #[test]
        fn formatting_does_not_matter(line in 0u32..10_000, style in 0usize..5) {
            let digits = format!("{line:04}");
            let raw = match style {
                0 => format!("+1 201 555 {digits}"),
                1 => format!("(201) 555-{digits}"),
                2 => format!("201.555.{digits}"),
                3 => format!("1-201-555-{digits}"),
                _ => format!("2015 55{digits}"),
            };
            let n = normalize(&raw, Region::parse("US"), NumberCheck::Possible).unwrap();
            prop_assert_eq!(n.as_str(), format!("+1201555{digits}"));
        }
    }
}

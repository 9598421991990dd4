//! US states and jurisdictions as the rule pack names them.
//!
//! A state is its two-letter USPS code; the list is the 50 states, the District of Columbia
//! and the five inhabited territories (the codes a `state` field may declare). A jurisdiction
//! is `US` (federal) or `US-XX` for one of them.

use std::fmt;
use std::str::FromStr;

/// The USPS codes accepted as a US state: 50 states, DC, and PR, GU, VI, AS, MP.
const CODES: [&str; 56] = [
    "AL", "AK", "AZ", "AR", "CA", "CO", "CT", "DE", "FL", "GA", "HI", "ID", "IL", "IN", "IA", "KS",
    "KY", "LA", "ME", "MD", "MA", "MI", "MN", "MS", "MO", "MT", "NE", "NV", "NH", "NJ", "NM", "NY",
    "NC", "ND", "OH", "OK", "OR", "PA", "RI", "SC", "SD", "TN", "TX", "UT", "VT", "VA", "WA", "WV",
    "WI", "WY", "DC", "PR", "GU", "VI", "AS", "MP",
];

/// A US state (or DC, or a territory) by its two-letter code, upper case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UsState([u8; 2]);

impl UsState {
    /// The two-letter code.
    pub fn code(&self) -> &str {
        // Both bytes are ASCII letters by construction.
        std::str::from_utf8(&self.0).unwrap_or("??")
    }
}

impl FromStr for UsState {
    type Err = String;

    /// Accepts a code in either case (`fl`, `FL`); anything else is an error naming the input.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let up = s.trim().to_ascii_uppercase();
        match CODES.iter().find(|c| **c == up) {
            Some(c) => {
                let b = c.as_bytes();
                Ok(UsState([b[0], b[1]]))
            }
            None => Err(format!(
                "{s:?} is not the two-letter code of a US state, DC or territory"
            )),
        }
    }
}

impl fmt::Display for UsState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// Where a rule applies: the whole country (federal) or one state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Jurisdiction {
    /// Federal law: applies to every US number.
    Federal,
    /// One state's law.
    State(UsState),
}

impl Jurisdiction {
    /// Whether a rule of this jurisdiction is federal.
    pub fn is_federal(self) -> bool {
        matches!(self, Jurisdiction::Federal)
    }
}

impl FromStr for Jurisdiction {
    type Err = String;

    /// `US` or `US-XX`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s == "US" {
            return Ok(Jurisdiction::Federal);
        }
        let code = s
            .strip_prefix("US-")
            .ok_or_else(|| format!("{s:?} is not \"US\" or \"US-\" and a state code"))?;
        if code.len() != 2 || code != code.to_ascii_uppercase() {
            return Err(format!(
                "{s:?}: the state code is two upper-case letters, as in \"US-FL\""
            ));
        }
        code.parse()
            .map(Jurisdiction::State)
            .map_err(|e| format!("jurisdiction {s:?}: {e}"))
    }
}

impl fmt::Display for Jurisdiction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Jurisdiction::Federal => f.write_str("US"),
            Jurisdiction::State(s) => write!(f, "US-{s}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_and_jurisdictions_parse() {
        assert_eq!("fl".parse::<UsState>().unwrap().code(), "FL");
        assert!("XX".parse::<UsState>().is_err());
        assert!("Florida".parse::<UsState>().is_err());
        assert_eq!("US".parse::<Jurisdiction>(), Ok(Jurisdiction::Federal));
        let fl: Jurisdiction = "US-FL".parse().unwrap();
        assert_eq!(fl.to_string(), "US-FL");
        assert!("US-fl".parse::<Jurisdiction>().is_err());
        assert!("FL".parse::<Jurisdiction>().is_err());
        assert!("US-ZZ".parse::<Jurisdiction>().is_err());
    }
}

//! A US postal code (ZIP) and the state it belongs to.
//!
//! The map is not typed here: `shared/data/libaddressinput/countryinfo.txt` is Google's address
//! metadata (libaddressinput, the data Chrome and Android validate addresses with), shipped
//! unchanged (its README names the source and `scripts/update-postal-data.sh` updates it). Each
//! `data/US/XX` line gives a state's `zip`: the ZIP prefixes it owns, as alternatives
//! (`9[0-5]|96[01]` for California). A few prefixes are owned by two entries, a general one and
//! a specific one (Oklahoma `7[34]`, Texas `73301`, the IRS's Austin ZIP), so the longest
//! matching prefix decides; two entries matching equally long give no state.

use std::fmt;
use std::str::FromStr;
use std::sync::OnceLock;

use regex::{Regex, RegexSet};

use super::state::UsState;

/// libaddressinput's `testdata/countryinfo.txt`, compiled in.
const COUNTRY_INFO: &str = include_str!("../../../data/libaddressinput/countryinfo.txt");

/// A US postal code as a contact's `postalCode` gives it: five digits, optionally followed by
/// `-` or a space and four more (ZIP+4), the shape libaddressinput's `data/US` line accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostalCode(String);

impl PostalCode {
    /// The code as given (trimmed).
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The five-digit ZIP.
    pub fn zip5(&self) -> &str {
        &self.0[..5]
    }

    /// The state its ZIP belongs to, if the dataset assigns it to one.
    pub fn state(&self) -> Option<UsState> {
        state_for_postal_code(self.zip5())
    }
}

impl FromStr for PostalCode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        let b = t.as_bytes();
        let digits = |r: std::ops::Range<usize>| b[r].iter().all(u8::is_ascii_digit);
        let ok = match b.len() {
            5 => digits(0..5),
            10 => digits(0..5) && (b[5] == b'-' || b[5] == b' ') && digits(6..10),
            _ => false,
        };
        if ok {
            Ok(PostalCode(t.to_owned()))
        } else {
            let shown: String = s.chars().take(40).collect();
            Err(format!(
                "{shown:?} is not a US postal code: five digits, or ZIP+4 such as \"33101-1234\""
            ))
        }
    }
}

impl fmt::Display for PostalCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Every state's prefixes, one pattern per alternative, anchored at the ZIP's start.
struct Prefixes {
    set: RegexSet,
    each: Vec<(Regex, Option<UsState>)>,
}

/// Splits `a|b(c|d)|e` at its top-level bars.
fn alternatives(pattern: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut depth, mut start) = (0i32, 0);
    for (i, c) in pattern.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            '|' if depth == 0 => {
                out.push(&pattern[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&pattern[start..]);
    out
}

/// Reads the `data/US/XX` lines. A line that cannot be read is skipped (the dataset's tests
/// check that every state is found), never a panic at ingest.
fn parse(src: &str) -> Prefixes {
    let mut patterns = Vec::new();
    let mut each = Vec::new();
    for line in src.lines() {
        let Some((key, json)) = line.split_once('=') else {
            continue;
        };
        let Some(code) = key.strip_prefix("data/US/").filter(|c| c.len() == 2) else {
            continue;
        };
        let Ok(v) = serde_json::from_str::<serde_json::Value>(json) else {
            continue;
        };
        let Some(zip) = v.get("zip").and_then(|z| z.as_str()) else {
            continue;
        };
        // Armed Forces (AA, AE, AP) and the freely associated states (FM, MH, PW) own
        // prefixes but are no state of the pack: their ZIPs resolve to none.
        let state = code.parse::<UsState>().ok();
        for alt in alternatives(zip) {
            let anchored = format!("^(?:{alt})");
            if let Ok(re) = Regex::new(&anchored) {
                patterns.push(anchored);
                each.push((re, state));
            }
        }
    }
    let set = RegexSet::new(&patterns).unwrap_or_else(|_| RegexSet::empty());
    Prefixes { set, each }
}

fn prefixes() -> &'static Prefixes {
    static P: OnceLock<Prefixes> = OnceLock::new();
    P.get_or_init(|| parse(COUNTRY_INFO))
}

/// The state a five-digit ZIP belongs to: the entry with the longest matching prefix; none when
/// no entry matches, two match equally long, or the entry is not a state (Armed Forces).
pub fn state_for_postal_code(zip5: &str) -> Option<UsState> {
    let p = prefixes();
    let mut best: Option<(usize, Option<UsState>)> = None;
    let mut tie = false;
    for i in p.set.matches(zip5).iter() {
        let (re, state) = &p.each[i];
        let len = re.find(zip5).map_or(0, |m| m.end());
        match best {
            Some((l, s)) if len == l && s != *state => tie = true,
            Some((l, _)) if len <= l => {}
            _ => {
                best = Some((len, *state));
                tie = false;
            }
        }
    }
    if tie { None } else { best.and_then(|(_, s)| s) }
}

/// How many `data/US/XX` prefix alternatives were read (for tests and start-up checks).
pub fn prefix_count() -> usize {
    prefixes().each.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(zip: &str) -> Option<String> {
        zip.parse::<PostalCode>()
            .unwrap()
            .state()
            .map(|s| s.to_string())
    }

    #[test]
    fn every_state_of_the_dataset_is_read() {
        let states: std::collections::BTreeSet<_> =
            prefixes().each.iter().filter_map(|(_, s)| *s).collect();
        // 50 states, DC, PR, GU, VI, AS, MP.
        assert_eq!(states.len(), 56, "{states:?}");
        assert!(prefix_count() > 60, "{}", prefix_count());
    }

    #[test]
    fn zips_resolve_to_their_state() {
        for (zip, st) in [
            ("33101", "FL"),
            ("32801-1234", "FL"),
            ("10001", "NY"),
            ("90210", "CA"),
            ("96161", "CA"),
            ("73102", "OK"),
            ("75201", "TX"),
            ("21201", "MD"),
            ("98101", "WA"),
            ("35203", "AL"),
            ("70112", "LA"),
            ("39201", "MS"),
            ("20500", "DC"),
            ("00601", "PR"),
            ("99501", "AK"),
            ("96813", "HI"),
        ] {
            assert_eq!(state(zip).as_deref(), Some(st), "{zip}");
        }
    }

    #[test]
    fn the_longest_prefix_wins() {
        // 73301 (IRS, Austin) is Texas though 73xxx is Oklahoma; 06390 (Fishers Island) is New
        // York though 06xxx is Connecticut; 05501 (Andover) is Massachusetts, not Vermont.
        assert_eq!(state("73301").as_deref(), Some("TX"));
        assert_eq!(state("73344").as_deref(), Some("TX"));
        assert_eq!(state("73300").as_deref(), Some("OK"));
        assert_eq!(state("06390").as_deref(), Some("NY"));
        assert_eq!(state("06101").as_deref(), Some("CT"));
        assert_eq!(state("05501").as_deref(), Some("MA"));
        assert_eq!(state("05401").as_deref(), Some("VT"));
    }

    #[test]
    fn military_and_unassigned_zips_resolve_to_none() {
        assert_eq!(state("09001"), None, "Armed Forces Europe");
        assert_eq!(state("34001"), None, "Armed Forces Americas");
        assert_eq!(state("00000"), None);
    }

    #[test]
    fn malformed_codes_are_refused() {
        for bad in [
            "",
            "3310",
            "331011",
            "33101-12",
            "ABCDE",
            "33101_1234",
            "３３１０１",
        ] {
            assert!(bad.parse::<PostalCode>().is_err(), "{bad:?}");
        }
        assert_eq!(
            " 33101 1234 ".parse::<PostalCode>().unwrap().as_str(),
            "33101 1234"
        );
    }
}

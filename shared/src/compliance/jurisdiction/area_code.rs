//! A NANP number's state, from libphonenumber's maintained geocoding data
//! (`shared/data/libphonenumber/geocoding_en_1.txt`, upstream's `resources/geocoding/en/1.txt`,
//! unchanged; see the README beside it and `scripts/update-geocoding.sh`). Nothing typed by hand
//! except the list of USPS state codes (`state.rs`).
//!
//! Each line is `prefix|description`: the prefix is `1` plus the area code and sometimes the
//! exchange; the description is `City, ST` or a region's name (`Florida`, `Washington State`,
//! `Ontario`). The state of an area code is derived from every entry under it:
//! - `City, ST` gives `ST`;
//! - a region's name gives the code its own `City, ST` entries give, where those are unanimous
//!   across the whole file (so `Washington State` is learnt to be `WA` from the cities filed
//!   under it, not from a table);
//! - when the entries of one area code name exactly one code, that is its state; more than one,
//!   or none, and the state is unknown (so every state rule applies: the safe side).
//!
//! Codes that are not US states (Canadian provinces) mean the number is not a US number.

use std::collections::{BTreeSet, HashMap};
use std::sync::OnceLock;

use super::state::UsState;

/// The data file, compiled in.
const GEOCODING: &str = include_str!("../../../data/libphonenumber/geocoding_en_1.txt");

/// What an area code says about where a number is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AreaCodeState {
    /// A US state (or DC or a territory).
    State(UsState),
    /// A NANP region outside the US (e.g. a Canadian province).
    NotUs,
    /// A NANP number whose state cannot be determined (non-geographic or ambiguous codes).
    Unknown,
    /// Not a NANP number at all.
    NotNanp,
}

/// The trailing `, ST` of a description, if any.
fn code_of(desc: &str) -> Option<&str> {
    let (_, tail) = desc.rsplit_once(", ")?;
    (tail.len() == 2 && tail.bytes().all(|b| b.is_ascii_uppercase())).then_some(tail)
}

/// Area code (3 digits) → the region codes its entries name.
fn derive(data: &str) -> HashMap<String, BTreeSet<String>> {
    // Entries per area code: the 3-digit line's description, and every longer line's.
    let mut top: HashMap<&str, &str> = HashMap::new();
    let mut children: HashMap<&str, Vec<&str>> = HashMap::new();
    for line in data.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((prefix, desc)) = line.split_once('|') else {
            continue;
        };
        if prefix.len() < 4
            || !prefix.starts_with('1')
            || !prefix.bytes().all(|b| b.is_ascii_digit())
        {
            continue;
        }
        let area = &prefix[1..4];
        if prefix.len() == 4 {
            top.insert(area, desc.trim());
        } else {
            children.entry(area).or_default().push(desc.trim());
        }
    }
    // Names learnt from their own cities: a name maps to a code when the area codes filed
    // under that name, each with cities of one code only, all agree on it.
    let mut learnt: HashMap<&str, BTreeSet<&str>> = HashMap::new();
    for (area, desc) in &top {
        if code_of(desc).is_some() {
            continue;
        }
        let codes: BTreeSet<&str> = children
            .get(area)
            .into_iter()
            .flatten()
            .filter_map(|d| code_of(d))
            .collect();
        if codes.len() == 1 {
            learnt.entry(*desc).or_default().extend(codes);
        }
    }
    let names: HashMap<&str, &str> = learnt
        .into_iter()
        .filter(|(_, codes)| codes.len() == 1)
        .filter_map(|(name, codes)| Some((name, codes.into_iter().next()?)))
        .collect();
    let areas: BTreeSet<&str> = top.keys().chain(children.keys()).copied().collect();
    areas
        .into_iter()
        .map(|area| {
            // An entry without a code (a locality's name) names a place inside the region, not
            // a second region, so only the codes found count.
            let codes: BTreeSet<String> = top
                .get(area)
                .into_iter()
                .chain(children.get(area).into_iter().flatten())
                .filter_map(|desc| code_of(desc).or_else(|| names.get(desc).copied()))
                .map(str::to_string)
                .collect();
            (area.to_string(), codes)
        })
        .collect()
}

fn map() -> &'static HashMap<String, BTreeSet<String>> {
    static MAP: OnceLock<HashMap<String, BTreeSet<String>>> = OnceLock::new();
    MAP.get_or_init(|| derive(GEOCODING))
}

/// The state of an E.164 number's area code (`+13055550100` → Florida).
pub fn state_for_number(e164: &str) -> AreaCodeState {
    let digits = e164.strip_prefix('+').unwrap_or(e164);
    if !digits.bytes().all(|b| b.is_ascii_digit()) || !digits.starts_with('1') {
        return AreaCodeState::NotNanp;
    }
    let Some(area) = digits.get(1..4) else {
        return AreaCodeState::Unknown;
    };
    let Some(codes) = map().get(area).filter(|c| !c.is_empty()) else {
        return AreaCodeState::Unknown;
    };
    let us: Vec<UsState> = codes.iter().filter_map(|c| c.parse().ok()).collect();
    match us.as_slice() {
        // Several Canadian provinces (867, 902): not a US number either way.
        [] => AreaCodeState::NotUs,
        [one] if codes.len() == 1 => AreaCodeState::State(*one),
        _ => AreaCodeState::Unknown,
    }
}

/// How many area codes resolve to a US state (for start-up logs and tests).
pub fn us_area_codes() -> usize {
    map()
        .values()
        .filter(|c| c.len() == 1 && c.iter().all(|c| c.parse::<UsState>().is_ok()))
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn st(n: &str) -> String {
        match state_for_number(n) {
            AreaCodeState::State(s) => s.to_string(),
            other => format!("{other:?}"),
        }
    }

    #[test]
    fn area_codes_to_states() {
        assert_eq!(st("+13055550100"), "FL"); // "Florida", learnt from its cities
        assert_eq!(st("+12125550100"), "NY"); // "New York, NY"
        assert_eq!(st("+12065550100"), "WA"); // "Washington State"
        // "Washington D.C." has no city filed under it to learn its code from: unknown, so
        // the strictest rules apply (the safe side).
        assert_eq!(st("+12025550100"), "Unknown");
        // 201 is "New Jersey" but some exchanges under it are filed as New York: two states.
        assert_eq!(st("+12015550100"), "Unknown");
        assert_eq!(st("+19025550100"), "NotUs"); // Nova Scotia / PEI
        assert_eq!(st("+14055550100"), "OK");
        assert_eq!(st("+14105550100"), "MD");
        assert_eq!(st("+12055550100"), "AL");
        assert_eq!(st("+16015550100"), "MS");
        assert_eq!(st("+14045550100"), "GA");
        assert_eq!(st("+14165550100"), "NotUs"); // Toronto
        assert_eq!(st("+18005550100"), "Unknown"); // toll-free
        assert_eq!(st("+442079460958"), "NotNanp");
        assert_eq!(st("+1"), "Unknown");
    }

    #[test]
    fn most_us_area_codes_resolve() {
        // Roughly 330 US geographic area codes exist; the file is the whole NANP, not a sample.
        let n = us_area_codes();
        assert!(n > 250, "{n} area codes resolved to a US state");
    }
}

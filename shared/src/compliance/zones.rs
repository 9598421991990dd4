//! A number's timezones, from libphonenumber's maintained prefix map
//! (`shared/data/libphonenumber/timezones_map_data.txt`, upstream's
//! `resources/timezones/map_data.txt`, unchanged; see the README beside it and
//! `scripts/update-timezone-map.sh`). Nothing here is typed by hand.
//!
//! Each line is `prefix|Zone&Zone…`, the prefix being the leading digits of the E.164 number
//! without `+`: the country code, and for NANP the area code (sometimes the exchange too). The
//! longest matching prefix wins, so a NANP number whose area code is not listed gets the
//! country line, every NANP zone, and is allowed only when all of them are inside hours.
//! Zone names the linked `chrono-tz` does not know are skipped (old aliases such as
//! `Asia/Calcutta` are known); a prefix left with no zone is unknown.

use std::collections::HashMap;
use std::sync::OnceLock;

use chrono_tz::Tz;

/// The data file, compiled in.
const MAP_DATA: &str = include_str!("../../data/libphonenumber/timezones_map_data.txt");

/// Prefix → zones, and the longest prefix length.
struct Map {
    by_prefix: HashMap<&'static str, Vec<Tz>>,
    longest: usize,
}

fn map() -> &'static Map {
    static MAP: OnceLock<Map> = OnceLock::new();
    MAP.get_or_init(|| parse(MAP_DATA))
}

fn parse(data: &'static str) -> Map {
    let mut by_prefix = HashMap::new();
    let mut longest = 0;
    for line in data.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((prefix, zones)) = line.split_once('|') else {
            continue;
        };
        if prefix.is_empty() || !prefix.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let mut tzs: Vec<Tz> = zones
            .split('&')
            .filter_map(|z| z.trim().parse::<Tz>().ok())
            .collect();
        tzs.sort_by_key(|t| t.name());
        tzs.dedup();
        longest = longest.max(prefix.len());
        by_prefix.insert(prefix, tzs);
    }
    Map { by_prefix, longest }
}

/// The timezones of an E.164 number (`+12125550100`), or an empty list when the map has no
/// prefix for it (the number's zone is unknown).
pub fn zones_for_number(e164: &str) -> Vec<Tz> {
    let digits = e164.strip_prefix('+').unwrap_or(e164);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Vec::new();
    }
    let map = map();
    (1..=digits.len().min(map.longest))
        .rev()
        .find_map(|n| map.by_prefix.get(&digits[..n]))
        .cloned()
        .unwrap_or_default()
}

/// How many prefixes the compiled-in map holds (for start-up logs and tests).
pub fn map_len() -> usize {
    map().by_prefix.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(n: &str) -> Vec<&'static str> {
        zones_for_number(n).iter().map(|t| t.name()).collect()
    }

    #[test]
    fn area_codes_and_longest_prefix() {
        assert_eq!(names("+12125550100"), ["America/New_York"]);
        assert_eq!(names("+12135550100"), ["America/Los_Angeles"]);
        // 1208 2xx spans two zones, 1208 201 is one.
        assert_eq!(
            names("+12082990000"),
            ["America/Boise", "America/Los_Angeles"]
        );
        assert_eq!(names("+12082010000"), ["America/Denver"]);
        assert_eq!(names("+81312345678"), ["Asia/Tokyo"]);
        // London's 20 is listed on its own; New Zealand's 64 330 is Chatham.
        assert_eq!(names("+442079460958"), ["Europe/London"]);
        assert_eq!(names("+6433012345"), ["Pacific/Chatham"]);
    }

    #[test]
    fn every_zone_of_the_map_is_known_to_chrono_tz() {
        let unknown: Vec<&str> = MAP_DATA
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| l.split_once('|'))
            .flat_map(|(_, zones)| zones.split('&'))
            .map(str::trim)
            .filter(|z| !z.is_empty() && z.parse::<Tz>().is_err())
            .collect();
        assert!(
            unknown.is_empty(),
            "zones chrono-tz does not know: {unknown:?}"
        );
        assert!(
            map_len() > 3000,
            "the whole map, not a sample: {}",
            map_len()
        );
    }

    #[test]
    fn unlisted_area_code_gets_every_nanp_zone_and_unknown_country_none() {
        let all = zones_for_number("+19995550100");
        assert!(all.len() > 20, "{all:?}");
        assert!(zones_for_number("+0000").is_empty());
        assert!(zones_for_number("not a number").is_empty());
        assert!(map_len() > 10);
    }
}

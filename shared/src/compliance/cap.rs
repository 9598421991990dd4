//! The workspace's frequency cap (Regulation F: at most 7 calls in 7 days): at most `count` call
//! attempts to one number in any `days` days, across all the workspace's batches. Stored in
//! `workspaces.max_calls_per_number_count/_days` (both NULL = off, the default).

use serde::{Deserialize, Serialize};

/// At most `count` attempts to one number in any `days` days.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct FrequencyCap {
    /// Attempts allowed in the period, 1–1000.
    #[schema(minimum = 1, maximum = 1000)]
    pub count: i32,
    /// The period in days, 1–365.
    #[schema(minimum = 1, maximum = 365)]
    pub days: i32,
}

impl FrequencyCap {
    /// The largest `count` accepted: beyond it a cap means nothing.
    pub const MAX_COUNT: i32 = 1_000;
    /// The longest period accepted, a year (the attempts index is read over the period).
    pub const MAX_DAYS: i32 = 365;

    /// Checks the two numbers; the error says which one is wrong and why.
    pub fn new(count: i64, days: i64) -> Result<Self, (&'static str, String)> {
        if !(1..=i64::from(Self::MAX_COUNT)).contains(&count) {
            return Err((
                "count",
                format!("must be between 1 and {}", Self::MAX_COUNT),
            ));
        }
        if !(1..=i64::from(Self::MAX_DAYS)).contains(&days) {
            return Err(("days", format!("must be between 1 and {}", Self::MAX_DAYS)));
        }
        Ok(Self {
            count: count as i32,
            days: days as i32,
        })
    }

    /// From the stored columns; `None` (off) when either is missing.
    pub fn from_columns(count: Option<i32>, days: Option<i32>) -> Option<Self> {
        Some(Self {
            count: count?,
            days: days?,
        })
    }

    /// Parses a policy as the CLI writes it: `COUNT/DAYS` (`7/7`), or `off` (`Ok(None)`).
    pub fn parse_policy(s: &str) -> Result<Option<Self>, String> {
        let s = s.trim();
        if s.eq_ignore_ascii_case("off") {
            return Ok(None);
        }
        let bad = || format!("{s:?} is not \"off\" or COUNT/DAYS such as \"7/7\"");
        let (count, days) = s.split_once('/').ok_or_else(bad)?;
        let count: i64 = count.trim().parse().map_err(|_| bad())?;
        let days: i64 = days
            .trim()
            .trim_end_matches('d')
            .parse()
            .map_err(|_| bad())?;
        Self::new(count, days)
            .map(Some)
            .map_err(|(what, why)| format!("{s:?}: the {what} {why}"))
    }
}

impl std::fmt::Display for FrequencyCap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.count, self.days)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policies_parse_and_bad_ones_say_why() {
        assert_eq!(
            FrequencyCap::parse_policy("7/7"),
            Ok(Some(FrequencyCap { count: 7, days: 7 }))
        );
        assert_eq!(FrequencyCap::parse_policy(" OFF "), Ok(None));
        assert_eq!(
            FrequencyCap::parse_policy("3/30d")
                .unwrap()
                .unwrap()
                .to_string(),
            "3/30"
        );
        for bad in ["7", "0/7", "7/0", "a/b", "7/400", ""] {
            assert!(FrequencyCap::parse_policy(bad).is_err(), "{bad}");
        }
        assert_eq!(FrequencyCap::new(7, 0).unwrap_err().0, "days");
        assert_eq!(FrequencyCap::from_columns(Some(7), None), None);
    }
}

//! Freshness of the workspace's copy of the national do-not-call registry.
//!
//! The safe harbour of the Telemarketing Sales Rule, 16 CFR 310.4(b)(3)(iv), asks that calls be
//! screened against a version of the registry "obtained from the Commission no more than
//! thirty-one (31) days prior to the date any call is made"; the FCC's rule, 47 CFR
//! 64.1200(c)(2)(i)(D), sets the same 31 days (in force since 2005-01-01). A workspace that
//! declares it relies on the registry (`workspaces.dnc_registry_required`) is not released
//! while its newest copy (`dnc_registry_copies.as_of`, the date the copy was taken) is older
//! than that: fail closed, hold reason [`HOLD_REASON`].
//!
//! The age is counted on the UTC date, which is ahead of every US zone: near midnight the copy
//! looks a day older than it does in the recipient's zone, never younger.

use chrono::{DateTime, Days, NaiveDate, Utc};

/// How old the newest copy may be, in days (16 CFR 310.4(b)(3)(iv); 47 CFR 64.1200(c)(2)(i)(D)).
pub const MAX_AGE_DAYS: u64 = 31;

/// The hold reason a stale (or missing) copy puts on the workspace's batches.
pub const HOLD_REASON: &str = "dnc_registry_stale";

/// The one registry a copy may be of today (`dnc_registry_copies.source`).
pub const NATIONAL_REGISTRY: &str = "national_registry";

/// The newest registry copy of workspace `$1`: `as_of` (NULL when it has none).
pub const NEWEST_COPY_SQL: &str =
    "SELECT max(as_of) AS as_of FROM dnc_registry_copies WHERE workspace_id = $1";

/// Whether a copy taken on `as_of` still covers a call made at `at`.
pub fn is_fresh(as_of: NaiveDate, at: DateTime<Utc>) -> bool {
    fresh_until(as_of).is_some_and(|last| at.date_naive() <= last)
}

/// The last UTC date on which a copy taken on `as_of` covers calls.
pub fn fresh_until(as_of: NaiveDate) -> Option<NaiveDate> {
    as_of.checked_add_days(Days::new(MAX_AGE_DAYS))
}

/// Whether a workspace must not be released at `at`: it relies on the registry (`required`)
/// and its newest copy (`newest`, `None` when it has none) is too old to cover a call now.
pub fn is_stale(required: bool, newest: Option<NaiveDate>, at: DateTime<Utc>) -> bool {
    required && !newest.is_some_and(|as_of| is_fresh(as_of, at))
}

/// Why an `asOf` given with an import cannot be taken, judged at `at`: a date in the future
/// (in every zone: later than the UTC date, which is ahead of every US one, plus one day for the
/// zones east of UTC).
pub fn check_as_of(as_of: NaiveDate, at: DateTime<Utc>) -> Result<(), &'static str> {
    let latest = at
        .date_naive()
        .checked_add_days(Days::new(1))
        .unwrap_or(NaiveDate::MAX);
    if as_of > latest {
        return Err("must not be in the future");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use proptest::prelude::*;

    fn day(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).unwrap()
    }

    #[test]
    fn a_copy_covers_thirty_one_days_after_its_date() {
        let as_of = day(2026, 11, 30);
        let at = |d: NaiveDate, h: u32| Utc.from_utc_datetime(&d.and_hms_opt(h, 0, 0).unwrap());
        assert!(is_fresh(as_of, at(day(2026, 11, 30), 0)));
        assert!(is_fresh(as_of, at(day(2026, 12, 31), 23)));
        assert!(!is_fresh(as_of, at(day(2027, 1, 1), 0)));
    }

    #[test]
    fn only_a_workspace_that_relies_on_the_registry_is_held() {
        let now = Utc.with_ymd_and_hms(2026, 12, 7, 12, 0, 0).unwrap();
        assert!(!is_stale(false, None, now));
        assert!(is_stale(true, None, now));
        assert!(is_stale(true, Some(day(2026, 11, 1)), now));
        assert!(!is_stale(true, Some(day(2026, 11, 30)), now));
    }

    #[test]
    fn a_future_as_of_is_refused() {
        let now = Utc.with_ymd_and_hms(2026, 12, 7, 12, 0, 0).unwrap();
        assert!(check_as_of(day(2026, 12, 7), now).is_ok());
        assert!(check_as_of(day(2026, 12, 8), now).is_ok());
        assert!(check_as_of(day(2026, 12, 9), now).is_err());
    }

    proptest! {
        /// Against the rule's own words: fresh exactly when the call's UTC date is no more than
        /// 31 days after the copy's.
        #[test]
        fn fresh_iff_at_most_31_days_old(as_of_days in 0i64..40_000, age_secs in -10_000_000i64..10_000_000) {
            let as_of = day(1970, 1, 1) + chrono::Duration::days(as_of_days);
            let at = Utc.from_utc_datetime(&as_of.and_hms_opt(0, 0, 0).unwrap())
                + chrono::Duration::seconds(age_secs);
            let age_days = (at.date_naive() - as_of).num_days();
            prop_assert_eq!(is_fresh(as_of, at), age_days <= 31);
        }
    }
}

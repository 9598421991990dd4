//! Holidays computed from their definition, never typed as dates.
//!
//! A holiday is either a fixed day of a month (`July 4`) or the nth weekday of a month
//! (`fourth Thursday of November`; `nth = -1` is the last one, as in Memorial Day, the last
//! Monday in May). A fixed-date holiday may carry an observed-day rule when the statute gives
//! one: `nearest_weekday` moves a Saturday holiday to the Friday before and a Sunday holiday to
//! the Monday after (Ala. Code § 1-3-8(a): "If any holiday falls on Sunday, the following day
//! is the holiday. If any holiday falls on Saturday, the preceding day is the holiday.").
//! The rule pack treats both the date itself and its observed day as no-call days: the
//! strictest reading, since a statute that says "holidays" may mean either.

use chrono::{Datelike, Duration, NaiveDate, Weekday};
use serde::Deserialize;

/// When a holiday falls in a year.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HolidayDate {
    /// The same date every year.
    Fixed {
        /// 1–12.
        month: u32,
        /// 1–31, a day the month has (February 29 only in leap years).
        day: u32,
    },
    /// The nth given weekday of a month: `nth` 1–5, or -1 for the last.
    NthWeekday {
        /// 1–12.
        month: u32,
        /// Which weekday.
        weekday: Weekday,
        /// 1–5 counted from the start of the month, -1 the last of the month.
        nth: i8,
    },
}

/// How a holiday that falls on a weekend is observed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Observed {
    /// Only on its date.
    #[default]
    OnTheDay,
    /// Also on the Friday before (Saturday) or the Monday after (Sunday).
    NearestWeekday,
}

/// A named holiday.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holiday {
    /// Its name as the statute gives it.
    pub name: String,
    /// When it falls.
    pub date: HolidayDate,
    /// How a weekend date is observed.
    pub observed: Observed,
}

/// A holiday as written in the pack: `{name, month, day}` or `{name, month, weekday, nth}`,
/// with an optional `observed = "nearest_weekday"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHoliday {
    name: String,
    month: u32,
    day: Option<u32>,
    weekday: Option<String>,
    nth: Option<i8>,
    observed: Option<String>,
}

/// A weekday as the pack writes it: `Mon` … `Sun` (chrono's names; full names accepted too).
pub fn parse_weekday(s: &str) -> Result<Weekday, String> {
    s.parse::<Weekday>()
        .map_err(|_| format!("{s:?} is not a weekday (Mon, Tue, Wed, Thu, Fri, Sat, Sun)"))
}

impl TryFrom<RawHoliday> for Holiday {
    type Error = String;

    fn try_from(r: RawHoliday) -> Result<Self, String> {
        let name = r.name.trim().to_string();
        if name.is_empty() {
            return Err("a holiday needs a name".into());
        }
        if !(1..=12).contains(&r.month) {
            return Err(format!("holiday {name:?}: month {} is not 1–12", r.month));
        }
        let date = match (r.day, r.weekday, r.nth) {
            (Some(day), None, None) => {
                // 2024 is a leap year, so any day some year has is accepted.
                if NaiveDate::from_ymd_opt(2024, r.month, day).is_none() {
                    return Err(format!(
                        "holiday {name:?}: month {} has no day {day}",
                        r.month
                    ));
                }
                HolidayDate::Fixed {
                    month: r.month,
                    day,
                }
            }
            (None, Some(w), Some(nth)) => {
                if !(nth == -1 || (1..=5).contains(&nth)) {
                    return Err(format!(
                        "holiday {name:?}: nth {nth} is not 1–5 or -1 (the last)"
                    ));
                }
                HolidayDate::NthWeekday {
                    month: r.month,
                    weekday: parse_weekday(&w).map_err(|e| format!("holiday {name:?}: {e}"))?,
                    nth,
                }
            }
            _ => {
                return Err(format!(
                    "holiday {name:?}: give either `day`, or `weekday` and `nth`"
                ));
            }
        };
        let observed = match r.observed.as_deref() {
            None | Some("on_the_day") => Observed::OnTheDay,
            Some("nearest_weekday") => {
                if !matches!(date, HolidayDate::Fixed { .. }) {
                    return Err(format!(
                        "holiday {name:?}: an observed-day rule only applies to a fixed date"
                    ));
                }
                Observed::NearestWeekday
            }
            Some(o) => {
                return Err(format!(
                    "holiday {name:?}: observed {o:?} is not \"on_the_day\" or \"nearest_weekday\""
                ));
            }
        };
        Ok(Holiday {
            name,
            date,
            observed,
        })
    }
}

impl Holiday {
    /// The holiday's own date in `year` (`None` when a fifth weekday does not exist that year).
    pub fn date_in(&self, year: i32) -> Option<NaiveDate> {
        match self.date {
            HolidayDate::Fixed { month, day } => NaiveDate::from_ymd_opt(year, month, day),
            HolidayDate::NthWeekday {
                month,
                weekday,
                nth,
            } => {
                if nth == -1 {
                    let first_next = if month == 12 {
                        NaiveDate::from_ymd_opt(year + 1, 1, 1)?
                    } else {
                        NaiveDate::from_ymd_opt(year, month + 1, 1)?
                    };
                    let last = first_next - Duration::days(1);
                    let back = (last.weekday().num_days_from_monday() + 7
                        - weekday.num_days_from_monday())
                        % 7;
                    Some(last - Duration::days(i64::from(back)))
                } else {
                    NaiveDate::from_weekday_of_month_opt(year, month, weekday, nth as u8)
                }
            }
        }
    }

    /// The day it is observed in `year` when that differs from its date.
    pub fn observed_in(&self, year: i32) -> Option<NaiveDate> {
        let d = self.date_in(year)?;
        match (self.observed, d.weekday()) {
            (Observed::NearestWeekday, Weekday::Sat) => Some(d - Duration::days(1)),
            (Observed::NearestWeekday, Weekday::Sun) => Some(d + Duration::days(1)),
            _ => None,
        }
    }

    /// Whether `d` is this holiday or its observed day. The observed day may fall in another
    /// year (a Saturday January 1 is observed on December 31), so the neighbours are looked at.
    pub fn falls_on(&self, d: NaiveDate) -> bool {
        [d.year() - 1, d.year(), d.year() + 1]
            .into_iter()
            .any(|y| self.date_in(y) == Some(d) || self.observed_in(y) == Some(d))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn holiday(toml_src: &str) -> Holiday {
        let raw: RawHoliday = toml::from_str(toml_src).unwrap();
        raw.try_into().unwrap()
    }

    fn ymd(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).unwrap()
    }

    #[test]
    fn nth_and_last_weekdays() {
        let thanksgiving =
            holiday("name = \"Thanksgiving\"\nmonth = 11\nweekday = \"Thu\"\nnth = 4");
        assert_eq!(thanksgiving.date_in(2026), Some(ymd(2026, 11, 26)));
        assert_eq!(thanksgiving.date_in(2027), Some(ymd(2027, 11, 25)));
        assert!(thanksgiving.falls_on(ymd(2026, 11, 26)));
        assert!(!thanksgiving.falls_on(ymd(2026, 11, 27)));
        let memorial = holiday("name = \"Memorial Day\"\nmonth = 5\nweekday = \"Mon\"\nnth = -1");
        assert_eq!(memorial.date_in(2027), Some(ymd(2027, 5, 31)));
        assert_eq!(memorial.date_in(2026), Some(ymd(2026, 5, 25)));
        // May 2021 had five Mondays; the last is the 31st.
        assert_eq!(memorial.date_in(2021), Some(ymd(2021, 5, 31)));
        let last_dec = holiday("name = \"x\"\nmonth = 12\nweekday = \"Wed\"\nnth = -1");
        assert_eq!(last_dec.date_in(2026), Some(ymd(2026, 12, 30)));
        let mlk = holiday("name = \"MLK\"\nmonth = 1\nweekday = \"Mon\"\nnth = 3");
        assert_eq!(mlk.date_in(2027), Some(ymd(2027, 1, 18)));
        let fifth = holiday("name = \"x\"\nmonth = 2\nweekday = \"Mon\"\nnth = 5");
        assert_eq!(fifth.date_in(2027), None);
        assert!(!fifth.falls_on(ymd(2027, 3, 1)));
    }

    #[test]
    fn observed_days() {
        let july4 = holiday(
            "name = \"Independence Day\"\nmonth = 7\nday = 4\nobserved = \"nearest_weekday\"",
        );
        // 2026-07-04 is a Saturday: observed Friday 3rd, and the 4th itself still counts.
        assert!(july4.falls_on(ymd(2026, 7, 3)));
        assert!(july4.falls_on(ymd(2026, 7, 4)));
        assert!(!july4.falls_on(ymd(2026, 7, 6)));
        // 2027-07-04 is a Sunday: observed Monday 5th.
        assert!(july4.falls_on(ymd(2027, 7, 5)));
        assert!(!july4.falls_on(ymd(2027, 7, 2)));
        // 2028-07-04 is a Tuesday: no other day.
        assert!(!july4.falls_on(ymd(2028, 7, 3)) && !july4.falls_on(ymd(2028, 7, 5)));
        // New Year's Day 2028 is a Saturday, observed on Friday 2027-12-31.
        let ny = holiday(
            "name = \"New Year's Day\"\nmonth = 1\nday = 1\nobserved = \"nearest_weekday\"",
        );
        assert!(ny.falls_on(ymd(2027, 12, 31)));
        assert!(!ny.falls_on(ymd(2026, 12, 31)));
        let plain = holiday("name = \"Christmas\"\nmonth = 12\nday = 25");
        assert!(plain.falls_on(ymd(2027, 12, 25)) && !plain.falls_on(ymd(2027, 12, 24)));
    }

    #[test]
    fn bad_definitions_are_refused() {
        for (src, needle) in [
            ("name = \"x\"\nmonth = 13\nday = 1", "month 13"),
            ("name = \"x\"\nmonth = 2\nday = 30", "no day 30"),
            (
                "name = \"x\"\nmonth = 5\nweekday = \"Mon\"\nnth = 0",
                "nth 0",
            ),
            (
                "name = \"x\"\nmonth = 5\nweekday = \"Funday\"\nnth = 1",
                "not a weekday",
            ),
            ("name = \"x\"\nmonth = 5\nday = 1\nnth = 1", "either"),
            (
                "name = \"x\"\nmonth = 5\nweekday = \"Mon\"\nnth = 1\nobserved = \"nearest_weekday\"",
                "fixed date",
            ),
            (
                "name = \"x\"\nmonth = 5\nday = 1\nobserved = \"monday\"",
                "observed",
            ),
        ] {
            let raw: RawHoliday = toml::from_str(src).unwrap();
            let err = Holiday::try_from(raw).unwrap_err();
            assert!(err.contains(needle), "{src}: {err}");
        }
        assert!(
            toml::from_str::<RawHoliday>("name = \"x\"\nmonth = 5\nday = 1\ncolour = 1").is_err()
        );
    }
}

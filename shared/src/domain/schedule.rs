//! Vogent's weekly schedule (seed 001) as types that cannot hold a bad day, time or timezone.
//! When a schedule is open is answered by `crate::schedule` (the window engine).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// An IANA timezone such as `America/New_York`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Timezone(pub chrono_tz::Tz);

impl Timezone {
    /// UTC, the default when none is given.
    pub const UTC: Timezone = Timezone(chrono_tz::UTC);

    /// The IANA name.
    pub fn name(&self) -> &'static str {
        self.0.name()
    }
}

impl Default for Timezone {
    fn default() -> Self {
        Self::UTC
    }
}

impl FromStr for Timezone {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.parse::<chrono_tz::Tz>()
            .map(Timezone)
            .map_err(|_| format!("{s:?} is not an IANA timezone name such as \"America/New_York\""))
    }
}

impl Serialize for Timezone {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl<'de> Deserialize<'de> for Timezone {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// A day of the week, 0 = Sunday … 6 = Saturday (seed 001).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct Weekday(u8);

impl Weekday {
    /// Checks the range.
    pub fn new(day: i64) -> Result<Self, String> {
        u8::try_from(day)
            .ok()
            .filter(|d| *d <= 6)
            .map(Weekday)
            .ok_or_else(|| format!("{day} is not a day of the week (0 = Sunday … 6 = Saturday)"))
    }

    /// 0 = Sunday … 6 = Saturday.
    pub fn number(self) -> u8 {
        self.0
    }

    /// From chrono's weekday.
    pub fn from_chrono(day: chrono::Weekday) -> Self {
        Weekday(day.num_days_from_sunday() as u8)
    }
}

impl<'de> Deserialize<'de> for Weekday {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Weekday::new(i64::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

/// A wall-clock time `HH:MM`, stored as minutes after midnight. `24:00` is accepted as an end
/// time meaning "until midnight".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LocalTime(u16);

impl LocalTime {
    /// Midnight at the start of the day.
    pub const MIDNIGHT: LocalTime = LocalTime(0);
    /// Midnight at the end of the day (`24:00`).
    pub const END_OF_DAY: LocalTime = LocalTime(24 * 60);

    /// From minutes after midnight, for constants (the caller keeps it within `0..=1440`).
    pub const fn from_minutes_const(minutes: u16) -> Self {
        LocalTime(minutes)
    }

    /// From hours and minutes (`24:00` allowed).
    pub fn from_hm(hour: u16, minute: u16) -> Option<Self> {
        let valid = (hour < 24 && minute < 60) || (hour == 24 && minute == 0);
        valid.then_some(LocalTime(hour * 60 + minute))
    }

    /// Minutes after midnight, 0..=1440.
    pub fn minutes(self) -> u16 {
        self.0
    }
}

impl FromStr for LocalTime {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || format!("{s:?} is not a time of day in HH:MM form (00:00 to 24:00)");
        let (h, m) = s.split_once(':').ok_or_else(err)?;
        if h.len() != 2 || m.len() != 2 {
            return Err(err());
        }
        let hour: u16 = h.parse().map_err(|_| err())?;
        let minute: u16 = m.parse().map_err(|_| err())?;
        LocalTime::from_hm(hour, minute).ok_or_else(err)
    }
}

impl fmt::Display for LocalTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02}:{:02}", self.0 / 60, self.0 % 60)
    }
}

impl Serialize for LocalTime {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for LocalTime {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// One open interval of a day, `startTime` (inclusive) to `endTime` (exclusive).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TimeSlot {
    /// When calling may start.
    pub start_time: LocalTime,
    /// When calling must stop.
    pub end_time: LocalTime,
}

/// The slots of one day of the week.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DaySchedule {
    /// 0 = Sunday … 6 = Saturday.
    pub day_of_week: Weekday,
    /// Several slots a day are allowed.
    pub time_slots: Vec<TimeSlot>,
}

/// A weekly schedule in a timezone (seed 001); `disableSchedule: true` means always open.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Schedule {
    /// The open days and their slots; a day not listed is closed.
    pub days: Vec<DaySchedule>,
    /// The timezone the times are read in.
    pub timezone: Timezone,
    /// When true, the schedule is ignored and calls may start at any time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disable_schedule: Option<bool>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_shape_round_trips() {
        let json = r#"{"days":[{"dayOfWeek":1,"timeSlots":[{"startTime":"09:00","endTime":"12:00"},{"startTime":"13:00","endTime":"17:00"}]}],"timezone":"America/New_York"}"#;
        let s: Schedule = serde_json::from_str(json).unwrap();
        assert_eq!(
            s.days[0].time_slots[1].end_time,
            LocalTime::from_hm(17, 0).unwrap()
        );
        assert_eq!(serde_json::to_string(&s).unwrap(), json);
    }

    #[test]
    fn rejects_bad_parts() {
        assert!("9:00".parse::<LocalTime>().is_err());
        assert!("24:01".parse::<LocalTime>().is_err());
        assert!("12:60".parse::<LocalTime>().is_err());
        assert!(Weekday::new(7).is_err());
        assert!(Weekday::new(-1).is_err());
        assert!("Mars/Olympus".parse::<Timezone>().is_err());
        assert_eq!("24:00".parse::<LocalTime>().unwrap(), LocalTime::END_OF_DAY);
    }
}

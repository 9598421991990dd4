//! A job's schedule as read back from the database, and the one policy for a schedule that
//! cannot be read: the job stays **closed** (invariant 5). The gateway validates every schedule
//! it stores, so an unreadable one is a bug or a hand edit; dialing outside the hours its owner
//! meant is worse than not dialing. Every role reads stored schedules through [`StoredSchedule`].

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::Window;
use crate::domain::{Schedule, Timezone};

/// The `schedule` column of a job.
#[derive(Debug, Clone, PartialEq)]
pub enum StoredSchedule {
    /// No weekly schedule: only `scheduledStartTime`, if any, limits the job.
    None,
    /// A readable weekly schedule.
    Weekly(Schedule),
    /// A value that does not parse as a schedule. The job is closed while it is stored.
    Unreadable {
        /// The value as stored, shown back as it is.
        raw: Value,
        /// Why it could not be read.
        error: String,
    },
}

impl StoredSchedule {
    /// Reads the stored value; a schedule that names no timezone takes the job's `timezone`.
    pub fn load(json: Option<Value>, timezone: &str) -> Self {
        let Some(mut json) = json.filter(|v| !v.is_null()) else {
            return Self::None;
        };
        let raw = json.clone();
        if let Some(obj) = json.as_object_mut() {
            obj.entry("timezone")
                .or_insert_with(|| Value::String(timezone.to_owned()));
        }
        match serde_json::from_value::<Schedule>(json) {
            Ok(schedule) => Self::Weekly(schedule),
            Err(e) => Self::Unreadable {
                raw,
                error: e.to_string(),
            },
        }
    }

    /// The job's calling window, with `not_before` (Dialgen's `scheduledStartTime`). Never
    /// open when the schedule is unreadable.
    pub fn window(&self, not_before: Option<DateTime<Utc>>) -> Window {
        match self {
            Self::None => Window::new(None, not_before),
            Self::Weekly(s) => Window::new(Some(s.clone()), not_before),
            Self::Unreadable { .. } => Window::new(Some(never_open()), not_before),
        }
    }

    /// The readable schedule, if there is one.
    pub fn schedule(&self) -> Option<&Schedule> {
        match self {
            Self::Weekly(s) => Some(s),
            _ => None,
        }
    }

    /// The error when the stored value cannot be read.
    pub fn error(&self) -> Option<&str> {
        match self {
            Self::Unreadable { error, .. } => Some(error),
            _ => None,
        }
    }

    /// As the API shows it: the schedule, the stored value when unreadable, or `null`.
    pub fn to_json(&self) -> Value {
        match self {
            Self::None => Value::Null,
            Self::Weekly(s) => serde_json::to_value(s).unwrap_or(Value::Null),
            Self::Unreadable { raw, .. } => raw.clone(),
        }
    }
}

/// A schedule with no open day.
fn never_open() -> Schedule {
    Schedule {
        days: Vec::new(),
        timezone: Timezone::UTC,
        disable_schedule: None,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn an_unreadable_schedule_keeps_the_job_closed() {
        let stored = StoredSchedule::load(Some(json!({"days": "every day"})), "UTC");
        assert!(stored.error().is_some());
        let window = stored.window(None);
        let now = Utc::now();
        assert!(!window.is_open(now));
        assert_eq!(window.next_open(now), None);
        assert_eq!(stored.to_json(), json!({"days": "every day"}));
    }

    #[test]
    fn absent_and_null_mean_always_open() {
        for json in [None, Some(Value::Null)] {
            let stored = StoredSchedule::load(json, "UTC");
            assert_eq!(stored, StoredSchedule::None);
            assert!(stored.window(None).is_open(Utc::now()));
        }
    }

    #[test]
    fn a_schedule_without_timezone_takes_the_jobs() {
        let stored = StoredSchedule::load(
            Some(json!({"days": [{"dayOfWeek": 1, "timeSlots": []}]})),
            "America/New_York",
        );
        assert_eq!(
            stored.schedule().map(|s| s.timezone.name()),
            Some("America/New_York")
        );
    }
}

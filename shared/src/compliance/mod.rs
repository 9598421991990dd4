//! Calling compliance (invariant 11), the pure parts: the recipient's timezones
//! ([`zones`]), the workspace's recipient calling hours and their intersection with a job's
//! window ([`hours`]), the frequency cap ([`cap`]). The scheduler applies them at release, the
//! dial worker again just before the carrier request; both read the workspace's policy from the
//! same columns (migration V10). [`enforce`] is the one decision path both roles take: the rule
//! pack's engine (issue #25) with the workspace's hours and the job's window on top.

pub mod cap;
pub mod enforce;
pub mod hours;
pub mod jurisdiction;
pub mod registry;
pub mod zones;

pub use cap::FrequencyCap;
pub use hours::{RecipientHours, Verdict, allowed, next_allowed};
pub use zones::zones_for_number;

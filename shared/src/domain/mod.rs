//! The domain types, parsed once at the edge so the rest of the code cannot hold an invalid
//! phone number, timezone, schedule or status. Serde names match the seeds exactly.

pub mod outcome;
pub mod phone;
pub mod retry;
pub mod schedule;
pub mod status;

pub use outcome::CallOutcome;
pub use phone::E164;
pub use retry::RetryStrategy;
pub use schedule::{DaySchedule, LocalTime, Schedule, TimeSlot, Timezone, Weekday};
pub use status::{DialgenStatus, IngestState, JobState, Surface, VogentStatus};

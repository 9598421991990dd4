//! The domain types, parsed once at the edge so the rest of the code cannot hold an invalid
//! phone number, timezone, schedule or status. Serde names match the seeds exactly.
//!
//! The vocabulary (docs/api.md#states-and-outcomes): [`JobState`] and [`IngestState`] for a batch,
//! [`ContactState`] for a contact, [`AttemptState`] and [`CallOutcome`] for a call
//! ([`MachineDetection`] for how it is placed), each with its database name (`as_str`/`parse`,
//! held by CHECK constraints); [`status`] and [`views`] map them to each API surface, [`stats`]
//! counts a batch's progress, and [`timing`] states the duration and time rule.

pub mod contact;
pub mod machine_detection;
pub mod names;
pub mod outcome;
pub mod phone;
pub mod retry;
pub mod schedule;
pub mod stats;
pub mod status;
pub mod timing;
pub mod views;

pub use contact::ContactState;
pub use machine_detection::MachineDetection;
pub use names::UnknownName;
pub use outcome::{AttemptState, CallOutcome};
pub use phone::E164;
pub use retry::RetryStrategy;
pub use schedule::{DaySchedule, LocalTime, Schedule, TimeSlot, Timezone, Weekday};
pub use stats::{ContactCounts, Statistics};
pub use status::{DialgenStatus, IngestState, JobState, Surface, VogentStatus};
pub use views::DialgenCallStatus;

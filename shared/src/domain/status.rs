//! One internal status model, and how each API surface names it
//! (docs/architecture.md#job-and-rows).
//!
//! The job's life ([`JobState`]) and its rows' life ([`IngestState`]) are separate because they
//! overlap: a Vogent job may be started while its rows are still arriving.

use serde::{Deserialize, Serialize};

use super::ContactState;
use super::names::named_enum;

named_enum! {
    /// Which API created a batch. Both surfaces show every batch.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
    #[serde(rename_all = "lowercase")]
    pub enum Surface {
        /// Vogent Batch Dial Jobs: waits in INIT until started through `/paused`.
        Vogent = "vogent",
        /// Dialgen Call Batches: starts itself once ingested.
        Dialgen = "dialgen",
    }
}

named_enum! {
    /// The job's life (`batches.state`).
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
    #[serde(rename_all = "lowercase")]
    pub enum JobState {
        /// Created, not started.
        Created = "created",
        /// Started: dials whenever its window is open.
        Active = "active",
        /// Paused by its owner.
        Paused = "paused",
        /// Every contact is final.
        Completed = "completed",
        /// Stopped by its owner.
        Cancelled = "cancelled",
        /// Could not be ingested (chunks lost or a publish failure).
        Failed = "failed",
    }
}

named_enum! {
    /// The rows' life (`batches.ingest_state`). `receiving` and `aborted` are hidden: a batch in
    /// either is never shown by the API.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
    #[serde(rename_all = "lowercase")]
    pub enum IngestState {
        /// Rows still arriving.
        Ingesting = "ingesting",
        /// Every chunk committed.
        Ready = "ready",
        /// Chunks missing after the ingest timeout, or the publish failed.
        Failed = "failed",
        /// The create request's body is still being read (streamed intake, migration V13): the
        /// batch is hidden from every list and lookup until it becomes `ingesting`.
        Receiving = "receiving",
        /// The body proved invalid (or the client went away) after chunks were published: a
        /// hidden tombstone whose late chunks are dropped.
        Aborted = "aborted",
    }
}

/// A status change that is not allowed from the current state.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a {from} job cannot be {action}")]
pub struct TransitionError {
    /// The current state, in Vogent's words.
    pub from: VogentStatus,
    /// What was asked ("paused", "resumed", "cancelled").
    pub action: &'static str,
}

impl JobState {
    /// Whether no further change can happen.
    pub fn is_final(self) -> bool {
        matches!(self, Self::Completed | Self::Cancelled | Self::Failed)
    }

    /// What a contact of this job becomes when it is handed back undialed: `queued` while the
    /// job may still dial (created, active or paused), `cancelled` once it is final. The same
    /// rule in SQL is `contact_state_for_job(text)` (migration V18); a test holds them equal.
    pub fn contact_state_when_handed_back(self) -> ContactState {
        if self.is_final() {
            ContactState::Cancelled
        } else {
            ContactState::Queued
        }
    }

    /// Vogent's `/paused` walk: `paused: false` starts or resumes (INIT→ACTIVE, PAUSED→ACTIVE),
    /// `paused: true` pauses (ACTIVE→PAUSED; INIT→PAUSED too, so a job can be readied paused).
    /// Repeating the current state is accepted and changes nothing. Final jobs refuse.
    pub fn set_paused(self, paused: bool) -> Result<Self, TransitionError> {
        match (self, paused) {
            (s, _) if s.is_final() => Err(TransitionError {
                from: vogent_status(s, IngestState::Ready),
                action: if paused { "paused" } else { "resumed" },
            }),
            (_, true) => Ok(Self::Paused),
            (_, false) => Ok(Self::Active),
        }
    }

    /// Cancelling: any job that is not final.
    pub fn cancel(self) -> Result<Self, TransitionError> {
        if self.is_final() {
            Err(TransitionError {
                from: vogent_status(self, IngestState::Ready),
                action: "cancelled",
            })
        } else {
            Ok(Self::Cancelled)
        }
    }
}

/// Vogent's job statuses (seeds 000–003).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum VogentStatus {
    /// Created (or still ingesting), not started.
    Init,
    /// Running.
    Active,
    /// Paused.
    Paused,
    /// Every dial attempted.
    Complete,
    /// Manually stopped (or failed to ingest: Vogent has no failed status).
    Cancelled,
}

impl std::fmt::Display for VogentStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Init => "INIT",
            Self::Active => "ACTIVE",
            Self::Paused => "PAUSED",
            Self::Complete => "COMPLETE",
            Self::Cancelled => "CANCELLED",
        })
    }
}

impl VogentStatus {
    /// The internal states a Vogent status filter selects.
    pub fn job_states(self) -> &'static [JobState] {
        match self {
            Self::Init => &[JobState::Created],
            Self::Active => &[JobState::Active],
            Self::Paused => &[JobState::Paused],
            Self::Complete => &[JobState::Completed],
            Self::Cancelled => &[JobState::Cancelled, JobState::Failed],
        }
    }
}

/// Dialgen's batch statuses (seed 004 and its public docs), plus `paused` and `failed`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum DialgenStatus {
    /// Contacts being stored.
    Ingesting,
    /// Started, waiting for the start time or an open window.
    Scheduled,
    /// Ready, not started.
    Pending,
    /// Calling.
    Processing,
    /// Paused (extension).
    Paused,
    /// Every call finished.
    Completed,
    /// Cancelled.
    Cancelled,
    /// Could not be ingested (extension).
    Failed,
}

/// The Vogent status of a job.
pub fn vogent_status(job: JobState, _ingest: IngestState) -> VogentStatus {
    match job {
        JobState::Created => VogentStatus::Init,
        JobState::Active => VogentStatus::Active,
        JobState::Paused => VogentStatus::Paused,
        JobState::Completed => VogentStatus::Complete,
        JobState::Cancelled | JobState::Failed => VogentStatus::Cancelled,
    }
}

/// The Dialgen status of a batch; `window_open` says whether it may dial right now (its start
/// time has passed and its schedule window is open).
pub fn dialgen_status(job: JobState, ingest: IngestState, window_open: bool) -> DialgenStatus {
    match (job, ingest) {
        (JobState::Failed, _) | (_, IngestState::Failed) => DialgenStatus::Failed,
        (JobState::Cancelled, _) => DialgenStatus::Cancelled,
        (JobState::Completed, _) => DialgenStatus::Completed,
        (_, IngestState::Ingesting) => DialgenStatus::Ingesting,
        (JobState::Created, _) => DialgenStatus::Pending,
        (JobState::Paused, _) => DialgenStatus::Paused,
        (JobState::Active, _) if window_open => DialgenStatus::Processing,
        (JobState::Active, _) => DialgenStatus::Scheduled,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn architecture_table() {
        use DialgenStatus as D;
        use IngestState::*;
        use VogentStatus as V;
        assert_eq!(vogent_status(JobState::Created, Ingesting), V::Init);
        assert_eq!(
            dialgen_status(JobState::Created, Ingesting, false),
            D::Ingesting
        );
        assert_eq!(dialgen_status(JobState::Created, Ready, true), D::Pending);
        assert_eq!(dialgen_status(JobState::Active, Ready, false), D::Scheduled);
        assert_eq!(dialgen_status(JobState::Active, Ready, true), D::Processing);
        assert_eq!(dialgen_status(JobState::Paused, Ready, true), D::Paused);
        assert_eq!(
            dialgen_status(JobState::Completed, Ready, true),
            D::Completed
        );
        assert_eq!(vogent_status(JobState::Completed, Ready), V::Complete);
        assert_eq!(
            dialgen_status(JobState::Cancelled, Ready, true),
            D::Cancelled
        );
    }

    #[test]
    fn pause_walk() {
        assert_eq!(JobState::Created.set_paused(false), Ok(JobState::Active));
        assert_eq!(JobState::Active.set_paused(true), Ok(JobState::Paused));
        assert_eq!(JobState::Paused.set_paused(false), Ok(JobState::Active));
        for s in [JobState::Completed, JobState::Cancelled, JobState::Failed] {
            assert!(s.set_paused(false).is_err());
            assert!(s.set_paused(true).is_err());
            assert!(s.cancel().is_err());
        }
    }

    #[test]
    fn names_round_trip() {
        for s in JobState::ALL {
            assert_eq!(JobState::parse(s.as_str()), Some(s));
        }
        for s in IngestState::ALL {
            assert_eq!(IngestState::parse(s.as_str()), Some(s));
        }
        assert_eq!(
            serde_json::to_string(&VogentStatus::Complete).unwrap(),
            "\"COMPLETE\""
        );
        assert_eq!(
            serde_json::to_string(&DialgenStatus::Ingesting).unwrap(),
            "\"ingesting\""
        );
    }
}

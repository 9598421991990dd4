//! Recording an attempt's end: one outcome per attempt, the contact's next state (as
//! [`crate::outcome::decide`] says), the `call.completed` webhook queued in the same
//! transaction (`crate::writes::ends`), and the slot given back.
//!
//! Exactly once: the attempt's outcome is written with `WHERE outcome IS NULL`, so a repeated
//! callback, a redelivered event or a reconciliation racing a callback changes nothing the
//! second time (it only gives back the slot again, which is idempotent).

use shared::domain::CallOutcome;
use uuid::Uuid;

use crate::ctx::Ctx;
use crate::error::StepError;
use crate::outcome::{ContactNext, outcome_of};
pub use crate::writes::ends::EndReport;
use crate::writes::ends::{EndRequest, Ended};

/// Whether [`record_end`] wrote the outcome or found it already written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    /// This call recorded it.
    Now(CallOutcome),
    /// It was recorded before (a repeated report).
    Already,
    /// No such attempt.
    NoAttempt,
}

/// Records an attempt's end exactly once, moves the contact on, queues the webhook, and gives
/// the slot back. `forced` overrides the outcome (`unknown` when the carrier cannot tell us).
#[tracing::instrument(skip_all, fields(attempt_id = %attempt_id))]
pub async fn record_end(
    ctx: &Ctx,
    attempt_id: Uuid,
    report: EndReport,
    forced: Option<(CallOutcome, &str)>,
) -> Result<Recorded, StepError> {
    let (outcome, error) = match forced {
        Some((o, e)) => (o, Some(e.to_owned())),
        None => (
            outcome_of(report.status, report.answered_by.as_deref()),
            None,
        ),
    };
    // Saturating on purpose: the column is `integer` seconds, and a carrier's talk time past
    // 68 years is nonsense that must not keep the attempt from ending (an error here would
    // retry the event until it is dead-lettered, the outcome never recorded).
    let duration = report
        .duration_secs
        .map(|d| i32::try_from(d).unwrap_or(i32::MAX));
    let slot_released = report.slot_released;
    let ended = ctx
        .writes
        .ends
        .write(EndRequest {
            attempt_id,
            outcome,
            error,
            duration,
            report,
        })
        .await?;
    match ended {
        Ended::Now {
            workspace_id,
            batch_id,
            next,
        } => {
            if !slot_released {
                ctx.release_slot(workspace_id, batch_id, attempt_id).await;
            }
            ctx.leases.forget(attempt_id);
            shared::metrics::call_outcome(outcome.as_str());
            if matches!(next, ContactNext::Retry(_)) {
                shared::metrics::retry_scheduled(outcome.as_str());
            }
            tracing::debug!(outcome = outcome.as_str(), ?next, "attempt ended");
            Ok(Recorded::Now(outcome))
        }
        Ended::Already {
            workspace_id,
            batch_id,
        } => {
            // Repeated report: the slot may still be held if the first release was lost.
            ctx.release_slot(workspace_id, batch_id, attempt_id).await;
            ctx.leases.forget(attempt_id);
            Ok(Recorded::Already)
        }
        Ended::NoAttempt => Ok(Recorded::NoAttempt),
    }
}

//! How a written attempt leaves the dial path, decided apart from any I/O.
//!
//! Once its attempt row is written, a dial ends in one of a few ways, whatever happened on the
//! way to the carrier (a last look refused it, a start-token wait outlived its job, the carrier
//! refused or went silent). [`exit`] maps that answer ([`Sent`]) to an [`Exit`], purely; the
//! dial path (`crate::dial`) then carries the `Exit` out in one place. The rule it encodes:
//!
//! - a contact is charged an attempt only when the call was placed, or the carrier refused the
//!   number itself (closed `failed`);
//! - a call that provably never left is withdrawn (the attempt row goes, the contact goes back
//!   with its attempt count as before): after a backoff when the carrier, Redis or the database
//!   was at fault, at its next allowed minute when a compliance rule deferred it, at once when
//!   the job stopped wanting it;
//! - a number listed meanwhile ends the contact `suppressed`, never charged;
//! - a call that may have been placed is never re-sent: it is left for reconciliation.

use std::time::Duration;

use chrono::{DateTime, Utc};
use shared::compliance::enforce::Hold;
use shared::domain::{CallOutcome, ContactState};
use shared::metrics::HandBack;
use uuid::Uuid;

use crate::carrier::CarrierError;
use crate::error::StepError;
use crate::job::Gate;

/// An attempt written but not yet sent to the carrier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Written {
    pub(crate) attempt_id: Uuid,
    pub(crate) contact_id: Uuid,
    pub(crate) attempt_no: i32,
    pub(crate) workspace_id: Uuid,
    pub(crate) batch_id: Uuid,
}

/// Why the last look (`crate::compliance`) refused a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// Not now (a calling rule, the frequency cap): the contact waits until `hold.until`.
    Defer(Hold),
    /// The number was put on the do-not-call list after the attempt was written.
    Listed,
}

/// Why a written attempt's call was not handed to the carrier, or what the carrier said.
#[derive(Debug)]
pub(crate) enum PlaceError {
    /// The job stopped wanting the call while it waited for its start token.
    Stopped(Gate),
    /// A compliance rule refused the call (see `crate::compliance`).
    Refused(Refusal),
    /// The rate limiter could not be asked.
    NoToken(redis::RedisError),
    /// The database could not confirm the request may go: past its send window the attempt's
    /// row could not be touched, or after a wait the rules could not be read.
    Unconfirmed(StepError),
    /// Past its send window, the attempt's row was gone: the reconciler took it back.
    TakenBack,
    /// The carrier's answer.
    Carrier(CarrierError),
}

/// The carrier's call id, or why there is none.
pub(crate) type Sent = Result<String, PlaceError>;

/// How long a contact waits before it is released again when the carrier could not take its
/// call (unreachable, throttling, credentials): long enough not to hammer a carrier that is down.
pub(crate) const CARRIER_BACKOFF: Duration = Duration::from_secs(30);

/// Carrier refusals that say nothing about the number: throttling and authentication.
pub(crate) fn carrier_side(status: u16) -> bool {
    matches!(status, 401 | 403 | 429)
}

/// What becomes of a written attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Exit {
    /// The carrier took the call: its id is stored, the contact stays `dialing`.
    Dialed { call_sid: String },
    /// Provably never sent, and not the contact's doing: the attempt is withdrawn (not
    /// charged), the slot given back, and the contact goes back as `state`, due after `delay`.
    Withdraw {
        state: ContactState,
        delay: Duration,
        why: HandBack,
        /// A compliance rule holds it: its reason (kept on the contact), until when and the
        /// rule (for the audit trail).
        deferred: Option<Hold>,
        /// What went wrong, for the log (nothing when the job simply stopped).
        note: Option<String>,
    },
    /// Never sent: the number was listed meanwhile. Withdrawn; the contact ends `failed` with
    /// the outcome `suppressed`.
    Suppress,
    /// The carrier refused the number itself: the attempt closes with `outcome` (charged).
    Close {
        outcome: CallOutcome,
        reason: String,
    },
    /// It may have been placed: never re-sent; left for the callback or the reconciler, the
    /// error noted on the attempt.
    Reconcile { error: String },
    /// The reconciler withdrew the attempt while it waited: the contact is queued again and
    /// someone else's now; only the slot is ours to give back.
    SlotOnly,
}

impl Exit {
    /// Withdrawn for a failure on our side or the carrier's: queued again after the backoff.
    fn backoff(why: HandBack, note: String) -> Self {
        Exit::Withdraw {
            state: ContactState::Queued,
            delay: CARRIER_BACKOFF,
            why,
            deferred: None,
            note: Some(note),
        }
    }
}

/// The one decision: the answer on the way to the carrier (`sent`) → how the attempt exits.
/// `now` times a deferral's wait.
pub(crate) fn exit(sent: Sent, now: DateTime<Utc>) -> Exit {
    let error = match sent {
        Ok(call_sid) => return Exit::Dialed { call_sid },
        Err(error) => error,
    };
    match error {
        // Paused, cancelled or out of its window while waiting for the start token.
        PlaceError::Stopped(gate) => Exit::Withdraw {
            state: gate.contact_state(),
            delay: Duration::ZERO,
            why: HandBack::Job,
            deferred: None,
            note: None,
        },
        // The number was listed after the attempt was written.
        PlaceError::Refused(Refusal::Listed) => Exit::Suppress,
        // The hours closed or the cap filled: it waits for its next allowed minute with its
        // hold reason, exactly as a deferral at release leaves it.
        PlaceError::Refused(Refusal::Defer(hold)) => Exit::Withdraw {
            state: ContactState::Queued,
            delay: (hold.until - now).to_std().unwrap_or_default(),
            why: HandBack::Compliance,
            deferred: Some(hold),
            note: None,
        },
        // Redis failed before the request left: the call was provably not placed.
        PlaceError::NoToken(e) => Exit::backoff(HandBack::Redis, format!("no start token: {e}")),
        // Past its send window and the row could not be touched: not sent.
        PlaceError::Unconfirmed(e) => Exit::backoff(
            HandBack::Database,
            format!("attempt not confirmed before its request: {e}"),
        ),
        PlaceError::TakenBack => Exit::SlotOnly,
        // Throttled (429) or our credentials refused (401/403): the carrier's or our problem,
        // not the contact's, so it is not charged an attempt.
        PlaceError::Carrier(CarrierError::Rejected { status, body }) if carrier_side(status) => {
            Exit::backoff(
                HandBack::Carrier,
                format!("carrier refused the request: HTTP {status}: {body}"),
            )
        }
        PlaceError::Carrier(CarrierError::Rejected { status, body }) => Exit::Close {
            outcome: CallOutcome::Failed,
            reason: format!("carrier refused: HTTP {status}: {body}"),
        },
        // Never reached the carrier, even after retries: not the contact's fault either.
        PlaceError::Carrier(CarrierError::Unreachable(e)) => {
            Exit::backoff(HandBack::Carrier, format!("carrier unreachable: {e}"))
        }
        // It may have been placed: never re-send; the callback or the reconciler decides.
        PlaceError::Carrier(e @ (CarrierError::Transport(_) | CarrierError::NotFound)) => {
            Exit::Reconcile {
                error: e.to_string(),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use shared::compliance::hours::DeferReason;

    fn now() -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000, 0).unwrap()
    }

    fn redis_error() -> redis::RedisError {
        redis::RedisError::from((redis::ErrorKind::Io, "gone"))
    }

    fn rejected(status: u16) -> PlaceError {
        PlaceError::Carrier(CarrierError::Rejected {
            status,
            body: "no".into(),
        })
    }

    #[test]
    fn a_call_the_carrier_took_is_dialed() {
        assert_eq!(
            exit(Ok("CA1".into()), now()),
            Exit::Dialed {
                call_sid: "CA1".into()
            }
        );
    }

    #[test]
    fn a_job_that_stopped_takes_its_contact_back_at_once() {
        for (gate, state) in [
            (Gate::Requeue, ContactState::Queued),
            (Gate::Cancel, ContactState::Cancelled),
        ] {
            assert_eq!(
                exit(Err(PlaceError::Stopped(gate)), now()),
                Exit::Withdraw {
                    state,
                    delay: Duration::ZERO,
                    why: HandBack::Job,
                    deferred: None,
                    note: None,
                }
            );
        }
    }

    #[test]
    fn a_listed_number_is_suppressed() {
        assert_eq!(
            exit(Err(PlaceError::Refused(Refusal::Listed)), now()),
            Exit::Suppress
        );
    }

    #[test]
    fn a_deferral_waits_until_its_minute_with_its_reason() {
        let until = now() + chrono::Duration::seconds(90);
        let hold = Hold::plain(DeferReason::FrequencyCap, until);
        assert_eq!(
            exit(Err(PlaceError::Refused(Refusal::Defer(hold))), now()),
            Exit::Withdraw {
                state: ContactState::Queued,
                delay: Duration::from_secs(90),
                why: HandBack::Compliance,
                deferred: Some(hold),
                note: None,
            }
        );
    }

    #[test]
    fn failures_on_our_side_or_the_carriers_back_off_uncharged() {
        let cases = [
            (PlaceError::NoToken(redis_error()), HandBack::Redis),
            (
                PlaceError::Unconfirmed(StepError::Invalid("x".into())),
                HandBack::Database,
            ),
            (rejected(429), HandBack::Carrier),
            (rejected(401), HandBack::Carrier),
            (
                PlaceError::Carrier(CarrierError::Unreachable("refused".into())),
                HandBack::Carrier,
            ),
        ];
        for (error, want) in cases {
            match exit(Err(error), now()) {
                Exit::Withdraw {
                    state: ContactState::Queued,
                    delay: CARRIER_BACKOFF,
                    why,
                    deferred: None,
                    note: Some(_),
                } => assert_eq!(why, want),
                other => panic!("expected a backoff, got {other:?}"),
            }
        }
    }

    #[test]
    fn a_refused_number_is_closed_failed() {
        assert_eq!(
            exit(Err(rejected(400)), now()),
            Exit::Close {
                outcome: CallOutcome::Failed,
                reason: "carrier refused: HTTP 400: no".into()
            }
        );
    }

    #[test]
    fn an_ambiguous_answer_is_left_for_reconciliation() {
        for e in [
            CarrierError::Transport("timeout".into()),
            CarrierError::NotFound,
        ] {
            let error = e.to_string();
            assert_eq!(
                exit(Err(PlaceError::Carrier(e)), now()),
                Exit::Reconcile { error }
            );
        }
    }

    #[test]
    fn an_attempt_taken_back_meanwhile_gives_only_its_slot() {
        assert_eq!(exit(Err(PlaceError::TakenBack), now()), Exit::SlotOnly);
    }

    #[test]
    fn only_throttling_and_credentials_are_the_carriers_side() {
        for status in [401, 403, 429] {
            assert!(carrier_side(status), "{status}");
        }
        for status in [400, 404, 422, 500, 503] {
            assert!(!carrier_side(status), "{status}");
        }
    }

    /// Every shape of answer, built from plain values (the errors are not `Clone`).
    fn answer(kind: u8, status: u16, secs: i64) -> Sent {
        let until = now() + chrono::Duration::seconds(secs);
        Err(match kind % 9 {
            0 => return Ok(format!("CA{status}")),
            1 => PlaceError::Stopped(if status.is_multiple_of(2) {
                Gate::Requeue
            } else {
                Gate::Cancel
            }),
            2 => PlaceError::Refused(Refusal::Listed),
            3 => PlaceError::Refused(Refusal::Defer(Hold::plain(
                DeferReason::FrequencyCap,
                until,
            ))),
            4 => PlaceError::NoToken(redis_error()),
            5 => PlaceError::Unconfirmed(StepError::ShuttingDown),
            6 => PlaceError::TakenBack,
            7 => rejected(status),
            _ => PlaceError::Carrier(if status.is_multiple_of(2) {
                CarrierError::Unreachable("refused".into())
            } else {
                CarrierError::Transport("timeout".into())
            }),
        })
    }

    proptest! {
        /// A contact is charged (its attempt closed) only when the carrier refused the number
        /// itself; dialed only with a call id; and no withdrawn contact is ever due in the past.
        #[test]
        fn charged_only_for_a_refused_number(kind in 0u8..9, status in 100u16..600,
                                             secs in -100_000i64..100_000) {
            let number_refused = kind % 9 == 7 && !carrier_side(status);
            match exit(answer(kind, status, secs), now()) {
                Exit::Close { outcome, .. } => {
                    prop_assert!(number_refused);
                    prop_assert_eq!(outcome, CallOutcome::Failed);
                }
                Exit::Dialed { call_sid } => {
                    prop_assert_eq!(kind % 9, 0);
                    prop_assert_eq!(call_sid, format!("CA{status}"));
                }
                Exit::Withdraw { delay, deferred, state, .. } => {
                    prop_assert!(!number_refused);
                    prop_assert!(matches!(state, ContactState::Queued | ContactState::Cancelled));
                    if let Some(hold) = deferred {
                        prop_assert_eq!(delay.as_secs() as i64, secs.max(0));
                        prop_assert_eq!(hold.until, now() + chrono::Duration::seconds(secs));
                    }
                }
                Exit::Suppress | Exit::Reconcile { .. } | Exit::SlotOnly => {
                    prop_assert!(!number_refused);
                }
            }
        }
    }
}

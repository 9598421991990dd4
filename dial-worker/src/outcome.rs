//! The decision when an attempt ends, pure: the carrier's final status → the attempt's outcome
//! ([`outcome_of`]), and the outcome → the contact's next step ([`decide`]): a retry after the
//! job's delay for that outcome (busy, no answer, a voicemail the job retries), or final.
//!
//! Recording it exactly once is [`crate::end`]'s, the webhook body [`crate::payload`]'s.

use shared::domain::{CallOutcome, ContactState, JobState, RetryStrategy};
use shared::queue::messages::CarrierCallStatus;

/// The outcome for a final carrier status: an answering machine makes a completed call a
/// voicemail.
pub fn outcome_of(status: CarrierCallStatus, answered_by: Option<&str>) -> CallOutcome {
    match status {
        CarrierCallStatus::Completed
            if answered_by.is_some_and(|a| a.starts_with("machine") || a == "fax") =>
        {
            CallOutcome::Voicemail
        }
        CarrierCallStatus::Busy => CallOutcome::Busy,
        CarrierCallStatus::NoAnswer => CallOutcome::NoAnswer,
        CarrierCallStatus::Failed => CallOutcome::Failed,
        CarrierCallStatus::Canceled => CallOutcome::Cancelled,
        _ => CallOutcome::Completed,
    }
}

/// What becomes of the contact after an attempt's outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContactNext {
    /// Back to `queued`, due after this many milliseconds.
    Retry(u64),
    /// Final: `completed`, `failed` or `cancelled`.
    Final(ContactState),
    /// The contact has moved on (a stale attempt): leave it alone.
    Leave,
}

/// The contact's next state. `attempt_no` is the attempt that ended; the contact is touched only
/// if it is still `dialing` that very attempt.
pub fn decide(
    outcome: CallOutcome,
    attempt_no: i32,
    contact_state: ContactState,
    contact_attempts: i32,
    batch_state: JobState,
    strategy: &RetryStrategy,
) -> ContactNext {
    if contact_state != ContactState::Dialing || contact_attempts != attempt_no {
        return ContactNext::Leave;
    }
    // A person answered: done. A machine answered: done too, unless the job retries
    // voicemails (`voicemailDelay`) and has attempts left.
    let voicemail_retry = outcome == CallOutcome::Voicemail && strategy.voicemail_delay.is_some();
    if outcome.is_answered() && !voicemail_retry {
        return ContactNext::Final(ContactState::Completed);
    }
    if batch_state == JobState::Cancelled {
        return ContactNext::Final(ContactState::Cancelled);
    }
    // Saturating on purpose: attempt numbers start at 1 (the dial path checks it against the
    // message's `u32`); were one ever negative, "as many as there can be" leaves no attempt
    // to retry, the safe direction for a corrupt count (never one call too many).
    let made = u32::try_from(attempt_no).unwrap_or(u32::MAX);
    match strategy.next_delay(outcome, made) {
        // The delay came from a `u64` of milliseconds, so it fits; saturating cannot change it.
        Some(delay) => ContactNext::Retry(u64::try_from(delay.as_millis()).unwrap_or(u64::MAX)),
        None if outcome.is_answered() => ContactNext::Final(ContactState::Completed),
        None => ContactNext::Final(ContactState::Failed),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_voicemail_is_final_unless_the_job_retries_it() {
        let final_by_default = RetryStrategy::default();
        assert_eq!(
            decide(
                CallOutcome::Voicemail,
                1,
                ContactState::Dialing,
                1,
                JobState::Active,
                &final_by_default
            ),
            ContactNext::Final(ContactState::Completed)
        );
        let retried = RetryStrategy {
            voicemail_delay: Some(60_000),
            ..RetryStrategy::default()
        };
        assert_eq!(
            decide(
                CallOutcome::Voicemail,
                1,
                ContactState::Dialing,
                1,
                JobState::Active,
                &retried
            ),
            ContactNext::Retry(60_000)
        );
        // Out of attempts: the machine still answered, the contact is completed.
        assert_eq!(
            decide(
                CallOutcome::Voicemail,
                3,
                ContactState::Dialing,
                3,
                JobState::Active,
                &retried
            ),
            ContactNext::Final(ContactState::Completed)
        );
    }
    use proptest::prelude::*;

    #[test]
    fn machines_make_voicemail() {
        assert_eq!(
            outcome_of(CarrierCallStatus::Completed, Some("machine_end_beep")),
            CallOutcome::Voicemail
        );
        assert_eq!(
            outcome_of(CarrierCallStatus::Completed, Some("human")),
            CallOutcome::Completed
        );
        assert_eq!(outcome_of(CarrierCallStatus::Busy, None), CallOutcome::Busy);
    }

    proptest! {
        #[test]
        fn retries_stop_at_max_attempts(max in 1u32..6, attempt in 1i32..8, oi in 0usize..7) {
            let outcome = CallOutcome::ALL[oi];
            let s = RetryStrategy { max_attempts: max, busy_delay: 300_000, no_answer_delay: 3_600_000, voicemail_delay: None };
            let next = decide(outcome, attempt, ContactState::Dialing, attempt, JobState::Active, &s);
            match next {
                ContactNext::Retry(ms) => {
                    prop_assert!(outcome.is_retryable());
                    prop_assert!((attempt as u32) < max);
                    prop_assert_eq!(ms, if outcome == CallOutcome::Busy { 300_000 } else { 3_600_000 });
                }
                ContactNext::Final(state) => {
                    let answered = matches!(outcome, CallOutcome::Completed | CallOutcome::Voicemail);
                    prop_assert_eq!(state, if answered { ContactState::Completed } else { ContactState::Failed });
                    prop_assert!(answered || !outcome.is_retryable() || attempt as u32 >= max);
                }
                ContactNext::Leave => prop_assert!(false),
            }
        }

        #[test]
        fn stale_attempts_leave_the_contact(attempt in 1i32..5, other in 0i32..5, si in 0usize..6) {
            let s = RetryStrategy::default();
            let state = ContactState::ALL[si];
            if state != ContactState::Dialing {
                prop_assert_eq!(decide(CallOutcome::Busy, attempt, state, other, JobState::Active, &s), ContactNext::Leave);
            }
            if other != attempt {
                prop_assert_eq!(decide(CallOutcome::Completed, attempt, ContactState::Dialing, other, JobState::Active, &s), ContactNext::Leave);
            }
        }
    }

    #[test]
    fn a_busy_call_retries_after_the_busy_delay_while_attempts_remain() {
        let s = RetryStrategy {
            max_attempts: 3,
            busy_delay: 300_000,
            no_answer_delay: 3_600_000,
            voicemail_delay: None,
        };
        let busy = |attempt| {
            decide(
                CallOutcome::Busy,
                attempt,
                ContactState::Dialing,
                attempt,
                JobState::Active,
                &s,
            )
        };
        assert_eq!(busy(1), ContactNext::Retry(300_000));
        assert_eq!(busy(2), ContactNext::Retry(300_000));
        assert_eq!(busy(3), ContactNext::Final(ContactState::Failed));
    }

    proptest! {
        #[test]
        fn answered_calls_are_final_unless_a_voicemail_is_retried(
            attempt in 1i32..8,
            max in 1u32..6,
            voicemail_delay in proptest::option::of(0u64..100_000),
            job in 0usize..JobState::ALL.len(),
        ) {
            let s = RetryStrategy { max_attempts: max, voicemail_delay, ..RetryStrategy::default() };
            let batch_state = JobState::ALL[job];
            let human = decide(CallOutcome::Completed, attempt, ContactState::Dialing, attempt, batch_state, &s);
            prop_assert_eq!(human, ContactNext::Final(ContactState::Completed));
            let machine = decide(CallOutcome::Voicemail, attempt, ContactState::Dialing, attempt, batch_state, &s);
            if let ContactNext::Retry(ms) = machine {
                prop_assert_eq!(Some(ms), voicemail_delay);
                prop_assert!(batch_state != JobState::Cancelled);
            }
        }
    }

    #[test]
    fn cancelled_jobs_do_not_retry() {
        let s = RetryStrategy::default();
        assert_eq!(
            decide(
                CallOutcome::Busy,
                1,
                ContactState::Dialing,
                1,
                JobState::Cancelled,
                &s
            ),
            ContactNext::Final(ContactState::Cancelled)
        );
    }
}

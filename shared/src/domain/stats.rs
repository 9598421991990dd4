//! A batch's progress counted one way for every surface: Dialgen's `statistics` in check-status,
//! the batch list, the `batch.completed` webhook, the Vogent job view, the operator CLI and the
//! monitor page. The one rule is [`ContactCounts::add`]: a contact counts by its state **and**
//! its last outcome, so a call answered by a machine (`completed` / `voicemail`) is a voicemail,
//! not a success.

use serde::Serialize;

use super::contact::ContactState;
use super::outcome::CallOutcome;

/// How many of a batch's contacts are in each final state.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ContactCounts {
    /// Every contact stored for the batch.
    pub total: i64,
    /// Answered by a person.
    pub completed: i64,
    /// Answered by a machine (`AnsweredBy: machine_*`): final, but not a success.
    pub voicemail: i64,
    /// Out of attempts without an answer (suppressed by the do-not-call list included).
    pub failed: i64,
    /// Cancelled with the job.
    pub cancelled: i64,
}

impl ContactCounts {
    /// Adds `n` contacts in `state` whose last attempt ended as `last_outcome`.
    pub fn add(&mut self, state: ContactState, last_outcome: Option<CallOutcome>, n: i64) {
        self.total += n;
        match state {
            ContactState::Completed if last_outcome == Some(CallOutcome::Voicemail) => {
                self.voicemail += n
            }
            ContactState::Completed => self.completed += n,
            ContactState::Failed => self.failed += n,
            ContactState::Cancelled => self.cancelled += n,
            ContactState::Queued | ContactState::Released | ContactState::Dialing => {}
        }
    }

    /// Contacts with a final state.
    pub fn processed(&self) -> i64 {
        self.completed + self.voicemail + self.failed + self.cancelled
    }
}

/// Dialgen's `statistics`, with `voicemail` and `cancelled` as extensions.
///
/// `processed` counts every final contact, voicemails and cancelled ones included (they are
/// done); the success rate is `succeeded / (succeeded + voicemail + failed)`: a voicemail was
/// given its chance and reached no one, so it is not a success; a cancelled contact was never
/// given its chance, so it is neither a success nor a failure.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Statistics {
    /// Every contact.
    pub total: i64,
    /// Final contacts.
    pub processed: i64,
    /// Contacts whose call was answered by a person.
    pub succeeded: i64,
    /// Contacts out of attempts without an answer.
    pub failed: i64,
    /// Contacts whose call was answered by a machine (an extension).
    pub voicemail: i64,
    /// Contacts cancelled with their job (an extension).
    pub cancelled: i64,
    /// Contacts not final yet.
    pub pending: i64,
    /// `processed / total`, in percent to two decimals; 100 for a finished batch that holds no
    /// contact, 0 for an unfinished one.
    pub percent_complete: f64,
    /// `succeeded / (succeeded + voicemail + failed)`, in percent to two decimals; 0 before any.
    pub success_rate: f64,
    /// Extension (check-status only): contacts waiting on a compliance rule now (a
    /// `holdReason`); absent where it is not counted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub held: Option<i64>,
}

impl Statistics {
    /// The statistics of `counts`; `finished` says whether the batch is final (it decides
    /// `percentComplete` for a batch without contacts).
    pub fn of(counts: &ContactCounts, finished: bool) -> Self {
        let processed = counts.processed();
        let decided = counts.completed + counts.voicemail + counts.failed;
        Self {
            total: counts.total,
            processed,
            succeeded: counts.completed,
            failed: counts.failed,
            voicemail: counts.voicemail,
            cancelled: counts.cancelled,
            pending: counts.total - processed,
            percent_complete: match counts.total {
                0 if finished => 100.0,
                0 => 0.0,
                total => percent(processed, total),
            },
            success_rate: if decided == 0 {
                0.0
            } else {
                percent(counts.completed, decided)
            },
            held: None,
        }
    }
}

fn percent(part: i64, whole: i64) -> f64 {
    (part as f64 * 10_000.0 / whole as f64).round() / 100.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cancelled_contacts_are_neither_success_nor_failure() {
        let mut c = ContactCounts::default();
        c.add(ContactState::Completed, Some(CallOutcome::Completed), 29);
        c.add(ContactState::Failed, Some(CallOutcome::Busy), 15);
        c.add(ContactState::Cancelled, None, 56);
        let s = Statistics::of(&c, true);
        assert_eq!((s.total, s.processed, s.pending), (100, 100, 0));
        assert_eq!((s.succeeded, s.failed, s.cancelled), (29, 15, 56));
        assert_eq!(s.success_rate, 65.91);
        assert_eq!(s.percent_complete, 100.0);
    }

    #[test]
    fn a_voicemail_is_final_but_not_a_success() {
        let mut c = ContactCounts::default();
        c.add(ContactState::Completed, Some(CallOutcome::Completed), 6);
        c.add(ContactState::Completed, Some(CallOutcome::Voicemail), 2);
        c.add(ContactState::Failed, Some(CallOutcome::NoAnswer), 2);
        c.add(ContactState::Queued, Some(CallOutcome::Voicemail), 1);
        let s = Statistics::of(&c, false);
        assert_eq!((s.succeeded, s.voicemail, s.failed), (6, 2, 2));
        assert_eq!((s.processed, s.pending), (10, 1));
        assert_eq!(s.success_rate, 60.0);
    }

    #[test]
    fn empty_and_unstarted_batches() {
        let none = ContactCounts::default();
        assert_eq!(Statistics::of(&none, true).percent_complete, 100.0);
        assert_eq!(Statistics::of(&none, false).percent_complete, 0.0);
        assert_eq!(Statistics::of(&none, false).success_rate, 0.0);
        let mut c = ContactCounts::default();
        c.add(ContactState::Queued, None, 2);
        c.add(ContactState::Completed, Some(CallOutcome::Completed), 1);
        let s = Statistics::of(&c, false);
        assert_eq!(
            (s.pending, s.percent_complete, s.success_rate),
            (2, 33.33, 100.0)
        );
    }
}

//! A batch's progress counted one way for every surface: Dialgen's `statistics` in check-status,
//! the batch list, and the `batch.completed` webhook.

use serde::Serialize;

use super::contact::ContactState;

/// How many of a batch's contacts are in each final state.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ContactCounts {
    /// Every contact stored for the batch.
    pub total: i64,
    /// Answered (by a person or a machine).
    pub completed: i64,
    /// Out of attempts without an answer.
    pub failed: i64,
    /// Cancelled with the job.
    pub cancelled: i64,
}

impl ContactCounts {
    /// Adds `n` contacts in `state`.
    pub fn add(&mut self, state: ContactState, n: i64) {
        self.total += n;
        match state {
            ContactState::Completed => self.completed += n,
            ContactState::Failed => self.failed += n,
            ContactState::Cancelled => self.cancelled += n,
            ContactState::Queued | ContactState::Released | ContactState::Dialing => {}
        }
    }

    /// Contacts with a final state.
    pub fn processed(&self) -> i64 {
        self.completed + self.failed + self.cancelled
    }
}

/// Dialgen's `statistics`, with `cancelled` as an extension.
///
/// `processed` counts every final contact, cancelled ones included (they are done); the success
/// rate is `succeeded / (succeeded + failed)`: a cancelled contact was never given its chance,
/// so it is neither a success nor a failure.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Statistics {
    /// Every contact.
    pub total: i64,
    /// Final contacts.
    pub processed: i64,
    /// Contacts whose call was answered (voicemail included).
    pub succeeded: i64,
    /// Contacts out of attempts without an answer.
    pub failed: i64,
    /// Contacts cancelled with their job.
    pub cancelled: i64,
    /// Contacts not final yet.
    pub pending: i64,
    /// `processed / total`, in percent to two decimals; 100 for a finished batch that holds no
    /// contact, 0 for an unfinished one.
    pub percent_complete: f64,
    /// `succeeded / (succeeded + failed)`, in percent to two decimals; 0 before either.
    pub success_rate: f64,
}

impl Statistics {
    /// The statistics of `counts`; `finished` says whether the batch is final (it decides
    /// `percentComplete` for a batch without contacts).
    pub fn of(counts: &ContactCounts, finished: bool) -> Self {
        let processed = counts.processed();
        let decided = counts.completed + counts.failed;
        Self {
            total: counts.total,
            processed,
            succeeded: counts.completed,
            failed: counts.failed,
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
        c.add(ContactState::Completed, 29);
        c.add(ContactState::Failed, 15);
        c.add(ContactState::Cancelled, 56);
        let s = Statistics::of(&c, true);
        assert_eq!((s.total, s.processed, s.pending), (100, 100, 0));
        assert_eq!((s.succeeded, s.failed, s.cancelled), (29, 15, 56));
        assert_eq!(s.success_rate, 65.91);
        assert_eq!(s.percent_complete, 100.0);
    }

    #[test]
    fn empty_and_unstarted_batches() {
        let none = ContactCounts::default();
        assert_eq!(Statistics::of(&none, true).percent_complete, 100.0);
        assert_eq!(Statistics::of(&none, false).percent_complete, 0.0);
        assert_eq!(Statistics::of(&none, false).success_rate, 0.0);
        let mut c = ContactCounts::default();
        c.add(ContactState::Queued, 2);
        c.add(ContactState::Completed, 1);
        let s = Statistics::of(&c, false);
        assert_eq!(
            (s.pending, s.percent_complete, s.success_rate),
            (2, 33.33, 100.0)
        );
    }
}

//! When a busy or unanswered contact is tried again.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::CallOutcome;

/// Dialgen's `retryStrategy` (delays in milliseconds). Vogent jobs, which name none, get the
/// workspace's defaults (3 attempts, busy 300000 ms, no-answer 3600000 ms unless changed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RetryStrategy {
    /// Attempts in all, the first included.
    pub max_attempts: u32,
    /// Wait after a no-answer, in ms.
    pub no_answer_delay: u64,
    /// Wait after a busy signal, in ms.
    pub busy_delay: u64,
    /// Wait after a voicemail (an answering machine), in ms; `None` (the default): a
    /// voicemail is final.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub voicemail_delay: Option<u64>,
}

impl Default for RetryStrategy {
    fn default() -> Self {
        Self {
            max_attempts: 3,
            no_answer_delay: 3_600_000,
            busy_delay: 300_000,
            voicemail_delay: None,
        }
    }
}

/// A stored retry strategy that cannot be one: a negative count or delay.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("stored retry strategy has a negative {0}")]
pub struct NegativeRetryColumn(pub &'static str);

impl RetryStrategy {
    /// The strategy as a batch or a workspace stores it (an `integer` count and `bigint`
    /// delays in ms, no voicemail retry). A negative value is refused rather than clamped:
    /// the columns' checks forbid it, so one means the row is corrupt.
    pub fn from_columns(
        max_attempts: i32,
        busy_delay_ms: i64,
        no_answer_delay_ms: i64,
    ) -> Result<Self, NegativeRetryColumn> {
        Ok(Self {
            max_attempts: u32::try_from(max_attempts)
                .map_err(|_| NegativeRetryColumn("max attempts"))?,
            busy_delay: u64::try_from(busy_delay_ms)
                .map_err(|_| NegativeRetryColumn("busy delay"))?,
            no_answer_delay: u64::try_from(no_answer_delay_ms)
                .map_err(|_| NegativeRetryColumn("no-answer delay"))?,
            voicemail_delay: None,
        })
    }

    /// After attempt number `attempts_made` (1-based) ended with `outcome`, how long until the
    /// next one, or `None` if the contact is final.
    pub fn next_delay(&self, outcome: CallOutcome, attempts_made: u32) -> Option<Duration> {
        if attempts_made >= self.max_attempts {
            return None;
        }
        match outcome {
            CallOutcome::Busy => Some(Duration::from_millis(self.busy_delay)),
            CallOutcome::NoAnswer => Some(Duration::from_millis(self.no_answer_delay)),
            CallOutcome::Voicemail => self.voicemail_delay.map(Duration::from_millis),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn stored_columns_convert_checked() {
        let s = RetryStrategy::from_columns(3, 300_000, 3_600_000).unwrap();
        assert_eq!(s, RetryStrategy::default());
        assert_eq!(
            RetryStrategy::from_columns(-1, 0, 0),
            Err(NegativeRetryColumn("max attempts"))
        );
        assert_eq!(
            RetryStrategy::from_columns(1, -5, 0),
            Err(NegativeRetryColumn("busy delay"))
        );
        assert_eq!(
            RetryStrategy::from_columns(1, 0, -5),
            Err(NegativeRetryColumn("no-answer delay"))
        );
    }

    proptest! {
        #[test]
        fn never_exceeds_max_attempts(max in 1u32..6, made in 1u32..10, busy in 0u64..10_000_000, na in 0u64..10_000_000) {
            let s = RetryStrategy { max_attempts: max, busy_delay: busy, no_answer_delay: na, voicemail_delay: None };
            for outcome in CallOutcome::ALL {
                let next = s.next_delay(outcome, made);
                if made >= max || !outcome.is_retryable() {
                    prop_assert!(next.is_none());
                } else if outcome == CallOutcome::Busy {
                    prop_assert_eq!(next, Some(Duration::from_millis(busy)));
                } else {
                    prop_assert_eq!(next, Some(Duration::from_millis(na)));
                }
            }
        }
    }
}

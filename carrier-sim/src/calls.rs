//! The calls the simulator knows about, their live state, and the idempotency keys that map to
//! them.
//!
//! Everything lives in memory: a restarted simulator forgets its calls and keys (the record on
//! disk keeps the history). Ended calls are dropped after the retention time.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;

use crate::plan::Plan;
use crate::subscription::CallbackSpec;

/// Twilio's call statuses, as `GET …/Calls/{sid}.json` and callbacks spell them: the same type
/// the gateway forwards to the dial workers.
pub use shared::queue::messages::CarrierCallStatus as CallStatus;

/// A hang-up asked for through the modify-call API (`Status=canceled|completed`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HangUp {
    /// `Status=canceled`: ends a call that has not connected; no effect once it has.
    Cancel,
    /// `Status=completed`: ends the call whatever its state.
    Complete,
}

/// What a call is doing now; changed only under its lock.
#[derive(Debug, Clone)]
pub struct CallState {
    /// Twilio's status.
    pub status: CallStatus,
    /// When dialing began (Twilio's `start_time`).
    pub started_at: Option<DateTime<Utc>>,
    /// When someone picked up.
    pub answered_at: Option<DateTime<Utc>>,
    /// When it ended.
    pub ended_at: Option<DateTime<Utc>>,
    /// Last change (Twilio's `date_updated`).
    pub updated_at: DateTime<Utc>,
    /// Twilio's `AnsweredBy` (`human`, `machine_start`, …) when machine detection ran and the
    /// call connected.
    pub answered_by: Option<&'static str>,
    /// A hang-up requested through the API, which the call's task acts on.
    pub hang_up: Option<HangUp>,
}

/// One call.
#[derive(Debug)]
pub struct Call {
    /// `CA` + 32 hex digits.
    pub sid: String,
    /// The account that placed it.
    pub account_sid: String,
    /// Called number (E.164).
    pub to: String,
    /// Caller ID (E.164).
    pub from: String,
    /// When the create request arrived.
    pub requested_at: DateTime<Utc>,
    /// Its fate, decided on arrival.
    pub plan: Plan,
    /// `Url`: where Twilio would fetch the call's instructions once answered.
    pub answer_url: Option<String>,
    /// Twilio's `MachineDetection` (`Enable`, `DetectMessageEnd`), if asked for.
    pub machine_detection: Option<String>,
    /// Where and what to call back.
    pub callback: Option<CallbackSpec>,
    /// The `Idempotency-Key` it was created with, if any (shown as `idempotency_key`, an
    /// extension: Twilio's resource has no such field).
    pub idempotency_key: Option<String>,
    /// Cancelled to make the call's task end the call now (a hang-up or a forced shutdown).
    pub interrupt: CancellationToken,
    /// Cancelled once the call has ended and its record line is written.
    pub done: CancellationToken,
    state: Mutex<CallState>,
}

impl Call {
    /// A new queued call.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        account_sid: String,
        to: String,
        from: String,
        requested_at: DateTime<Utc>,
        plan: Plan,
        answer_url: Option<String>,
        machine_detection: Option<String>,
        callback: Option<CallbackSpec>,
        interrupt: CancellationToken,
    ) -> Self {
        Self {
            sid: new_sid(),
            account_sid,
            to,
            from,
            requested_at,
            plan,
            answer_url,
            machine_detection,
            callback,
            idempotency_key: None,
            interrupt,
            done: CancellationToken::new(),
            state: Mutex::new(CallState {
                status: CallStatus::Queued,
                started_at: None,
                answered_at: None,
                ended_at: None,
                updated_at: requested_at,
                answered_by: None,
                hang_up: None,
            }),
        }
    }

    /// Locks the call's state. A poisoned lock (a panic while held) still holds valid state.
    pub fn state(&self) -> MutexGuard<'_, CallState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The called number's last four digits, for logs.
    pub fn to_last_four(&self) -> &str {
        &self.to[self.to.len().saturating_sub(4)..]
    }
}

/// A new call sid: `CA` and 32 lowercase hex digits, like Twilio's.
pub fn new_sid() -> String {
    format!("CA{}", uuid::Uuid::new_v4().simple())
}

/// Every known call, the idempotency keys, and how often each number was called.
#[derive(Default)]
pub struct Registry {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    calls: HashMap<String, Arc<Call>>,
    /// (account, key) → call sid.
    keys: HashMap<(String, String), String>,
    /// Calls so far per called number: the occurrence that keys the seeded draw.
    occurrences: HashMap<String, u64>,
    /// Ended calls and when they ended (monotonic), oldest first, for the retention sweep.
    ended: std::collections::VecDeque<(Instant, String)>,
}

/// The answer to a create request.
pub enum Placed {
    /// A new call; its task must be started.
    New(Arc<Call>),
    /// The idempotency key was seen before: this is that call, and nothing new was placed.
    Replayed(Arc<Call>),
}

impl Registry {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Places a call built by `make` (given the number's occurrence count), unless
    /// `idempotency_key` names an earlier call. The check and the insert happen under one lock,
    /// so two concurrent requests with one key place one call.
    pub fn place(
        &self,
        account_sid: &str,
        to: &str,
        idempotency_key: Option<&str>,
        make: impl FnOnce(u64) -> Call,
    ) -> Placed {
        let mut inner = self.lock();
        if let Some(key) = idempotency_key {
            let id = (account_sid.to_owned(), key.to_owned());
            if let Some(call) = inner.keys.get(&id).and_then(|sid| inner.calls.get(sid)) {
                return Placed::Replayed(call.clone());
            }
        }
        let occurrence = {
            let n = inner.occurrences.entry(to.to_owned()).or_default();
            *n += 1;
            *n - 1
        };
        let mut call = make(occurrence);
        call.idempotency_key = idempotency_key.map(str::to_owned);
        let call = Arc::new(call);
        if let Some(key) = idempotency_key {
            inner
                .keys
                .insert((account_sid.to_owned(), key.to_owned()), call.sid.clone());
        }
        inner.calls.insert(call.sid.clone(), call.clone());
        Placed::New(call)
    }

    /// The call with this sid, if known.
    pub fn get(&self, sid: &str) -> Option<Arc<Call>> {
        self.lock().calls.get(sid).cloned()
    }

    /// Notes that a call ended, for the retention sweep.
    pub fn ended(&self, sid: &str) {
        self.lock()
            .ended
            .push_back((Instant::now(), sid.to_owned()));
    }

    /// Forgets calls that ended more than `retain` ago, and their idempotency keys.
    pub fn sweep(&self, retain: Duration) -> usize {
        let mut inner = self.lock();
        let mut gone = std::collections::HashSet::new();
        while let Some((at, _)) = inner.ended.front() {
            if at.elapsed() < retain {
                break;
            }
            if let Some((_, sid)) = inner.ended.pop_front() {
                inner.calls.remove(&sid);
                gone.insert(sid);
            }
        }
        if !gone.is_empty() {
            inner.keys.retain(|_, sid| !gone.contains(sid));
        }
        gone.len()
    }

    /// Known calls matching `keep`, newest first.
    pub fn list(&self, keep: impl Fn(&Call) -> bool) -> Vec<Arc<Call>> {
        let mut calls: Vec<Arc<Call>> = self
            .lock()
            .calls
            .values()
            .filter(|c| keep(c))
            .cloned()
            .collect();
        calls.sort_by_key(|c| std::cmp::Reverse(c.requested_at));
        calls
    }

    /// How many calls are not over.
    pub fn in_flight(&self) -> usize {
        self.lock()
            .calls
            .values()
            .filter(|c| !c.state().status.is_final())
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::Ending;

    fn make(registry: &Registry, key: Option<&str>) -> Placed {
        registry.place("ACsim", "+12015550100", key, |_| {
            Call::new(
                "ACsim".into(),
                "+12015550100".into(),
                "+12015550199".into(),
                Utc::now(),
                Plan {
                    ending: Ending::Answered,
                    talk: Duration::ZERO,
                },
                None,
                None,
                None,
                CancellationToken::new(),
            )
        })
    }

    #[test]
    fn sids_look_like_twilios() {
        let sid = new_sid();
        assert_eq!(sid.len(), 34);
        assert!(sid.starts_with("CA"));
        assert!(sid[2..].bytes().all(|b| b.is_ascii_hexdigit()));
    }

    #[test]
    fn a_key_places_one_call() {
        let registry = Registry::default();
        let Placed::New(first) = make(&registry, Some("k1")) else {
            panic!("first use of a key must place a call")
        };
        let Placed::Replayed(again) = make(&registry, Some("k1")) else {
            panic!("second use of a key must not place a call")
        };
        assert_eq!(first.sid, again.sid);
        assert!(matches!(make(&registry, Some("k2")), Placed::New(_)));
        assert!(matches!(make(&registry, None), Placed::New(_)));
    }

    #[test]
    fn sweep_forgets_ended_calls_and_their_keys() {
        let registry = Registry::default();
        let Placed::New(call) = make(&registry, Some("k")) else {
            panic!()
        };
        registry.ended(&call.sid);
        assert_eq!(registry.sweep(Duration::from_secs(60)), 0);
        assert_eq!(registry.sweep(Duration::ZERO), 1);
        assert!(registry.get(&call.sid).is_none());
        assert!(matches!(make(&registry, Some("k")), Placed::New(_)));
    }
}

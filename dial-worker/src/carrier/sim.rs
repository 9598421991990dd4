//! An in-process carrier for tests and benchmarks: calls "ring" and "talk" for configurable
//! times, end with configurable outcomes, and report through the same `CallEventV1` messages the
//! gateway publishes for a real carrier. It honours the idempotency key like the carrier-sim,
//! and keeps a record of every call it received (the witness tests check limits against).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use shared::carrier_sim::Ending;
use shared::queue::messages::{CallEventV1, CarrierCallStatus};
use shared::queue::publisher::Outgoing;
use shared::queue::{Publisher, Stream};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::{CallRequest, CallStatusReport, CarrierError};

/// How a simulated call ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SimOutcome {
    /// Answered by a person; talks, then completes.
    Answered,
    /// Busy after ringing.
    Busy,
    /// Rings out.
    NoAnswer,
    /// Cannot be placed.
    Failed,
    /// Answered by a machine.
    Voicemail,
    /// Never ends (to test what happens to slots when a worker dies mid-call).
    Hang,
}

/// How outcomes are chosen.
#[derive(Debug, Clone)]
pub enum OutcomeRule {
    /// By the called number's last digit, the carrier-sim's own rule (`shared::carrier_sim`):
    /// 0–5 answered, 6 busy, 7 no-answer, 8 failed, 9 voicemail.
    LastDigit,
    /// Always the same.
    Always(SimOutcome),
    /// A seeded weighted draw.
    Mix(Vec<(SimOutcome, f64)>),
}

/// The simulator's behaviour.
#[derive(Debug, Clone)]
pub struct SimBehavior {
    /// Ring time range in ms (uniform).
    pub ring_ms: (u64, u64),
    /// Talk time range in ms (uniform), for answered calls.
    pub talk_ms: (u64, u64),
    /// How the outcome is chosen.
    pub rule: OutcomeRule,
    /// Whether to report the answer (`in-progress`) before the end, as a carrier does.
    pub report_answered: bool,
    /// Seed of the random draws.
    pub seed: u64,
}

impl Default for SimBehavior {
    fn default() -> Self {
        Self {
            ring_ms: (300, 300),
            talk_ms: (2000, 2000),
            rule: OutcomeRule::LastDigit,
            report_answered: true,
            seed: 1,
        }
    }
}

/// One call in the simulator's record.
#[derive(Debug, Clone)]
pub struct SimCall {
    /// The call id.
    pub call_sid: String,
    /// The idempotency key it was created with.
    pub attempt_id: Uuid,
    /// Called number.
    pub to: String,
    /// Caller ID.
    pub from: String,
    /// When the request arrived.
    pub requested_at: DateTime<Utc>,
    /// When it was answered.
    pub answered_at: Option<DateTime<Utc>>,
    /// When it ended.
    pub ended_at: Option<DateTime<Utc>>,
    /// Its final status, once ended.
    pub status: Option<CarrierCallStatus>,
    /// Planned duration of the whole call (ring + talk), ms.
    pub planned_ms: u64,
}

#[derive(Debug)]
struct State {
    by_key: HashMap<Uuid, String>,
    calls: Vec<SimCall>,
    index: HashMap<String, usize>,
    rng: StdRng,
}

/// The simulated carrier; clones share one record.
#[derive(Debug, Clone)]
pub struct SimCarrier {
    behavior: Arc<SimBehavior>,
    state: Arc<Mutex<State>>,
    events: mpsc::UnboundedSender<CallEventV1>,
}

impl SimCarrier {
    /// A simulator and the receiving end of its events (hand it to [`forward_events`]).
    pub fn new(behavior: SimBehavior) -> (Self, mpsc::UnboundedReceiver<CallEventV1>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let state = State {
            by_key: HashMap::new(),
            calls: Vec::new(),
            index: HashMap::new(),
            rng: StdRng::seed_from_u64(behavior.seed),
        };
        (
            Self {
                behavior: Arc::new(behavior),
                state: Arc::new(Mutex::new(state)),
                events: tx,
            },
            rx,
        )
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Every call received so far.
    pub fn calls(&self) -> Vec<SimCall> {
        self.lock().calls.clone()
    }

    /// Places a call (at most one per idempotency key).
    pub fn place_call(&self, req: &CallRequest) -> Result<String, CarrierError> {
        let mut state = self.lock();
        if let Some(sid) = state.by_key.get(&req.attempt_id) {
            return Ok(sid.clone());
        }
        let b = &self.behavior;
        let outcome = match &b.rule {
            OutcomeRule::Always(o) => *o,
            OutcomeRule::LastDigit => by_last_digit(&req.to),
            OutcomeRule::Mix(weights) => {
                let total: f64 = weights.iter().map(|w| w.1).sum();
                let mut x = state.rng.random::<f64>() * total;
                let mut pick = SimOutcome::Answered;
                for (o, w) in weights {
                    if x < *w {
                        pick = *o;
                        break;
                    }
                    x -= w;
                }
                pick
            }
        };
        let ring = draw(&mut state.rng, b.ring_ms);
        let talk = draw(&mut state.rng, b.talk_ms);
        let sid = format!("CA{}", Uuid::new_v4().simple());
        let talks = matches!(outcome, SimOutcome::Answered | SimOutcome::Voicemail);
        let call = SimCall {
            call_sid: sid.clone(),
            attempt_id: req.attempt_id,
            to: req.to.clone(),
            from: req.from.clone(),
            requested_at: Utc::now(),
            answered_at: None,
            ended_at: None,
            status: None,
            planned_ms: ring + if talks { talk } else { 0 },
        };
        let idx = state.calls.len();
        state.calls.push(call);
        state.index.insert(sid.clone(), idx);
        state.by_key.insert(req.attempt_id, sid.clone());
        drop(state);
        if outcome != SimOutcome::Hang {
            let this = self.clone();
            let attempt_id = req.attempt_id;
            let sid2 = sid.clone();
            tokio::spawn(
                async move { this.play(attempt_id, sid2, idx, outcome, ring, talk).await },
            );
        }
        Ok(sid)
    }

    async fn play(
        self,
        attempt_id: Uuid,
        sid: String,
        idx: usize,
        outcome: SimOutcome,
        ring: u64,
        talk: u64,
    ) {
        if ring > 0 {
            tokio::time::sleep(Duration::from_millis(ring)).await;
        }
        let answered_by = match outcome {
            SimOutcome::Voicemail => Some("machine_start".to_owned()),
            SimOutcome::Answered => Some("human".to_owned()),
            _ => None,
        };
        let final_status = match outcome {
            SimOutcome::Answered | SimOutcome::Voicemail => CarrierCallStatus::Completed,
            SimOutcome::Busy => CarrierCallStatus::Busy,
            SimOutcome::NoAnswer | SimOutcome::Hang => CarrierCallStatus::NoAnswer,
            SimOutcome::Failed => CarrierCallStatus::Failed,
        };
        if final_status == CarrierCallStatus::Completed {
            let now = Utc::now();
            self.lock().calls[idx].answered_at = Some(now);
            if self.behavior.report_answered {
                self.emit(
                    attempt_id,
                    &sid,
                    CarrierCallStatus::InProgress,
                    answered_by.clone(),
                    None,
                    now,
                );
            }
            if talk > 0 {
                tokio::time::sleep(Duration::from_millis(talk)).await;
            }
        }
        let now = Utc::now();
        {
            let mut state = self.lock();
            state.calls[idx].ended_at = Some(now);
            state.calls[idx].status = Some(final_status);
        }
        let duration =
            (final_status == CarrierCallStatus::Completed).then_some((talk / 1000) as u32);
        self.emit(attempt_id, &sid, final_status, answered_by, duration, now);
    }

    fn emit(
        &self,
        attempt_id: Uuid,
        sid: &str,
        status: CarrierCallStatus,
        answered_by: Option<String>,
        duration_secs: Option<u32>,
        at: DateTime<Utc>,
    ) {
        let _ = self.events.send(CallEventV1 {
            attempt_id,
            call_sid: sid.to_owned(),
            status,
            answered_by,
            duration_secs,
            received_at: at,
        });
    }

    /// The call placed with this idempotency key, if any.
    pub fn find_call(&self, attempt_id: Uuid) -> Option<String> {
        self.lock().by_key.get(&attempt_id).cloned()
    }

    /// Where a call stands.
    pub fn fetch_status(&self, call_sid: &str) -> Result<CallStatusReport, CarrierError> {
        let state = self.lock();
        let idx = *state.index.get(call_sid).ok_or(CarrierError::NotFound)?;
        let call = &state.calls[idx];
        let status = match (call.status, call.answered_at) {
            (Some(s), _) => s,
            (None, Some(_)) => CarrierCallStatus::InProgress,
            (None, None) => CarrierCallStatus::Ringing,
        };
        Ok(CallStatusReport {
            status,
            answered_by: None,
            duration_secs: None,
        })
    }
}

fn draw(rng: &mut StdRng, (lo, hi): (u64, u64)) -> u64 {
    if hi <= lo {
        lo
    } else {
        rng.random_range(lo..=hi)
    }
}

/// The carrier-sim's digit rule (`shared::carrier_sim`), so both simulators end the same
/// number the same way.
fn by_last_digit(to: &str) -> SimOutcome {
    match Ending::by_last_digit(to) {
        Ending::Answered => SimOutcome::Answered,
        Ending::Busy => SimOutcome::Busy,
        Ending::NoAnswer => SimOutcome::NoAnswer,
        Ending::Failed => SimOutcome::Failed,
        Ending::Voicemail => SimOutcome::Voicemail,
    }
}

/// Publishes the simulator's events to the call-events queue, as the gateway does for a real
/// carrier's callbacks. Events that are ready together go in one confirmed batch.
pub async fn forward_events(
    mut rx: mpsc::UnboundedReceiver<CallEventV1>,
    publisher: Arc<Publisher>,
    shutdown: CancellationToken,
) {
    let mut batch: Vec<CallEventV1> = Vec::new();
    let mut failures = 0u32;
    loop {
        if batch.is_empty() {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                ev = rx.recv() => match ev {
                    Some(ev) => batch.push(ev),
                    None => return,
                },
            }
        }
        while batch.len() < 512 {
            match rx.try_recv() {
                Ok(ev) => batch.push(ev),
                Err(_) => break,
            }
        }
        let messages: Vec<Outgoing> = batch
            .iter()
            .filter_map(|ev| {
                Outgoing::json(ev)
                    .ok()
                    .map(|m| m.with_id(format!("{}:{:?}", ev.attempt_id, ev.status)))
            })
            .collect();
        match publisher.publish_all(Stream::CallEvents, messages).await {
            Ok(()) => {
                batch.clear();
                failures = 0;
            }
            Err(e) => {
                let delay = shared::connect::backoff_delay(failures);
                failures = failures.saturating_add(1);
                tracing::warn!(error = %e, "cannot publish simulated call events, retrying");
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(delay) => {}
                }
            }
        }
    }
}

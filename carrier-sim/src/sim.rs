//! The simulator's shared state and each call's life: queued → initiated → ringing → (answered →
//! talking →) ended, with callbacks at each step and one record line at the end.

use std::sync::Arc;

use chrono::Utc;
use shared::domain::CallOutcome;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::callback::{Notifier, Outbox};
use crate::calls::{Call, CallState, CallStatus, HangUp, Registry};
use crate::config::Config;
use crate::plan::{Ending, Planner};
use crate::record::{CallRecord, Recorder};
use crate::subscription::Event;

/// What every request handler and call task shares.
pub struct Sim {
    /// The settings it started with.
    pub config: Config,
    /// Decides each call's fate.
    pub planner: Planner,
    /// Known calls and idempotency keys.
    pub registry: Registry,
    /// The call record.
    pub recorder: Recorder,
    /// Delivers status callbacks.
    pub notifier: Notifier,
    /// Every call task and callback delivery, so shutdown can wait for them.
    pub tracker: TaskTracker,
    /// Cancelled when the shutdown grace runs out: calls still going are hung up.
    pub force_end: CancellationToken,
}

impl Sim {
    /// Starts the task that plays `call` out.
    pub fn start(self: &Arc<Self>, call: Arc<Call>) {
        let outbox = call
            .callback
            .clone()
            .map(|spec| self.notifier.start(&self.tracker, &call.sid, spec));
        let sim = self.clone();
        self.tracker
            .spawn(async move { sim.play(call, outbox).await });
    }

    #[tracing::instrument(skip_all, fields(call_sid = %call.sid, to = %call.to_last_four()))]
    async fn play(&self, call: Arc<Call>, mut outbox: Option<Outbox>) {
        let mut send = |event: Event, state: &CallState| {
            if let Some(outbox) = outbox.as_mut() {
                outbox.send(event, &call, state);
            }
        };
        {
            let mut s = call.state();
            let now = Utc::now();
            s.started_at = Some(now);
            s.status = CallStatus::Initiated;
            s.updated_at = now;
            send(Event::Initiated, &s);
            s.status = CallStatus::Ringing;
            send(Event::Ringing, &s);
        }

        let interrupted = sleep_unless(self.config.ring, &call.interrupt).await;
        let canceled = {
            let mut s = call.state();
            // Checked under the lock: a hang-up that raced the end of ringing still wins.
            let canceled = interrupted || s.hang_up.is_some() || call.interrupt.is_cancelled();
            if !canceled && call.plan.ending.connects() {
                let now = Utc::now();
                s.status = CallStatus::InProgress;
                s.answered_at = Some(now);
                s.updated_at = now;
                s.answered_by = answered_by(call.plan.ending, call.machine_detection.as_deref());
                send(Event::Answered, &s);
                if let Some(url) = call
                    .answer_url
                    .as_deref()
                    .filter(|_| self.config.fetch_answer_url)
                {
                    self.notifier.answer(&self.tracker, url, &call, &s);
                }
            }
            canceled
        };

        // A connected call ends `completed` whether it talks its full time or is hung up early.
        let (status, outcome) = match call.plan.ending {
            _ if canceled => (CallStatus::Canceled, CallOutcome::Cancelled),
            Ending::Answered => {
                sleep_unless(call.plan.talk, &call.interrupt).await;
                (CallStatus::Completed, CallOutcome::Completed)
            }
            Ending::Voicemail => {
                sleep_unless(call.plan.talk, &call.interrupt).await;
                (CallStatus::Completed, CallOutcome::Voicemail)
            }
            Ending::Busy => (CallStatus::Busy, CallOutcome::Busy),
            Ending::NoAnswer => (CallStatus::NoAnswer, CallOutcome::NoAnswer),
            Ending::Failed => (CallStatus::Failed, CallOutcome::Failed),
        };

        let s = {
            let mut s = call.state();
            let now = Utc::now();
            s.status = status;
            s.ended_at = Some(now);
            s.updated_at = now;
            // The line goes out while the lock is held, so nobody sees the call final (through
            // the API or a callback) before its line is in the record.
            let record = CallRecord {
                call_sid: call.sid.clone(),
                to: call.to.clone(),
                from: call.from.clone(),
                requested_at: call.requested_at,
                answered_at: s.answered_at,
                ended_at: now,
                outcome,
                machine_detection: call.machine_detection.clone(),
            };
            if let Err(e) = self.recorder.append(&record) {
                tracing::error!(error = %e, "call record not written");
            }
            s.clone()
        };
        tracing::debug!(outcome = outcome.as_str(), "call ended");
        if let Some(outbox) = outbox {
            outbox.finish(&call, &s);
        }
        self.registry.ended(&call.sid);
        call.done.cancel();
    }

    /// Applies a modify-call request (`Status=canceled|completed`). Returns `false` when the call
    /// has already ended (Twilio answers 400 then). Waits briefly for the call to end so the
    /// response shows its final status.
    pub async fn hang_up(&self, call: &Call, kind: HangUp) -> bool {
        {
            let mut s = call.state();
            if s.status.is_final() {
                return false;
            }
            let effective = kind == HangUp::Complete || s.status.is_before_answer();
            if !effective {
                // `canceled` leaves a connected call alone, as Twilio's does.
                return true;
            }
            s.hang_up = Some(kind);
            call.interrupt.cancel();
        }
        let _ =
            tokio::time::timeout(std::time::Duration::from_secs(1), call.done.cancelled()).await;
        true
    }
}

/// Sleeps `d` unless `interrupt` fires first; returns whether it fired.
async fn sleep_unless(d: std::time::Duration, interrupt: &CancellationToken) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(d) => false,
        _ = interrupt.cancelled() => true,
    }
}

/// Twilio's `AnsweredBy` when machine detection was asked for: `human` for a person; for an
/// answering machine `machine_start` (`Enable`) or `machine_end_beep` (`DetectMessageEnd`, which
/// waits for the greeting to end).
fn answered_by(ending: Ending, machine_detection: Option<&str>) -> Option<&'static str> {
    let detection = machine_detection?;
    Some(match ending {
        Ending::Voicemail if detection.eq_ignore_ascii_case("DetectMessageEnd") => {
            "machine_end_beep"
        }
        Ending::Voicemail => "machine_start",
        _ => "human",
    })
}

//! Placing the call: the carrier request, paced by a start token taken right before it, sent
//! only within the attempt's send window (see `crate::reconcile`), and retried only when it
//! provably never left.

use std::time::Duration;

use shared::domain::MachineDetection;
use tokio::time::Instant;
use uuid::Uuid;

use crate::acquire::{retry_pause, worth_retrying};
use crate::attempt;
use crate::carrier::{CallRequest, CarrierError};
use crate::compliance::{Callee, List, last_look};
use crate::ctx::Ctx;
use crate::error::StepError;
use crate::exit::{PlaceError, Written};
use crate::job::{Gate, Job};

/// The carrier request for an attempt written with caller ID `from` to `callee`.
pub(crate) fn call_request(
    ctx: &Ctx,
    job: &Job,
    attempt_id: Uuid,
    callee: &Callee,
    from: String,
) -> CallRequest {
    CallRequest {
        attempt_id,
        to: callee.to.clone(),
        from,
        answer_url: with_dial_id(&job.answer_url, attempt_id),
        status_callback: format!("{}/carrier/status/{attempt_id}", ctx.config.public_url),
        timeout_secs: ctx.config.call_timeout_secs,
        // The job's own choice; `MACHINE_DETECTION` turns on `Enable` for jobs that made none.
        machine_detection: job.machine_detection.or(ctx
            .config
            .machine_detection
            .then_some(MachineDetection::Enable)),
    }
}

/// Takes a start token and sends the request; retried only when the request provably never
/// left (connection refused), each retry with a token of its own so the rate holds. The job and
/// the compliance rules are looked at again after every token wait (see [`take_start_token`]):
/// a long wait (a low rate) must not carry a call past a pause, a cancel, the window's end, the
/// recipient's calling hours, the frequency cap or the number's listing.
pub(crate) async fn place_with_retry(
    ctx: &Ctx,
    req: &CallRequest,
    written: &Written,
    job: &Job,
    callee: &Callee,
    clock: &mut SendClock,
) -> Result<String, PlaceError> {
    let mut tries = 0;
    loop {
        take_start_token(ctx, written, job, callee, clock).await?;
        // Nothing between the token and the request it paces (race 4). If the token took so
        // long that the send window ran out (the wait loop keeps it open, so only a stalled
        // Redis call gets here), the row is touched — and that token is let go: the touch may
        // take as long as the database likes, and a request sent after it would bunch with the
        // starts paced after ours. A fresh token follows the touch instead (one start fewer,
        // never one more).
        if clock.confirm(ctx).await? {
            continue;
        }
        match ctx.carrier.place_call(req).await {
            Err(CarrierError::Unreachable(e)) if tries < 3 => {
                tries += 1;
                tracing::warn!(error = %e, "carrier unreachable, retrying");
                tokio::time::sleep(Duration::from_millis(200 * tries)).await;
            }
            other => return other.map_err(PlaceError::Carrier),
        }
    }
}

/// Waits for a start token. A token granted at once needs no second look (the attempt insert
/// and the last look just checked the job and the rules); after a wait the job is read again
/// and the rules looked at again *before* the next try — never between a granted token and its
/// request, which would bunch starts.
async fn take_start_token(
    ctx: &Ctx,
    written: &Written,
    job: &Job,
    callee: &Callee,
    clock: &mut SendClock,
) -> Result<(), PlaceError> {
    let batch_id = written.batch_id;
    let started = Instant::now();
    let mut retries = 0;
    let mut patient_since = Instant::now();
    loop {
        // A long wait (a low rate) keeps the send window open, so the reconciler leaves the
        // attempt alone; before the try, never between a granted token and its request.
        clock.keep_open(ctx).await?;
        let wait = match ctx
            .limits
            .try_start(job.workspace_id, batch_id, job.job_cps, job.workspace_cps)
            .await
        {
            Ok(wait) => {
                patient_since = Instant::now();
                wait
            }
            // Redis slow: try again (a token the lost answer granted is wasted: fewer starts,
            // never more) rather than hand the contact back and take it again later.
            Err(e) if worth_retrying(ctx, &e, patient_since) => {
                tracing::debug!(error = %e, "start token try timed out; trying again");
                tokio::time::sleep(retry_pause(retries)).await;
                retries += 1;
                continue;
            }
            Err(e) => return Err(PlaceError::NoToken(e)),
        };
        let Some(wait) = wait else {
            shared::metrics::slot_wait(shared::metrics::Limit::Rate, started.elapsed());
            return Ok(());
        };
        tokio::time::sleep(wait).await;
        let reread = ctx.jobs.current(&ctx.db, batch_id).await;
        let fresh: &Job = match &reread {
            Ok(fresh) => fresh,
            Err(e) => {
                // The attempt insert checked the job a moment ago; go with that.
                tracing::warn!(error = %e, "job not re-read while waiting for a start token");
                job
            }
        };
        let gate = fresh.gate(ctx.config.service.clock.now());
        if gate != Gate::Go {
            return Err(PlaceError::Stopped(gate));
        }
        // A rule the database cannot be asked about refuses the call for now: the contact is
        // handed back and released again later, never called unchecked.
        match last_look(ctx, fresh, written, callee, List::ReadAgain).await {
            Ok(None) => {}
            Ok(Some(refusal)) => return Err(PlaceError::Refused(refusal)),
            Err(e) => return Err(PlaceError::Unconfirmed(e)),
        }
    }
}

/// The send window of one attempt (see `crate::reconcile`): when its row was last written,
/// timed from before the write, so the window is never longer on the database's clock.
pub(crate) struct SendClock {
    attempt_id: Uuid,
    written: Instant,
}

impl SendClock {
    /// Started just before the attempt's insert.
    pub(crate) fn new(attempt_id: Uuid) -> Self {
        Self {
            attempt_id,
            written: Instant::now(),
        }
    }

    /// Touches the row once half the window has passed, so that a long start-token wait never
    /// lets it run out. A failure is only logged: [`Self::confirm`] decides before the request.
    async fn keep_open(&mut self, ctx: &Ctx) -> Result<(), PlaceError> {
        if self.written.elapsed() < crate::reconcile::SEND_WINDOW / 2 {
            return Ok(());
        }
        match self.touch(ctx).await {
            Ok(true) => Ok(()),
            Ok(false) => Err(PlaceError::TakenBack),
            Err(e) => {
                tracing::warn!(attempt_id = %self.attempt_id, error = %e, "attempt not touched while waiting for its start token");
                Ok(())
            }
        }
    }

    /// Makes sure the request may be sent: `false` when inside the window (send now); `true`
    /// when the row had to be touched again first (take a fresh token: see
    /// [`place_with_retry`]).
    async fn confirm(&mut self, ctx: &Ctx) -> Result<bool, PlaceError> {
        if self.written.elapsed() < crate::reconcile::SEND_WINDOW {
            return Ok(false);
        }
        match self.touch(ctx).await {
            Ok(true) => Ok(true),
            Ok(false) => Err(PlaceError::TakenBack),
            Err(e) => Err(PlaceError::Unconfirmed(e)),
        }
    }

    /// `false` when the attempt is gone (taken back) or no longer waiting to be sent.
    async fn touch(&mut self, ctx: &Ctx) -> Result<bool, StepError> {
        let started = Instant::now();
        let touched = attempt::touch(ctx, self.attempt_id).await?;
        if touched {
            self.written = started;
        }
        Ok(touched)
    }
}

/// The agent's answer URL with `dialId=<attempt id>` added to its query.
pub fn with_dial_id(answer_url: &str, attempt_id: Uuid) -> String {
    let (base, fragment) = match answer_url.split_once('#') {
        Some((b, f)) => (b, Some(f)),
        None => (answer_url, None),
    };
    let sep = if base.contains('?') {
        if base.ends_with('?') || base.ends_with('&') {
            ""
        } else {
            "&"
        }
    } else {
        "?"
    };
    let mut url = format!("{base}{sep}dialId={attempt_id}");
    if let Some(f) = fragment {
        url.push('#');
        url.push_str(f);
    }
    url
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dial_id_is_appended() {
        let id = Uuid::nil();
        assert_eq!(
            with_dial_id("https://a.example/answer", id),
            format!("https://a.example/answer?dialId={id}")
        );
        assert_eq!(
            with_dial_id("https://a.example/answer?x=1#top", id),
            format!("https://a.example/answer?x=1&dialId={id}#top")
        );
    }
}

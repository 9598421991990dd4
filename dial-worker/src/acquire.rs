//! Waiting for a call's concurrency slots (the job's and the workspace's) and its caller ID,
//! which the slot script hands out with them. No start token is taken here: that comes right
//! before the carrier request (the `place` step), so the wait for a slot never bunches starts.

use std::sync::Arc;
use std::time::Duration;

use shared::queue::messages::DialV1;
use tokio::time::Instant;
use uuid::Uuid;

use crate::ctx::Ctx;
use crate::error::StepError;
use crate::job::{Gate, Job};
use crate::limits::{SlotRequest, TryAcquire};

/// How often a waiting dial re-reads its job, so pause and cancel act within a second.
const RECHECK_EVERY: Duration = Duration::from_millis(400);
/// The longest a waiter sleeps without a wake-up (a lost pub/sub message costs at most this).
const POLL_CAP: Duration = Duration::from_millis(250);

/// How long a dial keeps retrying a Redis call that timed out (Redis slow, not gone) before it
/// gives up: well inside the reconciler's 45 s of silence for an attempt without a call id.
const REDIS_PATIENCE: Duration = Duration::from_secs(30);

/// What the wait for slots ended with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Acquired {
    /// Both slots are held; the caller ID is this index of the job's pool (`None`: the pool
    /// is empty, the configured default is used).
    Slots { caller_index: Option<u32> },
    /// The job stopped wanting the call while it waited (paused, cancelled, window closed):
    /// no slot is held.
    Stopped(Gate),
}

/// Waits for the job's and the workspace's slots, and the caller ID that comes with them.
/// Re-reads the job while it waits, so a pause or a closed window ends the wait
/// ([`Acquired::Stopped`]).
pub(crate) async fn acquire(
    ctx: &Ctx,
    msg: &DialV1,
    attempt_id: Uuid,
    job: &mut Arc<Job>,
) -> Result<Acquired, StepError> {
    if ctx.shutdown.is_cancelled() {
        // A stopping worker takes no new slot: the message goes back for another worker.
        return Err(StepError::ShuttingDown);
    }
    let started = Instant::now();
    let wakeups = ctx.limits.wakeups().clone();
    let gate_lock = wakeups.gate(msg.batch_id);
    // Fast path: when nobody here is waiting for this job, try at once, in parallel with other
    // such tries; only when that fails does the task line up behind the gate.
    let line_empty = gate_lock.try_lock().is_ok();
    if line_empty
        && let TryAcquire::Acquired { caller_index } =
            try_acquire(ctx, &slot_request(msg, attempt_id, job)).await?
    {
        shared::metrics::slot_wait(shared::metrics::Limit::Job, started.elapsed());
        return Ok(Acquired::Slots { caller_index });
    }
    let _turn = gate_lock.lock().await;
    let notify = wakeups.workspace(job.workspace_id);
    // The job was read when the message arrived, perhaps minutes ago: read it again before the
    // first try in line, so a pause or a closed window stops the call.
    let mut checked_at: Option<Instant> = None;
    let mut backoff = Duration::from_millis(5);
    let mut blocked_by = shared::metrics::Limit::Job;
    loop {
        if ctx.shutdown.is_cancelled() {
            return Err(StepError::ShuttingDown);
        }
        if checked_at.is_none_or(|at| at.elapsed() >= RECHECK_EVERY) {
            *job = ctx.jobs.current(&ctx.db, msg.batch_id).await?;
            checked_at = Some(Instant::now());
            let gate = job.gate(ctx.config.service.clock.now());
            if gate != Gate::Go {
                return Ok(Acquired::Stopped(gate));
            }
        }
        let req = slot_request(msg, attempt_id, job);
        // Register for the wake-up before trying, so a release between the try and the wait
        // is not missed.
        let notified = notify.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        match try_acquire(ctx, &req).await? {
            TryAcquire::Acquired { caller_index } => {
                shared::metrics::slot_wait(blocked_by, started.elapsed());
                return Ok(Acquired::Slots { caller_index });
            }
            full @ (TryAcquire::JobFull | TryAcquire::WorkspaceFull) => {
                blocked_by = if matches!(full, TryAcquire::WorkspaceFull) {
                    shared::metrics::Limit::Workspace
                } else {
                    shared::metrics::Limit::Job
                };
                tokio::select! {
                    _ = ctx.shutdown.cancelled() => return Err(StepError::ShuttingDown),
                    _ = &mut notified => backoff = Duration::from_millis(5),
                    _ = tokio::time::sleep(backoff.min(RECHECK_EVERY)) => {
                        backoff = (backoff * 2).min(POLL_CAP);
                    }
                }
            }
        }
    }
}

/// Whether a failed Redis call is worth trying again soon: it timed out (the window shrank
/// meanwhile), and the dial has been patient for less than [`REDIS_PATIENCE`].
pub(crate) fn worth_retrying(ctx: &Ctx, e: &redis::RedisError, since: Instant) -> bool {
    e.is_timeout() && since.elapsed() < REDIS_PATIENCE && !ctx.shutdown.is_cancelled()
}

/// The pause before retrying a timed-out Redis call: the `n`-th retry waits 20 ms · 2^n, at most
/// one second, so a slow Redis is not hammered by the calls that timed out on it.
pub(crate) fn retry_pause(n: u32) -> Duration {
    Duration::from_millis(20u64 << n.min(6)).min(Duration::from_secs(1))
}

/// One try at both slots and the caller ID (one script call, all or nothing). A try that timed
/// out is repeated with the same attempt id: the script is idempotent for its member (a slot it
/// took before the answer was lost is simply renewed), so a slow Redis neither leaks slots nor
/// sends the message back to the queue. If it never answers, the slot it may hold is given back
/// before the error goes up.
async fn try_acquire(ctx: &Ctx, req: &SlotRequest) -> Result<TryAcquire, StepError> {
    let since = Instant::now();
    let mut retries = 0;
    loop {
        match ctx.limits.try_acquire(req).await {
            Ok(answer) => return Ok(answer),
            Err(e) if worth_retrying(ctx, &e, since) => {
                tracing::debug!(error = %e, "slot try timed out; trying again");
                tokio::time::sleep(retry_pause(retries)).await;
                retries += 1;
            }
            Err(e) => {
                ctx.release_slot(req.workspace_id, req.batch_id, req.attempt_id)
                    .await;
                return Err(e.into());
            }
        }
    }
}

fn slot_request(msg: &DialV1, attempt_id: Uuid, job: &Job) -> SlotRequest {
    SlotRequest {
        workspace_id: job.workspace_id,
        batch_id: msg.batch_id,
        attempt_id,
        workspace_limit: job.workspace_limit,
        job_limit: job.job_limit,
        caller_pool: job.caller_pool,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_pauses_double_up_to_a_second() {
        assert_eq!(retry_pause(0), Duration::from_millis(20));
        assert_eq!(retry_pause(1), Duration::from_millis(40));
        assert_eq!(retry_pause(5), Duration::from_millis(640));
        assert_eq!(retry_pause(6), Duration::from_secs(1));
        assert_eq!(retry_pause(u32::MAX), Duration::from_secs(1));
    }
}

//! Reconciliation: bringing an attempt to its outcome when its callbacks did not (a worker died,
//! a callback was lost), without ever dialing it again.
//!
//! **An attempt without a call id is not known to be placed.** Its worker may have died between
//! the attempt's insert and the carrier request, or before it stored the carrier's answer. The
//! carrier is asked (the attempt id was the request's `Idempotency-Key`; Twilio's call list
//! filters by `To` and `StartTime`, see [`crate::carrier::Carrier::find_calls`]):
//!
//! - the carrier has the call: its sid is adopted and the attempt is reconciled as a placed one;
//! - the carrier has none, once the attempt has been silent for [`unplaced_after`] (no live
//!   worker can still send its request, see below, and a request sent has arrived and rung
//!   out): the attempt is **taken back** as any attempt that never reached the carrier is (the
//!   row goes, the contact's attempt count is restored, the slot is given back, the contact is
//!   `queued` again, due at once), and the contact is dialed again;
//! - the carrier cannot be asked (unreachable) or cannot tell (several candidate calls): the
//!   attempt waits; only when that lasts `UNKNOWN_AFTER_SECS` is it closed `unknown`.
//!
//! **The send window.** A worker sends an attempt's request only within [`SEND_WINDOW`] of its
//! last write to the attempt's row (measured from before that write, so on the database's clock
//! the window is no longer); a worker that waits longer for its start token touches the row
//! again first, and gives up if the row is gone (taken back). The reconciler takes an attempt
//! back only if the row is unchanged since it claimed it, in the same statement. So no request
//! is ever sent for an attempt taken back, and a reconciler that found no call at the carrier
//! cannot have missed one still on its way.
//!
//! **Placed calls silent past their expected end** — a final callback lost while the gateway or
//! the broker was down — are asked about by sid once silent `RECONCILE_AFTER_SECS` (20 s), on
//! passes every 5 s, so a lost callback costs its slot about half a minute. After an outage (a
//! failed pass, the broker connection coming back, or a gateway starting to serve, which
//! increments [`shared::redis_conn::CALLBACKS_EPOCH`]) a pass runs at once, and again
//! [`CATCH_UP_SILENCE`] later, asking about every call silent for more than that.
//!
//! **An attempt the carrier answered with a 5xx** is not known to be placed either, but its
//! request is over: nobody will send it again, and the carrier has the call or not. It is
//! asked about once silent [`CATCH_UP_SILENCE`] (not [`unplaced_after`]), and again every pass
//! while the carrier cannot answer, so a carrier outage costs its slots seconds after the
//! carrier is back, not the ring timeout and more. (A request that timed out may still reach
//! the carrier: it waits the whole [`unplaced_after`].)
//!
//! **A live call found for an attempt nobody holds** (its worker died, and its slot lapsed)
//! takes its slot again, here, and this worker renews it until the call ends: the call is
//! connected, so it counts against the limits, whatever happened to its first lease.

use std::time::Duration;

use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use shared::domain::{AttemptState, CallOutcome, ContactState};
use shared::queue::Broker;
use tokio::time::Instant;
use tokio_postgres::Row;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::carrier::{CallLookup, CarrierError, Found, is_final};
use crate::ctx::Ctx;
use crate::end::{EndReport, Recorded, record_end};
use crate::error::StepError;

/// How long after its last write to an attempt's row a worker may still send the attempt's
/// carrier request (see the module documentation).
pub const SEND_WINDOW: Duration = Duration::from_secs(5);

/// The attempts one claim takes (a pass claims again while claims come back full).
const CLAIM_LIMIT: i64 = 100;

/// Attempts reconciled at once within a pass (each is a carrier request or two).
const PARALLEL: usize = 8;

/// After an outage, placed calls silent this long are asked about at once.
pub const CATCH_UP_SILENCE: Duration = Duration::from_secs(2);

/// The `error` of an attempt whose carrier request was answered with a 5xx (see
/// `CarrierError::Transport`), as a `LIKE` pattern: its request is over.
const ANSWERED_5XX: &str = "%: HTTP 5%";

/// How long an attempt without a call id stays silent before the carrier is asked whether it
/// exists: the send window, the longest a request may take (`carrier::twilio`'s timeout), and
/// the ring timeout (`CALL_TIMEOUT_SECS`) — a call placed has rung out by then and appears in
/// the carrier's list with its start time.
pub fn unplaced_after(config: &crate::config::Config) -> Duration {
    SEND_WINDOW
        + crate::carrier::twilio::REQUEST_TIMEOUT
        + Duration::from_secs(u64::from(config.call_timeout_secs))
}

/// What a reconciliation found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reconciled {
    /// Nothing to do now (outcome known, call still live, too young to judge, carrier silent).
    Waiting,
    /// The outcome was recorded from the carrier (or closed `unknown`).
    Ended,
    /// The attempt was never placed: taken back, the contact queued again.
    TakenBack,
}

/// Brings an existing attempt to its outcome without dialing (a redelivered dial message found
/// it): nothing if the outcome is known; asks the carrier about the call when its id is known;
/// otherwise looks for the call at the carrier once the attempt is old enough (see the module
/// documentation), and leaves it for the callback or the periodic pass before that.
pub async fn reconcile(
    ctx: &Ctx,
    attempt_id: Uuid,
    call_sid: Option<String>,
    ended: bool,
    created_at: DateTime<Utc>,
) -> Result<Reconciled, StepError> {
    if ended {
        return Ok(Reconciled::Waiting);
    }
    match call_sid {
        Some(sid) => reconcile_placed(ctx, attempt_id, sid, created_at).await,
        None => reconcile_unplaced(ctx, attempt_id, None).await,
    }
}

/// An attempt whose call id is known: ask the carrier where the call stands.
async fn reconcile_placed(
    ctx: &Ctx,
    attempt_id: Uuid,
    sid: String,
    created_at: DateTime<Utc>,
) -> Result<Reconciled, StepError> {
    match ctx.carrier.fetch_status(&sid).await {
        Ok(report) if is_final(report.status) => {
            let r = record_end(
                ctx,
                attempt_id,
                EndReport {
                    status: report.status,
                    answered_by: report.answered_by,
                    duration_secs: report.duration_secs,
                    call_sid: Some(sid),
                    at: Utc::now(),
                    slot_released: false,
                },
                None,
            )
            .await?;
            if matches!(r, Recorded::Now(_)) {
                tracing::info!(%attempt_id, ?r, "reconciled from the carrier");
            }
            Ok(Reconciled::Ended)
        }
        Ok(_) => {
            // Live: it holds a line, whoever dialed it.
            hold_live_call(ctx, attempt_id).await?;
            Ok(Reconciled::Waiting)
        }
        Err(CarrierError::NotFound) => {
            tracing::warn!(%attempt_id, "carrier does not know the call");
            close_if_too_old(ctx, attempt_id, created_at).await
        }
        Err(e) => {
            // A passing carrier error says nothing about the call, which may still be live (a
            // long call past `UNKNOWN_AFTER_SECS`): closing it would free its slot while it
            // talks. Only a carrier that stays unable to answer for four times that long gets
            // the attempt closed.
            tracing::warn!(%attempt_id, error = %e, "carrier cannot tell the call's status");
            let age = (Utc::now() - created_at).to_std().unwrap_or_default();
            if age < ctx.config.unknown_after.saturating_mul(4) {
                return Ok(Reconciled::Waiting);
            }
            close_if_too_old(ctx, attempt_id, created_at).await
        }
    }
}

/// A live call's slot, taken again if nobody holds it (race 5: a call adopted, or found live,
/// after its worker died and its lease lapsed would otherwise not count, and the fleet would
/// start calls beyond the limit beside it). Taken whatever the counts say — the call is
/// connected — unless the slot was released meanwhile (its call ended: the tombstone refuses
/// it). This worker renews it from now on, and releases it when the database shows the end.
async fn hold_live_call(ctx: &Ctx, attempt_id: Uuid) -> Result<(), StepError> {
    if ctx.leases.get(attempt_id).is_some() {
        return Ok(());
    }
    let client = ctx.db.get().await?;
    let Some(row) = client
        .query_opt(
            "SELECT workspace_id, batch_id FROM dial_attempts WHERE id = $1 AND outcome IS NULL",
            &[&attempt_id],
        )
        .await?
    else {
        return Ok(());
    };
    drop(client);
    let (ws, job): (Uuid, Uuid) = (row.try_get("workspace_id")?, row.try_get("batch_id")?);
    match ctx.limits.renew(&[(attempt_id, ws, job)]).await {
        Ok(released) if released.is_empty() => {
            ctx.leases.hold(attempt_id, ws, job);
            tracing::info!(%attempt_id, "live call's slot held again");
        }
        Ok(_) => {}
        Err(e) => tracing::warn!(%attempt_id, error = %e, "live call's slot not held again"),
    }
    Ok(())
}

/// Closes an attempt nobody can tell about as `unknown`, once it is `UNKNOWN_AFTER_SECS` old.
async fn close_if_too_old(
    ctx: &Ctx,
    attempt_id: Uuid,
    created_at: DateTime<Utc>,
) -> Result<Reconciled, StepError> {
    let age = (Utc::now() - created_at).to_std().unwrap_or_default();
    if age < ctx.config.unknown_after {
        return Ok(Reconciled::Waiting);
    }
    let r = record_end(
        ctx,
        attempt_id,
        EndReport::unreported(),
        Some((
            CallOutcome::Unknown,
            "no outcome learned before the reconcile timeout",
        )),
    )
    .await?;
    if r != Recorded::Already {
        tracing::warn!(%attempt_id, "attempt closed as unknown");
    }
    Ok(Reconciled::Ended)
}

/// An attempt without a call id, as [`reconcile_unplaced`] reads it.
struct UnplacedRow {
    to_number: String,
    from_number: Option<String>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    carrier_call_sid: Option<String>,
    /// Its outcome is recorded.
    ended: bool,
    /// Untouched for [`unplaced_after`].
    silent: bool,
}

impl UnplacedRow {
    fn from_row(r: &Row) -> Result<Self, tokio_postgres::Error> {
        Ok(Self {
            to_number: r.try_get("to_number")?,
            from_number: r.try_get("from_number")?,
            created_at: r.try_get("created_at")?,
            updated_at: r.try_get("updated_at")?,
            carrier_call_sid: r.try_get("carrier_call_sid")?,
            ended: r.try_get("ended")?,
            silent: r.try_get("silent")?,
        })
    }
}

/// An attempt a pass claimed; `updated_at` is the claim's own touch.
struct ClaimedRow {
    id: Uuid,
    carrier_call_sid: Option<String>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl ClaimedRow {
    fn from_row(r: &Row) -> Result<Self, tokio_postgres::Error> {
        Ok(Self {
            id: r.try_get("id")?,
            carrier_call_sid: r.try_get("carrier_call_sid")?,
            created_at: r.try_get("created_at")?,
            updated_at: r.try_get("updated_at")?,
        })
    }
}

/// An attempt without a call id. `claimed` is the `updated_at` the periodic pass wrote when it
/// claimed the attempt (the pass only claims attempts silent for [`unplaced_after`]); without
/// it (a redelivered dial message) the silence is checked here.
async fn reconcile_unplaced(
    ctx: &Ctx,
    attempt_id: Uuid,
    claimed: Option<DateTime<Utc>>,
) -> Result<Reconciled, StepError> {
    let client = ctx.db.get().await?;
    let Some(row) = client
        .query_opt(
            "SELECT to_number, from_number, created_at, updated_at, carrier_call_sid,
                    outcome IS NOT NULL AS ended,
                    updated_at < now() - make_interval(secs => $2) AS silent
             FROM dial_attempts WHERE id = $1",
            &[&attempt_id, &unplaced_after(&ctx.config).as_secs_f64()],
        )
        .await?
    else {
        // Taken back already (here or by the worker itself).
        return Ok(Reconciled::Waiting);
    };
    drop(client);
    let row = UnplacedRow::from_row(&row)?;
    let (created_at, updated_at) = (row.created_at, row.updated_at);
    if row.ended {
        return Ok(Reconciled::Waiting);
    }
    if let Some(sid) = row.carrier_call_sid {
        // The worker (or a callback) stored it meanwhile.
        return reconcile_placed(ctx, attempt_id, sid, created_at).await;
    }
    let silent_enough = match claimed {
        Some(at) => at == updated_at,
        None => row.silent,
    };
    if !silent_enough {
        // Its worker may still send it (or just touched it): the callback or a later pass.
        return Ok(Reconciled::Waiting);
    }
    let lookup = CallLookup {
        attempt_id,
        to: row.to_number,
        from: row.from_number,
        since: created_at,
    };
    let found = match ctx.carrier.find_calls(&lookup).await {
        Ok(found) => found,
        Err(e) => {
            tracing::warn!(%attempt_id, error = %e, "carrier cannot list calls; attempt left open");
            return close_if_too_old(ctx, attempt_id, created_at).await;
        }
    };
    let Some(free) = unowned_calls(ctx, attempt_id, &lookup.to, found).await? else {
        tracing::warn!(%attempt_id, "another attempt without a call id calls the same number; left open");
        return close_if_too_old(ctx, attempt_id, created_at).await;
    };
    match free.as_slice() {
        [] => take_back_unplaced(ctx, attempt_id, updated_at).await,
        [sid] => {
            if adopt(ctx, attempt_id, sid).await? {
                tracing::info!(%attempt_id, "call found at the carrier; its id adopted");
                reconcile_placed(ctx, attempt_id, sid.clone(), created_at).await
            } else {
                Ok(Reconciled::Waiting)
            }
        }
        several => {
            tracing::warn!(
                %attempt_id,
                candidates = several.len(),
                "several calls at the carrier may be this attempt's; left open"
            );
            close_if_too_old(ctx, attempt_id, created_at).await
        }
    }
}

/// The calls the carrier found that may be this attempt's: those no other attempt owns.
/// `None` while another open attempt without a call id calls the same number `to`, when a
/// lone call could be either's.
async fn unowned_calls(
    ctx: &Ctx,
    attempt_id: Uuid,
    to: &str,
    found: Found,
) -> Result<Option<Vec<String>>, StepError> {
    let found = match found {
        Found::Exact(sid) => return Ok(Some(vec![sid])),
        Found::Candidates(found) if found.is_empty() => return Ok(Some(Vec::new())),
        Found::Candidates(found) => found,
    };
    let client = ctx.db.get().await?;
    let owned = client
        .query(
            "SELECT carrier_call_sid FROM dial_attempts WHERE carrier_call_sid = ANY($1)",
            &[&found],
        )
        .await?
        .iter()
        .map(|r| r.try_get("carrier_call_sid"))
        .collect::<Result<Vec<String>, _>>()?;
    let free: Vec<String> = found.into_iter().filter(|s| !owned.contains(s)).collect();
    if free.is_empty() {
        return Ok(Some(free));
    }
    let rivals: i64 = client
        .query_one(
            "SELECT count(*) AS rivals FROM dial_attempts
             WHERE to_number = $2 AND id <> $1 AND outcome IS NULL
               AND carrier_call_sid IS NULL",
            &[&attempt_id, &to],
        )
        .await?
        .try_get("rivals")?;
    Ok((rivals == 0).then_some(free))
}

/// Stores a call id found at the carrier. `false` if the attempt moved on meanwhile, or
/// another attempt owns that call (the column is unique).
async fn adopt(ctx: &Ctx, attempt_id: Uuid, sid: &str) -> Result<bool, StepError> {
    let client = ctx.db.get().await?;
    let adopted = client
        .execute(
            "UPDATE dial_attempts SET carrier_call_sid = $2,
                 state = CASE WHEN state = $3 THEN $4 ELSE state END,
                 updated_at = now()
             WHERE id = $1 AND carrier_call_sid IS NULL AND outcome IS NULL",
            &[
                &attempt_id,
                &sid,
                &AttemptState::Dialing,
                &AttemptState::Ringing,
            ],
        )
        .await;
    match adopted {
        Ok(n) => Ok(n == 1),
        Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::UNIQUE_VIOLATION) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Takes back an attempt the carrier has no call for: in one statement, only if the row is
/// unchanged since `seen` (no worker touched it to send it, nobody stored a call id) and the
/// contact is still `dialing` it — the row goes (leaving a tombstone in `taken_back_attempts`
/// for a late callback to be recorded against), the contact is `queued` again (due now, its
/// attempt count restored) or `cancelled` if its job is over; then the slot is given back.
async fn take_back_unplaced(
    ctx: &Ctx,
    attempt_id: Uuid,
    seen: DateTime<Utc>,
) -> Result<Reconciled, StepError> {
    let client = ctx.db.get().await?;
    let row = client
        .query_opt(
            "WITH a AS (
                 SELECT id, contact_id, attempt_no FROM dial_attempts
                 WHERE id = $1 AND carrier_call_sid IS NULL AND outcome IS NULL
                   AND updated_at = $2
                 FOR UPDATE),
             c AS (
                 UPDATE contacts k SET
                     state = contact_state_for_job(b.state),
                     attempts = k.attempts - 1, released_at = NULL,
                     next_attempt_at = now(), updated_at = now()
                 FROM a, batches b
                 WHERE k.id = a.contact_id AND b.id = k.batch_id
                   AND k.state = $3 AND k.attempts = a.attempt_no
                 RETURNING k.id, k.state),
             d AS (
                 DELETE FROM dial_attempts d USING a, c
                 WHERE d.id = a.id AND c.id = a.contact_id
                 RETURNING d.id, d.contact_id, d.workspace_id, d.batch_id, d.attempt_no,
                           c.state AS contact_state),
             t AS (
                 INSERT INTO taken_back_attempts
                     (attempt_id, contact_id, workspace_id, batch_id, attempt_no)
                 SELECT id, contact_id, workspace_id, batch_id, attempt_no FROM d
                 ON CONFLICT (attempt_id) DO NOTHING)
             SELECT workspace_id, batch_id, contact_state FROM d",
            &[&attempt_id, &seen, &ContactState::Dialing],
        )
        .await?;
    drop(client);
    let Some(row) = row else {
        return Ok(Reconciled::Waiting);
    };
    let (workspace_id, batch_id, state): (Uuid, Uuid, ContactState) = (
        row.try_get("workspace_id")?,
        row.try_get("batch_id")?,
        row.try_get("contact_state")?,
    );
    ctx.give_back_slot(workspace_id, batch_id, attempt_id).await;
    tracing::warn!(
        %attempt_id,
        contact_state = %state,
        "attempt never reached the carrier (its worker stopped before the request); taken back"
    );
    Ok(Reconciled::TakenBack)
}

/// One pass of the reconciler: claims (by touching them) open attempts whose callbacks are
/// overdue — placed calls silent for `placed_silence`, attempts without a call id silent for
/// [`unplaced_after`] — and reconciles them, claiming again while claims come back full.
/// Returns how many it looked at.
pub async fn reconcile_pass(ctx: &Ctx, placed_silence: Duration) -> Result<usize, StepError> {
    let unplaced = unplaced_after(&ctx.config).as_secs_f64();
    let mut total = 0;
    loop {
        let client = ctx.db.get().await?;
        let rows = client
            .query(
                "WITH due AS (
                     SELECT id, updated_at FROM dial_attempts
                     WHERE outcome IS NULL
                       AND ((carrier_call_sid IS NOT NULL
                             AND updated_at < now() - make_interval(secs => $1))
                            OR updated_at < now() - make_interval(secs => GREATEST($1, $2))
                            OR (carrier_call_sid IS NULL AND error LIKE $4
                                AND updated_at < now() - make_interval(secs => $5)))
                     ORDER BY updated_at LIMIT $3 FOR UPDATE SKIP LOCKED)
                 UPDATE dial_attempts a SET updated_at = now()
                 FROM due WHERE a.id = due.id
                 RETURNING a.id, a.carrier_call_sid, a.created_at, a.updated_at",
                &[
                    &placed_silence.as_secs_f64(),
                    &unplaced,
                    &CLAIM_LIMIT,
                    &ANSWERED_5XX,
                    &CATCH_UP_SILENCE.as_secs_f64(),
                ],
            )
            .await?;
        drop(client);
        let rows = rows
            .iter()
            .map(ClaimedRow::from_row)
            .collect::<Result<Vec<_>, _>>()?;
        let claimed = rows.len();
        total += claimed;
        futures_util::stream::iter(rows)
            .for_each_concurrent(PARALLEL, |r| async move {
                let attempt_id = r.id;
                let result = match r.carrier_call_sid {
                    Some(sid) => reconcile_placed(ctx, attempt_id, sid, r.created_at).await,
                    None => reconcile_unplaced(ctx, attempt_id, Some(r.updated_at)).await,
                };
                // One attempt the carrier cannot tell about must not hold up the others (they
                // were claimed for a whole period by the touch above).
                if let Err(e) = result {
                    tracing::warn!(%attempt_id, error = %e, "attempt not reconciled; next pass");
                }
            })
            .await;
        if (claimed as i64) < CLAIM_LIMIT || ctx.shutdown.is_cancelled() {
            return Ok(total);
        }
    }
}

/// One ordinary pass (tests drive it directly): placed calls silent `RECONCILE_AFTER_SECS`.
pub async fn reconcile_once(ctx: &Ctx) -> Result<usize, StepError> {
    reconcile_pass(ctx, ctx.config.reconcile_after).await
}

/// The gateways' start count ([`shared::redis_conn::CALLBACKS_EPOCH`]); `None` when Redis
/// cannot say (a blip must not look like a gateway start).
async fn callbacks_epoch(ctx: &Ctx) -> Option<i64> {
    let redis = ctx.limits.redis();
    let mut conn = redis.conn.clone();
    let mut cmd = redis::cmd("GET");
    cmd.arg(redis.key(shared::redis_conn::CALLBACKS_EPOCH));
    let get = cmd.query_async::<Option<i64>>(&mut conn);
    match tokio::time::timeout(Duration::from_secs(1), get).await {
        Ok(Ok(epoch)) => Some(epoch.unwrap_or(0)),
        _ => None,
    }
}

/// Runs passes every quarter of `RECONCILE_AFTER_SECS` (at most 5 s apart), and one at once
/// after an outage: when a pass failed (the database was unreachable; retried every second),
/// when the broker connection comes back and when a gateway starts serving (callbacks may have
/// been lost meanwhile); such a catch-up pass asks about every call silent for
/// [`CATCH_UP_SILENCE`], and is repeated once that much later for the calls too young for the
/// first.
pub async fn run(ctx: Ctx, broker: Broker, shutdown: CancellationToken) {
    let period =
        (ctx.config.reconcile_after / 4).clamp(Duration::from_millis(200), Duration::from_secs(5));
    let watch = Duration::from_secs(1).min(period);
    let mut next_pass = Instant::now() + period;
    let mut failing = false;
    let mut broker_was_up = true;
    let mut epoch = callbacks_epoch(&ctx).await;
    let mut again_at: Option<Instant> = None;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(watch) => {}
        }
        let broker_up = broker.is_connected().await;
        let broker_back = broker_up && !broker_was_up;
        broker_was_up = broker_up;
        let seen = callbacks_epoch(&ctx).await;
        let gateway_started = seen.is_some() && epoch.is_some() && seen != epoch;
        epoch = seen.or(epoch);
        let outage_over = broker_back || gateway_started;
        if outage_over {
            again_at = Some(Instant::now() + CATCH_UP_SILENCE);
        }
        let again = again_at.is_some_and(|at| Instant::now() >= at);
        if again {
            again_at = None;
        }
        if !outage_over && !again && Instant::now() < next_pass {
            continue;
        }
        let catch_up = outage_over || again || failing;
        let silence = if catch_up {
            CATCH_UP_SILENCE
        } else {
            ctx.config.reconcile_after
        };
        match reconcile_pass(&ctx, silence).await {
            Ok(n) => {
                if catch_up {
                    tracing::info!(attempts = n, "catch-up reconcile pass after an outage");
                }
                failing = false;
                next_pass = Instant::now() + period;
            }
            Err(e) => {
                tracing::warn!(error = %e, "reconcile pass failed; retrying in a second");
                failing = true;
                next_pass = Instant::now() + watch;
            }
        }
    }
}

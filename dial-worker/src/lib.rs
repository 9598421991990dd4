//! Dials released contacts through the carrier within the workspace's and job's concurrency and
//! rate limits, records outcomes, schedules retries and delivers webhooks.
//!
//! - [`dial`]: one `DialV1` message → one placed call (or a hand-back, or a reconciliation),
//!   in steps: [`job`] (the job, cached, and whether it lets a call start), [`attempt`] (the
//!   attempt's SQL), [`acquire`] (slots and caller ID), [`compliance`] (the last look),
//!   [`place`] (the paced carrier request); then `exit` (the pure decision: the carrier's
//!   answer → how the written attempt leaves) carried out in one place, `dial::settle`;
//! - [`call_event`]: one carrier status event → [`end`] (the outcome recorded once, the contact
//!   moved on), by [`outcome`] (the pure decision: outcome → next step) and [`payload`] (the
//!   webhook bodies);
//! - [`reconcile`]: attempts whose callbacks never came;
//! - [`limits`]: the Redis semaphores, rate limiters and caller-ID counters;
//! - [`carrier`]: Twilio-compatible REST, or the in-process simulator;
//! - [`webhooks`]: the outbox and its signed, retried delivery.
//!
//! The modules depend on each other in layers, each only on those below it (no cycle):
//!
//! 1. vocabulary, rows and pure rules, none taking a `Ctx`: `error`, `config`, `dial_result`,
//!    `job` (with its cache), `outcome`, `payload`;
//! 2. the clients: `carrier`, `limits`, `webhooks`, `group`, and `writes` (the group-committed
//!    statements; they take a pool, never a `Ctx`);
//! 3. [`ctx`], which holds the clients, and `exit`, the pure decision over `job`'s gate and
//!    `carrier`'s errors;
//! 4. the steps, each taking `&Ctx`: `attempt`, `compliance`, `acquire`, `end`, then
//!    `reconcile` (uses `end`), `place` (uses `attempt`, `compliance`, `acquire`, and
//!    `reconcile`'s send window), `call_event` (uses `end`), and `dial` on top (uses them all).
//!
//! States travel as `shared::domain` enums, read with `FromSql` and bound with `ToSql`; a
//! group statement whose planner tricks need literal names has them formatted in once from the
//! enums (`writes`). The rules several services share (suppression, the frequency cap, the job
//! → contact state rule) are V18's SQL functions (`shared::db::rules`).

// Production code names what it expects instead of unwrapping: `expect` with the invariant that
// makes the panic impossible, or an error. Tests may unwrap (clippy.toml).
#![warn(clippy::unwrap_used)]

pub mod acquire;
pub mod attempt;
pub mod call_event;
pub mod carrier;
pub mod compliance;
pub mod config;
pub mod ctx;
pub mod dial;
mod dial_result;
pub mod end;
pub mod error;
mod exit;
mod group;
pub mod job;
pub mod limits;
pub mod outcome;
pub mod payload;
pub mod place;
pub mod predial;
pub mod reconcile;
pub mod webhooks;
mod writes;

use std::net::SocketAddr;
use std::sync::Arc;

use shared::queue::consumer::{ConsumerOptions, Disposition, Incoming};
use shared::queue::messages::{CallEventV1, DialV1};
use shared::queue::{Broker, Publisher, Stream};
use shared::redis_conn::Redis;
use shared::startup::Startup;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use carrier::Carrier;
use config::{CarrierKind, Config};
pub use ctx::Ctx;

/// Connects to its services (retrying with backoff), serves its health endpoints, and works
/// until `shutdown` is cancelled. The carrier is built from the configuration.
pub async fn run(config: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    let rules = config.pack.version();
    let (addr, done) = spawn(config, None, shutdown).await?;
    tracing::info!(%addr, rules, "dial-worker ready");
    done.await?;
    Ok(())
}

/// Starts a worker and returns its health address and a handle that finishes after shutdown.
/// `carrier` overrides the configured one (tests share one simulator between several workers).
pub async fn spawn(
    config: Config,
    carrier: Option<Carrier>,
    shutdown: CancellationToken,
) -> anyhow::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let started = Startup::new(&config.service, "dial-worker", config.health_addr)
        .with_redis()
        .start(&shutdown)
        .await?;
    let (db, broker, addr) = (
        started.db.clone(),
        started.broker.clone(),
        started.health_addr,
    );
    let redis = started
        .redis
        .clone()
        .ok_or_else(|| anyhow::anyhow!("Redis was asked for"))?;

    let tasks = TaskTracker::new();
    let carrier = match carrier {
        Some(c) => c,
        None => configured_carrier(&config, &broker, &tasks, &shutdown),
    };
    // Renewals on a connection of their own: they keep the limits true, so they never queue
    // behind the dials, and a pipeline of thousands may take longer than a dial's call.
    let lease_redis = Redis::connect_with(&config.service, config.slot_lease / 3).await?;
    let mut ctx = Ctx::new(db, redis, carrier, config, shutdown.clone());
    ctx.limits = ctx.limits.with_lease_connection(lease_redis);

    // Cancelled once the dial handlers have drained: until then one may still take a slot,
    // so the renewer stays up even if it holds nothing at the signal.
    let dialing_done = CancellationToken::new();
    spawn_background(&tasks, &ctx, &broker, &dialing_done);
    spawn_consumers(&tasks, &ctx, &broker, dialing_done);
    tasks.close();

    let done = tokio::spawn(async move {
        shutdown.cancelled().await;
        tasks.wait().await;
        if let Err(e) = started.finish().await {
            tracing::warn!(error = %e, "health server failed");
        }
    });
    Ok((addr, done))
}

/// The carrier the configuration names; the simulator's events are forwarded by a task of
/// `tasks`.
fn configured_carrier(
    config: &Config,
    broker: &Broker,
    tasks: &TaskTracker,
    shutdown: &CancellationToken,
) -> Carrier {
    match config.carrier {
        CarrierKind::Twilio => Carrier::Twilio(carrier::twilio::TwilioCarrier::new(
            &config.carrier_url,
            &config.carrier_account_sid,
            &config.carrier_auth_token,
        )),
        CarrierKind::Sim => {
            let (sim, events) = carrier::sim::SimCarrier::new(Default::default());
            let publisher = Arc::new(Publisher::new(broker.clone()));
            tasks.spawn(carrier::sim::forward_events(
                events,
                publisher,
                shutdown.clone(),
            ));
            Carrier::Sim(sim)
        }
    }
}

/// The tasks beside the consumers: the limits' wake-ups, the lease renewer (until
/// `dialing_done`), the reconciler and the webhook delivery.
fn spawn_background(
    tasks: &TaskTracker,
    ctx: &Ctx,
    broker: &Broker,
    dialing_done: &CancellationToken,
) {
    let config = &ctx.config;
    let shutdown = &ctx.shutdown;
    tasks.spawn(ctx.limits.wakeups().clone().listen(
        shared::redis_conn::RedisTarget::from_config(&config.service),
        ctx.limits.channel(),
        shutdown.clone(),
    ));
    tasks.spawn(ctx.leases.clone().renew_loop(
        ctx.limits.clone(),
        ctx.db.clone(),
        shutdown.clone(),
        dialing_done.clone(),
        config.service.shutdown_grace,
    ));
    tasks.spawn(reconcile::run(
        ctx.clone(),
        broker.clone(),
        shutdown.clone(),
    ));
    tasks.spawn(webhooks::delivery::run(
        ctx.db.clone(),
        webhooks::delivery::DeliverySettings {
            concurrency: config.webhook_concurrency,
            timeout: config.webhook_timeout,
            retry_base: config.webhook_retry_base,
            retry_for: config.webhook_retry_for,
            poll: config.webhook_poll,
            allowed_networks: std::sync::Arc::new(config.webhook_allowed_networks.clone()),
        },
        shutdown.clone(),
    ));
}

/// The dial and call-event consumers; `dialing_done` is cancelled once the dial handlers have
/// drained.
fn spawn_consumers(
    tasks: &TaskTracker,
    ctx: &Ctx,
    broker: &Broker,
    dialing_done: CancellationToken,
) {
    let config = &ctx.config;
    let dial_ctx = ctx.clone();
    let dial_consumer = shared::queue::consumer::run(
        broker.clone(),
        ConsumerOptions {
            stream: Stream::Dial,
            // Every message held is either a call being placed or one waiting for a slot, so
            // the prefetch bounds both; waiting ones are returned to the queue at shutdown.
            prefetch: config.dial_prefetch,
            concurrency: usize::from(config.dial_prefetch),
            tag: format!("dial-worker-{}", uuid::Uuid::new_v4()),
            retry: Default::default(),
        },
        ctx.shutdown.clone(),
        move |incoming: Incoming| {
            let ctx = dial_ctx.clone();
            async move { handle_dial(&ctx, &incoming).await }
        },
    );
    tasks.spawn(async move {
        // Also on a panic: the renewer must not wait for handlers that are gone.
        let _done = dialing_done.drop_guard();
        dial_consumer.await;
    });
    let event_ctx = ctx.clone();
    tasks.spawn(shared::queue::consumer::run(
        broker.clone(),
        ConsumerOptions {
            stream: Stream::CallEvents,
            prefetch: config.events_prefetch,
            concurrency: usize::from(config.events_prefetch),
            tag: format!("dial-worker-events-{}", uuid::Uuid::new_v4()),
            retry: Default::default(),
        },
        ctx.shutdown.clone(),
        move |incoming: Incoming| {
            let ctx = event_ctx.clone();
            async move { handle_call_event(&ctx, &incoming).await }
        },
    ));
}

/// The dial queue's handler.
pub async fn handle_dial(ctx: &Ctx, incoming: &Incoming) -> Disposition {
    let msg: DialV1 = match serde_json::from_slice(&incoming.body) {
        Ok(m) => m,
        Err(e) => return Disposition::DeadLetter(format!("undecodable DialV1: {e}")),
    };
    let dialed = if incoming.redelivered {
        dial::dial_one(ctx, &msg).await
    } else {
        dial::dial_first_delivery(ctx, &msg).await
    };
    match dialed {
        Ok(_) => Disposition::Ack,
        Err(e) => {
            tracing::warn!(error = %e, contact_id = %msg.contact_id, "dial failed");
            e.disposition()
        }
    }
}

/// The call-events queue's handler.
pub async fn handle_call_event(ctx: &Ctx, incoming: &Incoming) -> Disposition {
    let event: CallEventV1 = match serde_json::from_slice(&incoming.body) {
        Ok(m) => m,
        Err(e) => return Disposition::DeadLetter(format!("undecodable CallEventV1: {e}")),
    };
    match call_event::handle_event(ctx, &event).await {
        Ok(()) => Disposition::Ack,
        Err(e) => {
            tracing::warn!(error = %e, attempt_id = %event.attempt_id, "call event failed");
            e.disposition()
        }
    }
}

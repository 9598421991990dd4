//! Releases due contacts for dialing, only while their job is started and its schedule window
//! is open; cancels the queued contacts of cancelled jobs; completes finished jobs.
//!
//! - [`release`] is one step ([`release::release_once`]), driven by [`run`] every tick and by
//!   tests with an injected clock;
//! - [`plan`] splits a workspace's room among its jobs (pure);
//! - [`lifecycle`] settles cancelled jobs and completes finished ones.

// Production code names what it expects instead of unwrapping: `expect` with the invariant that
// makes the panic impossible, or an error. Tests may unwrap (clippy.toml).
#![warn(clippy::unwrap_used)]

pub mod compliance;
pub mod config;
pub mod error;
pub mod lifecycle;
pub mod plan;
pub mod release;

use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

use config::Config;
use shared::queue::Publisher;
use shared::startup::Startup;

pub use release::{ReleaseError, ReleaseReport, ReleaseSettings, release_once};

/// Connects to its services (retrying with backoff), serves its health endpoints, and runs
/// the release loop until `shutdown` is cancelled.
pub async fn run(config: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    let started = Startup::new(&config.service, "scheduler", config.health_addr)
        .start(&shutdown)
        .await?;
    tracing::info!(addr = %started.health_addr, tick_ms = config.tick.as_millis() as u64,
                   rules = config.release.pack.version(), "scheduler ready");
    let (db, broker) = (started.db.clone(), started.broker.clone());

    // The sampled gauges (queue depth, batches by state, webhook backlog) come from one role.
    let sampler = tokio::spawn(shared::metrics::sampler::run(
        db.clone(),
        broker.clone(),
        shared::metrics::sampler::DEFAULT_INTERVAL,
        shutdown.clone(),
    ));
    // The batch counters' deltas are folded here too, not only by the gateways: a stretch with
    // no gateway running (a deploy, an outage) must not let them grow without bound, and the
    // fold's advisory lock lets any number of roles share it.
    let folder = tokio::spawn(shared::db::counters::fold_every(
        db.clone(),
        std::time::Duration::from_secs(1),
        shutdown.clone(),
    ));
    let publisher = Publisher::new(broker.clone());
    let mut ticker = tokio::time::interval(config.tick);
    // After a slow tick, wait a full tick rather than bursting to catch up.
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut skew_reported = false;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = ticker.tick() => {}
        }
        // The instant windows are judged at is the database's, read once per tick: every
        // scheduler then agrees on it, and a node whose own clock is wrong cannot release
        // outside a window. Without a reading there is no tick.
        let now = match database_now(&db, config.service.clock, &mut skew_reported).await {
            Ok(now) => now,
            Err(e) => {
                tracing::warn!(error = %e, "reading the database's clock failed; retrying next tick");
                continue;
            }
        };
        // A tick in progress finishes (it is bounded by the publish timeout), so a claim is
        // never left half done at shutdown.
        match release_once(&db, &publisher, &config.release, now).await {
            Ok(report) => {
                if report.released > 0 || !report.completed_jobs.is_empty() {
                    tracing::debug!(?report, "tick");
                }
            }
            Err(e) => tracing::warn!(error = %e, "release step failed; retrying next tick"),
        }
    }

    let _ = sampler.await;
    let _ = folder.await;
    started.finish().await
}

/// A skew of the node's own clock against the database's worth a warning: beyond it, a node
/// deciding on its own clock would open and close windows visibly early or late.
const SKEW_WARNING: chrono::Duration = chrono::Duration::seconds(1);

/// The database's instant for this tick. The node's skew is exported on every reading and
/// logged when it first exceeds [`SKEW_WARNING`] (and when it is back within it), not on
/// every tick.
async fn database_now(
    db: &shared::db::Pool,
    clock: shared::clock::Clock,
    reported: &mut bool,
) -> anyhow::Result<chrono::DateTime<chrono::Utc>> {
    let client = db.get().await?;
    let reading = clock.read_database(&client).await?;
    let skew_secs = reading.skew.num_milliseconds() as f64 / 1000.0;
    shared::metrics::set_clock_skew("scheduler", skew_secs);
    let over = reading.skew.abs() > SKEW_WARNING;
    if over && !*reported {
        tracing::warn!(
            skew_secs,
            "this node's clock is off from the database's; releasing on the database's clock"
        );
    } else if !over && *reported {
        tracing::info!(
            skew_secs,
            "this node's clock is back within a second of the database's"
        );
    }
    *reported = over;
    Ok(reading.now)
}

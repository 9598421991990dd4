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
    tracing::info!(addr = %started.health_addr, tick_ms = config.tick.as_millis() as u64, "scheduler ready");
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
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = ticker.tick() => {}
        }
        // A tick in progress finishes (it is bounded by the publish timeout), so a claim is
        // never left half done at shutdown.
        match release_once(&db, &publisher, &config.release, config.service.clock.now()).await {
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

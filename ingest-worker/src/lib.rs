//! Persists submitted rows: consumes ingest chunks, normalises numbers to E.164, rejects and
//! de-duplicates rows, and COPYs each chunk into PostgreSQL in one idempotent transaction.
//!
//! - [`normalize`] and [`plan`]: pure rules (number to E.164, per-row checks, duplicates inside a
//!   chunk), tested without services;
//! - [`chunk`]: the one transaction per chunk ([`chunk::handle_chunk`], the step tests drive);
//! - [`consume`]: message to disposition (ack, retry, dead-letter);
//! - [`timeout`] and [`fail`]: failing batches whose chunks stopped arriving.

// Production code names what it expects instead of unwrapping: `expect` with the invariant that
// makes the panic impossible, or an error. Tests may unwrap (clippy.toml).
#![warn(clippy::unwrap_used)]

pub mod chunk;
pub mod config;
pub mod consume;
pub mod fail;
pub use shared::rows::normalize;
pub mod plan;
pub use shared::rows::reject;
pub mod timeout;

use chrono::Utc;
use deadpool_postgres::Pool;
use shared::queue::consumer::{self, ConsumerOptions};
use shared::queue::{Broker, Stream};
use shared::startup::Startup;
use tokio_util::sync::CancellationToken;

use config::Config;

/// Connects to its services (retrying with backoff), serves its health endpoints, and works
/// until `shutdown` is cancelled.
pub async fn run(config: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    let started = Startup::new(&config.service, "ingest-worker", config.health_addr)
        .start(&shutdown)
        .await?;
    tracing::info!(addr = %started.health_addr, concurrency = config.concurrency, prefetch = config.prefetch, "ingest-worker ready");

    let sweeper = tokio::spawn(sweep_loop(
        started.db.clone(),
        config.clone(),
        shutdown.clone(),
    ));
    consume(
        started.db.clone(),
        started.broker.clone(),
        &config,
        shutdown,
    )
    .await;
    let _ = sweeper.await;
    started.finish().await
}

/// Consumes the ingest queue until `shutdown`; running chunks finish first.
pub async fn consume(db: Pool, broker: Broker, config: &Config, shutdown: CancellationToken) {
    let handler = consume::Handler {
        db,
        check: config.number_check,
    };
    let options = ConsumerOptions {
        stream: Stream::Ingest,
        prefetch: config.prefetch,
        concurrency: config.concurrency,
        tag: format!("ingest-worker-{}", std::process::id()),
        retry: Default::default(),
    };
    consumer::run(broker, options, shutdown, move |incoming| {
        let handler = handler.clone();
        async move { handler.on_message(incoming).await }
    })
    .await;
}

async fn sweep_loop(db: Pool, config: Config, shutdown: CancellationToken) {
    let mut tick =
        tokio::time::interval(config.sweep_interval.max(std::time::Duration::from_secs(1)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        match timeout::sweep_once(&db, Utc::now(), config.ingest_timeout).await {
            Ok(failed) if !failed.is_empty() => {
                tracing::warn!(count = failed.len(), "batches failed by the ingest timeout")
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "ingest timeout sweep failed; next tick retries"),
        }
    }
}

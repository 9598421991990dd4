//! Gauges that no single event keeps right, read periodically from their source of truth:
//! queue depth and consumers (RabbitMQ), batches by state and the webhook retry backlog
//! (PostgreSQL).
//!
//! One role runs it (the scheduler): every replica reports the same values, so dashboards
//! aggregate these with `max`, not `sum`.

use std::time::Duration;

use lapin::options::QueueDeclareOptions;
use lapin::types::FieldTable;
use tokio_util::sync::CancellationToken;

use crate::db::Pool;
use crate::domain::JobState;
use crate::queue::{Broker, Stream};

/// How often the sampler reads, by default (about a Prometheus scrape interval).
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(15);

/// Samples every `interval` until `shutdown` is cancelled; a failed read is logged and retried
/// at the next tick (stale gauges expire, see [`super::GAUGE_IDLE_TIMEOUT`]).
pub async fn run(db: Pool, broker: Broker, interval: Duration, shutdown: CancellationToken) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = ticker.tick() => {}
        }
        if let Err(e) = sample_queues(&broker).await {
            tracing::debug!(error = %e, "queue depth sample failed");
        }
        if let Err(e) = sample_database(&db).await {
            tracing::debug!(error = %e, "database gauge sample failed");
        }
    }
}

/// Reads each work queue's ready messages and consumers with a passive declare (which creates
/// nothing).
pub async fn sample_queues(broker: &Broker) -> Result<(), crate::queue::QueueError> {
    let channel = broker.channel().await?;
    let passive = QueueDeclareOptions {
        passive: true,
        ..Default::default()
    };
    let mut result = Ok(());
    for stream in Stream::ALL {
        let name = broker.topology().queue(stream);
        match channel
            .queue_declare(name.as_str().into(), passive, FieldTable::default())
            .await
        {
            Ok(queue) => {
                super::set_queue_depth(stream, queue.message_count(), queue.consumer_count())
            }
            // A failed passive declare closes the channel: stop this round.
            Err(e) => {
                result = Err(e.into());
                break;
            }
        }
    }
    let _ = channel.close(200, "sampled".into()).await;
    result
}

/// Reads batches by state and the webhook retry backlog.
pub async fn sample_database(db: &Pool) -> Result<(), SampleError> {
    let client = db.get().await?;
    // Every state is reported, zero included, so a state that empties drops to 0 on the graph
    // rather than freezing at its last value.
    let rows = client
        .query(
            "SELECT s.state, count(b.id) AS n FROM unnest($1::text[]) AS s(state) \
             LEFT JOIN batches b ON b.state = s.state GROUP BY s.state",
            &[&&JobState::ALL[..]],
        )
        .await?;
    for row in rows {
        let state: JobState = row.try_get("state")?;
        let count = non_negative(row.try_get("n")?, "batch count")?;
        super::set_batches(state.as_str(), count);
    }
    let backlog: i64 = client
        .query_one(
            "SELECT count(*) AS n FROM webhook_deliveries WHERE state = 'pending' AND attempts > 0",
            &[],
        )
        .await?
        .try_get("n")?;
    super::set_webhook_backlog(non_negative(backlog, "webhook backlog")?);
    Ok(())
}

/// A database sample that failed.
#[derive(Debug, thiserror::Error)]
pub enum SampleError {
    /// No connection from the pool.
    #[error("no database connection: {0}")]
    Pool(#[from] deadpool_postgres::PoolError),
    /// The query failed.
    #[error("sample query failed: {0}")]
    Query(#[from] tokio_postgres::Error),
    /// A count came back negative, which no `count(*)` can: the gauge is left as it was
    /// rather than set to a made-up 0.
    #[error("sampled {what} is negative ({value})")]
    Negative {
        /// Which count.
        what: &'static str,
        /// What the database answered.
        value: i64,
    },
}

/// A count as the gauge takes it.
fn non_negative(value: i64, what: &'static str) -> Result<u64, SampleError> {
    u64::try_from(value).map_err(|_| SampleError::Negative { what, value })
}

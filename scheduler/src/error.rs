//! What a scheduler step can fail with: a leaf that the release and the lifecycle steps share.

use std::time::Duration;

use shared::queue::QueueError;

/// A step that failed; every variant is worth retrying on the next tick, and nothing of the
/// failed workspace's release was committed.
#[derive(Debug, thiserror::Error)]
pub enum ReleaseError {
    /// No database connection.
    #[error("PostgreSQL pool: {0}")]
    Pool(#[from] deadpool_postgres::PoolError),
    /// A statement failed.
    #[error("PostgreSQL: {0}")]
    Db(#[from] tokio_postgres::Error),
    /// The broker refused or lost the dial messages.
    #[error("publishing dial messages: {0}")]
    Publish(#[from] QueueError),
    /// The broker did not confirm in time.
    #[error("publishing dial messages: no confirm within {0:?}")]
    PublishTimeout(Duration),
    /// The batch counters could not be read.
    #[error("batch counters: {0}")]
    Counters(#[from] shared::db::counters::CounterError),
    /// A stored number outside what its column's checks allow (a negative limit or count).
    #[error("corrupt row: {0}")]
    Corrupt(String),
}

//! What a step can fail with, typed by what the consumer should do next.

use shared::queue::Disposition;

/// A dial, event or webhook step that could not finish.
#[derive(Debug, thiserror::Error)]
pub enum StepError {
    /// PostgreSQL failed: worth retrying.
    #[error("database: {}", db_message(.0))]
    Db(#[from] tokio_postgres::Error),
    /// No database connection: worth retrying.
    #[error("database pool: {0}")]
    Pool(#[from] deadpool_postgres::PoolError),
    /// Redis failed: worth retrying (the limits live there).
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// A group write answered the wrong number of results (`crate::group`): worth retrying.
    #[error("database (a group write): {0}")]
    Group(String),
    /// The worker is stopping: the message goes back to the queue for another worker.
    #[error("shutting down")]
    ShuttingDown,
    /// The message can never be handled (undecodable, refers to nothing).
    #[error("{0}")]
    Invalid(String),
}

impl StepError {
    /// Retry passing failures; park the hopeless ones in the dead-letter queue.
    pub fn disposition(&self) -> Disposition {
        match self {
            StepError::Invalid(reason) => Disposition::DeadLetter(reason.clone()),
            _ => Disposition::Retry,
        }
    }
}

impl StepError {
    /// A stored value its column cannot hold (a CHECK constraint says so): the row is corrupt,
    /// so the step can never succeed and is parked rather than run on a plausible guess.
    pub fn corrupt(
        subject: impl std::fmt::Display,
        column: &str,
        value: impl std::fmt::Debug,
    ) -> Self {
        StepError::Invalid(format!("{subject}: {column} {value:?} is out of range"))
    }
}

/// The server's own message when there is one (tokio-postgres shows only "db error").
fn db_message(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{}: {}", db.code().code(), db.message()),
        None => e.to_string(),
    }
}

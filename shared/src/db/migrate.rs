//! Embedded, versioned migrations (refinery), run by `api-gateway migrate` and by the local stack.
//!
//! The SQL lives in `shared/migrations/V{n}__{name}.sql`; each file is applied once, in order, and
//! recorded in `refinery_schema_history`.

use std::str::FromStr;

use tokio_postgres::NoTls;

mod embedded {
    refinery::embed_migrations!("migrations");
}

/// Applies every pending migration to the database at `url`.
///
/// Holds a PostgreSQL advisory lock for the duration, so several processes starting at once
/// (replicas of a Kubernetes rollout, parallel tests) apply each migration exactly once.
pub async fn run(url: &str) -> anyhow::Result<Vec<String>> {
    let config = tokio_postgres::Config::from_str(url)?;
    let (mut client, connection) = config.connect(NoTls).await?;
    tokio::spawn(connection);
    client
        .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])
        .await?;
    let report = embedded::migrations::runner().run_async(&mut client).await;
    client
        .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK])
        .await?;
    let report = report?;
    Ok(report
        .applied_migrations()
        .iter()
        .map(|m| m.to_string())
        .collect())
}

/// A fingerprint of every embedded migration: a database migrated with the same fingerprint has
/// the same schema (the test harness keys its template database on it).
pub fn fingerprint() -> String {
    use std::hash::{DefaultHasher, Hash, Hasher};
    let mut hasher = DefaultHasher::new();
    for m in embedded::migrations::runner().get_migrations() {
        m.to_string().hash(&mut hasher);
        m.checksum().hash(&mut hasher);
    }
    format!("{:016x}", hasher.finish())
}

/// An arbitrary constant naming the migration lock ("dialfleet" in ASCII, truncated).
const MIGRATION_LOCK: i64 = 0x6469_616c_666c_6565;

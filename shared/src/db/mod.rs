//! PostgreSQL, the system of record: the connection pool, the embedded migrations, and the
//! batch counters kept by the database (`counters`), and the rules written once as SQL
//! functions (`rules`).

pub mod counters;
pub mod ingest;
pub mod migrate;
pub mod rules;

use std::str::FromStr;

pub use deadpool_postgres::Pool;
use deadpool_postgres::{Manager, ManagerConfig, RecyclingMethod};
use tokio_postgres::NoTls;

use crate::config::{ServiceConfig, redact_url};
use crate::connect::{ConnectError, with_backoff};

/// Builds a pool and waits (with backoff, up to the connect timeout) until one connection answers.
pub async fn connect(cfg: &ServiceConfig) -> Result<Pool, ConnectError> {
    let pool = build_pool(&cfg.database_url, cfg.database_pool_size).map_err(|e| ConnectError {
        service: "PostgreSQL",
        url: redact_url(&cfg.database_url),
        cause: e.to_string(),
    })?;
    with_backoff(
        "PostgreSQL",
        &cfg.database_url,
        cfg.connect_timeout,
        || async {
            let client = pool.get().await.map_err(|e| e.to_string())?;
            client
                .simple_query("SELECT 1")
                .await
                .map_err(|e| e.to_string())?;
            Ok::<_, String>(())
        },
    )
    .await?;
    Ok(pool)
}

/// Builds a pool without connecting: connections are opened lazily and re-opened after the server
/// drops them, so a database restart costs failed requests, never a dead process.
pub fn build_pool(url: &str, max_size: usize) -> anyhow::Result<Pool> {
    let mut pg_config = tokio_postgres::Config::from_str(url)?;
    bound_waits(&mut pg_config);
    // Fast recycling skips a round trip per checkout; a broken connection is detected by the
    // query that uses it and the pool discards it.
    let manager = Manager::from_config(
        pg_config,
        NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Ok(Pool::builder(manager).max_size(max_size).build()?)
}

/// How long a statement of a role may wait for a row lock. Roles hold row locks for short,
/// bounded steps (a release holds its contacts at most the publish timeout), so a longer wait
/// means the holder is gone: the statement fails, and its message is retried later, rather than
/// hold a pooled connection for as long as the holder takes to die.
pub const LOCK_TIMEOUT_MS: u32 = 10_000;

/// How long a session may sit idle inside a transaction before the server ends it and lets its
/// locks go (a role stopped with a transaction open, a partitioned host).
pub const IDLE_IN_TRANSACTION_TIMEOUT_MS: u32 = 30_000;

/// Bounds every wait a connection can cause or suffer: lock waits and idle transactions by
/// session settings, and a peer that vanished without closing (a partition, a paused host) by
/// TCP keepalives and an unacknowledged-data timeout of seconds, not the kernel's two hours.
fn bound_waits(config: &mut tokio_postgres::Config) {
    let ours = format!(
        "-c lock_timeout={LOCK_TIMEOUT_MS} -c idle_in_transaction_session_timeout={IDLE_IN_TRANSACTION_TIMEOUT_MS}"
    );
    let options = match config.get_options() {
        Some(given) if !given.is_empty() => format!("{ours} {given}"),
        _ => ours,
    };
    config.options(&options);
    config
        .keepalives(true)
        .keepalives_idle(std::time::Duration::from_secs(10))
        .keepalives_interval(std::time::Duration::from_secs(5))
        .keepalives_retries(3)
        .tcp_user_timeout(std::time::Duration::from_secs(30));
}

/// Creates the database named in `url` if it does not exist, by connecting to the server's
/// `postgres` database. Used by `api-gateway migrate` and the test harness.
pub async fn ensure_database(url: &str) -> anyhow::Result<()> {
    let config = tokio_postgres::Config::from_str(url)?;
    let name = config.get_dbname().unwrap_or("postgres").to_owned();
    let mut admin = config.clone();
    admin.dbname("postgres");
    let (client, connection) = admin.connect(NoTls).await?;
    tokio::spawn(connection);
    let exists = client
        .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&name])
        .await?
        .is_some();
    if !exists {
        let sql = format!("CREATE DATABASE {}", quote_ident(&name));
        if let Err(e) = client.batch_execute(&sql).await {
            // Another process may have created it between the check and the create.
            if e.code() != Some(&tokio_postgres::error::SqlState::DUPLICATE_DATABASE) {
                return Err(e.into());
            }
        }
    }
    Ok(())
}

/// Quotes an SQL identifier (a database name chosen by configuration or a test).
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_bounds_come_before_the_urls_own_options() {
        let mut config =
            tokio_postgres::Config::from_str("postgres://u@h/db?options=-c%20search_path%3Dx")
                .unwrap();
        bound_waits(&mut config);
        let options = config.get_options().unwrap();
        assert!(
            options
                .starts_with("-c lock_timeout=10000 -c idle_in_transaction_session_timeout=30000")
        );
        assert!(options.ends_with("-c search_path=x"), "{options}");
    }
}

//! PostgreSQL, the system of record: the connection pool and the embedded migrations.

pub mod ingest;
pub mod migrate;

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
    let pg_config = tokio_postgres::Config::from_str(url)?;
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

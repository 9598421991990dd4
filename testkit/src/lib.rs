//! Integration tests against the real PostgreSQL, RabbitMQ and Redis, each test isolated:
//!
//! - its own database, cloned from a migrated template (cloning takes ~100 ms; migrating from
//!   scratch for every test would cost seconds);
//! - its own exchange and queue names (a random `QUEUE_PREFIX`);
//! - its own Redis key prefix.
//!
//! Everything is removed when the [`TestEnv`] is dropped, so tests run in parallel under
//! cargo-nextest and leave nothing behind.

pub mod browser;
pub mod fixtures;
pub mod http;
pub mod otlp;
pub mod private;
pub mod process;
pub mod proxy;

use std::time::Duration;

use shared::config::{Env, ServiceConfig};
use shared::db::{self, Pool, quote_ident};
use shared::queue::{Broker, Topology};
use shared::redis_conn::Redis;
use tokio_postgres::NoTls;

/// Where a test's services run: by default the machine's shared ones, or private instances a
/// test started itself (see [`private`]) so that it can restart them without disturbing others.
#[derive(Debug, Clone)]
pub struct Services {
    /// The server the test databases live on (a database on it to connect to).
    pub database_admin_url: String,
    /// The broker.
    pub amqp_url: String,
    /// The Redis server.
    pub redis_url: String,
}

impl Default for Services {
    /// `TEST_DATABASE_URL`, `TEST_AMQP_URL` and `TEST_REDIS_URL`, or the local defaults.
    fn default() -> Self {
        Self {
            database_admin_url: std::env::var("TEST_DATABASE_URL")
                .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned()),
            amqp_url: std::env::var("TEST_AMQP_URL")
                .unwrap_or_else(|_| shared::config::DEFAULT_AMQP_URL.to_owned()),
            redis_url: std::env::var("TEST_REDIS_URL")
                .unwrap_or_else(|_| shared::config::DEFAULT_REDIS_URL.to_owned()),
        }
    }
}

/// The `WEBHOOK_ALLOWED_NETWORKS` every test role gets ([`TestEnv::env_vars`]): exactly the
/// address tests' receivers listen on.
pub const TEST_ALLOWED_NETWORKS: &str = "127.0.0.1/32";

/// One test's private slice of the real services.
pub struct TestEnv {
    /// Settings pointing at this test's database, queue prefix and Redis prefix; pass it to a
    /// role's `run` as its service config.
    pub config: ServiceConfig,
    /// A pool on this test's database.
    pub db: Pool,
    /// This test's broker connection (topology already declared).
    pub broker: Broker,
    /// This test's Redis connection and prefix.
    pub redis: Redis,
    db_name: String,
    admin_url: String,
}

impl TestEnv {
    /// Creates the database, queues and prefixes for one test on the shared services.
    pub async fn new() -> Self {
        Self::on(Services::default()).await
    }

    /// The same on `services`.
    pub async fn on(services: Services) -> Self {
        init_logging();
        let admin_url = services.database_admin_url;
        let id = uuid::Uuid::new_v4().simple().to_string();
        let short = &id[..12];
        let db_name = format!("dialfleet_test_{short}");
        let template = ensure_template(&admin_url).await;
        create_from_template(&admin_url, &db_name, &template).await;

        let database_url = replace_dbname(&admin_url, &db_name);
        let env = Env::from_pairs([
            ("DATABASE_URL", database_url),
            ("DATABASE_POOL_SIZE", "8".to_owned()),
            ("AMQP_URL", services.amqp_url),
            ("QUEUE_PREFIX", format!("test-{short}.")),
            ("REDIS_URL", services.redis_url),
            ("REDIS_PREFIX", format!("test-{short}:")),
            ("CONNECT_TIMEOUT_SECS", "10".to_owned()),
            ("SHUTDOWN_GRACE_SECS", "5".to_owned()),
        ]);
        let config = ServiceConfig::from_env(&env).expect("test config is valid");
        let db = db::connect(&config).await.expect("test database reachable");
        let broker = Broker::connect(&config, "test")
            .await
            .expect("RabbitMQ reachable");
        let redis = Redis::connect(&config).await.expect("Redis reachable");
        Self {
            config,
            db,
            broker,
            redis,
            db_name,
            admin_url,
        }
    }

    /// The environment variables a role's binary needs to use this test's services (for the
    /// few end-to-end tests that start real processes).
    pub fn env_vars(&self) -> Vec<(String, String)> {
        vec![
            ("DATABASE_URL".into(), self.config.database_url.clone()),
            ("AMQP_URL".into(), self.config.amqp_url.clone()),
            ("QUEUE_PREFIX".into(), self.config.queue_prefix.clone()),
            ("REDIS_URL".into(), self.config.redis_url.clone()),
            ("REDIS_PREFIX".into(), self.config.redis_prefix.clone()),
            // Tests' webhook receivers listen on 127.0.0.1, a loopback address the fleet
            // refuses to send to unless allowed: allow exactly that one, as deploy/local does.
            (
                "WEBHOOK_ALLOWED_NETWORKS".into(),
                TEST_ALLOWED_NETWORKS.into(),
            ),
        ]
    }

    /// The database's name.
    pub fn db_name(&self) -> &str {
        &self.db_name
    }
}

impl Drop for TestEnv {
    fn drop(&mut self) {
        // Drop cannot await, and the test's runtime may be shutting down: clean up on a thread
        // with a runtime of its own, and wait for it so nothing outlives the test.
        let db_name = self.db_name.clone();
        let admin_url = self.admin_url.clone();
        let config = self.config.clone();
        let redis_prefix = self.redis.prefix.clone();
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async move {
                let _ = tokio::time::timeout(
                    Duration::from_secs(20),
                    cleanup(&admin_url, &db_name, &config, &redis_prefix),
                )
                .await;
            });
        })
        .join();
    }
}

async fn cleanup(admin_url: &str, db_name: &str, config: &ServiceConfig, redis_prefix: &str) {
    if let Ok(client) = admin_client(admin_url).await {
        let _ = client
            .batch_execute(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                quote_ident(db_name)
            ))
            .await;
    }
    if let Ok(conn) = lapin::Connection::connect(&config.amqp_url, Default::default()).await {
        if let Ok(channel) = conn.create_channel().await {
            let _ = Topology::new(config.queue_prefix.clone())
                .delete(&channel)
                .await;
        }
        let _ = conn.close(200, "test done".into()).await;
    }
    if let Ok(client) = redis::Client::open(config.redis_url.as_str())
        && let Ok(mut conn) = client.get_multiplexed_async_connection().await
    {
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{redis_prefix}*"))
            .query_async(&mut conn)
            .await
            .unwrap_or_default();
        if !keys.is_empty() {
            let _: Result<(), _> = redis::cmd("DEL").arg(keys).query_async(&mut conn).await;
        }
    }
}

async fn admin_client(admin_url: &str) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let (client, connection) = tokio_postgres::connect(admin_url, NoTls).await?;
    tokio::spawn(connection);
    Ok(client)
}

fn replace_dbname(url: &str, db_name: &str) -> String {
    let base = url.split('?').next().unwrap_or(url);
    let without_db = base.rsplit_once('/').map(|(head, _)| head).unwrap_or(base);
    format!("{without_db}/{db_name}")
}

/// Returns the name of a template database migrated with the current migrations, creating it
/// once per migration fingerprint (under an advisory lock, as tests race to be first).
async fn ensure_template(admin_url: &str) -> String {
    let name = format!("dialfleet_tpl_{}", db::migrate::fingerprint());
    let client = admin_client(admin_url)
        .await
        .expect("PostgreSQL reachable at TEST_DATABASE_URL");
    client
        .execute("SELECT pg_advisory_lock(746173)", &[])
        .await
        .expect("template lock");
    let exists = client
        .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&name])
        .await
        .expect("query")
        .is_some();
    if !exists {
        // Templates of older migration sets are of no further use once nobody can still be
        // running them: other checkouts (worktrees, a CI run) may be testing older migrations
        // right now, so only templates created more than six hours ago are dropped.
        let stale = client
            .query(
                "SELECT d.datname FROM pg_database d
                 LEFT JOIN pg_shdescription s ON s.objoid = d.oid
                 WHERE d.datname LIKE 'dialfleet_tpl_%' AND d.datname NOT LIKE '%_building'
                   AND COALESCE(s.description, '0')::bigint < extract(epoch FROM now())::bigint - 6 * 3600",
                &[],
            )
            .await
            .expect("query");
        for row in stale {
            let old: String = row.get(0);
            let _ = client
                .batch_execute(&format!(
                    "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                    quote_ident(&old)
                ))
                .await;
        }
        // Built under a temporary name and renamed once migrated, so a run killed half-way
        // never leaves a template without tables behind.
        let building = format!("{name}_building");
        client
            .batch_execute(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                quote_ident(&building)
            ))
            .await
            .expect("drop a half-built template");
        client
            .batch_execute(&format!("CREATE DATABASE {}", quote_ident(&building)))
            .await
            .expect("create template");
        db::migrate::run(&replace_dbname(admin_url, &building))
            .await
            .expect("migrate template");
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let publish = format!(
            "COMMENT ON DATABASE {b} IS '{stamp}'; ALTER DATABASE {b} RENAME TO {n}",
            b = quote_ident(&building),
            n = quote_ident(&name)
        );
        // The migration's connection may take a moment to close; a rename needs none open.
        let mut tries = 0;
        while let Err(e) = client.batch_execute(&publish).await {
            tries += 1;
            assert!(tries < 50, "cannot publish the template: {e}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    client
        .execute("SELECT pg_advisory_unlock(746173)", &[])
        .await
        .expect("template unlock");
    name
}

async fn create_from_template(admin_url: &str, db_name: &str, template: &str) {
    let client = admin_client(admin_url).await.expect("PostgreSQL reachable");
    let sql = format!(
        "CREATE DATABASE {} TEMPLATE {}",
        quote_ident(db_name),
        quote_ident(template)
    );
    let mut tries = 0;
    loop {
        match client.batch_execute(&sql).await {
            Ok(()) => return,
            // "source database is being accessed by other users": the migration's connection to
            // the template may take a moment to close.
            Err(e) if tries < 50 => {
                tries += 1;
                tracing::debug!(error = %e, "template busy, retrying");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("cannot create test database {db_name}: {e}"),
        }
    }
}

fn init_logging() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_test_writer()
        .try_init();
}

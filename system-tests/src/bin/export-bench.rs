//! Measures the streamed reads of issue 13 on a 100,000-contact batch: the results export
//! (`GET /api/v1/batch/{id}/results.csv`) and the whole `GET /api/v1/status/batch`, with the
//! gateway's peak memory while it serves them, against a raw `COPY (…) TO STDOUT` of the same
//! query on the same PostgreSQL (the floor: what reading the rows costs with no gateway).
//!
//! It creates a scratch database and queue prefix, writes the batch with SQL (every contact
//! with one ended attempt), starts the `api-gateway` binary found next to this one on them,
//! and downloads each body `--runs` times, counting bytes without keeping them. It removes the
//! database and queues afterwards.
//!
//! ```sh
//! cargo build --release -p api-gateway -p system-tests --bin api-gateway --bin export-bench
//! target/release/export-bench [--rows 100000] [--runs 3]
//! ```
//!
//! Besides the readable lines, each figure is printed once as one JSON object on a line of its
//! own starting with `BENCH ` (for `scripts/bench.sh`):
//! `BENCH {"bench":"export","figure":"results_csv_seconds","value":1.23,"unit":"s"}`.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use futures_util::StreamExt;
use shared::config::{Env, ServiceConfig};
use tokio_postgres::{Client, NoTls};
use uuid::Uuid;

#[derive(Parser)]
#[command(about = "Export benchmark: results.csv and status/batch streamed by the gateway")]
struct Args {
    /// Contacts in the batch.
    #[arg(long, default_value_t = 100_000)]
    rows: u32,
    /// Downloads of each body (the figures are the median and the peak RSS after all).
    #[arg(long, default_value_t = 3)]
    runs: u32,
    /// The gateway binary (default: next to this one).
    #[arg(long)]
    gateway_bin: Option<PathBuf>,
}

/// One figure, printed for people and as a `BENCH` JSON line for scripts.
fn figure(name: &str, value: f64, unit: &str, text: &str) {
    println!("{text}");
    println!(
        "BENCH {}",
        serde_json::json!({"bench": "export", "figure": name, "value": value, "unit": unit})
    );
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let service = ServiceConfig::from_env(&Env::from_process())?;
    let bin = match &args.gateway_bin {
        Some(p) => p.clone(),
        None => std::env::current_exe()?.with_file_name("api-gateway"),
    };
    if !bin.exists() {
        bail!(
            "{} not found: build it with `cargo build --release -p api-gateway --bin api-gateway`",
            bin.display()
        );
    }
    let short = Uuid::new_v4().simple().to_string()[..10].to_owned();
    let db_name = format!("dialfleet_exportbench_{short}");
    let db_url = with_dbname(&service.database_url, &db_name);
    let prefix = format!("exportbench-{short}.");
    shared::db::ensure_database(&db_url).await?;
    let result = run(&args, &service, &db_url, &prefix, &bin).await;
    // The maintenance database: the configured one need not exist.
    let (admin, _conn) = pg(&with_dbname(&service.database_url, "postgres")).await?;
    admin
        .batch_execute(&format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            shared::db::quote_ident(&db_name)
        ))
        .await?;
    if let Ok(conn) = lapin::Connection::connect(&service.amqp_url, Default::default()).await {
        if let Ok(channel) = conn.create_channel().await {
            let _ = shared::queue::Topology::new(prefix).delete(&channel).await;
        }
        let _ = conn.close(200, "bench done".into()).await;
    }
    result
}

async fn run(
    args: &Args,
    service: &ServiceConfig,
    db_url: &str,
    prefix: &str,
    bin: &PathBuf,
) -> anyhow::Result<()> {
    shared::db::migrate::run(db_url).await?;
    let mut cfg = service.clone();
    cfg.database_url = db_url.to_owned();
    let pool = shared::db::connect(&cfg).await?;
    let created = api_gateway::admin::create_workspace_with(
        &pool,
        "export-bench",
        10,
        &api_gateway::admin::Compliance::off(),
    )
    .await?;
    let (client, _conn) = pg(db_url).await?;
    let batch = fill(&client, created.workspace_id, args.rows).await?;
    client.batch_execute("CHECKPOINT; ANALYZE").await?;

    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let mut child = tokio::process::Command::new(bin)
        .env("DATABASE_URL", db_url)
        .env("AMQP_URL", &service.amqp_url)
        .env("REDIS_URL", &service.redis_url)
        .env("QUEUE_PREFIX", prefix)
        .env("GATEWAY_ADDR", format!("127.0.0.1:{port}"))
        .env("RUST_LOG", "warn")
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {}", bin.display()))?;
    let pid = child.id().context("the gateway has no pid")?;
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    wait_ready(&http, &base).await?;
    let idle = rss(pid, "VmRSS:")?;
    println!(
        "export-bench: {} contacts, {} run(s) per body, gateway pid {pid} idle at {:.1} MB",
        args.rows,
        args.runs,
        idle as f64 / 1024.0
    );

    let floor = raw_copy(&client, batch, args.runs).await?;
    figure(
        "raw_copy_seconds",
        floor.as_secs_f64(),
        "s",
        &format!(
            "raw COPY (export query) TO STDOUT, no gateway: {:.3} s (median)",
            floor.as_secs_f64()
        ),
    );
    let bodies = [
        ("results_csv", format!("/api/v1/batch/{batch}/results.csv")),
        (
            "status_batch",
            format!("/api/v1/status/batch?batchId={batch}"),
        ),
    ];
    for (name, path) in bodies {
        let mut times = Vec::new();
        let mut bytes = 0;
        for _ in 0..args.runs {
            let (took, n) = download(&http, &base, &path, &created.api_key).await?;
            times.push(took);
            bytes = n;
        }
        times.sort();
        let median = times[times.len() / 2];
        let peak = rss(pid, "VmHWM:")?;
        figure(
            &format!("{name}_seconds"),
            median.as_secs_f64(),
            "s",
            &format!(
                "{path}: {:.3} s to the last byte (median of {}), {:.1} MB, {:.0} rows/s",
                median.as_secs_f64(),
                args.runs,
                bytes as f64 / 1e6,
                f64::from(args.rows) / median.as_secs_f64()
            ),
        );
        figure(
            &format!("{name}_bytes"),
            bytes as f64,
            "B",
            &format!("  body size {bytes} bytes"),
        );
        if name == "results_csv" {
            figure(
                "results_csv_vs_raw_copy",
                median.as_secs_f64() / floor.as_secs_f64(),
                "ratio",
                &format!(
                    "  ratio export / raw COPY: {:.2}",
                    median.as_secs_f64() / floor.as_secs_f64()
                ),
            );
        }
        figure(
            &format!("{name}_gateway_peak_rss_mb"),
            peak as f64 / 1024.0,
            "MB",
            &format!(
                "  gateway peak RSS (VmHWM) so far: {:.1} MB (idle {:.1} MB)",
                peak as f64 / 1024.0,
                idle as f64 / 1024.0
            ),
        );
    }
    child.kill().await.ok();
    Ok(())
}

/// A completed Dialgen batch of `rows` contacts, each with one ended attempt (a mix of
/// outcomes), written in three statements.
async fn fill(client: &Client, workspace: Uuid, rows: u32) -> anyhow::Result<Uuid> {
    let agent = Uuid::now_v7();
    client
        .execute(
            "INSERT INTO agents (id, workspace_id, name, answer_url) VALUES ($1, $2, 'bench', 'https://agent.example.com/a')",
            &[&agent, &workspace],
        )
        .await?;
    let batch = Uuid::now_v7();
    let rows = i32::try_from(rows)?;
    client
        .execute(
            "INSERT INTO batches (id, workspace_id, surface, name, agent_id, user_id, state, ingest_state,
                 max_concurrent_dials, max_calls_per_second, retry_max_attempts, retry_busy_delay_ms,
                 retry_no_answer_delay_ms, total_rows, accepted_rows, started_at, completed_at)
             VALUES ($1, $2, 'dialgen', 'bench', $3, 'u', 'completed', 'ready', 10, 10, 3, 300000, 3600000,
                 $4, $4, now() - interval '1 hour', now())",
            &[&batch, &workspace, &agent, &rows],
        )
        .await?;
    client
        .execute(
            "INSERT INTO contacts (id, batch_id, workspace_id, row_index, external_id, phone_number, name,
                 email, inputs, state, attempts, last_outcome)
             SELECT gen_random_uuid(), $1, $2, i, 'crm-' || i, '+1201' || lpad(i::text, 7, '0'),
                 'Contact ' || i, 'c' || i || '@example.com',
                 jsonb_build_object('plan', 'gold', 'account', i::text),
                 CASE WHEN i % 10 < 7 THEN 'completed' ELSE 'failed' END, 1,
                 CASE WHEN i % 10 < 6 THEN 'completed' WHEN i % 10 = 6 THEN 'voicemail'
                      WHEN i % 10 < 9 THEN 'busy' ELSE 'no-answer' END
             FROM generate_series(0, $3 - 1) AS i",
            &[&batch, &workspace, &rows],
        )
        .await?;
    client
        .execute(
            "INSERT INTO dial_attempts (id, contact_id, batch_id, workspace_id, attempt_no, to_number,
                 from_number, state, outcome, created_at, started_at, answered_at, ended_at)
             SELECT gen_random_uuid(), c.id, c.batch_id, c.workspace_id, 1, c.phone_number, '+12015550100',
                 'ended', c.last_outcome, t, t,
                 CASE WHEN c.last_outcome IN ('completed', 'voicemail') THEN t + interval '2 s' END,
                 t + interval '40 s'
             FROM contacts c, LATERAL (SELECT now() - interval '1 hour' + c.row_index * interval '30 ms' AS t) x
             WHERE c.batch_id = $1",
            &[&batch],
        )
        .await?;
    Ok(batch)
}

/// The median time to read the export query's rows through `COPY … TO STDOUT (FORMAT csv)`.
async fn raw_copy(client: &Client, batch: Uuid, runs: u32) -> anyhow::Result<Duration> {
    let sql = api_gateway::batches::export::SQL.replace("$1", &format!("'{batch}'::uuid"));
    let mut times = Vec::new();
    for _ in 0..runs.max(1) {
        let started = Instant::now();
        let stream = client
            .copy_out(&format!("COPY ({sql}) TO STDOUT (FORMAT csv)"))
            .await?;
        futures_util::pin_mut!(stream);
        let mut n = 0usize;
        while let Some(chunk) = stream.next().await {
            n += chunk?.len();
        }
        anyhow::ensure!(n > 0, "the raw COPY read nothing");
        times.push(started.elapsed());
    }
    times.sort();
    Ok(times[times.len() / 2])
}

/// Downloads `path`, counting bytes as they arrive; returns the time to the last byte.
async fn download(
    http: &reqwest::Client,
    base: &str,
    path: &str,
    key: &str,
) -> anyhow::Result<(Duration, usize)> {
    let started = Instant::now();
    let r = http
        .get(format!("{base}{path}"))
        .bearer_auth(key)
        .send()
        .await?;
    anyhow::ensure!(r.status().is_success(), "{path}: {}", r.status());
    let mut r = r;
    let mut n = 0usize;
    while let Some(chunk) = r.chunk().await? {
        n += chunk.len();
    }
    Ok((started.elapsed(), n))
}

async fn wait_ready(http: &reqwest::Client, base: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(r) = http.get(format!("{base}/healthz")).send().await
            && r.status().is_success()
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("the gateway did not answer /healthz within 30 s");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A `/proc/<pid>/status` figure in kB (`VmHWM:` peak, `VmRSS:` now).
fn rss(pid: u32, field: &str) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .with_context(|| format!("no {field} line"))
}

async fn pg(url: &str) -> anyhow::Result<(Client, tokio::task::JoinHandle<()>)> {
    let (client, connection) = tokio_postgres::connect(url, NoTls)
        .await
        .with_context(|| format!("connecting to {}", shared::config::redact_url(url)))?;
    let task = tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok((client, task))
}

fn with_dbname(url: &str, db: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let head = base.rsplit_once('/').map(|(h, _)| h).unwrap_or(base);
    match query {
        Some(q) => format!("{head}/{db}?{q}"),
        None => format!("{head}/{db}"),
    }
}

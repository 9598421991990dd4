//! Measures ingestion of a 100,000-contact batch against a raw `COPY` of the same rows into an
//! equivalent table on the same PostgreSQL, and prints the figures.
//!
//! - `ingest-bench http`: through the running stack (`deploy/local/up.sh`): `POST /api/v1/batch`
//!   to the gateway, then polls `GET /api/v1/batch/{id}/status` until the batch leaves
//!   `ingesting`. Reads the peak RSS of the gateway and ingest-worker from their pid files.
//! - `ingest-bench direct`: no gateway. Creates a scratch database and queue prefix, starts
//!   `ingest-worker` processes on them, publishes the chunks itself and times the workers.
//!
//! Build both binaries first: `cargo build --release -p ingest-worker -p dialfleet-benches`.
//!
//! `--dnc 1000000` (mode B) first puts that many numbers on the workspace's do-not-call list
//! (`--dnc-in-batch N` of them the batch's own): the cost of the DNC check at ingest.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use futures_util::pin_mut;
use ingest_worker::normalize::{NumberCheck, Region};
use lapin::options::QueueDeclareOptions;
use lapin::types::FieldTable;
use serde_json::{Value, json};
use shared::config::{Env, ServiceConfig};
use shared::queue::messages::{IngestChunkV1, RawRow};
use shared::queue::publisher::Outgoing;
use shared::queue::{Broker, Publisher, Stream, Topology};
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{Client, NoTls};
use uuid::Uuid;

#[derive(Parser)]
#[command(about = "Ingest benchmark: pipeline vs raw COPY of the same rows")]
struct Args {
    /// Contacts per batch.
    #[arg(long, default_value_t = 100_000)]
    rows: u32,
    /// Batches submitted at once.
    #[arg(long, default_value_t = 1)]
    batches: u32,
    /// Print only the summary table (Markdown rows: figure, measured, limit measured in the same
    /// run, ratio, target), for `scripts/bench.sh`.
    #[arg(long, global = true)]
    markdown: bool,
    #[command(subcommand)]
    mode: Mode,
}

#[derive(Subcommand)]
enum Mode {
    /// Through the running stack's gateway (mode A).
    Http {
        /// The gateway.
        #[arg(long, env = "GATEWAY_URL", default_value = "http://127.0.0.1:8080")]
        gateway: String,
        /// An API key (`api-gateway workspace create` prints one).
        #[arg(long, env = "DIALFLEET_API_KEY")]
        api_key: String,
        /// Where `deploy/local/up.sh` keeps pid files.
        #[arg(long, default_value = ".dialfleet")]
        state_dir: PathBuf,
    },
    /// Publishing chunks directly to ingest-worker processes started here (mode B).
    Direct {
        /// Rows per chunk.
        #[arg(long, default_value_t = 1000)]
        chunk: u32,
        /// ingest-worker processes.
        #[arg(long, default_value_t = 1)]
        workers: u32,
        /// `INGEST_CONCURRENCY` of each.
        #[arg(long, default_value_t = 4)]
        concurrency: u32,
        /// The ingest-worker binary (default: next to this one).
        #[arg(long)]
        worker_bin: Option<PathBuf>,
        /// Numbers on the workspace's do-not-call list before the batch arrives: what the DNC
        /// check costs.
        #[arg(long, default_value_t = 0)]
        dnc: u32,
        /// How many of those `--dnc` numbers are numbers of the batch (rejected as
        /// `do_not_call`); 0 measures the check alone, every row still stored.
        #[arg(long, default_value_t = 0)]
        dnc_in_batch: u32,
    },
    /// A gateway and ingest workers started here on a scratch database (mode C): one JSON
    /// batch, a CSV upload, ten batches at once and a slow client, with the gateway's memory.
    Gateway {
        /// ingest-worker processes.
        #[arg(long, default_value_t = 1)]
        workers: u32,
        /// Batches submitted at once in the concurrent run.
        #[arg(long, default_value_t = 10)]
        concurrent: u32,
        /// The slow client's rate, bytes per second.
        #[arg(long, default_value_t = 1_000_000)]
        slow_rate: u64,
        /// Where the api-gateway and ingest-worker binaries are (default: next to this one).
        #[arg(long)]
        bin_dir: Option<PathBuf>,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let service = ServiceConfig::from_env(&Env::from_process())?;
    match &args.mode {
        Mode::Http {
            gateway,
            api_key,
            state_dir,
        } => http(&args, &service, gateway, api_key, state_dir).await,
        Mode::Direct {
            chunk,
            workers,
            concurrency,
            worker_bin,
            dnc,
            dnc_in_batch,
        } => {
            let bin = match worker_bin {
                Some(p) => p.clone(),
                None => std::env::current_exe()?.with_file_name("ingest-worker"),
            };
            if !bin.exists() {
                bail!(
                    "{} not found: build it with `cargo build --release -p ingest-worker`",
                    bin.display()
                );
            }
            let dnc = (*dnc, *dnc_in_batch);
            direct(&args, &service, *chunk, *workers, *concurrency, dnc, &bin).await
        }
        Mode::Gateway {
            workers,
            concurrent,
            slow_rate,
            bin_dir,
        } => {
            let dir = match bin_dir {
                Some(d) => d.clone(),
                None => std::env::current_exe()?
                    .parent()
                    .context("no directory")?
                    .to_path_buf(),
            };
            for bin in ["api-gateway", "ingest-worker"] {
                if !dir.join(bin).exists() {
                    bail!(
                        "{} not found: build it with `cargo build --release -p api-gateway -p ingest-worker`",
                        dir.join(bin).display()
                    );
                }
            }
            let opts = GatewayOpts {
                workers: *workers,
                concurrent: *concurrent,
                slow_rate: *slow_rate,
                dir,
            };
            gateway_mode(&args, &service, &opts).await
        }
    }
}

/// The `i`-th contact of the benchmark: a valid, distinct US number and typical fields.
fn contact(i: u32) -> RawRow {
    RawRow {
        phone_number: format!("+1201{:07}", 2_000_000 + i),
        external_id: Some(format!("contact_{i}")),
        name: Some(format!("Contact {i}")),
        email: Some(format!("contact{i}@example.com")),
        company: Some("Acme Corp".to_owned()),
        inputs: json!({"lead_score": i % 100, "account_id": format!("A{i}")}),
        timezone: None,
        state: None,
        postal_code: None,
    }
}

// ---- mode A ---------------------------------------------------------------------------------

async fn http(
    args: &Args,
    service: &ServiceConfig,
    gateway: &str,
    api_key: &str,
    state_dir: &Path,
) -> anyhow::Result<()> {
    let http = reqwest::Client::new();
    let gateway = gateway.trim_end_matches('/');
    let agent: Value = http
        .post(format!("{gateway}/api/agents"))
        .bearer_auth(api_key)
        .json(&json!({"name": "ingest-bench", "answerUrl": "https://example.com/answer"}))
        .send()
        .await
        .context("POST /api/agents")?
        .error_for_status()?
        .json()
        .await?;
    let agent_id = agent["id"]
        .as_str()
        .context("agent response has no id")?
        .to_owned();

    let bodies: Vec<Vec<u8>> = (0..args.batches)
        .map(|_| batch_body(&agent_id, args.rows))
        .collect::<Result<_, _>>()?;
    println!(
        "mode A (http): {} batch(es) of {} contacts, body {:.1} MB each",
        args.batches,
        args.rows,
        bodies[0].len() as f64 / 1e6
    );

    let started = Instant::now();
    let submits = bodies.into_iter().map(|body| {
        let http = http.clone();
        async move {
            let t = Instant::now();
            let resp = http
                .post(format!("{gateway}/api/v1/batch"))
                .bearer_auth(api_key)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .context("POST /api/v1/batch")?;
            let status = resp.status();
            let answer: Value = resp.json().await.unwrap_or(Value::Null);
            if !status.is_success() {
                bail!("POST /api/v1/batch answered {status}: {answer}");
            }
            let id = answer["batchId"]
                .as_str()
                .context("no batchId in the answer")?
                .to_owned();
            Ok::<_, anyhow::Error>((id, t.elapsed(), status))
        }
    });
    let submitted = futures_util::future::try_join_all(submits).await?;
    for (id, took, status) in &submitted {
        println!("  {status} in {:.3} s  batch {id}", took.as_secs_f64());
    }

    let deadline = Instant::now() + Duration::from_secs(600);
    let mut ready_after = Vec::new();
    for (id, _, _) in &submitted {
        let status = loop {
            let s: Value = http
                .get(format!("{gateway}/api/v1/batch/{id}/status"))
                .bearer_auth(api_key)
                .send()
                .await?
                .json()
                .await?;
            let status = s["status"].as_str().unwrap_or_default().to_owned();
            if status != "ingesting" || Instant::now() > deadline {
                break status;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        ready_after.push(started.elapsed());
        println!(
            "  batch {id} left ingesting ({status}) after {:.3} s",
            started.elapsed().as_secs_f64()
        );
    }
    let pipeline = ready_after.into_iter().max().unwrap_or_default();
    let total_rows = u64::from(args.rows) * u64::from(args.batches);
    println!(
        "pipeline: {:.3} s from first byte to every batch ready, {:.0} rows/s",
        pipeline.as_secs_f64(),
        total_rows as f64 / pipeline.as_secs_f64()
    );
    for role in ["api-gateway", "ingest-worker"] {
        match peak_rss(&state_dir.join("pids").join(format!("{role}.pid"))) {
            Ok(kb) => println!(
                "peak RSS {role}: {:.1} MB (VmHWM, since the process started)",
                kb as f64 / 1024.0
            ),
            Err(e) => println!("peak RSS {role}: unknown ({e:#})"),
        }
    }
    let (client, _conn) = pg(&service.database_url).await?;
    compare_with_copy(&client, args.rows, pipeline / args.batches.max(1)).await?;
    Ok(())
}

fn batch_body(agent_id: &str, rows: u32) -> serde_json::Result<Vec<u8>> {
    let contacts: Vec<Value> = (0..rows)
        .map(|i| {
            let c = contact(i);
            json!({
                "id": c.external_id, "phoneNumber": c.phone_number, "name": c.name,
                "email": c.email, "company": c.company, "metadata": c.inputs,
            })
        })
        .collect();
    serde_json::to_vec(&json!({
        "agentId": agent_id,
        "userId": "user_bench",
        "contacts": contacts,
        "options": {"priority": 5, "timezone": "UTC", "maxCallsPerSecond": 10},
    }))
}

fn peak_rss(pid_file: &Path) -> anyhow::Result<u64> {
    let pid = std::fs::read_to_string(pid_file)
        .with_context(|| format!("reading {}", pid_file.display()))?;
    pid_rss(pid.trim().parse()?)
}

fn pid_rss(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("process {pid} is not running"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("no VmHWM line")
}

// ---- mode B ---------------------------------------------------------------------------------

async fn direct(
    args: &Args,
    service: &ServiceConfig,
    chunk_rows: u32,
    workers: u32,
    concurrency: u32,
    dnc: (u32, u32),
    worker_bin: &Path,
) -> anyhow::Result<()> {
    let short = Uuid::new_v4().simple().to_string()[..10].to_owned();
    let db_name = format!("dialfleet_bench_{short}");
    let db_url = with_dbname(&service.database_url, &db_name);
    shared::db::ensure_database(&db_url).await?;
    let result = direct_in(
        args,
        service,
        &db_url,
        &format!("bench-{short}."),
        chunk_rows,
        workers,
        concurrency,
        dnc,
        worker_bin,
    )
    .await;
    // Dropped from the server's `postgres` database: the configured one may not exist.
    let (admin, _conn) = pg(&with_dbname(&service.database_url, "postgres")).await?;
    admin
        .batch_execute(&format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            shared::db::quote_ident(&db_name)
        ))
        .await?;
    result
}

#[allow(clippy::too_many_arguments)]
async fn direct_in(
    args: &Args,
    service: &ServiceConfig,
    db_url: &str,
    prefix: &str,
    chunk_rows: u32,
    workers: u32,
    concurrency: u32,
    dnc: (u32, u32),
    worker_bin: &Path,
) -> anyhow::Result<()> {
    shared::db::migrate::run(db_url).await?;
    let mut cfg = service.clone();
    cfg.database_url = db_url.to_owned();
    cfg.queue_prefix = prefix.to_owned();
    let broker = Broker::connect(&cfg, "ingest-bench").await?;
    let (client, _conn) = pg(db_url).await?;

    let mut children = Vec::new();
    for _ in 0..workers {
        children.push(
            tokio::process::Command::new(worker_bin)
                .env("DATABASE_URL", db_url)
                .env("AMQP_URL", &service.amqp_url)
                .env("QUEUE_PREFIX", prefix)
                .env("HEALTH_ADDR", "127.0.0.1:0")
                .env("INGEST_CONCURRENCY", concurrency.to_string())
                .env("RUST_LOG", "warn")
                .kill_on_drop(true)
                .spawn()
                .with_context(|| format!("starting {}", worker_bin.display()))?,
        );
    }
    let outcome = async {
        wait_for_consumers(&broker, workers).await?;
        let batches = create_batches(&client, args.batches).await?;
        if dnc.0 > 0 {
            fill_dnc(&client, batches[0].1, dnc.0, dnc.1.min(args.rows)).await?;
        }
        // Flush what the set-up wrote (the list's million rows) before the clock starts, so a
        // checkpoint does not land inside the measured run; done with or without a list.
        client.batch_execute("CHECKPOINT").await?;
        println!(
            "mode B (direct): {} batch(es) of {} contacts in chunks of {chunk_rows}, {workers} ingest-worker process(es) x concurrency {concurrency}",
            args.batches, args.rows
        );
        // Encoding is the gateway's work: done before the clock starts.
        let mut messages = Vec::new();
        let mut expected = Vec::new();
        for &(batch_id, workspace_id) in &batches {
            let mut seq = 0;
            for first in (0..args.rows).step_by(chunk_rows.max(1) as usize) {
                let last = (first + chunk_rows).min(args.rows);
                let chunk = IngestChunkV1 {
                    batch_id,
                    workspace_id,
                    seq,
                    first_row: first,
                    rows: (first..last).map(contact).collect(),
                };
                messages.push(Outgoing::json(&chunk)?);
                seq += 1;
            }
            expected.push(seq as i32);
        }

        // What normalisation alone costs, on one thread of this process.
        let rows: Vec<RawRow> = (0..args.rows).map(contact).collect();
        let t = Instant::now();
        let planned = ingest_worker::plan::plan(0, rows, Region::parse("US"), NumberCheck::Strict)?;
        println!(
            "normalisation alone (one thread): {:.3} s for {} rows",
            t.elapsed().as_secs_f64(),
            planned.accepted.len()
        );

        let publisher = Publisher::new(broker.clone());
        let started = Instant::now();
        for group in messages.chunks(20) {
            publisher.publish_all(Stream::Ingest, group.to_vec()).await?;
        }
        let published = started.elapsed();
        for (&(batch_id, _), n) in batches.iter().zip(&expected) {
            client
                .execute(
                    "UPDATE batches SET expected_chunks = $2, updated_at = now() WHERE id = $1",
                    &[&batch_id, n],
                )
                .await?;
            shared::db::ingest::finish_if_complete(&client, batch_id).await?;
        }
        let ids: Vec<Uuid> = batches.iter().map(|b| b.0).collect();
        loop {
            let left: i64 = client
                .query_one(
                    "SELECT count(*) AS n FROM batches WHERE id = ANY($1) AND ingest_state = 'ingesting'",
                    &[&ids],
                )
                .await?
                .get("n");
            if left == 0 {
                break;
            }
            if started.elapsed() > Duration::from_secs(600) {
                bail!("batches still ingesting after 600 s");
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let pipeline = started.elapsed();
        let stored: i64 = client
            .query_one(
                "SELECT count(*) AS n FROM contacts WHERE batch_id = ANY($1)",
                &[&ids],
            )
            .await?
            .get("n");
        let listed: i64 = client
            .query_one(
                "SELECT count(*) AS n FROM rejected_rows WHERE batch_id = ANY($1) AND reason = 'do_not_call'",
                &[&ids],
            )
            .await?
            .get("n");
        if dnc.0 > 0 {
            println!("rejected as do_not_call: {listed}");
        }
        let total_rows = u64::from(args.rows) * u64::from(args.batches);
        println!(
            "publish (confirmed): {:.3} s; every batch ready after {:.3} s; {stored} contacts stored; {:.0} rows/s",
            published.as_secs_f64(),
            pipeline.as_secs_f64(),
            total_rows as f64 / pipeline.as_secs_f64()
        );
        for child in &children {
            if let Some(pid) = child.id() {
                match pid_rss(pid) {
                    Ok(kb) => println!("peak RSS ingest-worker pid {pid}: {:.1} MB", kb as f64 / 1024.0),
                    Err(e) => println!("peak RSS ingest-worker pid {pid}: unknown ({e:#})"),
                }
            }
        }
        let per_batch = pipeline / args.batches.max(1);
        let copy = compare_with_copy(&client, args.rows, per_batch).await?;
        let mut figures = vec![figure(
            &format!(
                "ingest ÷ raw COPY (direct, {workers} worker(s) × {concurrency}, chunks of {chunk_rows})"
            ),
            format!("{:.3} s per batch", per_batch.as_secs_f64()),
            &format!("{:.3} s raw COPY", copy.as_secs_f64()),
            &format!("{:.2}", per_batch.as_secs_f64() / copy.as_secs_f64()),
            "≤ 2.0",
        )];
        // Where the rest goes: the same COPY cut into the pipeline's transactions (one per chunk,
        // as many at once as the workers run), without normalisation or duplicate checks.
        let chunked = chunked_copy(db_url, args.rows, chunk_rows, workers * concurrency).await?;
        println!(
            "raw COPY in chunks of {chunk_rows}, one transaction each, {} at once: {:.3} s",
            workers * concurrency,
            chunked.as_secs_f64()
        );
        figures.push(figure(
            &format!("raw COPY in transactions of {chunk_rows} rows, {} at once", workers * concurrency),
            format!("{:.3} s", chunked.as_secs_f64()),
            &format!("{:.3} s raw COPY", copy.as_secs_f64()),
            &format!("{:.2}", chunked.as_secs_f64() / copy.as_secs_f64()),
            "—",
        ));
        if dnc.0 > 0 {
            figures.push(figure(
                &format!("batch ready with {} numbers on the DNC list", dnc.0),
                format!("{:.3} s", per_batch.as_secs_f64()),
                "—",
                "—",
                "noise-level vs none",
            ));
        }
        print_summary(&figures);
        // The same COPY into `contacts` itself, in one transaction: the floor for any pipeline
        // writing that table.
        let (batch_id, workspace_id) = create_batches(&client, 1).await?[0];
        let into_contacts = raw_copy(&client, "contacts", args.rows, batch_id, workspace_id).await?;
        println!(
            "raw COPY into contacts itself (one transaction): {:.3} s",
            into_contacts.as_secs_f64()
        );
        Ok(())
    }
    .await;
    for mut child in children {
        let _ = child.kill().await;
    }
    if let Ok(channel) = broker.channel().await {
        let _ = Topology::new(prefix).delete(&channel).await;
    }
    broker.close().await;
    outcome
}

/// Puts `n` numbers on the workspace's do-not-call list, `overlap` of them the batch's own.
async fn fill_dnc(client: &Client, workspace: Uuid, n: u32, overlap: u32) -> anyhow::Result<()> {
    let overlap = overlap.min(n);
    let t = Instant::now();
    client
        .execute(
            "INSERT INTO dnc_numbers (workspace_id, number, reason)
             SELECT $1, '+1415' || lpad(g::text, 7, '0'), 'bench'
             FROM generate_series(0, $2::int - $3::int - 1) g",
            &[&workspace, &(n as i32), &(overlap as i32)],
        )
        .await?;
    client
        .execute(
            "INSERT INTO dnc_numbers (workspace_id, number, reason)
             SELECT $1, '+1201' || lpad((2000000 + g)::text, 7, '0'), 'bench'
             FROM generate_series(0, $2::int - 1) g",
            &[&workspace, &(overlap as i32)],
        )
        .await?;
    client.batch_execute("ANALYZE dnc_numbers").await?;
    println!(
        "do-not-call list: {n} numbers ({overlap} of them in the batch) inserted in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    Ok(())
}

async fn wait_for_consumers(broker: &Broker, n: u32) -> anyhow::Result<()> {
    let queue = broker.topology().queue(Stream::Ingest);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let channel = broker.channel().await?;
        let q = channel
            .queue_declare(
                queue.as_str().into(),
                QueueDeclareOptions {
                    passive: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await?;
        let _ = channel.close(200, "checked".into()).await;
        if q.consumer_count() >= n {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("ingest-worker processes did not start consuming within 30 s");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn create_batches(client: &Client, n: u32) -> anyhow::Result<Vec<(Uuid, Uuid)>> {
    let workspace = Uuid::now_v7();
    let agent = Uuid::now_v7();
    client
        .execute(
            "INSERT INTO workspaces (id, name, max_concurrent_dials, webhook_secret)
             VALUES ($1, 'bench', 10, 'whsec_YmVuY2g=')",
            &[&workspace],
        )
        .await?;
    client
        .execute(
            "INSERT INTO agents (id, workspace_id, name, answer_url)
             VALUES ($1, $2, 'bench', 'https://example.com/answer')",
            &[&agent, &workspace],
        )
        .await?;
    let mut out = Vec::new();
    for _ in 0..n {
        let id = Uuid::now_v7();
        client
            .execute(
                "INSERT INTO batches (id, workspace_id, surface, name, agent_id, state, ingest_state,
                     max_concurrent_dials, max_calls_per_second, retry_max_attempts,
                     retry_busy_delay_ms, retry_no_answer_delay_ms)
                 VALUES ($1, $2, 'dialgen', 'bench', $3, 'created', 'ingesting', 5, 10, 3, 300000, 3600000)",
                &[&id, &workspace, &agent],
            )
            .await?;
        out.push((id, workspace));
    }
    Ok(out)
}

// ---- mode C ---------------------------------------------------------------------------------

struct GatewayOpts {
    workers: u32,
    concurrent: u32,
    slow_rate: u64,
    dir: PathBuf,
}

/// One line of the summary table.
struct Figure {
    figure: String,
    measured: String,
    limit: String,
    ratio: String,
    target: String,
}

fn figure(figure: &str, measured: String, limit: &str, ratio: &str, target: &str) -> Figure {
    Figure {
        figure: figure.to_owned(),
        measured,
        limit: limit.to_owned(),
        ratio: ratio.to_owned(),
        target: target.to_owned(),
    }
}

/// Prints the summary: Markdown rows, the same columns as `scripts/bench.sh`'s table.
fn print_summary(figures: &[Figure]) {
    println!("| figure | measured | limit (same run) | ratio | target |");
    println!("| --- | --- | --- | --- | --- |");
    for f in figures {
        println!(
            "| {} | {} | {} | {} | {} |",
            f.figure, f.measured, f.limit, f.ratio, f.target
        );
    }
}

/// Prints a progress line unless only the summary is wanted.
macro_rules! say {
    ($args:expr, $($t:tt)*) => {
        if !$args.markdown { println!($($t)*); }
    };
}

async fn gateway_mode(
    args: &Args,
    service: &ServiceConfig,
    opts: &GatewayOpts,
) -> anyhow::Result<()> {
    let short = Uuid::new_v4().simple().to_string()[..10].to_owned();
    let db_name = format!("dialfleet_bench_{short}");
    let db_url = with_dbname(&service.database_url, &db_name);
    shared::db::ensure_database(&db_url).await?;
    let prefix = format!("bench-{short}.");
    let result = gateway_in(args, service, &db_url, &prefix, opts).await;
    // Dropped from the server's `postgres` database: the configured one may not exist.
    let (admin, _conn) = pg(&with_dbname(&service.database_url, "postgres")).await?;
    admin
        .batch_execute(&format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            shared::db::quote_ident(&db_name)
        ))
        .await?;
    if let Ok(broker) = Broker::connect(service, "ingest-bench").await {
        if let Ok(channel) = broker.channel().await {
            let _ = Topology::new(&prefix).delete(&channel).await;
        }
        broker.close().await;
    }
    result
}

async fn gateway_in(
    args: &Args,
    service: &ServiceConfig,
    db_url: &str,
    prefix: &str,
    opts: &GatewayOpts,
) -> anyhow::Result<()> {
    shared::db::migrate::run(db_url).await?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let base = format!("http://127.0.0.1:{port}");
    let spawn = |bin: &str, extra: &[(&str, String)]| {
        let mut cmd = tokio::process::Command::new(opts.dir.join(bin));
        cmd.env("DATABASE_URL", db_url)
            .env("AMQP_URL", &service.amqp_url)
            .env("QUEUE_PREFIX", prefix)
            .env("REDIS_URL", &service.redis_url)
            .env("REDIS_PREFIX", format!("{prefix}redis:"))
            .env("RUST_LOG", "warn")
            .stdout(std::process::Stdio::null())
            .kill_on_drop(true);
        for (k, v) in extra {
            cmd.env(k, v);
        }
        cmd.spawn().with_context(|| format!("starting {bin}"))
    };
    let gateway = spawn(
        "api-gateway",
        &[("GATEWAY_ADDR", format!("127.0.0.1:{port}"))],
    )?;
    let gateway_pid = gateway.id().context("the gateway has no pid")?;
    let mut children = vec![gateway];
    for _ in 0..opts.workers {
        children.push(spawn(
            "ingest-worker",
            &[("HEALTH_ADDR", "127.0.0.1:0".to_owned())],
        )?);
    }
    let outcome = async {
        let http = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        while !http
            .get(format!("{base}/readyz"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            if Instant::now() > deadline {
                bail!("the gateway did not become ready within 60 s");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let created = tokio::process::Command::new(opts.dir.join("api-gateway"))
            .args(["workspace", "create", "--name", "bench", "--max-concurrent-dials", "50"])
            .env("DATABASE_URL", db_url)
            .env("AMQP_URL", &service.amqp_url)
            .env("QUEUE_PREFIX", prefix)
            .env("RUST_LOG", "warn")
            .output()
            .await?;
        let created: Value = serde_json::from_slice(&created.stdout)
            .with_context(|| format!("workspace create printed {:?}", String::from_utf8_lossy(&created.stdout)))?;
        let key = created["apiKey"].as_str().context("no apiKey")?.to_owned();
        let agent: Value = http
            .post(format!("{base}/api/agents"))
            .bearer_auth(&key)
            .json(&json!({"name": "ingest-bench", "answerUrl": "https://example.com/answer"}))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let agent = agent["id"].as_str().context("agent id")?.to_owned();
        let (client, _conn) = pg(db_url).await?;
        let stack = Stack { http, base, key, client, gateway_pid };
        let mut figures = Vec::new();
        let rows = args.rows;

        // The baseline, in the same state of the machine as the first run.
        let copy_before = copy_time(&stack.client, rows).await?;
        say!(args, "raw COPY of the same {rows} rows: {:.3} s", copy_before.as_secs_f64());

        // One JSON batch.
        let body = batch_body(&agent, rows)?;
        let mb = body.len() as f64 / 1e6;
        reset_peak_rss(gateway_pid);
        let one = stack.submit_json(body.clone()).await?;
        // From the first byte sent to the batch ready.
        let ready = one.accepted + stack.wait_ready(&[one.id]).await?;
        say!(args, "one JSON batch of {rows} ({mb:.1} MB): 202 after {:.3} s, ingested after {:.3} s, gateway peak RSS {:.1} MB",
            one.accepted.as_secs_f64(), ready.as_secs_f64(), peak_mb(gateway_pid));

        // A CSV upload.
        let csv = csv_body(rows);
        let csv_mb = csv.len() as f64 / 1e6;
        reset_peak_rss(gateway_pid);
        let t = Instant::now();
        let form = reqwest::multipart::Form::new()
            .text("batch", json!({"agentId": agent, "userId": "user_bench", "options": {"priority": 5}}).to_string())
            .part("file", reqwest::multipart::Part::bytes(csv).file_name("contacts.csv").mime_str("text/csv")?);
        let r = stack.http.post(format!("{}/api/v1/batch", stack.base)).bearer_auth(&stack.key).multipart(form).send().await?;
        let csv_202 = t.elapsed();
        let status = r.status();
        let answer: Value = r.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            bail!("CSV upload answered {status}: {answer}");
        }
        let csv_id: Uuid = answer["batchId"].as_str().context("batchId")?.parse()?;
        stack.wait_ready(&[csv_id]).await?;
        let csv_ready = t.elapsed();
        let csv_rss = peak_mb(gateway_pid);
        say!(args, "CSV upload of {rows} rows ({csv_mb:.1} MB): 202 after {:.3} s, ingested after {:.3} s, gateway peak RSS {csv_rss:.1} MB",
            csv_202.as_secs_f64(), csv_ready.as_secs_f64());

        // Batches at once.
        reset_peak_rss(gateway_pid);
        let t = Instant::now();
        let many = futures_util::future::try_join_all(
            (0..opts.concurrent).map(|_| stack.submit_json(body.clone())),
        )
        .await?;
        let all_accepted = t.elapsed();
        let many_rss = peak_mb(gateway_pid);
        let ids: Vec<Uuid> = many.iter().map(|s| s.id).collect();
        stack.wait_ready(&ids).await?;
        let all_ready = t.elapsed();
        say!(args, "{} JSON batches at once: every 202 after {:.3} s, every batch ingested after {:.3} s, gateway peak RSS {many_rss:.1} MB",
            opts.concurrent, all_accepted.as_secs_f64(), all_ready.as_secs_f64());

        // A slow client.
        reset_peak_rss(gateway_pid);
        let before = rss_mb(gateway_pid, "VmRSS:");
        let sampling = tokio::spawn(sample_rss(gateway_pid));
        let t = Instant::now();
        let slow = stack.submit_slow(body.clone(), opts.slow_rate).await?;
        let slow_took = t.elapsed();
        sampling.abort();
        let slow_peak = peak_mb(gateway_pid);
        stack.wait_ready(&[slow.id]).await?;
        say!(args, "slow client ({:.1} MB/s, {mb:.1} MB over {:.1} s): gateway RSS {before:.1} MB before, peak {slow_peak:.1} MB",
            opts.slow_rate as f64 / 1e6, slow_took.as_secs_f64());

        // The baseline again, after the runs: the ratio uses the mean of both.
        let copy_after = copy_time(&stack.client, rows).await?;
        let copy = (copy_before + copy_after) / 2;
        let per_batch_10 = all_ready.as_secs_f64() / f64::from(opts.concurrent.max(1));
        say!(args, "raw COPY of the same {rows} rows, after the runs: {:.3} s", copy_after.as_secs_f64());

        let c = copy.as_secs_f64();
        figures.push(figure("ingest ÷ raw COPY, one JSON batch (first byte to ingested)", format!("{:.3} s", ready.as_secs_f64()), &format!("{c:.3} s raw COPY"), &format!("{:.2}", ready.as_secs_f64() / c), "≤ 2.0"));
        figures.push(figure(&format!("ingest ÷ raw COPY, {} batches at once, per batch", opts.concurrent), format!("{per_batch_10:.3} s"), &format!("{c:.3} s raw COPY"), &format!("{:.2}", per_batch_10 / c), "≤ 2.0"));
        figures.push(figure("one JSON batch: time to 202", format!("{:.3} s", one.accepted.as_secs_f64()), "—", "—", "≤ 0.7 s"));
        figures.push(figure(&format!("{} JSON batches at once: gateway peak RSS", opts.concurrent), format!("{many_rss:.1} MB"), "—", "—", "< 128 MB"));
        figures.push(figure("CSV upload: time to 202", format!("{:.3} s", csv_202.as_secs_f64()), &format!("{:.3} s JSON", one.accepted.as_secs_f64()), &format!("{:.2}", csv_202.as_secs_f64() / one.accepted.as_secs_f64()), "≤ JSON's"));
        figures.push(figure("CSV upload: time to ingested", format!("{:.3} s", csv_ready.as_secs_f64()), &format!("{c:.3} s raw COPY"), &format!("{:.2}", csv_ready.as_secs_f64() / c), "≤ 2.0"));
        figures.push(figure("CSV upload: gateway peak RSS", format!("{csv_rss:.1} MB"), "—", "—", "< 128 MB"));
        figures.push(figure(&format!("slow client ({:.1} MB/s): gateway peak RSS", opts.slow_rate as f64 / 1e6), format!("{slow_peak:.1} MB"), &format!("{before:.1} MB before"), &format!("{:.2}", slow_peak / before.max(0.1)), "flat"));
        print_summary(&figures);
        Ok(())
    }
    .await;
    for mut child in children {
        let _ = child.kill().await;
    }
    outcome
}

struct Stack {
    http: reqwest::Client,
    base: String,
    key: String,
    client: Client,
    gateway_pid: u32,
}

struct Accepted {
    id: Uuid,
    accepted: Duration,
}

impl Stack {
    async fn submit_json(&self, body: Vec<u8>) -> anyhow::Result<Accepted> {
        self.submit(reqwest::Body::from(body)).await
    }

    /// The body sent at `rate` bytes/s, in 64 KiB pieces.
    async fn submit_slow(&self, body: Vec<u8>, rate: u64) -> anyhow::Result<Accepted> {
        const PIECE: usize = 64 * 1024;
        let pause = Duration::from_secs_f64(PIECE as f64 / rate.max(1) as f64);
        let pieces: Vec<Vec<u8>> = body.chunks(PIECE).map(<[u8]>::to_vec).collect();
        let stream = futures_util::stream::unfold(pieces.into_iter(), move |mut it| async move {
            let piece = it.next()?;
            tokio::time::sleep(pause).await;
            Some((Ok::<_, std::io::Error>(piece), it))
        });
        self.submit(reqwest::Body::wrap_stream(stream)).await
    }

    async fn submit(&self, body: reqwest::Body) -> anyhow::Result<Accepted> {
        let t = Instant::now();
        let r = self
            .http
            .post(format!("{}/api/v1/batch", self.base))
            .bearer_auth(&self.key)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await?;
        let accepted = t.elapsed();
        let status = r.status();
        let answer: Value = r.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            bail!("POST /api/v1/batch answered {status}: {answer}");
        }
        let id = answer["batchId"].as_str().context("no batchId")?.parse()?;
        Ok(Accepted { id, accepted })
    }

    /// Waits until every batch left `ingesting`; the time from the call.
    async fn wait_ready(&self, ids: &[Uuid]) -> anyhow::Result<Duration> {
        let t = Instant::now();
        loop {
            let left: i64 = self
                .client
                .query_one(
                    "SELECT count(*) AS n FROM batches WHERE id = ANY($1) AND ingest_state IN ('receiving', 'ingesting')",
                    &[&ids],
                )
                .await?
                .get("n");
            if left == 0 {
                let _ = self.gateway_pid;
                return Ok(t.elapsed());
            }
            if t.elapsed() > Duration::from_secs(600) {
                bail!("batches still ingesting after 600 s");
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// The CSV the benchmark uploads: the same contacts as [`batch_body`].
fn csv_body(rows: u32) -> Vec<u8> {
    let mut out = String::from("id,phoneNumber,name,email,company,lead_score,account_id\n");
    for i in 0..rows {
        let c = contact(i);
        out.push_str(&format!(
            "{},{},{},{},{},{},{}\n",
            c.external_id.unwrap_or_default(),
            c.phone_number,
            c.name.unwrap_or_default(),
            c.email.unwrap_or_default(),
            c.company.unwrap_or_default(),
            i % 100,
            format_args!("A{i}"),
        ));
    }
    out.into_bytes()
}

/// Resets the process's peak RSS (VmHWM) to its current RSS (Linux `clear_refs`, value 5).
fn reset_peak_rss(pid: u32) {
    let _ = std::fs::write(format!("/proc/{pid}/clear_refs"), "5");
}

fn peak_mb(pid: u32) -> f64 {
    rss_mb(pid, "VmHWM:")
}

fn rss_mb(pid: u32, line: &str) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix(line))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        })
        .map(|kb| kb / 1024.0)
        .unwrap_or(f64::NAN)
}

/// Keeps the kernel's peak fresh while a slow upload runs (it is read at the end).
async fn sample_rss(pid: u32) {
    loop {
        let _ = rss_mb(pid, "VmRSS:");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn copy_time(client: &Client, rows: u32) -> anyhow::Result<Duration> {
    let table = format!(
        "bench_raw_copy_{}",
        &Uuid::new_v4().simple().to_string()[..8]
    );
    client
        .batch_execute(&format!(
            "CREATE TABLE {table} (LIKE contacts INCLUDING DEFAULTS INCLUDING INDEXES)"
        ))
        .await?;
    let result = raw_copy(client, &table, rows, Uuid::now_v7(), Uuid::now_v7()).await;
    client
        .batch_execute(&format!("DROP TABLE IF EXISTS {table}"))
        .await?;
    result
}

// ---- the baseline ---------------------------------------------------------------------------

/// COPYs the same rows, already normalised, into a table shaped like `contacts` (same columns,
/// defaults and indexes, no foreign key; a regular, WAL-logged table like `contacts`, since a
/// TEMP table would skip the WAL and flatter the baseline), and prints the ratio.
async fn compare_with_copy(
    client: &Client,
    rows: u32,
    pipeline: Duration,
) -> anyhow::Result<Duration> {
    let table = format!(
        "bench_raw_copy_{}",
        &Uuid::new_v4().simple().to_string()[..8]
    );
    client
        .batch_execute(&format!(
            "CREATE TABLE {table} (LIKE contacts INCLUDING DEFAULTS INCLUDING INDEXES)"
        ))
        .await?;
    let result = raw_copy(client, &table, rows, Uuid::now_v7(), Uuid::now_v7()).await;
    client
        .batch_execute(&format!("DROP TABLE IF EXISTS {table}"))
        .await?;
    let copy = result?;
    println!(
        "raw COPY of the same {rows} rows: {:.3} s ({:.0} rows/s)",
        copy.as_secs_f64(),
        f64::from(rows) / copy.as_secs_f64()
    );
    println!(
        "ratio pipeline / raw COPY (per batch): {:.2}",
        pipeline.as_secs_f64() / copy.as_secs_f64()
    );
    Ok(copy)
}

/// `rows` rows COPYed into a `contacts`-shaped table in transactions of `chunk` rows,
/// `concurrency` at once, each on its own connection.
async fn chunked_copy(
    db_url: &str,
    rows: u32,
    chunk: u32,
    concurrency: u32,
) -> anyhow::Result<Duration> {
    let (admin, _conn) = pg(db_url).await?;
    let table = format!(
        "bench_chunked_copy_{}",
        &Uuid::new_v4().simple().to_string()[..8]
    );
    admin
        .batch_execute(&format!(
            "CREATE TABLE {table} (LIKE contacts INCLUDING DEFAULTS INCLUDING INDEXES)"
        ))
        .await?;
    let chunk = chunk.max(1);
    let chunks: Vec<u32> = (0..rows).step_by(chunk as usize).collect();
    let batch_id = Uuid::now_v7();
    let started = Instant::now();
    let lanes = (0..concurrency.max(1)).map(|lane| {
        let table = table.clone();
        let mine: Vec<u32> = chunks
            .iter()
            .copied()
            .enumerate()
            .filter(|(i, _)| *i as u32 % concurrency.max(1) == lane)
            .map(|(_, first)| first)
            .collect();
        async move {
            let (client, _conn) = pg(db_url).await?;
            for first in mine {
                let n = chunk.min(rows - first);
                copy_rows(&client, &table, first, n, batch_id, batch_id).await?;
            }
            Ok::<_, anyhow::Error>(())
        }
    });
    let result = futures_util::future::try_join_all(lanes).await;
    let took = started.elapsed();
    admin
        .batch_execute(&format!("DROP TABLE IF EXISTS {table}"))
        .await?;
    result?;
    Ok(took)
}

async fn raw_copy(
    client: &Client,
    table: &str,
    rows: u32,
    batch_id: Uuid,
    workspace_id: Uuid,
) -> anyhow::Result<Duration> {
    let started = Instant::now();
    copy_rows(client, table, 0, rows, batch_id, workspace_id).await?;
    Ok(started.elapsed())
}

/// COPYs rows `first..first + rows` of the benchmark in one transaction.
async fn copy_rows(
    client: &Client,
    table: &str,
    first: u32,
    rows: u32,
    batch_id: Uuid,
    workspace_id: Uuid,
) -> anyhow::Result<()> {
    let contacts: Vec<RawRow> = (first..first + rows).map(contact).collect();
    client.batch_execute("BEGIN").await?;
    let sink = client
        .copy_in(&format!(
            "COPY {table} (id, batch_id, workspace_id, row_index, external_id, phone_number,
                          name, email, company, inputs) FROM STDIN BINARY"
        ))
        .await?;
    let writer = BinaryCopyInWriter::new(
        sink,
        &[
            Type::UUID,
            Type::UUID,
            Type::UUID,
            Type::INT4,
            Type::TEXT,
            Type::TEXT,
            Type::TEXT,
            Type::TEXT,
            Type::TEXT,
            Type::JSONB,
        ],
    );
    pin_mut!(writer);
    for (i, c) in contacts.iter().enumerate() {
        let id = Uuid::now_v7();
        let row_index = (first as usize + i) as i32;
        let values: [&(dyn ToSql + Sync); 10] = [
            &id,
            &batch_id,
            &workspace_id,
            &row_index,
            &c.external_id,
            &c.phone_number,
            &c.name,
            &c.email,
            &c.company,
            &c.inputs,
        ];
        writer.as_mut().write(&values).await?;
    }
    writer.finish().await?;
    client.batch_execute("COMMIT").await?;
    Ok(())
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

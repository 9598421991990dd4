//! Measures ingestion of a 100,000-contact batch against a raw `COPY` of the same rows into an
//! equivalent table on the same PostgreSQL, and prints the figures.
//!
//! - `ingest-bench http`: through the running stack (`deploy/local/up.sh`): `POST /api/v1/batch`
//!   to the gateway, then polls `GET /api/v1/batch/{id}/status` until the batch leaves
//!   `ingesting`. Reads the peak RSS of the gateway and ingest-worker from their pid files.
//! - `ingest-bench direct`: no gateway. Creates a scratch database and queue prefix, starts
//!   `ingest-worker` processes on them, publishes the chunks itself and times the workers.
//!
//! Build both binaries first: `cargo build --release -p ingest-worker`.
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
    compare_with_copy(&client, args.rows, pipeline / args.batches.max(1)).await
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
    let (admin, _conn) = pg(&service.database_url).await?;
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
                    "SELECT count(*) FROM batches WHERE id = ANY($1) AND ingest_state = 'ingesting'",
                    &[&ids],
                )
                .await?
                .get(0);
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
                "SELECT count(*) FROM contacts WHERE batch_id = ANY($1)",
                &[&ids],
            )
            .await?
            .get(0);
        let listed: i64 = client
            .query_one(
                "SELECT count(*) FROM rejected_rows WHERE batch_id = ANY($1) AND reason = 'do_not_call'",
                &[&ids],
            )
            .await?
            .get(0);
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
        compare_with_copy(&client, args.rows, pipeline / args.batches.max(1)).await?;
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

// ---- the baseline ---------------------------------------------------------------------------

/// COPYs the same rows, already normalised, into a table shaped like `contacts` (same columns,
/// defaults and indexes, no foreign key; a regular, WAL-logged table like `contacts`, since a
/// TEMP table would skip the WAL and flatter the baseline), and prints the ratio.
async fn compare_with_copy(client: &Client, rows: u32, pipeline: Duration) -> anyhow::Result<()> {
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
    Ok(())
}

async fn raw_copy(
    client: &Client,
    table: &str,
    rows: u32,
    batch_id: Uuid,
    workspace_id: Uuid,
) -> anyhow::Result<Duration> {
    let contacts: Vec<RawRow> = (0..rows).map(contact).collect();
    let started = Instant::now();
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
        let row_index = i as i32;
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
    Ok(started.elapsed())
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

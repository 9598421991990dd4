//! dial-bench: prints dial-worker figures measured against the real PostgreSQL, RabbitMQ and
//! Redis (a scratch database, queue prefix and Redis prefix, removed afterwards), with the
//! in-process simulated carrier.
//!
//! - `throughput`: zero-length calls, limits out of the way: dials per second end to end, next
//!   to the raw RabbitMQ consume rate measured in the same run on a scratch queue.
//! - `utilization`: workspace and job limit 200, calls uniform 50–500 ms: ideal time
//!   (Σ durations ÷ 200) divided by the actual time, and the p99 time from a call ending to the
//!   next call starting in its place.
//!
//! - `predial`: zero-length calls as `throughput`, run twice: without a pre-dial check, and
//!   with one answered `{"allow": true}` by a local receiver after 50 ms; dials per second of
//!   each and their ratio (what the check costs).
//!
//! `cargo run --release -p dialfleet-benches --bin dial-bench -- all`

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::{DateTime, Utc};
use clap::{Parser, ValueEnum};
use dial_worker::carrier::Carrier;
use dial_worker::carrier::sim::{OutcomeRule, SimBehavior, SimCarrier, SimOutcome};
use futures_util::StreamExt;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicQosOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use shared::config::{Env, ServiceConfig};
use shared::queue::messages::DialV1;
use shared::queue::publisher::Outgoing;
use shared::queue::{Broker, Publisher, Stream};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Mode {
    Throughput,
    Utilization,
    Predial,
    All,
}

/// dial-worker benchmarks.
#[derive(Debug, Parser)]
struct Args {
    /// Which benchmark.
    #[arg(value_enum, default_value = "all")]
    mode: Mode,
    /// Contacts per run.
    #[arg(long, default_value_t = 20_000)]
    contacts: i32,
    /// Dial-worker instances (in this process, sharing the simulator).
    #[arg(long, default_value_t = 2)]
    workers: usize,
    /// Concurrency limit of the utilization run.
    #[arg(long, default_value_t = 200)]
    limit: i32,
    /// Dial prefetch per worker.
    #[arg(long, default_value_t = 400)]
    prefetch: u16,
    /// Where the utilization run writes its carrier record (JSON lines with `to`,
    /// `requested_at`, `ended_at`, as the carrier-sim's), for `bench-chart`.
    #[arg(long)]
    record: Option<std::path::PathBuf>,
}

/// One machine-readable line per figure, `BENCH {json}`, for `scripts/bench.sh`.
fn report(figure: serde_json::Value) {
    println!("BENCH {figure}");
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .init();
    let args = Args::parse();
    shared::metrics::install();
    if matches!(args.mode, Mode::Throughput | Mode::All) {
        let scratch = Scratch::new().await?;
        let r = throughput(&scratch, &args).await;
        scratch.drop_all().await;
        r?;
    }
    if matches!(args.mode, Mode::Utilization | Mode::All) {
        let scratch = Scratch::new().await?;
        let r = utilization(&scratch, &args).await;
        scratch.drop_all().await;
        r?;
    }
    if matches!(args.mode, Mode::Predial) {
        predial(&args).await?;
    }
    Ok(())
}

/// How long the benchmark's pre-dial receiver takes to answer.
const PREDIAL_ANSWER: Duration = Duration::from_millis(50);

/// Dials per second without and with a pre-dial check answered in [`PREDIAL_ANSWER`].
async fn predial(args: &Args) -> anyhow::Result<()> {
    println!(
        "== predial: {} contacts, zero-length calls, {} workers, prefetch {}; check answered in {} ms",
        args.contacts,
        args.workers,
        args.prefetch,
        PREDIAL_ANSWER.as_millis()
    );
    let mut rates = Vec::new();
    for with_check in [false, true] {
        let scratch = Scratch::new().await?;
        let r = predial_run(&scratch, args, with_check).await;
        scratch.drop_all().await;
        let rate = r?;
        println!(
            "{:<40} {rate:>8.0} dials/s",
            if with_check {
                "with the pre-dial check (50 ms):"
            } else {
                "without a pre-dial check:"
            }
        );
        rates.push(rate);
    }
    let ratio = rates[1] / rates[0].max(1e-9);
    println!("ratio with ÷ without:                    {ratio:>8.3}");
    report(serde_json::json!({
        "figure": "predial", "workers": args.workers, "prefetch": args.prefetch,
        "answer_ms": PREDIAL_ANSWER.as_millis() as u64,
        "dials_per_s_without": rates[0], "dials_per_s_with": rates[1], "ratio": ratio,
    }));
    Ok(())
}

/// A receiver on 127.0.0.1 allowing every call after [`PREDIAL_ANSWER`]; its URL.
async fn predial_receiver() -> anyhow::Result<String> {
    let app = axum::Router::new().route(
        "/predial",
        axum::routing::post(|| async {
            tokio::time::sleep(PREDIAL_ANSWER).await;
            axum::Json(serde_json::json!({"allow": true}))
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(format!("http://{addr}/predial"))
}

/// One run of `predial`: dials per second, first to last call.
async fn predial_run(scratch: &Scratch, args: &Args, with_check: bool) -> anyhow::Result<f64> {
    let n = args.contacts;
    let dials = fixture(scratch, n, 1_000_000, 1_000_000).await?;
    if with_check {
        let url = predial_receiver().await?;
        let pool = shared::db::connect(&scratch.service).await?;
        pool.get()
            .await?
            .execute("UPDATE workspaces SET predial_url = $1", &[&url])
            .await?;
    }
    let broker = Broker::connect(&scratch.service, "bench").await?;
    publish(&broker, &dials).await?;
    let (sim, stop_events) = answering_sim(&broker, (0, 0), 1);
    let (stop, handles) = start_workers(scratch, &sim, args.workers, args.prefetch).await?;
    wait_final(scratch, i64::from(n)).await?;
    let calls = sim.calls();
    let first = calls.iter().map(|c| c.requested_at).min();
    let last = calls.iter().map(|c| c.requested_at).max();
    let span = match (first, last) {
        (Some(a), Some(b)) => (b - a).to_std().unwrap_or_default(),
        _ => Duration::ZERO,
    };
    stop.cancel();
    stop_events.cancel();
    for h in handles {
        let _ = h.await;
    }
    broker.close().await;
    Ok(calls.len() as f64 / span.as_secs_f64().max(1e-9))
}

/// A scratch database, queue prefix and Redis prefix.
struct Scratch {
    service: ServiceConfig,
    db_name: String,
    base_url: String,
}

impl Scratch {
    async fn new() -> anyhow::Result<Self> {
        let env = Env::from_process();
        let base = ServiceConfig::from_env(&env)?;
        let short = Uuid::new_v4().simple().to_string()[..10].to_owned();
        let db_name = format!("dialfleet_bench_{short}");
        let base_url = base.database_url.clone();
        let url = replace_dbname(&base_url, &db_name);
        shared::db::ensure_database(&url).await?;
        shared::db::migrate::run(&url).await.context("migrate")?;
        let mut service = base;
        service.database_url = url;
        service.database_pool_size = 48;
        service.queue_prefix = format!("bench-{short}.");
        service.redis_prefix = format!("bench-{short}:");
        Ok(Self {
            service,
            db_name,
            base_url,
        })
    }

    async fn drop_all(&self) {
        if let Ok(broker) = Broker::connect(&self.service, "bench-cleanup").await
            && let Ok(channel) = broker.channel().await
        {
            let _ = broker.topology().delete(&channel).await;
            let _ = channel
                .queue_delete(
                    format!("{}raw", self.service.queue_prefix).as_str().into(),
                    Default::default(),
                )
                .await;
            broker.close().await;
        }
        if let Ok((client, conn)) = tokio_postgres::connect(
            &replace_dbname(&self.base_url, "postgres"),
            tokio_postgres::NoTls,
        )
        .await
        {
            tokio::spawn(conn);
            let _ = client
                .batch_execute(&format!(
                    "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                    shared::db::quote_ident(&self.db_name)
                ))
                .await;
        }
        if let Ok(client) = redis::Client::open(self.service.redis_url.as_str())
            && let Ok(mut conn) = client.get_multiplexed_async_connection().await
        {
            let keys: Vec<String> = redis::cmd("KEYS")
                .arg(format!("{}*", self.service.redis_prefix))
                .query_async(&mut conn)
                .await
                .unwrap_or_default();
            if !keys.is_empty() {
                let _: Result<(), _> = redis::cmd("DEL").arg(keys).query_async(&mut conn).await;
            }
        }
    }

    fn worker_config(&self, prefetch: u16) -> anyhow::Result<dial_worker::config::Config> {
        let s = &self.service;
        let env = Env::from_pairs([
            ("DATABASE_URL", s.database_url.clone()),
            ("DATABASE_POOL_SIZE", "32".to_owned()),
            ("AMQP_URL", s.amqp_url.clone()),
            ("QUEUE_PREFIX", s.queue_prefix.clone()),
            ("REDIS_URL", s.redis_url.clone()),
            ("REDIS_PREFIX", s.redis_prefix.clone()),
            ("HEALTH_ADDR", "127.0.0.1:0".to_owned()),
            ("DIAL_PREFETCH", prefetch.to_string()),
            ("EVENTS_PREFETCH", "256".to_owned()),
            // The `predial` run's receiver listens on loopback.
            ("WEBHOOK_ALLOWED_NETWORKS", "127.0.0.1/32".to_owned()),
            (
                "REDIS_SLOW_MS",
                std::env::var("REDIS_SLOW_MS").unwrap_or_else(|_| "100".to_owned()),
            ),
        ]);
        Ok(dial_worker::config::Config::from_env(&env)?)
    }
}

fn replace_dbname(url: &str, db: &str) -> String {
    let base = url.split('?').next().unwrap_or(url);
    let head = base.rsplit_once('/').map(|(h, _)| h).unwrap_or(base);
    format!("{head}/{db}")
}

/// Inserts a workspace, agent, phone number, an active batch and `n` contacts already marked
/// released; returns the dial messages to publish.
async fn fixture(scratch: &Scratch, n: i32, limit: i32, cps: i32) -> anyhow::Result<Vec<DialV1>> {
    let pool = shared::db::connect(&scratch.service).await?;
    let client = pool.get().await?;
    let (ws, agent, batch) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    client
        .execute(
            // Recipient calling hours off: the benchmark measures dialing at any hour; no
            // workspace-wide rate (the job's is out of the way too).
            "INSERT INTO workspaces (id, name, max_concurrent_dials, webhook_secret,
                                     recipient_hours_start, recipient_hours_end,
                                     max_calls_per_second)
             VALUES ($1, 'bench', $2, 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw', NULL, NULL, NULL)",
            &[&ws, &limit],
        )
        .await?;
    client
        .execute(
            "INSERT INTO agents (id, workspace_id, name, answer_url)
             VALUES ($1, $2, 'a', 'https://agent.example/answer')",
            &[&agent, &ws],
        )
        .await?;
    client
        .execute(
            "INSERT INTO phone_numbers (id, workspace_id, number) VALUES ($1, $2, '+12015550100')",
            &[&Uuid::new_v4(), &ws],
        )
        .await?;
    client
        .execute(
            "INSERT INTO batches (id, workspace_id, surface, name, agent_id, state, ingest_state,
                 max_concurrent_dials, max_calls_per_second, retry_max_attempts,
                 retry_busy_delay_ms, retry_no_answer_delay_ms)
             VALUES ($1, $2, 'dialgen', 'bench', $3, 'active', 'ready', $4, $5, 1, 0, 0)",
            &[&batch, &ws, &agent, &limit, &cps],
        )
        .await?;
    let rows = client
        .query(
            "INSERT INTO contacts (id, batch_id, workspace_id, row_index, phone_number, state)
             SELECT gen_random_uuid(), $1, $2, i, '+1201' || lpad(i::text, 7, '0'), 'released'
             FROM generate_series(0, $3 - 1) i
             RETURNING id",
            &[&batch, &ws, &n],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| {
            Ok(DialV1 {
                batch_id: batch,
                workspace_id: ws,
                contact_id: r.try_get("id")?,
                attempt_no: 1,
            })
        })
        .collect::<Result<_, tokio_postgres::Error>>()?)
}

async fn publish(broker: &Broker, dials: &[DialV1]) -> anyhow::Result<()> {
    let publisher = Publisher::new(broker.clone());
    for chunk in dials.chunks(1000) {
        let messages: Vec<Outgoing> = chunk.iter().map(Outgoing::json).collect::<Result<_, _>>()?;
        publisher.publish_all(Stream::Dial, messages).await?;
    }
    Ok(())
}

/// A simulator whose calls are all answered, ring for no time and talk `talk_ms` (uniform),
/// with its events forwarded to the call-events queue until the returned token is cancelled.
fn answering_sim(
    broker: &Broker,
    talk_ms: (u64, u64),
    seed: u64,
) -> (SimCarrier, CancellationToken) {
    let (sim, events) = SimCarrier::new(SimBehavior {
        ring_ms: (0, 0),
        talk_ms,
        rule: OutcomeRule::Always(SimOutcome::Answered),
        report_answered: false,
        seed,
    });
    let stop_events = CancellationToken::new();
    tokio::spawn(dial_worker::carrier::sim::forward_events(
        events,
        Arc::new(Publisher::new(broker.clone())),
        stop_events.clone(),
    ));
    (sim, stop_events)
}

/// Starts `count` workers sharing `sim`; returns their stop token.
async fn start_workers(
    scratch: &Scratch,
    sim: &SimCarrier,
    count: usize,
    prefetch: u16,
) -> anyhow::Result<(CancellationToken, Vec<tokio::task::JoinHandle<()>>)> {
    let stop = CancellationToken::new();
    let mut handles = Vec::new();
    for _ in 0..count {
        let (_, done) = dial_worker::spawn(
            scratch.worker_config(prefetch)?,
            Some(Carrier::Sim(sim.clone())),
            stop.clone(),
        )
        .await?;
        handles.push(done);
    }
    Ok((stop, handles))
}

/// Waits until every contact is final; returns when that happened.
async fn wait_final(scratch: &Scratch, n: i64) -> anyhow::Result<Instant> {
    let pool = shared::db::connect(&scratch.service).await?;
    loop {
        let client = pool.get().await?;
        let done: i64 = client
            .query_one(
                "SELECT count(*) AS done FROM contacts
                 WHERE state IN ('completed', 'failed', 'cancelled')",
                &[],
            )
            .await?
            .try_get("done")?;
        if done >= n {
            return Ok(Instant::now());
        }
        // Not too often: the count is the benchmark's own load on PostgreSQL.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn raw_consume_rate(scratch: &Scratch, n: usize, prefetch: u16) -> anyhow::Result<f64> {
    let broker = Broker::connect(&scratch.service, "bench-raw").await?;
    let channel = broker.channel().await?;
    let queue = format!("{}raw", scratch.service.queue_prefix);
    let mut args = FieldTable::default();
    args.insert(
        "x-queue-type".into(),
        lapin::types::AMQPValue::LongString("quorum".into()),
    );
    channel
        .queue_declare(
            queue.as_str().into(),
            QueueDeclareOptions {
                durable: true,
                ..Default::default()
            },
            args,
        )
        .await?;
    let body = serde_json::to_vec(&DialV1 {
        batch_id: Uuid::new_v4(),
        workspace_id: Uuid::new_v4(),
        contact_id: Uuid::new_v4(),
        attempt_no: 1,
    })?;
    let publish_channel = broker.channel().await?;
    publish_channel
        .confirm_select(lapin::options::ConfirmSelectOptions::default())
        .await?;
    let mut confirms = Vec::with_capacity(n);
    for _ in 0..n {
        confirms.push(
            publish_channel
                .basic_publish(
                    "".into(),
                    queue.as_str().into(),
                    lapin::options::BasicPublishOptions::default(),
                    &body,
                    lapin::BasicProperties::default().with_delivery_mode(2),
                )
                .await?,
        );
    }
    for c in confirms {
        c.await?;
    }
    channel
        .basic_qos(prefetch, BasicQosOptions::default())
        .await?;
    let mut consumer = channel
        .basic_consume(
            queue.as_str().into(),
            "raw".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    let start = Instant::now();
    let mut got = 0;
    while got < n {
        let Some(delivery) = consumer.next().await else {
            break;
        };
        delivery?.acker.ack(BasicAckOptions::default()).await?;
        got += 1;
    }
    let rate = got as f64 / start.elapsed().as_secs_f64();
    broker.close().await;
    Ok(rate)
}

async fn throughput(scratch: &Scratch, args: &Args) -> anyhow::Result<()> {
    let n = args.contacts;
    println!(
        "== throughput: {n} contacts, zero-length calls, {} workers, prefetch {}",
        args.workers, args.prefetch
    );
    let raw = raw_consume_rate(scratch, n as usize, args.prefetch).await?;
    let dials = fixture(scratch, n, 1_000_000, 1_000_000).await?;
    let broker = Broker::connect(&scratch.service, "bench").await?;
    publish(&broker, &dials).await?;
    let (sim, stop_events) = answering_sim(&broker, (0, 0), 1);
    let cpu_before = CpuSample::take();
    let start = Instant::now();
    let (stop, handles) = start_workers(scratch, &sim, args.workers, args.prefetch).await?;
    let finished = wait_final(scratch, i64::from(n)).await?;
    let cpu = CpuSample::take().since(&cpu_before);
    let calls = sim.calls();
    let first = calls.iter().map(|c| c.requested_at).min();
    let last = calls.iter().map(|c| c.requested_at).max();
    let dial_span = match (first, last) {
        (Some(a), Some(b)) => (b - a).to_std().unwrap_or_default(),
        _ => Duration::ZERO,
    };
    println!("raw RabbitMQ consume+ack rate (quorum queue):  {raw:>8.0} msg/s");
    println!(
        "dials placed (first to last call):             {:>8.0} dials/s  ({} calls in {:.2} s)",
        calls.len() as f64 / dial_span.as_secs_f64().max(1e-9),
        calls.len(),
        dial_span.as_secs_f64()
    );
    let end_to_end = f64::from(n) / (finished - start).as_secs_f64();
    println!(
        "end to end (workers start → every outcome in): {end_to_end:>8.0} contacts/s ({:.2} s)",
        (finished - start).as_secs_f64()
    );
    let placed = calls.len() as f64 / dial_span.as_secs_f64().max(1e-9);
    println!(
        "ratio dials placed ÷ raw consume+ack:          {:>8.4}  (target ≥ 0.0625)",
        placed / raw
    );
    // Where the CPU went, per 1,000 contacts finished: what each service would saturate at
    // if it had a core to itself (Redis is single-threaded: 1 core is its whole capacity).
    let wall = (finished - start).as_secs_f64();
    let per_k = |secs: f64| secs / f64::from(n) * 1000.0;
    println!(
        "CPU per 1,000 contacts (s): workers+sim {:.3}, PostgreSQL {:.3}, RabbitMQ {:.3}, Redis {:.3}; \
         machine busy {:.0} % of {} cores",
        per_k(cpu.this),
        per_k(cpu.postgres),
        per_k(cpu.rabbitmq),
        per_k(cpu.redis),
        (cpu.this + cpu.postgres + cpu.rabbitmq + cpu.redis) / wall / cpu.cores * 100.0,
        cpu.cores
    );
    print_breakdown();
    report(serde_json::json!({
        "figure": "throughput", "workers": args.workers, "prefetch": args.prefetch,
        "dials_per_s": placed, "contacts_per_s": end_to_end, "raw_consume_per_s": raw,
        "ratio": placed / raw,
        "cpu_s_per_1000": {"workers": per_k(cpu.this), "postgres": per_k(cpu.postgres),
                           "rabbitmq": per_k(cpu.rabbitmq), "redis": per_k(cpu.redis)},
    }));
    stop.cancel();
    stop_events.cancel();
    for h in handles {
        let _ = h.await;
    }
    broker.close().await;
    Ok(())
}

async fn utilization(scratch: &Scratch, args: &Args) -> anyhow::Result<()> {
    let n = args.contacts;
    let limit = args.limit;
    println!(
        "== utilization: {n} contacts, limit {limit}, calls uniform 50–500 ms, {} workers, prefetch {}",
        args.workers, args.prefetch
    );
    let dials = fixture(scratch, n, limit, 1_000_000).await?;
    let broker = Broker::connect(&scratch.service, "bench").await?;
    publish(&broker, &dials).await?;
    let (sim, stop_events) = answering_sim(&broker, (50, 500), 42);
    let (stop, handles) = start_workers(scratch, &sim, args.workers, args.prefetch).await?;
    wait_final(scratch, i64::from(n)).await?;
    let calls = sim.calls();
    let total_ms: u64 = calls.iter().map(|c| c.planned_ms).sum();
    let ideal = total_ms as f64 / 1000.0 / f64::from(limit);
    let first = calls
        .iter()
        .map(|c| c.requested_at)
        .min()
        .context("no calls")?;
    let last = calls
        .iter()
        .filter_map(|c| c.ended_at)
        .max()
        .context("no ends")?;
    let actual = (last - first).to_std().unwrap_or_default().as_secs_f64();
    let max_overlap = overlap(&calls);
    // Slot-free → next start: once the first `limit` calls are started, every later start
    // takes the place of an earlier end; match them in order.
    let mut starts: Vec<DateTime<Utc>> = calls.iter().map(|c| c.requested_at).collect();
    let mut ends: Vec<DateTime<Utc>> = calls.iter().filter_map(|c| c.ended_at).collect();
    starts.sort();
    ends.sort();
    let mut gaps: Vec<f64> = starts
        .iter()
        .skip(limit as usize)
        .zip(ends.iter())
        .map(|(s, e)| (*s - *e).num_microseconds().unwrap_or(0) as f64 / 1000.0)
        .collect();
    gaps.sort_by(f64::total_cmp);
    let pct = |p: f64| {
        gaps.get(((gaps.len() as f64 - 1.0) * p) as usize)
            .copied()
            .unwrap_or(0.0)
    };
    println!(
        "calls: {}, Σ duration {:.1} s, max overlap {max_overlap} (limit {limit})",
        calls.len(),
        total_ms as f64 / 1000.0
    );
    println!("ideal time (Σ duration ÷ {limit}):  {ideal:>7.2} s");
    println!("actual time (first start → last end): {actual:>7.2} s");
    println!(
        "utilization (ideal ÷ actual):       {:>7.3}",
        ideal / actual
    );
    let steady = shared::witness::steady_lines_busy(
        calls
            .iter()
            .filter_map(|c| Some((c.requested_at, c.ended_at?))),
        limit as usize,
    )
    .unwrap_or(0.0);
    println!("lines busy, steady state (limit-th start → last start): {steady:>7.3}");
    println!(
        "slot free → next call start: p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        pct(0.5),
        pct(0.9),
        pct(0.99),
        pct(1.0)
    );
    print_breakdown();
    report(serde_json::json!({
        "figure": "utilization", "workers": args.workers, "prefetch": args.prefetch,
        "limit": limit, "utilization": ideal / actual, "ideal_s": ideal, "actual_s": actual,
        "p50_ms": pct(0.5), "p99_ms": pct(0.99), "max_overlap": max_overlap,
        "steady_lines_busy": steady,
    }));
    if let Some(path) = &args.record {
        write_record(path, &calls)?;
    }
    stop.cancel();
    stop_events.cancel();
    for h in handles {
        let _ = h.await;
    }
    broker.close().await;
    Ok(())
}

/// Where a slot's turnover goes: the mean of each stage's histogram, read from this process's
/// own metrics (the workers run in it).
fn print_breakdown() {
    let text = shared::metrics::render().unwrap_or_default();
    let value = |series: &str| -> Option<f64> {
        text.lines()
            .find(|l| l.starts_with(series))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
    };
    let mean_ms = |name: &str, labels: &str| -> Option<f64> {
        let sum = value(&format!("{name}_sum{{{labels}}}"))?;
        let count = value(&format!("{name}_count{{{labels}}}"))?;
        (count > 0.0).then(|| sum / count * 1000.0)
    };
    let stages = [
        (
            "call event publish (confirmed)",
            "dialfleet_queue_publish_confirm_seconds",
            "queue=\"dialfleet.call-events\"",
        ),
        (
            "call event publish → consume",
            "dialfleet_queue_consumer_lag_seconds",
            "queue=\"dialfleet.call-events\"",
        ),
        (
            "call event handling",
            "dialfleet_queue_handle_seconds",
            "queue=\"dialfleet.call-events\"",
        ),
        (
            "start token wait",
            "dialfleet_slot_wait_seconds",
            "limit=\"rate\"",
        ),
    ];
    for (what, name, labels) in stages {
        if let Some(ms) = mean_ms(name, labels) {
            println!("  mean {what:<32} {ms:>7.2} ms");
        }
    }
    println!(
        "  Redis window at the end {:.0} calls, congested calls {:.0}",
        value("dialfleet_redis_window ").unwrap_or(0.0),
        value("dialfleet_redis_congested_total ").unwrap_or(0.0)
    );
}

/// CPU seconds used so far by this process (workers and simulator), PostgreSQL (every backend),
/// RabbitMQ (`beam.smp`) and Redis, read from `/proc`.
#[derive(Debug, Default, Clone, Copy)]
struct CpuSample {
    this: f64,
    postgres: f64,
    rabbitmq: f64,
    redis: f64,
    cores: f64,
}

impl CpuSample {
    fn take() -> Self {
        let tick = 100.0; // USER_HZ on Linux
        let mut s = CpuSample {
            cores: std::thread::available_parallelism().map_or(1.0, |n| n.get() as f64),
            ..Default::default()
        };
        let own = std::process::id().to_string();
        let Ok(dir) = std::fs::read_dir("/proc") else {
            return s;
        };
        for entry in dir.flatten() {
            let pid = entry.file_name().to_string_lossy().into_owned();
            if !pid.bytes().all(|b| b.is_ascii_digit()) {
                continue;
            }
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                continue;
            };
            // comm is in parentheses and may hold spaces; the fields after it are fixed.
            let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
                continue;
            };
            let comm = &stat[open + 1..close];
            let fields: Vec<&str> = stat[close + 2..].split(' ').collect();
            let cpu = |i: usize| {
                fields
                    .get(i)
                    .and_then(|v| v.parse::<f64>().ok())
                    .unwrap_or(0.0)
            };
            // utime and stime are fields 14 and 15 of stat, 12 and 13 after the comm.
            let secs = (cpu(11) + cpu(12)) / tick;
            match comm {
                _ if pid == own => s.this += secs,
                "postgres" => s.postgres += secs,
                "beam.smp" => s.rabbitmq += secs,
                "redis-server" => s.redis += secs,
                _ => {}
            }
        }
        s
    }

    fn since(&self, before: &Self) -> Self {
        CpuSample {
            this: self.this - before.this,
            postgres: self.postgres - before.postgres,
            rabbitmq: self.rabbitmq - before.rabbitmq,
            redis: self.redis - before.redis,
            cores: self.cores,
        }
    }
}

/// The simulator's calls as carrier-sim record lines (the fields `bench-chart` reads).
fn write_record(
    path: &std::path::Path,
    calls: &[dial_worker::carrier::sim::SimCall],
) -> anyhow::Result<()> {
    use std::io::Write;
    let mut out = std::io::BufWriter::new(
        std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?,
    );
    for c in calls {
        let line = serde_json::json!({
            "call_sid": c.call_sid, "to": c.to, "from": c.from,
            "requested_at": c.requested_at, "answered_at": c.answered_at, "ended_at": c.ended_at,
        });
        writeln!(out, "{line}")?;
    }
    out.flush()?;
    Ok(())
}

fn overlap(calls: &[dial_worker::carrier::sim::SimCall]) -> usize {
    shared::witness::max_overlap(calls.iter().map(|c| (c.requested_at, c.ended_at)))
}

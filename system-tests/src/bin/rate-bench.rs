//! Measures what one workspace's flood costs the others (issue 29): the p50 / p99 of another
//! workspace's `GET /api/v1/batch/{id}/status`, idle and while a flooding workspace hammers
//! `GET /api/v1/batch/check-status` beyond its rate (the default 50 requests/s, burst 100), with
//! how much of the flood was served and refused. The goal: the flood's p99 within 1.5× idle.
//!
//! It starts the `api-gateway` binary found next to this one on a scratch database, queue
//! prefix and Redis prefix (testkit's), creates both workspaces and a batch each, and removes
//! everything afterwards. The measured workspace's own rate is raised by the operator so its
//! sampling is never what is limited.
//!
//! ```sh
//! cargo build --release -p api-gateway -p system-tests --bin api-gateway --bin rate-bench
//! target/release/rate-bench [--secs 10] [--flooders 8] [--interval-ms 5]
//! ```
//!
//! Each figure is also printed as one `BENCH {json}` line (for `scripts/bench.sh`).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use serde_json::{Value, json};

#[derive(Parser)]
#[command(about = "Rate-limit benchmark: another workspace's latency while one floods")]
struct Args {
    /// Seconds of each phase (idle, then flood).
    #[arg(long, default_value_t = 10)]
    secs: u64,
    /// Concurrent request loops of the flooding workspace.
    #[arg(long, default_value_t = 8)]
    flooders: usize,
    /// Pause between two samples of the measured workspace.
    #[arg(long, default_value_t = 5)]
    interval_ms: u64,
    /// The gateway binary (default: next to this one).
    #[arg(long)]
    gateway_bin: Option<PathBuf>,
}

fn figure(name: &str, value: f64, unit: &str, text: &str) {
    if !text.is_empty() {
        println!("{text}");
    }
    println!(
        "BENCH {}",
        json!({"bench": "rate_limit", "figure": name, "value": value, "unit": unit})
    );
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

/// Samples `url` with `key` every `interval` for `secs`; returns the sorted latencies.
async fn sample(
    http: &reqwest::Client,
    url: &str,
    key: &str,
    secs: u64,
    interval: Duration,
) -> anyhow::Result<Vec<Duration>> {
    let until = Instant::now() + Duration::from_secs(secs);
    let mut took = Vec::new();
    while Instant::now() < until {
        let started = Instant::now();
        let r = http.get(url).bearer_auth(key).send().await?;
        let status = r.status();
        r.bytes().await?;
        took.push(started.elapsed());
        if status != 200 {
            bail!("the measured workspace got {status}");
        }
        tokio::time::sleep(interval).await;
    }
    took.sort();
    Ok(took)
}

async fn create_batch(http: &reqwest::Client, base: &str, key: &str) -> anyhow::Result<String> {
    let agent: Value = http
        .post(format!("{base}/api/agents"))
        .bearer_auth(key)
        .json(&json!({"name": "bench", "answerUrl": "https://agent.example.com/answer"}))
        .send()
        .await?
        .json()
        .await?;
    let contacts: Vec<Value> = (0..100)
        .map(|i| json!({"phoneNumber": format!("+1201555{:04}", 5000 + i)}))
        .collect();
    let created: Value = http
        .post(format!("{base}/api/v1/batch"))
        .bearer_auth(key)
        .json(&json!({"agentId": agent["id"], "userId": "bench", "contacts": contacts}))
        .send()
        .await?
        .json()
        .await?;
    created["batchId"]
        .as_str()
        .map(str::to_owned)
        .with_context(|| format!("no batch: {created}"))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
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
    let env = testkit::TestEnv::new().await;
    let mut gateway = testkit::process::RoleProcess::spawn(
        bin.to_str().context("binary path")?,
        &env,
        &[("RUST_LOG", "warn")],
    );
    gateway.wait_ready(Duration::from_secs(30)).await;
    let base = format!("http://{}", gateway.health_addr);
    let http = reqwest::Client::new();

    let off = api_gateway::admin::Compliance::off();
    let flooder = api_gateway::admin::create_workspace_with(&env.db, "flooder", 5, &off).await?;
    let measured = api_gateway::admin::create_workspace_with(&env.db, "measured", 5, &off).await?;
    env.db
        .get()
        .await?
        .execute(
            "UPDATE workspaces SET requests_per_second = 100000, request_burst = 100000 WHERE id = $1",
            &[&measured.workspace_id],
        )
        .await?;
    let flood_batch = create_batch(&http, &base, &flooder.api_key).await?;
    let measured_batch = create_batch(&http, &base, &measured.api_key).await?;
    let status_url = format!("{base}/api/v1/batch/{measured_batch}/status");
    let check_url = format!("{base}/api/v1/batch/check-status?batchId={flood_batch}");
    let interval = Duration::from_millis(args.interval_ms);

    // Warm-up: connections, the first reads.
    sample(&http, &status_url, &measured.api_key, 1, interval).await?;
    let idle = sample(&http, &status_url, &measured.api_key, args.secs, interval).await?;

    let stop = tokio_util::sync::CancellationToken::new();
    let flood: Vec<_> = (0..args.flooders)
        .map(|_| {
            let (http, url, key, stop) = (
                http.clone(),
                check_url.clone(),
                flooder.api_key.clone(),
                stop.clone(),
            );
            tokio::spawn(async move {
                let (mut served, mut refused) = (0u64, 0u64);
                while !stop.is_cancelled() {
                    match http.get(&url).bearer_auth(&key).send().await {
                        Ok(r) if r.status() == 200 => served += 1,
                        Ok(r) if r.status() == 429 => refused += 1,
                        _ => {}
                    }
                }
                (served, refused)
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let flood_started = Instant::now();
    let flooded = sample(&http, &status_url, &measured.api_key, args.secs, interval).await?;
    let flood_secs = flood_started.elapsed().as_secs_f64() + 0.5;
    stop.cancel();
    let (mut served, mut refused) = (0, 0);
    for task in flood {
        let (s, r) = task.await?;
        served += s;
        refused += r;
    }

    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let (idle_p50, idle_p99) = (percentile(&idle, 0.5), percentile(&idle, 0.99));
    let (flood_p50, flood_p99) = (percentile(&flooded, 0.5), percentile(&flooded, 0.99));
    figure(
        "idle_p50_ms",
        ms(idle_p50),
        "ms",
        &format!(
            "idle:    p50 {:.2} ms, p99 {:.2} ms over {} requests",
            ms(idle_p50),
            ms(idle_p99),
            idle.len()
        ),
    );
    figure("idle_p99_ms", ms(idle_p99), "ms", "");
    figure(
        "flood_p50_ms",
        ms(flood_p50),
        "ms",
        &format!(
            "flooded: p50 {:.2} ms, p99 {:.2} ms over {} requests",
            ms(flood_p50),
            ms(flood_p99),
            flooded.len()
        ),
    );
    figure("flood_p99_ms", ms(flood_p99), "ms", "");
    let ratio = ms(flood_p99) / ms(idle_p99).max(f64::MIN_POSITIVE);
    figure(
        "p99_ratio",
        ratio,
        "x",
        &format!("p99 flooded / idle: {ratio:.2} (goal ≤ 1.5)"),
    );
    figure(
        "flood_served_per_s",
        served as f64 / flood_secs,
        "req/s",
        &format!(
            "flood ({} loops): {:.1} served/s, {:.0} refused (429)/s",
            args.flooders,
            served as f64 / flood_secs,
            refused as f64 / flood_secs
        ),
    );
    figure(
        "flood_refused_per_s",
        refused as f64 / flood_secs,
        "req/s",
        "",
    );
    gateway.sigterm();
    gateway.wait_exit(Duration::from_secs(10)).await;
    Ok(())
}

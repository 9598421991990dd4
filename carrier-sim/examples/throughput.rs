//! How many calls per second the carrier-sim takes, end to end: `BENCH_CALLS` create-call
//! requests from `BENCH_CLIENTS` concurrent clients, zero-length calls (ring 0, talk 0), each
//! with a signed final status callback to a local receiver, each written to the record.
//!
//! `cargo run --release -p carrier-sim --example throughput`
//! (`BENCH_CALLS=20000 BENCH_CLIENTS=64 BENCH_CALLBACKS=1` are the defaults).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use carrier_sim::config::Config;
use carrier_sim::plan::TalkTime;
use tokio_util::sync::CancellationToken;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let calls = env("BENCH_CALLS", 20_000);
    let clients = env("BENCH_CLIENTS", 64).max(1);
    let callbacks = env("BENCH_CALLBACKS", 1) == 1;

    let dir = tempfile::tempdir()?;
    let record = dir.path().join("calls.jsonl");
    let mut config = Config::for_tests(&record);
    config.ring = Duration::ZERO;
    config.talk = TalkTime::Fixed(0);
    let shutdown = CancellationToken::new();
    let (addr, sim) = carrier_sim::spawn(config, shutdown.clone()).await?;

    // The callback receiver only counts.
    let received = Arc::new(AtomicUsize::new(0));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let callback_url = format!("http://{}/status", listener.local_addr()?);
    let counter = received.clone();
    let app = axum::Router::new().route(
        "/status",
        axum::routing::post(move || {
            let counter = counter.clone();
            async move {
                counter.fetch_add(1, Ordering::Relaxed);
                axum::http::StatusCode::NO_CONTENT
            }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await });

    let http = reqwest::Client::new();
    let url = format!("http://{addr}/2010-04-01/Accounts/ACsim/Calls.json");
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (http, url, next, callback_url) = (
            http.clone(),
            url.clone(),
            next.clone(),
            callback_url.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= calls {
                    return latencies;
                }
                let to = format!("+1201{:07}", i % 10_000_000);
                let mut form = vec![
                    ("To", to.as_str()),
                    ("From", "+12015550199"),
                    ("Url", "http://agent.example/answer"),
                ];
                if callbacks {
                    form.push(("StatusCallback", callback_url.as_str()));
                }
                let t = Instant::now();
                let ok = http
                    .post(&url)
                    .basic_auth("ACsim", Some("sim-token"))
                    .form(&form)
                    .send()
                    .await
                    .is_ok_and(|r| r.status() == 201);
                assert!(ok, "create-call failed");
                latencies.push(t.elapsed());
            }
        }));
    }
    let mut latencies = Vec::new();
    for t in tasks {
        latencies.extend(t.await?);
    }
    let placed = started.elapsed();
    let want_callbacks = if callbacks { calls } else { 0 };
    let lines = |path: &std::path::Path| {
        std::fs::read(path).map_or(0, |b| b.iter().filter(|c| **c == b'\n').count())
    };
    while received.load(Ordering::Relaxed) < want_callbacks || lines(&record) < calls {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let done = started.elapsed();
    shutdown.cancel();
    sim.await??;

    latencies.sort();
    let pct = |p: f64| latencies[((latencies.len() as f64 * p) as usize).min(latencies.len() - 1)];
    let records = carrier_sim::record::read(&record);
    println!(
        "calls:                  {calls} ({clients} concurrent clients, callbacks: {callbacks})"
    );
    println!(
        "create-call requests/s: {:.0}",
        calls as f64 / placed.as_secs_f64()
    );
    println!(
        "calls ended, recorded and called back per second: {:.0}",
        calls as f64 / done.as_secs_f64()
    );
    println!(
        "create-call latency:    p50 {:.2} ms, p99 {:.2} ms",
        pct(0.5).as_secs_f64() * 1e3,
        pct(0.99).as_secs_f64() * 1e3
    );
    println!(
        "record lines:           {} (max starts in any second: {})",
        records.len(),
        carrier_sim::record::max_starts_per_second(&records)
    );
    Ok(())
}

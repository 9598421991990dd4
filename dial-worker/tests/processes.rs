//! Several real `dial-worker` processes against the real carrier simulator, with the gateway
//! turning the simulator's signed callbacks into call events: the simulator's record — the
//! independent witness — never shows more overlapping calls than the workspace's and the jobs'
//! limits, nor more starts in a second than a job's rate; and when one process is killed
//! (SIGKILL, mid-campaign) nobody is called twice and every contact still reaches a final state.

#[path = "common/mod.rs"]
mod common;

use std::time::Duration;

use carrier_sim::record::{CallRecord, max_overlap, max_starts_per_second};
use common::*;
use shared::config::Env;
use testkit::process::RoleProcess;
use tokio_util::sync::CancellationToken;

/// The calls of one job (its numbers share a prefix).
fn of_job(calls: &[CallRecord], prefix: &str) -> Vec<CallRecord> {
    calls
        .iter()
        .filter(|c| c.to.starts_with(prefix))
        .cloned()
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn worker_processes_keep_every_limit_and_survive_a_kill() {
    let env = testkit::TestEnv::new().await;
    let stop = CancellationToken::new();
    let dir = std::env::temp_dir().join(format!("dialfleet-procs-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let record = dir.join("calls.jsonl");
    let sim_config = carrier_sim::config::Config::from_env(&Env::from_pairs([
        ("CARRIER_SIM_ADDR", "127.0.0.1:0"),
        ("CARRIER_SIM_RING_MS", "50"),
        ("CARRIER_SIM_TALK_MS", "300"),
        ("CARRIER_SIM_SEED", "5"),
        ("CARRIER_SIM_RECORD", record.to_str().unwrap()),
    ]))
    .unwrap();
    let (sim, _) = carrier_sim::spawn(sim_config, stop.clone()).await.unwrap();
    let gateway = format!("http://127.0.0.1:{}", testkit::process::free_addr().port());
    let mut pairs = env.env_vars();
    pairs.push((
        "GATEWAY_ADDR".into(),
        gateway.trim_start_matches("http://").into(),
    ));
    pairs.push(("PUBLIC_URL".into(), gateway.clone()));
    let gateway_config = api_gateway::config::Config::from_env(&Env::from_pairs(pairs)).unwrap();
    api_gateway::spawn(gateway_config, stop.clone())
        .await
        .unwrap();

    // Workspace limit 4 over two jobs of limit 3 and 5 starts a second each.
    let ws = workspace(&env, 4).await;
    let spec = new_batch(ws)
        .max_concurrent_dials(3)
        .max_calls_per_second(5);
    batch(&env, &spec, &numbers("+1201555", 15, 0)).await;
    batch(&env, &spec, &numbers("+1301555", 15, 0)).await;

    let sim_url = format!("http://{sim}");
    let settings = [
        ("CARRIER_URL", sim_url.as_str()),
        ("PUBLIC_URL", gateway.as_str()),
        ("DIAL_PREFETCH", "8"),
        // A killed process may leave an attempt written but never placed: not known to be
        // placed, it is looked up at the carrier once silent past the send window, the request
        // timeout and the ring timeout (here 1 s), found missing, taken back and dialed again.
        ("RECONCILE_AFTER_SECS", "1"),
        ("CALL_TIMEOUT_SECS", "1"),
        ("SLOT_LEASE_SECS", "3"),
    ];
    let mut workers = Vec::new();
    for _ in 0..3 {
        let mut w = RoleProcess::spawn(env!("CARGO_BIN_EXE_dial-worker"), &env, &settings);
        w.wait_ready(Duration::from_secs(30)).await;
        workers.push(w);
    }
    let releases = scheduler(&env, stop.clone());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while carrier_sim::record::read(&record).len() < 8 {
        assert!(tokio::time::Instant::now() < deadline, "no calls placed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // SIGKILL: no drain, no hand-over; its prefetched messages go back to the queue.
    drop(workers.remove(0));
    wait_all_final(&env, Duration::from_secs(90)).await;
    stop.cancel();
    let _ = releases.await;

    let calls = carrier_sim::record::read(&record);
    let mut numbers: Vec<&str> = calls.iter().map(|c| c.to.as_str()).collect();
    numbers.sort();
    let distinct = {
        let mut d = numbers.clone();
        d.dedup();
        d.len()
    };
    assert_eq!(distinct, numbers.len(), "nobody was called twice");
    assert_eq!(
        calls.len(),
        30,
        "every contact was called, none lost to the kill"
    );
    assert!(
        max_overlap(&calls) <= 4,
        "workspace limit: {}",
        max_overlap(&calls)
    );
    for prefix in ["+1201", "+1301"] {
        let job = of_job(&calls, prefix);
        assert!(
            max_overlap(&job) <= 3,
            "job limit {prefix}: {}",
            max_overlap(&job)
        );
        assert!(
            max_starts_per_second(&job) <= 5,
            "job rate {prefix}: {}",
            max_starts_per_second(&job)
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

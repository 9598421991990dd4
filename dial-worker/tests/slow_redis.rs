//! Degrade, don't collapse: a worker whose Redis is slow dials more slowly, but it finishes the
//! campaign, calls every contact exactly once and hands nothing back.
//!
//! Redis is made slow for this test's worker only: the worker talks to it through a
//! [`TcpProxy`] that lets what the worker sends through at a fixed byte rate (all of its
//! connections together), so requests queue in front of Redis as they do when Redis is short of
//! CPU. Before the Redis window, a worker holding its whole prefetch sent every slot try at once;
//! the queue grew past the client's 500 ms response timeout, every call timed out although Redis
//! ran it, and the worker handed its contacts back and took them again without end.

mod common;

use std::time::Duration;

use common::*;
use dial_worker::carrier::Carrier;
use dial_worker::carrier::sim::{OutcomeRule, SimBehavior, SimOutcome};
use testkit::TestEnv;
use testkit::proxy::TcpProxy;
use tokio_util::sync::CancellationToken;

/// Reads one counter or gauge (summed over its label sets) from a worker's `/metrics`.
async fn metric(addr: std::net::SocketAddr, name: &str) -> f64 {
    let text = reqwest::get(format!("http://{addr}/metrics"))
        .await
        .expect("metrics served")
        .text()
        .await
        .expect("metrics body");
    text.lines()
        .filter(|l| l.starts_with(name) && !l.starts_with('#'))
        .filter(|l| l[name.len()..].starts_with(['{', ' ']))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_slow_redis_slows_dialing_down_without_a_hand_back_storm() {
    let env = TestEnv::new().await;
    let stop = CancellationToken::new();
    // About 40 slot tries (or 80 start tokens) a second get through: a Redis on a bad day.
    let upstream = env
        .config
        .redis_url
        .split("://")
        .nth(1)
        .unwrap_or("127.0.0.1:6379")
        .trim_end_matches('/')
        .to_owned();
    let slow = TcpProxy::start_throttled(&upstream, 20_000).await;
    let ws = workspace(&env, 100).await;
    let spec = new_batch(ws).max_concurrent_dials(100);
    let contacts = 300;
    batch(&env, &spec, &numbers("+1201556", contacts, 0)).await;
    let sim = sim(
        &env,
        SimBehavior {
            ring_ms: (0, 0),
            talk_ms: (0, 50),
            rule: OutcomeRule::Always(SimOutcome::Answered),
            report_answered: false,
            seed: 3,
        },
        stop.clone(),
    );
    let redis_url = slow.url(&env.config.redis_url);
    // The whole campaign in hand at once, as a worker with the default prefetch holds it.
    let config = config(
        &env,
        &[("REDIS_URL", redis_url.as_str()), ("DIAL_PREFETCH", "2048")],
    );
    let worker_stop = CancellationToken::new();
    let (addr, done) =
        dial_worker::spawn(config, Some(Carrier::Sim(sim.clone())), worker_stop.clone())
            .await
            .expect("worker starts");
    assert_eq!(release_due(&env).await, contacts);
    // A liveness bound, not a speed figure: at the proxy's rate the campaign needs well under
    // a minute; without the window it never finished.
    wait_all_final(&env, Duration::from_secs(240)).await;

    let calls = sim.calls();
    let mut to: Vec<_> = calls.iter().map(|c| c.to.clone()).collect();
    to.sort();
    to.dedup();
    assert_eq!(to.len(), contacts, "every contact called");
    assert_eq!(calls.len(), contacts, "and exactly once");
    assert!(
        max_overlap(&calls, |_| true) <= 100,
        "the limit held while Redis was slow"
    );
    let client = env.db.get().await.unwrap();
    let completed: i64 = client
        .query_one(
            "SELECT count(*) AS n FROM contacts WHERE state = 'completed' AND attempts = 1",
            &[],
        )
        .await
        .unwrap()
        .get("n");
    assert_eq!(
        completed as usize, contacts,
        "each completed on its first attempt"
    );
    // The worker did feel the slowness (its window shrank) ...
    assert!(
        metric(addr, "dialfleet_redis_congested_total").await >= 1.0,
        "the test made Redis slow enough to matter"
    );
    // ... and handed nothing back for it.
    assert_eq!(
        metric(addr, "dialfleet_dial_handbacks_total").await,
        0.0,
        "no contact was handed back"
    );
    worker_stop.cancel();
    let _ = done.await;
    stop.cancel();
}

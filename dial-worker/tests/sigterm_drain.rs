//! SIGTERM on the real `dial-worker` process: it stops, drains within `SHUTDOWN_GRACE_SECS` and
//! exits 0, having served `/metrics` while it ran and flushed its traces over OTLP on the way
//! out (to a receiver inside this test, with its own `service.name`).
//!
//!
//! And the same drain with calls in flight: the shutdown a SIGTERM triggers (the role's
//! `CancellationToken`, which `shared::shutdown::on_signal` cancels) reaches a worker in the
//! middle of a job, a second worker takes over, and the carrier's record (an in-process
//! simulator shared by both workers, which outlives the first as a real carrier would) shows
//! every contact called exactly once, every contact final, and no slot left in Redis.

#[path = "common/mod.rs"]
mod common;

use std::time::Duration;

use common::*;
use dial_worker::carrier::sim::{OutcomeRule, SimBehavior, SimOutcome};
use dial_worker::limits::Limits;
use tokio_util::sync::CancellationToken;

#[tokio::test]
async fn sigterm_drains_and_exits_zero() {
    testkit::process::assert_idle_drain(env!("CARGO_BIN_EXE_dial-worker"), "dial-worker").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn shutdown_mid_work_loses_nothing_and_dials_nothing_twice() {
    let env = testkit::TestEnv::new().await;
    let stop = CancellationToken::new();
    let ws = workspace(&env, 4).await;
    let spec = new_batch(ws)
        .max_concurrent_dials(4)
        .max_calls_per_second(20);
    let contacts = numbers("+1201555", 24, 0);
    let batch_id = batch(&env, &spec, &contacts).await;
    // Calls long enough that some are in flight when the signal comes, short enough to end
    // within the grace.
    let behavior = SimBehavior {
        ring_ms: (50, 100),
        talk_ms: (400, 900),
        rule: OutcomeRule::Always(SimOutcome::Answered),
        report_answered: true,
        seed: 11,
    };
    let sim = sim(&env, behavior, stop.clone());
    let releases = scheduler(&env, stop.clone());

    let grace = Duration::from_secs(3);
    let first = worker(config(&env, &[("SHUTDOWN_GRACE_SECS", "3")]), &sim).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while sim.calls().len() < 3 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the first worker never dialed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let placed_before = sim.calls().len();
    first.stop.cancel();
    // Drained within the grace (plus slack for a loaded machine).
    tokio::time::timeout(grace + Duration::from_secs(5), first.done)
        .await
        .expect("the first worker stopped within its grace")
        .expect("the first worker's tasks ended cleanly");
    let placed_by_first = sim.calls().len();
    assert!(
        placed_by_first < contacts.len(),
        "the signal came mid-work ({placed_by_first} of {} placed)",
        contacts.len()
    );

    let second = worker(config(&env, &[]), &sim).await;
    wait_all_final(&env, Duration::from_secs(60)).await;

    // Nothing dialed twice: one carrier call per contact and per attempt.
    let calls = sim.calls();
    assert_eq!(
        calls.len(),
        contacts.len(),
        "every contact called exactly once"
    );
    let mut to: Vec<_> = calls.iter().map(|c| c.to.clone()).collect();
    to.sort();
    to.dedup();
    assert_eq!(to.len(), contacts.len(), "no number called twice");
    let mut attempts: Vec<_> = calls.iter().map(|c| c.attempt_id).collect();
    attempts.sort();
    attempts.dedup();
    assert_eq!(attempts.len(), contacts.len(), "no attempt placed twice");

    // Nothing lost: every contact completed, with exactly one attempt, ended.
    let client = env.db.get().await.unwrap();
    let row = client
        .query_one(
            "SELECT count(*) FILTER (WHERE c.state = 'completed') AS completed,
                    (SELECT count(*) FROM dial_attempts a WHERE a.batch_id = $1) AS attempts,
                    (SELECT count(*) FROM dial_attempts a WHERE a.batch_id = $1 AND a.outcome = 'completed')
                        AS completed_attempts
             FROM contacts c WHERE c.batch_id = $1",
            &[&batch_id],
        )
        .await
        .unwrap();
    let n = contacts.len() as i64;
    assert_eq!(row.get::<_, i64>("completed"), n, "every contact completed");
    assert_eq!(row.get::<_, i64>("attempts"), n, "one attempt per contact");
    assert_eq!(
        row.get::<_, i64>("completed_attempts"),
        n,
        "every attempt ended completed"
    );

    // The dialing series the limits dashboard reads, after this real work (one registry per
    // process, installed by the workers' health router).
    let text = shared::metrics::render().unwrap_or_default();
    for name in [
        "dialfleet_call_starts_total",
        "dialfleet_call_outcomes_total{outcome=\"completed\"}",
        "dialfleet_slot_wait_seconds_bucket",
    ] {
        assert!(text.contains(name), "{name} missing from:\n{text}");
    }

    // The slots of the first worker's calls came back.
    let limits = Limits::new(env.redis.clone(), Duration::from_secs(30), Duration::ZERO);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let in_use = limits.in_use(ws.id, batch_id).await.unwrap();
        if in_use == (0, 0) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "slots still held in Redis: {in_use:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!(
        "first worker: {placed_before} calls placed at the signal, {placed_by_first} by its exit; \
         second worker: {} more",
        calls.len() - placed_by_first
    );

    second.stop.cancel();
    stop.cancel();
    let _ = releases.await;
}

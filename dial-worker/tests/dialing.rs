//! Dialing against the real PostgreSQL, RabbitMQ and Redis, with the in-process carrier.

mod common;

use std::time::Duration;

use common::*;
use dial_worker::carrier::Carrier;
use dial_worker::carrier::sim::{OutcomeRule, SimBehavior, SimOutcome};
use dial_worker::dial::{DialResult, dial_one};
use shared::domain::ContactState;
use shared::queue::Publisher;
use shared::queue::messages::DialV1;
use shared::queue::publisher::Outgoing;
use testkit::TestEnv;
use tokio_util::sync::CancellationToken;

fn talking(lo: u64, hi: u64) -> SimBehavior {
    SimBehavior {
        ring_ms: (0, 0),
        talk_ms: (lo, hi),
        rule: OutcomeRule::Always(SimOutcome::Answered),
        report_answered: true,
        seed: 7,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn several_workers_never_exceed_the_limits() {
    let env = TestEnv::new().await;
    let stop = CancellationToken::new();
    let ws = workspace(&env, 4).await;
    let spec = new_batch(ws)
        .max_concurrent_dials(3)
        .max_calls_per_second(8);
    let a = numbers("+1201555", 24, 0);
    let b = numbers("+1301555", 24, 0);
    batch(&env, &spec, &a).await;
    batch(&env, &spec, &b).await;
    let sim = sim(&env, talking(50, 400), stop.clone());
    let mut workers = Vec::new();
    for _ in 0..3 {
        workers.push(worker(config(&env, &[]), &sim).await);
    }
    assert_eq!(release_due(&env).await, 48);
    wait_all_final(&env, Duration::from_secs(60)).await;

    let calls = sim.calls();
    assert_eq!(calls.len(), 48, "every contact dialed exactly once");
    let mut to: Vec<_> = calls.iter().map(|c| c.to.clone()).collect();
    to.sort();
    to.dedup();
    assert_eq!(to.len(), 48);
    let in_a = |c: &dial_worker::carrier::sim::SimCall| c.to.starts_with("+1201");
    let in_b = |c: &dial_worker::carrier::sim::SimCall| c.to.starts_with("+1301");
    assert!(max_overlap(&calls, |_| true) <= 4, "workspace limit");
    assert!(max_overlap(&calls, in_a) <= 3, "job limit (a)");
    assert!(max_overlap(&calls, in_b) <= 3, "job limit (b)");
    assert!(max_starts_per_second(&calls, in_a) <= 8, "job rate (a)");
    assert!(max_starts_per_second(&calls, in_b) <= 8, "job rate (b)");
    // Callers spread over the pool.
    let from_0 = calls.iter().filter(|c| c.from == "+12015550100").count();
    assert!(
        (20..=28).contains(&from_0),
        "round robin over two numbers: {from_0}"
    );

    for w in &workers {
        w.stop.cancel();
    }
    stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn slots_come_back_after_a_worker_dies() {
    let env = TestEnv::new().await;
    let stop = CancellationToken::new();
    let ws = workspace(&env, 10).await;
    let spec = new_batch(ws).max_concurrent_dials(1);
    batch(&env, &spec, &numbers("+1201555", 2, 0)).await;
    let hang = SimBehavior {
        rule: OutcomeRule::Always(SimOutcome::Hang),
        ..talking(0, 0)
    };
    let sim = sim(&env, hang, stop.clone());
    let lease = [("SLOT_LEASE_SECS", "2")];
    // The first worker runs on a runtime of its own, so that dropping the runtime kills it as a
    // crash would: none of its tasks runs another step (a clean stop would keep its calls
    // counted, and hand over those still connected at the end of its grace).
    let first = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (first_config, first_sim) = (config(&env, &lease), sim.clone());
    first
        .spawn(async move {
            dial_worker::spawn(
                first_config,
                Some(Carrier::Sim(first_sim)),
                CancellationToken::new(),
            )
            .await
            .expect("worker starts")
        })
        .await
        .unwrap();
    release_due(&env).await;
    // The first call hangs forever and holds the only slot.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while sim.calls().is_empty() {
        assert!(tokio::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        sim.calls().len(),
        1,
        "the limit holds while the lease lives"
    );
    // The worker dies: it stops renewing, and hands nothing over.
    first.shutdown_background();
    let killed_at = tokio::time::Instant::now();
    let _second = worker(config(&env, &lease), &sim).await;
    while sim.calls().len() < 2 {
        assert!(
            killed_at.elapsed() < Duration::from_secs(15),
            "slot never came back"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Not before the lease could have run out.
    assert!(killed_at.elapsed() >= Duration::from_millis(500));
    stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn busy_and_no_answer_retry_after_their_delays_and_stop_at_max_attempts() {
    let env = TestEnv::new().await;
    let stop = CancellationToken::new();
    let ws = workspace(&env, 10).await;
    let spec = new_batch(ws).retry(3, 300, 700);
    let mut contacts = numbers("+1201555", 2, 6); // busy
    contacts.extend(numbers("+1301555", 2, 7)); // no-answer
    contacts.extend(numbers("+1401555", 1, 0)); // answered
    let batch_id = batch(&env, &spec, &contacts).await;
    let behavior = SimBehavior {
        ring_ms: (10, 10),
        talk_ms: (10, 10),
        rule: OutcomeRule::LastDigit,
        report_answered: true,
        seed: 1,
    };
    let sim = sim(&env, behavior, stop.clone());
    let _w = worker(config(&env, &[]), &sim).await;
    let sched = scheduler(&env, stop.clone());
    wait_all_final(&env, Duration::from_secs(30)).await;
    stop.cancel();
    let _ = sched.await;

    let client = env.db.get().await.unwrap();
    let rows = client
        .query(
            "SELECT c.phone_number, c.state, c.attempts, c.last_outcome,
                    array_agg(a.outcome ORDER BY a.attempt_no) AS outcomes,
                    array_agg(extract(epoch FROM a.started_at)::float8 ORDER BY a.attempt_no)
                        AS started,
                    array_agg(extract(epoch FROM a.ended_at)::float8 ORDER BY a.attempt_no)
                        AS ended
             FROM contacts c JOIN dial_attempts a ON a.contact_id = c.id
             WHERE c.batch_id = $1 GROUP BY c.id",
            &[&batch_id],
        )
        .await
        .unwrap();
    assert_eq!(rows.len(), 5);
    for r in rows {
        let number: String = r.get("phone_number");
        let state: String = r.get("state");
        let attempts: i32 = r.get("attempts");
        let last: String = r.get("last_outcome");
        let outcomes: Vec<String> = r.get("outcomes");
        let started: Vec<f64> = r.get("started");
        let ended: Vec<f64> = r.get("ended");
        let (want_state, want_attempts, want_outcome, delay) = match number.chars().last() {
            Some('6') => ("failed", 3, "busy", 0.3),
            Some('7') => ("failed", 3, "no-answer", 0.7),
            _ => ("completed", 1, "completed", 0.0),
        };
        assert_eq!(state, want_state, "{number}");
        assert_eq!(attempts, want_attempts, "{number}");
        assert_eq!(last, want_outcome, "{number}");
        assert_eq!(
            outcomes.len(),
            want_attempts as usize,
            "attempts ≤ maxAttempts"
        );
        assert!(outcomes.iter().all(|o| o == want_outcome));
        for i in 1..started.len() {
            assert!(
                started[i] - ended[i - 1] >= delay - 0.005,
                "{number}: retry {i} after {}s, wanted ≥ {delay}s",
                started[i] - ended[i - 1]
            );
        }
    }
    assert_eq!(sim.calls().len(), 2 * 3 + 2 * 3 + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_message_delivered_twice_dials_once() {
    let env = TestEnv::new().await;
    let stop = CancellationToken::new();
    let ws = workspace(&env, 10).await;
    let batch_id = batch(&env, &new_batch(ws), &numbers("+1201555", 2, 0)).await;
    let sim = sim(&env, talking(200, 200), stop.clone());

    // Driven step by step: the second delivery finds the attempt and reconciles it.
    let client = env.db.get().await.unwrap();
    client
        .execute(
            "UPDATE contacts SET state = 'released' WHERE batch_id = $1",
            &[&batch_id],
        )
        .await
        .unwrap();
    let rows = client
        .query(
            "SELECT id FROM contacts WHERE batch_id = $1 ORDER BY row_index",
            &[&batch_id],
        )
        .await
        .unwrap();
    let (first, second): (uuid::Uuid, uuid::Uuid) = (rows[0].get("id"), rows[1].get("id"));
    let ctx = dial_worker::Ctx::new(
        env.db.clone(),
        env.redis.clone(),
        Carrier::Sim(sim.clone()),
        config(&env, &[]),
        tokio_util::sync::CancellationToken::new(),
    );
    let msg = DialV1 {
        batch_id,
        workspace_id: ws.id,
        contact_id: first,
        attempt_no: 1,
    };
    assert!(matches!(
        dial_one(&ctx, &msg).await.unwrap(),
        DialResult::Dialed { .. }
    ));
    assert_eq!(dial_one(&ctx, &msg).await.unwrap(), DialResult::Reconciled);
    assert_eq!(sim.calls().len(), 1);

    // Through the queue, twice, with two workers racing.
    let publisher = Publisher::new(env.broker.clone());
    let twice = DialV1 {
        contact_id: second,
        ..msg
    };
    let _w1 = worker(config(&env, &[]), &sim).await;
    let _w2 = worker(config(&env, &[]), &sim).await;
    publisher
        .publish_all(
            shared::queue::Stream::Dial,
            [
                Outgoing::json(&twice).unwrap(),
                Outgoing::json(&twice).unwrap(),
            ],
        )
        .await
        .unwrap();
    wait_all_final(&env, Duration::from_secs(20)).await;
    let to_second = sim
        .calls()
        .iter()
        .filter(|c| c.to.ends_with("0010"))
        .count();
    assert_eq!(to_second, 1, "the second contact was dialed once");
    assert_eq!(sim.calls().len(), 2);
    let attempts: i64 = client
        .query_one("SELECT count(*) AS n FROM dial_attempts", &[])
        .await
        .unwrap()
        .get("n");
    assert_eq!(attempts, 2);
    stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn paused_and_cancelled_jobs_hand_their_contacts_back() {
    let env = TestEnv::new().await;
    let stop = CancellationToken::new();
    let ws = workspace(&env, 10).await;
    let paused = batch(&env, &new_batch(ws), &numbers("+1201555", 1, 0)).await;
    let cancelled = batch(&env, &new_batch(ws), &numbers("+1301555", 1, 0)).await;
    let client = env.db.get().await.unwrap();
    client
        .execute(
            "UPDATE batches SET state = 'paused' WHERE id = $1",
            &[&paused],
        )
        .await
        .unwrap();
    client
        .execute(
            "UPDATE batches SET state = 'cancelled' WHERE id = $1",
            &[&cancelled],
        )
        .await
        .unwrap();
    let rows = client
        .query(
            "UPDATE contacts SET state = 'released' RETURNING id, batch_id",
            &[],
        )
        .await
        .unwrap();
    let sim = sim(&env, talking(10, 10), stop.clone());
    let ctx = dial_worker::Ctx::new(
        env.db.clone(),
        env.redis.clone(),
        Carrier::Sim(sim.clone()),
        config(&env, &[]),
        tokio_util::sync::CancellationToken::new(),
    );
    for r in rows {
        let batch_id: uuid::Uuid = r.get("batch_id");
        let result = dial_one(
            &ctx,
            &DialV1 {
                batch_id,
                workspace_id: ws.id,
                contact_id: r.get("id"),
                attempt_no: 1,
            },
        )
        .await
        .unwrap();
        let want = if batch_id == paused {
            ContactState::Queued
        } else {
            ContactState::Cancelled
        };
        assert_eq!(result, DialResult::HandedBack(want));
    }
    assert!(sim.calls().is_empty());
    stop.cancel();
}

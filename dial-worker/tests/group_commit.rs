//! The dial path's group commit (`dial_worker`'s `group` module): many dials and many ends at
//! once are written in shared transactions, and each is still written exactly once, with its
//! own result; a group that fails because of one bad row fails only that row.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::*;
use dial_worker::carrier::Carrier;
use dial_worker::carrier::sim::{OutcomeRule, SimBehavior, SimCarrier, SimOutcome};
use dial_worker::dial::{DialResult, dial_first_delivery};
use dial_worker::end::{EndReport, Recorded, record_end};
use shared::queue::messages::{CallEventV1, CarrierCallStatus};
use testkit::TestEnv;
use uuid::Uuid;

fn quick_answered() -> SimBehavior {
    SimBehavior {
        ring_ms: (0, 0),
        talk_ms: (20, 20),
        rule: OutcomeRule::Always(SimOutcome::Answered),
        report_answered: false,
        seed: 5,
    }
}

/// The final events of `n` calls, in the order they came.
async fn final_events(
    events: &mut tokio::sync::mpsc::UnboundedReceiver<CallEventV1>,
    n: usize,
) -> Vec<CallEventV1> {
    let mut finals = Vec::new();
    while finals.len() < n {
        let event = tokio::time::timeout(Duration::from_secs(20), events.recv())
            .await
            .expect("every call ends")
            .expect("the simulator is running");
        if dial_worker::carrier::is_final(event.status) {
            finals.push(event);
        }
    }
    finals
}

/// Handles every event at once, each twice (a redelivered callback), and returns the results
/// of the first handling of each.
async fn handle_all_twice(
    ctx: &dial_worker::Ctx,
    events: &[CallEventV1],
) -> Vec<(Uuid, Result<(), String>)> {
    let tasks: Vec<_> = events
        .iter()
        .chain(events.iter())
        .map(|e| {
            let (ctx, e) = (ctx.clone(), e.clone());
            tokio::spawn(async move {
                let r = dial_worker::call_event::handle_event(&ctx, &e).await;
                (e.attempt_id, r.map_err(|e| e.to_string()))
            })
        })
        .collect();
    let mut results = Vec::new();
    for t in tasks {
        results.push(t.await.unwrap());
    }
    results.truncate(events.len());
    results
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn many_dials_and_ends_at_once_are_each_written_once_in_shared_transactions() {
    let env = TestEnv::new().await;
    let ws = workspace(&env, 200).await;
    let spec = new_batch(ws)
        .max_concurrent_dials(200)
        .webhooks(on_call_complete("https://hooks.example/done"));
    let batch = batch(&env, &spec, &numbers("+1201555", 80, 0)).await;
    let dials = released(&env, &ws, batch).await;
    let (sim, mut events) = SimCarrier::new(quick_answered());
    let ctx = ctx_with(&env, Carrier::Sim(sim.clone()));

    // Every message at once, and ten of them twice (a duplicate publish).
    let tasks: Vec<_> = dials
        .iter()
        .chain(dials.iter().take(10))
        .map(|d| {
            let (ctx, d) = (ctx.clone(), d.clone());
            tokio::spawn(async move { dial_first_delivery(&ctx, &d).await.unwrap() })
        })
        .collect();
    let mut dialed = 0;
    for t in tasks {
        if matches!(t.await.unwrap(), DialResult::Dialed { .. }) {
            dialed += 1;
        }
    }
    assert_eq!(dialed, 80, "each contact dialed once, the duplicates not");
    let called: HashSet<String> = sim.calls().iter().map(|c| c.to.clone()).collect();
    assert_eq!(sim.calls().len(), 80, "the carrier's record: one call each");
    assert_eq!(called.len(), 80);

    let finals = final_events(&mut events, 80).await;
    for (attempt, result) in handle_all_twice(&ctx, &finals).await {
        assert!(result.is_ok(), "{attempt}: {result:?}");
    }

    let client = env.db.get().await.unwrap();
    let row = client
        .query_one(
            "SELECT count(*) FILTER (WHERE c.state = 'completed') AS completed,
                    count(DISTINCT c.xmin::text) AS transactions,
                    (SELECT count(*) FROM dial_attempts a WHERE a.batch_id = $1) AS attempts,
                    (SELECT count(*) FROM dial_attempts a
                     WHERE a.batch_id = $1 AND a.outcome = 'completed'
                       AND a.carrier_call_sid IS NOT NULL) AS ended,
                    count(*) FILTER (WHERE w.xmin::text = c.xmin::text) AS webhooks_with_state
             FROM contacts c JOIN webhook_deliveries w ON w.subject_id = c.id
             WHERE c.batch_id = $1",
            &[&batch],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, i64>("completed"), 80);
    assert_eq!(row.get::<_, i64>("attempts"), 80);
    assert_eq!(row.get::<_, i64>("ended"), 80, "outcome and call id kept");
    assert_eq!(
        row.get::<_, i64>("webhooks_with_state"),
        80,
        "one webhook row per contact, committed with its final state"
    );
    assert!(
        row.get::<_, i64>("transactions") < 80,
        "ends shared transactions: {} for 80 contacts",
        row.get::<_, i64>("transactions")
    );

    // The counters the monitor reads follow the grouped statements.
    let counts = shared::db::counters::load_counts(&client, &[batch])
        .await
        .unwrap()
        .remove(&batch)
        .unwrap();
    assert_eq!((counts.total, counts.completed), (80, 80), "{counts:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_corrupt_job_in_a_group_of_ends_fails_only_its_own_end() {
    let env = TestEnv::new().await;
    let ws = workspace(&env, 200).await;
    let good = batch(
        &env,
        &new_batch(ws).max_concurrent_dials(100),
        &numbers("+1201555", 30, 0),
    )
    .await;
    let bad = batch(
        &env,
        &new_batch(ws).max_concurrent_dials(100),
        &numbers("+1201556", 1, 0),
    )
    .await;
    let mut dials = released(&env, &ws, good).await;
    dials.extend(released(&env, &ws, bad).await);
    let (sim, mut events) = SimCarrier::new(quick_answered());
    let ctx = ctx_with(&env, Carrier::Sim(sim));
    for d in &dials {
        let r = dial_first_delivery(&ctx, d).await.unwrap();
        assert!(matches!(r, DialResult::Dialed { .. }), "{r:?}");
    }
    let client = env.db.get().await.unwrap();
    // No CHECK constraint stops this; the API never writes it. The decision refuses it.
    client
        .execute(
            "UPDATE batches SET retry_max_attempts = -1 WHERE id = $1",
            &[&bad],
        )
        .await
        .unwrap();
    let bad_attempt: Uuid = client
        .query_one("SELECT id FROM dial_attempts WHERE batch_id = $1", &[&bad])
        .await
        .unwrap()
        .get("id");

    let finals = final_events(&mut events, 31).await;
    for (attempt, result) in handle_all_twice(&ctx, &finals).await {
        if attempt == bad_attempt {
            let e = result.expect_err("the corrupt job's end is refused");
            assert!(e.contains("negative") || e.contains("out of range"), "{e}");
        } else {
            assert!(result.is_ok(), "{attempt}: {result:?}");
        }
    }
    let row = client
        .query_one(
            "SELECT count(*) FILTER (WHERE outcome = 'completed' AND batch_id = $1) AS good_ended,
                    count(*) FILTER (WHERE outcome IS NULL AND batch_id = $2) AS bad_open
             FROM dial_attempts",
            &[&good, &bad],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, i64>("good_ended"), 30);
    assert_eq!(
        row.get::<_, i64>("bad_open"),
        1,
        "nothing of the refused end is written"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reports_of_one_call_in_one_group_record_it_once_and_find_it_after() {
    let env = TestEnv::new().await;
    let ws = workspace(&env, 20).await;
    let batch = batch(&env, &new_batch(ws), &numbers("+1201555", 10, 0)).await;
    let (sim, _events) = SimCarrier::new(quick_answered());
    let ctx = ctx_with(&env, Carrier::Sim(sim));
    let mut attempts = Vec::new();
    for dial in released(&env, &ws, batch).await {
        let DialResult::Dialed { attempt_id, .. } = dial_first_delivery(&ctx, &dial).await.unwrap()
        else {
            panic!("dialed");
        };
        attempts.push(attempt_id);
    }
    // A callback, its retries and a reconciliation of each call, all at once: the first two
    // requests go alone, the rest share a group, where the first report of a call writes its
    // outcome and the others of that call must find it written.
    let reports: Vec<_> = attempts
        .iter()
        .flat_map(|a| std::iter::repeat_n(*a, 5))
        .map(|attempt_id| {
            let ctx = ctx.clone();
            tokio::spawn(async move {
                let report = EndReport {
                    status: CarrierCallStatus::Completed,
                    answered_by: None,
                    duration_secs: Some(1),
                    call_sid: None,
                    at: chrono::Utc::now(),
                    slot_released: false,
                };
                record_end(&ctx, attempt_id, report, None).await.unwrap()
            })
        })
        .collect();
    let mut recorded = Vec::new();
    for r in reports {
        recorded.push(r.await.unwrap());
    }
    let count = |f: fn(&Recorded) -> bool| recorded.iter().filter(|r| f(r)).count();
    assert_eq!(
        (
            count(|r| matches!(r, Recorded::Now(_))),
            count(|r| matches!(r, Recorded::Already))
        ),
        (10, 40),
        "each call recorded once, every other report finds it: {recorded:?}"
    );
}

//! The release step against the real PostgreSQL and RabbitMQ, on an injected clock.

mod fixtures;

use std::collections::HashSet;
use std::time::Duration;

use chrono::{DateTime, Utc};
use fixtures::*;
use scheduler::{ReleaseReport, release_once};
use serde_json::json;
use shared::db::Pool;
use shared::queue::Publisher;
use testkit::TestEnv;
use uuid::Uuid;

/// Monday to Friday, 09:00–17:00 in New York.
fn business_hours() -> serde_json::Value {
    json!({
        "days": (1..=5).map(|d| json!({"dayOfWeek": d, "timeSlots": [{"startTime": "09:00", "endTime": "17:00"}]})).collect::<Vec<_>>(),
        "timezone": "America/New_York"
    })
}

/// One release step at `now`, with the default settings.
async fn release_at(db: &Pool, publisher: &Publisher, now: DateTime<Utc>) -> ReleaseReport {
    release_once(db, publisher, &settings(), now).await.unwrap()
}

fn ms(n: i64) -> chrono::Duration {
    chrono::Duration::milliseconds(n)
}

#[tokio::test]
async fn releases_only_inside_the_window_and_within_the_bound() {
    let env = TestEnv::new().await;
    let publisher = publisher(&env);
    let ws = workspace(&env.db, 100).await;
    let job = job(
        &env.db,
        new_job(ws).schedule(Some(business_hours())),
        30,
        at("2025-01-01T00:00:00Z"),
    )
    .await;

    // Sunday: closed.
    let r = release_at(&env.db, &publisher, at("2025-06-08T15:00:00Z")).await;
    assert_eq!((r.released, r.closed_jobs), (0, 1));

    // Monday 09:00 EDT: opens; 2 × maxConcurrentDials (5) = 10 released.
    let monday = at("2025-06-09T13:00:00Z");
    let r = release_at(&env.db, &publisher, monday).await;
    assert_eq!(r.released, 10);
    let messages = drain_dial(&env).await;
    assert_eq!(messages.len(), 10);
    assert!(
        messages
            .iter()
            .all(|m| m.attempt_no == 1 && m.batch_id == job && m.workspace_id == ws.id)
    );
    let ids: HashSet<Uuid> = messages.iter().map(|m| m.contact_id).collect();
    assert_eq!(ids.len(), 10);

    // Nothing finished: the bound holds.
    let r = release_at(&env.db, &publisher, monday + ms(200)).await;
    assert_eq!(r.released, 0);

    // Four finish; four more go.
    sql(
        &env.db,
        "UPDATE contacts SET state = 'completed', last_outcome = 'completed'
         WHERE id IN (SELECT id FROM contacts WHERE batch_id = $1 AND state = 'released' LIMIT 4)",
        &[&job],
    )
    .await;
    let r = release_at(&env.db, &publisher, monday + ms(400)).await;
    assert_eq!(r.released, 4);
    assert_eq!(count(&env.db, job, "released").await, 10);

    // 17:00 EDT: closed again, even with room.
    sql(
        &env.db,
        "UPDATE contacts SET state = 'completed' WHERE batch_id = $1 AND state = 'released'",
        &[&job],
    )
    .await;
    let r = release_at(&env.db, &publisher, at("2025-06-09T21:00:00Z")).await;
    assert_eq!((r.released, r.closed_jobs), (0, 1));
    assert_eq!(count(&env.db, job, "queued").await, 16);
}

#[tokio::test]
async fn retries_wait_for_due_time_and_next_opening() {
    let env = TestEnv::new().await;
    let publisher = publisher(&env);
    let ws = workspace(&env.db, 10).await;
    // A busy retry that falls due Friday 17:30 EDT, after the window closed.
    let job = job(
        &env.db,
        new_job(ws).schedule(Some(business_hours())),
        1,
        at("2025-06-06T21:30:00Z"),
    )
    .await;
    sql(
        &env.db,
        "UPDATE contacts SET attempts = 1, last_outcome = 'busy' WHERE batch_id = $1",
        &[&job],
    )
    .await;

    for t in [
        "2025-06-06T21:30:00Z",
        "2025-06-07T15:00:00Z",
        "2025-06-09T12:59:59.800Z",
    ] {
        let r = release_at(&env.db, &publisher, at(t)).await;
        assert_eq!(r.released, 0, "released at {t}");
    }
    // Monday 09:00 EDT: the first tick after the opening releases it as attempt 2.
    let r = release_at(&env.db, &publisher, at("2025-06-09T13:00:00.100Z")).await;
    assert_eq!(r.released, 1);
    let messages = drain_dial(&env).await;
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0].attempt_no, 2);

    // A retry due inside an open window goes on the first tick at or after its due time.
    let due: DateTime<Utc> = at("2025-06-09T14:00:00Z");
    sql(
        &env.db,
        "UPDATE contacts SET state = 'queued', attempts = 2, next_attempt_at = $2 WHERE batch_id = $1",
        &[&job, &due],
    )
    .await;
    let r = release_at(&env.db, &publisher, due - ms(100)).await;
    assert_eq!(r.released, 0);
    let r = release_at(&env.db, &publisher, due + ms(150)).await;
    assert_eq!(r.released, 1);
    assert_eq!(drain_dial(&env).await[0].attempt_no, 3);
}

#[tokio::test]
async fn scheduled_start_time_holds_the_job_back() {
    let env = TestEnv::new().await;
    let publisher = publisher(&env);
    let ws = workspace(&env.db, 10).await;
    let start = at("2025-06-09T15:00:00Z");
    let job = job(
        &env.db,
        new_job(ws).scheduled_start_time(Some(start)),
        3,
        at("2025-01-01T00:00:00Z"),
    )
    .await;
    let r = release_at(&env.db, &publisher, start - ms(1)).await;
    assert_eq!(r.released, 0);
    let r = release_at(&env.db, &publisher, start).await;
    assert_eq!(r.released, 3);
    assert_eq!(count(&env.db, job, "released").await, 3);
}

#[tokio::test]
async fn pause_resume_and_cancel_act_on_the_next_tick() {
    let env = TestEnv::new().await;
    let publisher = publisher(&env);
    let ws = workspace(&env.db, 10).await;
    let job = job(
        &env.db,
        new_job(ws).max_concurrent_dials(2),
        10,
        at("2025-01-01T00:00:00Z"),
    )
    .await;
    let t0 = at("2025-06-09T15:00:00Z");
    let finish = "UPDATE contacts SET state = 'completed', last_outcome = 'completed'
                  WHERE batch_id = $1 AND state = 'released'";

    assert_eq!(release_at(&env.db, &publisher, t0).await.released, 4);
    sql(&env.db, finish, &[&job]).await;

    // Paused: the next tick (≤ 250 ms later) releases nothing.
    set_job_state(&env.db, job, "paused").await;
    let r = release_at(&env.db, &publisher, t0 + ms(250)).await;
    assert_eq!(r.released, 0);

    // Resumed: the next tick releases again.
    set_job_state(&env.db, job, "active").await;
    let r = release_at(&env.db, &publisher, t0 + ms(500)).await;
    assert_eq!(r.released, 4);

    // Cancelled: the next tick cancels the queued contacts; released ones are the dial
    // worker's to hand back.
    set_job_state(&env.db, job, "cancelled").await;
    let r = release_at(&env.db, &publisher, t0 + ms(750)).await;
    assert_eq!((r.released, r.cancelled_contacts), (0, 2));
    assert_eq!(count(&env.db, job, "queued").await, 0);
    assert_eq!(count(&env.db, job, "released").await, 4);

    // A call in flight at the cancel schedules a retry: swept on the next tick too.
    sql(
        &env.db,
        "UPDATE contacts SET state = 'queued' WHERE id = (SELECT id FROM contacts WHERE batch_id = $1 AND state = 'released' LIMIT 1)",
        &[&job],
    )
    .await;
    sql(
        &env.db,
        "UPDATE contacts SET state = 'cancelled' WHERE batch_id = $1 AND state = 'released'",
        &[&job],
    )
    .await;
    let r = release_at(&env.db, &publisher, t0 + ms(1000)).await;
    assert_eq!(r.cancelled_contacts, 1);
    let settled: Option<DateTime<Utc>> = env
        .db
        .get()
        .await
        .unwrap()
        .query_one("SELECT settled_at FROM batches WHERE id = $1", &[&job])
        .await
        .unwrap()
        .get("settled_at");
    assert_eq!(settled, Some(t0 + ms(1000)));
    assert_eq!(job_state(&env.db, job).await, "cancelled");
    assert_eq!(drain_dial(&env).await.len(), 8);
}

#[tokio::test]
async fn priority_first_then_fair_within_a_workspace() {
    let env = TestEnv::new().await;
    let publisher = publisher(&env);
    let now = at("2025-06-09T15:00:00Z");

    // Workspace limit 2 → room 4: the newer priority-9 job takes it all.
    let ws = workspace(&env.db, 2).await;
    let low = job(
        &env.db,
        new_job(ws)
            .priority(1)
            .max_concurrent_dials(2)
            .created_at(at("2025-01-01T00:00:00Z")),
        10,
        now,
    )
    .await;
    let high = job(
        &env.db,
        new_job(ws)
            .priority(9)
            .max_concurrent_dials(2)
            .created_at(at("2025-02-01T00:00:00Z")),
        10,
        now,
    )
    .await;
    assert_eq!(release_at(&env.db, &publisher, now).await.released, 4);
    assert_eq!(count(&env.db, high, "released").await, 4);
    assert_eq!(count(&env.db, low, "released").await, 0);

    // Workspace limit 3 → room 6 shared by three equal jobs: two each.
    let ws = workspace(&env.db, 3).await;
    let mut equal = Vec::new();
    for month in 1..=3 {
        let created = at(&format!("2025-0{month}-01T00:00:00Z"));
        equal.push(job(&env.db, new_job(ws).created_at(created), 20, now).await);
    }
    release_at(&env.db, &publisher, now).await;
    for j in equal {
        assert_eq!(count(&env.db, j, "released").await, 2);
    }
}

#[tokio::test]
async fn completion_queues_the_batch_webhook_once() {
    let env = TestEnv::new().await;
    let publisher = publisher(&env);
    let ws = workspace(&env.db, 10).await;
    let now = at("2025-06-09T15:00:00Z");
    let hooks = json!({"onBatchComplete": "https://example.test/done"});
    let done = job(&env.db, new_job(ws).webhooks(hooks.clone()), 3, now).await;
    sql(&env.db, "UPDATE contacts SET state = 'completed', last_outcome = 'completed', attempts = 1 WHERE batch_id = $1 AND row_index < 2", &[&done]).await;
    sql(&env.db, "UPDATE contacts SET state = 'failed', last_outcome = 'busy', attempts = 3 WHERE batch_id = $1 AND row_index = 2", &[&done]).await;
    let ingesting = job(&env.db, new_job(ws).ingest_state("ingesting"), 0, now).await;
    let dialing = job(&env.db, new_job(ws), 1, now).await;
    sql(
        &env.db,
        "UPDATE contacts SET state = 'dialing' WHERE batch_id = $1",
        &[&dialing],
    )
    .await;
    let paused = job(&env.db, new_job(ws).state("paused"), 0, now).await;
    let empty = job(&env.db, new_job(ws), 0, now).await;

    let r = release_at(&env.db, &publisher, now).await;
    let completed: HashSet<Uuid> = r.completed_jobs.into_iter().collect();
    assert_eq!(completed, HashSet::from([done, empty]));
    for (j, state) in [
        (done, "completed"),
        (empty, "completed"),
        (ingesting, "active"),
        (dialing, "active"),
        (paused, "paused"),
    ] {
        assert_eq!(job_state(&env.db, j).await, state);
    }

    let client = env.db.get().await.unwrap();
    let rows = client
        .query(
            "SELECT batch_id, subject_id, url, payload, state FROM webhook_deliveries",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        rows.len(),
        1,
        "only the job with onBatchComplete gets a delivery"
    );
    let row = &rows[0];
    assert_eq!(row.get::<_, Uuid>("batch_id"), done);
    assert_eq!(row.get::<_, Uuid>("subject_id"), done);
    assert_eq!(row.get::<_, String>("url"), "https://example.test/done");
    assert_eq!(row.get::<_, String>("state"), "pending");
    let payload: serde_json::Value = row.get("payload");
    assert_eq!(payload["event"], "batch.completed");
    assert_eq!(payload["batchId"], done.to_string());
    assert_eq!(payload["agentId"], ws.agent_id.to_string());
    assert_eq!(payload["statistics"]["total"], 3);
    assert_eq!(payload["statistics"]["succeeded"], 2);
    assert_eq!(payload["statistics"]["failed"], 1);
    assert_eq!(
        payload["timestamps"]["completedAt"],
        "2025-06-09T15:00:00.000Z"
    );
    let completed_at: Option<DateTime<Utc>> = client
        .query_one("SELECT completed_at FROM batches WHERE id = $1", &[&done])
        .await
        .unwrap()
        .get("completed_at");
    assert_eq!(completed_at, Some(now));

    // Again: nothing new.
    let r = release_at(&env.db, &publisher, now + ms(200)).await;
    assert!(r.completed_jobs.is_empty());
    let n: i64 = client
        .query_one("SELECT count(*) AS n FROM webhook_deliveries", &[])
        .await
        .unwrap()
        .get("n");
    assert_eq!(n, 1);
}

/// Two schedulers (own pools, own publishers) over the same jobs, with a stand-in dial worker
/// finishing whatever it receives: every contact is released exactly once, and the bounds hold
/// whenever the worker looks.
#[tokio::test]
async fn two_schedulers_never_release_a_contact_twice() {
    let env = TestEnv::new().await;
    let now = at("2025-06-09T15:00:00Z");
    let mut jobs = Vec::new();
    for w in 0..4 {
        let ws = workspace(&env.db, 20).await;
        for j in 0..2 {
            let created = at(&format!("2025-01-0{}T00:00:00Z", w * 2 + j + 1));
            jobs.push((
                ws.id,
                job(
                    &env.db,
                    new_job(ws).max_concurrent_dials(10).created_at(created),
                    150,
                    now,
                )
                .await,
            ));
        }
    }
    let total = 4 * 2 * 150;
    let stop = tokio_util::sync::CancellationToken::new();
    let mut schedulers = Vec::new();
    for _ in 0..2 {
        let db = shared::db::connect(&env.config).await.unwrap();
        let publisher = publisher(&env);
        let stop = stop.clone();
        schedulers.push(tokio::spawn(async move {
            let mut released = 0u64;
            let mut tick = 0i64;
            while !stop.is_cancelled() {
                tick += 1;
                let r = release_at(&db, &publisher, now + ms(tick)).await;
                released += r.released;
                tokio::task::yield_now().await;
            }
            released
        }));
    }

    let mut seen = HashSet::new();
    let mut messages = 0usize;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    let client = env.db.get().await.unwrap();
    loop {
        // The bounds: ≤ 2 × 10 per job, ≤ 2 × 20 per workspace, at every look.
        for row in client
            .query("SELECT workspace_id, batch_id, count(*) AS n FROM contacts WHERE state = 'released' GROUP BY ROLLUP (workspace_id, batch_id)", &[])
            .await
            .unwrap()
        {
            let (ws, batch, n): (Option<Uuid>, Option<Uuid>, i64) = (row.get("workspace_id"), row.get("batch_id"), row.get("n"));
            match (ws, batch) {
                (Some(_), Some(_)) => assert!(n <= 20, "job bound exceeded: {n}"),
                (Some(_), None) => assert!(n <= 40, "workspace bound exceeded: {n}"),
                _ => {}
            }
        }
        for m in drain_dial(&env).await {
            messages += 1;
            assert!(
                seen.insert(m.contact_id),
                "contact {} released twice",
                m.contact_id
            );
            let n = client
                .execute(
                    "UPDATE contacts SET state = 'completed', last_outcome = 'completed', attempts = attempts + 1
                     WHERE id = $1 AND state = 'released' AND attempts + 1 = $2",
                    &[&m.contact_id, &(m.attempt_no as i32)],
                )
                .await
                .unwrap();
            assert_eq!(n, 1, "message for a contact that was not released");
        }
        let open: i64 = client
            .query_one(
                "SELECT count(*) AS n FROM batches WHERE state <> 'completed'",
                &[],
            )
            .await
            .unwrap()
            .get("n");
        if open == 0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "jobs did not complete"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.cancel();
    let mut released = 0;
    for s in schedulers {
        released += s.await.unwrap();
    }
    assert_eq!(messages, total);
    assert_eq!(released as usize, total);
    assert_eq!(drain_dial(&env).await.len(), 0);
    for (_, j) in jobs {
        assert_eq!(count(&env.db, j, "completed").await, 150);
    }
}

#[tokio::test]
async fn a_release_never_picked_up_is_released_again_with_the_same_attempt() {
    let env = TestEnv::new().await;
    let publisher = publisher(&env);
    let ws = workspace(&env.db, 10).await;
    let job = job(&env.db, new_job(ws), 3, at("2025-01-01T00:00:00Z")).await;
    let t0 = at("2025-06-09T15:00:00Z");
    assert_eq!(release_at(&env.db, &publisher, t0).await.released, 3);
    let first: HashSet<(Uuid, u32)> = drain_dial(&env)
        .await
        .iter()
        .map(|m| (m.contact_id, m.attempt_no))
        .collect();
    // One was picked up (dialing); two were lost.
    sql(
        &env.db,
        "UPDATE contacts SET state = 'dialing' WHERE batch_id = $1 AND row_index = 0",
        &[&job],
    )
    .await;

    let r = release_at(&env.db, &publisher, t0 + chrono::Duration::minutes(14)).await;
    assert_eq!((r.requeued_stale, r.released), (0, 0));
    let r = release_at(&env.db, &publisher, t0 + chrono::Duration::minutes(16)).await;
    assert_eq!((r.requeued_stale, r.released), (2, 2));
    let again: HashSet<(Uuid, u32)> = drain_dial(&env)
        .await
        .iter()
        .map(|m| (m.contact_id, m.attempt_no))
        .collect();
    assert_eq!(again.len(), 2);
    assert!(
        again.is_subset(&first),
        "same contacts, same attempt numbers"
    );
    assert_eq!(count(&env.db, job, "dialing").await, 1);
}

/// The gateway pausing a job holds its row; a release meanwhile skips the job, and once the
/// pause commits nothing more is released.
#[tokio::test]
async fn a_job_being_paused_is_skipped_and_stays_paused() {
    let env = TestEnv::new().await;
    let publisher = publisher(&env);
    let ws = workspace(&env.db, 10).await;
    let job = job(&env.db, new_job(ws), 5, at("2025-01-01T00:00:00Z")).await;
    let now = at("2025-06-09T15:00:00Z");

    let mut gateway = env.db.get().await.unwrap();
    let pause = gateway.transaction().await.unwrap();
    pause
        .execute("UPDATE batches SET state = 'paused' WHERE id = $1", &[&job])
        .await
        .unwrap();
    // The pause has not committed: the scheduler does not wait for it, and does not release.
    let r = tokio::time::timeout(
        Duration::from_secs(5),
        release_once(&env.db, &publisher, &settings(), now),
    )
    .await
    .expect("release does not wait for the gateway")
    .unwrap();
    assert_eq!((r.open_jobs, r.released), (1, 0));
    pause.commit().await.unwrap();

    let r = release_at(&env.db, &publisher, now + ms(200)).await;
    assert_eq!((r.open_jobs, r.released), (0, 0));
    assert_eq!(count(&env.db, job, "queued").await, 5);
    assert!(drain_dial(&env).await.is_empty());
}

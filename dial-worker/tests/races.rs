//! Races of the dial path named by issue #29's review (1, 4 and 5) and the rebuild of the slot
//! counts after a Redis flush, against the real PostgreSQL and Redis. Each test failed before
//! its fix (docs/reliability.md, "Races closed").

mod common;

use std::time::Duration;

use common::*;
use dial_worker::carrier::sim::{OutcomeRule, SimBehavior, SimCarrier, SimOutcome};
use dial_worker::carrier::{CallRequest, Carrier};
use dial_worker::dial::{DialResult, dial_first_delivery};
use dial_worker::limits::{Limits, SlotRequest, TryAcquire, rebuild};
use dial_worker::reconcile::reconcile_once;
use testkit::TestEnv;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

fn request(ws: Uuid, job: Uuid, limit: u32) -> SlotRequest {
    SlotRequest {
        workspace_id: ws,
        batch_id: job,
        attempt_id: Uuid::new_v4(),
        workspace_limit: limit,
        job_limit: limit,
        caller_pool: 0,
    }
}

/// Deletes every key of the test's prefix, as `FLUSHALL` or a Redis restart would.
async fn flush_prefix(env: &TestEnv) {
    let mut conn = env.redis.conn.clone();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{}*", env.redis.prefix))
        .query_async(&mut conn)
        .await
        .unwrap();
    if !keys.is_empty() {
        let _: () = redis::cmd("DEL")
            .arg(keys)
            .query_async(&mut conn)
            .await
            .unwrap();
    }
}

/// Race 1: the slot is taken, then the attempt insert waits (here for the contact's row lock,
/// as it would for a starved pool) longer than a lease. The slot must stay counted all along:
/// it used to be renewed only from the insert on, so it lapsed meanwhile and another call could
/// take the line while this one went ahead.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_slot_does_not_lapse_while_its_attempt_insert_waits() {
    let env = TestEnv::new().await;
    let ws = workspace(&env, 1).await;
    let batch = batch(
        &env,
        &new_batch(ws).max_concurrent_dials(1),
        &numbers("+1201555", 1, 0),
    )
    .await;
    let msg = released(&env, &ws, batch).await.remove(0);
    let stop = CancellationToken::new();
    let sim = sim(&env, SimBehavior::default(), stop.clone());
    let ctx = ctx_configured(&env, Carrier::Sim(sim.clone()), &[("SLOT_LEASE_SECS", "1")]);
    let renewer = tokio::spawn(ctx.leases.clone().renew_loop(
        ctx.limits.clone(),
        ctx.db.clone(),
        stop.clone(),
        stop.clone(),
        Duration::ZERO,
    ));

    let mut blocker = env.db.get().await.unwrap();
    let lock = blocker.transaction().await.unwrap();
    lock.execute(
        "SELECT 1 FROM contacts WHERE id = $1 FOR UPDATE",
        &[&msg.contact_id],
    )
    .await
    .unwrap();
    let dial = {
        let (ctx, msg) = (ctx.clone(), msg.clone());
        tokio::spawn(async move { dial_first_delivery(&ctx, &msg).await })
    };
    // Two and a half leases with the insert stuck.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(!dial.is_finished(), "the insert waits for the lock");
    let other = Limits::new(env.redis.clone(), Duration::from_secs(1), Duration::ZERO);
    assert_eq!(
        other.in_use(ws.id, batch).await.unwrap(),
        (1, 1),
        "the slot of the attempt being written is still counted"
    );
    assert_eq!(
        other.try_acquire(&request(ws.id, batch, 1)).await.unwrap(),
        TryAcquire::WorkspaceFull
    );
    lock.rollback().await.unwrap();
    let result = dial.await.unwrap().unwrap();
    assert!(matches!(result, DialResult::Dialed { .. }), "{result:?}");
    assert_eq!(sim.calls().len(), 1);
    stop.cancel();
    renewer.await.unwrap();
}

/// Race 4: the send window runs out around a granted start token — here because the touch
/// that keeps it open while the token is awaited hangs (a trigger makes every `UPDATE` of
/// `dial_attempts` wait for an advisory lock the test holds) for longer than the window. The
/// token granted after that touch must be let go once the row has been touched again, and the
/// request sent with a fresh one: at one start a second, a full interval after the released
/// touch. Sending it with the token granted before that database write (as before the fix)
/// makes it follow the touch at once.
///
/// Failing-first: in `place::place_with_retry`, replace `if clock.confirm(ctx).await? {
/// continue; }` by `clock.confirm(ctx).await?;` (send after the touch with the same token) and
/// this test fails with "the request followed the token granted before the touch".
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_token_granted_around_a_lapsed_send_window_is_let_go() {
    let env = TestEnv::new().await;
    let ws = workspace(&env, 1).await;
    let batch = batch(
        &env,
        &new_batch(ws)
            .max_concurrent_dials(1)
            .max_calls_per_second(1),
        &numbers("+1201555", 1, 0),
    )
    .await;
    let msg = released(&env, &ws, batch).await.remove(0);
    let stop = CancellationToken::new();
    let sim = sim(&env, SimBehavior::default(), stop.clone());
    let ctx = ctx_configured(&env, Carrier::Sim(sim.clone()), &[]);

    let gate = env.db.get().await.unwrap();
    gate.batch_execute(
        "CREATE FUNCTION race4_slow_touch() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN PERFORM pg_advisory_xact_lock(4242); RETURN NEW; END $$;
         CREATE TRIGGER race4_slow_touch BEFORE UPDATE ON dial_attempts
         FOR EACH ROW EXECUTE FUNCTION race4_slow_touch();
         SELECT pg_advisory_lock(4242);",
    )
    .await
    .unwrap();
    // The attempt insert waits 3 s for the contact's row lock, so the first token try comes
    // after half the window and touches the row first.
    let mut blocker = env.db.get().await.unwrap();
    let lock = blocker.transaction().await.unwrap();
    lock.execute(
        "SELECT 1 FROM contacts WHERE id = $1 FOR UPDATE",
        &[&msg.contact_id],
    )
    .await
    .unwrap();
    let dial = {
        let (ctx, msg) = (ctx.clone(), msg.clone());
        tokio::spawn(async move { dial_first_delivery(&ctx, &msg).await })
    };
    tokio::time::sleep(Duration::from_secs(3)).await;
    lock.rollback().await.unwrap();
    // The touch hangs; once it has hung for longer than the send window, it is let through.
    let waiting = std::time::Instant::now();
    loop {
        let touches: i64 = gate
            .query_one(
                "SELECT count(*) FROM pg_stat_activity
                 WHERE datname = current_database() AND wait_event_type = 'Lock'
                   AND query LIKE 'UPDATE dial_attempts SET updated_at%'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        if touches > 0 {
            break;
        }
        assert!(
            waiting.elapsed() < Duration::from_secs(10),
            "the touch never came"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(dial_worker::reconcile::SEND_WINDOW + Duration::from_millis(500)).await;
    assert!(sim.calls().is_empty(), "nothing sent while the touch hangs");
    let released_at = chrono::Utc::now();
    gate.execute("SELECT pg_advisory_unlock(4242)", &[])
        .await
        .unwrap();
    let result = dial.await.unwrap().unwrap();
    assert!(matches!(result, DialResult::Dialed { .. }), "{result:?}");
    let calls = sim.calls();
    assert_eq!(calls.len(), 1);
    let after = calls[0].requested_at - released_at;
    eprintln!("request {after:?} after the touch was let through");
    // The token granted after the hung touch is one start; the request's own token can only
    // come one interval (1 s at one start a second) later.
    assert!(
        after >= chrono::Duration::milliseconds(900),
        "the request followed the token granted before the touch: {after:?} after it"
    );
    stop.cancel();
}

/// Race 5: a worker wrote an attempt and placed its call, then died before storing the call
/// id; its slot lapsed. The reconciler of another worker finds the call live at the carrier and
/// adopts it: the call must count against the line limit again (it used not to, and the fleet
/// started a second call beside it on a one-line workspace).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_adopted_live_call_takes_its_slot_again() {
    let env = TestEnv::new().await;
    let ws = workspace(&env, 1).await;
    let batch = batch(
        &env,
        &new_batch(ws).max_concurrent_dials(1),
        &numbers("+1201555", 1, 0),
    )
    .await;
    let msg = released(&env, &ws, batch).await.remove(0);
    let (sim, _events) = SimCarrier::new(SimBehavior {
        ring_ms: (0, 0),
        talk_ms: (60_000, 60_000),
        rule: OutcomeRule::Always(SimOutcome::Answered),
        report_answered: true,
        seed: 5,
    });
    let settings = [("SLOT_LEASE_SECS", "1")];
    let dead = ctx_configured(&env, Carrier::Sim(sim.clone()), &settings);
    let attempt = Uuid::now_v7();
    let slot = SlotRequest {
        attempt_id: attempt,
        ..request(ws.id, batch, 1)
    };
    assert!(matches!(
        dead.limits.try_acquire(&slot).await.unwrap(),
        TryAcquire::Acquired { .. }
    ));
    let client = env.db.get().await.unwrap();
    client
        .execute(
            "WITH c AS (UPDATE contacts SET state = 'dialing', attempts = 1, updated_at = now()
                        WHERE id = $2 RETURNING id, batch_id, workspace_id, phone_number)
             INSERT INTO dial_attempts (id, contact_id, batch_id, workspace_id, attempt_no,
                                        to_number, from_number, state, started_at,
                                        created_at, updated_at)
             SELECT $1, c.id, c.batch_id, c.workspace_id, 1, c.phone_number, '+12015550100',
                    'dialing', now() - interval '60 s', now() - interval '60 s',
                    now() - interval '60 s'
             FROM c",
            &[&attempt, &msg.contact_id],
        )
        .await
        .unwrap();
    sim.place_call(&CallRequest {
        attempt_id: attempt,
        to: "+12015550000".into(),
        from: "+12015550100".into(),
        answer_url: "https://agent.example/answer".into(),
        status_callback: "http://127.0.0.1:9/nowhere".into(),
        timeout_secs: 30,
        machine_detection: None,
    })
    .unwrap();
    // The worker is dead: nobody renews, and the lease runs out.
    tokio::time::sleep(Duration::from_millis(1300)).await;
    assert_eq!(dead.limits.in_use(ws.id, batch).await.unwrap(), (0, 0));

    let survivor = ctx_configured(&env, Carrier::Sim(sim.clone()), &settings);
    reconcile_once(&survivor).await.unwrap();
    let sid: Option<String> = client
        .query_one(
            "SELECT carrier_call_sid FROM dial_attempts WHERE id = $1",
            &[&attempt],
        )
        .await
        .unwrap()
        .get(0);
    assert!(sid.is_some(), "the live call was adopted");
    assert_eq!(
        survivor.limits.in_use(ws.id, batch).await.unwrap(),
        (1, 1),
        "the adopted live call holds its line again"
    );
    assert_eq!(
        survivor
            .limits
            .try_acquire(&request(ws.id, batch, 1))
            .await
            .unwrap(),
        TryAcquire::WorkspaceFull,
        "no second call beside it"
    );
    // And it keeps it: the survivor renews it (past the lease) until the call ends.
    assert!(survivor.leases.get(attempt).is_some());
    tokio::time::sleep(Duration::from_millis(700)).await;
    survivor
        .leases
        .renew_once(&survivor.limits, &survivor.db)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(survivor.limits.in_use(ws.id, batch).await.unwrap(), (1, 1));
}

/// After a flush the counts come back from the database's open attempts at once: a call in
/// flight whose holder does not renew (here: no renewer at all) is counted again, and slots
/// are given again within a second — not after a renewal period and a margin (3 s with this
/// 6 s lease, 11 s with the default 30 s one). Before, the first grant came after the whole
/// window, and a second one beside the uncounted call exceeded the limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn after_a_flush_the_counts_are_rebuilt_from_the_open_attempts() {
    let env = TestEnv::new().await;
    let lease = Duration::from_secs(6);
    let source = rebuild::Source {
        db: env.db.clone(),
        unplaced_after: Duration::from_secs(90),
    };
    let holder = Limits::new(env.redis.clone(), lease, Duration::ZERO);
    let other = Limits::new(env.redis.clone(), lease, Duration::ZERO).with_rebuild(source);
    let (ws, job, attempt) = call_in_flight(&env).await;
    let call = SlotRequest {
        attempt_id: attempt,
        ..request(ws, job, 2)
    };
    assert!(matches!(
        holder.try_acquire(&call).await.unwrap(),
        TryAcquire::Acquired { .. }
    ));
    // `other` has taken slots before (not a fresh start).
    let first = request(ws, job, 2);
    assert!(matches!(
        other.try_acquire(&first).await.unwrap(),
        TryAcquire::Acquired { .. }
    ));
    other.release(ws, job, first.attempt_id).await.unwrap();
    flush_prefix(&env).await;
    let flushed = std::time::Instant::now();
    let mut granted = 0;
    let mut pause = None;
    while flushed.elapsed() < Duration::from_secs(4) {
        if let TryAcquire::Acquired { .. } = other.try_acquire(&request(ws, job, 2)).await.unwrap()
        {
            pause.get_or_insert(flushed.elapsed());
            granted += 1;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let pause = pause.expect("slots are given again");
    eprintln!("pause after a flush with the rebuild: {pause:?}");
    assert_eq!(granted, 1, "the call in flight was counted again");
    assert!(pause < Duration::from_millis(1500), "{pause:?}");
    assert_eq!(other.in_use(ws, job).await.unwrap(), (2, 2));
}

/// A gateway that starts serving increments the callbacks epoch: the reconcilers catch up at
/// once, asking about every call silent for 2 s, so callbacks lost while no gateway listened
/// cost their slots seconds, not `RECONCILE_AFTER_SECS` (60 here: only the catch-up can settle
/// the call in time). Before, only a broker reconnect triggered a catch-up.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_gateway_start_makes_the_reconciler_catch_up() {
    let env = TestEnv::new().await;
    let ws = workspace(&env, 10).await;
    let batch = batch(&env, &new_batch(ws), &numbers("+1201555", 1, 0)).await;
    let msg = released(&env, &ws, batch).await.remove(0);
    // Its events go nowhere: the call's callbacks are "lost".
    let (sim, _events) = SimCarrier::new(SimBehavior {
        ring_ms: (0, 0),
        talk_ms: (10, 10),
        rule: OutcomeRule::Always(SimOutcome::Answered),
        report_answered: false,
        seed: 4,
    });
    let stop = CancellationToken::new();
    let (_addr, done) = dial_worker::spawn(
        config(&env, &[("RECONCILE_AFTER_SECS", "60")]),
        Some(Carrier::Sim(sim.clone())),
        stop.clone(),
    )
    .await
    .unwrap();
    let attempt = Uuid::now_v7();
    let sid = sim
        .place_call(&CallRequest {
            attempt_id: attempt,
            to: "+12015550000".into(),
            from: "+12015550100".into(),
            answer_url: "https://agent.example/answer".into(),
            status_callback: "http://127.0.0.1:9/nowhere".into(),
            timeout_secs: 30,
            machine_detection: None,
        })
        .unwrap();
    let client = env.db.get().await.unwrap();
    client
        .execute(
            "WITH c AS (UPDATE contacts SET state = 'dialing', attempts = 1, updated_at = now()
                        WHERE id = $2 RETURNING id, batch_id, workspace_id, phone_number)
             INSERT INTO dial_attempts (id, contact_id, batch_id, workspace_id, attempt_no,
                                        to_number, from_number, state, started_at,
                                        carrier_call_sid, updated_at)
             SELECT $1, c.id, c.batch_id, c.workspace_id, 1, c.phone_number, '+12015550100',
                    'ringing', now(), $3, now() - interval '5 s'
             FROM c",
            &[&attempt, &msg.contact_id, &sid],
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        outcome(&client, attempt).await,
        None,
        "nothing settles it by itself"
    );
    let mut conn = env.redis.conn.clone();
    let _: i64 = redis::cmd("INCR")
        .arg(env.redis.key(shared::redis_conn::CALLBACKS_EPOCH))
        .query_async(&mut conn)
        .await
        .unwrap();
    let started = std::time::Instant::now();
    while outcome(&client, attempt).await.is_none() {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "not reconciled after the gateway started"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!(
        "reconciled {:?} after the gateway started",
        started.elapsed()
    );
    assert_eq!(
        outcome(&client, attempt).await.as_deref(),
        Some("completed")
    );
    stop.cancel();
    let _ = done.await;
}

/// An attempt whose carrier request was answered with a 5xx (the carrier failing, its request
/// over) is asked about once silent 2 s, not after the send window, the request timeout and the
/// ring timeout (45 s): no call at the carrier, so it is taken back, its slot given back, and
/// the contact queued again at once. Before, its line stayed taken for the whole wait.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_attempt_answered_5xx_is_settled_in_seconds() {
    let env = TestEnv::new().await;
    let ws = workspace(&env, 10).await;
    let batch = batch(&env, &new_batch(ws), &numbers("+1201555", 1, 0)).await;
    let msg = released(&env, &ws, batch).await.remove(0);
    let (sim, _events) = SimCarrier::new(SimBehavior::default());
    let ctx = ctx_configured(&env, Carrier::Sim(sim.clone()), &[]);
    let attempt = Uuid::now_v7();
    let slot = SlotRequest {
        attempt_id: attempt,
        ..request(ws.id, batch, 10)
    };
    assert!(matches!(
        ctx.limits.try_acquire(&slot).await.unwrap(),
        TryAcquire::Acquired { .. }
    ));
    let client = env.db.get().await.unwrap();
    client
        .execute(
            "WITH c AS (UPDATE contacts SET state = 'dialing', attempts = 1, updated_at = now()
                        WHERE id = $2 RETURNING id, batch_id, workspace_id, phone_number)
             INSERT INTO dial_attempts (id, contact_id, batch_id, workspace_id, attempt_no,
                                        to_number, from_number, state, started_at, error,
                                        updated_at)
             SELECT $1, c.id, c.batch_id, c.workspace_id, 1, c.phone_number, '+12015550100',
                    'dialing', now(), $3, now() - interval '3 s'
             FROM c",
            &[
                &attempt,
                &msg.contact_id,
                &"carrier unreachable or answered unreadably: HTTP 500 Internal Server Error",
            ],
        )
        .await
        .unwrap();
    assert_eq!(reconcile_once(&ctx).await.unwrap(), 1, "claimed");
    let gone = client
        .query_opt("SELECT 1 FROM dial_attempts WHERE id = $1", &[&attempt])
        .await
        .unwrap();
    assert!(gone.is_none(), "taken back");
    let state: String = client
        .query_one(
            "SELECT state FROM contacts WHERE id = $1",
            &[&msg.contact_id],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(state, "queued");
    assert_eq!(ctx.limits.in_use(ws.id, batch).await.unwrap(), (0, 0));
    assert!(sim.calls().is_empty(), "nothing dialed here");
}

async fn outcome(client: &tokio_postgres::Client, attempt: Uuid) -> Option<String> {
    client
        .query_one(
            "SELECT outcome FROM dial_attempts WHERE id = $1",
            &[&attempt],
        )
        .await
        .unwrap()
        .get(0)
}

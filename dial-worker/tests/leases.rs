//! The renewer of the slots a worker holds, against the real Redis and PostgreSQL: it renews
//! whatever the database does, and a worker that stops hands its live calls over to the fleet
//! instead of letting their slots lapse while they are still connected.

#[path = "common/mod.rs"]
mod common;

use std::time::Duration;

use common::*;
use dial_worker::limits::{HeldLeases, Limits, SlotRequest, TryAcquire};
use testkit::TestEnv;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

const LEASE: Duration = Duration::from_millis(1500);

fn request(ws: Uuid, job: Uuid, attempt_id: Uuid) -> SlotRequest {
    SlotRequest {
        workspace_id: ws,
        batch_id: job,
        attempt_id,
        workspace_limit: 1,
        job_limit: 1,
        caller_pool: 0,
    }
}

async fn acquire(limits: &Limits, ws: Uuid, job: Uuid, attempt_id: Uuid) -> TryAcquire {
    limits
        .try_acquire(&request(ws, job, attempt_id))
        .await
        .unwrap()
}

async fn end_call(env: &TestEnv, attempt: Uuid) {
    let client = env.db.get().await.unwrap();
    client
        .execute(
            "UPDATE dial_attempts SET outcome = 'completed', state = 'ended', ended_at = now()
             WHERE id = $1",
            &[&attempt],
        )
        .await
        .unwrap();
}

/// Renews first, asks the database second: with PostgreSQL unreachable, or the pool starved,
/// for longer than a lease, the slots are still counted (they used to lapse, other tasks took
/// them, and the next renewal added the old ones back on top: the limit exceeded).
#[tokio::test]
async fn leases_are_renewed_while_the_database_is_unusable() {
    let env = TestEnv::new().await;
    let limits = Limits::new(env.redis.clone(), LEASE, Duration::ZERO);
    let (ws, job, attempt) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    assert!(matches!(
        acquire(&limits, ws, job, attempt).await,
        TryAcquire::Acquired { .. }
    ));
    let held = HeldLeases::default();
    held.hold(attempt, ws, job);

    // Nothing listens there: every checkout fails.
    let unreachable = shared::db::build_pool("postgres://postgres@127.0.0.1:1/nowhere", 1).unwrap();
    // A pool of one whose only connection is taken: every checkout waits.
    let starved = shared::db::build_pool(&env.config.database_url, 1).unwrap();
    let _taken = starved.get().await.unwrap();

    for db in [&unreachable, &starved, &unreachable] {
        tokio::time::sleep(LEASE * 2 / 3).await;
        let started = tokio::time::Instant::now();
        let pass = held.renew_once(&limits, db).await;
        assert!(pass.is_err(), "the database error is reported");
        assert!(
            started.elapsed() < LEASE,
            "a starved pool does not hold up the renewer ({:?})",
            started.elapsed()
        );
    }
    // Three lease-thirds of two-thirds each: well past the first lease.
    assert_eq!(limits.in_use(ws, job).await.unwrap(), (1, 1));
    assert_eq!(
        acquire(&limits, ws, job, Uuid::new_v4()).await,
        TryAcquire::WorkspaceFull
    );
    assert_eq!(held.len(), 1, "an unanswered check forgets nothing");
}

/// Worker A stops with a call still connected and hands it over; worker B takes it up, keeps
/// its slot past A's last lease, and gives it back once the call's outcome is recorded.
#[tokio::test]
async fn a_stopping_worker_hands_its_calls_over() {
    let env = TestEnv::new().await;
    let worker_a = Limits::new(env.redis.clone(), LEASE, Duration::ZERO);
    let worker_b = Limits::new(env.redis.clone(), LEASE, Duration::ZERO);
    let (held_a, held_b) = (HeldLeases::default(), HeldLeases::default());
    let (ws, job, attempt) = call_in_flight(&env).await;
    assert!(matches!(
        acquire(&worker_a, ws, job, attempt).await,
        TryAcquire::Acquired { .. }
    ));
    held_a.hold(attempt, ws, job);

    held_a.hand_over(&worker_a).await.unwrap();
    assert!(held_a.is_empty(), "A renews it no more");
    held_b.renew_once(&worker_b, &env.db).await.unwrap();
    assert_eq!(held_b.get(attempt), Some((ws, job)), "B took it up");
    let other = HeldLeases::default();
    other.renew_once(&worker_a, &env.db).await.unwrap();
    assert!(other.is_empty(), "taken up once");

    for _ in 0..3 {
        tokio::time::sleep(LEASE / 2).await;
        held_b.renew_once(&worker_b, &env.db).await.unwrap();
    }
    assert_eq!(
        worker_b.in_use(ws, job).await.unwrap(),
        (1, 1),
        "still counted past A's last lease"
    );
    assert_eq!(
        acquire(&worker_b, ws, job, Uuid::new_v4()).await,
        TryAcquire::WorkspaceFull
    );

    end_call(&env, attempt).await;
    held_b.renew_once(&worker_b, &env.db).await.unwrap();
    assert!(held_b.is_empty());
    assert_eq!(worker_b.in_use(ws, job).await.unwrap(), (0, 0));
}

/// A hand-over nobody takes up within the lease is a crash: the slot comes back, and a late
/// adopter must not count it again on top of whoever took it meanwhile.
#[tokio::test]
async fn a_hand_over_nobody_takes_up_lapses() {
    let env = TestEnv::new().await;
    let limits = Limits::new(env.redis.clone(), LEASE, Duration::ZERO);
    let (ws, job, attempt) = call_in_flight(&env).await;
    assert!(matches!(
        acquire(&limits, ws, job, attempt).await,
        TryAcquire::Acquired { .. }
    ));
    let stopping = HeldLeases::default();
    stopping.hold(attempt, ws, job);
    stopping.hand_over(&limits).await.unwrap();

    tokio::time::sleep(LEASE + Duration::from_millis(200)).await;
    let newcomer = Uuid::new_v4();
    assert!(matches!(
        acquire(&limits, ws, job, newcomer).await,
        TryAcquire::Acquired { .. }
    ));
    let late = HeldLeases::default();
    late.renew_once(&limits, &env.db).await.unwrap();
    assert!(late.is_empty());
    assert_eq!(
        limits.in_use(ws, job).await.unwrap(),
        (1, 1),
        "the newcomer only"
    );
}

/// The renewer at shutdown: it stays up while dial handlers may still take a slot (even
/// holding nothing at the signal), renews what they take, and hands it over when the grace runs
/// out; idle, it stops at once.
#[tokio::test]
async fn the_renewer_hands_over_what_is_left_at_the_end_of_the_grace() {
    let env = TestEnv::new().await;
    let worker_a = Limits::new(env.redis.clone(), LEASE, Duration::ZERO);
    let worker_b = Limits::new(env.redis.clone(), LEASE, Duration::ZERO);
    let (ws, job, attempt) = call_in_flight(&env).await;
    let held_a = HeldLeases::default();
    let (shutdown, dialing_done) = (CancellationToken::new(), CancellationToken::new());
    let grace = Duration::from_millis(2500);
    let renewer = tokio::spawn(held_a.clone().renew_loop(
        worker_a.clone(),
        env.db.clone(),
        shutdown.clone(),
        dialing_done.clone(),
        grace,
    ));
    shutdown.cancel();
    let signalled = tokio::time::Instant::now();

    // A dial handler still draining takes a slot after the signal, then the handlers are done.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!renewer.is_finished(), "handlers may still take slots");
    assert!(matches!(
        acquire(&worker_a, ws, job, attempt).await,
        TryAcquire::Acquired { .. }
    ));
    held_a.hold(attempt, ws, job);
    dialing_done.cancel();

    tokio::time::timeout(grace + Duration::from_secs(2), renewer)
        .await
        .expect("the renewer stops at the end of the grace")
        .unwrap();
    assert!(signalled.elapsed() >= grace);
    // Renewed during the grace, which is longer than a lease.
    assert!(held_a.is_empty(), "handed over");
    let held_b = HeldLeases::default();
    held_b.renew_once(&worker_b, &env.db).await.unwrap();
    assert_eq!(held_b.len(), 1, "taken up with its lease still running");
    assert_eq!(worker_b.in_use(ws, job).await.unwrap(), (1, 1));

    // Idle at the signal with the handlers done: it stops at once.
    let (shutdown, dialing_done) = (CancellationToken::new(), CancellationToken::new());
    shutdown.cancel();
    dialing_done.cancel();
    tokio::time::timeout(
        Duration::from_millis(500),
        HeldLeases::default().renew_loop(
            worker_a.clone(),
            env.db.clone(),
            shutdown,
            dialing_done,
            grace,
        ),
    )
    .await
    .expect("an idle renewer stops at once");
}

/// A carrier request that ended ambiguously (timeout, 5xx) leaves an attempt that may or may not
/// be a call. A placed call reports its answer or its end within the ring timeout, so once it is
/// silent well past that, its slot goes back (a carrier outage must not pin every slot of a job
/// for the hour the reconciler waits); the attempt stays open, never dialed again.
#[tokio::test]
async fn a_silent_ambiguous_attempt_gives_its_slot_back() {
    let env = TestEnv::new().await;
    let limits = Limits::new(env.redis.clone(), Duration::from_secs(30), Duration::ZERO);
    let held = HeldLeases::new(Duration::from_secs(60));
    let client = env.db.get().await.unwrap();
    let mut calls = Vec::new();
    for started_secs_ago in [120.0, 10.0] {
        let (ws, job, attempt) = call_in_flight(&env).await;
        client
            .execute(
                "UPDATE dial_attempts SET error = 'carrier unreachable or answered unreadably',
                     started_at = now() - make_interval(secs => $2)
                 WHERE id = $1",
                &[&attempt, &started_secs_ago],
            )
            .await
            .unwrap();
        assert!(matches!(
            acquire(&limits, ws, job, attempt).await,
            TryAcquire::Acquired { .. }
        ));
        held.hold(attempt, ws, job);
        calls.push((ws, job, attempt));
    }
    held.renew_once(&limits, &env.db).await.unwrap();
    let (old_ws, old_job, old_attempt) = calls[0];
    let (new_ws, new_job, new_attempt) = calls[1];
    assert_eq!(limits.in_use(old_ws, old_job).await.unwrap(), (0, 0));
    assert_eq!(held.get(old_attempt), None);
    assert_eq!(
        limits.in_use(new_ws, new_job).await.unwrap(),
        (1, 1),
        "a recent one may still call back: it keeps its slot"
    );
    assert!(held.get(new_attempt).is_some());
    let open: i64 = client
        .query_one(
            "SELECT count(*) AS n FROM dial_attempts WHERE outcome IS NULL",
            &[],
        )
        .await
        .unwrap()
        .get("n");
    assert_eq!(open, 2, "both attempts stay open for the reconciler");
}

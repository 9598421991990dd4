//! The Redis limits on their own, against the real Redis.

mod common;

use std::time::Duration;

use dial_worker::limits::{HeldLeases, Limits, SlotRequest, TryAcquire};
use testkit::TestEnv;
use uuid::Uuid;

fn request(ws: Uuid, job: Uuid, ws_limit: u32, job_limit: u32, pool: u32) -> SlotRequest {
    SlotRequest {
        workspace_id: ws,
        batch_id: job,
        attempt_id: Uuid::new_v4(),
        workspace_limit: ws_limit,
        job_limit,
        caller_pool: pool,
    }
}

#[tokio::test]
async fn both_semaphores_are_taken_together_and_released() {
    let env = TestEnv::new().await;
    let limits = Limits::new(env.redis.clone(), Duration::from_secs(30), Duration::ZERO);
    let (ws, a, b) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    let first = request(ws, a, 3, 2, 3);
    let mut indexes = Vec::new();
    for r in [first, request(ws, a, 3, 2, 3)] {
        match limits.try_acquire(&r).await.unwrap() {
            TryAcquire::Acquired { caller_index } => indexes.push(caller_index),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(indexes, vec![Some(0), Some(1)], "round robin over the pool");
    assert_eq!(
        limits.try_acquire(&request(ws, a, 3, 2, 3)).await.unwrap(),
        TryAcquire::JobFull
    );
    assert!(matches!(
        limits.try_acquire(&request(ws, b, 3, 2, 0)).await.unwrap(),
        TryAcquire::Acquired { caller_index: None }
    ));
    assert_eq!(
        limits.try_acquire(&request(ws, b, 3, 2, 0)).await.unwrap(),
        TryAcquire::WorkspaceFull,
        "a refused try takes nothing from the job"
    );
    assert_eq!(limits.in_use(ws, b).await.unwrap(), (3, 1));
    limits.release(ws, a, first.attempt_id).await.unwrap();
    limits.release(ws, a, first.attempt_id).await.unwrap();
    assert_eq!(
        limits.in_use(ws, a).await.unwrap(),
        (2, 1),
        "release is idempotent"
    );
    assert!(matches!(
        limits.try_acquire(&request(ws, b, 3, 2, 0)).await.unwrap(),
        TryAcquire::Acquired { .. }
    ));
}

#[tokio::test]
async fn unrenewed_leases_expire_and_renewal_rebuilds_after_a_flush() {
    let env = TestEnv::new().await;
    let limits = Limits::new(
        env.redis.clone(),
        Duration::from_millis(1500),
        Duration::ZERO,
    );
    let (ws, job) = (Uuid::new_v4(), Uuid::new_v4());
    let held = request(ws, job, 1, 1, 0);
    assert!(matches!(
        limits.try_acquire(&held).await.unwrap(),
        TryAcquire::Acquired { .. }
    ));
    assert_eq!(
        limits
            .try_acquire(&request(ws, job, 1, 1, 0))
            .await
            .unwrap(),
        TryAcquire::WorkspaceFull
    );
    // Renewed: still held after the first lease would have run out.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    limits.renew(&[(held.attempt_id, ws, job)]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(limits.in_use(ws, job).await.unwrap(), (1, 1));
    // "Flush": the keys vanish; the holder's next renewal counts its call again.
    let mut conn = env.redis.conn.clone();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{}slots:*", env.redis.prefix))
        .query_async(&mut conn)
        .await
        .unwrap();
    let _: () = redis::cmd("DEL")
        .arg(keys)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(limits.in_use(ws, job).await.unwrap(), (0, 0));
    limits.renew(&[(held.attempt_id, ws, job)]).await.unwrap();
    assert_eq!(
        limits
            .try_acquire(&request(ws, job, 1, 1, 0))
            .await
            .unwrap(),
        TryAcquire::WorkspaceFull
    );
    // Not renewed any more (the worker died): the slot comes back.
    tokio::time::sleep(Duration::from_millis(1700)).await;
    assert!(matches!(
        limits
            .try_acquire(&request(ws, job, 1, 1, 0))
            .await
            .unwrap(),
        TryAcquire::Acquired { .. }
    ));
}

/// The renewer reads "still in flight" from the database, then another worker records the
/// outcome and releases the slot, then the renewal arrives: it must not bring the slot back.
#[tokio::test]
async fn a_renewal_racing_a_release_does_not_revive_the_slot() {
    let env = TestEnv::new().await;
    let limits = Limits::new(env.redis.clone(), Duration::from_secs(30), Duration::ZERO);
    let (ws, job) = (Uuid::new_v4(), Uuid::new_v4());
    let held = request(ws, job, 1, 1, 0);
    assert!(matches!(
        limits.try_acquire(&held).await.unwrap(),
        TryAcquire::Acquired { .. }
    ));
    let other = request(ws, job, 1, 1, 0);
    limits.release(ws, job, held.attempt_id).await.unwrap();
    let released = limits
        .renew(&[(held.attempt_id, ws, job), (other.attempt_id, ws, job)])
        .await
        .unwrap();
    assert_eq!(released, vec![held.attempt_id]);
    // `other` was never released, so its renewal counts it (as after a Redis flush).
    assert_eq!(limits.in_use(ws, job).await.unwrap(), (1, 1));
    limits.release(ws, job, other.attempt_id).await.unwrap();
    assert_eq!(limits.in_use(ws, job).await.unwrap(), (0, 0));
}

/// The same race one level up: worker A holds a call whose outcome worker B has just consumed
/// and released, but not yet committed (so A's database read says "in flight"). A's renewal
/// pass must neither count the slot again nor keep renewing it.
#[tokio::test]
async fn the_holder_forgets_a_slot_another_worker_released() {
    let env = TestEnv::new().await;
    let lease = Duration::from_secs(30);
    let worker_a = Limits::new(env.redis.clone(), lease, Duration::ZERO);
    let worker_b = Limits::new(env.redis.clone(), lease, Duration::ZERO);
    let (ws, job) = (Uuid::new_v4(), Uuid::new_v4());
    let call = request(ws, job, 2, 2, 0);
    assert!(matches!(
        worker_a.try_acquire(&call).await.unwrap(),
        TryAcquire::Acquired { .. }
    ));
    let held = HeldLeases::default();
    held.hold(call.attempt_id, ws, job);
    worker_b.release(ws, job, call.attempt_id).await.unwrap();
    // No attempt row: the database cannot say the call ended, as before B's commit.
    held.renew_once(&worker_a, &env.db).await.unwrap();
    assert_eq!(worker_a.in_use(ws, job).await.unwrap(), (0, 0));
    assert!(held.is_empty(), "A stops renewing what B released");
}

#[tokio::test]
async fn start_tokens_are_spaced_by_the_rate() {
    let env = TestEnv::new().await;
    let limits = Limits::new(env.redis.clone(), Duration::from_secs(30), Duration::ZERO);
    let (ws, job) = (Uuid::new_v4(), Uuid::new_v4());
    assert_eq!(
        limits.try_start(ws, job, Some(5), None).await.unwrap(),
        None
    );
    let wait = limits
        .try_start(ws, job, Some(5), None)
        .await
        .unwrap()
        .expect("must wait");
    assert!(
        wait > Duration::from_millis(150) && wait <= Duration::from_millis(200),
        "{wait:?}"
    );
    // The workspace rate binds another job of the workspace too.
    let other = Uuid::new_v4();
    assert_eq!(
        limits
            .try_start(ws, other, Some(100), Some(2))
            .await
            .unwrap(),
        None
    );
    assert!(
        limits
            .try_start(ws, Uuid::new_v4(), Some(100), Some(2))
            .await
            .unwrap()
            .is_some()
    );
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

/// A fresh Redis (no generation mark yet) does not make a starting worker wait.
#[tokio::test]
async fn a_starting_worker_on_a_fresh_redis_takes_slots_at_once() {
    let env = TestEnv::new().await;
    let limits = Limits::new(env.redis.clone(), Duration::from_secs(30), Duration::ZERO);
    let (ws, job) = (Uuid::new_v4(), Uuid::new_v4());
    assert!(matches!(
        limits
            .try_acquire(&request(ws, job, 2, 2, 0))
            .await
            .unwrap(),
        TryAcquire::Acquired { .. }
    ));
}

/// Step by step: after a flush the counts read zero although a call is in flight; no worker
/// takes a slot until the rebuild window has passed, by which time the holder has put its lease
/// back, so the limit still reads full; once the call ends, the slot is free again.
#[tokio::test]
async fn after_a_flush_no_slot_is_given_until_the_holders_have_re_registered() {
    let env = TestEnv::new().await;
    let lease = Duration::from_millis(1500);
    let holder = Limits::new(env.redis.clone(), lease, Duration::ZERO);
    let other = Limits::new(env.redis.clone(), lease, Duration::ZERO);
    let (ws, job) = (Uuid::new_v4(), Uuid::new_v4());
    let call = request(ws, job, 1, 1, 0);
    assert!(matches!(
        holder.try_acquire(&call).await.unwrap(),
        TryAcquire::Acquired { .. }
    ));
    assert_eq!(
        other.try_acquire(&request(ws, job, 1, 1, 0)).await.unwrap(),
        TryAcquire::WorkspaceFull
    );
    flush_prefix(&env).await;
    assert_eq!(other.in_use(ws, job).await.unwrap(), (0, 0), "counts lost");
    // Without the mark this would be granted: 2 calls against a limit of 1.
    assert_eq!(
        other.try_acquire(&request(ws, job, 1, 1, 0)).await.unwrap(),
        TryAcquire::WorkspaceFull,
        "no slot while the counts are being rebuilt"
    );
    // A worker that starts now respects the window too.
    let newcomer = Limits::new(env.redis.clone(), lease, Duration::ZERO);
    assert_eq!(
        newcomer
            .try_acquire(&request(ws, job, 1, 1, 0))
            .await
            .unwrap(),
        TryAcquire::WorkspaceFull
    );
    // The holder's renewal (within one period) puts the call back.
    holder.renew(&[(call.attempt_id, ws, job)]).await.unwrap();
    tokio::time::sleep(other.rebuild_window()).await;
    assert_eq!(
        other.try_acquire(&request(ws, job, 1, 1, 0)).await.unwrap(),
        TryAcquire::WorkspaceFull,
        "the rebuilt count holds the limit"
    );
    holder.release(ws, job, call.attempt_id).await.unwrap();
    assert!(matches!(
        other.try_acquire(&request(ws, job, 1, 1, 0)).await.unwrap(),
        TryAcquire::Acquired { .. }
    ));
}

/// The same with the real renewer running, and the pause measured: a worker hammering the
/// semaphores never holds more than the limit together with the holder, through a flush, and
/// gets a slot back once the holder's call has ended.
#[tokio::test]
async fn the_limit_holds_through_a_flush_with_the_renewer_running() {
    let env = TestEnv::new().await;
    let lease = Duration::from_millis(1500);
    let holder = Limits::new(env.redis.clone(), lease, Duration::ZERO);
    let other = Limits::new(env.redis.clone(), lease, Duration::ZERO);
    // The holder's call is in the database, or its renewer would rightly let it go.
    let (ws, job, attempt) = common::call_in_flight(&env).await;
    let call = SlotRequest {
        attempt_id: attempt,
        ..request(ws, job, 2, 2, 0)
    };
    assert!(matches!(
        holder.try_acquire(&call).await.unwrap(),
        TryAcquire::Acquired { .. }
    ));
    let held = HeldLeases::default();
    held.hold(call.attempt_id, ws, job);
    let stop = tokio_util::sync::CancellationToken::new();
    let renewer = tokio::spawn(held.clone().renew_loop(
        holder.clone(),
        env.db.clone(),
        stop.clone(),
        stop.clone(),
        Duration::ZERO,
    ));
    // The other worker takes the second slot, then loses it to the flush.
    let first = request(ws, job, 2, 2, 0);
    assert!(matches!(
        other.try_acquire(&first).await.unwrap(),
        TryAcquire::Acquired { .. }
    ));
    let flushed = std::time::Instant::now();
    flush_prefix(&env).await;
    // It retries as a dial worker does; the holder's call is still in flight, and the other
    // worker's own first slot is gone with the flush (its renewer is not running): so at most
    // one more slot may be granted, never two.
    let mut granted = Vec::new();
    let mut pause = None;
    // Until the first grant, then for less than a lease more (an unrenewed grant lapses).
    while flushed.elapsed() < Duration::from_secs(4)
        && pause.is_none_or(|p: Duration| flushed.elapsed() < p + Duration::from_millis(500))
    {
        let r = request(ws, job, 2, 2, 0);
        if let TryAcquire::Acquired { .. } = other.try_acquire(&r).await.unwrap() {
            pause.get_or_insert(flushed.elapsed());
            granted.push(r.attempt_id);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let pause = pause.expect("slots are given again after the window");
    eprintln!(
        "pause after a flush: {pause:?} (lease {lease:?}, window {:?})",
        other.rebuild_window()
    );
    assert_eq!(granted.len(), 1, "the holder's call was counted again");
    assert!(pause >= holder.renewal_period(), "{pause:?}");
    assert!(
        pause <= other.rebuild_window() + Duration::from_millis(500),
        "{pause:?}"
    );
    let (ws_count, job_count) = other.in_use(ws, job).await.unwrap();
    assert!(ws_count <= 2 && job_count <= 2, "{ws_count} {job_count}");
    stop.cancel();
    renewer.await.unwrap();
}

/// A flush also loses the time of the last start: the first start token after it waits one
/// interval, so no two starts come closer than the rate allows.
#[tokio::test]
async fn the_first_start_after_a_flush_waits_one_interval() {
    let env = TestEnv::new().await;
    let limits = Limits::new(env.redis.clone(), Duration::from_secs(30), Duration::ZERO);
    let (ws, job) = (Uuid::new_v4(), Uuid::new_v4());
    assert!(matches!(
        limits
            .try_acquire(&request(ws, job, 5, 5, 0))
            .await
            .unwrap(),
        TryAcquire::Acquired { .. }
    ));
    assert_eq!(
        limits.try_start(ws, job, Some(5), None).await.unwrap(),
        None
    );
    flush_prefix(&env).await;
    let wait = limits
        .try_start(ws, job, Some(5), None)
        .await
        .unwrap()
        .expect("parked one interval");
    assert!(
        wait > Duration::from_millis(150) && wait <= Duration::from_millis(200),
        "{wait:?}"
    );
    tokio::time::sleep(wait).await;
    assert_eq!(
        limits.try_start(ws, job, Some(5), None).await.unwrap(),
        None
    );
}

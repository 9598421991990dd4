//! The release hand-off: the scheduler publishes a contact's dial message inside the
//! transaction that marks it `released`, so a worker can receive the message before that
//! transaction commits. It must then wait for the release to become visible — never take the
//! message for a stale duplicate (which left the contact `released` with no message at all).

mod common;

use std::time::Duration;

use common::*;
use dial_worker::carrier::Carrier;
use dial_worker::carrier::sim::{OutcomeRule, SimBehavior, SimCarrier, SimOutcome};
use dial_worker::dial::{DialResult, dial_first_delivery};
use shared::domain::ContactState;
use shared::queue::messages::DialV1;
use testkit::TestEnv;
use tokio_util::sync::CancellationToken;

fn answered() -> SimBehavior {
    SimBehavior {
        ring_ms: (0, 0),
        talk_ms: (50, 50),
        rule: OutcomeRule::Always(SimOutcome::Answered),
        report_answered: true,
        seed: 7,
    }
}

fn ctx(env: &TestEnv, sim: &SimCarrier) -> dial_worker::Ctx {
    dial_worker::Ctx::new(
        env.db.clone(),
        env.redis.clone(),
        Carrier::Sim(sim.clone()),
        config(env, &[]),
        CancellationToken::new(),
    )
}

/// Holds the contact's release open (as the scheduler does while the broker confirms), hands
/// the first delivery of its message to `dial`, then commits or rolls back after `hold`.
async fn race_release(commit: bool) -> (DialResult, usize) {
    let env = TestEnv::new().await;
    let stop = CancellationToken::new();
    let ws = workspace(&env, 10).await;
    let batch_id = batch(&env, &new_batch(ws), &numbers("+1201555", 1, 0)).await;
    let sim = sim(&env, answered(), stop.clone());
    let ctx = ctx(&env, &sim);

    let mut scheduler = env.db.get().await.unwrap();
    let tx = scheduler.transaction().await.unwrap();
    let contact_id: uuid::Uuid = tx
        .query_one(
            "UPDATE contacts SET state = 'released', released_at = now()
             WHERE batch_id = $1 RETURNING id",
            &[&batch_id],
        )
        .await
        .unwrap()
        .get("id");
    let msg = DialV1 {
        batch_id,
        workspace_id: ws.id,
        contact_id,
        attempt_no: 1,
    };
    // A first delivery takes the fast path (no up-front read).
    let dialing = tokio::spawn(async move { dial_first_delivery(&ctx, &msg).await.unwrap() });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !dialing.is_finished(),
        "acted on before the release committed"
    );
    if commit {
        tx.commit().await.unwrap();
    } else {
        tx.rollback().await.unwrap();
    }
    let result = tokio::time::timeout(Duration::from_secs(10), dialing)
        .await
        .expect("the dial finishes once the release is settled")
        .unwrap();
    let calls = sim.calls().len();
    stop.cancel();
    (result, calls)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_message_that_arrives_before_its_release_commits_is_dialed() {
    let (result, calls) = race_release(true).await;
    assert!(
        matches!(result, DialResult::Dialed { .. }),
        "dialed once the release is visible, got {result:?}"
    );
    assert_eq!(calls, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_message_whose_release_rolled_back_is_dropped() {
    let (result, calls) = race_release(false).await;
    assert_eq!(result, DialResult::Stale);
    assert_eq!(calls, 0);
}

/// One policy for a schedule that cannot be read, in every role: the job is closed. A message
/// already released for such a job is handed back, never dialed.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_unreadable_schedule_keeps_the_job_closed() {
    let env = TestEnv::new().await;
    let stop = CancellationToken::new();
    let ws = workspace(&env, 10).await;
    let batch_id = batch(&env, &new_batch(ws), &numbers("+1201555", 1, 0)).await;
    let sim = sim(&env, answered(), stop.clone());
    let ctx = ctx(&env, &sim);
    let client = env.db.get().await.unwrap();
    client
        .execute(
            "UPDATE batches SET schedule = '{\"days\": \"weekdays\"}' WHERE id = $1",
            &[&batch_id],
        )
        .await
        .unwrap();
    let contact_id: uuid::Uuid = client
        .query_one(
            "UPDATE contacts SET state = 'released', released_at = now()
             WHERE batch_id = $1 RETURNING id",
            &[&batch_id],
        )
        .await
        .unwrap()
        .get("id");
    let msg = DialV1 {
        batch_id,
        workspace_id: ws.id,
        contact_id,
        attempt_no: 1,
    };
    let result = dial_first_delivery(&ctx, &msg).await.unwrap();
    assert!(
        matches!(result, DialResult::HandedBack(_)),
        "handed back, got {result:?}"
    );
    let state: String = client
        .query_one("SELECT state FROM contacts WHERE id = $1", &[&contact_id])
        .await
        .unwrap()
        .get("state");
    assert_eq!(state, "queued");
    assert!(sim.calls().is_empty());
    stop.cancel();
}

/// A first delivery whose job says "not now" (paused, or a window that closed) while its
/// release has not committed yet: handing the contact back at once would find it `queued` and
/// change nothing, and the release would then leave it `released` with no message. The worker
/// waits for the release and hands the contact back after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hand_back_waits_for_the_release_it_undoes() {
    let env = TestEnv::new().await;
    let stop = CancellationToken::new();
    let ws = workspace(&env, 10).await;
    let batch_id = batch(&env, &new_batch(ws), &numbers("+1201555", 1, 0)).await;
    let sim = sim(&env, answered(), stop.clone());
    let ctx = ctx(&env, &sim);
    let client = env.db.get().await.unwrap();
    client
        .execute(
            "UPDATE batches SET state = 'paused' WHERE id = $1",
            &[&batch_id],
        )
        .await
        .unwrap();

    let mut scheduler = env.db.get().await.unwrap();
    let tx = scheduler.transaction().await.unwrap();
    let contact_id: uuid::Uuid = tx
        .query_one(
            "UPDATE contacts SET state = 'released', released_at = now()
             WHERE batch_id = $1 RETURNING id",
            &[&batch_id],
        )
        .await
        .unwrap()
        .get("id");
    let msg = DialV1 {
        batch_id,
        workspace_id: ws.id,
        contact_id,
        attempt_no: 1,
    };
    let handing = tokio::spawn(async move { dial_first_delivery(&ctx, &msg).await.unwrap() });
    tokio::time::sleep(Duration::from_millis(300)).await;
    tx.commit().await.unwrap();
    let result = tokio::time::timeout(Duration::from_secs(10), handing)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(result, DialResult::HandedBack(ContactState::Queued));
    let state: String = client
        .query_one("SELECT state FROM contacts WHERE id = $1", &[&contact_id])
        .await
        .unwrap()
        .get("state");
    assert_eq!(state, "queued", "handed back after the release, not before");
    assert!(sim.calls().is_empty());
    stop.cancel();
}

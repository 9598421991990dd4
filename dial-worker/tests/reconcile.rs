//! Reconciliation of attempts whose callbacks never came, against the real PostgreSQL and Redis
//! and (for the Twilio-compatible adapter) the real carrier simulator over HTTP.
//!
//! An attempt without a call id is *not known to be placed*: its worker may have died between
//! the insert and the carrier request. Once it is silent past the send window, the request
//! timeout and the ring timeout, the carrier is asked; no call there → the attempt is taken
//! back and the contact dialed again; a call there → its sid is adopted and the outcome read.

mod common;

use std::time::Duration;

use axum::response::IntoResponse;
use common::*;
use dial_worker::carrier::sim::{OutcomeRule, SimBehavior, SimCarrier, SimOutcome};
use dial_worker::carrier::twilio::TwilioCarrier;
use dial_worker::carrier::{CallRequest, Carrier};
use dial_worker::dial::{DialResult, dial_one};
use dial_worker::limits::{SlotRequest, TryAcquire};
use dial_worker::reconcile::reconcile_once;
use serde_json::{Value, json};
use shared::config::Env;
use shared::queue::messages::DialV1;
use testkit::TestEnv;
use testkit::fixtures::WorkspaceIds;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

fn quick_calls() -> SimBehavior {
    SimBehavior {
        ring_ms: (0, 0),
        talk_ms: (10, 10),
        rule: OutcomeRule::Always(SimOutcome::Answered),
        report_answered: false,
        seed: 4,
    }
}

/// What a worker does before the carrier request, and nothing after: the contact released, a
/// slot taken, the attempt written (contact `dialing`) — then the worker "dies". Returns the
/// dial message and the attempt id.
async fn written_not_sent(
    env: &TestEnv,
    ctx: &dial_worker::Ctx,
    ws: &WorkspaceIds,
    batch: Uuid,
) -> (DialV1, Uuid) {
    let client = env.db.get().await.unwrap();
    let contact_id: Uuid = client
        .query_one(
            "UPDATE contacts SET state = 'released', released_at = now()
             WHERE id = (SELECT id FROM contacts WHERE batch_id = $1 AND state = 'queued'
                         ORDER BY row_index LIMIT 1)
             RETURNING id",
            &[&batch],
        )
        .await
        .unwrap()
        .get("id");
    let attempt = Uuid::now_v7();
    let slot = SlotRequest {
        workspace_id: ws.id,
        batch_id: batch,
        attempt_id: attempt,
        workspace_limit: 10,
        job_limit: 10,
        caller_pool: 0,
    };
    assert!(matches!(
        ctx.limits.try_acquire(&slot).await.unwrap(),
        TryAcquire::Acquired { .. }
    ));
    // The worker's insert: the contact goes `dialing` in the same statement.
    let n = client
        .execute(
            "WITH c AS (UPDATE contacts SET state = 'dialing', attempts = 1, updated_at = now()
                        WHERE id = $2 AND state = 'released' RETURNING id, batch_id, workspace_id, phone_number)
             INSERT INTO dial_attempts (id, contact_id, batch_id, workspace_id, attempt_no,
                                        to_number, from_number, state, started_at)
             SELECT $1, c.id, c.batch_id, c.workspace_id, 1, c.phone_number, '+12015550100',
                    'dialing', now()
             FROM c",
            &[&attempt, &contact_id],
        )
        .await
        .unwrap();
    assert_eq!(n, 1);
    let msg = DialV1 {
        batch_id: batch,
        workspace_id: ws.id,
        contact_id,
        attempt_no: 1,
    };
    (msg, attempt)
}

/// Makes an attempt look silent for `secs` (its row last written that long ago).
async fn age(env: &TestEnv, attempt: Uuid, secs: f64) {
    env.db
        .get()
        .await
        .unwrap()
        .execute(
            "UPDATE dial_attempts SET updated_at = now() - make_interval(secs => $2),
                 created_at = now() - make_interval(secs => $2)
             WHERE id = $1",
            &[&attempt, &secs],
        )
        .await
        .unwrap();
}

/// `(state, attempts, rows of attempts, due now)` of a contact.
async fn contact(env: &TestEnv, id: Uuid) -> (String, i32, i64, bool) {
    let row = env
        .db
        .get()
        .await
        .unwrap()
        .query_one(
            "SELECT state, attempts,
                    (SELECT count(*) FROM dial_attempts WHERE contact_id = c.id) AS attempt_rows,
                    next_attempt_at <= now() AS due
             FROM contacts c WHERE id = $1",
            &[&id],
        )
        .await
        .unwrap();
    (
        row.get("state"),
        row.get("attempts"),
        row.get("attempt_rows"),
        row.get("due"),
    )
}

/// `(outcome, carrier_call_sid)` of an attempt, `None` if it is gone.
async fn attempt_row(env: &TestEnv, id: Uuid) -> Option<(Option<String>, Option<String>)> {
    env.db
        .get()
        .await
        .unwrap()
        .query_opt(
            "SELECT outcome, carrier_call_sid FROM dial_attempts WHERE id = $1",
            &[&id],
        )
        .await
        .unwrap()
        .map(|r| (r.get("outcome"), r.get("carrier_call_sid")))
}

/// The release the scheduler would make: the contact `released` again, its next message.
async fn release_again(env: &TestEnv, msg: &DialV1) -> DialV1 {
    let client = env.db.get().await.unwrap();
    let attempts: i32 = client
        .query_one(
            "UPDATE contacts SET state = 'released', released_at = now()
             WHERE id = $1 AND state = 'queued' RETURNING attempts",
            &[&msg.contact_id],
        )
        .await
        .unwrap()
        .get("attempts");
    DialV1 {
        attempt_no: attempts as u32 + 1,
        ..msg.clone()
    }
}

/// A worker killed between the attempt insert and the carrier request: the attempt stays
/// `dialing` without a call id. Young, it is left alone (its worker may still send it); once
/// silent past the send window, the request timeout and the ring timeout, the carrier is
/// asked, has no call, and the attempt is taken back: row gone, attempt count restored, slot
/// returned, contact queued and due at once — and then dialed, exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_attempt_never_sent_is_taken_back_and_dialed_again() {
    let env = TestEnv::new().await;
    let ws = workspace(&env, 10).await;
    let batch = batch(&env, &new_batch(ws), &numbers("+1201555", 1, 0)).await;
    let (sim, _events) = SimCarrier::new(quick_calls());
    let ctx = ctx_configured(&env, Carrier::Sim(sim.clone()), &[]);
    let (msg, attempt) = written_not_sent(&env, &ctx, &ws, batch).await;

    // Young: the periodic pass and a redelivered message both leave it alone.
    reconcile_once(&ctx).await.unwrap();
    assert_eq!(
        dial_one(&ctx, &msg).await.unwrap(),
        DialResult::Reconciled,
        "an existing attempt is never dialed again"
    );
    assert_eq!(
        contact(&env, msg.contact_id).await,
        ("dialing".to_owned(), 1, 1, true)
    );
    assert!(sim.calls().is_empty());

    // Silent past the window (5 s) + request timeout (10 s) + ring timeout (30 s).
    age(&env, attempt, 60.0).await;
    reconcile_once(&ctx).await.unwrap();
    assert_eq!(attempt_row(&env, attempt).await, None, "the row is gone");
    assert_eq!(
        contact(&env, msg.contact_id).await,
        ("queued".to_owned(), 0, 0, true),
        "queued again, not charged, due now"
    );
    assert_eq!(
        ctx.limits.in_use(ws.id, batch).await.unwrap(),
        (0, 0),
        "the slot is back"
    );

    // The scheduler releases it again and it is dialed, once.
    let again = release_again(&env, &msg).await;
    assert_eq!(again.attempt_no, 1);
    assert!(matches!(
        dial_one(&ctx, &again).await.unwrap(),
        DialResult::Dialed { .. }
    ));
    assert_eq!(sim.calls().len(), 1);
}

/// Race 7: the carrier answers for an attempt after it was taken back (its request had left
/// after all). The answer is neither applied nor lost: the tombstone the take-back left records
/// it (status, call id, when), the contact stays as the take-back left it, and nothing dials.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_late_callback_for_a_taken_back_attempt_is_recorded_not_applied() {
    let env = TestEnv::new().await;
    let ws = workspace(&env, 10).await;
    let batch = batch(&env, &new_batch(ws), &numbers("+1201555", 1, 0)).await;
    let (sim, _events) = SimCarrier::new(quick_calls());
    let ctx = ctx_configured(&env, Carrier::Sim(sim.clone()), &[]);
    let (msg, attempt) = written_not_sent(&env, &ctx, &ws, batch).await;
    age(&env, attempt, 60.0).await;
    reconcile_once(&ctx).await.unwrap();
    assert_eq!(attempt_row(&env, attempt).await, None, "taken back");

    let received_at = chrono::Utc::now();
    for status in [
        shared::queue::messages::CarrierCallStatus::Ringing,
        shared::queue::messages::CarrierCallStatus::Completed,
    ] {
        let late = shared::queue::messages::CallEventV1 {
            attempt_id: attempt,
            call_sid: "CAlate".to_owned(),
            status,
            answered_by: None,
            duration_secs: Some(12),
            received_at,
        };
        dial_worker::call_event::handle_event(&ctx, &late)
            .await
            .unwrap();
    }

    let tomb = env
        .db
        .get()
        .await
        .unwrap()
        .query_one(
            "SELECT contact_id, carrier_call_sid, late_answers, last_late_status, last_late_at
             FROM taken_back_attempts WHERE attempt_id = $1",
            &[&attempt],
        )
        .await
        .expect("a tombstone for the taken-back attempt");
    assert_eq!(tomb.get::<_, Uuid>("contact_id"), msg.contact_id);
    assert_eq!(
        tomb.get::<_, Option<String>>("carrier_call_sid").as_deref(),
        Some("CAlate")
    );
    assert_eq!(tomb.get::<_, i32>("late_answers"), 2);
    assert_eq!(
        tomb.get::<_, Option<String>>("last_late_status").as_deref(),
        Some("completed")
    );
    assert!(
        tomb.get::<_, Option<chrono::DateTime<chrono::Utc>>>("last_late_at")
            .is_some()
    );
    assert_eq!(
        contact(&env, msg.contact_id).await,
        ("queued".to_owned(), 0, 0, true),
        "the late answer changes nothing about the contact"
    );
    assert_eq!(attempt_row(&env, attempt).await, None, "no attempt revived");
    assert!(sim.calls().is_empty(), "nothing dialled");
}

/// A redelivered dial message finds an old attempt without a call id: it is taken back then
/// and there (the periodic pass is not needed).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_redelivered_message_takes_back_an_old_unsent_attempt() {
    let env = TestEnv::new().await;
    let ws = workspace(&env, 10).await;
    let batch = batch(&env, &new_batch(ws), &numbers("+1201555", 1, 0)).await;
    let (sim, _events) = SimCarrier::new(quick_calls());
    let ctx = ctx_configured(&env, Carrier::Sim(sim.clone()), &[]);
    let (msg, attempt) = written_not_sent(&env, &ctx, &ws, batch).await;
    age(&env, attempt, 60.0).await;
    assert_eq!(dial_one(&ctx, &msg).await.unwrap(), DialResult::Reconciled);
    assert_eq!(attempt_row(&env, attempt).await, None);
    assert_eq!(
        contact(&env, msg.contact_id).await,
        ("queued".to_owned(), 0, 0, true)
    );
    assert!(sim.calls().is_empty());
}

/// A worker killed after the carrier took its request but before it stored the call id: the
/// carrier has the call under the attempt's key. Its sid is adopted, and the outcome read from
/// the carrier — the contact is never dialed again.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_attempt_whose_call_exists_adopts_it() {
    let env = TestEnv::new().await;
    let ws = workspace(&env, 10).await;
    let batch = batch(&env, &new_batch(ws), &numbers("+1201555", 1, 0)).await;
    let (sim, _events) = SimCarrier::new(quick_calls());
    let ctx = ctx_configured(&env, Carrier::Sim(sim.clone()), &[]);
    let (msg, attempt) = written_not_sent(&env, &ctx, &ws, batch).await;
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
    tokio::time::sleep(Duration::from_millis(200)).await;
    age(&env, attempt, 60.0).await;
    reconcile_once(&ctx).await.unwrap();
    assert_eq!(
        attempt_row(&env, attempt).await,
        Some((Some("completed".to_owned()), Some(sid)))
    );
    assert_eq!(contact(&env, msg.contact_id).await.0, "completed");
    assert_eq!(ctx.limits.in_use(ws.id, batch).await.unwrap(), (0, 0));
    assert_eq!(sim.calls().len(), 1, "never dialed again");
}

/// The Twilio-compatible adapter against the real carrier simulator: the call list filtered by
/// `To` and `StartTime` finds the call of an attempt whose sid was never stored (adopted, its
/// outcome read), finds none for an attempt never sent (taken back), and does not mistake a
/// call another attempt owns (the same number, in another job) for the unsent one's.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_twilio_adapter_finds_calls_through_the_call_list() {
    let env = TestEnv::new().await;
    let stop = CancellationToken::new();
    let dir = tempfile_dir();
    let sim_config = carrier_sim::config::Config::from_env(&Env::from_pairs([
        ("CARRIER_SIM_ADDR", "127.0.0.1:0"),
        ("CARRIER_SIM_RING_MS", "20"),
        ("CARRIER_SIM_TALK_MS", "30"),
        (
            "CARRIER_SIM_RECORD",
            dir.join("calls.jsonl").to_str().unwrap(),
        ),
    ]))
    .unwrap();
    let (addr, _task) = carrier_sim::spawn(sim_config, stop.clone()).await.unwrap();
    let twilio = TwilioCarrier::new(&format!("http://{addr}"), "ACsim", "sim-token");
    let ctx = ctx_configured(&env, Carrier::Twilio(twilio.clone()), &[]);
    let ws = workspace(&env, 10).await;
    // Two jobs calling the same number: one attempt of each.
    let placed_job = batch(&env, &new_batch(ws), &numbers("+1201555", 1, 0)).await;
    let owner_job = batch(&env, &new_batch(ws), &numbers("+1201555", 1, 0)).await;
    let unsent_job = batch(&env, &new_batch(ws), &numbers("+1201555", 1, 0)).await;
    let (placed_msg, placed) = written_not_sent(&env, &ctx, &ws, placed_job).await;
    let (_, owner) = written_not_sent(&env, &ctx, &ws, owner_job).await;
    let (unsent_msg, unsent) = written_not_sent(&env, &ctx, &ws, unsent_job).await;
    let request = |attempt_id| CallRequest {
        attempt_id,
        to: "+12015550000".into(),
        from: "+12015550100".into(),
        answer_url: "https://agent.example/answer".into(),
        // Nobody listens: every callback is lost.
        status_callback: "http://127.0.0.1:9/nowhere".into(),
        timeout_secs: 30,
        machine_detection: None,
    };
    let placed_sid = twilio.place_call(&request(placed)).await.unwrap();
    let owner_sid = twilio.place_call(&request(owner)).await.unwrap();
    env.db
        .get()
        .await
        .unwrap()
        .execute(
            "UPDATE dial_attempts SET carrier_call_sid = $2 WHERE id = $1",
            &[&owner, &owner_sid],
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Silent long enough, but written moments ago (the calls came after the attempts).
    for a in [placed, unsent] {
        env.db
            .get()
            .await
            .unwrap()
            .execute(
                "UPDATE dial_attempts SET updated_at = now() - interval '60 seconds' WHERE id = $1",
                &[&a],
            )
            .await
            .unwrap();
    }
    reconcile_once(&ctx).await.unwrap();
    assert_eq!(
        attempt_row(&env, placed).await,
        Some((Some("completed".to_owned()), Some(placed_sid)))
    );
    assert_eq!(contact(&env, placed_msg.contact_id).await.0, "completed");
    assert_eq!(attempt_row(&env, unsent).await, None, "no call of its own");
    assert_eq!(
        contact(&env, unsent_msg.contact_id).await,
        ("queued".to_owned(), 0, 0, true)
    );
    stop.cancel();
    let _ = std::fs::remove_dir_all(&dir);
}

/// A carrier that cannot be asked leaves the attempt open (it may exist): only once it is
/// `UNKNOWN_AFTER_SECS` old is it closed `unknown` — the one truly ambiguous case.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_unreachable_carrier_leaves_the_attempt_open_until_the_unknown_timeout() {
    let env = TestEnv::new().await;
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    let ctx = ctx_configured(
        &env,
        Carrier::Twilio(TwilioCarrier::new(&closed, "ACsim", "sim-token")),
        &[("UNKNOWN_AFTER_SECS", "600")],
    );
    let ws = workspace(&env, 10).await;
    let batch = batch(&env, &new_batch(ws), &numbers("+1201555", 1, 0)).await;
    let (msg, attempt) = written_not_sent(&env, &ctx, &ws, batch).await;
    age(&env, attempt, 60.0).await;
    reconcile_once(&ctx).await.unwrap();
    assert_eq!(attempt_row(&env, attempt).await, Some((None, None)));
    assert_eq!(contact(&env, msg.contact_id).await.0, "dialing");
    age(&env, attempt, 700.0).await;
    reconcile_once(&ctx).await.unwrap();
    assert_eq!(
        attempt_row(&env, attempt).await,
        Some((Some("unknown".to_owned()), None))
    );
}

fn tempfile_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("dialfleet-reconcile-{}", Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The send window holds through a long start-token wait: at one call a second, the last of 18
/// calls waits 17 s for its token with its attempt written — longer than the 16 s after which a
/// silent attempt without a call id is looked up (ring timeout 1 s here). The waiting calls
/// keep their rows touched, so the reconciler running meanwhile takes none of them back: every
/// one is dialed by the task that wrote it, exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_long_start_token_wait_keeps_its_attempt() {
    let env = TestEnv::new().await;
    let ws = workspace(&env, 20).await;
    let spec = new_batch(ws)
        .max_concurrent_dials(20)
        .max_calls_per_second(1);
    let batch = batch(&env, &spec, &numbers("+1201555", 18, 0)).await;
    let client = env.db.get().await.unwrap();
    let dials: Vec<DialV1> = client
        .query(
            "UPDATE contacts SET state = 'released', released_at = now()
             WHERE batch_id = $1 RETURNING id",
            &[&batch],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| DialV1 {
            batch_id: batch,
            workspace_id: ws.id,
            contact_id: r.get("id"),
            attempt_no: 1,
        })
        .collect();
    let (sim, _events) = SimCarrier::new(SimBehavior {
        talk_ms: (60_000, 60_000),
        ..quick_calls()
    });
    let settings = [("CALL_TIMEOUT_SECS", "1"), ("RECONCILE_AFTER_SECS", "1")];
    let ctx = ctx_configured(&env, Carrier::Sim(sim.clone()), &settings);
    let stop = CancellationToken::new();
    let reconciler = {
        let (ctx, stop) = (ctx.clone(), stop.clone());
        tokio::spawn(async move {
            while !stop.is_cancelled() {
                reconcile_once(&ctx).await.unwrap();
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
    };
    let tasks: Vec<_> = dials
        .iter()
        .map(|d| {
            let (ctx, d) = (ctx.clone(), d.clone());
            tokio::spawn(async move { dial_one(&ctx, &d).await.unwrap() })
        })
        .collect();
    let mut results = Vec::new();
    for t in tasks {
        results.push(t.await.unwrap());
    }
    stop.cancel();
    reconciler.await.unwrap();
    assert!(
        results
            .iter()
            .all(|r| matches!(r, DialResult::Dialed { .. })),
        "{results:?}"
    );
    let mut called: Vec<String> = sim.calls().into_iter().map(|c| c.to).collect();
    called.sort();
    called.dedup();
    assert_eq!(called.len(), 18);
    assert_eq!(sim.calls().len(), 18);
}

/// After a broker outage the reconciler runs at once: callbacks may have been lost meanwhile,
/// so every placed call silent for 2 s is asked about, without waiting for
/// `RECONCILE_AFTER_SECS` (60 here, so only the catch-up pass can settle the call in time).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_reconciler_catches_up_as_soon_as_the_broker_is_back() {
    let env = TestEnv::new().await;
    let broker = testkit::proxy::TcpProxy::start("127.0.0.1:5672").await;
    let amqp = broker.url(&env.config.amqp_url);
    let ws = workspace(&env, 10).await;
    let batch = batch(&env, &new_batch(ws), &numbers("+1201555", 1, 0)).await;
    // Its events go nowhere: the call's callbacks are "lost".
    let (sim, _events) = SimCarrier::new(quick_calls());
    let settings = [("AMQP_URL", amqp.as_str()), ("RECONCILE_AFTER_SECS", "60")];
    let mut worker_config = config(&env, &settings);
    worker_config.service.amqp_url = amqp.clone();
    let stop = CancellationToken::new();
    let (_addr, done) =
        dial_worker::spawn(worker_config, Some(Carrier::Sim(sim.clone())), stop.clone())
            .await
            .unwrap();
    let ctx = ctx_configured(&env, Carrier::Sim(sim.clone()), &[]);
    let (_, attempt) = written_not_sent(&env, &ctx, &ws, batch).await;
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
    env.db
        .get()
        .await
        .unwrap()
        .execute(
            "UPDATE dial_attempts SET carrier_call_sid = $2, state = 'ringing' WHERE id = $1",
            &[&attempt, &sid],
        )
        .await
        .unwrap();

    broker.cut();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        attempt_row(&env, attempt).await,
        Some((None, Some(sid.clone()))),
        "nothing settles it during the outage"
    );
    let restored = std::time::Instant::now();
    broker.restore();
    let deadline = restored + Duration::from_secs(20);
    loop {
        if attempt_row(&env, attempt).await.and_then(|r| r.0).is_some() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "not reconciled after the broker came back"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!(
        "reconciled {:?} after the broker came back",
        restored.elapsed()
    );
    assert_eq!(
        attempt_row(&env, attempt).await,
        Some((Some("completed".to_owned()), Some(sid)))
    );
    stop.cancel();
    let _ = done.await;
}

/// Calls a fake Twilio lists (no `idempotency_key`, as the real one shows none), and the list
/// queries it received.
#[derive(Clone, Default)]
struct FakeTwilio {
    calls: std::sync::Arc<std::sync::Mutex<Vec<Value>>>,
    queries: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl FakeTwilio {
    async fn start(&self) -> String {
        use axum::extract::{Path, RawQuery};
        use axum::routing::get;
        let list = self.clone();
        let one = self.clone();
        let app = axum::Router::new()
            .route(
                "/2010-04-01/Accounts/{account}/Calls.json",
                get(move |RawQuery(q): RawQuery| {
                    let list = list.clone();
                    async move {
                        list.queries.lock().unwrap().push(q.unwrap_or_default());
                        axum::Json(json!({"calls": list.calls.lock().unwrap().clone()}))
                    }
                }),
            )
            .route(
                "/2010-04-01/Accounts/{account}/Calls/{file}",
                get(move |Path((_, file)): Path<(String, String)>| {
                    let one = one.clone();
                    async move {
                        let sid = file.trim_end_matches(".json").to_owned();
                        let known = one.calls.lock().unwrap().iter().any(|c| c["sid"] == sid);
                        if known {
                            axum::Json(json!({"sid": sid, "status": "completed", "duration": "4"}))
                                .into_response()
                        } else {
                            axum::http::StatusCode::NOT_FOUND.into_response()
                        }
                    }
                }),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        format!("http://{addr}")
    }

    fn add(&self, sid: &str, created: chrono::DateTime<chrono::Utc>) {
        self.calls.lock().unwrap().push(json!({
            "sid": sid, "to": "+12015550000", "from": "+12015550100",
            "date_created": created.to_rfc2822(), "status": "completed",
        }));
    }
}

/// Against a carrier that shows no idempotency keys (Twilio), the call list decides by number,
/// caller ID and creation time: calls other attempts own, and calls made before the attempt,
/// are not its; a lone free call is adopted; but while two open attempts without a call id
/// call the same number, a lone call could be either's, and both wait.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn without_keys_the_call_list_is_matched_by_number_and_time() {
    let env = TestEnv::new().await;
    let twilio = FakeTwilio::default();
    let url = twilio.start().await;
    let ctx = ctx_configured(
        &env,
        Carrier::Twilio(TwilioCarrier::new(&url, "AC1", "token")),
        &[],
    );
    let ws = workspace(&env, 10).await;
    let now = chrono::Utc::now();
    let silent = |a: Uuid| {
        let env = &env;
        async move {
            env.db
                .get()
                .await
                .unwrap()
                .execute(
                    "UPDATE dial_attempts SET updated_at = now() - interval '60 seconds' WHERE id = $1",
                    &[&a],
                )
                .await
                .unwrap();
        }
    };

    // An old call to the number (an earlier attempt's, long ago) and one another attempt owns.
    twilio.add("CAold", now - chrono::Duration::hours(1));
    twilio.add("CAowned", now + chrono::Duration::seconds(1));
    let owner_job = batch(&env, &new_batch(ws), &numbers("+1201555", 1, 0)).await;
    let (_, owner) = written_not_sent(&env, &ctx, &ws, owner_job).await;
    env.db
        .get()
        .await
        .unwrap()
        .execute(
            "UPDATE dial_attempts SET carrier_call_sid = 'CAowned' WHERE id = $1",
            &[&owner],
        )
        .await
        .unwrap();
    let job = batch(&env, &new_batch(ws), &numbers("+1201555", 1, 0)).await;
    let (msg, unsent) = written_not_sent(&env, &ctx, &ws, job).await;
    silent(unsent).await;
    reconcile_once(&ctx).await.unwrap();
    assert_eq!(
        attempt_row(&env, unsent).await,
        None,
        "none of those is its call"
    );
    assert_eq!(contact(&env, msg.contact_id).await.0, "queued");
    let query = twilio.queries.lock().unwrap().last().cloned().unwrap();
    // By number only: a call still queued at the carrier has no start time, so a StartTime
    // filter would hide it and its attempt would be taken back and dialed twice.
    assert!(
        query.contains("To=%2B12015550000")
            && query.contains("From=%2B12015550100")
            && !query.contains("StartTime"),
        "{query}"
    );

    // Its call is there, free: adopted.
    let job = batch(&env, &new_batch(ws), &numbers("+1201555", 1, 0)).await;
    let (msg, placed) = written_not_sent(&env, &ctx, &ws, job).await;
    twilio.add("CAmine", chrono::Utc::now() + chrono::Duration::seconds(1));
    silent(placed).await;
    reconcile_once(&ctx).await.unwrap();
    assert_eq!(
        attempt_row(&env, placed).await,
        Some((Some("completed".to_owned()), Some("CAmine".to_owned())))
    );
    assert_eq!(contact(&env, msg.contact_id).await.0, "completed");

    // Two open attempts without a call id to the same number, one free call: either's.
    let a_job = batch(&env, &new_batch(ws), &numbers("+1201555", 1, 0)).await;
    let b_job = batch(&env, &new_batch(ws), &numbers("+1201555", 1, 0)).await;
    let (_, a) = written_not_sent(&env, &ctx, &ws, a_job).await;
    let (_, b) = written_not_sent(&env, &ctx, &ws, b_job).await;
    twilio.add(
        "CAeither",
        chrono::Utc::now() + chrono::Duration::seconds(1),
    );
    silent(a).await;
    silent(b).await;
    reconcile_once(&ctx).await.unwrap();
    assert_eq!(attempt_row(&env, a).await, Some((None, None)), "left open");
    assert_eq!(attempt_row(&env, b).await, Some((None, None)), "left open");
}

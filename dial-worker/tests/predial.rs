//! The pre-dial check (issue #25): before a contact's call the worker asks the workspace's
//! receiver, signed like the webhooks, and only `{"allow": true}` lets the call go. A refusal
//! ends the contact `suppressed` with the receiver's reason in its events; a timeout, an error
//! status or a connection error holds it (`predial_unavailable`). The simulated carrier's call
//! list is the witness of what was dialed; the receivers listen on 127.0.0.1 (the test's
//! `WEBHOOK_ALLOWED_NETWORKS`).

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use common::*;
use dial_worker::carrier::Carrier;
use dial_worker::carrier::sim::{OutcomeRule, SimBehavior, SimOutcome};
use dial_worker::dial::{DialResult, dial_one};
use dial_worker::webhooks::signature;
use shared::domain::ContactState;
use shared::queue::messages::DialV1;
use testkit::TestEnv;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

type Received = Arc<Mutex<Vec<(HeaderMap, Bytes)>>>;

fn answered() -> SimBehavior {
    SimBehavior {
        ring_ms: (0, 0),
        talk_ms: (10, 10),
        rule: OutcomeRule::Always(SimOutcome::Answered),
        report_answered: true,
        seed: 7,
    }
}

/// A receiver answering every check with `status` and `body` after `delay`.
async fn receiver(status: u16, body: &'static str, delay: Duration) -> (String, Received) {
    let received: Received = Arc::default();
    let app = Router::new()
        .route(
            "/check",
            post(
                move |State(r): State<Received>, headers: HeaderMap, bytes: Bytes| async move {
                    r.lock().unwrap().push((headers, bytes));
                    tokio::time::sleep(delay).await;
                    (StatusCode::from_u16(status).unwrap(), body)
                },
            ),
        )
        .with_state(received.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}/check"), received)
}

/// One contact, released, in a workspace whose pre-dial check is `url` (timeout `timeout_ms`).
async fn setup(env: &TestEnv, url: &str, timeout_ms: i32) -> (DialV1, Uuid) {
    let ws = workspace(env, 10).await;
    let batch_id = batch(env, &new_batch(ws), &["+12015550150".to_owned()]).await;
    let client = env.db.get().await.unwrap();
    client
        .execute(
            "UPDATE workspaces SET predial_url = $2, predial_timeout_ms = $3 WHERE id = $1",
            &[&ws.id, &url, &timeout_ms],
        )
        .await
        .unwrap();
    let msg = released(env, &ws, batch_id).await.remove(0);
    (msg, ws.id)
}

async fn contact(env: &TestEnv, id: Uuid) -> (String, i32, Option<String>, Option<String>) {
    let client = env.db.get().await.unwrap();
    let r = client
        .query_one(
            "SELECT state, attempts, last_outcome, hold_reason FROM contacts WHERE id = $1",
            &[&id],
        )
        .await
        .unwrap();
    (
        r.get("state"),
        r.get("attempts"),
        r.get("last_outcome"),
        r.get("hold_reason"),
    )
}

/// The contact's events: (kind, reason, detail).
async fn events(
    env: &TestEnv,
    id: Uuid,
) -> Vec<(String, Option<String>, Option<serde_json::Value>)> {
    let client = env.db.get().await.unwrap();
    client
        .query(
            "SELECT kind, reason, detail FROM contact_events WHERE contact_id = $1 ORDER BY id",
            &[&id],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get("kind"), r.get("reason"), r.get("detail")))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allow_lets_the_call_go_and_the_check_is_signed() {
    let env = TestEnv::new().await;
    let stop = CancellationToken::new();
    let (url, received) = receiver(200, r#"{"allow": true}"#, Duration::ZERO).await;
    let (msg, ws) = setup(&env, &url, 2000).await;
    let sim = sim(&env, answered(), stop.clone());
    let ctx = ctx_with(&env, Carrier::Sim(sim.clone()));
    assert!(matches!(
        dial_one(&ctx, &msg).await.unwrap(),
        DialResult::Dialed { .. }
    ));
    assert_eq!(sim.calls().len(), 1, "called once, after the check");
    let received = received.lock().unwrap().clone();
    assert_eq!(received.len(), 1);
    let (headers, body) = &received[0];
    let key = signature::secret_key(SECRET).unwrap();
    let header = |n: &str| headers[n].to_str().unwrap().to_owned();
    assert!(signature::verify(
        &key,
        &header("webhook-id"),
        header("webhook-timestamp").parse().unwrap(),
        body,
        &header("webhook-signature"),
    ));
    let sent: serde_json::Value = serde_json::from_slice(body).unwrap();
    assert_eq!(sent["type"], "predial.check");
    assert_eq!(sent["phoneNumber"], "+12015550150");
    assert_eq!(sent["attempt"], 1);
    assert_eq!(sent["batchId"], msg.batch_id.to_string());
    assert_eq!(sent["workspaceId"], ws.to_string());
    assert_eq!(sent["inputs"], serde_json::json!({"k": "v"}));
    stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deny_suppresses_with_the_reason_in_the_events() {
    let env = TestEnv::new().await;
    let stop = CancellationToken::new();
    let (url, _) = receiver(
        200,
        r#"{"allow": false, "reason": "reassigned number"}"#,
        Duration::ZERO,
    )
    .await;
    let (msg, _) = setup(&env, &url, 2000).await;
    let sim = sim(&env, answered(), stop.clone());
    let ctx = ctx_with(&env, Carrier::Sim(sim.clone()));
    assert_eq!(dial_one(&ctx, &msg).await.unwrap(), DialResult::Suppressed);
    assert!(sim.calls().is_empty(), "never dialed");
    let (state, tries, outcome, _) = contact(&env, msg.contact_id).await;
    assert_eq!(
        (state.as_str(), tries, outcome.as_deref()),
        ("failed", 0, Some("suppressed"))
    );
    let events = events(&env, msg.contact_id).await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].0, "suppressed");
    assert_eq!(events[0].1.as_deref(), Some("predial_denied"));
    assert_eq!(events[0].2.as_ref().unwrap()["reason"], "reassigned number");
    stop.cancel();
}

/// A timeout, an error status, a bad body and a refused connection each hold the contact,
/// uncalled and uncharged, with `predial_unavailable` and a `deferred` event naming why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_usable_answer_holds_the_contact_uncalled() {
    let env = TestEnv::new().await;
    let stop = CancellationToken::new();
    let (slow, _) = receiver(200, r#"{"allow": true}"#, Duration::from_secs(3)).await;
    let (failing, _) = receiver(503, r#"{"allow": true}"#, Duration::ZERO).await;
    let (garbled, _) = receiver(200, "yes", Duration::ZERO).await;
    // A port nothing listens on: bound, then closed.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}/check", l.local_addr().unwrap())
    };
    let sim = sim(&env, answered(), stop.clone());
    let ctx = ctx_with(&env, Carrier::Sim(sim.clone()));
    for (url, timeout_ms, why) in [
        (slow, 300, "timeout"),
        (failing, 2000, "HTTP 503"),
        (garbled, 2000, "bad answer"),
        (closed, 2000, "error"),
    ] {
        let (msg, _) = setup(&env, &url, timeout_ms).await;
        let started = std::time::Instant::now();
        assert_eq!(
            dial_one(&ctx, &msg).await.unwrap(),
            DialResult::HandedBack(ContactState::Queued),
            "{why}"
        );
        if why == "timeout" {
            assert!(
                started.elapsed() < Duration::from_secs(2),
                "waited at most predialTimeoutMs"
            );
        }
        let (state, tries, _, hold) = contact(&env, msg.contact_id).await;
        assert_eq!(
            (state.as_str(), tries, hold.as_deref()),
            ("queued", 0, Some("predial_unavailable")),
            "{why}"
        );
        let events = events(&env, msg.contact_id).await;
        assert_eq!(events.len(), 1, "{why}");
        assert_eq!(
            (events[0].0.as_str(), events[0].1.as_deref()),
            ("deferred", Some("predial_unavailable"))
        );
        let error = events[0].2.as_ref().unwrap()["error"]
            .as_str()
            .unwrap()
            .to_owned();
        if why != "error" {
            assert!(error.contains(why), "{why}: {error}");
        }
    }
    assert!(sim.calls().is_empty(), "nothing called unchecked");
    let client = env.db.get().await.unwrap();
    let attempts: i64 = client
        .query_one("SELECT count(*) AS n FROM dial_attempts", &[])
        .await
        .unwrap()
        .get("n");
    assert_eq!(attempts, 0, "no attempt written");
    stop.cancel();
}

/// A private destination the operator did not allow is never contacted: the check is
/// unavailable and the contact waits (the gateway refuses such a URL at creation too).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forbidden_destination_holds_and_is_not_contacted() {
    let env = TestEnv::new().await;
    let stop = CancellationToken::new();
    let (url, received) = receiver(200, r#"{"allow": true}"#, Duration::ZERO).await;
    let (msg, _) = setup(&env, &url, 2000).await;
    let sim = sim(&env, answered(), stop.clone());
    // This worker allows no private network: 127.0.0.1 is refused before sending.
    let ctx = ctx_configured(
        &env,
        Carrier::Sim(sim.clone()),
        &[("WEBHOOK_ALLOWED_NETWORKS", "")],
    );
    assert_eq!(
        dial_one(&ctx, &msg).await.unwrap(),
        DialResult::HandedBack(ContactState::Queued)
    );
    assert!(received.lock().unwrap().is_empty(), "never contacted");
    assert!(sim.calls().is_empty());
    let events = events(&env, msg.contact_id).await;
    let error = events[0].2.as_ref().unwrap()["error"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(error.starts_with("blocked_destination"), "{error}");
    stop.cancel();
}

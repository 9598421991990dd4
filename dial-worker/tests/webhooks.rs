//! Webhooks: signed per Standard Webhooks, retried while the receiver fails, every attempt
//! recorded.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use common::*;
use dial_worker::carrier::sim::{OutcomeRule, SimBehavior, SimOutcome};
use dial_worker::webhooks::signature;
use testkit::TestEnv;
use tokio_util::sync::CancellationToken;

type Received = Arc<Mutex<Vec<(HeaderMap, Bytes)>>>;

/// A receiver that fails its first `fail_first` requests with 500.
async fn receiver(fail_first: usize) -> (String, Received) {
    let received: Received = Arc::default();
    let app = Router::new()
        .route(
            "/hook",
            post(
                move |State(r): State<Received>, headers: HeaderMap, body: Bytes| async move {
                    let mut r = r.lock().unwrap();
                    r.push((headers, body));
                    if r.len() <= fail_first {
                        StatusCode::INTERNAL_SERVER_ERROR
                    } else {
                        StatusCode::OK
                    }
                },
            ),
        )
        .with_state(received.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}/hook"), received)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn call_completed_arrives_signed_and_is_retried_when_the_receiver_fails() {
    let env = TestEnv::new().await;
    let stop = CancellationToken::new();
    let (url, received) = receiver(2).await;
    let ws = workspace(&env, 10).await;
    let spec = new_batch(ws).webhooks(on_call_complete(&url));
    let batch_id = batch(&env, &spec, &numbers("+1201555", 1, 0)).await;
    let behavior = SimBehavior {
        ring_ms: (10, 10),
        talk_ms: (10, 10),
        rule: OutcomeRule::Always(SimOutcome::Answered),
        report_answered: true,
        seed: 1,
    };
    let sim = sim(&env, behavior, stop.clone());
    let _w = worker(
        config(
            &env,
            &[("WEBHOOK_RETRY_BASE_MS", "100"), ("WEBHOOK_POLL_MS", "50")],
        ),
        &sim,
    )
    .await;
    release_due(&env).await;

    let client = env.db.get().await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let row = loop {
        let row = client
            .query_opt(
                "SELECT id, state, attempts, last_status_code, last_error, event, batch_id
                 FROM webhook_deliveries WHERE state <> 'pending'",
                &[],
            )
            .await
            .unwrap();
        if let Some(row) = row {
            break row;
        }
        assert!(tokio::time::Instant::now() < deadline, "never delivered");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let id: uuid::Uuid = row.get("id");
    assert_eq!(row.get::<_, String>("state"), "delivered");
    assert_eq!(
        row.get::<_, i32>("attempts"),
        3,
        "two failures, then success"
    );
    assert_eq!(row.get::<_, Option<i32>>("last_status_code"), Some(200));
    assert_eq!(row.get::<_, String>("event"), "call.completed");
    assert_eq!(row.get::<_, Option<uuid::Uuid>>("batch_id"), Some(batch_id));

    let received = received.lock().unwrap().clone();
    assert_eq!(received.len(), 3);
    let key = signature::secret_key(SECRET).unwrap();
    for (headers, body) in &received {
        let h = |name: &str| headers.get(name).unwrap().to_str().unwrap().to_owned();
        assert_eq!(h("webhook-id"), id.to_string(), "one id across retries");
        let ts: i64 = h("webhook-timestamp").parse().unwrap();
        assert!(signature::verify(
            &key,
            &h("webhook-id"),
            ts,
            body,
            &h("webhook-signature")
        ));
        let payload: serde_json::Value = serde_json::from_slice(body).unwrap();
        let data = &payload["callData"];
        assert_eq!(payload["success"], true);
        assert_eq!(data["batchId"], batch_id.to_string());
        assert_eq!(data["status"], "COMPLETED");
        assert_eq!(data["outcome"], "completed");
        assert_eq!(data["attempts"], 1);
        assert_eq!(data["phoneNumber"], "+12015550000");
        assert_eq!(data["metadata"]["k"], "v");
        assert_eq!(data["tags"][0], "t1");
        assert!(
            data["callerId"]
                .as_str()
                .unwrap()
                .starts_with("+1201555010")
        );
    }
    stop.cancel();
}

/// The webhook says of a call what every read surface says (shared::domain::views and
/// ::timing): a voicemail is COMPLETED, the duration is the whole seconds from the recorded
/// answer to the recorded end (not the carrier's own rounding), times have milliseconds.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn call_completed_follows_the_one_status_duration_and_time_rule() {
    let env = TestEnv::new().await;
    let stop = CancellationToken::new();
    let (url, received) = receiver(0).await;
    let ws = workspace(&env, 10).await;
    let spec = new_batch(ws).webhooks(on_call_complete(&url));
    let batch_id = batch(&env, &spec, &numbers("+1201555", 1, 9)).await;
    let behavior = SimBehavior {
        ring_ms: (10, 10),
        talk_ms: (1300, 1300),
        rule: OutcomeRule::Always(SimOutcome::Voicemail),
        report_answered: true,
        seed: 1,
    };
    let sim = sim(&env, behavior, stop.clone());
    let _w = worker(config(&env, &[("WEBHOOK_POLL_MS", "50")]), &sim).await;
    release_due(&env).await;

    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let body = loop {
        if let Some((_, body)) = received.lock().unwrap().first() {
            break body.clone();
        }
        assert!(tokio::time::Instant::now() < deadline, "never delivered");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let payload: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let data = &payload["callData"];
    assert_eq!(data["status"], "COMPLETED", "{data}");
    assert_eq!(data["outcome"], "voicemail");

    let client = env.db.get().await.unwrap();
    let row = client
        .query_one(
            "SELECT answered_at, ended_at, started_at FROM dial_attempts WHERE batch_id = $1",
            &[&batch_id],
        )
        .await
        .unwrap();
    let (answered, ended) = (row.get("answered_at"), row.get("ended_at"));
    assert_eq!(
        data["duration"],
        shared::domain::timing::call_duration_secs(answered, ended).unwrap()
    );
    assert_eq!(
        data["endTime"],
        shared::domain::timing::api_time(ended.unwrap())
    );
    assert_eq!(
        data["startTime"],
        shared::domain::timing::api_time(row.get::<_, chrono::DateTime<chrono::Utc>>(2))
    );
    assert_eq!(
        data["endTime"].as_str().unwrap().len(),
        24,
        "millisecond precision"
    );
    stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_receiver_that_never_answers_well_is_given_up_on() {
    let env = TestEnv::new().await;
    let stop = CancellationToken::new();
    let (url, received) = receiver(usize::MAX).await;
    let ws = workspace(&env, 10).await;
    let spec = new_batch(ws).webhooks(on_call_complete(&url));
    batch(&env, &spec, &numbers("+1201555", 1, 0)).await;
    let sim = sim(
        &env,
        SimBehavior {
            ring_ms: (0, 0),
            talk_ms: (0, 0),
            ..Default::default()
        },
        stop.clone(),
    );
    let _w = worker(
        config(
            &env,
            &[
                ("WEBHOOK_RETRY_BASE_MS", "50"),
                ("WEBHOOK_POLL_MS", "20"),
                ("WEBHOOK_RETRY_FOR_SECS", "1"),
            ],
        ),
        &sim,
    )
    .await;
    release_due(&env).await;
    let client = env.db.get().await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let row = client
            .query_opt(
                "SELECT attempts, last_status_code FROM webhook_deliveries WHERE state = 'failed'",
                &[],
            )
            .await
            .unwrap();
        if let Some(row) = row {
            let attempts: i32 = row.get("attempts");
            assert!(
                attempts >= 3,
                "retried with backoff before giving up: {attempts}"
            );
            assert_eq!(row.get::<_, Option<i32>>(1), Some(500));
            assert_eq!(received.lock().unwrap().len(), attempts as usize);
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "never gave up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // A manual retry (what `POST /api/webhook_deliveries/{id}/retry` writes) gets a whole retry
    // period again: several more tries, not one.
    let before = received.lock().unwrap().len();
    client
        .execute(
            "UPDATE webhook_deliveries SET state = 'pending', next_attempt_at = now(),
                 retry_from = now(), attempts_before_retry = attempts",
            &[],
        )
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let failed_again = client
            .query_opt(
                "SELECT 1 FROM webhook_deliveries WHERE state = 'failed'",
                &[],
            )
            .await
            .unwrap()
            .is_some();
        if failed_again {
            let after = received.lock().unwrap().len();
            assert!(
                after >= before + 3,
                "retried again with backoff: {before} → {after}"
            );
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never gave up again"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.cancel();
}

/// A manual retry while a send is still in flight: the retry's send succeeds first, then the
/// old send fails. The old send's failure must not undo the delivery (it used to write its
/// result unconditionally, turning a delivered row back into pending or failed).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_send_failing_after_a_manual_retry_does_not_undo_it() {
    let env = TestEnv::new().await;
    let stop = CancellationToken::new();
    let calls = Arc::new(Mutex::new(0usize));
    let app = Router::new()
        .route(
            "/hook",
            post(move |State(calls): State<Arc<Mutex<usize>>>| async move {
                let n = {
                    let mut c = calls.lock().unwrap();
                    *c += 1;
                    *c
                };
                if n == 1 {
                    // The first send is slow, then fails.
                    tokio::time::sleep(Duration::from_millis(1500)).await;
                    StatusCode::INTERNAL_SERVER_ERROR
                } else {
                    StatusCode::OK
                }
            }),
        )
        .with_state(calls.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });

    let ws = workspace(&env, 10).await;
    let client = env.db.get().await.unwrap();
    let id = uuid::Uuid::now_v7();
    client
        .execute(
            "INSERT INTO webhook_deliveries (id, workspace_id, event, subject_id, url, payload)
             VALUES ($1, $2, 'batch.completed', $1, $3, '{}')",
            &[&id, &ws.id, &url],
        )
        .await
        .unwrap();
    tokio::spawn(dial_worker::webhooks::delivery::run(
        env.db.clone(),
        dial_worker::webhooks::delivery::DeliverySettings {
            concurrency: 4,
            timeout: Duration::from_secs(5),
            retry_base: Duration::from_secs(60),
            retry_for: Duration::from_secs(3600),
            poll: Duration::from_millis(20),
            allowed_networks: Arc::new(testkit::TEST_ALLOWED_NETWORKS.parse().unwrap()),
        },
        stop.clone(),
    ));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while *calls.lock().unwrap() == 0 {
        assert!(tokio::time::Instant::now() < deadline, "never sent");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // What `POST /api/webhook_deliveries/{id}/retry` writes, while the first send is in flight.
    client
        .execute(
            "UPDATE webhook_deliveries SET state = 'pending', next_attempt_at = now(),
                 retry_from = now(), attempts_before_retry = attempts WHERE id = $1",
            &[&id],
        )
        .await
        .unwrap();
    // Both sends end (the retry's at once, the first after 1.5 s).
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(*calls.lock().unwrap(), 2);
    let row = client
        .query_one(
            "SELECT state, last_status_code FROM webhook_deliveries WHERE id = $1",
            &[&id],
        )
        .await
        .unwrap();
    assert_eq!(
        (
            row.get::<_, String>("state").as_str(),
            row.get::<_, Option<i32>>("last_status_code")
        ),
        ("delivered", Some(200))
    );
    stop.cancel();
}

/// The delivery loop alone, allowing `allowed` (CIDRs) besides public addresses.
fn deliver(env: &TestEnv, allowed: &str, stop: &CancellationToken) {
    tokio::spawn(dial_worker::webhooks::delivery::run(
        env.db.clone(),
        dial_worker::webhooks::delivery::DeliverySettings {
            concurrency: 8,
            timeout: Duration::from_secs(5),
            retry_base: Duration::from_millis(100),
            retry_for: Duration::from_secs(3600),
            poll: Duration::from_millis(20),
            allowed_networks: Arc::new(allowed.parse().unwrap()),
        },
        stop.clone(),
    ));
}

/// Queues a delivery of `event` about `subject` to `url`, due `due_in_ms` from now (negative:
/// overdue); returns its id.
async fn queue_delivery(
    env: &TestEnv,
    ws: uuid::Uuid,
    batch: Option<uuid::Uuid>,
    event: &str,
    subject: uuid::Uuid,
    url: &str,
    due_in_ms: i64,
) -> uuid::Uuid {
    let id = uuid::Uuid::now_v7();
    env.db
        .get()
        .await
        .unwrap()
        .execute(
            "INSERT INTO webhook_deliveries (id, workspace_id, batch_id, event, subject_id, url, payload, next_attempt_at)
             VALUES ($1, $2, $3, $4, $5, $6, jsonb_build_object('event', $4::text, 'subject', $5::uuid),
                     now() + make_interval(secs => $7::float8 / 1000))",
            &[&id, &ws, &batch, &event, &subject, &url, &(due_in_ms as f64)],
        )
        .await
        .unwrap();
    id
}

/// Waits until no delivery is pending; returns each one's (state, attempts, last_error).
async fn settled(env: &TestEnv) -> Vec<(uuid::Uuid, String, i32, Option<String>)> {
    let client = env.db.get().await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let rows = client
            .query(
                "SELECT id, state, attempts, last_error FROM webhook_deliveries ORDER BY id",
                &[],
            )
            .await
            .unwrap();
        if rows.iter().all(|r| r.get::<_, String>(1) != "pending") {
            return rows
                .iter()
                .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
                .collect();
        }
        assert!(tokio::time::Instant::now() < deadline, "still pending");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A batch's `batch.completed` is delivered after every `call.completed` of the batch: even when
/// it is due first (the scheduler writes it with its own `now`), and even when a call's
/// delivery fails and waits for its retry. It used to be claimed with the calls' deliveries and
/// sent alongside them (or alone, while one waited for its retry), so it could arrive first.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn batch_completed_arrives_after_every_call_completed() {
    let env = TestEnv::new().await;
    let stop = CancellationToken::new();
    // The first request fails: one call's delivery waits for its retry.
    let (url, received) = receiver(1).await;
    let ws = workspace(&env, 10).await;
    let batch_id = batch(&env, &new_batch(ws), &numbers("+1201555", 5, 0)).await;
    let calls = 12;
    for _ in 0..calls {
        queue_delivery(
            &env,
            ws.id,
            Some(batch_id),
            "call.completed",
            uuid::Uuid::now_v7(),
            &url,
            0,
        )
        .await;
    }
    queue_delivery(
        &env,
        ws.id,
        Some(batch_id),
        "batch.completed",
        batch_id,
        &url,
        -1000,
    )
    .await;
    deliver(&env, testkit::TEST_ALLOWED_NETWORKS, &stop);
    settled(&env).await;

    let events: Vec<(String, usize)> = received
        .lock()
        .unwrap()
        .iter()
        .enumerate()
        .map(|(i, (_, body))| {
            let v: serde_json::Value = serde_json::from_slice(body).unwrap();
            (v["event"].as_str().unwrap().to_owned(), i)
        })
        .collect();
    assert_eq!(
        events.len(),
        calls + 2,
        "each once, one call twice: {events:?}"
    );
    let batch_at = events
        .iter()
        .find(|(e, _)| e == "batch.completed")
        .map(|(_, i)| *i)
        .unwrap();
    assert_eq!(
        batch_at,
        events.len() - 1,
        "batch.completed came last, after the failed call's retry: {events:?}"
    );
    stop.cancel();
}

/// Deliveries to a private or reserved destination outside WEBHOOK_ALLOWED_NETWORKS are not
/// sent, fail at once with `blocked_destination` and are not retried: a literal address checked
/// before sending, a name checked on the addresses it resolves to. 127.0.0.1 is served under the
/// local allow-list, including through `localhost`. A URL the client cannot use fails at once
/// too (it used to stay pending with `builder error`, retried for a day).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn blocked_destinations_fail_at_once_and_are_never_sent() {
    let env = TestEnv::new().await;
    let stop = CancellationToken::new();
    let (url, received) = receiver(0).await;
    let port = url
        .split(':')
        .nth(2)
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .to_owned();
    let ws = workspace(&env, 10).await;
    let subject = uuid::Uuid::now_v7;
    let literal_v4 = format!("http://127.0.0.2:{port}/hook");
    let literal_v6 = format!("http://[::1]:{port}/hook");
    let mapped = format!("http://[::ffff:127.0.0.3]:{port}/hook");
    let by_name = format!("http://localhost:{port}/hook");
    let mut ids = Vec::new();
    for u in [
        &literal_v4,
        &literal_v6,
        &mapped,
        &"http://[".to_owned(),
        &url,
        &by_name,
    ] {
        ids.push(queue_delivery(&env, ws.id, None, "batch.completed", subject(), u, 0).await);
    }
    deliver(&env, testkit::TEST_ALLOWED_NETWORKS, &stop);
    let rows = settled(&env).await;
    let row = |id| rows.iter().find(|r| r.0 == id).unwrap().clone();
    for id in &ids[..3] {
        let (_, state, attempts, error) = row(*id);
        assert_eq!((state.as_str(), attempts), ("failed", 1), "{error:?}");
        assert!(
            error.as_deref().unwrap().starts_with("blocked_destination"),
            "{error:?}"
        );
    }
    let (_, state, attempts, error) = row(ids[3]);
    assert_eq!((state.as_str(), attempts), ("failed", 1));
    assert!(
        error.as_deref().unwrap().starts_with("invalid_url"),
        "{error:?}"
    );
    for id in &ids[4..] {
        assert_eq!(
            row(*id).1,
            "delivered",
            "127.0.0.1 is allowed: {:?}",
            row(*id)
        );
    }
    assert_eq!(
        received.lock().unwrap().len(),
        2,
        "only the allowed ones were sent"
    );
    stop.cancel();

    // Nothing allowed: `localhost` resolves only to forbidden addresses, so the resolver
    // refuses it before any connection.
    let env = TestEnv::new().await;
    let stop = CancellationToken::new();
    let ws = workspace(&env, 10).await;
    let id = queue_delivery(&env, ws.id, None, "batch.completed", subject(), &by_name, 0).await;
    deliver(&env, "", &stop);
    let rows = settled(&env).await;
    let (_, state, attempts, error) = rows.iter().find(|r| r.0 == id).unwrap().clone();
    assert_eq!((state.as_str(), attempts), ("failed", 1), "{error:?}");
    assert!(
        error
            .as_deref()
            .unwrap()
            .starts_with("blocked_destination: localhost is 127.0.0.1"),
        "{error:?}"
    );
    assert_eq!(received.lock().unwrap().len(), 2, "nothing more was sent");
    stop.cancel();
}

/// After a secret rotation (the gateway's `POST /api/workspace/webhook_secret` writes these
/// columns) every delivery carries two signatures for 24 h: a receiver holding either secret
/// verifies it. Once the window has passed, only the new secret signs.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn during_a_rotation_deliveries_are_signed_with_both_secrets() {
    const NEW: &str = "whsec_bmV3LXNlY3JldC1hZnRlci1yb3RhdGlvbg==";
    let env = TestEnv::new().await;
    let stop = CancellationToken::new();
    let (url, received) = receiver(0).await;
    let ws = workspace(&env, 10).await;
    let client = env.db.get().await.unwrap();
    client
        .execute(
            "UPDATE workspaces SET previous_webhook_secret = webhook_secret, webhook_secret = $2,
                 previous_webhook_secret_until = now() + interval '24 hours',
                 webhook_secret_rotated_at = now()
             WHERE id = $1",
            &[&ws.id, &NEW],
        )
        .await
        .unwrap();
    let spec = new_batch(ws).webhooks(on_call_complete(&url));
    batch(&env, &spec, &numbers("+1201555", 1, 0)).await;
    let behavior = SimBehavior {
        ring_ms: (10, 10),
        talk_ms: (10, 10),
        rule: OutcomeRule::Always(SimOutcome::Answered),
        report_answered: true,
        seed: 1,
    };
    let sim = sim(&env, behavior, stop.clone());
    let _w = worker(config(&env, &[("WEBHOOK_POLL_MS", "50")]), &sim).await;
    release_due(&env).await;
    let wait_for = |n: usize| {
        let received = received.clone();
        async move {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
            loop {
                if let Some(got) = received.lock().unwrap().get(n - 1).cloned() {
                    return got;
                }
                assert!(tokio::time::Instant::now() < deadline, "never delivered");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    let verifies = |secret: &str, (headers, body): &(HeaderMap, Bytes)| {
        let h = |name: &str| headers.get(name).unwrap().to_str().unwrap().to_owned();
        signature::verify(
            &signature::secret_key(secret).unwrap(),
            &h("webhook-id"),
            h("webhook-timestamp").parse().unwrap(),
            body,
            &h("webhook-signature"),
        )
    };

    let during = wait_for(1).await;
    let header = during.0["webhook-signature"].to_str().unwrap().to_owned();
    assert_eq!(header.split(' ').count(), 2, "{header}");
    assert!(verifies(NEW, &during), "the new secret verifies");
    assert!(verifies(SECRET, &during), "the old secret verifies");
    assert!(
        readme_verifies(NEW, &during),
        "the API guide's example, new secret"
    );
    assert!(
        readme_verifies(SECRET, &during),
        "the API guide's example, old secret"
    );

    // The window has passed: the next delivery is signed with the new secret alone.
    client
        .execute(
            "UPDATE workspaces SET previous_webhook_secret_until = now() - interval '1 second' WHERE id = $1",
            &[&ws.id],
        )
        .await
        .unwrap();
    batch(&env, &spec, &numbers("+1201556", 1, 0)).await;
    release_due(&env).await;
    let after = wait_for(2).await;
    let header = after.0["webhook-signature"].to_str().unwrap().to_owned();
    assert_eq!(header.split(' ').count(), 1, "{header}");
    assert!(verifies(NEW, &after));
    assert!(
        !verifies(SECRET, &after),
        "the old secret no longer verifies"
    );
    assert!(readme_verifies(NEW, &after));
    assert!(!readme_verifies(SECRET, &after));
    stop.cancel();
}

/// The API guide's verify example, run as a receiver runs it: its Python block, copied out of
/// docs/api.md, given the delivery's headers and body.
fn readme_verifies(secret: &str, (headers, body): &(HeaderMap, Bytes)) -> bool {
    use std::io::Write;
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/api.md")).unwrap();
    let fence = "```python\nimport base64, hmac";
    let start = readme.find(fence).expect("the API guide's verify example") + "```python\n".len();
    let code = &readme[start..][..readme[start..].find("```").unwrap()];
    let h = |name: &str| headers.get(name).unwrap().to_str().unwrap().to_owned();
    let headers = serde_json::json!({
        "webhook-id": h("webhook-id"),
        "webhook-timestamp": h("webhook-timestamp"),
        "webhook-signature": h("webhook-signature"),
    });
    let script = format!(
        "{code}\nimport json, sys\n\
         sys.exit(0 if verify(sys.argv[1], json.loads(sys.argv[2]), sys.stdin.buffer.read()) else 1)\n"
    );
    let mut child = std::process::Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(secret)
        .arg(headers.to_string())
        .stdin(std::process::Stdio::piped())
        .spawn()
        .expect("python3 runs the API guide's example");
    child.stdin.take().unwrap().write_all(body).unwrap();
    child.wait().unwrap().success()
}

/// A receiver's redirect is not followed: it could point the request anywhere, inside too.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redirects_are_not_followed() {
    let env = TestEnv::new().await;
    let stop = CancellationToken::new();
    let (target, reached) = receiver(0).await;
    let app = Router::new().route(
        "/hook",
        post(move || {
            let target = target.clone();
            async move { (StatusCode::TEMPORARY_REDIRECT, [("location", target)]) }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    let ws = workspace(&env, 10).await;
    let id = queue_delivery(&env, ws.id, None, "batch.completed", ws.id, &url, 0).await;
    deliver(&env, testkit::TEST_ALLOWED_NETWORKS, &stop);
    let client = env.db.get().await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let row = client
            .query_one(
                "SELECT attempts, last_status_code FROM webhook_deliveries WHERE id = $1",
                &[&id],
            )
            .await
            .unwrap();
        if row.get::<_, i32>(0) >= 1 {
            assert_eq!(row.get::<_, Option<i32>>(1), Some(307));
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "never tried");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        reached.lock().unwrap().is_empty(),
        "the redirect was not followed"
    );
    stop.cancel();
}

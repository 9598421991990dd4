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

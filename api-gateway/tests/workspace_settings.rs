//! `GET`/`PATCH /api/workspace` and `POST /api/workspace/webhook_secret`: the tenant changes its
//! own settings, never the operator's limits (403 naming the field), and a rotation keeps both
//! secrets verifying deliveries for 24 hours.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::HeaderMap;
use serde_json::{Value, json};
use testkit::http::SendJson;

use common::{error_fields, spawn_app};

#[tokio::test]
async fn get_shows_the_settings_and_only_the_secrets_prefix() {
    let app = spawn_app().await;
    let body: Value = app.get("/api/workspace").send_json().await;
    let client = app.env.db.get().await.unwrap();
    let secret: String = client
        .query_one(
            "SELECT webhook_secret FROM workspaces WHERE id = $1",
            &[&app.workspace_id],
        )
        .await
        .unwrap()
        .get("webhook_secret");
    assert_eq!(body["id"], app.workspace_id.to_string());
    assert_eq!(body["name"], "test");
    assert_eq!(body["maxConcurrentDials"], 20);
    assert_eq!(body["maxCallsPerSecond"], Value::Null);
    assert_eq!(
        body["ceilings"],
        json!({"maxCallsPerSecond": 30, "maxAttempts": 5})
    );
    assert_eq!(
        body["retryDefaults"],
        json!({"maxAttempts": 3, "busyDelay": 300000, "noAnswerDelay": 3600000})
    );
    assert_eq!(body["defaultRegion"], "US");
    assert_eq!(body["webhookSecret"]["prefix"], secret[..10]);
    assert!(
        !body.to_string().contains(&secret),
        "the whole secret is never shown"
    );
    let r = app
        .http
        .get(app.url("/api/workspace"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}

#[tokio::test]
async fn patch_changes_the_tenants_settings_and_new_jobs_use_them() {
    let app = spawn_app().await;
    let r = app
        .http
        .patch(app.url("/api/workspace"))
        .bearer_auth(&app.key)
        .json(&json!({"retryDefaults": {"maxAttempts": 4, "busyDelay": 60000}, "defaultRegion": "GB"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(
        body["retryDefaults"],
        json!({"maxAttempts": 4, "busyDelay": 60000, "noAnswerDelay": 3600000})
    );
    assert_eq!(body["defaultRegion"], "GB");
    let again: Value = app.get("/api/workspace").send_json().await;
    assert_eq!(again["retryDefaults"], body["retryDefaults"]);

    // A Vogent job (which names no retry strategy) takes the new defaults.
    let agent = app.create_agent().await;
    let job = app.create_job(&agent, 1).await;
    let client = app.env.db.get().await.unwrap();
    let row = client
        .query_one(
            "SELECT retry_max_attempts, retry_busy_delay_ms, retry_no_answer_delay_ms FROM batches WHERE id = $1",
            &[&uuid::Uuid::parse_str(job["id"].as_str().unwrap()).unwrap()],
        )
        .await
        .unwrap();
    assert_eq!(
        (
            row.get::<_, i32>("retry_max_attempts"),
            row.get::<_, i64>("retry_busy_delay_ms"),
            row.get::<_, i64>("retry_no_answer_delay_ms")
        ),
        (4, 60000, 3600000)
    );

    // Another workspace is untouched.
    let other = app.other_workspace_key().await;
    let theirs: Value = app
        .request_as(&other, reqwest::Method::GET, "/api/workspace")
        .send_json()
        .await;
    assert_eq!(theirs["retryDefaults"]["maxAttempts"], 3);
    assert_eq!(theirs["defaultRegion"], "US");
}

#[tokio::test]
async fn the_operators_limits_answer_403_naming_each_field() {
    let app = spawn_app().await;
    let patch = |body: Value| {
        app.http
            .patch(app.url("/api/workspace"))
            .bearer_auth(&app.key)
            .json(&body)
            .send()
    };
    for (body, fields) in [
        (
            json!({"maxConcurrentDials": 500}),
            vec!["maxConcurrentDials"],
        ),
        (json!({"maxCallsPerSecond": 100}), vec!["maxCallsPerSecond"]),
        (
            json!({"ceilings": {"maxCallsPerSecond": 100, "maxAttempts": 5}}),
            vec!["ceilings"],
        ),
        (
            json!({"maxConcurrentDials": 21, "maxCallsPerSecond": null, "ceilings": {}, "defaultRegion": "GB"}),
            vec!["maxConcurrentDials", "ceilings"],
        ),
    ] {
        let r = patch(body.clone()).await.unwrap();
        assert_eq!(error_fields(r, 403).await, fields, "{body}");
    }
    // Nothing was changed by the refused requests, the allowed field included.
    let now: Value = app.get("/api/workspace").send_json().await;
    assert_eq!(now["maxConcurrentDials"], 20);
    assert_eq!(now["defaultRegion"], "US");

    // Sending back what GET showed is fine: unchanged limits are not a change.
    let mut round_trip = now.clone();
    round_trip["retryDefaults"]["maxAttempts"] = json!(2);
    let r = patch(round_trip).await.unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["retryDefaults"]["maxAttempts"], 2);
}

#[tokio::test]
async fn bad_values_are_named() {
    let app = spawn_app().await;
    let patch = |body: Value| {
        app.http
            .patch(app.url("/api/workspace"))
            .bearer_auth(&app.key)
            .json(&body)
            .send()
    };
    let r = patch(
        json!({"retryDefaults": {"maxAttempts": 6, "busyDelay": -1}, "defaultRegion": "usa"}),
    )
    .await
    .unwrap();
    assert_eq!(
        error_fields(r, 422).await,
        [
            "retryDefaults.maxAttempts",
            "retryDefaults.busyDelay",
            "defaultRegion"
        ]
    );
    let r = patch(json!({"retryDefaults": {"maxAttempts": "three"}}))
        .await
        .unwrap();
    assert_eq!(error_fields(r, 400).await, ["retryDefaults.maxAttempts"]);
    let r = patch(json!({"colour": "blue"})).await.unwrap();
    assert_eq!(
        error_fields(r, 422).await,
        ["colour"],
        "an unknown field is named (a 422 unknown_field, as on every body)"
    );
    // A region the phone library does not know would make every number written without `+`
    // a rejected row.
    let r = patch(json!({"defaultRegion": "XX"})).await.unwrap();
    assert_eq!(error_fields(r, 422).await, ["defaultRegion"]);
    let r = patch(json!({"id": uuid::Uuid::nil()})).await.unwrap();
    assert_eq!(error_fields(r, 422).await, ["id"]);
    let now: Value = app.get("/api/workspace").send_json().await;
    assert_eq!(now["retryDefaults"]["maxAttempts"], 3);
}

/// The compliance policy is the tenant's own: `GET` shows it, `PATCH` sets each part (and turns
/// the hours and the cap off), the columns the scheduler and the dial worker read change, and
/// each bad value is a 422 naming its field.
#[tokio::test]
async fn the_compliance_policy_is_read_and_changed_through_the_api() {
    let app = spawn_app().await;
    let patch = |body: Value| {
        app.http
            .patch(app.url("/api/workspace"))
            .bearer_auth(&app.key)
            .json(&body)
            .send()
    };
    let columns = async || {
        let client = app.env.db.get().await.unwrap();
        let r = client
            .query_one(
                "SELECT recipient_hours_start, recipient_hours_end, allow_unknown_timezone,
                        max_calls_per_number_count, max_calls_per_number_days
                 FROM workspaces WHERE id = $1",
                &[&app.workspace_id],
            )
            .await
            .unwrap();
        (
            r.get::<_, Option<i16>>("recipient_hours_start"),
            r.get::<_, Option<i16>>("recipient_hours_end"),
            r.get::<_, bool>("allow_unknown_timezone"),
            r.get::<_, Option<i32>>("max_calls_per_number_count"),
            r.get::<_, Option<i32>>("max_calls_per_number_days"),
        )
    };
    let r = patch(
        json!({"recipientCallingHours": "09:30-20:00", "allowUnknownTimezone": false,
                         "maxCallsPerNumber": {"count": 7, "days": 7}}),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["recipientCallingHours"], "09:30-20:00");
    assert_eq!(body["allowUnknownTimezone"], false);
    assert_eq!(body["maxCallsPerNumber"], json!({"count": 7, "days": 7}));
    let shown: Value = app.get("/api/workspace").send_json().await;
    for field in [
        "recipientCallingHours",
        "allowUnknownTimezone",
        "maxCallsPerNumber",
    ] {
        assert_eq!(shown[field], body[field], "{field}");
    }
    assert_eq!(
        columns().await,
        (Some(570), Some(1200), false, Some(7), Some(7))
    );

    // One part at a time; the others stay.
    let r = patch(json!({"allowUnknownTimezone": true})).await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        columns().await,
        (Some(570), Some(1200), true, Some(7), Some(7))
    );
    // Off: the hours by "off", the cap by null.
    let r = patch(json!({"recipientCallingHours": "off", "maxCallsPerNumber": null}))
        .await
        .unwrap();
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["recipientCallingHours"], "off");
    assert_eq!(body["maxCallsPerNumber"], Value::Null);
    assert_eq!(columns().await, (None, None, true, None, None));
    // And back to the safe default; sending back what GET showed changes nothing.
    let r = patch(json!({"recipientCallingHours": "08:00-21:00"}))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let shown: Value = app.get("/api/workspace").send_json().await;
    let r = patch(shown.clone()).await.unwrap();
    assert_eq!(r.status(), 200, "a round trip is allowed");
    assert_eq!(columns().await, (Some(480), Some(1260), true, None, None));

    // Bad values: 422 naming each field, and nothing changes.
    for (body, fields) in [
        (
            json!({"recipientCallingHours": "21:00-08:00"}),
            vec!["recipientCallingHours"],
        ),
        (
            json!({"recipientCallingHours": "9 to 5"}),
            vec!["recipientCallingHours"],
        ),
        (
            json!({"maxCallsPerNumber": {"count": 0, "days": 7}}),
            vec!["maxCallsPerNumber.count"],
        ),
        (
            json!({"maxCallsPerNumber": {"count": 7, "days": 400}, "recipientCallingHours": "25:00-26:00"}),
            vec!["recipientCallingHours", "maxCallsPerNumber.days"],
        ),
    ] {
        let r = patch(body.clone()).await.unwrap();
        assert_eq!(error_fields(r, 422).await, fields, "{body}");
    }
    // Wrong types and missing parts are 400s naming the field.
    for (body, field) in [
        (
            json!({"allowUnknownTimezone": "yes"}),
            "allowUnknownTimezone",
        ),
        (
            json!({"maxCallsPerNumber": {"count": 7}}),
            "maxCallsPerNumber",
        ),
        (json!({"recipientCallingHours": 8}), "recipientCallingHours"),
    ] {
        let r = patch(body.clone()).await.unwrap();
        assert_eq!(error_fields(r, 400).await, [field], "{body}");
    }
    assert_eq!(columns().await, (Some(480), Some(1260), true, None, None));
}

type Received = Arc<Mutex<Vec<(HeaderMap, Bytes)>>>;

async fn receiver() -> (String, Received) {
    let received: Received = Arc::default();
    let r = received.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: HeaderMap, body: Bytes| {
            let r = r.clone();
            async move {
                r.lock().unwrap().push((headers, body));
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}/hook"), received)
}

/// Rotates through the API, then lets the dial worker's delivery loop send a webhook: the one
/// delivery verifies with the old secret and with the new one. After the window, only the new.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotation_returns_the_new_secret_once_and_both_verify_for_24_hours() {
    use dial_worker::webhooks::signature;
    let app = spawn_app().await;
    let client = app.env.db.get().await.unwrap();
    let secret_of = || async {
        client
            .query_one(
                "SELECT webhook_secret FROM workspaces WHERE id = $1",
                &[&app.workspace_id],
            )
            .await
            .unwrap()
            .get::<_, String>("webhook_secret")
    };
    let old = secret_of().await;
    let r = app
        .post("/api/workspace/webhook_secret")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let rotated: Value = r.json().await.unwrap();
    let new = rotated["secret"].as_str().unwrap().to_owned();
    assert!(new.starts_with("whsec_") && new != old);
    assert_eq!(secret_of().await, new);
    assert_eq!(rotated["prefix"], new[..10]);
    let until =
        chrono::DateTime::parse_from_rfc3339(rotated["previousValidUntil"].as_str().unwrap())
            .unwrap();
    let hours =
        (until.with_timezone(&chrono::Utc) - chrono::Utc::now()).num_minutes() as f64 / 60.0;
    assert!((23.9..=24.0).contains(&hours), "{hours} h");

    let shown: Value = app.get("/api/workspace").send_json().await;
    assert_eq!(shown["webhookSecret"]["prefix"], new[..10]);
    assert_eq!(
        shown["webhookSecret"]["previousValidUntil"],
        rotated["previousValidUntil"]
    );
    assert!(!shown.to_string().contains(&new), "shown once only");

    let (url, received) = receiver().await;
    let deliver = |n: usize| {
        let (db, url, received, ws) = (
            app.env.db.clone(),
            url.clone(),
            received.clone(),
            app.workspace_id,
        );
        async move {
            let c = db.get().await.unwrap();
            c.execute(
                "INSERT INTO webhook_deliveries (id, workspace_id, event, subject_id, url, payload)
                 VALUES ($1, $2, 'call.completed', $3, $4, '{\"success\": true}')",
                &[&uuid::Uuid::now_v7(), &ws, &uuid::Uuid::now_v7(), &url],
            )
            .await
            .unwrap();
            let stop = tokio_util::sync::CancellationToken::new();
            let settings = dial_worker::webhooks::delivery::DeliverySettings {
                concurrency: 1,
                timeout: Duration::from_secs(5),
                retry_base: Duration::from_secs(1),
                retry_for: Duration::from_secs(60),
                poll: Duration::from_millis(20),
                allowed_networks: std::sync::Arc::new(
                    testkit::TEST_ALLOWED_NETWORKS.parse().unwrap(),
                ),
            };
            let task = tokio::spawn(dial_worker::webhooks::delivery::run(
                db,
                settings,
                stop.clone(),
            ));
            let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
            let got = loop {
                if let Some(got) = received.lock().unwrap().get(n - 1).cloned() {
                    break got;
                }
                assert!(tokio::time::Instant::now() < deadline, "never delivered");
                tokio::time::sleep(Duration::from_millis(20)).await;
            };
            stop.cancel();
            task.await.unwrap();
            got
        }
    };
    let verifies = |secret: &str, (headers, body): &(HeaderMap, Bytes)| {
        let h = |name: &str| headers[name].to_str().unwrap().to_owned();
        signature::verify(
            &signature::secret_key(secret).unwrap(),
            &h("webhook-id"),
            h("webhook-timestamp").parse().unwrap(),
            body,
            &h("webhook-signature"),
        )
    };
    let during = deliver(1).await;
    assert!(verifies(&new, &during), "the new secret verifies");
    assert!(verifies(&old, &during), "the old secret still verifies");

    client
        .execute(
            "UPDATE workspaces SET previous_webhook_secret_until = now() - interval '1 second' WHERE id = $1",
            &[&app.workspace_id],
        )
        .await
        .unwrap();
    let after = deliver(2).await;
    assert!(verifies(&new, &after));
    assert!(
        !verifies(&old, &after),
        "24 h later the old one no longer does"
    );
    let shown: Value = app.get("/api/workspace").send_json().await;
    assert_eq!(shown["webhookSecret"]["previousValidUntil"], Value::Null);
}

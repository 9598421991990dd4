//! The gateway's edges (docs/security.md): URLs the fleet will call are parsed and refused at
//! creation when unusable or pointing at a literal private address; each workspace's request
//! rate is limited fleet-wide (429 with `Retry-After`), the probes and the carrier's callbacks
//! exempt, and a Redis outage lets requests through.

mod common;

use std::process::Command;

use api_gateway::config::Config;
use common::{TestApp, error_fields, spawn_app};
use serde_json::{Value, json};
use shared::config::Env;
use testkit::http::SendJson;

fn dialgen(agent: &str, hooks: Value) -> Value {
    json!({"agentId": agent, "userId": "u1",
           "contacts": [{"phoneNumber": "+12015550100"}],
           "options": {"webhooks": hooks}})
}

async fn batches(app: &TestApp) -> i64 {
    let client = app.env.db.get().await.unwrap();
    client
        .query_one("SELECT count(*) FROM batches", &[])
        .await
        .unwrap()
        .get(0)
}

/// `api-gateway workspace update ID …` as the operator runs it.
fn operator_update(app: &TestApp, args: &[&str]) -> Value {
    let ws = app.workspace_id.to_string();
    let mut all = vec!["workspace", "update", &ws];
    all.extend_from_slice(args);
    all.push("--json");
    let out = Command::new(env!("CARGO_BIN_EXE_api-gateway"))
        .args(&all)
        .envs(app.env.env_vars())
        .env("RUST_LOG", "error")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn urls_the_client_cannot_use_are_refused_at_creation() {
    let app = spawn_app().await;
    for bad in [
        "https://\u{1}x\"]<>\u{9d}",
        "http://[",
        "ftp://files.example.com/x",
        "https://",
        "https://exa mple.com/a",
        "/relative/answer",
    ] {
        let r = app
            .post("/api/agents")
            .json(&json!({"name": "bot", "answerUrl": bad}))
            .send()
            .await
            .unwrap();
        assert_eq!(error_fields(r, 422).await, vec!["answerUrl"], "{bad:?}");
    }
    let agent = app.create_agent().await;
    for bad in [
        "http://[",
        "https://\u{7f}x.example/h",
        "mailto:x@example.com",
    ] {
        let r = app
            .post("/api/v1/batch")
            .json(&dialgen(&agent, json!({"onCallComplete": bad})))
            .send()
            .await
            .unwrap();
        assert_eq!(
            error_fields(r, 422).await,
            vec!["options.webhooks.onCallComplete"],
            "{bad:?}"
        );
        let r = app
            .post("/api/batch_dial_jobs")
            .json(
                &json!({"name": "job", "callAgentId": agent, "maxConcurrentDials": 1,
                          "rows": [{"toNumber": "+12015550100"}],
                          "webhooks": {"onBatchComplete": bad}}),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(
            error_fields(r, 422).await,
            vec!["webhooks.onBatchComplete"],
            "{bad:?}"
        );
    }
    assert_eq!(batches(&app).await, 0, "nothing created");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_to_literal_private_addresses_are_refused_at_creation() {
    let app = spawn_app().await;
    let agent = app.create_agent().await;
    for bad in [
        "http://127.0.0.2:9/hook",
        "http://[::1]:9/hook",
        "http://[::ffff:127.0.0.2]:9/hook",
        "http://2130706434:9/hook",
        "http://0.0.0.0:9/hook",
    ] {
        let r = app
            .post("/api/v1/batch")
            .json(&dialgen(&agent, json!({"onBatchComplete": bad})))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 422, "{bad}");
        let body: Value = r.json().await.unwrap();
        let detail = &body["error"]["details"][0];
        assert_eq!(detail["field"], "options.webhooks.onBatchComplete");
        assert!(
            detail["message"]
                .as_str()
                .unwrap()
                .contains("private or reserved"),
            "{body}"
        );
    }
    assert_eq!(batches(&app).await, 0, "nothing created");

    // 127.0.0.1 is in the test allow-list (as in deploy/local); a name is judged at delivery.
    for ok in ["http://127.0.0.1:9/hook", "http://localhost:9/hook"] {
        let r = app
            .post("/api/v1/batch")
            .json(&dialgen(&agent, json!({"onCallComplete": ok})))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202, "{ok}: {}", r.text().await.unwrap());
    }

    // A job's webhooks changed later are checked the same way.
    let job = app.create_job(&agent, 1).await;
    let id = job["id"].as_str().unwrap();
    let r = app
        .put(&format!("/api/batch_dial_jobs/{id}"))
        .json(&json!({"webhooks": {"onCallComplete": "http://[::1]/h"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(error_fields(r, 422).await, vec!["webhooks.onCallComplete"]);
}

/// Fires `n` requests at once; returns the responses' statuses and `Retry-After` values.
async fn burst(app: &TestApp, key: &str, path: &str, n: usize) -> Vec<(u16, Option<u64>)> {
    let requests = (0..n).map(|_| async {
        let r = app
            .request_as(key, reqwest::Method::GET, path)
            .send()
            .await
            .unwrap();
        let retry = r
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap().parse().unwrap());
        let status = r.status().as_u16();
        if status == 429 {
            let body: Value = r.json().await.unwrap();
            assert_eq!(body["error"]["code"], "rate_limited", "{body}");
            assert!(body["error"]["details"].is_array(), "{body}");
        }
        (status, retry)
    });
    futures_util::future::join_all(requests).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_workspace_over_its_rate_gets_429_with_retry_after_and_the_others_are_served() {
    let app = spawn_app().await;
    let shown: Value = app.get("/api/workspace").send_json().await;
    assert_eq!(shown["requestsPerSecond"], 50, "{shown}");
    assert_eq!(shown["requestBurst"], 100, "{shown}");

    // The tenant cannot raise its own rate.
    let r = app
        .http
        .patch(app.url("/api/workspace"))
        .bearer_auth(&app.key)
        .json(&json!({"requestsPerSecond": 1000, "requestBurst": 5000}))
        .send()
        .await
        .unwrap();
    let mut refused = error_fields(r, 403).await;
    refused.sort();
    assert_eq!(refused, vec!["requestBurst", "requestsPerSecond"]);

    // The operator lowers it.
    let updated = operator_update(
        &app,
        &["--requests-per-second", "2", "--request-burst", "5"],
    );
    assert_eq!(updated["requestsPerSecond"], 2);
    assert_eq!(updated["requestBurst"], 5);

    let answers = burst(&app, &app.key, "/api/workspace", 12).await;
    let served = answers.iter().filter(|(s, _)| *s == 200).count();
    let limited: Vec<_> = answers.iter().filter(|(s, _)| *s == 429).collect();
    // The burst, and at most one more if the 12 took over half a second to arrive.
    assert!((5..=6).contains(&served), "{answers:?}");
    assert_eq!(limited.len(), 12 - served, "{answers:?}");
    for (_, retry) in &limited {
        let retry = retry.expect("Retry-After on every 429");
        assert!((1..=4).contains(&retry), "{retry}");
    }

    // Another workspace is served meanwhile.
    let other = app.other_workspace_key().await;
    let answers = burst(&app, &other, "/api/workspace", 10).await;
    assert!(answers.iter().all(|(s, _)| *s == 200), "{answers:?}");

    // Probes and carrier callbacks carry no API key and are never counted or refused.
    for _ in 0..20 {
        let r = app.http.get(app.url("/healthz")).send().await.unwrap();
        assert_eq!(r.status(), 200);
        let r = app.http.get(app.url("/readyz")).send().await.unwrap();
        assert_eq!(r.status(), 200);
        let r = app
            .http
            .post(app.url(&format!("/carrier/status/{}", uuid::Uuid::now_v7())))
            .form(&[("CallSid", "CA1"), ("CallStatus", "completed")])
            .send()
            .await
            .unwrap();
        assert_ne!(r.status(), 429);
    }

    // After waiting as told, the workspace is served again.
    let wait = limited.iter().filter_map(|(_, r)| *r).max().unwrap();
    tokio::time::sleep(std::time::Duration::from_secs(wait)).await;
    let r = app.get("/api/workspace").send().await.unwrap();
    assert_eq!(r.status(), 200);
}

/// With Redis unreachable the limiter lets every request through and counts it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_redis_requests_are_let_through_and_counted() {
    shared::metrics::install().expect("recorder");
    let app = spawn_app().await;
    app.env
        .db
        .get()
        .await
        .unwrap()
        .execute(
            "UPDATE workspaces SET requests_per_second = 1, request_burst = 1",
            &[],
        )
        .await
        .unwrap();
    // A second gateway on the same database, its Redis a closed port.
    let mut pairs = app.env.env_vars();
    pairs.retain(|(k, _)| k != "REDIS_URL");
    pairs.push(("REDIS_URL".into(), "redis://127.0.0.1:1/".into()));
    pairs.push(("GATEWAY_ADDR".into(), "127.0.0.1:0".into()));
    let config = Config::from_env(&Env::from_pairs(pairs)).unwrap();
    let stop = tokio_util::sync::CancellationToken::new();
    let (addr, _) = api_gateway::spawn(config, stop.clone()).await.unwrap();
    for _ in 0..10 {
        let r = app
            .http
            .get(format!("http://{addr}/api/workspace"))
            .bearer_auth(&app.key)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "fail open");
    }
    let metrics = shared::metrics::render().unwrap();
    let counted: f64 = metrics
        .lines()
        .find(|l| l.starts_with(shared::metrics::RATE_LIMIT_FAIL_OPEN_TOTAL))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    assert!(counted >= 10.0, "{metrics}");
    stop.cancel();
}

//! The edges of issue 29, from outside over HTTP with every role running: a flooding workspace
//! gets 429 with `Retry-After` while another is served; webhooks to literal private addresses
//! are refused at creation, a name that resolves to a forbidden address is blocked at delivery
//! (`blocked_destination`, not retried), 127.0.0.1 works under the local allow-list, and
//! `batch.completed` arrives after every `call.completed`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use serde_json::{Value, json};
use system_tests::stack::Stack;
use testkit::http::SendJson;

/// A receiver on 127.0.0.1 recording each payload's event in arrival order.
async fn receiver() -> (u16, Arc<Mutex<Vec<String>>>) {
    let got: Arc<Mutex<Vec<String>>> = Arc::default();
    let sink = got.clone();
    let app = axum::Router::new().fallback(axum::routing::post(move |body: Bytes| {
        let sink = sink.clone();
        async move {
            let v: Value = serde_json::from_slice(&body).unwrap_or_default();
            let event = v["event"]
                .as_str()
                .map_or_else(|| "call.completed".to_owned(), str::to_owned);
            sink.lock().unwrap().push(event);
            "ok"
        }
    }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (port, got)
}

fn batch_body(agent: &str, numbers: std::ops::Range<u32>, hooks: Value) -> Value {
    let contacts: Vec<Value> = numbers
        .map(|i| json!({"phoneNumber": format!("+1201555{:04}", 3000 + i)}))
        .collect();
    json!({"agentId": agent, "userId": "u1", "contacts": contacts,
           "options": {"webhooks": hooks}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_flood_gets_429_with_retry_after_while_another_workspace_is_served() {
    let stack = Stack::builder("flood").dial_workers(0).start().await;
    let client = stack.env.db.get().await.unwrap();
    client
        .execute(
            "UPDATE workspaces SET requests_per_second = 10, request_burst = 10 WHERE id = $1",
            &[&stack.workspace],
        )
        .await
        .unwrap();
    let other = api_gateway::admin::create_workspace_with(
        &stack.env.db,
        "other",
        5,
        &api_gateway::admin::Compliance::off(),
    )
    .await
    .unwrap();
    let batch: Value = stack
        .post("/api/v1/batch", batch_body(&stack.agent, 0..1, json!({})))
        .send_json()
        .await;
    let check = format!(
        "/api/v1/batch/check-status?batchId={}",
        batch["batchId"].as_str().unwrap()
    );

    // The flood: 4 loops as fast as they go for 2 s, far beyond 10 a second.
    let flood = (0..4).map(|_| async {
        let (mut served, mut refused) = (0, 0);
        let until = tokio::time::Instant::now() + Duration::from_secs(2);
        while tokio::time::Instant::now() < until {
            let r = stack.get(&check).send().await.unwrap();
            match r.status().as_u16() {
                200 => served += 1,
                429 => {
                    let retry: u64 = r.headers()["retry-after"]
                        .to_str()
                        .unwrap()
                        .parse()
                        .unwrap();
                    assert!(retry >= 1);
                    let body: Value = r.json().await.unwrap();
                    assert_eq!(body["error"]["code"], "rate_limited");
                    refused += 1;
                }
                s => panic!("{s}"),
            }
        }
        (served, refused)
    });
    // Meanwhile the other workspace is served every time.
    let other_side = async {
        let mut statuses = Vec::new();
        for _ in 0..20 {
            let r = stack
                .http
                .get(format!("{}/api/v1/batch/list", stack.gateway))
                .bearer_auth(&other.api_key)
                .send()
                .await
                .unwrap();
            statuses.push(r.status().as_u16());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        statuses
    };
    let (counts, statuses) = tokio::join!(futures_util::future::join_all(flood), other_side);
    let served: usize = counts.iter().map(|c| c.0).sum();
    let refused: usize = counts.iter().map(|c| c.1).sum();
    // Burst 10 and 10 a second for 2 s: about 30, a little slack for the edges.
    assert!((10..=34).contains(&served), "served {served}");
    assert!(refused > served, "refused {refused}");
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    let health = stack
        .http
        .get(format!("{}/readyz", stack.gateway))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200, "the probe is never limited");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn webhooks_reach_only_allowed_destinations_and_batch_completed_comes_last() {
    // Workers started below, each with its own allow-list.
    let stack = Stack::builder("hooks").dial_workers(0).start().await;
    let (port, got) = receiver().await;

    // Literal forbidden addresses are refused at creation, naming the field.
    for bad in [
        format!("http://127.0.0.2:{port}/hook"),
        format!("http://[::1]:{port}/hook"),
    ] {
        let r = stack
            .post(
                "/api/v1/batch",
                batch_body(&stack.agent, 0..1, json!({"onCallComplete": bad})),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 422, "{bad}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(
            body["error"]["details"][0]["field"],
            "options.webhooks.onCallComplete"
        );
    }

    // A name is accepted, and judged at delivery on what it resolves to: `localhost` is
    // 127.0.0.1, outside this worker's allow-list (another loopback address).
    let by_name = format!("http://localhost:{port}/hook");
    let blocked: Value = stack
        .post(
            "/api/v1/batch",
            batch_body(&stack.agent, 0..1, json!({"onCallComplete": by_name})),
        )
        .send_json()
        .await;
    let blocked_id = blocked["batchId"].as_str().unwrap().to_owned();
    let worker = stack.dial_worker(&[("WEBHOOK_ALLOWED_NETWORKS", "127.0.0.9/32")]);
    let mut delivery = Value::Null;
    stack
        .wait_for(
            "the blocked delivery",
            Duration::from_secs(60),
            async || {
                let list: Value = stack
                    .get(&format!("/api/webhook_deliveries?batchId={blocked_id}"))
                    .send_json()
                    .await;
                delivery = list["data"][0].clone();
                delivery["state"] == "failed"
            },
        )
        .await;
    assert_eq!(delivery["attempts"], 1, "not retried: {delivery}");
    assert!(
        delivery["lastError"]
            .as_str()
            .unwrap()
            .starts_with("blocked_destination"),
        "{delivery}"
    );
    assert!(got.lock().unwrap().is_empty(), "nothing was sent");
    worker.cancel();

    // Under the local allow-list (127.0.0.1/32) the same name and the literal are delivered,
    // the batch's completion after each of its calls.
    let _worker = stack.dial_worker(&[]);
    let hooks = json!({"onCallComplete": by_name,
                       "onBatchComplete": format!("http://127.0.0.1:{port}/done")});
    let created: Value = stack
        .post("/api/v1/batch", batch_body(&stack.agent, 10..16, hooks))
        .send_json()
        .await;
    assert!(created["batchId"].is_string(), "{created}");
    stack
        .wait_for("the webhooks", Duration::from_secs(60), async || {
            got.lock().unwrap().len() >= 7
        })
        .await;
    let events = got.lock().unwrap().clone();
    assert_eq!(events.len(), 7, "{events:?}");
    assert_eq!(
        events.last().map(String::as_str),
        Some("batch.completed"),
        "{events:?}"
    );
}

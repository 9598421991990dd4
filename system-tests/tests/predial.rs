//! The pre-dial check across the real roles (issue #25), judged by the carrier simulator's
//! call record: the check's wait holds no line. With one line (`maxConcurrentDials` 1 for the
//! workspace), a contact whose check takes 4 s does not keep another contact, whose check
//! answers at once, from being called meanwhile; the slow one is called only after its check
//! allowed it, and the line limit holds throughout.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::routing::post;
use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use testkit::http::SendJson;

const SLOW: &str = "+12015550111";
const FAST: &str = "+12015550120";

/// When the receiver answered each number's check.
type Answered = Arc<Mutex<Vec<(String, DateTime<Utc>)>>>;

/// A receiver allowing every call: the check of [`SLOW`] after 4 s, the others at once.
async fn receiver() -> (String, Answered) {
    let answered: Answered = Arc::default();
    let app = Router::new()
        .route(
            "/predial",
            post(
                |State(a): State<Answered>, axum::Json(body): axum::Json<Value>| async move {
                    let number = body["phoneNumber"].as_str().unwrap_or_default().to_owned();
                    if number == SLOW {
                        tokio::time::sleep(Duration::from_secs(4)).await;
                    }
                    a.lock().unwrap().push((number, Utc::now()));
                    axum::Json(json!({"allow": true}))
                },
            ),
        )
        .with_state(answered.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}/predial"), answered)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_slow_check_holds_no_line() {
    let stack = system_tests::stack::Stack::builder("predial")
        .workspace_limit(1)
        .talk_ms(300)
        .start()
        .await;
    let (url, answered) = receiver().await;
    let r = stack
        .http
        .patch(format!("{}/api/workspace", stack.gateway))
        .bearer_auth(&stack.key)
        .json(&json!({"predialUrl": url, "predialTimeoutMs": 8000}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());

    let body = json!({
        "agentId": stack.agent, "userId": "u1",
        "contacts": [{"phoneNumber": SLOW}, {"phoneNumber": FAST}],
        "options": {"maxCallsPerSecond": 5},
    });
    let created: Value = stack.post("/api/v1/batch", body).send_json().await;
    assert!(created["batchId"].is_string(), "{created}");
    stack
        .wait_for("both numbers called", Duration::from_secs(30), async || {
            stack.calls().len() >= 2
        })
        .await;

    let calls = stack.calls();
    let call = |n: &str| {
        let mine: Vec<_> = calls.iter().filter(|c| c.to == n).collect();
        assert_eq!(mine.len(), 1, "{n} called once: {calls:?}");
        mine[0].clone()
    };
    let (slow, fast) = (call(SLOW), call(FAST));
    let slow_allowed = answered
        .lock()
        .unwrap()
        .iter()
        .find(|(n, _)| n == SLOW)
        .map(|(_, t)| *t)
        .expect("the slow check answered");
    assert!(
        fast.ended_at < slow_allowed,
        "the fast contact was called and done while the slow check waited: {fast:?}, slow allowed at {slow_allowed}"
    );
    assert!(
        slow.requested_at >= slow_allowed,
        "the slow contact was called only once its check allowed it"
    );
    assert!(
        fast.ended_at <= slow.requested_at,
        "one line: the calls never overlap"
    );
}

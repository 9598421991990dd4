//! Spawns the gateway on port 0 against a fresh [`TestEnv`], with a workspace and its key.
#![allow(dead_code)]

pub mod hub_app;
pub mod running;

use std::net::SocketAddr;

use api_gateway::config::Config;
use shared::config::Env;
use testkit::TestEnv;
use testkit::http::SendJson;
use tokio_util::sync::CancellationToken;

pub struct TestApp {
    pub env: TestEnv,
    pub addr: SocketAddr,
    pub http: reqwest::Client,
    pub workspace_id: uuid::Uuid,
    pub key: String,
    shutdown: CancellationToken,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

pub async fn spawn_app() -> TestApp {
    let env = TestEnv::new().await;
    let mut pairs = env.env_vars();
    pairs.push(("GATEWAY_ADDR".into(), "127.0.0.1:0".into()));
    let config = Config::from_env(&Env::from_pairs(pairs)).expect("config");
    let shutdown = CancellationToken::new();
    let (addr, _server) = api_gateway::spawn(config, shutdown.clone())
        .await
        .expect("gateway starts");
    let created = api_gateway::admin::create_workspace_with(
        &env.db,
        "test",
        20,
        &api_gateway::admin::Compliance::off(),
    )
    .await
    .expect("workspace");
    // No workspace-wide rate: these tests' batches set the rates they are about.
    testkit::fixtures::clear_workspace_rate(&env.db.get().await.unwrap(), created.workspace_id)
        .await;
    TestApp {
        env,
        addr,
        http: reqwest::Client::new(),
        workspace_id: created.workspace_id,
        key: created.api_key,
        shutdown,
    }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub fn get(&self, path: &str) -> reqwest::RequestBuilder {
        self.request_as(&self.key, reqwest::Method::GET, path)
    }

    pub fn post(&self, path: &str) -> reqwest::RequestBuilder {
        self.request_as(&self.key, reqwest::Method::POST, path)
    }

    pub fn put(&self, path: &str) -> reqwest::RequestBuilder {
        self.request_as(&self.key, reqwest::Method::PUT, path)
    }

    pub fn delete(&self, path: &str) -> reqwest::RequestBuilder {
        self.request_as(&self.key, reqwest::Method::DELETE, path)
    }

    /// A request under another workspace's `key` (see [`TestApp::other_workspace_key`]).
    pub fn request_as(
        &self,
        key: &str,
        method: reqwest::Method,
        path: &str,
    ) -> reqwest::RequestBuilder {
        self.http.request(method, self.url(path)).bearer_auth(key)
    }

    /// A second workspace's key, for cross-tenant checks.
    pub async fn other_workspace_key(&self) -> String {
        api_gateway::admin::create_workspace_with(
            &self.env.db,
            "other",
            5,
            &api_gateway::admin::Compliance::off(),
        )
        .await
        .expect("workspace")
        .api_key
    }
}

use serde_json::{Value, json};

impl TestApp {
    pub async fn create_agent(&self) -> String {
        self.create(
            "/api/agents",
            json!({"name": "Sales bot", "answerUrl": "https://agent.example.com/answer"}),
        )
        .await
    }

    pub async fn create_number(&self, number: &str) -> String {
        self.create("/api/phone_numbers", json!({"number": number}))
            .await
    }

    /// Posts `body` to `path` twice under one `Idempotency-Key`; returns both answers.
    pub async fn post_twice(&self, path: &str, key: &str, body: &Value) -> (Value, Value) {
        let post = || {
            self.post(path)
                .header("Idempotency-Key", key)
                .json(body)
                .send_json()
        };
        let first = post().await;
        (first, post().await)
    }

    /// Posts `body` to `path`, expects 200 and returns the created resource's id.
    async fn create(&self, path: &str, body: Value) -> String {
        let r = self.post(path).json(&body).send().await.unwrap();
        assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
        r.json::<Value>().await.unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// A Vogent job with `rows` rows; returns the job JSON.
    pub async fn create_job(&self, agent: &str, rows: usize) -> Value {
        let rows: Vec<Value> = (0..rows).map(|i| json!({"toNumber": format!("+1201555{:04}", i), "inputs": {"n": i.to_string()}})).collect();
        let r = self
            .post("/api/batch_dial_jobs")
            .json(&json!({"name": "job", "callAgentId": agent, "maxConcurrentDials": 5, "rows": rows}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
        r.json().await.unwrap()
    }

    /// How many messages wait on this test's ingest queue.
    pub async fn ingest_queue_depth(&self) -> u32 {
        let channel = self.env.broker.channel().await.unwrap();
        let queue = self
            .env
            .broker
            .topology()
            .queue(shared::queue::Stream::Ingest);
        let q = channel
            .queue_declare(
                queue.as_str().into(),
                lapin::options::QueueDeclareOptions {
                    passive: true,
                    ..Default::default()
                },
                Default::default(),
            )
            .await
            .unwrap();
        q.message_count()
    }
}

/// Asserts the one error shape and returns the fields named in `details`.
pub async fn error_fields(r: reqwest::Response, status: u16) -> Vec<String> {
    assert_eq!(r.status().as_u16(), status);
    let body: Value = r.json().await.unwrap();
    let err = &body["error"];
    assert!(
        err["code"].is_string() && err["message"].is_string(),
        "{body}"
    );
    err["details"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["field"].as_str().unwrap().to_owned())
        .collect()
}

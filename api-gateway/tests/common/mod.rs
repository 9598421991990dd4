//! Spawns the gateway on port 0 against a fresh [`TestEnv`], with a workspace and its key.
#![allow(dead_code)]

use std::net::SocketAddr;

use api_gateway::config::Config;
use shared::config::Env;
use testkit::TestEnv;
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
    let created = api_gateway::admin::create_workspace(&env.db, "test", 20)
        .await
        .expect("workspace");
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
        self.http.get(self.url(path)).bearer_auth(&self.key)
    }

    pub fn post(&self, path: &str) -> reqwest::RequestBuilder {
        self.http.post(self.url(path)).bearer_auth(&self.key)
    }

    pub fn put(&self, path: &str) -> reqwest::RequestBuilder {
        self.http.put(self.url(path)).bearer_auth(&self.key)
    }

    pub fn delete(&self, path: &str) -> reqwest::RequestBuilder {
        self.http.delete(self.url(path)).bearer_auth(&self.key)
    }

    /// A second workspace's key, for cross-tenant checks.
    pub async fn other_workspace_key(&self) -> String {
        api_gateway::admin::create_workspace(&self.env.db, "other", 5)
            .await
            .expect("workspace")
            .api_key
    }
}

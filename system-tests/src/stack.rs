//! The stack every end-to-end test starts: the carrier simulator writing its call record (the
//! witness), the gateway, an ingest worker, a scheduler and dial workers, all in this process
//! on the test's own database, queue prefix and Redis prefix; and a workspace with its key,
//! caller IDs and an agent. What the test files differ in is an option of [`StackBuilder`].
//!
//! ```ignore
//! let stack = Stack::builder("e2e").dial_workers(2).workspace_limit(3).talk_ms(150).start().await;
//! stack.post("/api/v1/batch", body).send_json().await;
//! assert!(carrier_sim::record::max_overlap(&stack.calls()) <= 3);
//! ```

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use api_gateway::admin::{Compliance, CreatedWorkspace};
use serde_json::{Value, json};
use shared::config::Env;
use testkit::http::SendJson;
use testkit::proxy::TcpProxy;
use testkit::{Services, TestEnv};
use tokio_util::sync::CancellationToken;

/// What a test's stack is made of; [`Stack::builder`] gives the defaults.
#[derive(Debug, Clone)]
pub struct StackBuilder {
    name: String,
    services: Option<Services>,
    workspace_limit: i32,
    compliance: Compliance,
    unlimited_rate: bool,
    numbers: Vec<String>,
    talk_ms: Option<u64>,
    sim_seed: Option<u64>,
    sim_env: Vec<(String, String)>,
    gateway: bool,
    dial_workers: usize,
    clock_offset_secs: Option<i64>,
    proxied_broker: bool,
}

impl StackBuilder {
    /// The services the test environment lives on (private instances, for a test that
    /// restarts one); the shared local ones by default.
    pub fn services(mut self, services: Services) -> Self {
        self.services = Some(services);
        self
    }

    /// The workspace's concurrent-call limit (5 by default).
    pub fn workspace_limit(mut self, limit: i32) -> Self {
        self.workspace_limit = limit;
        self
    }

    /// The workspace's compliance policy (calling hours off by default: the tests run on the
    /// real clock at any hour).
    pub fn compliance(mut self, compliance: Compliance) -> Self {
        self.compliance = compliance;
        self
    }

    /// Keeps a new workspace's default rate (1 call a second); by default the workspace has
    /// no rate of its own, so the batches set the rates a test is about.
    pub fn default_workspace_rate(mut self) -> Self {
        self.unlimited_rate = false;
        self
    }

    /// The workspace's caller IDs (`+12015550100` and `+12015550199` by default).
    pub fn numbers(mut self, numbers: &[&str]) -> Self {
        self.numbers = numbers.iter().map(|n| n.to_string()).collect();
        self
    }

    /// How long the simulator's connected calls talk (`CARRIER_SIM_TALK_MS`; its own default
    /// when not given).
    pub fn talk_ms(mut self, ms: u64) -> Self {
        self.talk_ms = Some(ms);
        self
    }

    /// Seeds the simulator's draws (`CARRIER_SIM_SEED`; random when not given).
    pub fn sim_seed(mut self, seed: u64) -> Self {
        self.sim_seed = Some(seed);
        self
    }

    /// More simulator settings, over the stack's (a mix, a talk-time range…).
    pub fn sim_env(mut self, settings: &[(&str, &str)]) -> Self {
        self.sim_env
            .extend(settings.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        self
    }

    /// Leaves the gateway to the test (which then calls [`Stack::furnish`] once one is up);
    /// the workspace is created all the same.
    pub fn without_gateway(mut self) -> Self {
        self.gateway = false;
        self
    }

    /// How many dial workers start with the stack (1 by default); [`Stack::dial_worker`]
    /// starts more.
    pub fn dial_workers(mut self, n: usize) -> Self {
        self.dial_workers = n;
        self
    }

    /// The scheduler and the dial workers see the clock shifted by `secs`
    /// (`DIALFLEET_CLOCK_OFFSET_SECS`), so they live at a chosen instant.
    pub fn clock_offset_secs(mut self, secs: i64) -> Self {
        self.clock_offset_secs = Some(secs);
        self
    }

    /// Every role of the stack reaches RabbitMQ through a proxy the test can cut
    /// ([`Stack::broker`]): a broker outage for this stack alone.
    pub fn proxied_broker(mut self) -> Self {
        self.proxied_broker = true;
        self
    }

    /// Starts the stack.
    ///
    /// # Panics
    /// When any part fails to start: the test cannot run without it.
    pub async fn start(self) -> Stack {
        let env = TestEnv::on(self.services.unwrap_or_default()).await;
        let broker = match self.proxied_broker {
            true => Some(TcpProxy::start("127.0.0.1:5672").await),
            false => None,
        };
        let shutdown = CancellationToken::new();
        let dir =
            std::env::temp_dir().join(format!("dialfleet-{}-{}", self.name, uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let record = dir.join("calls.jsonl");

        let mut sim_pairs: Vec<(String, String)> = vec![
            ("CARRIER_SIM_ADDR".into(), "127.0.0.1:0".into()),
            ("CARRIER_SIM_RING_MS".into(), "50".into()),
        ];
        if let Some(ms) = self.talk_ms {
            sim_pairs.push(("CARRIER_SIM_TALK_MS".into(), ms.to_string()));
        }
        if let Some(seed) = self.sim_seed {
            sim_pairs.push(("CARRIER_SIM_SEED".into(), seed.to_string()));
        }
        sim_pairs.push(("CARRIER_SIM_RECORD".into(), record.to_str().unwrap().into()));
        sim_pairs.extend(self.sim_env);
        let sim_config =
            carrier_sim::config::Config::from_env(&Env::from_pairs(sim_pairs)).unwrap();
        let (sim, _) = carrier_sim::spawn(sim_config, shutdown.clone())
            .await
            .unwrap();

        let offset: Vec<(String, String)> = self
            .clock_offset_secs
            .map(|secs| (shared::clock::OFFSET_VAR.to_owned(), secs.to_string()))
            .into_iter()
            .collect();
        let mut stack = Stack {
            env,
            gateway: format!("http://{}", testkit::process::free_addr()),
            sim,
            record,
            key: String::new(),
            workspace: uuid::Uuid::nil(),
            agent: String::new(),
            http: reqwest::Client::new(),
            broker,
            shutdown,
            numbers: self.numbers,
            dial_env: offset.clone(),
        };

        if self.gateway {
            stack.gateway_in_process().await;
        }
        let ingest = ingest_worker::config::Config::from_env(&stack.role_env(&[])).unwrap();
        tokio::spawn(ingest_worker::run(ingest, stack.shutdown.clone()));
        let mut sched_env = vec![("SCHEDULER_TICK_MS".to_owned(), "100".to_owned())];
        sched_env.extend(offset);
        let sched = scheduler::config::Config::from_env(&stack.role_env(&sched_env)).unwrap();
        tokio::spawn(scheduler::run(sched, stack.shutdown.clone()));

        let created = match self.unlimited_rate {
            true => {
                workspace_without_rate(
                    &stack.env.db,
                    &self.name,
                    self.workspace_limit,
                    &self.compliance,
                )
                .await
            }
            false => api_gateway::admin::create_workspace_with(
                &stack.env.db,
                &self.name,
                self.workspace_limit,
                &self.compliance,
            )
            .await
            .unwrap(),
        };
        stack.key = created.api_key;
        stack.workspace = created.workspace_id;
        if self.gateway {
            stack.furnish().await;
        }
        for _ in 0..self.dial_workers {
            stack.dial_worker(&[]);
        }
        stack
    }
}

/// A workspace limited to `limit` calls with no workspace-wide rate (a new workspace's default
/// is 1 call a second), so a test's batches set the rates they are about.
///
/// # Panics
/// When the workspace cannot be created.
pub async fn workspace_without_rate(
    db: &shared::db::Pool,
    name: &str,
    limit: i32,
    compliance: &Compliance,
) -> CreatedWorkspace {
    let created = api_gateway::admin::create_workspace_with(db, name, limit, compliance)
        .await
        .unwrap();
    testkit::fixtures::clear_workspace_rate(&db.get().await.unwrap(), created.workspace_id).await;
    created
}

/// A running stack; dropping it stops every role it started and removes the call record.
pub struct Stack {
    /// The test's database, queue prefix and Redis prefix.
    pub env: TestEnv,
    /// The gateway's base URL (`http://127.0.0.1:port`), whether or not one is up.
    pub gateway: String,
    /// The carrier simulator's address.
    pub sim: SocketAddr,
    /// The simulator's call record.
    pub record: PathBuf,
    /// The workspace's API key.
    pub key: String,
    /// The workspace.
    pub workspace: uuid::Uuid,
    /// The workspace's agent (empty until [`Stack::furnish`]).
    pub agent: String,
    /// A client for the gateway.
    pub http: reqwest::Client,
    /// The broker proxy of [`StackBuilder::proxied_broker`].
    pub broker: Option<TcpProxy>,
    /// Stops every role of the stack.
    pub shutdown: CancellationToken,
    numbers: Vec<String>,
    dial_env: Vec<(String, String)>,
}

impl Drop for Stack {
    fn drop(&mut self) {
        self.shutdown.cancel();
        if let Some(dir) = self.record.parent() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

impl Stack {
    /// A stack whose workspace (and call-record directory) is named `name`.
    pub fn builder(name: &str) -> StackBuilder {
        StackBuilder {
            name: name.to_owned(),
            services: None,
            workspace_limit: 5,
            compliance: Compliance::off(),
            unlimited_rate: true,
            numbers: vec!["+12015550100".into(), "+12015550199".into()],
            talk_ms: None,
            sim_seed: None,
            sim_env: Vec::new(),
            gateway: true,
            dial_workers: 1,
            clock_offset_secs: None,
            proxied_broker: false,
        }
    }

    /// How the stack's roles reach RabbitMQ.
    pub fn amqp_url(&self) -> String {
        match &self.broker {
            Some(proxy) => proxy.url(&self.env.config.amqp_url),
            None => self.env.config.amqp_url.clone(),
        }
    }

    /// The stack's environment for a role: the test's services, through the broker proxy if
    /// there is one.
    pub fn vars(&self) -> Vec<(String, String)> {
        let mut pairs = self.env.env_vars();
        pairs.push(("AMQP_URL".into(), self.amqp_url()));
        pairs
    }

    /// An in-process role's settings: [`Stack::vars`], a health port of its own, the gateway's
    /// URL and the simulator's, then `extra`.
    fn role_env(&self, extra: &[(String, String)]) -> Env {
        let mut pairs = self.vars();
        pairs.push(("HEALTH_ADDR".into(), "127.0.0.1:0".into()));
        pairs.push(("PUBLIC_URL".into(), self.gateway.clone()));
        pairs.push(("CARRIER_URL".into(), format!("http://{}", self.sim)));
        pairs.extend(extra.iter().cloned());
        Env::from_pairs(pairs)
    }

    /// The gateway's address (`host:port`).
    pub fn gateway_addr(&self) -> &str {
        self.gateway.trim_start_matches("http://")
    }

    /// A gateway in this process, on the stack's gateway port; cancel the token to stop it.
    pub async fn gateway_in_process(&self) -> CancellationToken {
        let addr = [("GATEWAY_ADDR".to_owned(), self.gateway_addr().to_owned())];
        let config = api_gateway::config::Config::from_env(&self.role_env(&addr)).unwrap();
        let stop = self.shutdown.child_token();
        api_gateway::spawn(config, stop.clone()).await.unwrap();
        stop
    }

    /// Once a gateway is up: the workspace's caller IDs and agent.
    pub async fn furnish(&mut self) {
        for number in &self.numbers {
            let r = self
                .post("/api/phone_numbers", json!({"number": number}))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
        }
        let agent: Value = self
            .post(
                "/api/agents",
                json!({"name": "bot", "answerUrl": "https://agent.example.com/answer"}),
            )
            .send_json()
            .await;
        self.agent = agent["id"].as_str().unwrap().to_owned();
    }

    /// Starts one more dial worker (settings in `extra` on top of the stack's); cancel the token
    /// to stop it as SIGTERM does.
    pub fn dial_worker(&self, extra: &[(&str, &str)]) -> CancellationToken {
        let mut settings = self.dial_env.clone();
        settings.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let config = dial_worker::config::Config::from_env(&self.role_env(&settings)).unwrap();
        let stop = self.shutdown.child_token();
        tokio::spawn(dial_worker::run(config, stop.clone()));
        stop
    }

    /// A GET to the gateway with the workspace's key.
    pub fn get(&self, path: &str) -> reqwest::RequestBuilder {
        self.http
            .get(format!("{}{path}", self.gateway))
            .bearer_auth(&self.key)
    }

    /// A POST of `body` to the gateway with the workspace's key.
    pub fn post(&self, path: &str, body: Value) -> reqwest::RequestBuilder {
        self.http
            .post(format!("{}{path}", self.gateway))
            .bearer_auth(&self.key)
            .json(&body)
    }

    /// Every call in the simulator's record so far.
    pub fn calls(&self) -> Vec<carrier_sim::record::CallRecord> {
        carrier_sim::record::read(&self.record)
    }

    /// Polls `done` every 100 ms until it holds.
    ///
    /// # Panics
    /// After `timeout`, naming `what` it waited for.
    pub async fn wait_for(
        &self,
        what: &str,
        timeout: Duration,
        mut done: impl AsyncFnMut() -> bool,
    ) {
        let deadline = tokio::time::Instant::now() + timeout;
        while !done().await {
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for {what}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

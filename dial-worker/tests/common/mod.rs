//! Fixtures for the dial-worker tests: SQL rows for a workspace, agent, batch and contacts; a
//! stand-in for the scheduler that releases due contacts; workers sharing one simulated carrier.
#![allow(dead_code)]

use std::time::Duration;

use dial_worker::carrier::Carrier;
use dial_worker::carrier::sim::{SimBehavior, SimCall, SimCarrier};
use dial_worker::config::Config;
use shared::config::Env;
use shared::queue::messages::DialV1;
use shared::queue::publisher::Outgoing;
use shared::queue::{Publisher, Stream};
use testkit::TestEnv;
use testkit::fixtures::{self, WorkspaceIds};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

pub const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// A workspace limited to `limit` calls in flight, signing webhooks with [`SECRET`], with two
/// numbers to call from.
pub async fn workspace(env: &TestEnv, limit: i32) -> WorkspaceIds {
    let client = env.db.get().await.unwrap();
    fixtures::Workspace::new()
        .max_concurrent_dials(limit)
        .webhook_secret(SECRET)
        .numbers(&["+12015550100", "+12015550101"])
        .insert(&client)
        .await
}

/// A batch of `ws` as most tests want it: active, 10 calls in flight, 1000 starts a second (so
/// no test waits on the rate unless it sets one), tagged `t1` (webhooks carry tags back).
pub fn new_batch(ws: WorkspaceIds) -> fixtures::Batch {
    fixtures::Batch::new(ws)
        .name("b")
        .max_concurrent_dials(10)
        .max_calls_per_second(1000)
        .tags(&["t1"])
}

/// Inserts `spec` with `numbers` as its contacts (state queued).
pub async fn batch(env: &TestEnv, spec: &fixtures::Batch, numbers: &[String]) -> Uuid {
    let client = env.db.get().await.unwrap();
    let id = spec.insert(&client).await;
    fixtures::Contacts::new(numbers.iter().cloned())
        .name("Ada")
        .inputs(serde_json::json!({"k": "v"}))
        .insert(&client, id, spec.workspace().id)
        .await;
    id
}

/// Where the batch's `onCallComplete` webhooks go.
pub fn on_call_complete(url: &str) -> serde_json::Value {
    serde_json::json!({ "onCallComplete": url })
}

/// Numbers `{prefix}` + 3 digits + `last_digit` (prefix such as `+1201555`).
pub fn numbers(prefix: &str, count: usize, last_digit: u32) -> Vec<String> {
    (0..count)
        .map(|i| format!("{prefix}{:03}{}", i % 1000, last_digit))
        .collect()
}

/// The scheduler's part, reduced: mark due queued contacts released and publish their dials
/// (confirmed before this returns).
pub async fn release_due(env: &TestEnv) -> usize {
    let publisher = Publisher::new(env.broker.clone());
    ReleaseEnv { db: env.db.clone() }.release(&publisher).await
}

/// Keeps releasing due contacts until `stop`.
pub fn scheduler(env: &TestEnv, stop: CancellationToken) -> tokio::task::JoinHandle<()> {
    let publisher = Publisher::new(env.broker.clone());
    let env_db = env.db.clone();
    let fake = ReleaseEnv { db: env_db };
    tokio::spawn(async move {
        while !stop.is_cancelled() {
            let _ = fake.release(&publisher).await;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
}

struct ReleaseEnv {
    db: shared::db::Pool,
}

impl ReleaseEnv {
    async fn release(&self, publisher: &Publisher) -> usize {
        let Ok(client) = self.db.get().await else {
            return 0;
        };
        let Ok(rows) = client
            .query(
                "UPDATE contacts SET state = 'released', released_at = now()
                 WHERE state = 'queued' AND next_attempt_at <= now()
                 RETURNING id, batch_id, workspace_id, attempts",
                &[],
            )
            .await
        else {
            return 0;
        };
        let messages: Vec<Outgoing> = rows
            .iter()
            .map(|r| {
                Outgoing::json(&DialV1 {
                    contact_id: r.get("id"),
                    batch_id: r.get("batch_id"),
                    workspace_id: r.get("workspace_id"),
                    attempt_no: (r.get::<_, i32>("attempts") + 1) as u32,
                })
                .unwrap()
            })
            .collect();
        let n = messages.len();
        let _ = publisher.publish_all(Stream::Dial, messages).await;
        n
    }
}

pub fn config(env: &TestEnv, extra: &[(&str, &str)]) -> Config {
    let mut pairs = env.env_vars();
    pairs.push(("HEALTH_ADDR".into(), "127.0.0.1:0".into()));
    pairs.push(("DATABASE_POOL_SIZE".into(), "8".into()));
    pairs.push(("DIAL_PREFETCH".into(), "32".into()));
    pairs.push(("EVENTS_PREFETCH".into(), "32".into()));
    for (k, v) in extra {
        pairs.push(((*k).into(), (*v).into()));
    }
    Config::from_env(&Env::from_pairs(pairs)).expect("config")
}

/// A simulator whose events go to this test's call-events queue.
pub fn sim(env: &TestEnv, behavior: SimBehavior, stop: CancellationToken) -> SimCarrier {
    let (sim, events) = SimCarrier::new(behavior);
    let publisher = std::sync::Arc::new(Publisher::new(env.broker.clone()));
    tokio::spawn(dial_worker::carrier::sim::forward_events(
        events, publisher, stop,
    ));
    sim
}

pub struct Worker {
    pub stop: CancellationToken,
    pub done: tokio::task::JoinHandle<()>,
}

pub async fn worker(config: Config, sim: &SimCarrier) -> Worker {
    let stop = CancellationToken::new();
    let (_addr, done) = dial_worker::spawn(config, Some(Carrier::Sim(sim.clone())), stop.clone())
        .await
        .expect("worker starts");
    Worker { stop, done }
}

/// Waits until no contact of the database is `queued`, `released` or `dialing` (or panics after
/// `timeout`).
pub async fn wait_all_final(env: &TestEnv, timeout: Duration) {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let client = env.db.get().await.unwrap();
        let open: i64 = client
            .query_one(
                "SELECT count(*) AS n FROM contacts WHERE state IN ('queued', 'released', 'dialing')",
                &[],
            )
            .await
            .unwrap()
            .get("n");
        if open == 0 {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{open} contacts still open after {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The most calls in flight at once among `calls` (those matching `filter`).
pub fn max_overlap(calls: &[SimCall], filter: impl Fn(&SimCall) -> bool) -> usize {
    shared::witness::max_overlap(
        calls
            .iter()
            .filter(|c| filter(c))
            .map(|c| (c.requested_at, c.ended_at)),
    )
}

/// The most starts in any one-second window (half-open) among `calls`.
pub fn max_starts_per_second(calls: &[SimCall], filter: impl Fn(&SimCall) -> bool) -> usize {
    shared::witness::max_starts_per_second(
        calls.iter().filter(|c| filter(c)).map(|c| c.requested_at),
    )
}

/// A call in flight in the database: workspace (limit 1), job (limit 1), contact, attempt
/// without outcome. Returns `(workspace, job, attempt)`.
pub async fn call_in_flight(env: &TestEnv) -> (Uuid, Uuid, Uuid) {
    let ws = workspace(env, 1).await;
    let spec = new_batch(ws).max_concurrent_dials(1);
    let job = batch(env, &spec, &numbers("+1201555", 1, 0)).await;
    let attempt = Uuid::new_v4();
    let client = env.db.get().await.unwrap();
    client
        .execute(
            "INSERT INTO dial_attempts (id, contact_id, batch_id, workspace_id, attempt_no, to_number)
             SELECT $1, id, batch_id, workspace_id, 1, phone_number FROM contacts
             WHERE batch_id = $2",
            &[&attempt, &job],
        )
        .await
        .unwrap();
    (ws.id, job, attempt)
}

/// Marks every contact of `batch` released and returns their dial messages, in row order.
pub async fn released(env: &TestEnv, ws: &WorkspaceIds, batch: Uuid) -> Vec<DialV1> {
    let client = env.db.get().await.unwrap();
    client
        .query(
            "UPDATE contacts SET state = 'released', released_at = now()
             WHERE batch_id = $1 RETURNING id, row_index",
            &[&batch],
        )
        .await
        .unwrap()
        .into_iter()
        .map(|r| (r.get::<_, i32>("row_index"), r.get::<_, Uuid>("id")))
        .collect::<std::collections::BTreeMap<_, _>>()
        .into_values()
        .map(|contact_id| DialV1 {
            batch_id: batch,
            workspace_id: ws.id,
            contact_id,
            attempt_no: 1,
        })
        .collect()
}

/// A context over the test's services and `carrier`, with the default test configuration.
pub fn ctx_with(env: &TestEnv, carrier: Carrier) -> dial_worker::Ctx {
    ctx_configured(env, carrier, &[])
}

/// [`ctx_with`] with `extra` settings; nothing cancels it.
pub fn ctx_configured(env: &TestEnv, carrier: Carrier, extra: &[(&str, &str)]) -> dial_worker::Ctx {
    dial_worker::Ctx::new(
        env.db.clone(),
        env.redis.clone(),
        carrier,
        config(env, extra),
        tokio_util::sync::CancellationToken::new(),
    )
}

//! Rows the gateway would have written, inserted with SQL, and readers for what the worker wrote.

use std::time::Duration;

use deadpool_postgres::Pool;
use serde_json::{Value, json};
use shared::config::Env;
use shared::queue::messages::{IngestChunkV1, RawRow};
use shared::queue::publisher::Outgoing;
use shared::queue::{Publisher, Stream};
use testkit::{TestEnv, fixtures};
use uuid::Uuid;

/// A batch as the gateway leaves it before its chunks are persisted.
#[derive(Debug, Clone, Copy)]
pub struct Batch {
    pub id: Uuid,
    pub workspace_id: Uuid,
    pub agent_id: Uuid,
}

/// How the batch is created.
pub struct BatchOpts {
    pub surface: &'static str,
    pub region: &'static str,
    pub webhooks: Value,
}

impl Default for BatchOpts {
    fn default() -> Self {
        Self {
            surface: "dialgen",
            region: "US",
            webhooks: json!({}),
        }
    }
}

pub async fn batch(db: &Pool, opts: BatchOpts) -> Batch {
    let client = db.get().await.unwrap();
    let ws = fixtures::Workspace::new().insert(&client).await;
    let id = fixtures::Batch::new(ws)
        .surface(opts.surface)
        .state("created")
        .ingest_state("ingesting")
        .unstarted()
        .default_region(opts.region)
        .webhooks(opts.webhooks)
        .insert(&client)
        .await;
    Batch {
        id,
        workspace_id: ws.id,
        agent_id: ws.agent_id,
    }
}

/// A valid US number, distinct for each `i` below 8,000,000.
pub fn number(i: u32) -> String {
    format!("+1201{:07}", 2_000_000 + i)
}

pub fn row(number: &str) -> RawRow {
    RawRow {
        phone_number: number.to_owned(),
        ..Default::default()
    }
}

pub fn chunk(batch: &Batch, seq: u32, first_row: u32, rows: Vec<RawRow>) -> IngestChunkV1 {
    IngestChunkV1 {
        batch_id: batch.id,
        workspace_id: batch.workspace_id,
        seq,
        first_row,
        rows,
    }
}

/// `n` chunks of `size` distinct valid numbers.
pub fn chunks(batch: &Batch, n: u32, size: u32) -> Vec<IngestChunkV1> {
    (0..n)
        .map(|seq| {
            let first = seq * size;
            chunk(
                batch,
                seq,
                first,
                (first..first + size).map(|i| row(&number(i))).collect(),
            )
        })
        .collect()
}

/// Publishes `chunks` to the ingest queue as the gateway does, confirmed before this returns.
pub async fn publish(publisher: &Publisher, chunks: &[IngestChunkV1]) {
    publisher
        .publish_all(
            Stream::Ingest,
            chunks.iter().map(|c| Outgoing::json(c).unwrap()),
        )
        .await
        .unwrap();
}

/// The gateway's last step: announce how many chunks to expect, then try to finish.
pub async fn announce(db: &Pool, batch: &Batch, expected: i32) -> bool {
    let client = db.get().await.unwrap();
    client
        .execute(
            "UPDATE batches SET expected_chunks = $2, updated_at = now() WHERE id = $1",
            &[&batch.id, &expected],
        )
        .await
        .unwrap();
    shared::db::ingest::finish_if_complete(&**client, batch.id)
        .await
        .unwrap()
}

/// `(row_index, phone_number)` of every contact, by row.
pub async fn contacts(db: &Pool, batch: &Batch) -> Vec<(i32, String)> {
    let client = db.get().await.unwrap();
    client
        .query(
            "SELECT row_index, phone_number FROM contacts WHERE batch_id = $1 ORDER BY row_index",
            &[&batch.id],
        )
        .await
        .unwrap()
        .into_iter()
        .map(|r| (r.get("row_index"), r.get("phone_number")))
        .collect()
}

/// `(row_index, reason, detail)` of every rejected row, by row.
pub async fn rejected(db: &Pool, batch: &Batch) -> Vec<(i32, String, String)> {
    let client = db.get().await.unwrap();
    client
        .query(
            "SELECT row_index, reason, coalesce(detail, '') AS detail FROM rejected_rows
             WHERE batch_id = $1 ORDER BY row_index",
            &[&batch.id],
        )
        .await
        .unwrap()
        .into_iter()
        .map(|r| (r.get("row_index"), r.get("reason"), r.get("detail")))
        .collect()
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchState {
    pub state: String,
    pub ingest_state: String,
    /// `total_rows`: what the gateway wrote with the batch; the worker never changes it.
    pub submitted: i32,
    /// Rows the worker has sorted so far (accepted + rejected).
    pub sorted: i32,
    pub accepted: i32,
    pub rejected: i32,
    pub error_code: Option<String>,
    pub error: Option<String>,
}

pub async fn state(db: &Pool, batch: &Batch) -> BatchState {
    let client = db.get().await.unwrap();
    let r = client
        .query_one(
            "SELECT state, ingest_state, total_rows, accepted_rows, rejected_rows, error_code, error,
                    accepted_rows + rejected_rows AS sorted_rows
             FROM batches WHERE id = $1",
            &[&batch.id],
        )
        .await
        .unwrap();
    BatchState {
        state: r.get("state"),
        ingest_state: r.get("ingest_state"),
        submitted: r.get("total_rows"),
        sorted: r.get("sorted_rows"),
        accepted: r.get("accepted_rows"),
        rejected: r.get("rejected_rows"),
        error_code: r.get("error_code"),
        error: r.get("error"),
    }
}

/// Waits (polling) until the batch leaves `ingesting`, up to `limit`.
pub async fn wait_until_ingested(db: &Pool, batch: &Batch, limit: Duration) -> BatchState {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let s = state(db, batch).await;
        if s.ingest_state != "ingesting" || tokio::time::Instant::now() > deadline {
            return s;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A worker config on this test's services, health on a free port.
pub fn worker_config(env: &TestEnv, extra: &[(&str, &str)]) -> ingest_worker::config::Config {
    let mut pairs = env.env_vars();
    pairs.push(("HEALTH_ADDR".into(), "127.0.0.1:0".into()));
    pairs.push(("CONNECT_TIMEOUT_SECS".into(), "10".into()));
    for (k, v) in extra {
        pairs.push(((*k).into(), (*v).into()));
    }
    ingest_worker::config::Config::from_env(&Env::from_pairs(pairs)).unwrap()
}

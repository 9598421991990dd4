//! Rows another role would have written (a workspace with its agent and numbers, a batch, its
//! contacts), inserted with SQL so that a role's tests need neither the gateway nor the ingest
//! worker running.
//!
//! Each builder starts from values that pass the schema's checks and lets a test change only
//! what it is about:
//!
//! ```ignore
//! let ws = Workspace::new().max_concurrent_dials(4).insert(&client).await;
//! let batch = Batch::new(ws).max_calls_per_second(8).insert(&client).await;
//! Contacts::new(["+12015550001", "+12015550002"]).insert(&client, batch, ws.id).await;
//! ```

use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use tokio_postgres::Client;
use uuid::Uuid;

/// Takes away workspace `id`'s own rate (a new workspace's default is 1 call a second), so a
/// test's batches set the rates they are about.
///
/// # Panics
/// When the update fails.
pub async fn clear_workspace_rate(client: &Client, id: Uuid) {
    client
        .execute(
            "UPDATE workspaces SET max_calls_per_second = NULL WHERE id = $1",
            &[&id],
        )
        .await
        .unwrap();
}

/// A workspace with one agent and, optionally, phone numbers to call from.
#[derive(Debug, Clone)]
pub struct Workspace {
    max_concurrent_dials: i32,
    webhook_secret: String,
    numbers: Vec<String>,
    /// Recipient calling hours as stored (minutes after local midnight); `None` = off.
    recipient_hours: Option<(i16, i16)>,
    allow_unknown_timezone: bool,
    /// The workspace's rate (`None`: no workspace-wide rate).
    max_calls_per_second: Option<i32>,
}

/// The ids of an inserted [`Workspace`] and of its agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorkspaceIds {
    /// The workspace.
    pub id: Uuid,
    /// Its one agent.
    pub agent_id: Uuid,
}

impl Default for Workspace {
    fn default() -> Self {
        Self::new()
    }
}

impl Workspace {
    /// A workspace allowing 10 calls in flight, with a fixed webhook secret and no numbers.
    ///
    /// Its recipient calling hours are **off** and unknown timezones allowed (the schema's
    /// default is on, 08:00–21:00): tests run on the real clock, at any hour, and only the
    /// compliance tests are about those rules; they turn them on with
    /// [`Workspace::recipient_hours`].
    ///
    /// It has **no workspace-wide rate** (the schema's default is 1 call a second, a new carrier
    /// account's): each test's batches set the rate they are about; a test about the
    /// workspace's rate sets it with [`Workspace::max_calls_per_second`].
    pub fn new() -> Self {
        Self {
            max_concurrent_dials: 10,
            webhook_secret: "whsec_dGVzdA==".to_owned(),
            numbers: Vec::new(),
            recipient_hours: None,
            allow_unknown_timezone: true,
            max_calls_per_second: None,
        }
    }

    /// The workspace's rate: call starts per second across all its batches.
    pub fn max_calls_per_second(mut self, cps: i32) -> Self {
        self.max_calls_per_second = Some(cps);
        self
    }

    /// Recipient-local calling hours `[start, end)` in minutes after local midnight, with
    /// unknown timezones held (the production default is `(480, 1260)`).
    pub fn recipient_hours(mut self, start: i16, end: i16) -> Self {
        self.recipient_hours = Some((start, end));
        self.allow_unknown_timezone = false;
        self
    }

    /// The workspace's ceiling on calls in flight across all its batches.
    pub fn max_concurrent_dials(mut self, limit: i32) -> Self {
        self.max_concurrent_dials = limit;
        self
    }

    /// The secret webhooks are signed with (for tests that check signatures).
    pub fn webhook_secret(mut self, secret: &str) -> Self {
        self.webhook_secret = secret.to_owned();
        self
    }

    /// Numbers the workspace owns (calls need one to dial from).
    pub fn numbers(mut self, numbers: &[&str]) -> Self {
        self.numbers = numbers.iter().map(|n| (*n).to_owned()).collect();
        self
    }

    /// Inserts the workspace, its agent and its numbers.
    pub async fn insert(&self, client: &Client) -> WorkspaceIds {
        let ids = WorkspaceIds {
            id: Uuid::now_v7(),
            agent_id: Uuid::now_v7(),
        };
        client
            .execute(
                "INSERT INTO workspaces (id, name, max_concurrent_dials, webhook_secret,
                                         recipient_hours_start, recipient_hours_end,
                                         allow_unknown_timezone, max_calls_per_second)
                 VALUES ($1, 'test', $2, $3, $4, $5, $6, $7)",
                &[
                    &ids.id,
                    &self.max_concurrent_dials,
                    &self.webhook_secret,
                    &self.recipient_hours.map(|h| h.0),
                    &self.recipient_hours.map(|h| h.1),
                    &self.allow_unknown_timezone,
                    &self.max_calls_per_second,
                ],
            )
            .await
            .expect("insert workspace");
        client
            .execute(
                "INSERT INTO agents (id, workspace_id, name, answer_url)
                 VALUES ($1, $2, 'agent', 'https://agent.example/answer')",
                &[&ids.agent_id, &ids.id],
            )
            .await
            .expect("insert agent");
        if !self.numbers.is_empty() {
            client
                .execute(
                    "INSERT INTO phone_numbers (id, workspace_id, number)
                     SELECT gen_random_uuid(), $1::uuid, n FROM unnest($2::text[]) AS n",
                    &[&ids.id, &self.numbers],
                )
                .await
                .expect("insert phone numbers");
        }
        ids
    }
}

/// A batch of a workspace, by default an active Dialgen batch whose rows are all in, started
/// when inserted.
#[derive(Debug, Clone)]
pub struct Batch {
    workspace: WorkspaceIds,
    surface: &'static str,
    name: String,
    state: &'static str,
    ingest_state: &'static str,
    max_concurrent_dials: i32,
    max_calls_per_second: i32,
    priority: i16,
    schedule: Option<Value>,
    scheduled_start_time: Option<DateTime<Utc>>,
    retry_max_attempts: i32,
    retry_busy_delay_ms: i64,
    retry_no_answer_delay_ms: i64,
    default_region: String,
    webhooks: Value,
    tags: Vec<String>,
    created_at: Option<DateTime<Utc>>,
    started: bool,
}

impl Batch {
    /// An active, fully ingested Dialgen batch of `workspace`: 5 calls in flight, 10 starts a
    /// second, the workspace defaults' retries (3 attempts, 5 min after busy, 1 h after no
    /// answer), no webhooks.
    pub fn new(workspace: WorkspaceIds) -> Self {
        Self {
            workspace,
            surface: "dialgen",
            name: "batch".to_owned(),
            state: "active",
            ingest_state: "ready",
            max_concurrent_dials: 5,
            max_calls_per_second: 10,
            priority: 5,
            schedule: None,
            scheduled_start_time: None,
            retry_max_attempts: 3,
            retry_busy_delay_ms: 300_000,
            retry_no_answer_delay_ms: 3_600_000,
            default_region: "US".to_owned(),
            webhooks: json!({}),
            tags: Vec::new(),
            created_at: None,
            started: true,
        }
    }

    /// The workspace the batch belongs to.
    pub fn workspace(&self) -> WorkspaceIds {
        self.workspace
    }

    /// Which API created it: `dialgen` or `vogent`.
    pub fn surface(mut self, surface: &'static str) -> Self {
        self.surface = surface;
        self
    }

    /// The batch's name.
    pub fn name(mut self, name: &str) -> Self {
        self.name = name.to_owned();
        self
    }

    /// The life of the job (`created`, `active`, `paused`, …).
    pub fn state(mut self, state: &'static str) -> Self {
        self.state = state;
        self
    }

    /// The life of its rows (`ingesting`, `ready`, `failed`).
    pub fn ingest_state(mut self, ingest_state: &'static str) -> Self {
        self.ingest_state = ingest_state;
        self
    }

    /// The batch's own ceiling on calls in flight.
    pub fn max_concurrent_dials(mut self, limit: i32) -> Self {
        self.max_concurrent_dials = limit;
        self
    }

    /// The batch's ceiling on call starts per second.
    pub fn max_calls_per_second(mut self, cps: i32) -> Self {
        self.max_calls_per_second = cps;
        self
    }

    /// Its priority among the workspace's batches.
    pub fn priority(mut self, priority: i16) -> Self {
        self.priority = priority;
        self
    }

    /// A Vogent weekly schedule, as the gateway stores it.
    pub fn schedule(mut self, schedule: Option<Value>) -> Self {
        self.schedule = schedule;
        self
    }

    /// When the batch may start at the earliest.
    pub fn scheduled_start_time(mut self, at: Option<DateTime<Utc>>) -> Self {
        self.scheduled_start_time = at;
        self
    }

    /// How often a contact is tried, and how long to wait after a busy line or no answer.
    pub fn retry(mut self, max_attempts: i32, busy_delay_ms: i64, no_answer_delay_ms: i64) -> Self {
        self.retry_max_attempts = max_attempts;
        self.retry_busy_delay_ms = busy_delay_ms;
        self.retry_no_answer_delay_ms = no_answer_delay_ms;
        self
    }

    /// The region numbers without a country code are read in.
    pub fn default_region(mut self, region: &str) -> Self {
        self.default_region = region.to_owned();
        self
    }

    /// The batch's webhook URLs, as the gateway stores them (`{"onCallComplete": url}`, …).
    pub fn webhooks(mut self, webhooks: Value) -> Self {
        self.webhooks = webhooks;
        self
    }

    /// Tags webhooks carry back.
    pub fn tags(mut self, tags: &[&str]) -> Self {
        self.tags = tags.iter().map(|t| (*t).to_owned()).collect();
        self
    }

    /// When it was created (and started, unless [`Batch::unstarted`]); now by default. Orders
    /// batches by age.
    pub fn created_at(mut self, at: DateTime<Utc>) -> Self {
        self.created_at = Some(at);
        self
    }

    /// Leaves `started_at` empty, as for a batch the gateway has not started yet.
    pub fn unstarted(mut self) -> Self {
        self.started = false;
        self
    }

    /// Inserts the batch (without contacts) and returns its id.
    pub async fn insert(&self, client: &Client) -> Uuid {
        let id = Uuid::now_v7();
        client
            .execute(
                "INSERT INTO batches (id, workspace_id, surface, name, agent_id, state, ingest_state,
                     max_concurrent_dials, max_calls_per_second, priority, schedule,
                     scheduled_start_time, retry_max_attempts, retry_busy_delay_ms,
                     retry_no_answer_delay_ms, default_region, webhooks, tags, created_at,
                     started_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16,
                     $17, $18, COALESCE($19, now()),
                     CASE WHEN $20 THEN COALESCE($19, now()) END)",
                &[
                    &id,
                    &self.workspace.id,
                    &self.surface,
                    &self.name,
                    &self.workspace.agent_id,
                    &self.state,
                    &self.ingest_state,
                    &self.max_concurrent_dials,
                    &self.max_calls_per_second,
                    &self.priority,
                    &self.schedule,
                    &self.scheduled_start_time,
                    &self.retry_max_attempts,
                    &self.retry_busy_delay_ms,
                    &self.retry_no_answer_delay_ms,
                    &self.default_region,
                    &self.webhooks,
                    &self.tags,
                    &self.created_at,
                    &self.started,
                ],
            )
            .await
            .expect("insert batch");
        id
    }
}

/// Contacts of a batch, queued, one per number, in the numbers' order.
#[derive(Debug, Clone)]
pub struct Contacts {
    numbers: Vec<String>,
    name: Option<String>,
    inputs: Value,
    next_attempt_at: Option<DateTime<Utc>>,
}

impl Contacts {
    /// Queued contacts with these numbers, no name, empty inputs, due at once.
    pub fn new<N: Into<String>>(numbers: impl IntoIterator<Item = N>) -> Self {
        Self {
            numbers: numbers.into_iter().map(Into::into).collect(),
            name: None,
            inputs: json!({}),
            next_attempt_at: None,
        }
    }

    /// Every contact's name.
    pub fn name(mut self, name: &str) -> Self {
        self.name = Some(name.to_owned());
        self
    }

    /// Every contact's inputs (Vogent) or metadata (Dialgen).
    pub fn inputs(mut self, inputs: Value) -> Self {
        self.inputs = inputs;
        self
    }

    /// When the contacts are first due (always, by default).
    pub fn due(mut self, at: DateTime<Utc>) -> Self {
        self.next_attempt_at = Some(at);
        self
    }

    /// Inserts the contacts into `batch_id` (of `workspace_id`) at rows 0, 1, …; returns their
    /// ids by row.
    pub async fn insert(&self, client: &Client, batch_id: Uuid, workspace_id: Uuid) -> Vec<Uuid> {
        // One statement however many contacts: benchmarks insert thousands.
        let mut rows: Vec<(i32, Uuid)> = client
            .query(
                "INSERT INTO contacts (id, batch_id, workspace_id, row_index, phone_number, name,
                     inputs, next_attempt_at)
                 SELECT gen_random_uuid(), $1::uuid, $2::uuid, (t.i - 1)::int, t.n, $4::text,
                     $5::jsonb, COALESCE($6::timestamptz, '-infinity')
                 FROM unnest($3::text[]) WITH ORDINALITY AS t(n, i)
                 RETURNING row_index, id",
                &[
                    &batch_id,
                    &workspace_id,
                    &self.numbers,
                    &self.name,
                    &self.inputs,
                    &self.next_attempt_at,
                ],
            )
            .await
            .expect("insert contacts")
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
        rows.sort_unstable();
        rows.into_iter().map(|(_, id)| id).collect()
    }
}

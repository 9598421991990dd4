//! The Vogent Batch Dial Jobs surface (seeds 000–003 and docs/api.md#vendor-api-reference).

use axum::extract::{Path, Request, State};
use axum::http::HeaderMap;
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use shared::domain::timing::{api_time, api_time_opt, call_duration_secs};
use shared::domain::views::{vogent_dial_status, vogent_system_result_type};
use shared::domain::{AttemptState, CallOutcome, ContactState, JobState, Surface, VogentStatus};

use crate::auth::Workspace;
use crate::batches::body::VogentRow;
use crate::batches::control::{self, Scope};
use crate::batches::csv::{self, is_multipart, multipart};
use crate::batches::model::{Batch, COLUMNS, Job, JobLinks, VISIBLE};
use crate::batches::settings::{self, VogentCreate, VogentUpdate};
use crate::batches::stream;
use crate::batches::submit::idempotency_key;
use crate::batches::waiting::{self, Waiting};
use crate::error::{ApiError, ErrorBody};
use crate::extract::{JsonBody, Query, path_id};
use crate::pagination::{Cursor, Page, PageRequest, page_body};
use crate::state::AppState;
use crate::validate::{Text, Violations};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/batch_dial_jobs", get(list).post(create))
        .route("/api/batch_dial_jobs/{id}", get(fetch).put(update))
        .route("/api/batch_dial_jobs/{id}/paused", post(set_paused))
        .route("/api/batch_dial_jobs/{id}/cancel", post(cancel))
        .route("/api/batch_dial_jobs/{id}/queue", get(queue))
        .route("/api/batch_dial_jobs/{id}/dials", get(dials))
        .route("/api/dials/{id}", get(dial))
}

#[utoipa::path(post, path = "/api/batch_dial_jobs", tag = "vogent", operation_id = "createBatchDialJob", request_body(content((VogentCreate = "application/json"), (crate::openapi::schemas::VogentUpload = "multipart/form-data")), description = "JSON, or a CSV upload: part `file` (the rows) and part `job` (the JSON settings)"), params(crate::openapi::schemas::IdempotencyKey), responses((status = 200, body = Job), (status = 409, description = "a replay racing its original: retry", body = ErrorBody), (status = 422, description = "validation failed, or idempotency_key_reused: the Idempotency-Key came with another body", body = ErrorBody)))]
pub(crate) async fn create(
    State(state): State<AppState>,
    ws: Workspace,
    headers: HeaderMap,
    req_body: Request,
) -> Result<Json<Job>, ApiError> {
    let req = stream::Request {
        state: state.clone(),
        ws: ws.clone(),
        surface: Surface::Vogent,
        key: idempotency_key(&headers)?,
        region_field: "defaultRegion",
        rows_key: "rows",
    };
    let check = create_check(&state);
    let submitted = if is_multipart(&headers) {
        let multipart = multipart(req_body).await?;
        csv::receive_csv::<VogentRow>(req, multipart, check).await?
    } else {
        stream::receive_json::<VogentRow>(req, req_body.into_body(), check).await?
    };
    // Extension: the monitor page, as `GET` and Dialgen's create answer it.
    Ok(Json(Job {
        links: Some(JobLinks::of(&state.config, submitted.batch.id)),
        ..submitted.batch.to_job()
    }))
}

/// The settings check of a Vogent create body (also the preflight's).
pub(crate) fn create_check(state: &AppState) -> stream::CheckHeader {
    let allowed = state.config.webhook_allowed_networks.clone();
    Box::new(move |header, ws, violations| {
        let header: VogentCreate = settings::typed(header, violations)?;
        let batch = settings::check_vogent(header, ws, violations);
        settings::check_destinations(&batch.webhooks, "webhooks", &allowed, violations);
        Ok(batch)
    })
}

/// The filters of the job list.
#[derive(Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub(crate) struct ListQuery {
    /// Page size, 50 by default.
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<i64>,
    /// The previous page's `cursor`.
    cursor: Option<String>,
    /// Only jobs with this status.
    #[param(value_type = Option<VogentStatus>)]
    status: Option<String>,
    /// Only jobs of this agent (an id that is not a UUID matches none).
    call_agent_id: Option<String>,
    /// Only jobs with this `userId`.
    user_id: Option<Text>,
}

#[utoipa::path(get, path = "/api/batch_dial_jobs", tag = "vogent", operation_id = "listBatchDialJobs", params(ListQuery), responses((status = 200, body = Page<Job>), (status = 422, description = "limit out of range or an unknown status", body = ErrorBody)))]
pub(crate) async fn list(
    State(state): State<AppState>,
    ws: Workspace,
    Query(q): Query<ListQuery>,
) -> Result<Json<Page<Job>>, ApiError> {
    let page = PageRequest::parse(q.limit, q.cursor.as_deref())?;
    let (after_at, after_id, fetch) = page.keyset();
    let states: Option<Vec<&str>> = match q.status.as_deref() {
        None => None,
        Some(s) => {
            let status: VogentStatus = serde_json::from_value(Value::String(s.to_owned()))
                .map_err(|_| {
                    ApiError::field(
                        "status",
                        "must be one of INIT, ACTIVE, PAUSED, COMPLETE, CANCELLED",
                    )
                })?;
            Some(status.job_states().iter().map(|st| st.as_str()).collect())
        }
    };
    // An id that is not a UUID matches no job.
    let agent = q
        .call_agent_id
        .as_deref()
        .map(|a| Uuid::parse_str(a).unwrap_or(Uuid::nil()));
    let client = state.db.get().await?;
    let sql = format!(
        "SELECT {COLUMNS} FROM batches
         WHERE workspace_id = $1 AND {VISIBLE}
           AND ($2::text[] IS NULL OR state = ANY($2))
           AND ($3::uuid IS NULL OR agent_id = $3)
           AND ($4::text IS NULL OR user_id = $4)
           AND ($5::timestamptz IS NULL OR (created_at, id) < ($5, $6))
         ORDER BY created_at DESC, id DESC LIMIT $7"
    );
    let rows = client
        .query(
            &sql,
            &[
                &ws.id,
                &states,
                &agent,
                &q.user_id.as_deref(),
                &after_at,
                &after_id,
                &fetch,
            ],
        )
        .await?;
    let batches = rows
        .iter()
        .map(Batch::from_row)
        .collect::<Result<Vec<_>, _>>()?;
    let cursor_of = |b: &Batch| Cursor {
        at: b.created_at,
        id: b.id,
    };
    Ok(page.respond(batches, cursor_of, Batch::to_job))
}

#[utoipa::path(get, path = "/api/batch_dial_jobs/{id}", tag = "vogent", operation_id = "getBatchDialJob", params(("id" = String, Path, description = "id")), responses((status = 200, description = "the job, with `statistics` and `links`", body = Job)))]
pub(crate) async fn fetch(
    State(state): State<AppState>,
    ws: Workspace,
    Path(id): Path<String>,
) -> Result<Json<Job>, ApiError> {
    let id = path_id(&id, "batch dial job")?;
    let client = state.db.get().await?;
    let batch = Batch::load(&client, ws.id, id).await?;
    let counts = crate::batches::stats::Counts::load_many(&client, &[id])
        .await?
        .remove(&id)
        .unwrap_or_default();
    // Extensions: the job's progress, counted as Dialgen's `statistics` (voicemails apart from
    // successes), and the live monitor page, as Dialgen batches have it.
    let hold_reason = if batch.state.is_final() {
        None
    } else {
        crate::workspace_checks::batch_hold(&client, ws.id, state.config.service.clock.now())
            .await?
    };
    Ok(Json(Job {
        statistics: Some(crate::batches::stats::statistics(&batch, &counts)),
        links: Some(JobLinks::of(&state.config, id)),
        hold_reason,
        ..batch.to_job()
    }))
}

/// `PUT`: on an ACTIVE job the change is kept in `pending` and applied at the next pause
/// (seed 001); otherwise it applies at once. Final jobs refuse with 409.
#[utoipa::path(put, path = "/api/batch_dial_jobs/{id}", tag = "vogent", operation_id = "updateBatchDialJob", request_body = VogentUpdate, params(("id" = String, Path, description = "id")), responses((status = 200, body = Job), (status = 409, description = "the job is final", body = ErrorBody), (status = 422, description = "validation failed", body = ErrorBody)))]
pub(crate) async fn update(
    State(state): State<AppState>,
    ws: Workspace,
    Path(id): Path<String>,
    JsonBody(mut body): JsonBody<VogentUpdate>,
) -> Result<Json<Job>, ApiError> {
    let id = path_id(&id, "batch dial job")?;
    let mut v = Violations::default();
    let from_phone_number_ids = body.from_phone_number_ids.take();
    let mut change = settings_change(
        body,
        id,
        &ws,
        &state.config.webhook_allowed_networks,
        &mut v,
    );
    let mut client = state.db.get().await?;
    if let Some(ids) = from_phone_number_ids.as_deref() {
        let parsed = owned_phone_numbers(&client, &ws, ids, &mut v).await?;
        change.insert("fromPhoneNumberIds".into(), json!(parsed));
    }
    v.into_result(())?;

    let txn = client.transaction().await?;
    let batch = lock(&txn, ws.id, id).await?;
    if batch.state.is_final() {
        return Err(ApiError::Conflict(format!(
            "a {} job cannot be changed",
            batch.vogent_status()
        )));
    }
    if batch.state == JobState::Active {
        let mut pending = batch
            .pending_settings
            .clone()
            .and_then(|p| p.as_object().cloned())
            .unwrap_or_default();
        pending.extend(change);
        txn.execute(
            "UPDATE batches SET pending_settings = $2, updated_at = now() WHERE id = $1",
            &[&id, &Value::Object(pending)],
        )
        .await?;
    } else {
        control::apply_settings(&txn, id, &change).await?;
    }
    let batch = Batch::load(&txn, ws.id, id).await?;
    txn.commit().await?;
    // A change applied now (the job is not active) reaches open monitor pages at once.
    state.monitor.nudge(id);
    Ok(Json(batch.to_job()))
}

/// The settings a `PUT` of job `id` changes, checked, as `PUT` spells them; the phone numbers
/// apart (their check reads the database).
fn settings_change(
    body: VogentUpdate,
    id: Uuid,
    ws: &Workspace,
    allowed: &shared::destination::AllowedNetworks,
    v: &mut Violations,
) -> Map<String, Value> {
    if body.rows.is_some() {
        v.add(
            "rows",
            format!(
                "rows cannot be changed with PUT; add rows with POST /api/batch_dial_jobs/{id}/rows"
            ),
        );
    }
    let mut change = Map::new();
    if body.webhooks.is_some() {
        let hooks = settings::check_webhooks(body.webhooks, "webhooks", v);
        settings::check_destinations(&hooks, "webhooks", allowed, v);
        change.insert("webhooks".into(), hooks);
    }
    if let Some(name) = body.name.as_deref() {
        if name.trim().is_empty() || name.trim().chars().count() > crate::validate::MAX_NAME_CHARS {
            v.add("name", "must be 1 to 500 characters");
        }
        change.insert("name".into(), json!(name.trim()));
    }
    if let Some(n) =
        settings::check_concurrency(body.max_concurrent_dials, "maxConcurrentDials", ws, v)
    {
        change.insert("maxConcurrentDials".into(), json!(n));
    }
    if let Some(n) = settings::check_rate(body.max_calls_per_second, "maxCallsPerSecond", ws, v) {
        change.insert("maxCallsPerSecond".into(), json!(n));
    }
    if let Some(schedule) = body
        .schedule
        .as_ref()
        .and_then(|s| settings::check_schedule(s, "schedule", v))
    {
        change.insert("schedule".into(), json!(schedule));
    }
    if let Some(md) = &body.machine_detection {
        // `null` turns detection off; a value must be one of Twilio's.
        let parsed = md
            .as_deref()
            .and_then(|m| settings::check_machine_detection(Some(m), "machineDetection", v));
        if md.is_none() || parsed.is_some() {
            change.insert("machineDetection".into(), json!(parsed));
        }
    }
    change
}

/// `fromPhoneNumberIds` parsed, each one checked to be a number of the workspace.
async fn owned_phone_numbers(
    client: &impl GenericClient,
    ws: &Workspace,
    ids: &[String],
    v: &mut Violations,
) -> Result<Vec<Uuid>, ApiError> {
    let parsed = settings::check_ids(ids, "fromPhoneNumberIds", v);
    let owned: Vec<Uuid> = client
        .query("SELECT id FROM phone_numbers WHERE workspace_id = $1 AND deleted_at IS NULL AND id = ANY($2)", &[&ws.id, &parsed])
        .await?
        .iter()
        .map(|r| r.get("id"))
        .collect();
    for (i, pid) in parsed.iter().enumerate() {
        if !owned.contains(pid) {
            v.add(
                format!("fromPhoneNumberIds[{i}]"),
                format!("no phone number with id {pid} in this workspace"),
            );
        }
    }
    Ok(parsed)
}

async fn lock(client: &impl GenericClient, workspace: Uuid, id: Uuid) -> Result<Batch, ApiError> {
    let sql = format!(
        "SELECT {COLUMNS} FROM batches WHERE id = $1 AND workspace_id = $2 AND {VISIBLE} FOR UPDATE"
    );
    let row = client
        .query_opt(&sql, &[&id, &workspace])
        .await?
        .ok_or(ApiError::NotFound("batch dial job"))?;
    Batch::from_row(&row)
}

/// The key's workspace, whose other jobs answer "batch dial job not found".
fn job_scope(ws: &Workspace) -> Scope {
    Scope::Workspace {
        id: ws.id,
        what: "batch dial job",
        surface: Surface::Vogent,
    }
}

/// `POST /api/batch_dial_jobs/{id}/paused`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct PausedBody {
    /// Required: true pauses, false starts or resumes.
    #[schema(required = true, value_type = bool)]
    paused: Option<bool>,
}

/// `/paused`: INIT→ACTIVE, ACTIVE→PAUSED, PAUSED→ACTIVE; final jobs answer 409. Pausing applies
/// settings kept by `PUT` while the job was active.
#[utoipa::path(post, path = "/api/batch_dial_jobs/{id}/paused", tag = "vogent", operation_id = "setBatchDialJobPaused", request_body = PausedBody, params(("id" = String, Path, description = "id")), responses((status = 200, body = Job), (status = 409, description = "not allowed in the job's status", body = ErrorBody), (status = 422, description = "paused is missing", body = ErrorBody)))]
pub(crate) async fn set_paused(
    State(state): State<AppState>,
    ws: Workspace,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<PausedBody>,
) -> Result<Json<Job>, ApiError> {
    let id = path_id(&id, "batch dial job")?;
    let paused = body
        .paused
        .ok_or_else(|| ApiError::field("paused", "is required (true or false)"))?;
    let batch = control::pause_from_api(&state, job_scope(&ws), id, paused).await?;
    Ok(Json(batch.to_job()))
}

/// `/cancel`: CANCELLED ("manually stopped", seed 001); calls already connected finish. No new
/// call starts once the answer is sent (see `batches::control::cancel_from_api`).
#[utoipa::path(post, path = "/api/batch_dial_jobs/{id}/cancel", tag = "vogent", operation_id = "cancelBatchDialJob", params(("id" = String, Path, description = "id")), responses((status = 200, body = Job), (status = 409, description = "the job is final", body = ErrorBody)))]
pub(crate) async fn cancel(
    State(state): State<AppState>,
    ws: Workspace,
    Path(id): Path<String>,
) -> Result<Json<Job>, ApiError> {
    let id = path_id(&id, "batch dial job")?;
    let batch = control::cancel_from_api(&state, job_scope(&ws), id).await?;
    Ok(Json(batch.to_job()))
}

/// `limit` and `cursor` of a job's queue.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct QueueQuery {
    /// Page size, 50 by default.
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<i64>,
    /// The previous page's `cursor`.
    cursor: Option<String>,
}

/// `limit`, `cursor` and `status` of a job's dials.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct DialsQuery {
    /// Page size, 50 by default.
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<i64>,
    /// The previous page's `cursor`.
    cursor: Option<String>,
    /// completed (the default), in-progress or all.
    #[param(value_type = Option<String>, pattern = "^(completed|in-progress|all)$")]
    status: Option<String>,
}

/// A row still queued.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct QueuedRow {
    id: Uuid,
    to_number: String,
    #[schema(value_type = Object)]
    inputs: Value,
    attempts: i32,
    /// When it may next be called (a retry's due time, or the minute a compliance rule holds
    /// it to), ISO 8601 UTC; null for a first attempt not held.
    #[schema(format = DateTime)]
    next_attempt_at: Option<String>,
    name: Option<String>,
    /// Extension: the row's declared US state (`state`), or null.
    state: Option<String>,
    /// Extension: the row's US postal code (`postalCode`), or null.
    postal_code: Option<String>,
    /// Extension: the rule holding the row now (`state_hours`, `state_no_call_day`,
    /// `state_call_cap`, `recipient_hours`, `frequency_cap`, `unknown_timezone`, …); null when
    /// none.
    hold_reason: Option<String>,
}

/// The rows still queued: not in progress, not completed (seed 001), in dialing order.
#[utoipa::path(get, path = "/api/batch_dial_jobs/{id}/queue", tag = "vogent", operation_id = "listBatchDialJobQueue", params(("id" = String, Path), QueueQuery), responses((status = 200, body = Page<QueuedRow>), (status = 422, description = "limit out of range", body = ErrorBody)))]
pub(crate) async fn queue(
    State(state): State<AppState>,
    ws: Workspace,
    Path(id): Path<String>,
    Query(q): Query<QueueQuery>,
) -> Result<Json<Page<QueuedRow>>, ApiError> {
    let id = path_id(&id, "batch dial job")?;
    // The cursor's time part carries the row index, so pages follow dialing order.
    let page = PageRequest::parse(q.limit, q.cursor.as_deref())?;
    let after_row = page.after().map(|c| c.at.timestamp_micros() as i32);
    let (_, _, fetch) = page.keyset();
    let client = state.db.get().await?;
    Batch::load(&client, ws.id, id).await?;
    let rows = client
        .query(
            concat!(
                "SELECT c.id, c.phone_number, c.inputs, c.row_index, c.attempts, c.name,
                        c.declared_state, c.postal_code, ",
                waiting::columns!(),
                " FROM contacts c
             WHERE c.batch_id = $1 AND c.state = $4 AND ($2::int IS NULL OR c.row_index > $2)
             ORDER BY c.row_index LIMIT $3"
            ),
            &[&id, &after_row, &fetch, &ContactState::Queued],
        )
        .await?;
    let cursor_of = |r: &tokio_postgres::Row| Cursor {
        at: DateTime::from_timestamp_micros(i64::from(r.get::<_, i32>("row_index")))
            .unwrap_or_default(),
        id: r.get("id"),
    };
    let queued = |r: &tokio_postgres::Row| {
        let waiting = Waiting::of(r).unwrap_or_default();
        QueuedRow {
            id: r.get("id"),
            to_number: r.get("phone_number"),
            inputs: r.get("inputs"),
            attempts: r.get("attempts"),
            next_attempt_at: waiting.next_attempt_at,
            name: r.get("name"),
            state: r.get("declared_state"),
            postal_code: r.get("postal_code"),
            hold_reason: waiting.hold_reason,
        }
    };
    Ok(page.respond(rows, cursor_of, queued))
}

const DIAL_COLUMNS: &str = "a.id, a.to_number, c.inputs, a.state, a.outcome, a.from_number_id, a.answered_at, a.started_at, a.ended_at, \
    a.created_at, a.updated_at, a.contact_id, a.attempt_no, a.carrier_call_sid, a.from_number, a.batch_id";

/// A dial as [`DIAL_COLUMNS`] selects it: the attempt and its contact's inputs.
struct DialRow {
    id: Uuid,
    to_number: String,
    inputs: Value,
    state: AttemptState,
    outcome: Option<CallOutcome>,
    from_number_id: Option<Uuid>,
    answered_at: Option<DateTime<Utc>>,
    started_at: Option<DateTime<Utc>>,
    ended_at: Option<DateTime<Utc>>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    contact_id: Uuid,
    attempt_no: i32,
    carrier_call_sid: Option<String>,
    from_number: Option<String>,
    batch_id: Uuid,
}

impl DialRow {
    fn from_row(r: &tokio_postgres::Row) -> Result<Self, ApiError> {
        let state: &str = r.try_get("state")?;
        let state = AttemptState::parse(state).ok_or_else(|| {
            ApiError::Internal(anyhow::anyhow!("an attempt has an invalid state {state:?}"))
        })?;
        Ok(Self {
            id: r.try_get("id")?,
            to_number: r.try_get("to_number")?,
            inputs: r.try_get("inputs")?,
            state,
            outcome: crate::batches::stats::outcome_column(r.try_get("outcome")?)?,
            from_number_id: r.try_get("from_number_id")?,
            answered_at: r.try_get("answered_at")?,
            started_at: r.try_get("started_at")?,
            ended_at: r.try_get("ended_at")?,
            created_at: r.try_get("created_at")?,
            updated_at: r.try_get("updated_at")?,
            contact_id: r.try_get("contact_id")?,
            attempt_no: r.try_get("attempt_no")?,
            carrier_call_sid: r.try_get("carrier_call_sid")?,
            from_number: r.try_get("from_number")?,
            batch_id: r.try_get("batch_id")?,
        })
    }
}

/// Vogent's Dial shape (docs/api.md#vendor-api-reference), plus `attemptNumber`, `outcome`,
/// `callSid`, `fromNumber` and `batchId`.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Dial {
    id: Uuid,
    to_number: String,
    #[schema(value_type = Object)]
    inputs: Value,
    /// dialing, ringing, in-progress, or completed once the call has an outcome.
    #[schema(value_type = String, pattern = "^(dialing|ringing|in-progress|completed)$")]
    status: &'static str,
    /// COMPLETED, BUSY, NO_ANSWER, FAILED, VOICEMAIL, CANCELLED, UNKNOWN; null until it ends.
    #[schema(value_type = Option<String>)]
    system_result_type: Option<&'static str>,
    from_number_id: Option<Uuid>,
    /// Whole seconds from answer to end, rounded; 0 if never answered; null until it ends.
    #[schema(minimum = 0)]
    duration_seconds: Option<i64>,
    #[schema(format = DateTime)]
    started_at: Option<String>,
    #[schema(format = DateTime)]
    ended_at: Option<String>,
    #[schema(format = DateTime)]
    created_at: String,
    #[schema(format = DateTime)]
    updated_at: String,
    /// The row (contact) this dial calls.
    dial_task_id: Uuid,
    attempt_number: i32,
    outcome: Option<CallOutcome>,
    call_sid: Option<String>,
    from_number: Option<String>,
    batch_id: Uuid,
}

/// Status, duration and times follow `shared::domain::views` and `::timing`, as every other
/// surface showing this call.
fn dial_json(r: &tokio_postgres::Row) -> Result<Dial, ApiError> {
    let d = DialRow::from_row(r)?;
    Ok(Dial {
        id: d.id,
        to_number: d.to_number,
        inputs: d.inputs,
        status: vogent_dial_status(d.state, d.outcome),
        system_result_type: vogent_system_result_type(d.outcome),
        from_number_id: d.from_number_id,
        duration_seconds: call_duration_secs(d.answered_at, d.ended_at),
        started_at: api_time_opt(d.started_at),
        ended_at: api_time_opt(d.ended_at),
        created_at: api_time(d.created_at),
        updated_at: api_time(d.updated_at),
        dial_task_id: d.contact_id,
        attempt_number: d.attempt_no,
        outcome: d.outcome,
        call_sid: d.carrier_call_sid,
        from_number: d.from_number,
        batch_id: d.batch_id,
    })
}

/// The job's dials: completed ones by default (as Vogent lists them); `status=in-progress` or
/// `status=all` (an extension) shows the others.
#[utoipa::path(get, path = "/api/batch_dial_jobs/{id}/dials", tag = "vogent", operation_id = "listBatchDialJobDials", params(("id" = String, Path), DialsQuery), responses((status = 200, body = Page<Dial>), (status = 422, description = "limit out of range or an unknown status", body = ErrorBody)))]
pub(crate) async fn dials(
    State(state): State<AppState>,
    ws: Workspace,
    Path(id): Path<String>,
    Query(q): Query<DialsQuery>,
) -> Result<Json<Page<Dial>>, ApiError> {
    let id = path_id(&id, "batch dial job")?;
    let page = PageRequest::parse(q.limit, q.cursor.as_deref())?;
    let (after_at, after_id, fetch) = page.keyset();
    let filter = match q.status.as_deref().unwrap_or("completed") {
        "completed" => "a.outcome IS NOT NULL",
        "in-progress" => "a.outcome IS NULL",
        "all" => "TRUE",
        _ => {
            return Err(ApiError::field(
                "status",
                "must be completed, in-progress or all",
            ));
        }
    };
    let client = state.db.get().await?;
    Batch::load(&client, ws.id, id).await?;
    let sql = format!(
        "SELECT {DIAL_COLUMNS} FROM dial_attempts a JOIN contacts c ON c.id = a.contact_id
         WHERE a.batch_id = $1 AND {filter} AND ($2::timestamptz IS NULL OR (a.created_at, a.id) > ($2, $3))
         ORDER BY a.created_at, a.id LIMIT $4"
    );
    let rows = client
        .query(&sql, &[&id, &after_at, &after_id, &fetch])
        .await?;
    let cursor_of = |r: &tokio_postgres::Row| Cursor {
        at: r.get("created_at"),
        id: r.get("id"),
    };
    let (rows, cursor) = page.split(rows, cursor_of);
    let items = rows.iter().map(dial_json).collect::<Result<Vec<_>, _>>()?;
    Ok(page_body(items.into_iter(), cursor))
}

/// One dial. Agents fetch a call's inputs here with the `dialId` carried in their answer URL.
#[utoipa::path(get, path = "/api/dials/{id}", tag = "vogent", operation_id = "getDial", params(("id" = String, Path, description = "id")), responses((status = 200, body = Dial)))]
pub(crate) async fn dial(
    State(state): State<AppState>,
    ws: Workspace,
    Path(id): Path<String>,
) -> Result<Json<Dial>, ApiError> {
    let id = path_id(&id, "dial")?;
    let client = state.db.get().await?;
    let sql = format!(
        "SELECT {DIAL_COLUMNS} FROM dial_attempts a JOIN contacts c ON c.id = a.contact_id WHERE a.id = $1 AND a.workspace_id = $2"
    );
    let row = client
        .query_opt(&sql, &[&id, &ws.id])
        .await?
        .ok_or(ApiError::NotFound("dial"))?;
    Ok(Json(dial_json(&row)?))
}

//! Calling compliance (invariant 11): the workspace's do-not-call list, opt-out during a call,
//! and each contact's audit trail.
//!
//! - `POST /api/dnc` adds numbers: JSON `{"numbers": [...], "reason": "opt-out"}`, or a
//!   `text/csv` body with one number per line (an optional header line, `?reason=`), streamed
//!   into PostgreSQL with `COPY` so a 1,000,000-number import holds only a buffer in memory.
//!   All or nothing: a line that is not a number is a 422 naming it, and nothing is added.
//! - `GET /api/dnc?number=&cursor=&limit=`, `DELETE /api/dnc/{number}`.
//! - `POST /api/dials/{id}/opt_out`: the callee said "don't call me": the dial's number goes on
//!   the list at once and the contact's retries end (a queued retry is suppressed now; one in
//!   flight is suppressed by the next release or the dial worker's last look).
//! - `GET /api/contacts/{id}/events`: every decision about a contact, in order, derived from the
//!   rows written anyway (the contact, its attempts) plus the `contact_events` the scheduler
//!   and dial worker write in batches (deferred, suppressed, opted out).
//!
//! The list is enforced elsewhere: the ingest worker rejects listed rows (`do_not_call`), the
//! scheduler suppresses listed contacts at release, the dial worker re-checks in the statement
//! that writes the attempt, just before the carrier request.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use base64::Engine;
use bytes::{BufMut, BytesMut};
use chrono::{DateTime, Utc};
use futures_util::{SinkExt, StreamExt};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use shared::domain::timing::api_time;
use shared::domain::{CallOutcome, ContactState, E164};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::auth::Workspace;
use crate::batches::model::Batch;
use crate::error::{ApiError, ErrorBody};
use crate::extract::{Query, path_id};
use crate::pagination::{Page, page_body};
use crate::routes::dnc_registry::{self, RegistryCopy};
use crate::state::AppState;
use crate::validate::Violations;

pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/api/dnc",
            get(list)
                .post(add)
                // The CSV import streams (bounded memory whatever its size); the JSON form is
                // read with the gateway's usual body limit, below.
                .layer(axum::extract::DefaultBodyLimit::disable()),
        )
        .route("/api/dnc/{number}", delete(remove))
        .route("/api/dials/{id}/opt_out", post(opt_out))
        .route("/api/contacts/{id}/events", get(events))
}

/// The longest CSV line accepted (a number with some punctuation and quotes).
const MAX_LINE: usize = 256;
/// How much normalised text is buffered before it is sent to `COPY`.
const COPY_BUFFER: usize = 256 * 1024;
/// At most this many numbers in one JSON request (bigger lists: the CSV form).
const MAX_JSON_NUMBERS: usize = 100_000;

/// Reads a number as E.164: `+` and digits (spaces, dashes, dots and parentheses ignored), or
/// a NANP number written without its country code (10 digits, or 11 starting with 1).
pub fn normalize_number(raw: &str) -> Option<E164> {
    let cleaned: String = raw
        .trim()
        .trim_matches('"')
        .chars()
        .filter(|c| !matches!(c, ' ' | '-' | '.' | '(' | ')' | '\t'))
        .collect();
    if cleaned.starts_with('+') {
        return E164::parse(&cleaned).ok();
    }
    if !cleaned.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    match cleaned.len() {
        10 if !cleaned.starts_with(['0', '1']) => E164::parse(&format!("+1{cleaned}")).ok(),
        11 if cleaned.starts_with('1') => E164::parse(&format!("+{cleaned}")).ok(),
        _ => None,
    }
}

/// `POST /api/dnc` as JSON.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct DncIn {
    /// E.164, or NANP without the country code; 1 … 100,000 per JSON request.
    #[schema(min_items = 1, max_items = 100000)]
    numbers: Vec<String>,
    /// At most 200 characters.
    #[serde(default)]
    #[schema(max_length = 200)]
    reason: Option<String>,
    /// With `asOf`: the import is a copy of this registry (`national_registry`).
    #[serde(default)]
    source: Option<String>,
    /// With `source`: the date the copy was taken (`YYYY-MM-DD`, not in the future).
    #[serde(default, rename = "asOf")]
    #[schema(format = Date)]
    as_of: Option<String>,
}

/// `reason`, `source` and `asOf` of a CSV import.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct ReasonQuery {
    /// The reason stored with each number (CSV bodies; a JSON body's own `reason` wins).
    #[param(max_length = 200)]
    reason: Option<String>,
    /// With `asOf`: the upload is a copy of this registry (`national_registry`); recorded
    /// with the import (docs/compliance.md, "Do-not-call registry freshness").
    source: Option<String>,
    /// With `source`: the date the copy was taken (`YYYY-MM-DD`, not in the future).
    #[serde(rename = "asOf")]
    #[param(rename = "asOf")]
    as_of: Option<String>,
}

/// The answer of `POST /api/dnc`.
#[derive(Serialize, ToSchema)]
pub(crate) struct DncAdded {
    /// Numbers new to the list.
    added: u64,
    /// The registry copy recorded with the import, when it was marked as one.
    #[serde(rename = "registryCopy", skip_serializing_if = "Option::is_none")]
    registry_copy: Option<RegistryCopy>,
}

fn check_reason(reason: Option<String>, v: &mut Violations) -> Option<String> {
    let reason = reason.filter(|r| !r.trim().is_empty())?;
    if reason.len() > 200 || reason.contains('\0') {
        v.add("reason", "must be at most 200 characters, without NUL");
    }
    Some(reason)
}

/// `POST /api/dnc`: JSON or CSV; answers `{"added": n}` (numbers new to the list).
#[utoipa::path(post, path = "/api/dnc", tag = "compliance", operation_id = "addDncNumbers", params(ReasonQuery), request_body(content((DncIn = "application/json"), (String = "text/csv")), description = "JSON, or text/csv with one number per line (an optional header line; the first column counts)"), responses((status = 200, body = DncAdded), (status = 422, description = "a number (or CSV line) that is not a phone number; nothing added", body = ErrorBody)))]
pub(crate) async fn add(
    State(state): State<AppState>,
    ws: Workspace,
    Query(q): Query<ReasonQuery>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<DncAdded>, ApiError> {
    let is_csv = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.trim_start().to_ascii_lowercase().starts_with("text/csv"));
    let now = state.config.service.clock.now();
    let registry_copy;
    let added = if is_csv {
        let mut v = Violations::default();
        let reason = check_reason(q.reason, &mut v);
        registry_copy = dnc_registry::read(q.source.as_deref(), q.as_of.as_deref(), now, &mut v);
        v.into_result(())?;
        import_csv(&state, ws.id, reason.as_deref(), registry_copy, body).await?
    } else {
        let bytes = axum::body::to_bytes(body, state.config.max_body_bytes)
            .await
            .map_err(|_| {
                ApiError::TooLarge("the body is too large; send big lists as text/csv".into())
            })?;
        let input: DncIn = crate::extract::parse_json(&bytes)?;
        let mut v = Violations::default();
        let reason = check_reason(input.reason.or(q.reason), &mut v);
        registry_copy = dnc_registry::read(
            input.source.as_deref().or(q.source.as_deref()),
            input.as_of.as_deref().or(q.as_of.as_deref()),
            now,
            &mut v,
        );
        if input.numbers.is_empty() {
            v.add("numbers", "must hold at least one number");
        }
        if input.numbers.len() > MAX_JSON_NUMBERS {
            v.add(
                "numbers",
                format!(
                    "at most {MAX_JSON_NUMBERS} numbers per JSON request; send more as text/csv"
                ),
            );
        }
        let mut numbers = Vec::with_capacity(input.numbers.len());
        for (i, raw) in input.numbers.iter().enumerate() {
            match normalize_number(raw) {
                Some(n) => numbers.push(n.as_str().to_owned()),
                None => v.add(
                    format!("numbers[{i}]"),
                    format!("{raw:?} is not a phone number"),
                ),
            }
        }
        v.into_result(())?;
        let mut client = state.db.get().await?;
        let tx = client.transaction().await?;
        let added = tx
            .execute(
                "INSERT INTO dnc_numbers (workspace_id, number, reason)
                 SELECT DISTINCT $1::uuid, n, $3::text FROM unnest($2::text[]) n
                 ON CONFLICT DO NOTHING",
                &[&ws.id, &numbers, &reason],
            )
            .await?;
        if let Some(copy) = registry_copy {
            dnc_registry::record(&tx, ws.id, copy, numbers.len() as i64).await?;
        }
        tx.commit().await?;
        added
    };
    Ok(Json(DncAdded {
        added,
        registry_copy,
    }))
}

/// Streams a CSV body into a temporary table with `COPY`, then merges it into the list in the
/// same transaction; nothing is added unless every line reads.
async fn import_csv(
    state: &AppState,
    workspace_id: Uuid,
    reason: Option<&str>,
    registry_copy: Option<RegistryCopy>,
    body: Body,
) -> Result<u64, ApiError> {
    let mut client = state.db.get().await?;
    let tx = client.transaction().await?;
    tx.batch_execute("CREATE TEMP TABLE dnc_import (number text NOT NULL) ON COMMIT DROP")
        .await?;
    let sink = tx.copy_in("COPY dnc_import (number) FROM STDIN").await?;
    futures_util::pin_mut!(sink);
    let mut stream = body.into_data_stream();
    let mut pending = BytesMut::new();
    let mut out = BytesMut::with_capacity(COPY_BUFFER);
    let mut line_no: u64 = 0;
    let mut numbers: i64 = 0;
    let mut eof = false;
    while !eof {
        match stream.next().await {
            Some(chunk) => {
                let chunk = chunk.map_err(|e| ApiError::BadRequest {
                    message: format!("reading the body: {e}"),
                    details: vec![],
                })?;
                pending.extend_from_slice(&chunk);
            }
            None => {
                eof = true;
                if !pending.is_empty() && !pending.ends_with(b"\n") {
                    pending.put_u8(b'\n');
                }
            }
        }
        while let Some(pos) = pending.iter().position(|b| *b == b'\n') {
            let line = pending.split_to(pos + 1);
            line_no += 1;
            let text = std::str::from_utf8(&line[..pos])
                .map_err(|_| csv_error(line_no, "is not UTF-8"))?
                .trim_end_matches('\r');
            // The first column, if the file has several.
            let field = text.split(',').next().unwrap_or("").trim();
            if field.is_empty() {
                continue;
            }
            match normalize_number(field) {
                Some(n) => {
                    numbers += 1;
                    out.extend_from_slice(n.as_str().as_bytes());
                    out.put_u8(b'\n');
                }
                // A header line ("number", "phone_number") is skipped.
                None if line_no == 1 && field.bytes().any(|b| b.is_ascii_alphabetic()) => {}
                None => {
                    return Err(csv_error(
                        line_no,
                        &format!("{field:?} is not a phone number"),
                    ));
                }
            }
            if out.len() >= COPY_BUFFER {
                sink.send(out.split().freeze()).await?;
            }
        }
        if pending.len() > MAX_LINE {
            return Err(csv_error(line_no + 1, "is too long"));
        }
    }
    if !out.is_empty() {
        sink.send(out.split().freeze()).await?;
    }
    sink.as_mut().finish().await?;
    let added = tx
        .execute(
            "INSERT INTO dnc_numbers (workspace_id, number, reason)
             SELECT DISTINCT $1::uuid, number, $2::text FROM dnc_import
             ON CONFLICT DO NOTHING",
            &[&workspace_id, &reason],
        )
        .await?;
    if let Some(copy) = registry_copy {
        dnc_registry::record(&tx, workspace_id, copy, numbers).await?;
    }
    tx.commit().await?;
    tracing::info!(lines = line_no, added, "do-not-call list imported");
    Ok(added)
}

fn csv_error(line: u64, what: &str) -> ApiError {
    ApiError::field(format!("line {line}"), what.to_owned())
}

/// `number`, `cursor` and `limit` of the list.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ListQuery {
    /// Just this number (E.164, or NANP without the country code).
    number: Option<String>,
    /// The previous page's `cursor`.
    cursor: Option<String>,
    /// Page size, 50 by default.
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<i64>,
}

/// A number on the do-not-call list.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct DncNumber {
    /// E.164
    number: String,
    reason: Option<String>,
    #[schema(format = DateTime)]
    created_at: String,
}

fn dnc_json(row: &tokio_postgres::Row) -> DncNumber {
    DncNumber {
        number: row.get("number"),
        reason: row.get("reason"),
        created_at: api_time(row.get("created_at")),
    }
}

/// `GET /api/dnc`: one number (`?number=`), or the list by number, `limit` (1–1000, 50) at a
/// time, `cursor` from the previous page.
#[utoipa::path(get, path = "/api/dnc", tag = "compliance", operation_id = "listDncNumbers", params(ListQuery), responses((status = 200, body = Page<DncNumber>), (status = 422, description = "limit out of range, a bad cursor or number", body = ErrorBody)))]
pub(crate) async fn list(
    State(state): State<AppState>,
    ws: Workspace,
    Query(q): Query<ListQuery>,
) -> Result<Json<Page<DncNumber>>, ApiError> {
    let limit = match q.limit {
        None => 50,
        Some(n) if (1..=1000).contains(&n) => n,
        Some(_) => return Err(ApiError::field("limit", "must be between 1 and 1000")),
    };
    let client = state.db.get().await?;
    if let Some(raw) = q.number.as_deref() {
        let number = normalize_number(raw)
            .ok_or_else(|| ApiError::field("number", format!("{raw:?} is not a phone number")))?;
        let rows = client
            .query(
                "SELECT number, reason, created_at FROM dnc_numbers
                 WHERE workspace_id = $1 AND number = $2",
                &[&ws.id, &number.as_str()],
            )
            .await?;
        return Ok(page_body(rows.iter().map(dnc_json), None));
    }
    let after = match q.cursor.as_deref() {
        None => String::new(),
        Some(c) => base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(c)
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .ok_or_else(|| ApiError::field("cursor", "is not a cursor this API returned"))?,
    };
    let rows = client
        .query(
            "SELECT number, reason, created_at FROM dnc_numbers
             WHERE workspace_id = $1 AND number > $2 ORDER BY number LIMIT $3",
            &[&ws.id, &after, &(limit + 1)],
        )
        .await?;
    let more = rows.len() as i64 > limit;
    let page = &rows[..rows.len().min(limit as usize)];
    let cursor = more
        .then(|| page.last().map(|r| r.get::<_, String>("number")))
        .flatten()
        .map(|n| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(n));
    Ok(page_body(page.iter().map(dnc_json), cursor))
}

/// `DELETE /api/dnc/{number}`: 204, or 404 when the number is not listed.
#[utoipa::path(delete, path = "/api/dnc/{number}", tag = "compliance", operation_id = "removeDncNumber", params(("number" = String, Path)), responses((status = 204, description = "removed"), (status = 404, description = "not on the list", body = ErrorBody)))]
pub(crate) async fn remove(
    State(state): State<AppState>,
    ws: Workspace,
    Path(raw): Path<String>,
) -> Result<StatusCode, ApiError> {
    let number = normalize_number(&raw).ok_or(ApiError::NotFound("do-not-call number"))?;
    let client = state.db.get().await?;
    let n = client
        .execute(
            "DELETE FROM dnc_numbers WHERE workspace_id = $1 AND number = $2",
            &[&ws.id, &number.as_str()],
        )
        .await?;
    if n == 0 {
        return Err(ApiError::NotFound("do-not-call number"));
    }
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /api/dials/{id}/opt_out`: lists the dial's number (reason `opt-out`) and ends the
/// contact's retries, in one transaction.
#[utoipa::path(post, path = "/api/dials/{id}/opt_out", tag = "compliance", operation_id = "optOutDial", params(("id" = String, Path, description = "the dial (attempt) id")), responses((status = 200, body = OptedOut)))]
pub(crate) async fn opt_out(
    State(state): State<AppState>,
    ws: Workspace,
    Path(id): Path<String>,
) -> Result<Json<OptedOut>, ApiError> {
    let id = path_id(&id, "dial")?;
    let mut client = state.db.get().await?;
    let tx = client.transaction().await?;
    let row = tx
        .query_opt(
            "SELECT contact_id, to_number FROM dial_attempts WHERE id = $1 AND workspace_id = $2",
            &[&id, &ws.id],
        )
        .await?
        .ok_or(ApiError::NotFound("dial"))?;
    let (contact_id, number): (Uuid, String) = (row.get("contact_id"), row.get("to_number"));
    tx.execute(
        "INSERT INTO dnc_numbers (workspace_id, number, reason) VALUES ($1, $2, 'opt-out')
         ON CONFLICT DO NOTHING",
        &[&ws.id, &number],
    )
    .await?;
    tx.execute(
        "INSERT INTO contact_events (contact_id, at, kind, reason, detail)
         VALUES ($1, now(), 'opted_out', 'opt-out', jsonb_build_object('dialId', $2::uuid))",
        &[&contact_id, &id],
    )
    .await?;
    // A retry waiting in the queue ends now; a contact released or dialing at this moment is
    // stopped by the scheduler's and the dial worker's own checks of the list.
    let suppressed =
        shared::db::rules::suppress_contacts(&*tx, &[contact_id], ContactState::Queued, None)
            .await?
            .len();
    tx.commit().await?;
    Ok(Json(OptedOut {
        dial_id: id,
        contact_id,
        number,
        opted_out: true,
        retries_ended: true,
        suppressed_now: suppressed > 0,
    }))
}

/// The answer of an opt-out.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct OptedOut {
    dial_id: Uuid,
    contact_id: Uuid,
    number: String,
    opted_out: bool,
    retries_ended: bool,
    /// A queued retry was suppressed by this request.
    suppressed_now: bool,
}

/// A contact's audit trail.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ContactEvents {
    contact_id: Uuid,
    #[schema(value_type = String)]
    state: ContactState,
    last_outcome: Option<CallOutcome>,
    /// recipient_hours, unknown_timezone or frequency_cap while a rule defers it.
    hold_reason: Option<String>,
    #[schema(format = DateTime)]
    next_attempt_at: Option<String>,
    /// Every decision, in order.
    data: Vec<ContactEvent>,
}

/// One decision about a contact (`event` names it); `at` is when.
#[derive(Serialize, ToSchema)]
#[serde(tag = "event", rename_all = "snake_case")]
pub(crate) enum ContactEvent {
    /// Stored by the ingest worker.
    Ingested {
        #[schema(format = DateTime)]
        at: String,
        number: String,
        timezones: Option<Vec<String>>,
        #[serde(rename = "batchId")]
        batch_id: Uuid,
    },
    /// Held back by a compliance rule (`detail.until`).
    Deferred(Logged),
    /// Not dialed: the number is on the do-not-call list.
    Suppressed(Logged),
    /// The callee opted out during a call (`detail.dialId`).
    OptedOut(Logged),
    /// Handed to the dial workers.
    Released {
        #[schema(format = DateTime)]
        at: String,
        attempt: i32,
    },
    /// The call was placed.
    Dialed {
        #[schema(format = DateTime)]
        at: String,
        attempt: i32,
        #[serde(rename = "dialId")]
        dial_id: Uuid,
        #[serde(rename = "callerId")]
        caller_id: Option<String>,
    },
    /// The call ended.
    Outcome {
        #[schema(format = DateTime)]
        at: String,
        attempt: i32,
        outcome: CallOutcome,
        reason: Option<String>,
    },
    /// Another attempt follows (`dueAt` for the next one still waiting).
    RetryScheduled {
        #[schema(format = DateTime)]
        at: String,
        attempt: i32,
        #[serde(rename = "dueAt")]
        #[schema(format = DateTime)]
        due_at: Option<String>,
    },
    /// Cancelled with its job.
    Cancelled {
        #[schema(format = DateTime)]
        at: String,
    },
    /// The carrier reported a call for an attempt that had been taken back (no request was
    /// known to have reached it): recorded, never applied — the contact was handed back at
    /// `takenBackAt` (docs/reliability.md, race 7). `at` is the last such report.
    LateAnswer {
        #[schema(format = DateTime)]
        at: String,
        attempt: i32,
        #[serde(rename = "dialId")]
        dial_id: Uuid,
        #[serde(rename = "callSid")]
        call_sid: Option<String>,
        /// The carrier's last status for that call.
        status: Option<String>,
        /// How many reports came.
        reports: i32,
        #[serde(rename = "takenBackAt")]
        #[schema(format = DateTime)]
        taken_back_at: String,
    },
}

/// An event the scheduler or a dial worker wrote to `contact_events`.
#[derive(Serialize, ToSchema)]
pub(crate) struct Logged {
    #[schema(format = DateTime)]
    at: String,
    reason: Option<String>,
    #[schema(value_type = Option<Object>)]
    detail: Option<Value>,
}

/// `GET /api/contacts/{id}/events`: the contact's decisions in order.
#[utoipa::path(get, path = "/api/contacts/{id}/events", tag = "compliance", operation_id = "listContactEvents", params(("id" = String, Path, description = "the contact id")), responses((status = 200, body = ContactEvents)))]
pub(crate) async fn events(
    State(state): State<AppState>,
    ws: Workspace,
    Path(id): Path<String>,
) -> Result<Json<ContactEvents>, ApiError> {
    let id = path_id(&id, "contact")?;
    let client = state.db.get().await?;
    let contact = TimelineContact::load(&client, id, ws.id).await?;
    let attempts = TimelineAttempt::load_all(&client, id).await?;
    let logged = LoggedRow::load_all(&client, id).await?;
    let late = late_answers(&client, id).await?;
    let batch = Batch::load(&client, ws.id, contact.batch_id).await?;
    let mut data = timeline(id, &contact, &attempts, &logged, &batch)?;
    with_late_answers(&mut data, late);
    Ok(Json(ContactEvents {
        contact_id: id,
        state: contact.state,
        last_outcome: contact.last_outcome,
        hold_reason: contact.hold_reason,
        next_attempt_at: contact.next_attempt_at.map(api_time),
        data,
    }))
}

/// The contact as its timeline reads it.
struct TimelineContact {
    state: ContactState,
    attempts: i32,
    /// `None` when not finite (never due again).
    next_attempt_at: Option<DateTime<Utc>>,
    released_at: Option<DateTime<Utc>>,
    updated_at: DateTime<Utc>,
    last_outcome: Option<CallOutcome>,
    phone_number: String,
    timezones: Option<Vec<String>>,
    hold_reason: Option<String>,
    batch_id: Uuid,
}

impl TimelineContact {
    async fn load(
        client: &deadpool_postgres::Client,
        id: Uuid,
        workspace_id: Uuid,
    ) -> Result<Self, ApiError> {
        let r = client
            .query_opt(
                "SELECT c.state, c.attempts,
                        CASE WHEN isfinite(c.next_attempt_at) THEN c.next_attempt_at END AS next_attempt_at,
                        c.released_at, c.updated_at,
                        c.last_outcome, c.phone_number, c.timezones, c.hold_reason, c.batch_id
                 FROM contacts c WHERE c.id = $1 AND c.workspace_id = $2",
                &[&id, &workspace_id],
            )
            .await?
            .ok_or(ApiError::NotFound("contact"))?;
        Ok(Self {
            state: r.try_get("state")?,
            attempts: r.try_get("attempts")?,
            next_attempt_at: r.try_get("next_attempt_at")?,
            released_at: r.try_get("released_at")?,
            updated_at: r.try_get("updated_at")?,
            last_outcome: r.try_get("last_outcome")?,
            phone_number: r.try_get("phone_number")?,
            timezones: r.try_get("timezones")?,
            hold_reason: r.try_get("hold_reason")?,
            batch_id: r.try_get("batch_id")?,
        })
    }
}

/// One of the contact's attempts, as its timeline reads it.
struct TimelineAttempt {
    id: Uuid,
    attempt_no: i32,
    from_number: Option<String>,
    created_at: DateTime<Utc>,
    started_at: Option<DateTime<Utc>>,
    ended_at: Option<DateTime<Utc>>,
    outcome: Option<CallOutcome>,
    error: Option<String>,
}

impl TimelineAttempt {
    async fn load_all(client: &deadpool_postgres::Client, id: Uuid) -> Result<Vec<Self>, ApiError> {
        let rows = client
            .query(
                "SELECT id, attempt_no, from_number, created_at, started_at, ended_at, outcome, error
                 FROM dial_attempts WHERE contact_id = $1 ORDER BY attempt_no",
                &[&id],
            )
            .await?;
        let read = |a: &tokio_postgres::Row| -> Result<Self, tokio_postgres::Error> {
            Ok(Self {
                id: a.try_get("id")?,
                attempt_no: a.try_get("attempt_no")?,
                from_number: a.try_get("from_number")?,
                created_at: a.try_get("created_at")?,
                started_at: a.try_get("started_at")?,
                ended_at: a.try_get("ended_at")?,
                outcome: a.try_get("outcome")?,
                error: a.try_get("error")?,
            })
        };
        Ok(rows.iter().map(read).collect::<Result<_, _>>()?)
    }
}

/// A row of `contact_events`.
struct LoggedRow {
    at: DateTime<Utc>,
    kind: String,
    reason: Option<String>,
    detail: Option<Value>,
}

impl LoggedRow {
    async fn load_all(client: &deadpool_postgres::Client, id: Uuid) -> Result<Vec<Self>, ApiError> {
        let rows = client
            .query(
                "SELECT at, kind, reason, detail FROM contact_events
                 WHERE contact_id = $1 ORDER BY at, id",
                &[&id],
            )
            .await?;
        let read = |r: &tokio_postgres::Row| -> Result<Self, tokio_postgres::Error> {
            Ok(Self {
                at: r.try_get("at")?,
                kind: r.try_get("kind")?,
                reason: r.try_get("reason")?,
                detail: r.try_get("detail")?,
            })
        };
        Ok(rows.iter().map(read).collect::<Result<_, _>>()?)
    }

    /// The event it records.
    fn event(&self) -> Result<ContactEvent, ApiError> {
        let logged = Logged {
            at: api_time(self.at),
            reason: self.reason.clone(),
            detail: self.detail.clone(),
        };
        match self.kind.as_str() {
            "deferred" => Ok(ContactEvent::Deferred(logged)),
            "suppressed" => Ok(ContactEvent::Suppressed(logged)),
            "opted_out" => Ok(ContactEvent::OptedOut(logged)),
            other => Err(ApiError::Internal(anyhow::anyhow!(
                "a contact event has an unknown kind {other:?}"
            ))),
        }
    }
}

/// The late answers recorded on the contact's taken-back attempts (V21), with their times.
async fn late_answers(
    client: &deadpool_postgres::Client,
    id: Uuid,
) -> Result<Vec<(DateTime<Utc>, ContactEvent)>, ApiError> {
    let rows = client
        .query(
            "SELECT attempt_id, attempt_no, carrier_call_sid, last_late_status, late_answers,
                    taken_back_at, COALESCE(last_late_at, taken_back_at) AS at
             FROM taken_back_attempts WHERE contact_id = $1 AND late_answers > 0",
            &[&id],
        )
        .await?;
    let read = |r: &tokio_postgres::Row| -> Result<_, tokio_postgres::Error> {
        let at: DateTime<Utc> = r.try_get("at")?;
        let taken_back_at: DateTime<Utc> = r.try_get("taken_back_at")?;
        Ok((
            at,
            ContactEvent::LateAnswer {
                at: api_time(at),
                attempt: r.try_get("attempt_no")?,
                dial_id: r.try_get("attempt_id")?,
                call_sid: r.try_get("carrier_call_sid")?,
                status: r.try_get("last_late_status")?,
                reports: r.try_get("late_answers")?,
                taken_back_at: api_time(taken_back_at),
            },
        ))
    };
    Ok(rows.iter().map(read).collect::<Result<_, _>>()?)
}

/// Places each late answer after every event up to its time (the timeline is in order; a
/// late answer sorts after the events of the same instant).
fn with_late_answers(data: &mut Vec<ContactEvent>, late: Vec<(DateTime<Utc>, ContactEvent)>) {
    for (at, event) in late {
        let stamp = api_time(at);
        let pos = data
            .iter()
            .position(|e| event_at(e).is_some_and(|t| t > stamp.as_str()))
            .unwrap_or(data.len());
        data.insert(pos, event);
    }
}

/// When an event happened, as shown (`api_time` strings sort as times).
fn event_at(e: &ContactEvent) -> Option<&str> {
    match e {
        ContactEvent::Ingested { at, .. }
        | ContactEvent::Released { at, .. }
        | ContactEvent::Dialed { at, .. }
        | ContactEvent::Outcome { at, .. }
        | ContactEvent::RetryScheduled { at, .. }
        | ContactEvent::Cancelled { at }
        | ContactEvent::LateAnswer { at, .. } => Some(at),
        ContactEvent::Deferred(l) | ContactEvent::Suppressed(l) | ContactEvent::OptedOut(l) => {
            Some(&l.at)
        }
    }
}

/// An event with where it sorts: its time, then its place among events of the same instant.
type Placed = (DateTime<Utc>, u8, ContactEvent);

/// The contact's events in order, from what was read (no I/O).
fn timeline(
    id: Uuid,
    contact: &TimelineContact,
    attempts: &[TimelineAttempt],
    logged: &[LoggedRow],
    batch: &Batch,
) -> Result<Vec<ContactEvent>, ApiError> {
    let mut out: Vec<Placed> = vec![ingested(id, contact, batch)];
    for r in logged {
        out.push((r.at, 1, r.event()?));
    }
    for (i, a) in attempts.iter().enumerate() {
        let is_last = i + 1 == attempts.len();
        out.extend(attempt_events(a));
        if let Some(retry) = retry_after(a, is_last, contact, batch) {
            out.push(retry);
        }
    }
    // Released and not yet written an attempt: the release itself (an attempt's own release
    // is shown at its start, which follows it within the hand-off).
    if contact.state == ContactState::Released
        && let Some(at) = contact.released_at
    {
        out.push((
            at,
            2,
            ContactEvent::Released {
                at: api_time(at),
                attempt: contact.attempts + 1,
            },
        ));
    }
    if contact.state == ContactState::Cancelled {
        let at = contact.updated_at;
        out.push((at, 6, ContactEvent::Cancelled { at: api_time(at) }));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.cmp(&b.1)));
    Ok(out.into_iter().map(|(_, _, v)| v).collect())
}

/// The contact's first event. Contact ids are UUIDv7, minted by the ingest worker as it stores
/// the row (and by the database for `POST …/retry` copies). An id without a time (written some
/// other way) is shown at its batch's creation, the earliest it can have been ingested.
fn ingested(id: Uuid, contact: &TimelineContact, batch: &Batch) -> Placed {
    let at = id
        .get_timestamp()
        .and_then(|t| {
            let (s, n) = t.to_unix();
            DateTime::from_timestamp(i64::try_from(s).ok()?, n)
        })
        .unwrap_or(batch.created_at);
    (
        at,
        0,
        ContactEvent::Ingested {
            at: api_time(at),
            number: contact.phone_number.clone(),
            timezones: contact.timezones.clone(),
            batch_id: batch.id,
        },
    )
}

/// An attempt's release, dial and (once ended) outcome.
fn attempt_events(a: &TimelineAttempt) -> Vec<Placed> {
    let dialed = a.started_at.unwrap_or(a.created_at);
    let mut out = vec![
        (
            a.created_at,
            2,
            ContactEvent::Released {
                at: api_time(a.created_at),
                attempt: a.attempt_no,
            },
        ),
        (
            dialed,
            3,
            ContactEvent::Dialed {
                at: api_time(dialed),
                attempt: a.attempt_no,
                dial_id: a.id,
                caller_id: a.from_number.clone(),
            },
        ),
    ];
    if let Some(outcome) = a.outcome {
        let ended = a.ended_at.unwrap_or(dialed);
        out.push((
            ended,
            4,
            ContactEvent::Outcome {
                at: api_time(ended),
                attempt: a.attempt_no,
                outcome,
                reason: a.error.clone(),
            },
        ));
    }
    out
}

/// The retry an ended attempt's end scheduled, read from what the dial worker recorded: the
/// attempt that followed it, or, for the last attempt, the contact not made final by that end
/// (see [`end_was_final`]). Shown even when the waiting retry was later suppressed, opted out of
/// or cancelled (those follow as events of their own).
fn retry_after(
    a: &TimelineAttempt,
    is_last: bool,
    contact: &TimelineContact,
    batch: &Batch,
) -> Option<Placed> {
    let outcome = a.outcome?;
    let ended = a.ended_at.or(a.started_at).unwrap_or(a.created_at);
    if is_last && end_was_final(contact, outcome, ended, batch.completed_at) {
        return None;
    }
    // The one still waiting shows when it is due now (a deferral may have moved it); an
    // earlier one, when the job's strategy made it due (its due time is not recorded).
    let due = if is_last && contact.state == ContactState::Queued {
        contact.next_attempt_at
    } else {
        batch
            .retry
            .next_delay(outcome, u32::try_from(a.attempt_no).unwrap_or(u32::MAX))
            .and_then(|d| chrono::Duration::from_std(d).ok())
            .map(|d| ended + d)
    };
    Some((
        ended,
        5,
        ContactEvent::RetryScheduled {
            at: api_time(ended),
            attempt: a.attempt_no + 1,
            due_at: due.map(api_time),
        },
    ))
}

/// Whether the end of the contact's last attempt (`outcome`, at `ended`) made the contact
/// final, as the contact records it: it still shows that end's outcome in a final state (a
/// later suppression or opt-out changes `last_outcome`), or it was cancelled at or before that
/// end (the job's cancel, `completed_at`, came first). Otherwise the end put it back to wait
/// for a retry, which it is still waiting for or placing.
fn end_was_final(
    contact: &TimelineContact,
    outcome: CallOutcome,
    ended: DateTime<Utc>,
    job_completed_at: Option<DateTime<Utc>>,
) -> bool {
    match contact.state {
        ContactState::Completed | ContactState::Failed => contact.last_outcome == Some(outcome),
        ContactState::Cancelled => job_completed_at.is_some_and(|c| ended >= c),
        ContactState::Queued | ContactState::Released | ContactState::Dialing => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_normalise_to_e164() {
        let n = |s| normalize_number(s).map(|e| e.as_str().to_owned());
        assert_eq!(n("+12015550123").as_deref(), Some("+12015550123"));
        assert_eq!(n("(201) 555-0123").as_deref(), Some("+12015550123"));
        assert_eq!(n("1-201-555-0123").as_deref(), Some("+12015550123"));
        assert_eq!(n("\"+44 20 7946 0958\"").as_deref(), Some("+442079460958"));
        assert_eq!(n("number"), None);
        assert_eq!(n("12345"), None);
        assert_eq!(n("0201555012"), None);
    }
}

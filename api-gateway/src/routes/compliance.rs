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
use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use serde_json::{Value, json};
use shared::domain::E164;
use shared::domain::timing::api_time;
use uuid::Uuid;

use crate::app::AppState;
use crate::auth::Workspace;
use crate::error::ApiError;
use crate::extract::{Query, path_id};
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DncIn {
    numbers: Vec<String>,
    #[serde(default)]
    reason: Option<String>,
}

#[derive(Deserialize)]
pub(crate) struct ReasonQuery {
    reason: Option<String>,
}

fn check_reason(reason: Option<String>, v: &mut Violations) -> Option<String> {
    let reason = reason.filter(|r| !r.trim().is_empty())?;
    if reason.len() > 200 || reason.contains('\0') {
        v.add("reason", "must be at most 200 characters, without NUL");
    }
    Some(reason)
}

/// `POST /api/dnc`: JSON or CSV; answers `{"added": n}` (numbers new to the list).
#[utoipa::path(post, path = "/api/dnc", tag = "compliance", params(("reason" = Option<String>, Query, description = "for text/csv bodies")), request_body(content = crate::openapi::DncIn, description = "JSON, or text/csv with one number per line"), responses((status = 200, body = crate::openapi::DncAdded), (status = 400, description = "malformed JSON", body = crate::openapi::ErrorBody), (status = 422, description = "a number (or CSV line) that is not a phone number; nothing added", body = crate::openapi::ErrorBody), (status = 401, description = "no valid API key", body = crate::openapi::ErrorBody)))]
pub(crate) async fn add(
    State(state): State<AppState>,
    ws: Workspace,
    Query(q): Query<ReasonQuery>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    let is_csv = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.trim_start().to_ascii_lowercase().starts_with("text/csv"));
    let added = if is_csv {
        let mut v = Violations::default();
        let reason = check_reason(q.reason, &mut v);
        v.into_result(())?;
        import_csv(&state, ws.id, reason.as_deref(), body).await?
    } else {
        let bytes = axum::body::to_bytes(body, state.config.max_body_bytes)
            .await
            .map_err(|_| {
                ApiError::TooLarge("the body is too large; send big lists as text/csv".into())
            })?;
        let input: DncIn = serde_json::from_slice(&bytes).map_err(|e| ApiError::BadRequest {
            message: e.to_string(),
            details: vec![crate::error::FieldError::new("body", e.to_string())],
        })?;
        let mut v = Violations::default();
        let reason = check_reason(input.reason.or(q.reason), &mut v);
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
        let client = state.db.get().await?;
        client
            .execute(
                "INSERT INTO dnc_numbers (workspace_id, number, reason)
                 SELECT DISTINCT $1::uuid, n, $3::text FROM unnest($2::text[]) n
                 ON CONFLICT DO NOTHING",
                &[&ws.id, &numbers, &reason],
            )
            .await?
    };
    Ok(Json(json!({ "added": added })))
}

/// Streams a CSV body into a temporary table with `COPY`, then merges it into the list in the
/// same transaction; nothing is added unless every line reads.
async fn import_csv(
    state: &AppState,
    workspace_id: Uuid,
    reason: Option<&str>,
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
    tx.commit().await?;
    tracing::info!(lines = line_no, added, "do-not-call list imported");
    Ok(added)
}

fn csv_error(line: u64, what: &str) -> ApiError {
    ApiError::field(format!("line {line}"), what.to_owned())
}

#[derive(Deserialize)]
pub(crate) struct ListQuery {
    number: Option<String>,
    cursor: Option<String>,
    limit: Option<i64>,
}

fn dnc_json(row: &tokio_postgres::Row) -> Value {
    json!({
        "number": row.get::<_, String>("number"),
        "reason": row.get::<_, Option<String>>("reason"),
        "createdAt": api_time(row.get("created_at")),
    })
}

/// `GET /api/dnc`: one number (`?number=`), or the list by number, `limit` (1–1000, 50) at a
/// time, `cursor` from the previous page.
#[utoipa::path(get, path = "/api/dnc", tag = "compliance", params(("number" = Option<String>, Query), ("cursor" = Option<String>, Query), ("limit" = Option<i64>, Query)), responses((status = 200, body = crate::openapi::DncPage), (status = 422, description = "validation failed", body = crate::openapi::ErrorBody), (status = 401, description = "no valid API key", body = crate::openapi::ErrorBody)))]
pub(crate) async fn list(
    State(state): State<AppState>,
    ws: Workspace,
    Query(q): Query<ListQuery>,
) -> Result<Json<Value>, ApiError> {
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
        return Ok(Json(
            json!({"data": rows.iter().map(dnc_json).collect::<Vec<_>>(), "cursor": null}),
        ));
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
    Ok(Json(
        json!({"data": page.iter().map(dnc_json).collect::<Vec<_>>(), "cursor": cursor}),
    ))
}

/// `DELETE /api/dnc/{number}`: 204, or 404 when the number is not listed.
#[utoipa::path(delete, path = "/api/dnc/{number}", tag = "compliance", params(("number" = String, Path)), responses((status = 204, description = "removed"), (status = 404, description = "not on the list", body = crate::openapi::ErrorBody), (status = 401, description = "no valid API key", body = crate::openapi::ErrorBody)))]
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
#[utoipa::path(post, path = "/api/dials/{id}/opt_out", tag = "compliance", params(("id" = String, Path, description = "the dial (attempt) id")), responses((status = 200, body = crate::openapi::OptedOut), (status = 404, description = "not found in this workspace", body = crate::openapi::ErrorBody), (status = 401, description = "no valid API key", body = crate::openapi::ErrorBody)))]
pub(crate) async fn opt_out(
    State(state): State<AppState>,
    ws: Workspace,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
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
    let suppressed = tx
        .execute(
            "WITH s AS (
                 UPDATE contacts SET state = 'failed', last_outcome = 'suppressed',
                     hold_reason = NULL, updated_at = now()
                 WHERE id = $1 AND state = 'queued'
                 RETURNING id)
             INSERT INTO contact_events (contact_id, at, kind, reason)
             SELECT id, now(), 'suppressed', 'do_not_call' FROM s",
            &[&contact_id],
        )
        .await?;
    tx.commit().await?;
    Ok(Json(json!({
        "dialId": id,
        "contactId": contact_id,
        "number": number,
        "optedOut": true,
        "retriesEnded": true,
        "suppressedNow": suppressed > 0,
    })))
}

/// `GET /api/contacts/{id}/events`: the contact's decisions in order.
#[utoipa::path(get, path = "/api/contacts/{id}/events", tag = "compliance", params(("id" = String, Path, description = "the contact id")), responses((status = 200, body = crate::openapi::ContactEvents), (status = 404, description = "not found in this workspace", body = crate::openapi::ErrorBody), (status = 401, description = "no valid API key", body = crate::openapi::ErrorBody)))]
pub(crate) async fn events(
    State(state): State<AppState>,
    ws: Workspace,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let id = path_id(&id, "contact")?;
    let client = state.db.get().await?;
    let contact = client
        .query_opt(
            "SELECT c.state, c.attempts,
                    CASE WHEN isfinite(c.next_attempt_at) THEN c.next_attempt_at END AS next_attempt_at,
                    c.released_at, c.updated_at,
                    c.last_outcome, c.phone_number, c.timezones, c.hold_reason, c.batch_id
             FROM contacts c WHERE c.id = $1 AND c.workspace_id = $2",
            &[&id, &ws.id],
        )
        .await?
        .ok_or(ApiError::NotFound("contact"))?;
    let attempts = client
        .query(
            "SELECT id, attempt_no, from_number, created_at, started_at, ended_at, outcome, error
             FROM dial_attempts WHERE contact_id = $1 ORDER BY attempt_no",
            &[&id],
        )
        .await?;
    let logged = client
        .query(
            "SELECT at, kind, reason, detail FROM contact_events
             WHERE contact_id = $1 ORDER BY at, id",
            &[&id],
        )
        .await?;
    let state_name: String = contact.get("state");
    let mut out: Vec<(chrono::DateTime<chrono::Utc>, u8, Value)> = Vec::new();
    // Contact ids are UUIDv7, minted by the ingest worker as it stores the row.
    if let Some(at) = id.get_timestamp().and_then(|t| {
        let (s, n) = t.to_unix();
        chrono::DateTime::from_timestamp(i64::try_from(s).ok()?, n)
    }) {
        let zones: Option<Vec<String>> = contact.get("timezones");
        out.push((
            at,
            0,
            json!({"event": "ingested", "at": api_time(at), "number": contact.get::<_, String>("phone_number"),
                   "timezones": zones, "batchId": contact.get::<_, Uuid>("batch_id")}),
        ));
    }
    for r in &logged {
        let at: chrono::DateTime<chrono::Utc> = r.get("at");
        let kind: String = r.get("kind");
        out.push((
            at,
            1,
            json!({"event": kind, "at": api_time(at), "reason": r.get::<_, Option<String>>("reason"),
                   "detail": r.get::<_, Option<Value>>("detail")}),
        ));
    }
    let last_no = attempts.len();
    for (i, a) in attempts.iter().enumerate() {
        let created: chrono::DateTime<chrono::Utc> = a.get("created_at");
        let attempt_no: i32 = a.get("attempt_no");
        out.push((
            created,
            2,
            json!({"event": "released", "at": api_time(created), "attempt": attempt_no}),
        ));
        let started: Option<chrono::DateTime<chrono::Utc>> = a.get("started_at");
        let dialed = started.unwrap_or(created);
        out.push((
            dialed,
            3,
            json!({"event": "dialed", "at": api_time(dialed), "attempt": attempt_no,
                   "dialId": a.get::<_, Uuid>("id"), "callerId": a.get::<_, Option<String>>("from_number")}),
        ));
        let outcome: Option<String> = a.get("outcome");
        if let Some(outcome) = &outcome {
            let ended: chrono::DateTime<chrono::Utc> = a
                .get::<_, Option<chrono::DateTime<chrono::Utc>>>("ended_at")
                .unwrap_or(dialed);
            out.push((
                ended,
                4,
                json!({"event": "outcome", "at": api_time(ended), "attempt": attempt_no,
                       "outcome": outcome, "reason": a.get::<_, Option<String>>("error")}),
            ));
            let retried = i + 1 < last_no || (state_name == "queued" && i + 1 == last_no);
            if retried && matches!(outcome.as_str(), "busy" | "no-answer" | "voicemail") {
                let due: Option<chrono::DateTime<chrono::Utc>> = if i + 1 == last_no {
                    contact.get("next_attempt_at")
                } else {
                    None
                };
                out.push((
                    ended,
                    5,
                    json!({"event": "retry_scheduled", "at": api_time(ended),
                           "attempt": attempt_no + 1, "dueAt": due.map(api_time)}),
                ));
            }
        }
    }
    if state_name == "cancelled" {
        let at: chrono::DateTime<chrono::Utc> = contact.get("updated_at");
        out.push((at, 6, json!({"event": "cancelled", "at": api_time(at)})));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.cmp(&b.1)));
    Ok(Json(json!({
        "contactId": id,
        "state": state_name,
        "lastOutcome": contact.get::<_, Option<String>>("last_outcome"),
        "holdReason": contact.get::<_, Option<String>>("hold_reason"),
        "nextAttemptAt": contact.get::<_, Option<chrono::DateTime<chrono::Utc>>>("next_attempt_at").map(api_time),
        "data": out.into_iter().map(|(_, _, v)| v).collect::<Vec<_>>(),
    })))
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

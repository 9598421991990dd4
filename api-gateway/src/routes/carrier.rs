//! `POST /carrier/status/{attempt_id}`: the carrier's status callbacks.
//!
//! Each callback is checked against its `X-Twilio-Signature` (HMAC-SHA1 keyed by the carrier
//! auth token over `PUBLIC_URL` + path + sorted form parameters), then forwarded to the dial
//! workers as a `CallEventV1` on the call-events queue, publisher-confirmed before the 204, so a
//! callback the carrier sees acknowledged is never lost. When the broker cannot take it (down,
//! restarting, no confirm within [`PUBLISH_TIMEOUT`]) the event is stored in PostgreSQL
//! instead ([`crate::callback_outbox`]) and relayed later; only when neither can take it does
//! the carrier get a 503 (and retry).
//!
//! Refusals use the one JSON error shape, like every other route: an attempt id that is not a
//! UUID is a 404, a bad signature a 403, a missing or unknown `CallStatus` a 400.

use axum::Router;
use axum::extract::rejection::FormRejection;
use axum::extract::{Form, Path, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::routing::post;
use chrono::Utc;
use shared::queue::Stream;
use shared::queue::messages::{CallEventV1, CarrierCallStatus};
use shared::queue::publisher::Outgoing;
use uuid::Uuid;

use crate::callback_outbox::{self, PUBLISH_TIMEOUT};
use crate::error::{ApiError, FieldError};
use crate::extract::path_id;
use crate::state::AppState;

/// The carrier callback routes.
pub fn router() -> Router<AppState> {
    Router::new().route("/carrier/status/{attempt_id}", post(status_callback))
}

#[tracing::instrument(skip_all, fields(attempt_id = tracing::field::Empty))]
async fn status_callback(
    State(state): State<AppState>,
    Path(attempt_id): Path<String>,
    uri: Uri,
    headers: HeaderMap,
    form: Result<Form<Vec<(String, String)>>, FormRejection>,
) -> Result<StatusCode, ApiError> {
    let attempt_id: Uuid = path_id(&attempt_id, "dial attempt")?;
    tracing::Span::current().record("attempt_id", tracing::field::display(attempt_id));
    let Form(params) = form.map_err(|e| ApiError::BadRequest {
        message: e.body_text(),
        details: vec![FieldError::new("body", e.body_text())],
    })?;
    let path_and_query = uri.path_and_query().map_or(uri.path(), |p| p.as_str());
    let url = format!(
        "{}{}",
        state.config.public_url.trim_end_matches('/'),
        path_and_query
    );
    let signature = headers
        .get("x-twilio-signature")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if !shared::twilio::verify(&state.config.carrier_auth_token, &url, &params, signature) {
        tracing::warn!("carrier callback with a bad signature");
        return Err(ApiError::Forbidden(
            "the X-Twilio-Signature does not match this request".to_owned(),
        ));
    }
    let param = |name: &str| {
        params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let Some(status) = param("CallStatus").and_then(parse_status) else {
        return Err(ApiError::BadRequest {
            message: "CallStatus is missing or not a Twilio call status".to_owned(),
            details: vec![FieldError::new(
                "CallStatus",
                "must be a Twilio call status (queued, ringing, in-progress, completed, busy, no-answer, failed, canceled)",
            )],
        });
    };
    let event = CallEventV1 {
        attempt_id,
        call_sid: param("CallSid").unwrap_or_default().to_owned(),
        status,
        answered_by: param("AnsweredBy").map(str::to_owned),
        duration_secs: param("CallDuration").and_then(|d| d.parse().ok()),
        received_at: Utc::now(),
    };
    let message_id = format!("{attempt_id}:{}", param("CallStatus").unwrap_or_default());
    let message = match Outgoing::json(&event) {
        Ok(m) => m.with_id(message_id.clone()),
        Err(e) => return Err(ApiError::Internal(e.into())),
    };
    let published = tokio::time::timeout(
        PUBLISH_TIMEOUT,
        state.publisher.publish(Stream::CallEvents, message),
    )
    .await;
    let why = match published {
        Ok(Ok(())) => return Ok(StatusCode::NO_CONTENT),
        Ok(Err(e)) => e.to_string(),
        Err(_) => "no confirm in time".to_owned(),
    };
    // The broker cannot take it now: keep it in PostgreSQL for the relay.
    let payload = serde_json::to_value(&event).map_err(|e| ApiError::Internal(e.into()))?;
    match callback_outbox::store(&state.db, &message_id, &payload).await {
        Ok(()) => {
            tracing::warn!(broker = %why, "carrier callback stored for the relay");
            Ok(StatusCode::NO_CONTENT)
        }
        Err(e) => {
            // Neither can take it: the carrier retries a failed callback.
            tracing::error!(broker = %why, error = %e, "cannot forward a carrier callback");
            Err(ApiError::Unavailable(format!(
                "the callback could not be forwarded ({why}) nor stored ({e}); retry it"
            )))
        }
    }
}

fn parse_status(s: &str) -> Option<CarrierCallStatus> {
    serde_json::from_value(serde_json::Value::String(s.to_owned())).ok()
}

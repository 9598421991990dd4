//! `POST /carrier/status/{attempt_id}`: the carrier's status callbacks.
//!
//! Each callback is checked against its `X-Twilio-Signature` (HMAC-SHA1 keyed by the carrier
//! auth token over `PUBLIC_URL` + path + sorted form parameters), then forwarded to the dial
//! workers as a `CallEventV1` on the call-events queue, publisher-confirmed before the 204, so a
//! callback the carrier sees acknowledged is never lost. When the broker cannot take it (down,
//! restarting, no confirm within [`PUBLISH_TIMEOUT`]) the event is stored in PostgreSQL
//! instead ([`crate::callback_outbox`]) and relayed later; only when neither can take it does
//! the carrier get a 503 (and retry).

use axum::Router;
use axum::extract::{Form, Path, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::routing::post;
use chrono::Utc;
use shared::queue::Stream;
use shared::queue::messages::{CallEventV1, CarrierCallStatus};
use shared::queue::publisher::Outgoing;
use uuid::Uuid;

use crate::app::AppState;
use crate::callback_outbox::{self, PUBLISH_TIMEOUT};

/// The carrier callback routes.
pub fn router() -> Router<AppState> {
    Router::new().route("/carrier/status/{attempt_id}", post(status_callback))
}

#[tracing::instrument(skip_all, fields(attempt_id = %attempt_id))]
async fn status_callback(
    State(state): State<AppState>,
    Path(attempt_id): Path<Uuid>,
    uri: Uri,
    headers: HeaderMap,
    Form(params): Form<Vec<(String, String)>>,
) -> StatusCode {
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
        return StatusCode::FORBIDDEN;
    }
    let param = |name: &str| {
        params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let Some(status) = param("CallStatus").and_then(parse_status) else {
        return StatusCode::BAD_REQUEST;
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
        Err(_) => return StatusCode::INTERNAL_SERVER_ERROR,
    };
    let published = tokio::time::timeout(
        PUBLISH_TIMEOUT,
        state.publisher.publish(Stream::CallEvents, message),
    )
    .await;
    let why = match published {
        Ok(Ok(())) => return StatusCode::NO_CONTENT,
        Ok(Err(e)) => e.to_string(),
        Err(_) => "no confirm in time".to_owned(),
    };
    // The broker cannot take it now: keep it in PostgreSQL for the relay.
    let payload = match serde_json::to_value(&event) {
        Ok(v) => v,
        Err(_) => return StatusCode::INTERNAL_SERVER_ERROR,
    };
    match callback_outbox::store(&state.db, &message_id, &payload).await {
        Ok(()) => {
            tracing::warn!(broker = %why, "carrier callback stored for the relay");
            StatusCode::NO_CONTENT
        }
        Err(e) => {
            // Neither can take it: the carrier retries a failed callback.
            tracing::error!(broker = %why, error = %e, "cannot forward a carrier callback");
            StatusCode::SERVICE_UNAVAILABLE
        }
    }
}

fn parse_status(s: &str) -> Option<CarrierCallStatus> {
    serde_json::from_value(serde_json::Value::String(s.to_owned())).ok()
}

//! The Batch Dials page (issue 27): one live page per workspace listing its batches of both
//! APIs, newest first and paginated, with the workspace's lines, rate and compliance policy at
//! the top. `GET /workspace/{id}/dials?token=…[&status=STATE][&before=BATCH]` serves it, and
//! `…/dials/events` pushes its updates as Server-Sent Events, through the monitor's hub
//! ([`crate::monitor::hub::Hub::dials`]).
//!
//! - **Access**: the signed, expiring token of [`token`], scoped to the workspace, minted by
//!   [`link::mint`]; anything else gets the 403 page.
//! - **Cost**: one page of batches per refresh per watched page ([`snapshot`]), whatever the
//!   workspace's history.

pub mod feed;
pub mod link;
pub mod render;
pub mod snapshot;
pub mod token;

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use chrono::Utc;
use futures_util::Stream;
use serde::Deserialize;
use uuid::Uuid;

use shared::domain::JobState;

use crate::error::ApiError;
use crate::monitor::headers::html_status;
use crate::monitor::render as batch_render;
use crate::state::AppState;
use snapshot::PageKey;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/workspace/{id}/dials", get(page))
        .route("/workspace/{id}/dials/events", get(events))
}

#[derive(Deserialize)]
struct PageQuery {
    token: Option<String>,
    /// A control link's token (`?control=true` on the mint route): the rows get buttons.
    control: Option<String>,
    status: Option<String>,
    before: Option<String>,
}

fn refused(status: StatusCode, reason: &str) -> Box<Response> {
    Box::new(html_status(status, render::denied(reason)))
}

/// The page's key, once the token opens the workspace; otherwise the page to answer with.
fn authorize(state: &AppState, raw_id: &str, q: &PageQuery) -> Result<PageKey, Box<Response>> {
    let Ok(workspace) = Uuid::parse_str(raw_id) else {
        return Err(refused(StatusCode::FORBIDDEN, "this link is not valid"));
    };
    let secret = state.config.monitor_token_secret.as_bytes();
    match q.control.as_deref() {
        // Judged alone: a bad control token never falls back to `token`.
        Some(control) => crate::monitor::token::verify_grant(
            secret,
            crate::monitor::token::Grant::WorkspaceControl,
            workspace,
            Some(control),
            Utc::now(),
        )
        .map_err(|_| {
            refused(
                StatusCode::FORBIDDEN,
                "this control link is not valid or has expired",
            )
        })?,
        None => token::verify(secret, workspace, q.token.as_deref(), Utc::now())
            .map_err(|e| refused(StatusCode::FORBIDDEN, &e.to_string()))?,
    }
    let state_filter = match q.status.as_deref() {
        None | Some("" | "all") => None,
        Some(s) => Some(JobState::parse(s).ok_or_else(|| {
            refused(
                StatusCode::BAD_REQUEST,
                "status must be one of created, active, paused, completed, cancelled, failed",
            )
        })?),
    };
    let before = match q.before.as_deref() {
        None | Some("") => None,
        Some(b) => Some(
            Uuid::parse_str(b)
                .map_err(|_| refused(StatusCode::BAD_REQUEST, "before must be a batch id"))?,
        ),
    };
    Ok(PageKey {
        workspace,
        state: state_filter,
        before,
    })
}

fn secret(state: &AppState) -> Arc<[u8]> {
    Arc::from(state.config.monitor_token_secret.as_bytes())
}

async fn page(
    State(state): State<AppState>,
    Path(raw_id): Path<String>,
    Query(q): Query<PageQuery>,
) -> Response {
    let key = match authorize(&state, &raw_id, &q) {
        Ok(key) => key,
        Err(refusal) => return *refusal,
    };
    match state.monitor.dials.subscribe(key, secret(&state)).await {
        Ok(rx) => {
            let view = rx.borrow().clone();
            let secret = state.config.monitor_token_secret.as_bytes();
            let req = match q.control.as_deref() {
                Some(control) => render::Request {
                    param: "control",
                    token: control,
                    csrf: Some(crate::monitor::token::csrf(secret, key.workspace, control)),
                },
                None => render::Request {
                    param: "token",
                    token: q.token.as_deref().unwrap_or(""),
                    csrf: None,
                },
            };
            html_status(StatusCode::OK, render::page(&view, &req))
        }
        Err(ApiError::NotFound(_)) => {
            *refused(StatusCode::NOT_FOUND, "this workspace no longer exists")
        }
        Err(ApiError::RateLimited(_)) => *refused(
            StatusCode::TOO_MANY_REQUESTS,
            "too many pages of this workspace are open at once; close some and try again in 10 seconds",
        ),
        Err(ApiError::Unavailable(reason)) => {
            tracing::warn!(workspace_id = %key.workspace, %reason, "batch dials: figures unavailable");
            html_status(StatusCode::SERVICE_UNAVAILABLE, batch_render::unavailable())
        }
        Err(e) => e.into_response(),
    }
}

async fn events(
    State(state): State<AppState>,
    Path(raw_id): Path<String>,
    Query(q): Query<PageQuery>,
) -> Response {
    let key = match authorize(&state, &raw_id, &q) {
        Ok(key) => key,
        Err(refusal) => return *refusal,
    };
    let rx = match state.monitor.dials.subscribe(key, secret(&state)).await {
        Ok(rx) => rx,
        Err(e) => return e.into_response(),
    };
    let mut response = Sse::new(updates(rx, state.monitor.shutdown()))
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// The current view at once, then each new one, until the feed ends or the gateway stops.
fn updates(
    rx: tokio::sync::watch::Receiver<Arc<render::View>>,
    shutdown: tokio_util::sync::CancellationToken,
) -> impl Stream<Item = Result<Event, Infallible>> {
    futures_util::stream::unfold((rx, true), move |(mut rx, first)| {
        let shutdown = shutdown.clone();
        async move {
            if !first {
                tokio::select! {
                    changed = rx.changed() => changed.ok()?,
                    _ = shutdown.cancelled() => return None,
                }
            }
            let data = rx.borrow_and_update().json.clone();
            Some((Ok(Event::default().event("update").data(data)), (rx, false)))
        }
    })
}

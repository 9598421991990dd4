//! The live monitor page behind `links.dashboard`: `GET /batch/monitor/{id}?token=…` serves one
//! batch's page, rendered on the server, and `GET /batch/monitor/{id}/events?token=…` pushes its
//! updates as Server-Sent Events.
//!
//! - **Access**: the signed, expiring token of [`token`], scoped to the batch; anything else
//!   gets the 401 page. A read-only token (`?token=`) opens these two routes and nothing else;
//!   a control token (`?control=`) opens them with the pause, resume and cancel buttons, whose
//!   `POST /batch/monitor/{id}/control/{action}` ([`act`]) it alone may call.
//! - **Cost**: figures come from one statement per refresh per *batch* ([`snapshot`]), shared by
//!   every page and stream open on it ([`hub`]); a request costs a subscription, not a query.
//! - **Offline**: the page loads nothing from elsewhere (a Content-Security-Policy of
//!   `default-src 'none'` says so to the browser too); the chart is inline SVG ([`render`]).

pub mod act;
pub mod dials;
mod headers;
pub mod hub;
pub mod link;
pub mod pace;
pub mod render;
pub mod secret;
pub mod snapshot;
pub mod token;

pub use link::dashboard_link;

use std::convert::Infallible;
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chrono::Utc;
use futures_util::Stream;
use serde::Deserialize;
use uuid::Uuid;

use crate::error::ApiError;
use crate::state::AppState;
use headers::html_status;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/batch/monitor/{id}", get(page))
        .route("/batch/monitor/{id}/events", get(events))
        .route("/batch/monitor/{id}/control/{action}", post(act::act))
        .route(
            "/workspace/{ws}/dials/control/{id}/{action}",
            post(act::act_in_workspace),
        )
        .merge(dials::router())
}

/// The page's credentials: a read-only `token`, or a `control` token.
#[derive(Deserialize)]
pub(crate) struct TokenQuery {
    token: Option<String>,
    control: Option<String>,
}

/// What the link that opened the page may do.
pub(crate) enum Access {
    /// See the page.
    View,
    /// See it and act on the batch; the control token the actions present again.
    Control(String),
}

/// The batch id and what the link may do, once its token opens it; otherwise the page to
/// answer with. A `control` parameter is judged alone: a bad one never falls back to `token`.
fn authorize(
    state: &AppState,
    raw_id: &str,
    q: &TokenQuery,
) -> Result<(Uuid, Access), Box<Response>> {
    let Ok(id) = Uuid::parse_str(raw_id) else {
        return Err(Box::new(html_status(
            StatusCode::NOT_FOUND,
            render::denied("there is no such batch"),
        )));
    };
    let secret = state.config.monitor_token_secret.as_bytes();
    let (grant, presented) = match &q.control {
        Some(c) => (token::Grant::Control, Some(c.as_str())),
        None => (token::Grant::View, q.token.as_deref()),
    };
    token::verify_grant(secret, grant, id, presented, Utc::now()).map_err(|e| {
        Box::new(html_status(
            StatusCode::UNAUTHORIZED,
            render::denied(&e.to_string()),
        ))
    })?;
    let access = match (grant, presented) {
        (token::Grant::Control, Some(c)) => Access::Control(c.to_owned()),
        _ => Access::View,
    };
    Ok((id, access))
}

async fn page(
    State(state): State<AppState>,
    Path(raw_id): Path<String>,
    Query(q): Query<TokenQuery>,
) -> Response {
    let (id, access) = match authorize(&state, &raw_id, &q) {
        Ok(granted) => granted,
        Err(denied) => return *denied,
    };
    match state.monitor.subscribe(id).await {
        Ok(rx) => {
            let view = rx.borrow().clone();
            let html = match access {
                Access::View => render::page(&view),
                Access::Control(control) => {
                    let secret = state.config.monitor_token_secret.as_bytes();
                    render::page_with_controls(&view, &token::csrf(secret, id, &control))
                }
            };
            html_status(StatusCode::OK, html)
        }
        Err(ApiError::NotFound(_)) => html_status(
            StatusCode::NOT_FOUND,
            render::denied("this batch no longer exists"),
        ),
        // A person is reading this, not a client: a page that says so and tries again, not
        // the API's JSON error.
        Err(ApiError::Unavailable(reason)) => {
            tracing::warn!(batch_id = %id, %reason, "monitor page: figures unavailable");
            html_status(StatusCode::SERVICE_UNAVAILABLE, render::unavailable())
        }
        Err(e) => e.into_response(),
    }
}

async fn events(
    State(state): State<AppState>,
    Path(raw_id): Path<String>,
    Query(q): Query<TokenQuery>,
) -> Response {
    let id = match authorize(&state, &raw_id, &q) {
        Ok((id, _)) => id,
        Err(denied) => return *denied,
    };
    let rx = match state.monitor.subscribe(id).await {
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

/// The current view at once (the page may be older than it), then each new one, until the
/// feed ends or the gateway stops.
fn updates(
    rx: tokio::sync::watch::Receiver<std::sync::Arc<render::View>>,
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

//! The page's pause, resume and cancel: `POST /batch/monitor/{id}/control/{action}?control=…`.
//!
//! A read-only link never acts, because `links.dashboard` gets shared: only a control token
//! (minted on request, valid an hour, signed under its own tag) is accepted, and only with its
//! CSRF token in the `X-Dialfleet-Csrf` header. A page of another site cannot read that token
//! nor send that header here (a custom header needs a CORS preflight the gateway never grants),
//! and no cookie is involved, so a forged form or `fetch` fails however the browser got the
//! link. An `Origin` or `Sec-Fetch-Site` that names another site is refused besides.
//!
//! A workspace's Batch Dials page acts the same way on each row, with the workspace's control
//! token (`POST /workspace/{ws}/dials/control/{batch}/{action}`), on its own batches only.
//!
//! The action itself is the API's: `batches::control`'s `pause_from_api` and
//! `cancel_from_api`, the one implementation behind both APIs' routes and the CLI.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use serde::Serialize;
use uuid::Uuid;

use super::token::{self, Grant};
use super::{TokenQuery, render};
use crate::batches::control::{self, Scope};
use crate::batches::model::Batch;
use crate::error::ApiError;
use crate::state::AppState;
use shared::domain::Surface;

/// The request header that carries the page's CSRF token.
pub const CSRF_HEADER: &str = "x-dialfleet-csrf";

/// What the page shows once an action is done.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Acted {
    action: &'static str,
    /// As the page's status pill shows it (`paused · PAUSED`).
    status_text: String,
    at: String,
}

/// The three actions, by the path's last segment.
#[derive(Clone, Copy)]
enum Action {
    Pause,
    Resume,
    Cancel,
}

impl Action {
    fn parse(raw: &str) -> Option<Self> {
        match raw {
            "pause" => Some(Self::Pause),
            "resume" => Some(Self::Resume),
            "cancel" => Some(Self::Cancel),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Pause => "pause",
            Self::Resume => "resume",
            Self::Cancel => "cancel",
        }
    }
}

pub(crate) async fn act(
    State(state): State<AppState>,
    Path((raw_id, raw_action)): Path<(String, String)>,
    Query(q): Query<TokenQuery>,
    headers: HeaderMap,
) -> Response {
    let answer = async {
        let (Ok(id), Some(action)) = (Uuid::parse_str(&raw_id), Action::parse(&raw_action)) else {
            return Err(ApiError::NotFound("batch action"));
        };
        permitted(&state, Grant::Control, id, q.control.as_deref(), &headers)?;
        run(&state, Scope::Any, id, action).await
    };
    respond(answer.await)
}

/// `POST /workspace/{ws}/dials/control/{batch}/{action}?control=…`: a Batch Dials row's button.
/// The workspace's control token, and a batch of that workspace (another's is 404).
pub(crate) async fn act_in_workspace(
    State(state): State<AppState>,
    Path((raw_ws, raw_id, raw_action)): Path<(String, String, String)>,
    Query(q): Query<TokenQuery>,
    headers: HeaderMap,
) -> Response {
    let answer = async {
        let (Ok(ws), Ok(id), Some(action)) = (
            Uuid::parse_str(&raw_ws),
            Uuid::parse_str(&raw_id),
            Action::parse(&raw_action),
        ) else {
            return Err(ApiError::NotFound("batch action"));
        };
        permitted(
            &state,
            Grant::WorkspaceControl,
            ws,
            q.control.as_deref(),
            &headers,
        )?;
        let scope = Scope::Workspace {
            id: ws,
            what: "batch",
            surface: Surface::Dialgen,
        };
        run(&state, scope, id, action).await
    };
    respond(answer.await)
}

fn respond(answer: Result<Acted, ApiError>) -> Response {
    let mut response = match answer {
        Ok(acted) => Json(acted).into_response(),
        Err(e) => e.into_response(),
    };
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// The same calls as the API's routes (`batches::control`), and what the page shows of them.
async fn run(state: &AppState, scope: Scope, id: Uuid, action: Action) -> Result<Acted, ApiError> {
    let batch: Batch = match action {
        Action::Pause => control::pause_from_api(state, scope, id, true).await?,
        Action::Resume => control::pause_from_api(state, scope, id, false).await?,
        Action::Cancel => control::cancel_from_api(state, scope, id).await?,
    };
    let now = Utc::now();
    Ok(Acted {
        action: action.name(),
        status_text: render::status_text(&batch, now),
        at: now.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
    })
}

/// Whether this request may act on `subject` (a batch, or a workspace for
/// [`Grant::WorkspaceControl`]): a valid control token of `grant` for it, its CSRF token in
/// the header, and nothing saying it comes from another site.
fn permitted(
    state: &AppState,
    grant: Grant,
    subject: Uuid,
    control: Option<&str>,
    headers: &HeaderMap,
) -> Result<(), ApiError> {
    let secret = state.config.monitor_token_secret.as_bytes();
    let Some(control) = control else {
        return Err(ApiError::Forbidden(
            "this link is read-only: pausing, resuming or cancelling needs a control link (mint one with ?control=true)"
                .into(),
        ));
    };
    token::verify_grant(secret, grant, subject, Some(control), Utc::now())
        .map_err(|e| ApiError::Forbidden(format!("{e}: mint a new control link")))?;
    let presented = headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok());
    if !token::csrf_ok(secret, subject, control, presented) {
        return Err(ApiError::Forbidden(format!(
            "the {CSRF_HEADER} header is missing or wrong: act from the control page itself"
        )));
    }
    if !same_site(headers, &state.config.public_url) {
        return Err(ApiError::Forbidden(
            "this request comes from another site".into(),
        ));
    }
    Ok(())
}

/// False when the browser says the request comes from another site: an `Origin` that is
/// neither this host nor the public URL's, or a `Sec-Fetch-Site` other than `same-origin`.
/// Clients that send neither (curl, the tests) pass on the tokens alone.
fn same_site(headers: &HeaderMap, public_url: &str) -> bool {
    let get = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(site) = get("sec-fetch-site")
        && !matches!(site, "same-origin" | "none")
    {
        return false;
    }
    let Some(origin) = get("origin") else {
        return true;
    };
    let authority = |url: &str| {
        url.split_once("://")
            .map_or(url, |(_, rest)| rest)
            .trim_end_matches('/')
            .split('/')
            .next()
            .unwrap_or_default()
            .to_ascii_lowercase()
    };
    let origin = authority(origin);
    let host = get("host").map(str::to_ascii_lowercase);
    Some(&origin) == host.as_ref() || origin == authority(public_url)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn another_site_is_refused_and_this_one_passes() {
        let public = "https://dial.example.com";
        assert!(same_site(&headers(&[]), public));
        assert!(same_site(
            &headers(&[
                ("host", "127.0.0.1:8080"),
                ("origin", "http://127.0.0.1:8080")
            ]),
            public
        ));
        assert!(same_site(
            &headers(&[("host", "10.0.0.5"), ("origin", "https://dial.example.com")]),
            public
        ));
        assert!(!same_site(
            &headers(&[
                ("host", "127.0.0.1:8080"),
                ("origin", "https://evil.example")
            ]),
            public
        ));
        assert!(!same_site(
            &headers(&[("host", "127.0.0.1:8080"), ("origin", "null")]),
            public
        ));
        assert!(!same_site(
            &headers(&[("sec-fetch-site", "cross-site")]),
            public
        ));
        assert!(!same_site(
            &headers(&[("sec-fetch-site", "same-site")]),
            public
        ));
        assert!(same_site(
            &headers(&[("sec-fetch-site", "same-origin")]),
            public
        ));
    }
}

//! The headers every monitor page (a batch's, the workspace's Batch Dials) answers with.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};

/// What the page's responses say to the browser: never cached (the token is in the URL, the
/// figures are live), never leaked as a referrer, and nothing loaded from anywhere else.
pub(super) fn page_headers(mut response: Response) -> Response {
    let h = response.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
        ),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

/// An HTML page with [`page_headers`].
pub(super) fn html_status(status: StatusCode, body: String) -> Response {
    page_headers((status, Html(body)).into_response())
}

//! Every API error maps from this one enum, in this one place, to one JSON body shape:
//! `{"error": {"code", "message", "details": [{"field", "message"}]}}`.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

/// The most field errors one response lists.
pub const MAX_DETAILS: usize = 100;

/// One offending field and what is wrong with it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, ToSchema)]
pub struct FieldError {
    /// The field's path in the request, e.g. `rows[41].inputs.age`.
    pub field: String,
    /// What is wrong, for a person.
    pub message: String,
    /// The kind of problem; it chooses the error's `code`.
    #[serde(skip)]
    pub problem: Problem,
}

/// What kind of problem a [`FieldError`] is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Problem {
    /// A value that is not acceptable.
    #[default]
    Invalid,
    /// A key the body does not have.
    UnknownField,
    /// A key given twice in one object.
    DuplicateKey,
}

impl FieldError {
    /// A field error.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
            problem: Problem::Invalid,
        }
    }

    /// The same error, of kind `problem`.
    pub fn problem(mut self, problem: Problem) -> Self {
        self.problem = problem;
        self
    }
}

/// Every error's body: 400, 401, 403, 404, 409, 413, 422, 429, 500 and 503 alike.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// What went wrong.
    pub error: ErrorDetail,
}

/// The error itself.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// The kind, one per status (422 has several).
    pub code: ErrorCode,
    /// For a person: the one offending field, or how many there are.
    pub message: String,
    /// Each offending field (at most 100); empty for errors about no field.
    #[schema(max_items = 100)]
    pub details: Vec<FieldError>,
}

/// The `code` of an error body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// 400
    InvalidInput,
    /// 422
    ValidationFailed,
    /// 422: the body has a field it does not know (each named, with the known one one edit
    /// away); the details may list other problems too.
    UnknownField,
    /// 422: a key appears twice in one object of the body (never merged); the details may list
    /// other problems too.
    DuplicateKey,
    /// 422: the `Idempotency-Key` came with another body.
    IdempotencyKeyReused,
    /// 401
    Unauthorized,
    /// 403
    Forbidden,
    /// 404
    NotFound,
    /// 409
    Conflict,
    /// 413
    PayloadTooLarge,
    /// 429: the workspace's request rate is spent; `Retry-After` says when to come back.
    RateLimited,
    /// 503
    Unavailable,
    /// 500
    Internal,
}

/// Everything a request can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400: the body is not JSON, or a value has the wrong type.
    #[error("invalid input: {message}")]
    BadRequest {
        message: String,
        details: Vec<FieldError>,
    },
    /// 422: well-formed but not acceptable.
    #[error("validation failed")]
    Validation(Vec<FieldError>),
    /// 422: the `Idempotency-Key` was first used with another request body.
    #[error(
        "this Idempotency-Key was already used with a different request body; use a new key for a new request"
    )]
    IdempotencyKeyReused,
    /// 401: no key, or a wrong or revoked one.
    #[error("a valid API key is required (Authorization: Bearer <key> or api_key: <key>)")]
    Unauthorized,
    /// 403: the request is authenticated by a signature that does not match.
    #[error("{0}")]
    Forbidden(String),
    /// 403: the request names fields its credentials may not change (each with why).
    #[error("{} cannot be changed with an API key", .0.iter().map(|f| f.field.as_str()).collect::<Vec<_>>().join(", "))]
    ForbiddenFields(Vec<FieldError>),
    /// 404: no such thing in this workspace.
    #[error("{0} not found")]
    NotFound(&'static str),
    /// 409: not allowed in the current state.
    #[error("{0}")]
    Conflict(String),
    /// 413: the body is too large.
    #[error("{0}")]
    TooLarge(String),
    /// 429: the workspace sent more requests than its rate allows (`requestsPerSecond`, with
    /// `requestBurst` at once); answered with `Retry-After`.
    #[error("too many requests for this workspace; retry after {} s", retry_after_secs(*.0))]
    RateLimited(std::time::Duration),
    /// 503: a dependency failed; the request changed nothing and may be retried.
    #[error("{0}")]
    Unavailable(String),
    /// 500: a bug or an unexpected failure; logged with its context, not shown.
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl ApiError {
    /// A 422 about one field.
    pub fn field(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Validation(vec![FieldError::new(field, message)])
    }

    fn parts(&self) -> (StatusCode, ErrorCode) {
        match self {
            Self::BadRequest { .. } => (StatusCode::BAD_REQUEST, ErrorCode::InvalidInput),
            Self::Validation(details) => {
                let code = if details.iter().any(|d| d.problem == Problem::UnknownField) {
                    ErrorCode::UnknownField
                } else if details.iter().any(|d| d.problem == Problem::DuplicateKey) {
                    ErrorCode::DuplicateKey
                } else {
                    ErrorCode::ValidationFailed
                };
                (StatusCode::UNPROCESSABLE_ENTITY, code)
            }
            Self::IdempotencyKeyReused => (
                StatusCode::UNPROCESSABLE_ENTITY,
                ErrorCode::IdempotencyKeyReused,
            ),
            Self::Unauthorized => (StatusCode::UNAUTHORIZED, ErrorCode::Unauthorized),
            Self::Forbidden(_) | Self::ForbiddenFields(_) => {
                (StatusCode::FORBIDDEN, ErrorCode::Forbidden)
            }
            Self::NotFound(_) => (StatusCode::NOT_FOUND, ErrorCode::NotFound),
            Self::Conflict(_) => (StatusCode::CONFLICT, ErrorCode::Conflict),
            Self::TooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, ErrorCode::PayloadTooLarge),
            Self::RateLimited(_) => (StatusCode::TOO_MANY_REQUESTS, ErrorCode::RateLimited),
            Self::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, ErrorCode::Unavailable),
            Self::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, ErrorCode::Internal),
        }
    }
}

/// `Retry-After` in whole seconds, rounded up and at least 1: a client that waits that long is
/// served (0 would invite an immediate retry that is refused again).
pub fn retry_after_secs(wait: std::time::Duration) -> u64 {
    wait.as_secs() + u64::from(wait.subsec_nanos() > 0 || wait.is_zero())
}

impl From<tokio_postgres::Error> for ApiError {
    fn from(e: tokio_postgres::Error) -> Self {
        use tokio_postgres::error::SqlState;
        // A last line behind `validate::Text`: a character PostgreSQL cannot store (a NUL)
        // is the client's input, not our failure. The field is named at the edge; this only
        // keeps a field that escaped that check from being answered 500.
        if e.code().is_some_and(|c| {
            *c == SqlState::CHARACTER_NOT_IN_REPERTOIRE || *c == SqlState::UNTRANSLATABLE_CHARACTER
        }) {
            let message = "a text value contains a character that cannot be stored (NUL, \\u0000)";
            return Self::BadRequest {
                message: message.to_owned(),
                details: vec![FieldError::new("body", message)],
            };
        }
        // The connection went away under the query (a restart, a failover, a network cut):
        // the database is unavailable, which the client may retry, not a bug of ours.
        if e.is_closed() || std::error::Error::source(&e).is_some_and(|s| s.is::<std::io::Error>())
        {
            return Self::Unavailable(format!("database unavailable: {e}"));
        }
        Self::Internal(anyhow::Error::new(e).context("database query failed"))
    }
}

impl From<deadpool_postgres::PoolError> for ApiError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        Self::Unavailable(format!("database unavailable: {e}"))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.parts();
        let details: Vec<FieldError> = match &self {
            Self::BadRequest { details, .. }
            | Self::Validation(details)
            | Self::ForbiddenFields(details) => details.iter().take(MAX_DETAILS).cloned().collect(),
            _ => Vec::new(),
        };
        let message = match &self {
            Self::Internal(e) => {
                tracing::error!(error = format!("{e:#}"), "request failed");
                "internal error".to_owned()
            }
            Self::Validation(details) if details.len() == 1 => {
                format!("{}: {}", details[0].field, details[0].message)
            }
            Self::Validation(details) => format!("{} fields are invalid", details.len()),
            other => other.to_string(),
        };
        let mut response = (
            status,
            Json(ErrorBody {
                error: ErrorDetail {
                    code,
                    message,
                    details,
                },
            }),
        )
            .into_response();
        if let Self::RateLimited(wait) = self {
            response.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from(retry_after_secs(wait)),
            );
        }
        response
    }
}

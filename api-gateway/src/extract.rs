//! Request extractors whose failures are [`ApiError`]s, so every rejection has the one JSON
//! error shape: bodies (400 naming the field a type error is at), ids in paths (an id that is
//! not a UUID cannot exist, so 404) and query strings.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;
use uuid::Uuid;

use crate::error::{ApiError, FieldError};

/// A JSON body; malformed JSON or a wrong type is a 400 that names the field.
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = read_body(req, state).await?;
        parse_json(&bytes).map(JsonBody)
    }
}

/// Reads the whole body, mapping the size limit to 413.
pub async fn read_body<S: Send + Sync>(req: Request, state: &S) -> Result<Bytes, ApiError> {
    Bytes::from_request(req, state).await.map_err(|e| {
        if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::TooLarge(format!(
                "the request body is larger than the limit: {}",
                e.body_text()
            ))
        } else {
            ApiError::BadRequest {
                message: e.body_text(),
                details: vec![],
            }
        }
    })
}

/// Parses JSON, reporting where a syntax or type error is.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(bad_json)
}

/// The 400 for a JSON syntax or type error, naming the field it is at.
pub fn bad_json(e: serde_path_to_error::Error<serde_json::Error>) -> ApiError {
    let path = e.path().to_string();
    let inner = e.into_inner();
    let message = if inner.is_syntax() || inner.is_eof() {
        format!("the body is not valid JSON: {inner}")
    } else {
        inner.to_string()
    };
    let field = if path == "." { "body".to_owned() } else { path };
    ApiError::BadRequest {
        message: message.clone(),
        details: vec![FieldError::new(field, message)],
    }
}

/// A UUID from the path; anything else is a 404 for `what`.
pub fn path_id(raw: &str, what: &'static str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(raw).map_err(|_| ApiError::NotFound(what))
}

/// Query parameters; a wrong type (or a NUL in a [`crate::validate::Text`]) is a 400 naming
/// the parameter.
pub struct Query<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parse_query(parts.uri.query().unwrap_or_default()).map(Query)
    }
}

/// Parses a query string, reporting which parameter is wrong.
pub fn parse_query<T: DeserializeOwned>(query: &str) -> Result<T, ApiError> {
    let de = serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()));
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let message = e.into_inner().to_string();
        let field = if path == "." {
            "query".to_owned()
        } else {
            path
        };
        ApiError::BadRequest {
            message: format!("{field}: {message}"),
            details: vec![FieldError::new(field, message)],
        }
    })
}

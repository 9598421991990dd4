//! Request extractors whose failures are [`ApiError`]s, so every rejection has the one JSON
//! error shape: bodies (400 naming the field a type error is at), ids in paths (an id that is
//! not a UUID cannot exist, so 404) and query strings.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;
use uuid::Uuid;

use crate::error::{ApiError, FieldError};
use crate::strict::Findings;

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

/// Parses JSON strictly (see [`crate::strict`]): an unknown field or a duplicated key is a 422
/// naming every one; a syntax or type error a 400 naming where it is.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let findings = Findings::default();
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    let parsed = strict_path_to_error(&mut *de, &findings).and_then(|v| {
        de.end().map(|()| v).map_err(|e| {
            serde_path_to_error::Error::new(serde_path_to_error::Track::new().path(), e)
        })
    });
    settle(parsed, findings.take())
}

/// Types a value already read (a streamed body's settings, kept whole), strictly, its unknown
/// fields and duplicated keys going to `found`; a type error is a 400 naming the field.
pub fn typed_value<T: DeserializeOwned>(
    value: serde_json::Value,
    found: &mut Vec<FieldError>,
) -> Result<T, ApiError> {
    let findings = Findings::default();
    let parsed = strict_path_to_error(value, &findings);
    found.extend(findings.take());
    parsed.map_err(bad_json)
}

fn strict_path_to_error<'de, T: serde::Deserialize<'de>, D: serde::Deserializer<'de>>(
    de: D,
    findings: &Findings,
) -> Result<T, serde_path_to_error::Error<D::Error>> {
    let mut track = serde_path_to_error::Track::new();
    let tracked = serde_path_to_error::Deserializer::new(de, &mut track);
    crate::strict::deserialize(tracked, "", findings)
        .map_err(|e| serde_path_to_error::Error::new(track.path(), e))
}

/// The answer to a strict parse: what it found first (422, with a type error among the
/// details), else the type or syntax error (400), else the value.
fn settle<T>(
    parsed: Result<T, serde_path_to_error::Error<serde_json::Error>>,
    mut found: Vec<FieldError>,
) -> Result<T, ApiError> {
    match parsed {
        Ok(v) if found.is_empty() => Ok(v),
        Ok(_) => Err(ApiError::Validation(found)),
        Err(e) if found.is_empty() => Err(bad_json(e)),
        Err(e) => {
            if let ApiError::BadRequest { details, .. } = bad_json(e) {
                found.extend(details);
            }
            Err(ApiError::Validation(found))
        }
    }
}

/// The 400 for a JSON syntax or type error, naming the field it is at.
pub fn bad_json(e: serde_path_to_error::Error<serde_json::Error>) -> ApiError {
    let path = e.path().to_string();
    let inner = e.into_inner();
    let message = if inner.is_syntax() || inner.is_eof() {
        format!("the body is not valid JSON: {inner}")
    } else {
        json_types(&inner.to_string())
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
        let message = json_types(&e.into_inner().to_string());
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

/// A serde message in the words of JSON: `expected i64` becomes `expected an integer`,
/// `invalid type: map` becomes `invalid type: object`, and so on; a client sent JSON, not Rust.
pub fn json_types(message: &str) -> String {
    const WORDS: &[(&str, &str)] = &[
        ("expected a borrowed string", "expected a string"),
        ("expected a sequence", "expected an array"),
        ("expected a map", "expected an object"),
        ("expected a tuple", "expected an array"),
        ("expected unit", "expected null"),
        ("expected option", "expected a value or null"),
        ("invalid type: map", "invalid type: object"),
        ("invalid type: sequence", "invalid type: array"),
        ("invalid type: unit value", "invalid type: null"),
        ("invalid type: floating point", "invalid type: number"),
        ("invalid value: floating point", "invalid value: number"),
        ("invalid type: newtype struct", "invalid type: value"),
        ("invalid type: option", "invalid type: value"),
    ];
    let mut out = message.to_owned();
    for (rust, json) in WORDS {
        out = out.replace(rust, json);
    }
    // `expected i64`, `expected u32`, `expected f64`, `expected struct Foo`, …
    let mut result = String::with_capacity(out.len());
    let mut rest = out.as_str();
    while let Some(at) = rest.find("expected ") {
        let (before, after) = rest.split_at(at + "expected ".len());
        result.push_str(before);
        let word_end = after
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(after.len());
        let word = &after[..word_end];
        let replacement = match word {
            "i8" | "i16" | "i32" | "i64" | "i128" | "isize" => Some("an integer"),
            "u8" | "u16" | "u32" | "u64" | "u128" | "usize" => Some("a non-negative integer"),
            "f32" | "f64" => Some("a number"),
            "char" => Some("a one-character string"),
            "struct" | "tuple" => Some("an object"),
            _ => None,
        };
        match replacement {
            Some(r) => {
                result.push_str(r);
                let mut tail = &after[word_end..];
                if word == "struct" || word == "tuple" {
                    // `struct Name` or `struct variant X::Y`: the name means nothing to a client.
                    tail = tail.trim_start_matches(' ');
                    if let Some(t) = tail.strip_prefix("variant ") {
                        tail = t;
                    }
                    let name_end = tail
                        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
                        .unwrap_or(tail.len());
                    tail = &tail[name_end..];
                }
                rest = tail;
            }
            None => rest = after,
        }
    }
    result.push_str(rest);
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_speak_json_types() {
        for (rust, json) in [
            (
                "invalid type: string \"x\", expected i64",
                "invalid type: string \"x\", expected an integer",
            ),
            (
                "invalid value: integer `-1`, expected u32",
                "invalid value: integer `-1`, expected a non-negative integer",
            ),
            (
                "invalid type: map, expected a sequence",
                "invalid type: object, expected an array",
            ),
            (
                "invalid type: integer `5`, expected struct DialgenOptions at line 1 column 3",
                "invalid type: integer `5`, expected an object at line 1 column 3",
            ),
            (
                "invalid type: floating point `1.5`, expected i64",
                "invalid type: number `1.5`, expected an integer",
            ),
            (
                "invalid type: null, expected a string",
                "invalid type: null, expected a string",
            ),
        ] {
            assert_eq!(json_types(rust), json);
        }
    }

    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)]
    struct Body {
        n: Option<i64>,
        s: Option<String>,
    }

    #[test]
    fn a_type_error_is_a_400_in_json_words() {
        match parse_json::<Body>(br#"{"n":"x"}"#) {
            Err(ApiError::BadRequest { details, .. }) => {
                assert_eq!(details[0].field, "n");
                assert!(
                    details[0].message.contains("expected an integer"),
                    "{details:?}"
                );
            }
            other => panic!("{other:?}"),
        }
        match parse_json::<Body>(br#"{"n":1,"n":2,"x":1}"#) {
            Err(ApiError::Validation(details)) => {
                let fields: Vec<_> = details.iter().map(|d| d.field.as_str()).collect();
                assert_eq!(fields, ["n", "x"]);
            }
            other => panic!("{other:?}"),
        }
        // Trailing bytes are still a syntax error.
        assert!(matches!(
            parse_json::<Body>(br#"{"n":1} x"#),
            Err(ApiError::BadRequest { .. })
        ));
    }
}

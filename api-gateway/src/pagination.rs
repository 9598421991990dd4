//! Opaque cursors for keyset pagination: a page continues strictly after the last item of the
//! previous one, so pages stay stable while new items are being created.

use axum::Json;
use axum::http::{HeaderMap, HeaderValue, Uri};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::error::ApiError;

/// The default and largest page sizes.
pub const DEFAULT_LIMIT: i64 = 50;
/// The largest page a client may ask for.
pub const MAX_LIMIT: i64 = 1000;

/// A position in a list ordered by (time, id).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    /// The last item's timestamp (or a sequence number as microseconds).
    pub at: DateTime<Utc>,
    /// The last item's id.
    pub id: Uuid,
}

impl Cursor {
    /// The position of a row in a list ordered by row index (the index rides in `at`).
    pub fn for_row(row_index: i32, id: Uuid) -> Self {
        Self {
            at: DateTime::from_timestamp_micros(i64::from(row_index)).unwrap_or_default(),
            id,
        }
    }

    /// The opaque text form.
    pub fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(format!("{}|{}", self.at.timestamp_micros(), self.id))
    }

    /// Parses the text form; anything else is a 400 on `cursor`.
    pub fn decode(s: &str) -> Result<Self, ApiError> {
        let bad = || ApiError::BadRequest {
            message: "cursor is not one this API returned".into(),
            details: vec![crate::error::FieldError::new(
                "cursor",
                "not a cursor this API returned",
            )],
        };
        let bytes = URL_SAFE_NO_PAD.decode(s).map_err(|_| bad())?;
        let text = String::from_utf8(bytes).map_err(|_| bad())?;
        let (micros, id) = text.split_once('|').ok_or_else(bad)?;
        let at =
            DateTime::from_timestamp_micros(micros.parse().map_err(|_| bad())?).ok_or_else(bad)?;
        Ok(Self {
            at,
            id: Uuid::parse_str(id).map_err(|_| bad())?,
        })
    }
}

/// One page's request, parsed once from the `limit` and `cursor` parameters. Lists ordered by
/// `(time, id)` end their query with the three parameters of [`PageRequest::keyset`] and cut
/// the rows with [`PageRequest::split`].
#[derive(Debug, Clone, Copy)]
pub struct PageRequest {
    limit: i64,
    after: Option<Cursor>,
}

impl PageRequest {
    /// Checks `limit` (400/422 on `limit`) and decodes `cursor` (400 on `cursor`).
    pub fn parse(requested_limit: Option<i64>, cursor: Option<&str>) -> Result<Self, ApiError> {
        Ok(Self {
            limit: limit(requested_limit)?,
            after: cursor.map(Cursor::decode).transpose()?,
        })
    }

    /// The page requested by `limit` and `cursor`, or `None` when both are absent: the
    /// caller then answers every item, streamed (the lists Dialgen documents as whole).
    pub fn parse_optional(
        requested_limit: Option<i64>,
        cursor: Option<&str>,
    ) -> Result<Option<Self>, ApiError> {
        if requested_limit.is_none() && cursor.is_none() {
            return Ok(None);
        }
        Self::parse(requested_limit, cursor).map(Some)
    }

    /// The position the page continues after, if any.
    pub fn after(&self) -> Option<Cursor> {
        self.after
    }

    /// For lists in row order: the row index the page continues after (carried in the
    /// cursor's time part, see [`Cursor::for_row`]).
    pub fn after_row(&self) -> Option<i32> {
        self.after
            .and_then(|c| i32::try_from(c.at.timestamp_micros()).ok())
    }

    /// How many rows to fetch: one more than the page, to tell whether another follows.
    pub fn fetch(&self) -> i64 {
        self.limit + 1
    }

    /// The keyset query's last three parameters: the cursor's time (NULL on the first page),
    /// its id, and how many rows to fetch (one more than the page, to tell whether another
    /// page follows).
    pub fn keyset(&self) -> (Option<DateTime<Utc>>, Uuid, i64) {
        (
            self.after.map(|c| c.at),
            self.after.map(|c| c.id).unwrap_or_default(),
            self.limit + 1,
        )
    }

    /// The response body of a page of `rows` fetched with [`Self::keyset`]: each item through
    /// `item`, and the cursor of the next page.
    pub fn respond<T, I>(
        &self,
        rows: Vec<T>,
        cursor_of: impl Fn(&T) -> Cursor,
        item: impl Fn(&T) -> I,
    ) -> Json<Page<I>> {
        let (rows, cursor) = self.split(rows, cursor_of);
        page_body(rows.iter().map(item), cursor)
    }

    /// The page and the cursor of the next one, from rows fetched with [`Self::keyset`].
    pub fn split<T>(
        &self,
        rows: Vec<T>,
        cursor_of: impl Fn(&T) -> Cursor,
    ) -> (Vec<T>, Option<String>) {
        split_page(rows, self.limit, cursor_of)
    }
}

/// Every list's body: `{"data": [...], "cursor": "<next page>" | null}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Page<T> {
    /// This page's items.
    pub data: Vec<T>,
    /// The next page's `cursor`; null on the last page.
    pub cursor: Option<String>,
}

/// A page of `items` and the cursor of the next page.
pub fn page_body<I>(items: impl Iterator<Item = I>, cursor: Option<String>) -> Json<Page<I>> {
    Json(Page {
        data: items.collect(),
        cursor,
    })
}

/// The RFC 8288 `Link` header of the next page: `uri` (the request's path and query) with its
/// `cursor` parameter replaced by `cursor`, under `public_url`.
pub fn next_link(public_url: &str, uri: &axum::http::Uri, cursor: &str) -> String {
    let kept = uri
        .query()
        .map(|q| {
            form_urlencoded::parse(q.as_bytes())
                .filter(|(k, _)| k != "cursor")
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    let mut query = form_urlencoded::Serializer::new(String::new());
    for (k, v) in &kept {
        query.append_pair(k, v);
    }
    query.append_pair("cursor", cursor);
    format!(
        "<{}{}?{}>; rel=\"next\"",
        public_url.trim_end_matches('/'),
        uri.path(),
        query.finish()
    )
}

/// Checks a `limit` parameter.
fn limit(requested: Option<i64>) -> Result<i64, ApiError> {
    match requested {
        None => Ok(DEFAULT_LIMIT),
        Some(n) if (1..=MAX_LIMIT).contains(&n) => Ok(n),
        Some(_) => Err(ApiError::field(
            "limit",
            format!("must be between 1 and {MAX_LIMIT}"),
        )),
    }
}

/// Cuts a query result fetched with `LIMIT limit + 1` into the page and the cursor of the next
/// page (`None` on the last page).
fn split_page<T>(
    mut rows: Vec<T>,
    limit: i64,
    cursor_of: impl Fn(&T) -> Cursor,
) -> (Vec<T>, Option<String>) {
    let more = rows.len() as i64 > limit;
    rows.truncate(limit as usize);
    let cursor = if more {
        rows.last().map(|r| cursor_of(r).encode())
    } else {
        None
    };
    (rows, cursor)
}

/// `Link: <…>; rel="next"` and `X-Next-Cursor` when another page follows.
pub fn next_page_headers(
    headers: &mut HeaderMap,
    public_url: &str,
    uri: &Uri,
    cursor: Option<&str>,
) -> Result<(), ApiError> {
    let Some(cursor) = cursor else {
        return Ok(());
    };
    let bad = |e: axum::http::header::InvalidHeaderValue| ApiError::Internal(e.into());
    let link = next_link(public_url, uri, cursor);
    headers.insert("link", HeaderValue::from_str(&link).map_err(bad)?);
    headers.insert("x-next-cursor", HeaderValue::from_str(cursor).map_err(bad)?);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let c = Cursor {
            at: DateTime::from_timestamp_micros(1_700_000_000_123_456).unwrap(),
            id: Uuid::now_v7(),
        };
        assert_eq!(Cursor::decode(&c.encode()).unwrap(), c);
        assert!(Cursor::decode("nope").is_err());
        let row = Cursor::for_row(41, Uuid::nil());
        let page = PageRequest::parse(Some(5), Some(&row.encode())).unwrap();
        assert_eq!(page.after_row(), Some(41));
    }

    #[test]
    fn next_link_replaces_the_cursor() {
        let uri: axum::http::Uri = "/api/v1/batch/list?limit=2&cursor=old".parse().unwrap();
        assert_eq!(
            next_link("http://h:8080/", &uri, "abc"),
            "<http://h:8080/api/v1/batch/list?limit=2&cursor=abc>; rel=\"next\""
        );
    }

    #[test]
    fn absent_limit_and_cursor_mean_everything() {
        assert!(PageRequest::parse_optional(None, None).unwrap().is_none());
        assert!(
            PageRequest::parse_optional(Some(10), None)
                .unwrap()
                .is_some()
        );
        assert!(PageRequest::parse_optional(Some(0), None).is_err());
    }
}

//! Response bodies written from a database cursor: long lists and exports (invariant 13).
//!
//! The query's rows arrive through tokio-postgres's row stream, which reads the server's
//! answer as the body is sent: the connection stops reading while the client is slow, so
//! PostgreSQL waits on its socket instead of the gateway buffering the result. A request's
//! memory is one group of rendered rows ([`ROWS_PER_FRAME`]), whatever the list's length. The
//! pooled connection travels with the stream and goes back to the pool when the body ends
//! (or the client goes away).

use axum::body::{Body, Bytes};
use deadpool_postgres::Object;
use futures_util::{StreamExt, TryStreamExt, stream};
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;

use crate::error::ApiError;

/// Rows rendered into one body frame: large enough that framing costs nothing, small enough
/// that a frame stays a few tens of kilobytes.
pub const ROWS_PER_FRAME: usize = 256;

/// One query parameter, owned by the stream.
pub type Param = Box<dyn ToSql + Sync + Send>;

/// Appends one row's bytes to the frame being built; a row it appends nothing for is left out.
pub type Render = Box<dyn FnMut(&Row, &mut Vec<u8>) -> Result<(), ApiError> + Send>;

/// How the rows are framed: `head`, the rows separated by `separator`, then `tail`.
pub struct Framing {
    /// Written before the first row (`[` of a JSON array, a CSV header line).
    pub head: Vec<u8>,
    /// Written between two rows (`,` in JSON; nothing for CSV lines).
    pub separator: &'static [u8],
    /// Written after the last row.
    pub tail: Vec<u8>,
}

impl Framing {
    /// A JSON array, optionally inside an object: `{prefix}[row,row]{suffix}`.
    pub fn json_array(prefix: &str, suffix: &str) -> Self {
        Self {
            head: format!("{prefix}[").into_bytes(),
            separator: b",",
            tail: format!("]{suffix}").into_bytes(),
        }
    }

    /// Lines after a header line (CSV).
    pub fn lines(header: Vec<u8>) -> Self {
        Self {
            head: header,
            separator: b"",
            tail: Vec::new(),
        }
    }
}

/// Runs `sql` on `client` and returns the body that streams its rows through `render`. The
/// query is started (and its errors answered) before the response is: once the body has
/// begun, a failure can only cut it short, which the client sees as an incomplete transfer.
pub async fn body(
    client: Object,
    sql: &str,
    params: Vec<Param>,
    framing: Framing,
    mut render: Render,
) -> Result<Body, ApiError> {
    let rows = client.query_raw(sql, params).await?;
    let Framing {
        head,
        separator,
        tail,
    } = framing;
    let mut first = true;
    let frames = rows
        .map_err(|e| ApiError::Internal(anyhow::Error::new(e).context("streaming rows")))
        .ready_chunks(ROWS_PER_FRAME)
        .map(move |group| {
            // The connection lives as long as the rows it is reading.
            let _connection = &client;
            let mut frame = Vec::with_capacity(group.len() * 128);
            for row in group {
                let before = frame.len();
                if !first {
                    frame.extend_from_slice(separator);
                }
                let at = frame.len();
                render(&row?, &mut frame)?;
                // A row the render wrote nothing for is left out, separator and all.
                if frame.len() == at {
                    frame.truncate(before);
                } else {
                    first = false;
                }
            }
            Ok::<_, ApiError>(Bytes::from(frame))
        });
    let all = stream::once(async move { Ok(Bytes::from(head)) })
        .chain(frames)
        .chain(stream::once(async move { Ok(Bytes::from(tail)) }))
        .map_err(|e| {
            tracing::error!(error = %e, "a streamed body stopped early");
            std::io::Error::other(e.to_string())
        });
    Ok(Body::from_stream(all))
}

/// Appends `value` as JSON.
pub fn push_json(frame: &mut Vec<u8>, value: &impl serde::Serialize) -> Result<(), ApiError> {
    serde_json::to_writer(frame, value).map_err(|e| ApiError::Internal(e.into()))
}

/// Appends one CSV record (RFC 4180 quoting, by the `csv` crate).
pub fn push_csv<I, F>(frame: &mut Vec<u8>, fields: I) -> Result<(), ApiError>
where
    I: IntoIterator<Item = F>,
    F: AsRef<[u8]>,
{
    let mut w = csv::WriterBuilder::new()
        .terminator(csv::Terminator::CRLF)
        .from_writer(frame);
    w.write_record(fields)
        .and_then(|()| w.flush().map_err(csv::Error::from))
        .map_err(|e| ApiError::Internal(e.into()))
}

/// Whether the request asks for CSV (`Accept: text/csv`).
pub fn wants_csv(headers: &axum::http::HeaderMap) -> bool {
    headers
        .get_all(axum::http::header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|v| {
            v.split(';')
                .next()
                .is_some_and(|t| t.trim().eq_ignore_ascii_case("text/csv"))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_fields_are_quoted() {
        let mut out = Vec::new();
        push_csv(&mut out, ["a,b", "say \"hi\"", "line\nbreak", "plain"]).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "\"a,b\",\"say \"\"hi\"\"\",\"line\nbreak\",plain\r\n"
        );
    }

    #[test]
    fn accept_header() {
        let mut h = axum::http::HeaderMap::new();
        assert!(!wants_csv(&h));
        h.insert(
            "accept",
            "application/json, text/csv;q=0.9".parse().unwrap(),
        );
        assert!(wants_csv(&h));
    }
}

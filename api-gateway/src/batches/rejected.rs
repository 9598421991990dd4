//! A batch's rejected rows, by row: what the status endpoints count by reason, listed one by
//! one (`rejected_rows`, written by the ingest workers).
//!
//! Rows are numbered as the user counts the list they sent: the first data row is row 1
//! (`rejected_rows.row_index` is 0-based; rows added later continue the numbering).

use serde::Serialize;
use tokio_postgres::Row;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::error::ApiError;
use crate::pagination::Cursor;
use crate::row_stream;

/// The rejected rows of batch `$1` after row index `$2` (NULL: from the first), `$3` of them
/// (NULL: all), in row order (the table's primary key).
pub const SQL: &str = "SELECT row_index, raw_number, reason, detail FROM rejected_rows
    WHERE batch_id = $1 AND ($2::int IS NULL OR row_index > $2)
    ORDER BY row_index LIMIT $3";

/// The CSV columns, in order.
pub const CSV_HEADER: [&str; 4] = ["row", "phoneNumber", "reason", "detail"];

/// The row number a user sees for a stored row index.
pub fn user_row(row_index: i32) -> i64 {
    i64::from(row_index) + 1
}

/// One rejected row, numbered as the user counts the list (first data row = 1).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RejectedRow {
    #[schema(minimum = 1)]
    pub row: i64,
    /// As submitted.
    pub phone_number: Option<String>,
    /// missing_number, invalid_number, duplicate, invalid_text, do_not_call.
    pub reason: String,
    pub detail: Option<String>,
}

/// One rejected row as JSON.
pub fn json(r: &Row) -> RejectedRow {
    RejectedRow {
        row: user_row(r.get("row_index")),
        phone_number: r.get("raw_number"),
        reason: r.get("reason"),
        detail: r.get("detail"),
    }
}

/// Appends one rejected row as a CSV record.
pub fn csv(r: &Row, out: &mut Vec<u8>) -> Result<(), ApiError> {
    let row = user_row(r.get("row_index")).to_string();
    let number: Option<String> = r.get("raw_number");
    let reason: String = r.get("reason");
    let detail: Option<String> = r.get("detail");
    row_stream::push_csv(
        out,
        [
            row.as_str(),
            number.as_deref().unwrap_or_default(),
            reason.as_str(),
            detail.as_deref().unwrap_or_default(),
        ],
    )
}

/// The cursor after a rejected row.
pub fn cursor_of(r: &Row) -> Cursor {
    Cursor::for_row(r.get("row_index"), Uuid::nil())
}

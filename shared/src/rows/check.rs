//! The per-row checks an ingest worker makes besides the number, shared with the gateway's
//! preflight so that both give a row the same verdict: text PostgreSQL cannot store, and the
//! rejection of a duplicate.

use serde_json::Value;

use super::reject::{Reason, Rejection};
use crate::queue::messages::RawRow;

/// The rejection of a row whose number an earlier row already holds. `earlier_row` is the
/// stored 0-based index; the detail names it as the user counts rows (1-based), as the rejected
/// rows list does.
pub fn duplicate_of(earlier_row: i32) -> Rejection {
    Rejection::new(
        Reason::Duplicate,
        format!("duplicate of row {}", i64::from(earlier_row) + 1),
    )
}

/// PostgreSQL's `text` and `jsonb` cannot hold NUL; one such row must not sink its chunk.
pub fn check_text(row: &RawRow) -> Result<(), Rejection> {
    let fields = [
        ("externalId", row.external_id.as_deref()),
        ("name", row.name.as_deref()),
        ("email", row.email.as_deref()),
        ("company", row.company.as_deref()),
    ];
    for (field, value) in fields {
        if value.is_some_and(|v| v.contains('\0')) {
            return Err(nul_in(field));
        }
    }
    if json_has_nul(&row.inputs) {
        return Err(nul_in("inputs"));
    }
    Ok(())
}

fn nul_in(field: &str) -> Rejection {
    Rejection::new(
        Reason::InvalidText,
        format!("{field} contains a NUL character"),
    )
}

fn json_has_nul(value: &Value) -> bool {
    match value {
        Value::String(s) => s.contains('\0'),
        Value::Array(items) => items.iter().any(json_has_nul),
        Value::Object(map) => map.iter().any(|(k, v)| k.contains('\0') || json_has_nul(v)),
        Value::Null | Value::Bool(_) | Value::Number(_) => false,
    }
}

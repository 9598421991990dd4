//! A do-not-call import marked as a copy of a registry (issue #25, docs/compliance.md
//! "Do-not-call registry freshness"): `{"source": "national_registry", "asOf": "2026-11-30"}` in
//! a JSON body, or `?source=national_registry&asOf=2026-11-30` with a CSV upload. The import
//! then also records the copy in `dnc_registry_copies`, in its own transaction, so a copy is
//! recorded exactly when its numbers are on the list; a workspace with `dncRegistryRequired`
//! is released again as soon as the copy is committed.

use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;
use shared::compliance::registry;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::validate::Violations;

/// The registry copy an import declares itself to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RegistryCopy {
    /// `national_registry`.
    pub source: &'static str,
    /// The date the copy was taken from the registry.
    #[schema(value_type = String, format = Date)]
    pub as_of: NaiveDate,
}

/// Reads `source` and `asOf` (both, or neither), at `now`: each bad one is added to `v`.
pub fn read(
    source: Option<&str>,
    as_of: Option<&str>,
    now: DateTime<Utc>,
    v: &mut Violations,
) -> Option<RegistryCopy> {
    match (source, as_of) {
        (None, None) => None,
        (Some(_), None) => {
            v.add(
                "asOf",
                "is required with source: the date the copy was taken (YYYY-MM-DD)",
            );
            None
        }
        (None, Some(_)) => {
            v.add("source", "is required with asOf: \"national_registry\"");
            None
        }
        (Some(source), Some(as_of)) => {
            let source =
                (source == registry::NATIONAL_REGISTRY).then_some(registry::NATIONAL_REGISTRY);
            if source.is_none() {
                v.add("source", "must be \"national_registry\"");
            }
            let date = parse_date(as_of);
            match date {
                None => v.add("asOf", format!("{as_of:?} is not a date (YYYY-MM-DD)")),
                Some(d) => {
                    if let Err(why) = registry::check_as_of(d, now) {
                        v.add("asOf", why);
                    }
                }
            }
            source
                .zip(date)
                .map(|(source, as_of)| RegistryCopy { source, as_of })
        }
    }
}

/// `YYYY-MM-DD`, exactly.
fn parse_date(s: &str) -> Option<NaiveDate> {
    let shaped = s.len() == 10
        && s.bytes().enumerate().all(|(i, b)| {
            if i == 4 || i == 7 {
                b == b'-'
            } else {
                b.is_ascii_digit()
            }
        });
    shaped
        .then(|| NaiveDate::parse_from_str(s, "%Y-%m-%d").ok())
        .flatten()
}

/// Records the copy (`numbers`: how many numbers the import held) in the import's transaction.
pub async fn record(
    tx: &impl deadpool_postgres::GenericClient,
    workspace_id: Uuid,
    copy: RegistryCopy,
    numbers: i64,
) -> Result<(), tokio_postgres::Error> {
    tx.execute(
        "INSERT INTO dnc_registry_copies (workspace_id, source, as_of, numbers)
         VALUES ($1, $2, $3, $4)",
        &[&workspace_id, &copy.source, &copy.as_of, &numbers],
    )
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(source: Option<&str>, as_of: Option<&str>) -> (Option<RegistryCopy>, Vec<String>) {
        let now = "2026-12-07T12:00:00Z".parse().unwrap();
        let mut v = Violations::default();
        let copy = read(source, as_of, now, &mut v);
        let named = match v.into_result(()) {
            Ok(()) => vec![],
            Err(crate::error::ApiError::Validation(found)) => {
                found.iter().map(|f| f.field.clone()).collect()
            }
            Err(other) => panic!("{other:?}"),
        };
        (copy, named)
    }

    #[test]
    fn a_copy_is_both_fields_a_known_source_and_a_past_date() {
        assert_eq!(fields(None, None), (None, vec![]));
        let (copy, bad) = fields(Some("national_registry"), Some("2026-11-30"));
        assert!(bad.is_empty());
        assert_eq!(copy.unwrap().as_of.to_string(), "2026-11-30");
        assert_eq!(
            fields(Some("state_registry"), Some("2026-11-30")).1,
            ["source"]
        );
        assert_eq!(
            fields(Some("national_registry"), Some("2026-12-25")).1,
            ["asOf"]
        );
        assert_eq!(
            fields(Some("national_registry"), Some("30/11/2026")).1,
            ["asOf"]
        );
        assert_eq!(
            fields(Some("national_registry"), Some("2026-02-30")).1,
            ["asOf"]
        );
        assert_eq!(fields(Some("national_registry"), None).1, ["asOf"]);
        assert_eq!(fields(None, Some("2026-11-30")).1, ["source"]);
    }
}

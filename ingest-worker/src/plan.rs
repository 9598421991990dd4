//! What a chunk will write, decided before any I/O: each row is normalised and checked, and
//! duplicates inside the chunk are resolved (first row wins). Duplicates across chunks need the
//! database and are resolved by [`crate::chunk`].

use std::collections::HashMap;

use serde_json::Value;
use shared::domain::E164;
use shared::queue::messages::{IngestChunkV1, RawRow};

use crate::normalize::{NumberCheck, Region, normalize};
use crate::reject::Rejection;
use shared::rows::check::check_text;
pub use shared::rows::check::duplicate_of;

/// How much of a rejected row's number is kept for the client to see.
const MAX_KEPT_RAW: usize = 256;

/// A row that passed every check.
#[derive(Debug, Clone, PartialEq)]
pub struct Accepted {
    /// Its position in the batch.
    pub row_index: i32,
    /// Its number, normalised.
    pub number: E164,
    /// The rest of the row as submitted (`inputs` is `{}` when absent).
    pub row: RawRow,
}

/// A row that did not.
#[derive(Debug, Clone, PartialEq)]
pub struct Rejected {
    /// Its position in the batch.
    pub row_index: i32,
    /// The number as submitted (truncated, NUL bytes replaced), for the client to recognise it.
    pub raw_number: Option<String>,
    /// Why.
    pub rejection: Rejection,
}

/// A chunk's rows, sorted into accepted and rejected.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Plan {
    /// In row order, numbers unique within the chunk.
    pub accepted: Vec<Accepted>,
    /// In row order.
    pub rejected: Vec<Rejected>,
}

/// A chunk no worker can ever persist.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// Its row indexes do not fit the schema's `integer`.
    #[error("row indexes {first}..{first}+{len} exceed the supported range")]
    RowIndexOverflow {
        /// The chunk's first row.
        first: u32,
        /// Its row count.
        len: usize,
    },
    /// Its sequence number does not fit the schema's `integer`.
    #[error("chunk sequence {0} exceeds the supported range")]
    SeqOverflow(u32),
}

/// The chunk's sequence number as stored.
pub fn seq(chunk: &IngestChunkV1) -> Result<i32, PlanError> {
    i32::try_from(chunk.seq).map_err(|_| PlanError::SeqOverflow(chunk.seq))
}

/// Sorts a chunk's rows. `rows` is consumed so accepted rows move rather than copy.
pub fn plan(
    first_row: u32,
    rows: Vec<RawRow>,
    region: Region,
    check: NumberCheck,
) -> Result<Plan, PlanError> {
    let overflow = PlanError::RowIndexOverflow {
        first: first_row,
        len: rows.len(),
    };
    let first = i32::try_from(first_row).map_err(|_| overflow.clone())?;
    let last = i32::try_from(rows.len())
        .ok()
        .and_then(|n| first.checked_add(n))
        .ok_or(overflow)?;
    debug_assert!(last >= first);

    let mut out = Plan {
        accepted: Vec::with_capacity(rows.len()),
        rejected: Vec::new(),
    };
    let mut seen: HashMap<E164, i32> = HashMap::with_capacity(rows.len());
    for (row_index, mut row) in (first..last).zip(rows) {
        let verdict = check_text(&row)
            .and_then(|()| normalize(&row.phone_number, region, check))
            .and_then(|number| match seen.get(&number) {
                Some(&earlier) => Err(duplicate_of(earlier)),
                None => Ok(number),
            });
        match verdict {
            Ok(number) => {
                seen.insert(number.clone(), row_index);
                if row.inputs.is_null() {
                    row.inputs = Value::Object(Default::default());
                }
                out.accepted.push(Accepted {
                    row_index,
                    number,
                    row,
                });
            }
            Err(rejection) => out.rejected.push(Rejected {
                row_index,
                raw_number: kept_raw(&row.phone_number),
                rejection,
            }),
        }
    }
    Ok(out)
}

fn kept_raw(raw: &str) -> Option<String> {
    if raw.is_empty() {
        return None;
    }
    let mut kept: String = raw.chars().take(MAX_KEPT_RAW).collect();
    if kept.contains('\0') {
        kept = kept.replace('\0', "\u{FFFD}");
    }
    Some(kept)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reject::Reason;
    use proptest::prelude::*;
    use serde_json::json;

    fn row(number: &str) -> RawRow {
        RawRow {
            phone_number: number.to_owned(),
            ..Default::default()
        }
    }

    fn us() -> Region {
        Region::parse("US")
    }

    #[test]
    fn sorts_rows_and_keeps_the_first_duplicate() {
        let rows = vec![
            row("(201) 555-0101"),
            row(""),
            row("+1 201 555 0101"),
            row("nope"),
            row("201-555-0102"),
        ];
        let p = plan(10, rows, us(), NumberCheck::Strict).unwrap();
        let accepted: Vec<_> = p
            .accepted
            .iter()
            .map(|a| (a.row_index, a.number.as_str()))
            .collect();
        assert_eq!(accepted, [(10, "+12015550101"), (14, "+12015550102")]);
        let rejected: Vec<_> = p
            .rejected
            .iter()
            .map(|r| (r.row_index, r.rejection.reason))
            .collect();
        assert_eq!(
            rejected,
            [
                (11, Reason::MissingNumber),
                (12, Reason::Duplicate),
                (13, Reason::InvalidNumber)
            ]
        );
        assert_eq!(p.rejected[1].rejection.detail, "duplicate of row 11");
        assert_eq!(p.rejected[1].raw_number.as_deref(), Some("+1 201 555 0101"));
        assert_eq!(p.rejected[0].raw_number, None);
    }

    #[test]
    fn nul_bytes_reject_the_row_not_the_chunk() {
        let mut bad = row("+12015550101");
        bad.inputs = json!({"note": "a\u{0}b"});
        let mut bad_name = row("+12015550102");
        bad_name.name = Some("x\0".into());
        let p = plan(
            0,
            vec![bad, bad_name, row("+12015550103\0")],
            us(),
            NumberCheck::Strict,
        )
        .unwrap();
        assert_eq!(p.rejected[0].rejection.reason, Reason::InvalidText);
        assert_eq!(
            p.rejected[1].rejection.detail,
            "name contains a NUL character"
        );
        // libphonenumber reads the number out of surrounding junk; only the E.164 is stored.
        assert_eq!(p.accepted.len(), 1);
        assert_eq!(p.accepted[0].number.as_str(), "+12015550103");
    }

    #[test]
    fn missing_inputs_become_an_empty_object() {
        let p = plan(0, vec![row("+12015550101")], us(), NumberCheck::Strict).unwrap();
        assert_eq!(p.accepted[0].row.inputs, json!({}));
    }

    #[test]
    fn overflowing_indexes_are_refused() {
        assert!(
            plan(
                u32::MAX,
                vec![row("+12015550101")],
                us(),
                NumberCheck::Strict
            )
            .is_err()
        );
        assert!(plan(i32::MAX as u32, vec![row("1")], us(), NumberCheck::Strict).is_err());
        assert!(plan(i32::MAX as u32, vec![], us(), NumberCheck::Strict).is_ok());
    }

    proptest! {
        // Every row lands exactly once; accepted numbers are unique; each duplicate points at an
        // earlier accepted row holding the same number.
        #[test]
        fn every_row_accounted_for(lines in proptest::collection::vec(0u32..20, 0..60), first in 0u32..1000) {
            let rows: Vec<_> = lines.iter().map(|l| row(&format!("+1201555{:04}", 100 + l))).collect();
            let n = rows.len();
            let p = plan(first, rows, us(), NumberCheck::Strict).unwrap();
            prop_assert_eq!(p.accepted.len() + p.rejected.len(), n);
            let mut numbers = std::collections::HashSet::new();
            for a in &p.accepted {
                prop_assert!(numbers.insert(a.number.clone()));
            }
            for r in &p.rejected {
                prop_assert_eq!(r.rejection.reason, Reason::Duplicate);
                let earlier: i32 = r.rejection.detail.trim_start_matches("duplicate of row ").parse::<i32>().unwrap() - 1;
                prop_assert!(earlier < r.row_index);
                prop_assert!(p.accepted.iter().any(|a| a.row_index == earlier));
            }
        }
    }
}

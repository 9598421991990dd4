//! Streaming parse of a create-batch body: the rows are validated and packed into encoded
//! ingest chunks *while* the JSON is read, so a 100,000-contact batch is never held as parsed
//! structures plus copies — only the raw body and the compact encoded chunks exist at once.

use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, DeserializeOwned, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};
use uuid::Uuid;

use shared::queue::messages::{IngestChunkV1, RawRow};

use crate::error::ApiError;
use crate::validate::{Violations, is_email};

/// The most contacts one batch may hold.
pub const MAX_ROWS: u32 = 100_000;
/// Rows per ingest chunk: large enough that per-message overhead vanishes, small enough that a
/// redelivered chunk is cheap and several workers share one batch.
pub const CHUNK_ROWS: usize = 2_000;

/// One row shape (Vogent `rows[]` or Dialgen `contacts[]`) and how it becomes a [`RawRow`].
pub trait RowShape: DeserializeOwned {
    /// The body's key holding the rows.
    const KEY: &'static str;
    /// Checks the row (recording problems under `path`) and converts it.
    fn into_raw(self, path: &str, violations: &mut Violations) -> RawRow;
}

/// A Vogent row (seed 000): `inputs` must be a string => string map.
#[derive(Debug, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VogentRow {
    to_number: String,
    #[serde(default)]
    inputs: Option<Map<String, Value>>,
    /// The recipient's IANA timezone (an extension; else derived from the number).
    #[serde(default)]
    timezone: Option<String>,
}

impl RowShape for VogentRow {
    const KEY: &'static str = "rows";

    fn into_raw(self, path: &str, violations: &mut Violations) -> RawRow {
        let inputs = self.inputs.unwrap_or_default();
        for (key, value) in &inputs {
            if !value.is_string() {
                violations.add(
                    format!("{path}.inputs.{key}"),
                    "must be a string (inputs are a string => string map)",
                );
            }
        }
        RawRow {
            phone_number: self.to_number,
            inputs: Value::Object(inputs),
            timezone: check_timezone(self.timezone, path, violations),
            ..Default::default()
        }
    }
}

/// A Dialgen contact (seed 004).
#[derive(Debug, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DialgenContact {
    #[serde(default)]
    id: Option<String>,
    phone_number: String,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    company: Option<String>,
    #[serde(default)]
    metadata: Option<Value>,
    /// The recipient's IANA timezone (an extension; else derived from the number).
    #[serde(default)]
    timezone: Option<String>,
}

impl RowShape for DialgenContact {
    const KEY: &'static str = "contacts";

    fn into_raw(self, path: &str, violations: &mut Violations) -> RawRow {
        if let Some(email) = self.email.as_deref().filter(|e| !is_email(e)) {
            violations.add(
                format!("{path}.email"),
                format!("{email:?} is not a valid email address"),
            );
        }
        if let Some(id) = self
            .id
            .as_deref()
            .filter(|id| id.trim().is_empty() || id.len() > 200)
        {
            violations.add(
                format!("{path}.id"),
                format!("{id:?} must be 1 to 200 characters"),
            );
        }
        let name = self
            .name
            .filter(|n| !n.trim().is_empty())
            .unwrap_or_else(|| "Unknown".to_owned());
        RawRow {
            phone_number: self.phone_number,
            external_id: self.id,
            name: Some(name),
            email: self.email,
            company: self.company,
            inputs: self.metadata.unwrap_or(Value::Object(Map::new())),
            timezone: check_timezone(self.timezone, path, violations),
        }
    }
}

/// A row's `timezone`: an IANA name (422 naming `{path}.timezone` otherwise), stored as its
/// canonical spelling.
fn check_timezone(tz: Option<String>, path: &str, violations: &mut Violations) -> Option<String> {
    let tz = tz?;
    match tz.parse::<shared::domain::Timezone>() {
        Ok(t) => Some(t.name().to_owned()),
        Err(e) => {
            violations.add(format!("{path}.timezone"), e);
            None
        }
    }
}

/// What parsing produced: the other top-level fields (checked by the caller), the encoded
/// chunks, and the row count.
pub struct Parsed {
    /// Every top-level field except the rows.
    pub header: Map<String, Value>,
    /// Encoded `IngestChunkV1` messages, in order.
    pub chunks: Vec<Vec<u8>>,
    /// How many rows were read.
    pub rows: u32,
}

/// Parses `body`, validating rows into `violations` and packing them into chunks for
/// `batch_id`. Syntax and type errors are a 400 naming the field; too many rows a 413.
pub fn parse<R: RowShape>(
    body: &[u8],
    batch_id: Uuid,
    workspace_id: Uuid,
    violations: &mut Violations,
) -> Result<Parsed, ApiError> {
    let mut sink = Sink::<R> {
        batch_id,
        workspace_id,
        current: Vec::with_capacity(CHUNK_ROWS),
        chunks: Vec::new(),
        rows: 0,
        first_row: 0,
        too_many: false,
        violations,
        _row: PhantomData,
    };
    let mut de = serde_json::Deserializer::from_slice(body);
    let mut track = serde_path_to_error::Track::new();
    let result = Top(&mut sink)
        .deserialize(serde_path_to_error::Deserializer::new(&mut de, &mut track))
        .and_then(|header| de.end().map(|()| header))
        .map_err(|e| serde_path_to_error::Error::new(track.path(), e));
    if sink.too_many {
        return Err(ApiError::TooLarge(format!(
            "a batch holds at most {MAX_ROWS} contacts in `{}`",
            R::KEY
        )));
    }
    let header = result.map_err(crate::extract::bad_json)?;
    let Some(header) = header else {
        return Err(ApiError::field(R::KEY, "is required"));
    };
    sink.flush()?;
    if sink.rows == 0 {
        sink.violations
            .add(R::KEY, format!("must hold 1 to {MAX_ROWS} contacts"));
    }
    Ok(Parsed {
        header,
        chunks: sink.chunks,
        rows: sink.rows,
    })
}

struct Sink<'v, R> {
    batch_id: Uuid,
    workspace_id: Uuid,
    current: Vec<RawRow>,
    chunks: Vec<Vec<u8>>,
    rows: u32,
    first_row: u32,
    too_many: bool,
    violations: &'v mut Violations,
    _row: PhantomData<R>,
}

impl<R: RowShape> Sink<'_, R> {
    fn push(&mut self, row: R) -> Result<(), ApiError> {
        let path = format!("{}[{}]", R::KEY, self.rows);
        let raw = row.into_raw(&path, self.violations);
        self.current.push(raw);
        self.rows += 1;
        if self.current.len() >= CHUNK_ROWS {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), ApiError> {
        if self.current.is_empty() {
            return Ok(());
        }
        let rows = std::mem::take(&mut self.current);
        let count = rows.len() as u32;
        let chunk = IngestChunkV1 {
            batch_id: self.batch_id,
            workspace_id: self.workspace_id,
            seq: self.chunks.len() as u32,
            first_row: self.first_row,
            rows,
        };
        self.chunks
            .push(serde_json::to_vec(&chunk).map_err(|e| ApiError::Internal(e.into()))?);
        self.first_row += count;
        self.current = Vec::with_capacity(CHUNK_ROWS);
        Ok(())
    }
}

/// The top-level object: rows go to the sink, every other field into a map.
struct Top<'s, 'v, R>(&'s mut Sink<'v, R>);

impl<'de, R: RowShape> DeserializeSeed<'de> for Top<'_, '_, R> {
    type Value = Option<Map<String, Value>>;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de, R: RowShape> Visitor<'de> for Top<'_, '_, R> {
    type Value = Option<Map<String, Value>>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut header = Map::new();
        let mut saw_rows = false;
        while let Some(key) = map.next_key::<String>()? {
            if key == R::KEY {
                saw_rows = true;
                map.next_value_seed(Rows(&mut *self.0))?;
            } else {
                header.insert(key, map.next_value()?);
            }
        }
        Ok(saw_rows.then_some(header))
    }
}

/// The rows array, read one element at a time into the sink.
struct Rows<'s, 'v, R>(&'s mut Sink<'v, R>);

impl<'de, R: RowShape> DeserializeSeed<'de> for Rows<'_, '_, R> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de, R: RowShape> Visitor<'de> for Rows<'_, '_, R> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an array of contacts")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while let Some(row) = seq.next_element::<R>()? {
            if self.0.rows >= MAX_ROWS {
                self.0.too_many = true;
                return Err(de::Error::custom(format!("more than {MAX_ROWS} contacts")));
            }
            self.0
                .push(row)
                .map_err(|e| de::Error::custom(e.to_string()))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids() -> (Uuid, Uuid) {
        (Uuid::now_v7(), Uuid::now_v7())
    }

    #[test]
    fn packs_rows_into_chunks_and_keeps_the_header() {
        let rows: Vec<String> = (0..4500)
            .map(|i| {
                format!(
                    r#"{{"toNumber":"+1201555{:04}","inputs":{{"n":"{i}"}}}}"#,
                    i % 10000
                )
            })
            .collect();
        let body = format!(
            r#"{{"name":"x","rows":[{}],"callAgentId":"a"}}"#,
            rows.join(",")
        );
        let (b, w) = ids();
        let mut v = Violations::default();
        let parsed = parse::<VogentRow>(body.as_bytes(), b, w, &mut v).unwrap();
        assert!(v.is_empty());
        assert_eq!(parsed.rows, 4500);
        assert_eq!(parsed.chunks.len(), 3);
        assert_eq!(parsed.header["name"], "x");
        let last: IngestChunkV1 = serde_json::from_slice(&parsed.chunks[2]).unwrap();
        assert_eq!((last.seq, last.first_row, last.rows.len()), (2, 4000, 500));
    }

    #[test]
    fn names_non_string_inputs() {
        let body = r#"{"rows":[{"toNumber":"+12015550100","inputs":{"age":41}}]}"#;
        let mut v = Violations::default();
        parse::<VogentRow>(body.as_bytes(), Uuid::nil(), Uuid::nil(), &mut v).unwrap();
        let err = v.into_result(()).unwrap_err();
        assert!(format!("{err:?}").contains("rows[0].inputs.age"));
    }

    #[test]
    fn type_errors_name_the_field() {
        let body = r#"{"contacts":[{"phoneNumber":"+12015550100"},{"phoneNumber":5}]}"#;
        let mut v = Violations::default();
        match parse::<DialgenContact>(body.as_bytes(), Uuid::nil(), Uuid::nil(), &mut v) {
            Err(ApiError::BadRequest { details, .. }) => {
                assert_eq!(details[0].field, "contacts[1].phoneNumber")
            }
            _ => panic!("expected a 400"),
        }
    }

    #[test]
    fn row_timezone_is_validated() {
        let body = r#"{"contacts":[{"phoneNumber":"+12015550100","timezone":"America/Chicago"},
                                   {"phoneNumber":"+12015550101","timezone":"Mars/Olympus"}]}"#;
        let (batch, workspace) = ids();
        let mut v = Violations::default();
        parse::<DialgenContact>(body.as_bytes(), batch, workspace, &mut v).unwrap();
        let err = format!("{:?}", v.into_result(()));
        assert!(err.contains("contacts[1].timezone"), "{err}");
        assert!(!err.contains("contacts[0].timezone"), "{err}");
        let body = r#"{"rows":[{"toNumber":"+12015550100","timezone":"Nowhere"}]}"#;
        let mut v = Violations::default();
        parse::<VogentRow>(body.as_bytes(), batch, workspace, &mut v).unwrap();
        assert!(format!("{:?}", v.into_result(())).contains("rows[0].timezone"));
    }

    #[test]
    fn dialgen_defaults_and_email() {
        let body = r#"{"contacts":[{"phoneNumber":"+12015550100","email":"nope"}]}"#;
        let mut v = Violations::default();
        let parsed =
            parse::<DialgenContact>(body.as_bytes(), Uuid::nil(), Uuid::nil(), &mut v).unwrap();
        let chunk: IngestChunkV1 = serde_json::from_slice(&parsed.chunks[0]).unwrap();
        assert_eq!(chunk.rows[0].name.as_deref(), Some("Unknown"));
        assert!(format!("{:?}", v.into_result(())).contains("contacts[0].email"));
    }
}

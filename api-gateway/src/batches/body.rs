//! Streaming parse of a create-batch body: the rows are validated and packed into encoded
//! ingest chunks *while* the JSON is read, so a 100,000-contact batch is never held as parsed
//! structures plus copies — only the raw body and the compact encoded chunks exist at once.

use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, DeserializeOwned, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};
use uuid::Uuid;

use shared::compliance::jurisdiction::{PostalCode, UsState};
#[cfg(test)]
use shared::queue::messages::IngestChunkV1;
use shared::queue::messages::RawRow;

use super::fingerprint::Fingerprint;
use super::held::{self, Held};
use crate::error::{ApiError, FieldError, Problem};
use crate::strict::{Checked, Findings};
use crate::validate::{
    MAX_COMPANY_CHARS, MAX_ROW_DATA_BYTES, Violations, check_name, is_email, json_size,
};

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
    /// The body's `defaultRegion`, if the fields read so far hold one.
    fn region_hint(header: &Map<String, Value>) -> Option<String>;
}

/// A Vogent row (seed 000): `inputs` must be a string => string map.
#[derive(Debug, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VogentRow {
    /// E.164, or a national number read in `defaultRegion`; an unreadable one is a rejected
    /// row, not a failed request.
    pub(crate) to_number: String,
    /// String values; at most 16,384 bytes as compact JSON.
    #[serde(default)]
    #[schema(value_type = Option<std::collections::BTreeMap<String, String>>)]
    pub(crate) inputs: Option<Map<String, Value>>,
    /// The recipient's IANA timezone (an extension; else derived from the number).
    #[serde(default)]
    pub(crate) timezone: Option<String>,
    /// The recipient's US state, two letters (an extension: its rules apply besides those of
    /// the number's area code; docs/jurisdiction-rules.md).
    #[serde(default)]
    #[schema(min_length = 2, max_length = 2, example = "FL")]
    pub(crate) state: Option<String>,
    /// The recipient's US postal code, `NNNNN` or `NNNNN-NNNN` (an extension: the state it
    /// belongs to is a candidate jurisdiction too).
    #[serde(default)]
    #[schema(example = "33101")]
    pub(crate) postal_code: Option<String>,
}

impl RowShape for VogentRow {
    const KEY: &'static str = "rows";

    fn region_hint(header: &Map<String, Value>) -> Option<String> {
        header
            .get("defaultRegion")
            .and_then(Value::as_str)
            .map(str::to_owned)
    }

    fn into_raw(self, path: &str, violations: &mut Violations) -> RawRow {
        let inputs = self.inputs.unwrap_or_default();
        check_row_data(&inputs, &format!("{path}.inputs"), violations);
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
            state: check_state(self.state, path, violations),
            postal_code: check_postal_code(self.postal_code, path, violations),
            ..Default::default()
        }
    }
}

/// A Dialgen contact (seed 004).
#[derive(Debug, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DialgenContact {
    #[serde(default)]
    pub(crate) id: Option<String>,
    pub(crate) phone_number: String,
    /// At most 500 characters; "Unknown" when absent.
    #[serde(default)]
    #[schema(max_length = 500)]
    pub(crate) name: Option<String>,
    /// A valid address, at most 254 characters.
    #[serde(default)]
    #[schema(max_length = 254, format = "email")]
    pub(crate) email: Option<String>,
    /// At most 500 characters.
    #[serde(default)]
    #[schema(max_length = 500)]
    pub(crate) company: Option<String>,
    /// Any JSON object, at most 16,384 bytes as compact JSON.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub(crate) metadata: Option<Value>,
    /// The recipient's IANA timezone (an extension; else derived from the number).
    #[serde(default)]
    pub(crate) timezone: Option<String>,
    /// The recipient's US state, two letters (an extension: its rules apply besides those of
    /// the number's area code; docs/jurisdiction-rules.md).
    #[serde(default)]
    #[schema(min_length = 2, max_length = 2, example = "FL")]
    pub(crate) state: Option<String>,
    /// The recipient's US postal code, `NNNNN` or `NNNNN-NNNN` (an extension: the state it
    /// belongs to is a candidate jurisdiction too).
    #[serde(default)]
    #[schema(example = "33101")]
    pub(crate) postal_code: Option<String>,
}

impl RowShape for DialgenContact {
    const KEY: &'static str = "contacts";

    fn region_hint(header: &Map<String, Value>) -> Option<String> {
        header
            .get("options")
            .and_then(|o| o.get("defaultRegion"))
            .and_then(Value::as_str)
            .map(str::to_owned)
    }

    fn into_raw(self, path: &str, violations: &mut Violations) -> RawRow {
        if let Some(email) = self.email.as_deref().filter(|e| !is_email(e)) {
            let shown: String = email.chars().take(80).collect();
            violations.add(
                format!("{path}.email"),
                format!("{shown:?} is not a valid email address"),
            );
        }
        if let Some(name) = &self.name {
            check_name(name, &format!("{path}.name"), violations);
        }
        if self
            .company
            .as_ref()
            .is_some_and(|c| c.chars().count() > MAX_COMPANY_CHARS)
        {
            violations.add(
                format!("{path}.company"),
                format!("must be at most {MAX_COMPANY_CHARS} characters"),
            );
        }
        if let Some(metadata) = &self.metadata {
            check_row_data(metadata, &format!("{path}.metadata"), violations);
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
            state: check_state(self.state, path, violations),
            postal_code: check_postal_code(self.postal_code, path, violations),
        }
    }
}

/// A row's `metadata` or `inputs`: at most [`MAX_ROW_DATA_BYTES`] as compact JSON.
fn check_row_data(value: &impl serde::Serialize, path: &str, violations: &mut Violations) {
    let size = json_size(value);
    if size > MAX_ROW_DATA_BYTES {
        violations.add(
            path,
            format!("is {size} bytes as JSON; at most {MAX_ROW_DATA_BYTES} are stored per contact"),
        );
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

/// A row's `state`: a USPS code of a state, DC or territory, in either case (422 naming
/// `{path}.state` otherwise), stored upper case. Shared by every path that reads rows (create,
/// append, CSV, preflight).
pub(crate) fn check_state(
    state: Option<String>,
    path: &str,
    violations: &mut Violations,
) -> Option<String> {
    let state = state?;
    match state.parse::<UsState>() {
        Ok(s) => Some(s.code().to_owned()),
        Err(e) => {
            violations.add(format!("{path}.state"), e);
            None
        }
    }
}

/// A row's `postalCode`: a US ZIP or ZIP+4 (422 naming `{path}.postalCode` otherwise), stored
/// trimmed. Its state is resolved by the ingest worker.
pub(crate) fn check_postal_code(
    code: Option<String>,
    path: &str,
    violations: &mut Violations,
) -> Option<String> {
    let code = code?;
    match code.parse::<PostalCode>() {
        Ok(c) => Some(c.as_str().to_owned()),
        Err(e) => {
            violations.add(format!("{path}.postalCode"), e);
            None
        }
    }
}

/// A full chunk, encoded, ready to publish.
#[derive(Debug)]
pub struct Chunk {
    /// Its position in the batch, 0-based.
    pub seq: u32,
    /// The encoded `IngestChunkV1`, counted in [`super::held`] until dropped.
    pub body: Held<Vec<u8>>,
}

/// Why packing stopped without an error of the body's own.
#[derive(Debug, thiserror::Error)]
#[error("the publisher stopped taking chunks")]
pub struct Stopped;

/// Packs rows into encoded chunks of [`CHUNK_ROWS`] for one batch and hands each to `out` as soon
/// as it is full. Each row is encoded as it arrives, so a chunk in progress is held as the bytes
/// it will be sent as, and only one chunk is in progress at a time.
pub struct Packer<'o> {
    batch_id: Uuid,
    workspace_id: Uuid,
    buf: Vec<u8>,
    in_chunk: usize,
    seq: u32,
    first_row: u32,
    rows: u32,
    too_many: bool,
    /// Once a row is known to make the request a 422, nothing more is worth publishing.
    discard: bool,
    /// The `Idempotency-Key` fingerprint, over each row as parsed (see [`Packer::fingerprinted`]).
    fingerprint: Option<Fingerprint>,
    out: Box<dyn FnMut(Chunk) -> Result<(), Stopped> + Send + 'o>,
}

impl<'o> Packer<'o> {
    /// A packer for `batch_id` handing full chunks to `out`.
    pub fn new(
        batch_id: Uuid,
        workspace_id: Uuid,
        out: impl FnMut(Chunk) -> Result<(), Stopped> + Send + 'o,
    ) -> Self {
        Self {
            batch_id,
            workspace_id,
            buf: Vec::new(),
            in_chunk: 0,
            seq: 0,
            first_row: 0,
            rows: 0,
            too_many: false,
            discard: false,
            fingerprint: None,
            out: Box::new(out),
        }
    }

    /// Numbers the chunks after a batch's own `seq` chunks and `first_row` rows (rows added to
    /// a running job), so each row is encoded once, in its final place.
    pub fn continuing(mut self, seq: u32, first_row: u32) -> Self {
        self.seq = seq;
        self.first_row = first_row;
        self
    }

    /// Adds each row, as parsed and encoded, to `fingerprint`: a replay is then recognised by
    /// what it asks for, whatever its whitespace or key order.
    pub fn fingerprinted(mut self, fingerprint: Fingerprint) -> Self {
        self.fingerprint = Some(fingerprint);
        self
    }

    /// The fingerprint kept, once the rows are read.
    pub fn take_fingerprint(&mut self) -> Option<Fingerprint> {
        self.fingerprint.take()
    }

    /// Rows read so far.
    pub fn rows(&self) -> u32 {
        self.rows
    }

    /// Whether a row past [`MAX_ROWS`] was offered.
    pub fn too_many(&self) -> bool {
        self.too_many
    }

    /// The 413 for a body past [`MAX_ROWS`] rows in `key`.
    pub fn too_many_error(key: &str) -> ApiError {
        ApiError::TooLarge(format!(
            "a batch holds at most {MAX_ROWS} contacts in `{key}`"
        ))
    }

    /// Adds one row; `Err` stops the parse (too many rows, or the publisher went away).
    pub fn push(&mut self, raw: RawRow, violations: &Violations) -> Result<(), PushError> {
        if self.rows >= MAX_ROWS {
            self.too_many = true;
            return Err(PushError::TooMany);
        }
        self.rows += 1;
        if !violations.is_empty() {
            // The request will be a 422: stop publishing, keep reading to name every problem.
            self.discard = true;
        }
        if self.discard {
            return Ok(());
        }
        let before = self.buf.len();
        if self.in_chunk == 0 {
            // `IngestChunkV1`'s encoding, written as its rows arrive.
            self.buf.extend_from_slice(
                format!(
                    r#"{{"batchId":"{}","workspaceId":"{}","seq":{},"firstRow":{},"rows":["#,
                    self.batch_id, self.workspace_id, self.seq, self.first_row
                )
                .as_bytes(),
            );
        } else {
            self.buf.push(b',');
        }
        let row_start = self.buf.len();
        serde_json::to_writer(&mut self.buf, &raw).map_err(|e| PushError::Encode(e.into()))?;
        if let Some(fingerprint) = &mut self.fingerprint {
            // The encoding is canonical: fields in declaration order, maps sorted by key.
            fingerprint.update(&self.buf[row_start..]);
            fingerprint.update(b"\n");
        }
        held::add(self.buf.len() - before);
        self.in_chunk += 1;
        if self.in_chunk >= CHUNK_ROWS {
            self.flush()?;
        }
        Ok(())
    }

    /// Hands out the chunk in progress, if any (the last one, shorter).
    pub fn flush(&mut self) -> Result<(), PushError> {
        if self.in_chunk == 0 || self.discard {
            return Ok(());
        }
        self.buf.extend_from_slice(b"]}");
        held::add(2);
        let body = std::mem::take(&mut self.buf);
        let n = body.len();
        let chunk = Chunk {
            seq: self.seq,
            body: Held::adopt(body, n),
        };
        self.seq += 1;
        self.first_row += self.in_chunk as u32;
        self.in_chunk = 0;
        (self.out)(chunk).map_err(PushError::Stopped)
    }
}

impl Drop for Packer<'_> {
    fn drop(&mut self) {
        // A chunk left in progress (the parse failed) is no longer held.
        held::sub(self.buf.len());
    }
}

/// Why a row could not be added.
#[derive(Debug, thiserror::Error)]
pub enum PushError {
    /// The row is past [`MAX_ROWS`].
    #[error("more than {MAX_ROWS} contacts")]
    TooMany,
    /// Chunks are no longer taken (the publisher failed).
    #[error(transparent)]
    Stopped(#[from] Stopped),
    /// Encoding failed (a bug).
    #[error("encoding a chunk: {0}")]
    Encode(anyhow::Error),
}

/// What parsing a JSON body produced besides the chunks.
pub struct Parsed {
    /// Every top-level field except the rows.
    pub header: Map<String, Value>,
    /// How many rows were read.
    pub rows: u32,
}

/// Parses a JSON create body from `reader` as it arrives (serde_json's streaming deserializer
/// over a blocking reader), validating rows into `violations` and packing them through
/// `packer`. `region_hint` receives the body's `defaultRegion` as known when the rows start
/// (chunks are read in that region). Syntax and type errors are a 400 naming the field; too
/// many rows a 413; a stop of the publisher is [`ParseError::Stopped`].
pub fn parse_reader<R: RowShape>(
    reader: impl std::io::Read,
    packer: &mut Packer<'_>,
    violations: &mut Violations,
    region_hint: &mut dyn FnMut(Option<String>),
) -> Result<Parsed, ParseError> {
    let mut de = serde_json::Deserializer::from_reader(reader);
    let mut track = serde_path_to_error::Track::new();
    let mut stopped = false;
    let result = Top::<R> {
        packer,
        violations,
        region_hint,
        stopped: &mut stopped,
        _row: PhantomData,
    }
    .deserialize(serde_path_to_error::Deserializer::new(&mut de, &mut track))
    .and_then(|header| de.end().map(|()| header))
    .map_err(|e| serde_path_to_error::Error::new(track.path(), e));
    if stopped {
        return Err(ParseError::Stopped);
    }
    if packer.too_many() {
        return Err(ParseError::Api(Packer::too_many_error(R::KEY)));
    }
    let header = result.map_err(|e| {
        let bad = crate::extract::bad_json(e);
        if !violations.has_strict_findings() {
            return ParseError::Api(bad);
        }
        // `nmae` for `name` is also a missing `name`: one 422 says both.
        let mut details = std::mem::take(violations).into_details();
        if let ApiError::BadRequest { details: more, .. } = bad {
            details.extend(more);
        }
        ParseError::Api(ApiError::Validation(details))
    })?;
    let (header, saw_rows) = header;
    packer.flush().map_err(|_| ParseError::Stopped)?;
    if !saw_rows {
        // Answered with the settings' own problems (a misspelled `contacts` is named there).
        violations.add(R::KEY, "is required");
    } else if packer.rows() == 0 {
        violations.add(R::KEY, format!("must hold 1 to {MAX_ROWS} contacts"));
    }
    Ok(Parsed {
        header,
        rows: packer.rows(),
    })
}

/// Why a streamed parse ended without a result.
#[derive(Debug)]
pub enum ParseError {
    /// The body is wrong: answer this.
    Api(ApiError),
    /// The publisher stopped taking chunks; its own error is the answer.
    Stopped,
}

/// Parses a whole body held in memory (tests, and small bodies): the chunks are collected.
#[cfg(test)]
pub fn parse<R: RowShape>(
    body: &[u8],
    batch_id: Uuid,
    workspace_id: Uuid,
    violations: &mut Violations,
) -> Result<(Parsed, Vec<Chunk>), ApiError> {
    let mut chunks = Vec::new();
    let parsed = {
        let mut packer = Packer::new(batch_id, workspace_id, |c| {
            chunks.push(c);
            Ok(())
        });
        parse_reader::<R>(body, &mut packer, violations, &mut |_| ())
    };
    match parsed {
        Ok(p) => Ok((p, chunks)),
        Err(ParseError::Api(e)) => Err(e),
        Err(ParseError::Stopped) => Err(ApiError::Internal(anyhow::anyhow!("{Stopped}"))),
    }
}

/// The top-level object: rows go to the packer, every other field into a map.
struct Top<'a, 'p, R> {
    packer: &'a mut Packer<'p>,
    violations: &'a mut Violations,
    region_hint: &'a mut dyn FnMut(Option<String>),
    stopped: &'a mut bool,
    _row: PhantomData<R>,
}

impl<'de, R: RowShape> DeserializeSeed<'de> for Top<'_, '_, R> {
    type Value = (Map<String, Value>, bool);
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de, R: RowShape> Visitor<'de> for Top<'_, '_, R> {
    type Value = (Map<String, Value>, bool);

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut header = Map::new();
        let mut saw_rows = false;
        let findings = Findings::default();
        while let Some(key) = map.next_key::<String>()? {
            if (key == R::KEY && saw_rows) || header.contains_key(&key) {
                // Never a merge (two `contacts` arrays used to be concatenated) nor a last
                // value wins: a 422 names it.
                self.violations.extend([FieldError::new(
                    &key,
                    format!("the key `{key}` appears more than once in this object"),
                )
                .problem(Problem::DuplicateKey)]);
                map.next_value::<de::IgnoredAny>()?;
            } else if key == R::KEY {
                saw_rows = true;
                (self.region_hint)(R::region_hint(&header));
                map.next_value_seed(Rows::<R> {
                    packer: &mut *self.packer,
                    violations: &mut *self.violations,
                    stopped: &mut *self.stopped,
                    findings: &findings,
                    _row: PhantomData,
                })?;
            } else {
                // Kept whole until the end (the settings are typed then); its own objects are
                // checked for duplicated keys now.
                let value = map.next_value_seed(Checked {
                    path: key.clone(),
                    findings: &findings,
                })?;
                self.violations.extend(findings.take());
                header.insert(key, value);
            }
        }
        Ok((header, saw_rows))
    }
}

/// The rows array, read one element at a time into the packer.
struct Rows<'a, 'p, R> {
    packer: &'a mut Packer<'p>,
    violations: &'a mut Violations,
    stopped: &'a mut bool,
    findings: &'a Findings,
    _row: PhantomData<R>,
}

/// One row, read strictly at its path.
struct StrictRow<'f, R> {
    path: String,
    findings: &'f Findings,
    _row: PhantomData<R>,
}

impl<'de, R: RowShape> DeserializeSeed<'de> for StrictRow<'_, R> {
    type Value = R;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<R, D::Error> {
        crate::strict::deserialize(d, &self.path, self.findings)
    }
}

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
        loop {
            let path = format!("{}[{}]", R::KEY, self.packer.rows());
            let next = seq.next_element_seed(StrictRow::<R> {
                path: path.clone(),
                findings: self.findings,
                _row: PhantomData,
            });
            // A row's unknown fields and duplicated keys make the request a 422 (the packer
            // stops publishing), and the reading goes on to name every one.
            self.violations.extend(self.findings.take());
            let Some(row) = next? else {
                break;
            };
            if self.packer.rows() >= MAX_ROWS {
                self.packer.too_many = true;
                return Err(de::Error::custom(format!("more than {MAX_ROWS} contacts")));
            }
            let raw = row.into_raw(&path, self.violations);
            if let Err(e) = self.packer.push(raw, self.violations) {
                if matches!(e, PushError::Stopped(_)) {
                    *self.stopped = true;
                }
                return Err(de::Error::custom(e.to_string()));
            }
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
        let (parsed, chunks) = parse::<VogentRow>(body.as_bytes(), b, w, &mut v).unwrap();
        assert!(v.is_empty());
        assert_eq!(parsed.rows, 4500);
        assert_eq!(chunks.len(), 3);
        assert_eq!(parsed.header["name"], "x");
        let first: IngestChunkV1 = serde_json::from_slice(chunks[0].body.get()).unwrap();
        assert_eq!((first.batch_id, first.workspace_id), (b, w));
        assert_eq!(first.rows[1].phone_number, "+12015550001");
        assert_eq!(first.rows[1].inputs["n"], "1");
        let last: IngestChunkV1 = serde_json::from_slice(chunks[2].body.get()).unwrap();
        assert_eq!((last.seq, last.first_row, last.rows.len()), (2, 4000, 500));
        assert_eq!(chunks[2].seq, 2);
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
    fn row_state_and_postal_code_are_validated_and_normalised() {
        let mut v = Violations::default();
        assert_eq!(
            check_state(Some(" fl ".into()), "contacts[0]", &mut v).as_deref(),
            Some("FL")
        );
        assert_eq!(
            check_postal_code(Some(" 33101-1234 ".into()), "contacts[0]", &mut v).as_deref(),
            Some("33101-1234")
        );
        assert_eq!(check_state(None, "contacts[0]", &mut v), None);
        assert!(v.is_empty());
        assert_eq!(check_state(Some("Florida".into()), "rows[2]", &mut v), None);
        assert_eq!(
            check_postal_code(Some("3310".into()), "rows[2]", &mut v),
            None
        );
        let err = format!("{:?}", v.into_result(()));
        assert!(
            err.contains("rows[2].state") && err.contains("rows[2].postalCode"),
            "{err}"
        );
    }

    #[test]
    fn dialgen_defaults_and_email() {
        let body = r#"{"contacts":[{"phoneNumber":"+12015550100"}]}"#;
        let mut v = Violations::default();
        let (_, chunks) =
            parse::<DialgenContact>(body.as_bytes(), Uuid::nil(), Uuid::nil(), &mut v).unwrap();
        let chunk: IngestChunkV1 = serde_json::from_slice(chunks[0].body.get()).unwrap();
        assert_eq!(chunk.rows[0].name.as_deref(), Some("Unknown"));
        assert!(v.is_empty());

        // A row that makes the request a 422 stops the publishing: no chunk is handed out.
        let body = r#"{"contacts":[{"phoneNumber":"+12015550100"},{"phoneNumber":"+12015550101","email":"nope"}]}"#;
        let mut v = Violations::default();
        let (_, chunks) =
            parse::<DialgenContact>(body.as_bytes(), Uuid::nil(), Uuid::nil(), &mut v).unwrap();
        assert!(chunks.is_empty());
        assert!(format!("{:?}", v.into_result(())).contains("contacts[1].email"));
    }

    #[test]
    fn the_region_hint_is_what_came_before_the_rows() {
        let mut seen = Vec::new();
        let body = r#"{"options":{"defaultRegion":"GB"},"contacts":[{"phoneNumber":"1"}]}"#;
        let mut v = Violations::default();
        let mut packer = Packer::new(Uuid::nil(), Uuid::nil(), |_| Ok(()));
        parse_reader::<DialgenContact>(body.as_bytes(), &mut packer, &mut v, &mut |h| seen.push(h))
            .unwrap();
        assert_eq!(seen, vec![Some("GB".to_owned())]);
        drop(packer);
        let mut seen = Vec::new();
        let body = r#"{"rows":[{"toNumber":"1"}],"defaultRegion":"GB"}"#;
        let mut packer = Packer::new(Uuid::nil(), Uuid::nil(), |_| Ok(()));
        parse_reader::<VogentRow>(body.as_bytes(), &mut packer, &mut v, &mut |h| seen.push(h))
            .unwrap();
        assert_eq!(seen, vec![None]);
    }
}

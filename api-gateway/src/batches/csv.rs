//! CSV uploads (`multipart/form-data`): a part `file` (CSV, UTF-8, a header row) and a part
//! `batch` (Dialgen) or `job` (Vogent) holding the JSON body without its rows. The file is
//! streamed through the same path as a JSON body ([`super::stream`]): read as it arrives, packed
//! into chunks, published as each fills.
//!
//! The parser is the `csv` crate over a blocking reader on the parser's thread, like the JSON
//! path: one mechanism for both, the reference CSV reader (quotes, embedded newlines, a UTF-8
//! BOM), and no second async CSV stack to keep in step.
//!
//! Parts may come in either order. The rows are read in the body's `defaultRegion` if the
//! `batch`/`job` part came first, else in the workspace's; a `defaultRegion` arriving after the
//! file that differs from that is a 422 (the rows were already read), as for a JSON body.

use std::io::Read;

use axum::extract::{FromRequest, Multipart, Request};
use axum::http::HeaderMap;
use serde_json::{Map, Value};
use tokio::sync::mpsc;

use super::body::{
    DialgenContact, MAX_ROWS, Packer, ParseError, Parsed, PushError, RowShape, Stopped, VogentRow,
};
use super::held::Held;
use super::stream::{self, BODY_FRAMES, CHUNKS_AHEAD, CheckHeader, Intake, Request as Create};
use super::submit::{Fingerprint, Submitted};
use crate::error::{ApiError, FieldError};
use crate::validate::Violations;

/// Names the phone number column may have (any case).
pub const PHONE_COLUMNS: [&str; 5] = ["phoneNumber", "phone", "phone_number", "number", "toNumber"];
/// The largest `batch`/`job` part.
const HEADER_PART_LIMIT: usize = 1024 * 1024;
/// The parser's read buffer.
const READ_BUF: usize = 64 * 1024;

/// A row shape that can also come from a CSV record.
pub trait CsvShape: RowShape {
    /// The part holding the rest of the body.
    const HEADER_PART: &'static str;
    /// Columns with a field of their own besides the phone number (the others are metadata or
    /// inputs).
    const KNOWN: &'static [&'static str];
    /// Builds the row from its cells and checks it like a JSON row.
    fn from_record(cells: Cells<'_>, path: &str, violations: &mut Violations) -> RawRow;
}

use shared::queue::messages::RawRow;

/// One record's cells, by column.
pub struct Cells<'a> {
    columns: &'a Columns,
    fields: &'a [&'a str],
}

impl<'a> Cells<'a> {
    /// The phone number as written.
    pub fn phone(&self) -> String {
        self.fields
            .get(self.columns.phone)
            .copied()
            .unwrap_or("")
            .to_owned()
    }

    /// A known column's cell; empty or absent is `None`.
    pub fn get(&self, name: &str) -> Option<String> {
        let (_, i) = self.columns.known.iter().find(|(n, _)| *n == name)?;
        self.fields
            .get(*i)
            .filter(|v| !v.is_empty())
            .map(|v| (*v).to_owned())
    }

    /// Every other column, as strings.
    pub fn extra(&self) -> Map<String, Value> {
        self.columns
            .extra
            .iter()
            .map(|(i, name)| {
                let v = self.fields.get(*i).copied().unwrap_or("");
                (name.clone(), Value::String(v.to_owned()))
            })
            .collect()
    }
}

impl CsvShape for DialgenContact {
    const HEADER_PART: &'static str = "batch";
    const KNOWN: &'static [&'static str] = &[
        "id",
        "name",
        "email",
        "company",
        "timezone",
        "state",
        "postalCode",
    ];

    fn from_record(cells: Cells<'_>, path: &str, violations: &mut Violations) -> RawRow {
        DialgenContact {
            id: cells.get("id"),
            phone_number: cells.phone(),
            name: cells.get("name"),
            email: cells.get("email"),
            company: cells.get("company"),
            metadata: Some(Value::Object(cells.extra())),
            timezone: cells.get("timezone"),
            state: cells.get("state"),
            postal_code: cells.get("postalCode"),
        }
        .into_raw(path, violations)
    }
}

impl CsvShape for VogentRow {
    const HEADER_PART: &'static str = "job";
    const KNOWN: &'static [&'static str] = &["timezone", "state", "postalCode"];

    fn from_record(cells: Cells<'_>, path: &str, violations: &mut Violations) -> RawRow {
        VogentRow {
            to_number: cells.phone(),
            inputs: Some(cells.extra()),
            timezone: cells.get("timezone"),
            state: cells.get("state"),
            postal_code: cells.get("postalCode"),
        }
        .into_raw(path, violations)
    }
}

/// Which column holds what, from the header row.
#[derive(Debug)]
pub struct Columns {
    phone: usize,
    known: Vec<(&'static str, usize)>,
    extra: Vec<(usize, String)>,
    width: usize,
}

impl Columns {
    /// Reads the header row; a 422 naming `file` if it has no phone column, one twice, or a
    /// column without a name.
    pub fn from_header(names: &[String], known: &[&'static str]) -> Result<Self, ApiError> {
        let bad = |m: String| ApiError::field("file", m);
        let mut seen: Vec<String> = Vec::new();
        let mut phones = Vec::new();
        let mut columns = Columns {
            phone: 0,
            known: Vec::new(),
            extra: Vec::new(),
            width: names.len(),
        };
        for (i, raw) in names.iter().enumerate() {
            let name = raw.trim();
            if name.is_empty() {
                return Err(bad(format!(
                    "column {} of the header row has no name",
                    i + 1
                )));
            }
            let lower = name.to_lowercase();
            if seen.contains(&lower) {
                return Err(bad(format!(
                    "column {name:?} appears twice in the header row"
                )));
            }
            seen.push(lower.clone());
            if PHONE_COLUMNS.iter().any(|p| p.to_lowercase() == lower) {
                phones.push((i, name.to_owned()));
            } else if let Some(k) = known.iter().find(|k| k.to_lowercase() == lower) {
                columns.known.push((k, i));
            } else {
                columns.extra.push((i, name.to_owned()));
            }
        }
        match phones.as_slice() {
            [] => Err(bad(format!(
                "the header row has no phone number column: name one {}",
                PHONE_COLUMNS.join(", ")
            ))),
            [(i, _)] => {
                columns.phone = *i;
                Ok(columns)
            }
            many => Err(bad(format!(
                "the header row has more than one phone number column ({}): keep one",
                many.iter()
                    .map(|(_, n)| n.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))),
        }
    }
}

/// Reads a CSV file from `reader` as it arrives, packing its rows through `packer`. Row `n` in
/// messages is the `n`th data row (1-based, the header aside), as the user counts them.
pub fn parse_csv<S: CsvShape>(
    reader: impl Read,
    packer: &mut Packer<'_>,
    violations: &mut Violations,
) -> Result<u32, ParseError> {
    let api = |e: ApiError| ParseError::Api(e);
    let mut rdr = ::csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(reader);
    let mut record = ::csv::ByteRecord::new();
    match rdr.read_byte_record(&mut record) {
        Ok(true) => {}
        Ok(false) => {
            return Err(api(ApiError::field(
                "file",
                format!("is empty: expected a header row and 1 to {MAX_ROWS} data rows"),
            )));
        }
        Err(e) => return Err(api(not_csv("file", &e))),
    }
    let mut names = Vec::with_capacity(record.len());
    for (i, cell) in record.iter().enumerate() {
        let cell = std::str::from_utf8(cell).map_err(|_| {
            api(ApiError::field(
                "file",
                format!("the header row is not valid UTF-8 (column {})", i + 1),
            ))
        })?;
        // csv-core drops a leading BOM; an editor that doubled it leaves one here.
        names.push(cell.trim_start_matches('\u{feff}').to_owned());
    }
    let columns = Columns::from_header(&names, S::KNOWN).map_err(api)?;
    loop {
        match rdr.read_byte_record(&mut record) {
            Ok(true) => {}
            Ok(false) => break,
            Err(e) => {
                let at = format!("file[row {}]", packer.rows() + 1);
                return Err(api(not_csv(&at, &e)));
            }
        }
        let n = packer.rows() + 1;
        let path = format!("file[row {n}]");
        if n > MAX_ROWS {
            return Err(api(ApiError::TooLarge(format!(
                "a batch holds at most {MAX_ROWS} contacts: the file has more data rows"
            ))));
        }
        let mut fields: Vec<&str> = Vec::with_capacity(columns.width);
        for (i, cell) in record.iter().enumerate() {
            match std::str::from_utf8(cell) {
                Ok(s) => fields.push(s),
                Err(_) => {
                    return Err(api(ApiError::field(
                        path,
                        format!(
                            "column {} is not valid UTF-8 (the file must be UTF-8)",
                            i + 1
                        ),
                    )));
                }
            }
        }
        if fields.len() != columns.width {
            violations.add(
                path.clone(),
                format!(
                    "has {} fields where the header row has {}",
                    fields.len(),
                    columns.width
                ),
            );
        }
        let raw = S::from_record(
            Cells {
                columns: &columns,
                fields: &fields,
            },
            &path,
            violations,
        );
        match packer.push(raw, violations) {
            Ok(()) => {}
            Err(PushError::TooMany) => {
                return Err(api(ApiError::TooLarge(format!(
                    "a batch holds at most {MAX_ROWS} contacts: the file has more data rows"
                ))));
            }
            Err(PushError::Stopped(_)) => return Err(ParseError::Stopped),
            Err(PushError::Encode(e)) => return Err(api(ApiError::Internal(e))),
        }
    }
    packer.flush().map_err(|_| ParseError::Stopped)?;
    if packer.rows() == 0 {
        violations.add("file", format!("must hold 1 to {MAX_ROWS} data rows"));
    }
    Ok(packer.rows())
}

fn not_csv(at: &str, e: &::csv::Error) -> ApiError {
    ApiError::BadRequest {
        message: format!("{at} is not valid CSV: {e}"),
        details: vec![FieldError::new(at, format!("is not valid CSV: {e}"))],
    }
}

/// Whether the request is a multipart upload.
pub fn is_multipart(headers: &HeaderMap) -> bool {
    headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.trim_start()
                .to_ascii_lowercase()
                .starts_with("multipart/form-data")
        })
}

/// The multipart reader of a request (a 400 for a missing boundary).
pub async fn multipart(req: Request) -> Result<Multipart, ApiError> {
    Multipart::from_request(req, &())
        .await
        .map_err(|e| ApiError::BadRequest {
            message: format!("the multipart body cannot be read: {}", e.body_text()),
            details: vec![],
        })
}

fn multipart_error(e: axum::extract::multipart::MultipartError) -> ApiError {
    if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::TooLarge(format!(
            "the request body is larger than the limit: {}",
            e.body_text()
        ))
    } else {
        ApiError::BadRequest {
            message: format!("the multipart body cannot be read: {}", e.body_text()),
            details: vec![],
        }
    }
}

/// What the multipart reader found besides the file's bytes.
struct Parts {
    header: Option<Map<String, Value>>,
    saw_file: bool,
    fingerprint: Fingerprint,
}

/// Reads the parts: the header part whole (it is small), the file streamed into `tx`.
async fn pump_parts<S: CsvShape>(
    multipart: &mut Multipart,
    tx: mpsc::Sender<Held<axum::body::Bytes>>,
    req: &Create,
    hint: &std::sync::Mutex<Option<String>>,
) -> Result<Parts, ApiError> {
    let mut parts = Parts {
        header: None,
        saw_file: false,
        fingerprint: Fingerprint::multipart(req.surface),
    };
    let mut tx = Some(tx);
    while let Some(mut field) = multipart.next_field().await.map_err(multipart_error)? {
        let name = field.name().unwrap_or_default().to_owned();
        let mut part = Fingerprint::part();
        if name == S::HEADER_PART {
            if parts.header.is_some() {
                return Err(duplicate_part(&name));
            }
            let mut bytes = Vec::new();
            while let Some(chunk) = field.chunk().await.map_err(multipart_error)? {
                bytes.extend_from_slice(&chunk);
                if bytes.len() > HEADER_PART_LIMIT {
                    return Err(ApiError::TooLarge(format!(
                        "the `{name}` part is larger than {HEADER_PART_LIMIT} bytes"
                    )));
                }
            }
            part.update(&bytes);
            let header = header_part::<S>(&name, &bytes)?;
            *hint.lock().unwrap_or_else(|e| e.into_inner()) = S::region_hint(&header);
            parts.header = Some(header);
        } else if name == "file" {
            if parts.saw_file {
                return Err(duplicate_part(&name));
            }
            parts.saw_file = true;
            let file_tx = tx.take();
            while let Some(chunk) = field.chunk().await.map_err(multipart_error)? {
                part.update(&chunk);
                let n = chunk.len();
                if let Some(t) = &file_tx
                    && t.send(Held::new(chunk, n)).await.is_err()
                {
                    // The parser stopped (its error is the answer): read no further.
                    return Ok(parts);
                }
            }
        } else {
            return Err(ApiError::BadRequest {
                message: format!(
                    "unknown part {name:?}: an upload has a part `file` (the CSV) and a part `{}` (the JSON settings)",
                    S::HEADER_PART
                ),
                details: vec![FieldError::new(name, "is not a part of this upload")],
            });
        }
        parts.fingerprint.update_part(&name, part);
    }
    Ok(parts)
}

fn duplicate_part(name: &str) -> ApiError {
    ApiError::BadRequest {
        message: format!("the part `{name}` appears twice"),
        details: vec![FieldError::new(name, "appears twice")],
    }
}

/// The `batch`/`job` part: a JSON object without rows; errors name fields under the part.
fn header_part<S: CsvShape>(name: &str, bytes: &[u8]) -> Result<Map<String, Value>, ApiError> {
    let header: Map<String, Value> = crate::extract::parse_json(bytes).map_err(|e| match e {
        ApiError::BadRequest { message, details } => ApiError::BadRequest {
            message: format!("the `{name}` part: {message}"),
            details: details
                .into_iter()
                .map(|d| FieldError::new(format!("{name}.{}", d.field), d.message))
                .collect(),
        },
        other => other,
    })?;
    if header.contains_key(S::KEY) {
        return Err(ApiError::field(
            format!("{name}.{}", S::KEY),
            "the rows come in the `file` part of an upload",
        ));
    }
    Ok(header)
}

/// Creates a batch from a CSV upload, streamed like a JSON body.
pub async fn receive_csv<S: CsvShape + Send + 'static>(
    req: Create,
    mut multipart: Multipart,
    check: CheckHeader,
) -> Result<Submitted, ApiError> {
    // The create request's span goes with the task: the batch stores its trace context.
    let span = tracing::info_span!("create_batch", workspace_id = %req.ws.id);
    let task = tokio::spawn(tracing::Instrument::instrument(
        async move {
            let mut intake = Intake::start(&req).await?;
            let (bytes_tx, bytes_rx) = mpsc::channel(BODY_FRAMES);
            let (chunk_tx, chunk_rx) = mpsc::channel(CHUNKS_AHEAD);
            let (batch_id, ws_id) = (intake.batch_id, req.ws.id);
            let parser = tokio::task::spawn_blocking(move || {
                let _buffer = Held::new((), READ_BUF);
                let mut violations = Violations::default();
                let mut packer = Packer::new(batch_id, ws_id, move |c| {
                    chunk_tx.blocking_send(c).map_err(|_| Stopped)
                });
                let reader = std::io::BufReader::with_capacity(
                    READ_BUF,
                    stream::ChannelReader::new(bytes_rx),
                );
                let rows = parse_csv::<S>(reader, &mut packer, &mut violations);
                (rows, violations)
            });
            let hint = intake.region_hint.clone();
            let (pumped, published) = tokio::join!(
                pump_parts::<S>(&mut multipart, bytes_tx, &req, &hint),
                intake.publish(chunk_rx)
            );
            let outcome = async {
                let (rows, violations) = parser
                    .await
                    .map_err(|e| ApiError::Internal(anyhow::anyhow!("the parser failed: {e}")))?;
                let parts = pumped?;
                if !parts.saw_file {
                    return Err(ApiError::field("file", "is required: the CSV to upload"));
                }
                if let Err(ParseError::Api(e)) = rows {
                    return Err(e);
                }
                let header = parts.header.ok_or_else(|| {
                    ApiError::field(
                        S::HEADER_PART,
                        "is required: the JSON settings of the upload",
                    )
                })?;
                let parsed = stream::first_error(
                    Ok(()),
                    rows.map(|rows| Parsed { header, rows }),
                    published,
                )?;
                intake
                    .finish(
                        parsed.header,
                        parsed.rows,
                        violations,
                        parts.fingerprint.finish(),
                        check,
                    )
                    .await
            }
            .await;
            intake.settle(outcome).await
        },
        span,
    ));
    task.await
        .map_err(|e| ApiError::Internal(anyhow::anyhow!("the create task failed: {e}")))?
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::queue::messages::IngestChunkV1;
    use uuid::Uuid;

    fn parse<S: CsvShape>(csv: &[u8]) -> (Result<u32, ParseError>, Vec<IngestChunkV1>, Violations) {
        let mut chunks = Vec::new();
        let mut v = Violations::default();
        let rows = {
            let mut packer = Packer::new(Uuid::nil(), Uuid::nil(), |c| {
                chunks.push(serde_json::from_slice(c.body.get()).unwrap());
                Ok(())
            });
            parse_csv::<S>(csv, &mut packer, &mut v)
        };
        (rows, chunks, v)
    }

    fn err_text(r: Result<u32, ParseError>) -> String {
        match r {
            Err(ParseError::Api(e)) => format!("{e:?}"),
            other => panic!("expected an error, got {:?}", other.ok()),
        }
    }

    #[test]
    fn bom_quotes_newlines_and_extra_columns() {
        let csv = "\u{feff}phone,name,email,plan,\"note, quoted\"\n\
                   +12015550100,\"Lovelace, Ada\",ada@example.com,gold,\"two\nlines\"\n\
                   +12015550101,Grace,,silver,\"say \"\"hi\"\"\"\n";
        let (rows, chunks, v) = parse::<DialgenContact>(csv.as_bytes());
        assert_eq!(rows.ok(), Some(2));
        assert!(v.is_empty());
        let r = &chunks[0].rows;
        assert_eq!(r[0].phone_number, "+12015550100");
        assert_eq!(r[0].name.as_deref(), Some("Lovelace, Ada"));
        assert_eq!(r[0].email.as_deref(), Some("ada@example.com"));
        assert_eq!(r[0].inputs["plan"], "gold");
        assert_eq!(r[0].inputs["note, quoted"], "two\nlines");
        assert_eq!(r[1].inputs["note, quoted"], "say \"hi\"");
        assert_eq!(r[1].email, None);
    }

    #[test]
    fn vogent_columns_become_inputs() {
        let csv = b"toNumber,timezone,firstName\n+12015550100,America/Chicago,Ada\n";
        let (rows, chunks, v) = parse::<VogentRow>(csv);
        assert_eq!(rows.ok(), Some(1));
        assert!(v.is_empty());
        let r = &chunks[0].rows[0];
        assert_eq!(r.timezone.as_deref(), Some("America/Chicago"));
        assert_eq!(r.inputs, serde_json::json!({"firstName": "Ada"}));
    }

    #[test]
    fn header_problems_name_the_file() {
        let e = err_text(parse::<DialgenContact>(b"name,email\nAda,a@b.co\n").0);
        assert!(e.contains("no phone number column"), "{e}");
        let e = err_text(parse::<DialgenContact>(b"").0);
        assert!(e.contains("is empty"), "{e}");
        let e = err_text(parse::<DialgenContact>(b"phone,Name,name\n1,2,3\n").0);
        assert!(e.contains("appears twice"), "{e}");
        let e = err_text(parse::<DialgenContact>(b"phone,,x\n1,2,3\n").0);
        assert!(e.contains("no name"), "{e}");
        let e = err_text(parse::<DialgenContact>(b"phone,toNumber\n1,2\n").0);
        assert!(e.contains("more than one phone number column"), "{e}");
        let e = err_text(parse::<DialgenContact>(b"phone,n\xff\n1,2\n").0);
        assert!(e.contains("not valid UTF-8"), "{e}");
        let e = err_text(parse::<DialgenContact>(b"phone,n\n1,\xff\n").0);
        assert!(e.contains("file[row 1]") && e.contains("UTF-8"), "{e}");
    }

    #[test]
    fn rows_are_counted_as_the_user_counts_them() {
        let (rows, _, v) =
            parse::<DialgenContact>(b"phone,email\n+12015550100,ok@x.co\n+12015550101,nope\n");
        assert_eq!(rows.ok(), Some(2));
        let e = format!("{:?}", v.into_result(()));
        assert!(e.contains("file[row 2].email"), "{e}");
        let (_, _, v) = parse::<DialgenContact>(b"phone,a\n+12015550100\n");
        assert!(format!("{:?}", v.into_result(())).contains("file[row 1]"));
        let (rows, _, v) = parse::<DialgenContact>(b"phone\n");
        assert_eq!(rows.ok(), Some(0));
        assert!(format!("{:?}", v.into_result(())).contains("1 to 100000"));
    }

    #[test]
    fn past_the_ceiling_is_a_413() {
        let mut csv = String::from("phone\n");
        for i in 0..=MAX_ROWS {
            csv.push_str(&format!("+1201{:07}\n", i));
        }
        let (rows, chunks, _) = parse::<DialgenContact>(csv.as_bytes());
        assert!(err_text(rows).contains("TooLarge"));
        assert_eq!(
            chunks.len(),
            (MAX_ROWS as usize) / super::super::body::CHUNK_ROWS
        );
    }
}

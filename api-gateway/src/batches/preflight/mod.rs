//! The preflight (issue #25): the verdict for every row of a create body before anything is
//! created. `POST /api/v1/batch/preflight` and `POST /api/batch_dial_jobs/preflight` take the
//! create route's body (JSON or the CSV upload), create nothing, queue nothing, call nothing and
//! leave the `Idempotency-Key` unused, and answer 200 with what the batch would do.
//!
//! Two passes over a spooled body, so that the answer streams with bounded memory:
//!
//! 1. the body is read as the create route reads it (the same parser, validation and 400/413/
//!    422 answers) while its bytes are written to an anonymous temporary file; the settings
//!    (which may follow the rows) are checked at its end, with the agent and caller IDs, as on
//!    create. A body that create would refuse is refused the same way, before any 200;
//! 2. the spooled body is parsed again, in the chunks of 2,000 rows the ingest workers would
//!    get, and each chunk's verdicts (`verdict`) are written out at once: `data` first, the
//!    totals (`report`) when the last row is counted.
//!
//! What the request holds is a parser's buffers, one chunk in verdicts and output, and the set
//! of numbers stored so far (for duplicates across chunks: ≤ 100,000 numbers, ≈ 2 MB); the
//! body itself is on disk. A failure during the second pass (the database going away) ends the
//! response early: the client sees a truncated body, never a wrong total.

pub mod lookup;
pub mod report;
pub mod verdict;

use std::collections::HashMap;
use std::io::{Read, Seek, Write};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::Multipart;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use tokio::sync::mpsc;
use uuid::Uuid;

use shared::queue::messages::IngestChunkV1;
use shared::rows::normalize::Region;
use shared::schedule::Window;

use super::body::{self, CHUNK_ROWS, Chunk, Packer, ParseError, Parsed, RowShape, Stopped};
use super::csv::{self as upload, CsvShape};
use super::held::Held;
use super::settings::NewBatch;
use super::stream::{self, BODY_FRAMES, ChannelReader, CheckHeader, READ_BUF};
use super::submit;
use crate::error::ApiError;
use crate::validate::Violations;
use report::{Pace, Report};
use verdict::{Judge, Policy};

/// The preflight's query: `?rows=all` lists every row; `?at=` asks about another start.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PreflightQuery {
    /// `all`: list every row in `data`, callable ones too. Default: only the rows not callable
    /// at the start (rejected and held).
    #[serde(default)]
    pub rows: Option<String>,
    /// The instant to evaluate at (RFC 3339) instead of now: "what if it starts then". The
    /// batch's own `scheduledStartTime` and schedule still apply after it.
    #[serde(default)]
    pub at: Option<DateTime<Utc>>,
}

impl PreflightQuery {
    /// Whether every row is listed (422 naming `rows` for another value).
    pub fn all(&self) -> Result<bool, ApiError> {
        match self.rows.as_deref() {
            None | Some("not_callable") => Ok(false),
            Some("all") => Ok(true),
            Some(other) => Err(ApiError::Validation(vec![crate::error::FieldError::new(
                "rows",
                format!("{other:?} must be \"all\" or \"not_callable\""),
            )])),
        }
    }
}

/// One preflight request.
pub struct Preflight {
    /// Who asks, about which surface (the key is never used).
    pub req: stream::Request,
    /// The create route's settings check.
    pub check: CheckHeader,
    /// The query.
    pub query: PreflightQuery,
}

/// What the first pass found.
struct FirstPass {
    header: serde_json::Map<String, serde_json::Value>,
    rows: u32,
    violations: Violations,
    hint: Option<String>,
}

/// Bytes read through it are also written to the spool.
struct Tee<R> {
    inner: R,
    spool: std::fs::File,
}

impl<R: Read> Read for Tee<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.spool.write_all(&buf[..n])?;
        Ok(n)
    }
}

fn spool() -> Result<(std::fs::File, std::fs::File), ApiError> {
    let file = tempfile::tempfile()
        .map_err(|e| ApiError::Internal(anyhow::anyhow!("a spool file for the preflight: {e}")))?;
    let writer = file
        .try_clone()
        .map_err(|e| ApiError::Internal(anyhow::anyhow!("a spool file for the preflight: {e}")))?;
    Ok((file, writer))
}

fn parser_failed(e: tokio::task::JoinError) -> ApiError {
    ApiError::Internal(anyhow::anyhow!("the preflight's parser failed: {e}"))
}

/// The preflight of a JSON body.
pub async fn json<R: RowShape + Send + 'static>(
    p: Preflight,
    body: Body,
) -> Result<Response, ApiError> {
    let all = p.query.all()?;
    let (file, writer) = spool()?;
    let (bytes_tx, bytes_rx) = mpsc::channel(BODY_FRAMES);
    let ws_id = p.req.ws.id;
    let parser = tokio::task::spawn_blocking(move || {
        let _buffer = Held::new((), READ_BUF);
        let mut violations = Violations::default();
        let mut hint = None;
        let mut packer = Packer::new(Uuid::nil(), ws_id, |_| Ok(()));
        let reader = std::io::BufReader::with_capacity(
            READ_BUF,
            Tee {
                inner: ChannelReader::new(bytes_rx),
                spool: writer,
            },
        );
        let parsed =
            body::parse_reader::<R>(reader, &mut packer, &mut violations, &mut |h| hint = h);
        (parsed, violations, hint)
    });
    let pumped = stream::pump(body, bytes_tx, p.req.state.config.max_body_bytes, None).await;
    let (parsed, violations, hint) = parser.await.map_err(parser_failed)?;
    pumped?;
    let Parsed { header, rows } = match parsed {
        Ok(parsed) => parsed,
        Err(ParseError::Api(e)) => return Err(e),
        Err(ParseError::Stopped) => {
            return Err(ApiError::Internal(anyhow::anyhow!(
                "the preflight's parser stopped"
            )));
        }
    };
    let first = FirstPass {
        header,
        rows,
        violations,
        hint,
    };
    answer(p, first, file, all, |reader, packer, v| {
        body::parse_reader::<R>(reader, packer, v, &mut |_| {}).map(|_| ())
    })
    .await
}

/// The preflight of a CSV upload.
pub async fn csv<S: CsvShape + Send + 'static>(
    p: Preflight,
    mut multipart: Multipart,
) -> Result<Response, ApiError> {
    let all = p.query.all()?;
    let (file, writer) = spool()?;
    let (bytes_tx, bytes_rx) = mpsc::channel(BODY_FRAMES);
    let ws_id = p.req.ws.id;
    let parser = tokio::task::spawn_blocking(move || {
        let _buffer = Held::new((), READ_BUF);
        let mut violations = Violations::default();
        let mut packer = Packer::new(Uuid::nil(), ws_id, |_| Ok(()));
        let reader = std::io::BufReader::with_capacity(
            READ_BUF,
            Tee {
                inner: ChannelReader::new(bytes_rx),
                spool: writer,
            },
        );
        let rows = upload::parse_csv::<S>(reader, &mut packer, &mut violations);
        (rows, violations)
    });
    let hint = std::sync::Mutex::new(None);
    let pumped = upload::pump_parts::<S>(&mut multipart, bytes_tx, &p.req, &hint).await;
    let (rows, violations) = parser.await.map_err(parser_failed)?;
    let parts = pumped?;
    if !parts.saw_file {
        return Err(ApiError::field("file", "is required: the CSV to upload"));
    }
    let rows = match rows {
        Ok(rows) => rows,
        Err(ParseError::Api(e)) => return Err(e),
        Err(ParseError::Stopped) => {
            return Err(ApiError::Internal(anyhow::anyhow!(
                "the preflight's parser stopped"
            )));
        }
    };
    let header = parts.header.ok_or_else(|| {
        ApiError::field(
            S::HEADER_PART,
            "is required: the JSON settings of the upload",
        )
    })?;
    let first = FirstPass {
        header,
        rows,
        violations,
        hint: hint.into_inner().unwrap_or_else(|e| e.into_inner()),
    };
    answer(p, first, file, all, |reader, packer, v| {
        upload::parse_csv::<S>(reader, packer, v).map(|_| ())
    })
    .await
}

/// Checks the settings as create does (422 before any 200), then streams the second pass.
async fn answer<F>(
    p: Preflight,
    first: FirstPass,
    mut file: std::fs::File,
    all: bool,
    reparse: F,
) -> Result<Response, ApiError>
where
    F: FnOnce(&mut dyn Read, &mut Packer<'_>, &mut Violations) -> Result<(), ParseError>
        + Send
        + 'static,
{
    let FirstPass {
        header,
        rows,
        mut violations,
        hint,
    } = first;
    let state = p.req.state.clone();
    let mut new = (p.check)(header, &p.req.ws, &mut violations)?;
    let client = state.db.get().await?;
    submit::check_references(&**client, &p.req.ws, &mut new, &mut violations).await?;
    if rows as usize > CHUNK_ROWS {
        // Create reads the rows in the region known when they started (see `stream::Intake`).
        let used = hint
            .filter(|r| r.len() == 2 && r.bytes().all(|b| b.is_ascii_uppercase()))
            .unwrap_or_else(|| p.req.ws.default_region.clone());
        if used != new.default_region {
            violations.add(
                p.req.region_field,
                format!(
                    "must come before `{}` in the body: the rows are read as they arrive, and were \
                     read in {used}",
                    p.req.rows_key
                ),
            );
        }
    }
    violations.into_result(())?;
    let policy = lookup::policy(&**client, p.req.ws.id).await?;
    drop(client);
    file.rewind()
        .map_err(|e| ApiError::Internal(anyhow::anyhow!("rewinding the preflight's spool: {e}")))?;
    let now = state.config.service.clock.now();
    let job = Window::new(new.schedule.clone(), new.scheduled_start_time);
    let from = p.query.at.unwrap_or(now);
    let at = if job.is_open(from) {
        from
    } else {
        job.next_open(from).unwrap_or(from)
    };
    let pace = pace(&new, &p.req.ws);
    let second = SecondPass {
        state,
        ws: p.req.ws.id,
        region: Region::parse(&new.default_region),
        policy,
        job,
        at,
        pace,
        all,
    };
    let (tx, rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(2);
    tokio::task::spawn_blocking(move || second.run(file, reparse, tx));
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    Ok((
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        Body::from_stream(stream),
    )
        .into_response())
}

/// The batch's pace: its lines within the workspace's, its rate (else the workspace's ceiling).
fn pace(new: &NewBatch, ws: &crate::auth::Workspace) -> Pace {
    Pace {
        lines: new.max_concurrent_dials.min(ws.max_concurrent_dials),
        calls_per_second: new.max_calls_per_second.unwrap_or(ws.cps_ceiling),
    }
}

/// Everything the second pass needs.
struct SecondPass {
    state: crate::state::AppState,
    ws: Uuid,
    region: Region,
    policy: Policy,
    job: Window,
    at: DateTime<Utc>,
    pace: Pace,
    all: bool,
}

type Out = mpsc::Sender<Result<Bytes, std::io::Error>>;

impl SecondPass {
    /// Parses the spooled body again (a blocking thread) and writes the answer into `tx`.
    fn run<F>(self, file: std::fs::File, reparse: F, tx: Out)
    where
        F: FnOnce(&mut dyn Read, &mut Packer<'_>, &mut Violations) -> Result<(), ParseError>,
    {
        // The pack loaded at start (`COMPLIANCE_RULES_FILE`), as the release loads it.
        let rules = crate::jurisdiction::pack();
        let mut report = Report::new(self.all);
        if tx.blocking_send(Ok(Bytes::from(report.open()))).is_err() {
            return;
        }
        // Two stages, so that parsing overlaps judging: this thread parses and packs, the
        // judge's thread decides each chunk (two chunks wait between them at most).
        let (chunks_tx, chunks_rx) = std::sync::mpsc::sync_channel::<Chunk>(2);
        // The runtime of this blocking thread, for the judge's thread's queries.
        let handle = tokio::runtime::Handle::current();
        let (parsed, failure) = std::thread::scope(|scope| {
            let judging = scope.spawn(|| self.judge_all(&handle, chunks_rx, &mut report, &tx));
            let parsed = {
                let mut packer = Packer::new(Uuid::nil(), self.ws, |chunk| {
                    chunks_tx.send(chunk).map_err(|_| Stopped)
                });
                let mut reader = std::io::BufReader::with_capacity(READ_BUF, file);
                reparse(&mut reader, &mut packer, &mut Violations::default())
            };
            drop(chunks_tx);
            let failure = judging
                .join()
                .unwrap_or_else(|_| Some("the preflight's judge panicked".to_owned()));
            (parsed, failure)
        });
        let end = match (parsed, failure) {
            (Ok(()), None) => Ok(Bytes::from(report.close(
                self.at,
                &self.job,
                self.pace,
                rules.version(),
            ))),
            (_, Some(e)) => Err(e),
            (Err(ParseError::Stopped), None) => return,
            (Err(ParseError::Api(e)), None) => Err(e.to_string()),
        };
        if let Err(e) = &end {
            tracing::error!(error = %e, "the preflight stopped before its end");
        }
        let _ = tx.blocking_send(end.map_err(std::io::Error::other));
    }

    /// Decides every chunk `rx` yields and writes its entries; the first failure, if any (the
    /// client going away is none: nobody is left to tell). Each chunk's lookup runs on the
    /// runtime while the next chunk is read (the numbers' reading is most of the work, the
    /// statement mostly waiting), so the two overlap; one chunk waits for its lookup at most.
    fn judge_all(
        &self,
        handle: &tokio::runtime::Handle,
        rx: std::sync::mpsc::Receiver<Chunk>,
        report: &mut Report,
        tx: &Out,
    ) -> Option<String> {
        let rules = crate::jurisdiction::pack();
        let check = self.state.config.number_check;
        let lookback = lookup::cap_lookback(rules);
        let mut judge = Judge::new(rules, self.policy, self.job.clone(), self.at);
        let mut spans = Spans::default();
        let mut pending: Option<Pending> = None;
        for chunk in rx {
            let started = Instant::now();
            let screened = match self.screen(&chunk.body, check) {
                Ok(screened) => screened,
                Err(e) => return Some(e),
            };
            spans.screen += started.elapsed();
            let lookup = handle.spawn(self.lookup(&screened, lookback));
            if let Some(earlier) = pending.replace(Pending { screened, lookup })
                && let Err(stop) = self.finish(handle, earlier, &mut judge, report, tx, &mut spans)
            {
                return stop;
            }
        }
        if let Some(last) = pending
            && let Err(stop) = self.finish(handle, last, &mut judge, report, tx, &mut spans)
        {
            return stop;
        }
        tracing::debug!(
            screen_ms = spans.screen.as_millis() as u64,
            lookup_wait_ms = spans.wait.as_millis() as u64,
            judge_ms = spans.judge.as_millis() as u64,
            "the preflight's second pass"
        );
        None
    }

    /// One chunk's rows, decoded and checked as the ingest worker checks them.
    fn screen(
        &self,
        body: &Held<Vec<u8>>,
        check: shared::rows::normalize::NumberCheck,
    ) -> Result<Vec<verdict::Screened>, String> {
        let decoded: IngestChunkV1 =
            serde_json::from_slice(body.get()).map_err(|e| format!("decoding a chunk: {e}"))?;
        Ok(verdict::screen(
            decoded.first_row,
            decoded.rows,
            self.region,
            check,
        ))
    }

    /// What the database knows about the numbers read in `screened` (one statement), as a
    /// task of its own.
    fn lookup(
        &self,
        screened: &[verdict::Screened],
        lookback: chrono::Duration,
    ) -> impl std::future::Future<Output = Result<HashMap<String, verdict::Known>, String>>
    + Send
    + 'static {
        let numbers: Vec<String> = screened
            .iter()
            .filter_map(|s| s.result.as_ref().ok().map(|c| c.number.as_str().to_owned()))
            .collect();
        let (db, ws, at, cap) = (self.state.db.clone(), self.ws, self.at, self.policy.cap);
        async move {
            let numbers: Vec<&str> = numbers.iter().map(String::as_str).collect();
            let client = db.get().await.map_err(|e| e.to_string())?;
            lookup::known(&**client, ws, &numbers, at, cap, lookback)
                .await
                .map_err(|e| e.to_string())
        }
    }

    /// Waits for a chunk's lookup, then judges it and writes its entries. `Err(None)`: the
    /// client went away.
    fn finish(
        &self,
        handle: &tokio::runtime::Handle,
        chunk: Pending,
        judge: &mut Judge,
        report: &mut Report,
        tx: &Out,
        spans: &mut Spans,
    ) -> Result<(), Option<String>> {
        let started = Instant::now();
        let known = handle
            .block_on(chunk.lookup)
            .map_err(|e| Some(format!("the preflight's lookup failed: {e}")))?
            .map_err(Some)?;
        let judged = Instant::now();
        spans.wait += judged - started;
        let verdicts = judge.judge(chunk.screened, &known);
        let entries = Bytes::from(report.add(&verdicts));
        spans.judge += judged.elapsed();
        tx.blocking_send(Ok(entries)).map_err(|_| None)
    }
}

/// A chunk read, its lookup under way.
struct Pending {
    screened: Vec<verdict::Screened>,
    lookup: tokio::task::JoinHandle<Result<HashMap<String, verdict::Known>, String>>,
}

/// Where the second pass's judging thread spends its time (logged at its end, `debug`).
#[derive(Default)]
struct Spans {
    screen: Duration,
    wait: Duration,
    judge: Duration,
}

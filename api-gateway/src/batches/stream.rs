//! Streaming a create request into the ingest queue: the body is parsed as it arrives and each
//! chunk is published as soon as it is full, so a request holds a few chunks whatever its size.
//!
//! Three parties run at once, joined by bounded channels (each full channel makes the one before
//! it wait, back to the client's TCP window):
//!
//! 1. the *pump* (async) reads the body (or the multipart parts), enforces the size limit (and
//!    for an upload computes the `Idempotency-Key` fingerprint), and hands body frames on;
//! 2. the *parser* (a blocking thread) reads those frames as a `std::io::Read` — serde_json's
//!    streaming deserializer, or the `csv` reader — validates rows and packs them into chunks
//!    (a JSON body's fingerprint is taken over the rows as parsed);
//! 3. the *publisher* (async) inserts the batch row, hidden (`ingest_state = 'receiving'`),
//!    before the first chunk, then publishes each chunk with a few confirms in flight.
//!
//! When the body ends, the settings (which may come after the rows) are checked. A body that is
//! valid gets its settings written onto the row, which becomes visible and `ingesting` only after
//! every chunk is confirmed (invariant 1); one that is not is answered as before
//! (400/413/422) and its row is aborted: its stored contacts are deleted and the ingest workers
//! drop its remaining chunks. Nothing of it can be released meanwhile: the hidden row is
//! `created`, and ingestion cannot finish while `receiving`.

use std::io::Read;
use std::sync::{Arc, Mutex};

use axum::body::{Body, Bytes};
use futures_util::StreamExt;
use serde_json::{Map, Value};
use tokio::sync::mpsc;
use uuid::Uuid;

use shared::domain::Surface;
use shared::queue::Stream;
use shared::queue::publisher::{ConfirmWindow, Outgoing};

use super::body::{self, Chunk, Packer, ParseError, Parsed, RowShape, Stopped};
use super::held::{self, Held};
use super::settings::NewBatch;
use super::submit::{self, Fingerprint, KeyState, Submitted};
use crate::auth::Workspace;
use crate::error::ApiError;
use crate::state::AppState;
use crate::validate::Violations;

/// Body frames waiting for the parser.
pub const BODY_FRAMES: usize = 4;
/// Full chunks waiting for the publisher.
pub const CHUNKS_AHEAD: usize = 2;
/// Chunks published and not yet confirmed, per request.
pub const IN_FLIGHT: usize = 4;
/// The parser's read buffer.
pub(super) const READ_BUF: usize = 64 * 1024;

/// Checks the settings half of a body once it has been read whole.
pub type CheckHeader = Box<
    dyn FnOnce(Map<String, Value>, &Workspace, &mut Violations) -> Result<NewBatch, ApiError>
        + Send,
>;

/// Who is creating what.
#[derive(Clone)]
pub struct Request {
    /// The gateway.
    pub state: AppState,
    /// The caller's workspace.
    pub ws: Workspace,
    /// The API surface.
    pub surface: Surface,
    /// The `Idempotency-Key`, if sent.
    pub key: Option<String>,
    /// Where a late `defaultRegion` is reported (`defaultRegion`, `options.defaultRegion`).
    pub region_field: &'static str,
    /// The body's key of the rows (`rows`, `contacts`).
    pub rows_key: &'static str,
}

/// Creates a batch from a JSON body read as it arrives.
pub async fn receive_json<R: RowShape + Send + 'static>(
    req: Request,
    body: Body,
    check: CheckHeader,
) -> Result<Submitted, ApiError> {
    // Its own task: a client that goes away mid-body must still leave its batch aborted.
    // The create request's span goes with the task: the batch stores its trace context.
    let span = tracing::info_span!("create_batch", workspace_id = %req.ws.id);
    let task = tokio::spawn(tracing::Instrument::instrument(
        async move {
            let mut intake = Intake::start(&req).await?;
            let (bytes_tx, bytes_rx) = mpsc::channel(BODY_FRAMES);
            let (chunk_tx, chunk_rx) = mpsc::channel(CHUNKS_AHEAD);
            let hint = intake.region_hint.clone();
            let (batch_id, ws_id, surface) = (intake.batch_id, req.ws.id, req.surface);
            let parser = tokio::task::spawn_blocking(move || {
                let _buffer = Held::new((), READ_BUF);
                let mut violations = Violations::default();
                let mut packer = Packer::new(batch_id, ws_id, move |c| {
                    chunk_tx.blocking_send(c).map_err(|_| Stopped)
                })
                .fingerprinted(Fingerprint::json(surface));
                let reader =
                    std::io::BufReader::with_capacity(READ_BUF, ChannelReader::new(bytes_rx));
                let parsed =
                    body::parse_reader::<R>(reader, &mut packer, &mut violations, &mut |h| {
                        *hint.lock().unwrap_or_else(|e| e.into_inner()) = h;
                    });
                // The request as parsed, not its bytes: the rows as encoded, then the settings
                // (a map sorted by key), so the same JSON re-serialised is the same request.
                let mut fingerprint = packer
                    .take_fingerprint()
                    .unwrap_or_else(|| Fingerprint::json(surface));
                if let Ok(p) = &parsed {
                    fingerprint.update(b"\0settings\0");
                    fingerprint.update(&serde_json::to_vec(&p.header).unwrap_or_default());
                }
                (parsed, violations, fingerprint)
            });
            let limit = req.state.config.max_body_bytes;
            let (pumped, published) =
                tokio::join!(pump(body, bytes_tx, limit, None), intake.publish(chunk_rx));
            let outcome = async {
                let (parsed, violations, fingerprint) = parser
                    .await
                    .map_err(|e| ApiError::Internal(anyhow::anyhow!("the parser failed: {e}")))?;
                let Parsed { header, rows } = first_error(pumped, parsed, published)?;
                intake
                    .finish(header, rows, violations, fingerprint.finish(), check)
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

/// Which error answers a request whose three parties each may have failed: the body's own
/// reading (size, connection) first, then its content, then the publisher's.
pub fn first_error(
    pumped: Result<(), ApiError>,
    parsed: Result<Parsed, ParseError>,
    published: Result<(), ApiError>,
) -> Result<Parsed, ApiError> {
    pumped?;
    match parsed {
        Ok(p) => published.map(|()| p),
        Err(ParseError::Api(e)) => Err(e),
        Err(ParseError::Stopped) => Err(published.err().unwrap_or_else(|| {
            ApiError::Internal(anyhow::anyhow!("the publisher stopped without an error"))
        })),
    }
}

/// Reads `body` into `tx` frame by frame: the size limit (413) and the fingerprint (if one is
/// kept) as it arrives. Stops quietly if the parser stopped reading (its own answer stands).
pub(super) async fn pump(
    body: Body,
    tx: mpsc::Sender<Held<Bytes>>,
    limit: usize,
    mut fingerprint: Option<&mut Fingerprint>,
) -> Result<(), ApiError> {
    let mut stream = body.into_data_stream();
    let mut total = 0usize;
    while let Some(frame) = stream.next().await {
        let frame = frame.map_err(|e| ApiError::BadRequest {
            message: format!("the request body could not be read: {e}"),
            details: vec![],
        })?;
        total += frame.len();
        if total > limit {
            return Err(too_large(limit));
        }
        if let Some(fingerprint) = fingerprint.as_deref_mut() {
            fingerprint.update(&frame);
        }
        let n = frame.len();
        if tx.send(Held::new(frame, n)).await.is_err() {
            return Ok(());
        }
    }
    Ok(())
}

/// The 413 for a body past `MAX_BODY_BYTES`.
pub fn too_large(limit: usize) -> ApiError {
    ApiError::TooLarge(format!(
        "the request body is larger than the limit of {limit} bytes (MAX_BODY_BYTES)"
    ))
}

/// Body frames as a blocking `Read`, for a parser on a blocking thread.
pub struct ChannelReader {
    rx: mpsc::Receiver<Held<Bytes>>,
    current: Option<Held<Bytes>>,
    pos: usize,
}

impl ChannelReader {
    /// Reads what arrives on `rx` until its sender is dropped.
    pub fn new(rx: mpsc::Receiver<Held<Bytes>>) -> Self {
        Self {
            rx,
            current: None,
            pos: 0,
        }
    }
}

impl Read for ChannelReader {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        loop {
            if let Some(frame) = &self.current {
                let rest = &frame.get()[self.pos..];
                if !rest.is_empty() {
                    let n = rest.len().min(out.len());
                    out[..n].copy_from_slice(&rest[..n]);
                    self.pos += n;
                    return Ok(n);
                }
            }
            // Dropping the spent frame releases its bytes.
            self.current = None;
            match self.rx.blocking_recv() {
                Some(frame) => {
                    self.current = Some(frame);
                    self.pos = 0;
                }
                None => return Ok(0),
            }
        }
    }
}

/// One create request's batch row and chunks: the publisher side of the stream, and the end.
pub struct Intake {
    req: Request,
    /// The batch being created.
    pub batch_id: Uuid,
    /// The body's `defaultRegion` as known when the rows started (set by the parser or by the
    /// multipart reader); the hidden row is inserted with it.
    pub region_hint: Arc<Mutex<Option<String>>>,
    /// The region the rows are read in, once the hidden row exists.
    region: Option<String>,
    /// The key was in use when this request came (or was taken meanwhile): the rows are only
    /// parsed, and the request is answered from the earlier batch.
    replaying: bool,
    /// Chunks published.
    published: u32,
    /// Published, confirm outstanding.
    in_flight: ConfirmWindow<Held<()>>,
    /// The latest chunk, published once the next one comes or the body is known valid.
    held_back: Option<Chunk>,
}

impl Intake {
    /// Looks the idempotency key up before anything is published.
    pub async fn start(req: &Request) -> Result<Self, ApiError> {
        let replaying = match &req.key {
            Some(key) => {
                let client = req.state.db.get().await?;
                !matches!(
                    submit::key_state(&**client, req.ws.id, key).await?,
                    KeyState::Free
                )
            }
            None => false,
        };
        Ok(Self {
            req: req.clone(),
            batch_id: Uuid::now_v7(),
            region_hint: Arc::new(Mutex::new(None)),
            region: None,
            replaying,
            published: 0,
            in_flight: ConfirmWindow::new(IN_FLIGHT),
            held_back: None,
        })
    }

    /// Publishes every chunk `rx` yields but the last, which waits for the end of the body (so
    /// a body of one chunk that proves invalid publishes nothing), with up to [`IN_FLIGHT`]
    /// confirms outstanding. The first publish inserts the hidden row. An error stops it, which
    /// stops the parser.
    pub async fn publish(&mut self, mut rx: mpsc::Receiver<Chunk>) -> Result<(), ApiError> {
        while let Some(chunk) = rx.recv().await {
            if self.replaying {
                continue;
            }
            if let Some(previous) = self.held_back.replace(chunk) {
                self.send(previous).await?;
            }
        }
        Ok(())
    }

    /// Publishes one chunk, inserting the hidden row first if this is the first.
    async fn send(&mut self, chunk: Chunk) -> Result<(), ApiError> {
        if self.region.is_none() {
            let hint = self
                .region_hint
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .take();
            let region = hint
                .filter(|r| r.len() == 2 && r.bytes().all(|b| b.is_ascii_uppercase()))
                .unwrap_or_else(|| self.req.ws.default_region.clone());
            self.insert(region).await?;
            if self.replaying {
                return Ok(());
            }
        }
        let (body, token) = chunk.body.split();
        let message = Outgoing {
            body,
            message_id: Some(format!("{}:{}", self.batch_id, chunk.seq)),
            headers: Vec::new(),
        };
        let pending = self
            .req
            .state
            .publisher
            .start(Stream::Ingest, message)
            .await
            .map_err(unavailable)?;
        self.published += 1;
        self.in_flight
            .push(pending, token)
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    /// Inserts the hidden row; a key taken meanwhile turns this request into a replay.
    async fn insert(&mut self, region: String) -> Result<(), ApiError> {
        let client = self.req.state.db.get().await?;
        let inserted = submit::insert_hidden(
            &**client,
            self.batch_id,
            &self.req.ws,
            self.req.surface,
            &region,
            self.req.key.as_deref(),
        )
        .await?;
        if inserted {
            self.region = Some(region);
        } else {
            // A concurrent request with the same key got there first.
            self.replaying = true;
            self.held_back = None;
        }
        Ok(())
    }

    /// Publishes the held-back chunk and waits for every confirm (invariant 1).
    async fn confirm_all(&mut self) -> Result<(), ApiError> {
        if let Some(last) = self.held_back.take() {
            self.send(last).await?;
        }
        self.in_flight.drain().await.map_err(unavailable)?;
        Ok(())
    }

    /// The body is read and every chunk confirmed: checks the settings and references, then
    /// makes the batch visible (or answers a replay from the earlier batch).
    pub async fn finish(
        &mut self,
        header: Map<String, Value>,
        rows: u32,
        mut violations: Violations,
        fingerprint: Vec<u8>,
        check: CheckHeader,
    ) -> Result<Submitted, ApiError> {
        let mut new = check(header, &self.req.ws, &mut violations)?;
        if self.replaying
            && let Some(key) = &self.req.key
        {
            return submit::replay(&self.req.state, &self.req.ws, key, &fingerprint).await;
        }
        let client = self.req.state.db.get().await?;
        submit::check_references(&**client, &self.req.ws, &mut new, &mut violations).await?;
        if let Some(region) = &self.region
            && *region != new.default_region
        {
            violations.add(
                self.req.region_field,
                format!(
                    "must come before `{}` in the body: the rows are read as they arrive, and were \
                     read in {region}",
                    self.req.rows_key
                ),
            );
        }
        violations.into_result(())?;
        if self.region.is_none() {
            // Nothing published yet (a body of one chunk): its rows are read in its own region.
            self.insert(new.default_region.clone()).await?;
        }
        self.confirm_all().await?;
        if self.replaying
            && let Some(key) = &self.req.key
        {
            return submit::replay(&self.req.state, &self.req.ws, key, &fingerprint).await;
        }
        if self.published == 0 {
            return Err(ApiError::Internal(anyhow::anyhow!(
                "a valid body published no chunk"
            )));
        }
        let fingerprint = self.req.key.as_ref().map(|_| fingerprint);
        match submit::make_visible(
            &**client,
            self.batch_id,
            &new,
            rows,
            self.published,
            fingerprint.as_deref(),
        )
        .await?
        {
            Some(batch) => Ok(Submitted {
                batch,
                created: true,
            }),
            None => Err(ApiError::Unavailable(
                "the upload stalled for longer than the ingest timeout and was discarded; please retry".into(),
            )),
        }
    }

    /// Aborts the hidden batch if the request failed after it was inserted.
    pub async fn settle(
        &self,
        outcome: Result<Submitted, ApiError>,
    ) -> Result<Submitted, ApiError> {
        match &outcome {
            Err(_) if self.region.is_none() => {}
            // Too large: nothing is left of it (no hidden row either).
            Err(ApiError::TooLarge(_)) => submit::discard(&self.req.state, self.batch_id).await,
            Err(e) => submit::abort(&self.req.state, self.batch_id, &e.to_string()).await,
            Ok(_) => {}
        }
        outcome
    }
}

fn unavailable(e: shared::queue::QueueError) -> ApiError {
    tracing::error!(error = %e, "publishing rows failed");
    ApiError::Unavailable(format!(
        "the rows could not be queued for ingestion ({e}); nothing was created, please retry"
    ))
}

/// Bytes the create path holds right now (see [`held`]).
pub fn bytes_held() -> usize {
    held::current()
}

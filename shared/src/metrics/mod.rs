//! Prometheus metrics: one registry per process, served at `/metrics` by every role (the route
//! is part of [`crate::health::router`]).
//!
//! Every instrument dialfleet records is declared here, once: a name constant, an entry in
//! [`ALL`] (kind, help text, label names) and a helper that records it, so call sites never
//! spell a metric name or a label key. Label values are bounded: stream names, statuses,
//! outcome kinds, reasons from fixed lists, and workspace/job ids only on the few limit gauges
//! (whose series expire when a job stops updating them, see [`GAUGE_IDLE_TIMEOUT`]). Never a
//! contact, phone number or attempt id.
//!
//! Histograms whose names end in `_seconds` are rendered as real Prometheus histograms with
//! [`SECONDS_BUCKETS`]. OTLP metrics: the collector scrapes `/metrics` (see
//! `deploy/compose/otel-collector.yaml`) and forwards the same series over OTLP, so there is one
//! set of instruments and no second SDK in each role.
//!
//! - [`http`]: the axum middleware that counts and times HTTP requests by route and status;
//! - [`sampler`]: the periodic reads that feed the gauges no single event can keep (queue depth,
//!   batches by status, webhook retry backlog).

pub mod http;
pub mod sampler;

use std::sync::OnceLock;
use std::time::Duration;

use ::metrics::{counter, gauge, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use metrics_util::MetricKindMask;

use crate::queue::Stream;

/// A metric's kind as Prometheus exposes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Only goes up; the name ends in `_total`.
    Counter,
    /// A value that goes up and down.
    Gauge,
    /// Observations in buckets; exposed as `_bucket`, `_sum` and `_count` series.
    Histogram,
}

/// One declared instrument.
#[derive(Debug, Clone, Copy)]
pub struct Metric {
    /// The exposed name.
    pub name: &'static str,
    /// Its kind.
    pub kind: Kind,
    /// What it measures (the `# HELP` line).
    pub help: &'static str,
    /// The label keys it carries (always all of them).
    pub labels: &'static [&'static str],
}

/// `role`, `version`: always 1; shows which roles (and versions) are scraped.
pub const BUILD_INFO: &str = "dialfleet_build_info";

// Pipeline.
/// `status` (the internal job state: created, active, paused, completed, cancelled, failed):
/// batches in each state, sampled from PostgreSQL.
pub const BATCHES: &str = "dialfleet_batches";
/// `surface` (vogent, dialgen): batches accepted by the gateway.
pub const BATCHES_CREATED_TOTAL: &str = "dialfleet_batches_created_total";
/// Contacts persisted by the ingest workers.
pub const CONTACTS_INGESTED_TOTAL: &str = "dialfleet_contacts_ingested_total";
/// `reason` (see [`RejectReason`]): rows the ingest workers rejected.
pub const CONTACTS_REJECTED_TOTAL: &str = "dialfleet_contacts_rejected_total";
/// Contacts released for dialing by the scheduler.
pub const CONTACTS_RELEASED_TOTAL: &str = "dialfleet_contacts_released_total";

// Queues.
/// `queue`: messages ready in the queue (sampled).
pub const QUEUE_DEPTH: &str = "dialfleet_queue_depth";
/// `queue`: consumers attached to the queue (sampled).
pub const QUEUE_CONSUMERS: &str = "dialfleet_queue_consumers";
/// `queue`: time from publish to the start of handling (consumer lag).
pub const QUEUE_CONSUMER_LAG_SECONDS: &str = "dialfleet_queue_consumer_lag_seconds";
/// `queue`, `disposition` (ack, retry, dead_letter): messages handled.
pub const QUEUE_MESSAGES_HANDLED_TOTAL: &str = "dialfleet_queue_messages_handled_total";
/// `queue`: time a handler took.
pub const QUEUE_HANDLE_SECONDS: &str = "dialfleet_queue_handle_seconds";
/// `queue`: messages published and confirmed by the broker.
pub const QUEUE_MESSAGES_PUBLISHED_TOTAL: &str = "dialfleet_queue_messages_published_total";
/// `queue`: publishes the broker refused or that failed.
pub const QUEUE_PUBLISH_FAILURES_TOTAL: &str = "dialfleet_queue_publish_failures_total";
/// `queue`: time from sending a publish batch to its last confirm.
pub const QUEUE_PUBLISH_CONFIRM_SECONDS: &str = "dialfleet_queue_publish_confirm_seconds";

// Dialing limits.
/// `workspace_id`: calls in flight in the workspace, across its jobs.
pub const WORKSPACE_CALLS_IN_FLIGHT: &str = "dialfleet_workspace_calls_in_flight";
/// `workspace_id`: the workspace's concurrency limit.
pub const WORKSPACE_MAX_CONCURRENT_DIALS: &str = "dialfleet_workspace_max_concurrent_dials";
/// `job_id`: calls in flight for the job.
pub const JOB_CALLS_IN_FLIGHT: &str = "dialfleet_job_calls_in_flight";
/// `job_id`: the job's `maxConcurrentDials`.
pub const JOB_MAX_CONCURRENT_DIALS: &str = "dialfleet_job_max_concurrent_dials";
/// `job_id`: the job's `maxCallsPerSecond`.
pub const JOB_MAX_CALLS_PER_SECOND: &str = "dialfleet_job_max_calls_per_second";
/// Calls placed with the carrier (its rate is call starts per second).
pub const CALL_STARTS_TOTAL: &str = "dialfleet_call_starts_total";
/// `outcome` (completed, busy, no-answer, failed, voicemail, canceled, unknown): final or
/// retryable outcomes recorded.
pub const CALL_OUTCOMES_TOTAL: &str = "dialfleet_call_outcomes_total";
/// `outcome` (busy, no-answer): retries scheduled.
pub const RETRIES_SCHEDULED_TOTAL: &str = "dialfleet_retries_scheduled_total";
/// `limit` (workspace, job, rate): time a dial waited for a slot or a rate token.
pub const SLOT_WAIT_SECONDS: &str = "dialfleet_slot_wait_seconds";
/// `reason` (job, redis, carrier, database, compliance): dials handed back to the scheduler
/// after their attempt was written (taken back, not charged). A storm of them is the sign of a
/// dialer collapsing under a slow service.
pub const DIAL_HANDBACKS_TOTAL: &str = "dialfleet_dial_handbacks_total";
/// The dial path's Redis window: calls a worker lets be in flight to Redis at once (adaptive).
pub const REDIS_WINDOW: &str = "dialfleet_redis_window";
/// Redis calls of the dial path that timed out or answered slower than the window's threshold.
pub const REDIS_CONGESTED_TOTAL: &str = "dialfleet_redis_congested_total";

// Webhooks.
/// Webhook deliveries the receiver accepted (2xx).
pub const WEBHOOK_DELIVERIES_TOTAL: &str = "dialfleet_webhook_deliveries_total";
/// `reason` (see [`WebhookFailure`]): delivery attempts that failed.
pub const WEBHOOK_FAILURES_TOTAL: &str = "dialfleet_webhook_failures_total";
/// Deliveries waiting for a retry (sampled).
pub const WEBHOOK_RETRY_BACKLOG: &str = "dialfleet_webhook_retry_backlog";
/// Time one delivery attempt took.
pub const WEBHOOK_DELIVERY_SECONDS: &str = "dialfleet_webhook_delivery_seconds";

// HTTP.
/// `method`, `route` (the matched route template), `status`: requests served.
pub const HTTP_REQUESTS_TOTAL: &str = "dialfleet_http_requests_total";
/// `method`, `route`, `status`: request latency.
pub const HTTP_REQUEST_DURATION_SECONDS: &str = "dialfleet_http_request_duration_seconds";
/// Requests the gateway let through without counting them, because the rate limiter could not
/// reach Redis (it fails open).
pub const RATE_LIMIT_FAIL_OPEN_TOTAL: &str = "dialfleet_rate_limit_fail_open_total";

// Races.
/// `role`: how far the node's own clock is ahead of the database's (negative when behind), read
/// each time the role takes its instant from the database.
pub const CLOCK_SKEW_SECONDS: &str = "dialfleet_clock_skew_seconds";
/// Carrier status callbacks for attempts that had been taken back, recorded on the contact
/// instead of applied.
pub const LATE_CALLBACKS_TOTAL: &str = "dialfleet_late_callbacks_total";

/// Every instrument, for the documentation and the dashboard test.
pub const ALL: &[Metric] = &[
    m(
        BUILD_INFO,
        Kind::Gauge,
        "Always 1; identifies the role and version.",
        &["role", "version"],
    ),
    m(
        BATCHES,
        Kind::Gauge,
        "Batches by job state (sampled from PostgreSQL).",
        &["status"],
    ),
    m(
        BATCHES_CREATED_TOTAL,
        Kind::Counter,
        "Batches accepted.",
        &["surface"],
    ),
    m(
        CONTACTS_INGESTED_TOTAL,
        Kind::Counter,
        "Contacts persisted.",
        &[],
    ),
    m(
        CONTACTS_REJECTED_TOTAL,
        Kind::Counter,
        "Rows rejected at ingestion.",
        &["reason"],
    ),
    m(
        CONTACTS_RELEASED_TOTAL,
        Kind::Counter,
        "Contacts released for dialing.",
        &[],
    ),
    m(
        QUEUE_DEPTH,
        Kind::Gauge,
        "Messages ready in the queue (sampled).",
        &["queue"],
    ),
    m(
        QUEUE_CONSUMERS,
        Kind::Gauge,
        "Consumers on the queue (sampled).",
        &["queue"],
    ),
    m(
        QUEUE_CONSUMER_LAG_SECONDS,
        Kind::Histogram,
        "Publish to start of handling.",
        &["queue"],
    ),
    m(
        QUEUE_MESSAGES_HANDLED_TOTAL,
        Kind::Counter,
        "Messages handled.",
        &["queue", "disposition"],
    ),
    m(
        QUEUE_HANDLE_SECONDS,
        Kind::Histogram,
        "Handler duration.",
        &["queue"],
    ),
    m(
        QUEUE_MESSAGES_PUBLISHED_TOTAL,
        Kind::Counter,
        "Messages published and confirmed.",
        &["queue"],
    ),
    m(
        QUEUE_PUBLISH_FAILURES_TOTAL,
        Kind::Counter,
        "Publishes refused or failed.",
        &["queue"],
    ),
    m(
        QUEUE_PUBLISH_CONFIRM_SECONDS,
        Kind::Histogram,
        "Publish to broker confirm.",
        &["queue"],
    ),
    m(
        WORKSPACE_CALLS_IN_FLIGHT,
        Kind::Gauge,
        "Calls in flight in the workspace.",
        &["workspace_id"],
    ),
    m(
        WORKSPACE_MAX_CONCURRENT_DIALS,
        Kind::Gauge,
        "The workspace's concurrency limit.",
        &["workspace_id"],
    ),
    m(
        JOB_CALLS_IN_FLIGHT,
        Kind::Gauge,
        "Calls in flight for the job.",
        &["job_id"],
    ),
    m(
        JOB_MAX_CONCURRENT_DIALS,
        Kind::Gauge,
        "The job's maxConcurrentDials.",
        &["job_id"],
    ),
    m(
        JOB_MAX_CALLS_PER_SECOND,
        Kind::Gauge,
        "The job's maxCallsPerSecond.",
        &["job_id"],
    ),
    m(
        CALL_STARTS_TOTAL,
        Kind::Counter,
        "Calls placed with the carrier.",
        &[],
    ),
    m(
        CALL_OUTCOMES_TOTAL,
        Kind::Counter,
        "Call outcomes recorded.",
        &["outcome"],
    ),
    m(
        RETRIES_SCHEDULED_TOTAL,
        Kind::Counter,
        "Retries scheduled.",
        &["outcome"],
    ),
    m(
        DIAL_HANDBACKS_TOTAL,
        Kind::Counter,
        "Dials handed back after their attempt was written.",
        &["reason"],
    ),
    m(
        REDIS_WINDOW,
        Kind::Gauge,
        "Redis calls the dial path lets be in flight at once.",
        &[],
    ),
    m(
        REDIS_CONGESTED_TOTAL,
        Kind::Counter,
        "Dial-path Redis calls that timed out or were slow.",
        &[],
    ),
    m(
        SLOT_WAIT_SECONDS,
        Kind::Histogram,
        "Wait for a concurrency slot or rate token.",
        &["limit"],
    ),
    m(
        WEBHOOK_DELIVERIES_TOTAL,
        Kind::Counter,
        "Webhook deliveries accepted (2xx).",
        &[],
    ),
    m(
        WEBHOOK_FAILURES_TOTAL,
        Kind::Counter,
        "Webhook delivery attempts that failed.",
        &["reason"],
    ),
    m(
        WEBHOOK_RETRY_BACKLOG,
        Kind::Gauge,
        "Deliveries waiting for a retry (sampled).",
        &[],
    ),
    m(
        WEBHOOK_DELIVERY_SECONDS,
        Kind::Histogram,
        "One delivery attempt's duration.",
        &[],
    ),
    m(
        HTTP_REQUESTS_TOTAL,
        Kind::Counter,
        "HTTP requests served.",
        &["method", "route", "status"],
    ),
    m(
        HTTP_REQUEST_DURATION_SECONDS,
        Kind::Histogram,
        "HTTP request latency.",
        &["method", "route", "status"],
    ),
    m(
        RATE_LIMIT_FAIL_OPEN_TOTAL,
        Kind::Counter,
        "Requests let through unlimited because the rate limiter could not reach Redis.",
        &[],
    ),
    m(
        CLOCK_SKEW_SECONDS,
        Kind::Gauge,
        "How far the node's clock is ahead of the database's (negative when behind).",
        &["role"],
    ),
    m(
        LATE_CALLBACKS_TOTAL,
        Kind::Counter,
        "Carrier callbacks for attempts already taken back, recorded on the contact, not applied.",
        &[],
    ),
];

const fn m(
    name: &'static str,
    kind: Kind,
    help: &'static str,
    labels: &'static [&'static str],
) -> Metric {
    Metric {
        name,
        kind,
        help,
        labels,
    }
}

/// The declared metric a series name belongs to (`…_bucket`, `…_sum`, `…_count` map to their
/// histogram), if any.
pub fn declared(series: &str) -> Option<&'static Metric> {
    ALL.iter().find(|metric| {
        metric.name == series
            || (metric.kind == Kind::Histogram
                && ["_bucket", "_sum", "_count"]
                    .iter()
                    .any(|suffix| series.strip_suffix(suffix) == Some(metric.name)))
    })
}

/// Bucket bounds for every `_seconds` histogram: 1 ms to 5 min, enough for an HTTP request
/// (milliseconds) and a slot wait or consumer lag (minutes) alike.
pub const SECONDS_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
    120.0, 300.0,
];

/// How long a gauge series survives without an update: a finished job's limit gauges vanish
/// instead of accumulating one series per job ever run.
pub const GAUGE_IDLE_TIMEOUT: Duration = Duration::from_secs(300);

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
static BUILD: OnceLock<&'static str> = OnceLock::new();

/// Installs the process's Prometheus recorder (once; later calls return the same handle).
/// `None` when another recorder was installed first, in which case `/metrics` answers 503.
pub fn install() -> Option<&'static PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .idle_timeout(MetricKindMask::GAUGE, Some(GAUGE_IDLE_TIMEOUT))
                .set_buckets_for_metric(Matcher::Suffix("_seconds".to_owned()), SECONDS_BUCKETS)
                .ok()?;
            let handle = builder.install_recorder().ok()?;
            for metric in ALL {
                let help = metric.help;
                match metric.kind {
                    Kind::Counter => ::metrics::describe_counter!(metric.name, help),
                    Kind::Gauge => ::metrics::describe_gauge!(metric.name, help),
                    Kind::Histogram => ::metrics::describe_histogram!(metric.name, help),
                }
            }
            Some(handle)
        })
        .as_ref()
}

/// The Prometheus text exposition of everything recorded so far (installing the recorder if
/// needed).
pub fn render() -> Option<String> {
    let handle = install()?;
    // Expiring idle gauges and draining histogram buffers happen here, once per scrape.
    handle.run_upkeep();
    if let Some(role) = BUILD.get() {
        set_build_info(role);
    }
    Some(handle.render())
}

/// The `/metrics` handler.
pub async fn exposition() -> axum::response::Response {
    use axum::response::IntoResponse;
    match render() {
        Some(body) => (
            [(
                axum::http::header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            body,
        )
            .into_response(),
        None => (
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            "metrics recorder not installed\n",
        )
            .into_response(),
    }
}

/// Records which role this process is (kept alive on every scrape).
pub fn record_build_info(role: &'static str) {
    let role = *BUILD.get_or_init(|| role);
    set_build_info(role);
}

fn set_build_info(role: &'static str) {
    gauge!(BUILD_INFO, "role" => role, "version" => env!("CARGO_PKG_VERSION")).set(1.0);
}

/// The `queue` label of a stream (the queue's name without the deployment prefix).
pub fn queue_label(stream: Stream) -> &'static str {
    match stream {
        Stream::Ingest => "dialfleet.ingest",
        Stream::Dial => "dialfleet.dial",
        Stream::CallEvents => "dialfleet.call-events",
    }
}

// ---- Pipeline -------------------------------------------------------------------------------

/// Sets the number of batches in `status` (the sampler calls it).
pub fn set_batches(status: &str, count: u64) {
    gauge!(BATCHES, "status" => status.to_owned()).set(count as f64);
}

/// Counts a batch the gateway accepted.
pub fn batch_created(surface: crate::domain::Surface) {
    let surface = match surface {
        crate::domain::Surface::Vogent => "vogent",
        crate::domain::Surface::Dialgen => "dialgen",
    };
    counter!(BATCHES_CREATED_TOTAL, "surface" => surface).increment(1);
}

/// Counts contacts an ingest worker committed.
pub fn contacts_ingested(count: u64) {
    counter!(CONTACTS_INGESTED_TOTAL).increment(count);
}

/// Why a row was rejected: a fixed list, so the label stays bounded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RejectReason {
    /// Not a valid phone number for its region.
    InvalidNumber,
    /// The same number earlier in the batch.
    Duplicate,
    /// Another field failed validation (email, metadata size, …).
    InvalidField,
    /// On the workspace's do-not-call list.
    DoNotCall,
    /// Anything else.
    Other,
}

impl RejectReason {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            RejectReason::InvalidNumber => "invalid_number",
            RejectReason::Duplicate => "duplicate",
            RejectReason::InvalidField => "invalid_field",
            RejectReason::DoNotCall => "do_not_call",
            RejectReason::Other => "other",
        }
    }
}

/// Counts rows rejected for `reason`.
pub fn contacts_rejected(reason: RejectReason, count: u64) {
    counter!(CONTACTS_REJECTED_TOTAL, "reason" => reason.as_str()).increment(count);
}

/// Counts contacts the scheduler released for dialing.
pub fn contacts_released(count: u64) {
    counter!(CONTACTS_RELEASED_TOTAL).increment(count);
}

// ---- Queues ---------------------------------------------------------------------------------

/// Sets a queue's sampled depth and consumer count.
pub fn set_queue_depth(stream: Stream, ready: u32, consumers: u32) {
    let queue = queue_label(stream);
    gauge!(QUEUE_DEPTH, "queue" => queue).set(f64::from(ready));
    gauge!(QUEUE_CONSUMERS, "queue" => queue).set(f64::from(consumers));
}

/// What a consumer did with a message (mirrors [`crate::queue::Disposition`]).
pub fn message_handled(stream: Stream, disposition: &'static str, took: Duration) {
    let queue = queue_label(stream);
    counter!(QUEUE_MESSAGES_HANDLED_TOTAL, "queue" => queue, "disposition" => disposition)
        .increment(1);
    histogram!(QUEUE_HANDLE_SECONDS, "queue" => queue).record(took.as_secs_f64());
}

/// Records how long a message waited between publish and handling.
pub fn consumer_lag(stream: Stream, lag: Duration) {
    histogram!(QUEUE_CONSUMER_LAG_SECONDS, "queue" => queue_label(stream))
        .record(lag.as_secs_f64());
}

/// Records a confirmed publish of `count` messages that took `took` to confirm. `queue` is a
/// [`queue_label`] or `"dead-letter"`.
pub fn published(queue: &'static str, count: u64, took: Duration) {
    counter!(QUEUE_MESSAGES_PUBLISHED_TOTAL, "queue" => queue).increment(count);
    histogram!(QUEUE_PUBLISH_CONFIRM_SECONDS, "queue" => queue).record(took.as_secs_f64());
}

/// Counts a failed or refused publish.
pub fn publish_failed(queue: &'static str) {
    counter!(QUEUE_PUBLISH_FAILURES_TOTAL, "queue" => queue).increment(1);
}

// ---- Dialing limits -------------------------------------------------------------------------

/// Sets a workspace's calls in flight and its limit.
pub fn set_workspace_calls(workspace_id: uuid::Uuid, in_flight: u64, limit: u64) {
    let id = workspace_id.to_string();
    gauge!(WORKSPACE_CALLS_IN_FLIGHT, "workspace_id" => id.clone()).set(in_flight as f64);
    gauge!(WORKSPACE_MAX_CONCURRENT_DIALS, "workspace_id" => id).set(limit as f64);
}

/// Sets a job's calls in flight and its limits.
pub fn set_job_calls(job_id: uuid::Uuid, in_flight: u64, max_concurrent: u64, max_cps: u64) {
    let id = job_id.to_string();
    gauge!(JOB_CALLS_IN_FLIGHT, "job_id" => id.clone()).set(in_flight as f64);
    gauge!(JOB_MAX_CONCURRENT_DIALS, "job_id" => id.clone()).set(max_concurrent as f64);
    gauge!(JOB_MAX_CALLS_PER_SECOND, "job_id" => id).set(max_cps as f64);
}

/// Counts a call placed with the carrier.
pub fn call_started() {
    counter!(CALL_STARTS_TOTAL).increment(1);
}

/// Counts a recorded outcome; `outcome` is a [`crate::domain::CallOutcome`]'s wire name
/// (completed, busy, no-answer, failed, voicemail, canceled, unknown).
pub fn call_outcome(outcome: &'static str) {
    counter!(CALL_OUTCOMES_TOTAL, "outcome" => outcome).increment(1);
}

/// Counts a retry scheduled after `outcome` (busy or no-answer).
pub fn retry_scheduled(outcome: &'static str) {
    counter!(RETRIES_SCHEDULED_TOTAL, "outcome" => outcome).increment(1);
}

/// Which limit a dial waited on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// The workspace's concurrency.
    Workspace,
    /// The job's `maxConcurrentDials`.
    Job,
    /// The job's `maxCallsPerSecond`.
    Rate,
}

/// Records how long a dial waited for `limit`.
pub fn slot_wait(limit: Limit, waited: Duration) {
    let limit = match limit {
        Limit::Workspace => "workspace",
        Limit::Job => "job",
        Limit::Rate => "rate",
    };
    histogram!(SLOT_WAIT_SECONDS, "limit" => limit).record(waited.as_secs_f64());
}

/// Why a written attempt was handed back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandBack {
    /// The job stopped wanting the call (paused, cancelled, window closed).
    Job,
    /// Redis could not give a start token.
    Redis,
    /// The carrier refused (throttling, credentials) or could not be reached.
    Carrier,
    /// The attempt's row could not be confirmed before its request.
    Database,
    /// Calling hours or a frequency cap deferred it.
    Compliance,
}

/// Counts a written attempt handed back.
pub fn dial_handed_back(reason: HandBack) {
    let reason = match reason {
        HandBack::Job => "job",
        HandBack::Redis => "redis",
        HandBack::Carrier => "carrier",
        HandBack::Database => "database",
        HandBack::Compliance => "compliance",
    };
    counter!(DIAL_HANDBACKS_TOTAL, "reason" => reason).increment(1);
}

/// Reports the dial path's Redis window and counts a congested call.
pub fn redis_window(size: usize, congested: bool) {
    gauge!(REDIS_WINDOW).set(size as f64);
    if congested {
        counter!(REDIS_CONGESTED_TOTAL).increment(1);
    }
}

// ---- Webhooks -------------------------------------------------------------------------------

/// Why a webhook delivery attempt failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WebhookFailure {
    /// The receiver answered 4xx.
    Http4xx,
    /// The receiver answered 5xx (or another non-2xx).
    Http5xx,
    /// No answer in time.
    Timeout,
    /// Could not connect (DNS, refused, TLS).
    Connect,
    /// Not sent: the URL is unusable or its address is private or reserved and not allowed
    /// (`WEBHOOK_ALLOWED_NETWORKS`).
    Blocked,
}

/// Records a delivery attempt: `Ok(())` when accepted, else why it failed.
pub fn webhook_attempt(result: Result<(), WebhookFailure>, took: Duration) {
    histogram!(WEBHOOK_DELIVERY_SECONDS).record(took.as_secs_f64());
    match result {
        Ok(()) => counter!(WEBHOOK_DELIVERIES_TOTAL).increment(1),
        Err(failure) => {
            let reason = match failure {
                WebhookFailure::Http4xx => "http_4xx",
                WebhookFailure::Http5xx => "http_5xx",
                WebhookFailure::Timeout => "timeout",
                WebhookFailure::Connect => "connect",
                WebhookFailure::Blocked => "blocked_destination",
            };
            counter!(WEBHOOK_FAILURES_TOTAL, "reason" => reason).increment(1);
        }
    }
}

/// Sets the skew of this node's clock against the database's, in seconds.
pub fn set_clock_skew(role: &'static str, seconds: f64) {
    gauge!(CLOCK_SKEW_SECONDS, "role" => role).set(seconds);
}

/// Counts a carrier callback that arrived for an attempt already taken back.
pub fn late_callback() {
    counter!(LATE_CALLBACKS_TOTAL).increment(1);
}

/// Counts a request the rate limiter let through because Redis could not answer.
pub fn rate_limit_fail_open() {
    counter!(RATE_LIMIT_FAIL_OPEN_TOTAL).increment(1);
}

/// Sets the number of deliveries waiting for a retry (the sampler calls it).
pub fn set_webhook_backlog(count: u64) {
    gauge!(WEBHOOK_RETRY_BACKLOG).set(count as f64);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_prefixed_and_suffixed_by_kind() {
        let mut seen = std::collections::HashSet::new();
        for metric in ALL {
            assert!(seen.insert(metric.name), "{} declared twice", metric.name);
            assert!(metric.name.starts_with("dialfleet_"), "{}", metric.name);
            assert_eq!(
                metric.name.ends_with("_total"),
                metric.kind == Kind::Counter,
                "{}: counters, and only counters, end in _total",
                metric.name
            );
            if metric.kind == Kind::Histogram {
                assert!(metric.name.ends_with("_seconds"), "{}", metric.name);
            }
        }
    }

    #[test]
    fn histogram_series_map_to_their_metric() {
        assert_eq!(
            declared("dialfleet_slot_wait_seconds_bucket").map(|m| m.name),
            Some(SLOT_WAIT_SECONDS)
        );
        assert!(declared("dialfleet_batches_bucket").is_none());
        assert!(declared("dialfleet_nope").is_none());
    }
}

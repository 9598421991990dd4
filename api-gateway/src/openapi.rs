//! The OpenAPI 3.1 document, served at `/openapi.json`: the paths come from the
//! `#[utoipa::path]` annotations on the handlers themselves; the schemas below describe the
//! bodies the handlers read and write.
#![allow(dead_code)]

use serde_json::Value;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};

use crate::routes::{
    agents, compliance, dialgen, lists, phone_numbers, vogent, webhook_deliveries, workspace,
};

#[derive(OpenApi)]
#[openapi(
    info(title = "dialfleet", description = "Vogent Batch Dial Jobs and Dialgen Call Batches on one self-hosted dialer."),
    paths(
        agents::create, agents::list, agents::fetch, agents::remove,
        phone_numbers::create, phone_numbers::list, phone_numbers::remove,
        vogent::create, vogent::list, vogent::fetch, vogent::update, vogent::set_paused, vogent::cancel,
        vogent::queue, vogent::dials, vogent::dial,
        dialgen::create, dialgen::list, dialgen::check_status, dialgen::status_link, dialgen::calls,
        webhook_deliveries::list, webhook_deliveries::fetch, webhook_deliveries::retry,
        workspace::fetch, workspace::update, workspace::rotate_secret,
        compliance::add, compliance::list, compliance::remove, compliance::opt_out, compliance::events,
        lists::dialgen_rejected, lists::vogent_rejected, lists::dialgen_results, lists::vogent_results,
        lists::dialgen_retry, lists::vogent_retry, lists::dialgen_contacts, lists::vogent_rows,
    ),
    components(schemas(
        ErrorBody, ErrorDetail, FieldErrorDoc, AgentIn, Agent, AgentPage, PhoneNumberIn, PhoneNumber, PhoneNumberPage,
        ScheduleDoc, DayDoc, SlotDoc, VogentRowDoc, VogentCreateDoc, VogentUpdateDoc, PausedDoc, Job, JobPage,
        QueueRow, QueuePage, Dial, DialPage, DialgenContactDoc, DialgenOptionsDoc, RetryDoc, WebhooksDoc,
        DialgenCreateDoc, DialgenCreated, Links, CheckStatus, Statistics, BatchListItem, BatchCalls, BatchCall,
        WebhookDelivery, WebhookDeliveryPage, JobLinks, DncIn, DncAdded, DncNumber, DncPage, OptedOut, ContactEvents,
        RejectedRow, RejectedPage, RecallDoc, DialgenRetried, RowCounts, AppendRowsDoc, AppendContactsDoc,
        VogentAppended, DialgenAppended,
    )),
    modifiers(&Security),
    security(("bearer" = []), ("api_key" = [])),
    tags((name = "agents"), (name = "phone numbers"), (name = "vogent"), (name = "dialgen"), (name = "webhooks"), (name = "workspace"), (name = "compliance")),
)]
pub struct ApiDoc;

struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        components.add_security_scheme(
            "api_key",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("api_key"))),
        );
    }
}

/// Every error: 400, 401, 404, 409, 413, 422, 503.
#[derive(ToSchema)]
pub struct ErrorBody {
    error: ErrorDetail,
}

#[derive(ToSchema)]
pub struct ErrorDetail {
    /// invalid_input, validation_failed, unauthorized, not_found, conflict, payload_too_large, unavailable, internal
    code: String,
    message: String,
    /// Each offending field (at most 100).
    details: Vec<FieldErrorDoc>,
}

#[derive(ToSchema)]
pub struct FieldErrorDoc {
    /// e.g. `rows[41].inputs.age`
    field: String,
    message: String,
}

#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
pub struct AgentIn {
    name: String,
    answer_url: String,
}

#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
pub struct Agent {
    id: String,
    name: String,
    answer_url: String,
    created_at: String,
}

#[derive(ToSchema)]
pub struct AgentPage {
    data: Vec<Agent>,
    cursor: Option<String>,
}

#[derive(ToSchema)]
pub struct PhoneNumberIn {
    /// E.164, e.g. +12015550100
    number: String,
    label: Option<String>,
}

#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
pub struct PhoneNumber {
    id: String,
    number: String,
    label: Option<String>,
    created_at: String,
}

/// One webhook delivery and where it stands.
#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
pub struct WebhookDelivery {
    /// Also the `webhook-id` header of every send.
    id: String,
    /// call.completed, batch.completed or batch.failed
    event: String,
    batch_id: Option<String>,
    /// The contact (call.completed) or batch the event is about.
    subject_id: String,
    url: String,
    /// pending, delivered or failed
    state: String,
    attempts: i32,
    last_status_code: Option<i32>,
    last_error: Option<String>,
    /// Set while pending.
    next_attempt_at: Option<String>,
    delivered_at: Option<String>,
    /// The body sent.
    #[schema(value_type = Object)]
    payload: Value,
    created_at: String,
}

#[derive(ToSchema)]
pub struct WebhookDeliveryPage {
    data: Vec<WebhookDelivery>,
    cursor: Option<String>,
}

#[derive(ToSchema)]
pub struct PhoneNumberPage {
    data: Vec<PhoneNumber>,
    cursor: Option<String>,
}

#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
pub struct ScheduleDoc {
    days: Vec<DayDoc>,
    /// IANA name
    timezone: String,
    disable_schedule: Option<bool>,
}

#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
pub struct DayDoc {
    /// 0 = Sunday … 6 = Saturday
    day_of_week: u8,
    time_slots: Vec<SlotDoc>,
}

#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
pub struct SlotDoc {
    /// HH:MM
    start_time: String,
    /// HH:MM, after startTime (24:00 allowed)
    end_time: String,
}

#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
pub struct VogentRowDoc {
    to_number: String,
    /// string => string
    inputs: Option<std::collections::BTreeMap<String, String>>,
    /// The recipient's IANA timezone (extension); default: derived from the number
    timezone: Option<String>,
}

#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
pub struct VogentCreateDoc {
    call_agent_id: String,
    /// 1 … the workspace's limit
    max_concurrent_dials: u32,
    name: String,
    /// 1 … 100,000
    rows: Vec<VogentRowDoc>,
    from_phone_number_ids: Option<Vec<String>>,
    schedule: Option<ScheduleDoc>,
    /// Extension: region for numbers without a country code (default: the workspace's).
    default_region: Option<String>,
    /// Twilio MachineDetection: Enable or DetectMessageEnd (default: off)
    machine_detection: Option<String>,
    /// Extension: Dialgen's webhooks, delivered as for Dialgen batches
    webhooks: Option<WebhooksDoc>,
    /// Extension: the job's own start rate, 1 … the workspace's ceiling (default: none; the
    /// workspace's maxCallsPerSecond alone bounds the job)
    max_calls_per_second: Option<u32>,
}

#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
pub struct VogentUpdateDoc {
    name: Option<String>,
    max_concurrent_dials: Option<u32>,
    /// Extension: the job's own start rate, 1 … the workspace's ceiling
    max_calls_per_second: Option<u32>,
    from_phone_number_ids: Option<Vec<String>>,
    schedule: Option<ScheduleDoc>,
    /// Extension: Twilio MachineDetection, Enable or DetectMessageEnd; null turns it off
    machine_detection: Option<String>,
    /// Extension: replaces the job's webhooks
    webhooks: Option<WebhooksDoc>,
    /// Refused (422): add rows with POST /api/batch_dial_jobs/{id}/rows
    #[schema(value_type = Option<Vec<Object>>)]
    rows: Option<Value>,
}

#[derive(ToSchema)]
pub struct PausedDoc {
    paused: bool,
}

#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
pub struct Job {
    id: String,
    max_concurrent_dials: u32,
    name: String,
    /// INIT, ACTIVE, PAUSED, COMPLETE, CANCELLED
    status: String,
    call_agent_id: String,
    created_at: String,
    from_phone_number_ids: Vec<String>,
    schedule: Option<ScheduleDoc>,
    user_id: Option<String>,
    /// Settings changed while ACTIVE, applied at the next pause.
    #[schema(value_type = Object)]
    pending: Option<Value>,
    /// Extension: Twilio's MachineDetection for the job's calls (Enable, DetectMessageEnd), or null (off)
    machine_detection: Option<String>,
    /// `GET /api/batch_dial_jobs/{id}` only (extension): the job's progress, counted as Dialgen's
    statistics: Option<Statistics>,
    /// `GET /api/batch_dial_jobs/{id}` only (extension): the live monitor page.
    links: Option<JobLinks>,
    /// Extension: Dialgen's webhooks object (`{}` when none)
    #[schema(value_type = Object)]
    webhooks: Value,
    /// Extension: the job whose contacts this one re-calls (`POST …/retry`), or null
    retry_of: Option<String>,
}

/// The job's links (extension).
#[derive(ToSchema)]
pub struct JobLinks {
    /// The monitor page, with a token valid 7 days for this job only.
    dashboard: String,
}

#[derive(ToSchema)]
pub struct JobPage {
    data: Vec<Job>,
    cursor: Option<String>,
}

#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
pub struct QueueRow {
    id: String,
    to_number: String,
    #[schema(value_type = Object)]
    inputs: Value,
    attempts: u32,
    next_attempt_at: Option<String>,
    name: Option<String>,
}

#[derive(ToSchema)]
pub struct QueuePage {
    data: Vec<QueueRow>,
    cursor: Option<String>,
}

#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
pub struct Dial {
    id: String,
    to_number: String,
    #[schema(value_type = Object)]
    inputs: Value,
    /// dialing, ringing, in-progress, or completed once the call has an outcome
    status: String,
    /// COMPLETED, BUSY, NO_ANSWER, FAILED, VOICEMAIL, CANCELLED, UNKNOWN
    system_result_type: Option<String>,
    from_number_id: Option<String>,
    /// Whole seconds from answer to end, rounded; 0 if never answered; null until it ends
    duration_seconds: Option<u64>,
    started_at: Option<String>,
    ended_at: Option<String>,
    created_at: String,
    updated_at: String,
    dial_task_id: String,
    attempt_number: u32,
    outcome: Option<String>,
    call_sid: Option<String>,
    from_number: Option<String>,
    batch_id: String,
}

#[derive(ToSchema)]
pub struct DialPage {
    data: Vec<Dial>,
    cursor: Option<String>,
}

#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
pub struct DialgenContactDoc {
    id: Option<String>,
    phone_number: String,
    /// default "Unknown"
    name: Option<String>,
    email: Option<String>,
    company: Option<String>,
    #[schema(value_type = Object)]
    metadata: Option<Value>,
    /// The recipient's IANA timezone (extension); default: derived from the number
    timezone: Option<String>,
}

#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
pub struct RetryDoc {
    /// 1–5, default 3
    max_attempts: Option<u32>,
    /// ms, default 3600000
    no_answer_delay: Option<u64>,
    /// ms, default 300000
    busy_delay: Option<u64>,
    /// ms; default: a voicemail is final
    voicemail_delay: Option<u64>,
}

#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
pub struct WebhooksDoc {
    on_call_complete: Option<String>,
    on_batch_complete: Option<String>,
    on_batch_failed: Option<String>,
}

#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
pub struct DialgenOptionsDoc {
    /// 1–10, default 5, higher first
    priority: Option<u8>,
    /// RFC 3339, in the future
    scheduled_start_time: Option<String>,
    /// IANA, default UTC
    timezone: Option<String>,
    /// 1–30, default 10
    max_calls_per_second: Option<u32>,
    retry_strategy: Option<RetryDoc>,
    webhooks: Option<WebhooksDoc>,
    tags: Option<Vec<String>>,
    /// Extensions
    max_concurrent_dials: Option<u32>,
    from_phone_number_ids: Option<Vec<String>>,
    schedule: Option<ScheduleDoc>,
    name: Option<String>,
    default_region: Option<String>,
    /// Twilio MachineDetection: Enable or DetectMessageEnd (default: off)
    machine_detection: Option<String>,
}

/// `POST /api/dnc` (JSON; or `text/csv`, one number per line, `?reason=`).
#[derive(ToSchema)]
pub struct DncIn {
    /// E.164, or NANP without the country code; 1 … 100,000 per JSON request
    numbers: Vec<String>,
    reason: Option<String>,
}

#[derive(ToSchema)]
pub struct DncAdded {
    /// numbers new to the list
    added: u64,
}

#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
pub struct DncNumber {
    number: String,
    reason: Option<String>,
    created_at: String,
}

#[derive(ToSchema)]
pub struct DncPage {
    data: Vec<DncNumber>,
    cursor: Option<String>,
}

#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
pub struct OptedOut {
    dial_id: String,
    contact_id: String,
    number: String,
    opted_out: bool,
    retries_ended: bool,
    /// a queued retry was suppressed by this request
    suppressed_now: bool,
}

/// A contact's audit trail.
#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
pub struct ContactEvents {
    contact_id: String,
    state: String,
    last_outcome: Option<String>,
    /// recipient_hours, unknown_timezone or frequency_cap while a rule defers it
    hold_reason: Option<String>,
    next_attempt_at: Option<String>,
    /// In order: ingested, deferred, suppressed, opted_out, released, dialed, outcome,
    /// retry_scheduled, cancelled; each with `at` and its details
    #[schema(value_type = Vec<Object>)]
    data: Vec<Value>,
}

#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
pub struct DialgenCreateDoc {
    agent_id: String,
    user_id: String,
    /// 1 … 100,000
    contacts: Vec<DialgenContactDoc>,
    options: Option<DialgenOptionsDoc>,
}

#[derive(ToSchema)]
pub struct Links {
    status: String,
    dashboard: String,
}

#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
pub struct DialgenCreated {
    success: bool,
    batch_id: String,
    /// `ingesting`; a replay (same `Idempotency-Key`, same body) shows the batch's current status
    status: String,
    message: String,
    links: Links,
}

#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
pub struct Statistics {
    total: u64,
    /// Final contacts, voicemails and cancelled ones included
    processed: u64,
    /// Answered by a person
    succeeded: u64,
    /// Out of attempts without an answer
    failed: u64,
    /// Extension: answered by a machine (`AnsweredBy: machine_*`); final, not a success
    voicemail: u64,
    /// Extension: cancelled with the batch; neither a success nor a failure
    cancelled: u64,
    pending: u64,
    percent_complete: f64,
    /// succeeded / (succeeded + voicemail + failed), percent
    success_rate: f64,
}

#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
pub struct CheckStatus {
    batch_id: String,
    /// ingesting, scheduled, pending, processing, paused, completed, cancelled, failed
    status: String,
    priority: u8,
    statistics: Statistics,
    #[schema(value_type = Object)]
    performance: Value,
    #[schema(value_type = Object)]
    timestamps: Value,
    #[schema(value_type = Vec<Object>)]
    recent_calls: Vec<Value>,
    #[schema(value_type = Object)]
    webhooks: Value,
    agent_id: String,
    user_id: Option<String>,
    /// Extension: rejected rows counted by reason.
    #[schema(value_type = Object)]
    rejected: Value,
}

#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
pub struct BatchListItem {
    batch_id: String,
    status: String,
    total: u64,
    processed: u64,
    succeeded: u64,
    failed: u64,
    /// Extension: answered by a machine
    voicemail: u64,
    /// Extension
    cancelled: u64,
    percent_complete: f64,
    created_at: String,
    agent_id: String,
    priority: u8,
}

#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
pub struct BatchCall {
    /// The contact's id
    call_id: String,
    /// The contact's status: SCHEDULED (also while waiting for a retry), ONGOING, COMPLETED,
    /// MISSED, FAILED, CANCELLED
    status: String,
    start_time: Option<String>,
    phone_number: String,
    error: Option<String>,
    /// The latest call's whole seconds from answer to end, rounded; 0 if never answered
    duration: Option<u64>,
    recording_url: Option<String>,
    /// Extension: the latest call (a Vogent dial id)
    dial_id: Option<String>,
    /// Extension: the latest call's own status, as recentCalls and the webhook show it
    /// (ONGOING, COMPLETED, MISSED, FAILED, CANCELLED)
    dial_status: Option<String>,
}

#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
pub struct BatchCalls {
    batch_id: String,
    calls: Vec<BatchCall>,
    /// The next page's cursor (with `limit`/`cursor`), null on the last page or when every
    /// call was answered
    next_cursor: Option<String>,
}

/// One rejected row, numbered as the user counts the list (first data row = 1).
#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
pub struct RejectedRow {
    row: u32,
    /// As submitted
    phone_number: Option<String>,
    /// missing_number, invalid_number, duplicate, invalid_text, do_not_call
    reason: String,
    detail: Option<String>,
}

#[derive(ToSchema)]
pub struct RejectedPage {
    data: Vec<RejectedRow>,
    cursor: Option<String>,
}

/// `POST …/retry`: re-call the contacts whose last outcome is one of `outcomes`.
#[derive(ToSchema)]
pub struct RecallDoc {
    /// completed, busy, no-answer, failed, voicemail, cancelled, unknown, suppressed
    outcomes: Vec<String>,
    /// default "<name> (retry)"
    name: Option<String>,
}

#[derive(ToSchema)]
pub struct RowCounts {
    submitted: u32,
    accepted: u32,
    /// do-not-call numbers are not copied
    rejected: u32,
}

#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
pub struct DialgenRetried {
    success: bool,
    batch_id: String,
    status: String,
    message: String,
    /// The batch retried
    retry_of: String,
    rows: RowCounts,
    links: Links,
}

/// `POST /api/batch_dial_jobs/{id}/rows`: rows as in the create body, 1 … 100,000.
#[derive(ToSchema)]
pub struct AppendRowsDoc {
    rows: Vec<VogentRowDoc>,
}

/// `POST /api/v1/batch/{id}/contacts`: contacts as in the create body, 1 … 100,000.
#[derive(ToSchema)]
pub struct AppendContactsDoc {
    contacts: Vec<DialgenContactDoc>,
}

#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
pub struct VogentAppended {
    /// Rows received (each accepted or rejected once ingested)
    rows: u32,
    /// The number of the first row added (rows continue the job's numbering)
    first_row: u32,
    job: Job,
}

#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
pub struct DialgenAppended {
    success: bool,
    batch_id: String,
    status: String,
    contacts: u32,
    first_row: u32,
}

/// `GET /openapi.json`.
pub async fn serve() -> axum::Json<utoipa::openapi::OpenApi> {
    axum::Json(ApiDoc::openapi())
}

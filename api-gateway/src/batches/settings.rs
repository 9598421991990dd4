//! A batch's settings as the two surfaces spell them, checked into one [`NewBatch`].
//!
//! Every field is optional at the type level so that a missing required field is reported as a
//! 422 naming it, together with every other problem, rather than as the first serde error.

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{Map, Value};
use utoipa::ToSchema;
use uuid::Uuid;

use shared::domain::{
    DaySchedule, LocalTime, MachineDetection, RetryStrategy, Schedule, Surface, TimeSlot, Timezone,
    Weekday,
};

use crate::auth::Workspace;
use crate::error::ApiError;
use crate::validate::{MAX_NAME_CHARS, Text, Violations, check_name, http_url};

/// Dialgen's documented defaults (docs/api.md#vendor-api-reference).
pub const DEFAULT_PRIORITY: i16 = 5;
/// Dialgen's documented default `maxCallsPerSecond`. Vogent jobs have no default of their own:
/// without the `maxCallsPerSecond` extension only the workspace's rate bounds them.
pub const DEFAULT_CPS: i32 = 10;

/// Vogent's `schedule` object as sent.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ScheduleIn {
    #[schema(required = true, value_type = Vec<DayIn>)]
    pub days: Option<Vec<DayIn>>,
    /// IANA name.
    #[schema(required = true, value_type = String)]
    pub timezone: Option<String>,
    pub disable_schedule: Option<bool>,
}

/// One day of a schedule as sent.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DayIn {
    /// 0 = Sunday … 6 = Saturday.
    #[schema(required = true, value_type = i64, minimum = 0, maximum = 6)]
    pub day_of_week: Option<i64>,
    #[schema(required = true, value_type = Vec<SlotIn>)]
    pub time_slots: Option<Vec<SlotIn>>,
}

/// One slot as sent.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SlotIn {
    /// HH:MM.
    #[schema(required = true, value_type = String, pattern = "^([01][0-9]|2[0-3]):[0-5][0-9]$")]
    pub start_time: Option<String>,
    /// HH:MM, after startTime (24:00 allowed).
    #[schema(required = true, value_type = String, pattern = "^(([01][0-9]|2[0-3]):[0-5][0-9]|24:00)$")]
    pub end_time: Option<String>,
}

/// The Vogent create body (seed 000); the settings of a CSV upload's `job` part.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VogentCreate {
    #[schema(required = true, value_type = Uuid)]
    pub call_agent_id: Option<String>,
    /// 1 … the workspace's limit.
    #[schema(required = true, value_type = i64, minimum = 1)]
    pub max_concurrent_dials: Option<i64>,
    #[schema(required = true, value_type = String, min_length = 1, max_length = 500, pattern = "\\S")]
    pub name: Option<Text>,
    /// 1 to 100,000 rows (JSON only; an upload's rows are its `file`). The streaming parser
    /// takes them out before this header is typed, so this field never holds them: it is here
    /// for the document.
    #[serde(default)]
    #[schema(value_type = Option<Vec<crate::batches::body::VogentRow>>, min_items = 1, max_items = 100000)]
    pub rows: Option<serde::de::IgnoredAny>,
    #[schema(value_type = Option<Vec<Uuid>>)]
    pub from_phone_number_ids: Option<Vec<String>>,
    pub schedule: Option<ScheduleIn>,
    /// Extension: the region for numbers written without a country code.
    #[schema(pattern = "^[A-Z]{2}$")]
    pub default_region: Option<String>,
    /// Twilio's `MachineDetection`: `Enable` or `DetectMessageEnd`.
    #[schema(value_type = Option<MachineDetection>)]
    pub machine_detection: Option<String>,
    /// Extension: Dialgen's `webhooks` object, delivered as for Dialgen batches.
    pub webhooks: Option<WebhooksIn>,
    /// Extension: a start rate of the job's own (at most the workspace's ceiling); absent, the
    /// workspace's rate alone bounds the job.
    #[schema(minimum = 1)]
    pub max_calls_per_second: Option<i64>,
}

/// The Vogent update body (`PUT /api/batch_dial_jobs/{id}`): any subset.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VogentUpdate {
    #[schema(value_type = Option<String>, min_length = 1, max_length = 500, pattern = "\\S")]
    pub name: Option<Text>,
    #[schema(minimum = 1)]
    pub max_concurrent_dials: Option<i64>,
    /// Extension: the job's own start rate (see [`VogentCreate::max_calls_per_second`]).
    #[schema(minimum = 1)]
    pub max_calls_per_second: Option<i64>,
    #[schema(value_type = Option<Vec<Uuid>>)]
    pub from_phone_number_ids: Option<Vec<String>>,
    pub schedule: Option<ScheduleIn>,
    /// Twilio's `MachineDetection`; `null` turns it off (absent: unchanged).
    #[serde(default, deserialize_with = "crate::validate::present")]
    #[schema(value_type = Option<MachineDetection>)]
    pub machine_detection: Option<Option<String>>,
    /// Extension: replaces the job's `webhooks` (Dialgen's object).
    pub webhooks: Option<WebhooksIn>,
    /// Not accepted here: rows are added with `POST /api/batch_dial_jobs/{id}/rows` (a 422
    /// says so, rather than ignoring them as before).
    #[schema(value_type = Option<Vec<Object>>, max_items = 0)]
    pub rows: Option<serde::de::IgnoredAny>,
}

/// The Dialgen create body (seed 004); the settings of a CSV upload's `batch` part.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DialgenCreate {
    #[schema(required = true, value_type = Uuid)]
    pub agent_id: Option<String>,
    #[schema(required = true, value_type = String, min_length = 1, max_length = 500, pattern = "\\S")]
    pub user_id: Option<Text>,
    /// 1 to 100,000 contacts (JSON only; an upload's contacts are its `file`). Taken out by
    /// the streaming parser before this header is typed: here for the document.
    #[serde(default)]
    #[schema(value_type = Option<Vec<crate::batches::body::DialgenContact>>, min_items = 1, max_items = 100000)]
    pub contacts: Option<serde::de::IgnoredAny>,
    /// `null` is the same as absent (the OpenAPI document declares it nullable).
    #[serde(default)]
    pub options: Option<DialgenOptions>,
}

/// Dialgen's `options`, plus extensions (`maxConcurrentDials`, `fromPhoneNumberIds`,
/// `schedule`, `name`, `defaultRegion`).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DialgenOptions {
    /// Higher first; 5 by default.
    #[schema(minimum = 1, maximum = 10)]
    pub priority: Option<i64>,
    /// RFC 3339, in the future.
    #[schema(format = DateTime)]
    pub scheduled_start_time: Option<String>,
    /// IANA name, UTC by default.
    pub timezone: Option<String>,
    /// 1 … the workspace's ceiling, 10 by default.
    #[schema(minimum = 1)]
    pub max_calls_per_second: Option<i64>,
    pub retry_strategy: Option<RetryIn>,
    pub webhooks: Option<WebhooksIn>,
    /// Each 1 to 100 characters.
    #[schema(value_type = Option<Vec<String>>)]
    pub tags: Option<Vec<Text>>,
    #[schema(minimum = 1)]
    pub max_concurrent_dials: Option<i64>,
    #[schema(value_type = Option<Vec<Uuid>>)]
    pub from_phone_number_ids: Option<Vec<String>>,
    pub schedule: Option<ScheduleIn>,
    #[schema(value_type = Option<String>, min_length = 1, max_length = 500, pattern = "\\S")]
    pub name: Option<Text>,
    #[schema(pattern = "^[A-Z]{2}$")]
    pub default_region: Option<String>,
    /// Twilio's `MachineDetection`: `Enable` or `DetectMessageEnd`.
    #[schema(value_type = Option<MachineDetection>)]
    pub machine_detection: Option<String>,
}

/// `retryStrategy` as sent (milliseconds).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RetryIn {
    /// 1 … the workspace's ceiling, 3 by default.
    #[schema(minimum = 1)]
    pub max_attempts: Option<i64>,
    /// ms, 3600000 by default.
    #[schema(minimum = 0, maximum = 2592000000_i64)]
    pub no_answer_delay: Option<i64>,
    /// ms, 300000 by default.
    #[schema(minimum = 0, maximum = 2592000000_i64)]
    pub busy_delay: Option<i64>,
    /// Retry a voicemail after this many ms (default: a voicemail is final).
    #[schema(minimum = 0, maximum = 2592000000_i64)]
    pub voicemail_delay: Option<i64>,
}

/// `webhooks` as sent.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WebhooksIn {
    #[schema(pattern = "^https?://[^/?#\\s]+")]
    pub on_call_complete: Option<Text>,
    #[schema(pattern = "^https?://[^/?#\\s]+")]
    pub on_batch_complete: Option<Text>,
    #[schema(pattern = "^https?://[^/?#\\s]+")]
    pub on_batch_failed: Option<Text>,
}

/// A checked batch, ready to insert.
#[derive(Debug, Clone)]
pub struct NewBatch {
    pub surface: Surface,
    pub name: String,
    pub agent_id: Uuid,
    pub user_id: Option<String>,
    pub max_concurrent_dials: i32,
    /// The job's own rate; `None`: the workspace's rate alone (a Vogent job without one).
    pub max_calls_per_second: Option<i32>,
    pub priority: i16,
    pub schedule: Option<Schedule>,
    pub timezone: Timezone,
    pub scheduled_start_time: Option<DateTime<Utc>>,
    pub from_phone_number_ids: Vec<Uuid>,
    pub retry: RetryStrategy,
    pub webhooks: Value,
    pub tags: Vec<String>,
    pub default_region: String,
    /// Twilio's `MachineDetection` for the job's calls (`None` = off).
    pub machine_detection: Option<MachineDetection>,
}

/// Checks a `machineDetection` value at `path`.
pub fn check_machine_detection(
    value: Option<&str>,
    path: &str,
    v: &mut Violations,
) -> Option<MachineDetection> {
    let value = value?;
    let parsed = MachineDetection::parse(value);
    if parsed.is_none() {
        v.add(
            path,
            format!("{value:?} must be \"Enable\" or \"DetectMessageEnd\""),
        );
    }
    parsed
}

/// Converts the header map into `T` strictly: its unknown fields go to `v` (so that one 422
/// lists them with every other problem), a type error is a 400 naming the field.
pub fn typed<T: serde::de::DeserializeOwned>(
    header: Map<String, Value>,
    v: &mut Violations,
) -> Result<T, ApiError> {
    let mut found = Vec::new();
    let typed = crate::extract::typed_value(Value::Object(header), &mut found);
    v.extend(found);
    typed
}

/// Checks a schedule into the domain type.
pub fn check_schedule(input: &ScheduleIn, path: &str, v: &mut Violations) -> Option<Schedule> {
    let timezone = match input.timezone.as_deref() {
        None => {
            v.add(format!("{path}.timezone"), "is required");
            None
        }
        Some(tz) => tz
            .parse::<Timezone>()
            .map_err(|e| v.add(format!("{path}.timezone"), e))
            .ok(),
    };
    let mut days = Vec::new();
    match &input.days {
        None if input.disable_schedule == Some(true) => {}
        None => v.add(format!("{path}.days"), "is required"),
        Some(list) => {
            for (i, day) in list.iter().enumerate() {
                let dpath = format!("{path}.days[{i}]");
                let weekday = match day.day_of_week {
                    None => {
                        v.add(format!("{dpath}.dayOfWeek"), "is required");
                        None
                    }
                    Some(n) => Weekday::new(n)
                        .map_err(|e| v.add(format!("{dpath}.dayOfWeek"), e))
                        .ok(),
                };
                let mut slots = Vec::new();
                match &day.time_slots {
                    None => v.add(format!("{dpath}.timeSlots"), "is required"),
                    Some(list) => {
                        for (j, slot) in list.iter().enumerate() {
                            let spath = format!("{dpath}.timeSlots[{j}]");
                            let start = check_time(
                                slot.start_time.as_deref(),
                                &format!("{spath}.startTime"),
                                v,
                            );
                            let end = check_time(
                                slot.end_time.as_deref(),
                                &format!("{spath}.endTime"),
                                v,
                            );
                            if let (Some(start), Some(end)) = (start, end) {
                                if start >= end {
                                    v.add(
                                        format!("{spath}.endTime"),
                                        format!("must be after startTime ({start})"),
                                    );
                                } else {
                                    slots.push(TimeSlot {
                                        start_time: start,
                                        end_time: end,
                                    });
                                }
                            }
                        }
                    }
                }
                if let Some(day_of_week) = weekday {
                    days.push(DaySchedule {
                        day_of_week,
                        time_slots: slots,
                    });
                }
            }
        }
    }
    Some(Schedule {
        days,
        timezone: timezone?,
        disable_schedule: input.disable_schedule,
    })
}

fn check_time(value: Option<&str>, path: &str, v: &mut Violations) -> Option<LocalTime> {
    match value {
        None => {
            v.add(path, "is required");
            None
        }
        Some(s) => s.parse::<LocalTime>().map_err(|e| v.add(path, e)).ok(),
    }
}

/// Checks `maxConcurrentDials` against the workspace's limit (seed 001).
pub fn check_concurrency(
    value: Option<i64>,
    field: &str,
    ws: &Workspace,
    v: &mut Violations,
) -> Option<i32> {
    match value {
        None => None,
        Some(n) if n < 1 => {
            v.add(field, "must be at least 1");
            None
        }
        Some(n) if n > i64::from(ws.max_concurrent_dials) => {
            v.add(
                field,
                format!(
                    "must not exceed the workspace's concurrent dial limit ({})",
                    ws.max_concurrent_dials
                ),
            );
            None
        }
        Some(n) => Some(n as i32),
    }
}

/// Checks a `maxCallsPerSecond` at `field`: 1 up to the workspace's ceiling.
pub fn check_rate(
    value: Option<i64>,
    field: &str,
    ws: &Workspace,
    v: &mut Violations,
) -> Option<i32> {
    match value {
        None => None,
        Some(n) if n >= 1 && n <= i64::from(ws.cps_ceiling) => Some(n as i32),
        Some(_) => {
            v.add(field, format!("must be between 1 and {}", ws.cps_ceiling));
            None
        }
    }
}

/// Parses id strings (the existence check against the database comes later).
pub fn check_ids(ids: &[String], field: &str, v: &mut Violations) -> Vec<Uuid> {
    ids.iter()
        .enumerate()
        .filter_map(|(i, id)| match Uuid::parse_str(id) {
            Ok(u) => Some(u),
            Err(_) => {
                v.add(
                    format!("{field}[{i}]"),
                    format!("no phone number with id {id:?} in this workspace"),
                );
                None
            }
        })
        .collect()
}

fn check_region(region: Option<&str>, field: &str, ws: &Workspace, v: &mut Violations) -> String {
    match region {
        None => ws.default_region.clone(),
        Some(r) if crate::workspace::is_region(r) => r.to_owned(),
        Some(r) => {
            v.add(field, crate::workspace::region_message(r));
            ws.default_region.clone()
        }
    }
}

fn required_text(value: Option<&str>, field: &str, v: &mut Violations) -> String {
    match value.map(str::trim) {
        None | Some("") => {
            v.add(field, "is required");
            String::new()
        }
        Some(s) if s.chars().count() > MAX_NAME_CHARS => {
            v.add(
                field,
                format!("must be at most {MAX_NAME_CHARS} characters"),
            );
            String::new()
        }
        Some(s) => s.to_owned(),
    }
}

fn agent_id(value: Option<&str>, field: &str, v: &mut Violations) -> Uuid {
    match value {
        None => {
            v.add(field, "is required");
            Uuid::nil()
        }
        Some(s) => match Uuid::parse_str(s) {
            Ok(id) if !id.is_nil() => id,
            _ => {
                v.add(field, format!("no agent with id {s:?} in this workspace"));
                Uuid::nil()
            }
        },
    }
}

/// Checks a `webhooks` object (at `path`): each URL given must parse as an http(s) URL the
/// delivery client can use. The stored form, `{"onCallComplete": url, …}` with the keys given,
/// is the one every role reads. Where the URLs point is checked by [`check_destinations`].
pub fn check_webhooks(hooks: Option<WebhooksIn>, path: &str, v: &mut Violations) -> Value {
    let mut webhooks = Map::new();
    if let Some(hooks) = hooks {
        for (value, key) in [
            (hooks.on_call_complete, "onCallComplete"),
            (hooks.on_batch_complete, "onBatchComplete"),
            (hooks.on_batch_failed, "onBatchFailed"),
        ] {
            if let Some(url) = value {
                match http_url(&url) {
                    Ok(()) => {
                        webhooks.insert(key.to_owned(), Value::String(url.into_string()));
                    }
                    Err(message) => v.add(format!("{path}.{key}"), message),
                }
            }
        }
    }
    Value::Object(webhooks)
}

/// Refuses each webhook URL of `webhooks` (the object [`check_webhooks`] returns, at `path`)
/// whose host is a literal private or reserved address outside `allowed`: it could never be
/// delivered (`shared::destination`). A host name is judged at delivery, on the address it
/// resolves to then.
pub fn check_destinations(
    webhooks: &Value,
    path: &str,
    allowed: &shared::destination::AllowedNetworks,
    v: &mut Violations,
) {
    let Value::Object(hooks) = webhooks else {
        return;
    };
    for (key, url) in hooks {
        let Some(url) = url.as_str() else { continue };
        let Ok(parsed) = shared::destination::parse_http_url(url) else {
            continue;
        };
        if let Err(blocked) = allowed.check_url(&parsed) {
            v.add(
                format!("{path}.{key}"),
                format!(
                    "must not point to a private or reserved address ({}): webhooks are only delivered to public addresses and the operator's WEBHOOK_ALLOWED_NETWORKS",
                    blocked.ip
                ),
            );
        }
    }
}

/// Checks a Vogent create body.
pub fn check_vogent(input: VogentCreate, ws: &Workspace, v: &mut Violations) -> NewBatch {
    let name = required_text(input.name.as_deref(), "name", v);
    let agent_id = agent_id(input.call_agent_id.as_deref(), "callAgentId", v);
    if input.max_concurrent_dials.is_none() {
        v.add("maxConcurrentDials", "is required");
    }
    let max_concurrent_dials =
        check_concurrency(input.max_concurrent_dials, "maxConcurrentDials", ws, v).unwrap_or(1);
    let schedule = input
        .schedule
        .as_ref()
        .and_then(|s| check_schedule(s, "schedule", v));
    let from_phone_number_ids = check_ids(
        input.from_phone_number_ids.as_deref().unwrap_or_default(),
        "fromPhoneNumberIds",
        v,
    );
    NewBatch {
        surface: Surface::Vogent,
        name,
        agent_id,
        user_id: None,
        max_concurrent_dials,
        // No hidden cap: the Vogent API has no rate field, so only a job that sends the
        // extension has a rate of its own; the others follow the workspace's (the carrier
        // account's) rate.
        max_calls_per_second: check_rate(input.max_calls_per_second, "maxCallsPerSecond", ws, v),
        priority: DEFAULT_PRIORITY,
        timezone: schedule.as_ref().map(|s| s.timezone).unwrap_or_default(),
        schedule,
        scheduled_start_time: None,
        from_phone_number_ids,
        retry: ws.default_retry,
        webhooks: check_webhooks(input.webhooks, "webhooks", v),
        tags: Vec::new(),
        default_region: check_region(input.default_region.as_deref(), "defaultRegion", ws, v),
        machine_detection: check_machine_detection(
            input.machine_detection.as_deref(),
            "machineDetection",
            v,
        ),
    }
}

/// Checks a Dialgen create body at `now` (`scheduledStartTime` must be in the future).
pub fn check_dialgen(
    input: DialgenCreate,
    ws: &Workspace,
    now: DateTime<Utc>,
    v: &mut Violations,
) -> NewBatch {
    let agent_id = agent_id(input.agent_id.as_deref(), "agentId", v);
    let user_id = required_text(input.user_id.as_deref(), "userId", v);
    let o = input.options.unwrap_or_default();
    let priority = check_priority(o.priority, v);
    let scheduled_start_time = check_start_time(o.scheduled_start_time.as_deref(), now, v);
    let timezone = check_timezone(o.timezone.as_deref(), v);
    let max_calls_per_second = match o.max_calls_per_second {
        None => DEFAULT_CPS.min(ws.cps_ceiling),
        given => check_rate(given, "options.maxCallsPerSecond", ws, v).unwrap_or(DEFAULT_CPS),
    };
    let retry = check_retry(o.retry_strategy.unwrap_or_default(), ws, v);
    let webhooks = check_webhooks(o.webhooks, "options.webhooks", v);
    let tags = check_tags(o.tags.unwrap_or_default(), v);
    let max_concurrent_dials =
        check_concurrency(o.max_concurrent_dials, "options.maxConcurrentDials", ws, v)
            .unwrap_or(ws.max_concurrent_dials);
    let schedule = o
        .schedule
        .as_ref()
        .and_then(|s| check_schedule(s, "options.schedule", v));
    let from_phone_number_ids = check_ids(
        o.from_phone_number_ids.as_deref().unwrap_or_default(),
        "options.fromPhoneNumberIds",
        v,
    );
    if let Some(name) = &o.name {
        check_name(name, "options.name", v);
    }
    let name = o
        .name
        .map(Text::into_string)
        .filter(|n| !n.trim().is_empty())
        .unwrap_or_else(|| format!("Dialgen batch {}", now.format("%Y-%m-%d %H:%M")));
    NewBatch {
        surface: Surface::Dialgen,
        name,
        agent_id,
        user_id: Some(user_id),
        max_concurrent_dials,
        max_calls_per_second: Some(max_calls_per_second),
        priority,
        timezone: schedule.as_ref().map(|s| s.timezone).unwrap_or(timezone),
        schedule,
        scheduled_start_time,
        from_phone_number_ids,
        retry,
        webhooks,
        tags,
        default_region: check_region(o.default_region.as_deref(), "options.defaultRegion", ws, v),
        machine_detection: check_machine_detection(
            o.machine_detection.as_deref(),
            "options.machineDetection",
            v,
        ),
    }
}

/// `options.priority`: 1 to 10, [`DEFAULT_PRIORITY`] when absent.
fn check_priority(value: Option<i64>, v: &mut Violations) -> i16 {
    match value {
        None => DEFAULT_PRIORITY,
        Some(p) if (1..=10).contains(&p) => p as i16,
        Some(_) => {
            v.add("options.priority", "must be between 1 and 10");
            DEFAULT_PRIORITY
        }
    }
}

/// `options.scheduledStartTime`: an RFC 3339 instant after `now`.
fn check_start_time(
    value: Option<&str>,
    now: DateTime<Utc>,
    v: &mut Violations,
) -> Option<DateTime<Utc>> {
    let s = value?;
    match DateTime::parse_from_rfc3339(s) {
        Ok(t) if t.with_timezone(&Utc) > now => Some(t.with_timezone(&Utc)),
        Ok(_) => {
            v.add("options.scheduledStartTime", "must be in the future");
            None
        }
        Err(_) => {
            v.add(
                "options.scheduledStartTime",
                format!("{s:?} is not an RFC 3339 date-time such as 2025-11-16T09:00:00Z"),
            );
            None
        }
    }
}

/// `options.timezone`: an IANA name, UTC when absent.
fn check_timezone(value: Option<&str>, v: &mut Violations) -> Timezone {
    match value {
        None => Timezone::UTC,
        Some(tz) => tz.parse().unwrap_or_else(|e| {
            v.add("options.timezone", e);
            Timezone::UTC
        }),
    }
}

/// The longest retry delay a batch may ask for: 30 days, in milliseconds.
const MAX_RETRY_DELAY_MS: i64 = 30 * 24 * 3_600_000;

/// `options.retryStrategy`: the attempts up to the workspace's ceiling, each delay up to
/// [`MAX_RETRY_DELAY_MS`]; what is absent keeps [`RetryStrategy::default`].
fn check_retry(input: RetryIn, ws: &Workspace, v: &mut Violations) -> RetryStrategy {
    let mut retry = RetryStrategy::default();
    match input.max_attempts {
        None => {}
        Some(n) if n >= 1 && n <= i64::from(ws.max_attempts_ceiling) => {
            retry.max_attempts = n as u32
        }
        Some(_) => v.add(
            "options.retryStrategy.maxAttempts",
            format!("must be between 1 and {}", ws.max_attempts_ceiling),
        ),
    }
    if let Some(ms) = check_delay(input.no_answer_delay, "noAnswerDelay", v) {
        retry.no_answer_delay = ms;
    }
    if let Some(ms) = check_delay(input.busy_delay, "busyDelay", v) {
        retry.busy_delay = ms;
    }
    if let Some(ms) = check_delay(input.voicemail_delay, "voicemailDelay", v) {
        retry.voicemail_delay = Some(ms);
    }
    retry
}

/// One delay of `options.retryStrategy` (`field`): `None` when absent or out of range.
fn check_delay(value: Option<i64>, field: &str, v: &mut Violations) -> Option<u64> {
    match value {
        None => None,
        Some(ms) if (0..=MAX_RETRY_DELAY_MS).contains(&ms) => Some(ms as u64),
        Some(_) => {
            v.add(
                format!("options.retryStrategy.{field}"),
                "must be between 0 and 2592000000 milliseconds (30 days)",
            );
            None
        }
    }
}

/// `options.tags`: each 1 to 100 characters.
fn check_tags(tags: Vec<Text>, v: &mut Violations) -> Vec<String> {
    let tags: Vec<String> = tags.into_iter().map(Text::into_string).collect();
    for (i, tag) in tags.iter().enumerate() {
        if tag.is_empty() || tag.len() > 100 {
            v.add(format!("options.tags[{i}]"), "must be 1 to 100 characters");
        }
    }
    tags
}

#[cfg(test)]
mod tests {
    use super::*;

    fn workspace() -> Workspace {
        Workspace {
            id: Uuid::nil(),
            max_concurrent_dials: 200,
            cps_ceiling: 50,
            max_attempts_ceiling: 5,
            default_retry: RetryStrategy::default(),
            default_region: "US".to_owned(),
        }
    }

    fn vogent(rate: Option<i64>) -> (NewBatch, Violations) {
        let body = VogentCreate {
            call_agent_id: Some(Uuid::now_v7().to_string()),
            max_concurrent_dials: Some(200),
            name: None,
            rows: None,
            from_phone_number_ids: None,
            schedule: None,
            default_region: None,
            machine_detection: None,
            webhooks: None,
            max_calls_per_second: rate,
        };
        let mut v = Violations::default();
        let batch = check_vogent(body, &workspace(), &mut v);
        (batch, v)
    }

    #[test]
    fn a_vogent_job_has_no_rate_of_its_own_unless_it_sends_one() {
        assert_eq!(vogent(None).0.max_calls_per_second, None);
        assert_eq!(vogent(Some(50)).0.max_calls_per_second, Some(50));
    }

    #[test]
    fn a_vogent_rate_outside_the_ceiling_names_the_field() {
        for bad in [0, 51] {
            let (batch, v) = vogent(Some(bad));
            assert_eq!(batch.max_calls_per_second, None);
            let err = format!("{:?}", v.into_result(()).unwrap_err());
            assert!(err.contains("maxCallsPerSecond"), "{err}");
        }
    }
}

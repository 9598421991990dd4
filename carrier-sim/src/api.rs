//! Twilio's REST API for calls (the subset an outbound dialer uses), with Twilio's field names,
//! shapes, error bodies and HTTP Basic auth.
//!
//! - `POST /2010-04-01/Accounts/{AccountSid}/Calls.json`: place a call (201).
//! - `GET  /2010-04-01/Accounts/{AccountSid}/Calls.json?To=&From=&Status=&StartTime>=&PageSize=`:
//!   known calls, newest first (one page); `StartTime` / `EndTime` filters as Twilio's.
//! - `GET  /2010-04-01/Accounts/{AccountSid}/Calls/{CallSid}.json`: the call now.
//! - `POST /2010-04-01/Accounts/{AccountSid}/Calls/{CallSid}.json`: `Status=canceled|completed`.

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use chrono::Utc;
use serde_json::{Value, json};
use shared::domain::E164;

use crate::callback::duration_secs;
use crate::calls::{Call, HangUp, Placed};
use crate::sim::Sim;
use crate::subscription::{CallbackSpec, Events, Method};

/// The routes, with `/healthz` and `/readyz` (always ready: the simulator depends on nothing).
pub fn router(sim: Arc<Sim>) -> Router {
    Router::new()
        .route(
            "/2010-04-01/Accounts/{account}/Calls.json",
            post(create).get(list),
        )
        .route(
            "/2010-04-01/Accounts/{account}/Calls/{call}",
            get(fetch).post(modify),
        )
        .with_state(sim)
        .merge(shared::health::router(shared::health::Readiness::default()))
}

/// A Twilio-style error: `{"code", "message", "more_info", "status"}`.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: u32,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, code: u32, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    fn bad_request(code: u32, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({
            "code": self.code,
            "message": self.message,
            "more_info": format!("https://www.twilio.com/docs/errors/{}", self.code),
            "status": self.status.as_u16(),
        });
        let mut response = (self.status, Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"Twilio API\""),
            );
        }
        response
    }
}

/// Checks HTTP Basic auth (AccountSid:AuthToken) and that the path names the same account.
fn authenticate(sim: &Sim, headers: &HeaderMap, account: &str) -> Result<(), ApiError> {
    let unauthorized = || ApiError::new(StatusCode::UNAUTHORIZED, 20003, "Authenticate");
    let credentials = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b64| {
            base64::engine::general_purpose::STANDARD
                .decode(b64.trim())
                .ok()
        })
        .and_then(|raw| String::from_utf8(raw).ok())
        .ok_or_else(unauthorized)?;
    let (user, password) = credentials.split_once(':').ok_or_else(unauthorized)?;
    if !constant_time_eq(user, &sim.config.account_sid)
        || !constant_time_eq(password, &sim.config.auth_token)
    {
        return Err(unauthorized());
    }
    if account != sim.config.account_sid {
        return Err(not_found(&format!("/2010-04-01/Accounts/{account}")));
    }
    Ok(())
}

fn constant_time_eq(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

fn not_found(path: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        20404,
        format!("The requested resource {path} was not found"),
    )
}

/// A form body as Twilio's clients send it: repeated names allowed.
struct Form(Vec<(String, String)>);

impl Form {
    fn parse(body: &[u8]) -> Result<Self, ApiError> {
        serde_urlencoded::from_bytes(body)
            .map(Self)
            .map_err(|e| ApiError::bad_request(20001, format!("Invalid form body: {e}")))
    }

    fn first(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.trim())
            .filter(|v| !v.is_empty())
    }

    fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.0
            .iter()
            .filter(move |(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A hint for the commonest mistake by hand: `curl -d To=+1…` sends the `+` unencoded, and a
/// form body decodes it as a space.
fn plus_hint(form: &Form, name: &str) -> &'static str {
    let raw = form
        .0
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str());
    if raw.is_some_and(|v| v.starts_with(' ')) {
        " (a '+' in a form body must be encoded as %2B; use curl --data-urlencode)"
    } else {
        ""
    }
}

/// What a valid create request asks for.
struct CreateCall {
    to: E164,
    from: E164,
    callback: Option<CallbackSpec>,
    answer_url: Option<String>,
    machine_detection: Option<String>,
}

fn http_url(value: &str) -> bool {
    let rest = value
        .strip_prefix("http://")
        .or_else(|| value.strip_prefix("https://"));
    rest.is_some_and(|r| !r.is_empty() && !r.starts_with('/'))
}

impl CreateCall {
    fn parse(form: &Form) -> Result<Self, ApiError> {
        let to = form
            .first("To")
            .ok_or_else(|| ApiError::bad_request(21201, "No 'To' number is specified"))?;
        let to = E164::parse(to).map_err(|_| {
            ApiError::bad_request(
                21211,
                format!("Invalid 'To' Phone Number: {to}{}", plus_hint(form, "To")),
            )
        })?;
        let from = form
            .first("From")
            .ok_or_else(|| ApiError::bad_request(21213, "No 'From' number is specified"))?;
        let from = E164::parse(from).map_err(|_| {
            ApiError::bad_request(
                21212,
                format!(
                    "Invalid 'From' Phone Number: {from}{}",
                    plus_hint(form, "From")
                ),
            )
        })?;
        check_answer(form)?;
        check_timeout(form)?;
        let machine_detection = machine_detection(form)?;
        let callback = match form.first("StatusCallback") {
            None => None,
            Some(url) => Some(status_callback(form, url)?),
        };
        Ok(Self {
            to,
            from,
            callback,
            answer_url: form.first("Url").map(str::to_owned),
            machine_detection,
        })
    }
}

/// What answers the call: a valid `Url`, or `Twiml` or `ApplicationSid` (which the sim ignores).
fn check_answer(form: &Form) -> Result<(), ApiError> {
    match form.first("Url") {
        Some(url) if !http_url(url) => Err(ApiError::bad_request(
            21205,
            format!("Url is not a valid URL: {url}"),
        )),
        Some(_) => Ok(()),
        None if form.first("Twiml").is_some() || form.first("ApplicationSid").is_some() => Ok(()),
        None => Err(ApiError::bad_request(
            21205,
            "Either a 'Url', 'Twiml' or 'ApplicationSid' parameter is required",
        )),
    }
}

/// `Timeout`, if given: a positive whole number of seconds.
fn check_timeout(form: &Form) -> Result<(), ApiError> {
    if let Some(timeout) = form.first("Timeout")
        && timeout.parse::<u32>().map_or(true, |t| t == 0)
    {
        return Err(ApiError::bad_request(
            21216,
            format!("Timeout must be a positive whole number of seconds: {timeout}"),
        ));
    }
    Ok(())
}

/// `MachineDetection`, if given: `Enable` or `DetectMessageEnd`.
fn machine_detection(form: &Form) -> Result<Option<String>, ApiError> {
    match form.first("MachineDetection") {
        None => Ok(None),
        Some(v) if v == "Enable" || v == "DetectMessageEnd" => Ok(Some(v.to_owned())),
        Some(v) => Err(ApiError::bad_request(
            21221,
            format!("MachineDetection must be Enable or DetectMessageEnd: {v}"),
        )),
    }
}

/// The status callback to `url` (`StatusCallback`), with its method and events.
fn status_callback(form: &Form, url: &str) -> Result<CallbackSpec, ApiError> {
    if !url.starts_with("http://") || !http_url(url) {
        return Err(ApiError::bad_request(
            21609,
            format!(
                "StatusCallback must be an absolute http:// URL (the carrier-sim speaks no TLS): {url}"
            ),
        ));
    }
    let method = match form.first("StatusCallbackMethod") {
        None => Method::Post,
        Some(m) if m.eq_ignore_ascii_case("POST") => Method::Post,
        Some(m) if m.eq_ignore_ascii_case("GET") => Method::Get,
        Some(m) => {
            return Err(ApiError::bad_request(
                21610,
                format!("StatusCallbackMethod must be GET or POST: {m}"),
            ));
        }
    };
    let events = Events::parse(form.all("StatusCallbackEvent")).map_err(|bad| {
        ApiError::bad_request(
            21626,
            format!("StatusCallbackEvent must be initiated, ringing, answered or completed: {bad}"),
        )
    })?;
    Ok(CallbackSpec {
        url: url.to_owned(),
        method,
        events,
    })
}

/// `Idempotency-Key`, or Twilio's `I-Twilio-Idempotency-Token`.
fn idempotency_key(headers: &HeaderMap) -> Option<&str> {
    ["idempotency-key", "i-twilio-idempotency-token"]
        .iter()
        .find_map(|name| headers.get(*name))
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
}

#[tracing::instrument(skip_all)]
async fn create(
    State(sim): State<Arc<Sim>>,
    Path(account): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let requested_at = Utc::now();
    authenticate(&sim, &headers, &account)?;
    let request = CreateCall::parse(&Form::parse(&body)?)?;
    let to = request.to.as_str().to_owned();
    let placed = sim
        .registry
        .place(&account, &to, idempotency_key(&headers), |occurrence| {
            Call::new(
                account.clone(),
                to.clone(),
                request.from.as_str().to_owned(),
                requested_at,
                sim.planner.plan(&to, occurrence),
                request.answer_url.clone(),
                request.machine_detection.clone(),
                request.callback.clone(),
                sim.force_end.child_token(),
            )
        });
    let (body, replayed) = match placed {
        Placed::New(call) => {
            tracing::debug!(call_sid = %call.sid, to = %request.to.last_four(), "call placed");
            // Rendered before the call starts, so the answer says `queued` as Twilio's does.
            let body = resource(&call);
            sim.start(call);
            (body, false)
        }
        Placed::Replayed(call) => (resource(&call), true),
    };
    let mut response = (StatusCode::CREATED, Json(body)).into_response();
    if replayed {
        response
            .headers_mut()
            .insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    Ok(response)
}

#[tracing::instrument(skip_all)]
async fn list(
    State(sim): State<Arc<Sim>>,
    Path(account): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    authenticate(&sim, &headers, &account)?;
    let form = Form::parse(query.unwrap_or_default().as_bytes())?;
    let page_size = match form.first("PageSize") {
        None => 50,
        Some(n) => n
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=1000).contains(n))
            .ok_or_else(|| {
                ApiError::bad_request(20001, format!("PageSize must be 1 to 1000: {n}"))
            })?,
    };
    let (to, from, status) = (form.first("To"), form.first("From"), form.first("Status"));
    let started = TimeFilter::parse(&form, "StartTime")?;
    let ended = TimeFilter::parse(&form, "EndTime")?;
    let calls = sim.registry.list(|c| {
        if c.account_sid != account
            || to.is_some_and(|t| t != c.to)
            || from.is_some_and(|f| f != c.from)
        {
            return false;
        }
        let s = c.state();
        status.is_none_or(|want| want == s.status.as_str())
            && started.matches(s.started_at)
            && ended.matches(s.ended_at)
    });
    let page: Vec<Value> = calls.iter().take(page_size).map(|c| resource(c)).collect();
    let uri = format!("/2010-04-01/Accounts/{account}/Calls.json?PageSize={page_size}&Page=0");
    Ok(Json(json!({
        "calls": page,
        "page": 0,
        "page_size": page_size,
        "start": 0,
        "end": page.len().saturating_sub(1),
        "uri": uri,
        "first_page_uri": uri,
        "next_page_uri": null,
        "previous_page_uri": null,
    })))
}

/// Twilio's list filters on a call's `start_time` / `end_time`: `StartTime=D` (that day),
/// `StartTime>=D` (that day or later; on the wire the parameter is named `StartTime>`) and
/// `StartTime<=D` (that day or earlier), with `D` a UTC date `YYYY-MM-DD` as Twilio takes it,
/// or (an extension) an RFC 3339 instant, compared exactly. A call that has not started (or
/// ended) yet has no such time and matches no filter on it.
#[derive(Debug, Default)]
struct TimeFilter {
    on: Option<Bound>,
    from: Option<Bound>,
    until: Option<Bound>,
}

#[derive(Debug, Clone, Copy)]
enum Bound {
    Day(chrono::NaiveDate),
    Instant(chrono::DateTime<Utc>),
}

impl Bound {
    fn parse(name: &str, value: &str) -> Result<Self, ApiError> {
        if let Ok(day) = chrono::NaiveDate::parse_from_str(value, "%Y-%m-%d") {
            return Ok(Self::Day(day));
        }
        chrono::DateTime::parse_from_rfc3339(value)
            .map(|t| Self::Instant(t.with_timezone(&Utc)))
            .map_err(|_| {
                ApiError::bad_request(
                    20001,
                    format!("{name} must be a date YYYY-MM-DD (or an RFC 3339 time): {value}"),
                )
            })
    }

    /// How `t` compares with the bound (a day bound compares `t`'s UTC date).
    fn cmp(self, t: chrono::DateTime<Utc>) -> std::cmp::Ordering {
        match self {
            Self::Day(d) => t.date_naive().cmp(&d),
            Self::Instant(i) => t.cmp(&i),
        }
    }
}

impl TimeFilter {
    fn parse(form: &Form, name: &str) -> Result<Self, ApiError> {
        let bound = |suffix: &str| {
            let key = format!("{name}{suffix}");
            form.first(&key).map(|v| Bound::parse(&key, v)).transpose()
        };
        Ok(Self {
            on: bound("")?,
            from: bound(">")?,
            until: bound("<")?,
        })
    }

    fn matches(&self, t: Option<chrono::DateTime<Utc>>) -> bool {
        use std::cmp::Ordering::{Equal, Greater, Less};
        if self.on.is_none() && self.from.is_none() && self.until.is_none() {
            return true;
        }
        let Some(t) = t else { return false };
        self.on.is_none_or(|b| b.cmp(t) == Equal)
            && self.from.is_none_or(|b| b.cmp(t) != Less)
            && self.until.is_none_or(|b| b.cmp(t) != Greater)
    }
}

fn find_call(sim: &Sim, account: &str, file: &str) -> Result<Arc<Call>, ApiError> {
    let sid = file.strip_suffix(".json").unwrap_or(file);
    sim.registry
        .get(sid)
        .filter(|c| c.account_sid == account)
        .ok_or_else(|| not_found(&format!("/2010-04-01/Accounts/{account}/Calls/{file}")))
}

#[tracing::instrument(skip_all)]
async fn fetch(
    State(sim): State<Arc<Sim>>,
    Path((account, file)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    authenticate(&sim, &headers, &account)?;
    let call = find_call(&sim, &account, &file)?;
    Ok(Json(resource(&call)))
}

#[tracing::instrument(skip_all)]
async fn modify(
    State(sim): State<Arc<Sim>>,
    Path((account, file)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    authenticate(&sim, &headers, &account)?;
    let form = Form::parse(&body)?;
    let call = find_call(&sim, &account, &file)?;
    let kind = match form.first("Status") {
        Some("canceled") => Some(HangUp::Cancel),
        Some("completed") => Some(HangUp::Complete),
        Some(other) => {
            return Err(ApiError::bad_request(
                21218,
                format!("Status must be canceled or completed: {other}"),
            ));
        }
        // A redirect (Url/Twiml) changes nothing a simulated call does.
        None => None,
    };
    let live = match kind {
        Some(kind) => sim.hang_up(&call, kind).await,
        None => !call.state().status.is_final(),
    };
    if !live {
        return Err(ApiError::bad_request(
            21220,
            "Call is not in-progress. Cannot redirect.",
        ));
    }
    Ok(Json(resource(&call)))
}

/// Twilio's call resource.
fn resource(call: &Call) -> Value {
    let s = call.state().clone();
    let rfc2822 = |t: Option<chrono::DateTime<Utc>>| t.map(|t| t.to_rfc2822());
    json!({
        "sid": call.sid,
        "account_sid": call.account_sid,
        "to": call.to,
        "to_formatted": call.to,
        "from": call.from,
        "from_formatted": call.from,
        "status": s.status.as_str(),
        "direction": "outbound-api",
        "api_version": "2010-04-01",
        "date_created": call.requested_at.to_rfc2822(),
        "date_updated": s.updated_at.to_rfc2822(),
        "start_time": rfc2822(s.started_at),
        "end_time": rfc2822(s.ended_at),
        "duration": s.status.is_final().then(|| duration_secs(&s).to_string()),
        "answered_by": s.answered_by,
        // An extension (Twilio shows no such field): lets a dialer that lost a create answer
        // find its call in the list by the key it sent.
        "idempotency_key": call.idempotency_key,
        "price": null,
        "price_unit": "USD",
        "parent_call_sid": null,
        "phone_number_sid": null,
        "forwarded_from": null,
        "caller_name": null,
        "group_sid": null,
        "trunk_sid": null,
        "queue_time": "0",
        "uri": format!("/2010-04-01/Accounts/{}/Calls/{}.json", call.account_sid, call.sid),
        "subresource_uris": {
            "notifications": format!("/2010-04-01/Accounts/{}/Calls/{}/Notifications.json", call.account_sid, call.sid),
            "recordings": format!("/2010-04-01/Accounts/{}/Calls/{}/Recordings.json", call.account_sid, call.sid),
        },
    })
}

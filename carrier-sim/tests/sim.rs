//! The simulator over real HTTP: a Twilio client's view (reqwest) and a status-callback
//! receiver (a tiny axum server) that checks every signature.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{OriginalUri, State};
use axum::http::{HeaderMap, StatusCode};
use carrier_sim::config::Config;
use carrier_sim::plan::TalkTime;
use carrier_sim::record::{self, CallRecord};
use serde_json::Value;
use shared::domain::CallOutcome;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

const TOKEN: &str = "sim-token";

/// One running simulator with its own record file.
struct Sim {
    addr: SocketAddr,
    dir: tempfile::TempDir,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
    http: reqwest::Client,
}

impl Sim {
    async fn start(tweak: impl FnOnce(&mut Config)) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config::for_tests(dir.path().join("carrier-sim/calls.jsonl"));
        config.ring = Duration::from_millis(20);
        config.talk = TalkTime::Fixed(30);
        config.callback_backoff = Duration::from_millis(10);
        tweak(&mut config);
        let shutdown = CancellationToken::new();
        let (addr, task) = carrier_sim::spawn(config, shutdown.clone()).await.unwrap();
        Self {
            addr,
            dir,
            shutdown,
            task,
            http: reqwest::Client::new(),
        }
    }

    fn record_path(&self) -> std::path::PathBuf {
        self.dir.path().join("carrier-sim/calls.jsonl")
    }

    fn calls_url(&self) -> String {
        format!("http://{}/2010-04-01/Accounts/ACsim/Calls.json", self.addr)
    }

    fn call_url(&self, sid: &str) -> String {
        format!(
            "http://{}/2010-04-01/Accounts/ACsim/Calls/{sid}.json",
            self.addr
        )
    }

    async fn create(&self, params: &[(&str, &str)]) -> reqwest::Response {
        self.http
            .post(self.calls_url())
            .basic_auth("ACsim", Some(TOKEN))
            .form(params)
            .send()
            .await
            .unwrap()
    }

    /// Creates the same call each time, under an idempotency key sent as `header`.
    async fn create_keyed(&self, header: &str, key: &str) -> reqwest::Response {
        self.http
            .post(self.calls_url())
            .basic_auth("ACsim", Some(TOKEN))
            .header(header, key)
            .form(&[
                ("To", "+12015550102"),
                ("From", "+12015550199"),
                ("Url", URL),
            ])
            .send()
            .await
            .unwrap()
    }

    async fn create_ok(&self, params: &[(&str, &str)]) -> Value {
        let resp = self.create(params).await;
        assert_eq!(resp.status(), 201);
        resp.json().await.unwrap()
    }

    async fn fetch(&self, sid: &str) -> Value {
        let resp = self
            .http
            .get(self.call_url(sid))
            .basic_auth("ACsim", Some(TOKEN))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        resp.json().await.unwrap()
    }

    /// Waits until the record holds `n` lines (a liveness bound, not a timing assertion).
    async fn record(&self, n: usize) -> Vec<CallRecord> {
        for _ in 0..1000 {
            let records = record::read(self.record_path());
            if records.len() >= n {
                return records;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!(
            "record never reached {n} lines: {:?}",
            record::read(self.record_path())
        );
    }

    async fn stop(self) -> Vec<CallRecord> {
        let path = self.record_path();
        self.shutdown.cancel();
        self.task.await.unwrap().unwrap();
        record::read(path)
    }
}

/// One status callback as received.
#[derive(Debug, Clone)]
struct Callback {
    params: HashMap<String, String>,
    signature_ok: bool,
    idempotency_token: Option<String>,
}

struct Receiver {
    url: String,
    rx: mpsc::UnboundedReceiver<Callback>,
}

struct ReceiverState {
    tx: mpsc::UnboundedSender<Callback>,
    base: String,
    /// Requests to refuse with 500 before accepting.
    fail_first: AtomicUsize,
}

async fn receive(
    State(state): State<Arc<ReceiverState>>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    if state
        .fail_first
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
    {
        return StatusCode::INTERNAL_SERVER_ERROR;
    }
    let url = format!("{}{}", state.base, uri);
    let body_params: Vec<(String, String)> = serde_urlencoded::from_bytes(&body).unwrap();
    let query_params: Vec<(String, String)> =
        serde_urlencoded::from_str(uri.query().unwrap_or_default()).unwrap();
    let signature = headers
        .get("x-twilio-signature")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let signature_ok = shared::twilio::verify(TOKEN, &url, &body_params, signature);
    let params = query_params.into_iter().chain(body_params).collect();
    let _ = state.tx.send(Callback {
        params,
        signature_ok,
        idempotency_token: headers
            .get("i-twilio-idempotency-token")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
    });
    StatusCode::NO_CONTENT
}

impl Receiver {
    async fn start(fail_first: usize) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (tx, rx) = mpsc::unbounded_channel();
        let state = Arc::new(ReceiverState {
            tx,
            base: base.clone(),
            fail_first: AtomicUsize::new(fail_first),
        });
        let app = axum::Router::new()
            .route("/status", axum::routing::any(receive))
            .with_state(state);
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self {
            url: format!("{base}/status?attempt=a1&x=%2B1"),
            rx,
        }
    }

    async fn next(&mut self) -> Callback {
        tokio::time::timeout(Duration::from_secs(10), self.rx.recv())
            .await
            .expect("no callback within 10 s")
            .expect("receiver closed")
    }

    /// Callbacks until (and including) each of `n` calls' final one.
    async fn until_final(&mut self, n: usize) -> Vec<Callback> {
        let mut all = Vec::new();
        let mut finals = 0;
        while finals < n {
            let cb = self.next().await;
            if cb.params.contains_key("CallDuration") {
                finals += 1;
            }
            all.push(cb);
        }
        all
    }
}

const URL: &str = "https://agent.example/answer?dial=1";

#[tokio::test]
async fn each_last_digit_gives_its_outcome() {
    let sim = Sim::start(|_| {}).await;
    let mut receiver = Receiver::start(0).await;
    let mut sids = HashMap::new();
    for digit in 0..10 {
        let to = format!("+1201555010{digit}");
        let call = sim
            .create_ok(&[
                ("To", &to),
                ("From", "+12015550199"),
                ("Url", URL),
                ("StatusCallback", &receiver.url),
                ("MachineDetection", "Enable"),
            ])
            .await;
        assert_eq!(call["status"], "queued");
        assert_eq!(call["to"], to.as_str());
        assert_eq!(call["from"], "+12015550199");
        let sid = call["sid"].as_str().unwrap().to_owned();
        assert!(sid.starts_with("CA") && sid.len() == 34);
        sids.insert(sid, digit);
    }
    let finals = receiver.until_final(10).await;
    for cb in &finals {
        assert!(cb.signature_ok, "bad signature on {cb:?}");
        let digit = sids[&cb.params["CallSid"]];
        let (status, answered_by) = match digit {
            0..=5 => ("completed", Some("human")),
            6 => ("busy", None),
            7 => ("no-answer", None),
            8 => ("failed", None),
            _ => ("completed", Some("machine_start")),
        };
        assert_eq!(cb.params["CallStatus"], status, "digit {digit}");
        assert_eq!(
            cb.params.get("AnsweredBy").map(String::as_str),
            answered_by,
            "digit {digit}"
        );
        assert_eq!(cb.params["AccountSid"], "ACsim");
        assert_eq!(cb.params["CallbackSource"], "call-progress-events");
        let duration: u64 = cb.params["CallDuration"].parse().unwrap();
        assert_eq!(duration > 0, answered_by.is_some());
    }

    let records = sim.record(10).await;
    assert_eq!(records.len(), 10);
    for r in &records {
        let digit = sids[&r.call_sid];
        let outcome = match digit {
            0..=5 => CallOutcome::Completed,
            6 => CallOutcome::Busy,
            7 => CallOutcome::NoAnswer,
            8 => CallOutcome::Failed,
            _ => CallOutcome::Voicemail,
        };
        assert_eq!(r.outcome, outcome, "digit {digit}");
        assert_eq!(r.answered_at.is_some(), digit <= 5 || digit == 9);
        // Lower bounds only: every call rings its ring time; a connected one talks its talk time.
        let ms = |d: chrono::TimeDelta| d.num_milliseconds();
        match r.answered_at {
            Some(answered) => {
                assert!(ms(answered - r.requested_at) >= 20, "{r:?}");
                assert!(ms(r.ended_at - answered) >= 30, "{r:?}");
            }
            None => assert!(ms(r.ended_at - r.requested_at) >= 20, "{r:?}"),
        }
        assert_eq!(r.to, format!("+1201555010{digit}"));
        assert_eq!(r.from, "+12015550199");

        let fetched = sim.fetch(&r.call_sid).await;
        assert_eq!(fetched["sid"], r.call_sid.as_str());
        let status = fetched["status"].as_str().unwrap();
        assert!(
            ["completed", "busy", "no-answer", "failed"].contains(&status),
            "{status}"
        );
        assert!(fetched["duration"].is_string());
    }
    // Twilio's list, filtered: how a dialer finds a call whose create response it lost.
    let list: Value = sim
        .http
        .get(sim.calls_url())
        .basic_auth("ACsim", Some(TOKEN))
        .query(&[("To", "+12015550106"), ("Status", "busy")])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let listed = list["calls"].as_array().unwrap();
    assert_eq!(listed.len(), 1, "{list}");
    assert_eq!(listed[0]["to"], "+12015550106");
    assert_eq!(listed[0]["status"], "busy");

    let raw = std::fs::read_to_string(sim.record_path()).unwrap();
    let first: Value = serde_json::from_str(raw.lines().next().unwrap()).unwrap();
    let keys: Vec<&str> = first
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    for key in [
        "callSid",
        "to",
        "from",
        "requestedAt",
        "answeredAt",
        "endedAt",
        "outcome",
    ] {
        assert!(keys.contains(&key), "{key} missing from {first}");
    }
    assert!(first["requestedAt"].as_str().unwrap().ends_with('Z'));
    assert_eq!(first["requestedAt"].as_str().unwrap().len(), 24); // 2026-11-24T04:23:00.123Z
    sim.stop().await;
}

#[tokio::test]
async fn progress_callbacks_come_in_order_and_signed() {
    let sim = Sim::start(|_| {}).await;
    let mut receiver = Receiver::start(0).await;
    let call = sim
        .create_ok(&[
            ("To", "+12015550101"),
            ("From", "+12015550199"),
            ("Url", URL),
            ("StatusCallback", &receiver.url),
            ("StatusCallbackEvent", "initiated ringing"),
            ("StatusCallbackEvent", "answered completed"),
        ])
        .await;
    let callbacks = receiver.until_final(1).await;
    let statuses: Vec<&str> = callbacks
        .iter()
        .map(|c| c.params["CallStatus"].as_str())
        .collect();
    assert_eq!(
        statuses,
        ["initiated", "ringing", "in-progress", "completed"]
    );
    for (i, cb) in callbacks.iter().enumerate() {
        assert!(cb.signature_ok);
        assert_eq!(cb.params["SequenceNumber"], i.to_string());
        assert_eq!(cb.params["CallSid"], call["sid"].as_str().unwrap());
        assert_eq!(
            cb.idempotency_token.as_deref(),
            Some(format!("{}-{i}", cb.params["CallSid"]).as_str())
        );
        assert!(chrono::DateTime::parse_from_rfc2822(&cb.params["Timestamp"]).is_ok());
        // The callback URL's own query string survives (the gateway's attempt id lives there).
        assert_eq!(cb.params["attempt"], "a1");
    }
    assert!(!callbacks[2].params.contains_key("AnsweredBy"));

    // GET callbacks carry everything in the query string, signed over the whole URL.
    let call = sim
        .create_ok(&[
            ("To", "+12015550106"),
            ("From", "+12015550199"),
            ("Url", URL),
            ("StatusCallback", &receiver.url),
            ("StatusCallbackMethod", "GET"),
        ])
        .await;
    let callbacks = receiver.until_final(1).await;
    assert_eq!(callbacks.len(), 1, "only the final callback was asked for");
    assert!(callbacks[0].signature_ok);
    assert_eq!(callbacks[0].params["CallStatus"], "busy");
    assert_eq!(
        callbacks[0].params["CallSid"],
        call["sid"].as_str().unwrap()
    );
    sim.stop().await;
}

#[tokio::test]
async fn a_failing_receiver_gets_the_callback_on_a_retry() {
    let sim = Sim::start(|_| {}).await;
    let mut receiver = Receiver::start(2).await;
    sim.create_ok(&[
        ("To", "+12015550107"),
        ("From", "+12015550199"),
        ("Url", URL),
        ("StatusCallback", &receiver.url),
    ])
    .await;
    let cb = receiver.next().await;
    assert_eq!(cb.params["CallStatus"], "no-answer");
    assert!(cb.signature_ok);
    sim.stop().await;
}

#[tokio::test]
async fn an_idempotency_key_places_one_call() {
    let sim = Arc::new(Sim::start(|_| {}).await);
    let mut sids = Vec::new();
    let mut handles = Vec::new();
    for _ in 0..8 {
        let sim = sim.clone();
        handles.push(tokio::spawn(async move {
            let resp = sim.create_keyed("Idempotency-Key", "attempt-42").await;
            assert_eq!(resp.status(), 201);
            let body: Value = resp.json().await.unwrap();
            body["sid"].as_str().unwrap().to_owned()
        }));
    }
    for h in handles {
        sids.push(h.await.unwrap());
    }
    sids.dedup();
    assert_eq!(sids.len(), 1, "one key, one call");

    // Twilio's header works too, and a different key is a different call.
    let again = sim
        .create_keyed("I-Twilio-Idempotency-Token", "attempt-42")
        .await;
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    let again: Value = again.json().await.unwrap();
    assert_eq!(again["sid"], sids[0].as_str());
    assert_eq!(
        again["idempotency_key"], "attempt-42",
        "the resource shows its key (an extension)"
    );
    let other = sim.create_keyed("Idempotency-Key", "attempt-43").await;
    let other: Value = other.json().await.unwrap();
    assert_ne!(other["sid"], sids[0].as_str());

    let sim = Arc::into_inner(sim).unwrap();
    let records = sim.stop().await;
    assert_eq!(records.len(), 2);
}

/// Twilio's call list filtered by `To` and `StartTime` (what a dialer that lost a create
/// answer uses to find the call, or learn that none was placed).
#[tokio::test]
async fn the_call_list_filters_by_number_and_start_time() {
    let sim = Sim::start(|_| {}).await;
    let before = chrono::Utc::now() - chrono::Duration::seconds(1);
    let mine = sim
        .create_ok(&[
            ("To", "+12015550102"),
            ("From", "+12015550199"),
            ("Url", URL),
        ])
        .await;
    sim.create_ok(&[
        ("To", "+12015550103"),
        ("From", "+12015550199"),
        ("Url", URL),
    ])
    .await;
    let list = |query: Vec<(&'static str, String)>| {
        let sim = &sim;
        async move {
            let resp = sim
                .http
                .get(sim.calls_url())
                .basic_auth("ACsim", Some(TOKEN))
                .query(&query)
                .send()
                .await
                .unwrap();
            let status = resp.status().as_u16();
            let body: Value = resp.json().await.unwrap();
            let sids: Vec<String> = body["calls"]
                .as_array()
                .map(|calls| {
                    calls
                        .iter()
                        .map(|c| c["sid"].as_str().unwrap().to_owned())
                        .collect()
                })
                .unwrap_or_default();
            (status, sids)
        }
    };
    let today = chrono::Utc::now().date_naive();
    let day = |d: chrono::NaiveDate| d.format("%Y-%m-%d").to_string();
    let to = || ("To", "+12015550102".to_owned());
    // Wait until the call has started (its start_time is set once it is dialed).
    for _ in 0..100 {
        if !sim.fetch(mine["sid"].as_str().unwrap()).await["start_time"].is_null() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let one = vec![mine["sid"].as_str().unwrap().to_owned()];
    assert!(mine["idempotency_key"].is_null(), "created without a key");
    assert_eq!(list(vec![to()]).await, (200, one.clone()));
    assert_eq!(
        list(vec![to(), ("StartTime>", day(today))]).await,
        (200, one.clone())
    );
    assert_eq!(
        list(vec![to(), ("StartTime", day(today))]).await,
        (200, one.clone())
    );
    assert_eq!(
        list(vec![to(), ("StartTime>", before.to_rfc3339())]).await,
        (200, one.clone()),
        "an RFC 3339 instant is compared exactly"
    );
    let tomorrow = today.succ_opt().unwrap();
    let yesterday = today.pred_opt().unwrap();
    assert_eq!(
        list(vec![to(), ("StartTime>", day(tomorrow))]).await,
        (200, vec![])
    );
    assert_eq!(
        list(vec![to(), ("StartTime<", day(yesterday))]).await,
        (200, vec![])
    );
    assert_eq!(
        list(vec![
            ("To", "+12015550104".to_owned()),
            ("StartTime>", day(today))
        ])
        .await,
        (200, vec![]),
        "nobody called that number"
    );
    assert_eq!(
        list(vec![to(), ("StartTime>", "soon".to_owned())]).await.0,
        400
    );
    // The raw form a URL written by hand uses: `StartTime>=2026-12-01`.
    let raw = sim
        .http
        .get(format!(
            "{}?To=%2B12015550102&StartTime>={}",
            sim.calls_url(),
            day(today)
        ))
        .basic_auth("ACsim", Some(TOKEN))
        .send()
        .await
        .unwrap();
    let raw: Value = raw.json().await.unwrap();
    assert_eq!(raw["calls"].as_array().unwrap().len(), 1);
    sim.stop().await;
}

#[tokio::test]
async fn bad_credentials_and_bad_requests_get_twilio_errors() {
    let sim = Sim::start(|_| {}).await;
    let form = [
        ("To", "+12015550100"),
        ("From", "+12015550199"),
        ("Url", URL),
    ];

    let none = sim
        .http
        .post(sim.calls_url())
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(none.status(), 401);
    assert!(none.headers().contains_key("www-authenticate"));
    let body: Value = none.json().await.unwrap();
    assert_eq!(body["code"], 20003);
    assert_eq!(body["status"], 401);

    let wrong = sim
        .http
        .post(sim.calls_url())
        .basic_auth("ACsim", Some("nope"))
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);

    let other_account = sim
        .http
        .post(format!(
            "http://{}/2010-04-01/Accounts/ACother/Calls.json",
            sim.addr
        ))
        .basic_auth("ACsim", Some(TOKEN))
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(other_account.status(), 404);

    for (params, code) in [
        (vec![("From", "+12015550199"), ("Url", URL)], 21201),
        (
            vec![("To", "12345"), ("From", "+12015550199"), ("Url", URL)],
            21211,
        ),
        (vec![("To", "+12015550100"), ("Url", URL)], 21213),
        (
            vec![("To", "+12015550100"), ("From", "nobody"), ("Url", URL)],
            21212,
        ),
        (
            vec![("To", "+12015550100"), ("From", "+12015550199")],
            21205,
        ),
        (
            vec![
                ("To", "+12015550100"),
                ("From", "+12015550199"),
                ("Url", URL),
                ("StatusCallback", "not a url"),
            ],
            21609,
        ),
        (
            vec![
                ("To", "+12015550100"),
                ("From", "+12015550199"),
                ("Url", URL),
                ("StatusCallback", "http://127.0.0.1:1/x"),
                ("StatusCallbackEvent", "ringing hangup"),
            ],
            21626,
        ),
    ] {
        let resp = sim.create(&params).await;
        assert_eq!(resp.status(), 400, "{params:?}");
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["code"], code, "{params:?}: {body}");
        assert_eq!(body["status"], 400);
        assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()));
        assert!(body["more_info"].as_str().is_some());
    }

    let missing = sim
        .http
        .get(sim.call_url("CA00000000000000000000000000000000"))
        .basic_auth("ACsim", Some(TOKEN))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    assert_eq!(missing.json::<Value>().await.unwrap()["code"], 20404);

    for path in ["/healthz", "/readyz"] {
        let resp = sim
            .http
            .get(format!("http://{}{path}", sim.addr))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{path}");
    }
    let records = sim.stop().await;
    assert!(records.is_empty(), "rejected requests place no call");
}

#[tokio::test]
async fn many_concurrent_calls_leave_a_consistent_record() {
    let sim = Arc::new(
        Sim::start(|c| {
            c.ring = Duration::from_millis(5);
            c.talk = TalkTime::Uniform(0, 50);
        })
        .await,
    );
    let n = 400;
    let mut handles = Vec::new();
    for i in 0..n {
        let sim = sim.clone();
        handles.push(tokio::spawn(async move {
            let to = format!("+1201{i:07}");
            let call = sim
                .create_ok(&[("To", &to), ("From", "+12015550199"), ("Url", URL)])
                .await;
            call["sid"].as_str().unwrap().to_owned()
        }));
    }
    let mut sids = std::collections::HashSet::new();
    for h in handles {
        sids.insert(h.await.unwrap());
    }
    assert_eq!(sids.len(), n);
    let records = sim.record(n).await;
    let sim = Arc::into_inner(sim).unwrap();
    let after_stop = sim.stop().await;
    assert_eq!(records.len(), n);
    assert_eq!(after_stop.len(), n);
    let recorded: std::collections::HashSet<String> =
        records.iter().map(|r| r.call_sid.clone()).collect();
    assert_eq!(recorded, sids);
    let overlap = record::max_overlap(&records);
    assert!(overlap >= 1 && overlap <= n);
    assert!(record::max_starts_per_second(&records) <= n);
    for r in &records {
        assert!(r.requested_at <= r.ended_at);
        let last = r.to.bytes().last().unwrap() - b'0';
        assert_eq!(r.answered_at.is_some(), last <= 5 || last == 9);
    }
}

#[tokio::test]
async fn a_seeded_mix_is_reproducible() {
    async fn run(seed: u64) -> Vec<(String, CallOutcome)> {
        let sim = Sim::start(|c| {
            c.ring = Duration::ZERO;
            c.talk = TalkTime::Fixed(0);
            c.mix = Some("answered=0.5,busy=0.25,no-answer=0.25".parse().unwrap());
            c.seed = seed;
        })
        .await;
        for i in 0..40 {
            let to = format!("+1201555{:04}", i % 20); // each number twice: occurrences 0 and 1
            sim.create_ok(&[("To", &to), ("From", "+12015550199"), ("Url", URL)])
                .await;
        }
        sim.record(40).await;
        let mut outcomes: Vec<(String, CallOutcome)> = sim
            .stop()
            .await
            .into_iter()
            .map(|r| (r.to, r.outcome))
            .collect();
        outcomes.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.as_str().cmp(b.1.as_str())));
        outcomes
    }
    let first = run(7).await;
    assert_eq!(first, run(7).await);
    assert_ne!(first, run(8).await);
    let kinds: std::collections::HashSet<CallOutcome> = first.iter().map(|(_, o)| *o).collect();
    assert!(kinds.contains(&CallOutcome::Completed));
    assert!(!kinds.contains(&CallOutcome::Failed));
}

#[tokio::test]
async fn modify_call_hangs_up() {
    let sim = Sim::start(|c| {
        c.ring = Duration::from_millis(300);
        c.talk = TalkTime::Fixed(60_000);
    })
    .await;
    let post = |sid: String, status: &'static str| {
        let req = sim
            .http
            .post(sim.call_url(&sid))
            .basic_auth("ACsim", Some(TOKEN))
            .form(&[("Status", status)]);
        async move { req.send().await.unwrap() }
    };
    // Cancelled while ringing.
    let ringing = sim
        .create_ok(&[
            ("To", "+12015550100"),
            ("From", "+12015550199"),
            ("Url", URL),
        ])
        .await;
    let ringing_sid = ringing["sid"].as_str().unwrap().to_owned();
    let resp = post(ringing_sid.clone(), "canceled").await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.json::<Value>().await.unwrap()["status"], "canceled");

    // Completed while talking; `canceled` would not touch it.
    let talking = sim
        .create_ok(&[
            ("To", "+12015550101"),
            ("From", "+12015550199"),
            ("Url", URL),
        ])
        .await;
    let talking_sid = talking["sid"].as_str().unwrap().to_owned();
    for _ in 0..500 {
        if sim.fetch(&talking_sid).await["status"] == "in-progress" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let resp = post(talking_sid.clone(), "canceled").await;
    assert_eq!(resp.json::<Value>().await.unwrap()["status"], "in-progress");
    let resp = post(talking_sid.clone(), "completed").await;
    assert_eq!(resp.json::<Value>().await.unwrap()["status"], "completed");
    // An ended call cannot be modified.
    let resp = post(talking_sid.clone(), "completed").await;
    assert_eq!(resp.status(), 400);
    assert_eq!(resp.json::<Value>().await.unwrap()["code"], 21220);

    let records = sim.stop().await;
    let by_sid: HashMap<&str, &CallRecord> =
        records.iter().map(|r| (r.call_sid.as_str(), r)).collect();
    assert_eq!(by_sid[ringing_sid.as_str()].outcome, CallOutcome::Cancelled);
    assert!(by_sid[ringing_sid.as_str()].answered_at.is_none());
    assert_eq!(by_sid[talking_sid.as_str()].outcome, CallOutcome::Completed);
    assert!(by_sid[talking_sid.as_str()].answered_at.is_some());
}

#[tokio::test]
async fn shutdown_ends_calls_in_progress_and_flushes_the_record() {
    let sim = Sim::start(|c| {
        c.ring = Duration::from_millis(50);
        c.talk = TalkTime::Fixed(600_000);
        c.shutdown_grace = Duration::ZERO;
    })
    .await;
    let mut receiver = Receiver::start(0).await;
    sim.create_ok(&[
        ("To", "+12015550100"),
        ("From", "+12015550199"),
        ("Url", URL),
        ("StatusCallback", &receiver.url),
        ("StatusCallbackEvent", "answered"),
    ])
    .await;
    // Answered: now talking for ten minutes.
    assert_eq!(receiver.next().await.params["CallStatus"], "in-progress");
    let records = sim.stop().await;
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].outcome, CallOutcome::Completed);
    // The final callback was delivered before the server task ended.
    assert_eq!(receiver.next().await.params["CallStatus"], "completed");
}

#[tokio::test]
async fn answered_calls_request_their_url_when_asked_to() {
    let sim = Sim::start(|c| c.fetch_answer_url = true).await;
    let mut agent = Receiver::start(0).await;
    let call = sim
        .create_ok(&[
            ("To", "+12015550103"),
            ("From", "+12015550199"),
            ("Url", &agent.url),
        ])
        .await;
    let request = agent.next().await;
    assert!(request.signature_ok);
    assert_eq!(request.params["CallSid"], call["sid"].as_str().unwrap());
    assert_eq!(request.params["CallStatus"], "in-progress");
    assert!(!request.params.contains_key("SequenceNumber"));
    sim.stop().await;
}

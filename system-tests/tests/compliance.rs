//! Calling compliance (invariant 11) across every role, judged from the carrier simulator's
//! call record: recipient-local calling hours at an injected instant, a number put on the
//! do-not-call list mid-campaign, an opt-out during a call, and the audit trail.
//!
//! The stack is `system_tests::stack`'s with one dial worker and two knobs: the
//! workspace's compliance policy and a clock offset (`DIALFLEET_CLOCK_OFFSET_SECS`) given to
//! the scheduler and the dial workers, so they live at a chosen instant.

use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use serde_json::{Value, json};
use testkit::http::SendJson;
use tokio_util::sync::CancellationToken;

/// The shared stack, with this file's submissions and reads of it.
struct Stack(system_tests::stack::Stack);

impl std::ops::Deref for Stack {
    type Target = system_tests::stack::Stack;

    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

/// Starts the carrier simulator (last-digit rule), the gateway, an ingest worker, a scheduler
/// and a dial worker; the scheduler and the dial worker see the clock shifted by
/// `clock_offset_secs`. The workspace has `compliance` as its policy.
async fn start(compliance: api_gateway::admin::Compliance, clock_offset_secs: i64) -> Stack {
    Stack(
        system_tests::stack::Stack::builder("compliance")
            .workspace_limit(10)
            .compliance(compliance)
            .numbers(&["+12015550100"])
            .talk_ms(100)
            .clock_offset_secs(clock_offset_secs)
            .start()
            .await,
    )
}

impl Stack {
    fn calls_to(&self, number: &str) -> usize {
        self.calls().iter().filter(|c| c.to == number).count()
    }

    /// Submits a Dialgen batch; returns its id.
    async fn submit(&self, contacts: Vec<Value>, retry: Value) -> String {
        self.submit_with(contacts, json!({"retryStrategy": retry}))
            .await
    }

    /// Submits a Dialgen batch with these `options` (and 20 calls per second); returns its id.
    async fn submit_with(&self, contacts: Vec<Value>, mut options: Value) -> String {
        options["maxCallsPerSecond"] = json!(20);
        let body = json!({
            "agentId": self.agent, "userId": "u1", "contacts": contacts, "options": options,
        });
        let created: Value = self.post("/api/v1/batch", body).send_json().await;
        created["batchId"]
            .as_str()
            .unwrap_or_else(|| panic!("{created}"))
            .to_owned()
    }

    /// The contact's state, once it is stored.
    async fn state(&self, number: &str) -> Option<String> {
        let client = self.env.db.get().await.unwrap();
        client
            .query_opt(
                "SELECT state FROM contacts WHERE phone_number = $1 ORDER BY row_index LIMIT 1",
                &[&number],
            )
            .await
            .unwrap()
            .map(|r| r.get(0))
    }

    async fn contact(&self, number: &str) -> (uuid::Uuid, String, Option<String>) {
        let client = self.env.db.get().await.unwrap();
        let row = client
            .query_one(
                "SELECT id, state, last_outcome FROM contacts WHERE phone_number = $1
                 ORDER BY row_index LIMIT 1",
                &[&number],
            )
            .await
            .unwrap();
        (row.get(0), row.get(1), row.get(2))
    }
}

/// The next instant, after `now + 60 s`, at which it is 08:00 in Los Angeles (New York is at
/// 11:00 then, inside its hours).
fn next_la_opening(now: DateTime<Utc>) -> DateTime<Utc> {
    let la = chrono_tz::America::Los_Angeles;
    let mut day = now.with_timezone(&la).date_naive();
    loop {
        let at = la
            .from_local_datetime(&day.and_hms_opt(8, 0, 0).unwrap())
            .earliest()
            .unwrap()
            .with_timezone(&Utc);
        if at > now + chrono::Duration::seconds(60) {
            return at;
        }
        day = day.succ_opt().unwrap();
    }
}

#[tokio::test]
async fn new_york_is_dialed_and_los_angeles_waits_for_its_hour() {
    // The roles' clock starts 15 s before 08:00 in Los Angeles (11:00 in New York).
    let opening = next_la_opening(Utc::now());
    let lead = chrono::Duration::seconds(15);
    let offset = (opening - lead - Utc::now()).num_seconds();
    let stack = start(api_gateway::admin::Compliance::default(), offset).await;
    let fake = |t: DateTime<Utc>| t + chrono::Duration::seconds(offset);

    // Answered numbers (last digit 0–5): five in New York (212), five in Los Angeles (213),
    // and one New York number whose contact says it lives in Los Angeles.
    let ny: Vec<String> = (0..5).map(|i| format!("+1212555010{i}")).collect();
    let la: Vec<String> = (0..5).map(|i| format!("+1213555010{i}")).collect();
    let moved = "+12125550105".to_owned();
    let mut contacts: Vec<Value> = ny
        .iter()
        .chain(&la)
        .map(|n| json!({"phoneNumber": n}))
        .collect();
    contacts.push(json!({"phoneNumber": moved, "timezone": "America/Los_Angeles"}));
    let batch = stack.submit(contacts, json!({"maxAttempts": 1})).await;

    stack
        .wait_for(
            "every New York contact dialed",
            Duration::from_secs(12),
            async || ny.iter().all(|n| stack.calls_to(n) == 1),
        )
        .await;
    let calls = stack.calls();
    for c in &calls {
        let at = fake(c.requested_at);
        if c.to.starts_with("+1212") && c.to != moved {
            assert!(at < opening, "{} dialed at {at}, after LA's opening", c.to);
        } else {
            panic!(
                "{} dialed at {at} (roles' clock) before 08:00 in Los Angeles",
                c.to
            );
        }
    }

    // Check-status shows who waits for their hours (an extension of `performance`).
    let status: Value = stack
        .get(&format!("/api/v1/batch/{batch}/status"))
        .send_json()
        .await;
    assert_eq!(
        status["performance"]["deferred"]["recipientHours"], 6,
        "{status}"
    );
    assert!(
        status["performance"]["estimatedTimeRemaining"]
            .as_f64()
            .unwrap_or(0.0)
            >= 1.0
    );

    // At 08:00 Los Angeles time the 213 contacts (and the one living there) are dialed.
    stack
        .wait_for(
            "the Los Angeles contacts dialed at their hour",
            Duration::from_secs(40),
            async || la.iter().chain([&moved]).all(|n| stack.calls_to(n) == 1),
        )
        .await;
    for c in stack.calls() {
        if la.contains(&c.to) || c.to == moved {
            let at = fake(c.requested_at);
            assert!(at >= opening, "{} dialed at {at}, before {opening}", c.to);
        }
    }

    // The audit trail says why they waited.
    let (id, _, _) = stack.contact(&la[0]).await;
    let events: Value = stack
        .get(&format!("/api/contacts/{id}/events"))
        .send_json()
        .await;
    let kinds: Vec<&str> = events["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert_eq!(kinds.first(), Some(&"ingested"), "{events}");
    assert!(kinds.contains(&"deferred"), "{events}");
    assert!(kinds.contains(&"dialed"), "{events}");
    let deferred = events["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["event"] == "deferred")
        .unwrap();
    assert_eq!(deferred["reason"], "recipient_hours");
}

#[tokio::test]
async fn a_listed_number_is_never_called_again_and_an_opt_out_ends_retries() {
    let stack = start(api_gateway::admin::Compliance::off(), 0).await;
    // Busy numbers (last digit 6) are retried every 300 ms, five attempts in all.
    let listed = "+12015550106".to_owned();
    let opted = "+12015550116".to_owned();
    let control = "+12015550126".to_owned();
    let contacts = [&listed, &opted, &control]
        .iter()
        .map(|n| json!({"phoneNumber": n}))
        .collect();
    stack
        .submit(contacts, json!({"maxAttempts": 5, "busyDelay": 300}))
        .await;
    stack
        .wait_for("first calls", Duration::from_secs(10), async || {
            stack.calls_to(&listed) >= 1 && stack.calls_to(&opted) >= 1
        })
        .await;

    // Mid-campaign: one number goes on the list, the other callee opts out during its call.
    let added: Value = stack
        .post(
            "/api/dnc",
            json!({"numbers": [listed.clone()], "reason": "complaint"}),
        )
        .send_json()
        .await;
    assert_eq!(added["added"], 1);
    let listed_at = chrono::Utc::now();
    let listed_calls = stack.calls_to(&listed);
    let dial_id: uuid::Uuid = {
        let client = stack.env.db.get().await.unwrap();
        client
            .query_one(
                "SELECT id FROM dial_attempts WHERE to_number = $1 ORDER BY attempt_no DESC LIMIT 1",
                &[&opted],
            )
            .await
            .unwrap()
            .get(0)
    };
    let out: Value = stack
        .post(&format!("/api/dials/{dial_id}/opt_out"), json!({}))
        .send_json()
        .await;
    assert_eq!(out["optedOut"], true, "{out}");
    let opted_calls = stack.calls_to(&opted);

    // The control number uses all its attempts; the others are called no more.
    stack
        .wait_for(
            "the control's five attempts",
            Duration::from_secs(30),
            async || stack.calls_to(&control) == 5,
        )
        .await;
    for (number, before) in [(&listed, listed_calls), (&opted, opted_calls)] {
        stack
            .wait_for("the contact to end", Duration::from_secs(10), async || {
                let (_, state, _) = stack.contact(number).await;
                state == "failed" || state == "completed"
            })
            .await;
        // A call already placed when the number was listed may still be in the record; no
        // call starts after.
        let now = stack.calls_to(number);
        assert!(
            now <= before + 1,
            "{number}: {before} calls when listed, {now} now"
        );
        assert!(now < 5, "{number} was retried to the end: {now} calls");
        let (id, _, outcome) = stack.contact(number).await;
        assert_eq!(outcome.as_deref(), Some("suppressed"), "{number}");
        let events: Value = stack
            .get(&format!("/api/contacts/{id}/events"))
            .send_json()
            .await;
        assert!(
            events["data"]
                .as_array()
                .unwrap()
                .iter()
                .any(|e| e["event"] == "suppressed"),
            "{events}"
        );
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    // The carrier's record, to the millisecond: the list is read last right before each
    // request, so only a call that had passed that look as the number was listed may arrive
    // after it, a moment later — none a second later.
    let late: Vec<_> = stack
        .calls()
        .into_iter()
        .filter(|c| c.to == listed && c.requested_at > listed_at)
        .map(|c| c.requested_at)
        .collect();
    assert!(late.len() <= 1, "calls after the listing: {late:?}");
    let grace = listed_at + chrono::Duration::seconds(1);
    assert!(
        late.iter().all(|at| *at <= grace),
        "called after it was listed: {late:?}, listed at {listed_at}"
    );

    // A later batch with the listed number rejects that row at ingest.
    let batch = stack
        .submit(
            vec![
                json!({"phoneNumber": listed}),
                json!({"phoneNumber": "+12015550130"}),
            ],
            json!({"maxAttempts": 1}),
        )
        .await;
    stack
        .wait_for("the rejection", Duration::from_secs(10), async || {
            let client = stack.env.db.get().await.unwrap();
            let batch: uuid::Uuid = batch.parse().unwrap();
            client
                .query_opt(
                    "SELECT 1 FROM rejected_rows WHERE batch_id = $1 AND reason = 'do_not_call'",
                    &[&batch],
                )
                .await
                .unwrap()
                .is_some()
        })
        .await;

    // The list itself: look-up, CSV import, delete.
    let found: Value = stack
        .get(&format!("/api/dnc?number={}", "%2B12015550106"))
        .send_json()
        .await;
    assert_eq!(found["data"][0]["reason"], "complaint", "{found}");
    let csv: String = std::iter::once("number\n".to_owned())
        .chain((0..1000).map(|i| format!("(415) 555-{i:04}\n")))
        .collect();
    let r = stack
        .http
        .post(format!("{}/api/dnc?reason=import", stack.gateway))
        .bearer_auth(&stack.key)
        .header("content-type", "text/csv")
        .body(csv)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["added"], 1000);
    let bad = stack
        .http
        .post(format!("{}/api/dnc", stack.gateway))
        .bearer_auth(&stack.key)
        .header("content-type", "text/csv")
        .body("+14155550000\nnot a number\n")
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 422);
    assert!(bad.text().await.unwrap().contains("line 2"));
    let r = stack
        .http
        .delete(format!("{}/api/dnc/%2B14155550001", stack.gateway))
        .bearer_auth(&stack.key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let page: Value = stack.get("/api/dnc?limit=1000").send_json().await;
    // 1000 imported + the listed + the opted out − the deleted one.
    assert_eq!(
        page["data"].as_array().unwrap().len(),
        1000,
        "{}",
        page["cursor"]
    );
    assert!(page["cursor"].is_string());
}

#[tokio::test]
async fn a_capped_number_is_deferred_across_batches() {
    let compliance = api_gateway::admin::Compliance {
        max_calls_per_number: Some((2, 7)),
        ..api_gateway::admin::Compliance::off()
    };
    let stack = start(compliance, 0).await;
    // A busy number, retried every 200 ms up to five attempts: the cap allows two calls in
    // seven days, so the third attempt waits (deferred, not failed).
    let capped = "+12015550146".to_owned();
    stack
        .submit(
            vec![json!({"phoneNumber": capped})],
            json!({"maxAttempts": 5, "busyDelay": 200}),
        )
        .await;
    stack
        .wait_for("the cap to defer the contact", Duration::from_secs(20), async || {
            let client = stack.env.db.get().await.unwrap();
            client
                .query_opt(
                    "SELECT 1 FROM contacts WHERE phone_number = $1 AND state = 'queued'
                       AND hold_reason = 'frequency_cap' AND next_attempt_at > now() + interval '6 days'",
                    &[&capped],
                )
                .await
                .unwrap()
                .is_some()
        })
        .await;
    // Another batch with the same number: counted across batches, so not called either.
    stack
        .submit(
            vec![json!({"phoneNumber": capped})],
            json!({"maxAttempts": 1}),
        )
        .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(stack.calls_to(&capped), 2, "{:?}", stack.calls());
    let client = stack.env.db.get().await.unwrap();
    let held: i64 = client
        .query_one(
            "SELECT count(*) FROM contacts WHERE phone_number = $1 AND state = 'queued'
               AND hold_reason = 'frequency_cap'",
            &[&capped],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(held, 2, "both batches' contacts wait for the cap");
    let (id, _, _) = stack.contact(&capped).await;
    let events: Value = stack
        .get(&format!("/api/contacts/{id}/events"))
        .send_json()
        .await;
    assert!(
        events["data"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["event"] == "deferred" && e["reason"] == "frequency_cap"),
        "{events}"
    );
}

#[tokio::test]
async fn a_machine_answer_is_recorded_as_voicemail_and_retried_only_when_asked() {
    let stack = start(api_gateway::admin::Compliance::off(), 0).await;
    // Last digit 9: an answering machine picks up. Machine detection on for both batches; the
    // second retries voicemails after 300 ms (`voicemailDelay`), up to two attempts.
    let once = "+12015550159".to_owned();
    let twice = "+12015550169".to_owned();
    let once_batch = stack
        .submit_with(
            vec![json!({"phoneNumber": once})],
            json!({"machineDetection": "Enable", "retryStrategy": {"maxAttempts": 2}}),
        )
        .await;
    stack
        .submit_with(
            vec![json!({"phoneNumber": twice})],
            json!({"machineDetection": "DetectMessageEnd",
                   "retryStrategy": {"maxAttempts": 2, "voicemailDelay": 300}}),
        )
        .await;
    stack
        .wait_for("both contacts final", Duration::from_secs(20), async || {
            stack.state(&once).await.as_deref() == Some("completed")
                && stack.state(&twice).await.as_deref() == Some("completed")
        })
        .await;
    assert_eq!(stack.calls_to(&once), 1, "a voicemail is final by default");
    assert_eq!(stack.calls_to(&twice), 2, "voicemailDelay retries it");
    for number in [&once, &twice] {
        let (_, _, outcome) = stack.contact(number).await;
        assert_eq!(outcome.as_deref(), Some("voicemail"), "{number}");
    }
    let client = stack.env.db.get().await.unwrap();
    let outcomes: Vec<String> = client
        .query(
            "SELECT outcome FROM dial_attempts WHERE outcome IS NOT NULL",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(outcomes.len(), 3);
    assert!(outcomes.iter().all(|o| o == "voicemail"), "{outcomes:?}");
    // The simulator's own record agrees: the machine picked up, and each call asked for the
    // job's own kind of detection, by its exact name (not `Enable` for both).
    assert!(
        stack
            .calls()
            .iter()
            .all(|c| c.outcome == shared::domain::CallOutcome::Voicemail),
        "{:?}",
        stack.calls()
    );
    for (number, asked) in [(&once, "Enable"), (&twice, "DetectMessageEnd")] {
        let calls: Vec<_> = stack
            .calls()
            .into_iter()
            .filter(|c| &c.to == number)
            .collect();
        assert!(!calls.is_empty());
        assert!(
            calls
                .iter()
                .all(|c| c.machine_detection.as_deref() == Some(asked)),
            "{number}: {calls:?}"
        );
    }
    // Counted as a voicemail, not a success.
    let check: Value = stack
        .get(&format!("/api/v1/batch/check-status?batchId={once_batch}"))
        .send_json()
        .await;
    let st = &check["statistics"];
    assert_eq!(
        (&st["succeeded"], &st["voicemail"], &st["processed"]),
        (&json!(0), &json!(1), &json!(1)),
        "{st}"
    );
    // A bad value names its field.
    let r = stack
        .post(
            "/api/v1/batch",
            json!({"agentId": stack.agent, "userId": "u1",
                   "contacts": [{"phoneNumber": "+12015550100"}],
                   "options": {"machineDetection": "Sometimes"}}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
    assert!(r.text().await.unwrap().contains("options.machineDetection"));
}

/// The counts by state, outcome and hold reason, and the chart's attempts by minute and
/// outcome: from the aggregates (what every surface reads) and from a fresh scan of the contacts
/// and attempts, in one snapshot.
async fn counters_and_scan(
    db: &shared::db::Pool,
    ids: &[uuid::Uuid],
) -> (
    std::collections::BTreeMap<(uuid::Uuid, String, String, String), i64>,
    std::collections::BTreeMap<(uuid::Uuid, String, String, String), i64>,
) {
    let mut client = db.get().await.unwrap();
    let txn = client
        .build_transaction()
        .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await
        .unwrap();
    let mut kept = std::collections::BTreeMap::new();
    for (batch, groups) in shared::db::counters::load(&txn, ids).await.unwrap() {
        for g in groups {
            let key = (
                batch,
                g.state.as_str().to_owned(),
                g.last_outcome.map_or("", |o| o.as_str()).to_owned(),
                g.hold_reason.unwrap_or_default(),
            );
            kept.insert(key, g.n);
        }
    }
    let mut scanned = std::collections::BTreeMap::new();
    for r in txn
        .query(
            "SELECT batch_id, state, coalesce(last_outcome, '') AS o, coalesce(hold_reason, '') AS h,
                    count(*) AS n
             FROM contacts WHERE batch_id = ANY($1) GROUP BY 1, 2, 3, 4",
            &[&ids],
        )
        .await
        .unwrap()
    {
        scanned.insert(
            (r.get("batch_id"), r.get("state"), r.get("o"), r.get("h")),
            r.get::<_, i64>("n"),
        );
    }
    // The chart's minute aggregate (V17) against a scan of the attempts, in the same snapshot,
    // keyed (batch, "minute <start>", outcome, "").
    let minutes_sql = shared::db::counters::minutes_of("$1", "NULL::timestamptz");
    for id in ids {
        for r in txn.query(&minutes_sql, &[id]).await.unwrap() {
            let key = (
                *id,
                format!("minute {}", r.get::<_, i64>("m")),
                r.get("o"),
                String::new(),
            );
            kept.insert(key, r.get::<_, i64>("n"));
        }
    }
    for r in txn
        .query(
            "SELECT batch_id, extract(epoch FROM date_trunc('minute', created_at, 'UTC'))::bigint AS m,
                    coalesce(outcome, '') AS o, count(*) AS n
             FROM dial_attempts WHERE batch_id = ANY($1) GROUP BY 1, 2, 3",
            &[&ids],
        )
        .await
        .unwrap()
    {
        let key = (
            r.get("batch_id"),
            format!("minute {}", r.get::<_, i64>("m")),
            r.get("o"),
            String::new(),
        );
        scanned.insert(key, r.get::<_, i64>("n"));
    }
    txn.commit().await.unwrap();
    (kept, scanned)
}

/// The batch counters (migration V12) stay exact through a whole campaign across real
/// processes: retries (busy, no-answer), a frequency cap deferring the third attempts, a
/// cancelled batch, numbers put on the do-not-call list mid-campaign (suppressed), rows appended
/// to a running batch, voicemails. At every sample (one snapshot each) and at the end, the
/// counters equal a fresh COUNT of the contacts, and the chart's minutes (V17) one of the
/// attempts; and the gateway folds the deltas away.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_batch_counters_equal_a_fresh_count_throughout_a_campaign() {
    let compliance = api_gateway::admin::Compliance {
        max_calls_per_number: Some((2, 1)),
        ..api_gateway::admin::Compliance::off()
    };
    let stack = start(compliance, 0).await;
    let numbers = |prefix: &str, n: usize| -> Vec<Value> {
        (0..n)
            .map(|i| json!({"phoneNumber": format!("{prefix}{i:04}")}))
            .collect()
    };
    let retry = json!({"maxAttempts": 3, "busyDelay": 300, "noAnswerDelay": 300});
    let a = stack
        .submit_with(
            numbers("+1201555", 40),
            json!({"retryStrategy": retry, "machineDetection": "Enable"}),
        )
        .await;
    let b = stack
        .submit_with(numbers("+1201556", 40), json!({"retryStrategy": retry}))
        .await;
    let ids: Vec<uuid::Uuid> = [&a, &b]
        .iter()
        .map(|s| uuid::Uuid::parse_str(s).unwrap())
        .collect();

    // A sampler comparing the two all along.
    let stop = CancellationToken::new();
    let sampler = {
        let (db, ids, stop) = (stack.env.db.clone(), ids.clone(), stop.clone());
        tokio::spawn(async move {
            let (mut samples, mut differ) = (0, Vec::new());
            while !stop.is_cancelled() {
                let (kept, scanned) = counters_and_scan(&db, &ids).await;
                samples += 1;
                if kept != scanned {
                    differ.push((kept, scanned));
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            (samples, differ)
        })
    };

    // Calls flow; then batch B is cancelled, busy and no-answer numbers of A are listed, and
    // rows are appended to A while it runs.
    stack
        .wait_for("the first calls", Duration::from_secs(20), async || {
            stack.calls().len() >= 8
        })
        .await;
    let r = stack
        .post(&format!("/api/batch_dial_jobs/{b}/cancel"), json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let listed: Vec<String> = (0..40)
        .filter(|i| i % 10 == 6 || i % 10 == 7)
        .step_by(2)
        .map(|i| format!("+1201555{i:04}"))
        .collect();
    let r = stack
        .post("/api/dnc", json!({"numbers": listed, "reason": "opt-out"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    {
        let client = stack.env.db.get().await.unwrap();
        client
            .execute(
                "INSERT INTO contacts (id, batch_id, workspace_id, row_index, phone_number, timezones)
                 SELECT gen_random_uuid(), b.id, b.workspace_id, 1000 + i, '+1201557' || lpad(i::text, 4, '0'), '{}'
                 FROM batches b, generate_series(0, 9) i WHERE b.id = $1",
                &[&ids[0]],
            )
            .await
            .unwrap();
    }
    stack
        .wait_for("batch A to finish", Duration::from_secs(90), async || {
            let client = stack.env.db.get().await.unwrap();
            let open: i64 = client
                .query_one(
                    "SELECT count(*) FROM contacts WHERE batch_id = ANY($1)
                       AND (state IN ('released', 'dialing')
                            OR (state = 'queued' AND hold_reason IS NULL AND batch_id = $2))",
                    &[&ids, &ids[0]],
                )
                .await
                .unwrap()
                .get(0);
            open == 0
        })
        .await;
    stop.cancel();
    let (samples, differ) = sampler.await.unwrap();
    assert!(samples > 10, "{samples} samples");
    assert!(
        differ.is_empty(),
        "{} of {samples} samples differ; first: {:?}",
        differ.len(),
        differ.first()
    );

    // What the campaign went through, so the comparison covered it.
    let (kept, scanned) = counters_and_scan(&stack.env.db, &ids).await;
    assert_eq!(kept, scanned);
    let has = |state: &str, outcome: &str, hold: &str| {
        kept.iter()
            .any(|((_, s, o, h), n)| s == state && o == outcome && h == hold && *n > 0)
    };
    assert!(has("completed", "voicemail", ""), "{kept:?}");
    assert!(has("failed", "suppressed", ""), "{kept:?}");
    assert!(has("cancelled", "", ""), "{kept:?}");
    assert!(
        has("queued", "busy", "frequency_cap") || has("queued", "no-answer", "frequency_cap"),
        "{kept:?}"
    );
    let appended: i64 = kept
        .iter()
        .filter(|((batch, state, ..), _)| *batch == ids[0] && !state.starts_with("minute "))
        .map(|(_, n)| n)
        .sum();
    assert_eq!(appended, 50, "40 submitted and 10 appended rows");
    assert!(
        kept.keys()
            .any(|(_, s, o, _)| s.starts_with("minute ") && o == "busy"),
        "the chart's minutes hold the calls: {kept:?}"
    );

    // The gateway folds the deltas into the counters (every second).
    stack
        .wait_for("the deltas folded", Duration::from_secs(10), async || {
            let client = stack.env.db.get().await.unwrap();
            let left: i64 = client
                .query_one(
                    "SELECT count(*) FROM batch_counter_deltas WHERE batch_id = ANY($1)",
                    &[&ids],
                )
                .await
                .unwrap()
                .get(0);
            left == 0
        })
        .await;
    let (folded, scanned) = counters_and_scan(&stack.env.db, &ids).await;
    assert_eq!(folded, scanned);
    // And check-status shows the same counts.
    let check: Value = stack
        .get(&format!("/api/v1/batch/check-status?batchId={a}"))
        .send_json()
        .await;
    assert_eq!(check["statistics"]["total"], 50);
    assert_eq!(
        check["performance"]["deferred"]["frequencyCap"],
        kept.iter()
            .filter(|((batch, s, _, h), _)| *batch == ids[0]
                && s == "queued"
                && h == "frequency_cap")
            .map(|(_, n)| n)
            .sum::<i64>()
    );
}

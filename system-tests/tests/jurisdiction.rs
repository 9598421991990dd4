//! Compliance by jurisdiction (issue #25, invariant 11) across every role, judged from the
//! carrier simulator's call record at a fixed instant: the scheduler and the dial workers live
//! on a clock shifted by `DIALFLEET_CLOCK_OFFSET_SECS` (as in `compliance.rs`), so "20:30 in
//! Miami" is a chosen instant of the test.
//!
//! - a Florida number at 20:30 its time is held (`state_hours`, `US-FL-hours`) while a Georgia
//!   number at the same local time is called;
//! - `jurisdictionRules: "federal"` calls the Florida number at 20:30;
//! - a Florida number always busy (maxAttempts 5, 1-second retries) is called exactly 3 times,
//!   then held with `state_call_cap`; the same with two dial workers and the number in two
//!   batches, racing for the calls.

use std::time::Duration;

use serde_json::{Value, json};
use testkit::http::SendJson;

const FLORIDA: &str = "+13055550100";
const GEORGIA: &str = "+14045550100";
/// Last digit 6: the simulator answers busy.
const FLORIDA_BUSY: &str = "+13055550106";

/// The clock offset (seconds) that puts the roles at the next `hh:mm` in New York (Miami and
/// Atlanta are on its clock). Never negative: a retry's due time is stamped by the database's
/// own clock, so on a clock set back it would lie in the roles' future.
fn offset_to_new_york(hh: u32, mm: u32) -> i64 {
    let ny = chrono_tz::America::New_York;
    let now = chrono::Utc::now();
    let mut day = now.with_timezone(&ny).date_naive();
    loop {
        let target = day
            .and_hms_opt(hh, mm, 0)
            .unwrap()
            .and_local_timezone(ny)
            .earliest()
            .unwrap()
            .with_timezone(&chrono::Utc);
        if target > now {
            return (target - now).num_seconds();
        }
        day = day.succ_opt().unwrap();
    }
}

/// The stack with the default compliance policy (recipient hours on, `strictest`), `workers`
/// dial workers, its roles' clock at `hh:mm` in New York.
async fn start(name: &str, hh: u32, mm: u32, workers: usize) -> system_tests::stack::Stack {
    system_tests::stack::Stack::builder(name)
        .workspace_limit(10)
        .compliance(api_gateway::admin::Compliance::default())
        .numbers(&["+12015550100"])
        .talk_ms(100)
        .dial_workers(workers)
        .clock_offset_secs(offset_to_new_york(hh, mm))
        .start()
        .await
}

/// Submits a Dialgen batch of `numbers` with `retry`; returns its id.
async fn submit(stack: &system_tests::stack::Stack, numbers: &[&str], retry: Value) -> String {
    let contacts: Vec<Value> = numbers.iter().map(|n| json!({"phoneNumber": n})).collect();
    let body = json!({
        "agentId": stack.agent, "userId": "u1", "contacts": contacts,
        "options": {"maxCallsPerSecond": 20, "retryStrategy": retry},
    });
    let created: Value = stack.post("/api/v1/batch", body).send_json().await;
    created["batchId"]
        .as_str()
        .unwrap_or_else(|| panic!("{created}"))
        .to_owned()
}

fn calls_to(stack: &system_tests::stack::Stack, number: &str) -> usize {
    stack.calls().iter().filter(|c| c.to == number).count()
}

/// The contacts of `number` (every batch) held with `reason`.
async fn held(stack: &system_tests::stack::Stack, number: &str, reason: &str) -> i64 {
    let client = stack.env.db.get().await.unwrap();
    client
        .query_one(
            "SELECT count(*) FROM contacts WHERE phone_number = $1 AND state = 'queued'
               AND hold_reason = $2",
            &[&number, &reason],
        )
        .await
        .unwrap()
        .get(0)
}

/// The detail of the latest `deferred` event of `number`'s contacts.
async fn deferred_detail(stack: &system_tests::stack::Stack, number: &str) -> Value {
    let client = stack.env.db.get().await.unwrap();
    client
        .query_one(
            "SELECT e.detail FROM contact_events e JOIN contacts c ON c.id = e.contact_id
             WHERE c.phone_number = $1 AND e.kind = 'deferred' ORDER BY e.id DESC LIMIT 1",
            &[&number],
        )
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn florida_at_half_past_eight_is_held_by_its_rule_while_georgia_is_called() {
    let stack = start("jurisdiction-hours", 20, 30, 1).await;
    let batch = submit(&stack, &[FLORIDA, GEORGIA], json!({"maxAttempts": 1})).await;
    stack
        .wait_for("Georgia called", Duration::from_secs(20), async || {
            calls_to(&stack, GEORGIA) == 1
        })
        .await;
    stack
        .wait_for("Florida held", Duration::from_secs(10), async || {
            held(&stack, FLORIDA, "state_hours").await == 1
        })
        .await;
    // A few more ticks and looks: still not called.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(calls_to(&stack, FLORIDA), 0, "{:?}", stack.calls());

    let detail = deferred_detail(&stack, FLORIDA).await;
    assert_eq!(detail["rule"], "US-FL-hours", "{detail}");
    assert_eq!(detail["citation"], "Fla. Stat. 501.616(6)(a)", "{detail}");
    assert_eq!(
        detail["version"],
        shared::compliance::enforce::shipped_pack().version(),
        "{detail}"
    );

    // Visible to the user: the hold and its minute (08:00 in Miami, the next morning).
    let calls: Value = stack
        .get(&format!("/api/v1/status/batch?batchId={batch}"))
        .send_json()
        .await;
    let florida = calls["calls"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["phoneNumber"] == FLORIDA)
        .unwrap();
    assert_eq!(florida["holdReason"], "state_hours", "{calls}");
    let next: chrono::DateTime<chrono::Utc> =
        florida["nextAttemptAt"].as_str().unwrap().parse().unwrap();
    let local = next.with_timezone(&chrono_tz::America::New_York);
    assert_eq!(local.format("%H:%M").to_string(), "08:00", "{next}");
    let status: Value = stack
        .get(&format!("/api/v1/batch/{batch}/status"))
        .send_json()
        .await;
    assert_eq!(status["statistics"]["held"], 1, "{status}");
}

#[tokio::test]
async fn federal_rules_call_florida_at_half_past_eight() {
    let stack = start("jurisdiction-federal", 20, 30, 1).await;
    let client = stack.env.db.get().await.unwrap();
    client
        .execute(
            "UPDATE workspaces SET jurisdiction_rules = 'federal' WHERE id = $1",
            &[&stack.workspace],
        )
        .await
        .unwrap();
    submit(&stack, &[FLORIDA], json!({"maxAttempts": 1})).await;
    stack
        .wait_for("Florida called", Duration::from_secs(20), async || {
            calls_to(&stack, FLORIDA) == 1
        })
        .await;
}

/// Waits until every contact of the busy Florida number is held by the cap, then gives the
/// roles a few more seconds (several retry delays) to over-call if they would.
async fn capped_after_three(stack: &system_tests::stack::Stack, contacts: i64) {
    stack
        .wait_for(
            "the Florida cap to hold the number",
            Duration::from_secs(40),
            async || held(stack, FLORIDA_BUSY, "state_call_cap").await == contacts,
        )
        .await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(
        calls_to(stack, FLORIDA_BUSY),
        3,
        "Fla. Stat. 501.616(6)(b): {:?}",
        stack.calls()
    );
    assert_eq!(held(stack, FLORIDA_BUSY, "state_call_cap").await, contacts);
    let detail = deferred_detail(stack, FLORIDA_BUSY).await;
    assert_eq!(detail["rule"], "US-FL-cap", "{detail}");
    assert_eq!(detail["citation"], "Fla. Stat. 501.616(6)(b)", "{detail}");
}

#[tokio::test]
async fn an_always_busy_florida_number_is_called_three_times_then_held_by_the_cap() {
    let stack = start("jurisdiction-cap", 10, 0, 1).await;
    let retry = json!({"maxAttempts": 5, "busyDelay": 1000, "noAnswerDelay": 1000});
    let batch = submit(&stack, &[FLORIDA_BUSY], retry).await;
    capped_after_three(&stack, 1).await;
    let calls: Value = stack
        .get(&format!("/api/v1/status/batch?batchId={batch}"))
        .send_json()
        .await;
    assert_eq!(calls["calls"][0]["holdReason"], "state_call_cap", "{calls}");
    assert!(calls["calls"][0]["nextAttemptAt"].is_string(), "{calls}");
}

#[tokio::test]
async fn two_dial_workers_and_two_batches_still_call_the_number_three_times() {
    let stack = start("jurisdiction-cap-race", 10, 0, 2).await;
    let retry = json!({"maxAttempts": 5, "busyDelay": 1000, "noAnswerDelay": 1000});
    submit(&stack, &[FLORIDA_BUSY], retry.clone()).await;
    submit(&stack, &[FLORIDA_BUSY], retry).await;
    capped_after_three(&stack, 2).await;
}

//! The preflight's agreement across every role (issue #25): what `POST /api/v1/batch/preflight`
//! says a body will do is what the batch created from the same body then does. At an injected
//! instant (20:30 in New York: the roles' clock shifted, the preflight asked `?at=` that instant),
//! a body with rows of every verdict is preflighted, then created; the real ingest worker,
//! scheduler and dial worker take it from there. Judged from the stored rows and the
//! carrier-sim's record:
//! - every rejected row has the preflight's row number and reason in the batch's rejected list;
//! - every held row's contact carries the preflight's `holdReason` (`state_hours` for Florida
//!   and for a Georgia number declared in Florida, `unknown_timezone` for a number without a
//!   zone) and is never dialed;
//! - every row the preflight calls callable is dialed.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use serde_json::{Value, json};
use testkit::http::SendJson;

/// The next 20:30 in New York at least a minute from `now`.
fn next_evening(now: DateTime<Utc>) -> DateTime<Utc> {
    let ny = chrono_tz::America::New_York;
    let mut day = now.with_timezone(&ny).date_naive();
    loop {
        let at = ny
            .from_local_datetime(&day.and_hms_opt(20, 30, 0).unwrap())
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
async fn what_the_preflight_says_is_what_the_batch_does() {
    let evening = next_evening(Utc::now());
    let offset = (evening - Utc::now()).num_seconds();
    let stack = system_tests::stack::Stack::builder("preflight")
        .workspace_limit(10)
        .compliance(api_gateway::admin::Compliance::default())
        .numbers(&["+12015550100"])
        .talk_ms(100)
        .clock_offset_secs(offset)
        .start()
        .await;
    let listed: Value = stack
        .post("/api/dnc", json!({"numbers": ["+12125550109"]}))
        .send_json()
        .await;
    assert_eq!(listed["added"], 1);
    let contacts = json!([
        {"phoneNumber": "+12125550100"},                 // 1 New York, 20:30: call
        {"phoneNumber": "+13055550100"},                 // 2 Florida: state_hours
        {"phoneNumber": "not a number"},                 // 3 invalid_number
        {"phoneNumber": "+12135550101"},                 // 4 Los Angeles, 17:30: call
        {"phoneNumber": "+1 212 555 0100"},              // 5 duplicate of row 1
        {"phoneNumber": "+870773111632"},                // 6 no zone: unknown_timezone
        {"phoneNumber": "+12125550109"},                 // 7 do_not_call
        {"phoneNumber": "+14045550102", "state": "FL"},  // 8 Georgia declared in Florida
        {"phoneNumber": "+14045550103"},                 // 9 Georgia: call
    ]);
    let body = json!({
        "agentId": stack.agent, "userId": "u1", "contacts": contacts,
        "options": {"maxCallsPerSecond": 20, "retryStrategy": {"maxAttempts": 1}},
    });
    // The roles' instant, now.
    let at = (Utc::now() + chrono::Duration::seconds(offset)).to_rfc3339();
    let preflight: Value = stack
        .post(
            &format!(
                "/api/v1/batch/preflight?rows=all&at={}",
                at.replace('+', "%2B")
            ),
            body.clone(),
        )
        .send_json()
        .await;
    let said: BTreeMap<i64, (String, Option<String>)> = preflight["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["row"].as_i64().unwrap(),
                (
                    d["verdict"].as_str().unwrap().to_owned(),
                    d["reason"].as_str().map(str::to_owned),
                ),
            )
        })
        .collect();
    let verdict = |row: i64| said[&row].0.as_str();
    assert_eq!(
        (1..=9).map(verdict).collect::<Vec<_>>(),
        [
            "call", "hold", "reject", "call", "reject", "hold", "reject", "hold", "call"
        ],
        "{preflight}"
    );

    let created: Value = stack.post("/api/v1/batch", body).send_json().await;
    let batch: uuid::Uuid = created["batchId"].as_str().unwrap().parse().unwrap();
    let callable: Vec<String> = ["+12125550100", "+12135550101", "+14045550103"]
        .map(str::to_owned)
        .to_vec();
    stack
        .wait_for(
            "every callable row dialed",
            Duration::from_secs(30),
            async || {
                let calls = stack.calls();
                callable.iter().all(|n| calls.iter().any(|c| &c.to == n))
            },
        )
        .await;
    let client = stack.env.db.get().await.unwrap();
    // The held rows' contacts carry their hold once the scheduler has screened them.
    let mut held: BTreeMap<i64, Option<String>> = BTreeMap::new();
    for _ in 0..100 {
        held = client
            .query(
                "SELECT row_index, hold_reason FROM contacts WHERE batch_id = $1 AND row_index = ANY($2)",
                &[&batch, &vec![1i32, 5, 7]],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| (i64::from(r.get::<_, i32>(0)) + 1, r.get(1)))
            .collect();
        if held.len() == 3 && held.values().all(Option::is_some) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for (row, reason) in &held {
        assert_eq!(reason, &said[row].1, "row {row}: {held:?} vs {said:?}");
    }
    assert_eq!(held.len(), 3);
    let rejected: BTreeMap<i64, Option<String>> = client
        .query(
            "SELECT row_index, reason FROM rejected_rows WHERE batch_id = $1",
            &[&batch],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (i64::from(r.get::<_, i32>(0)) + 1, Some(r.get(1))))
        .collect();
    let predicted: BTreeMap<i64, Option<String>> = said
        .iter()
        .filter(|(_, (v, _))| v == "reject")
        .map(|(row, (_, reason))| (*row, reason.clone()))
        .collect();
    assert_eq!(rejected, predicted);
    // Nothing held was dialed.
    for n in ["+13055550100", "+870773111632", "+14045550102"] {
        assert!(
            stack.calls().iter().all(|c| c.to != n),
            "{n} was dialed while the preflight said it is held"
        );
    }
}

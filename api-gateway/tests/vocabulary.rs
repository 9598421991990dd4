//! One vocabulary (issue 17, section 4): the same call has the same status, duration and time
//! format on every read surface, and cancelled contacts have their own count.
//!
//! The rows are written here as the dial worker writes them; the dial worker's own tests check
//! that its `call.completed` webhook follows the same rule.

mod common;

use chrono::{DateTime, Duration, Utc};
use common::spawn_app;
use serde_json::{Value, json};
use testkit::fixtures::Contacts;
use testkit::http::SendJson;
use uuid::Uuid;

/// A Vogent job with one contact per number; returns the job id and the contact ids.
async fn job_with(app: &common::TestApp, numbers: &[&str]) -> (Uuid, Vec<Uuid>) {
    let agent = app.create_agent().await;
    app.create_number("+12015550100").await;
    let job = app.create_job(&agent, 1).await;
    let id: Uuid = job["id"].as_str().unwrap().parse().unwrap();
    let client = app.env.db.get().await.unwrap();
    let contacts = Contacts::new(numbers.iter().copied())
        .insert(&client, id, app.workspace_id)
        .await;
    (id, contacts)
}

/// Writes an ended attempt and the contact's state after it, as the dial worker does.
#[allow(clippy::too_many_arguments)]
async fn ended_attempt(
    app: &common::TestApp,
    batch: Uuid,
    contact: Uuid,
    number: &str,
    outcome: &str,
    contact_state: &str,
    answered: Option<DateTime<Utc>>,
    ended: DateTime<Utc>,
) -> Uuid {
    let client = app.env.db.get().await.unwrap();
    let attempt = Uuid::now_v7();
    client
        .execute(
            "INSERT INTO dial_attempts (id, contact_id, batch_id, workspace_id, attempt_no, to_number,
                 state, outcome, started_at, answered_at, ended_at, carrier_call_sid, duration_secs)
             VALUES ($1, $2, $3, $4, 1, $5, 'ended', $6, $7, $8, $9, $10, 3)",
            &[
                &attempt,
                &contact,
                &batch,
                &app.workspace_id,
                &number,
                &outcome,
                &(ended - Duration::seconds(3)),
                &answered,
                &ended,
                &format!("CA{}", attempt.simple()),
            ],
        )
        .await
        .unwrap();
    client
        .execute(
            "UPDATE contacts SET state = $2, last_outcome = $3, attempts = 1 WHERE id = $1",
            &[&contact, &contact_state, &outcome],
        )
        .await
        .unwrap();
    attempt
}

/// The three read surfaces that show one call: check-status's recentCalls, `/status/batch`'s
/// entry for its contact, and the Vogent dial.
async fn surfaces(app: &common::TestApp, batch: Uuid, attempt: Uuid) -> (Value, Value, Value) {
    let check: Value = app
        .get(&format!(
            "/api/v1/batch/check-status?batchId={batch}&limit=all"
        ))
        .send_json()
        .await;
    let recent = check["recentCalls"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == attempt.to_string())
        .cloned()
        .unwrap();
    let calls: Value = app
        .get(&format!("/api/v1/status/batch?batchId={batch}"))
        .send_json()
        .await;
    let call = calls["calls"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["dialId"] == attempt.to_string())
        .cloned()
        .unwrap();
    let dial: Value = app.get(&format!("/api/dials/{attempt}")).send_json().await;
    (recent, call, dial)
}

/// RFC 3339 in UTC with exactly three fractional digits.
fn is_millis(t: &Value) -> bool {
    let s = t.as_str().unwrap_or_default();
    let Some((_, frac)) = s.rsplit_once('.') else {
        return false;
    };
    frac.len() == 4 && frac.ends_with('Z') && frac[..3].bytes().all(|b| b.is_ascii_digit())
}

#[tokio::test]
async fn a_voicemail_is_completed_with_one_duration_and_one_time_format_everywhere() {
    let app = spawn_app().await;
    let (batch, contacts) = job_with(&app, &["+12015550109"]).await;
    // Answered 2.002 s before it ended (the carrier said 3): the duration is 2 everywhere.
    let ended: DateTime<Utc> = "2026-12-01T10:00:03.302123Z".parse().unwrap();
    let answered = ended - Duration::microseconds(2_002_000);
    let attempt = ended_attempt(
        &app,
        batch,
        contacts[0],
        "+12015550109",
        "voicemail",
        "completed",
        Some(answered),
        ended,
    )
    .await;

    let (recent, call, dial) = surfaces(&app, batch, attempt).await;
    assert_eq!(recent["status"], "COMPLETED", "{recent}");
    assert_eq!(recent["outcome"], "voicemail");
    assert_eq!(call["status"], "COMPLETED", "{call}");
    assert_eq!(call["dialStatus"], "COMPLETED");
    assert_eq!(call["error"], Value::Null, "an answered call is no error");
    assert_eq!(dial["status"], "completed");
    assert_eq!(dial["systemResultType"], "VOICEMAIL");

    assert_eq!(recent["duration"], 2);
    assert_eq!(call["duration"], 2);
    assert_eq!(dial["durationSeconds"], 2);

    assert_eq!(dial["endedAt"], "2026-12-01T10:00:03.302Z");
    for t in [
        &recent["createdAt"],
        &call["startTime"],
        &dial["startedAt"],
        &dial["createdAt"],
        &dial["updatedAt"],
    ] {
        assert!(is_millis(t), "{t} has millisecond precision");
    }
    let check: Value = app
        .get(&format!("/api/v1/batch/check-status?batchId={batch}"))
        .send_json()
        .await;
    assert!(is_millis(&check["timestamps"]["createdAt"]));
    // A machine answered: a voicemail, final, and not a success.
    let st = &check["statistics"];
    assert_eq!(
        (&st["succeeded"], &st["voicemail"], &st["processed"]),
        (&json!(0), &json!(1), &json!(1)),
        "{st}"
    );
    assert_eq!(st["successRate"], 0.0);
}

#[tokio::test]
async fn a_busy_contact_waiting_for_its_retry_is_scheduled_and_its_call_missed() {
    let app = spawn_app().await;
    let (batch, contacts) = job_with(&app, &["+12015550106"]).await;
    let attempt = ended_attempt(
        &app,
        batch,
        contacts[0],
        "+12015550106",
        "busy",
        "queued",
        None,
        Utc::now(),
    )
    .await;
    let (recent, call, dial) = surfaces(&app, batch, attempt).await;
    // The call: missed, on every surface that shows the call.
    assert_eq!(recent["status"], "MISSED");
    assert_eq!(call["dialStatus"], "MISSED");
    assert_eq!(dial["systemResultType"], "BUSY");
    // The contact: scheduled again, and why.
    assert_eq!(call["status"], "SCHEDULED", "{call}");
    assert_eq!(call["error"], "busy");
    // Never answered: no talk time, the same on each surface.
    assert_eq!(recent["duration"], 0);
    assert_eq!(call["duration"], 0);
    assert_eq!(dial["durationSeconds"], 0);
}

#[tokio::test]
async fn cancelled_contacts_have_their_own_count_outside_the_success_rate() {
    let app = spawn_app().await;
    let numbers = [
        "+12015550101",
        "+12015550108",
        "+12015550102",
        "+12015550103",
    ];
    let (batch, contacts) = job_with(&app, &numbers).await;
    let now = Utc::now();
    ended_attempt(
        &app,
        batch,
        contacts[0],
        numbers[0],
        "completed",
        "completed",
        Some(now - Duration::seconds(2)),
        now,
    )
    .await;
    ended_attempt(
        &app,
        batch,
        contacts[1],
        numbers[1],
        "failed",
        "failed",
        None,
        now,
    )
    .await;
    let client = app.env.db.get().await.unwrap();
    client
        .execute(
            "UPDATE contacts SET state = 'cancelled' WHERE batch_id = $1 AND state = 'queued'",
            &[&batch],
        )
        .await
        .unwrap();
    client
        .execute(
            "UPDATE batches SET state = 'cancelled', ingest_state = 'ready', completed_at = now() WHERE id = $1",
            &[&batch],
        )
        .await
        .unwrap();

    let check: Value = app
        .get(&format!("/api/v1/batch/check-status?batchId={batch}"))
        .send_json()
        .await;
    let s = &check["statistics"];
    assert_eq!(
        (
            &s["total"],
            &s["processed"],
            &s["succeeded"],
            &s["failed"],
            &s["cancelled"],
            &s["pending"]
        ),
        (
            &Value::from(4),
            &Value::from(4),
            &Value::from(1),
            &Value::from(1),
            &Value::from(2),
            &Value::from(0)
        ),
        "{s}"
    );
    assert_eq!(s["successRate"], 50.0);
    assert_eq!(s["percentComplete"], 100.0);

    let list: Value = app.get("/api/v1/batch/list").send_json().await;
    assert_eq!(list[0]["failed"], 1);
    assert_eq!(list[0]["cancelled"], 2);
    let calls: Value = app
        .get(&format!("/api/v1/status/batch?batchId={batch}"))
        .send_json()
        .await;
    let statuses: Vec<&str> = calls["calls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["COMPLETED", "FAILED", "CANCELLED", "CANCELLED"]);
}

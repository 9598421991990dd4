//! `GET /api/contacts/{id}/events`: every decision about a contact, in order, with its reason —
//! the retry decision derived from the job's strategy even when the waiting retry was later
//! suppressed or cancelled, a release not yet dialed, and no retry after a final end.

mod common;

use chrono::{Duration, Utc};
use common::running::running_batch;
use common::spawn_app;
use serde_json::Value;
use testkit::http::SendJson;

fn kinds(events: &Value) -> Vec<String> {
    events["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn each_decision_is_an_event_in_order_with_its_reason() {
    let app = spawn_app().await;
    // The job's strategy: 3 attempts, busy retried after 300 s, no-answer after an hour.
    let run = running_batch(&app, 20).await;
    let client = app.env.db.get().await.unwrap();
    let now = Utc::now();
    // Created an hour ago (the fixture's contact ids carry no time: they are shown ingested
    // at their batch's creation).
    client
        .execute(
            "UPDATE batches SET created_at = now() - interval '1 hour' WHERE id = $1",
            &[&run.batch_id],
        )
        .await
        .unwrap();
    let events = |i: usize| {
        let path = format!("/api/contacts/{}/events", run.contacts[i]);
        let app = &app;
        async move { app.get(&path).send_json::<Value>().await }
    };

    // Busy, retried: no answer, waiting for its third attempt.
    run.insert_attempt(&app, 15, now - Duration::minutes(30), Some("busy"))
        .await;
    run.insert_attempt(&app, 15, now - Duration::minutes(10), Some("no-answer"))
        .await;
    client
        .execute(
            "UPDATE contacts SET state = 'queued', attempts = 2, last_outcome = 'no-answer',
                 next_attempt_at = now() + interval '50 minutes' WHERE id = $1",
            &[&run.contacts[15]],
        )
        .await
        .unwrap();
    let e = events(15).await;
    assert_eq!(
        kinds(&e),
        [
            "ingested",
            "released",
            "dialed",
            "outcome",
            "retry_scheduled",
            "released",
            "dialed",
            "outcome",
            "retry_scheduled"
        ],
        "{e}"
    );
    let data = e["data"].as_array().unwrap();
    assert_eq!(data[3]["outcome"], "busy");
    assert_eq!(data[4]["attempt"], 2);
    let due = |v: &Value| {
        chrono::DateTime::parse_from_rfc3339(v["dueAt"].as_str().unwrap())
            .unwrap()
            .with_timezone(&Utc)
    };
    // The first retry was due 300 s after the busy call ended (20 s after it started).
    let first_due = now - Duration::minutes(30) + Duration::seconds(20 + 300);
    assert!((due(&data[4]) - first_due).num_seconds().abs() <= 1, "{e}");
    assert_eq!(data[8]["attempt"], 3);
    assert!(due(&data[8]) > now + Duration::minutes(49), "{e}");

    // Busy, then listed while its retry waited: the retry was scheduled, then suppressed.
    run.insert_attempt(&app, 16, now - Duration::minutes(5), Some("busy"))
        .await;
    client
        .execute(
            "WITH c AS (UPDATE contacts SET state = 'failed', attempts = 1, last_outcome = 'suppressed'
                        WHERE id = $1 RETURNING id)
             INSERT INTO contact_events (contact_id, at, kind, reason)
             SELECT id, now(), 'suppressed', 'do_not_call' FROM c",
            &[&run.contacts[16]],
        )
        .await
        .unwrap();
    let e = events(16).await;
    assert_eq!(
        kinds(&e),
        [
            "ingested",
            "released",
            "dialed",
            "outcome",
            "retry_scheduled",
            "suppressed"
        ],
        "{e}"
    );
    assert_eq!(e["data"][5]["reason"], "do_not_call");

    // Answered: final, no retry.
    run.insert_attempt(&app, 17, now - Duration::minutes(5), Some("completed"))
        .await;
    run.set_contact(&app, 17, "completed", Some("completed"))
        .await;
    let e = events(17).await;
    assert_eq!(
        kinds(&e),
        ["ingested", "released", "dialed", "outcome"],
        "{e}"
    );

    // Busy on its last attempt: final, no retry.
    for m in [30, 20] {
        run.insert_attempt(&app, 18, now - Duration::minutes(m), Some("busy"))
            .await;
    }
    run.insert_attempt(&app, 18, now - Duration::minutes(5), Some("busy"))
        .await;
    client
        .execute(
            "UPDATE contacts SET state = 'failed', attempts = 3, last_outcome = 'busy' WHERE id = $1",
            &[&run.contacts[18]],
        )
        .await
        .unwrap();
    let e = events(18).await;
    assert_eq!(
        kinds(&e).iter().filter(|k| *k == "retry_scheduled").count(),
        2,
        "{e}"
    );
    assert_eq!(kinds(&e).last().map(String::as_str), Some("outcome"), "{e}");

    // Released, not yet dialed: the release is shown with the attempt it is for.
    client
        .execute(
            "UPDATE contacts SET state = 'released', released_at = now() WHERE id = $1",
            &[&run.contacts[19]],
        )
        .await
        .unwrap();
    let e = events(19).await;
    assert_eq!(kinds(&e), ["ingested", "released"], "{e}");
    assert_eq!(e["data"][1]["attempt"], 1);

    // Cancelled with its job while queued.
    let r = app
        .post(&format!("/api/batch_dial_jobs/{}/cancel", run.batch_id))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.text().await.unwrap());
    let cancelled = async || {
        let e = events(15).await;
        kinds(&e).last().map(String::as_str) == Some("cancelled")
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !cancelled().await {
        assert!(std::time::Instant::now() < deadline, "never cancelled");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let e = events(15).await;
    assert_eq!(
        kinds(&e).iter().filter(|k| *k == "retry_scheduled").count(),
        2,
        "{e}"
    );

    // A retry batch's copies get time-ordered ids too, so their trail starts with `ingested`.
    let retry: Value = app
        .post(&format!("/api/batch_dial_jobs/{}/retry", run.batch_id))
        .json(&serde_json::json!({"outcomes": ["busy"]}))
        .send_json()
        .await;
    let new_id: uuid::Uuid = retry["id"].as_str().unwrap().parse().unwrap();
    let copies: Vec<uuid::Uuid> = client
        .query("SELECT id FROM contacts WHERE batch_id = $1", &[&new_id])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get("id"))
        .collect();
    assert!(!copies.is_empty(), "{retry}");
    for id in copies {
        assert_eq!(id.get_version_num(), 7, "{id}");
        let (secs, _) = id.get_timestamp().unwrap().to_unix();
        assert!((secs as i64 - Utc::now().timestamp()).abs() <= 5, "{id}");
        let e: Value = app
            .get(&format!("/api/contacts/{id}/events"))
            .send_json()
            .await;
        assert_eq!(kinds(&e), ["ingested"], "{e}");
    }
}

/// A carrier answer for an attempt that was taken back (race 7: recorded on the V21 tombstone,
/// never applied) shows in the contact's trail as `late_answer`, after the events before it.
#[tokio::test]
async fn a_late_carrier_answer_for_a_taken_back_attempt_is_an_event() {
    let app = spawn_app().await;
    let run = running_batch(&app, 20).await;
    let client = app.env.db.get().await.unwrap();
    let attempt = uuid::Uuid::now_v7();
    client
        .execute(
            "INSERT INTO taken_back_attempts
                 (attempt_id, contact_id, workspace_id, batch_id, attempt_no, carrier_call_sid,
                  taken_back_at, late_answers, last_late_status, last_late_at)
             SELECT $1, c.id, c.workspace_id, c.batch_id, 1, 'CA-late',
                    now() - interval '1 minute', 2, 'completed', now()
             FROM contacts c WHERE c.id = $2",
            &[&attempt, &run.contacts[19]],
        )
        .await
        .unwrap();
    let e: Value = app
        .get(&format!("/api/contacts/{}/events", run.contacts[19]))
        .send_json()
        .await;
    let kinds = kinds(&e);
    assert_eq!(kinds.last().map(String::as_str), Some("late_answer"), "{e}");
    let late = e["data"].as_array().unwrap().last().unwrap();
    assert_eq!(late["dialId"], attempt.to_string(), "{e}");
    assert_eq!(late["callSid"], "CA-late");
    assert_eq!(late["status"], "completed");
    assert_eq!(late["reports"], 2);
    assert_eq!(late["attempt"], 1);
    assert!(late["takenBackAt"].is_string(), "{e}");
}

//! The rules written once as SQL functions (migration V18, `shared::db::rules`) behave as the
//! statements they replace, and as their Rust twins.

use chrono::{DateTime, Duration, Utc};
use shared::db::rules;
use shared::domain::{CallOutcome, ContactState, JobState};
use testkit::{TestEnv, fixtures};
use uuid::Uuid;

#[tokio::test]
async fn contact_state_for_job_is_the_rust_rule() {
    let env = TestEnv::new().await;
    let client = env.db.get().await.unwrap();
    for job in JobState::ALL {
        let sql: ContactState = client
            .query_one("SELECT contact_state_for_job($1)", &[&job])
            .await
            .unwrap()
            .get(0);
        assert_eq!(sql, job.contact_state_when_handed_back(), "{job}");
    }
}

/// A workspace, a batch and one contact per number.
async fn setup(client: &tokio_postgres::Client, numbers: &[&str]) -> (Uuid, Uuid, Vec<Uuid>) {
    let ws = fixtures::Workspace::new().insert(client).await;
    let batch = fixtures::Batch::new(ws).insert(client).await;
    let contacts = fixtures::Contacts::new(numbers.iter().copied())
        .insert(client, batch, ws.id)
        .await;
    (ws.id, batch, contacts)
}

async fn attempt(
    client: &tokio_postgres::Client,
    (ws, batch, contact): (Uuid, Uuid, Uuid),
    no: i32,
    number: &str,
    at: DateTime<Utc>,
) -> Uuid {
    client
        .query_one(
            "INSERT INTO dial_attempts (id, contact_id, batch_id, workspace_id, attempt_no,
                                        to_number, created_at)
             VALUES (gen_random_uuid(), $1, $2, $3, $4, $5, $6) RETURNING id",
            &[&contact, &batch, &ws, &no, &number, &at],
        )
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn frequency_cap_frees_when_the_oldest_counted_attempt_leaves_the_window() {
    let env = TestEnv::new().await;
    let client = env.db.get().await.unwrap();
    let number = "+12015550100";
    let (ws, batch, contacts) = setup(&client, &[number]).await;
    let now: DateTime<Utc> = "2026-12-01T15:00:00Z".parse().unwrap();
    let at = |days_ago: i64| now - Duration::days(days_ago);
    // Three attempts: 10, 5 and 1 days ago; a cap of 2 in 7 days counts the last two.
    let ids = [
        attempt(&client, (ws, batch, contacts[0]), 1, number, at(10)).await,
        attempt(&client, (ws, batch, contacts[0]), 2, number, at(5)).await,
        attempt(&client, (ws, batch, contacts[0]), 3, number, at(1)).await,
    ];
    let frees =
        |cap, except| rules::frequency_cap_frees_at(&**client, ws, number, now, cap, except);
    assert_eq!(
        frees((2, 7), None).await.unwrap(),
        Some(at(5) + Duration::days(7))
    );
    assert_eq!(frees((3, 7), None).await.unwrap(), None, "under the cap");
    assert_eq!(
        frees((3, 30), None).await.unwrap(),
        Some(at(10) + Duration::days(30))
    );
    // The attempt being judged does not count itself.
    assert_eq!(frees((2, 7), Some(ids[2])).await.unwrap(), None);
    assert_eq!(
        frees((1, 7), Some(ids[2])).await.unwrap(),
        Some(at(5) + Duration::days(7))
    );
    // Another number, or another workspace, is not counted.
    assert_eq!(
        rules::frequency_cap_frees_at(&**client, ws, "+12015550199", now, (1, 30), None)
            .await
            .unwrap(),
        None
    );
    // The five-argument form, as the scheduler calls it: the cap off is NULL at once.
    let row = client
        .query_one(
            "SELECT frequency_cap_frees_at($1, $2, $3, NULL, NULL) AS off,
                    frequency_cap_frees_at($1, $2, $3, 2, 7) AS on",
            &[&ws, &number, &now],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, Option<DateTime<Utc>>>("off"), None);
    assert_eq!(
        row.get::<_, Option<DateTime<Utc>>>("on"),
        Some(at(5) + Duration::days(7))
    );
}

async fn contact(
    client: &tokio_postgres::Client,
    id: Uuid,
) -> (ContactState, Option<CallOutcome>, i32) {
    let r = client
        .query_one(
            "SELECT state, last_outcome, attempts FROM contacts WHERE id = $1",
            &[&id],
        )
        .await
        .unwrap();
    (r.get("state"), r.get("last_outcome"), r.get("attempts"))
}

async fn suppressed_events(client: &tokio_postgres::Client, id: Uuid) -> i64 {
    client
        .query_one(
            "SELECT count(*) FROM contact_events
             WHERE contact_id = $1 AND kind = 'suppressed' AND reason = 'do_not_call'",
            &[&id],
        )
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn suppression_ends_only_contacts_in_the_expected_state() {
    let env = TestEnv::new().await;
    let client = env.db.get().await.unwrap();
    let (_, _, ids) = setup(&client, &["+12015550100", "+12015550101"]).await;
    client
        .execute(
            "UPDATE contacts SET state = 'released', released_at = now(),
                 hold_reason = 'recipient_hours' WHERE id = $1",
            &[&ids[1]],
        )
        .await
        .unwrap();
    let now = Utc::now();
    let ended = rules::suppress_contacts(&**client, &ids, ContactState::Queued, Some(now))
        .await
        .unwrap();
    assert_eq!(ended, vec![ids[0]]);
    assert_eq!(
        contact(&client, ids[0]).await,
        (ContactState::Failed, Some(CallOutcome::Suppressed), 0)
    );
    assert_eq!(contact(&client, ids[1]).await.0, ContactState::Released);
    assert_eq!(suppressed_events(&client, ids[0]).await, 1);
    assert_eq!(suppressed_events(&client, ids[1]).await, 0);

    let ended = rules::suppress_contacts(&**client, &ids, ContactState::Released, Some(now))
        .await
        .unwrap();
    assert_eq!(ended, vec![ids[1]]);
    let r = client
        .query_one(
            "SELECT released_at, hold_reason, updated_at FROM contacts WHERE id = $1",
            &[&ids[1]],
        )
        .await
        .unwrap();
    assert_eq!(r.get::<_, Option<DateTime<Utc>>>("released_at"), None);
    assert_eq!(r.get::<_, Option<String>>("hold_reason"), None);
    assert_eq!(
        r.get::<_, DateTime<Utc>>("updated_at").timestamp_micros(),
        now.timestamp_micros()
    );
}

#[tokio::test]
async fn an_unsent_attempt_is_taken_back_and_its_contact_suppressed() {
    let env = TestEnv::new().await;
    let client = env.db.get().await.unwrap();
    let number = "+12015550100";
    let (ws, batch, ids) = setup(&client, &[number, "+12015550101"]).await;
    client
        .execute(
            "UPDATE contacts SET state = 'dialing', attempts = 1 WHERE id = ANY($1)",
            &[&ids],
        )
        .await
        .unwrap();
    let unsent = attempt(&client, (ws, batch, ids[0]), 1, number, Utc::now()).await;
    let sent = attempt(&client, (ws, batch, ids[1]), 1, "+12015550101", Utc::now()).await;
    client
        .execute(
            "UPDATE dial_attempts SET carrier_call_sid = 'CA1' WHERE id = $1",
            &[&sent],
        )
        .await
        .unwrap();
    let now = Utc::now();
    // The wrong attempt number, or a call already sent, changes nothing.
    assert!(
        !rules::suppress_unsent_attempt(&**client, unsent, ids[0], 2, None)
            .await
            .unwrap()
    );
    assert!(
        !rules::suppress_unsent_attempt(&**client, sent, ids[1], 1, None)
            .await
            .unwrap()
    );
    assert_eq!(
        contact(&client, ids[1]).await,
        (ContactState::Dialing, None, 1)
    );

    assert!(
        rules::suppress_unsent_attempt(&**client, unsent, ids[0], 1, Some(now))
            .await
            .unwrap()
    );
    assert_eq!(
        contact(&client, ids[0]).await,
        (ContactState::Failed, Some(CallOutcome::Suppressed), 0)
    );
    assert_eq!(suppressed_events(&client, ids[0]).await, 1);
    let left: i64 = client
        .query_one(
            "SELECT count(*) FROM dial_attempts WHERE id = $1",
            &[&unsent],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(left, 0, "the unsent attempt is gone");
}

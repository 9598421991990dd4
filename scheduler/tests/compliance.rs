//! Compliance at release (invariant 11) on an injected clock: recipient calling hours defer
//! a closed contact once to its next allowed minute (no spinning), a do-not-call number is
//! suppressed, both recorded as events.

mod fixtures;

use fixtures::*;
use scheduler::release_once;
use testkit::TestEnv;
use testkit::fixtures::{Batch, Contacts, Workspace};

/// The one value of a count query.
async fn one(db: &shared::db::Pool, query: &str) -> i64 {
    let client = db.get().await.unwrap();
    client.query_one(query, &[]).await.unwrap().get(0)
}

#[tokio::test]
async fn closed_zones_are_deferred_once_and_released_at_their_hour() {
    let env = TestEnv::new().await;
    let publisher = publisher(&env);
    let client = env.db.get().await.unwrap();
    let ws = Workspace::new()
        .max_concurrent_dials(50)
        .recipient_hours(8 * 60, 21 * 60)
        .insert(&client)
        .await;
    let job = Batch::new(ws)
        .max_concurrent_dials(50)
        .insert(&client)
        .await;
    // 30 New York and 30 Los Angeles numbers, zones resolved from the numbers by the
    // scheduler itself (the fixture leaves `timezones` NULL, like rows from before V10), and
    // one number whose zone is unknown.
    let numbers: Vec<String> = (0..30)
        .map(|i| format!("+1212555{:04}", i))
        .chain((0..30).map(|i| format!("+1213555{:04}", i)))
        .chain(["+80012345678".to_owned()])
        .collect();
    Contacts::new(numbers.clone())
        .due(at("2026-01-01T00:00:00Z"))
        .insert(&client, job, ws.id)
        .await;

    // 10:00 in New York, 07:00 in Los Angeles.
    let t = at("2026-12-01T15:00:00Z");
    let settings = settings();
    let r = release_once(&env.db, &publisher, &settings, t)
        .await
        .unwrap();
    assert_eq!(r.released, 30, "{r:?}");
    let held = one(
        &env.db,
        "SELECT count(*) FROM contacts WHERE hold_reason = 'recipient_hours'
           AND next_attempt_at = '2026-12-01T16:00:00Z'",
    )
    .await;
    assert_eq!(held, 30, "LA contacts wait for 08:00 PST (16:00Z)");
    let unknown = one(
        &env.db,
        "SELECT count(*) FROM contacts WHERE hold_reason = 'unknown_timezone'",
    )
    .await;
    assert_eq!(unknown, 1);
    let events = one(
        &env.db,
        "SELECT count(*) FROM contact_events WHERE kind = 'deferred'",
    )
    .await;
    assert_eq!(events, 31);

    // Their calls end (no dial worker here), so only the deferred contacts are left.
    client
        .execute(
            "UPDATE contacts SET state = 'completed' WHERE state = 'released'",
            &[],
        )
        .await
        .unwrap();

    // No spinning: the next ticks before 16:00Z find nothing to look at again.
    for s in [1, 60, 3599] {
        let r = release_once(
            &env.db,
            &publisher,
            &settings,
            t + chrono::Duration::seconds(s),
        )
        .await
        .unwrap();
        assert_eq!(r.released, 0, "at +{s} s");
    }
    let events = one(
        &env.db,
        "SELECT count(*) FROM contact_events WHERE kind = 'deferred'",
    )
    .await;
    assert_eq!(events, 31, "deferred once each, not once per tick");

    // 08:00 in Los Angeles: the 30 go (the unknown one is held again an hour later).
    let r = release_once(&env.db, &publisher, &settings, at("2026-12-01T16:00:00Z"))
        .await
        .unwrap();
    assert_eq!(r.released, 30, "{r:?}");
    let messages = drain_dial(&env).await;
    assert_eq!(messages.len(), 60);
}

#[tokio::test]
async fn a_listed_number_is_suppressed_at_release_without_an_attempt() {
    let env = TestEnv::new().await;
    let publisher = publisher(&env);
    let client = env.db.get().await.unwrap();
    let ws = Workspace::new().insert(&client).await;
    let job = Batch::new(ws).insert(&client).await;
    Contacts::new(["+12015550100", "+12015550101"])
        .insert(&client, job, ws.id)
        .await;
    client
        .execute(
            "INSERT INTO dnc_numbers (workspace_id, number) VALUES ($1, '+12015550101')",
            &[&ws.id],
        )
        .await
        .unwrap();
    let r = release_once(&env.db, &publisher, &settings(), at("2026-12-01T15:00:00Z"))
        .await
        .unwrap();
    assert_eq!(r.released, 1);
    let suppressed = one(
        &env.db,
        "SELECT count(*) FROM contacts WHERE phone_number = '+12015550101'
           AND state = 'failed' AND last_outcome = 'suppressed' AND attempts = 0",
    )
    .await;
    assert_eq!(suppressed, 1);
    let events = one(
        &env.db,
        "SELECT count(*) FROM contact_events WHERE kind = 'suppressed'",
    )
    .await;
    assert_eq!(events, 1);
}

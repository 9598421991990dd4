//! Compliance at release (invariant 11) on an injected clock: recipient calling hours defer
//! a closed contact once to its next allowed minute (no spinning), a do-not-call number is
//! suppressed, both recorded as events.

mod fixtures;

use fixtures::*;
use scheduler::release_once;
use testkit::TestEnv;
use testkit::fixtures::{Batch, Contacts, Workspace};

/// The value of a count query, which names it `n`.
async fn one(db: &shared::db::Pool, query: &str) -> i64 {
    let client = db.get().await.unwrap();
    client.query_one(query, &[]).await.unwrap().get("n")
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
        "SELECT count(*) AS n FROM contacts WHERE hold_reason = 'recipient_hours'
           AND next_attempt_at = '2026-12-01T16:00:00Z'",
    )
    .await;
    assert_eq!(held, 30, "LA contacts wait for 08:00 PST (16:00Z)");
    let unknown = one(
        &env.db,
        "SELECT count(*) AS n FROM contacts WHERE hold_reason = 'unknown_timezone'",
    )
    .await;
    assert_eq!(unknown, 1);
    let events = one(
        &env.db,
        "SELECT count(*) AS n FROM contact_events WHERE kind = 'deferred'",
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
        "SELECT count(*) AS n FROM contact_events WHERE kind = 'deferred'",
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
        "SELECT count(*) AS n FROM contacts WHERE phone_number = '+12015550101'
           AND state = 'failed' AND last_outcome = 'suppressed' AND attempts = 0",
    )
    .await;
    assert_eq!(suppressed, 1);
    let events = one(
        &env.db,
        "SELECT count(*) AS n FROM contact_events WHERE kind = 'suppressed'",
    )
    .await;
    assert_eq!(events, 1);
}

/// `cargo nextest run -p scheduler --run-ignored only -E 'test(four_zones)' --no-capture`
///
/// 100,000 contacts over four US zones, all closed at first: how long the screen takes to
/// defer them, what a tick costs once they wait (no spinning), and that each zone's contacts
/// come back when its hours open.
#[tokio::test]
#[ignore = "benchmark: prints figures"]
async fn bench_a_hundred_thousand_contacts_over_four_zones() {
    let env = TestEnv::new().await;
    let publisher = publisher(&env);
    let client = env.db.get().await.unwrap();
    let ws = Workspace::new()
        .max_concurrent_dials(100_000)
        .recipient_hours(8 * 60, 21 * 60)
        .insert(&client)
        .await;
    let job = Batch::new(ws)
        .max_concurrent_dials(100_000)
        .insert(&client)
        .await;
    // New York (212), Chicago (214), Denver (303), Los Angeles (213): 25,000 each, all distinct.
    let numbers: Vec<String> = (0..25_000)
        .flat_map(|i| {
            [
                format!("+1212{:07}", 2_000_000 + i),
                format!("+1214{:07}", 2_000_000 + i),
                format!("+1303{:07}", 2_000_000 + i),
                format!("+1213{:07}", 2_000_000 + i),
            ]
        })
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    let total = numbers.len();
    assert_eq!(total, 100_000);
    Contacts::new(numbers)
        .due(at("2026-01-01T00:00:00Z"))
        .insert(&client, job, ws.id)
        .await;
    client.batch_execute("ANALYZE contacts").await.unwrap();
    let settings = settings();

    // 12:30Z: 07:30 in New York, earlier everywhere else: nothing may go.
    let closed = at("2026-12-01T12:30:00Z");
    let started = std::time::Instant::now();
    let mut ticks = 0;
    loop {
        ticks += 1;
        let r = release_once(&env.db, &publisher, &settings, closed)
            .await
            .unwrap();
        assert_eq!(r.released, 0);
        let due = one(
            &env.db,
            "SELECT count(*) AS n FROM contacts WHERE state = 'queued'
               AND next_attempt_at <= '2026-12-01T12:30:00Z'",
        )
        .await;
        if due == 0 {
            break;
        }
    }
    println!(
        "{total} contacts deferred in {ticks} ticks, {:.2} s",
        started.elapsed().as_secs_f64()
    );
    let t = std::time::Instant::now();
    for s in 1..=10 {
        let r = release_once(
            &env.db,
            &publisher,
            &settings,
            closed + chrono::Duration::seconds(s),
        )
        .await
        .unwrap();
        assert_eq!(r.released, 0);
    }
    println!("a tick while they wait: {:?}", t.elapsed() / 10);

    // Each zone opens at 08:00 local: 13:00Z, 14:00Z, 15:00Z, 16:00Z.
    for (opens, zone) in [
        ("2026-12-01T13:00:00Z", "America/New_York"),
        ("2026-12-01T14:00:00Z", "America/Chicago"),
        ("2026-12-01T15:00:00Z", "America/Denver"),
        ("2026-12-01T16:00:00Z", "America/Los_Angeles"),
    ] {
        let t = std::time::Instant::now();
        let mut released = 0;
        let mut n = 0;
        loop {
            n += 1;
            let r = release_once(&env.db, &publisher, &settings, at(opens))
                .await
                .unwrap();
            if r.released == 0 {
                break;
            }
            released += r.released;
        }
        let wrong = one(
            &env.db,
            &format!(
                "SELECT count(*) AS n FROM contacts WHERE state = 'released' AND NOT ('{zone}' = ANY(timezones))
                   AND released_at = '{opens}'"
            ),
        )
        .await;
        assert_eq!(wrong, 0, "only {zone} released at {opens}");
        drain_dial(&env).await;
        // Their calls end (no dial worker here).
        client
            .execute(
                "UPDATE contacts SET state = 'completed' WHERE state = 'released'",
                &[],
            )
            .await
            .unwrap();
        println!(
            "{opens}: {released} {zone} contacts released in {n} ticks, {:.2} s",
            t.elapsed().as_secs_f64()
        );
    }

    // The same release without recipient hours, for comparison.
    let plain = Workspace::new()
        .max_concurrent_dials(100_000)
        .insert(&client)
        .await;
    let job = Batch::new(plain)
        .max_concurrent_dials(100_000)
        .insert(&client)
        .await;
    Contacts::new((0..25_000).map(|i| format!("+1212{:07}", 3_000_000 + i)))
        .due(at("2026-01-01T00:00:00Z"))
        .insert(&client, job, plain.id)
        .await;
    client.batch_execute("ANALYZE contacts").await.unwrap();
    let t = std::time::Instant::now();
    let (mut released, mut n) = (0, 0);
    loop {
        n += 1;
        let r = release_once(&env.db, &publisher, &settings, at("2026-12-01T17:00:00Z"))
            .await
            .unwrap();
        if r.released == 0 {
            break;
        }
        released += r.released;
    }
    drain_dial(&env).await;
    println!(
        "without recipient hours: {released} contacts released in {n} ticks, {:.2} s",
        t.elapsed().as_secs_f64()
    );
}

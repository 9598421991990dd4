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

/// The rows and statements the test database has served so far (its statistics flushed
/// first, so the figure is current).
async fn db_reads(db: &shared::db::Pool) -> (i64, i64) {
    // Every connection of the pool flushes its statistics once idle for a second.
    tokio::time::sleep(std::time::Duration::from_millis(2_500)).await;
    let client = db.get().await.unwrap();
    client
        .batch_execute("SELECT pg_stat_force_next_flush()")
        .await
        .unwrap();
    // A new transaction sees the flushed figures (the statistics are snapshotted per
    // transaction).
    let r = client
        .query_one(
            "SELECT (tup_returned + tup_fetched)::int8 AS rows, xact_commit + xact_rollback AS tx
             FROM pg_stat_database WHERE datname = current_database()",
            &[],
        )
        .await
        .unwrap();
    (r.get("rows"), r.get("tx"))
}

/// Issue #25 at release: at 20:30 in Miami and Atlanta (both on New York's clock), the Florida
/// numbers are held by Florida's hours (`state_hours`, `US-FL-hours`, its citation and the
/// pack's version in the event) until 08:00, the Georgia numbers are released; the held
/// batch then costs idle ticks, not a scan; `federal` releases Florida at once.
#[tokio::test]
async fn florida_waits_for_its_hours_georgia_goes_and_the_held_cost_idle_ticks() {
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
    let florida = 5_000;
    let numbers: Vec<String> = (0..10)
        .map(|i| format!("+1404555{i:04}"))
        .chain((0..florida).map(|i| format!("+1305555{i:04}")))
        .collect();
    Contacts::new(numbers)
        .due(at("2026-01-01T00:00:00Z"))
        .insert(&client, job, ws.id)
        .await;
    // 20:30 EST.
    let t = at("2026-12-02T01:30:00Z");
    let settings = settings();
    let mut released = 0;
    let mut ticks = 0;
    // Each tick screens the head of the queue (a few times the job's room); the held ones
    // leave it, so the whole batch is screened once within a few ticks.
    loop {
        let before = one(
            &env.db,
            "SELECT count(*) AS n FROM contact_events WHERE kind = 'deferred'",
        )
        .await;
        let r = release_once(&env.db, &publisher, &settings, t)
            .await
            .unwrap();
        released += r.released;
        ticks += 1;
        let after = one(
            &env.db,
            "SELECT count(*) AS n FROM contact_events WHERE kind = 'deferred'",
        )
        .await;
        if after == before || ticks > 100 {
            break;
        }
    }
    assert_eq!(released, 10, "the Georgia numbers");
    let held = one(
        &env.db,
        "SELECT count(*) AS n FROM contacts WHERE phone_number LIKE '+1305%'
           AND state = 'queued' AND hold_reason = 'state_hours'
           AND next_attempt_at = '2026-12-02T13:00:00Z'",
    )
    .await;
    assert_eq!(held, florida, "held until 08:00 EST");
    let detail: serde_json::Value = client
        .query_one(
            "SELECT detail FROM contact_events WHERE kind = 'deferred' LIMIT 1",
            &[],
        )
        .await
        .unwrap()
        .get("detail");
    assert_eq!(detail["rule"], "US-FL-hours", "{detail}");
    assert_eq!(detail["citation"], "Fla. Stat. 501.616(6)(a)", "{detail}");
    assert_eq!(
        detail["version"],
        shared::compliance::enforce::shipped_pack().version(),
        "{detail}"
    );
    drain_dial(&env).await;

    // Idle ticks: nothing due, nothing read again.
    let (rows0, tx0) = db_reads(&env.db).await;
    let idle = 20;
    for s in 1..=idle {
        let r = release_once(
            &env.db,
            &publisher,
            &settings,
            t + chrono::Duration::seconds(s),
        )
        .await
        .unwrap();
        assert_eq!(r.released, 0);
    }
    let (rows1, tx1) = db_reads(&env.db).await;
    println!(
        "{florida} Florida contacts held: per idle tick {} rows read, {} transactions",
        (rows1 - rows0) / idle,
        (tx1 - tx0) / idle
    );
    assert!(
        (rows1 - rows0) / idle < florida / 10,
        "an idle tick must not scan the held contacts: {} rows",
        (rows1 - rows0) / idle
    );
    let events = one(
        &env.db,
        "SELECT count(*) AS n FROM contact_events WHERE kind = 'deferred'",
    )
    .await;
    assert_eq!(events, florida, "deferred once each");

    // `federal`: Florida's own hours no longer apply; the held contacts go at their next look.
    client
        .execute(
            "UPDATE workspaces SET jurisdiction_rules = 'federal' WHERE id = $1",
            &[&ws.id],
        )
        .await
        .unwrap();
    client
        .execute(
            "UPDATE contacts SET next_attempt_at = $1 WHERE hold_reason = 'state_hours'",
            &[&t],
        )
        .await
        .unwrap();
    let r = release_once(&env.db, &publisher, &settings, t)
        .await
        .unwrap();
    // The job's bound (2 × 50) less the 10 Georgia contacts still in flight.
    assert_eq!(r.released, 90, "{r:?}");
}

/// Florida's cap at release: with three calls to the number in the last day (any batch), a
/// fourth is held with `state_call_cap` until the oldest is a day old; a declared state brings
/// the cap to a Georgia number too.
#[tokio::test]
async fn a_florida_number_called_three_times_today_is_held_by_the_cap() {
    let env = TestEnv::new().await;
    let publisher = publisher(&env);
    let client = env.db.get().await.unwrap();
    let ws = Workspace::new()
        .recipient_hours(8 * 60, 21 * 60)
        .insert(&client)
        .await;
    let earlier = Batch::new(ws).insert(&client).await;
    let old = Contacts::new(["+13055550106", "+14045550106"])
        .insert(&client, earlier, ws.id)
        .await;
    for contact in &old {
        for n in 1..=3 {
            client
                .execute(
                    "INSERT INTO dial_attempts (id, contact_id, batch_id, workspace_id, attempt_no,
                                                to_number, created_at)
                     SELECT gen_random_uuid(), c.id, c.batch_id, c.workspace_id, $2,
                            c.phone_number, now() - make_interval(mins => 60 - $2)
                     FROM contacts c WHERE c.id = $1",
                    &[contact, &n],
                )
                .await
                .unwrap();
        }
    }
    client
        .execute(
            "UPDATE contacts SET state = 'failed' WHERE batch_id = $1",
            &[&earlier],
        )
        .await
        .unwrap();
    let job = Batch::new(ws).insert(&client).await;
    Contacts::new(["+13055550106", "+14045550106"])
        .insert(&client, job, ws.id)
        .await;
    // 10:00 EST.
    let t = at("2026-12-01T15:00:00Z");
    let r = release_once(&env.db, &publisher, &settings(), t)
        .await
        .unwrap();
    assert_eq!(r.released, 1, "Georgia has no cap");
    let row = client
        .query_one(
            "SELECT hold_reason, next_attempt_at FROM contacts
             WHERE batch_id = $1 AND phone_number = '+13055550106'",
            &[&job],
        )
        .await
        .unwrap();
    assert_eq!(
        row.get::<_, Option<String>>(0).as_deref(),
        Some("state_call_cap")
    );
    let until: chrono::DateTime<chrono::Utc> = row.get(1);
    // The oldest call was 59 minutes before the database's now; the tick's instant stands
    // for that now, so the cap frees 23 h 1 min after it (within the statement's runtime).
    let expected = t + chrono::Duration::hours(23) + chrono::Duration::minutes(1);
    assert!(
        (until - expected).num_seconds().abs() < 5,
        "{until} vs {expected}"
    );
    let detail: serde_json::Value = client
        .query_one(
            "SELECT detail FROM contact_events WHERE kind = 'deferred'",
            &[],
        )
        .await
        .unwrap()
        .get("detail");
    assert_eq!(detail["rule"], "US-FL-cap", "{detail}");
    assert_eq!(detail["citation"], "Fla. Stat. 501.616(6)(b)", "{detail}");
}

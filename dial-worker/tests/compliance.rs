//! The dial worker's last look before the carrier request (invariant 11): a number listed on
//! the do-not-call list after its release is suppressed without an attempt, and a contact whose
//! calling hours closed (or whose number reached the frequency cap) is handed back uncharged
//! for its next allowed minute. The simulated carrier's call list is the witness.

mod common;

use common::*;
use dial_worker::carrier::Carrier;
use dial_worker::carrier::sim::{OutcomeRule, SimBehavior, SimOutcome};
use dial_worker::dial::{DialResult, dial_one};
use shared::domain::ContactState;
use shared::queue::messages::DialV1;
use testkit::{TestEnv, fixtures};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

fn answered() -> SimBehavior {
    SimBehavior {
        ring_ms: (0, 0),
        talk_ms: (10, 10),
        rule: OutcomeRule::Always(SimOutcome::Answered),
        report_answered: true,
        seed: 7,
    }
}

/// Releases the batch's one contact as the scheduler would; returns its message.
async fn release(env: &TestEnv, ws: Uuid, batch_id: Uuid) -> DialV1 {
    let client = env.db.get().await.unwrap();
    let contact_id: Uuid = client
        .query_one(
            "UPDATE contacts SET state = 'released', released_at = now()
             WHERE batch_id = $1 RETURNING id",
            &[&batch_id],
        )
        .await
        .unwrap()
        .get("id");
    DialV1 {
        batch_id,
        workspace_id: ws,
        contact_id,
        attempt_no: 1,
    }
}

async fn contact(env: &TestEnv, id: Uuid) -> (String, i32, Option<String>, bool) {
    let client = env.db.get().await.unwrap();
    let r = client
        .query_one(
            "SELECT state, attempts, last_outcome,
                    next_attempt_at > now() + interval '1 minute' AS later
             FROM contacts WHERE id = $1",
            &[&id],
        )
        .await
        .unwrap();
    (
        r.get("state"),
        r.get("attempts"),
        r.get("last_outcome"),
        r.get("later"),
    )
}

async fn hold_reason(env: &TestEnv, id: Uuid) -> Option<String> {
    let client = env.db.get().await.unwrap();
    client
        .query_one("SELECT hold_reason FROM contacts WHERE id = $1", &[&id])
        .await
        .unwrap()
        .get("hold_reason")
}

async fn attempts(env: &TestEnv) -> i64 {
    let client = env.db.get().await.unwrap();
    client
        .query_one("SELECT count(*) AS n FROM dial_attempts", &[])
        .await
        .unwrap()
        .get("n")
}

#[tokio::test]
async fn a_number_listed_after_release_is_suppressed_not_dialed() {
    let env = TestEnv::new().await;
    let stop = CancellationToken::new();
    let ws = workspace(&env, 10).await;
    let batch_id = batch(&env, &new_batch(ws), &["+12015550150".to_owned()]).await;
    let sim = sim(&env, answered(), stop.clone());
    let ctx = dial_worker::Ctx::new(
        env.db.clone(),
        env.redis.clone(),
        Carrier::Sim(sim.clone()),
        config(&env, &[]),
        tokio_util::sync::CancellationToken::new(),
    );
    let msg = release(&env, ws.id, batch_id).await;
    // Listed between the release and the dial.
    let client = env.db.get().await.unwrap();
    client
        .execute(
            "INSERT INTO dnc_numbers (workspace_id, number) VALUES ($1, '+12015550150')",
            &[&ws.id],
        )
        .await
        .unwrap();
    assert_eq!(dial_one(&ctx, &msg).await.unwrap(), DialResult::Suppressed);
    assert!(sim.calls().is_empty(), "never dialed");
    assert_eq!(attempts(&env).await, 0, "no attempt written or charged");
    let (state, tries, outcome, _) = contact(&env, msg.contact_id).await;
    assert_eq!(
        (state.as_str(), tries, outcome.as_deref()),
        ("failed", 0, Some("suppressed"))
    );
    stop.cancel();
}

#[tokio::test]
async fn closed_hours_and_a_reached_cap_hand_the_contact_back_uncharged() {
    let env = TestEnv::new().await;
    let stop = CancellationToken::new();
    let client = env.db.get().await.unwrap();
    // 08:00–21:00 in the recipient's zone; the clock is put where Los Angeles is closed.
    let ws = fixtures::Workspace::new()
        .numbers(&["+12015550100"])
        .recipient_hours(8 * 60, 21 * 60)
        .insert(&client)
        .await;
    let la = batch(&env, &new_batch(ws), &["+12135550150".to_owned()]).await;
    let sim = sim(&env, answered(), stop.clone());
    let now = chrono::Utc::now();
    let la_now = now.with_timezone(&chrono_tz::America::Los_Angeles);
    // 03:00 today in Los Angeles, whatever time it is here.
    let target = la_now
        .date_naive()
        .and_hms_opt(3, 0, 0)
        .unwrap()
        .and_local_timezone(chrono_tz::America::Los_Angeles)
        .earliest()
        .unwrap();
    let offset = (target.with_timezone(&chrono::Utc) - now)
        .num_seconds()
        .to_string();
    let ctx = dial_worker::Ctx::new(
        env.db.clone(),
        env.redis.clone(),
        Carrier::Sim(sim.clone()),
        config(&env, &[(shared::clock::OFFSET_VAR, offset.as_str())]),
        tokio_util::sync::CancellationToken::new(),
    );
    let msg = release(&env, ws.id, la).await;
    assert_eq!(
        dial_one(&ctx, &msg).await.unwrap(),
        DialResult::HandedBack(ContactState::Queued)
    );
    assert!(sim.calls().is_empty());
    assert_eq!(attempts(&env).await, 0);
    let (state, tries, _, later) = contact(&env, msg.contact_id).await;
    assert_eq!((state.as_str(), tries, later), ("queued", 0, true));
    assert_eq!(
        hold_reason(&env, msg.contact_id).await.as_deref(),
        Some("recipient_hours"),
        "held with its reason, as a deferral at release leaves it"
    );

    // A frequency cap of one call a week, the number called once already (another batch).
    client
        .execute(
            "UPDATE workspaces SET recipient_hours_start = NULL, recipient_hours_end = NULL,
                 max_calls_per_number_count = 1, max_calls_per_number_days = 7 WHERE id = $1",
            &[&ws.id],
        )
        .await
        .unwrap();
    let earlier = batch(&env, &new_batch(ws), &["+12015550160".to_owned()]).await;
    client
        .execute(
            "INSERT INTO dial_attempts (id, contact_id, batch_id, workspace_id, attempt_no, to_number,
                                        state, outcome)
             SELECT gen_random_uuid(), id, batch_id, workspace_id, 1, phone_number, 'ended', 'completed'
             FROM contacts WHERE batch_id = $1",
            &[&earlier],
        )
        .await
        .unwrap();
    let capped = batch(&env, &new_batch(ws), &["+12015550160".to_owned()]).await;
    let ctx = dial_worker::Ctx::new(
        env.db.clone(),
        env.redis.clone(),
        Carrier::Sim(sim.clone()),
        config(&env, &[]),
        tokio_util::sync::CancellationToken::new(),
    );
    let msg = release(&env, ws.id, capped).await;
    assert_eq!(
        dial_one(&ctx, &msg).await.unwrap(),
        DialResult::HandedBack(ContactState::Queued)
    );
    assert!(sim.calls().is_empty());
    assert_eq!(attempts(&env).await, 1, "only the earlier batch's attempt");
    let (state, tries, _, later) = contact(&env, msg.contact_id).await;
    assert_eq!((state.as_str(), tries, later), ("queued", 0, true));
    assert_eq!(
        hold_reason(&env, msg.contact_id).await.as_deref(),
        Some("frequency_cap")
    );
    let events: i64 = client
        .query_one(
            "SELECT count(*) AS n FROM contact_events WHERE kind = 'deferred'",
            &[],
        )
        .await
        .unwrap()
        .get("n");
    assert_eq!(events, 2);
    stop.cancel();
}

/// A start-token wait can outlast a number's listing: the rules are looked at again after the
/// wait, so a number listed while its call waited for the rate is suppressed, never called.
#[tokio::test]
async fn a_number_listed_during_a_start_token_wait_is_suppressed_not_dialed() {
    let env = TestEnv::new().await;
    let stop = CancellationToken::new();
    let ws = workspace(&env, 10).await;
    let spec = new_batch(ws)
        .max_concurrent_dials(10)
        .max_calls_per_second(1);
    let numbers = ["+12015550171".to_owned(), "+12015550172".to_owned()];
    let batch_id = batch(&env, &spec, &numbers).await;
    let sim = sim(&env, answered(), stop.clone());
    let ctx = ctx_with(&env, Carrier::Sim(sim.clone()));
    let client = env.db.get().await.unwrap();
    let dials = released(&env, &ws, batch_id).await;
    let tasks: Vec<_> = dials
        .iter()
        .map(|d| {
            let (ctx, d) = (ctx.clone(), d.clone());
            tokio::spawn(async move { dial_one(&ctx, &d).await.unwrap() })
        })
        .collect();
    // At one call a second, one call starts at once and the other waits about a second for
    // its token, its attempt already written. Both numbers are listed during that wait.
    let waiting = async {
        loop {
            let waiting: i64 = client
                .query_one(
                    "SELECT count(*) AS n FROM dial_attempts
                     WHERE batch_id = $1 AND carrier_call_sid IS NULL",
                    &[&batch_id],
                )
                .await
                .unwrap()
                .get("n");
            if sim.calls().len() == 1 && waiting == 1 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(10), waiting)
        .await
        .expect("one call placed and one waiting for its token");
    client
        .execute(
            "INSERT INTO dnc_numbers (workspace_id, number)
             SELECT $1, unnest($2::text[])",
            &[&ws.id, &numbers.to_vec()],
        )
        .await
        .unwrap();
    let mut results = Vec::new();
    for t in tasks {
        results.push(t.await.unwrap());
    }
    assert_eq!(sim.calls().len(), 1, "the waiting call was never placed");
    let suppressed: Vec<_> = dials
        .iter()
        .zip(&results)
        .filter(|(_, r)| **r == DialResult::Suppressed)
        .map(|(d, _)| d.contact_id)
        .collect();
    assert_eq!(suppressed.len(), 1, "{results:?}");
    let (state, tries, outcome, _) = contact(&env, suppressed[0]).await;
    assert_eq!(
        (state.as_str(), tries, outcome.as_deref()),
        ("failed", 0, Some("suppressed")),
        "ended suppressed, never charged an attempt"
    );
    assert_eq!(attempts(&env).await, 1, "the taken-back attempt is gone");
    let events: i64 = client
        .query_one(
            "SELECT count(*) AS n FROM contact_events
             WHERE contact_id = $1 AND kind = 'suppressed' AND reason = 'do_not_call'",
            &[&suppressed[0]],
        )
        .await
        .unwrap()
        .get("n");
    assert_eq!(events, 1);
    stop.cancel();
}

/// The clock offset (seconds) that puts "now" at `hh:mm` today in New York.
fn offset_to_new_york(hh: u32, mm: u32) -> String {
    let ny = chrono_tz::America::New_York;
    let now = chrono::Utc::now();
    let target = now
        .with_timezone(&ny)
        .date_naive()
        .and_hms_opt(hh, mm, 0)
        .unwrap()
        .and_local_timezone(ny)
        .earliest()
        .unwrap();
    (target.with_timezone(&chrono::Utc) - now)
        .num_seconds()
        .to_string()
}

/// The last look takes the rule pack's decision too (issue #25): at 20:30 in Miami a released
/// Florida contact is handed back uncharged with `state_hours`, its event naming the rule,
/// its citation and the pack's version; a Georgia number at the same local time is called.
#[tokio::test]
async fn florida_after_eight_pm_is_handed_back_georgia_is_called() {
    let env = TestEnv::new().await;
    let stop = CancellationToken::new();
    let client = env.db.get().await.unwrap();
    let ws = fixtures::Workspace::new()
        .numbers(&["+12015550100"])
        .recipient_hours(8 * 60, 21 * 60)
        .insert(&client)
        .await;
    let sim = sim(&env, answered(), stop.clone());
    let offset = offset_to_new_york(20, 30);
    let ctx = dial_worker::Ctx::new(
        env.db.clone(),
        env.redis.clone(),
        Carrier::Sim(sim.clone()),
        config(&env, &[(shared::clock::OFFSET_VAR, offset.as_str())]),
        CancellationToken::new(),
    );
    let fl = batch(&env, &new_batch(ws), &["+13055550100".to_owned()]).await;
    let msg = release(&env, ws.id, fl).await;
    assert_eq!(
        dial_one(&ctx, &msg).await.unwrap(),
        DialResult::HandedBack(ContactState::Queued)
    );
    assert!(sim.calls().is_empty());
    assert_eq!(
        hold_reason(&env, msg.contact_id).await.as_deref(),
        Some("state_hours")
    );
    let detail: serde_json::Value = client
        .query_one(
            "SELECT detail FROM contact_events WHERE kind = 'deferred' AND contact_id = $1",
            &[&msg.contact_id],
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
    assert_eq!(detail["by"], "dial-worker", "{detail}");

    let ga = batch(&env, &new_batch(ws), &["+14045550100".to_owned()]).await;
    let msg = release(&env, ws.id, ga).await;
    assert!(matches!(
        dial_one(&ctx, &msg).await.unwrap(),
        DialResult::Dialed { .. }
    ));
    assert_eq!(sim.calls().len(), 1);
    stop.cancel();
}

/// Florida's cap under concurrency: the number was called twice today; two contacts of it (two
/// batches), released together, race through two workers for the third call. Each writes its
/// attempt and then counts the others', so at most one call is placed; whoever stands down is
/// held with `state_call_cap`.
#[tokio::test]
async fn two_workers_racing_for_the_last_call_under_the_cap_place_at_most_one() {
    let env = TestEnv::new().await;
    let stop = CancellationToken::new();
    let client = env.db.get().await.unwrap();
    let ws = fixtures::Workspace::new()
        .numbers(&["+12015550100"])
        .recipient_hours(8 * 60, 21 * 60)
        .insert(&client)
        .await;
    let number = "+13055550100".to_owned();
    let earlier = batch(&env, &new_batch(ws), std::slice::from_ref(&number)).await;
    for n in 1..=2 {
        client
            .execute(
                "INSERT INTO dial_attempts (id, contact_id, batch_id, workspace_id, attempt_no,
                                            to_number, state, outcome)
                 SELECT gen_random_uuid(), id, batch_id, workspace_id, $2, phone_number,
                        'ended', 'busy'
                 FROM contacts WHERE batch_id = $1",
                &[&earlier, &n],
            )
            .await
            .unwrap();
    }
    let offset = offset_to_new_york(10, 0);
    let sim = sim(&env, answered(), stop.clone());
    let workers: Vec<dial_worker::Ctx> = (0..2)
        .map(|_| {
            dial_worker::Ctx::new(
                env.db.clone(),
                env.redis.clone(),
                Carrier::Sim(sim.clone()),
                config(&env, &[(shared::clock::OFFSET_VAR, offset.as_str())]),
                CancellationToken::new(),
            )
        })
        .collect();
    for round in 0..5 {
        let a = batch(&env, &new_batch(ws), std::slice::from_ref(&number)).await;
        let b = batch(&env, &new_batch(ws), std::slice::from_ref(&number)).await;
        let (ma, mb) = (release(&env, ws.id, a).await, release(&env, ws.id, b).await);
        let (ra, rb) = tokio::join!(dial_one(&workers[0], &ma), dial_one(&workers[1], &mb));
        let placed = [ra.unwrap(), rb.unwrap()]
            .iter()
            .filter(|r| matches!(r, DialResult::Dialed { .. }))
            .count();
        assert!(
            sim.calls().len() <= 1,
            "round {round}: {} calls",
            sim.calls().len()
        );
        for m in [&ma, &mb] {
            let (state, ..) = contact(&env, m.contact_id).await;
            if state == "queued" {
                assert_eq!(
                    hold_reason(&env, m.contact_id).await.as_deref(),
                    Some("state_call_cap")
                );
            }
        }
        if placed == 1 {
            break;
        }
    }
    assert!(sim.calls().len() <= 1);
    stop.cancel();
}

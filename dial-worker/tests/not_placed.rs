//! Calls that provably never reached the carrier are taken back, not charged to the contact:
//! a pause while waiting for the start token, a carrier that throttles or refuses our
//! credentials, a carrier that cannot be reached. And the webhook row of a final outcome
//! commits with it.

mod common;

use std::time::Duration;

use axum::Router;
use axum::http::StatusCode;
use axum::routing::post;
use common::*;
use dial_worker::carrier::Carrier;
use dial_worker::carrier::sim::{OutcomeRule, SimBehavior, SimCarrier, SimOutcome};
use dial_worker::carrier::twilio::TwilioCarrier;
use dial_worker::dial::{DialResult, dial_one};
use shared::domain::ContactState;
use testkit::TestEnv;
use uuid::Uuid;

/// `(state, attempts, seconds until due)` of a contact, and how many attempts rows it has.
async fn contact(env: &TestEnv, id: Uuid) -> (String, i32, f64, i64) {
    let client = env.db.get().await.unwrap();
    let row = client
        .query_one(
            "SELECT state, attempts,
                    CASE WHEN isfinite(next_attempt_at)
                         THEN EXTRACT(EPOCH FROM next_attempt_at - now())::float8 ELSE 0 END
                        AS due_in,
                    (SELECT count(*) FROM dial_attempts WHERE contact_id = c.id) AS attempt_rows
             FROM contacts c WHERE id = $1",
            &[&id],
        )
        .await
        .unwrap();
    (
        row.get("state"),
        row.get("attempts"),
        row.get("due_in"),
        row.get("attempt_rows"),
    )
}

fn long_calls() -> SimBehavior {
    SimBehavior {
        ring_ms: (0, 0),
        talk_ms: (60_000, 60_000),
        rule: OutcomeRule::Always(SimOutcome::Answered),
        report_answered: false,
        seed: 3,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_pause_during_the_start_token_wait_hands_the_contact_back() {
    let env = TestEnv::new().await;
    let ws = workspace(&env, 10).await;
    // One start per second: the second and third calls wait about 1 s and 2 s for a token,
    // holding their slot and their written attempt meanwhile.
    let spec = new_batch(ws)
        .max_concurrent_dials(5)
        .max_calls_per_second(1);
    let batch = batch(&env, &spec, &numbers("+1201555", 3, 0)).await;
    let dials = released(&env, &ws, batch).await;
    let (sim, _events) = SimCarrier::new(long_calls());
    let ctx = ctx_with(&env, Carrier::Sim(sim.clone()));
    let tasks: Vec<_> = dials
        .iter()
        .map(|d| {
            let (ctx, d) = (ctx.clone(), d.clone());
            tokio::spawn(async move { dial_one(&ctx, &d).await.unwrap() })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(400)).await;
    env.db
        .get()
        .await
        .unwrap()
        .execute(
            "UPDATE batches SET state = 'paused' WHERE id = $1",
            &[&batch],
        )
        .await
        .unwrap();
    let mut results = Vec::new();
    for t in tasks {
        results.push(t.await.unwrap());
    }
    assert_eq!(
        sim.calls().len(),
        1,
        "only the call that started before the pause"
    );
    let handed_back = results
        .iter()
        .filter(|r| **r == DialResult::HandedBack(ContactState::Queued))
        .count();
    assert_eq!(handed_back, 2, "{results:?}");
    let dialed_to = &sim.calls()[0].to;
    for d in &dials {
        let (state, attempts, _, rows) = contact(&env, d.contact_id).await;
        let number: String = env
            .db
            .get()
            .await
            .unwrap()
            .query_one(
                "SELECT phone_number FROM contacts WHERE id = $1",
                &[&d.contact_id],
            )
            .await
            .unwrap()
            .get("phone_number");
        if &number == dialed_to {
            assert_eq!((state.as_str(), attempts, rows), ("dialing", 1, 1));
        } else {
            assert_eq!(
                (state.as_str(), attempts, rows),
                ("queued", 0, 0),
                "not charged an attempt, no attempt row"
            );
        }
    }
    assert_eq!(
        ctx.limits.in_use(ws.id, batch).await.unwrap(),
        (1, 1),
        "their slots were given back"
    );
}

/// A carrier that answers every call request with `status`.
async fn refusing_carrier(status: StatusCode) -> String {
    let app = Router::new().fallback(post(
        move || async move { (status, "{\"message\":\"no\"}") },
    ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn throttling_bad_credentials_and_an_unreachable_carrier_do_not_burn_contacts() {
    let env = TestEnv::new().await;
    let ws = workspace(&env, 10).await;
    // A port nothing listens on: connection refused.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    for (url, what) in [
        (refusing_carrier(StatusCode::TOO_MANY_REQUESTS).await, "429"),
        (refusing_carrier(StatusCode::UNAUTHORIZED).await, "401"),
        (closed, "unreachable"),
    ] {
        let batch = batch(&env, &new_batch(ws), &numbers("+1201555", 1, 0)).await;
        let dial = released(&env, &ws, batch).await.remove(0);
        let ctx = ctx_with(
            &env,
            Carrier::Twilio(TwilioCarrier::new(&url, "AC123", "token")),
        );
        assert_eq!(
            dial_one(&ctx, &dial).await.unwrap(),
            DialResult::HandedBack(ContactState::Queued),
            "{what}"
        );
        let (state, attempts, due_in, rows) = contact(&env, dial.contact_id).await;
        assert_eq!((state.as_str(), attempts, rows), ("queued", 0, 0), "{what}");
        assert!(
            due_in > 20.0,
            "{what}: backs off before the next try ({due_in} s)"
        );
        assert_eq!(
            ctx.limits.in_use(ws.id, batch).await.unwrap(),
            (0, 0),
            "{what}"
        );
    }

    // A refusal about the call itself (here 400) is the contact's outcome: failed.
    let batch = batch(&env, &new_batch(ws), &numbers("+1201555", 1, 0)).await;
    let dial = released(&env, &ws, batch).await.remove(0);
    let url = refusing_carrier(StatusCode::BAD_REQUEST).await;
    let ctx = ctx_with(
        &env,
        Carrier::Twilio(TwilioCarrier::new(&url, "AC123", "token")),
    );
    assert!(matches!(
        dial_one(&ctx, &dial).await.unwrap(),
        DialResult::NotPlaced(Some(_))
    ));
    let (state, attempts, _, rows) = contact(&env, dial.contact_id).await;
    assert_eq!((state.as_str(), attempts, rows), ("failed", 1, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_webhook_row_commits_with_the_final_outcome() {
    let env = TestEnv::new().await;
    let ws = workspace(&env, 10).await;
    let spec = new_batch(ws).webhooks(on_call_complete("https://hooks.example/done"));
    let batch = batch(&env, &spec, &numbers("+1201555", 1, 0)).await;
    let dial = released(&env, &ws, batch).await.remove(0);
    let quick = SimBehavior {
        talk_ms: (10, 10),
        ..long_calls()
    };
    let (sim, mut events) = SimCarrier::new(quick);
    // No worker runs: the events are handled here, and no delivery loop touches the row.
    let ctx = ctx_with(&env, Carrier::Sim(sim));
    assert!(matches!(
        dial_one(&ctx, &dial).await.unwrap(),
        DialResult::Dialed { .. }
    ));
    let event = events.recv().await.unwrap();
    dial_worker::call_event::handle_event(&ctx, &event)
        .await
        .unwrap();
    let row = env
        .db
        .get()
        .await
        .unwrap()
        .query_one(
            "SELECT c.xmin::text = w.xmin::text AS same_transaction,
                    c.xmin::text || ' ' || w.xmin::text || ' ' || c.state AS detail FROM contacts c
             JOIN webhook_deliveries w ON w.subject_id = c.id WHERE c.id = $1",
            &[&dial.contact_id],
        )
        .await
        .unwrap();
    let same_transaction: bool = row.get("same_transaction");
    assert!(same_transaction, "{}", row.get::<_, String>("detail"));
}

//! A batch "running" as the other roles would leave it, written with SQL: contacts in every
//! state, attempts ended and in flight, and the two steps a call takes (start, end), so the
//! monitor's tests can change what it shows at a known instant.

use chrono::{DateTime, Duration, Utc};
use testkit::fixtures::{self, WorkspaceIds};
use uuid::Uuid;

use super::TestApp;

/// A batch and its contacts, by row.
pub struct Running {
    pub batch_id: Uuid,
    pub contacts: Vec<Uuid>,
}

/// A batch of `n` contacts (n ≥ 20) of the app's workspace, with attempts over the last few
/// minutes: 6 completed, 2 voicemail, 2 busy (final), 1 no-answer waiting for its retry,
/// 1 failed, 2 in flight; the rest queued.
pub async fn running_batch(app: &TestApp, n: usize) -> Running {
    let agent = Uuid::parse_str(&app.create_agent().await).unwrap();
    let ws = WorkspaceIds {
        id: app.workspace_id,
        agent_id: agent,
    };
    let client = app.env.db.get().await.unwrap();
    let batch_id = fixtures::Batch::new(ws)
        .name("Spring renewals")
        .max_concurrent_dials(8)
        .max_calls_per_second(5)
        .insert(&client)
        .await;
    let numbers: Vec<String> = (0..n).map(|i| format!("+1201{:07}", i)).collect();
    let contacts = fixtures::Contacts::new(numbers)
        .name("Ada Lovelace")
        .insert(&client, batch_id, app.workspace_id)
        .await;
    let r = Running { batch_id, contacts };
    let now = Utc::now();
    let plan: [(&str, Option<&str>, &str); 14] = [
        ("completed", Some("completed"), "completed"),
        ("completed", Some("completed"), "completed"),
        ("completed", Some("completed"), "completed"),
        ("completed", Some("completed"), "completed"),
        ("completed", Some("completed"), "completed"),
        ("completed", Some("completed"), "completed"),
        ("completed", Some("voicemail"), "voicemail"),
        ("completed", Some("voicemail"), "voicemail"),
        ("failed", Some("busy"), "busy"),
        ("failed", Some("busy"), "busy"),
        ("queued", Some("no-answer"), "no-answer"),
        ("failed", Some("failed"), "failed"),
        ("dialing", None, ""),
        ("dialing", None, ""),
    ];
    for (i, (state, last, outcome)) in plan.iter().enumerate() {
        let at = now - Duration::seconds(30 * (plan.len() - i) as i64);
        r.set_contact(app, i, state, *last).await;
        let outcome = (!outcome.is_empty()).then_some(*outcome);
        r.insert_attempt(app, i, at, outcome).await;
    }
    r
}

impl Running {
    /// Sets contact `i`'s state and last outcome.
    pub async fn set_contact(&self, app: &TestApp, i: usize, state: &str, last: Option<&str>) {
        let client = app.env.db.get().await.unwrap();
        client
            .execute(
                "UPDATE contacts SET state = $2, last_outcome = $3, attempts = attempts + CASE WHEN $2::text = 'queued' AND $3::text IS NULL THEN 0 ELSE 1 END, updated_at = now() WHERE id = $1",
                &[&self.contacts[i], &state, &last],
            )
            .await
            .unwrap();
    }

    /// An attempt of contact `i` created at `at`, ended with `outcome` (or in flight).
    pub async fn insert_attempt(
        &self,
        app: &TestApp,
        i: usize,
        at: DateTime<Utc>,
        outcome: Option<&str>,
    ) -> Uuid {
        let client = app.env.db.get().await.unwrap();
        let id = Uuid::now_v7();
        client
            .execute(
                "INSERT INTO dial_attempts (id, contact_id, batch_id, workspace_id, attempt_no, to_number,
                     state, outcome, created_at, started_at, answered_at, ended_at)
                 SELECT $1, c.id, c.batch_id, c.workspace_id,
                        (SELECT count(*) + 1 FROM dial_attempts d WHERE d.contact_id = c.id)::int,
                        c.phone_number,
                        CASE WHEN $4::text IS NULL THEN 'in-progress' ELSE 'ended' END, $4, $3::timestamptz, $3,
                        CASE WHEN $4 IN ('completed', 'voicemail') THEN $3 + interval '1 second' END,
                        CASE WHEN $4 IS NOT NULL THEN $3 + interval '20 seconds' END
                 FROM contacts c WHERE c.id = $2",
                &[&id, &self.contacts[i], &at, &outcome],
            )
            .await
            .unwrap();
        id
    }

    /// Ends contact `i`'s open call as the dial worker would: the attempt's outcome and the
    /// contact's final state, in one transaction.
    pub async fn end_call(&self, app: &TestApp, i: usize, outcome: &str) {
        let mut client = app.env.db.get().await.unwrap();
        let txn = client.transaction().await.unwrap();
        txn.execute(
            "UPDATE dial_attempts SET outcome = $2, state = 'ended', ended_at = now(),
                 answered_at = CASE WHEN $2 IN ('completed', 'voicemail') THEN created_at END, updated_at = now()
             WHERE contact_id = $1 AND outcome IS NULL",
            &[&self.contacts[i], &outcome],
        )
        .await
        .unwrap();
        let state = if matches!(outcome, "completed" | "voicemail") {
            "completed"
        } else {
            "failed"
        };
        txn.execute(
            "UPDATE contacts SET state = $2, last_outcome = $3, updated_at = now() WHERE id = $1",
            &[&self.contacts[i], &state, &outcome],
        )
        .await
        .unwrap();
        txn.commit().await.unwrap();
    }

    /// Starts a call to contact `i`.
    pub async fn start_call(&self, app: &TestApp, i: usize) {
        self.set_contact(app, i, "dialing", None).await;
        self.insert_attempt(app, i, Utc::now(), None).await;
    }
}

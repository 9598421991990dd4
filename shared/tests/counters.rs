//! The batch counters (migration V12) against a fresh count: inserts, updates that change a
//! counted column and ones that do not, deletes, a rolled-back transaction, and folds (which
//! keep the totals and drop the keys that went back to zero).

use std::collections::BTreeMap;

use testkit::TestEnv;
use testkit::fixtures::{self, WorkspaceIds};
use uuid::Uuid;

type Counts = BTreeMap<(String, String, String), i64>;

async fn kept(env: &TestEnv, batch: Uuid) -> Counts {
    let client = env.db.get().await.unwrap();
    shared::db::counters::load(&client, &[batch])
        .await
        .unwrap()
        .remove(&batch)
        .unwrap_or_default()
        .into_iter()
        .map(|g| {
            (
                (
                    g.state.as_str().to_owned(),
                    g.last_outcome.map_or("", |o| o.as_str()).to_owned(),
                    g.hold_reason.unwrap_or_default(),
                ),
                g.n,
            )
        })
        .collect()
}

async fn scanned(env: &TestEnv, batch: Uuid) -> Counts {
    let client = env.db.get().await.unwrap();
    client
        .query(
            "SELECT state, coalesce(last_outcome, '') AS o, coalesce(hold_reason, '') AS h, count(*) AS n
             FROM contacts WHERE batch_id = $1 GROUP BY 1, 2, 3",
            &[&batch],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| ((r.get("state"), r.get("o"), r.get("h")), r.get("n")))
        .collect()
}

#[tokio::test]
async fn the_counters_follow_every_write_and_survive_folds() {
    let env = TestEnv::new().await;
    let client = env.db.get().await.unwrap();
    let ws = fixtures::Workspace::new().insert(&client).await;
    let batch = fixtures::Batch::new(WorkspaceIds { ..ws })
        .insert(&client)
        .await;
    let numbers: Vec<String> = (0..50).map(|i| format!("+1201555{i:04}")).collect();
    fixtures::Contacts::new(numbers)
        .insert(&client, batch, ws.id)
        .await;
    assert_eq!(kept(&env, batch).await, scanned(&env, batch).await);

    let steps = [
        "UPDATE contacts SET state = 'released' WHERE batch_id = $1 AND row_index < 20",
        "UPDATE contacts SET state = 'dialing' WHERE batch_id = $1 AND row_index < 10",
        "UPDATE contacts SET state = 'completed', last_outcome = 'voicemail' WHERE batch_id = $1 AND row_index < 3",
        "UPDATE contacts SET state = 'queued', last_outcome = 'busy', hold_reason = 'frequency_cap' WHERE batch_id = $1 AND row_index BETWEEN 3 AND 5",
        // Changes no counted column: appends nothing.
        "UPDATE contacts SET next_attempt_at = now() WHERE batch_id = $1",
        "UPDATE contacts SET state = 'failed', last_outcome = 'suppressed', hold_reason = NULL WHERE batch_id = $1 AND row_index = 4",
        "DELETE FROM contacts WHERE batch_id = $1 AND row_index >= 45",
        "UPDATE contacts SET state = 'cancelled' WHERE batch_id = $1 AND state = 'queued' AND last_outcome IS NULL",
    ];
    for (i, sql) in steps.iter().enumerate() {
        let deltas_before: i64 = client
            .query_one("SELECT count(*) AS n FROM batch_counter_deltas", &[])
            .await
            .unwrap()
            .get("n");
        client.execute(*sql, &[&batch]).await.unwrap();
        let deltas_after: i64 = client
            .query_one("SELECT count(*) AS n FROM batch_counter_deltas", &[])
            .await
            .unwrap()
            .get("n");
        if sql.contains("next_attempt_at") {
            assert_eq!(
                deltas_after, deltas_before,
                "a due-time change appends nothing"
            );
        }
        assert_eq!(
            kept(&env, batch).await,
            scanned(&env, batch).await,
            "step {i}: {sql}"
        );
        if i % 3 == 2 {
            shared::db::counters::fold(&env.db).await.unwrap();
            assert_eq!(
                kept(&env, batch).await,
                scanned(&env, batch).await,
                "fold after {i}"
            );
        }
    }

    // A rolled-back change leaves the counters as they were.
    let before = kept(&env, batch).await;
    let mut c = env.db.get().await.unwrap();
    let txn = c.transaction().await.unwrap();
    txn.execute(
        "UPDATE contacts SET state = 'failed' WHERE batch_id = $1",
        &[&batch],
    )
    .await
    .unwrap();
    txn.rollback().await.unwrap();
    assert_eq!(kept(&env, batch).await, before);

    // A fold moves every delta, keeps the totals, and drops keys that went back to zero.
    shared::db::counters::fold(&env.db).await.unwrap();
    let left: i64 = client
        .query_one("SELECT count(*) AS n FROM batch_counter_deltas", &[])
        .await
        .unwrap()
        .get("n");
    assert_eq!(left, 0);
    assert_eq!(kept(&env, batch).await, scanned(&env, batch).await);
    let zero: i64 = client
        .query_one("SELECT count(*) AS n FROM batch_counters WHERE n = 0", &[])
        .await
        .unwrap()
        .get("n");
    assert_eq!(zero, 0, "emptied keys are dropped");
    let released: i64 = client
        .query_one(
            "SELECT count(*) AS n FROM batch_counters WHERE batch_id = $1 AND state = 'released'",
            &[&batch],
        )
        .await
        .unwrap()
        .get("n");
    assert_eq!(released, 1, "10 contacts are still released");
}

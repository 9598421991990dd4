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

type Minutes = BTreeMap<(i64, String), i64>;

/// The chart's rows as the monitor reads them: the aggregate (V17) plus unfolded deltas.
async fn minutes_kept(env: &TestEnv, batch: Uuid) -> Minutes {
    let client = env.db.get().await.unwrap();
    let sql = shared::db::counters::minutes_of("$1", "NULL::timestamptz");
    client
        .query(&sql, &[&batch])
        .await
        .unwrap()
        .iter()
        .map(|r| ((r.get("m"), r.get("o")), r.get("n")))
        .collect()
}

async fn minutes_scanned(env: &TestEnv, batch: Uuid) -> Minutes {
    let client = env.db.get().await.unwrap();
    client
        .query(
            "SELECT extract(epoch FROM date_trunc('minute', created_at, 'UTC'))::bigint AS m,
                    coalesce(outcome, '') AS o, count(*) AS n
             FROM dial_attempts WHERE batch_id = $1 GROUP BY 1, 2",
            &[&batch],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| ((r.get("m"), r.get("o")), r.get("n")))
        .collect()
}

/// The chart's minute aggregate against a scan of the attempts: calls started over several
/// minutes, updates that end them and ones that change nothing counted, deletes (an attempt
/// taken back), a cascade from a deleted contact, a rollback, and folds.
#[tokio::test]
async fn the_minutes_follow_every_attempt_write_and_survive_folds() {
    let env = TestEnv::new().await;
    let client = env.db.get().await.unwrap();
    // A session time zone with a sub-hour offset: the minutes are UTC's whatever it is.
    client
        .execute("SET TIME ZONE 'Asia/Kathmandu'", &[])
        .await
        .unwrap();
    let ws = fixtures::Workspace::new().insert(&client).await;
    let batch = fixtures::Batch::new(ws).insert(&client).await;
    let numbers: Vec<String> = (0..30).map(|i| format!("+1201555{i:04}")).collect();
    fixtures::Contacts::new(numbers)
        .insert(&client, batch, ws.id)
        .await;
    // 30 calls started over the last five minutes, one per contact.
    client
        .execute(
            "INSERT INTO dial_attempts (id, contact_id, batch_id, workspace_id, attempt_no, to_number, created_at)
             SELECT gen_random_uuid(), id, batch_id, workspace_id, 1, phone_number,
                    now() - (row_index % 5) * interval '1 minute' - (row_index * interval '1 second')
             FROM contacts WHERE batch_id = $1",
            &[&batch],
        )
        .await
        .unwrap();
    assert_eq!(
        minutes_kept(&env, batch).await,
        minutes_scanned(&env, batch).await
    );

    let of_rows = |cond: &str| {
        format!("contact_id IN (SELECT id FROM contacts WHERE batch_id = $1 AND {cond})")
    };
    let steps = [
        format!(
            "UPDATE dial_attempts SET carrier_call_sid = 'CA' || id WHERE {}",
            of_rows("true")
        ),
        format!(
            "UPDATE dial_attempts SET outcome = 'completed', ended_at = now() WHERE {}",
            of_rows("row_index < 10")
        ),
        format!(
            "UPDATE dial_attempts SET outcome = 'busy' WHERE {}",
            of_rows("row_index BETWEEN 10 AND 14")
        ),
        format!(
            "UPDATE dial_attempts SET updated_at = now() WHERE {}",
            of_rows("true")
        ),
        format!(
            "DELETE FROM dial_attempts WHERE {}",
            of_rows("row_index BETWEEN 20 AND 22")
        ),
        "DELETE FROM contacts WHERE batch_id = $1 AND row_index = 0".to_owned(),
        format!(
            "UPDATE dial_attempts SET outcome = 'no-answer' WHERE outcome IS NULL AND {}",
            of_rows("true")
        ),
    ];
    for (i, sql) in steps.iter().enumerate() {
        let count = || async {
            client
                .query_one("SELECT count(*) AS n FROM batch_minute_deltas", &[])
                .await
                .unwrap()
                .get::<_, i64>("n")
        };
        let before = count().await;
        client.execute(sql.as_str(), &[&batch]).await.unwrap();
        if !sql.contains("outcome =") && !sql.starts_with("DELETE") {
            assert_eq!(
                count().await,
                before,
                "step {i} changes nothing counted: {sql}"
            );
        }
        assert_eq!(
            minutes_kept(&env, batch).await,
            minutes_scanned(&env, batch).await,
            "step {i}: {sql}"
        );
        if i % 2 == 1 {
            shared::db::counters::fold(&env.db).await.unwrap();
            assert_eq!(
                minutes_kept(&env, batch).await,
                minutes_scanned(&env, batch).await,
                "fold after {i}"
            );
        }
    }

    let before = minutes_kept(&env, batch).await;
    let mut c = env.db.get().await.unwrap();
    let txn = c.transaction().await.unwrap();
    txn.execute("DELETE FROM dial_attempts WHERE batch_id = $1", &[&batch])
        .await
        .unwrap();
    txn.rollback().await.unwrap();
    assert_eq!(
        minutes_kept(&env, batch).await,
        before,
        "a rollback counts nothing"
    );

    shared::db::counters::fold(&env.db).await.unwrap();
    let (left, zero, in_flight): (i64, i64, i64) = {
        let r = client
            .query_one(
                "SELECT (SELECT count(*) FROM batch_minute_deltas) AS left,
                        (SELECT count(*) FROM batch_minutes WHERE n = 0) AS zero,
                        (SELECT count(*) FROM batch_minutes WHERE batch_id = $1 AND outcome = '') AS in_flight",
                &[&batch],
            )
            .await
            .unwrap();
        (r.get("left"), r.get("zero"), r.get("in_flight"))
    };
    assert_eq!(left, 0, "a fold moves every minute delta");
    assert_eq!(zero, 0, "emptied minutes are dropped");
    assert_eq!(
        in_flight, 0,
        "every call ended: no in-flight minute is left"
    );
    assert_eq!(
        minutes_kept(&env, batch).await,
        minutes_scanned(&env, batch).await
    );
    // Five minutes of calls: the chart's rows are minutes × outcomes, not attempts.
    assert!(before.len() <= 5 * 4, "{} rows", before.len());
}

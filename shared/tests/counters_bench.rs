//! What the batch counters (migration V12) cost the writers: ingest's COPY of a 100,000-row
//! batch in chunks of 1,000, and the dial path's one-contact transactions (released → dialing →
//! final, as the dial worker writes them), each with the counting triggers and without them
//! (disabled for the comparison only), alternated to even out the noise of a shared machine;
//! and what a read costs against the scan it replaces. Run with:
//!
//! ```sh
//! cargo nextest run -p dialfleet-shared --test counters_bench --run-ignored only --no-capture
//! ```

use std::time::{Duration, Instant};

use testkit::TestEnv;
use testkit::fixtures::{self, WorkspaceIds};
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::{ToSql, Type};
use uuid::Uuid;

const ROWS: i32 = 100_000;
const CHUNK: i32 = 1_000;
const UPDATES: usize = 2_000;
const ROUNDS: usize = 3;

fn set_triggers(on: bool) -> String {
    let verb = if on { "ENABLE" } else { "DISABLE" };
    format!(
        "ALTER TABLE contacts {verb} TRIGGER contacts_counted_insert;
         ALTER TABLE contacts {verb} TRIGGER contacts_counted_update;
         ALTER TABLE contacts {verb} TRIGGER contacts_counted_delete;"
    )
}

/// COPYs a batch of [`ROWS`] contacts in chunks of [`CHUNK`], one transaction each, as the
/// ingest worker does.
async fn ingest(env: &TestEnv, ws: Uuid, batch: Uuid) -> Duration {
    let mut client = env.db.get().await.unwrap();
    let types = [
        Type::UUID,
        Type::UUID,
        Type::UUID,
        Type::INT4,
        Type::TEXT,
        Type::TEXT_ARRAY,
    ];
    let started = Instant::now();
    for chunk in 0..ROWS / CHUNK {
        let txn = client.transaction().await.unwrap();
        let sink = txn
            .copy_in(
                "COPY contacts (id, batch_id, workspace_id, row_index, phone_number, timezones)
                 FROM STDIN BINARY",
            )
            .await
            .unwrap();
        let writer = BinaryCopyInWriter::new(sink, &types);
        futures_util::pin_mut!(writer);
        let zones = vec!["America/New_York".to_owned()];
        for i in chunk * CHUNK..(chunk + 1) * CHUNK {
            let number = format!("+1201{i:07}");
            let values: [&(dyn ToSql + Sync); 6] =
                [&Uuid::now_v7(), &batch, &ws, &i, &number, &zones];
            writer.as_mut().write(&values).await.unwrap();
        }
        writer.finish().await.unwrap();
        txn.commit().await.unwrap();
    }
    started.elapsed()
}

/// [`UPDATES`] contacts taken through released → dialing → completed, one contact per
/// transaction and statement, as the scheduler's claim and the dial worker's steps write them.
async fn dial_path(env: &TestEnv, batch: Uuid) -> Duration {
    let client = env.db.get().await.unwrap();
    let ids: Vec<Uuid> = client
        .query(
            "SELECT id FROM contacts WHERE batch_id = $1 AND state = 'queued' ORDER BY row_index LIMIT $2",
            &[&batch, &(UPDATES as i64)],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get("id"))
        .collect();
    let started = Instant::now();
    for id in &ids {
        for (state, outcome) in [
            ("released", None),
            ("dialing", None),
            ("completed", Some("completed")),
        ] {
            client
                .execute(
                    "UPDATE contacts SET state = $2, last_outcome = coalesce($3, last_outcome),
                         updated_at = now() WHERE id = $1",
                    &[id, &state, &outcome],
                )
                .await
                .unwrap();
        }
    }
    started.elapsed()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: prints figures"]
async fn what_the_batch_counters_cost_ingest_and_dialing() {
    let env = TestEnv::new().await;
    let client = env.db.get().await.unwrap();
    let ws = fixtures::Workspace::new().insert(&client).await;
    let mut ingest_on = Vec::new();
    let mut ingest_off = Vec::new();
    let mut dial_on = Vec::new();
    let mut dial_off = Vec::new();
    let mut last = None;
    for round in 0..ROUNDS {
        for on in [round % 2 == 0, round % 2 != 0] {
            client.batch_execute(&set_triggers(on)).await.unwrap();
            let batch = fixtures::Batch::new(WorkspaceIds { ..ws })
                .insert(&client)
                .await;
            let t = ingest(&env, ws.id, batch).await;
            client.batch_execute("ANALYZE contacts").await.unwrap();
            let d = dial_path(&env, batch).await;
            println!(
                "round {round}, triggers {}: ingest {:.0} ms ({:.1} µs/row), dial path {:.0} ms ({:.0} µs per contact update)",
                if on { "on " } else { "off" },
                ms(t),
                ms(t) * 1000.0 / f64::from(ROWS),
                ms(d),
                ms(d) * 1000.0 / (UPDATES * 3) as f64,
            );
            if on {
                ingest_on.push(t);
                dial_on.push(d);
                last = Some(batch);
            } else {
                ingest_off.push(t);
                dial_off.push(d);
            }
        }
    }
    client.batch_execute(&set_triggers(true)).await.unwrap();
    let median = |v: &mut Vec<Duration>| {
        v.sort();
        v[v.len() / 2]
    };
    let (io, ix) = (median(&mut ingest_on), median(&mut ingest_off));
    let (dn, dx) = (median(&mut dial_on), median(&mut dial_off));
    println!(
        "median of {ROUNDS}: ingest of {ROWS} rows {:.0} ms with the counters, {:.0} ms without: ×{:.3} ({:+.1} %)",
        ms(io),
        ms(ix),
        ms(io) / ms(ix),
        (ms(io) / ms(ix) - 1.0) * 100.0
    );
    println!(
        "median of {ROUNDS}: {} one-contact updates {:.0} ms with the counters, {:.0} ms without: ×{:.3} ({:+.0} µs per update)",
        UPDATES * 3,
        ms(dn),
        ms(dx),
        ms(dn) / ms(dx),
        (ms(dn) - ms(dx)) * 1000.0 / (UPDATES * 3) as f64
    );

    // A read: the counters (folded, then with a second of unfolded deltas) against the scan.
    let batch = last.unwrap();
    shared::db::counters::fold(&env.db).await.unwrap();
    client
        .batch_execute("VACUUM ANALYZE contacts")
        .await
        .unwrap();
    let time = async |sql: &str| -> f64 {
        let mut best = f64::MAX;
        for _ in 0..5 {
            let rows = client
                .query(&format!("EXPLAIN (ANALYZE, FORMAT JSON) {sql}"), &[])
                .await
                .unwrap();
            let plan: serde_json::Value = rows[0].get("QUERY PLAN");
            best = best.min(plan[0]["Execution Time"].as_f64().unwrap());
        }
        best
    };
    let counters = shared::db::counters::groups_of(&format!("'{batch}'::uuid"));
    let scan = format!(
        "SELECT state, last_outcome, hold_reason, count(*) FROM contacts WHERE batch_id = '{batch}' GROUP BY 1, 2, 3"
    );
    let folded = time(&counters).await;
    // About a second of a busy batch's changes: 30 calls a second, three steps each.
    for id in client
        .query(
            "SELECT id FROM contacts WHERE batch_id = $1 AND state = 'queued' LIMIT 30",
            &[&batch],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get::<_, Uuid>("id"))
    {
        for state in ["released", "dialing", "failed"] {
            client
                .execute(
                    "UPDATE contacts SET state = $2 WHERE id = $1",
                    &[&id, &state],
                )
                .await
                .unwrap();
        }
    }
    let unfolded = time(&counters).await;
    let scanned = time(&scan).await;
    println!(
        "a read of one {ROWS}-contact batch's counts: counters {folded:.3} ms (folded), {unfolded:.3} ms (+180 deltas); the scan it replaces {scanned:.1} ms"
    );
}

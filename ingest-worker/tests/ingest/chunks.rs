//! The chunk transaction: normalisation, rejections, duplicates, redelivery, completion.

use futures_util::future::join_all;
use ingest_worker::chunk::{ChunkOutcome, handle_chunk};
use ingest_worker::normalize::NumberCheck;
use serde_json::json;
use shared::queue::messages::RawRow;
use testkit::TestEnv;

use crate::fixture::{self, BatchOpts, chunk, number, row};

const STRICT: NumberCheck = NumberCheck::Strict;

fn committed(outcome: ChunkOutcome) -> ingest_worker::chunk::Committed {
    match outcome {
        ChunkOutcome::Committed(c) => c,
        other => panic!("expected a commit, got {other:?}"),
    }
}

#[tokio::test]
async fn rows_are_normalized_and_rejections_kept() {
    let env = TestEnv::new().await;
    let batch = fixture::batch(&env.db, BatchOpts::default()).await;
    let full = RawRow {
        phone_number: "(201) 555-0123".into(),
        external_id: Some("contact_1".into()),
        name: Some("Jane Doe".into()),
        email: Some("jane@example.com".into()),
        company: Some("Acme".into()),
        inputs: json!({"lead_score": 80}),
        timezone: Some("America/Chicago".into()),
        state: Some("FL".into()),
        postal_code: Some("73301-0001".into()),
    };
    let mut nul = row("+12015550124");
    nul.company = Some("bad\0".into());
    let rows = vec![
        full,
        row(""),
        row("not a number"),
        row("+1 555 123 4567"),
        row("+44 20 7183 8750"),
        nul,
        row("201.555.0123"),
    ];
    let done = committed(
        handle_chunk(&env.db, STRICT, chunk(&batch, 0, 0, rows))
            .await
            .unwrap(),
    );
    assert_eq!((done.accepted, done.rejected, done.finished), (2, 5, false));

    assert_eq!(
        fixture::contacts(&env.db, &batch).await,
        [
            (0, "+12015550123".to_owned()),
            (4, "+442071838750".to_owned())
        ]
    );
    let client = env.db.get().await.unwrap();
    let r = client
        .query_one(
            "SELECT external_id, name, email, company, inputs, state, next_attempt_at = '-infinity' AS due_now,
                    workspace_id
             FROM contacts WHERE batch_id = $1 AND row_index = 0",
            &[&batch.id],
        )
        .await
        .unwrap();
    assert_eq!(
        r.get::<_, Option<String>>("external_id").as_deref(),
        Some("contact_1")
    );
    assert_eq!(
        r.get::<_, Option<String>>("name").as_deref(),
        Some("Jane Doe")
    );
    assert_eq!(
        r.get::<_, Option<String>>("email").as_deref(),
        Some("jane@example.com")
    );
    assert_eq!(
        r.get::<_, Option<String>>("company").as_deref(),
        Some("Acme")
    );
    assert_eq!(
        r.get::<_, serde_json::Value>("inputs"),
        json!({"lead_score": 80})
    );
    assert_eq!(r.get::<_, String>("state"), "queued");
    assert!(r.get::<_, bool>("due_now"));
    assert_eq!(r.get::<_, uuid::Uuid>("workspace_id"), batch.workspace_id);

    // Where the row says it is: the declared state and postal code as given, and the postal
    // code's state resolved from the shipped ZIP data (73301 is Texas, not Oklahoma).
    let place = client
        .query_one(
            "SELECT declared_state, postal_code, postal_state FROM contacts
             WHERE batch_id = $1 AND row_index = 0",
            &[&batch.id],
        )
        .await
        .unwrap();
    assert_eq!(
        (
            place.get::<_, Option<String>>("declared_state").as_deref(),
            place.get::<_, Option<String>>("postal_code").as_deref(),
            place.get::<_, Option<String>>("postal_state").as_deref(),
        ),
        (Some("FL"), Some("73301-0001"), Some("TX"))
    );
    let other = client
        .query_one(
            "SELECT declared_state, postal_code, postal_state FROM contacts
             WHERE batch_id = $1 AND row_index = 4",
            &[&batch.id],
        )
        .await
        .unwrap();
    assert_eq!(other.get::<_, Option<String>>("postal_state"), None);

    let reasons: Vec<(i32, String)> = fixture::rejected(&env.db, &batch)
        .await
        .into_iter()
        .map(|(i, reason, _)| (i, reason))
        .collect();
    assert_eq!(
        reasons,
        [
            (1, "missing_number".to_owned()),
            (2, "invalid_number".to_owned()),
            (3, "invalid_number".to_owned()),
            (5, "invalid_text".to_owned()),
            (6, "duplicate".to_owned()),
        ]
    );
    let s = fixture::state(&env.db, &batch).await;
    assert_eq!((s.sorted, s.accepted, s.rejected), (7, 2, 5));
    assert_eq!(s.ingest_state, "ingesting");
}

#[tokio::test]
async fn default_region_comes_from_the_batch() {
    let env = TestEnv::new().await;
    let batch = fixture::batch(
        &env.db,
        BatchOpts {
            region: "GB",
            ..Default::default()
        },
    )
    .await;
    let rows = vec![
        row("020 7183 8750"),
        row("555 0123"),
        row("+1 201 555 0123"),
    ];
    handle_chunk(&env.db, STRICT, chunk(&batch, 0, 0, rows))
        .await
        .unwrap();
    assert_eq!(
        fixture::contacts(&env.db, &batch).await,
        [
            (0, "+442071838750".to_owned()),
            (2, "+12015550123".to_owned())
        ]
    );
    assert_eq!(
        fixture::rejected(&env.db, &batch).await[0].1,
        "invalid_number"
    );
}

#[tokio::test]
async fn first_row_wins_across_chunks_whatever_the_commit_order() {
    let env = TestEnv::new().await;
    let batch = fixture::batch(&env.db, BatchOpts::default()).await;
    let x = number(7);
    // Rows 0..3, 3..6, 6..9; the number `x` is on rows 1, 4 and 7. The middle chunk commits
    // first, then the last, then the first.
    let c0 = chunk(
        &batch,
        0,
        0,
        vec![row(&number(0)), row(&x), row(&number(2))],
    );
    let c1 = chunk(
        &batch,
        1,
        3,
        vec![row(&number(3)), row(&x), row(&number(5))],
    );
    let c2 = chunk(
        &batch,
        2,
        6,
        vec![row(&number(6)), row(&x), row(&number(8))],
    );
    committed(handle_chunk(&env.db, STRICT, c1).await.unwrap());
    let last = committed(handle_chunk(&env.db, STRICT, c2).await.unwrap());
    assert_eq!((last.accepted, last.rejected), (2, 1));
    let first = committed(handle_chunk(&env.db, STRICT, c0).await.unwrap());
    assert_eq!((first.accepted, first.rejected, first.displaced), (3, 0, 1));

    let contacts = fixture::contacts(&env.db, &batch).await;
    assert_eq!(contacts.len(), 7);
    assert!(contacts.contains(&(1, x.clone())));
    let rejected = fixture::rejected(&env.db, &batch).await;
    assert_eq!(
        rejected,
        [
            (4, "duplicate".to_owned(), "duplicate of row 2".to_owned()),
            (7, "duplicate".to_owned(), "duplicate of row 5".to_owned()),
        ]
    );
    let s = fixture::state(&env.db, &batch).await;
    assert_eq!((s.sorted, s.accepted, s.rejected), (9, 7, 2));
}

#[tokio::test]
async fn a_released_contact_keeps_its_number() {
    let env = TestEnv::new().await;
    let batch = fixture::batch(
        &env.db,
        BatchOpts {
            surface: "vogent",
            ..Default::default()
        },
    )
    .await;
    let x = number(1);
    handle_chunk(&env.db, STRICT, chunk(&batch, 1, 2, vec![row(&x)]))
        .await
        .unwrap();
    // A Vogent job may start while rows arrive: this contact is already being dialed.
    env.db
        .get()
        .await
        .unwrap()
        .execute(
            "UPDATE contacts SET state = 'released' WHERE batch_id = $1",
            &[&batch.id],
        )
        .await
        .unwrap();
    let done = committed(
        handle_chunk(
            &env.db,
            STRICT,
            chunk(&batch, 0, 0, vec![row(&number(0)), row(&x)]),
        )
        .await
        .unwrap(),
    );
    assert_eq!((done.accepted, done.rejected, done.displaced), (1, 1, 0));
    let rejected = fixture::rejected(&env.db, &batch).await;
    assert_eq!(rejected[0].0, 1);
    assert!(rejected[0].2.contains("already released"), "{rejected:?}");
}

/// `rows.submitted` was twice the rows sent: the gateway wrote `total_rows` and every chunk
/// added its rows to it again.
#[tokio::test]
async fn chunks_leave_the_submitted_count_as_the_gateway_wrote_it() {
    let env = TestEnv::new().await;
    let batch = fixture::batch(&env.db, BatchOpts::default()).await;
    env.db
        .get()
        .await
        .unwrap()
        .execute(
            "UPDATE batches SET total_rows = 5 WHERE id = $1",
            &[&batch.id],
        )
        .await
        .unwrap();
    let chunks = vec![
        chunk(
            &batch,
            0,
            0,
            vec![row(&number(0)), row(&number(1)), row("nope")],
        ),
        chunk(&batch, 1, 3, vec![row(&number(3)), row(&number(4))]),
    ];
    for c in chunks {
        committed(handle_chunk(&env.db, STRICT, c).await.unwrap());
    }
    let s = fixture::state(&env.db, &batch).await;
    assert_eq!((s.submitted, s.accepted, s.rejected), (5, 4, 1));
}

#[tokio::test]
async fn the_same_chunk_delivered_twice_changes_nothing() {
    let env = TestEnv::new().await;
    let batch = fixture::batch(&env.db, BatchOpts::default()).await;
    let chunks = fixture::chunks(&batch, 2, 50);
    committed(
        handle_chunk(&env.db, STRICT, chunks[0].clone())
            .await
            .unwrap(),
    );
    let before = fixture::state(&env.db, &batch).await;
    assert_eq!(
        handle_chunk(&env.db, STRICT, chunks[0].clone())
            .await
            .unwrap(),
        ChunkOutcome::AlreadyDone
    );
    // Two deliveries at once (two workers): one commits, the other waits and finds it done.
    let both = join_all([
        handle_chunk(&env.db, STRICT, chunks[1].clone()),
        handle_chunk(&env.db, STRICT, chunks[1].clone()),
    ])
    .await;
    let outcomes: Vec<_> = both.into_iter().map(|r| r.unwrap()).collect();
    assert_eq!(
        outcomes
            .iter()
            .filter(|o| matches!(o, ChunkOutcome::Committed(_)))
            .count(),
        1,
        "{outcomes:?}"
    );
    assert!(outcomes.contains(&ChunkOutcome::AlreadyDone));
    let after = fixture::state(&env.db, &batch).await;
    assert_eq!((before.sorted, after.sorted), (50, 100));
    assert_eq!(fixture::contacts(&env.db, &batch).await.len(), 100);
    assert!(fixture::rejected(&env.db, &batch).await.is_empty());
}

#[tokio::test]
async fn the_last_chunk_or_the_announcement_finishes_the_batch() {
    let env = TestEnv::new().await;
    // Dialgen: the announcement comes first, the last chunk finishes and starts the batch.
    let dialgen = fixture::batch(&env.db, BatchOpts::default()).await;
    let chunks = fixture::chunks(&dialgen, 2, 10);
    committed(
        handle_chunk(&env.db, STRICT, chunks[0].clone())
            .await
            .unwrap(),
    );
    assert!(!fixture::announce(&env.db, &dialgen, 2).await);
    assert!(
        committed(
            handle_chunk(&env.db, STRICT, chunks[1].clone())
                .await
                .unwrap()
        )
        .finished
    );
    let s = fixture::state(&env.db, &dialgen).await;
    assert_eq!(
        (s.ingest_state.as_str(), s.state.as_str()),
        ("ready", "active")
    );

    // Vogent: the chunks come first, the announcement finishes it; the job stays INIT.
    let vogent = fixture::batch(
        &env.db,
        BatchOpts {
            surface: "vogent",
            ..Default::default()
        },
    )
    .await;
    for c in fixture::chunks(&vogent, 3, 10) {
        assert!(!committed(handle_chunk(&env.db, STRICT, c).await.unwrap()).finished);
    }
    assert!(fixture::announce(&env.db, &vogent, 3).await);
    let s = fixture::state(&env.db, &vogent).await;
    assert_eq!(
        (s.ingest_state.as_str(), s.state.as_str()),
        ("ready", "created")
    );
}

#[tokio::test]
async fn concurrent_chunks_sharing_numbers_converge_on_the_first_rows() {
    let env = TestEnv::new().await;
    let batch = fixture::batch(&env.db, BatchOpts::default()).await;
    fixture::announce(&env.db, &batch, 8).await;
    // 8 chunks of 25 rows drawing from 40 numbers: many cross-chunk duplicates, committed
    // concurrently in whatever order the database lets them.
    let (chunks_n, size, distinct) = (8u32, 25u32, 40u32);
    let chunks: Vec<_> = (0..chunks_n)
        .map(|seq| {
            let first = seq * size;
            let rows = (first..first + size)
                .map(|i| row(&number((i * 7919) % distinct)))
                .collect();
            chunk(&batch, seq, first, rows)
        })
        .rev()
        .collect();
    let results = join_all(chunks.into_iter().map(|c| handle_chunk(&env.db, STRICT, c))).await;
    assert!(results.iter().all(|r| r.is_ok()), "{results:?}");

    let contacts = fixture::contacts(&env.db, &batch).await;
    assert_eq!(contacts.len(), distinct as usize);
    for (row_index, number_kept) in &contacts {
        let first_with_number = (0..chunks_n * size)
            .find(|i| number((i * 7919) % distinct) == *number_kept)
            .unwrap();
        assert_eq!(*row_index as u32, first_with_number);
    }
    let rejected = fixture::rejected(&env.db, &batch).await;
    assert_eq!(rejected.len(), (chunks_n * size - distinct) as usize);
    assert!(rejected.iter().all(|(_, reason, _)| reason == "duplicate"));
    let s = fixture::state(&env.db, &batch).await;
    assert_eq!(
        (s.ingest_state.as_str(), s.sorted, s.accepted, s.rejected),
        ("ready", 200, 40, 160)
    );
}

#[tokio::test]
async fn a_chunk_for_a_closed_batch_stores_nothing() {
    let env = TestEnv::new().await;
    let batch = fixture::batch(&env.db, BatchOpts::default()).await;
    env.db
        .get()
        .await
        .unwrap()
        .execute(
            "UPDATE batches SET ingest_state = 'failed', state = 'failed' WHERE id = $1",
            &[&batch.id],
        )
        .await
        .unwrap();
    let outcome = handle_chunk(&env.db, STRICT, fixture::chunks(&batch, 1, 5).remove(0))
        .await
        .unwrap();
    assert_eq!(
        outcome,
        ChunkOutcome::BatchClosed {
            ingest_state: shared::domain::IngestState::Failed
        }
    );
    assert!(fixture::contacts(&env.db, &batch).await.is_empty());
}

#[tokio::test]
async fn deleting_a_batch_or_its_workspace_deletes_its_contacts() {
    let env = TestEnv::new().await;
    let a = fixture::batch(&env.db, BatchOpts::default()).await;
    let b = fixture::batch(&env.db, BatchOpts::default()).await;
    for batch in [&a, &b] {
        handle_chunk(&env.db, STRICT, fixture::chunks(batch, 1, 5).remove(0))
            .await
            .unwrap();
    }
    let client = env.db.get().await.unwrap();
    client
        .execute("DELETE FROM batches WHERE id = $1", &[&a.id])
        .await
        .unwrap();
    assert!(fixture::contacts(&env.db, &a).await.is_empty());
    assert_eq!(fixture::contacts(&env.db, &b).await.len(), 5);
    client
        .execute("DELETE FROM workspaces WHERE id = $1", &[&b.workspace_id])
        .await
        .unwrap();
    let left: i64 = client
        .query_one("SELECT count(*) AS n FROM contacts", &[])
        .await
        .unwrap()
        .get("n");
    assert_eq!(left, 0);
}

#[tokio::test]
async fn listed_numbers_are_rejected_and_zones_are_stored() {
    let env = TestEnv::new().await;
    let batch = fixture::batch(&env.db, BatchOpts::default()).await;
    let client = env.db.get().await.unwrap();
    client
        .execute(
            "INSERT INTO dnc_numbers (workspace_id, number) VALUES ($1, '+12125550101')",
            &[&batch.workspace_id],
        )
        .await
        .unwrap();
    let mut given = row("+12125550102");
    given.timezone = Some("America/Chicago".into());
    let rows = vec![
        row("+12125550100"),
        // Written another way, still the listed number once normalised.
        row("(212) 555-0101"),
        given,
        row("+12135550100"),
    ];
    let done = committed(
        handle_chunk(&env.db, STRICT, chunk(&batch, 0, 0, rows))
            .await
            .unwrap(),
    );
    assert_eq!((done.accepted, done.rejected, done.do_not_call), (3, 1, 1));
    let reasons = fixture::rejected(&env.db, &batch).await;
    assert_eq!(reasons.len(), 1);
    assert_eq!((reasons[0].0, reasons[0].1.as_str()), (1, "do_not_call"));
    let zones: Vec<(String, Option<String>, Vec<String>)> = client
        .query(
            "SELECT phone_number, timezone, timezones FROM contacts WHERE batch_id = $1
             ORDER BY row_index",
            &[&batch.id],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get("phone_number"), r.get("timezone"), r.get("timezones")))
        .collect();
    assert_eq!(
        zones,
        [
            (
                "+12125550100".to_owned(),
                None,
                vec!["America/New_York".to_owned()]
            ),
            (
                "+12125550102".to_owned(),
                Some("America/Chicago".to_owned()),
                vec!["America/Chicago".to_owned()]
            ),
            (
                "+12135550100".to_owned(),
                None,
                vec!["America/Los_Angeles".to_owned()]
            ),
        ]
    );
    let s = fixture::state(&env.db, &batch).await;
    assert_eq!((s.accepted, s.rejected), (3, 1));
}

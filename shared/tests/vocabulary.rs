//! The database holds the one vocabulary: every state and outcome column accepts exactly the
//! names its enum in `shared::domain` writes, and nothing else (not `canceled`).

use shared::domain::{AttemptState, CallOutcome, ContactState, IngestState, JobState};
use testkit::{TestEnv, fixtures};

/// Sets `column` of the one row of `table` to `value`; whether the database accepted it.
async fn accepts(client: &tokio_postgres::Client, table: &str, column: &str, value: &str) -> bool {
    let sql = format!("UPDATE {table} SET {column} = $1");
    match client.execute(&sql, &[&value]).await {
        Ok(_) => true,
        Err(e) => {
            assert_eq!(
                e.code(),
                Some(&tokio_postgres::error::SqlState::CHECK_VIOLATION),
                "{e}"
            );
            false
        }
    }
}

/// One row in each table with a state or outcome column: a batch, a contact, an attempt.
async fn one_of_each(client: &tokio_postgres::Client) {
    let ws = fixtures::Workspace::new().insert(client).await;
    let batch = fixtures::Batch::new(ws).insert(client).await;
    let contact = fixtures::Contacts::new(["+12015550100"])
        .insert(client, batch, ws.id)
        .await[0];
    client
        .execute(
            "INSERT INTO dial_attempts (id, contact_id, batch_id, workspace_id, attempt_no, to_number)
             VALUES (gen_random_uuid(), $1, $2, $3, 1, '+12015550100')",
            &[&contact, &batch, &ws.id],
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn state_and_outcome_columns_accept_exactly_the_enums_names() {
    let env = TestEnv::new().await;
    let client = env.db.get().await.unwrap();
    one_of_each(&client).await;

    let columns: [(&str, &str, Vec<&str>); 6] = [
        (
            "batches",
            "state",
            JobState::ALL.map(JobState::as_str).to_vec(),
        ),
        (
            "batches",
            "ingest_state",
            IngestState::ALL.map(IngestState::as_str).to_vec(),
        ),
        (
            "contacts",
            "state",
            ContactState::ALL.map(ContactState::as_str).to_vec(),
        ),
        (
            "contacts",
            "last_outcome",
            CallOutcome::ALL.map(CallOutcome::as_str).to_vec(),
        ),
        (
            "dial_attempts",
            "state",
            AttemptState::ALL.map(AttemptState::as_str).to_vec(),
        ),
        (
            "dial_attempts",
            "outcome",
            CallOutcome::ALL.map(CallOutcome::as_str).to_vec(),
        ),
    ];
    for (table, column, values) in columns {
        for value in values {
            assert!(
                accepts(&client, table, column, value).await,
                "{table}.{column} refuses {value}"
            );
        }
        for wrong in ["canceled", "Completed", "no_answer", ""] {
            assert!(
                !accepts(&client, table, column, wrong).await,
                "{table}.{column} accepts {wrong:?}"
            );
        }
    }
}

/// Writes `value` into `table.column` as a typed parameter (`ToSql`) and reads it back typed
/// (`FromSql`) from the column itself.
async fn round_trip<T>(client: &tokio_postgres::Client, table: &str, column: &str, value: T) -> T
where
    T: tokio_postgres::types::ToSql + Sync + for<'a> tokio_postgres::types::FromSql<'a>,
{
    let sql = format!("UPDATE {table} SET {column} = $1 RETURNING {column}");
    client.query_one(&sql, &[&value]).await.unwrap().get(0)
}

#[tokio::test]
async fn every_state_and_outcome_round_trips_through_its_column() {
    let env = TestEnv::new().await;
    let client = env.db.get().await.unwrap();
    one_of_each(&client).await;

    for s in JobState::ALL {
        assert_eq!(round_trip(&client, "batches", "state", s).await, s);
    }
    for s in ContactState::ALL {
        assert_eq!(round_trip(&client, "contacts", "state", s).await, s);
    }
    for s in AttemptState::ALL {
        assert_eq!(round_trip(&client, "dial_attempts", "state", s).await, s);
    }
    for o in CallOutcome::ALL {
        assert_eq!(round_trip(&client, "dial_attempts", "outcome", o).await, o);
        assert_eq!(
            round_trip(&client, "contacts", "last_outcome", Some(o)).await,
            Some(o)
        );
    }
    // A NULL outcome reads as None; a name the enum does not know is an error, not a string.
    assert_eq!(
        round_trip::<Option<CallOutcome>>(&client, "contacts", "last_outcome", None).await,
        None
    );
    let row = client
        .query_one("SELECT 'canceled'::text AS s, 'x'::varchar AS v", &[])
        .await
        .unwrap();
    assert!(row.try_get::<_, ContactState>("s").is_err());
    assert!(row.try_get::<_, JobState>("v").is_err());
    // Typed parameters also bind where PostgreSQL infers varchar or an untyped literal's text.
    let back: JobState = client
        .query_one("SELECT $1::varchar", &[&JobState::Paused])
        .await
        .unwrap()
        .get(0);
    assert_eq!(back, JobState::Paused);
}

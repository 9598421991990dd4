//! The scheduler as its binary runs it: `run` ticks on the real clock until shutdown, and folds
//! the batch counters with no gateway running.

mod fixtures;

use std::time::Duration;

use fixtures::*;
use shared::config::Env;
use testkit::TestEnv;

#[tokio::test]
async fn run_releases_on_its_own_and_stops_on_shutdown() {
    let env = TestEnv::new().await;
    let ws = workspace(&env.db, 10).await;
    let job = job(&env.db, new_job(ws), 3, chrono::Utc::now()).await;

    let mut vars = env.env_vars();
    vars.push(("HEALTH_ADDR".into(), "127.0.0.1:0".into()));
    let config = scheduler::config::Config::from_env(&Env::from_pairs(vars)).unwrap();
    let shutdown = tokio_util::sync::CancellationToken::new();
    let task = tokio::spawn(scheduler::run(config, shutdown.clone()));

    // Liveness, not timing: wait (generously) until the loop has released the three contacts.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while count(&env.db, job, "released").await < 3 {
        assert!(tokio::time::Instant::now() < deadline, "nothing released");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(drain_dial(&env).await.len(), 3);

    // Every contact final: the loop completes the job.
    sql(
        &env.db,
        "UPDATE contacts SET state = 'completed', last_outcome = 'completed' WHERE batch_id = $1",
        &[&job],
    )
    .await;
    while job_state(&env.db, job).await != "completed" {
        assert!(tokio::time::Instant::now() < deadline, "job not completed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // No gateway runs here: the scheduler alone folds the batch counters' deltas, so they do
    // not pile up while no gateway is running.
    let client = env.db.get().await.unwrap();
    while client
        .query_one("SELECT count(*) FROM batch_counter_deltas", &[])
        .await
        .unwrap()
        .get::<_, i64>(0)
        > 0
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "deltas never folded"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let folded: i64 = client
        .query_one(
            "SELECT coalesce(sum(n), 0)::bigint FROM batch_counters WHERE batch_id = $1",
            &[&job],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(folded, 3, "the job's three contacts, counted once");

    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("stops on shutdown")
        .unwrap()
        .unwrap();
}

/// Race 6: a scheduler whose own clock runs three hours ahead of the database's must not
/// release a job whose start time (by the database's clock) is two hours away. A job without a
/// start time in the same workspace shows the loop is ticking, so the held job's zero is not a
/// loop that never ran.
#[tokio::test]
async fn skewed_scheduler_clock_does_not_release_before_the_database_says_so() {
    let env = TestEnv::new().await;
    let ws = workspace(&env.db, 10).await;
    let db_now: chrono::DateTime<chrono::Utc> = env
        .db
        .get()
        .await
        .unwrap()
        .query_one("SELECT now()", &[])
        .await
        .unwrap()
        .get(0);
    let held = job(
        &env.db,
        new_job(ws).scheduled_start_time(Some(db_now + chrono::Duration::hours(2))),
        3,
        db_now,
    )
    .await;
    let control = job(&env.db, new_job(ws), 2, db_now).await;

    let mut vars = env.env_vars();
    vars.push(("HEALTH_ADDR".into(), "127.0.0.1:0".into()));
    vars.push((shared::clock::SKEW_VAR.into(), (3 * 3600).to_string()));
    let config = scheduler::config::Config::from_env(&Env::from_pairs(vars)).unwrap();
    let shutdown = tokio_util::sync::CancellationToken::new();
    let task = tokio::spawn(scheduler::run(config, shutdown.clone()));

    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while count(&env.db, control, "released").await < 2 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "control not released"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A few more ticks for the held job to have had every chance.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(
        count(&env.db, held, "released").await,
        0,
        "released before its start time by the database's clock"
    );
    assert_eq!(count(&env.db, held, "queued").await, 3);

    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("stops on shutdown")
        .unwrap()
        .unwrap();
}

//! Do-not-call registry freshness at release (issue #25; 16 CFR 310.4(b)(3)(iv), 47 CFR
//! 64.1200(c)(2)(i)(D)), on an injected clock: a workspace that relies on the national
//! registry is not released while its newest copy is older than 31 days (or it has none), other
//! workspaces are, and its release resumes at the first tick after a fresh copy is recorded.

mod fixtures;

use fixtures::*;
use scheduler::release_once;
use testkit::TestEnv;
use testkit::fixtures::{Batch, Contacts, Workspace};

#[tokio::test]
async fn a_stale_registry_holds_the_workspace_until_a_fresh_copy_lands() {
    let env = TestEnv::new().await;
    let publisher = publisher(&env);
    let client = env.db.get().await.unwrap();
    let relying = Workspace::new()
        .max_concurrent_dials(10)
        .insert(&client)
        .await;
    let other = Workspace::new()
        .max_concurrent_dials(10)
        .insert(&client)
        .await;
    client
        .execute(
            "UPDATE workspaces SET dnc_registry_required = true WHERE id = $1",
            &[&relying.id],
        )
        .await
        .unwrap();
    for ws in [relying, other] {
        let job = Batch::new(ws)
            .max_concurrent_dials(10)
            .insert(&client)
            .await;
        Contacts::new(["+12125550100", "+12125550101"])
            .due(at("2026-01-01T00:00:00Z"))
            .insert(&client, job, ws.id)
            .await;
    }
    let released = |ws: uuid::Uuid| {
        let db = env.db.clone();
        async move {
            let client = db.get().await.unwrap();
            client
                .query_one(
                    "SELECT count(*) AS n FROM contacts WHERE workspace_id = $1 AND state = 'released'",
                    &[&ws],
                )
                .await
                .unwrap()
                .get::<_, i64>("n")
        }
    };
    let settings = settings();
    // 2026-12-07, 15:00 UTC (10:00 in New York).
    let t = at("2026-12-07T15:00:00Z");

    // No copy at all: held; the other workspace goes on.
    let r = release_once(&env.db, &publisher, &settings, t)
        .await
        .unwrap();
    assert_eq!((r.released, r.registry_held_jobs), (2, 1), "{r:?}");
    assert_eq!(released(relying.id).await, 0);
    assert_eq!(released(other.id).await, 2);

    // A copy of 2026-11-05 covers calls until 2026-12-06: still held on the 7th.
    let copy = |as_of: &'static str| {
        let db = env.db.clone();
        async move {
            let client = db.get().await.unwrap();
            client
                .execute(
                    "INSERT INTO dnc_registry_copies (workspace_id, source, as_of)
                     VALUES ($1, 'national_registry', $2::text::date)",
                    &[&relying.id, &as_of],
                )
                .await
                .unwrap();
        }
    };
    copy("2026-11-05").await;
    let r = release_once(&env.db, &publisher, &settings, t)
        .await
        .unwrap();
    assert_eq!((r.released, r.registry_held_jobs), (0, 1), "{r:?}");
    // The same copy did cover the day before (31 days after its date).
    let r = release_once(&env.db, &publisher, &settings, at("2026-12-06T23:59:00Z"))
        .await
        .unwrap();
    assert_eq!(r.registry_held_jobs, 0, "fresh on its 31st day: {r:?}");
    client
        .execute(
            "UPDATE contacts SET state = 'queued', released_at = NULL WHERE workspace_id = $1",
            &[&relying.id],
        )
        .await
        .unwrap();

    // A fresh copy: the next tick releases.
    copy("2026-11-30").await;
    let r = release_once(&env.db, &publisher, &settings, t)
        .await
        .unwrap();
    assert_eq!((r.released, r.registry_held_jobs), (2, 0), "{r:?}");
    assert_eq!(released(relying.id).await, 2);
}

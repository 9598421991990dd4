//! The foundation's promises: health endpoints, migrations, the administration CLI, and a clear
//! one-line failure when a service is unreachable.

mod common;

use std::process::Command;

use common::spawn_app;

#[tokio::test]
async fn healthz_and_readyz_answer() {
    let app = spawn_app().await;
    let health = app.http.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    let ready = app.http.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 200);
    let body: serde_json::Value = ready.json().await.unwrap();
    assert_eq!(body["checks"]["postgres"], "ok");
    assert_eq!(body["checks"]["rabbitmq"], "ok");
}

#[tokio::test]
async fn migrations_create_every_table() {
    let app = spawn_app().await;
    let client = app.env.db.get().await.unwrap();
    for table in [
        "workspaces",
        "api_keys",
        "agents",
        "phone_numbers",
        "batches",
        "contacts",
        "rejected_rows",
        "dial_attempts",
        "ingest_chunks",
        "webhook_deliveries",
    ] {
        let row = client
            .query_one("SELECT to_regclass($1)::text AS name", &[&table])
            .await
            .unwrap();
        assert_eq!(row.get::<_, Option<String>>("name").as_deref(), Some(table));
    }
}

#[tokio::test]
async fn api_keys_are_stored_hashed_and_can_be_revoked() {
    let app = spawn_app().await;
    let client = app.env.db.get().await.unwrap();
    let stored: Vec<Vec<u8>> = client
        .query("SELECT key_hash FROM api_keys", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get("key_hash"))
        .collect();
    assert!(
        stored
            .iter()
            .all(|h| h.len() == 32 && h != app.key.as_bytes())
    );
    let prefix = &app.key[..12];
    assert!(
        api_gateway::admin::revoke_api_key(&app.env.db, prefix)
            .await
            .unwrap()
    );
    assert!(
        !api_gateway::admin::revoke_api_key(&app.env.db, prefix)
            .await
            .unwrap()
    );
}

fn gateway_bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_api-gateway"))
}

#[tokio::test]
async fn cli_migrates_and_creates_a_workspace() {
    let env = testkit::TestEnv::new().await;
    let run = |args: &[&str]| {
        let out = gateway_bin()
            .args(args)
            .envs(env.env_vars())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    run(&["migrate"]);
    let created = run(&[
        "workspace",
        "create",
        "--name",
        "acme",
        "--max-concurrent-dials",
        "7",
    ]);
    let workspace = created["workspaceId"].as_str().unwrap().to_owned();
    assert!(created["apiKey"].as_str().unwrap().starts_with("df_"));
    let second = run(&["api-key", "create", "--workspace", &workspace]);
    assert_ne!(second["apiKey"], created["apiKey"]);
    let prefix = second["apiKeyPrefix"].as_str().unwrap();
    run(&["api-key", "revoke", prefix]);

    // Compliance policy: the safe default, and the flags that change it.
    let relaxed = run(&[
        "workspace",
        "create",
        "--name",
        "night-shift",
        "--max-concurrent-dials",
        "3",
        "--recipient-hours",
        "off",
        "--allow-unknown-timezone",
        "--max-calls-per-number",
        "7/7",
    ]);
    let client = env.db.get().await.unwrap();
    let policy = |id: String| {
        let client = &client;
        async move {
            let id: uuid::Uuid = id.parse().unwrap();
            let r = client
                .query_one(
                    "SELECT recipient_hours_start, recipient_hours_end, allow_unknown_timezone,
                            max_calls_per_number_count, max_calls_per_number_days
                     FROM workspaces WHERE id = $1",
                    &[&id],
                )
                .await
                .unwrap();
            (
                r.get::<_, Option<i16>>("recipient_hours_start"),
                r.get::<_, Option<i16>>("recipient_hours_end"),
                r.get::<_, bool>("allow_unknown_timezone"),
                r.get::<_, Option<i32>>("max_calls_per_number_count"),
                r.get::<_, Option<i32>>("max_calls_per_number_days"),
            )
        }
    };
    assert_eq!(
        policy(workspace.clone()).await,
        (Some(480), Some(1260), false, None, None),
        "08:00-21:00, unknown zones held, no cap"
    );
    assert_eq!(
        policy(relaxed["workspaceId"].as_str().unwrap().to_owned()).await,
        (None, None, true, Some(7), Some(7))
    );
    let bad = gateway_bin()
        .args([
            "workspace",
            "create",
            "--name",
            "x",
            "--max-concurrent-dials",
            "1",
            "--recipient-hours",
            "21:00-08:00",
        ])
        .envs(env.env_vars())
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("recipient-hours"));
}

#[test]
fn unreachable_service_fails_with_one_clear_line() {
    let out = gateway_bin()
        .env(
            "DATABASE_URL",
            "postgres://postgres@127.0.0.1:5432/postgres",
        )
        .env("AMQP_URL", "amqp://guest:guest@127.0.0.1:1/%2f")
        .env("CONNECT_TIMEOUT_SECS", "1")
        .env("GATEWAY_ADDR", "127.0.0.1:0")
        .env("RUST_LOG", "off")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(
        lines[0].contains(
            "cannot connect to RabbitMQ at amqp://guest@127.0.0.1:1/%2f: connection refused"
        ),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"));
}

#[test]
fn malformed_setting_names_the_variable() {
    let out = gateway_bin()
        .env("CONNECT_TIMEOUT_SECS", "soon")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("CONNECT_TIMEOUT_SECS"), "{stderr}");
    assert_eq!(stderr.lines().count(), 1);
}

/// The batch columns read by name under an alias of `batches` (they once embedded a subquery
/// naming the table), and the effective rate inherits as the dial worker applies it.
#[tokio::test]
async fn batch_columns_read_under_an_alias_with_the_inherited_rate() {
    use api_gateway::batches::model::{Batch, COLUMNS};
    use testkit::fixtures::{Batch as NewBatch, WorkspaceIds};

    let app = spawn_app().await;
    let ws = WorkspaceIds {
        id: app.workspace_id,
        agent_id: app.create_agent().await.parse().unwrap(),
    };
    let client = app.env.db.get().await.unwrap();
    let id = NewBatch::new(ws).name("aliased").insert(&client).await;
    let rate = async |own: Option<i32>, workspace: Option<i32>, ceiling: i32| {
        client
            .execute(
                "UPDATE batches SET max_calls_per_second = $2 WHERE id = $1",
                &[&id, &own],
            )
            .await
            .unwrap();
        client
            .execute(
                "UPDATE workspaces SET max_calls_per_second = $2, cps_ceiling = $3 WHERE id = $1",
                &[&ws.id, &workspace, &ceiling],
            )
            .await
            .unwrap();
        let row = client
            .query_one(
                &format!("SELECT {COLUMNS} FROM batches b WHERE b.id = $1"),
                &[&id],
            )
            .await
            .unwrap();
        let batch = Batch::from_row(&row).unwrap();
        assert_eq!(batch.id, id);
        batch.max_calls_per_second
    };
    assert_eq!(rate(Some(3), Some(7), 50).await, 3, "its own rate");
    assert_eq!(rate(None, Some(7), 50).await, 7, "the workspace's");
    assert_eq!(rate(None, None, 9).await, 9, "the workspace's ceiling");
}

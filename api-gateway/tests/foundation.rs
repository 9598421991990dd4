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
            .query_one("SELECT to_regclass($1)::text", &[&table])
            .await
            .unwrap();
        assert_eq!(row.get::<_, Option<String>>(0).as_deref(), Some(table));
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
        .map(|r| r.get(0))
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

//! The operator's commands, run as the real binary against a test database: each with `--json`
//! and as text, and each failure one `error:` line with a non-zero exit.

mod common;

use std::process::{Command, Output};

use serde_json::{Value, json};

use common::running::running_batch;
use common::spawn_app;

struct Cli(Vec<(String, String)>);

impl Cli {
    fn raw(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_api-gateway"))
            .args(args)
            .envs(self.0.iter().cloned())
            .env("RUST_LOG", "error")
            .output()
            .unwrap()
    }

    /// Runs with `--json`, expects success, returns the document.
    fn json(&self, args: &[&str]) -> Value {
        let mut all = args.to_vec();
        all.push("--json");
        let out = self.raw(&all);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{args:?}: {e}: {}", String::from_utf8_lossy(&out.stdout)))
    }

    /// Runs as text, expects success, returns stdout.
    fn text(&self, args: &[&str]) -> String {
        let out = self.raw(args);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Runs, expects failure with one `error:` line containing `says`.
    fn fails(&self, args: &[&str], says: &str) {
        let out = self.raw(args);
        assert!(!out.status.success(), "{args:?} succeeded");
        let stderr = String::from_utf8_lossy(&out.stderr);
        let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(lines.len(), 1, "{args:?}: one line, got {stderr}");
        assert!(
            lines[0].starts_with("error: ") && lines[0].contains(says),
            "{args:?}: {stderr}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workspace_and_webhook_secret_commands() {
    let app = spawn_app().await;
    let cli = Cli(app.env.env_vars());
    let ws = app.workspace_id.to_string();

    let list = cli.json(&["workspace", "list"]);
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(list[0]["id"], ws);
    assert!(cli.text(&["workspace", "list"]).contains(&ws));

    let shown = cli.json(&["workspace", "show", &ws]);
    assert_eq!(shown["maxConcurrentDials"], 20);
    assert!(
        cli.text(&["workspace", "show", &ws])
            .contains("max concurrent dials: 20")
    );

    // The operator changes what an API key cannot.
    let updated = cli.json(&[
        "workspace",
        "update",
        &ws,
        "--max-concurrent-dials",
        "50",
        "--max-calls-per-second",
        "12",
        "--cps-ceiling",
        "40",
        "--max-attempts-ceiling",
        "8",
        "--default-max-attempts",
        "6",
        "--default-busy-delay-ms",
        "1000",
        "--default-no-answer-delay-ms",
        "2000",
        "--default-region",
        "GB",
        "--name",
        "acme",
        "--recipient-hours",
        "09:00-20:30",
        "--allow-unknown-timezone",
        "true",
        "--max-calls-per-number",
        "7/7",
    ]);
    assert_eq!(updated["maxConcurrentDials"], 50);
    assert_eq!(updated["maxCallsPerSecond"], 12);
    assert_eq!(updated["ceilings"]["maxCallsPerSecond"], 40);
    assert_eq!(updated["ceilings"]["maxAttempts"], 8);
    assert_eq!(updated["retryDefaults"]["maxAttempts"], 6);
    assert_eq!(updated["retryDefaults"]["busyDelay"], 1000);
    assert_eq!(updated["retryDefaults"]["noAnswerDelay"], 2000);
    assert_eq!(updated["defaultRegion"], "GB");
    assert_eq!(updated["name"], "acme");
    assert_eq!(updated["recipientCallingHours"], "09:00-20:30");
    assert_eq!(updated["allowUnknownTimezone"], true);
    assert_eq!(updated["maxCallsPerNumber"], json!({"count": 7, "days": 7}));
    let text = cli.text(&["workspace", "show", &ws]);
    assert!(
        text.contains("recipient calling hours: 09:00-20:30"),
        "{text}"
    );
    assert!(text.contains("max calls per number: 7 in 7 days"), "{text}");
    // ... and the API shows it.
    let api: Value = app
        .get("/api/workspace")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(api["maxConcurrentDials"], 50);
    assert_eq!(api["recipientCallingHours"], "09:00-20:30");
    assert_eq!(api["maxCallsPerNumber"], json!({"count": 7, "days": 7}));
    // Each policy turned off, and the allowance back.
    let off = cli.json(&[
        "workspace",
        "update",
        &ws,
        "--recipient-hours",
        "off",
        "--max-calls-per-number",
        "off",
        "--allow-unknown-timezone",
        "false",
    ]);
    assert_eq!(off["recipientCallingHours"], "off");
    assert_eq!(off["maxCallsPerNumber"], Value::Null);
    assert_eq!(off["allowUnknownTimezone"], false);
    let cleared = cli.json(&["workspace", "update", &ws, "--max-calls-per-second", "none"]);
    assert_eq!(cleared["maxCallsPerSecond"], Value::Null);
    assert!(
        cli.text(&["workspace", "update", &ws, "--max-concurrent-dials", "51"])
            .contains("max concurrent dials: 51")
    );

    let secret = cli.json(&["webhook-secret", "show", &ws]);
    let whole = secret["secret"].as_str().unwrap();
    assert!(whole.starts_with("whsec_") && whole.len() > 30);
    assert_eq!(api["webhookSecret"]["prefix"], whole[..10]);
    assert_eq!(cli.text(&["webhook-secret", "show", &ws]).trim(), whole);
    // After a rotation, the operator sees both while both sign.
    let rotated: Value = app
        .post("/api/workspace/webhook_secret")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let both = cli.json(&["webhook-secret", "show", &ws]);
    assert_eq!(both["secret"], rotated["secret"]);
    assert_eq!(both["previousSecret"], whole);
    // `… | head -1`: the reader goes away after the first line; the command ends quietly
    // (it panicked with a backtrace before).
    let mut child = Command::new(env!("CARGO_BIN_EXE_api-gateway"))
        .args(["webhook-secret", "show", &ws])
        .envs(cli.0.iter().cloned())
        .env("RUST_LOG", "error")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{:?}: {stderr}", out.status);
    assert!(
        !stderr.contains("panicked") && stderr.trim().is_empty(),
        "{stderr}"
    );

    let nobody = uuid::Uuid::now_v7().to_string();
    cli.fails(&["workspace", "show", &nobody], "no workspace with id");
    cli.fails(
        &[
            "workspace",
            "update",
            &nobody,
            "--max-concurrent-dials",
            "3",
        ],
        "no workspace with id",
    );
    cli.fails(&["workspace", "update", &ws], "nothing to change");
    // The pre-dial check and the registry reliance (docs/compliance.md).
    let checks = cli.json(&[
        "workspace",
        "update",
        &ws,
        "--predial-url",
        "https://checks.example.com/predial",
        "--predial-timeout-ms",
        "1500",
        "--dnc-registry-required",
        "true",
    ]);
    assert_eq!(checks["predialUrl"], "https://checks.example.com/predial");
    assert_eq!(checks["predialTimeoutMs"], 1500);
    assert_eq!(checks["dncRegistryRequired"], true);
    assert_eq!(checks["dncRegistry"]["holdReason"], "dnc_registry_stale");
    let off = cli.json(&["workspace", "update", &ws, "--predial-url", "off"]);
    assert_eq!(off["predialUrl"], serde_json::Value::Null);
    cli.fails(
        &[
            "workspace",
            "update",
            &ws,
            "--predial-url",
            "http://10.1.2.3/x",
        ],
        "--predial-url must not point to a private or reserved address",
    );
    cli.fails(
        &["workspace", "update", &ws, "--predial-timeout-ms", "10001"],
        "--predial-timeout-ms must be between 1 and 10000",
    );
    cli.fails(
        &[
            "workspace",
            "update",
            &ws,
            "--dnc-registry-required",
            "maybe",
        ],
        "--dnc-registry-required must be true or false",
    );
    cli.fails(
        &["workspace", "update", &ws, "--max-concurrent-dials", "0"],
        "--max-concurrent-dials must be at least 1",
    );
    cli.fails(
        &["workspace", "update", &ws, "--default-max-attempts", "9"],
        "would exceed the max-attempts ceiling",
    );
    cli.fails(
        &["workspace", "update", &ws, "--max-calls-per-second", "many"],
        "--max-calls-per-second",
    );
    cli.fails(
        &[
            "workspace",
            "update",
            &ws,
            "--recipient-hours",
            "21:00-08:00",
        ],
        "--recipient-hours",
    );
    cli.fails(
        &["workspace", "update", &ws, "--max-calls-per-number", "0/7"],
        "--max-calls-per-number",
    );
    cli.fails(
        &[
            "workspace",
            "update",
            &ws,
            "--allow-unknown-timezone",
            "maybe",
        ],
        "--allow-unknown-timezone",
    );
    cli.fails(&["webhook-secret", "show", &nobody], "no workspace with id");
    // The database unreachable: one line, non-zero.
    let mut down = app.env.env_vars();
    down.retain(|(k, _)| k != "DATABASE_URL");
    down.push((
        "DATABASE_URL".into(),
        "postgres://postgres@127.0.0.1:1/none".into(),
    ));
    down.push(("CONNECT_TIMEOUT_SECS".into(), "1".into()));
    Cli(down).fails(&["workspace", "list"], "");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_commands() {
    let app = spawn_app().await;
    let cli = Cli(app.env.env_vars());
    let run = running_batch(&app, 30).await;
    let id = run.batch_id.to_string();
    let ws = app.workspace_id.to_string();

    let list = cli.json(&["batch", "list"]);
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(list[0]["id"], id);
    assert_eq!(list[0]["statistics"]["total"], 30);
    assert_eq!(
        cli.json(&["batch", "list", "--workspace", &ws])
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let other = uuid::Uuid::now_v7().to_string();
    assert_eq!(
        cli.json(&["batch", "list", "--workspace", &other])
            .as_array()
            .unwrap()
            .len(),
        0
    );
    assert_eq!(
        cli.json(&["batch", "list", "--status", "active"])
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        cli.json(&["batch", "list", "--status", "paused"])
            .as_array()
            .unwrap()
            .len(),
        0
    );
    assert!(cli.text(&["batch", "list"]).contains(&id));

    let shown = cli.json(&["batch", "show", &id]);
    assert_eq!(shown["state"], "active");
    assert_eq!(shown["vogentStatus"], "ACTIVE");
    // Six answered by a person, two by a machine (a voicemail is not a success).
    assert_eq!(shown["statistics"]["succeeded"], 6);
    assert_eq!(shown["statistics"]["voicemail"], 2);
    let link = shown["links"]["dashboard"].as_str().unwrap();
    assert!(link.contains(&format!("/batch/monitor/{id}?token=")));
    assert!(
        cli.text(&["batch", "show", &id])
            .contains("Spring renewals")
    );
    // A fresh link: read-only, or a control link with `--control` (an hour).
    let minted = cli.json(&["batch", "dashboard-link", &id, "--control"]);
    assert_eq!(minted["control"], true);
    let url = minted["url"].as_str().unwrap();
    assert!(
        url.contains(&format!("/batch/monitor/{id}?control=")),
        "{url}"
    );
    let minted = cli.json(&["batch", "dashboard-link", &id]);
    assert_eq!(minted["control"], false);
    assert!(minted["url"].as_str().unwrap().contains("?token="));

    assert_eq!(cli.json(&["batch", "pause", &id])["state"], "paused");
    let api: Value = app
        .get(&format!("/api/batch_dial_jobs/{id}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(api["status"], "PAUSED");
    assert!(cli.text(&["batch", "resume", &id]).contains("is active"));
    assert!(cli.text(&["batch", "pause", &id]).contains("paused"));
    assert_eq!(cli.json(&["batch", "resume", &id])["state"], "active");
    let cancelled = cli.json(&["batch", "cancel", &id]);
    assert_eq!(cancelled["state"], "cancelled");
    assert_eq!(cancelled["cancelledContacts"], 17, "the queued contacts");
    let shown = cli.json(&["batch", "show", &id]);
    assert_eq!(shown["statistics"]["cancelled"], 17);

    cli.fails(&["batch", "pause", &id], "cannot be paused");
    cli.fails(&["batch", "cancel", &id], "cannot be cancelled");
    cli.fails(&["batch", "show", &other], "no batch with id");
    cli.fails(&["batch", "resume", &other], "no batch with id");
    cli.fails(&["batch", "dashboard-link", &other], "no batch with id");
    cli.fails(
        &["batch", "list", "--status", "running"],
        "--status must be one of",
    );
    // A command line the parser refuses is one line too, never the usage page.
    cli.fails(
        &["batch", "show", "not-a-uuid"],
        "invalid value 'not-a-uuid'",
    );
    cli.fails(&["batch", "pause"], "required");
    cli.fails(
        &["batch", "list", "--colour"],
        "unexpected argument '--colour'",
    );
    cli.fails(&["workspace", "frobnicate"], "unrecognized subcommand");
}

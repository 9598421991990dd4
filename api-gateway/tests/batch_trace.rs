//! One batch, one trace, through the real roles: the gateway, ingest-worker, scheduler and
//! dial-worker binaries run as processes (each its own `service.name`), export over OTLP/HTTP to
//! a receiver inside this test, and talk through the real PostgreSQL, RabbitMQ and Redis. The
//! create request's trace continues through the ingest chunks (AMQP headers), the scheduler's
//! release (the `traceparent` stored on the batch row) and each dial (AMQP headers again).
//!
//! `cargo nextest run -p api-gateway --test batch_trace --no-capture` prints the trace.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use testkit::http::SendJson;
use testkit::otlp::{OtlpReceiver, ReceivedSpan};
use testkit::process::RoleProcess;

/// The sibling role binaries, built next to this crate's (a no-op after a workspace build).
fn role_binaries() -> PathBuf {
    let gateway = PathBuf::from(env!("CARGO_BIN_EXE_api-gateway"));
    let dir = gateway.parent().expect("a bin dir").to_path_buf();
    let profile_dir = dir.file_name().and_then(|n| n.to_str()).unwrap_or("debug");
    let profile = if profile_dir == "debug" {
        "dev"
    } else {
        profile_dir
    };
    let target = dir.parent().expect("a target dir");
    let status = std::process::Command::new(env!("CARGO"))
        .args(["build", "--quiet", "--profile", profile, "--target-dir"])
        .arg(target)
        .args([
            "-p",
            "ingest-worker",
            "-p",
            "scheduler",
            "-p",
            "dial-worker",
        ])
        .args([
            "--bin",
            "ingest-worker",
            "--bin",
            "scheduler",
            "--bin",
            "dial-worker",
        ])
        .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join(".."))
        .status()
        .expect("cargo runs");
    assert!(status.success(), "building the role binaries failed");
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_batch_is_one_trace_across_the_real_roles() {
    let bins = role_binaries();
    let env = testkit::TestEnv::new().await;
    let otlp = OtlpReceiver::start().await;
    let endpoint = otlp.endpoint();
    let otel = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
        // Export every 200 ms rather than every 5 s: the test waits for the spans.
        ("OTEL_BSP_SCHEDULE_DELAY", "200"),
    ];
    let bin = |name: &str| bins.join(name).to_string_lossy().into_owned();
    let mut gateway = RoleProcess::spawn(&bin("api-gateway"), &env, &otel);
    let mut ingest = RoleProcess::spawn(&bin("ingest-worker"), &env, &otel);
    let mut scheduler = RoleProcess::spawn(&bin("scheduler"), &env, &otel);
    let mut dial_env = otel.to_vec();
    dial_env.push(("CARRIER", "sim"));
    let mut dial = RoleProcess::spawn(&bin("dial-worker"), &env, &dial_env);
    for role in [&mut gateway, &mut ingest, &mut scheduler, &mut dial] {
        role.wait_ready(Duration::from_secs(60)).await;
    }

    // A workspace, an agent, a caller ID, then one Vogent job of three rows, started.
    let created = api_gateway::admin::create_workspace_with(
        &env.db,
        "trace",
        10,
        &api_gateway::admin::Compliance::off(),
    )
    .await
    .expect("workspace");
    // No workspace-wide rate: these tests' batches set the rates they are about.
    testkit::fixtures::clear_workspace_rate(&env.db.get().await.unwrap(), created.workspace_id)
        .await;
    let http = reqwest::Client::new();
    let base = format!("http://{}", gateway.health_addr);
    let post = |path: &str, body: Value| {
        http.post(format!("{base}{path}"))
            .bearer_auth(&created.api_key)
            .json(&body)
    };
    let agent: Value = post(
        "/api/agents",
        json!({"name": "bot", "answerUrl": "https://agent.example.com/answer"}),
    )
    .send_json()
    .await;
    let r = post("/api/phone_numbers", json!({"number": "+12015550100"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let rows: Vec<Value> = (0..3)
        .map(|i| json!({"toNumber": format!("+1201555{:04}", 200 + i)}))
        .collect();
    let r = post(
        "/api/batch_dial_jobs",
        json!({"name": "traced", "callAgentId": agent["id"], "maxConcurrentDials": 3, "rows": rows}),
    )
    .send()
    .await
    .unwrap();
    assert_eq!(r.status(), 200);
    let job: Value = r.json().await.unwrap();
    let id = job["id"].as_str().expect("a job id").to_owned();
    let r = post(
        &format!("/api/batch_dial_jobs/{id}/paused"),
        json!({"paused": false}),
    )
    .send()
    .await
    .unwrap();
    assert_eq!(r.status(), 200);

    // The trace id the create request stored on the batch.
    let batch_id: uuid::Uuid = id.parse().unwrap();
    let stored: Option<String> = env
        .db
        .get()
        .await
        .unwrap()
        .query_one(
            "SELECT trace_context FROM batches WHERE id = $1",
            &[&batch_id],
        )
        .await
        .unwrap()
        .get("trace_context");
    let stored = stored.expect("the gateway stored the create request's traceparent");
    let trace_id = stored.split('-').nth(1).expect("a traceparent").to_owned();

    // Wait until every role's part of the story has arrived: three dials included.
    let wanted = |spans: &[ReceivedSpan]| {
        let mine: Vec<_> = spans.iter().filter(|s| s.trace_id == trace_id).collect();
        let services: BTreeSet<&str> = mine.iter().map(|s| s.service.as_str()).collect();
        let dials = mine
            .iter()
            .filter(|s| s.service == "dial-worker" && s.name == "dial")
            .count();
        services.len() >= 4 && dials >= 3
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while !wanted(&otlp.spans()) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // The series the dashboards query, on the roles' own /metrics after this real work.
    for (role, names) in [
        (
            &gateway,
            &[
                "dialfleet_batches_created_total",
                "dialfleet_http_requests_total",
                "dialfleet_http_request_duration_seconds_bucket",
            ][..],
        ),
        (
            &ingest,
            &[
                "dialfleet_contacts_ingested_total",
                "dialfleet_queue_messages_handled_total",
                "dialfleet_queue_consumer_lag_seconds_bucket",
            ][..],
        ),
        (
            &scheduler,
            &[
                "dialfleet_contacts_released_total",
                "dialfleet_batches{",
                "dialfleet_queue_depth{",
                "dialfleet_queue_messages_published_total",
            ][..],
        ),
        (
            &dial,
            &[
                "dialfleet_call_starts_total",
                "dialfleet_slot_wait_seconds_bucket",
            ][..],
        ),
    ] {
        let text = role.get("/metrics").await;
        for name in names {
            assert!(text.contains(name), "{name} missing from:\n{text}");
        }
    }

    // SIGTERM flushes what is left.
    for role in [&gateway, &ingest, &scheduler, &dial] {
        role.sigterm();
    }
    for role in [&mut gateway, &mut ingest, &mut scheduler, &mut dial] {
        let status = role.wait_exit(Duration::from_secs(20)).await;
        assert!(status.success(), "exit status {status}");
    }

    let spans: Vec<ReceivedSpan> = otlp
        .spans()
        .into_iter()
        .filter(|s| s.trace_id == trace_id)
        .collect();
    println!("{}", render(&trace_id, &spans));
    let services: BTreeSet<&str> = spans.iter().map(|s| s.service.as_str()).collect();
    assert!(
        services.len() >= 3,
        "spans of at least three roles share the batch's trace: {services:?}"
    );
    for (service, name) in [
        ("api-gateway", "create_batch"),
        ("ingest-worker", "handle_chunk"),
        ("scheduler", "release_job"),
        ("dial-worker", "dial"),
    ] {
        assert!(
            spans.iter().any(|s| s.service == service && s.name == name),
            "{service} {name} is in the trace"
        );
    }
    // One tree: every span but the root has its parent in the trace.
    let ids: BTreeSet<&str> = spans.iter().map(|s| s.span_id.as_str()).collect();
    let roots = spans
        .iter()
        .filter(|s| !ids.contains(s.parent_span_id.as_str()))
        .count();
    assert_eq!(roots, 1, "one root span");
}

/// The trace as an indented tree, children in arrival order.
fn render(trace_id: &str, spans: &[ReceivedSpan]) -> String {
    let ids: BTreeSet<&str> = spans.iter().map(|s| s.span_id.as_str()).collect();
    let mut children: BTreeMap<&str, Vec<&ReceivedSpan>> = BTreeMap::new();
    let mut roots = Vec::new();
    for span in spans {
        if ids.contains(span.parent_span_id.as_str()) {
            children
                .entry(span.parent_span_id.as_str())
                .or_default()
                .push(span);
        } else {
            roots.push(span);
        }
    }
    fn walk(
        out: &mut String,
        span: &ReceivedSpan,
        depth: usize,
        children: &BTreeMap<&str, Vec<&ReceivedSpan>>,
    ) {
        out.push_str(&format!(
            "{}{} [{}] span {}\n",
            "  ".repeat(depth + 1),
            span.name,
            span.service,
            span.span_id
        ));
        for child in children.get(span.span_id.as_str()).into_iter().flatten() {
            walk(out, child, depth + 1, children);
        }
    }
    let mut out = format!("trace {trace_id}\n");
    for root in roots {
        walk(&mut out, root, 0, &children);
    }
    out
}

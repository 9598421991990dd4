//! The metric names the Grafana dashboards query are the ones dialfleet declares and exposes:
//! a renamed metric breaks this test rather than silently emptying a panel.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use shared::metrics::{self, Kind};
use shared::queue::consumer::{self, ConsumerOptions, Disposition};
use shared::queue::publisher::Outgoing;
use shared::queue::{Publisher, Stream};
use tokio_util::sync::CancellationToken;

fn dashboards_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deploy/grafana/dashboards")
}

/// Every `expr` string in a dashboard's JSON.
fn exprs(value: &serde_json::Value, out: &mut Vec<String>) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, v) in map {
                match (key.as_str(), v) {
                    ("expr", serde_json::Value::String(s)) => out.push(s.clone()),
                    _ => exprs(v, out),
                }
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|v| exprs(v, out)),
        _ => {}
    }
}

/// The `dialfleet_*` identifiers in a PromQL expression.
fn metric_names(expr: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = expr;
    while let Some(start) = rest.find("dialfleet_") {
        let tail = &rest[start..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        names.push(tail[..end].to_owned());
        rest = &tail[end..];
    }
    names
}

/// Every series name the dashboards query, with the dashboard it is in.
fn dashboard_series() -> Vec<(String, String)> {
    let mut found = Vec::new();
    let entries = std::fs::read_dir(dashboards_dir()).expect("deploy/grafana/dashboards exists");
    for entry in entries {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "json") {
            let text = std::fs::read_to_string(&path).unwrap();
            let json: serde_json::Value = serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()));
            let mut all = Vec::new();
            exprs(&json, &mut all);
            assert!(!all.is_empty(), "{} has no queries", path.display());
            let file = path.file_name().unwrap().to_string_lossy().into_owned();
            for expr in all {
                for name in metric_names(&expr) {
                    found.push((file.clone(), name));
                }
            }
        }
    }
    assert!(!found.is_empty(), "no dashboards found");
    found
}

#[test]
fn dashboards_query_only_declared_metrics_and_show_every_one() {
    let series = dashboard_series();
    for (file, name) in &series {
        assert!(
            metrics::declared(name).is_some(),
            "{file} queries {name}, which shared::metrics does not declare"
        );
    }
    let shown: BTreeSet<&str> = series
        .iter()
        .filter_map(|(_, name)| metrics::declared(name))
        .map(|m| m.name)
        .collect();
    let missing: Vec<&str> = metrics::ALL
        .iter()
        .map(|m| m.name)
        .filter(|name| !shown.contains(name))
        .collect();
    assert!(missing.is_empty(), "no dashboard panel shows {missing:?}");
}

/// Records every instrument through its helper, then checks the exposition carries every series
/// the dashboards query (the helpers really produce the declared names, with buckets).
#[test]
fn every_dashboard_series_is_exposed_once_recorded() {
    metrics::install().expect("recorder installed");
    let id = uuid::Uuid::new_v4();
    let took = Duration::from_millis(12);
    metrics::record_build_info("test");
    metrics::set_batches("active", 2);
    metrics::batch_created(shared::domain::Surface::Dialgen);
    metrics::contacts_ingested(10);
    metrics::contacts_rejected(metrics::RejectReason::InvalidNumber, 1);
    metrics::contacts_released(3);
    metrics::set_queue_depth(Stream::Dial, 4, 2);
    metrics::message_handled(Stream::Dial, "ack", took);
    metrics::consumer_lag(Stream::Dial, took);
    metrics::published(metrics::queue_label(Stream::Dial), 1, took);
    metrics::publish_failed(metrics::queue_label(Stream::Dial));
    metrics::set_workspace_calls(id, 3, 10);
    metrics::set_job_calls(id, 2, 5, 1);
    metrics::call_started();
    metrics::call_outcome("busy");
    metrics::retry_scheduled("busy");
    metrics::slot_wait(metrics::Limit::Job, took);
    metrics::dial_handed_back(metrics::HandBack::Redis);
    metrics::redis_window(32, true);
    metrics::webhook_attempt(Ok(()), took);
    metrics::webhook_attempt(Err(metrics::WebhookFailure::Timeout), took);
    metrics::set_webhook_backlog(1);
    metrics::rate_limit_fail_open();
    metrics::set_clock_skew("test", 0.2);
    metrics::late_callback();
    let http = [
        ("method", "GET".to_owned()),
        ("route", "/x".to_owned()),
        ("status", "200".to_owned()),
    ];
    ::metrics::counter!(metrics::HTTP_REQUESTS_TOTAL, &http).increment(1);
    ::metrics::histogram!(metrics::HTTP_REQUEST_DURATION_SECONDS, &http).record(0.01);

    let exposition = metrics::render().unwrap();
    let exposed: BTreeSet<&str> = exposition
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| l.split(['{', ' ']).next())
        .collect();
    for (file, name) in dashboard_series() {
        assert!(
            exposed.contains(name.as_str()),
            "{file} queries {name}, not in the exposition:\n{exposition}"
        );
    }
    for metric in metrics::ALL {
        assert!(
            exposition.contains(&format!("# HELP {} ", metric.name)),
            "{} has no HELP line",
            metric.name
        );
        if metric.kind == Kind::Histogram {
            assert!(
                exposition.contains(&format!("{}_bucket{{", metric.name)),
                "{} is rendered as a summary, not a histogram",
                metric.name
            );
        }
    }
}

/// The HTTP middleware labels requests with the route template, and `/metrics` is served by the
/// health router every role runs.
#[tokio::test]
async fn http_requests_are_labelled_by_route_template() {
    let app = Router::new()
        .route("/api/v1/batch/{id}", get(|| async { "ok" }))
        .merge(shared::health::router(Default::default()))
        .layer(axum::middleware::from_fn(metrics::http::track));
    let shutdown = CancellationToken::new();
    let (addr, server) =
        shared::health::serve("127.0.0.1:0".parse().unwrap(), app, shutdown.clone())
            .await
            .unwrap();
    let client = reqwest::Client::new();
    let base = format!("http://{addr}");
    for path in ["/api/v1/batch/6f1c", "/api/v1/batch/9a2d", "/no/such/route"] {
        client.get(format!("{base}{path}")).send().await.unwrap();
    }
    let response = client.get(format!("{base}/metrics")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let body = response.text().await.unwrap();
    shutdown.cancel();
    server.await.unwrap().unwrap();

    let line = |route: &str, status: &str| {
        body.lines()
            .find(|l| {
                l.starts_with("dialfleet_http_requests_total{")
                    && l.contains(&format!("route=\"{route}\""))
                    && l.contains(&format!("status=\"{status}\""))
            })
            .map(str::to_owned)
    };
    let batch = line("/api/v1/batch/{id}", "200").expect("the template is the label");
    assert!(batch.ends_with(" 2"), "both requests counted: {batch}");
    assert!(line(metrics::http::UNMATCHED, "404").is_some(), "{body}");
    assert!(
        !body.contains("6f1c"),
        "a concrete path leaked into a label"
    );
}

/// The generic queue code records what it publishes and handles, against the real broker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publisher_and_consumer_are_instrumented() {
    metrics::install().expect("recorder installed");
    let env = testkit::TestEnv::new().await;
    let publisher = Publisher::new(env.broker.clone());
    publisher
        .publish(Stream::CallEvents, Outgoing::default().with_id("m1"))
        .await
        .unwrap();
    let shutdown = CancellationToken::new();
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    let task = tokio::spawn(consumer::run(
        env.broker.clone(),
        ConsumerOptions {
            stream: Stream::CallEvents,
            prefetch: 1,
            concurrency: 1,
            tag: "metrics-test".into(),
            retry: Default::default(),
        },
        shutdown.clone(),
        move |_| {
            let tx = tx.clone();
            async move {
                let _ = tx.send(()).await;
                Disposition::Ack
            }
        },
    ));
    let mut rx = rx;
    tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .expect("message consumed");
    shutdown.cancel();
    task.await.unwrap();
    metrics::sampler::sample_queues(&env.broker).await.unwrap();
    metrics::sampler::sample_database(&env.db).await.unwrap();

    let body = metrics::render().unwrap();
    for expected in [
        "dialfleet_queue_messages_published_total{queue=\"dialfleet.call-events\"} 1",
        "dialfleet_queue_messages_handled_total{queue=\"dialfleet.call-events\",disposition=\"ack\"} 1",
        "dialfleet_queue_consumer_lag_seconds_count{queue=\"dialfleet.call-events\"} 1",
        "dialfleet_queue_depth{queue=\"dialfleet.call-events\"} 0",
        "dialfleet_batches{status=\"active\"} 0",
        "dialfleet_webhook_retry_backlog 0",
    ] {
        assert!(body.contains(expected), "missing {expected:?} in:\n{body}");
    }
}

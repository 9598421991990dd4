//! One trace across three roles: a span in the "api-gateway" publishes an ingest chunk, the
//! "ingest-worker" consumes it and publishes a dial message, the "dial-worker" consumes that.
//! Each role has its own tracer provider (its own `service.name`) exporting over real OTLP/HTTP
//! to a receiver inside this test, and the messages travel through the real RabbitMQ: the test
//! passes only if the `traceparent` carried in the AMQP headers stitches the three together.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use opentelemetry::trace::TraceContextExt;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::trace::SdkTracerProvider;
use shared::queue::consumer::{self, ConsumerOptions, Disposition, Incoming};
use shared::queue::messages::{DialV1, IngestChunkV1};
use shared::queue::publisher::Outgoing;
use shared::queue::{Publisher, Stream};
use testkit::otlp::{OtlpReceiver, ReceivedSpan as Received};
use tokio_util::sync::CancellationToken;
use tracing::Dispatch;
use tracing::instrument::WithSubscriber;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::layer::SubscriberExt;
use uuid::Uuid;

/// A role's own subscriber: an OpenTelemetry layer exporting as `service`.
fn role(service: &'static str, receiver: SocketAddr) -> (Dispatch, SdkTracerProvider) {
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_endpoint(format!("http://{receiver}/v1/traces"))
        .build()
        .expect("exporter builds");
    let (layer, provider) = shared::telemetry::otel_layer(service, exporter);
    let subscriber = tracing_subscriber::registry().with(layer);
    (Dispatch::new(subscriber), provider)
}

fn options(stream: Stream) -> ConsumerOptions {
    ConsumerOptions {
        stream,
        prefetch: 4,
        concurrency: 1,
        tag: format!("trace-test-{stream:?}"),
        retry: Default::default(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_batch_is_one_trace_across_three_roles() {
    let env = testkit::TestEnv::new().await;
    let receiver = OtlpReceiver::start().await;
    let (gateway, gateway_provider) = role("api-gateway", receiver.addr);
    let (ingest, ingest_provider) = role("ingest-worker", receiver.addr);
    let (dial, dial_provider) = role("dial-worker", receiver.addr);

    let batch_id = Uuid::new_v4();
    let workspace_id = Uuid::new_v4();
    let shutdown = CancellationToken::new();
    let (dialed_tx, dialed_rx) = tokio::sync::oneshot::channel::<()>();
    let dialed_tx = Arc::new(Mutex::new(Some(dialed_tx)));

    // dial-worker: consumes the dial message inside its own span.
    let dial_task = tokio::spawn(
        consumer::run(
            env.broker.clone(),
            options(Stream::Dial),
            shutdown.clone(),
            move |incoming: Incoming| {
                let dialed_tx = dialed_tx.clone();
                async move {
                    let _span = tracing::info_span!("dial_one").entered();
                    assert!(serde_json::from_slice::<DialV1>(&incoming.body).is_ok());
                    if let Some(tx) = dialed_tx.lock().unwrap().take() {
                        let _ = tx.send(());
                    }
                    Disposition::Ack
                }
            },
        )
        .with_subscriber(dial),
    );

    // ingest-worker: consumes the chunk and releases its contact to the dial queue.
    let ingest_publisher = Arc::new(Publisher::new(env.broker.clone()));
    let ingest_task = tokio::spawn(
        consumer::run(
            env.broker.clone(),
            options(Stream::Ingest),
            shutdown.clone(),
            move |incoming: Incoming| {
                let publisher = ingest_publisher.clone();
                async move {
                    use tracing::Instrument;
                    let Ok(chunk) = serde_json::from_slice::<IngestChunkV1>(&incoming.body) else {
                        return Disposition::DeadLetter("undecodable".into());
                    };
                    let dial = DialV1 {
                        batch_id: chunk.batch_id,
                        workspace_id: chunk.workspace_id,
                        contact_id: Uuid::new_v4(),
                        attempt_no: 1,
                    };
                    let span = tracing::info_span!("handle_chunk", batch_id = %chunk.batch_id);
                    match publisher
                        .publish(Stream::Dial, Outgoing::json(&dial).unwrap())
                        .instrument(span)
                        .await
                    {
                        Ok(()) => Disposition::Ack,
                        Err(_) => Disposition::Retry,
                    }
                }
            },
        )
        .with_subscriber(ingest),
    );

    // api-gateway: the create request publishes the batch's first chunk.
    let gateway_publisher = Publisher::new(env.broker.clone());
    let trace_id = async {
        use tracing::Instrument;
        let span = tracing::info_span!("create_batch", batch_id = %batch_id);
        let trace_id = span.context().span().span_context().trace_id();
        let chunk = IngestChunkV1 {
            batch_id,
            workspace_id,
            seq: 0,
            first_row: 0,
            rows: Vec::new(),
        };
        gateway_publisher
            .publish(Stream::Ingest, Outgoing::json(&chunk).unwrap())
            .instrument(span)
            .await
            .expect("chunk published");
        trace_id
    }
    .with_subscriber(gateway)
    .await;

    tokio::time::timeout(Duration::from_secs(20), dialed_rx)
        .await
        .expect("the dial message arrives")
        .unwrap();
    shutdown.cancel();
    ingest_task.await.unwrap();
    dial_task.await.unwrap();
    // Flushing blocks until the export threads have posted their batches to the receiver.
    tokio::task::spawn_blocking(move || {
        for provider in [gateway_provider, ingest_provider, dial_provider] {
            provider.force_flush().expect("spans flushed");
            provider.shutdown().expect("provider shut down");
        }
    })
    .await
    .unwrap();

    let spans = receiver.spans();
    let trace_id = trace_id.to_string();
    let in_trace: Vec<&Received> = spans.iter().filter(|s| s.trace_id == trace_id).collect();
    let services: BTreeSet<&str> = in_trace.iter().map(|s| s.service.as_str()).collect();
    assert_eq!(
        services,
        BTreeSet::from(["api-gateway", "dial-worker", "ingest-worker"]),
        "every role's spans carry the batch's trace id; received: {spans:#?}"
    );

    // The spans form one tree: every parent named in the trace is a span of the trace, and
    // exactly one span (the create request) has no parent.
    let ids: BTreeMap<&str, &Received> =
        in_trace.iter().map(|s| (s.span_id.as_str(), *s)).collect();
    let roots: Vec<&str> = in_trace
        .iter()
        .filter(|s| s.parent_span_id.is_empty())
        .map(|s| s.name.as_str())
        .collect();
    assert_eq!(roots, ["create_batch"]);
    for span in &in_trace {
        if !span.parent_span_id.is_empty() {
            assert!(
                ids.contains_key(span.parent_span_id.as_str()),
                "{span:?} has a parent outside the trace"
            );
        }
    }
    // A consumer's span is the child of the producer's publish span in the other role.
    for consume in in_trace.iter().filter(|s| s.name == "consume") {
        let parent = ids[consume.parent_span_id.as_str()];
        assert_eq!(parent.name, "publish");
        assert_ne!(parent.service, consume.service);
    }
    print_tree(&in_trace);
}

/// Prints the trace as an indented tree (the docs show this output).
fn print_tree(spans: &[&Received]) {
    fn walk(spans: &[&Received], parent: &str, depth: usize) {
        for span in spans.iter().filter(|s| s.parent_span_id == parent) {
            println!(
                "{}{} [{}] span {}",
                "  ".repeat(depth),
                span.name,
                span.service,
                span.span_id
            );
            walk(spans, &span.span_id, depth + 1);
        }
    }
    if let Some(first) = spans.first() {
        println!("trace {}", first.trace_id);
    }
    walk(spans, "", 1);
}

//! Consuming with manual acks, bounded prefetch and reconnect with backoff.
//!
//! A role hands [`run`] an async handler; the handler decides what happens to each message by
//! returning a [`Disposition`], and this module does the acking. Acks are sent only after the
//! handler returns, so a handler that commits before returning never loses a message.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;

use futures_util::StreamExt;
use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions};
use lapin::types::{AMQPValue, FieldTable};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use super::publisher::{Outgoing, PUBLISHED_AT_HEADER};
use super::{Broker, Publisher, QueueError, Stream};
use crate::connect::backoff_delay;

/// The header that carries why a message was dead-lettered.
pub const REASON_HEADER: &str = "x-dialfleet-reason";

/// What to do with a message once its handler has run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Disposition {
    /// Done (committed, or a harmless duplicate): remove it from the queue.
    Ack,
    /// A passing failure (a database blip): deliver it again later. The quorum queue's delivery
    /// limit dead-letters it if it keeps failing.
    Retry,
    /// It can never succeed (undecodable, refers to nothing): park it in the dead-letter queue
    /// with this reason in the [`REASON_HEADER`] header.
    DeadLetter(String),
}

/// A message as handlers see it.
#[derive(Debug, Clone)]
pub struct Incoming {
    /// The raw body.
    pub body: Vec<u8>,
    /// String-valued headers (for example `traceparent`).
    pub headers: BTreeMap<String, String>,
    /// Whether the broker delivered it before (to this or another consumer).
    pub redelivered: bool,
    /// The message id the publisher set.
    pub message_id: Option<String>,
}

/// How a consumer reads its queue.
#[derive(Debug, Clone)]
pub struct ConsumerOptions {
    /// The queue to read.
    pub stream: Stream,
    /// Messages the broker may push before they are acked. Low by default: an unacked message
    /// is one no other worker can take, and it is what a crashed worker hands back.
    pub prefetch: u16,
    /// Handlers run at once (at most `prefetch`).
    pub concurrency: usize,
    /// The consumer tag, for the broker's management view.
    pub tag: String,
}

/// Consumes `options.stream` until `shutdown` is cancelled, reconnecting with backoff whenever
/// the connection or channel fails. On shutdown it stops taking messages, lets running handlers
/// finish, and closes the channel so prefetched, unstarted messages go back to the queue.
pub async fn run<H, Fut>(
    broker: Broker,
    options: ConsumerOptions,
    shutdown: CancellationToken,
    handler: H,
) where
    H: Fn(Incoming) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Disposition> + Send,
{
    let dead_letters = Arc::new(Publisher::new(broker.clone()));
    let mut failures = 0u32;
    while !shutdown.is_cancelled() {
        match consume(&broker, &options, &shutdown, &handler, &dead_letters).await {
            Ok(()) => break,
            Err(e) => {
                let delay = backoff_delay(failures);
                tracing::warn!(queue = %broker.topology().queue(options.stream), error = %e, retry_in_ms = delay.as_millis() as u64, "consumer lost its channel, reconnecting");
                failures = failures.saturating_add(1);
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep(delay) => {}
                }
            }
        }
    }
}

async fn consume<H, Fut>(
    broker: &Broker,
    options: &ConsumerOptions,
    shutdown: &CancellationToken,
    handler: &H,
    dead_letters: &Arc<Publisher>,
) -> Result<(), QueueError>
where
    H: Fn(Incoming) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Disposition> + Send,
{
    let channel = broker.channel().await?;
    channel
        .basic_qos(options.prefetch, BasicQosOptions::default())
        .await?;
    let queue = broker.topology().queue(options.stream);
    let consumer = channel
        .basic_consume(
            queue.as_str().into(),
            options.tag.as_str().into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    tracing::info!(queue = %queue, prefetch = options.prefetch, "consuming");

    let dlx = broker.topology().dead_letter_exchange(options.stream);
    let stream_error: tokio::sync::Mutex<Option<lapin::Error>> = tokio::sync::Mutex::new(None);
    consumer
        .take_until(shutdown.cancelled())
        .for_each_concurrent(options.concurrency.max(1), |delivery| {
            let stream_error = &stream_error;
            let dlx = dlx.as_str();
            async move {
                match delivery {
                    Ok(delivery) => {
                        handle(delivery, options.stream, handler, dead_letters, dlx).await
                    }
                    Err(e) => *stream_error.lock().await = Some(e),
                }
            }
        })
        .await;
    let _ = channel.close(200, "consumer stopping".into()).await;
    if let Some(e) = stream_error.into_inner() {
        return Err(e.into());
    }
    if shutdown.is_cancelled() {
        Ok(())
    } else {
        Err(QueueError::Amqp(lapin::Error::from(
            lapin::ErrorKind::InvalidChannelState(
                lapin::ChannelState::Closed,
                "consumer stream ended",
            ),
        )))
    }
}

async fn handle<H, Fut>(
    delivery: Delivery,
    stream: Stream,
    handler: &H,
    dead_letters: &Publisher,
    dlx: &str,
) where
    H: Fn(Incoming) -> Fut,
    Fut: Future<Output = Disposition>,
{
    let incoming = Incoming {
        headers: string_headers(delivery.properties.headers().as_ref()),
        message_id: delivery
            .properties
            .message_id()
            .as_ref()
            .map(|s| s.to_string()),
        redelivered: delivery.redelivered,
        body: delivery.data.clone(),
    };
    // The handler (and the ack, and a dead-letter publish) run in a span that continues the
    // publisher's trace.
    let queue = crate::metrics::queue_label(stream);
    let span = tracing::info_span!(
        "consume",
        otel.kind = "consumer",
        messaging.destination = queue,
        messaging.message_id = incoming.message_id.as_deref().unwrap_or_default(),
        redelivered = incoming.redelivered,
    );
    let _ = span.set_parent(crate::telemetry::propagation::extract(&incoming));
    if let Some(lag) = publish_lag(&incoming) {
        crate::metrics::consumer_lag(stream, lag);
    }
    let started = std::time::Instant::now();
    async move {
        let disposition = handler(incoming.clone()).await;
        let outcome = match &disposition {
            Disposition::Ack => "ack",
            Disposition::Retry => "retry",
            Disposition::DeadLetter(_) => "dead_letter",
        };
        crate::metrics::message_handled(stream, outcome, started.elapsed());
        settle(delivery, disposition, incoming, dead_letters, dlx).await;
    }
    .instrument(span)
    .await
}

/// How long ago the message was published, from its [`PUBLISHED_AT_HEADER`] (clocks of
/// different hosts may disagree: a negative lag is dropped).
fn publish_lag(incoming: &Incoming) -> Option<std::time::Duration> {
    let published_ms: i64 = incoming.headers.get(PUBLISHED_AT_HEADER)?.parse().ok()?;
    let lag_ms = chrono::Utc::now()
        .timestamp_millis()
        .checked_sub(published_ms)?;
    u64::try_from(lag_ms)
        .ok()
        .map(std::time::Duration::from_millis)
}

async fn settle(
    delivery: Delivery,
    disposition: Disposition,
    incoming: Incoming,
    dead_letters: &Publisher,
    dlx: &str,
) {
    let acked = match disposition {
        Disposition::Ack => delivery.acker.ack(BasicAckOptions::default()).await,
        Disposition::Retry => {
            // A short pause so a failing dependency is not hammered by an instant redelivery.
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            delivery
                .acker
                .nack(BasicNackOptions {
                    requeue: true,
                    ..Default::default()
                })
                .await
        }
        Disposition::DeadLetter(reason) => {
            tracing::warn!(reason = %reason, "dead-lettering message");
            let mut parked = Outgoing {
                body: incoming.body,
                message_id: incoming.message_id,
                headers: incoming.headers.into_iter().collect(),
            };
            parked.headers.push((REASON_HEADER.to_owned(), reason));
            match dead_letters.publish_raw(dlx, "", parked).await {
                Ok(()) => delivery.acker.ack(BasicAckOptions::default()).await,
                // Not parked: leave it on its queue rather than lose it.
                Err(e) => {
                    tracing::error!(error = %e, "cannot dead-letter, requeueing");
                    delivery
                        .acker
                        .nack(BasicNackOptions {
                            requeue: true,
                            ..Default::default()
                        })
                        .await
                }
            }
        }
    };
    if let Err(e) = acked {
        // The channel died: the broker redelivers the message, and consumers are idempotent.
        tracing::warn!(error = %e, "ack failed; the message will be redelivered");
    }
}

fn string_headers(table: Option<&FieldTable>) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    if let Some(table) = table {
        for (key, value) in table.inner() {
            let text = match value {
                AMQPValue::LongString(s) => String::from_utf8_lossy(s.as_bytes()).into_owned(),
                AMQPValue::ShortString(s) => s.to_string(),
                AMQPValue::LongLongInt(n) => n.to_string(),
                AMQPValue::LongInt(n) => n.to_string(),
                _ => continue,
            };
            out.insert(key.to_string(), text);
        }
    }
    out
}

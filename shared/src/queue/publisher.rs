//! Publishing persistent messages that the broker has confirmed.
//!
//! "Nothing acknowledged is lost": a producer tells its client "done" only after every message it
//! published was confirmed by the broker (written to the quorum queue's majority).
//!
//! Every message carries the publishing span's W3C trace context (`traceparent`) and its publish
//! time ([`PUBLISHED_AT_HEADER`]), so consumers continue the trace and measure their lag.

use lapin::PublisherConfirm;
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{BasicProperties, Channel};
use serde::Serialize;
use tokio::sync::Mutex;
use tracing::Instrument;

use super::{Broker, QueueError, Stream};
use crate::metrics;

/// Delivery mode 2: the broker writes the message to disk.
const PERSISTENT: u8 = 2;

/// The header that carries when a message was published (Unix milliseconds), for consumer lag.
pub const PUBLISHED_AT_HEADER: &str = "x-dialfleet-published-at";

/// A message to publish: its body and optional string headers (for example `traceparent`).
#[derive(Debug, Clone, Default)]
pub struct Outgoing {
    /// The JSON body.
    pub body: Vec<u8>,
    /// A stable id (for logs and de-duplication by consumers).
    pub message_id: Option<String>,
    /// Extra headers.
    pub headers: Vec<(String, String)>,
}

impl Outgoing {
    /// Encodes `value` as JSON.
    pub fn json<T: Serialize>(value: &T) -> Result<Self, QueueError> {
        Ok(Self {
            body: serde_json::to_vec(value)?,
            ..Default::default()
        })
    }

    /// Sets the message id.
    pub fn with_id(mut self, id: impl Into<String>) -> Self {
        self.message_id = Some(id.into());
        self
    }

    /// Adds a header.
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }
}

/// A confirm-mode channel that publishes to the topology's exchanges.
///
/// Cheap to clone through `Arc`; publishes are serialised on one channel, which is what confirm
/// mode needs and is far from the bottleneck (a confirm round trip is pipelined across a batch).
#[derive(Debug)]
pub struct Publisher {
    broker: Broker,
    channel: Mutex<Option<Channel>>,
}

impl Publisher {
    /// A publisher that opens its channel on first use.
    pub fn new(broker: Broker) -> Self {
        Self {
            broker,
            channel: Mutex::new(None),
        }
    }

    /// Publishes one message and waits for its confirm.
    pub async fn publish(&self, stream: Stream, message: Outgoing) -> Result<(), QueueError> {
        self.publish_all(stream, std::iter::once(message)).await
    }

    /// Publishes several messages, then waits for all their confirms: the round trips overlap,
    /// so a batch costs about one confirm latency rather than one per message.
    pub async fn publish_all(
        &self,
        stream: Stream,
        messages: impl IntoIterator<Item = Outgoing>,
    ) -> Result<(), QueueError> {
        let queue = metrics::queue_label(stream);
        let span = tracing::info_span!(
            "publish",
            otel.kind = "producer",
            messaging.destination = queue
        );
        async {
            let mut guard = self.channel.lock().await;
            let result = self.publish_on(&mut guard, stream, messages).await;
            if result.is_err() {
                // Drop the channel so the next publish opens a fresh one (reconnecting if needed).
                *guard = None;
                metrics::publish_failed(queue);
            }
            result
        }
        .instrument(span)
        .await
    }

    /// Publishes one message without waiting for its confirm, which the returned [`Pending`]
    /// awaits. A producer streaming many messages keeps a few in flight this way: the channel is
    /// held only for the send, so concurrent producers interleave instead of queueing behind each
    /// other's confirm round trips.
    pub async fn start(&self, stream: Stream, message: Outgoing) -> Result<Pending, QueueError> {
        let mut guard = self.channel.lock().await;
        let sent = async {
            let channel = self.ensure_channel(&mut guard).await?;
            let topology = self.broker.topology();
            send(
                &channel,
                &topology.exchange(stream),
                &topology.queue(stream),
                message,
            )
            .await
        }
        .await;
        match sent {
            Ok(confirm) => Ok(Pending {
                confirm,
                queue: metrics::queue_label(stream),
                started: std::time::Instant::now(),
            }),
            Err(e) => {
                *guard = None;
                metrics::publish_failed(metrics::queue_label(stream));
                Err(e)
            }
        }
    }

    /// Publishes to an explicit exchange and routing key (the dead-letter path uses it).
    pub async fn publish_raw(
        &self,
        exchange: &str,
        routing_key: &str,
        message: Outgoing,
    ) -> Result<(), QueueError> {
        let mut guard = self.channel.lock().await;
        let channel = self.ensure_channel(&mut guard).await?;
        let started = std::time::Instant::now();
        let confirm = send(&channel, exchange, routing_key, message).await;
        let result = match confirm {
            Ok(confirm) => check(confirm).await,
            Err(e) => Err(e),
        };
        if result.is_err() {
            *guard = None;
            metrics::publish_failed("dead-letter");
        } else {
            metrics::published("dead-letter", 1, started.elapsed());
        }
        result
    }

    async fn publish_on(
        &self,
        guard: &mut Option<Channel>,
        stream: Stream,
        messages: impl IntoIterator<Item = Outgoing>,
    ) -> Result<(), QueueError> {
        let channel = self.ensure_channel(guard).await?;
        let topology = self.broker.topology();
        let exchange = topology.exchange(stream);
        let routing_key = topology.queue(stream);
        let started = std::time::Instant::now();
        let mut pending = Vec::new();
        for message in messages {
            pending.push(send(&channel, &exchange, &routing_key, message).await?);
        }
        let count = pending.len() as u64;
        for confirm in pending {
            check(confirm).await?;
        }
        metrics::published(metrics::queue_label(stream), count, started.elapsed());
        Ok(())
    }

    async fn ensure_channel(&self, guard: &mut Option<Channel>) -> Result<Channel, QueueError> {
        if let Some(channel) = guard.as_ref().filter(|c| c.status().connected()) {
            return Ok(channel.clone());
        }
        let channel = self.broker.channel().await?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        *guard = Some(channel.clone());
        Ok(channel)
    }
}

async fn send(
    channel: &Channel,
    exchange: &str,
    routing_key: &str,
    mut message: Outgoing,
) -> Result<PublisherConfirm, QueueError> {
    crate::telemetry::propagation::inject(&mut message.headers);
    message
        .headers
        .retain(|(name, _)| name != PUBLISHED_AT_HEADER);
    message.headers.push((
        PUBLISHED_AT_HEADER.to_owned(),
        chrono::Utc::now().timestamp_millis().to_string(),
    ));
    let mut headers = FieldTable::default();
    for (name, value) in message.headers {
        headers.insert(ShortString::from(name), AMQPValue::LongString(value.into()));
    }
    let mut props = BasicProperties::default()
        .with_delivery_mode(PERSISTENT)
        .with_content_type("application/json".into())
        .with_headers(headers);
    if let Some(id) = message.message_id {
        props = props.with_message_id(id.into());
    }
    Ok(channel
        .basic_publish(
            exchange.into(),
            routing_key.into(),
            BasicPublishOptions::default(),
            &message.body,
            props,
        )
        .await?)
}

/// A message sent by [`Publisher::start`] whose confirm is still to come.
#[derive(Debug)]
pub struct Pending {
    confirm: PublisherConfirm,
    queue: &'static str,
    started: std::time::Instant,
}

impl Pending {
    /// Waits until the broker confirms the message (an error if it nacks or the channel fails).
    pub async fn confirmed(self) -> Result<(), QueueError> {
        let result = check(self.confirm).await;
        match &result {
            Ok(()) => metrics::published(self.queue, 1, self.started.elapsed()),
            Err(_) => metrics::publish_failed(self.queue),
        }
        result
    }
}

/// Messages sent by [`Publisher::start`] whose confirms are awaited, at most `max` at a time:
/// a long stream of publishes keeps a few confirms in flight (the round trip overlaps the next
/// sends) without holding every message until the end. Each entry keeps `T` alive until its
/// confirm (for example the account of the bytes it holds).
#[derive(Debug)]
pub struct ConfirmWindow<T> {
    pending: std::collections::VecDeque<(Pending, T)>,
    max: usize,
}

impl<T> ConfirmWindow<T> {
    /// An empty window of at most `max` outstanding confirms (at least one).
    pub fn new(max: usize) -> Self {
        Self {
            pending: std::collections::VecDeque::new(),
            max: max.max(1),
        }
    }

    /// Adds a sent message; when the window is full, waits for the oldest confirm first.
    pub async fn push(&mut self, pending: Pending, keep: T) -> Result<(), QueueError> {
        self.pending.push_back((pending, keep));
        if self.pending.len() >= self.max
            && let Some((oldest, _keep)) = self.pending.pop_front()
        {
            oldest.confirmed().await?;
        }
        Ok(())
    }

    /// Waits for every outstanding confirm, oldest first.
    pub async fn drain(&mut self) -> Result<(), QueueError> {
        while let Some((pending, _keep)) = self.pending.pop_front() {
            pending.confirmed().await?;
        }
        Ok(())
    }
}

async fn check(confirm: PublisherConfirm) -> Result<(), QueueError> {
    if confirm.await?.is_ack() {
        Ok(())
    } else {
        Err(QueueError::Nacked)
    }
}

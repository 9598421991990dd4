//! Consuming with manual acks, bounded prefetch and reconnect with backoff.
//!
//! A role hands [`run`] an async handler; the handler decides what happens to each message by
//! returning a [`Disposition`], and this module does the acking. Acks are sent only after the
//! handler returns, so a handler that commits before returning never loses a message.
//!
//! # The retry rule
//!
//! Only a message that can never succeed goes to the dead-letter queue. A passing failure
//! ([`Disposition::Retry`]: PostgreSQL restarting, Redis away, the worker stopping) is not a
//! strike against the message: after a backoff that grows with the message's
//! [`RETRIES_HEADER`] (0.5 s, 1 s, 2 s … capped at 30 s; none while the consumer stops) a fresh
//! copy is published to the same queue, confirmed, and only then is the original acked. The copy
//! starts with a clean delivery count, so an outage of any length dead-letters nothing. The
//! queue's delivery limit ([`super::topology::DELIVERY_LIMIT`]) is left for what a handler
//! never returns from: a message that crashes its worker every time it is handled.
//!
//! # Returns are not failures
//!
//! RabbitMQ 3.x counts every return of a message toward the quorum queue's delivery limit,
//! a channel closing with the message unacked included (shown on the suite's broker by
//! `shared/tests/delivery_limit.rs`): a message prefetched on a channel that was lost a few
//! times would be dead-lettered though no handler ever failed on it (issue #29, race 3). So a
//! delivery one return short of the limit (`x-delivery-count` ≥ `DELIVERY_LIMIT - 1`) is not
//! handled: a fresh copy is published with the returns counted in [`RETURNS_HEADER`], and the
//! original acked once the copy is confirmed (the copy starts with a clean count). Only a
//! message returned [`RETURN_LIMIT`] times in all — one that takes its worker down every time
//! it is handled — is dead-lettered for it. A broker that counts only failed deliveries (4.x)
//! never gets there.
//!
//! # Losing the channel
//!
//! Each handler runs as its own task holding one of `concurrency` slots shared by every channel
//! [`run`] opens. When the channel is lost, the consumer reconnects at once, without waiting
//! for the handlers still running: their acks belong to the dead channel, so the broker
//! redelivers their messages anyway, and handlers are idempotent (the dial path is exactly
//! once by its attempt row). They keep their slots until they return, so the concurrency bound
//! holds across reconnects. Only shutdown waits for every handler, before closing the channel.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;

use futures_util::StreamExt;
use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions};
use lapin::types::{AMQPValue, FieldTable};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use tracing::instrument::WithSubscriber;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use super::publisher::{Outgoing, PUBLISHED_AT_HEADER};
use super::{Broker, Publisher, QueueError, Stream};
use crate::connect::backoff_delay;

/// The header that carries why a message was dead-lettered.
pub const REASON_HEADER: &str = "x-dialfleet-reason";

/// The header that counts how often a message was handed back for a passing failure
/// (absent: never). It sets the backoff before the next try; it never dead-letters.
pub const RETRIES_HEADER: &str = "x-dialfleet-retries";

/// The header that counts a message's returns to its queue (channel losses, crashes) carried
/// over from the copies it replaced (see the module's doc, "Returns are not failures").
pub const RETURNS_HEADER: &str = "x-dialfleet-returns";

/// How many returns in all dead-letter a message: four times the broker's limit, so that a
/// few channel losses never do, and a message that crashes its worker every time still ends
/// in the dead-letter queue.
pub const RETURN_LIMIT: u32 = 4 * super::topology::DELIVERY_LIMIT as u32;

/// The broker's count of a delivery's earlier returns (quorum queues).
const DELIVERY_COUNT_HEADER: &str = "x-delivery-count";

/// How long a message handed back with [`Disposition::Retry`] waits before its copy is
/// published again: `base × 2^retries`, at most `cap`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryBackoff {
    /// The wait after the first passing failure.
    pub base: std::time::Duration,
    /// The longest wait, however often the message came back.
    pub cap: std::time::Duration,
}

impl Default for RetryBackoff {
    fn default() -> Self {
        Self {
            base: std::time::Duration::from_millis(500),
            cap: std::time::Duration::from_secs(30),
        }
    }
}

impl RetryBackoff {
    /// The wait before the try that follows `retries` earlier passing failures.
    pub fn delay(&self, retries: u32) -> std::time::Duration {
        self.base
            .saturating_mul(1u32 << retries.min(16))
            .min(self.cap)
    }
}

/// What to do with a message once its handler has run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Disposition {
    /// Done (committed, or a harmless duplicate): remove it from the queue.
    Ack,
    /// A passing failure (a database blip, the worker stopping): deliver it again after a
    /// backoff, for as long as it takes. Never dead-letters (see the module's retry rule).
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
    /// The wait before a message handed back with [`Disposition::Retry`] is tried again.
    pub retry: RetryBackoff,
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
    Fut: Future<Output = Disposition> + Send + 'static,
{
    // Dead-letters and retried copies go out on a channel of their own, with confirms.
    let dead_letters = Arc::new(Publisher::new(broker.clone()));
    let slots = Arc::new(tokio::sync::Semaphore::new(options.concurrency.max(1)));
    let mut failures = 0u32;
    while !shutdown.is_cancelled() {
        match consume(
            &broker,
            &options,
            &shutdown,
            &handler,
            &dead_letters,
            &slots,
        )
        .await
        {
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
    // Handlers of a lost channel may still run: stopping waits for them too.
    all_slots(&slots, &options).await;
}

/// Waits until no handler runs (every slot free).
async fn all_slots(slots: &tokio::sync::Semaphore, options: &ConsumerOptions) {
    let all = u32::try_from(options.concurrency.max(1)).unwrap_or(u32::MAX);
    let _ = slots.acquire_many(all).await;
}

async fn consume<H, Fut>(
    broker: &Broker,
    options: &ConsumerOptions,
    shutdown: &CancellationToken,
    handler: &H,
    dead_letters: &Arc<Publisher>,
    slots: &Arc<tokio::sync::Semaphore>,
) -> Result<(), QueueError>
where
    H: Fn(Incoming) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Disposition> + Send + 'static,
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

    let dlx: Arc<str> = broker
        .topology()
        .dead_letter_exchange(options.stream)
        .as_str()
        .into();
    let mut deliveries = std::pin::pin!(consumer.take_until(shutdown.cancelled()));
    let mut stream_error = None;
    loop {
        // A slot first, then the next delivery: at most `concurrency` handlers run, counting
        // those of a lost channel still finishing.
        let permit = tokio::select! {
            _ = shutdown.cancelled() => break,
            permit = slots.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
        };
        let delivery = match deliveries.next().await {
            None => break,
            Some(Ok(delivery)) => delivery,
            Some(Err(e)) => {
                stream_error = Some(e);
                break;
            }
        };
        let settler = Settler {
            stream: options.stream,
            side: dead_letters.clone(),
            dlx: dlx.clone(),
            retry: options.retry,
            shutdown: shutdown.clone(),
        };
        let handler = handler.clone();
        // The task keeps the consumer's subscriber and span, as the handler did when it ran
        // inside the consumer's own task.
        tokio::spawn(
            async move {
                handle(delivery, &handler, settler).await;
                drop(permit);
            }
            .in_current_span()
            .with_current_subscriber(),
        );
    }
    if stream_error.is_none() && shutdown.is_cancelled() {
        // Stopping: running handlers finish and ack on this channel before it closes.
        all_slots(slots, options).await;
    }
    // Lost: the handlers still running are not waited for (see the module's doc).
    let _ = channel.close(200, "consumer stopping".into()).await;
    if let Some(e) = stream_error {
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

/// Where a handled message goes next, and what that needs.
struct Settler {
    stream: Stream,
    /// Publishes dead-letters and retried copies.
    side: Arc<Publisher>,
    dlx: Arc<str>,
    retry: RetryBackoff,
    shutdown: CancellationToken,
}

async fn handle<H, Fut>(delivery: Delivery, handler: &H, settler: Settler)
where
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
    let stream = settler.stream;
    let queue = crate::metrics::queue_label(stream);
    let span = tracing::info_span!(
        "consume",
        otel.kind = "consumer",
        messaging.destination = queue,
        messaging.message_id = incoming.message_id.as_deref().unwrap_or_default(),
        redelivered = incoming.redelivered,
    );
    let _ = span.set_parent(crate::telemetry::propagation::extract(&incoming.headers));
    if let Some(lag) = publish_lag(&incoming) {
        crate::metrics::consumer_lag(stream, lag);
    }
    let started = std::time::Instant::now();
    async move {
        if let Some(returns) = returns_to_carry(&incoming) {
            settler.carry_returns(delivery, incoming, returns).await;
            return;
        }
        let disposition = handler(incoming.clone()).await;
        let outcome = match &disposition {
            Disposition::Ack => "ack",
            Disposition::Retry => "retry",
            Disposition::DeadLetter(_) => "dead_letter",
        };
        crate::metrics::message_handled(stream, outcome, started.elapsed());
        settler.settle(delivery, disposition, incoming).await;
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

/// The returns to carry over to a fresh copy, when the delivery is one return short of the
/// broker's limit; `None` to handle it.
fn returns_to_carry(incoming: &Incoming) -> Option<u32> {
    let count: u32 = incoming.headers.get(DELIVERY_COUNT_HEADER)?.parse().ok()?;
    let limit = u32::try_from(super::topology::DELIVERY_LIMIT).unwrap_or(u32::MAX);
    if count + 1 < limit {
        return None;
    }
    let before: u32 = incoming
        .headers
        .get(RETURNS_HEADER)
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    Some(before.saturating_add(count))
}

impl Settler {
    /// Replaces a delivery about to reach the broker's limit by a fresh copy carrying its
    /// `returns`, or dead-letters it once they reach [`RETURN_LIMIT`].
    async fn carry_returns(&self, delivery: Delivery, incoming: Incoming, returns: u32) {
        if returns >= RETURN_LIMIT {
            let reason = format!("returned {returns} times without being settled");
            self.settle(delivery, Disposition::DeadLetter(reason), incoming)
                .await;
            return;
        }
        let mut copy = outgoing(incoming);
        copy.headers
            .retain(|(name, _)| name != RETURNS_HEADER && name != DELIVERY_COUNT_HEADER);
        copy.headers
            .push((RETURNS_HEADER.to_owned(), returns.to_string()));
        let settled = match self.side.publish(self.stream, copy).await {
            Ok(()) => delivery.acker.ack(BasicAckOptions::default()).await,
            // Not copied: handed back, one more return, still within the broker's limit.
            Err(e) => {
                tracing::warn!(error = %e, "cannot renew a returned message's count");
                requeue(&delivery).await
            }
        };
        if let Err(e) = settled {
            tracing::warn!(error = %e, "ack failed; the message will be redelivered");
        }
        tracing::info!(
            returns,
            "message returned by lost channels republished with a clean count"
        );
    }

    async fn settle(&self, delivery: Delivery, disposition: Disposition, incoming: Incoming) {
        let acked = match disposition {
            Disposition::Ack => delivery.acker.ack(BasicAckOptions::default()).await,
            Disposition::Retry => self.retry_later(&delivery, incoming).await,
            Disposition::DeadLetter(reason) => {
                tracing::warn!(reason = %reason, "dead-lettering message");
                let mut parked = outgoing(incoming);
                parked.headers.push((REASON_HEADER.to_owned(), reason));
                match self.side.publish_raw(&self.dlx, "", parked).await {
                    Ok(()) => delivery.acker.ack(BasicAckOptions::default()).await,
                    // Not parked: leave it on its queue rather than lose it.
                    Err(e) => {
                        tracing::error!(error = %e, "cannot dead-letter, requeueing");
                        requeue(&delivery).await
                    }
                }
            }
        };
        if let Err(e) = acked {
            // The channel died: the broker redelivers the message, and consumers are idempotent.
            tracing::warn!(error = %e, "ack failed; the message will be redelivered");
        }
    }

    /// Waits out the backoff (not while stopping), publishes a fresh copy with one more retry
    /// counted, and acks the original once the copy is confirmed: the copy's delivery count
    /// starts again, so a passing failure never dead-letters.
    async fn retry_later(&self, delivery: &Delivery, incoming: Incoming) -> lapin::Result<bool> {
        let retries: u32 = incoming
            .headers
            .get(RETRIES_HEADER)
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        let delay = self.retry.delay(retries);
        tokio::select! {
            _ = self.shutdown.cancelled() => {}
            _ = tokio::time::sleep(delay) => {}
        }
        let mut copy = outgoing(incoming);
        copy.headers
            .retain(|(name, _)| name != RETRIES_HEADER && name != DELIVERY_COUNT_HEADER);
        copy.headers.push((
            RETRIES_HEADER.to_owned(),
            retries.saturating_add(1).to_string(),
        ));
        match self.side.publish(self.stream, copy).await {
            Ok(()) => delivery.acker.ack(BasicAckOptions::default()).await,
            Err(e) => {
                // The broker itself is failing: hand the original back (this one counts
                // against the delivery limit; the broker is what is down).
                tracing::warn!(error = %e, "cannot publish the retried copy, requeueing");
                requeue(delivery).await
            }
        }
    }
}

fn outgoing(incoming: Incoming) -> Outgoing {
    Outgoing {
        body: incoming.body,
        message_id: incoming.message_id,
        headers: incoming.headers.into_iter().collect(),
    }
}

async fn requeue(delivery: &Delivery) -> lapin::Result<bool> {
    delivery
        .acker
        .nack(BasicNackOptions {
            requeue: true,
            ..Default::default()
        })
        .await
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::RetryBackoff;

    #[test]
    fn the_backoff_doubles_up_to_its_cap() {
        let b = RetryBackoff::default();
        assert_eq!(b.delay(0), Duration::from_millis(500));
        assert_eq!(b.delay(1), Duration::from_secs(1));
        assert_eq!(b.delay(5), Duration::from_secs(16));
        assert_eq!(b.delay(6), Duration::from_secs(30));
        assert_eq!(b.delay(u32::MAX), Duration::from_secs(30));
    }
}

//! The one place that names and declares every exchange and queue.
//!
//! Each [`Stream`] of work has a durable direct exchange and a quorum queue bound to it, and a
//! dead-letter exchange with its own queue. Quorum queues replicate, survive broker restarts and
//! count redeliveries, so a message that keeps crashing its consumer is dead-lettered after
//! [`DELIVERY_LIMIT`] tries instead of looping forever.

use lapin::options::{
    ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{Channel, ExchangeKind};

/// How many times a message may be delivered before RabbitMQ dead-letters it.
pub const DELIVERY_LIMIT: i64 = 5;

/// A stream of work between two roles.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stream {
    /// api-gateway → ingest-worker: chunks of submitted rows.
    Ingest,
    /// scheduler → dial-worker: contacts released for dialing.
    Dial,
    /// api-gateway (carrier callbacks) → dial-worker: call status changes.
    CallEvents,
}

impl Stream {
    /// Every stream, for declaring and deleting the whole topology.
    pub const ALL: [Stream; 3] = [Stream::Ingest, Stream::Dial, Stream::CallEvents];

    fn slug(self) -> &'static str {
        match self {
            Stream::Ingest => "ingest",
            Stream::Dial => "dial",
            Stream::CallEvents => "call-events",
        }
    }
}

/// Exchange and queue names under one prefix (`QUEUE_PREFIX`), so several deployments or
/// parallel tests can share a broker.
#[derive(Debug, Clone, Default)]
pub struct Topology {
    prefix: String,
}

impl Topology {
    /// Names under `prefix` (may be empty).
    pub fn new(prefix: impl Into<String>) -> Self {
        Self {
            prefix: prefix.into(),
        }
    }

    /// The exchange producers publish to.
    pub fn exchange(&self, stream: Stream) -> String {
        format!("{}dialfleet.{}", self.prefix, stream.slug())
    }

    /// The queue consumers read from (also the routing key).
    pub fn queue(&self, stream: Stream) -> String {
        format!("{}dialfleet.{}", self.prefix, stream.slug())
    }

    /// The exchange that receives what the queue dead-letters.
    pub fn dead_letter_exchange(&self, stream: Stream) -> String {
        format!("{}dialfleet.{}.dlx", self.prefix, stream.slug())
    }

    /// The queue where dead letters wait for a person.
    pub fn dead_letter_queue(&self, stream: Stream) -> String {
        format!("{}dialfleet.{}.dlq", self.prefix, stream.slug())
    }

    /// Declares every exchange, queue and binding. Idempotent: every role calls it at start-up,
    /// so no role depends on another having started first.
    pub async fn declare(&self, channel: &Channel) -> Result<(), lapin::Error> {
        let durable = ExchangeDeclareOptions {
            durable: true,
            ..Default::default()
        };
        let queue_opts = QueueDeclareOptions {
            durable: true,
            ..Default::default()
        };
        for stream in Stream::ALL {
            let dlx = self.dead_letter_exchange(stream);
            let dlq = self.dead_letter_queue(stream);
            channel
                .exchange_declare(
                    dlx.as_str().into(),
                    ExchangeKind::Fanout,
                    durable,
                    FieldTable::default(),
                )
                .await?;
            channel
                .queue_declare(dlq.as_str().into(), queue_opts, quorum_args(None))
                .await?;
            channel
                .queue_bind(
                    dlq.as_str().into(),
                    dlx.as_str().into(),
                    "".into(),
                    QueueBindOptions::default(),
                    FieldTable::default(),
                )
                .await?;

            let exchange = self.exchange(stream);
            let queue = self.queue(stream);
            channel
                .exchange_declare(
                    exchange.as_str().into(),
                    ExchangeKind::Direct,
                    durable,
                    FieldTable::default(),
                )
                .await?;
            channel
                .queue_declare(queue.as_str().into(), queue_opts, quorum_args(Some(&dlx)))
                .await?;
            channel
                .queue_bind(
                    queue.as_str().into(),
                    exchange.as_str().into(),
                    queue.as_str().into(),
                    QueueBindOptions::default(),
                    FieldTable::default(),
                )
                .await?;
        }
        Ok(())
    }

    /// Deletes every exchange and queue under this prefix (tests clean up with it).
    pub async fn delete(&self, channel: &Channel) -> Result<(), lapin::Error> {
        for stream in Stream::ALL {
            for queue in [self.queue(stream), self.dead_letter_queue(stream)] {
                channel
                    .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
                    .await?;
            }
            for exchange in [self.exchange(stream), self.dead_letter_exchange(stream)] {
                channel
                    .exchange_delete(exchange.as_str().into(), Default::default())
                    .await?;
            }
        }
        Ok(())
    }
}

fn quorum_args(dead_letter_exchange: Option<&str>) -> FieldTable {
    let mut args = FieldTable::default();
    args.insert(
        ShortString::from("x-queue-type"),
        AMQPValue::LongString(LongString::from("quorum")),
    );
    if let Some(dlx) = dead_letter_exchange {
        args.insert(
            ShortString::from("x-dead-letter-exchange"),
            AMQPValue::LongString(LongString::from(dlx)),
        );
        args.insert(
            ShortString::from("x-delivery-limit"),
            AMQPValue::LongLongInt(DELIVERY_LIMIT),
        );
    }
    args
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_carry_the_prefix() {
        let t = Topology::new("t1.");
        assert_eq!(t.queue(Stream::Ingest), "t1.dialfleet.ingest");
        assert_eq!(
            t.dead_letter_queue(Stream::CallEvents),
            "t1.dialfleet.call-events.dlq"
        );
    }
}

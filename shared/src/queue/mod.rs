//! RabbitMQ, which carries work between the roles.
//!
//! - [`topology`] is the one place that names and declares exchanges and queues;
//! - [`broker`] holds a connection and reopens it after the broker drops it;
//! - [`publisher`] publishes persistent messages and waits for the broker's confirms;
//! - [`consumer`] consumes with manual acks and bounded prefetch, reconnecting with backoff;
//! - [`messages`] defines what travels on each queue.

pub mod broker;
pub mod consumer;
pub mod messages;
pub mod publisher;
pub mod topology;

pub use broker::Broker;
pub use consumer::{ConsumerOptions, Disposition};
pub use publisher::Publisher;
pub use topology::{Stream, Topology};

/// A broker operation that failed; every variant is worth retrying after a reconnect.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// The connection or channel failed or was closed.
    #[error("RabbitMQ: {0}")]
    Amqp(#[from] lapin::Error),
    /// The broker refused a message (negative confirm), for example because a queue is full.
    #[error("RabbitMQ refused the message (nack)")]
    Nacked,
    /// No node of `AMQP_URL` accepted a connection in time.
    #[error("RabbitMQ: {0}")]
    Unreachable(String),
    /// A message could not be encoded.
    #[error("cannot encode message: {0}")]
    Encode(#[from] serde_json::Error),
}

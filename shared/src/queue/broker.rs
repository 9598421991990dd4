//! One RabbitMQ connection per process, reopened when the broker drops it.

use std::sync::Arc;
use std::time::Duration;

use lapin::{Channel, Connection, ConnectionProperties};
use tokio::sync::Mutex;

use super::{QueueError, Topology};
use crate::config::ServiceConfig;
use crate::connect::{ConnectError, with_backoff};

/// A shared handle on the process's broker connection.
///
/// Channels are cheap and opened per publisher or consumer; the connection is expensive and
/// shared. When the broker goes away, the next [`Broker::channel`] call opens a new connection,
/// so publishers and consumers recover by simply asking for a channel again.
#[derive(Clone)]
pub struct Broker {
    url: String,
    name: String,
    topology: Topology,
    connection: Arc<Mutex<Option<Connection>>>,
}

impl std::fmt::Debug for Broker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Broker")
            .field("name", &self.name)
            .field("topology", &self.topology)
            .finish()
    }
}

impl Broker {
    /// Connects (retrying with backoff up to the connect timeout) and declares the topology.
    pub async fn connect(cfg: &ServiceConfig, name: &str) -> Result<Self, ConnectError> {
        let broker = Self {
            url: cfg.amqp_url.clone(),
            name: name.to_owned(),
            topology: Topology::new(cfg.queue_prefix.clone()),
            connection: Arc::new(Mutex::new(None)),
        };
        with_backoff("RabbitMQ", &cfg.amqp_url, cfg.connect_timeout, || async {
            let channel = broker.channel().await?;
            broker.topology.declare(&channel).await?;
            let _ = channel.close(200, "declared".into()).await;
            Ok::<_, QueueError>(())
        })
        .await?;
        Ok(broker)
    }

    /// The names this broker's roles use.
    pub fn topology(&self) -> &Topology {
        &self.topology
    }

    /// Opens a channel, reconnecting first if the connection is gone.
    pub async fn channel(&self) -> Result<Channel, QueueError> {
        let mut guard = self.connection.lock().await;
        if let Some(conn) = guard.as_ref().filter(|c| c.status().connected()) {
            match conn.create_channel().await {
                Ok(channel) => return Ok(channel),
                Err(e) => tracing::warn!(error = %e, "channel open failed, reconnecting"),
            }
        }
        let props = ConnectionProperties::default().with_connection_name(self.name.as_str().into());
        let conn = Connection::connect(&self.url, props).await?;
        let channel = conn.create_channel().await?;
        *guard = Some(conn);
        Ok(channel)
    }

    /// Whether the connection is open now (for `/readyz`).
    pub async fn is_connected(&self) -> bool {
        self.connection
            .lock()
            .await
            .as_ref()
            .is_some_and(|c| c.status().connected())
    }

    /// Closes the connection cleanly (at shutdown), returning unacked messages to their queues.
    pub async fn close(&self) {
        if let Some(conn) = self.connection.lock().await.take() {
            let _ =
                tokio::time::timeout(Duration::from_secs(5), conn.close(200, "shutdown".into()))
                    .await;
        }
    }
}

//! One RabbitMQ connection per process, reopened when the broker drops it. With several nodes
//! (`AMQP_URL` a list), a reconnect tries them in turn, starting after the one that was lost,
//! so publishers and consumers move to the survivors of a lost node.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
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
    urls: Arc<Vec<String>>,
    /// The node to try first on the next connect (the one that last worked).
    current: Arc<AtomicUsize>,
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
            urls: Arc::new(cfg.amqp_urls()),
            current: Arc::new(AtomicUsize::new(0)),
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
        // The lost connection's node is tried last: it is the one most likely gone.
        let lost = guard.is_some();
        let start = self.current.load(Ordering::Relaxed) + usize::from(lost);
        let mut last_error = None;
        for i in 0..self.urls.len().max(1) {
            let index = (start + i) % self.urls.len().max(1);
            let Some(url) = self.urls.get(index) else {
                break;
            };
            match self.open(url).await {
                Ok((conn, channel)) => {
                    if self.urls.len() > 1 {
                        tracing::info!(node = %crate::config::redact_url(url), "connected to RabbitMQ");
                    }
                    self.current.store(index, Ordering::Relaxed);
                    *guard = Some(conn);
                    return Ok(channel);
                }
                Err(e) => {
                    tracing::warn!(node = %crate::config::redact_url(url), error = %e, "RabbitMQ node unreachable");
                    last_error = Some(e);
                }
            }
        }
        *guard = None;
        Err(last_error.unwrap_or_else(|| QueueError::Unreachable("no AMQP_URL given".into())))
    }

    /// One connection attempt to one node, bounded so a silent node does not hold up the others.
    async fn open(&self, url: &str) -> Result<(Connection, Channel), QueueError> {
        let props = ConnectionProperties::default().with_connection_name(self.name.as_str().into());
        let attempt = async {
            let conn = Connection::connect(url, props).await?;
            let channel = conn.create_channel().await?;
            Ok::<_, lapin::Error>((conn, channel))
        };
        match tokio::time::timeout(Self::NODE_CONNECT_TIMEOUT, attempt).await {
            Ok(result) => Ok(result?),
            Err(_) => Err(QueueError::Unreachable(format!(
                "{} did not answer within {:?}",
                crate::config::redact_url(url),
                Self::NODE_CONNECT_TIMEOUT
            ))),
        }
    }

    /// How long one node may take to accept a connection before the next one is tried.
    pub const NODE_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

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

//! How a worker waits for a slot without spinning.
//!
//! - Per job, one local *gate* (a fair async mutex): only the task at the head of a job's line
//!   asks Redis; the others wait their turn, so a full job costs one failed try per wake-up, not
//!   one per waiting message.
//! - Per workspace, a [`Notify`]: every release (in this process directly, in other processes
//!   through Redis pub/sub) wakes the heads waiting on that workspace, which try again at once.
//! - A capped backoff poll remains as the fallback for a lost pub/sub message.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use futures_util::StreamExt;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// Local wake-up registry, shared by the clones of one [`super::Limits`].
#[derive(Debug, Clone, Default)]
pub struct Wakeups {
    inner: Arc<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    workspaces: Mutex<HashMap<Uuid, Arc<Notify>>>,
    gates: Mutex<HashMap<Uuid, Arc<tokio::sync::Mutex<()>>>>,
}

impl Wakeups {
    /// The notifier for releases in `workspace_id`.
    pub fn workspace(&self, workspace_id: Uuid) -> Arc<Notify> {
        let mut map = self
            .inner
            .workspaces
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        map.entry(workspace_id).or_default().clone()
    }

    /// The gate that lines up this process's waiters for `batch_id`.
    pub fn gate(&self, batch_id: Uuid) -> Arc<tokio::sync::Mutex<()>> {
        let mut map = self.inner.gates.lock().unwrap_or_else(|e| e.into_inner());
        map.entry(batch_id).or_default().clone()
    }

    /// Wakes the tasks waiting on `workspace_id`.
    pub fn notify(&self, workspace_id: Uuid) {
        let notify = self
            .inner
            .workspaces
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&workspace_id)
            .cloned();
        if let Some(n) = notify {
            n.notify_waiters();
        }
    }

    /// Listens on the release channel until `shutdown`, turning each message into a local
    /// wake-up; resubscribes with backoff when the connection drops.
    pub async fn listen(self, redis_url: String, channel: String, shutdown: CancellationToken) {
        let mut failures = 0u32;
        while !shutdown.is_cancelled() {
            match self.listen_once(&redis_url, &channel, &shutdown).await {
                Ok(()) => return,
                Err(e) => {
                    let delay = shared::connect::backoff_delay(failures);
                    failures = failures.saturating_add(1);
                    tracing::warn!(error = %e, "slot release subscription lost, resubscribing");
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep(delay) => {}
                    }
                }
            }
        }
    }

    async fn listen_once(
        &self,
        redis_url: &str,
        channel: &str,
        shutdown: &CancellationToken,
    ) -> Result<(), redis::RedisError> {
        let client = redis::Client::open(redis_url)?;
        let mut pubsub = client.get_async_pubsub().await?;
        pubsub.subscribe(channel).await?;
        let mut messages = pubsub.on_message();
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                msg = messages.next() => {
                    let Some(msg) = msg else {
                        return Err(redis::RedisError::from((redis::ErrorKind::Io, "subscription closed")));
                    };
                    if let Ok(text) = msg.get_payload::<String>()
                        && let Ok(ws) = text.parse::<Uuid>()
                    {
                        self.notify(ws);
                    }
                }
            }
        }
    }
}

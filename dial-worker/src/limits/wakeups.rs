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
    workspaces: Mutex<Pruned<Notify>>,
    gates: Mutex<Pruned<tokio::sync::Mutex<()>>>,
    /// Asks this process's renewer for a pass now (the counts are being rebuilt).
    renew: Notify,
}

/// The size below which a [`Pruned`] map is never pruned.
const MIN_BOUND: usize = 1024;

/// A map of shared entries that drops those nobody holds any more, once it has grown to twice
/// its size after the previous pruning (at least [`MIN_BOUND`]): a worker sees jobs and
/// workspaces come and go for months, and each pruning costs one pass over entries that at
/// least doubled since, so the cost per insertion stays constant.
///
/// An entry only this map holds has no waiter (a waiting task holds its own `Arc`), so dropping
/// it loses nothing: the next caller gets a fresh one.
#[derive(Debug)]
struct Pruned<T> {
    map: HashMap<Uuid, Arc<T>>,
    bound: usize,
}

impl<T> Default for Pruned<T> {
    fn default() -> Self {
        Self {
            map: HashMap::new(),
            bound: MIN_BOUND,
        }
    }
}

impl<T: Default> Pruned<T> {
    fn get_or_insert(&mut self, key: Uuid) -> Arc<T> {
        if self.map.len() >= self.bound && !self.map.contains_key(&key) {
            self.map.retain(|_, v| Arc::strong_count(v) > 1);
            self.bound = (self.map.len() * 2).max(MIN_BOUND);
        }
        self.map.entry(key).or_default().clone()
    }

    fn get(&self, key: &Uuid) -> Option<Arc<T>> {
        self.map.get(key).cloned()
    }
}

impl Wakeups {
    /// The notifier for releases in `workspace_id`.
    pub fn workspace(&self, workspace_id: Uuid) -> Arc<Notify> {
        self.inner
            .workspaces
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_or_insert(workspace_id)
    }

    /// The gate that lines up this process's waiters for `batch_id`.
    pub fn gate(&self, batch_id: Uuid) -> Arc<tokio::sync::Mutex<()>> {
        self.inner
            .gates
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_or_insert(batch_id)
    }

    /// Asks the renewer for a pass now; a request made while it is busy is kept for it.
    pub fn request_renewal(&self) {
        self.inner.renew.notify_one();
    }

    /// Resolves when a renewal pass is asked for.
    pub async fn renewal_requested(&self) {
        self.inner.renew.notified().await;
    }

    /// Wakes the tasks waiting on `workspace_id`.
    pub fn notify(&self, workspace_id: Uuid) {
        let notify = self
            .inner
            .workspaces
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&workspace_id);
        if let Some(n) = notify {
            n.notify_waiters();
        }
    }

    /// Listens on the release channel until `shutdown`, turning each message into a local
    /// wake-up; resubscribes with backoff when the connection drops.
    /// With Sentinels, each resubscription asks them where the primary is now.
    pub async fn listen(
        self,
        redis: shared::redis_conn::RedisTarget,
        channel: String,
        shutdown: CancellationToken,
    ) {
        let mut failures = 0u32;
        while !shutdown.is_cancelled() {
            match self.listen_once(&redis, &channel, &shutdown).await {
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
        redis: &shared::redis_conn::RedisTarget,
        channel: &str,
        shutdown: &CancellationToken,
    ) -> Result<(), redis::RedisError> {
        let client = redis::Client::open(redis.primary_url().await?)?;
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
                    let Ok(text) = msg.get_payload::<String>() else { continue };
                    if text == super::rebuild::RENEW_NOW {
                        self.request_renewal();
                    } else if let Ok(ws) = text.parse::<Uuid>() {
                        self.notify(ws);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    impl Wakeups {
        /// How many workspace notifiers and job gates are kept.
        fn len(&self) -> (usize, usize) {
            (
                self.inner.workspaces.lock().unwrap().map.len(),
                self.inner.gates.lock().unwrap().map.len(),
            )
        }
    }

    #[test]
    fn entries_nobody_holds_are_pruned_as_the_maps_grow() {
        let wakeups = Wakeups::default();
        let kept_gate = wakeups.gate(Uuid::new_v4());
        let kept_ws = Uuid::new_v4();
        let kept_notify = wakeups.workspace(kept_ws);
        for _ in 0..10 * MIN_BOUND {
            drop(wakeups.gate(Uuid::new_v4()));
            drop(wakeups.workspace(Uuid::new_v4()));
        }
        let (workspaces, gates) = wakeups.len();
        assert!(workspaces <= MIN_BOUND, "{workspaces}");
        assert!(gates <= MIN_BOUND, "{gates}");
        // Held entries survive every pruning: a waiter is still woken, a line still one line.
        assert!(Arc::ptr_eq(&kept_notify, &wakeups.workspace(kept_ws)));
        assert!(
            wakeups
                .inner
                .gates
                .lock()
                .unwrap()
                .map
                .values()
                .any(|g| Arc::ptr_eq(g, &kept_gate))
        );
    }

    #[test]
    fn the_bound_follows_the_entries_in_use() {
        let wakeups = Wakeups::default();
        let held: Vec<_> = (0..3 * MIN_BOUND)
            .map(|_| wakeups.gate(Uuid::new_v4()))
            .collect();
        // All in use: nothing can go, and the map may exceed the minimum bound.
        assert_eq!(wakeups.len().1, held.len());
        drop(held);
        for _ in 0..6 * MIN_BOUND {
            drop(wakeups.gate(Uuid::new_v4()));
        }
        assert!(wakeups.len().1 <= 2 * MIN_BOUND);
    }
}

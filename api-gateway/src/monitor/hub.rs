//! One feed per watched batch, shared by every page open on it.
//!
//! The first page (or event stream) opened on a batch reads its snapshot and starts the
//! batch's refresher task; pages opened meanwhile wait for that read, and later ones subscribe
//! to the same `watch` channel. The refresher reads
//! one snapshot per `MONITOR_REFRESH_MS` (one statement) and publishes it, rendered once into a
//! [`View`], when the page would change, so 20 pages open on a batch cost the database what one does. A feed nobody has
//! watched for [`IDLE_GRACE`] stops and is forgotten (a page reload within it finds it warm).
//!
//! **Never stale.** A feed that nobody watches, or whose batch has settled, stops reading; a
//! page opened on it then would show figures as old as its last read (an operator saw `ACTIVE`
//! 11 s after a pause). So a subscriber to a feed whose last read is older than [`FRESH`] asks
//! its refresher for a read now and waits for it (up to [`FRESH`]): the first paint and the
//! first event show figures read after the request arrived. Subscribers arriving together
//! share that one read. And a control route ([`Hub::nudge`]) has the feed read at once, so a
//! pause, resume or cancel reaches open pages in the time of one read, not of a refresh tick.
//! A nudge reaches the feeds of this gateway; pages open on another replica follow at its next
//! refresh tick.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use tokio::sync::{Notify, OnceCell, watch};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::pace::Pace;
use super::render::View;
use super::snapshot::{self, Chart, Snapshot};
use crate::error::ApiError;
use shared::db::Pool;

/// How long a feed outlives its last watcher.
pub use super::pace::IDLE_GRACE;

/// How long a settled batch's feed goes on reading: past the 10 s over which calls per second
/// are counted, so that figure has fallen to zero.
pub const SETTLE_AFTER: Duration = Duration::from_secs(11);

/// What the feeds cost, for the benchmark and the logs.
#[derive(Debug, Default)]
pub struct HubStats {
    /// Snapshots read (first reads and refreshes).
    pub reads: AtomicU64,
    /// Time spent reading them, in microseconds.
    pub read_micros: AtomicU64,
    /// Snapshots published to watchers (a refresh that changes nothing publishes none).
    pub published: AtomicU64,
}

/// How old a feed's last read may be when a page subscribes to it; older, the page waits for
/// a read made for it.
pub const FRESH: Duration = Duration::from_secs(1);

/// One batch's feed.
struct Feed {
    /// Empty until its first read, then the sender its refresher publishes to.
    view: OnceCell<watch::Sender<Arc<View>>>,
    /// Wakes the refresher for a read now, watched or not, settled or not.
    nudge: Notify,
    /// When the refresher last finished a read (successful or not).
    last_read: watch::Sender<Instant>,
}

impl Default for Feed {
    fn default() -> Self {
        Self {
            view: OnceCell::new(),
            nudge: Notify::new(),
            last_read: watch::channel(Instant::now()).0,
        }
    }
}

/// The feeds of every watched batch.
pub struct Hub {
    db: Pool,
    refresh: Duration,
    /// Each watched batch's feed, started once (see [`Hub::subscribe`]).
    feeds: Mutex<HashMap<Uuid, Arc<Feed>>>,
    shutdown: CancellationToken,
    /// Shared with the refreshers.
    pub stats: Arc<HubStats>,
    /// The workspaces' Batch Dials pages' feeds.
    pub dials: Arc<super::dials::feed::Feeds>,
}

impl Hub {
    /// A hub reading from `db` every `refresh`; its refreshers stop on `shutdown`.
    pub fn new(db: Pool, refresh: Duration, shutdown: CancellationToken) -> Self {
        Self {
            dials: Arc::new(super::dials::feed::Feeds::new(
                db.clone(),
                refresh,
                shutdown.clone(),
            )),
            db,
            refresh,
            feeds: Mutex::default(),
            shutdown,
            stats: Arc::default(),
        }
    }

    /// The feeds' map, locked. A panic while it was held cannot have left it half-written (each
    /// critical section is one map read or write), so a poisoned lock is taken as it is.
    fn feeds(&self) -> MutexGuard<'_, HashMap<Uuid, Arc<Feed>>> {
        self.feeds.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The live snapshots of batch `id`; the current one, read at most [`FRESH`] ago, is ready
    /// at once. 404 if no such batch.
    ///
    /// Pages opened on a cold batch at once share one first read: the first request reads and
    /// starts the feed, the others wait for it (a `OnceCell` per batch), so 20 pages opened
    /// together cost one read, not 20. On a warm feed whose last read is older than [`FRESH`]
    /// (nobody watched it, or its batch settled), they share one read made now.
    pub async fn subscribe(
        self: &Arc<Self>,
        id: Uuid,
    ) -> Result<watch::Receiver<Arc<View>>, ApiError> {
        loop {
            let cell = self.feeds().entry(id).or_default().clone();
            let started = cell.view.get_or_try_init(|| self.start(id, &cell)).await;
            let subscribed = {
                let mut feeds = self.feeds();
                let current = feeds.get(&id).is_some_and(|c| Arc::ptr_eq(c, &cell));
                match started {
                    // Subscribe under the map's lock, where a refresher that stops forgets its
                    // feed: a feed still in the map is still refreshed.
                    Ok(tx) if current => tx.subscribe(),
                    // The feed stopped between the read and now: start another.
                    Ok(_) => continue,
                    Err(e) => {
                        if current && !cell.view.initialized() {
                            feeds.remove(&id);
                        }
                        return Err(e);
                    }
                }
            };
            Self::freshen(&cell).await;
            return Ok(subscribed);
        }
    }

    /// Waits for a read of `feed` made now, unless its last one is younger than [`FRESH`];
    /// never longer than [`FRESH`] (a failing database must not hold the page).
    async fn freshen(feed: &Feed) {
        let mut last_read = feed.last_read.subscribe();
        if last_read.borrow_and_update().elapsed() < FRESH {
            return;
        }
        feed.nudge.notify_one();
        let _ = tokio::time::timeout(FRESH, last_read.changed()).await;
    }

    /// Has batch `id`'s feed, if any page watches it here, read its figures now: a control
    /// route calls this after its change committed, so open pages show it within one read.
    pub fn nudge(&self, id: Uuid) {
        let feed = self.feeds().get(&id).cloned();
        if let Some(feed) = feed {
            feed.nudge.notify_one();
        }
        // The Batch Dials pages that list it follow just as fast.
        self.dials.nudge_all();
    }

    /// Reads the first snapshot of batch `id` and starts its refresher.
    async fn start(
        self: &Arc<Self>,
        id: Uuid,
        feed: &Arc<Feed>,
    ) -> Result<watch::Sender<Arc<View>>, ApiError> {
        let mut chart = Chart::default();
        let mut since = None;
        let first = self
            .read(id, &mut chart, &mut since)
            .await?
            .ok_or(ApiError::NotFound("batch"))?;
        feed.last_read.send_replace(Instant::now());
        let (tx, _) = watch::channel(Arc::new(View::of(first)));
        let hub = self.clone();
        let sender = tx.clone();
        let feed = feed.clone();
        tokio::spawn(async move { hub.refresh_loop(id, feed, sender, chart, since).await });
        Ok(tx)
    }

    async fn read(
        &self,
        id: Uuid,
        chart: &mut Chart,
        since: &mut Option<DateTime<Utc>>,
    ) -> Result<Option<Snapshot>, ApiError> {
        let started = Instant::now();
        let client = self.db.get().await?;
        let snapshot = snapshot::read(&client, id, chart, since).await;
        self.stats.reads.fetch_add(1, Ordering::Relaxed);
        self.stats
            .read_micros
            .fetch_add(started.elapsed().as_micros() as u64, Ordering::Relaxed);
        snapshot
    }

    async fn refresh_loop(
        self: Arc<Self>,
        id: Uuid,
        feed: Arc<Feed>,
        tx: watch::Sender<Arc<View>>,
        mut chart: Chart,
        mut since: Option<DateTime<Utc>>,
    ) {
        let mut settled_since: Option<Instant> = None;
        let mut pace = Pace::new(self.refresh).await;
        // Forgets the feed: at once on shutdown, else under the map's lock, where subscribers
        // take receivers, and only if still unwatched (none can have subscribed since).
        let forget = |idle: bool| {
            let mut feeds = self.feeds();
            let forgotten = !idle || tx.receiver_count() == 0;
            if forgotten {
                feeds.remove(&id);
            }
            forgotten
        };
        while let Some(nudged) = pace.next(&self.shutdown, &feed.nudge, &tx, forget).await {
            // A finished batch whose every contact is final cannot change any more (final
            // contact states are terminal): once the last figures that move with time (calls
            // in the last 10 s) have settled too, the feed keeps its view and reads nothing.
            if tx.borrow().snapshot.is_settled() {
                let since_when = *settled_since.get_or_insert_with(Instant::now);
                if since_when.elapsed() >= SETTLE_AFTER && !nudged {
                    continue;
                }
            } else {
                settled_since = None;
            }
            let read = self.read(id, &mut chart, &mut since).await;
            feed.last_read.send_replace(Instant::now());
            match read {
                Ok(Some(next)) => {
                    let changed = tx.send_if_modified(|current| {
                        if current.snapshot.same_view(&next) {
                            false
                        } else {
                            *current = Arc::new(View::of(next));
                            true
                        }
                    });
                    if changed {
                        self.stats.published.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Ok(None) => {
                    // The batch was deleted: its pages keep the last snapshot.
                    self.feeds().remove(&id);
                    break;
                }
                Err(e) => tracing::warn!(batch_id = %id, error = %e, "monitor refresh failed"),
            }
        }
    }

    /// Cancelled when the gateway stops: event streams end then, so that open pages never hold
    /// up the server's graceful shutdown (their browsers reconnect to another replica).
    pub fn shutdown(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// How many batches are watched now.
    pub fn watched(&self) -> usize {
        self.feeds().len()
    }
}

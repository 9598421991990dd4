//! One feed per watched page of a workspace's Batch Dials, shared by every browser open on it,
//! held by the monitor's hub beside the batch pages' feeds and built the same way: the first
//! subscriber reads and starts the refresher (others opened meanwhile share that read), the
//! refresher reads every `MONITOR_REFRESH_MS` while someone watches and publishes a new view
//! only when the page would change, a subscriber to a feed whose last read is older than
//! [`FRESH`] waits (up to [`FRESH`]) for a read made for it, and a feed nobody has watched for
//! [`IDLE_GRACE`] stops. A read costs one page of batches, never the workspace's history (see
//! [`super::snapshot`]).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, OnceCell, watch};
use tokio_util::sync::CancellationToken;

use super::render::View;
use super::snapshot::{self, PageKey};
use crate::error::ApiError;
use crate::monitor::pace::Pace;
use shared::db::Pool;

/// How long a feed outlives its last watcher: as the batch pages' feeds, whose [`Pace`] it
/// shares.
pub use crate::monitor::pace::IDLE_GRACE;

/// How old a feed's last read may be when a page subscribes to it.
pub const FRESH: Duration = Duration::from_secs(1);

/// At most this many pages (filter × cursor) of one workspace are watched at once: a link's
/// holder could otherwise start a feed per made-up cursor, each reading for [`IDLE_GRACE`].
pub const MAX_PAGES_PER_WORKSPACE: usize = 32;

/// What the feeds cost: the work-done figures the cost test and the logs read.
#[derive(Debug, Default)]
pub struct FeedStats {
    /// Snapshots read.
    pub reads: AtomicU64,
    /// Rows those reads returned (workspace rows and batch rows).
    pub rows: AtomicU64,
    /// Time spent reading, in microseconds.
    pub read_micros: AtomicU64,
    /// Views published to watchers.
    pub published: AtomicU64,
}

struct Feed {
    view: OnceCell<watch::Sender<Arc<View>>>,
    nudge: Notify,
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

/// The feeds of every watched Batch Dials page.
pub struct Feeds {
    db: Pool,
    refresh: Duration,
    feeds: Mutex<HashMap<PageKey, Arc<Feed>>>,
    shutdown: CancellationToken,
    /// Shared with the refreshers.
    pub stats: Arc<FeedStats>,
}

impl Feeds {
    /// Feeds reading from `db` every `refresh`, until `shutdown`.
    pub fn new(db: Pool, refresh: Duration, shutdown: CancellationToken) -> Self {
        Self {
            db,
            refresh,
            feeds: Mutex::default(),
            shutdown,
            stats: Arc::default(),
        }
    }

    /// Each critical section is one map read or write: a poisoned lock is taken as it is.
    fn feeds(&self) -> MutexGuard<'_, HashMap<PageKey, Arc<Feed>>> {
        self.feeds.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The live views of page `key`, the current one read at most [`FRESH`] ago; `secret`
    /// signs the rows' links to the batch pages. 404 if no such workspace.
    pub async fn subscribe(
        self: &Arc<Self>,
        key: PageKey,
        secret: Arc<[u8]>,
    ) -> Result<watch::Receiver<Arc<View>>, ApiError> {
        loop {
            let cell = {
                let mut feeds = self.feeds();
                if !feeds.contains_key(&key)
                    && feeds
                        .keys()
                        .filter(|k| k.workspace == key.workspace)
                        .count()
                        >= MAX_PAGES_PER_WORKSPACE
                {
                    return Err(ApiError::RateLimited(IDLE_GRACE));
                }
                feeds.entry(key).or_default().clone()
            };
            let started = cell
                .view
                .get_or_try_init(|| self.start(key, &cell, secret.clone()))
                .await;
            let subscribed = {
                let mut feeds = self.feeds();
                let current = feeds.get(&key).is_some_and(|c| Arc::ptr_eq(c, &cell));
                match started {
                    Ok(tx) if current => tx.subscribe(),
                    Ok(_) => continue,
                    Err(e) => {
                        if current && !cell.view.initialized() {
                            feeds.remove(&key);
                        }
                        return Err(e);
                    }
                }
            };
            let mut last_read = cell.last_read.subscribe();
            if last_read.borrow_and_update().elapsed() >= FRESH {
                cell.nudge.notify_one();
                let _ = tokio::time::timeout(FRESH, last_read.changed()).await;
            }
            return Ok(subscribed);
        }
    }

    /// Has every watched page read now: a control route changed a batch, and the pages that
    /// show it (whichever they are) must show the change within one read. Pages are few (one
    /// per operator watching), so reading them all costs less than finding which.
    pub fn nudge_all(&self) {
        for feed in self.feeds().values() {
            feed.nudge.notify_one();
        }
    }

    /// How many pages are watched now.
    pub fn watched(&self) -> usize {
        self.feeds().len()
    }

    async fn start(
        self: &Arc<Self>,
        key: PageKey,
        feed: &Arc<Feed>,
        secret: Arc<[u8]>,
    ) -> Result<watch::Sender<Arc<View>>, ApiError> {
        let first = self
            .read(&key)
            .await?
            .ok_or(ApiError::NotFound("workspace"))?;
        feed.last_read.send_replace(Instant::now());
        let (tx, _) = watch::channel(Arc::new(View::of(first, &secret)));
        let feeds = self.clone();
        let sender = tx.clone();
        let feed = feed.clone();
        tokio::spawn(async move { feeds.refresh_loop(key, feed, sender, secret).await });
        Ok(tx)
    }

    async fn read(&self, key: &PageKey) -> Result<Option<snapshot::Snapshot>, ApiError> {
        let started = Instant::now();
        let mut client = self.db.get().await?;
        let read = snapshot::read(&mut client, key).await;
        self.stats.reads.fetch_add(1, Ordering::Relaxed);
        if let Ok(Some(s)) = &read {
            self.stats
                .rows
                .fetch_add(1 + s.rows.len() as u64, Ordering::Relaxed);
        }
        self.stats
            .read_micros
            .fetch_add(started.elapsed().as_micros() as u64, Ordering::Relaxed);
        read
    }

    async fn refresh_loop(
        self: Arc<Self>,
        key: PageKey,
        feed: Arc<Feed>,
        tx: watch::Sender<Arc<View>>,
        secret: Arc<[u8]>,
    ) {
        let mut pace = Pace::new(self.refresh).await;
        // As the batch feed's: forgotten under the map's lock, and only if still unwatched.
        let forget = |idle: bool| {
            let mut feeds = self.feeds();
            let forgotten = !idle || tx.receiver_count() == 0;
            if forgotten {
                feeds.remove(&key);
            }
            forgotten
        };
        while pace
            .next(&self.shutdown, &feed.nudge, &tx, forget)
            .await
            .is_some()
        {
            let read = self.read(&key).await;
            feed.last_read.send_replace(Instant::now());
            match read {
                Ok(Some(next)) => {
                    let next = View::of(next, &secret);
                    let changed = tx.send_if_modified(|current| {
                        if current.same_view(&next) {
                            false
                        } else {
                            *current = Arc::new(next);
                            true
                        }
                    });
                    if changed {
                        self.stats.published.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Ok(None) => {
                    self.feeds().remove(&key);
                    break;
                }
                Err(e) => {
                    tracing::warn!(workspace_id = %key.workspace, error = %e, "batch dials refresh failed")
                }
            }
        }
    }
}

//! The pace of a monitor feed's refresh loop, shared by the batch pages' feeds (`hub`) and the
//! workspace pages' (`dials::feed`).

use std::time::{Duration, Instant};

use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;

/// How long a feed outlives its last watcher.
pub const IDLE_GRACE: Duration = Duration::from_secs(10);

/// The pace of a feed's refresh loop (a batch's in `hub`, a workspace page's in `dials::feed`): a
/// read every `refresh`, one at once on a nudge, and an end on shutdown or once nobody has
/// watched for [`IDLE_GRACE`].
pub(crate) struct Pace {
    tick: tokio::time::Interval,
    unwatched_since: Option<Instant>,
}

impl Pace {
    pub(crate) async fn new(refresh: Duration) -> Self {
        let mut tick = tokio::time::interval(refresh);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        Self {
            tick,
            unwatched_since: None,
        }
    }

    /// Waits for the next read: whether a nudge asked for it, or `None` once the feed is
    /// forgotten (`forget(idle)` forgets it, on shutdown always, when idle if it is unwatched).
    pub(crate) async fn next<T>(
        &mut self,
        shutdown: &CancellationToken,
        nudge: &Notify,
        tx: &watch::Sender<T>,
        forget: impl Fn(bool) -> bool,
    ) -> Option<bool> {
        loop {
            // A nudge reads now, whether anyone watches yet (a page about to subscribe) or the
            // batch has settled (a page must see that the figures are current).
            let nudged = tokio::select! {
                _ = shutdown.cancelled() => {
                    forget(false);
                    return None;
                }
                _ = self.tick.tick() => false,
                _ = nudge.notified() => true,
            };
            if nudged {
                // The next tick a full interval after this read.
                self.tick.reset();
            } else if tx.receiver_count() == 0 {
                let since = *self.unwatched_since.get_or_insert_with(Instant::now);
                if since.elapsed() >= IDLE_GRACE && forget(true) {
                    return None;
                }
                continue;
            }
            if tx.receiver_count() > 0 {
                self.unwatched_since = None;
            }
            return Some(nudged);
        }
    }
}

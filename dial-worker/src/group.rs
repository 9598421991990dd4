//! Group commit for the dial path's hottest writes.
//!
//! Hundreds of dials of one worker write the same statements at once (the attempt insert, the
//! carrier's call id). Each, on its own, is a transaction: a round trip, a commit (a WAL flush
//! for the durable ones), and a run of the contacts' statement-level counter trigger
//! (`V12__batch_counters.sql`). PostgreSQL's CPU per dial is what bounds a worker
//! (`docs/dial-worker.md`, "Benchmark"), so these writes are gathered: requests that arrive
//! while `in_flight` groups are being written wait and go together, as one statement over
//! arrays (`unnest`) in one transaction. Nothing waits for a group to fill: when a writer is
//! free the first request goes at once, alone, so an idle worker's latency is unchanged, and
//! under load the groups grow by themselves.
//!
//! Each request's guarantee is its own statement's: its reply comes only after its group
//! committed. A group that fails committed nothing; each of its requests is then written again
//! alone, so each gets its own result or its own error (see [`write_each_if_need_be`]).

use std::future::Future;
use std::sync::Arc;

use shared::db::Pool;
use tokio::sync::{Semaphore, mpsc, oneshot};

use crate::error::StepError;

/// A group's outcome for one request.
pub(crate) type Reply<T> = Result<T, StepError>;

/// Writes one group: the requests in order, and a result for each in the same order.
pub(crate) trait Write<R, T>: Send + Sync + 'static {
    /// Writes `requests` together.
    fn write(
        &self,
        db: &Pool,
        requests: &[R],
    ) -> impl Future<Output = Result<Vec<T>, StepError>> + Send;
}

/// The handle the dials send their requests to; cheap to clone.
pub(crate) struct Group<R, T> {
    sender: mpsc::UnboundedSender<(R, oneshot::Sender<Reply<T>>)>,
}

impl<R, T> Clone for Group<R, T> {
    fn clone(&self) -> Self {
        Self {
            sender: self.sender.clone(),
        }
    }
}

impl<R, T> std::fmt::Debug for Group<R, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Group").finish_non_exhaustive()
    }
}

impl<R: Send + Sync + 'static, T: Send + 'static> Group<R, T> {
    /// Starts the group's writer on the current runtime: at most `in_flight` groups written at
    /// once, each of at most `max` requests. It stops when every handle is gone.
    pub(crate) fn start(db: Pool, writer: impl Write<R, T>, in_flight: usize, max: usize) -> Self {
        let (sender, receiver) = mpsc::unbounded_channel();
        tokio::spawn(gather(db, Arc::new(writer), receiver, in_flight, max));
        Self { sender }
    }

    /// Writes `request` with whatever else is waiting, and returns its result once its group
    /// committed.
    pub(crate) async fn write(&self, request: R) -> Reply<T> {
        let (reply, answer) = oneshot::channel();
        self.sender
            .send((request, reply))
            .map_err(|_| StepError::ShuttingDown)?;
        answer.await.unwrap_or(Err(StepError::ShuttingDown))
    }
}

/// Takes a writer's permit, then everything waiting (up to `max`), and writes it in a task of
/// its own; while every permit is out, requests queue and make the next group.
async fn gather<R: Send + Sync + 'static, T: Send + 'static>(
    db: Pool,
    writer: Arc<impl Write<R, T>>,
    mut receiver: mpsc::UnboundedReceiver<(R, oneshot::Sender<Reply<T>>)>,
    in_flight: usize,
    max: usize,
) {
    let permits = Arc::new(Semaphore::new(in_flight.max(1)));
    loop {
        let Ok(permit) = permits.clone().acquire_owned().await else {
            return;
        };
        let Some(first) = receiver.recv().await else {
            return;
        };
        let mut group = vec![first];
        while group.len() < max {
            match receiver.try_recv() {
                Ok(next) => group.push(next),
                Err(_) => break,
            }
        }
        let (db, writer) = (db.clone(), writer.clone());
        tokio::spawn(async move {
            let _permit = permit;
            let (requests, replies): (Vec<R>, Vec<_>) = group.into_iter().unzip();
            let results = write_each_if_need_be(&db, &*writer, &requests).await;
            for (reply, result) in replies.into_iter().zip(results) {
                let _ = reply.send(result);
            }
        });
    }
}

/// Writes `requests` as one group; if the group fails, writes each again as a group of its
/// own (nothing of the failed group was committed), so a row that fails its statement — a
/// corrupt job, a constraint — fails only its own request, with its own error, and the others
/// are not held back by it on every redelivery.
async fn write_each_if_need_be<R, T>(
    db: &Pool,
    writer: &impl Write<R, T>,
    requests: &[R],
) -> Vec<Reply<T>> {
    let whole = match writer.write(db, requests).await {
        Ok(results) if results.len() == requests.len() => {
            return results.into_iter().map(Ok).collect();
        }
        Ok(results) => StepError::Group(format!(
            "a group of {} writes answered {} results",
            requests.len(),
            results.len()
        )),
        Err(e) => e,
    };
    if requests.len() == 1 {
        return vec![Err(whole)];
    }
    tracing::debug!(error = %whole, size = requests.len(), "group failed; each is written alone");
    let mut results = Vec::with_capacity(requests.len());
    for request in requests {
        results.push(
            match writer.write(db, std::slice::from_ref(request)).await {
                Ok(mut one) if one.len() == 1 => Ok(one.remove(0)),
                Ok(_) => Err(StepError::Group("a write answered no result".into())),
                Err(e) => Err(e),
            },
        );
    }
    results
}

//! An account of the bytes the create path holds for bodies in progress: body frames waiting to
//! be parsed, the chunk being packed, chunks queued for publishing and published but not yet
//! confirmed. Memory must follow the work in progress, not the size of a body; this account is
//! what the tests (and `ingest-bench`) read to show it, independent of the allocator and of
//! everything else the process holds.

use std::sync::atomic::{AtomicUsize, Ordering};

static HELD: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

/// Counts `n` more bytes held.
pub fn add(n: usize) {
    let now = HELD.fetch_add(n, Ordering::Relaxed) + n;
    PEAK.fetch_max(now, Ordering::Relaxed);
}

/// Counts `n` bytes released.
pub fn sub(n: usize) {
    HELD.fetch_sub(n, Ordering::Relaxed);
}

/// Bytes held right now, over every request in progress.
pub fn current() -> usize {
    HELD.load(Ordering::Relaxed)
}

/// The most bytes held at once since the start (or the last [`reset_peak`]).
pub fn peak() -> usize {
    PEAK.load(Ordering::Relaxed)
}

/// Starts a new peak from what is held now.
pub fn reset_peak() {
    PEAK.store(current(), Ordering::Relaxed);
}

/// A value whose `n` bytes stay counted until it is dropped.
#[derive(Debug)]
pub struct Held<T> {
    value: T,
    n: usize,
}

impl<T> Held<T> {
    /// Counts `n` bytes for `value` from now on.
    pub fn new(value: T, n: usize) -> Self {
        add(n);
        Self { value, n }
    }

    /// Takes over `n` bytes that were already counted (with [`add`]) while `value` was built.
    pub fn adopt(value: T, n: usize) -> Self {
        Self { value, n }
    }

    /// The value.
    pub fn get(&self) -> &T {
        &self.value
    }

    /// Hands out the value, keeping its bytes counted until the returned token is dropped (a
    /// message body copied into the broker connection stays counted until it is confirmed).
    pub fn split(mut self) -> (T, Held<()>)
    where
        T: Default,
    {
        let value = std::mem::take(&mut self.value);
        let token = Held {
            value: (),
            n: std::mem::take(&mut self.n),
        };
        (value, token)
    }
}

impl<T> Drop for Held<T> {
    fn drop(&mut self) {
        sub(self.n);
    }
}

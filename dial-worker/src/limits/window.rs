//! How much Redis work one worker keeps in flight: an adaptive window (AIMD, as TCP's
//! congestion window) in front of every call the dial path makes to Redis.
//!
//! Without it a worker holding 2,048 messages sends up to 2,048 scripts at once down its one
//! multiplexed connection. On a slow day (Redis at 10–24 ms per script) the queue in front of
//! Redis grows past the client's response timeout, every call times out although Redis runs
//! each one, and the worker hands its contacts back and takes them again: no progress at all.
//! With the window the queue stays short enough that each call answers within
//! [`Aimd::slow`]; the worker then goes at the speed Redis allows, and no faster.
//!
//! - A call that answers within `slow` is a success: the window grows by one per success up to
//!   the threshold (slow start), then by one per window of successes (additive increase).
//! - A call that times out or answers after `slow` is congestion: the window halves
//!   (multiplicative decrease), at most once per round (calls that started before the last cut
//!   do not cut it again), and never below [`MIN_WINDOW`].
//!
//! The renewer does not go through the window: it has a connection of its own (see
//! `crate::limits::Limits::new`), so renewals never queue behind dials.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Semaphore, SemaphorePermit};
use tokio::time::Instant;

/// The smallest window: a few calls in flight, so a slow Redis still sees steady work.
pub const MIN_WINDOW: usize = 2;
/// The largest window. Little's law: 2,500 dials/s × 3 scripts × 1 ms ≈ 8 calls in flight, so
/// this never limits a healthy Redis.
pub const MAX_WINDOW: usize = 256;
/// Where a worker starts.
pub const INITIAL_WINDOW: usize = 32;

/// What one call said about Redis.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// Answered within the slow threshold.
    Fast,
    /// Timed out, or answered after the slow threshold.
    Congested,
}

/// The window's arithmetic, apart from the waiting (pure: tested with proptest).
#[derive(Debug, Clone)]
pub struct Aimd {
    /// The window (fractional: additive increase adds `1 / window` per success).
    window: f64,
    /// Slow start ends here; set to half the window at each cut.
    threshold: f64,
    /// When the window was last cut: congestion seen by calls started before it is old news.
    last_cut: Option<Instant>,
    /// A call slower than this counts as congestion.
    slow: Duration,
}

impl Aimd {
    /// A window of [`INITIAL_WINDOW`] whose congestion threshold is `slow`.
    pub fn new(slow: Duration) -> Self {
        Self {
            window: INITIAL_WINDOW as f64,
            threshold: MAX_WINDOW as f64,
            last_cut: None,
            slow,
        }
    }

    /// A call slower than this counts as congestion.
    pub fn slow(&self) -> Duration {
        self.slow
    }

    /// The window now (whole calls).
    pub fn size(&self) -> usize {
        // The window is kept in [MIN_WINDOW, MAX_WINDOW], so the cast is exact.
        self.window.floor() as usize
    }

    /// What a call that took `took` (or timed out: `timed_out`) says.
    pub fn classify(&self, took: Duration, timed_out: bool) -> Signal {
        if timed_out || took > self.slow {
            Signal::Congested
        } else {
            Signal::Fast
        }
    }

    /// Feeds one call's signal in; returns the new size.
    pub fn on(&mut self, signal: Signal, started: Instant) -> usize {
        match signal {
            Signal::Fast => {
                let step = if self.window < self.threshold {
                    1.0
                } else {
                    1.0 / self.window
                };
                self.window = (self.window + step).min(MAX_WINDOW as f64);
            }
            Signal::Congested => {
                if self.last_cut.is_none_or(|cut| started >= cut) {
                    self.window = (self.window / 2.0).max(MIN_WINDOW as f64);
                    self.threshold = self.window;
                    self.last_cut = Some(Instant::now());
                }
            }
        }
        self.size()
    }
}

/// The window shared by one worker's dial path.
#[derive(Debug, Clone)]
pub struct Window {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    permits: Semaphore,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    aimd: Aimd,
    /// Permits the semaphore hands out in all (in flight + free).
    issued: usize,
    /// Permits to take out of circulation as they come back (after a cut).
    debt: usize,
    congested: u64,
}

impl Window {
    /// A window whose congestion threshold is `slow`.
    pub fn new(slow: Duration) -> Self {
        Self {
            inner: Arc::new(Inner {
                permits: Semaphore::new(INITIAL_WINDOW),
                state: Mutex::new(State {
                    aimd: Aimd::new(slow),
                    issued: INITIAL_WINDOW,
                    debt: 0,
                    congested: 0,
                }),
            }),
        }
    }

    /// Runs one Redis call inside the window: waits for room, times the call, and feeds the
    /// result back. Waiting for room has no timeout: only the call itself is timed.
    pub async fn run<T>(
        &self,
        call: impl Future<Output = Result<T, redis::RedisError>>,
    ) -> Result<T, redis::RedisError> {
        // The semaphore is never closed.
        let permit = self.inner.permits.acquire().await.ok();
        let started = Instant::now();
        let result = call.await;
        let took = started.elapsed();
        let timed_out = matches!(&result, Err(e) if e.is_timeout());
        self.feedback(took, timed_out, started, permit);
        result
    }

    fn feedback(
        &self,
        took: Duration,
        timed_out: bool,
        started: Instant,
        permit: Option<SemaphorePermit<'_>>,
    ) {
        let mut state = self.inner.state.lock().unwrap_or_else(|e| e.into_inner());
        let signal = state.aimd.classify(took, timed_out);
        let congested = signal == Signal::Congested;
        if congested {
            state.congested += 1;
        }
        let before = state.aimd.size();
        let after = state.aimd.on(signal, started);
        if after > before {
            let grow = after - before;
            // Growth first pays off any debt, then adds permits.
            let paid = grow.min(state.debt);
            state.debt -= paid;
            state.issued += grow - paid;
            self.inner.permits.add_permits(grow - paid);
        } else if after < before {
            state.debt += before - after;
        }
        // Always `issued - debt == size`: a permit coming back while the window owes some
        // leaves circulation.
        if let Some(p) = permit
            && state.debt > 0
        {
            state.debt -= 1;
            state.issued -= 1;
            p.forget();
        }
        shared::metrics::redis_window(state.aimd.size(), congested);
    }

    /// The window now.
    pub fn size(&self) -> usize {
        self.inner
            .state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .aimd
            .size()
    }

    /// How many calls so far were slow or timed out.
    pub fn congested(&self) -> u64 {
        self.inner
            .state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .congested
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Whatever Redis says, the window stays within its bounds; a cut halves it (down to the
        /// floor) and a success never shrinks it.
        #[test]
        fn window_stays_bounded(signals in proptest::collection::vec(any::<bool>(), 0..2000)) {
            let mut aimd = Aimd::new(Duration::from_millis(100));
            for congested in signals {
                let before = aimd.size();
                // Every call starts after the last cut: each congestion cuts.
                let started = Instant::now() + Duration::from_secs(3600);
                let signal = if congested { Signal::Congested } else { Signal::Fast };
                let after = aimd.on(signal, started);
                prop_assert!((MIN_WINDOW..=MAX_WINDOW).contains(&after));
                match signal {
                    Signal::Fast => prop_assert!(after >= before),
                    Signal::Congested => prop_assert!(after <= before.div_ceil(2).max(MIN_WINDOW)),
                }
            }
        }
    }

    #[test]
    fn calls_started_before_a_cut_do_not_cut_again() {
        let mut aimd = Aimd::new(Duration::from_millis(100));
        let early = Instant::now();
        assert_eq!(aimd.on(Signal::Congested, early), INITIAL_WINDOW / 2);
        // The other calls of the same round report congestion too: one cut for the round.
        assert_eq!(aimd.on(Signal::Congested, early), INITIAL_WINDOW / 2);
        let late = Instant::now() + Duration::from_millis(1);
        assert_eq!(aimd.on(Signal::Congested, late), INITIAL_WINDOW / 4);
    }

    #[test]
    fn slow_or_timed_out_calls_are_congestion() {
        let aimd = Aimd::new(Duration::from_millis(100));
        assert_eq!(aimd.classify(Duration::from_millis(5), false), Signal::Fast);
        assert_eq!(
            aimd.classify(Duration::from_millis(150), false),
            Signal::Congested
        );
        assert_eq!(
            aimd.classify(Duration::from_millis(5), true),
            Signal::Congested
        );
    }

    #[tokio::test]
    async fn a_cut_takes_permits_out_of_circulation() {
        let window = Window::new(Duration::from_millis(100));
        let slow: Result<(), redis::RedisError> =
            Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "timed out").into());
        let _ = window.run(async { slow }).await;
        assert_eq!(window.size(), INITIAL_WINDOW / 2);
        assert_eq!(window.congested(), 1);
        // The debt is paid as permits come back; what circulates is always the window.
        for _ in 0..INITIAL_WINDOW {
            let _ = window.run(async { Ok::<_, redis::RedisError>(()) }).await;
            let state = window.inner.state.lock().unwrap();
            assert_eq!(state.issued - state.debt, state.aimd.size());
        }
        let state = window.inner.state.lock().unwrap();
        assert!(window.inner.permits.available_permits() <= state.issued);
    }
}

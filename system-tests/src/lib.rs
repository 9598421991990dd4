//! End-to-end tests live in `tests/`: they start every role in-process (the gateway, the ingest
//! worker, the scheduler, the dial worker) with the carrier simulator, submit batches over HTTP
//! and check the invariants of docs/architecture.md against the simulator's call record.
//!
//! [`stack`] starts that stack, once for every test file.

pub mod stack;

/// How long a contact may wait in `released` before a test counts it as stranded (a committed
/// release with no message acting on it). A contact waits there by design while its worker
/// waits for a start token or for a slot Redis still holds: the scheduler keeps up to 2 × the
/// lines released, so at 5 lines and 4 calls a second up to 10 / 4 = 2.5 s (about 3 s measured
/// on an idle machine), and longer when a loaded machine slows the broker (21.8 s seen once in
/// chaos with four builds sharing the 2 cores). A stranded contact waits for the scheduler's
/// 15-minute release timeout instead; 20 s tells the two apart. Used by `tests/end_to_end.rs`
/// and the chaos suite.
pub const STRANDED_AFTER_SECS: f64 = 20.0;

//! End-to-end tests live in `tests/`: they start every role in-process (the gateway, the ingest
//! worker, the scheduler, the dial worker) with the carrier simulator, submit batches over HTTP
//! and check the invariants of ARCHITECTURE.md against the simulator's call record.
//!
//! [`stack`] starts that stack, once for every test file.

pub mod stack;

//! ingest-worker against the real PostgreSQL and RabbitMQ, each test in its own `TestEnv`.
//! `slow::slow_*` is the slow group (a 100k-contact batch): `cargo nextest run -p ingest-worker
//! -E 'not test(/slow_/)'` leaves it out.

mod chunks;
mod crash;
mod fixture;
mod poison;
mod slow;
mod timeout;
mod worker;

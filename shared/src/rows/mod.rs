//! A submitted row's own checks, before any I/O: its number to E.164 ([`normalize`]), the
//! reasons a row is rejected ([`reject`]) and the checks besides the number ([`check`]). The
//! ingest worker applies them to store a batch; the gateway's preflight applies the same
//! functions to predict what the ingest worker will do.

pub mod check;
pub mod normalize;
pub mod reject;

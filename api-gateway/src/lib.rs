//! The HTTP edge of dialfleet: the Vogent Batch Dial Jobs and Dialgen Call Batch APIs over one
//! domain model, plus agents, phone numbers and workspace administration.

// Production code names what it expects instead of unwrapping: `expect` with the invariant that
// makes the panic impossible, or an error. Tests may unwrap (clippy.toml).
#![warn(clippy::unwrap_used)]

pub mod admin;
pub mod app;
pub mod auth;
pub mod batches;
pub mod callback_outbox;
pub mod callbacks_epoch;
pub mod cli;
pub mod config;
pub mod error;
pub mod extract;
pub mod jurisdiction;
pub mod monitor;
pub mod openapi;
pub mod pagination;
pub mod rate_limit;
pub mod routes;
pub mod row_stream;
pub mod state;
pub mod strict;
pub mod validate;
pub mod workspace;

pub use app::{run, spawn};
pub use state::AppState;
pub mod workspace_checks;

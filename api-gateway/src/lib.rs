//! The HTTP edge of dialfleet: the Vogent Batch Dial Jobs and Dialgen Call Batch APIs over one
//! domain model, plus agents, phone numbers and workspace administration.

pub mod admin;
pub mod app;
pub mod auth;
pub mod batches;
pub mod callback_outbox;
pub mod cli;
pub mod config;
pub mod error;
pub mod extract;
pub mod monitor;
pub mod openapi;
pub mod pagination;
pub mod routes;
pub mod row_stream;
pub mod state;
pub mod strict;
pub mod validate;
pub mod workspace;

pub use app::{run, spawn};
pub use state::AppState;

//! The one batch model both API surfaces view: parsing create bodies, checking settings,
//! submitting rows to the ingest queue, loading and counting.

pub mod append;
pub mod body;
pub mod control;
pub mod csv;
pub mod eta;
pub mod export;
pub mod fingerprint;
pub mod held;
pub mod model;
pub mod rejected;
pub mod retry;
pub mod settings;
pub mod stats;
pub mod stream;
pub mod submit;
pub mod waiting;

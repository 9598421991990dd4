//! What travels on each queue. Versioned names (`IngestChunkV1`) so a rolling upgrade can carry
//! old and new messages side by side.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A slice of a submitted batch's rows, published by the gateway, persisted by an ingest worker.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct IngestChunkV1 {
    /// The batch the rows belong to.
    pub batch_id: Uuid,
    /// The batch's workspace (so the worker never trusts a row's own claim).
    pub workspace_id: Uuid,
    /// The chunk's position, 0-based; with `batch_id` it makes a redelivery recognisable.
    pub seq: u32,
    /// The batch's row index of this chunk's first row.
    pub first_row: u32,
    /// The rows as submitted (numbers not yet normalised).
    pub rows: Vec<RawRow>,
}

/// One contact as submitted, before normalisation.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct RawRow {
    /// The number as the client wrote it.
    pub phone_number: String,
    /// Dialgen's contact id, if given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_id: Option<String>,
    /// The contact's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The contact's email (validated by the gateway).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// The contact's company.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub company: Option<String>,
    /// Vogent `inputs` or Dialgen `metadata`.
    #[serde(default)]
    pub inputs: serde_json::Value,
}

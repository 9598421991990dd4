//! Workspace and API-key administration, used by the command line (`api-gateway workspace
//! create`, `api-key create`, `api-key revoke`) and by tests.

use rand::Rng;
use serde::Serialize;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use shared::compliance::RecipientHours;
use shared::db::Pool;

/// Characters shown to identify a key (`df_` and 9 more); unique per key.
const PREFIX_LEN: usize = 12;

/// A new workspace and its first key (the only time the key is shown).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CreatedWorkspace {
    /// The workspace's id.
    pub workspace_id: Uuid,
    /// Its first API key, in clear.
    pub api_key: String,
    /// The key's prefix, for `api-key revoke`.
    pub api_key_prefix: String,
}

/// A new API key (the only time it is shown).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CreatedKey {
    /// The workspace it belongs to.
    pub workspace_id: Uuid,
    /// The key, in clear.
    pub api_key: String,
    /// Its prefix, for revoking it.
    pub api_key_prefix: String,
}

/// A new workspace's compliance policy (invariant 11). The default is the safe one: recipient
/// hours 08:00–21:00, unknown timezones held.
#[derive(Debug, Clone, Copy)]
pub struct Compliance {
    /// Recipient-local calling hours; `None` = off.
    pub recipient_hours: Option<RecipientHours>,
    /// Dial numbers whose zone cannot be determined instead of holding them.
    pub allow_unknown_timezone: bool,
    /// Frequency cap: at most `.0` call attempts to one number in any `.1` days, across the
    /// workspace's batches; `None` = off (the default).
    pub max_calls_per_number: Option<(i32, i32)>,
}

impl Default for Compliance {
    fn default() -> Self {
        Self {
            recipient_hours: Some(RecipientHours::DEFAULT),
            allow_unknown_timezone: false,
            max_calls_per_number: None,
        }
    }
}

impl Compliance {
    /// No recipient hours, unknown zones allowed: for tests whose clock is real and whose
    /// subject is not compliance.
    pub fn off() -> Self {
        Self {
            recipient_hours: None,
            allow_unknown_timezone: true,
            max_calls_per_number: None,
        }
    }
}

/// Creates a workspace with a concurrent-dial limit and the default (safe) compliance policy,
/// and a first API key.
pub async fn create_workspace(
    db: &Pool,
    name: &str,
    max_concurrent_dials: i32,
) -> anyhow::Result<CreatedWorkspace> {
    create_workspace_with(db, name, max_concurrent_dials, &Compliance::default()).await
}

/// Creates a workspace with a concurrent-dial limit and a compliance policy, and a first key.
pub async fn create_workspace_with(
    db: &Pool,
    name: &str,
    max_concurrent_dials: i32,
    compliance: &Compliance,
) -> anyhow::Result<CreatedWorkspace> {
    anyhow::ensure!(
        max_concurrent_dials >= 1,
        "--max-concurrent-dials must be at least 1"
    );
    anyhow::ensure!(!name.trim().is_empty(), "--name must not be empty");
    anyhow::ensure!(
        compliance
            .max_calls_per_number
            .is_none_or(|(count, days)| count >= 1 && days >= 1),
        "--max-calls-per-number needs a count and a number of days, both at least 1"
    );
    let client = db.get().await?;
    let id = Uuid::now_v7();
    let secret = crate::workspace::new_webhook_secret();
    client
        .execute(
            "INSERT INTO workspaces (id, name, max_concurrent_dials, webhook_secret,
                                     recipient_hours_start, recipient_hours_end, allow_unknown_timezone,
                                     max_calls_per_number_count, max_calls_per_number_days)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            &[
                &id,
                &name,
                &max_concurrent_dials,
                &secret,
                &compliance.recipient_hours.map(|h| h.minutes().0),
                &compliance.recipient_hours.map(|h| h.minutes().1),
                &compliance.allow_unknown_timezone,
                &compliance.max_calls_per_number.map(|c| c.0),
                &compliance.max_calls_per_number.map(|c| c.1),
            ],
        )
        .await?;
    drop(client);
    let key = create_api_key(db, id).await?;
    Ok(CreatedWorkspace {
        workspace_id: id,
        api_key: key.api_key,
        api_key_prefix: key.api_key_prefix,
    })
}

/// Issues another key for a workspace.
pub async fn create_api_key(db: &Pool, workspace_id: Uuid) -> anyhow::Result<CreatedKey> {
    let client = db.get().await?;
    let exists = client
        .query_opt("SELECT 1 FROM workspaces WHERE id = $1", &[&workspace_id])
        .await?
        .is_some();
    anyhow::ensure!(exists, "no workspace with id {workspace_id}");
    let key = new_key();
    let prefix = key[..PREFIX_LEN].to_owned();
    client
        .execute(
            "INSERT INTO api_keys (id, workspace_id, prefix, key_hash) VALUES ($1, $2, $3, $4)",
            &[&Uuid::now_v7(), &workspace_id, &prefix, &hash_key(&key)],
        )
        .await?;
    Ok(CreatedKey {
        workspace_id,
        api_key: key,
        api_key_prefix: prefix,
    })
}

/// Revokes the key whose prefix is `prefix`; returns whether one was revoked.
pub async fn revoke_api_key(db: &Pool, prefix: &str) -> anyhow::Result<bool> {
    let client = db.get().await?;
    let n = client
        .execute(
            "UPDATE api_keys SET revoked_at = now() WHERE prefix = $1 AND revoked_at IS NULL",
            &[&prefix],
        )
        .await?;
    Ok(n == 1)
}

/// The SHA-256 of a key: what is stored and looked up. Keys carry 238 bits of randomness, so a
/// fast hash is enough (no password-style stretching is needed).
pub fn hash_key(key: &str) -> Vec<u8> {
    Sha256::digest(key.as_bytes()).to_vec()
}

fn new_key() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    let body: String = (0..40)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect();
    format!("df_{body}")
}

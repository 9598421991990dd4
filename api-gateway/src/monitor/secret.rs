//! Which secret signs the monitor links: the operator's `MONITOR_TOKEN_SECRET`, else the
//! installation's own random one (migration V19). The development default that earlier
//! versions fell back to is public (it is in the source), so it never signs anything: set
//! explicitly, it is ignored with a warning.

use shared::db::Pool;

use crate::config::{Config, DEV_MONITOR_TOKEN_SECRET};

/// `config` with the secret that signs and checks monitor links filled in.
pub async fn resolve(db: &Pool, mut config: Config) -> anyhow::Result<Config> {
    let configured = config.monitor_token_secret.trim();
    if configured == DEV_MONITOR_TOKEN_SECRET {
        tracing::warn!(
            "MONITOR_TOKEN_SECRET is the published development default, which anyone can forge: \
             ignored; monitor links are signed with this installation's own secret"
        );
    } else if !configured.is_empty() {
        return Ok(config);
    }
    let client = db.get().await?;
    let row = client
        .query_one("SELECT secret FROM monitor_secret", &[])
        .await
        .map_err(|e| anyhow::anyhow!("reading the installation's monitor secret (V19): {e}"))?;
    config.monitor_token_secret = row.get("secret");
    Ok(config)
}

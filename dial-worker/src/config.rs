//! dial-worker settings, from the environment with local defaults.

use std::net::SocketAddr;
use std::time::Duration;

use shared::config::{ConfigError, Env, ServiceConfig};

/// Which carrier places the calls (`CARRIER`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CarrierKind {
    /// A Twilio-compatible REST API at `CARRIER_URL` (the carrier-sim by default).
    Twilio,
    /// The in-process simulator (digit rule, carrier-sim timings).
    Sim,
}

/// Everything the dial-worker reads at start.
#[derive(Debug, Clone)]
pub struct Config {
    /// `COMPLIANCE_RULES_FILE`: the compliance rule pack the last look decides with (the
    /// shipped one, with the operator's file merged in); a pack that does not load stops the
    /// worker at start.
    pub pack: &'static shared::compliance::jurisdiction::Pack,
    /// Database, broker and Redis connections.
    pub service: ServiceConfig,
    /// `HEALTH_ADDR`: where `/healthz` and `/readyz` are served.
    pub health_addr: SocketAddr,
    /// `CARRIER`: `twilio` (default) or `sim`.
    pub carrier: CarrierKind,
    /// `CARRIER_URL`: the Twilio-compatible API's base URL.
    pub carrier_url: String,
    /// `CARRIER_ACCOUNT_SID`: the account (Basic auth user).
    pub carrier_account_sid: String,
    /// `CARRIER_AUTH_TOKEN`: the auth token (Basic auth password).
    pub carrier_auth_token: String,
    /// `PUBLIC_URL`: how the carrier reaches the gateway (status callbacks go to
    /// `{PUBLIC_URL}/carrier/status/{attempt_id}`).
    pub public_url: String,
    /// `CALL_TIMEOUT_SECS`: how long a call may ring (Twilio `Timeout`).
    pub call_timeout_secs: u32,
    /// `MACHINE_DETECTION`: ask the carrier to detect answering machines (voicemail outcome).
    pub machine_detection: bool,
    /// `DEFAULT_CALLER_ID`: the caller ID when neither the job nor the workspace has numbers.
    pub default_caller_id: String,
    /// `DIAL_PREFETCH`: dial messages a worker holds at once (being placed + waiting for a slot
    /// or a start token). Large on purpose: a message waiting for its workspace's capacity
    /// costs a parked task, while one left in the queue blocks every workspace behind it. The
    /// fleet's total should exceed what the scheduler keeps released (its in-flight multiplier
    /// × the workspaces' limits), so the dial queue itself stays empty.
    pub dial_prefetch: u16,
    /// `EVENTS_PREFETCH`: call events a worker handles at once.
    pub events_prefetch: u16,
    /// `SLOT_LEASE_SECS`: how long a slot outlives a worker that stopped renewing it.
    pub slot_lease: Duration,
    /// `RATE_MARGIN_MS`: widens every rate limiter's second, absorbing jitter between taking a
    /// start token and the carrier receiving the call.
    pub rate_margin: Duration,
    /// `REDIS_SLOW_MS`: a dial-path Redis call slower than this (or timed out) halves the
    /// worker's Redis window (see `crate::limits::window`).
    pub redis_slow: Duration,
    /// `RECONCILE_AFTER_SECS`: a placed call silent this long is checked with the carrier (a
    /// lost final callback costs its slot about this long plus a pass period).
    pub reconcile_after: Duration,
    /// `UNKNOWN_AFTER_SECS`: an attempt whose outcome cannot be learned is closed as `unknown`
    /// after this long.
    pub unknown_after: Duration,
    /// `WEBHOOK_CONCURRENCY`: deliveries in flight at once.
    pub webhook_concurrency: usize,
    /// `WEBHOOK_TIMEOUT_MS`: how long a receiver may take to answer.
    pub webhook_timeout: Duration,
    /// `WEBHOOK_RETRY_BASE_MS`: the first retry's delay; each next one doubles (capped at 1 h).
    pub webhook_retry_base: Duration,
    /// `WEBHOOK_RETRY_FOR_SECS`: how long a delivery is retried before it is marked failed.
    pub webhook_retry_for: Duration,
    /// `WEBHOOK_POLL_MS`: how often due deliveries are looked for.
    pub webhook_poll: Duration,
    /// `WEBHOOK_ALLOWED_NETWORKS`: private or reserved networks webhooks may nevertheless go to
    /// (CIDRs, comma-separated; none by default). See `shared::destination`.
    pub webhook_allowed_networks: shared::destination::AllowedNetworks,
    /// `PREDIAL_RETRY_MS`: how long a contact whose pre-dial check got no usable answer waits
    /// before it is checked again (default 30 s).
    pub predial_retry: Duration,
    /// `DIAL_FAILPOINT=abort_after_insert:N`, for fault-injection tests only: abort the process
    /// right after its N-th attempt insert, before that attempt's carrier request.
    pub abort_after_insert: Option<u64>,
}

impl Config {
    /// Reads the settings; a malformed value names its variable.
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let carrier = match env.string("CARRIER", "twilio").as_str() {
            "twilio" => CarrierKind::Twilio,
            "sim" => CarrierKind::Sim,
            other => {
                return Err(ConfigError {
                    name: "CARRIER".into(),
                    value: other.into(),
                    reason: "expected twilio or sim".into(),
                });
            }
        };
        Ok(Self {
            service: ServiceConfig::from_env(env)?,
            health_addr: env.addr("HEALTH_ADDR", "127.0.0.1:8083")?,
            carrier,
            carrier_url: env.url("CARRIER_URL", "http://127.0.0.1:8090", &["http", "https"])?,
            carrier_account_sid: env.string("CARRIER_ACCOUNT_SID", "ACsim"),
            carrier_auth_token: env.string("CARRIER_AUTH_TOKEN", "sim-token"),
            public_url: env
                .url("PUBLIC_URL", "http://127.0.0.1:8080", &["http", "https"])?
                .trim_end_matches('/')
                .to_owned(),
            call_timeout_secs: env.parse("CALL_TIMEOUT_SECS", 30)?,
            machine_detection: env.parse("MACHINE_DETECTION", false)?,
            default_caller_id: env.string("DEFAULT_CALLER_ID", "+15005550006"),
            dial_prefetch: env.parse("DIAL_PREFETCH", 2048)?,
            events_prefetch: env.parse("EVENTS_PREFETCH", 256)?,
            slot_lease: env.secs("SLOT_LEASE_SECS", 30)?,
            rate_margin: env.millis("RATE_MARGIN_MS", 20)?,
            redis_slow: env.millis("REDIS_SLOW_MS", 100)?,
            reconcile_after: env.secs("RECONCILE_AFTER_SECS", 20)?,
            unknown_after: env.secs("UNKNOWN_AFTER_SECS", 3600)?,
            webhook_concurrency: env.parse("WEBHOOK_CONCURRENCY", 16)?,
            webhook_timeout: env.millis("WEBHOOK_TIMEOUT_MS", 5000)?,
            webhook_retry_base: env.millis("WEBHOOK_RETRY_BASE_MS", 5000)?,
            webhook_retry_for: env.secs("WEBHOOK_RETRY_FOR_SECS", 86_400)?,
            webhook_poll: env.millis("WEBHOOK_POLL_MS", 500)?,
            webhook_allowed_networks: env.parse("WEBHOOK_ALLOWED_NETWORKS", Default::default())?,
            predial_retry: env.millis("PREDIAL_RETRY_MS", 30_000)?,
            abort_after_insert: failpoint(env)?,
            pack: shared::compliance::enforce::load_pack(env)?,
        })
    }
}

/// `DIAL_FAILPOINT`: unset, or `abort_after_insert:N` (N ≥ 1).
fn failpoint(env: &Env) -> Result<Option<u64>, ConfigError> {
    let Some(value) = env.raw("DIAL_FAILPOINT").filter(|v| !v.trim().is_empty()) else {
        return Ok(None);
    };
    value
        .trim()
        .strip_prefix("abort_after_insert:")
        .and_then(|n| n.parse::<u64>().ok())
        .filter(|n| *n >= 1)
        .map(Some)
        .ok_or_else(|| ConfigError {
            name: "DIAL_FAILPOINT".into(),
            value: value.clone(),
            reason: "expected abort_after_insert:N with N >= 1".into(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_carrier_sim() {
        let cfg = Config::from_env(&Env::from_pairs::<_, String, String>([])).unwrap();
        assert_eq!(cfg.carrier, CarrierKind::Twilio);
        assert_eq!(cfg.carrier_url, "http://127.0.0.1:8090");
        assert_eq!(cfg.carrier_account_sid, "ACsim");
        assert_eq!(cfg.carrier_auth_token, "sim-token");
    }

    #[test]
    fn the_failpoint_is_off_unless_named() {
        let none = Config::from_env(&Env::from_pairs::<_, String, String>([])).unwrap();
        assert_eq!(none.abort_after_insert, None);
        let set = Config::from_env(&Env::from_pairs([(
            "DIAL_FAILPOINT",
            "abort_after_insert:3",
        )]))
        .unwrap();
        assert_eq!(set.abort_after_insert, Some(3));
        let bad = Config::from_env(&Env::from_pairs([("DIAL_FAILPOINT", "explode")])).unwrap_err();
        assert_eq!(bad.name, "DIAL_FAILPOINT");
    }

    #[test]
    fn unknown_carrier_is_named() {
        let err = Config::from_env(&Env::from_pairs([("CARRIER", "pigeon")])).unwrap_err();
        assert_eq!(err.name, "CARRIER");
    }
}

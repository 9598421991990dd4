//! carrier-sim settings, from the environment with local defaults.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use shared::config::{ConfigError, Env};

use crate::plan::{Mix, TalkTime};

/// The address served when neither `CARRIER_SIM_ADDR` nor `HEALTH_ADDR` is set.
pub const DEFAULT_ADDR: &str = "127.0.0.1:8090";
/// The record's path when `CARRIER_SIM_RECORD` is unset (relative to the working directory).
pub const DEFAULT_RECORD: &str = ".dialfleet/carrier-sim/calls.jsonl";

/// Everything the simulator reads at start.
#[derive(Debug, Clone)]
pub struct Config {
    /// `CARRIER_SIM_ADDR`, else `HEALTH_ADDR` (what `deploy/local/up.sh` passes every role).
    pub addr: SocketAddr,
    /// `CARRIER_SIM_ACCOUNT_SID`: the user of HTTP Basic auth and the `{AccountSid}` in paths.
    pub account_sid: String,
    /// `CARRIER_SIM_AUTH_TOKEN`: the Basic auth password, and the key callbacks are signed with.
    pub auth_token: String,
    /// `CARRIER_SIM_RING_MS`: how long every call rings before its outcome.
    pub ring: Duration,
    /// `CARRIER_SIM_TALK_MS`: how long connected calls last (`2000`, or a range `50-500`).
    pub talk: TalkTime,
    /// `CARRIER_SIM_MIX`: a weighted draw replacing the last-digit rule.
    pub mix: Option<Mix>,
    /// `CARRIER_SIM_SEED`: seeds the mix and talk-time draws (random, and logged, when unset).
    pub seed: u64,
    /// `CARRIER_SIM_RECORD`: the call record (JSON lines).
    pub record: PathBuf,
    /// `CARRIER_SIM_CALLBACK_TIMEOUT_MS`: one callback request's time limit.
    pub callback_timeout: Duration,
    /// `CARRIER_SIM_CALLBACK_RETRIES`: retries of a failed callback after the first try.
    pub callback_retries: u32,
    /// `CARRIER_SIM_CALLBACK_BACKOFF_MS`: the first retry's delay, doubled for each next one.
    pub callback_backoff: Duration,
    /// `CARRIER_SIM_FETCH_URL`: request each answered call's `Url` (a signed voice request, as
    /// Twilio does), so an agent sees calls arrive. Off by default: answer URLs in tests and
    /// demos usually point nowhere.
    pub fetch_answer_url: bool,
    /// `CARRIER_SIM_RETAIN_SECS`: how long an ended call stays visible through the API (and
    /// its idempotency key remembered).
    pub retain: Duration,
    /// `SHUTDOWN_GRACE_SECS`: after SIGTERM, how long calls in progress may run to their end
    /// before they are hung up.
    pub shutdown_grace: Duration,
}

impl Config {
    /// Reads the settings; a malformed value names its variable.
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let addr = match env.raw("CARRIER_SIM_ADDR") {
            Some(_) => env.addr("CARRIER_SIM_ADDR", DEFAULT_ADDR)?,
            None => env.addr("HEALTH_ADDR", DEFAULT_ADDR)?,
        };
        let mix = match env.raw("CARRIER_SIM_MIX") {
            None => None,
            Some(value) => Some(value.parse::<Mix>().map_err(|e| ConfigError {
                name: "CARRIER_SIM_MIX".into(),
                reason: e.to_string(),
                value,
            })?),
        };
        let seed = match env.raw("CARRIER_SIM_SEED") {
            Some(_) => env.parse("CARRIER_SIM_SEED", 0u64)?,
            None => uuid::Uuid::new_v4().as_u64_pair().0,
        };
        Ok(Self {
            addr,
            account_sid: env.string("CARRIER_SIM_ACCOUNT_SID", "ACsim"),
            auth_token: env.string("CARRIER_SIM_AUTH_TOKEN", "sim-token"),
            ring: env.millis("CARRIER_SIM_RING_MS", 300)?,
            talk: env.parse("CARRIER_SIM_TALK_MS", TalkTime::Fixed(2000))?,
            mix,
            seed,
            record: PathBuf::from(env.string("CARRIER_SIM_RECORD", DEFAULT_RECORD)),
            callback_timeout: env.millis("CARRIER_SIM_CALLBACK_TIMEOUT_MS", 5000)?,
            callback_retries: env.parse("CARRIER_SIM_CALLBACK_RETRIES", 3)?,
            callback_backoff: env.millis("CARRIER_SIM_CALLBACK_BACKOFF_MS", 250)?,
            fetch_answer_url: env.parse("CARRIER_SIM_FETCH_URL", false)?,
            retain: env.secs("CARRIER_SIM_RETAIN_SECS", 3600)?,
            shutdown_grace: env.secs("SHUTDOWN_GRACE_SECS", 25)?,
        })
    }

    /// The defaults, listening on a free port and recording to `record`: what tests start from.
    pub fn for_tests(record: impl Into<PathBuf>) -> Self {
        let mut config = Self::from_env(&Env::from_pairs([
            ("CARRIER_SIM_ADDR", "127.0.0.1:0"),
            ("CARRIER_SIM_SEED", "1"),
        ]))
        .unwrap_or_else(|e| unreachable!("the test defaults are valid: {e}"));
        config.record = record.into();
        config
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults() {
        let c = Config::from_env(&Env::from_pairs::<_, String, String>([])).unwrap();
        assert_eq!(c.addr.to_string(), DEFAULT_ADDR);
        assert_eq!(c.ring, Duration::from_millis(300));
        assert_eq!(c.talk, TalkTime::Fixed(2000));
        assert_eq!(c.account_sid, "ACsim");
        assert_eq!(c.auth_token, "sim-token");
        assert!(c.mix.is_none());
        assert_eq!(c.record, PathBuf::from(DEFAULT_RECORD));
    }

    #[test]
    fn health_addr_is_an_alias_and_carrier_sim_addr_wins() {
        let c = Config::from_env(&Env::from_pairs([("HEALTH_ADDR", "127.0.0.1:9999")])).unwrap();
        assert_eq!(c.addr.port(), 9999);
        let c = Config::from_env(&Env::from_pairs([
            ("HEALTH_ADDR", "127.0.0.1:9999"),
            ("CARRIER_SIM_ADDR", "127.0.0.1:9998"),
        ]))
        .unwrap();
        assert_eq!(c.addr.port(), 9998);
    }

    #[test]
    fn mix_and_talk_range() {
        let c = Config::from_env(&Env::from_pairs([
            ("CARRIER_SIM_MIX", "answered=0.7,busy=0.1,no-answer=0.2"),
            ("CARRIER_SIM_SEED", "7"),
            ("CARRIER_SIM_TALK_MS", "50-500"),
        ]))
        .unwrap();
        assert!(c.mix.is_some());
        assert_eq!(c.seed, 7);
        assert_eq!(c.talk, TalkTime::Uniform(50, 500));
    }

    #[test]
    fn bad_values_name_their_variable() {
        for (name, value) in [
            ("CARRIER_SIM_MIX", "busy=lots"),
            ("CARRIER_SIM_TALK_MS", "9-1"),
            ("CARRIER_SIM_RING_MS", "-1"),
            ("CARRIER_SIM_SEED", "x"),
            ("CARRIER_SIM_ADDR", "nowhere"),
        ] {
            let err = Config::from_env(&Env::from_pairs([(name, value)])).unwrap_err();
            assert_eq!(err.name, name);
        }
    }
}

//! Typed configuration from environment variables, with defaults that work on a developer's
//! machine.
//!
//! Every role reads its settings through [`Env`], so a missing or malformed value always fails at
//! start with one line that names the variable, never deep inside a request.

use std::net::SocketAddr;
use std::str::FromStr;
use std::time::Duration;

/// A setting that could not be read; its message names the variable and what was wrong.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {name}={value:?}: {reason}")]
pub struct ConfigError {
    /// The environment variable's name.
    pub name: String,
    /// The value that was found.
    pub value: String,
    /// Why it was rejected.
    pub reason: String,
}

/// Reads environment variables through a lookup function, so tests can pass a map instead of
/// mutating the process environment (which is shared by every test thread).
pub struct Env {
    lookup: Lookup,
}

type Lookup = Box<dyn Fn(&str) -> Option<String> + Send + Sync>;

impl Default for Env {
    fn default() -> Self {
        Self::from_process()
    }
}

impl Env {
    /// Reads the real process environment.
    pub fn from_process() -> Self {
        Self {
            lookup: Box::new(|name| std::env::var(name).ok()),
        }
    }

    /// Reads from a fixed list of pairs (for tests).
    pub fn from_pairs<I, K, V>(pairs: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        let map: std::collections::HashMap<String, String> = pairs
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .collect();
        Self {
            lookup: Box::new(move |name| map.get(name).cloned()),
        }
    }

    /// The raw value, if set and not empty.
    pub fn raw(&self, name: &str) -> Option<String> {
        (self.lookup)(name).filter(|v| !v.trim().is_empty())
    }

    /// A string with a default.
    pub fn string(&self, name: &str, default: &str) -> String {
        self.raw(name).unwrap_or_else(|| default.to_owned())
    }

    /// Any `FromStr` value with a default; a malformed value is an error naming the variable.
    pub fn parse<T>(&self, name: &str, default: T) -> Result<T, ConfigError>
    where
        T: FromStr,
        T::Err: std::fmt::Display,
    {
        match self.raw(name) {
            None => Ok(default),
            Some(value) => value.trim().parse().map_err(|e: T::Err| ConfigError {
                name: name.to_owned(),
                reason: e.to_string(),
                value,
            }),
        }
    }

    /// A listen address such as `127.0.0.1:8080`.
    pub fn addr(&self, name: &str, default: &str) -> Result<SocketAddr, ConfigError> {
        let default = default.parse().expect("default listen addresses are valid");
        self.parse(name, default)
    }

    /// A duration given in whole seconds.
    pub fn secs(&self, name: &str, default_secs: u64) -> Result<Duration, ConfigError> {
        self.parse::<u64>(name, default_secs)
            .map(Duration::from_secs)
    }

    /// A duration given in milliseconds.
    pub fn millis(&self, name: &str, default_ms: u64) -> Result<Duration, ConfigError> {
        self.parse::<u64>(name, default_ms)
            .map(Duration::from_millis)
    }

    /// A comma-separated list of URLs (an empty list when `default` is empty and the variable
    /// unset), each of which must start with one of `schemes`.
    pub fn url_list(
        &self,
        name: &str,
        default: &str,
        schemes: &[&str],
    ) -> Result<String, ConfigError> {
        let value = self.string(name, default);
        for item in split_list(&value) {
            if !schemes.iter().any(|s| item.starts_with(&format!("{s}://"))) {
                return Err(ConfigError {
                    name: name.to_owned(),
                    reason: format!(
                        "expected {} URLs, separated by commas",
                        schemes.join(" or ")
                    ),
                    value,
                });
            }
        }
        if split_list(&value).is_empty() && !default.is_empty() {
            return Err(ConfigError {
                name: name.to_owned(),
                reason: "expected at least one URL".into(),
                value,
            });
        }
        Ok(value)
    }

    /// A URL that must start with one of `schemes`; an http(s) one must also parse
    /// (`destination::parse_http_url`).
    pub fn url(&self, name: &str, default: &str, schemes: &[&str]) -> Result<String, ConfigError> {
        let value = self.string(name, default);
        // An address the fleet will call over HTTP is parsed as its client parses it, so a
        // typo fails at start, not at the first request.
        if schemes.iter().all(|s| matches!(*s, "http" | "https"))
            && let Err(e) = crate::destination::parse_http_url(&value)
        {
            return Err(ConfigError {
                name: name.to_owned(),
                reason: format!("the URL {e}"),
                value,
            });
        }
        if schemes
            .iter()
            .any(|s| value.starts_with(&format!("{s}://")))
        {
            Ok(value)
        } else {
            Err(ConfigError {
                name: name.to_owned(),
                reason: format!("expected a {} URL", schemes.join(" or ")),
                value,
            })
        }
    }
}

/// The connections every role needs; each role embeds this in its own config.
#[derive(Debug, Clone)]
pub struct ServiceConfig {
    /// `DATABASE_URL`: PostgreSQL, the system of record.
    pub database_url: String,
    /// `DATABASE_POOL_SIZE`: connections this process may hold.
    pub database_pool_size: usize,
    /// `AMQP_URL`: RabbitMQ, which carries work between roles. Several nodes of one cluster
    /// are given as a comma-separated list of URIs, tried in turn ([`ServiceConfig::amqp_urls`]).
    pub amqp_url: String,
    /// `QUEUE_PREFIX`: prepended to every exchange and queue name, so several deployments (or
    /// parallel tests) can share one broker without seeing each other's messages.
    pub queue_prefix: String,
    /// `REDIS_URL`: Redis, which holds only what may be lost and rebuilt (slots, rate buckets).
    pub redis_url: String,
    /// `REDIS_PREFIX`: prepended to every Redis key, for the same reason as `QUEUE_PREFIX`.
    pub redis_prefix: String,
    /// `REDIS_SENTINELS` (default none): comma-separated `redis://host:port` URLs of Sentinels.
    /// When set, the primary is asked of them (and asked again after a failover) instead of
    /// using `REDIS_URL`'s host.
    pub redis_sentinels: Vec<String>,
    /// `REDIS_SENTINEL_MASTER` (default `dialfleet`): the master name the Sentinels monitor.
    pub redis_sentinel_master: String,
    /// `CONNECT_TIMEOUT_SECS`: how long start-up keeps retrying an unreachable service.
    pub connect_timeout: Duration,
    /// `SHUTDOWN_GRACE_SECS`: how long in-flight work may take to finish after SIGTERM.
    pub shutdown_grace: Duration,
    /// `DIALFLEET_CLOCK_OFFSET_SECS` (**tests only**, default 0): shifts the clock the roles
    /// compare with windows and calling hours; `DIALFLEET_LOCAL_CLOCK_SKEW_SECS` (**tests
    /// only**, default 0) plays a node whose own clock is wrong; see [`crate::clock`].
    pub clock: crate::clock::Clock,
}

/// The local database URL used when `DATABASE_URL` is unset.
pub const DEFAULT_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/dialfleet";
/// The local RabbitMQ URL used when `AMQP_URL` is unset.
pub const DEFAULT_AMQP_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";
/// The local Redis URL used when `REDIS_URL` is unset.
pub const DEFAULT_REDIS_URL: &str = "redis://127.0.0.1:6379/";

impl ServiceConfig {
    /// Reads the shared connection settings.
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        Ok(Self {
            database_url: env.url(
                "DATABASE_URL",
                DEFAULT_DATABASE_URL,
                &["postgres", "postgresql"],
            )?,
            database_pool_size: env.parse("DATABASE_POOL_SIZE", 16)?,
            amqp_url: env.url_list("AMQP_URL", DEFAULT_AMQP_URL, &["amqp", "amqps"])?,
            queue_prefix: env.string("QUEUE_PREFIX", ""),
            redis_url: env.url("REDIS_URL", DEFAULT_REDIS_URL, &["redis", "rediss"])?,
            redis_prefix: env.string("REDIS_PREFIX", "dialfleet:"),
            redis_sentinels: split_list(&env.url_list("REDIS_SENTINELS", "", &["redis"])?),
            redis_sentinel_master: env.string("REDIS_SENTINEL_MASTER", "dialfleet"),
            connect_timeout: env.secs("CONNECT_TIMEOUT_SECS", 30)?,
            shutdown_grace: env.secs("SHUTDOWN_GRACE_SECS", 25)?,
            clock: crate::clock::Clock::offset_by(env.parse(crate::clock::OFFSET_VAR, 0i64)?)
                .with_local_skew(env.parse(crate::clock::SKEW_VAR, 0i64)?),
        })
    }
}

impl ServiceConfig {
    /// The RabbitMQ URIs of `AMQP_URL`, in the order they are tried.
    pub fn amqp_urls(&self) -> Vec<String> {
        split_list(&self.amqp_url)
    }
}

/// The non-empty, trimmed items of a comma-separated list.
pub fn split_list(value: &str) -> Vec<String> {
    value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Strips the password from a URL before it is logged or shown in an error.
pub fn redact_url(url: &str) -> String {
    // A list of nodes (`AMQP_URL`, `REDIS_SENTINELS`): each one redacted.
    if url.contains(",") && url.matches("://").count() > 1 {
        return url.split(',').map(redact_url).collect::<Vec<_>>().join(",");
    }
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let userinfo = &url[scheme_end + 3..at];
            let user = userinfo.split(':').next().unwrap_or_default();
            format!("{}{}@{}", &url[..scheme_end + 3], user, &url[at + 1..])
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_apply_when_unset() {
        let cfg = ServiceConfig::from_env(&Env::from_pairs::<_, String, String>([])).unwrap();
        assert_eq!(cfg.database_url, DEFAULT_DATABASE_URL);
        assert_eq!(cfg.connect_timeout, Duration::from_secs(30));
    }

    #[test]
    fn malformed_value_names_the_variable() {
        let env = Env::from_pairs([("CONNECT_TIMEOUT_SECS", "soon")]);
        let err = ServiceConfig::from_env(&env).unwrap_err();
        assert_eq!(err.name, "CONNECT_TIMEOUT_SECS");
        assert!(err.to_string().contains("CONNECT_TIMEOUT_SECS=\"soon\""));
    }

    #[test]
    fn wrong_scheme_is_rejected() {
        let env = Env::from_pairs([("AMQP_URL", "http://x")]);
        assert_eq!(ServiceConfig::from_env(&env).unwrap_err().name, "AMQP_URL");
    }

    #[test]
    fn several_amqp_nodes_are_tried_in_order() {
        let env = Env::from_pairs([
            ("AMQP_URL", "amqp://a:1/%2f, amqp://b:2/%2f"),
            ("REDIS_SENTINELS", "redis://s1:26379,redis://s2:26379"),
        ]);
        let cfg = ServiceConfig::from_env(&env).unwrap();
        assert_eq!(cfg.amqp_urls(), ["amqp://a:1/%2f", "amqp://b:2/%2f"]);
        assert_eq!(cfg.redis_sentinels.len(), 2);
        assert_eq!(cfg.redis_sentinel_master, "dialfleet");
        let bad = Env::from_pairs([("AMQP_URL", "amqp://a:1/%2f,http://b")]);
        assert_eq!(ServiceConfig::from_env(&bad).unwrap_err().name, "AMQP_URL");
        let single = ServiceConfig::from_env(&Env::from_pairs::<_, String, String>([])).unwrap();
        assert_eq!(single.amqp_urls(), [DEFAULT_AMQP_URL]);
        assert!(single.redis_sentinels.is_empty());
    }

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact_url("amqp://guest:secret@host:5672/%2f"),
            "amqp://guest@host:5672/%2f"
        );
        assert_eq!(
            redact_url("amqp://u:p1@a/%2f,amqp://u:p2@b/%2f"),
            "amqp://u@a/%2f,amqp://u@b/%2f"
        );
        assert_eq!(
            redact_url("redis://127.0.0.1:6379/"),
            "redis://127.0.0.1:6379/"
        );
    }
}

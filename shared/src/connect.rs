//! Start-up connection with backoff.
//!
//! A role started before its services (the usual case under Kubernetes or `up.sh`) keeps trying
//! for a configurable time, then exits with one clear line instead of a panic or a crash loop.

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

/// A service that stayed unreachable for the whole connect timeout.
#[derive(Debug, thiserror::Error)]
#[error("cannot connect to {service} at {url}: {cause}")]
pub struct ConnectError {
    /// "PostgreSQL", "RabbitMQ" or "Redis".
    pub service: &'static str,
    /// The URL, without its password.
    pub url: String,
    /// The last error seen.
    pub cause: String,
}

/// The delay before retry number `attempt` (0-based): doubling from 100 ms, capped at 5 s.
pub fn backoff_delay(attempt: u32) -> Duration {
    let ms = 100u64.saturating_mul(1u64 << attempt.min(16));
    Duration::from_millis(ms.min(5_000))
}

/// Calls `attempt` until it succeeds or `timeout` has passed, sleeping with [`backoff_delay`]
/// between tries and logging each failure.
pub async fn with_backoff<T, E, F, Fut>(
    service: &'static str,
    url: &str,
    timeout: Duration,
    mut attempt: F,
) -> Result<T, ConnectError>
where
    E: std::fmt::Display,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let url = crate::config::redact_url(url);
    let deadline = Instant::now() + timeout;
    let mut tries = 0u32;
    loop {
        match attempt().await {
            Ok(value) => return Ok(value),
            Err(e) => {
                let cause = root_cause(&e);
                let delay = backoff_delay(tries);
                if Instant::now() + delay >= deadline {
                    return Err(ConnectError {
                        service,
                        url,
                        cause,
                    });
                }
                tracing::warn!(service, url = %url, error = %cause, retry_in_ms = delay.as_millis() as u64, "service unreachable, retrying");
                tokio::time::sleep(delay).await;
                tries += 1;
            }
        }
    }
}

/// The most useful part of a driver's error text: drivers often wrap "connection refused" in
/// several layers of context that make the one-line start-up error hard to read.
fn root_cause(e: &impl std::fmt::Display) -> String {
    let text = e.to_string();
    let lower = text.to_lowercase();
    for known in [
        "connection refused",
        "timed out",
        "no route to host",
        "name or service not known",
    ] {
        if lower.contains(known) {
            return known.to_owned();
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_then_caps() {
        assert_eq!(backoff_delay(0), Duration::from_millis(100));
        assert_eq!(backoff_delay(1), Duration::from_millis(200));
        assert_eq!(backoff_delay(30), Duration::from_secs(5));
    }

    #[tokio::test]
    async fn gives_up_with_one_clear_line() {
        let err = with_backoff(
            "RabbitMQ",
            "amqp://guest:pw@127.0.0.1:1/%2f",
            Duration::from_millis(250),
            || async { Err::<(), _>("IO error: Connection refused (os error 111)") },
        )
        .await
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "cannot connect to RabbitMQ at amqp://guest@127.0.0.1:1/%2f: connection refused"
        );
    }
}

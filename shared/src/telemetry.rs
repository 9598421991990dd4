//! Logging and tracing set-up, one call at the top of each role's `main`.
//!
//! `RUST_LOG` filters (default `info`); `LOG_FORMAT=json` switches to JSON lines for log
//! shippers. The OpenTelemetry export plugs in here (see [`init`]): a role's code only ever uses
//! `tracing` spans, so adding the exporter changes no call site.

use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// Installs the global subscriber for `service_name`. Safe to call more than once (tests): later
/// calls are ignored.
pub fn init(service_name: &'static str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let json = std::env::var("LOG_FORMAT").is_ok_and(|v| v.eq_ignore_ascii_case("json"));
    let registry = tracing_subscriber::registry().with(filter);
    // Hook: the OTLP layer (enabled by OTEL_EXPORTER_OTLP_ENDPOINT) is added to `registry` here.
    let result = if json {
        registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .with_current_span(true)
                    .with_writer(std::io::stderr),
            )
            .try_init()
    } else {
        registry
            .with(
                tracing_subscriber::fmt::layer()
                    .with_target(false)
                    .with_writer(std::io::stderr),
            )
            .try_init()
    };
    if result.is_ok() {
        tracing::debug!(service = service_name, "telemetry initialised");
    }
}

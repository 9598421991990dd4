//! Logging and tracing set-up, one call at the top of each role's `main`.
//!
//! `RUST_LOG` filters (default `info`); `LOG_FORMAT=json` switches to JSON lines for log
//! shippers. When `OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set,
//! spans are also exported over OTLP (HTTP/protobuf) to that collector, configured by the
//! standard `OTEL_*` variables (`OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`,
//! `OTEL_TRACES_SAMPLER`, `OTEL_BSP_*`, `OTEL_EXPORTER_OTLP_HEADERS`, …). Without it no
//! OpenTelemetry layer is installed at all, so nothing is exported and nothing slows down.
//!
//! A role's code only ever uses `tracing` spans; [`propagation`] carries their context across
//! RabbitMQ so one batch is one trace from the HTTP request to the call's outcome.

pub mod propagation;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing::Subscriber;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::Layer;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;

/// The variable that turns the OTLP export on (the standard one).
pub const OTLP_ENDPOINT_VAR: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";
/// The traces-only variant of [`OTLP_ENDPOINT_VAR`], also honoured.
pub const OTLP_TRACES_ENDPOINT_VAR: &str = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT";

/// The OTLP exporter could not be built (a malformed endpoint or header variable).
#[derive(Debug, thiserror::Error)]
#[error("cannot build the OTLP trace exporter: {0}")]
pub struct TelemetryError(#[from] opentelemetry_otlp::ExporterBuildError);

/// Keeps the trace pipeline alive; dropping it (or calling [`TelemetryGuard::shutdown`]) flushes
/// the spans still buffered, so the last seconds of a draining role reach the collector.
#[must_use = "dropping the guard flushes and stops the trace export"]
#[derive(Debug, Default)]
pub struct TelemetryGuard {
    provider: Option<SdkTracerProvider>,
}

impl TelemetryGuard {
    /// Whether spans are being exported.
    pub fn exporting(&self) -> bool {
        self.provider.is_some()
    }

    /// Flushes buffered spans and stops the exporter (bounded by the exporter's timeout).
    pub fn shutdown(mut self) {
        self.flush_and_stop();
    }

    fn flush_and_stop(&mut self) {
        if let Some(provider) = self.provider.take() {
            // The SDK blocks this thread while its export thread drains; inside a runtime that
            // would stall a worker, so a plain thread does the waiting.
            let stopped = std::thread::spawn(move || {
                let _ = provider.force_flush();
                provider.shutdown()
            })
            .join();
            if let Ok(Err(e)) = stopped {
                eprintln!("warning: trace export did not shut down cleanly: {e}");
            }
        }
    }
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        self.flush_and_stop();
    }
}

/// Installs the global subscriber for `service_name` (also the metrics recorder, see
/// [`crate::metrics`]). Safe to call more than once (tests): later calls install nothing and
/// return an inert guard. Keep the guard until the role has drained.
pub fn init(service_name: &'static str) -> TelemetryGuard {
    crate::metrics::install();
    crate::metrics::record_build_info(service_name);
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let json = std::env::var("LOG_FORMAT").is_ok_and(|v| v.eq_ignore_ascii_case("json"));
    let (otel, provider) = match otel_layer_from_env(service_name) {
        Ok(Some((layer, provider))) => (Some(layer), Some(provider)),
        Ok(None) => (None, None),
        Err(e) => {
            // Telemetry is not worth refusing to start for: say so and run without it.
            eprintln!("warning: {e}; traces will not be exported");
            (None, None)
        }
    };
    let registry = tracing_subscriber::registry().with(filter).with(otel);
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
        tracing::debug!(
            service = service_name,
            otlp = provider.is_some(),
            "telemetry initialised"
        );
        TelemetryGuard { provider }
    } else {
        // Another subscriber was installed first: this provider would never see a span.
        TelemetryGuard::default()
    }
}

/// A tracing layer for subscriber `S`, boxed so its exporter type does not leak.
pub type BoxedLayer<S> = Box<dyn Layer<S> + Send + Sync>;

/// Whether the environment asks for an OTLP export.
pub fn otlp_enabled() -> bool {
    [OTLP_ENDPOINT_VAR, OTLP_TRACES_ENDPOINT_VAR]
        .iter()
        .any(|name| std::env::var(name).is_ok_and(|v| !v.trim().is_empty()))
}

/// The OpenTelemetry layer and its provider when [`otlp_enabled`], else `None`.
pub fn otel_layer_from_env<S>(
    service_name: &'static str,
) -> Result<Option<(BoxedLayer<S>, SdkTracerProvider)>, TelemetryError>
where
    S: Subscriber + for<'a> LookupSpan<'a> + Send + Sync,
{
    if !otlp_enabled() {
        return Ok(None);
    }
    // The exporter reads OTEL_EXPORTER_OTLP_{,TRACES_}ENDPOINT, _HEADERS, _TIMEOUT itself.
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .build()?;
    Ok(Some(otel_layer(service_name, exporter)))
}

/// An OpenTelemetry layer exporting through `exporter` in batches, for `service_name` (unless
/// `OTEL_SERVICE_NAME` names the service). Tests use it to run several roles, each with its own
/// `service.name`, in one process (one subscriber per role, scoped with
/// `tracing::instrument::WithSubscriber`).
pub fn otel_layer<S, E>(
    service_name: &'static str,
    exporter: E,
) -> (BoxedLayer<S>, SdkTracerProvider)
where
    S: Subscriber + for<'a> LookupSpan<'a> + Send + Sync,
    E: opentelemetry_sdk::trace::SpanExporter + 'static,
{
    // The builder's default resource already reads OTEL_RESOURCE_ATTRIBUTES and
    // OTEL_SERVICE_NAME; the role's name fills in only when neither gives one.
    let mut resource = Resource::builder();
    if std::env::var("OTEL_SERVICE_NAME").is_err() {
        resource = resource.with_service_name(service_name);
    }
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource.build())
        .build();
    let tracer = provider.tracer(service_name);
    let layer = tracing_opentelemetry::layer().with_tracer(tracer);
    (Box::new(layer), provider)
}

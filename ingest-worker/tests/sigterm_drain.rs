//! SIGTERM on the real `ingest-worker` process: it stops, drains within `SHUTDOWN_GRACE_SECS` and
//! exits 0, having served `/metrics` while it ran and flushed its traces over OTLP on the way
//! out (to a receiver inside this test, with its own `service.name`).
//!
//! After the merge, extend it with work in flight (see docs/observability.md, "Shutdown"):
//! signal mid-work, then check in PostgreSQL and the carrier-sim record that nothing was lost and
//! nothing done twice.

use std::time::Duration;

use testkit::process::RoleProcess;

#[tokio::test]
async fn sigterm_drains_and_exits_zero() {
    let env = testkit::TestEnv::new().await;
    let otlp = testkit::otlp::OtlpReceiver::start().await;
    let endpoint = otlp.endpoint();
    let mut role = RoleProcess::spawn(
        env!("CARGO_BIN_EXE_ingest-worker"),
        &env,
        &[("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str())],
    );
    role.wait_ready(Duration::from_secs(30)).await;
    let metrics = role.get("/metrics").await;
    assert!(
        metrics.contains("dialfleet_build_info{role=\"ingest-worker\""),
        "{metrics}"
    );

    role.sigterm();
    // SHUTDOWN_GRACE_SECS is 5 for the process; allow start-up noise on a loaded machine.
    let status = role.wait_exit(Duration::from_secs(15)).await;
    assert!(status.success(), "exit status {status}");
    let spans = otlp.spans();
    assert!(
        spans
            .iter()
            .any(|s| s.name == "shutdown" && s.service == "ingest-worker"),
        "the drain's span was exported before exit: {spans:?}"
    );
}

//! What every role's `main` does around its own work: read config, start, and turn a failure
//! into one clear line and a non-zero exit code (no panic, no backtrace).

use std::future::Future;
use std::process::ExitCode;

/// Runs a role's entry point and maps its result to an exit code, printing `error: …` with the
/// whole context chain on one line when it fails.
pub async fn main<F>(service_name: &'static str, run: F) -> ExitCode
where
    F: Future<Output = anyhow::Result<()>>,
{
    let telemetry = crate::telemetry::init(service_name);
    let code = match run.await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    };
    // Flush the spans of the drain itself before the process exits.
    telemetry.shutdown();
    code
}

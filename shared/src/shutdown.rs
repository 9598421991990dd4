//! Graceful shutdown: SIGTERM or Ctrl-C cancels one token that every task of a role watches.
//!
//! Roles take the token as an argument (rather than reading a process-wide static), so tests can
//! run several instances in one process and stop each on its own.

use tokio_util::sync::CancellationToken;

/// Returns a token that is cancelled when the process receives SIGTERM or SIGINT.
pub fn on_signal() -> CancellationToken {
    let token = CancellationToken::new();
    let trigger = token.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        // A span of its own, so the moment the drain began is in the role's traces too (and a
        // test can see the export flushed at exit).
        tracing::info_span!("shutdown").in_scope(|| {
            tracing::info!("shutdown signal received, draining");
        });
        trigger.cancel();
    });
    token
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

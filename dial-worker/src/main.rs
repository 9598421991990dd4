// Production code names what it expects instead of unwrapping: `expect` with the invariant that
// makes the panic impossible, or an error. Tests may unwrap (clippy.toml).
#![warn(clippy::unwrap_used)]

use std::process::ExitCode;

use anyhow::Context;

#[tokio::main]
async fn main() -> ExitCode {
    shared::role::main("dial-worker", async {
        let config = dial_worker::config::Config::from_env(&shared::config::Env::from_process())?;
        let shutdown = shared::shutdown::on_signal();
        dial_worker::run(config, shutdown)
            .await
            .context("dial-worker stopped")
    })
    .await
}

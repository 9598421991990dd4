// Production code names what it expects instead of unwrapping: `expect` with the invariant that
// makes the panic impossible, or an error. Tests may unwrap (clippy.toml).
#![warn(clippy::unwrap_used)]

use std::process::ExitCode;

use anyhow::Context;

#[tokio::main]
async fn main() -> ExitCode {
    shared::role::main("carrier-sim", async {
        let config = carrier_sim::config::Config::from_env(&shared::config::Env::from_process())?;
        let shutdown = shared::shutdown::on_signal();
        carrier_sim::run(config, shutdown)
            .await
            .context("carrier-sim stopped")
    })
    .await
}

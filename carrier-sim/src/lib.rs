//! A stand-in carrier that speaks Twilio's REST API for calls: it places simulated calls whose
//! outcome follows the called number's last digit (or a seeded mix), sends Twilio-signed status
//! callbacks, and appends every call to a JSON-lines record, the independent witness that tests
//! read through [`record`]. `docs/carrier-sim.md` describes the API and behaviour.

// Production code names what it expects instead of unwrapping: `expect` with the invariant that
// makes the panic impossible, or an error. Tests may unwrap (clippy.toml).
#![warn(clippy::unwrap_used)]

pub mod api;
pub mod callback;
pub mod calls;
pub mod config;
pub mod plan;
pub mod record;
pub mod sim;
pub mod subscription;

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use config::Config;
use plan::Planner;
use record::Recorder;
use sim::Sim;

/// Binds `config.addr` (port 0 picks a free port, as tests do), then serves until `shutdown` is
/// cancelled. Returns the bound address and the server task, which ends after draining: new
/// requests refused, calls in progress run to their end within `shutdown_grace` (then are hung
/// up), their callbacks delivered, the record synced to disk.
pub async fn spawn(
    config: Config,
    shutdown: CancellationToken,
) -> anyhow::Result<(SocketAddr, JoinHandle<anyhow::Result<()>>)> {
    let recorder = Recorder::open(&config.record)?;
    let notifier = callback::Notifier::new(
        config.auth_token.clone(),
        config.callback_timeout,
        config.callback_retries,
        config.callback_backoff,
    )
    .context("cannot build the callback HTTP client")?;
    let listener = tokio::net::TcpListener::bind(config.addr)
        .await
        .with_context(|| format!("cannot listen on {}", config.addr))?;
    let addr = listener.local_addr()?;
    let sim = Arc::new(Sim {
        planner: Planner {
            mix: config.mix.clone(),
            talk: config.talk,
            seed: config.seed,
        },
        config,
        registry: Default::default(),
        recorder,
        notifier,
        tracker: TaskTracker::new(),
        force_end: CancellationToken::new(),
    });
    tracing::info!(
        %addr,
        record = %sim.config.record.display(),
        ring_ms = sim.config.ring.as_millis() as u64,
        talk_ms = %sim.config.talk,
        mix = %sim.config.mix.as_ref().map_or("last digit".to_owned(), |m| m.to_string()),
        seed = sim.config.seed,
        "carrier-sim ready"
    );
    let sweeper = tokio::spawn(sweep(sim.clone(), shutdown.clone()));
    let router = api::router(sim.clone());
    let task = tokio::spawn(async move {
        let served = axum::serve(listener, router)
            .with_graceful_shutdown(shutdown.clone().cancelled_owned())
            .await;
        sweeper.abort();
        drain(&sim).await;
        served.context("carrier-sim server failed")?;
        sim.recorder.sync()?;
        Ok(())
    });
    Ok((addr, task))
}

/// [`spawn`], then waits for the server task.
pub async fn run(config: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    let (_, task) = spawn(config, shutdown).await?;
    task.await.context("carrier-sim task panicked")?
}

async fn drain(sim: &Sim) {
    sim.tracker.close();
    let in_flight = sim.registry.in_flight();
    if in_flight > 0 {
        tracing::info!(in_flight, "letting calls in progress end");
    }
    if tokio::time::timeout(sim.config.shutdown_grace, sim.tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            in_flight = sim.registry.in_flight(),
            "shutdown grace over, hanging up"
        );
        sim.force_end.cancel();
        sim.tracker.wait().await;
    }
}

/// Forgets ended calls past the retention time, so a long benchmark does not grow without bound.
async fn sweep(sim: Arc<Sim>, shutdown: CancellationToken) {
    let every = (sim.config.retain / 4).clamp(
        std::time::Duration::from_millis(100),
        std::time::Duration::from_secs(60),
    );
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
        sim.registry.sweep(sim.config.retain);
    }
}

//! `/healthz` (the process is alive) and `/readyz` (its services are reachable), served by every
//! role: Kubernetes restarts a role that is not alive and stops routing to one that is not ready.
//! The same router serves `/metrics` (Prometheus exposition, see [`crate::metrics`]).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::db::Pool;
use crate::queue::Broker;
use crate::redis_conn::Redis;

/// The services a role depends on; `/readyz` checks each one that is set.
#[derive(Clone, Default)]
pub struct Readiness {
    /// PostgreSQL pool.
    pub db: Option<Pool>,
    /// RabbitMQ connection.
    pub broker: Option<Broker>,
    /// Redis connection.
    pub redis: Option<Redis>,
}

impl Readiness {
    /// Checks every dependency; returns each one's state.
    pub async fn check(&self) -> (bool, Value) {
        let mut ok = true;
        let mut report = serde_json::Map::new();
        if let Some(pool) = &self.db {
            let up = match pool.get().await {
                Ok(client) => client.simple_query("SELECT 1").await.is_ok(),
                Err(_) => false,
            };
            ok &= up;
            report.insert(
                "postgres".into(),
                json!(if up { "ok" } else { "unreachable" }),
            );
        }
        if let Some(broker) = &self.broker {
            // A channel open proves the connection (and reopens it after a broker restart).
            let up = match broker.channel().await {
                Ok(channel) => {
                    let _ = channel.close(200, "readyz".into()).await;
                    true
                }
                Err(_) => false,
            };
            ok &= up;
            report.insert(
                "rabbitmq".into(),
                json!(if up { "ok" } else { "unreachable" }),
            );
        }
        if let Some(redis) = &self.redis {
            let up = redis.ping().await;
            ok &= up;
            report.insert("redis".into(), json!(if up { "ok" } else { "unreachable" }));
        }
        (ok, Value::Object(report))
    }
}

/// The two health routes and `/metrics`, to merge into a role's router (the gateway) or serve
/// alone.
pub fn router(readiness: Readiness) -> Router {
    crate::metrics::install();
    Router::new()
        .route("/metrics", get(crate::metrics::exposition))
        .route("/healthz", get(|| async { Json(json!({"status": "ok"})) }))
        .route("/readyz", get(readyz))
        .with_state(Arc::new(readiness))
}

async fn readyz(State(readiness): State<Arc<Readiness>>) -> (StatusCode, Json<Value>) {
    let (ok, checks) = readiness.check().await;
    let status = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        Json(json!({"status": if ok { "ready" } else { "not ready" }, "checks": checks})),
    )
}

/// Binds `addr` and serves `router` until `shutdown` is cancelled. Returns the bound address
/// (port 0 picks a free one, as tests do) and the server task.
pub async fn serve(
    addr: SocketAddr,
    router: Router,
    shutdown: CancellationToken,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<std::io::Result<()>>)> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let task = tokio::spawn(async move {
        axum::serve(listener, router)
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await
    });
    Ok((bound, task))
}

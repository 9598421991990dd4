//! A gateway serving the monitor with a hub the test reads (its read counters, its feeds).

use chrono::Utc;

/// A gateway whose monitor hub the test can read, over `db` (the test's database, or one
/// that is down).
pub struct HubApp {
    pub addr: std::net::SocketAddr,
    pub hub: std::sync::Arc<api_gateway::monitor::hub::Hub>,
    pub config: api_gateway::config::Config,
    _stop: tokio_util::sync::DropGuard,
}

impl HubApp {
    /// Serves on a free port; `refresh_ms`: `MONITOR_REFRESH_MS` (the default when `None`).
    pub async fn start(
        env: &testkit::TestEnv,
        db: shared::db::Pool,
        refresh_ms: Option<u64>,
    ) -> Self {
        use std::sync::Arc;
        let mut pairs = env.env_vars();
        pairs.push(("GATEWAY_ADDR".into(), "127.0.0.1:0".into()));
        if let Some(ms) = refresh_ms {
            pairs.push(("MONITOR_REFRESH_MS".into(), ms.to_string()));
        }
        let config =
            api_gateway::config::Config::from_env(&shared::config::Env::from_pairs(pairs)).unwrap();
        let config = api_gateway::monitor::secret::resolve(&env.db, config)
            .await
            .unwrap();
        let stop = tokio_util::sync::CancellationToken::new();
        let hub = Arc::new(api_gateway::monitor::hub::Hub::new(
            db.clone(),
            config.monitor_refresh,
            stop.clone(),
        ));
        let state = api_gateway::AppState {
            db,
            publisher: Arc::new(shared::queue::Publisher::new(env.broker.clone())),
            config: Arc::new(config.clone()),
            monitor: hub.clone(),
            limiter: api_gateway::rate_limit::RequestLimiter::start(
                &config.service,
                &config.rate_limit,
                stop.clone(),
            ),
        };
        let app = api_gateway::app::router(state, Default::default());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self {
            addr,
            hub,
            config,
            _stop: stop.drop_guard(),
        }
    }

    /// The page's URL (`events`: its event stream's) with a valid token.
    pub fn url(&self, batch: uuid::Uuid, events: bool) -> String {
        let link = api_gateway::monitor::dashboard_link(&self.config, batch, Utc::now());
        let path = &link[link.find("/batch/monitor/").unwrap()..];
        let path = if events {
            path.replace('?', "/events?")
        } else {
            path.to_owned()
        };
        format!("http://{}{path}", self.addr)
    }
}

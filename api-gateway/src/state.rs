//! What every handler can reach. A leaf: route modules import it, and `app` builds the router
//! from the route modules, so the state does not live with the router.

use std::sync::Arc;

use crate::config::Config;
use shared::db::Pool;
use shared::queue::Publisher;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    /// The system of record.
    pub db: Pool,
    /// Confirmed publishing to the ingest and call-event queues.
    pub publisher: Arc<Publisher>,
    /// Settings.
    pub config: Arc<Config>,
    /// The monitor pages' shared feeds, one per watched batch.
    pub monitor: Arc<crate::monitor::hub::Hub>,
}

//! Every HTTP route, one module per resource.

pub mod agents;
pub mod carrier;
pub mod compliance;
pub mod dashboard_links;
pub mod dialgen;
pub mod dnc_registry;
pub mod lists;
pub mod owned;
pub mod phone_numbers;
pub mod preflight;
pub mod vogent;
pub mod webhook_deliveries;
pub mod workspace;

use axum::Router;

use crate::state::AppState;

/// The API routes (health, metrics and OpenAPI are added by `app`).
pub fn router() -> Router<AppState> {
    Router::new()
        .merge(agents::router())
        .merge(phone_numbers::router())
        .merge(vogent::router())
        .merge(dialgen::router())
        .merge(dashboard_links::router())
        .merge(preflight::router())
        .merge(lists::router())
        .merge(carrier::router())
        .merge(compliance::router())
        .merge(webhook_deliveries::router())
        .merge(workspace::router())
        .merge(crate::monitor::router())
}

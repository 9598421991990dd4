//! The ground the four dialfleet roles stand on.
//!
//! Everything here is needed by at least two roles: the domain types (parsed once at the edge, so
//! the rest of the code never sees an invalid phone number or timezone), configuration from the
//! environment, the PostgreSQL pool and migrations, the RabbitMQ topology with its confirmed
//! publisher and acking consumer, Redis connection handling, telemetry (traces, metrics) and the health endpoints.

pub mod carrier_sim;
pub mod clock;
pub mod compliance;
pub mod config;
pub mod connect;
pub mod db;
pub mod destination;
pub mod domain;
pub mod gcra;
pub mod health;
pub mod metrics;
pub mod queue;
pub mod redis_conn;
pub mod role;
pub mod rows;
pub mod schedule;
pub mod shutdown;
pub mod startup;
pub mod telemetry;
pub mod twilio;
pub mod witness;

//! Webhooks: the outbox rows written with the events they announce ([`outbox`]), Standard
//! Webhooks signatures ([`signature`]) and the delivery loop ([`delivery`]) that posts them,
//! retrying with exponential backoff. Deliveries run on their own task with bounded
//! concurrency, so a slow or failing receiver never slows dialing.

pub mod delivery;
pub mod outbox;
pub mod signature;

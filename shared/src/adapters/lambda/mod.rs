//! Lambda glue: the HTTP API's request and response, its routes, the SQS batch harness, the
//! outbox relay's stream handler, the scheduled invariant check and the payout scheduler.

pub mod fetch_settlement;
pub mod http;
pub mod invariants;
pub mod reconcile;
pub mod relay;
pub mod repair;
pub mod routes;
pub mod scheduler;
pub mod sqs_batch;

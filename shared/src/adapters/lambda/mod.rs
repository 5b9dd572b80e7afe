//! Lambda glue: the HTTP API's request and response, its routes, the SQS batch harness, the
//! outbox relay's stream handler and the scheduled invariant check.

pub mod http;
pub mod invariants;
pub mod relay;
pub mod routes;
pub mod sqs_batch;

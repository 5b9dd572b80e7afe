//! Pay-in: `POST /v1/payments` (the payment service and executor), the signed webhook, and
//! the reads.

pub mod create_payment;
pub mod queries;
pub mod webhook;

//! Payouts (design §4, §5, §13, §14): the sellers' payout accounts ([`accounts`]),
//! `POST /v1/payouts` ([`create`]) and its cancel ([`cancel`]), the executor that sends a
//! payout from the payout queue and reverses a bounced one's transfer ([`executor`]), the
//! PSP's `payout.*` webhooks ([`webhook`]), the scheduled automatic payouts ([`schedule`]),
//! and the reads ([`queries`]).

pub mod accounts;
pub mod cancel;
pub mod create;
pub mod executor;
pub mod queries;
pub mod schedule;
pub mod webhook;

//! Payouts (design §4, §5, §13, §14): the sellers' payout accounts ([`accounts`]),
//! `POST /v1/payouts` ([`create`]), the executor that sends a payout from the payout queue
//! ([`executor`]) and the reads ([`queries`]). The webhooks, the reversal of a bounced
//! payout's transfer, cancel and the scheduler come next (issue 11).

pub mod accounts;
pub mod cancel;
pub mod create;
pub mod executor;
pub mod queries;

//! Payouts (design §4, §5, §13, §14): the sellers' payout accounts ([`accounts`]),
//! `POST /v1/payouts` ([`create`]) and the reads ([`queries`]). The executor, the webhooks,
//! cancel and the scheduler come next (issue 11).

pub mod accounts;
pub mod create;
pub mod queries;

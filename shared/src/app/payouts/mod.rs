//! Payouts (design §4, §5, §13, §14): `POST /v1/payouts` ([`create`]). The executor, the
//! webhooks, cancel and the scheduler come next (issue 11).

pub mod create;

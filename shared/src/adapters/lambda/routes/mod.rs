//! One file per capability's HTTP routes.

pub mod ledger;
pub mod pay_in;
pub mod payouts;
pub mod reconciliation;
pub mod refunds;

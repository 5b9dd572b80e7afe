//! The HTTP API's contract: the error object every failure becomes, strict JSON request
//! bodies, and the JSON views of our records. No I/O.

pub mod error;
pub mod json;
pub mod ledger;
pub mod pay_in;
pub mod payouts;
pub mod reconciliation;
pub mod refunds;

pub use error::ApiError;

//! The pure domain: no I/O, no AWS types.

pub mod checkout;
pub mod currency;
pub mod error;
pub mod idempotency;
pub mod ids;
pub mod money;
pub mod rate_limit;
pub mod status;

pub use checkout::{Checkout, CheckoutRequest, PaymentOrder};
pub use currency::Currency;
pub use error::ApiError;
pub use money::Money;
pub use status::PaymentStatus;
pub mod invariants;
pub mod ledger;
pub mod outbox;
pub mod psp;

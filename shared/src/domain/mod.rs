//! The pure domain: no I/O, no AWS types. Shared kernel at the top (money, currencies, ids,
//! time, idempotency, rate limits, the PSP's ids and signatures), then a folder per capability.

pub mod card;
pub mod currency;
pub mod idempotency;
pub mod ids;
pub mod invariants;
pub mod ledger;
pub mod metadata;
pub mod money;
pub mod outbox;
pub mod pay_in;
pub mod payouts;
pub mod psp;
pub mod rate_limit;
pub mod reconciliation;
pub mod refunds;
pub mod time;

pub use currency::Currency;
pub use money::Money;
pub use pay_in::{Checkout, CheckoutRequest, PaymentOrder, PaymentStatus};

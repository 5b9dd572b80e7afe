//! The narrow capabilities the use cases need, one file per capability. DynamoDB, SQS and the
//! PSP client implement them in `adapters`; unit tests use the in-memory twin in `app::memory`.

pub mod auth;
pub mod idempotency;
pub mod invariants;
pub mod ledger;
pub mod outbox;
pub mod pay_in;
pub mod payouts;
pub mod reconciliation;
pub mod reconciliation_api;
pub mod refunds;

pub use auth::{ApiKeyRecord, ApiKeys, Consume};
pub use idempotency::{Begin, Claims, Completion, Refusal};
pub use invariants::InvariantSource;
pub use ledger::{LedgerReader, LedgerWriter, Page, WalletWriter, Written};
pub use outbox::{Destination, Outgoing, Publisher};
pub use pay_in::{Applied, Checkouts, Psp, Webhooks};
pub use payouts::{PayoutPsp, PayoutReader, PayoutScan, Payouts};
pub use refunds::{RefundPsp, RefundReader, RefundWrite, Refunds};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The store did not answer or failed; the request may be retried.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// A stored item does not parse into the domain: a bug or tampering, never the caller's
    /// fault, and retrying will not help.
    #[error("corrupt item: {0}")]
    Corrupt(String),
    /// A list cursor that does not belong to this query (edited, foreign or made up).
    #[error("invalid cursor: {0}")]
    InvalidCursor(String),
}

//! The consumers of outbox events (design §12, §15): each applies an event at most once, by its
//! id, and says whether a failure is worth retrying. The SQS batch harness
//! (`adapters::lambda::sqs_batch`) runs them: retries with backoff, DLQ with the reason.

pub mod ledger;
pub mod wallet;

use std::future::Future;

use crate::domain::ledger::PostingError;
use crate::domain::outbox::OutboxEvent;
use crate::ports::{StoreError, Written};

pub use ledger::LedgerConsumer;
pub use wallet::WalletConsumer;

/// Why a message was not applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// Will never succeed (unparseable, an impossible posting): straight to the DLQ with the
    /// reason.
    Poison(String),
    /// May succeed later (the store unavailable): back off and retry.
    Retryable(String),
}

impl From<PostingError> for Failure {
    fn from(e: PostingError) -> Self {
        Failure::Poison(e.to_string())
    }
}

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(_) => Failure::Retryable(e.to_string()),
            // Our own bug or tampering: retrying will not fix it; the DLQ keeps it for a person.
            StoreError::Corrupt(_) | StoreError::InvalidCursor(_) => Failure::Poison(e.to_string()),
        }
    }
}

/// Something that applies queued messages.
pub trait Consumer: Send + Sync {
    /// Its name in logs and DLQ attributes (`ledger`, `wallet`).
    const NAME: &'static str;
    /// Whether one batch's messages may be applied at once (their writes touch disjoint items).
    const CONCURRENT_IN_BATCH: bool;

    fn apply(&self, body: &str) -> impl Future<Output = Result<Written, Failure>> + Send;
}

/// The message body of an outbox event.
pub fn parse_event(body: &str) -> Result<OutboxEvent, Failure> {
    OutboxEvent::from_json(body).map_err(Failure::Poison)
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;

    use rust_decimal::Decimal;

    use super::*;
    use crate::app::memory::{paid_event, Memory};
    use crate::domain::outbox::OutboxBody;

    fn rate() -> Decimal {
        Decimal::new(25, 3)
    }

    #[tokio::test]
    async fn a_redelivered_event_is_booked_and_credited_once() {
        let store = Memory::default();
        let body = paid_event("evt_1").to_json();
        let ledger = LedgerConsumer {
            store: &store,
            fee_rate: rate(),
        };
        let wallet = WalletConsumer {
            store: &store,
            fee_rate: rate(),
        };
        assert_eq!(ledger.apply(&body).await, Ok(Written::Written));
        assert_eq!(wallet.apply(&body).await, Ok(Written::Written));
        for _ in 0..3 {
            assert_eq!(ledger.apply(&body).await, Ok(Written::AlreadyApplied));
            assert_eq!(wallet.apply(&body).await, Ok(Written::AlreadyApplied));
        }
        assert_eq!(store.transactions.lock().unwrap().len(), 1);
        // 10.00 less the 2.5 % fee, once.
        assert_eq!(store.wallets.lock().unwrap()[0].balance_minor, 975);
    }

    #[tokio::test]
    async fn a_failed_payment_moves_nothing() {
        let store = Memory::default();
        let mut e = paid_event("evt_1");
        let OutboxBody::PaymentSucceeded(p) = e.body else {
            unreachable!()
        };
        e.body = OutboxBody::PaymentFailed(p);
        store.consume(&e).await;
        assert!(store.transactions.lock().unwrap().is_empty());
        assert!(store.wallets.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn poison_and_outages_are_told_apart() {
        let store = Memory::default();
        let ledger = LedgerConsumer {
            store: &store,
            fee_rate: rate(),
        };
        assert!(matches!(ledger.apply("not json").await, Err(Failure::Poison(_))));
        let zero = paid_event("evt_0")
            .to_json()
            .replace(r#""amount_minor":1000"#, r#""amount_minor":0"#);
        assert!(
            matches!(ledger.apply(&zero).await, Err(Failure::Poison(_))),
            "an impossible posting"
        );
        store.unavailable.store(true, Ordering::SeqCst);
        let body = paid_event("evt_1").to_json();
        assert!(matches!(ledger.apply(&body).await, Err(Failure::Retryable(_))));
        assert!(matches!(
            WalletConsumer {
                store: &store,
                fee_rate: rate()
            }
            .apply(&body)
            .await,
            Err(Failure::Retryable(_))
        ));
        store.unavailable.store(false, Ordering::SeqCst);
        assert_eq!(ledger.apply(&body).await, Ok(Written::Written));
    }
}

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

    /// What this message writes that another message of its batch may write too (keys of the
    /// consumer's choosing). Messages of a batch that share any are applied one after another,
    /// in their order; all others at once. Empty (the default): at once with every other.
    fn contends_on(&self, _body: &str) -> Vec<String> {
        Vec::new()
    }

    fn apply(&self, body: &str) -> impl Future<Output = Result<Written, Failure>> + Send;
}

/// A batch split into lanes: messages that share a contention key (directly or through
/// others) are one lane, in batch order; lanes are independent of one another. Every index
/// is in exactly one lane; lanes come in the order of their first message.
pub fn lanes(keys: &[Vec<String>]) -> Vec<Vec<usize>> {
    fn root(parent: &mut [usize], mut i: usize) -> usize {
        while parent[i] != i {
            parent[i] = parent[parent[i]];
            i = parent[i];
        }
        i
    }
    let mut parent: Vec<usize> = (0..keys.len()).collect();
    let mut owner: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    for (i, ks) in keys.iter().enumerate() {
        for k in ks {
            match owner.get(k.as_str()) {
                Some(&j) => {
                    let (a, b) = (root(&mut parent, i), root(&mut parent, j));
                    // The earlier message's root stays the root.
                    parent[a.max(b)] = a.min(b);
                }
                None => {
                    owner.insert(k, i);
                }
            }
        }
    }
    let mut lanes: Vec<Vec<usize>> = Vec::new();
    let mut lane_of_root: std::collections::HashMap<usize, usize> = std::collections::HashMap::new();
    for i in 0..keys.len() {
        let r = root(&mut parent, i);
        let lane = *lane_of_root.entry(r).or_insert_with(|| {
            lanes.push(Vec::new());
            lanes.len() - 1
        });
        lanes[lane].push(i);
    }
    lanes
}

/// The message body of an outbox event.
pub fn parse_event(body: &str) -> Result<OutboxEvent, Failure> {
    OutboxEvent::from_json(body).map_err(Failure::Poison)
}

#[cfg(test)]
mod lane_tests {
    use super::lanes;

    fn keys(k: &[&[&str]]) -> Vec<Vec<String>> {
        k.iter()
            .map(|ks| ks.iter().map(|s| s.to_string()).collect())
            .collect()
    }

    #[test]
    fn messages_sharing_a_key_share_a_lane_in_order_and_the_rest_run_apart() {
        // 0 and 2 share a; 3 shares b with 2, so it joins them; 1 and 4 are alone.
        let l = lanes(&keys(&[&["a"], &["c"], &["a", "b"], &["b"], &[]]));
        assert_eq!(l, vec![vec![0, 2, 3], vec![1], vec![4]]);
        // A later message can join two lanes that began apart.
        let l = lanes(&keys(&[&["x"], &["y"], &["x", "y"]]));
        assert_eq!(l, vec![vec![0, 1, 2]]);
        assert_eq!(lanes(&[]), Vec::<Vec<usize>>::new());
        // No keys: every message its own lane.
        assert_eq!(lanes(&keys(&[&[], &[]])), vec![vec![0], vec![1]]);
    }
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

//! What the invariant check reads.

use std::future::Future;

use super::StoreError;
use crate::domain::invariants::Checker;

pub trait InvariantSource: Send + Sync {
    /// Feeds every ledger transaction, running-total shard, wallet, payment order and outbox
    /// event to `checker`, page by page: nothing is held but the checker's aggregates.
    fn feed(&self, checker: &mut Checker) -> impl Future<Output = Result<(), StoreError>> + Send;
}

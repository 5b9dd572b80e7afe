//! Ledger consumer: each event's posting rules, one balanced transaction at a time, each
//! written once by its deterministic id together with its accounts' running totals.

use rust_decimal::Decimal;

use super::{parse_event, Consumer, Failure};
use crate::domain::ledger::postings;
use crate::ports::{LedgerWriter, Written};

pub struct LedgerConsumer<S> {
    pub store: S,
    pub fee_rate: Decimal,
}

impl<S: LedgerWriter> Consumer for LedgerConsumer<S> {
    const NAME: &'static str = "ledger";
    // Different events write different transactions and entry lines; the running totals are
    // sharded and retried on a conflict by the store.
    // (So a batch is applied all at once: `contends_on` is empty.)

    async fn apply(&self, body: &str) -> Result<Written, Failure> {
        let event = parse_event(body)?;
        let mut written = Written::AlreadyApplied;
        for tx in postings(&event, self.fee_rate)? {
            if self.store.append(&tx).await? == Written::Written {
                written = Written::Written;
            }
        }
        Ok(written)
    }
}

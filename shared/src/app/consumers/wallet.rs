//! Wallet consumer: each seller's balance moves from the same posting rules as the ledger, and
//! the release of refund holds, once per event.

use chrono::Utc;
use rust_decimal::Decimal;

use super::{parse_event, Consumer, Failure};
use crate::domain::ledger::wallet_changes;
use crate::domain::time::format_time;
use crate::ports::{WalletWriter, Written};

pub struct WalletConsumer<S> {
    pub store: S,
    pub fee_rate: Decimal,
}

impl<S: WalletWriter> Consumer for WalletConsumer<S> {
    const NAME: &'static str = "wallet";
    // Events of the same seller would contend for the same balance item: in order.
    const CONCURRENT_IN_BATCH: bool = false;

    async fn apply(&self, body: &str) -> Result<Written, Failure> {
        let event = parse_event(body)?;
        let changes = wallet_changes(&event, self.fee_rate)?;
        if changes.is_empty() {
            return Ok(Written::AlreadyApplied);
        }
        Ok(self
            .store
            .apply_wallet_changes(
                event.event_id(),
                &event.header.account_id,
                &changes,
                &format_time(Utc::now()),
            )
            .await?)
    }
}

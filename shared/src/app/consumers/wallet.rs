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

    /// The wallet items the event moves: events of one seller's wallet go in order (they would
    /// contend for its item), other sellers' at once.
    fn contends_on(&self, body: &str) -> Vec<String> {
        let Ok(event) = parse_event(body) else {
            return Vec::new();
        };
        wallet_changes(&event, self.fee_rate)
            .map(|changes| {
                changes
                    .iter()
                    .map(|c| {
                        format!(
                            "{}#{}#{}",
                            event.header.account_id,
                            c.seller_id,
                            c.currency.code()
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

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

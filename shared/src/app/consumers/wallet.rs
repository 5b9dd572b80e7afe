//! Wallet consumer: each seller's net from the same posting rules as the ledger, once per event.

use chrono::Utc;
use rust_decimal::Decimal;

use super::{parse_event, Consumer, Failure};
use crate::domain::ledger::wallet_credits;
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
        let credits = wallet_credits(&event, self.fee_rate)?;
        if credits.is_empty() {
            return Ok(Written::AlreadyApplied);
        }
        Ok(self
            .store
            .credit_wallets(
                event.event_id(),
                &event.header.account_id,
                &credits,
                &format_time(Utc::now()),
            )
            .await?)
    }
}

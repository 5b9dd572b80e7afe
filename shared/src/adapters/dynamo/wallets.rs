//! Wallets table (`pk`, `sk`): one wallet per seller and currency
//! `WALLET#<account_id>#<seller_id>`/`<currency>` with `balance_minor` (what the platform owes
//! the seller, equal to `seller_payable`), `held_minor` (the part held for refunds and payouts
//! in flight) and `available_minor` (`balance − held`, kept by every write so that a payout's
//! hold can be conditional on it: a condition cannot subtract), and the applied-event markers
//! `APPLIED#<event_id>`/`APPLIED` that make every change happen once.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::{TransactWriteItem, Update};

use super::codec::{built, n, s, Item};
use super::ledger::LedgerStore;
use super::tx::{put_if_absent, transact_once};
use crate::domain::currency::Currency;
use crate::domain::ids::{AccountId, SellerId};
use crate::domain::ledger::WalletChange;
use crate::ports::{StoreError, WalletWriter, Written};

pub fn wallet_key(account_id: &AccountId, seller_id: &SellerId) -> String {
    format!("WALLET#{account_id}#{seller_id}")
}

/// The update that adds `balance` and `held` to a seller's wallet in `currency` (creating it
/// if it is new), and `balance − held` to its `available_minor`. Also used by the refund's
/// creation transaction to hold the seller's part.
pub fn wallet_update(
    table: &str,
    account_id: &AccountId,
    seller: &SellerId,
    currency: Currency,
    balance_minor: i64,
    held_minor: i64,
    now: &str,
) -> Result<TransactWriteItem, StoreError> {
    let available = balance_minor.checked_sub(held_minor).ok_or_else(|| {
        StoreError::Corrupt(format!("wallet change {balance_minor} − {held_minor} overflows"))
    })?;
    let update = built(
        Update::builder()
            .table_name(table)
            .key("pk", s(wallet_key(account_id, seller)))
            .key("sk", s(currency.code()))
            .update_expression(
                "ADD balance_minor :balance, held_minor :held, available_minor :available SET entity = :wallet, seller_id = :seller, account_id = :account, updated_at = :now",
            )
            .expression_attribute_values(":available", n(available))
            .expression_attribute_values(":balance", n(balance_minor))
            .expression_attribute_values(":held", n(held_minor))
            .expression_attribute_values(":wallet", s("wallet"))
            .expression_attribute_values(":seller", s(seller.as_str()))
            .expression_attribute_values(":account", s(account_id.as_str()))
            .expression_attribute_values(":now", s(now))
            .build(),
    )?;
    Ok(TransactWriteItem::builder().update(update).build())
}

impl WalletWriter for LedgerStore {
    /// Applies each change to its wallet, once per event (the marker is in the same
    /// transaction, conditional on its absence).
    async fn apply_wallet_changes(
        &self,
        event_id: &str,
        account_id: &AccountId,
        changes: &[WalletChange],
        now: &str,
    ) -> Result<Written, StoreError> {
        let marker: Item = HashMap::from([
            ("pk".into(), s(format!("APPLIED#{event_id}"))),
            ("sk".into(), s("APPLIED")),
            ("entity".into(), s("applied_event")),
            ("applied_at".into(), s(now)),
        ]);
        let mut items = vec![put_if_absent(&self.wallets_table, marker)?];
        for c in changes {
            items.push(wallet_update(
                &self.wallets_table,
                account_id,
                &c.seller_id,
                c.currency,
                c.balance_minor,
                c.held_minor,
                now,
            )?);
        }
        Ok(
            if transact_once(&self.client, items, "TransactWriteItems wallet").await? {
                Written::Written
            } else {
                Written::AlreadyApplied
            },
        )
    }
}
